//! A commit (the backend's sync) does not leave the device idle: while the
//! flusher commits a stream's written pages, it writes the next ones, so a
//! writer in a small budget is not held to write-then-sync in turn.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{page_bytes, ProbeBackend};
use pagecache::{Config, PageCache};

const PS: usize = 4096;

#[test]
fn writes_go_on_while_a_commit_runs() {
    let frames = 256;
    // A memory cgroup of 2012: no dirty limit below the budget itself.
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_ratio(100)
            .dirty_background_ratio(99)
            .max_io(16 * PS)
            .background_reclaim(false),
    )
    .unwrap();
    let probe = ProbeBackend::new()
        .with_delay(Duration::from_micros(200))
        .with_sync_delay(Duration::from_millis(3));
    let calls = probe.calls.clone();
    let file = cache.open_backend(probe).unwrap();
    let chunk = 16u64;
    for c in 0..(8 * frames as u64 / chunk) {
        let bytes: Vec<u8> = (c * chunk..(c + 1) * chunk)
            .flat_map(|i| page_bytes(PS, i, 1))
            .collect();
        file.write_at(&bytes, c * chunk * PS as u64).unwrap();
    }
    // Counted before the final sync, which writes what is left while the
    // flusher may still be committing.
    let during = calls.writes_during_sync.load(Ordering::Relaxed);
    let writes = calls.writes.load(Ordering::Relaxed);
    file.sync().unwrap();
    assert!(
        during > 0,
        "no write of {writes} was issued while a commit ran: {:?}",
        cache.stats().events
    );
    let mut buf = vec![0u8; PS];
    for i in [0, 700, 8 * frames as u64 - 1] {
        file.read_at(&mut buf, i * PS as u64).unwrap();
        assert_eq!(buf, page_bytes(PS, i, 1));
    }
}
