//! Hints: asynchronous prefetch, dropping a range, readahead modes,
//! insertion without activation, residency.

mod common;

use std::io::{self, IoSlice};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{page_bytes, ProbeBackend};
use pagecache::{Advice, Backend, Config, Error, MemBackend, PageCache};

const PS: usize = 4096;

fn contents(pages: u64) -> Vec<u8> {
    (0..pages).flat_map(|i| page_bytes(PS, i, 5)).collect()
}

fn probe(pages: u64) -> ProbeBackend {
    ProbeBackend {
        mem: MemBackend::with_contents(contents(pages)),
        calls: Default::default(),
    }
}

/// Reads block while the gate is closed.
#[derive(Clone)]
struct GatedReads {
    mem: MemBackend,
    closed: Arc<(Mutex<bool>, Condvar)>,
}

impl GatedReads {
    fn open(&self) {
        *self.closed.0.lock().unwrap() = false;
        self.closed.1.notify_all();
    }
}

impl Backend for GatedReads {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut closed = self.closed.0.lock().unwrap();
        while *closed {
            closed = self.closed.1.wait(closed).unwrap();
        }
        drop(closed);
        self.mem.read_at(buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.mem.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.mem.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mem.set_len(len)
    }
}

fn wait_resident(file: &pagecache::File, range: std::ops::Range<u64>) -> Vec<bool> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = file.is_resident(range.clone()).unwrap();
        if r.iter().all(|&x| x) || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn will_need_returns_before_the_read_and_the_range_arrives() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let backend = GatedReads {
        mem: MemBackend::with_contents(contents(64)),
        closed: Arc::new((Mutex::new(true), Condvar::new())),
    };
    let file = cache.open_backend(backend.clone()).unwrap();
    let (tx, rx) = mpsc::channel();
    let f2 = file.clone();
    let caller = std::thread::spawn(move || {
        let r = f2.prefetch(0..64 * PS as u64);
        tx.send(r.is_ok()).unwrap();
    });
    // Every backend read is blocked: a prefetch that read in the caller's
    // thread would not return until the gate opens.
    let returned = rx.recv_timeout(Duration::from_secs(20));
    backend.open();
    caller.join().unwrap();
    assert_eq!(returned, Ok(true), "prefetch waited for the backend");
    let resident = wait_resident(&file, 0..64 * PS as u64);
    assert_eq!(resident, vec![true; 64]);
    let before = cache.stats().events;
    let mut buf = vec![0u8; PS];
    for i in 0..64 {
        file.read_exact_at(&mut buf, i * PS as u64).unwrap();
        assert_eq!(buf, page_bytes(PS, i, 5), "page {i}");
    }
    let ev = cache.stats().events.since(&before);
    assert_eq!(ev.misses, 0, "{ev:?}");
}

#[test]
fn dont_need_writes_dirty_pages_then_drops_them() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let mem = MemBackend::new();
    let file = cache.open_backend(mem.clone()).unwrap();
    let data = contents(16);
    file.write_at(&data, 0).unwrap();
    // Dropping alone never writes: dirty pages stay.
    assert_eq!(file.evict(0..16 * PS as u64).unwrap(), 0);
    assert_eq!(file.is_resident(0..16 * PS as u64).unwrap(), vec![true; 16]);

    file.advise(0..8 * PS as u64, Advice::DontNeed).unwrap();
    let resident = file.is_resident(0..16 * PS as u64).unwrap();
    assert_eq!(&resident[..8], &[false; 8], "{resident:?}");
    assert_eq!(&resident[8..], &[true; 8], "{resident:?}");
    assert_eq!(&mem.contents()[..8 * PS], &data[..8 * PS]);
    assert_eq!(cache.stats().dirty, 8);
    // The dropped pages read back from the backend.
    let mut buf = vec![0u8; 16 * PS];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data);
}

