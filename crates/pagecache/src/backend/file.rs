//! A real file: preadv, pwritev, fdatasync through rustix.
//!
//! By default the file's data moves with `O_DIRECT`, straight between the
//! device and the cache's frames, so the budget is the only memory holding
//! its pages: a buffered descriptor would have the kernel cache every page a
//! second time, outside the budget. `O_DIRECT` takes only requests whose
//! memory, offset and length are aligned to the device's block; the rest (a
//! last page clipped to the file size, pages smaller than a block) go through
//! a second, buffered descriptor of the same file, and the kernel's copies
//! of them are dropped again (see [`FileBackend::sync`]).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use rustix::fs::{fadvise, Advice, AtFlags, OFlags, StatxFlags};
use rustix::io::Errno;

use super::Backend;

/// Alignment assumed where the kernel does not say (before Linux 6.1): the
/// largest logical block size in use, so it is right for 512 too.
const DEFAULT_ALIGN: usize = 4096;

/// Most buffers one `pwritev` takes (Linux's `UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = 1024;

/// File systems whose files live in the kernel's page cache whatever the
/// open flags: no descriptor can keep their pages out of kernel memory.
const MEMORY_FS: [(u32, &str); 2] = [(0x0102_1994, "tmpfs"), (0x8584_58f6, "ramfs")];

/// A backend over a file on the local filesystem.
#[derive(Debug)]
pub struct FileBackend {
    /// Length, truncation, sync, and whatever `O_DIRECT` cannot take.
    buffered: File,
    direct: Option<Direct>,
    /// `O_DIRECT` was asked for and refused at open.
    fell_back: bool,
    /// An `O_DIRECT` request failed as unaligned after all: from then on
    /// every request goes buffered.
    direct_failed: AtomicBool,
    /// The buffered descriptor wrote while `O_DIRECT` was in use, so the
    /// kernel holds pages to drop at the next sync.
    buffered_writes: AtomicBool,
}

#[derive(Debug)]
struct Direct {
    file: File,
    /// Alignment of each buffer's address.
    mem_align: usize,
    /// Alignment of the file offset and of each buffer's length.
    io_align: usize,
}

impl Direct {
    /// How many of `bufs`, from the first, an `O_DIRECT` I/O at `offset` can
    /// take.
    fn aligned_prefix<B: Deref<Target = [u8]>>(&self, bufs: &[B], offset: u64) -> usize {
        if offset % self.io_align as u64 != 0 {
            return 0;
        }
        bufs.iter()
            .take_while(|b| {
                b.as_ptr() as usize % self.mem_align == 0 && b.len() % self.io_align == 0
            })
            .count()
    }
}

impl FileBackend {
    /// Opens `path` for reading and writing, creating it if `create`, with
    /// `O_DIRECT`. Where the file system refuses it (or keeps files in memory
    /// anyway, as tmpfs does), the file is opened buffered, a line on stderr
    /// says so (once per file system), and [`Backend::direct_io_fallback`]
    /// is true.
    ///
    /// # Errors
    ///
    /// The OS error of opening `path` read-write (or creating it).
    pub fn open(path: &Path, create: bool) -> io::Result<Self> {
        let buffered = open_rw(path, create, false)?;
        let direct = match memory_fs(&buffered)? {
            Some(fs) => Err(format!("{fs} keeps file data in kernel memory")),
            None => open_direct(path, &buffered)?,
        };
        match direct {
            Ok(direct) => {
                // The buffered descriptor sees only odd requests: kernel
                // readahead around them would fill the kernel cache for nothing.
                let _ = fadvise(&buffered, 0, None, Advice::Random);
                Ok(Self::new(buffered, Some(direct), false))
            }
            Err(why) => {
                tell_buffered(path, buffered.metadata()?.dev(), &why);
                Ok(Self::new(buffered, None, true))
            }
        }
    }

