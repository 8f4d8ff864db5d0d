//! A real file: pread, pwritev, fdatasync through rustix.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::path::Path;

use super::Backend;

/// A backend over a file on the local filesystem.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
}

impl FileBackend {
    /// Opens `path` for reading and writing, creating it if `create`.
    pub fn open(path: &Path, create: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(FileBackend { file })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Wraps an already open file (it must be readable and writable).
    pub fn from_file(file: File) -> Self {
        FileBackend { file }
    }
}

impl Backend for FileBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Ok(rustix::io::pread(self.file.as_fd(), buf, offset)?)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        crate::stack::probe();
        Ok(rustix::io::pwritev(self.file.as_fd(), bufs, offset)?)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fdatasync(self.file.as_fd())?)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}
