#!/usr/bin/env bash
# fio on a `pagecache mount` and on the plain source directory, side by side.
#
#   scripts/bench-mount.sh [PAGECACHE_BIN]
#
# Needs root (or a user allowed to mount FUSE), fio and python3. Knobs by
# environment: SIZE (per file, default 1G), MEMORY (cache budget, default
# 256M), RUNTIME (seconds per random job, default 10), JOBS (default 4),
# ROUNDS (default 3), BASE (where the temporary directories go, default
# /var/tmp), THREADS (serving threads of the mount and the floor, default 8),
# MOUNT_ARGS (more `pagecache mount` options, e.g. "--dirty-ratio 40"),
# ONLY (a regular expression: run only the jobs whose names match it),
# FLOOR=1 (also run each job on `pagecache fuse-floor`, the FUSE transport
# with the mount's session and nothing stored: the most any FUSE file
# system served this way can do here).
#
# "CPU s/GiB" is the mount's (or the floor's) process CPU time (all its threads) per GiB
# the job moved, median of the rounds: less noisy than throughput when
# other work shares the machine, and what a change to the mount's own work
# moves.
#
# Each job runs ROUNDS times on the plain directory and on the mount (and
# the floor), alternating, and the table shows the medians: on a shared
# machine single runs differ by up to 2x. The load average before and
# after is printed, since other work on the machine moves the figures.
set -euo pipefail
BIN=${1:-target/release/pagecache}
SIZE=${SIZE:-1G}
MEMORY=${MEMORY:-256M}
RUNTIME=${RUNTIME:-10}
JOBS=${JOBS:-4}
ROUNDS=${ROUNDS:-3}
BASE=${BASE:-/var/tmp}
THREADS=${THREADS:-8}
MOUNT_ARGS=${MOUNT_ARGS:-}
FLOOR=${FLOOR:-0}
ONLY=${ONLY:-.}

work=$(mktemp -d "$BASE/bench-mount.XXXXXX")
src=$work/src mnt=$work/mnt plain=$work/plain flr=$work/floor
mkdir -p "$src" "$mnt" "$plain" "$flr"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

start() { # log mountpoint command... : starts a FUSE server, waits for its mount
  local log=$1 at=$2; shift 2
  "$@" 2>"$log" &
  pids+=($!)
  until grep -q " $at " /proc/self/mountinfo; do
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.05
  done
}
# shellcheck disable=SC2086
start "$work/mount.log" "$mnt" "$BIN" mount --memory "$MEMORY" --threads "$THREADS" $MOUNT_ARGS "$src" "$mnt"
if [ "$FLOOR" = 1 ]; then
  start "$work/floor.log" "$flr" "$BIN" fuse-floor --size "$SIZE" --threads "$THREADS" "$flr"
fi

# name rw bs numjobs extra...
jobs=(
  "seq-write write 1M 1 --end_fsync=1"
  "seq-read read 1M 1"
  "rand-write randwrite 4k $JOBS --time_based --runtime=$RUNTIME --end_fsync=1"
  "rand-read randread 4k $JOBS --time_based --runtime=$RUNTIME"
)

run() { # dir name rw bs numjobs extra... -> "MiB/s GiB"
  local dir=$1 name=$2 rw=$3 bs=$4 nj=$5; shift 5
  fio --name="$name" --directory="$dir" --filename=data --size="$SIZE" \
    --rw="$rw" --bs="$bs" --numjobs="$nj" --ioengine=psync --group_reporting \
    --fallocate=none "$@" --output-format=json |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; r,w=j["read"],j["write"]; print("%.1f %.4f" % ((r["bw_bytes"]+w["bw_bytes"])/2**20, (r["io_bytes"]+w["io_bytes"])/2**30))'
}

# CPU seconds used so far by process $1, all its threads.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }

# Runs a job on the FUSE server $1's mount: "MiB/s CPU-seconds-per-GiB"
# (the server's CPU time, less noisy than wall time on a shared machine).
run_fuse() {
  local pid=$1 c0 out
  shift
  c0=$(cpu "$pid")
  out=$(run "$@")
  # shellcheck disable=SC2086
  python3 -c "import sys; bw, gib = map(float, sys.argv[1:3]); print('%.1f %.2f' % (bw, (float(sys.argv[4]) - float(sys.argv[3])) / max(gib, 1e-9)))" \
    $out "$c0" "$(cpu "$pid")"
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

ratio() { python3 -c "print('%.2f' % ($1/$2))"; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$FLOOR" = 1 ]; then
  printf '%-12s %12s %12s %7s %10s %12s %7s %10s\n' job "plain MiB/s" "mount MiB/s" ratio "CPU s/GiB" "floor MiB/s" ratio "CPU s/GiB"
else
  printf '%-12s %12s %12s %7s %10s\n' job "plain MiB/s" "mount MiB/s" ratio "CPU s/GiB"
fi
for j in "${jobs[@]}"; do
  # shellcheck disable=SC2086
  set -- $j
  [[ $1 =~ $ONLY ]] || continue
  ps=() ms=() cs=() fs=() fcs=()
  for _ in $(seq "$ROUNDS"); do
    read -r bw _ < <(run "$plain" "$@")
    ps+=("$bw")
    read -r bw c < <(run_fuse "${pids[0]}" "$mnt" "$@")
    ms+=("$bw") cs+=("$c")
    if [ "$FLOOR" = 1 ]; then
      read -r bw c < <(run_fuse "${pids[1]}" "$flr" "$@")
      fs+=("$bw") fcs+=("$c")
    fi
  done
  p=$(median "${ps[@]}") m=$(median "${ms[@]}") c=$(median "${cs[@]}")
  if [ "$FLOOR" = 1 ]; then
    f=$(median "${fs[@]}") fc=$(median "${fcs[@]}")
    printf '%-12s %12s %12s %7s %10s %12s %7s %10s\n' "$1" "$p" "$m" "$(ratio "$m" "$p")" "$c" "$f" "$(ratio "$f" "$p")" "$fc"
  else
    printf '%-12s %12s %12s %7s %10s\n' "$1" "$p" "$m" "$(ratio "$m" "$p")" "$c"
  fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
