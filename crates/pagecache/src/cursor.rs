//! A stream over a cached file: `Read`, `Write` and `Seek` at a position.

use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};

use crate::error::Result;
use crate::file::File;

/// A file handle with a position, for code written against streams
/// (`std::io::copy`, `BufReader`, serializers). Made by [`File::cursor`].
///
/// It behaves like a `std::fs::File`: reads at or past the end return 0,
/// seeking past the end is allowed, and a write there extends the file
/// with zeros in the gap. [`Write::flush`] does nothing, as for
/// `std::fs::File`: the bytes are in the cache, and [`Cursor::sync`] (or
/// [`File::sync`]) makes them durable.
///
/// It has no `BufRead`: a buffer would be a second copy of bytes already
/// in cached pages; zero-copy access is [`File::page`].
///
/// ```
/// use std::io::{Read, Seek, SeekFrom, Write};
/// use pagecache::{Config, MemBackend, PageCache};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cache = PageCache::new(Config::new(1 << 20))?;
/// let mut c = cache.open_backend(MemBackend::new())?.cursor();
/// c.write_all(b"hello, world")?;
/// c.seek(SeekFrom::Start(7))?;
/// let mut s = String::new();
/// c.read_to_string(&mut s)?;
/// assert_eq!(s, "world");
/// c.sync()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Cursor {
    file: File,
    pos: u64,
}

impl File {
    /// A cursor at position 0 over this open (a clone of the handle: they
    /// share the writeback-error cursor).
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.clone())
    }
}

impl Cursor {
    /// A cursor at position 0 over `file`.
    pub fn new(file: File) -> Self {
        Cursor { file, pos: 0 }
    }

    /// The current position.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Moves to `pos` (which may be past the end).
    pub fn set_position(&mut self, pos: u64) {
        self.pos = pos;
    }

    /// The file under the cursor.
    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// Gives the file back.
    pub fn into_inner(self) -> File {
        self.file
    }

    /// Makes every write durable: [`File::sync`].
    ///
    /// # Errors
    ///
    /// As [`File::sync`].
    pub fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    fn advance(&mut self, n: usize) -> usize {
        self.pos += n as u64;
        n
    }
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        Ok(self.advance(n))
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let n = self.file.read_vectored_at(bufs, self.pos)?;
        Ok(self.advance(n))
    }
}

impl Write for Cursor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write_at(buf, self.pos)?;
        Ok(self.advance(n))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = self.file.write_vectored_at(bufs, self.pos)?;
        Ok(self.advance(n))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Cursor {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.file.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        // Like lseek(2): positions are `off_t`, so i64::MAX is the last.
        match target.filter(|&p| i64::try_from(p).is_ok()) {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{to:?} from position {} is before byte 0 or past i64::MAX",
                    self.pos
                ),
            )),
        }
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}
