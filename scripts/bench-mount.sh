#!/usr/bin/env bash
# fio on a `pagecache mount` and on the plain source directory, side by side.
#
#   scripts/bench-mount.sh [PAGECACHE_BIN]
#
# Needs root (or a user allowed to mount FUSE), fio and python3. Knobs by
# environment: SIZE (per file, default 1G), MEMORY (cache budget, default
# 256M), RUNTIME (seconds per random job, default 10), JOBS (default 4),
# ROUNDS (default 3), BASE (where the temporary directories go, default
# /var/tmp).
#
# Each job runs ROUNDS times on the plain directory and on the mount,
# alternating, and the table shows the medians: on a shared machine single
# runs differ by up to 2x.
set -euo pipefail
BIN=${1:-target/release/pagecache}
SIZE=${SIZE:-1G}
MEMORY=${MEMORY:-256M}
RUNTIME=${RUNTIME:-10}
JOBS=${JOBS:-4}
ROUNDS=${ROUNDS:-3}
BASE=${BASE:-/var/tmp}

work=$(mktemp -d "$BASE/bench-mount.XXXXXX")
src=$work/src mnt=$work/mnt plain=$work/plain
mkdir -p "$src" "$mnt" "$plain"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN" mount --memory "$MEMORY" "$src" "$mnt" 2>"$work/mount.log" &
pid=$!
until grep -q " $mnt " /proc/self/mountinfo; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/mount.log"; exit 1; }
  sleep 0.05
done

# name rw bs numjobs extra...
jobs=(
  "seq-write write 1M 1 --end_fsync=1"
  "seq-read read 1M 1"
  "rand-write randwrite 4k $JOBS --time_based --runtime=$RUNTIME --end_fsync=1"
  "rand-read randread 4k $JOBS --time_based --runtime=$RUNTIME"
)

run() { # dir name rw bs numjobs extra... -> MiB/s
  local dir=$1 name=$2 rw=$3 bs=$4 nj=$5; shift 5
  fio --name="$name" --directory="$dir" --filename=data --size="$SIZE" \
    --rw="$rw" --bs="$bs" --numjobs="$nj" --ioengine=psync --group_reporting \
    --fallocate=none "$@" --output-format=json |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print("%.1f" % ((j["read"]["bw_bytes"]+j["write"]["bw_bytes"])/2**20))'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '%-12s %12s %12s %7s\n' job "plain MiB/s" "mount MiB/s" ratio
for j in "${jobs[@]}"; do
  # shellcheck disable=SC2086
  set -- $j
  ps=() ms=()
  for _ in $(seq "$ROUNDS"); do
    ps+=("$(run "$plain" "$@")")
    ms+=("$(run "$mnt" "$@")")
  done
  p=$(median "${ps[@]}") m=$(median "${ms[@]}")
  printf '%-12s %12s %12s %7s\n' "$1" "$p" "$m" "$(python3 -c "print('%.2f' % ($m/$p))")"
done