#[test]
fn evict_drops_clean_unpinned_pages_only() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let p = probe(16);
    let file = cache.open_backend(p.clone()).unwrap();
    let mut buf = vec![0u8; 16 * PS];
    file.read_exact_at(&mut buf, 0).unwrap();
    let free_before = cache.stats().free;
    let pinned = file.page(3).unwrap();
    assert_eq!(file.evict(0..16 * PS as u64).unwrap(), 15);
    let mut want = vec![false; 16];
    want[3] = true;
    assert_eq!(file.is_resident(0..16 * PS as u64).unwrap(), want);
    assert_eq!(cache.stats().free, free_before + 15);
    assert_eq!(&pinned[..], &page_bytes(PS, 3, 5)[..]);
    drop(pinned);
    let reads = p.reads();
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, contents(16));
    assert!(p.reads() > reads, "evicted pages were not read again");
}

#[test]
fn is_resident_covers_the_range_up_to_the_end_of_file() {
    let cache = PageCache::new(Config::new(256 * PS)).unwrap();
    let file = cache.open_backend(probe(4)).unwrap();
    assert_eq!(file.is_resident(0..u64::MAX).unwrap(), vec![false; 4]);
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, PS as u64 + 7).unwrap();
    let r = file.is_resident(PS as u64 + 1..2 * PS as u64 + 1).unwrap();
    assert_eq!(r.len(), 2);
    assert!(r[0], "{r:?}");
    assert!(file.is_resident(0..0).unwrap().is_empty());
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 10..5;
    for res in [
        file.is_resident(backwards.clone()).err(),
        file.evict(backwards.clone()).err(),
        file.advise(backwards, Advice::WillNeed).err(),
    ] {
        assert!(
            matches!(res, Some(Error::InvalidArgument(ref m)) if m.contains("ends before it starts")),
            "{res:?}"
        );
    }
}

#[test]
fn random_advice_turns_readahead_off_and_normal_back_on() {
    let cache = PageCache::new(Config::new(1024 * PS)).unwrap();
    let p = probe(256);
    let file = cache.open_backend(p.clone()).unwrap();
    file.advise(0..0, Advice::Random).unwrap();
    let mut buf = vec![0u8; PS];
    for i in 0..128 {
        file.read_exact_at(&mut buf, i * PS as u64).unwrap();
    }
    let ev = cache.stats().events;
    assert_eq!(ev.pages_readahead, 0, "{ev:?}");
    assert_eq!(p.reads(), 128);
    file.advise(0..0, Advice::Normal).unwrap();
    for i in 128..256 {
        file.read_exact_at(&mut buf, i * PS as u64).unwrap();
        assert_eq!(buf, page_bytes(PS, i, 5));
    }
    assert!(cache.stats().events.pages_readahead > 64);
}

#[test]
fn sequential_advice_reads_the_largest_window_from_any_miss() {
    let misses_ahead = |advice: Option<Advice>| {
        let cache = PageCache::new(Config::new(1024 * PS)).unwrap();
        let file = cache.open_backend(probe(1024)).unwrap();
        if let Some(a) = advice {
            file.advise(0..0, a).unwrap();
        }
        let mut buf = vec![0u8; PS];
        file.read_exact_at(&mut buf, 500 * PS as u64).unwrap();
        cache.stats().events.pages_readahead
    };
    // A lone miss in the middle reads one page by default...
    assert_eq!(misses_ahead(None), 0);
    // ...and twice the default window (2 × 256 KiB) when sequential.
    assert_eq!(misses_ahead(Some(Advice::Sequential)), 2 * 64 - 1);
}

#[test]
fn no_reuse_pages_are_never_promoted() {
    let activations = |no_reuse: bool| {
        let cache = PageCache::new(Config::new(64 * PS)).unwrap();
        let file = cache.open_backend(probe(512)).unwrap();
        if no_reuse {
            file.advise(0..0, Advice::NoReuse).unwrap();
        }
        let mut buf = vec![0u8; PS];
        for i in 0..512 {
            for _ in 0..3 {
                file.read_exact_at(&mut buf, i * PS as u64).unwrap();
            }
            assert_eq!(buf, page_bytes(PS, i, 5));
        }
        cache.stats().events.pgactivate
    };
    // Pages used three times each are promoted by default: the measure can
    // fail.
    assert!(activations(false) > 0);
    assert_eq!(activations(true), 0);
}
