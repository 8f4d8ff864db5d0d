//! Writeback faults (DESIGN §4 invariants 4 and 7) through [`FaultBackend`]:
//! error reporting per open (xfstests generic/441 and generic/487), failed
//! writes kept and retried (PostgreSQL's 2018 fsync lesson), a full disk on
//! one file, and readers of resident pages while writeback is stalled.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use common::{errno, page, wait_for, write_pages};
use pagecache::{Backend, Config, Error, FaultBackend, PageCache};

const PS: usize = common::PAGE;

/// A cache whose flushers write a dirty page within ~10 ms.
fn eager_cache(frames: usize) -> PageCache {
    PageCache::new(
        Config::new(frames * PS)
            .dirty_expire(Duration::from_millis(5))
            .dirty_writeback_interval(Duration::from_millis(5)),
    )
    .unwrap()
}

/// Waits until the flushers have hit `n` injected write errors and finished
/// those writebacks, without any handle syncing.
fn wait_for_background_failures(cache: &PageCache, disk: &FaultBackend, n: u64) {
    wait_for("a background write to fail", || {
        let s = disk.stats();
        s.eio + s.enospc >= n && cache.stats().events.writeback_errors >= n
    });
}

/// generic/441: every open of the file when writeback failed gets the error
/// from its next sync, exactly once; clones share an open and so see it once
/// between them.
#[test]
fn generic_441_every_open_sees_the_error_once() {
    for errno_injected in [FaultBackend::EIO, FaultBackend::ENOSPC] {
        let cache = eager_cache(64);
        let disk = FaultBackend::new();
        let a = cache.open_backend(disk.clone()).unwrap();
        let a_dup = a.clone();
        let b = a.reopen();
        let c = a.reopen();
        write_pages(&a, 1, 0..8);
        a.sync().unwrap();

        disk.fail_writes(1, errno_injected);
        let data = write_pages(&b, 2, 0..8);
        wait_for_background_failures(&cache, &disk, 1);

        assert_eq!(errno(a.sync()), Some(errno_injected), "first open");
        assert_eq!(
            errno(a_dup.sync()),
            None,
            "a clone shares the open's cursor"
        );
        assert_eq!(errno(a.sync()), None, "reported once");
        assert_eq!(errno(b.sync()), Some(errno_injected), "second open");
        assert_eq!(errno(b.sync()), None);
        assert_eq!(errno(c.sync()), Some(errno_injected), "third open");
        assert_eq!(errno(c.sync()), None);
        // Nobody lost anything: the failed pages were retried.
        assert_eq!(disk.durable(), data);
        assert_eq!(cache.stats().dirty, 0);
    }
}

/// generic/487: an open made after the error, before anyone saw it, gets it;
/// one made after it was seen does not.
#[test]
fn generic_487_late_open_sees_an_unseen_error() {
    let cache = eager_cache(64);
    let disk = FaultBackend::new();
    let a = cache.open_backend(disk.clone()).unwrap();
    disk.fail_writes(2, FaultBackend::EIO);
    let data = write_pages(&a, 3, 0..4);
    wait_for_background_failures(&cache, &disk, 1);

    let late = a.reopen();
    assert_eq!(errno(late.sync()), Some(FaultBackend::EIO), "late open");
    assert_eq!(errno(late.sync()), None);
    assert_eq!(errno(a.sync()), Some(FaultBackend::EIO), "original open");
    let later = a.reopen();
    assert_eq!(errno(later.sync()), None, "opened after the error was seen");
    assert_eq!(errno(a.sync()), None);
    assert_eq!(disk.durable(), data);
}

