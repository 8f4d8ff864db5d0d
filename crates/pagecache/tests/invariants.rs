//! DESIGN §4 invariants 1, 2, 3 and 6, each asserted on counts.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{page_bytes, ProbeBackend, Rng};
use pagecache::{Config, Error, PageCache, Policy};

const PS: usize = 4096;

/// Writes `pages` random pages of a file 4× the budget from two threads,
/// then syncs; returns the probe and the cache.
fn write_heavy(policy: Policy, frames: usize, pages: u64) -> (ProbeBackend, PageCache) {
    let cache = PageCache::new(Config::new(frames * PS).policy(policy)).unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    let span = frames as u64 * 4;
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let file = file.clone();
            s.spawn(move || {
                let mut rng = Rng(0x1234 + t);
                for i in 0..pages / 2 {
                    let index = rng.below(span);
                    file.write_at(&page_bytes(PS, index, i), index * PS as u64)
                        .unwrap();
                    // Reads of other pages allocate too.
                    let mut buf = [0u8; 64];
                    file.read_at(&mut buf, rng.below(span) * PS as u64).unwrap();
                }
            });
        }
    });
    file.sync().unwrap();
    (probe, cache)
}

#[test]
fn invariant_1_offload_allocators_never_write() {
    let (probe, cache) = write_heavy(Policy::Offload, 64, 4000);
    let ev = cache.stats().events;
    assert!(probe.writes() > 0, "the run must have written something");
    assert!(
        ev.pgscan_direct + ev.pgscan_background > 0,
        "reclaim must have run"
    );
    assert_eq!(probe.writes_in_allocation(), 0);
    assert_eq!(ev.direct_reclaim_writes, 0);
}

/// Streams `pages` sequential page writes through 64 frames with the
/// background reclaimer off and dirty limits high, so direct reclaim meets
/// dirty victims and must decide what to do with them.
fn stream_through_direct_reclaim(policy: Policy, pages: u64) -> (ProbeBackend, PageCache) {
    let cache = PageCache::new(
        Config::new(64 * PS)
            .policy(policy)
            .background_reclaim(false)
            .dirty_ratio(90)
            .dirty_background_ratio(80),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    for i in 0..pages {
        file.write_at(&page_bytes(PS, i, 0), i * PS as u64).unwrap();
    }
    file.sync().unwrap();
    (probe, cache)
}

#[test]
fn invariant_1_legacy_allocators_do_write() {
    // The 2010 behaviour: allocating threads write dirty victims themselves.
    let (probe, cache) = stream_through_direct_reclaim(Policy::Legacy, 2000);
    let ev = cache.stats().events;
    assert!(
        probe.writes_in_allocation() > 100,
        "{}",
        probe.writes_in_allocation()
    );
    assert!(ev.direct_reclaim_writes > 100);
    assert!(ev.alloc_stack_peak_bytes > 0);
}

#[test]
fn invariant_2_dirty_victims_are_flagged_and_freed_on_completion() {
    let (probe, cache) = stream_through_direct_reclaim(Policy::Offload, 1000);
    let ev = cache.stats().events;
    assert!(ev.pgreclaim_flagged > 0, "{ev:?}");
    assert!(ev.flush_reason_reclaim > 0, "{ev:?}");
    assert!(ev.pgreclaim_freed_on_writeback > 0, "{ev:?}");
    assert_eq!(probe.writes_in_allocation(), 0);
}

/// Dirties every frame of a `frames`-frame cache over a backend whose writes
/// block, then reads other pages: a reader whose every victim is dirty or
/// under writeback. The writes are let through after a while.
/// Returns (read errors, stats events).
fn read_with_every_frame_dirty(policy: Policy) -> (u64, pagecache::Events) {
    let frames = 32u64;
    let cache = PageCache::new(
        Config::new(frames as usize * PS)
            .policy(policy)
            .dirty_ratio(100)
            .dirty_background_ratio(99)
            .background_reclaim(false),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    file.set_len(frames * 4 * PS as u64).unwrap();
    probe.close_gate();
    for i in 0..frames {
        file.write_at(&page_bytes(PS, i, 1), i * PS as u64).unwrap();
    }
    let st = cache.stats();
    assert_eq!(st.dirty + st.writeback, frames as usize, "{st:?}");
    let mut errors = 0;
    std::thread::scope(|s| {
        // Under no-throttle nothing would wait for the gate: keep it shut.
        if policy != Policy::NoThrottle {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                probe.open_gate();
            });
        }
        let mut buf = vec![0; PS];
        for i in frames * 2..frames * 3 {
            match file.read_at(&mut buf, i * PS as u64) {
                Ok(n) => assert_eq!(n, PS),
                Err(Error::NoCleanFrame) => errors += 1,
                Err(e) => panic!("{e}"),
            }
        }
    });
    probe.open_gate();
    file.sync().unwrap();
    let mut buf = vec![0; PS];
    for i in 0..frames {
        file.read_at(&mut buf, i * PS as u64).unwrap();
        assert_eq!(buf, page_bytes(PS, i, 1), "page {i}");
    }
    (errors, cache.stats().events)
}

#[test]
fn invariant_3_all_dirty_and_stalled_backend_waits_then_succeeds() {
    let (errors, ev) = read_with_every_frame_dirty(Policy::Offload);
    assert_eq!(errors, 0);
    assert!(ev.reclaim_throttle_events > 0, "{ev:?}");
    assert_eq!(ev.oom_errors, 0);
}

