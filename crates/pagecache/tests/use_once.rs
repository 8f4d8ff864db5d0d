//! Use-once: pages a streaming writer dirties once stay on the inactive
//! list and are what reclaim takes, while a file read twice stays resident
//! on the active list, however far the stream runs past the budget.

mod common;

use std::time::Duration;

use common::{page_bytes, ProbeBackend};
use pagecache::{Config, MemBackend, PageCache};

const PS: usize = 4096;

#[test]
fn a_streaming_writer_does_not_push_out_a_hot_file() {
    let frames = 256;
    let hot_pages = 96u64;
    // A high dirty limit, as in the record: the stream's pages reach the
    // inactive tail dirty and wait there for slow writes.
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_ratio(90)
            .dirty_background_ratio(80)
            .max_io(16 * PS)
            .io_depth(2),
    )
    .unwrap();
    let hot = cache
        .open_backend(MemBackend::with_contents(vec![
            7u8;
            hot_pages as usize * PS
        ]))
        .unwrap();
    let mut buf = vec![0u8; PS];
    for _ in 0..2 {
        for i in 0..hot_pages {
            hot.read_at(&mut buf, i * PS as u64).unwrap();
        }
    }
    let stream = cache
        .open_backend(ProbeBackend::new().with_delay(Duration::from_millis(2)))
        .unwrap();
    for i in 0..4 * frames as u64 {
        stream
            .write_at(&page_bytes(PS, i, 1), i * PS as u64)
            .unwrap();
    }
    let ev = cache.stats().events;
    assert!(
        ev.pgparked_for_io > 0,
        "the stream's dirty pages must have reached the inactive tail: {ev:?}"
    );
    let before = cache.thread_stats().misses;
    for i in 0..hot_pages {
        hot.read_at(&mut buf, i * PS as u64).unwrap();
        assert!(buf.iter().all(|&b| b == 7));
    }
    let misses = cache.thread_stats().misses - before;
    assert_eq!(
        misses, 0,
        "the stream evicted {misses} of {hot_pages} hot pages: {ev:?}"
    );
}
