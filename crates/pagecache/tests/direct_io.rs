//! The budget is the only memory holding a file's pages: `PageCache::open`
//! reads and writes with `O_DIRECT`, so the kernel's page cache stays empty
//! of the file (measured with `mincore` on a mapping of it), and a file
//! system that refuses `O_DIRECT` is counted, not hidden.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use pagecache::{Backend, Config, FileBackend, PageCache};

const BUDGET: usize = 4 << 20;
/// Four times the budget, plus a last page the size clips.
const FILE_LEN: usize = 4 * BUDGET + 100;
/// Kernel pages a file may keep cached: the clipped last page and some slack
/// for a page read or written around it.
const NEAR_ZERO: usize = 8;

/// A directory on the disk the build is on (a tmpfs `/tmp` would keep every
/// file in kernel memory whatever the flags).
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn byte_at(pos: usize) -> u8 {
    (pos % 251) as u8
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(byte_at).collect()
}

/// Pages of `path` resident in the kernel's page cache.
fn kernel_resident_pages(path: &Path) -> usize {
    let f = File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    if len == 0 {
        return 0;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: a fresh read-only shared mapping of an open file; nothing
    // touches its memory, so mapping it faults no page in.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(addr, libc::MAP_FAILED, "mmap of {}", path.display());
    // SAFETY: `addr..addr + len` is the mapping made above; `vec` has one
    // byte per page of it.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(addr, len) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// Writes the test file through the kernel, then drops it from the kernel's
/// cache, so it starts cold.
fn make_cold_file(path: &Path) {
    std::fs::write(path, pattern(0, FILE_LEN)).unwrap();
    let f = File::open(path).unwrap();
    f.sync_all().unwrap();
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let left = kernel_resident_pages(path);
    assert!(
        left <= NEAR_ZERO,
        "the file stayed in the kernel's cache ({left} pages): the test cannot measure"
    );
}

/// Reads the whole file through `file` in 64 KiB steps and checks it.
fn scan(file: &pagecache::File) {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = 0;
    while pos < FILE_LEN {
        let n = file.read_at(&mut buf, pos as u64).unwrap();
        assert!(n > 0, "early end of file at {pos}");
        assert!(buf[..n] == pattern(pos, n)[..], "wrong bytes at {pos}");
        pos += n;
    }
}

fn cold_file() -> (tempfile::TempDir, PathBuf) {
    let dir = disk_dir();
    let path = dir.path().join("scanned");
    make_cold_file(&path);
    (dir, path)
}

#[test]
fn a_scan_4x_the_budget_leaves_the_kernel_cache_empty() {
    let (_dir, path) = cold_file();
    let cache = PageCache::new(Config::new(BUDGET)).unwrap();
    let file = cache.open(&path).unwrap();
    scan(&file);
    let stats = cache.stats();
    assert_eq!(
        stats.events.direct_io_fallbacks, 0,
        "the build's disk refused O_DIRECT"
    );
    assert!(
        stats.events.pages_readahead > stats.events.pages_read / 2,
        "the scan was not read ahead: {stats:?}"
    );
    let resident = kernel_resident_pages(&path);
    assert!(
        resident <= NEAR_ZERO,
        "{resident} pages of the scanned file sit in the kernel's cache"
    );
}

#[test]
fn a_buffered_backend_fills_the_kernel_cache_so_the_measure_can_fail() {
    let (_dir, path) = cold_file();
    let cache = PageCache::new(Config::new(BUDGET)).unwrap();
    let backend = FileBackend::open_buffered(&path, false).unwrap();
    assert!(!backend.is_direct() && !backend.direct_io_fallback());
    let file = cache.open_backend(backend).unwrap();
    scan(&file);
    assert_eq!(
        cache.stats().events.direct_io_fallbacks,
        0,
        "buffered by choice is no fallback"
    );
    let resident = kernel_resident_pages(&path);
    assert!(
        resident > FILE_LEN / 4096 / 2,
        "a buffered scan cached only {resident} kernel pages"
    );
}

/// Writes `len` bytes of the pattern through a cache of `page_size` pages,
/// syncs, and checks the kernel holds nearly none of them and the disk all.
fn write_and_sync(page_size: usize, len: usize) {
    let dir = disk_dir();
    let path = dir.path().join("written");
    let cache = PageCache::new(Config::new(BUDGET).page_size(page_size)).unwrap();
    let file = cache.create(&path).unwrap();
    let mut pos = 0;
    // An odd step, so writes straddle pages.
    let step = 40_000;
    while pos < len {
        let n = step.min(len - pos);
        assert_eq!(file.write_at(&pattern(pos, n), pos as u64).unwrap(), n);
        pos += n;
    }
    file.sync().unwrap();
    let resident = kernel_resident_pages(&path);
    assert!(
        resident <= NEAR_ZERO,
        "page size {page_size}: {resident} pages of the written file sit in the kernel's cache"
    );
    // Read back through the cache (evicted pages come from disk), then
    // through the kernel.
    let mut back = vec![0u8; len];
    file.read_exact_at(&mut back, 0).unwrap();
    assert!(
        back == pattern(0, len),
        "page size {page_size}: the cache read back wrong bytes"
    );
    drop(file);
    cache.shutdown().unwrap();
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), len);
    assert!(
        on_disk == pattern(0, len),
        "page size {page_size}: wrong bytes on disk"
    );
}

