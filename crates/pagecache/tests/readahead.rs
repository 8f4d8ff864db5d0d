//! A sequential reader gets its pages in large reads; a random one does not.

mod common;

use common::{page_bytes, ProbeBackend, Rng};
use std::os::unix::fs::FileExt;

use pagecache::{Config, MemBackend, PageCache};

const PS: usize = 4096;
const PAGES: u64 = 1024;

fn backend() -> ProbeBackend {
    let mut bytes = Vec::with_capacity(PAGES as usize * PS);
    for i in 0..PAGES {
        bytes.extend_from_slice(&page_bytes(PS, i, 3));
    }
    ProbeBackend {
        mem: MemBackend::with_contents(bytes),
        calls: Default::default(),
    }
}

#[test]
fn a_sequential_scan_is_read_in_large_windows() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let probe = backend();
    let file = cache.open_backend(probe.clone()).unwrap();
    let mut buf = vec![0u8; PS];
    for i in 0..PAGES {
        file.read_exact_at(&mut buf, i * PS as u64).unwrap();
        assert_eq!(buf, page_bytes(PS, i, 3), "page {i}");
    }
    let ev = cache.stats().events;
    // Readahead stops when free frames run low (the background reclaimer
    // refills them), so not every page comes in ahead.
    assert!(ev.pages_readahead > PAGES / 2, "{ev:?}");
    assert!(probe.reads() < PAGES / 4, "{} reads", probe.reads());
    // Each page was accessed once: scan resistance means none is promoted.
    assert_eq!(ev.pgactivate, 0, "{ev:?}");
}

#[test]
fn random_reads_do_not_read_ahead() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let probe = backend();
    let file = cache.open_backend(probe.clone()).unwrap();
    let mut buf = vec![0u8; PS];
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let i = rng.below(PAGES - 1) + 1;
        file.read_exact_at(&mut buf, i * PS as u64).unwrap();
        assert_eq!(buf, page_bytes(PS, i, 3), "page {i}");
    }
    let ev = cache.stats().events;
    assert!(ev.pages_readahead < ev.misses / 10, "{ev:?}");
}

/// Hits record nothing for readahead (threads sharing an open would bounce
/// that state between cores on every hit), so an open that comes to a miss
/// through pages someone else cached must still be seen as sequential, by
/// the cached run behind the miss.
#[test]
fn a_reader_coming_through_cached_pages_reads_ahead_at_its_first_miss() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let probe = backend();
    let writer = cache.open_backend(probe.clone()).unwrap();
    // Whole-page writes of the same bytes: cached without a read.
    for i in 0..64 {
        writer
            .write_all_at(&page_bytes(PS, i, 3), i * PS as u64)
            .unwrap();
    }
    assert_eq!(probe.reads(), 0);
    let reader = writer.reopen();
    let mut buf = vec![0u8; PS];
    let start = cache.stats().events;
    for i in 0..64 {
        reader.read_exact_at(&mut buf, i * PS as u64).unwrap();
    }
    let before = cache.stats().events;
    assert_eq!(before.since(&start).misses, 0, "{before:?}");
    reader.read_exact_at(&mut buf, 64 * PS as u64).unwrap();
    assert_eq!(buf, page_bytes(PS, 64, 3));
    let ev = cache.stats().events.since(&before);
    assert!(
        ev.pages_readahead > 0,
        "the first miss read nothing ahead: {ev:?}"
    );
    assert_eq!(probe.reads(), 1, "one read for the page and its window");
}
