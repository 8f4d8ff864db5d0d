//! What a workload runs against: the library's cache (over direct-I/O files)
//! or the kernel page cache (buffered pread/pwrite), behind one trait.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pagecache::{Backend, PageCache};

use super::block::BLOCK;
use crate::CliError;

/// Why one operation did not complete.
pub enum OpError {
    /// The cache had no frame to give (`OutOfMemory`, `NoCleanFrame`): an
    /// expected result under `no-throttle`, counted and carried on from.
    Oom,
    /// Anything else stops the run.
    Fatal(CliError),
}

impl From<pagecache::Error> for OpError {
    fn from(e: pagecache::Error) -> Self {
        match e {
            pagecache::Error::OutOfMemory { .. } | pagecache::Error::NoCleanFrame => OpError::Oom,
            e => OpError::Fatal(CliError::Cache(e)),
        }
    }
}

/// Event counts a run reports, read before and after it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub hits: u64,
    pub misses: u64,
    pub direct_reclaim_writes: Option<u64>,
    pub writeback_ios: u64,
    pub writeback_bytes: u64,
    pub writeback_active_ns: u64,
    pub throttle_events: Option<u64>,
    pub throttle_ns: Option<u64>,
    pub reclaim_throttle_events: Option<u64>,
    pub dirty_throttle_events: Option<u64>,
    pub oom_errors: Option<u64>,
    pub alloc_stack_peak_bytes: Option<u64>,
}

impl Snapshot {
    /// Counts between `earlier` and `self` (the stack peak is a maximum, kept).
    pub fn since(&self, e: &Snapshot) -> Snapshot {
        let d = |a: Option<u64>, b: Option<u64>| a.map(|a| a.saturating_sub(b.unwrap_or(0)));
        Snapshot {
            hits: self.hits.saturating_sub(e.hits),
            misses: self.misses.saturating_sub(e.misses),
            direct_reclaim_writes: d(self.direct_reclaim_writes, e.direct_reclaim_writes),
            writeback_ios: self.writeback_ios.saturating_sub(e.writeback_ios),
            writeback_bytes: self.writeback_bytes.saturating_sub(e.writeback_bytes),
            writeback_active_ns: self
                .writeback_active_ns
                .saturating_sub(e.writeback_active_ns),
            throttle_events: d(self.throttle_events, e.throttle_events),
            throttle_ns: d(self.throttle_ns, e.throttle_ns),
            reclaim_throttle_events: d(self.reclaim_throttle_events, e.reclaim_throttle_events),
            dirty_throttle_events: d(self.dirty_throttle_events, e.dirty_throttle_events),
            oom_errors: d(self.oom_errors, e.oom_errors),
            alloc_stack_peak_bytes: self.alloc_stack_peak_bytes,
        }
    }
}

/// Pages dirty and under writeback right now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauge {
    pub dirty_pages: u64,
    pub writeback_pages: u64,
}

/// Block-granular access to a run's files.
pub trait Store: Sync {
    /// Reads block `block` of file `file` into `buf`; returns whether it was
    /// a cache hit.
    fn read(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<bool, OpError>;
    /// Writes `buf` as block `block` of file `file`.
    fn write(&self, file: usize, block: u64, buf: &[u8]) -> Result<(), OpError>;
    /// Makes a file durable.
    fn sync(&self, file: usize) -> Result<(), CliError>;
    /// Dirty and writeback pages now.
    fn gauge(&self) -> Gauge;
    /// Event counts so far.
    fn snapshot(&self) -> Snapshot;
    /// Whether writes are page lookups that can hit or miss (not so for the
    /// kernel, whose hits are only told apart on reads).
    fn write_lookups(&self) -> bool {
        true
    }
}

/// A 4096-aligned buffer without `unsafe`: a slice of an over-sized vector.
pub struct AlignedBuf {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes, 4096-aligned.
    pub fn new(len: usize) -> Self {
        let v = vec![0u8; len + 4096];
        let off = v.as_ptr().align_offset(4096).min(4096);
        AlignedBuf { v, off, len }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.v[self.off..self.off + self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.v[self.off..self.off + self.len]
    }
}

fn aligned(ptr: *const u8, len: usize, off: u64) -> bool {
    (ptr as usize) % 4096 == 0 && len % 4096 == 0 && off % 4096 == 0
}

/// Opens `path` with `O_DIRECT` if the filesystem allows it.
pub fn open_direct(path: &Path, create: bool) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// The library's backend for the benchmark: the file opened with `O_DIRECT`,
/// so the cache's budget is the only memory holding its pages (a buffered
/// backend would sit on top of an unlimited kernel page cache). Unaligned
/// requests, which the benchmark does not make, go through a buffered
/// descriptor of the same file.
pub struct DirectBackend {
    direct: Option<File>,
    buffered: File,
}

impl DirectBackend {
    /// Opens an existing file; `Ok(None)`-like fallback to buffered I/O when
    /// the filesystem has no `O_DIRECT` (reported by [`DirectBackend::is_direct`]).
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(DirectBackend {
            direct: open_direct(path, false)?,
            buffered: open_rw(path)?,
        })
    }

