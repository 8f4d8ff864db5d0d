//! The kernel page cache: plain buffered pread/pwrite, with its dirty and
//! writeback gauges read from the memory cgroup (or the whole machine), the
//! bytes its writeback wrote from its own `/proc/self/io`, and the I/O
//! count and busy time from the block device's counters.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{open_rw, Gauge, OpError, Snapshot, Store};
use crate::bench::block::BLOCK;
use crate::CliError;

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

    /// A read-modify-write through pread/pwrite: the kernel cannot take a
    /// store into a page here without a mapping, so the write is throttled
    /// by `balance_dirty_pages` like any write().
    fn modify(
        &self,
        file: usize,
        block: u64,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, OpError> {
        let mut buf = [0u8; BLOCK];
        let off = block * BLOCK as u64;
        let n = self.files[file]
            .read_at(&mut buf, off)
            .map_err(|e| io_op(e, "reading", block, &self.oom))?;
        buf[n..].fill(0);
        f(&mut buf);
        self.write(file, block, &buf)?;
        Ok(true)
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
        let (own_bytes, dev_bytes) = (own_write_bytes(), at(6) * 512);
        Snapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            direct_reclaim_writes: None,
            // The device's write I/Os and busy time (reads included) are
            // machine-wide; the bytes are this process's own. The I/O
            // count is turned into this process's share in `since`.
            writeback_ios: at(4),
            writeback_bytes: own_bytes.unwrap_or(dev_bytes),
            device_write_bytes: Some(dev_bytes),
            writeback_active_ns: at(9) * 1_000_000,
            throttle_events: None,
            throttle_ns: None,
            reclaim_throttle_events: None,
            dirty_throttle_events: None,
            oom_errors: Some(self.oom.load(Relaxed)),
            alloc_stall_ns: None,
            background_reclaim_writes: None,
            write_sizes: None,
            alloc_stack_peak_bytes: None,
        }
    }
}

/// `/sys/dev/block/MAJ:MIN/stat` of the device holding `dir`.
fn device_stat_path(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let p = PathBuf::from(format!("/sys/dev/block/{maj}:{min}/stat"));
    p.exists().then_some(p)
}

/// Bytes this process sent to storage: `write_bytes` of `/proc/self/io`
/// (counted when a page is dirtied, so a rewrite of a page still dirty is
/// not counted again) less `cancelled_write_bytes` (dirty pages truncated
/// before their writeback). Its writeback, not the machine's.
fn own_write_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some(field("write_bytes:")?.saturating_sub(field("cancelled_write_bytes:").unwrap_or(0)))
}