/// PostgreSQL 2018: a failed write must never be forgotten. The page stays
/// dirty, reads return the new data, flushers keep retrying, every sync while
/// the device fails reports it, and once the device recovers a sync succeeds
/// with exactly the written bytes durable.
#[test]
fn failed_writes_are_kept_and_retried_until_durable() {
    let cache = eager_cache(128);
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    let old = write_pages(&f, 4, 0..16);
    f.sync().unwrap();

    disk.set_failing(Some(FaultBackend::EIO));
    let new = write_pages(&f, 5, 0..16);
    assert_eq!(errno(f.sync()), Some(FaultBackend::EIO));
    assert_eq!(cache.stats().dirty, 16, "failed pages stay dirty");
    let failures = disk.stats().eio;
    wait_for("flushers to retry", || disk.stats().eio >= failures + 3);
    assert_eq!(errno(f.sync()), Some(FaultBackend::EIO), "still failing");
    assert_eq!(cache.stats().dirty, 16);
    assert_eq!(disk.durable(), old, "nothing new is durable yet");
    let mut buf = vec![0u8; new.len()];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, new, "the cache still serves the unwritten data");
    // A failed Backend::sync is reported too, and nothing is lost by it.
    disk.set_failing(None);
    disk.fail_syncs(1, FaultBackend::EIO);
    let mut seen = Vec::new();
    for _ in 0..3 {
        match errno(f.sync()) {
            None => break,
            Some(e) => seen.push(e),
        }
    }
    assert!(
        !seen.is_empty() && seen.len() <= 2,
        "sync errors after recovery: {seen:?}"
    );
    assert_eq!(errno(f.sync()), None);
    assert_eq!(disk.durable(), new);
    assert_eq!(cache.stats().dirty, 0);
    disk.power_cut();
    assert_eq!(disk.durable(), new);
    println!("faults injected: {:?}", disk.stats());
}

