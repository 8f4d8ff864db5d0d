//! The library's backend for the benchmark: direct I/O on a real file, the
//! size of every write it is asked for, and an optional model of a slower
//! device (a rotating disk) in front of it.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pagecache::Backend;
use serde::{Deserialize, Serialize};

use super::{open_direct, open_rw};

/// A device slower than the real one: every I/O waits `latency`, plus `seek`
/// when it does not start where the previous I/O ended. One I/O is served at
/// a time, as by one disk head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceModel {
    pub latency: Duration,
    pub seek: Duration,
}

impl DeviceModel {
    /// The time an I/O takes with the head at `head`, which it moves to the
    /// I/O's end.
    fn cost(&self, head: &mut (usize, u64), file: usize, offset: u64, len: usize) -> Duration {
        let seek = *head != (file, offset);
        *head = (file, offset + len as u64);
        if seek {
            self.latency + self.seek
        } else {
            self.latency
        }
    }
}

/// The model's state shared by every file of a run: where the head is.
pub struct Device {
    model: DeviceModel,
    /// (file, byte offset the last I/O ended at).
    head: Mutex<(usize, u64)>,
}

impl Device {
    pub fn new(model: DeviceModel) -> Self {
        Device {
            model,
            head: Mutex::new((usize::MAX, 0)),
        }
    }

    /// Waits as the modelled device would for an I/O of `len` bytes at
    /// `offset` of `file`. The head lock is held across the wait, so I/Os
    /// queue behind each other as on one spindle.
    fn serve(&self, file: usize, offset: u64, len: usize) {
        let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        std::thread::sleep(self.model.cost(&mut head, file, offset, len));
    }
}

/// Power-of-two size classes of writes, from one 4 KiB block up.
pub const SIZE_CLASSES: usize = 13;

/// How many writes of each size class the backends were given.
#[derive(Default)]
pub struct WriteSizes([AtomicU64; SIZE_CLASSES]);

