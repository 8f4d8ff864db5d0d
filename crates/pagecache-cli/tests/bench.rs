//! `pagecache bench` end to end: every workload × policy at a tiny size, the
//! JSON checked for self-consistency; the fixed-work workloads shown to put
//! dirty pages where reclaim meets them (so `legacy` writes from reclaim and
//! `offload` does not); bad arguments rejected cleanly.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagecache"))
        .arg("bench")
        .args(args)
        .output()
        .expect("the pagecache binary runs")
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing or not an integer in {v}"))
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing or not a number in {v}"))
}

fn check_latency(v: &Value, at: &str, what: &str) {
    let p50 = u(v, &format!("{at}/p50"));
    let p99 = u(v, &format!("{at}/p99"));
    let p999 = u(v, &format!("{at}/p999"));
    let max = u(v, &format!("{at}/max"));
    assert!(
        p50 <= p99 && p99 <= p999 && p999 <= max,
        "{what}: {p50} {p99} {p999} {max}"
    );
    assert!(p50 > 0, "{what}: p50 is 0");
}

#[test]
fn every_workload_and_policy_gives_consistent_json() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out.json");
    let report = tmp.path().join("report");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let out = bench(&[
        "--memory",
        "4M",
        "--duration",
        "0.3",
        "--work-scale",
        "0.02",
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--dir",
        scratch.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {stderr}\nstdout: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(u(&v, "/machine/cores") > 0);
    assert!(u(&v, "/machine/memory_bytes") > 0);
    assert!(v.pointer("/machine/kernel").unwrap().is_string());
    assert!(v.pointer("/machine/cpu_model").unwrap().is_string());
    assert!(f(&v, "/device_seq_write_bytes_per_sec") > 0.0);
    let runs = v["runs"].as_array().unwrap();
    let workloads = [
        "mapped-stream",
        "fsmark",
        "buffer-pool",
        "small-memcg",
        "hit",
        "randwrite",
        "readers-vs-writer",
        "mixed",
        "scan",
    ];
    let policies = ["offload", "legacy", "no-throttle", "kernel"];
    assert_eq!(runs.len(), workloads.len() * policies.len());
    for w in workloads {
        for p in policies {
            let r = runs
                .iter()
                .find(|r| r["workload"] == w && r["policy"] == p)
                .unwrap_or_else(|| panic!("no run {w}/{p}"));
            let what = format!("{w}/{p}");
            if r["kernel_oom_killed"] == Value::Bool(true) {
                // The kernel's memory cgroup can kill its child under load:
                // a result the report states, with nothing else to check.
                assert_eq!(p, "kernel", "{what}");
                assert_eq!(u(r, "/oom_errors"), 1, "{what}");
                continue;
            }
            assert!(u(r, "/ops") > 0, "{what}");
            assert!(f(r, "/ops_per_sec") > 0.0, "{what}");
            assert_eq!(u(r, "/memory_bytes"), 4 << 20, "{what}");
            check_fixed_work_fields(r, w, p, &what);
            if w == "small-memcg" {
                assert_eq!(u(r, "/threads"), 1, "{what}: one dd");
            } else {
                assert!(u(r, "/threads") >= 2, "{what}");
            }
            check_latency(r, "/latency_ns", &what);
            assert_eq!(r["verified"], Value::Bool(true), "{what}: {r}");
            if let Some(hr) = r["hit_ratio"].as_f64() {
                assert!((0.0..=1.0).contains(&hr), "{what}: {hr}");
            } else {
                assert!(r["hit_ratio"].is_null(), "{what}");
                assert!(
                    p == "kernel" && matches!(w, "randwrite" | "fsmark" | "small-memcg"),
                    "{what}: only kernel writes have no lookups"
                );
            }
            u(r, "/oom_errors");
            for k in ["ios", "bytes", "avg_io_bytes"] {
                u(r, &format!("/writeback/{k}"));
            }
            assert!(f(r, "/writeback/bytes_per_sec") >= 0.0);
            if p == "kernel" {
                assert!(r["kernel_memory_limited"].is_boolean(), "{what}");
                assert!(r["direct_reclaim_writes"].is_null(), "{what}");
            } else {
                u(r, "/direct_reclaim_writes");
                u(r, "/throttle/events");
                u(r, "/throttle/total_ns");
                u(r, "/alloc_stack_peak_bytes");
            }
            if p == "offload" {
                assert_eq!(u(r, "/oom_errors"), 0, "{what}");
                assert_eq!(u(r, "/direct_reclaim_writes"), 0, "{what}");
            }
            if let Some(roles) = r.get("roles").and_then(Value::as_object) {
                let mut sum = 0;
                for (name, role) in roles {
                    let what = format!("{what} {name}");
                    assert!(u(role, "/ops") > 0, "{what}");
                    check_latency(role, "/latency_ns", &what);
                    sum += u(role, "/ops");
                }
                assert_eq!(sum, u(r, "/ops"), "{what}: roles add up");
            }
            if matches!(
                w,
                "readers-vs-writer" | "mixed" | "mapped-stream" | "buffer-pool"
            ) {
                assert!(r.pointer("/roles/readers").is_some(), "{what}");
                assert!(r.pointer("/roles/writers").is_some(), "{what}");
            }
            if w == "hit" && p != "kernel" {
                assert!(f(r, "/pin_ops_per_sec") > 0.0, "{what}");
                assert!(f(r, "/memcpy_ops_per_sec") > 0.0, "{what}");
            }
            if w == "scan" {
                let l = f(r, "/lru_hit_ratio");
                assert!((0.0..=1.0).contains(&l), "{what}: {l}");
            }
        }
    }
    for w in workloads {
        assert!(stdout.contains(w), "table lacks {w}:\n{stdout}");
    }
    assert!(report.join("bench.json").is_file());
    let md = std::fs::read_to_string(report.join("summary.md")).unwrap();
    assert!(md.starts_with("Machine: "), "{md}");
    assert!(md.contains("| workload |"), "{md}");
    for w in &workloads[..4] {
        for kind in ["fixed", "wsize"] {
            let svg = report.join(format!("{kind}-{w}.svg"));
            let text = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{svg:?}: {e}"));
            assert!(text.contains("<svg"), "{svg:?}");
        }
    }
    for w in workloads {
        for kind in ["latency", "timeline"] {
            let svg = report.join(format!("{kind}-{w}.svg"));
            let text = std::fs::read_to_string(&svg).unwrap_or_else(|e| panic!("{svg:?}: {e}"));
            assert!(text.contains("<svg"), "{svg:?}");
        }
    }
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "temporary files left in {scratch:?}"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The fields every run has, and what fixed work adds.
fn check_fixed_work_fields(r: &Value, w: &str, p: &str, what: &str) {
    let fixed = matches!(
        w,
        "mapped-stream" | "fsmark" | "buffer-pool" | "small-memcg"
    );
    assert_eq!(r["work"], if fixed { "fixed" } else { "timed" }, "{what}");
    assert_eq!(r["completed"], Value::Bool(true), "{what}");
    assert!(f(r, "/elapsed_secs") > 0.0, "{what}");
    let knobs = &r["knobs"];
    let ratio = u(knobs, "/dirty_ratio");
    if p == "kernel" && (knobs.get("dirty_bytes").is_some() || is_root()) {
        // The kernel ran at the library's dirty limit in bytes, inside its
        // memory cgroup, not at a percentage of the whole machine.
        let bytes = u(knobs, "/dirty_bytes");
        assert!(bytes <= u(r, "/memory_bytes"), "{what}: {knobs}");
        assert!(
            u(knobs, "/dirty_background_bytes") < bytes,
            "{what}: {knobs}"
        );
    } else {
        assert!(
            u(knobs, "/dirty_background_ratio") < ratio,
            "{what}: {knobs}"
        );
    }
    assert!(knobs["dirty_limit_of"].is_string(), "{what}");
    if p == "kernel" {
        assert!(r["alloc_stall_ns"].is_null(), "{what}");
        assert!(r["background_reclaim_writes"].is_null(), "{what}");
        assert!(r["writeback"]["size_histogram"].is_null(), "{what}");
        assert!(knobs["io_depth"].is_null(), "{what}");
        return;
    }
    u(r, "/alloc_stall_ns");
    u(r, "/background_reclaim_writes");
    assert_eq!(u(knobs, "/page_size"), 4096, "{what}");
    u(knobs, "/io_depth");
    u(knobs, "/flushers");
    if w == "buffer-pool" {
        assert_eq!(ratio, 90, "{what}: the record's dirty limit");
    }
    // Every write the backends were given, by size class: the same I/Os the
    // cache counted, give or take those in flight at either end.
    let hist = r["writeback"]["size_histogram"].as_array().unwrap();
    let mut bound = 0;
    let mut sum = 0;
    for class in hist {
        let c = class.as_array().unwrap();
        let b = c[0].as_u64().unwrap();
        assert!(b > bound, "{what}: classes in order");
        bound = b;
        sum += c[1].as_u64().unwrap();
    }
    let ios = u(r, "/writeback/ios");
    assert!(
        sum.abs_diff(ios) <= ios / 10 + 64,
        "{what}: {sum} writes vs {ios} I/Os"
    );
}

/// Runs the bench with `args` in a temporary directory; returns its JSON.
fn report_of(args: &[&str]) -> Value {
    report_and_summary(args).0
}

/// Runs the bench with `args` in a temporary directory; returns its JSON and
/// its summary.md.
fn report_and_summary(args: &[&str]) -> (Value, String) {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out.json");
    let mut all = args.to_vec();
    let report = tmp.path().join("r");
    all.extend([
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--dir",
        tmp.path().to_str().unwrap(),
    ]);
    let out = bench(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(report.join("summary.md")).unwrap();
    (
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
        summary,
    )
}

fn runs_of(args: &[&str]) -> Vec<Value> {
    report_of(args)["runs"].as_array().unwrap().clone()
}

fn run_of<'a>(runs: &'a [Value], w: &str, p: &str) -> &'a Value {
    runs.iter()
        .find(|r| r["workload"] == w && r["policy"] == p)
        .unwrap_or_else(|| panic!("no run {w}/{p}"))
}

/// The experiment cannot silently stop testing anything: under `legacy` the
/// allocating threads write dirty pages themselves (and stall for it); under
/// `offload` they never do and nothing fails; every run finishes its work and
/// reads back what it wrote.
fn check_pathology(runs: &[Value], w: &str) {
    for p in ["offload", "legacy", "no-throttle"] {
        let r = run_of(runs, w, p);
        assert_eq!(r["verified"], Value::Bool(true), "{w}/{p}: {r}");
        assert_eq!(r["completed"], Value::Bool(true), "{w}/{p}");
    }
    let legacy = run_of(runs, w, "legacy");
    assert!(
        u(legacy, "/direct_reclaim_writes") > 0,
        "{w}/legacy made no direct reclaim writes: the workload did not put dirty pages at the LRU tail"
    );
    assert!(u(legacy, "/alloc_stall_ns") > 0, "{w}/legacy");
    let offload = run_of(runs, w, "offload");
    assert_eq!(u(offload, "/direct_reclaim_writes"), 0, "{w}/offload");
    assert_eq!(u(offload, "/background_reclaim_writes"), 0, "{w}/offload");
    assert_eq!(u(offload, "/oom_errors"), 0, "{w}/offload");
}

#[test]
fn fixed_work_workloads_put_dirty_pages_where_reclaim_meets_them() {
    let names = ["mapped-stream", "fsmark", "buffer-pool"];
    let mut args = vec!["--memory", "4M", "--duration", "0.3"];
    for w in names {
        args.extend(["--workload", w]);
    }
    for p in ["offload", "legacy", "no-throttle"] {
        args.extend(["--policy", p]);
    }
    let runs = runs_of(&args);
    for w in names {
        check_pathology(&runs, w);
    }
}

#[test]
fn small_memcg_fails_without_the_reclaim_throttle() {
    let runs = runs_of(&[
        "--workload",
        "small-memcg",
        "--policy",
        "offload",
        "--policy",
        "legacy",
        "--policy",
        "no-throttle",
        "--memory",
        "1M",
        // Enough writes that the writer outruns the flushers several times
        // even when they are quick.
        "--work-scale",
        "0.5",
    ]);
    check_pathology(&runs, "small-memcg");
    let nt = run_of(&runs, "small-memcg", "no-throttle");
    assert!(
        u(nt, "/oom_errors") > 0,
        "no-throttle made no false OOMs: {nt}"
    );
    // The allocator has nothing clean to take, yet writing goes on: the
    // tiny budget cannot hold what was written.
    assert!(u(nt, "/writeback/bytes") > 8 * (1 << 20), "{nt}");
}

#[test]
fn a_modelled_device_runs_the_library_policies_only() {
    let v = report_of(&[
        "--workload",
        "hit",
        "--memory",
        "1M",
        "--duration",
        "0.2",
        "--device-latency",
        "20us",
        "--device-seek",
        "200us",
    ]);
    assert_eq!(
        u(&v, "/device_model/latency/nanos"),
        20_000,
        "{}",
        v["device_model"]
    );
    assert_eq!(u(&v, "/device_model/seek/nanos"), 200_000);
    let runs = v["runs"].as_array().unwrap();
    let policies: Vec<&str> = runs.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["offload", "legacy", "no-throttle"]);
    for r in runs {
        assert_eq!(r["verified"], Value::Bool(true), "{r}");
    }
}

