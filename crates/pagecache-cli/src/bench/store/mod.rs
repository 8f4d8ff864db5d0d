//! What a workload runs against: the library's cache (over direct-I/O files,
//! [`cache`], [`direct`]) or the kernel page cache (buffered pread/pwrite,
//! [`kernel`]), behind one trait.

mod cache;
mod direct;
mod kernel;
mod kernel_dirty;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use cache::CacheStore;
pub use direct::DeviceModel;
use direct::SIZE_CLASSES;
pub use kernel::{GaugeSource, KernelStore};
pub use kernel_dirty::KernelDirtyLimits;

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
    /// The block device's bytes written, machine-wide, where
    /// `writeback_bytes` is one process's share of them (the kernel):
    /// `since` then scales the device's I/O count to that share.
    pub device_write_bytes: Option<u64>,
    pub writeback_active_ns: u64,
    pub throttle_events: Option<u64>,
    pub throttle_ns: Option<u64>,
    pub reclaim_throttle_events: Option<u64>,
    pub dirty_throttle_events: Option<u64>,
    pub oom_errors: Option<u64>,
    pub alloc_stack_peak_bytes: Option<u64>,
    pub alloc_stall_ns: Option<u64>,
    pub background_reclaim_writes: Option<u64>,
    /// Writes the backends were given, by power-of-two size class from 4 KiB
    /// (`None`: not visible, the kernel).
    pub write_sizes: Option<[u64; SIZE_CLASSES]>,
}

impl Snapshot {
    /// Counts between `earlier` and `self` (the stack peak is a maximum, kept).
    pub fn since(&self, e: &Snapshot) -> Snapshot {
        let d = |a: Option<u64>, b: Option<u64>| a.map(|a| a.saturating_sub(b.unwrap_or(0)));
        Snapshot {
            hits: self.hits.saturating_sub(e.hits),
            misses: self.misses.saturating_sub(e.misses),
            direct_reclaim_writes: d(self.direct_reclaim_writes, e.direct_reclaim_writes),
            writeback_ios: own_ios(self, e),
            writeback_bytes: self.writeback_bytes.saturating_sub(e.writeback_bytes),
            device_write_bytes: d(self.device_write_bytes, e.device_write_bytes),
            writeback_active_ns: self
                .writeback_active_ns
                .saturating_sub(e.writeback_active_ns),
            throttle_events: d(self.throttle_events, e.throttle_events),
            throttle_ns: d(self.throttle_ns, e.throttle_ns),
            reclaim_throttle_events: d(self.reclaim_throttle_events, e.reclaim_throttle_events),
            dirty_throttle_events: d(self.dirty_throttle_events, e.dirty_throttle_events),
            oom_errors: d(self.oom_errors, e.oom_errors),
            alloc_stack_peak_bytes: self.alloc_stack_peak_bytes,
            alloc_stall_ns: d(self.alloc_stall_ns, e.alloc_stall_ns),
            background_reclaim_writes: d(
                self.background_reclaim_writes,
                e.background_reclaim_writes,
            ),
            write_sizes: self.write_sizes.map(|a| {
                let b = e.write_sizes.unwrap_or_default();
                std::array::from_fn(|i| a[i].saturating_sub(b[i]))
            }),
        }
    }
}

/// Write I/Os between `e` and `s`: all of them, or, where they are the
/// device's (machine-wide) and the bytes one process's, that process's share
/// at the device's average I/O size over the interval.
fn own_ios(s: &Snapshot, e: &Snapshot) -> u64 {
    let ios = s.writeback_ios.saturating_sub(e.writeback_ios);
    let bytes = s.writeback_bytes.saturating_sub(e.writeback_bytes);
    match (s.device_write_bytes, e.device_write_bytes) {
        (Some(a), Some(b)) if a > b => {
            let share = (bytes as f64 / (a - b) as f64).min(1.0);
            (ios as f64 * share).round() as u64
        }
        _ => ios,
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
    /// Reads like `read` without telling a hit from a miss, where telling
    /// costs the store something the read itself does not (the library's
    /// per-thread counts, read before and after): for loops that sample
    /// hits on a share of their reads.
    fn read_unclassified(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<(), OpError> {
        self.read(file, block, buf).map(|_| ())
    }
    /// Writes `buf` (whole blocks) from block `block` of file `file` on.
    fn write(&self, file: usize, block: u64, buf: &[u8]) -> Result<(), OpError>;
    /// Changes block `block` of file `file` in place through `f` (given its
    /// current contents); returns whether it was a cache hit.
    fn modify(
        &self,
        file: usize,
        block: u64,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, OpError>;
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

pub(super) fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}
