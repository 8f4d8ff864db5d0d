//! Unmounting with dirty data in the cache: by SIGTERM, SIGINT and
//! `umount`, everything written must be in SOURCE_DIR afterwards.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::harness::{available, fuse_problem, snapshot, Mount, Stop};

/// Writes files whose pages stay dirty: a long dirty expiry and a cache
/// large enough to hold them keep the flushers from writing them first.
fn dirty_some_files(root: &Path) {
    fs::create_dir(root.join("dir")).unwrap();
    for i in 0..8u8 {
        let data: Vec<u8> = (0..300_000u32).map(|j| (j as u8) ^ i).collect();
        fs::write(root.join(format!("dir/file{i}")), data).unwrap();
    }
    // Overwrite the middle of a file that existed before the mount.
    let f = OpenOptions::new()
        .write(true)
        .open(root.join("old"))
        .unwrap();
    f.write_all_at(&[0xAB; 5000], 3000).unwrap();
    // Extend one and shrink another.
    let f = OpenOptions::new()
        .write(true)
        .open(root.join("dir/file1"))
        .unwrap();
    f.set_len(400_000).unwrap();
    f.write_all_at(b"end", 399_997).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .open(root.join("dir/file2"))
        .unwrap();
    f.set_len(12_345).unwrap();
    fs::rename(root.join("dir/file3"), root.join("moved")).unwrap();
}

fn check(how: Stop) {
    let name = format!("unmount_with_dirty_data_{how:?}");
    if !available(&name, fuse_problem()) {
        return;
    }
    let fill = |root: &Path| fs::write(root.join("old"), vec![1u8; 20_000]).unwrap();
    let plain = tempfile::tempdir().unwrap();
    fill(plain.path());
    dirty_some_files(plain.path());

    let mut m = Mount::start_with(&["--memory", "32M", "--dirty-expire", "3600"], fill);
    dirty_some_files(&m.mnt);
    let stat = fs::read_to_string(m.mnt.join(".pagecache-stat")).unwrap();
    let dirty: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_dirty "))
        .and_then(|v| v.parse().ok())
        .expect("nr_dirty in the counters");
    assert!(dirty > 0, "the test needs dirty pages at unmount:\n{stat}");
    m.stop_ok(how);
    assert_eq!(
        snapshot(plain.path()),
        snapshot(&m.source),
        "SOURCE_DIR after {how:?}"
    );
}

#[test]
fn unmount_by_sigterm_writes_everything() {
    check(Stop::Term);
}

#[test]
fn unmount_by_sigint_writes_everything() {
    check(Stop::Int);
}

#[test]
fn unmount_by_umount_writes_everything() {
    check(Stop::Umount);
}
