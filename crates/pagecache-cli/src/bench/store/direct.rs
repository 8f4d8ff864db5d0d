//! The library's backend for the benchmark: direct I/O on a real file.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::path::Path;

use pagecache::Backend;

use super::{open_direct, open_rw};

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
