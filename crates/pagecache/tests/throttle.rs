//! The dirty throttle (invariant 5) and readers not paying for writers
//! (invariant 4).

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{page_bytes, ProbeBackend};
use pagecache::{Config, PageCache};

const PS: usize = 4096;

#[test]
fn dirty_pages_stay_near_the_limit_under_a_fast_writer() {
    let frames = 512;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_ratio(20)
            .dirty_background_ratio(10)
            .max_io(16 * PS)
            .io_depth(1),
    )
    .unwrap();
    let limit = frames * 20 / 100;
    let freerun = (frames * 10 / 100 + limit) / 2;
    // ~16 pages per 4 ms: far slower than a memcpy writer.
    let probe = ProbeBackend::new().with_delay(Duration::from_millis(4));
    let file = cache.open_backend(probe).unwrap();
    let peak = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let st = cache.stats();
                peak.fetch_max(st.dirty + st.writeback, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let file = file.clone();
                s.spawn(move || {
                    for i in 0..600u64 {
                        let index = t * 100_000 + i;
                        file.write_at(&page_bytes(PS, index, 0), index * PS as u64)
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
    let ev = cache.stats().events;
    let peak = peak.load(Ordering::Relaxed);
    // Two writers each dirty at most one page past the check.
    assert!(peak <= limit + 2, "peak {peak} over limit {limit}");
    assert!(
        peak >= freerun,
        "peak {peak} never reached the throttled zone ({freerun})"
    );
    assert!(ev.dirty_throttle_events >= 20, "{ev:?}");
    // Many short pauses, not a few long stalls.
    let mean_ns = ev.dirty_throttle_ns / ev.dirty_throttle_events.max(1);
    assert!(mean_ns < 60_000_000, "mean pause {mean_ns} ns");
}

#[test]
fn readers_of_resident_pages_are_never_dirty_throttled() {
    let frames = 256;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_ratio(20)
            .dirty_background_ratio(10),
    )
    .unwrap();
    let probe = ProbeBackend::new().with_delay(Duration::from_millis(3));
    let hot = cache
        .open_backend(pagecache::MemBackend::with_contents(vec![7u8; 32 * PS]))
        .unwrap();
    let cold = cache.open_backend(probe).unwrap();
    let mut buf = vec![0u8; PS];
    for i in 0..32 {
        hot.read_at(&mut buf, i * PS as u64).unwrap();
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..1500u64 {
                cold.write_at(&[1u8; PS], i * PS as u64).unwrap();
            }
            assert!(cache.thread_stats().dirty_throttle_events > 0);
            stop.store(true, Ordering::Relaxed);
        });
        s.spawn(|| {
            let mut buf = vec![0u8; PS];
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) || reads < 1000 {
                let i = reads % 32;
                hot.read_at(&mut buf, i * PS as u64).unwrap();
                assert!(buf.iter().all(|&b| b == 7));
                reads += 1;
            }
            // The reader dirtied nothing: never paced, never waited for
            // reclaim, and all of its lookups hit.
            let me = cache.thread_stats();
            assert_eq!(me.dirty_throttle_events, 0);
            assert_eq!(me.reclaim_throttle_events, 0);
            assert_eq!(me.misses, 0);
            assert!(me.hits >= 1000);
        });
    });
    let ev = cache.stats().events;
    assert!(
        ev.dirty_throttle_events > 0,
        "the writer must have been paced: {ev:?}"
    );
}

#[test]
fn a_thread_holding_write_guards_past_the_limit_is_paced_not_stopped() {
    // The guards' pages cannot be written while held, so waiting for the
    // dirty count to fall would wait on this thread itself.
    let frames = 64;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_ratio(20)
            .dirty_background_ratio(10),
    )
    .unwrap();
    let file = cache.open_backend(pagecache::MemBackend::new()).unwrap();
    let limit = frames * 20 / 100;
    let guards: Vec<_> = (0..limit as u64 + 4)
        .map(|i| file.page_mut(i).unwrap())
        .collect();
    assert!(cache.stats().dirty > limit);
    file.write_at(b"still moving", 100 * PS as u64).unwrap();
    drop(guards);
    file.sync().unwrap();
    assert_eq!(cache.stats().dirty, 0);
}

#[test]
fn a_dirty_limit_of_the_whole_budget_leaves_full_memory_to_reclaim() {
    // With `dirty_ratio` 100 (a 2012 memory cgroup: no dirty limit of its
    // own) a writer finding every frame dirty is not held at the dirty
    // limit: it goes on to reclaim, which under `no-throttle` fails at once.
    let frames = 32u64;
    let cache = PageCache::new(
        Config::new(frames as usize * PS)
            .policy(pagecache::Policy::NoThrottle)
            .dirty_ratio(100)
            .dirty_background_ratio(99)
            .background_reclaim(false),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    probe.close_gate();
    for i in 0..frames {
        file.write_at(&page_bytes(PS, i, 1), i * PS as u64).unwrap();
    }
    let (result, gate_closed) = std::thread::scope(|s| {
        // Only a writer held somewhere would see the gate open.
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            probe.open_gate();
        });
        let r = file.write_at(&page_bytes(PS, 2 * frames, 1), 2 * frames * PS as u64);
        (r, *probe.calls.gate_closed.lock().unwrap())
    });
    assert!(
        matches!(result, Err(pagecache::Error::NoCleanFrame)),
        "{result:?}"
    );
    assert!(gate_closed, "the writer waited for writeback");
    file.sync().unwrap();
}