/// ENOSPC on one file: its writers get errors (at the dirty limit, once the
/// file's writeback has failed without progress), other files' data is
/// neither lost nor corrupted, and everything written is durable once space
/// returns.
#[test]
fn enospc_on_one_file_leaves_others_intact() {
    let cache = eager_cache(256);
    let full = FaultBackend::new();
    let other = FaultBackend::new();
    let ff = cache.open_backend(full.clone()).unwrap();
    let of = cache.open_backend(other.clone()).unwrap();
    full.set_full(true);

    let (tx, rx) = mpsc::channel();
    let writer = {
        let ff = ff.clone();
        thread::spawn(move || {
            let mut model = Vec::new();
            let mut errors = 0;
            for i in 0..400u64 {
                let p = page(100 + i);
                match ff.write_at(&p, i * PS as u64) {
                    Ok(_) => model.extend_from_slice(&p),
                    Err(Error::Writeback { .. }) => {
                        errors += 1;
                        break;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            tx.send(()).unwrap();
            (model, errors)
        })
    };
    let (otx, orx) = mpsc::channel();
    let other_writer = {
        let of = of.clone();
        thread::spawn(move || {
            let mut model = Vec::new();
            for i in 0..300u64 {
                let p = page(1000 + i);
                of.write_at(&p, i * PS as u64).unwrap();
                model.extend_from_slice(&p);
                if i % 50 == 49 {
                    of.sync().unwrap();
                }
            }
            of.sync().unwrap();
            otx.send(()).unwrap();
            model
        })
    };
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the full file's writer never got an error");
    let (full_model, errors) = writer.join().unwrap();
    assert_eq!(errors, 1, "the full file's writer gets an error");
    orx.recv_timeout(Duration::from_secs(60))
        .expect("the full file's dirty pages stopped another file's writer");
    let other_model = other_writer.join().unwrap();
    assert_eq!(other.durable(), other_model, "the other file is intact");
    let mut buf = vec![0u8; other_model.len()];
    of.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, other_model);

    assert_eq!(errno(ff.sync()), Some(FaultBackend::ENOSPC));
    assert!(full.stats().enospc > 0);
    full.set_full(false);
    let _ = ff.sync(); // may report one more failure recorded before recovery
    assert_eq!(errno(ff.sync()), None, "recovers when space returns");
    assert_eq!(
        full.durable(),
        full_model,
        "every accepted write is durable"
    );
    // And it takes new writes again.
    let more = write_pages(&ff, 7, 0..8);
    ff.sync().unwrap();
    assert_eq!(&full.durable()[..more.len()], &more[..]);
}

/// Invariant 4 with a stalled backend: while one file's writeback cannot
/// complete at all, reads of another file's resident clean pages neither
/// miss nor wait in either throttle. Asserted on counts (the reader's own,
/// and the writer's being blocked throughout), not on time.
#[test]
fn reads_of_resident_pages_do_not_wait_for_stalled_writeback() {
    let cache = eager_cache(256);
    let contents: Vec<u8> = (0..64).flat_map(page).collect();
    let rdisk = FaultBackend::with_contents(contents.clone());
    let wdisk = FaultBackend::new();
    let r = cache.open_backend(rdisk).unwrap();
    let w = cache.open_backend(wdisk.clone()).unwrap();
    let mut buf = vec![0u8; contents.len()];
    r.read_exact_at(&mut buf, 0).unwrap(); // resident and clean now

    wdisk.hold_writes();
    let before = cache.stats().events;
    let writer = {
        let w = w.clone();
        thread::spawn(move || write_pages(&w, 9, 0..200))
    };
    wait_for(
        "the writer to be throttled behind stalled writeback",
        || {
            let e = cache.stats().events.since(&before);
            wdisk.blocked_writes() > 0 && e.dirty_throttle_events > 0
        },
    );

    let (tx, rx) = mpsc::channel();
    let reader = {
        let r = r.clone();
        let contents = contents.clone();
        thread::spawn(move || {
            let start = pagecache::thread_stats();
            let mut buf = vec![0u8; PS];
            for round in 0..200u64 {
                for i in 0..64u64 {
                    let i = (i * 7 + round) % 64;
                    r.read_exact_at(&mut buf, i * PS as u64).unwrap();
                    let i = i as usize;
                    assert_eq!(buf, contents[i * PS..(i + 1) * PS]);
                }
            }
            let end = pagecache::thread_stats();
            tx.send(()).unwrap();
            (start, end)
        })
    };
    rx.recv_timeout(Duration::from_secs(60))
        .expect("a reader of resident pages waited on stalled writeback");
    let (start, end) = reader.join().unwrap();
    assert_eq!(end.hits - start.hits, 200 * 64);
    assert_eq!(end.misses, start.misses, "resident pages never miss");
    assert_eq!(end.dirty_throttle_events, start.dirty_throttle_events);
    assert_eq!(end.reclaim_throttle_events, start.reclaim_throttle_events);
    assert!(
        wdisk.blocked_writes() > 0,
        "writeback was stalled throughout"
    );
    assert!(!writer.is_finished(), "the writer was blocked throughout");

    wdisk.release_writes();
    let data = writer.join().unwrap();
    w.sync().unwrap();
    assert_eq!(wdisk.durable(), data);
}

/// Short writes are resubmitted for the rest; delays only slow things down.
#[test]
fn short_and_delayed_writes_lose_nothing() {
    let cache = eager_cache(64);
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    disk.short_writes(20);
    disk.schedule([pagecache::Fault::Delay(Duration::from_millis(2)); 5]);
    let data = write_pages(&f, 11, 0..32);
    f.sync().unwrap();
    assert_eq!(disk.durable(), data);
    assert!(disk.stats().short_writes > 0);
}

/// Wraps a [`FaultBackend`]; while `armed`, the next read (if `on_read`) or
/// write (otherwise) panics, once.
struct Panicky {
    inner: FaultBackend,
    on_read: bool,
    armed: Arc<AtomicBool>,
}

impl Panicky {
    fn maybe_panic(&self, read: bool) {
        if read == self.on_read && self.armed.swap(false, Ordering::AcqRel) {
            panic!("backend bug");
        }
    }
}

impl Backend for Panicky {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.maybe_panic(true);
        self.inner.read_at(buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.maybe_panic(false);
        self.inner.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

/// A backend whose write panics (a bug in user code) costs an error, not a
/// hung cache: the pages stay dirty and a later sync writes them.
#[test]
fn a_panicking_backend_write_is_an_error_not_a_hang() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    let disk = FaultBackend::new();
    let armed = Arc::new(AtomicBool::new(true));
    let f = cache
        .open_backend(Panicky {
            inner: disk.clone(),
            on_read: false,
            armed: armed.clone(),
        })
        .unwrap();
    let data = write_pages(&f, 12, 0..4);
    let (tx, rx) = mpsc::channel();
    let syncer = {
        let f = f.clone();
        thread::spawn(move || {
            let first = f.sync();
            let second = f.sync();
            tx.send(()).unwrap();
            (first.is_err(), second.is_ok())
        })
    };
    rx.recv_timeout(Duration::from_secs(30))
        .expect("sync hung after a backend write panicked");
    assert_eq!(syncer.join().unwrap(), (true, true));
    assert_eq!(disk.durable(), data);
}

/// A backend whose read panics (a bug in user code) fails that read; the
/// page is not left half-made for the next reader to wait on forever.
#[test]
fn a_panicking_backend_read_is_an_error_not_a_hang() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    let contents = page(13);
    let disk = FaultBackend::with_contents(contents.clone());
    let f = cache
        .open_backend(Panicky {
            inner: disk,
            on_read: true,
            armed: Arc::new(AtomicBool::new(true)),
        })
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; PS];
        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f.read_at(&mut buf, 0).map(|_| ())
        }));
        let first_failed = !matches!(first, Ok(Ok(())));
        let second = f.read_exact_at(&mut buf, 0).is_ok();
        tx.send(()).unwrap();
        (first_failed, second, buf)
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a read hung after a backend read panicked");
    let (first_failed, second_ok, buf) = reader.join().unwrap();
    assert!(first_failed && second_ok);
    assert_eq!(buf, contents);
}

