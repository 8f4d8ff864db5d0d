//! The `kv` example under kill -9: a child process (this test binary,
//! re-executed with `PAGECACHE_KV_DIR` set) puts and deletes keys in
//! batches through the example's store, printing each change before it
//! makes it and `commit` once `Kv::commit` has returned. The parent kills it
//! with SIGKILL at a random point, reopens the store, and checks that it
//! holds exactly the committed changes plus a prefix of the batch in flight
//! — over several rounds on the same store.

mod common;

// The example's store, compiled into this test as it is into the example.
#[allow(dead_code)] // the example's command line uses parts this test does not
#[path = "../examples/kv/store.rs"]
mod store;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Rng;
use pagecache::{Config, PageCache};
use store::Kv;

const KEYS: u64 = 1000;
const SLOT_PAGES: u64 = 64; // 2048 slots
const ROUNDS: u64 = 12;
const DIR_ENV: &str = "PAGECACHE_KV_DIR";
const MARK: &str = "#KV ";

fn cache() -> PageCache {
    // Smaller than the index, with eager flushers, so data and log pages
    // reach the disk at every moment of the protocol.
    PageCache::new(
        Config::new(48 * 4096)
            .dirty_expire(Duration::from_millis(5))
            .dirty_writeback_interval(Duration::from_millis(2)),
    )
    .unwrap()
}

/// The child: changes and commits until killed (or, as a guard, for 30 s).
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let seed: u64 = std::env::var("PAGECACHE_KV_SEED").unwrap().parse().unwrap();
    let mut rng = Rng(seed | 1);
    let cache = cache();
    let mut kv = Kv::open(&cache, Path::new(&dir), SLOT_PAGES).unwrap();
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1 + rng.below(16) {
            let key = format!("k{}", rng.below(KEYS));
            n += 1;
            if rng.below(6) == 0 {
                writeln!(out, "{MARK}del {key}").unwrap();
                out.flush().unwrap();
                kv.delete(key.as_bytes()).unwrap();
            } else {
                let value = format!("v{seed}.{n}");
                writeln!(out, "{MARK}put {key} {value}").unwrap();
                out.flush().unwrap();
                kv.put(key.as_bytes(), value.as_bytes()).unwrap();
            }
        }
        kv.commit().unwrap();
        writeln!(out, "{MARK}commit").unwrap();
        out.flush().unwrap();
    }
}

type Model = HashMap<String, String>;

fn apply(model: &mut Model, op: &[String]) {
    match op[0].as_str() {
        "put" => {
            model.insert(op[1].clone(), op[2].clone());
        }
        "del" => {
            model.remove(&op[1]);
        }
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn every_committed_key_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x6b76_0009);
    let mut model = Model::new();
    let (mut commits, mut checked, mut in_flight_applied) = (0u64, 0u64, 0u64);
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env("PAGECACHE_KV_SEED", (round + 1).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 30 + rng.below_usize(1500);
        let mut pending: Vec<Vec<String>> = Vec::new();
        let mut seen = 0;
        let mut killed = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            let Some(pos) = line.find(MARK) else { continue };
            let op: Vec<String> = line[pos + MARK.len()..]
                .split(' ')
                .map(String::from)
                .collect();
            if op[0] == "commit" {
                for op in pending.drain(..) {
                    apply(&mut model, &op);
                }
                commits += 1;
            } else {
                pending.push(op);
            }
            seen += 1;
            if seen == kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child ended before it was killed"
        );

        // Recover, read every key, and find the prefix of the batch in
        // flight that the store holds.
        let c = cache();
        let kv = Kv::open(&c, dir.path(), SLOT_PAGES).unwrap();
        let mut got = Model::new();
        for k in 0..KEYS {
            let key = format!("k{k}");
            if let Some(v) = kv.get(key.as_bytes()).unwrap() {
                got.insert(key, String::from_utf8(v).unwrap());
            }
        }
        let mut candidate = model.clone();
        let mut matched = (candidate == got).then_some(0);
        for (j, op) in pending.iter().enumerate() {
            apply(&mut candidate, op);
            if matched.is_none() && candidate == got {
                matched = Some(j + 1);
            }
        }
        let Some(j) = matched else {
            let lost: Vec<_> = model
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .take(5)
                .collect();
            panic!(
                "round {round}: the store holds neither the committed state nor a prefix of the \
                 {} changes in flight; committed keys differing: {lost:?}",
                pending.len()
            );
        };
        checked += model.len() as u64;
        in_flight_applied += j as u64;
        model = got;
        drop(kv);
        c.shutdown().unwrap();
    }
    println!(
        "kv kill -9: {ROUNDS} rounds, {commits} commits, {checked} committed keys checked, \
         {in_flight_applied} uncommitted changes recovered"
    );
    assert!(commits > ROUNDS, "too few commits to test anything");
}
