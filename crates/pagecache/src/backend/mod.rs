//! Where pages come from and go to: the `a_ops` + block device of this cache.
//!
//! The cache calls [`Backend::write_vectored_at`] only from flusher I/O
//! threads, from an explicit `sync` on the caller's own file, and — under the
//! `legacy` policy only — from direct reclaim.

use std::io::{self, IoSlice};

mod fault;
mod file;
mod mem;

pub use fault::{Fault, FaultBackend, FaultStats};
pub use file::FileBackend;
pub use mem::MemBackend;

/// Storage under one cached file.
///
/// Implementations must be safe to call from several threads at once; the
/// cache never issues overlapping writes to the same byte range concurrently.
pub trait Backend: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
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
}

/// Reads until `buf` is full or end of file; returns bytes read.
pub(crate) fn read_full(backend: &dyn Backend, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match backend.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
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
