//! The `tracing` feature: events on slow paths, none on the hit path.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::ProbeBackend;
use pagecache::{Config, PageCache};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const PS: usize = 4096;

/// Counts the crate's events: all of them, and the dirty throttle's.
#[derive(Default)]
struct Count {
    events: AtomicU64,
    dirty_throttle: AtomicU64,
    spans: AtomicU64,
}

struct Counter(Arc<Count>);

impl Subscriber for Counter {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "pagecache"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1 + self.0.spans.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        self.0.events.fetch_add(1, Ordering::Relaxed);
        if e.metadata().file().is_some_and(|f| f.ends_with("dirty.rs")) {
            self.0.dirty_throttle.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn dirty_throttle_pauses_are_traced_and_hits_are_not() {
    let count = Arc::new(Count::default());
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let probe = ProbeBackend::new().with_delay(Duration::from_millis(1));
    let file = cache.open_backend(probe).unwrap();
    tracing::subscriber::with_default(Counter(count.clone()), || {
        for i in 0..600u64 {
            file.write_at(&[1u8; PS], i * PS as u64).unwrap();
        }
    });
    let paced = cache.thread_stats().dirty_throttle_events;
    assert!(paced > 0, "the writer was never paced");
    // One event per pause or wait at the limit, on the dirtying thread.
    assert_eq!(count.dirty_throttle.load(Ordering::Relaxed), paced);
    assert!(count.spans.load(Ordering::Relaxed) > 0);

    file.sync().unwrap();
    let mut buf = vec![0u8; PS];
    file.read_at(&mut buf, 0).unwrap();
    let hits = Arc::new(Count::default());
    tracing::subscriber::with_default(Counter(hits.clone()), || {
        for _ in 0..10_000 {
            file.read_at(&mut buf, 0).unwrap();
        }
    });
    assert_eq!(hits.events.load(Ordering::Relaxed), 0);
    assert_eq!(hits.spans.load(Ordering::Relaxed), 0);
}
