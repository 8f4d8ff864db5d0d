//! The handle users hold: a file opened through the cache.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::cache::Owner;
use crate::error::{Error, Result};
use crate::errseq::ErrSeqSince;
use crate::filemap::{self, Fill};
use crate::guard::{held, PageReadGuard, PageWriteGuard};
use crate::mapping::Mapping;
use crate::readahead::{self, Ra, RaState};
use crate::{throttle, truncate, writeback};

/// One open of a file. Clones share the open (its writeback-error cursor
/// and its readahead window), like a duplicated file descriptor; a new
/// [`PageCache::open`] of the same path, or [`File::reopen`], is a new open.
/// Give each sequential reader its own open: readers sharing one open share
/// one readahead window, and interleaved positions break its sequence.
///
/// [`PageCache::open`]: crate::PageCache::open
#[derive(Clone)]
pub struct File {
    open: Arc<Open>,
}

struct Open {
    owner: Arc<Owner>,
    mapping: Arc<Mapping>,
    since: Mutex<ErrSeqSince>,
    /// This open's readahead window.
    ra: RaState,
    /// False for a read-only open: writes through it fail with `ReadOnly`.
    writable: bool,
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.mapping.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.owner.inner.maybe_forget(&self.mapping);
        }
    }
}

impl File {
    pub(crate) fn new(owner: Arc<Owner>, mapping: Arc<Mapping>) -> Self {
        Self::with_access(owner, mapping, true)
    }

    pub(crate) fn with_access(owner: Arc<Owner>, mapping: Arc<Mapping>, writable: bool) -> Self {
        let since = Mutex::new(mapping.errseq.sample());
        File {
            open: Arc::new(Open {
                owner,
                mapping,
                since,
                ra: RaState::default(),
                writable,
            }),
        }
    }

    /// Whether this open refuses writes (opened without `write(true)`).
    pub fn is_read_only(&self) -> bool {
        !self.open.writable
    }