#[test]
fn writing_and_syncing_leaves_the_kernel_cache_empty() {
    write_and_sync(4096, FILE_LEN);
}

#[test]
fn pages_smaller_or_larger_than_a_block_still_read_and_write_right() {
    write_and_sync(512, BUDGET + 777);
    write_and_sync(16384, FILE_LEN);
}

#[test]
fn a_file_system_without_direct_io_falls_back_and_is_counted() {
    let shm = Path::new("/dev/shm");
    assert!(shm.is_dir(), "this test needs a tmpfs at /dev/shm");
    let dir = tempfile::tempdir_in(shm).unwrap();
    let path = dir.path().join("f");
    let backend = FileBackend::open(&path, true).unwrap();
    assert!(!backend.is_direct());
    assert!(backend.direct_io_fallback());
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let file = cache
        .open_options()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    file.write_at(b"through the kernel", 4000).unwrap();
    file.sync().unwrap();
    let mut buf = [0u8; 18];
    file.read_exact_at(&mut buf, 4000).unwrap();
    assert_eq!(&buf, b"through the kernel");
    assert_eq!(cache.stats().events.direct_io_fallbacks, 1);
    let on_disk = cache
        .open_backend(FileBackend::open_buffered(&path, false).unwrap())
        .unwrap();
    assert_eq!(on_disk.len(), 4018);
    assert_eq!(
        cache.stats().events.direct_io_fallbacks,
        1,
        "a buffered choice is not counted"
    );
}

/// (address, length) of each buffer, per vectored read.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<Vec<(usize, usize)>>>>;

/// Records the buffers each vectored read is given.
#[derive(Clone)]
struct BufferProbe {
    mem: pagecache::MemBackend,
    calls: Seen,
}

