//! Bad arguments and environments: a clear message and a non-zero exit.

use std::process::Command;

use crate::harness::{available, bin, fuse_problem, tool_problem, Mount, Stop};

fn mount(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .arg("mount")
        .args(args)
        .output()
        .expect("running pagecache");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("src")).unwrap();
    std::fs::create_dir(d.join("mnt")).unwrap();
    std::fs::write(d.join("file"), b"x").unwrap();
    let s = |p: &str| d.join(p).to_string_lossy().into_owned();
    let cases = [
        (vec![s("missing"), s("mnt")], "SOURCE_DIR"),
        (vec![s("file"), s("mnt")], "not a directory"),
        (vec![s("src"), s("missing")], "MOUNTPOINT"),
        (vec![s("src"), s("file")], "not a directory"),
        (vec![s("src"), s("src")], "must not contain"),
        (vec![s(""), s("src")], "must not contain"),
    ];
    for (args, want) in cases {
        let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
        let (code, err) = mount(&args);
        assert_ne!(code, 0, "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
    }
}

#[test]
fn bad_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().to_string_lossy().into_owned();
    for (args, want) in [
        (vec!["--memory", "12Q"], "cannot parse size"),
        (vec!["--memory", "0"], "memory"),
        (vec!["--memory", "8K"], "memory"),
        (vec!["--page-size", "1000"], "page_size"),
        (vec!["--policy", "lru"], "unknown policy"),
        (vec!["--dirty-ratio", "0"], "dirty_ratio"),
    ] {
        let mut all = args.clone();
        all.push(&s);
        all.push("/nonexistent-mountpoint");
        let (code, err) = mount(&all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err:?}");
    }
}

#[test]
fn stat_refuses_a_directory_that_is_not_a_mount() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .arg("stat")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pagecache mount"), "{err}");
}

#[test]
fn stat_prints_the_counters_of_a_mount() {
    if !available("stat_prints_the_counters_of_a_mount", fuse_problem()) {
        return;
    }
    let mut m = Mount::start(&["--memory", "4M"]);
    std::fs::write(m.mnt.join("f"), vec![5u8; 40_000]).unwrap();
    let out = Command::new(bin())
        .arg("stat")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing from:\n{text}"))
    };
    assert_eq!(get("frames"), 1024);
    assert_eq!(get("page_size"), 4096);
    assert!(get("pages_dirtied") >= 10, "{text}");
    // Hidden from listings, but readable by name.
    let names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    // Read-only, and cannot be removed or replaced.
    let stat = m.mnt.join(".pagecache-stat");
    assert!(std::fs::write(&stat, b"x").is_err());
    assert!(std::fs::remove_file(&stat).is_err());
    assert!(std::fs::rename(m.mnt.join("f"), &stat).is_err());
    assert!(std::fs::read_to_string(&stat)
        .unwrap()
        .starts_with("frames "));
    m.stop_ok(Stop::Term);
}

/// Why the environment tests (which need root to take FUSE away) cannot run.
fn env_problem(tool: &str) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    tool_problem(tool)
}

/// A SOURCE_DIR and MOUNTPOINT, and a copy of the binary, that any user can
/// reach but not write: `fusermount3` refuses to mount for a user without
/// write access to the mount point.
fn world_dirs() -> (tempfile::TempDir, String, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["src", "mnt"] {
        std::fs::create_dir(d.join(sub)).unwrap();
        std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::copy(bin(), d.join("pagecache")).unwrap();
    std::fs::set_permissions(d.join("pagecache"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = |p: &str| d.join(p).to_string_lossy().into_owned();
    let (b, src, mnt) = (s("pagecache"), s("src"), s("mnt"));
    (dir, b, src, mnt)
}

#[test]
fn mount_not_permitted_is_a_clear_error() {
    let name = "mount_not_permitted_is_a_clear_error";
    if !available(name, env_problem("setpriv")) {
        return;
    }
    let (_dir, b, src, mnt) = world_dirs();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &b,
            "mount",
            &src,
            &mnt,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot mount at") || err.contains("/dev/fuse"),
        "{err}"
    );
    assert!(!crate::harness::is_mounted(std::path::Path::new(&mnt)));
}

#[test]
fn missing_dev_fuse_is_a_clear_error() {
    let name = "missing_dev_fuse_is_a_clear_error";
    if !available(name, env_problem("unshare")) {
        return;
    }
    let (_dir, b, src, mnt) = world_dirs();
    // A private mount namespace whose /dev is an empty tmpfs.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs none /dev && exec "$0" mount "$1" "$2""#)
        .args([&b, &src, &mnt])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/fuse is not available"), "{err}");
}