impl WriteSizes {
    fn record(&self, len: usize) {
        let blocks = len.div_ceil(4096).max(1);
        let class = (blocks.next_power_of_two().trailing_zeros() as usize).min(SIZE_CLASSES - 1);
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Writes per class so far: class `i` holds sizes up to `4096 << i`
    /// bytes, the last class everything above the one before it.
    pub fn counts(&self) -> [u64; SIZE_CLASSES] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

fn all_aligned<B: Deref<Target = [u8]>>(bufs: &[B], offset: u64) -> bool {
    offset % 4096 == 0 && bufs.iter().all(|b| aligned(b.as_ptr(), b.len(), 0))
}

/// What every backend of one cache shares.
#[derive(Clone)]
pub struct Shared {
    pub sizes: Arc<WriteSizes>,
    pub device: Option<Arc<Device>>,
}

fn aligned(ptr: *const u8, len: usize, off: u64) -> bool {
    (ptr as usize) % 4096 == 0 && len % 4096 == 0 && off % 4096 == 0
}

/// The library's backend for the benchmark: the file opened with `O_DIRECT`,
/// so the cache's budget is the only memory holding its pages (a buffered
/// backend would sit on top of an unlimited kernel page cache). Unaligned
/// requests, which the benchmark does not make, go through a buffered
/// descriptor of the same file.
pub struct DirectBackend {
    direct: Option<File>,
    buffered: File,
    /// This file's number, for the device model's head position.
    id: usize,
    shared: Shared,
}

impl DirectBackend {
    /// Opens an existing file; `Ok(None)`-like fallback to buffered I/O when
    /// the filesystem has no `O_DIRECT` (reported by [`DirectBackend::is_direct`]).
    pub fn open(path: &Path, id: usize, shared: Shared) -> io::Result<Self> {
        Ok(DirectBackend {
            direct: open_direct(path, false)?,
            buffered: open_rw(path)?,
            id,
            shared,
        })
    }

    fn serve(&self, offset: u64, len: usize) {
        if let Some(d) = &self.shared.device {
            d.serve(self.id, offset, len);
        }
    }

    /// Whether reads and writes bypass the kernel page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The `O_DIRECT` descriptor for an I/O the ring may make whole
    /// (aligned, at most `IOV_MAX` buffers), unless a device model must pace
    /// each I/O: the cache then calls the backend for it.
    fn ring_fd<B: Deref<Target = [u8]>>(&self, bufs: &[B], offset: u64) -> Option<BorrowedFd<'_>> {
        let f = self
            .direct
            .as_ref()
            .filter(|_| self.shared.device.is_none())?;
        (bufs.len() <= 1024 && all_aligned(bufs, offset)).then(|| f.as_fd())
    }
}

impl Backend for DirectBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.serve(offset, buf.len());
        match &self.direct {
            Some(f) if aligned(buf.as_ptr(), buf.len(), offset) => {
                Ok(rustix::io::pread(f.as_fd(), buf, offset)?)
            }
            _ => Ok(rustix::io::pread(self.buffered.as_fd(), buf, offset)?),
        }
    }

    /// Straight into the cache's frames: without this the trait's default
    /// reads a window into a bounce buffer and copies it out.
    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.serve(offset, len);
        let all_aligned = all_aligned(bufs, offset);
        match &self.direct {
            Some(f) if all_aligned => Ok(rustix::io::preadv(f.as_fd(), bufs, offset)?),
            _ => Ok(rustix::io::preadv(self.buffered.as_fd(), bufs, offset)?),
        }
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        pagecache::stack::probe();
        let len = bufs.iter().map(|b| b.len()).sum();
        self.shared.sizes.record(len);
        self.serve(offset, len);
        let all_aligned = all_aligned(bufs, offset);
        match &self.direct {
            Some(f) if all_aligned => Ok(rustix::io::pwritev(f.as_fd(), bufs, offset)?),
            _ => Ok(rustix::io::pwritev(self.buffered.as_fd(), bufs, offset)?),
        }
    }

    /// See `ring_fd`; each write handed over is counted here, as
    /// `write_vectored_at` counts the rest.
    fn async_write_fd(&self, bufs: &[IoSlice<'_>], offset: u64) -> Option<BorrowedFd<'_>> {
        let fd = self.ring_fd(bufs, offset)?;
        self.shared.sizes.record(bufs.iter().map(|b| b.len()).sum());
        Some(fd)
    }

    /// See `ring_fd`.
    fn async_read_fd(&self, bufs: &[IoSliceMut<'_>], offset: u64) -> Option<BorrowedFd<'_>> {
        self.ring_fd(bufs, offset)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeks_cost_only_when_not_adjacent() {
        let m = DeviceModel {
            latency: Duration::from_micros(100),
            seek: Duration::from_millis(8),
        };
        let (lat, both) = (m.latency, m.latency + m.seek);
        let mut head = (usize::MAX, 0);
        assert_eq!(m.cost(&mut head, 0, 0, 4096), both, "first I/O");
        assert_eq!(m.cost(&mut head, 0, 4096, 8192), lat, "the next run");
        assert_eq!(m.cost(&mut head, 0, 4096, 4096), both, "backwards");
        assert_eq!(m.cost(&mut head, 1, 8192, 4096), both, "another file");
        assert_eq!(m.cost(&mut head, 1, 12288, 4096), lat);
    }

    #[test]
    fn write_sizes_by_power_of_two_class() {
        let w = WriteSizes::default();
        for len in [4096, 4096, 8192, 12288, 1 << 20, 1 << 30] {
            w.record(len);
        }
        let c = w.counts();
        assert_eq!(c[0], 2);
        assert_eq!(c[1], 1);
        assert_eq!(c[2], 1, "12 KiB rounds up to the 16 KiB class");
        assert_eq!(c[8], 1, "1 MiB");
        assert_eq!(c[SIZE_CLASSES - 1], 1, "the last class takes the rest");
        assert_eq!(c.iter().sum::<u64>(), 6);
    }
}
