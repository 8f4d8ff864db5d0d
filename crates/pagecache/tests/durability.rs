//! "No acknowledged byte lost" when the device's flush fails (fsyncgate):
//! a completed write is unstable until a backend sync succeeds, a failed
//! sync re-dirties it, and the next good sync makes it durable. The
//! `FaultBackend` here drops everything not yet durable when a sync fails,
//! as a real device may.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{errno, page, wait_for, write_pages};
use pagecache::{Config, Error, FaultBackend, File, PageCache, Policy};

const PS: usize = common::PAGE;

/// Write, fail the sync (the device drops what was not durable), sync again:
/// `Ok`, and the durable image is every acknowledged byte.
#[test]
fn a_failed_sync_loses_nothing_once_a_later_sync_succeeds() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    let data = write_pages(&f, 1, 0..16);
    disk.fail_syncs(1, FaultBackend::EIO);
    assert_eq!(errno(f.sync()), Some(FaultBackend::EIO));
    assert_eq!(disk.stats().failed_syncs, 1);
    // (A flusher may already be rewriting the pages the failure re-dirtied.)
    assert_eq!(errno(f.sync()), None, "the retry succeeds");
    assert_eq!(disk.durable(), data, "every acknowledged byte is durable");
    assert_eq!(cache.stats().dirty + cache.stats().unstable, 0);
}

/// The same through `PageCache::sync_all`, which must report the failed
/// backend sync instead of `Ok`.
#[test]
fn sync_all_reports_a_failed_backend_sync() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    let data = write_pages(&f, 2, 0..8);
    disk.fail_syncs(1, FaultBackend::EIO);
    let err = cache.sync_all().expect_err("a failed sync is an error");
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(FaultBackend::EIO),
        "{err}"
    );
    cache.sync_all().unwrap();
    assert_eq!(disk.durable(), data);
}

/// Written pages stay resident and counted until a sync makes them durable:
/// under memory pressure (a file 4× the budget) with syncs failing, the cache
/// must not evict a page whose write a failed sync may have dropped.
#[test]
fn unstable_pages_are_not_evicted_before_a_sync_covers_them() {
    let frames = 64;
    let cache = PageCache::new(
        Config::new(frames * PS)
            .dirty_expire(Duration::from_millis(5))
            .dirty_writeback_interval(Duration::from_millis(5)),
    )
    .unwrap();
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    // The first syncs fail, including the flushers' own commits, each one
    // dropping what the device had not made durable.
    disk.fail_syncs(6, FaultBackend::EIO);
    let data = write_pages(&f, 3, 0..(4 * frames as u64));
    let mut result = f.sync();
    for _ in 0..10 {
        if result.is_ok() {
            break;
        }
        result = f.sync();
    }
    result.unwrap();
    assert_eq!(disk.stats().failed_syncs, 6, "every injected failure hit");
    assert_eq!(disk.durable(), data, "no acknowledged byte lost");
    let s = cache.stats();
    assert!(s.events.commits > 0 && s.events.commit_errors > 0, "{s}");
}

/// Without a sync from the user, flushers commit unstable pages themselves
/// (expiry), so they do not stay undurable, and the count is visible.
#[test]
fn flushers_commit_unstable_pages() {
    let cache = PageCache::new(
        Config::new(64 * PS)
            .dirty_expire(Duration::from_millis(5))
            .dirty_writeback_interval(Duration::from_millis(5)),
    )
    .unwrap();
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    let data = write_pages(&f, 4, 0..8);
    wait_for("flushers to commit", || disk.durable() == data);
    wait_for("pages to be stable", || {
        let s = cache.stats();
        s.dirty + s.writeback + s.unstable == 0
    });
    assert!(cache.stats().events.pages_committed >= 8);
}

