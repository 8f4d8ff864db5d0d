//! `pagecache bench` end to end: every workload × policy at a tiny size, the
//! JSON checked for self-consistency, and bad arguments rejected cleanly.

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
    let workloads = ["hit", "randwrite", "readers-vs-writer", "mixed", "scan"];
    let policies = ["offload", "legacy", "no-throttle", "kernel"];
    assert_eq!(runs.len(), workloads.len() * policies.len());
    for w in workloads {
        for p in policies {
            let r = runs
                .iter()
                .find(|r| r["workload"] == w && r["policy"] == p)
                .unwrap_or_else(|| panic!("no run {w}/{p}"));
            let what = format!("{w}/{p}");
            assert!(u(r, "/ops") > 0, "{what}");
            assert!(f(r, "/ops_per_sec") > 0.0, "{what}");
            assert_eq!(u(r, "/memory_bytes"), 4 << 20, "{what}");
            assert!(u(r, "/threads") >= 2, "{what}");
            check_latency(r, "/latency_ns", &what);
            assert_eq!(r["verified"], Value::Bool(true), "{what}: {r}");
            if let Some(hr) = r["hit_ratio"].as_f64() {
                assert!((0.0..=1.0).contains(&hr), "{what}: {hr}");
            } else {
                assert!(r["hit_ratio"].is_null(), "{what}");
                assert_eq!(
                    (w, p),
                    ("randwrite", "kernel"),
                    "only kernel writes have no lookups"
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
            if matches!(w, "readers-vs-writer" | "mixed") {
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

#[test]
fn selected_workload_and_policy_only() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out.json");
    let out = bench(&[
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
        "--json",
        json.to_str().unwrap(),
        "--report",
        tmp.path().join("r").to_str().unwrap(),
        "--dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["workload"], "hit");
    assert_eq!(runs[0]["policy"], "offload");
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
    rejected(&["--memory", "1T"], "ram");
    rejected(&["--quick", "--memory", "64M"], "cannot be used with");
}
