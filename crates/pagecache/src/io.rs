//! The fit with `std::io`: `FileExt` for generic positional code, and
//! vectored reads and writes.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;

use crate::error::Result;
use crate::file::File;

impl File {
    /// Reads into `bufs` in order from `offset`, like `preadv(2)`: fills each
    /// buffer before the next and returns the bytes read, fewer than their
    /// total only at end of file.
    ///
    /// # Errors
    ///
    /// As [`File::read_at`]: a failed read-in, an offset past the largest
    /// file size. An error after some bytes were read is returned as that
    /// count instead, like `read(2)`.
    pub fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> Result<usize> {
        let mut done = 0usize;
        for buf in bufs.iter_mut().filter(|b| !b.is_empty()) {
            let want = buf.len();
            let n = match self.read_at(buf, offset.saturating_add(done as u64)) {
                Ok(n) => n,
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(e),
            };
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    /// Writes `bufs` back to back from `offset`, like `pwritev(2)`, and
    /// returns the bytes written: all of them, or — like [`File::write_at`] —
    /// how much landed before a frame could not be had.
    ///
    /// # Errors
    ///
    /// As [`File::write_at`], when nothing at all was written.
    pub fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> Result<usize> {
        let mut done = 0usize;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            let n = match self.write_at(buf, offset.saturating_add(done as u64)) {
                Ok(n) => n,
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(e),
            };
            done += n;
            if n < buf.len() {
                break;
            }
        }
        Ok(done)
    }
}

/// Positional I/O for code generic over files: the inherent methods, with
/// errors converted by `impl From<Error> for io::Error` (see [`Error`](crate::Error)).
///
/// ```
/// use std::os::unix::fs::FileExt;
/// use pagecache::{Config, MemBackend, PageCache};
///
/// fn stamp(f: &impl FileExt) -> std::io::Result<()> {
///     f.write_all_at(b"v1", 0)
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = PageCache::new(Config::new(1 << 20))?;
/// let file = cache.open_backend(MemBackend::new())?;
/// stamp(&file)?;
/// let mut buf = [0u8; 2];
/// FileExt::read_exact_at(&file, &mut buf, 0)?;
/// assert_eq!(&buf, b"v1");
/// # Ok(()) }
/// ```
impl FileExt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Ok(File::read_at(self, buf, offset)?)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        Ok(File::write_at(self, buf, offset)?)
    }
}