#[test]
fn no_throttle_fails_where_offload_waits() {
    let (errors, ev) = read_with_every_frame_dirty(Policy::NoThrottle);
    assert!(errors > 0, "{ev:?}");
    assert_eq!(ev.oom_errors, errors);
    assert_eq!(ev.reclaim_throttle_events, 0);
}

#[test]
fn invariant_3_oom_only_when_every_frame_is_pinned() {
    let frames = 16u64;
    let cache = PageCache::new(Config::new(frames as usize * PS)).unwrap();
    let file = cache.open_backend(pagecache::MemBackend::new()).unwrap();
    file.set_len(frames * 4 * PS as u64).unwrap();
    let mut guards = Vec::new();
    // Pin all but one frame: allocation still succeeds by reusing it.
    for i in 0..frames - 1 {
        guards.push(file.page(i).unwrap());
    }
    for i in frames..frames + 8 {
        drop(file.page(i).unwrap());
    }
    assert_eq!(cache.stats().events.oom_errors, 0);
    guards.push(file.page(frames - 1).unwrap());
    match file.page(frames * 2) {
        Err(Error::OutOfMemory { frames: f, pinned }) => {
            assert_eq!(f, frames as usize);
            assert_eq!(pinned, frames as usize);
        }
        other => panic!("expected OutOfMemory, got {:?}", other.map(|g| g.index())),
    }
    assert_eq!(cache.stats().events.oom_errors, 1);
    guards.pop();
    assert!(
        file.page(frames * 2).is_ok(),
        "one unpinned frame is enough"
    );
}

#[test]
fn invariant_6_contiguous_dirty_pages_are_coalesced() {
    let max_io = 256 * 1024;
    let cache = PageCache::new(
        Config::new(8 << 20)
            .max_io(max_io)
            .dirty_ratio(90)
            .dirty_background_ratio(80)
            .dirty_expire(Duration::from_secs(600)),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    let n = 1024u64;
    // Dirty in a scattered order: writeback must still sort.
    let mut order: Vec<u64> = (0..n).collect();
    let mut rng = Rng(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for &i in &order {
        file.write_at(&page_bytes(PS, i, 0), i * PS as u64).unwrap();
    }
    let before = probe.writes();
    file.sync().unwrap();
    let ios = probe.writes() - before;
    let ideal = n * PS as u64 / max_io as u64;
    assert!(
        ios <= ideal + 2,
        "{ios} writes for {n} pages (ideal {ideal})"
    );
    assert!(
        probe
            .calls
            .max_write
            .load(std::sync::atomic::Ordering::Relaxed)
            <= max_io as u64
    );
    assert_eq!(probe.mem.contents().len() as u64, n * PS as u64);
}

#[test]
fn readers_and_writers_see_whole_page_versions() {
    // Each write replaces a whole page with a version stamped in every 8-byte
    // word; a reader must never see two versions mixed in one page.
    let cache = Arc::new(PageCache::new(Config::new(32 * PS)).unwrap());
    let file = cache.open_backend(pagecache::MemBackend::new()).unwrap();
    let pages = 96u64;
    for i in 0..pages {
        file.write_at(&[0u8; PS], i * PS as u64).unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let file = file.clone();
            s.spawn(move || {
                let mut rng = Rng(t + 99);
                for v in 1..3000u64 {
                    let i = rng.below(pages);
                    let word = (v << 8 | t).to_le_bytes();
                    let page: Vec<u8> = word.iter().copied().cycle().take(PS).collect();
                    file.write_at(&page, i * PS as u64).unwrap();
                }
            });
        }
        for t in 0..2u64 {
            let file = file.clone();
            s.spawn(move || {
                let mut rng = Rng(t + 7);
                let mut buf = vec![0u8; PS];
                for _ in 0..6000 {
                    let i = rng.below(pages);
                    assert_eq!(file.read_at(&mut buf, i * PS as u64).unwrap(), PS);
                    let first = &buf[..8];
                    assert!(buf.chunks(8).all(|w| w == first), "torn page {i}");
                }
            });
        }
    });
    file.sync().unwrap();
}

#[test]
fn a_write_cut_short_by_memory_reports_what_landed() {
    let frames = 16u64;
    let cache = PageCache::new(
        Config::new(frames as usize * PS)
            .policy(Policy::NoThrottle)
            .background_reclaim(false),
    )
    .unwrap();
    let disk = pagecache::FaultBackend::new();
    let file = cache.open_backend(disk.clone()).unwrap();
    file.set_len(frames * PS as u64).unwrap();
    let guards: Vec<_> = (0..frames - 1).map(|i| file.page(i).unwrap()).collect();
    // A flusher could clean the first page and hand its frame to the
    // second: with writes held, it stays dirty or under writeback.
    disk.hold_writes();
    // One frame left: the first page lands, the second finds nothing clean.
    let data = vec![9u8; 3 * PS];
    let at = 100 * PS as u64;
    assert_eq!(file.write_at(&data, at).unwrap(), PS);
    assert!(matches!(
        file.write_at(&data[PS..], at + PS as u64),
        Err(Error::NoCleanFrame)
    ));
    drop(guards);
    disk.release_writes();
    let mut buf = vec![0u8; PS];
    file.read_exact_at(&mut buf, at).unwrap();
    assert_eq!(buf, vec![9u8; PS]);
    assert_eq!(file.len(), at + PS as u64);
}
