//! Where pages come from and go to: the `a_ops` + block device of this cache.
//!
//! The cache calls [`Backend::write_vectored_at`] only from flusher I/O
//! threads, from an explicit `sync` on the caller's own file, and — under the
//! `legacy` policy only — from direct reclaim.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::BorrowedFd;

mod fault;
mod file;
mod mem;

pub use fault::{Fault, FaultBackend, FaultStats};
pub use file::FileBackend;
pub(crate) use file::IOV_MAX;
pub use mem::MemBackend;

/// Storage under one cached file.
///
/// Implementations must be safe to call from several threads at once; the
/// cache never issues overlapping writes to the same byte range concurrently.
// The errors are the implementor's own I/O errors; the cache passes them to
// its caller (`Error::Io`, `Error::Writeback`), so there is nothing to list.
#[allow(clippy::missing_errors_doc)]
pub trait Backend: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Reads into the buffers back to back starting at `offset`; returns
    /// bytes read. Like `preadv`, it may read fewer than asked (the cache
    /// asks again for the rest); 0 means end of file. The cache reads
    /// readahead windows with it, one buffer per frame (each page-aligned),
    /// so a backend that can read straight into them should. The default
    /// makes one [`Backend::read_at`] call: into the buffer itself if there
    /// is one, else into a temporary 4096-aligned buffer (so an `O_DIRECT`
    /// `read_at` can take it) that it then copies out.
    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        if let [buf] = bufs {
            return self.read_at(buf, offset);
        }
        const ALIGN: usize = 4096;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let mut tmp = vec![0u8; len + ALIGN];
        let at = tmp.as_ptr().align_offset(ALIGN).min(ALIGN);
        let tmp = &mut tmp[at..at + len];
        let n = self.read_at(tmp, offset)?.min(len);
        let mut from = &tmp[..n];
        for buf in bufs.iter_mut() {
            let k = buf.len().min(from.len());
            buf[..k].copy_from_slice(&from[..k]);
            from = &from[k..];
        }
        Ok(n)
    }
    /// Writes the buffers back to back starting at `offset`; returns bytes
    /// written (a short count is retried by the cache for the rest).
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize>;
    /// Makes everything written so far durable.
    fn sync(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Whether the backend is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The descriptor through which the cache may make this write itself,
    /// asynchronously (`io_uring`), instead of calling
    /// [`Backend::write_vectored_at`] from an I/O thread: `Some` promises
    /// that a `pwritev(fd, bufs, offset)` has exactly the effect
    /// `write_vectored_at(bufs, offset)` would have. The cache asks once per
    /// write, just before submitting it, with the same buffers; the
    /// descriptor must stay open while the backend lives. If the
    /// asynchronous write fails with `EINVAL`/`EAGAIN` or comes up short, the
    /// rest goes through `write_vectored_at`.
    ///
    /// The default, `None`, keeps every write on `write_vectored_at`, which
    /// the cache runs on a pool of blocking I/O threads started on demand:
    /// the way for backends that are not one file descriptor (or that want
    /// to see each write, as fault injection does).
    fn async_write_fd(&self, bufs: &[IoSlice<'_>], offset: u64) -> Option<BorrowedFd<'_>> {
        let _ = (bufs, offset);
        None
    }
    /// The descriptor through which the cache may make this read itself,
    /// asynchronously (`io_uring`), instead of calling
    /// [`Backend::read_vectored_at`] from a background reader thread: `Some`
    /// promises that a `preadv(fd, bufs, offset)` has exactly the effect
    /// `read_vectored_at(bufs, offset)` would have. The cache asks for
    /// readahead windows only, once per read, just before submitting it, with
    /// the same buffers (one per frame); the descriptor must stay open while
    /// the backend lives. A read that fails with `EINVAL`/`EAGAIN` or comes
    /// up short before the end of the file is finished through
    /// `read_vectored_at`.
    ///
    /// The default, `None`, keeps readahead on `read_vectored_at`, called
    /// from the cache's background reader threads.
    fn async_read_fd(&self, bufs: &[IoSliceMut<'_>], offset: u64) -> Option<BorrowedFd<'_>> {
        let _ = (bufs, offset);
        None
    }
    /// Whether this backend asked to bypass the kernel's page cache
    /// (`O_DIRECT`) and was refused by the file system, so the kernel holds
    /// its pages too. The cache counts such backends in
    /// [`Events::direct_io_fallbacks`](crate::Events::direct_io_fallbacks).
    fn direct_io_fallback(&self) -> bool {
        false
    }
}

/// Reads until `bufs` are full or end of file; returns bytes read.
pub(crate) fn read_full(
    backend: &dyn Backend,
    mut bufs: &mut [IoSliceMut<'_>],
    offset: u64,
) -> io::Result<usize> {
    let mut done = 0usize;
    let mut left: usize = bufs.iter().map(|b| b.len()).sum();
    while left > 0 {
        // A system call takes at most `IOV_MAX` buffers: a larger window
        // is read in several calls.
        let n = bufs.len().min(IOV_MAX);
        match backend.read_vectored_at(&mut bufs[..n], offset + done as u64) {
            Ok(0) => break,
            Ok(n) if n > left => {
                return Err(io::Error::other(format!(
                    "the backend reported reading {n} bytes where {left} were asked: fix its read_vectored_at"
                )))
            }
            Ok(n) => {
                done += n;
                left -= n;
                IoSliceMut::advance_slices(&mut bufs, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes every byte of `bufs` at `offset`, resubmitting after short writes.
pub(crate) fn write_all_vectored(
    backend: &dyn Backend,
    bufs: &[&[u8]],
    offset: u64,
) -> io::Result<()> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut done = 0usize;
    while done < total {
        // Rebuild the slice list past what is already written.
        let mut skip = done;
        let mut slices = Vec::with_capacity(bufs.len());
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            slices.push(IoSlice::new(&b[skip..]));
            skip = 0;
        }
        match backend.write_vectored_at(&slices, offset + done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "backend wrote zero bytes",
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
