//! Regression tests: each of these failed before the fix it names
//! (orphans freed with their unstable state, sync holding pages under
//! writeback while it waits, the background threshold checked before a
//! write, sync_all/shutdown under the caller's own guard, a write
//! acknowledged after shutdown's final write-back).

mod common;

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::poll_until;

use pagecache::{Backend, Config, MemBackend, PageCache};

/// The background kick is decided on the dirty count *before* a write
/// dirties its pages, and nothing else ever looks at the threshold: one
/// write that crosses it is never written back (until `dirty_expire`).
#[test]
fn one_large_write_past_the_background_threshold_is_written_back() {
    const PS: usize = 4096;
    let frames = 256;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_background_ratio(10)
            .dirty_ratio(50)
            .dirty_expire(Duration::from_secs(3600)),
    )
    .unwrap();
    let file = cache.open_backend(MemBackend::new()).unwrap();
    // 40 pages in one call: well over the background threshold (25),
    // under freerun (76), so no pacing either.
    file.write_at(&vec![1u8; 40 * PS], 0).unwrap();
    assert!(
        poll_until(Duration::from_secs(3), || cache.stats().dirty
            <= frames * 10 / 100),
        "{}",
        cache.stats()
    );
}

/// Same bug with single-page writes (what `background_threshold_starts_
/// writeback_without_sync` does): the write that takes the count from 25
/// to 26 does not kick, so a writer that stops there leaves the cache
/// above the threshold for good.
#[test]
fn single_page_writes_ending_one_above_the_threshold_are_written_back() {
    const PS: usize = 4096;
    let frames = 256;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_background_ratio(10)
            .dirty_ratio(50)
            .dirty_expire(Duration::from_secs(3600)),
    )
    .unwrap();
    let file = cache.open_backend(MemBackend::new()).unwrap();
    for i in 0..26u64 {
        file.write_at(&[1u8; PS], i * PS as u64).unwrap();
    }
    assert!(
        poll_until(Duration::from_secs(3), || cache.stats().dirty
            <= frames * 10 / 100),
        "{}",
        cache.stats()
    );
}

/// `PageCache::sync_all` (and `shutdown`) from a thread holding a write
/// guard waits forever for that guard's frame lock (`File::sync` refuses
/// with WouldDeadlock; these do not check).
#[test]
fn sync_all_with_a_held_write_guard_does_not_hang() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cache = PageCache::new(Config::new(1 << 20)).unwrap();
        let file = cache.open_backend(MemBackend::new()).unwrap();
        let mut g = file.page_mut(0).unwrap();
        g[0] = 7;
        let r = cache.sync_all();
        let _ = tx.send(format!("{r:?}"));
        drop(g);
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let got = got.expect("sync_all hung on the caller's own write guard");
    assert!(got.contains("WouldDeadlock"), "{got}");
}

#[test]
fn shutdown_with_a_held_write_guard_does_not_hang() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let cache = PageCache::new(Config::new(1 << 20)).unwrap();
        let file = cache.open_backend(MemBackend::new()).unwrap();
        let mut g = file.page_mut(0).unwrap();
        g[0] = 7;
        let r = cache.shutdown();
        let _ = tx.send(format!("{r:?}"));
        drop(g);
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let got = got.expect("shutdown hung on the caller's own write guard");
    assert!(got.contains("WouldDeadlock"), "{got}");
}

/// A backend whose `sync` blocks while its gate is closed.
#[derive(Clone, Default)]
struct SyncGate {
    mem: MemBackend,
    closed: Arc<(Mutex<bool>, Condvar)>,
    in_sync: Arc<AtomicBool>,
}

impl Backend for SyncGate {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.mem.read_at(buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.mem.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.in_sync.store(true, Ordering::SeqCst);
        let (m, cv) = &*self.closed;
        let mut c = m.lock().unwrap();
        while *c {
            c = cv.wait(c).unwrap();
        }
        self.in_sync.store(false, Ordering::SeqCst);
        self.mem.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.mem.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mem.set_len(len)
    }
}

