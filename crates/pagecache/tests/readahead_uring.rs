//! Readahead through io_uring: a window submitted on the ring lands the
//! file's bytes, short or refused ring reads are finished through the
//! backend, failed ones leave the reader to read (and fail) itself, and
//! caches or backends without a ring read ahead on the background threads;
//! readahead reclaims clean pages for its windows rather than cut them.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use pagecache::{Backend, Config, Error, FileBackend, IoEngine, MemBackend, PageCache};

const PAGE: usize = 4096;
/// Small enough that a scan of the file has readahead reclaim as it goes.
const BUDGET: usize = 2 << 20;
/// Four budgets and a partial last page.
const FILE_LEN: usize = 4 * BUDGET + 1234;

/// A directory on the disk the build is on: a tmpfs `/tmp` refuses
/// `O_DIRECT`, and a buffered `FileBackend` has no descriptor for the ring.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn contents() -> Vec<u8> {
    (0..FILE_LEN)
        .map(|i| ((i / PAGE) as u8) ^ ((i % 251) as u8))
        .collect()
}

fn make_file(path: &Path) -> Vec<u8> {
    let bytes = contents();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A cache on which io_uring is in use, or `None` (with a message) where
/// the kernel refuses it.
fn ring_cache() -> Option<PageCache> {
    let cache = PageCache::new(Config::new(BUDGET)).unwrap();
    if cache.stats().io_engine != IoEngine::IoUring {
        eprintln!(
            "skipped: the kernel refused io_uring (io_uring_disabled, seccomp or an old kernel)"
        );
        return None;
    }
    Some(cache)
}

/// Scans a file of `contents()` kept in memory (a backend with no
/// descriptor for the ring), checking every page.
fn scan_a_file_in_memory(cache: &PageCache) {
    let expect = contents();
    let f = cache
        .open_backend(MemBackend::with_contents(expect.clone()))
        .unwrap();
    scan_and_check(&f, &expect);
}

/// Reads the whole file in page-sized reads, in order, and compares.
fn scan_and_check(f: &pagecache::File, expect: &[u8]) {
    let mut buf = vec![0u8; PAGE];
    for off in (0..expect.len()).step_by(PAGE) {
        let n = f.read_at(&mut buf, off as u64).unwrap();
        let want = &expect[off..(off + PAGE).min(expect.len())];
        assert_eq!(n, want.len(), "length of the read at {off}");
        assert!(buf[..n] == *want, "bytes of the page at {off}");
    }
}

#[test]
fn ring_readahead_lands_the_files_bytes() {
    let Some(cache) = ring_cache() else {
        return;
    };
    let dir = disk_dir();
    let path = dir.path().join("f");
    let expect = make_file(&path);
    let f = cache.open(&path).unwrap();
    if cache.stats().events.direct_io_fallbacks > 0 {
        eprintln!("skipped: the file system refused O_DIRECT, so there is no ring descriptor");
        return;
    }
    for _ in 0..2 {
        scan_and_check(&f, &expect);
    }
    let e = cache.stats().events;
    assert!(e.readahead_uring_ios > 0, "windows went through the ring");
    assert!(
        e.pages_readahead * 2 > e.pages_read,
        "most pages came from readahead: {} of {}",
        e.pages_readahead,
        e.pages_read
    );
}

#[test]
fn readahead_uses_threads_where_io_uring_is_off() {
    let cache = PageCache::new(Config::new(BUDGET).io_uring(false)).unwrap();
    let dir = disk_dir();
    let path = dir.path().join("f");
    let expect = make_file(&path);
    let f = cache.open(&path).unwrap();
    scan_and_check(&f, &expect);
    let e = cache.stats().events;
    assert_eq!(e.readahead_uring_ios, 0, "no ring to read through");
    assert!(e.pages_readahead * 2 > e.pages_read);
}

#[test]
fn a_backend_without_a_descriptor_reads_ahead_on_threads() {
    let Some(cache) = ring_cache() else {
        return;
    };
    scan_a_file_in_memory(&cache);
    let e = cache.stats().events;
    assert_eq!(e.readahead_uring_ios, 0);
    assert!(e.pages_readahead * 2 > e.pages_read);
}

/// The real file for everything but the ring, which gets `ring_fd`: a
/// descriptor of another file (or of this one opened write-only), so ring
/// reads come up short or fail. Reads through the backend itself that cover
/// the page at `fail_page` fail.
struct OtherRingFd {
    real: FileBackend,
    ring_fd: File,
    fail_page: Option<u64>,
}

impl Backend for OtherRingFd {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_vectored_at(&mut [IoSliceMut::new(buf)], offset)
    }
    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len() as u64).sum::<u64>();
        if self
            .fail_page
            .is_some_and(|p| offset < p + PAGE as u64 && p < offset + len)
        {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.real.read_vectored_at(bufs, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.real.write_vectored_at(bufs, offset)
    }
    fn async_read_fd(&self, _: &[IoSliceMut<'_>], _: u64) -> Option<BorrowedFd<'_>> {
        Some(self.ring_fd.as_fd())
    }
    fn sync(&self) -> io::Result<()> {
        self.real.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.real.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.real.set_len(len)
    }
}

/// What a test of a misbehaving ring descriptor works on.
struct Setup {
    cache: PageCache,
    file: pagecache::File,
    expect: Vec<u8>,
    _dir: tempfile::TempDir,
}

/// A ring cache over the test file through `OtherRingFd`, whose ring
/// descriptor `ring_fd` makes from the directory and the file's path.
fn setup(
    ring_fd: impl FnOnce(&Path, &Path, &[u8]) -> File,
    fail_page: Option<u64>,
) -> Option<Setup> {
    let cache = ring_cache()?;
    let dir = disk_dir();
    let path = dir.path().join("f");
    let expect = make_file(&path);
    let backend = OtherRingFd {
        real: FileBackend::open(&path, false).unwrap(),
        ring_fd: ring_fd(dir.path(), &path, &expect),
        fail_page,
    };
    let file = cache.open_backend(backend).unwrap();
    Some(Setup {
        cache,
        file,
        expect,
        _dir: dir,
    })
}

/// Write-only: every ring read fails with EBADF.
fn write_only(_: &Path, path: &Path, _: &[u8]) -> File {
    std::fs::OpenOptions::new().write(true).open(path).unwrap()
}

#[test]
fn a_short_ring_read_is_finished_through_the_backend() {
    // The ring reads a copy holding only the first budget of the file:
    // past it, its reads come back short (end of that file), which the
    // real file's length says is not the end.
    let short = |dir: &Path, _: &Path, expect: &[u8]| {
        let short = dir.join("short");
        std::fs::write(&short, &expect[..BUDGET]).unwrap();
        File::open(&short).unwrap()
    };
    let Some(s) = setup(short, None) else {
        return;
    };
    scan_and_check(&s.file, &s.expect);
    let e = s.cache.stats().events;
    assert!(e.readahead_uring_ios > 0);
    assert!(e.pages_readahead * 2 > e.pages_read);
}

#[test]
fn a_failed_ring_read_leaves_the_pages_to_the_reader() {
    let Some(s) = setup(write_only, None) else {
        return;
    };
    scan_and_check(&s.file, &s.expect);
    let e = s.cache.stats().events;
    assert!(e.readahead_uring_ios > 0, "windows were tried on the ring");
}

#[test]
fn a_read_error_reaches_the_reader_whose_window_failed_on_the_ring() {
    let bad = (BUDGET / PAGE * PAGE) as u64;
    let Some(s) = setup(write_only, Some(bad)) else {
        return;
    };
    let (f, expect) = (&s.file, &s.expect);
    let mut buf = vec![0u8; PAGE];
    let mut failed_at = None;
    for off in (0..FILE_LEN as u64).step_by(PAGE) {
        match f.read_at(&mut buf, off) {
            Ok(n) => assert!(buf[..n] == expect[off as usize..off as usize + n]),
            Err(e) => {
                failed_at = Some((off, e));
                break;
            }
        }
    }
    assert!(s.cache.stats().events.readahead_uring_ios > 0);
    // The reader reads the bad page itself (alone, or with a window read
    // together with the page it missed), and gets the backend's error.
    let Some((off, Error::Io { source, .. })) = failed_at else {
        panic!("the scan should fail with the backend's EIO: {failed_at:?}");
    };
    assert_eq!(source.raw_os_error(), Some(libc::EIO));
    assert!(off <= bad, "failed at {off}, after the bad page {bad}");
    // Nothing half-made was left behind: the page before reads right.
    f.read_at(&mut buf, 0).unwrap();
    assert!(buf[..] == expect[..PAGE]);
}

/// Refuses, as `preadv` does, a read into more than 1024 buffers.
struct IovMax(MemBackend);

impl Backend for IovMax {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        if bufs.len() > 1024 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut done = 0;
        for b in bufs.iter_mut() {
            let n = self.0.read_at(b, offset + done as u64)?;
            done += n;
            if n < b.len() {
                break;
            }
        }
        Ok(done)
    }
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.0.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[test]
fn a_window_of_more_pages_than_iov_max_is_read_in_several_calls() {
    // `Sequential` reads twice `readahead_max` from the first miss: 2048
    // pages here, past the 1024 buffers one `preadv` takes.
    let cache = PageCache::new(Config::new(64 << 20).readahead_max(4 << 20)).unwrap();
    let len = 12 << 20;
    let expect: Vec<u8> = (0..len)
        .map(|i| (i / PAGE) as u8 ^ (i % 13) as u8)
        .collect();
    let f = cache
        .open_backend(IovMax(MemBackend::with_contents(expect.clone())))
        .unwrap();
    f.advise(0..0, pagecache::Advice::Sequential).unwrap();
    scan_and_check(&f, &expect);
    assert!(cache.stats().events.pages_readahead > 2048);
}

#[test]
fn readahead_reclaims_clean_pages_rather_than_cut_its_window() {
    // No background reclaimer: once the free frames are down to the low
    // watermark, only readahead's own reclaim can make room for a window.
    let cache = PageCache::new(Config::new(BUDGET).background_reclaim(false)).unwrap();
    scan_a_file_in_memory(&cache);
    let e = cache.stats().events;
    assert!(e.pgsteal_background > 0, "readahead freed pages itself");
    assert!(
        e.pages_readahead * 10 > e.pages_read * 9,
        "windows were not cut: {} of {} pages read ahead",
        e.pages_readahead,
        e.pages_read
    );
}