    /// Opens `path` with buffered I/O only: the kernel's page cache holds the
    /// file's pages as well as the cache's frames.
    ///
    /// # Errors
    ///
    /// The OS error of opening `path` read-write (or creating it).
    pub fn open_buffered(path: &Path, create: bool) -> io::Result<Self> {
        Ok(Self::new(open_rw(path, create, false)?, None, false))
    }

    /// Wraps an already open file (it must be readable and writable, and not
    /// opened with `O_DIRECT`); its I/O is buffered.
    pub fn from_file(file: File) -> Self {
        Self::new(file, None, false)
    }

    fn new(buffered: File, direct: Option<Direct>, fell_back: bool) -> Self {
        FileBackend {
            buffered,
            direct,
            fell_back,
            direct_failed: AtomicBool::new(false),
            buffered_writes: AtomicBool::new(false),
        }
    }

    /// The open file (its buffered descriptor).
    pub fn file(&self) -> &File {
        &self.buffered
    }

    /// Whether aligned reads and writes bypass the kernel's page cache.
    pub fn is_direct(&self) -> bool {
        self.direct().is_some()
    }

    fn direct(&self) -> Option<&Direct> {
        self.direct
            .as_ref()
            .filter(|_| !self.direct_failed.load(Ordering::Relaxed))
    }

    /// Runs an `O_DIRECT` I/O; `None` if the kernel refused it as unaligned,
    /// which turns `O_DIRECT` off for this file (the caller goes buffered).
    fn try_direct(
        &self,
        io: impl FnOnce() -> rustix::io::Result<usize>,
    ) -> Option<io::Result<usize>> {
        match io() {
            Err(Errno::INVAL) => {
                if !self.direct_failed.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "pagecache: an aligned O_DIRECT request was refused; this file now uses buffered I/O"
                    );
                }
                None
            }
            r => Some(r.map_err(io::Error::from)),
        }
    }

    /// Drops the kernel's clean copies of `[offset, offset + len)`, read
    /// through the buffered descriptor beside `O_DIRECT`.
    fn drop_kernel_copies(&self, offset: u64, len: usize) {
        // fadvise leaves out partly covered kernel pages: round out to a
        // multiple of the largest kernel page size.
        const ROUND: u64 = 64 * 1024;
        let start = offset - offset % ROUND;
        let end = (offset + len as u64).next_multiple_of(ROUND);
        // Only a hint: failing leaves a few pages cached, nothing wrong.
        let _ = fadvise(
            &self.buffered,
            start,
            std::num::NonZeroU64::new(end - start),
            Advice::DontNeed,
        );
    }
}

fn open_rw(path: &Path, create: bool, direct: bool) -> io::Result<File> {
    let flags = if direct { OFlags::DIRECT.bits() } else { 0 };
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .custom_flags(flags as i32)
        .open(path)
}

/// The name of the memory file system `file` is on, if it is on one.
fn memory_fs(file: &File) -> io::Result<Option<&'static str>> {
    let fs = rustix::fs::fstatfs(file)?;
    Ok(MEMORY_FS
        .iter()
        .find(|(magic, _)| fs.f_type as u32 == *magic)
        .map(|(_, name)| *name))
}

/// Opens the `O_DIRECT` descriptor beside `buffered`, or says why not.
fn open_direct(path: &Path, buffered: &File) -> io::Result<Result<Direct, String>> {
    let file = match open_rw(path, false, true) {
        Ok(f) => f,
        Err(e)
            if [Errno::INVAL, Errno::OPNOTSUPP]
                .map(|x| Some(x.raw_os_error()))
                .contains(&e.raw_os_error()) =>
        {
            return Ok(Err(format!("the file system refused O_DIRECT ({e})")))
        }
        Err(e) => return Err(e),
    };
    let (a, b) = (buffered.metadata()?, file.metadata()?);
    if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
        return Err(io::Error::other(
            "the file was replaced while being opened; open it again",
        ));
    }
    let (mem_align, io_align) =
        match rustix::fs::statx(&file, "", AtFlags::EMPTY_PATH, StatxFlags::DIOALIGN) {
            Ok(s) if StatxFlags::from_bits_retain(s.stx_mask).contains(StatxFlags::DIOALIGN) => {
                if s.stx_dio_offset_align == 0 {
                    return Ok(Err("the file system has no direct I/O for this file".into()));
                }
                (
                    s.stx_dio_mem_align as usize,
                    s.stx_dio_offset_align as usize,
                )
            }
            _ => (DEFAULT_ALIGN, DEFAULT_ALIGN),
        };
    Ok(Ok(Direct {
        file,
        mem_align: mem_align.max(1),
        io_align: io_align.max(1),
    }))
}