/// After `shutdown`, writes and syncs fail with `Shutdown` instead of being
/// acknowledged and dropped; reads of resident pages still work.
#[test]
fn writes_after_shutdown_fail() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    let data = write_pages(&f, 5, 0..2);
    let other = cache.clone();
    cache.shutdown().unwrap();
    assert_eq!(disk.durable(), data, "shutdown wrote everything");
    assert!(matches!(f.write_at(b"x", 0), Err(Error::Shutdown)));
    assert!(matches!(f.page_mut(0), Err(Error::Shutdown)));
    assert!(matches!(f.set_len(1), Err(Error::Shutdown)));
    assert!(matches!(f.sync(), Err(Error::Shutdown)));
    assert!(matches!(other.sync_all(), Err(Error::Shutdown)));
    let mut buf = vec![0u8; PS];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data[..PS]);
    assert_eq!(disk.durable(), data, "nothing changed after shutdown");
}

/// Writers racing `shutdown`: every write that returned `Ok` is durable.
#[test]
fn writes_racing_shutdown_are_durable_or_refused() {
    for round in 0..20u64 {
        let cache = PageCache::new(Config::new(64 * PS)).unwrap();
        let disk = FaultBackend::new();
        let f = cache.open_backend(disk.clone()).unwrap();
        let writer = {
            let f = f.clone();
            thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..200u64 {
                    let p = page(round << 32 | i);
                    match f.write_at(&p, (i % 32) * PS as u64) {
                        Ok(_) => acked.push((i % 32, p)),
                        Err(Error::Shutdown) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                acked
            })
        };
        thread::sleep(Duration::from_micros(200 * (round % 5)));
        cache.shutdown().unwrap();
        let acked = writer.join().unwrap();
        let durable = disk.durable();
        let mut last = std::collections::HashMap::new();
        for (i, p) in acked {
            last.insert(i, p);
        }
        for (i, p) in last {
            let at = i as usize * PS;
            assert_eq!(&durable[at..at + PS], &p[..], "round {round} page {i}");
        }
    }
}

/// Runs `f` on a thread and fails if it does not finish in time.
fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("deadlock: {what} did not finish"))
}

/// A writer of page 3 waits for a `page()` guard on it, and holds the
/// frame's write lock while it waits. The guard's holder reading the page
/// again (`page`, `read_at`) and syncing it must not wait for that writer,
/// and the writer must not change the bytes while the guard lives.
#[test]
fn a_guard_holder_rereads_and_syncs_its_page_while_a_writer_waits() {
    for round in 0..20u64 {
        let cache = PageCache::new(Config::new(64 * PS)).unwrap();
        let f = cache.open_backend(pagecache::MemBackend::new()).unwrap();
        f.write_at(&vec![7u8; 8 * PS], 0).unwrap();
        let (a, b) = (f.clone(), f.clone());
        finishes("a guard holder vs a waiting writer", move || {
            a.write_at(&vec![7u8; PS], 3 * PS as u64).unwrap();
            let g = a.page(3).unwrap();
            let writer = thread::spawn(move || b.write_at(&vec![9u8; PS], 3 * PS as u64).unwrap());
            thread::sleep(Duration::from_micros(200 + round * 100));
            let again = a.page(3).unwrap();
            let mut buf = vec![0u8; PS];
            assert_eq!(a.read_at(&mut buf, 3 * PS as u64).unwrap(), PS);
            a.sync().unwrap();
            for bytes in [&g[..], &again[..], &buf[..]] {
                assert!(
                    bytes.iter().all(|&x| x == 7),
                    "a writer changed a held page"
                );
            }
            drop(again);
            assert!(!writer.is_finished(), "a writer went past a page guard");
            drop(g);
            writer.join().unwrap();
        });
        let mut buf = vec![0u8; PS];
        f.read_at(&mut buf, 3 * PS as u64).unwrap();
        assert!(buf.iter().all(|&x| x == 9));
    }
}

