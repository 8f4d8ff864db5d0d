//! Opening files by path with `std::fs::OpenOptions`' vocabulary and rules.

use std::io::{self, IoSlice, IoSliceMut};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::backend::{Backend, FileBackend};
use crate::cache::PageCache;
use crate::error::{Error, Result};
use crate::file::File;
use crate::mapping::Inode;

/// Options for opening a file through the cache, like
/// [`std::fs::OpenOptions`]. Made by [`PageCache::open_options`].
///
/// The same rules as `std` apply: at least one of `read` and `write`;
/// `create`, `create_new` and `truncate` need `write`. A handle opened
/// without `write` refuses [`File::write_at`], [`File::page_mut`] and
/// [`File::set_len`] with [`Error::ReadOnly`].
///
/// ```
/// use pagecache::{Config, PageCache};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let cache = PageCache::new(Config::new(1 << 20))?;
/// let path = dir.path().join("log");
/// let log = cache
///     .open_options()
///     .read(true)
///     .write(true)
///     .create(true)
///     .open(&path)?;
/// log.write_at(b"entry", 0)?;
/// log.sync()?;
///
/// let reader = cache.open(&path)?; // read-only, like std::fs::File::open
/// assert!(reader.write_at(b"x", 0).is_err());
/// assert!(cache.open(dir.path().join("missing")).is_err()); // not created
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "options do nothing until `open` is called"]
pub struct OpenOptions<'a> {
    cache: &'a PageCache,
    read: bool,
    write: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
}

impl std::fmt::Debug for OpenOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("read", &self.read)
            .field("write", &self.write)
            .field("create", &self.create)
            .field("create_new", &self.create_new)
            .field("truncate", &self.truncate)
            .finish()
    }
}

impl<'a> OpenOptions<'a> {
    fn new(cache: &'a PageCache) -> Self {
        OpenOptions {
            cache,
            read: false,
            write: false,
            create: false,
            create_new: false,
            truncate: false,
        }
    }

    /// Read access. It is there for `std`'s rules (one of `read` and `write`
    /// is needed); a write-only handle still reads, as the cache reads a
    /// page in to overwrite part of it.
    pub fn read(mut self, read: bool) -> Self {
        self.read = read;
        self
    }

    /// Write access: without it the handle refuses every change.
    pub fn write(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// Create the file if it does not exist (needs `write`).
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Create the file, failing if it exists (needs `write`; implies `create`).
    pub fn create_new(mut self, create_new: bool) -> Self {
        self.create_new = create_new;
        self
    }

    /// Truncate the file to length 0 (needs `write`). Pages other opens of
    /// the file have cached, dirty or not, are dropped, as `set_len(0)` does.
    pub fn truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    fn check(&self) -> Result<()> {
        if !self.read && !self.write {
            return Err(Error::InvalidArgument(
                "open with neither read nor write access; set `.read(true)` and/or `.write(true)`"
                    .into(),
            ));
        }
        if !self.write && (self.create || self.create_new || self.truncate) {
            return Err(Error::InvalidArgument(
                "`create`, `create_new` and `truncate` need `.write(true)`".into(),
            ));
        }
        Ok(())
    }

    /// Opens `path` with these options. Opens of the same file (same device
    /// and inode) share cached pages, whatever their access.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a combination `std` rejects too (no
    /// access, or `create`/`truncate` without `write`); [`Error::Io`] when the
    /// file cannot be opened: it does not exist (without `create`), exists
    /// (with `create_new`), is a directory, or the process lacks permission.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<File> {
        self.check()?;
        let path = path.as_ref();
        let err = |what, e| Error::io(what, Some(path.to_path_buf()), e);
        if self.create_new {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| err("creating", e))?;
        }
        let (backend, inode): (Box<dyn Backend>, Inode) = match FileBackend::open(path, self.create)
        {
            Ok(b) => {
                let inode = Inode::of(b.file()).map_err(|e| err("inspecting", e))?;
                (Box::new(b), inode)
            }
            Err(e) if !self.write && may_read_only(&e) => {
                let file = std::fs::File::open(path).map_err(|e| err("opening", e))?;
                let inode = Inode::of(&file).map_err(|e| err("inspecting", e))?;
                (Box::new(ReadOnlyFile::new(file)), inode)
            }
            Err(e) => return Err(err("opening", e)),
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let file = self.cache.attach(canonical, inode, backend, self.write)?;
        if self.truncate {
            file.set_len(0)?;
        }
        Ok(file)
    }
}

/// Errors after which a read-only open retries with a read-only descriptor.
fn may_read_only(e: &io::Error) -> bool {
    use rustix::io::Errno;
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(
            Errno::from_io_error(e),
            Some(Errno::ROFS | Errno::TXTBSY | Errno::PERM)
        )
}

/// The backend of a file this process could only open for reading.
///
/// The backing descriptor is opened read-write whenever it can be, because
/// later writable opens of the same file share the mapping and its backend.
/// When it cannot (no write permission, a read-only file system, a running
/// executable), reads use a read-only descriptor, and the first write — only
/// possible after a later writable open succeeded, so permission now allows
/// it — reopens the file read-write through `/proc/self/fd`.
struct ReadOnlyFile {
    /// The read-only descriptor, read through `FileBackend` (buffered) so
    /// readahead keeps its vectored reads straight into frames.
    reader: FileBackend,
    writable: OnceLock<FileBackend>,
}

impl ReadOnlyFile {
    fn new(file: std::fs::File) -> Self {
        ReadOnlyFile {
            reader: FileBackend::from_file(file),
            writable: OnceLock::new(),
        }
    }

    fn writable(&self) -> io::Result<&FileBackend> {
        if let Some(b) = self.writable.get() {
            return Ok(b);
        }
        use std::os::fd::AsRawFd;
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", self.reader.file().as_raw_fd()));
        let b = FileBackend::open(&proc_path, false)?;
        // A racing writer may have set it first; either descriptor will do.
        Ok(self.writable.get_or_init(|| b))
    }
}

impl Backend for ReadOnlyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.reader.read_at(buf, offset)
    }

    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        self.reader.read_vectored_at(bufs, offset)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.writable()?.write_vectored_at(bufs, offset)
    }

    fn sync(&self) -> io::Result<()> {
        match self.writable.get() {
            Some(b) => b.sync(),
            None => self.reader.sync(),
        }
    }

    fn len(&self) -> io::Result<u64> {
        self.reader.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.writable()?.set_len(len)
    }
}

impl PageCache {
    /// Options for opening a file, like [`std::fs::OpenOptions`].
    pub fn open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }

    /// Opens an existing file read-only, like [`std::fs::File::open`]: it
    /// does not create the file, and the handle refuses writes with
    /// [`Error::ReadOnly`]. Opening the same file twice shares the cached
    /// pages.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file does not exist or cannot be opened.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<File> {
        self.open_options().read(true).open(path)
    }

    /// Opens a file for reading and writing, creating it if it does not
    /// exist and truncating it if it does, like [`std::fs::File::create`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be created or opened.
    pub fn create(&self, path: impl AsRef<Path>) -> Result<File> {
        self.open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
    }

    /// Opens an existing file for reading and writing, keeping its contents:
    /// `open_options().read(true).write(true).open(path)`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file does not exist or cannot be opened.
    pub fn open_existing(&self, path: impl AsRef<Path>) -> Result<File> {
        self.open_options().read(true).write(true).open(path)
    }
}
