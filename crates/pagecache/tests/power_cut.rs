//! Power cuts at random points (DESIGN §4 invariant 7): random writes,
//! zero-copy page writes, truncations and syncs through a small cache over a
//! [`FaultBackend`] that also injects random write faults, while flushers
//! write in the background; the power is cut at a random operation, and after
//! "reboot" (a new cache over the durable image) every byte acknowledged by a
//! successful `sync` must be there.

mod common;

use std::thread;
use std::time::Duration;

use common::Rng;
use pagecache::{Config, Error, FaultBackend, PageCache, Policy};

const PS: usize = 4096;
const FILE_PAGES: usize = 48;
const MAX: usize = FILE_PAGES * PS;
const ROUNDS: u64 = 40;
const OPS: u64 = 150;

#[derive(Default, Debug)]
struct Totals {
    power_cuts: u64,
    faults_injected: u64,
    synced_bytes_checked: u64,
    bytes_lost: u64,
    acked_syncs: u64,
    failed_syncs: u64,
}

/// Marks `range` as changed since the last acknowledged sync.
fn touch(dirtied: &mut [bool], range: std::ops::Range<usize>) {
    let end = range.end.min(dirtied.len());
    for d in &mut dirtied[range.start.min(end)..end] {
        *d = true;
    }
}

/// One boot: checks the cache reads back `image`, runs random operations,
/// cuts the power at a random one, and returns the durable image.
fn boot(seed: u64, image: Vec<u8>, totals: &mut Totals) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let disk = FaultBackend::with_contents(image.clone());
    // Every policy: they differ in what reclaim does with dirty pages.
    let policy = Policy::ALL[(seed % 3) as usize];
    let cache = PageCache::new(
        Config::new(24 * PS)
            .policy(policy)
            .dirty_expire(Duration::from_millis(1 + rng.below(20)))
            .dirty_writeback_interval(Duration::from_millis(5)),
    )
    .unwrap();
    let f = cache.open_backend(disk.clone()).unwrap();

    // After the reboot, the cache serves exactly the durable image.
    assert_eq!(
        f.len(),
        image.len() as u64,
        "seed {seed}: length after reboot"
    );
    let mut buf = vec![0u8; image.len()];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, image, "seed {seed}: content after reboot");

    if seed % 2 == 0 {
        disk.random_faults(seed, Some(8));
    }
    let mut model = image.clone();
    let mut synced = image;
    let mut dirtied = vec![false; MAX + PS];
    let cut_at = rng.below(OPS);
    for op in 0..OPS {
        if op == cut_at {
            break;
        }
        match rng.below_usize(10) {
            0..=4 => {
                let off = rng.below_usize(MAX - 1);
                let len = 1 + rng.below_usize((3 * PS).min(MAX - off));
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                // No-throttle may fail a write part way with no clean frame;
                // rewriting the same bytes completes it.
                let mut tries = 0;
                let r = loop {
                    match f.write_at(&data, off as u64) {
                        Err(Error::NoCleanFrame) if tries < 1000 => {
                            tries += 1;
                            thread::sleep(Duration::from_millis(1));
                        }
                        r => break r,
                    }
                };
                match r {
                    Ok(_) => {}
                    // Paced out at the dirty limit while writeback fails:
                    // refused before anything was written.
                    Err(Error::Writeback { .. }) => continue,
                    Err(e) => panic!("seed {seed} ({policy}): write: {e}"),
                }
                if model.len() < off + len {
                    touch(&mut dirtied, model.len()..off);
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
                touch(&mut dirtied, off..off + len);
            }
            5 => {
                let new = rng.below_usize(MAX);
                f.set_len(new as u64).unwrap();
                let old = model.len();
                model.resize(new, 0);
                touch(&mut dirtied, old.min(new)..old.max(new));
            }
            6 => {
                let index = rng.below_usize(FILE_PAGES);
                let at = rng.below_usize(PS);
                let len = 1 + rng.below_usize(PS - at);
                let byte = rng.next() as u8;
                let mut g = match f.page_mut(index as u64) {
                    Ok(g) => g,
                    Err(Error::Writeback { .. } | Error::NoCleanFrame) => continue,
                    Err(e) => panic!("seed {seed} ({policy}): page_mut: {e}"),
                };
                g[at..at + len].fill(byte);
                drop(g);
                let end = (index + 1) * PS;
                if model.len() < end {
                    touch(&mut dirtied, model.len()..end);
                    model.resize(end, 0);
                }
                let start = index * PS + at;
                model[start..start + len].fill(byte);
                touch(&mut dirtied, start..start + len);
            }
            7 => thread::sleep(Duration::from_millis(rng.below(3))),
            _ => match f.sync() {
                Ok(()) => {
                    totals.acked_syncs += 1;
                    // Only File::sync makes the backend durable, so after an
                    // acknowledged sync the durable image is exactly the model.
                    assert_eq!(disk.durable(), model, "seed {seed} op {op}: synced image");
                    synced.clone_from(&model);
                    dirtied.fill(false);
                }
                Err(Error::Writeback { .. }) => totals.failed_syncs += 1,
                Err(e) => panic!("seed {seed}: sync: {e}"),
            },
        }
    }
    disk.power_cut();
    totals.power_cuts += 1;
    let durable = disk.durable();
    for (i, &byte) in synced.iter().enumerate() {
        if dirtied[i] {
            continue;
        }
        totals.synced_bytes_checked += 1;
        if durable.get(i) != Some(&byte) {
            totals.bytes_lost += 1;
        }
    }
    totals.faults_injected += disk.stats().faults();
    drop(f);
    // The cache's own final sync fails: the power is off.
    let _ = cache.shutdown();
    durable
}

#[test]
fn every_synced_byte_survives_power_cuts() {
    let seed0 = std::env::var("PAGECACHE_POWER_CUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001u64);
    let mut totals = Totals::default();
    let mut image = Vec::new();
    for round in 0..ROUNDS {
        image = boot(seed0 + round, image, &mut totals);
        assert_eq!(
            totals.bytes_lost,
            0,
            "round {round} (seed {}) lost bytes",
            seed0 + round
        );
    }
    println!("power cut totals: {totals:?}");
    assert!(totals.acked_syncs > 0 && totals.synced_bytes_checked > 0);
    assert_eq!(totals.power_cuts, ROUNDS);
}
