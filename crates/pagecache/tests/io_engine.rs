//! Which engine issues writeback: io_uring for backends that give a
//! descriptor (`FileBackend` with `O_DIRECT`), blocking threads where the
//! configuration turns io_uring off or a backend gives none; every path
//! lands the same bytes.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use pagecache::{Backend, Config, IoEngine, MemBackend, PageCache};

const PAGE: usize = 4096;
const BUDGET: usize = 2 << 20;

/// A directory on the disk the build is on: a tmpfs `/tmp` refuses
/// `O_DIRECT`, and a buffered `FileBackend` has no descriptor for the ring.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn byte(page: usize, round: usize) -> u8 {
    ((page * 7 + round * 13) % 251) as u8
}

/// Writes `pages` pages out of order (twice, the second round over every
/// third page), syncs, and checks the file on disk against what was written.
fn write_and_check(cache: &PageCache, path: &Path, pages: usize) {
    let f = cache.create(path).unwrap();
    let mut expect = vec![0u8; pages * PAGE];
    for round in 0..2 {
        for k in 0..pages {
            let p = (k * 37) % pages;
            if round == 1 && p % 3 != 0 {
                continue;
            }
            let buf = vec![byte(p, round); PAGE];
            f.write_at(&buf, (p * PAGE) as u64).unwrap();
            expect[p * PAGE..(p + 1) * PAGE].copy_from_slice(&buf);
        }
    }
    f.sync().unwrap();
    assert!(
        std::fs::read(path).unwrap() == expect,
        "the file differs from what was written"
    );
}

/// A cache on which io_uring is in use, or `None` (with a message) where
/// the kernel refuses it.
fn ring_cache(cfg: Config) -> Option<PageCache> {
    let cache = PageCache::new(cfg).unwrap();
    if cache.stats().io_engine != IoEngine::IoUring {
        eprintln!(
            "skipped: the kernel refused io_uring (io_uring_disabled, seccomp or an old kernel)"
        );
        return None;
    }
    Some(cache)
}

#[test]
fn file_backends_write_through_io_uring_where_the_kernel_allows() {
    let Some(cache) = ring_cache(Config::new(BUDGET)) else {
        return;
    };
    let dir = disk_dir();
    // Four times the budget: reclaim and the flushers write most of it
    // while the writer goes on, the final sync the rest.
    write_and_check(&cache, &dir.path().join("f"), 4 * BUDGET / PAGE);
    let e = cache.stats().events;
    assert!(e.writeback_ios > 0);
    if cache.stats().events.direct_io_fallbacks > 0 {
        eprintln!("skipped the engine check: the file system refused O_DIRECT");
        return;
    }
    assert_eq!(
        e.writeback_uring_ios, e.writeback_ios,
        "every write of an O_DIRECT file went through the ring"
    );
}

#[test]
fn turning_io_uring_off_falls_back_to_threads() {
    let cache = PageCache::new(Config::new(BUDGET).io_uring(false)).unwrap();
    assert_eq!(cache.stats().io_engine, IoEngine::Threads);
    assert!(cache.stats().to_string().lines().any(|l| l == "io_uring 0"));
    let dir = disk_dir();
    write_and_check(&cache, &dir.path().join("f"), 4 * BUDGET / PAGE);
    let e = cache.stats().events;
    assert!(e.writeback_ios > 0);
    assert_eq!(e.writeback_uring_ios, 0, "no write went through a ring");
}

#[test]
fn a_user_backend_without_a_descriptor_is_written_by_threads() {
    let Some(cache) = ring_cache(Config::new(BUDGET)) else {
        return;
    };
    assert!(cache.stats().to_string().lines().any(|l| l == "io_uring 1"));
    let mem = MemBackend::new();
    let f = cache.open_backend(mem.clone()).unwrap();
    let pages = 4 * BUDGET / PAGE;
    for p in (0..pages).rev() {
        f.write_at(&[byte(p, 0); PAGE], (p * PAGE) as u64).unwrap();
    }
    f.sync().unwrap();
    let mut buf = vec![0u8; PAGE];
    for p in 0..pages {
        mem.read_at(&mut buf, (p * PAGE) as u64).unwrap();
        assert!(buf.iter().all(|&b| b == byte(p, 0)), "page {p}");
    }
    let e = cache.stats().events;
    assert!(e.writeback_ios > 0);
    assert_eq!(e.writeback_uring_ios, 0);
}

/// Gives the ring a read-only descriptor: every asynchronous write fails.
struct ReadOnlyFd {
    rw: File,
    ro: File,
}

impl Backend for ReadOnlyFd {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.rw, buf, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        Ok(rustix::io::pwritev(&self.rw, bufs, offset)?)
    }
    fn async_write_fd(&self, _: &[IoSlice<'_>], _: u64) -> Option<BorrowedFd<'_>> {
        Some(self.ro.as_fd())
    }
    fn sync(&self) -> io::Result<()> {
        self.rw.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.rw.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.rw.set_len(len)
    }
}

#[test]
fn a_failed_asynchronous_write_is_reported_and_its_pages_stay_dirty() {
    let Some(cache) = ring_cache(Config::new(BUDGET)) else {
        return;
    };
    let dir = disk_dir();
    let path = dir.path().join("f");
    let rw = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let ro = File::open(&path).unwrap();
    let f = cache.open_backend(ReadOnlyFd { rw, ro }).unwrap();
    f.write_at(&[1u8; 4 * PAGE], 0).unwrap();
    let err = f.sync().unwrap_err();
    assert!(err.to_string().contains("Bad file descriptor"), "{err}");
    let s = cache.stats();
    assert_eq!(
        s.dirty + s.writeback,
        4,
        "the pages stay dirty for a retry (or are being retried)"
    );
    assert!(s.events.writeback_errors > 0);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"",
        "nothing reached the file"
    );
}