#[test]
fn selected_workload_and_policy_only() {
    let runs = runs_of(&[
        "--workload",
        "hit",
        "--policy",
        "offload",
        "--memory",
        "2M",
        "--threads",
        "1",
        "--duration",
        "0.2",
    ]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["workload"], "hit");
    assert_eq!(runs[0]["policy"], "offload");
}

/// `--memory` and `--threads` lists run every workload × policy at every
/// (budget, threads) point, record the point in each run, and the summary
/// gains a table with ops/s per thread and the ratio to the kernel.
#[test]
fn budget_and_thread_sweeps_run_every_point() {
    let (v, summary) = report_and_summary(&[
        "--workload",
        "hit",
        "--policy",
        "offload",
        "--memory",
        "2M,3M",
        "--threads",
        "1,2",
        "--duration",
        "0.2",
    ]);
    let runs = v["runs"].as_array().unwrap();
    let mut points: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (u(r, "/memory_bytes"), u(r, "/threads")))
        .collect();
    points.sort_unstable();
    assert_eq!(
        points,
        [(2 << 20, 1), (2 << 20, 2), (3 << 20, 1), (3 << 20, 2)]
    );
    assert_eq!(v["sweep_threads"], serde_json::json!([1, 2]));
    for r in runs {
        assert_eq!(r["verified"], Value::Bool(true), "{r}");
        assert!(f(r, "/ops_per_sec") > 0.0, "{r}");
    }
    assert!(summary.contains("Hit path and scaling"), "{summary}");
    assert!(summary.contains("budgets 2.0MiB, 3.0MiB"), "{summary}");
    assert!(summary.contains("1, 2 threads"), "{summary}");
}