    fn check_writable(&self) -> Result<()> {
        if self.open.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly {
                path: self.m().path.clone(),
            })
        }
    }

    pub(crate) fn inner(&self) -> &crate::state::Inner {
        &self.open.owner.inner
    }

    pub(crate) fn inner_arc(&self) -> &Arc<crate::state::Inner> {
        &self.open.owner.inner
    }

    pub(crate) fn m(&self) -> &Arc<Mapping> {
        &self.open.mapping
    }

    /// The path this file was opened by (canonical), if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.m().path.as_deref()
    }

    /// A new open of the same file (like opening `/proc/self/fd/N`): it shares
    /// the cached pages but has its own writeback-error cursor, so it reports
    /// an error the other opens have already seen only if nobody had seen it.
    #[must_use]
    pub fn reopen(&self) -> File {
        self.m().handles.fetch_add(1, Ordering::AcqRel);
        File::with_access(
            self.open.owner.clone(),
            self.m().clone(),
            self.open.writable,
        )
    }

    /// Reads into `buf` from `offset`; like `FileExt::read_at`, returns fewer
    /// bytes only at end of file, and 0 at or past it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading a missing page from the backend fails;
    /// [`Error::OutOfMemory`] / [`Error::NoCleanFrame`] if no frame can be had
    /// for it; [`Error::WouldDeadlock`] if this thread holds a write guard on
    /// a page it needs.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        filemap::read_at(self.inner_arc(), self.m(), &self.open.ra, buf, offset)
    }

    /// Reads exactly `buf.len()` bytes, or fails with `InvalidArgument` if the
    /// file ends first.
    ///
    /// # Errors
    ///
    /// As [`File::read_at`], and [`Error::InvalidArgument`] at end of file.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let n = self.read_at(buf, offset)?;
        if n < buf.len() {
            return Err(Error::InvalidArgument(format!(
                "read of {} bytes at {offset} passes end of file ({})",
                buf.len(),
                self.len()
            )));
        }
        Ok(())
    }

    /// Writes `buf` at `offset`, extending the file if needed, and returns
    /// the bytes written: all of them, unless a frame could not be had part
    /// way (out of memory, or no clean frame under `no-throttle`), in which
    /// case the count says how much landed, like `write(2)`. The data is in
    /// the cache, not yet durable: see [`File::sync`].
    ///
    /// # Errors
    ///
    /// When nothing was written: [`Error::ReadOnly`] on a read-only open;
    /// [`Error::InvalidArgument`] past the largest file size;
    /// [`Error::OutOfMemory`] / [`Error::NoCleanFrame`] without a frame;
    /// [`Error::Io`] if a partly overwritten page cannot be read in;
    /// [`Error::WouldDeadlock`] if this thread holds a guard on a target page.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.check_writable()?;
        filemap::write_at(self.inner(), self.m(), buf, offset)
    }

    /// The file's length, including cached writes not yet written back.
    pub fn len(&self) -> u64 {
        self.m().size()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Truncates or extends the file. Cached pages past a new, shorter end are
    /// dropped (dirty or not); an extension reads as zeros.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only open; [`Error::InvalidArgument`]
    /// past the largest file size; [`Error::Io`] if the backend's `set_len`
    /// fails; [`Error::WouldDeadlock`] if this thread holds a page guard on
    /// the file.
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.check_writable()?;
        truncate::set_len(self.inner(), self.m(), len)
    }

    /// Writes every dirty page of this file, waits for writeback already in
    /// flight, and makes the backend durable. Returns a writeback error that
    /// happened since this open last synced — once.
    ///
    /// # Errors
    ///
    /// [`Error::Writeback`] if a write or the backend sync failed since this
    /// open last synced (reported once per open, like `fsync(2)`'s errseq);
    /// [`Error::WouldDeadlock`] if this thread holds a write guard on the
    /// file.
    pub fn sync(&self) -> Result<()> {
        self.sync_pages(0..u64::MAX)
    }

    /// Like [`File::sync`] for the pages overlapping `offset..offset + len`.
    ///
    /// # Errors
    ///
    /// As [`File::sync`], and [`Error::InvalidArgument`] if the range
    /// overflows.
    pub fn sync_range(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return self.check_errors();
        }
        let end = offset.checked_add(len).ok_or_else(|| {
            Error::InvalidArgument(format!("range of {len} bytes at {offset} overflows"))
        })?;
        let ps = self.inner().page_size() as u64;
        self.sync_pages(offset / ps..end.div_ceil(ps))
    }

    fn sync_pages(&self, pages: std::ops::Range<u64>) -> Result<()> {
        if held::write_on(self.m().id) {
            return Err(Error::WouldDeadlock("sync"));
        }
        self.inner().check_open()?;
        // A failed backend sync is recorded in the errseq, reported below.
        let _ = writeback::sync_mapping(self.inner(), self.m(), pages);
        self.check_errors()
    }

    /// Reports (once) a writeback error recorded since this open last looked.
    fn check_errors(&self) -> Result<()> {
        let mut since = self.open.since.lock();
        match self.m().errseq.check_and_advance(&mut since) {
            None => Ok(()),
            Some(errno) => Err(Error::Writeback {
                path: self.m().path.clone(),
                source: std::io::Error::from_raw_os_error(errno),
            }),
        }
    }

    fn check_index(&self, index: u64) -> Result<u64> {
        let ps = self.inner().page_size() as u64;
        index
            .checked_mul(ps)
            .filter(|&o| o < filemap::MAX_FILE_SIZE)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("page index {index} is past the largest file size"))
            })
    }

    /// Pins page `index` for reading without copying. The page must start
    /// before the end of file; bytes past the end read as zero.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the page starts at or past the end of
    /// file; otherwise as [`File::read_at`].
    pub fn page(&self, index: u64) -> Result<PageReadGuard<'_>> {
        let offset = self.check_index(index)?;
        if offset >= self.len() {
            return Err(Error::InvalidArgument(format!(
                "page {index} starts past end of file ({} bytes)",
                self.len()
            )));
        }
        let inner = self.inner();
        let m = self.m();
        let recursive = held::check(m.id, index, false)?;
        // Also when this thread holds the page already: a hazard slot it
        // holds the frame by is held once more, without the lock.
        let fast = m.find_read(&inner.arena, index);
        let ra = Ra {
            state: &self.open.ra,
            req: 1,
        };
        let (id, hold, pinned) = match fast {
            Some((id, hold)) => {
                filemap::hit(inner);
                (id, hold, false)
            }
            None => {
                let (id, _) = filemap::get_page(inner, m, index, Fill::Read, Some(ra))?;
                (id, filemap::hold_pinned(inner, id, recursive), true)
            }
        };
        if readahead::take_marker(inner, id) {
            readahead::marker_hit(self.inner_arc(), m, ra, index);
        }
        if pinned {
            // As in `read_at`: only a miss records where this open read.
            self.open.ra.note_read(index);
        }
        held::push(m.id, index, false);
        Ok(PageReadGuard {
            arena: &inner.arena,
            id,
            hold: Some(hold),
            pinned,
            mapping: m.id,
            index,
        })
    }

    /// Pins page `index` for writing without copying, marks it dirty, and
    /// extends the file to cover the whole page if it ends before.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] on a read-only open; [`Error::InvalidArgument`]
    /// past the largest file size; [`Error::WouldDeadlock`] if this thread
    /// already holds a guard on the page; otherwise as [`File::read_at`].
    pub fn page_mut(&self, index: u64) -> Result<PageWriteGuard<'_>> {
        self.check_writable()?;
        let offset = self.check_index(index)?;
        let inner = self.inner();
        let m = self.m();
        held::check(m.id, index, true)?;
        throttle::dirty::balance_dirty_pages(inner, m, 1)?;
        let _resize = filemap::resize_shared(inner, m)?;
        let fill = if offset >= m.size() {
            Fill::Zero
        } else {
            Fill::Read
        };
        let (id, locked) = filemap::get_page(inner, m, index, fill, None)?;
        let lock = match locked {
            Some(g) => g,
            None => filemap::lock_for_write(inner, id),
        };
        let ps = inner.page_size() as u64;
        // The last page below the largest file size ends at that size.
        m.size
            .fetch_max((offset + ps).min(filemap::MAX_FILE_SIZE), Ordering::AcqRel);
        filemap::mark_dirty(inner, m, id, index);
        held::push(m.id, index, true);
        let guard = PageWriteGuard {
            arena: &inner.arena,
            id,
            lock: Some(lock),
            mapping: m.id,
            index,
        };
        // Still under `resize`: shutdown's final write-back may have missed
        // this page (the guard is dropped on the way out).
        inner.check_not_stopped()?;
        Ok(guard)
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path())
            .field("len", &self.len())
            .finish()
    }
}