    /// Whether reads and writes bypass the kernel page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }
}

impl Backend for DirectBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match &self.direct {
            Some(f) if aligned(buf.as_ptr(), buf.len(), offset) => {
                Ok(rustix::io::pread(f.as_fd(), buf, offset)?)
            }
            _ => Ok(rustix::io::pread(self.buffered.as_fd(), buf, offset)?),
        }
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        pagecache::stack::probe();
        let all_aligned =
            offset % 4096 == 0 && bufs.iter().all(|b| aligned(b.as_ptr(), b.len(), 0));
        match &self.direct {
            Some(f) if all_aligned => Ok(rustix::io::pwritev(f.as_fd(), bufs, offset)?),
            _ => Ok(rustix::io::pwritev(self.buffered.as_fd(), bufs, offset)?),
        }
    }

    fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fdatasync(self.buffered.as_fd())?)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.buffered.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.buffered.set_len(len)
    }
}

/// The library's cache over the run's files.
pub struct CacheStore {
    pub cache: PageCache,
    pub files: Vec<pagecache::File>,
    pub direct: bool,
}

impl CacheStore {
    /// Builds a cache of `memory` bytes under `policy` and opens `paths`.
    pub fn open(
        memory: u64,
        policy: pagecache::Policy,
        paths: &[PathBuf],
    ) -> Result<Self, CliError> {
        let memory = usize::try_from(memory)
            .map_err(|_| CliError::Usage(format!("--memory {memory} does not fit this machine")))?;
        let cache = PageCache::new(pagecache::Config::new(memory).policy(policy))?;
        let mut files = Vec::new();
        let mut direct = true;
        for p in paths {
            let b =
                DirectBackend::open(p).map_err(|e| CliError::io("opening", Some(p.clone()), e))?;
            direct &= b.is_direct();
            files.push(cache.open_backend(b)?);
        }
        Ok(CacheStore {
            cache,
            files,
            direct,
        })
    }
}

