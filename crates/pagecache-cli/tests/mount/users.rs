//! Mounting as a user other than root, in a private mount namespace whose
//! /dev/fuse has the mode under test: through the fusermount3 helper when
//! /dev/fuse is open to everyone, a clear error when it is not.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::{available, bin, fuse_problem, tool_problem};

const UID: u32 = 65534;

/// Puts a /dev/fuse of mode $MODE in place, mounts as $UID in the
/// background, writes a file through the mount as $UID, asks for the
/// counters as root (refused: not an --allow-other mount), and stops the
/// mount with SIGTERM. Exit 3: the mount ended before mounting.
const SCRIPT: &str = r#"
set -u
B=$1; SRC=$2; MNT=$3; T=$4
mount -t tmpfs none "$T/dev" || exit 10
mknod "$T/dev/fuse" c 10 229 || exit 11
chmod "$MODE" "$T/dev/fuse"
mount --bind "$T/dev/fuse" /dev/fuse || exit 12
user() { setpriv --reuid="$UID" --regid="$UID" --clear-groups "$@"; }
setpriv --reuid="$UID" --regid="$UID" --clear-groups "$B" mount --memory 8M "$SRC" "$MNT" &
pid=$!
until grep -q " $MNT " /proc/self/mountinfo; do
  kill -0 $pid 2>/dev/null || { wait $pid; echo "mount exited with $?"; exit 3; }
  sleep 0.02
done
user sh -c "echo hello > '$MNT/f'" || exit 13
user "$B" stat "$MNT" | head -1
"$B" stat "$MNT"
kill -TERM $pid
wait $pid
echo "mount exited with $?"
"#;

fn problem() -> Option<String> {
    fuse_problem()
        .or_else(|| (!nix::unistd::geteuid().is_root()).then(|| "not root".to_string()))
        .or_else(|| tool_problem("unshare"))
        .or_else(|| tool_problem("setpriv"))
        .or_else(|| tool_problem("fusermount3"))
}

/// Runs [`SCRIPT`] with /dev/fuse of `mode`; returns its exit code, its
/// output (stdout and stderr) and SOURCE_DIR.
fn run(mode: &str) -> (Option<i32>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["src", "mnt", "dev"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    for sub in ["src", "mnt"] {
        std::os::unix::fs::chown(d.join(sub), Some(UID), Some(UID)).unwrap();
    }
    std::fs::copy(bin(), d.join("pagecache")).unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = |p: &str| d.join(p).to_string_lossy().into_owned();
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .args([s("pagecache"), s("src"), s("mnt"), s("")])
        .env("MODE", mode)
        .env("UID", UID.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, dir)
}

#[test]
fn a_user_mounts_through_fusermount3() {
    if !available("a_user_mounts_through_fusermount3", problem()) {
        return;
    }
    let (code, out, dir) = run("666");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("mount exited with 0"), "{out}");
    assert!(out.contains("all data written"), "{out}");
    // The user reads the counters; root may not (no --allow-other).
    assert!(out.contains("frames "), "{out}");
    assert!(
        out.contains("permission denied reading") && out.contains("mounted by another user"),
        "{out}"
    );
    let f = Path::new(dir.path()).join("src/f");
    assert_eq!(std::fs::read_to_string(f).unwrap(), "hello\n");
}

#[test]
fn dev_fuse_closed_to_users_is_a_clear_error() {
    if !available("dev_fuse_closed_to_users_is_a_clear_error", problem()) {
        return;
    }
    let (code, out, _dir) = run("600");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("mount exited with 1"), "{out}");
    assert!(out.contains("opening /dev/fuse"), "{out}");
    assert!(out.contains("chmod 0666 /dev/fuse"), "{out}");
}
