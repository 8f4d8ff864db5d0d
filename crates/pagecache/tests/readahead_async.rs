//! Readahead per open, and asynchronous: a marker page submits the next
//! window before the reader needs it, and opens keep their own windows.

mod common;

use std::io::{self, IoSlice};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{page_bytes, Rng};
use pagecache::{Backend, Config, MemBackend, PageCache};

const PS: usize = 4096;
const PAGES: u64 = 1024;

/// A backend that logs every read (offset, length) and holds reads at or
/// past `gate_from` until the gate opens.
#[derive(Clone)]
struct GateBackend {
    mem: MemBackend,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<GateState>,
    cv: Condvar,
}

#[derive(Default)]
struct GateState {
    reads: Vec<(u64, usize)>,
    gate_from: Option<u64>,
}

impl GateBackend {
    fn new() -> Self {
        let mut bytes = Vec::with_capacity(PAGES as usize * PS);
        for i in 0..PAGES {
            bytes.extend_from_slice(&page_bytes(PS, i, 5));
        }
        GateBackend {
            mem: MemBackend::with_contents(bytes),
            shared: Arc::default(),
        }
    }

    fn close_gate_from(&self, offset: u64) {
        self.shared.state.lock().unwrap().gate_from = Some(offset);
    }

    fn open_gate(&self) {
        self.shared.state.lock().unwrap().gate_from = None;
        self.shared.cv.notify_all();
    }

    fn reads(&self) -> Vec<(u64, usize)> {
        self.shared.state.lock().unwrap().reads.clone()
    }

    /// Waits (up to a generous deadline, a hang guard only) until a read at
    /// `offset` has been asked for; returns its length.
    fn wait_for_read_at(&self, offset: u64) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut s = self.shared.state.lock().unwrap();
        loop {
            if let Some(&(_, len)) = s.reads.iter().find(|(o, _)| *o == offset) {
                return Some(len);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            s = self.shared.cv.wait_timeout(s, left).unwrap().0;
        }
    }
}

impl Backend for GateBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = self.shared.state.lock().unwrap();
        s.reads.push((offset, buf.len()));
        self.shared.cv.notify_all();
        while s.gate_from.is_some_and(|g| offset >= g) {
            s = self.shared.cv.wait(s).unwrap();
        }
        drop(s);
        self.mem.read_at(buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.mem.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.mem.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.mem.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mem.set_len(len)
    }
}

fn read_page(file: &pagecache::File, i: u64) {
    let mut buf = vec![0u8; PS];
    file.read_exact_at(&mut buf, i * PS as u64).unwrap();
    assert_eq!(buf, page_bytes(PS, i, 5), "page {i}");
}

#[test]
fn the_marker_submits_the_next_window_before_the_reader_gets_there() {
    let cache = PageCache::new(Config::new(4096 * PS)).unwrap();
    let backend = GateBackend::new();
    let file = cache.open_backend(backend.clone()).unwrap();

    // The first miss reads page 0 and the start of a window in one read.
    read_page(&file, 0);
    let first = backend.reads();
    assert_eq!(first.len(), 1, "{first:?}");
    let first_end = first[0].1 as u64;
    assert!(first_end >= 2 * PS as u64, "{first:?}");
    let ev0 = cache.stats().events;
    assert_eq!(ev0.misses, 1, "{ev0:?}");

    // Hold every read past this window, then read its pages: one of them
    // is the marker, whose access must hand the next window to a
    // background reader and return without waiting for it.
    backend.close_gate_from(first_end);
    for i in 1..first_end / PS as u64 {
        read_page(&file, i);
    }
    let len = backend
        .wait_for_read_at(first_end)
        .expect("the next window was never asked for");
    assert!(len >= 2 * PS, "next window of {len} bytes");
    // Nothing the reader did missed: the window was submitted on the
    // marker, not on a miss.
    assert_eq!(cache.stats().events.misses, 1);
    // Its pages are in the page table (in flight) before the reader
    // arrives, so the reader will wait for that read, not issue its own.
    backend.open_gate();
    for i in first_end / PS as u64..(first_end + len as u64) / PS as u64 {
        read_page(&file, i);
    }
    let ev = cache.stats().events;
    assert_eq!(ev.misses, 1, "{ev:?}");
    assert!(
        !backend
            .reads()
            .iter()
            .any(|&(o, _)| o > first_end && o < first_end + len as u64),
        "a page of the window was read on its own: {:?}",
        backend.reads()
    );
}