fn rejected(args: &[&str], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = args.to_vec();
    let report = tmp.path().join("r");
    all.extend(["--report", report.to_str().unwrap()]);
    let out = bench(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(
        stderr.to_lowercase().contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
    assert!(!Path::new(&report).join("bench.json").exists());
}

#[test]
fn bad_arguments_are_clear_errors() {
    rejected(&["--workload", "nope"], "unknown workload");
    rejected(&["--policy", "fifo"], "unknown policy");
    rejected(&["--memory", "0"], "above zero");
    rejected(&["--memory", "12Q"], "cannot parse size");
    rejected(&["--memory", ""], "cannot parse size");
    rejected(&["--duration", "0"], "duration");
    rejected(&["--duration", "abc"], "invalid value");
    rejected(&["--threads", "0"], "threads");
    rejected(&["--threads", "1,0"], "threads");
    rejected(&["--threads", "1,x"], "invalid value");
    rejected(&["--memory", "64M,1T"], "ram");
    rejected(&["--memory", "64M,,1G"], "cannot parse size");
    rejected(&["--memory", "1T"], "ram");
    rejected(&["--quick", "--memory", "64M"], "cannot be used with");
    rejected(&["--dirty-ratio", "0"], "dirty-ratio");
    rejected(
        &["--dirty-ratio", "30", "--dirty-background-ratio", "30"],
        "below the dirty ratio",
    );
    rejected(&["--page-size", "1K"], "page-size");
    rejected(&["--io-depth", "0"], "io-depth");
    rejected(&["--flushers", "100"], "flushers");
    rejected(&["--background-reclaim", "maybe"], "on or off");
    rejected(&["--work-scale", "0"], "work-scale");
    rejected(&["--device-latency", "5"], "unit");
    rejected(
        &["--device-latency", "1ms", "--policy", "kernel"],
        "drop --policy kernel",
    );
}
