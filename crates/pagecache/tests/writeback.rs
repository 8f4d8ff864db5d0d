//! Writeback triggers: `dirty_expire`, the background threshold, `sync_range`.

mod common;

use std::time::Duration;

use common::ProbeBackend;
use pagecache::{Config, PageCache};

const PS: usize = 4096;

fn wait_for(cond: impl FnMut() -> bool) -> bool {
    common::poll_until(Duration::from_secs(20), cond)
}

#[test]
fn expired_dirty_pages_are_written_without_sync() {
    let cache = PageCache::new(
        Config::new(1 << 20)
            .dirty_expire(Duration::from_millis(50))
            .dirty_writeback_interval(Duration::from_millis(10)),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    // Three pages: far below the background threshold.
    file.write_at(&[5u8; 3 * PS], 0).unwrap();
    assert!(wait_for(|| probe.mem.contents() == vec![5u8; 3 * PS]));
    let ev = cache.stats().events;
    assert!(ev.flush_reason_expire > 0, "{ev:?}");
    assert_eq!(ev.flush_reason_background, 0, "{ev:?}");
    assert_eq!(cache.stats().dirty, 0);
}

#[test]
fn background_threshold_starts_writeback_without_sync() {
    let frames = 256;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_background_ratio(10)
            .dirty_ratio(50)
            .dirty_expire(Duration::from_secs(3600)),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    for i in 0..60u64 {
        file.write_at(&[1u8; PS], i * PS as u64).unwrap();
    }
    let drained = wait_for(|| cache.stats().dirty <= frames * 10 / 100);
    assert!(drained, "{}", cache.stats());
    let s = cache.stats();
    assert!(s.events.flush_reason_background > 0, "{s}");
    // Pages leave the dirty count when their write starts, before the
    // I/O thread has run it.
    assert!(wait_for(|| probe.writes() > 0));
}

#[test]
fn sync_range_writes_only_that_range() {
    let cache =
        PageCache::new(Config::new(1 << 20).dirty_expire(Duration::from_secs(3600))).unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    for i in 0..8u64 {
        file.write_at(&[i as u8 + 1; PS], i * PS as u64).unwrap();
    }
    file.sync_range(2 * PS as u64 + 10, PS as u64).unwrap();
    let on_backend = probe.mem.contents();
    assert_eq!(
        on_backend.len(),
        4 * PS,
        "pages 2 and 3 written, nothing after"
    );
    assert!(on_backend[2 * PS..4 * PS].iter().take(PS).all(|&b| b == 3));
    assert!(on_backend[3 * PS..].iter().all(|&b| b == 4));
    assert_eq!(cache.stats().dirty, 6);
    file.sync().unwrap();
    assert_eq!(cache.stats().dirty, 0);
}