impl Store for CacheStore {
    #[inline]
    fn read(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<bool, OpError> {
        let (_, m0) = pagecache::thread_hits_misses();
        let n = self.files[file].read_at(buf, block * BLOCK as u64)?;
        if n != buf.len() {
            return Err(OpError::Fatal(CliError::Check(format!(
                "short read of block {block}: {n} bytes"
            ))));
        }
        let (_, m1) = pagecache::thread_hits_misses();
        Ok(m1 == m0)
    }

    #[inline]
    fn write(&self, file: usize, block: u64, buf: &[u8]) -> Result<(), OpError> {
        self.files[file].write_at(buf, block * BLOCK as u64)?;
        Ok(())
    }

    fn sync(&self, file: usize) -> Result<(), CliError> {
        Ok(self.files[file].sync()?)
    }

    fn gauge(&self) -> Gauge {
        let s = self.cache.stats();
        Gauge {
            dirty_pages: s.dirty as u64,
            writeback_pages: s.writeback as u64,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let e = self.cache.stats().events;
        Snapshot {
            hits: e.hits,
            misses: e.misses,
            direct_reclaim_writes: Some(e.direct_reclaim_writes),
            writeback_ios: e.writeback_ios,
            writeback_bytes: e.writeback_bytes,
            writeback_active_ns: e.writeback_active_ns,
            throttle_events: Some(e.reclaim_throttle_events + e.dirty_throttle_events),
            throttle_ns: Some(e.reclaim_throttle_ns + e.dirty_throttle_ns),
            reclaim_throttle_events: Some(e.reclaim_throttle_events),
            dirty_throttle_events: Some(e.dirty_throttle_events),
            oom_errors: Some(e.oom_errors),
            alloc_stack_peak_bytes: Some(e.alloc_stack_peak_bytes),
        }
    }
}

/// Where the kernel store reads dirty/writeback gauges from.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum GaugeSource {
    /// A cgroup v1 `memory.stat` (`dirty`, `writeback`, bytes).
    CgroupV1(PathBuf),
    /// A cgroup v2 `memory.stat` (`file_dirty`, `file_writeback`, bytes).
    CgroupV2(PathBuf),
    /// `/proc/meminfo` (`Dirty`, `Writeback`, kB): the whole machine.
    Meminfo,
}

/// The kernel page cache: plain buffered pread/pwrite.
pub struct KernelStore {
    files: Vec<File>,
    gauge: GaugeSource,
    device_stat: Option<PathBuf>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
    oom: std::sync::atomic::AtomicU64,
}

impl KernelStore {
    pub fn open(paths: &[PathBuf], gauge: GaugeSource, dir: &Path) -> Result<Self, CliError> {
        let files = paths
            .iter()
            .map(|p| open_rw(p).map_err(|e| CliError::io("opening", Some(p.clone()), e)))
            .collect::<Result<_, _>>()?;
        Ok(KernelStore {
            files,
            gauge,
            device_stat: device_stat_path(dir),
            hits: Default::default(),
            misses: Default::default(),
            oom: Default::default(),
        })
    }
}

fn io_op(e: io::Error, what: &str, block: u64, oom: &std::sync::atomic::AtomicU64) -> OpError {
    if e.raw_os_error() == Some(libc::ENOMEM) {
        oom.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpError::Oom
    } else {
        OpError::Fatal(CliError::io(format!("{what} block {block}"), None, e))
    }
}

impl Store for KernelStore {
    fn read(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<bool, OpError> {
        use std::sync::atomic::Ordering::Relaxed;
        let f = &self.files[file];
        let off = block * BLOCK as u64;
        // RWF_NOWAIT fails with EAGAIN when the page is not cached: that is
        // how a miss is told from a hit; the miss then reads normally.
        let mut hit = true;
        let n = match rustix::io::preadv2(
            f.as_fd(),
            &mut [io::IoSliceMut::new(buf)],
            off,
            rustix::io::ReadWriteFlags::NOWAIT,
        ) {
            Ok(n) if n == BLOCK => n,
            _ => {
                hit = false;
                f.read_at(buf, off)
                    .map_err(|e| io_op(e, "reading", block, &self.oom))?
            }
        };
        if n != buf.len() {
            return Err(OpError::Fatal(CliError::Check(format!(
                "short read of block {block}: {n} bytes"
            ))));
        }
        if hit {
            self.hits.fetch_add(1, Relaxed);
        } else {
            self.misses.fetch_add(1, Relaxed);
        }
        Ok(hit)
    }

    fn write(&self, file: usize, block: u64, buf: &[u8]) -> Result<(), OpError> {
        self.files[file]
            .write_all_at(buf, block * BLOCK as u64)
            .map_err(|e| io_op(e, "writing", block, &self.oom))
    }

    fn sync(&self, file: usize) -> Result<(), CliError> {
        rustix::fs::fdatasync(self.files[file].as_fd())
            .map_err(|e| CliError::io("syncing", None, e.into()))
    }

    fn gauge(&self) -> Gauge {
        let (path, dirty, wb, unit) = match &self.gauge {
            GaugeSource::CgroupV1(p) => (p.as_path(), "dirty", "writeback", 1),
            GaugeSource::CgroupV2(p) => (p.as_path(), "file_dirty", "file_writeback", 1),
            GaugeSource::Meminfo => (Path::new("/proc/meminfo"), "Dirty:", "Writeback:", 1024),
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| {
                    let mut it = l.split_whitespace();
                    (it.next() == Some(name)).then(|| it.next()?.parse::<u64>().ok())?
                })
                .unwrap_or(0)
                * unit
                / BLOCK as u64
        };
        Gauge {
            dirty_pages: field(dirty),
            writeback_pages: field(wb),
        }
    }

    fn write_lookups(&self) -> bool {
        false
    }

    fn snapshot(&self) -> Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let dev = self
            .device_stat
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| {
                t.split_whitespace()
                    .map(|w| w.parse::<u64>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let at = |i: usize| dev.get(i).copied().unwrap_or(0);
        Snapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            direct_reclaim_writes: None,
            // The block device's counters: write I/Os, sectors written, and
            // the time the device was busy (reads included), machine-wide.
            writeback_ios: at(4),
            writeback_bytes: at(6) * 512,
            writeback_active_ns: at(9) * 1_000_000,
            throttle_events: None,
            throttle_ns: None,
            reclaim_throttle_events: None,
            dirty_throttle_events: None,
            oom_errors: Some(self.oom.load(Relaxed)),
            alloc_stack_peak_bytes: None,
        }
    }
}

/// `/sys/dev/block/MAJ:MIN/stat` of the device holding `dir`.
pub fn device_stat_path(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let p = PathBuf::from(format!("/sys/dev/block/{maj}:{min}/stat"));
    p.exists().then_some(p)
}
