//! The kernel runs' global dirty settings always come back: when two
//! benches run at once, and when the bench dies of Ctrl-C mid-run. Needs
//! root (the bench only changes `vm.dirty_*` as root).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const KNOBS: [&str; 4] = [
    "dirty_bytes",
    "dirty_ratio",
    "dirty_background_bytes",
    "dirty_background_ratio",
];

fn knob(name: &str) -> u64 {
    std::fs::read_to_string(Path::new("/proc/sys/vm").join(name))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn knobs() -> Vec<u64> {
    KNOBS.iter().map(|k| knob(k)).collect()
}

/// A bench of `hit` under `kernel` only, in its own process group.
fn bench(tmp: &Path, memory: &str, secs: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pagecache"))
        .args(["bench", "--workload", "hit", "--policy", "kernel"])
        .args(["--threads", "1", "--memory", memory, "--duration", secs])
        .arg("--report")
        .arg(tmp.join(format!("r-{memory}")))
        .arg("--dir")
        .arg(tmp)
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Waits until `vm.dirty_bytes` is `v`: that bench's kernel run began.
fn wait_for_dirty_bytes(v: u64) {
    let t0 = Instant::now();
    while knob("dirty_bytes") != v {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "vm.dirty_bytes never became {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kernel_dirty_settings_come_back_after_overlapping_runs_and_ctrl_c() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the bench changes vm.dirty_* only as root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let before = knobs();
    // The hit workload's dirty ratio is 20% of the budget.
    let first_limit = (4u64 << 20) * 20 / 100;

    // A second bench starting while the first one's limits are in force
    // must not save them as "the old values" and put them back at its end.
    let mut a = bench(tmp.path(), "4M", "4");
    wait_for_dirty_bytes(first_limit);
    let mut b = bench(tmp.path(), "6M", "6");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    assert_eq!(knobs(), before, "{KNOBS:?} after two overlapping benches");

    // Ctrl-C (SIGINT to the process group) during the kernel's run.
    let c = bench(tmp.path(), "4M", "60");
    wait_for_dirty_bytes(first_limit);
    let pgid = nix::unistd::Pid::from_raw(-(c.id() as i32));
    nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(2), "{:?}", out.status);
    assert_eq!(knobs(), before, "{KNOBS:?} after Ctrl-C");
}