#[test]
fn two_opens_interleaved_each_keep_their_window() {
    let cache = PageCache::new(Config::new(4096 * PS)).unwrap();
    let backend = GateBackend::new();
    let a = cache.open_backend(backend.clone()).unwrap();
    let b = a.reopen();
    // One thread, so the interleaving is exact: every miss of one stream
    // falls between misses of the other, which a single per-file window
    // would take for random reads.
    let half = PAGES / 2;
    for i in 0..half {
        read_page(&a, i);
        read_page(&b, half + i);
    }
    let ev = cache.stats().events;
    let reads = backend.reads().len() as u64;
    assert!(ev.pages_readahead >= PAGES - 64, "{ev:?}, {reads} reads");
    assert!(reads < PAGES / 16, "{reads} backend reads: {ev:?}");
    assert_eq!(ev.pgactivate, 0, "{ev:?}");
}

#[test]
fn two_threads_with_their_own_opens_each_get_readahead() {
    let cache = PageCache::new(Config::new(4096 * PS)).unwrap();
    let backend = GateBackend::new();
    let a = cache.open_backend(backend.clone()).unwrap();
    let b = a.reopen();
    let half = PAGES / 2;
    std::thread::scope(|s| {
        s.spawn(|| (0..half).for_each(|i| read_page(&a, i)));
        s.spawn(|| (half..PAGES).for_each(|i| read_page(&b, i)));
    });
    let ev = cache.stats().events;
    let reads = backend.reads().len() as u64;
    // Only a stream's first pages, and a page the reader reached before a
    // background reader took it, are read by the reader's own miss.
    assert!(ev.pages_readahead >= PAGES - 64, "{ev:?}, {reads} reads");
    assert!(reads < PAGES / 8, "{reads} backend reads: {ev:?}");
}

#[test]
fn random_readers_on_several_opens_do_not_read_ahead() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let backend = GateBackend::new();
    let a = cache.open_backend(backend.clone()).unwrap();
    let b = a.reopen();
    std::thread::scope(|s| {
        for (f, seed) in [(&a, 7), (&b, 11)] {
            s.spawn(move || {
                let mut rng = Rng(seed);
                for _ in 0..1500 {
                    read_page(f, rng.below(PAGES - 1) + 1);
                }
            });
        }
    });
    let ev = cache.stats().events;
    assert!(ev.pages_readahead < ev.misses / 10, "{ev:?}");
}

#[test]
fn readahead_max_is_validated() {
    let err = PageCache::new(Config::new(4096 * PS).readahead_max(100))
        .err()
        .unwrap();
    assert!(err.to_string().contains("readahead_max"), "{err}");
    let err = PageCache::new(Config::new(4096 * PS).readahead_max(1 << 30))
        .err()
        .unwrap();
    assert!(err.to_string().contains("readahead_max"), "{err}");
}

#[test]
fn windows_grow_up_to_readahead_max() {
    let cache = PageCache::new(Config::new(4096 * PS).readahead_max(64 * 1024)).unwrap();
    let backend = GateBackend::new();
    let file = cache.open_backend(backend.clone()).unwrap();
    for i in 0..PAGES {
        read_page(&file, i);
    }
    let reads = backend.reads();
    let largest = reads.iter().map(|&(_, l)| l).max().unwrap();
    assert_eq!(largest, 64 * 1024, "{reads:?}");
    // The first windows grow: each read is at least as large as the one
    // before, until the maximum.
    let lens: Vec<usize> = reads.iter().map(|&(_, l)| l).collect();
    let grow = lens.iter().position(|&l| l == largest).unwrap();
    assert!(lens[..=grow].windows(2).all(|w| w[0] <= w[1]), "{lens:?}");
}