/// `drop_pages_from` sets ORPHAN on every truncated page first and clears
/// UNSTABLE (`commit::forget`) only after the whole loop; meanwhile the last
/// unpin of a guard (or reclaim meeting the orphan) frees the frame with
/// `try_free_orphan`, which does not look at UNSTABLE. The flag is wiped by
/// the CAS to FREE, `forget` then finds nothing to clear, and `nr_unstable`
/// keeps the page forever (it counts as dirty memory in the throttle).
#[test]
fn truncating_unstable_pages_under_guards_keeps_nr_unstable_exact() {
    const PS: usize = 512;
    const N: usize = 20_000;
    let cache = PageCache::new(
        Config::new((N + 4096) * PS)
            .page_size(PS)
            .dirty_background_ratio(90)
            .dirty_ratio(95)
            .dirty_expire(Duration::from_secs(3600)),
    )
    .unwrap();
    for round in 0..20 {
        let be = SyncGate::default();
        *be.closed.0.lock().unwrap() = true;
        let file = cache.open_backend(be.clone()).unwrap();
        file.write_at(&vec![3u8; N * PS], 0).unwrap();
        // All pages written, the commit stuck in the backend sync: UNSTABLE.
        let syncer = {
            let f = file.clone();
            std::thread::spawn(move || f.sync())
        };
        assert!(poll_until(Duration::from_secs(20), || be
            .in_sync
            .load(Ordering::SeqCst)));
        // (A flusher's periodic commit may be the one stuck, with the
        // sync's writes still landing.)
        assert!(
            poll_until(Duration::from_secs(20), || cache.stats().unstable == N),
            "round {round}: {}",
            cache.stats()
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let holder = {
            let f = file.clone();
            std::thread::spawn(move || {
                let guards: Vec<_> = (0..N as u64)
                    .step_by(N / 200)
                    .map(|i| f.page(i).unwrap())
                    .collect();
                ready_tx.send(()).unwrap();
                while !f.is_empty() {
                    std::hint::spin_loop();
                }
                // Let go one by one while set_len walks the pages.
                for g in guards {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(10) {}
                    drop(g);
                }
            })
        };
        ready_rx.recv().unwrap();
        file.set_len(0).unwrap();
        holder.join().unwrap();
        {
            let (m, cv) = &*be.closed;
            *m.lock().unwrap() = false;
            cv.notify_all();
        }
        syncer.join().unwrap().unwrap();
        let s = cache.stats();
        assert_eq!(s.unstable, 0, "round {round}: nr_unstable drifted: {s}");
        assert_eq!(s.dirty, 0, "round {round}: {s}");
    }
}

/// A backend whose reads can be slowed down.
#[derive(Clone, Default)]
struct SlowRead {
    mem: MemBackend,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Backend for SlowRead {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let d = self.delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
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

/// `Owner::stop` skips draining `resize` of a mapping the stopping thread
/// holds any guard on (even a read guard). A write to that mapping that
/// passed its `closing` check before shutdown began, and is still reading
/// its partial page in, lands after `sync_all` collected the dirty pages:
/// `shutdown` returns Ok, then the write returns Ok, and its bytes never
/// reach the backend ("after shutdown no write is acknowledged").
#[test]
fn shutdown_while_holding_a_read_guard_does_not_lose_a_racing_write() {
    const PS: usize = 4096;
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let be = SlowRead::default();
    be.mem
        .write_vectored_at(&[IoSlice::new(&vec![1u8; 8 * PS])], 0)
        .unwrap();
    let file = cache.open_backend(be.clone()).unwrap();
    let g = file.page(0).unwrap();
    be.delay_ms.store(500, Ordering::SeqCst);
    let writer = {
        let f = file.clone();
        std::thread::spawn(move || f.write_at(&[9u8; 10], 5 * PS as u64 + 1))
    };
    std::thread::sleep(Duration::from_millis(100));
    let stopped = cache.shutdown();
    drop(g);
    let wrote = writer.join().unwrap();
    if let (Ok(()), Ok(10)) = (&stopped, &wrote) {
        let mut back = [0u8; 10];
        be.mem.read_at(&mut back, 5 * PS as u64 + 1).unwrap();
        assert_eq!(back, [9u8; 10], "write acknowledged after shutdown, lost");
    }
}

/// `write_indexes` (sync mode) moves page 0 to WRITEBACK and keeps it in
/// an unsubmitted run while it blocks (read_recursive) on page 1's lock,
/// held by a write guard. The guard's owner then writes page 0:
/// `lock_for_write` waits for WRITEBACK to clear, which needs the run to be
/// submitted, which needs the guard dropped. Neither thread moves.
#[test]
fn sync_blocked_on_a_write_guard_does_not_hold_other_pages_in_writeback() {
    const PS: usize = 4096;
    let cache =
        PageCache::new(Config::new(1 << 20).dirty_expire(Duration::from_secs(3600))).unwrap();
    let file = cache.open_backend(MemBackend::new()).unwrap();
    file.write_at(&[1u8; 2 * PS], 0).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let f1 = file.clone();
    std::thread::spawn(move || {
        let mut g = f1.page_mut(1).unwrap();
        g[0] = 2;
        ready_tx.send(()).unwrap();
        // Let the syncer get to page 1.
        std::thread::sleep(Duration::from_millis(300));
        let r = f1.write_at(&[3u8; 10], 0);
        drop(g);
        let _ = done_tx.send(format!("{r:?}"));
    });
    ready_rx.recv().unwrap();
    let f2 = file.clone();
    std::thread::spawn(move || {
        let _ = f2.sync();
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "write guard holder and sync deadlocked"
    );
}