/// A failed `Backend::sync` (fsync) is reported like a failed write: once to
/// every open, and nothing written is lost by it.
#[test]
fn a_failed_backend_sync_is_reported_to_every_open_once() {
    let cache = eager_cache(64);
    let disk = FaultBackend::new();
    let a = cache.open_backend(disk.clone()).unwrap();
    let b = a.reopen();
    let data = write_pages(&a, 14, 0..4);
    disk.fail_syncs(1, FaultBackend::EIO);
    assert_eq!(errno(a.sync()), Some(FaultBackend::EIO));
    assert_eq!(disk.durable(), Vec::<u8>::new(), "nothing durable yet");
    assert_eq!(errno(b.sync()), Some(FaultBackend::EIO), "the other open");
    assert_eq!(disk.durable(), data, "b's sync made it durable");
    assert_eq!(errno(b.sync()), None);
    assert_eq!(errno(a.sync()), None);
}

/// generic/441 on a real, full filesystem: a 64 KiB tmpfs, three opens of one
/// path through the cache (two `open`s share the mapping; a clone shares an
/// open). Writeback hits a real ENOSPC; once space returns each open's next
/// sync reports ENOSPC exactly once and the data is all on disk. Needs root
/// (to mount); skipped otherwise unless `PAGECACHE_REQUIRE_SYSTEM_TESTS` is set.
#[test]
fn generic_441_on_a_full_tmpfs() {
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("PAGECACHE_REQUIRE_SYSTEM_TESTS").is_none(),
            "cannot mount a tmpfs"
        );
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return;
    }
    let _mount = Mount(mnt.clone());
    // Fill most of the filesystem; removing this later is "space returns".
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![1u8; 48 << 10]).unwrap();

    let cache = eager_cache(64);
    let path = mnt.join("data");
    let a = cache.create(&path).unwrap();
    let b = cache.open_existing(&path).unwrap();
    let b_dup = b.clone();
    let data = write_pages(&a, 15, 0..8); // 32 KiB into 16 KiB of space
    wait_for("a real ENOSPC in writeback", || {
        cache.stats().events.writeback_errors > 0
    });
    std::fs::remove_file(&ballast).unwrap();

    let enospc = Some(28);
    assert_eq!(errno(a.sync()), enospc, "first open");
    assert_eq!(errno(a.sync()), None, "once");
    assert_eq!(errno(b.sync()), enospc, "second open");
    assert_eq!(errno(b_dup.sync()), None, "a clone shares the open");
    let c = cache.open(&path).unwrap();
    assert_eq!(errno(c.sync()), None, "opened after the error was seen");
    assert_eq!(std::fs::read(&path).unwrap(), data);
    drop((a, b, b_dup, c));
    cache.shutdown().unwrap();
}