/// One stderr line per file system that made a file go buffered: the count
/// per file is in the cache's statistics.
fn tell_buffered(path: &Path, dev: u64, why: &str) {
    static TOLD: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let mut told = TOLD.lock().unwrap_or_else(PoisonError::into_inner);
    if !told.contains(&dev) {
        told.push(dev);
        eprintln!(
            "pagecache: {}: {why}; using buffered I/O, so the kernel caches this file system's pages too (counted in direct_io_fallbacks)",
            path.display()
        );
    }
}

impl Backend for FileBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.read_vectored_at(&mut [IoSliceMut::new(buf)], offset)
    }

    fn read_vectored_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<usize> {
        if let Some(d) = self.direct() {
            let k = d.aligned_prefix(bufs, offset);
            if k > 0 {
                if let Some(r) =
                    self.try_direct(|| rustix::io::preadv(&d.file, &mut bufs[..k], offset))
                {
                    return r;
                }
            }
        }
        let n = rustix::io::preadv(&self.buffered, bufs, offset)?;
        if self.direct.is_some() {
            self.drop_kernel_copies(offset, n);
        }
        Ok(n)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        crate::stack::probe();
        if let Some(d) = self.direct() {
            // The aligned run goes direct; the cache asks again for the rest.
            let k = d.aligned_prefix(bufs, offset);
            if k > 0 {
                if let Some(r) =
                    self.try_direct(|| rustix::io::pwritev(&d.file, &bufs[..k], offset))
                {
                    return r;
                }
            }
        }
        if self.direct.is_some() {
            self.buffered_writes.store(true, Ordering::Relaxed);
        }
        Ok(rustix::io::pwritev(&self.buffered, bufs, offset)?)
    }

    /// The `O_DIRECT` descriptor, for writes it takes whole: anything else
    /// (unaligned, past `IOV_MAX` buffers) goes through `write_vectored_at`.
    fn async_write_fd(&self, bufs: &[IoSlice<'_>], offset: u64) -> Option<BorrowedFd<'_>> {
        let d = self.direct()?;
        (bufs.len() <= IOV_MAX && d.aligned_prefix(bufs, offset) == bufs.len())
            .then(|| d.file.as_fd())
    }

    /// The `O_DIRECT` descriptor, for reads it takes whole, as for writes.
    fn async_read_fd(&self, bufs: &[IoSliceMut<'_>], offset: u64) -> Option<BorrowedFd<'_>> {
        let d = self.direct()?;
        (bufs.len() <= IOV_MAX && d.aligned_prefix(bufs, offset) == bufs.len())
            .then(|| d.file.as_fd())
    }

    /// `fdatasync`; then, if buffered writes went beside `O_DIRECT`, drops
    /// the kernel's now clean copies of them.
    fn sync(&self) -> io::Result<()> {
        // Cleared first: a write racing with this sync sets it again.
        let drop_copies = self.buffered_writes.swap(false, Ordering::Relaxed);
        rustix::fs::fdatasync(self.buffered.as_fd())?;
        if drop_copies {
            let _ = fadvise(&self.buffered, 0, None, Advice::DontNeed);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.buffered.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.buffered.set_len(len)
    }

    fn direct_io_fallback(&self) -> bool {
        self.fell_back
    }
}
