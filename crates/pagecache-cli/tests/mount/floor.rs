//! `pagecache fuse-floor`, the yardstick of `scripts/bench-mount.sh`: it
//! must serve a file fio can use, through the mount's session, and store
//! nothing, or the floor it measures is not the transport alone.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::{available, bin, fuse_problem, is_mounted};

#[test]
fn the_floor_acknowledges_writes_and_reads_zeros() {
    if !available(
        "the_floor_acknowledges_writes_and_reads_zeros",
        fuse_problem(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("floor.log");
    let mut child = Command::new(bin())
        .args(["fuse-floor", "--size", "1M", "--threads", "4"])
        .arg(&mnt)
        .stdin(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    while !is_mounted(&mnt) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "fuse-floor exited with {status}:\n{}",
                fs::read_to_string(&log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let names: Vec<_> = fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["data"], "one file, named by --name");
    let path = mnt.join("data");
    assert_eq!(fs::metadata(&path).unwrap().len(), 1 << 20, "--size");
    assert!(
        fs::File::create(mnt.join("other")).is_err(),
        "no file but the one"
    );

    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.write_all_at(&[0xa5; 4096], 4096).unwrap();
    f.write_all_at(&vec![0x5a; 1 << 20], 2 << 20).unwrap();
    assert_eq!(
        f.metadata().unwrap().len(),
        3 << 20,
        "a write past the end moves it"
    );
    let mut buf = vec![0xffu8; 8192];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(
        buf.iter().all(|&b| b == 0),
        "a read answers zeros: nothing is stored"
    );
    let n = f.read_at(&mut buf, (3 << 20) - 100).unwrap();
    assert_eq!(n, 100, "a read stops at the end of the file");
    f.sync_all().unwrap();
    drop(f);

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(status.success(), "fuse-floor exited with {status}:\n{text}");
    assert!(!is_mounted(&mnt), "still mounted after exit");
    let count = |what: &str| -> u64 {
        let (before, _) = text
            .split_once(&format!(" {what}"))
            .unwrap_or_else(|| panic!("no count of {what} in:\n{text}"));
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The MiB may be unaligned: the kernel pins 256 pages per request.
    let writes = count("writes");
    assert!(
        (2..=3).contains(&writes),
        "{writes} write requests:\n{text}"
    );
    assert!(count("reads") >= 2, "{text}");
}
