//! fio with verification on the mount, over a file 4× the cache.

use std::fs;
use std::process::Command;

use crate::harness::{available, fuse_problem, tool_problem, Mount, Stop};

const MEMORY: u64 = 8 << 20;
const FILE: u64 = 4 * MEMORY;

#[test]
fn fio_verify_on_a_file_four_times_the_cache() {
    let name = "fio_verify_on_a_file_four_times_the_cache";
    if !available(name, fuse_problem().or_else(|| tool_problem("fio"))) {
        return;
    }
    let mut m = Mount::start(&["--memory", "8M"]);
    let workdir = tempfile::tempdir().unwrap();
    let file = m.mnt.join("fio.dat");
    let out = Command::new("fio")
        .arg("--name=randwrite-verify")
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={FILE}"))
        .args([
            "--rw=randwrite",
            "--bs=4k",
            "--ioengine=psync",
            "--iodepth=1",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--end_fsync=1",
            "--randrepeat=1",
            "--fallocate=none",
            "--verify_state_save=0",
        ])
        .current_dir(workdir.path())
        .output()
        .expect("running fio");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fio failed ({}):\n{stdout}\n{stderr}\nmount log:\n{}",
        out.status,
        m.log()
    );
    assert!(
        ![
            "bad magic",
            "verify failed",
            "verify type mismatch",
            "bad header"
        ]
        .iter()
        .any(|w| stdout.contains(w) || stderr.contains(w)),
        "fio reported verify problems:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("err= 0"), "fio reported errors:\n{stdout}");

    let through_mount = fs::read(&file).unwrap();
    assert_eq!(through_mount.len() as u64, FILE);
    let stat = fs::read_to_string(m.mnt.join(".pagecache-stat")).unwrap();
    m.stop_ok(Stop::Term);
    let on_disk = fs::read(m.source.join("fio.dat")).unwrap();
    assert!(
        on_disk == through_mount,
        "SOURCE_DIR/fio.dat differs from what the mount served"
    );
    // The cache really was smaller than the file: it had to write back.
    let written: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("writeback_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        written >= FILE - MEMORY,
        "writeback_bytes {written}:\n{stat}"
    );
}
