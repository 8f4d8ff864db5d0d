//! Per-thread figures are kept per cache.

use pagecache::{Config, MemBackend, PageCache};

const PS: usize = 4096;

#[test]
fn each_cache_counts_only_its_own_lookups_by_this_thread() {
    let a = PageCache::new(Config::new(64 * PS)).unwrap();
    let b = PageCache::new(Config::new(64 * PS)).unwrap();
    let fa = a
        .open_backend(MemBackend::with_contents(vec![1; 8 * PS]))
        .unwrap();
    let fb = b
        .open_backend(MemBackend::with_contents(vec![2; 8 * PS]))
        .unwrap();
    fa.advise(0..0, pagecache::Advice::Random).unwrap();
    let mut buf = vec![0u8; PS];
    for i in 0..8 {
        fa.read_at(&mut buf, i * PS as u64).unwrap();
    }
    for _ in 0..5 {
        fb.read_at(&mut buf, 0).unwrap();
    }
    let (ta, tb) = (a.thread_stats(), b.thread_stats());
    assert_eq!((ta.hits, ta.misses), (0, 8), "{ta:?}");
    assert_eq!((tb.hits, tb.misses), (4, 1), "{tb:?}");
    // The process-wide figure is the sum over caches.
    let all = pagecache::thread_stats();
    assert!(all.misses >= 9 && all.hits >= 4, "{all:?}");
    // Another thread has figures of its own.
    let other = std::thread::scope(|s| s.spawn(|| a.thread_stats()).join().unwrap());
    assert_eq!(other, pagecache::ThreadStats::default());
}
