//! A root mount shared with other users (`--allow-other`): what a user
//! creates through it is theirs in SOURCE_DIR, and chown/chmod pass through.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use crate::harness::{available, fuse_problem, tool_problem, Mount, Stop};

const UID: u32 = 65534;

fn problem() -> Option<String> {
    fuse_problem()
        .or_else(|| (!nix::unistd::geteuid().is_root()).then(|| "not root".to_string()))
        .or_else(|| tool_problem("setpriv"))
}

#[test]
fn files_created_by_another_user_are_theirs() {
    if !available("files_created_by_another_user_are_theirs", problem()) {
        return;
    }
    let mut m = Mount::start_with(&["--memory", "8M", "--allow-other"], |src| {
        // The mount's directory tree is reachable by the other user, and
        // SOURCE_DIR belongs to them, as a service's data directory would.
        let parent = src.parent().unwrap();
        fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(src, Some(UID), Some(UID)).unwrap();
        fs::set_permissions(src, fs::Permissions::from_mode(0o750)).unwrap();
    });
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={UID}"),
            &format!("--regid={UID}"),
            "--clear-groups",
            "sh",
            "-euc",
        ])
        .arg(
            r#"cd "$0"
               echo data > f
               mkdir d
               echo more > d/g
               ln -s f link
               chmod 600 f
               cat f d/g"#,
        )
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "as uid {UID}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "data\nmore\n");
    for name in ["f", "d", "d/g", "link"] {
        let md = fs::symlink_metadata(m.source.join(name)).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (UID, UID),
            "owner of {name} in SOURCE_DIR"
        );
    }
    let mode = |name: &str| fs::metadata(m.source.join(name)).unwrap().mode() & 0o7777;
    assert_eq!(mode("f"), 0o600);

    // Another user may not read it now; root may give it away.
    let denied = Command::new("setpriv")
        .args(["--reuid=1234", "--regid=1234", "--clear-groups", "cat"])
        .arg(m.mnt.join("f"))
        .output()
        .unwrap();
    assert!(
        !denied.status.success(),
        "uid 1234 read a 0600 file of {UID}"
    );
    std::os::unix::fs::chown(m.mnt.join("f"), Some(1234), Some(1235)).unwrap();
    fs::set_permissions(m.mnt.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    let md = fs::metadata(m.source.join("f")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 1235, 0o640)
    );
    let md = fs::metadata(m.mnt.join("f")).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 1235, 0o640)
    );
    m.stop_ok(Stop::Term);
}