impl Backend for BufferProbe {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.read_vectored_at(&mut [std::io::IoSliceMut::new(buf)], offset)
    }
    fn read_vectored_at(
        &self,
        bufs: &mut [std::io::IoSliceMut<'_>],
        offset: u64,
    ) -> std::io::Result<usize> {
        let seen = bufs
            .iter()
            .map(|b| (b.as_ptr() as usize, b.len()))
            .collect();
        self.calls.lock().unwrap().push(seen);
        let mut done = 0;
        for b in bufs.iter_mut() {
            let n = self.mem.read_at(b, offset + done as u64)?;
            done += n;
            if n < b.len() {
                break;
            }
        }
        Ok(done)
    }
    fn write_vectored_at(
        &self,
        bufs: &[std::io::IoSlice<'_>],
        offset: u64,
    ) -> std::io::Result<usize> {
        self.mem.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.mem.sync()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.mem.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.mem.set_len(len)
    }
}

const PS: usize = 4096;

/// Reads 256 pages one by one through a cache over the backend `wrap`
/// makes of a recording one; returns the buffers the backend was given.
fn scan_recorded<B: Backend>(wrap: impl FnOnce(BufferProbe) -> B) -> Vec<Vec<(usize, usize)>> {
    let len = 256 * PS;
    let probe = BufferProbe {
        mem: pagecache::MemBackend::with_contents(pattern(0, len)),
        calls: Default::default(),
    };
    let calls = probe.calls.clone();
    // Room for the whole file, so no window is cut short.
    let cache = PageCache::new(Config::new(1024 * PS)).unwrap();
    let file = cache.open_backend(wrap(probe)).unwrap();
    let mut buf = vec![0u8; PS];
    for pos in (0..len).step_by(PS) {
        file.read_exact_at(&mut buf, pos as u64).unwrap();
        assert!(buf == pattern(pos, PS), "wrong bytes at {pos}");
    }
    let seen = calls.lock().unwrap().clone();
    seen
}

#[test]
fn readahead_reads_into_the_frames_themselves() {
    let calls = scan_recorded(|probe| probe);
    let widest = calls.iter().map(Vec::len).max().unwrap();
    assert!(
        widest >= 8,
        "no readahead window of several frames: {widest}"
    );
    // Windows of 4, 8, .. 64 pages over 256: 8 reads when each missing page
    // travels with its window, 16 when it is read on its own first.
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    assert!(
        sizes.len() <= 9,
        "{} reads for 8 windows: {sizes:?}",
        sizes.len()
    );
    for (addr, n) in calls.iter().flatten() {
        // A bounce buffer would show as one buffer of the window's length.
        assert_eq!(*n, PS, "a buffer that is not one frame");
        assert_eq!(addr % PS, 0, "a buffer not page-aligned");
    }
}

/// Implements only `read_at`, recording each buffer it is given.
struct ReadAtProbe(BufferProbe);

impl Backend for ReadAtProbe {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let seen = vec![(buf.as_ptr() as usize, buf.len())];
        self.0.calls.lock().unwrap().push(seen);
        self.0.mem.read_at(buf, offset)
    }
    fn write_vectored_at(
        &self,
        bufs: &[std::io::IoSlice<'_>],
        offset: u64,
    ) -> std::io::Result<usize> {
        self.0.write_vectored_at(bufs, offset)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.0.sync()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
}

#[test]
fn a_read_at_backend_gets_one_aligned_read_per_window() {
    let calls = scan_recorded(ReadAtProbe);
    let widest = calls.iter().flatten().map(|&(_, n)| n).max().unwrap();
    assert!(
        widest >= 8 * PS,
        "no window read in one call: widest {widest}"
    );
    for (addr, _) in calls.iter().flatten() {
        // An O_DIRECT `read_at` can take the buffer.
        assert_eq!(addr % PS, 0, "a buffer not 4096-aligned");
    }
}

#[test]
fn unaligned_requests_work_and_leave_no_kernel_copies_after_sync() {
    let dir = disk_dir();
    let path = dir.path().join("odd");
    let backend = FileBackend::open(&path, true).unwrap();
    assert!(backend.is_direct(), "the build's disk refused O_DIRECT");
    // An odd offset and length: O_DIRECT cannot take them.
    let len = 64 * 1024 + 3;
    let data = pattern(3, len);
    let mut done = 0;
    while done < len {
        let slices = [std::io::IoSlice::new(&data[done..])];
        done += backend.write_vectored_at(&slices, 3 + done as u64).unwrap();
    }
    let mut back = vec![0u8; len];
    assert_eq!(backend.read_at(&mut back, 3).unwrap(), len);
    assert!(back == data, "unaligned read-back differs");
    backend.sync().unwrap();
    let resident = kernel_resident_pages(&path);
    assert!(
        resident <= NEAR_ZERO,
        "{resident} pages written through the buffered descriptor stayed cached after sync"
    );
}