/// Thread A holds a guard on page 5 and writes page 2; thread B truncates
/// into page 5. B must not hold `resize` while waiting for page 5, or A
/// (waiting for `resize`) and B wait for each other forever.
#[test]
fn guard_and_write_against_set_len_do_not_deadlock() {
    for round in 0..50 {
        let cache = PageCache::new(Config::new(64 * PS)).unwrap();
        let f = cache.open_backend(pagecache::MemBackend::new()).unwrap();
        f.write_at(&vec![7u8; 8 * PS], 0).unwrap();
        let (a, b) = (f.clone(), f.clone());
        finishes("guard + write_at vs set_len", move || {
            let (held_tx, held_rx) = mpsc::channel();
            let ta = thread::spawn(move || {
                let g = a.page(5).unwrap();
                held_tx.send(()).unwrap();
                thread::sleep(Duration::from_micros(round * 20));
                a.write_at(&[1u8; 100], 2 * PS as u64).unwrap();
                drop(g);
            });
            held_rx.recv().unwrap();
            let tb = thread::spawn(move || b.set_len(5 * PS as u64 + 100).unwrap());
            ta.join().unwrap();
            tb.join().unwrap();
        });
        assert_eq!(f.len(), 5 * PS as u64 + 100);
        let mut buf = vec![0u8; PS];
        let n = f.read_at(&mut buf, 5 * PS as u64).unwrap();
        assert_eq!(n, 100);
        assert!(buf[..100].iter().all(|&b| b == 7));
    }
}

/// The same cycle with a third party syncing: C holds `resize` shared and
/// waits for A's write guard; B (set_len) queues for `resize` exclusively;
/// A writes another page. With a fair lock, A must still get `resize`.
#[test]
fn guard_write_set_len_and_sync_do_not_deadlock() {
    for round in 0..30 {
        let cache = PageCache::new(Config::new(64 * PS)).unwrap();
        let f = cache.open_backend(pagecache::MemBackend::new()).unwrap();
        f.write_at(&vec![7u8; 8 * PS], 0).unwrap();
        f.sync().unwrap();
        let (a, b, c) = (f.clone(), f.clone(), f.reopen());
        finishes("guard + write_at vs set_len vs sync", move || {
            let (held_tx, held_rx) = mpsc::channel();
            let ta = thread::spawn(move || {
                let mut g = a.page_mut(5).unwrap();
                g[0] = 9;
                held_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(2 + round % 3));
                a.write_at(&[1u8; 100], 2 * PS as u64).unwrap();
                drop(g);
            });
            held_rx.recv().unwrap();
            let tc = thread::spawn(move || c.sync().unwrap());
            thread::sleep(Duration::from_micros(300));
            let tb = thread::spawn(move || b.set_len(5 * PS as u64 + 100).unwrap());
            ta.join().unwrap();
            tb.join().unwrap();
            tc.join().unwrap();
        });
        f.sync().unwrap();
    }
}

/// Legacy reclaim writes pages from allocating threads while other threads
/// truncate and rewrite files (frames are freed and reused all the time):
/// every file must read back exactly what was last written to it.
#[test]
fn legacy_pageout_never_writes_a_reused_frame_to_the_wrong_file() {
    let cache = PageCache::new(
        Config::new(32 * PS)
            .policy(Policy::Legacy)
            .dirty_ratio(90)
            .dirty_background_ratio(80),
    )
    .unwrap();
    let disks: Vec<FaultBackend> = (0..3).map(|_| FaultBackend::new()).collect();
    let files: Vec<File> = disks
        .iter()
        .map(|d| cache.open_backend(d.clone()).unwrap())
        .collect();
    let workers: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let f = f.clone();
            thread::spawn(move || {
                let mut model = vec![0u8; 48 * PS];
                for step in 0..600u64 {
                    let i = (step * 7 + k as u64 * 13) % 48;
                    let p = page((k as u64) << 40 | step);
                    f.write_at(&p, i * PS as u64).unwrap();
                    model[i as usize * PS..(i as usize + 1) * PS].copy_from_slice(&p);
                    if step % 97 == 0 {
                        let keep = 24 * PS;
                        f.set_len(keep as u64).unwrap();
                        model[keep..].fill(0);
                        f.set_len(48 * PS as u64).unwrap();
                    }
                }
                f.sync().unwrap();
                model
            })
        })
        .collect();
    for (k, w) in workers.into_iter().enumerate() {
        let model = w.join().unwrap();
        let durable = disks[k].durable();
        assert_eq!(durable.len(), model.len());
        assert!(durable == model, "file {k} differs from what was written");
    }
    assert!(
        cache.stats().events.direct_reclaim_writes + cache.stats().events.background_reclaim_writes
            > 0,
        "reclaim never wrote: the test did not exercise pageout"
    );
}
