//! Mappings: one per cached file, like the kernel's `address_space`.
//!
//! A mapping indexes its resident pages (page index → frame) and keeps a
//! dirty index in page order, which is what lets writeback walk a file's
//! dirty pages sorted and coalesce contiguous runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

pub(crate) use crate::pagetable::PageTable;

use crate::backend::Backend;
use crate::errseq::ErrSeq;
use crate::frame::{Arena, Frame, FrameId, FREE, ORPHAN, RA_MARKER, UPTODATE};
use crate::guard::Hold;

/// The dirty pages of one mapping, in page order.
#[derive(Default)]
pub(crate) struct DirtyIndex {
    pub(crate) pages: BTreeSet<u64>,
    /// When the mapping went from clean to dirty (the kernel's `dirtied_when`).
    pub(crate) since: Option<Instant>,
}

/// Pages of one mapping written but not yet known durable (UNSTABLE), each
/// with the commit generation its write completed in. The UNSTABLE flag of a
/// mapped page changes only under this lock, so flag and entry agree.
#[derive(Default)]
pub(crate) struct UnstableIndex {
    pub(crate) pages: BTreeMap<u64, u64>,
    /// Bumped when a sync starts: a sync that started at generation `g` and
    /// succeeded covers exactly the entries recorded at `g` or before.
    pub(crate) gen: u64,
}

/// The file under a mapping opened by path: its identity, and a descriptor
/// to ask whether it still has a name.
pub(crate) struct Inode {
    pub(crate) key: (u64, u64),
    file: std::fs::File,
}

impl Inode {
    pub(crate) fn of(file: &std::fs::File) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(Inode {
            key: (meta.dev(), meta.ino()),
            file: file.try_clone()?,
        })
    }

    /// Whether the file still has a directory entry.
    pub(crate) fn linked(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().is_ok_and(|m| m.nlink() > 0)
    }
}

/// One cached file.
pub(crate) struct Mapping {
    pub(crate) id: u64,
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) path: Option<PathBuf>,
    pub(crate) inode: Option<Inode>,
    pub(crate) pages: PageTable,
    pub(crate) dirty: Mutex<DirtyIndex>,
    pub(crate) unstable: Mutex<UnstableIndex>,
    /// Held across a whole commit (`writeback::commit`): of two overlapping
    /// syncs, one may succeed after the other failed and dropped the
    /// writes, so the success must not mark those pages clean before the
    /// failure has made them dirty again.
    pub(crate) committing: Mutex<()>,
    /// Backend syncs of this mapping that failed. A write in flight while one
    /// failed may have been dropped with it, so its pages are re-dirtied.
    pub(crate) sync_failures: AtomicU64,
    /// Logical file size (the kernel's `i_size`).
    pub(crate) size: AtomicU64,
    /// Shared by writes and writeback, exclusive for `set_len`, so a write
    /// never lands past a truncation.
    pub(crate) resize: RwLock<()>,
    pub(crate) errseq: ErrSeq,
    /// Pages of this mapping under writeback.
    pub(crate) nr_writeback: AtomicUsize,
    /// Where cyclic writeback resumes.
    pub(crate) writeback_cursor: AtomicU64,
    /// Set while a flusher holds this mapping, so two do not walk it at once.
    pub(crate) flushing: AtomicBool,
    /// Set while the mapping waits in the flusher queue.
    pub(crate) queued: AtomicBool,
    /// The queued request must write dirty pages, not only commit.
    pub(crate) queued_write: AtomicBool,
    /// Dirty pages reclaim flagged since the flushers last wrote for it
    /// (page indexes; a hint of where to write).
    pub(crate) reclaim_wanted: Mutex<Vec<u64>>,
    /// Open handles; a mapping with none is dropped once it has no pages.
    pub(crate) handles: AtomicUsize,
    /// The last writeback of this mapping failed and none has succeeded since.
    pub(crate) wb_failing: AtomicBool,
    /// When the last writeback failure happened (ns since the cache epoch).
    pub(crate) last_fail_ns: AtomicU64,
    /// The errno of the last writeback failure.
    pub(crate) last_errno: AtomicI32,
    /// Hints given with `File::advise` (bits in `advise.rs`).
    pub(crate) advice: AtomicU8,
}

impl Mapping {
    pub(crate) fn new(
        id: u64,
        backend: Box<dyn Backend>,
        path: Option<PathBuf>,
        size: u64,
        inode: Option<Inode>,
    ) -> Self {
        Mapping {
            id,
            backend,
            path,
            inode,
            pages: PageTable::default(),
            dirty: Mutex::new(DirtyIndex::default()),
            unstable: Mutex::new(UnstableIndex::default()),
            committing: Mutex::new(()),
            sync_failures: AtomicU64::new(0),
            size: AtomicU64::new(size),
            resize: RwLock::new(()),
            errseq: ErrSeq::default(),
            nr_writeback: AtomicUsize::new(0),
            writeback_cursor: AtomicU64::new(0),
            flushing: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            queued_write: AtomicBool::new(false),
            reclaim_wanted: Mutex::new(Vec::new()),
            handles: AtomicUsize::new(0),
            wb_failing: AtomicBool::new(false),
            last_fail_ns: AtomicU64::new(0),
            last_errno: AtomicI32::new(0),
            advice: AtomicU8::new(0),
        }
    }

    #[inline]
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Whether frame `f`, found at `index` without a lock, is that page
    /// and holds its bytes. The caller holds something that orders this
    /// after the frame's last change of identity: its lock, or the version
    /// read before.
    #[inline]
    fn is_page(&self, f: &Frame, index: u64) -> bool {
        f.flags() & (UPTODATE | FREE | ORPHAN) == UPTODATE
            && f.mapping.load(Ordering::Relaxed) == self.id
            && f.index.load(Ordering::Relaxed) == index
    }

    /// Looks a page up and pins its frame: a CAS that refuses a freed
    /// frame, then the index must still name the frame, which the pin now
    /// keeps from being freed (docs/design.md, "The hit protocol"). If
    /// the page is moving (being freed or taken out), settles it under the
    /// index's writer lock.
    #[inline]
    pub(crate) fn find_pin(&self, arena: &Arena, index: u64) -> Option<FrameId> {
        let id = self.pages.get(index)?;
        if arena.try_pin(id) {
            if self.pages.get(index) == Some(id) {
                return Some(id);
            }
            arena.unpin(id);
        }
        // Reclaim frees, and truncation takes pages out, only under this
        // lock: a frame in the slot now is not free and cannot become so.
        let locked = self.pages.lock(index);
        let id = self.pages.get(index)?;
        arena.pin(id);
        drop(locked);
        Some(id)
    }

    /// The frame at `index`, if resident (no pin: a hint, or the caller
    /// keeps it from being freed by other means, e.g. its UNSTABLE flag).
    pub(crate) fn lookup(&self, index: u64) -> Option<FrameId> {
        self.pages.get(index)
    }

    /// The hit path of `File::page`: looks the page up and holds its frame
    /// without pinning it, by a hazard slot (`frame/hazard.rs`) or, where
    /// this thread has none free, by the frame's read lock; then checks that
    /// the frame is still this page, up to date. Reclaim frees a frame, and
    /// a new owner fills it, only with its write lock, which waits for both,
    /// so the frame stays this page's bytes while the guard lives. `None` if
    /// absent, being read in or written, or moving: the caller then takes
    /// the pinning path.
    #[inline]
    pub(crate) fn find_read<'a>(
        &self,
        arena: &'a Arena,
        index: u64,
    ) -> Option<(FrameId, Hold<'a>)> {
        let id = self.pages.get(index)?;
        arena.prefetch(id, 0);
        let f = arena.frame(id);
        let hold = match arena.hold(id) {
            Some((h, fresh)) => {
                // After the slot's fence: odd, a writer holds the lock and
                // may not have seen the slot. `Acquire`: what the last
                // writer or free did is visible to the identity check.
                if fresh && f.lock.version().begin_read().is_none() {
                    return None;
                }
                Hold::Hazard(h)
            }
            None => Hold::Lock(f.lock.try_read()?),
        };
        if !self.is_page(f, index) {
            hold.release(arena, id);
            return None;
        }
        crate::advise::touch(self, f);
        Some((id, hold))
    }

    /// The hit path of a copying read: copies `dst.len()` bytes at `at` of
    /// page `index` with no lock and no pin, and keeps the copy only if the
    /// frame's version shows no writer and no free since before it (a
    /// seqlock read). False (with `dst` holding anything) if absent,
    /// locked for writing, or moving.
    #[inline]
    pub(crate) fn read_unlocked(
        &self,
        arena: &Arena,
        index: u64,
        at: usize,
        dst: &mut [u8],
    ) -> bool {
        let Some(id) = self.pages.get(index) else {
            return false;
        };
        arena.prefetch(id, at);
        let f = arena.frame(id);
        let Some(v) = f.lock.version().begin_read() else {
            return false;
        };
        // After `begin_read`'s acquire: the identity the frame's last
        // writer or free left, which the validation below pins down. A
        // marker page takes the pinning path, which passes the marker on
        // holding the page (a marker is set only under the write lock, so
        // none appears on this page before the validation).
        if !self.is_page(f, index) || f.flags() & RA_MARKER != 0 {
            return false;
        }
        arena.copy_unlocked(id, at, dst);
        if !f.lock.version().validate(v) {
            return false;
        }
        crate::advise::touch(self, f);
        true
    }

    /// Publishes `frame` (pinned and write-locked by the caller) at `index`,
    /// unless a frame is there already: then that one is pinned and
    /// returned as `Err`.
    pub(crate) fn insert(&self, arena: &Arena, index: u64, frame: FrameId) -> Result<(), FrameId> {
        let locked = self.pages.lock(index);
        let f = arena.frame(frame);
        f.mapping.store(self.id, Ordering::Relaxed);
        f.index.store(index, Ordering::Relaxed);
        self.pages
            .insert(&locked, index, frame)
            .inspect_err(|&existing| {
                arena.pin(existing);
            })
    }

    /// Takes `frame` out of the index at `index` if it is there (a failed
    /// read-in); returns whether it was.
    pub(crate) fn remove(&self, index: u64, frame: FrameId) -> bool {
        let locked = self.pages.lock(index);
        self.pages.remove(&locked, index, frame)
    }

    /// Number of resident pages.
    pub(crate) fn nr_pages(&self) -> usize {
        self.pages.len()
    }

    /// Records a page as dirty in the index; returns whether the mapping was clean.
    pub(crate) fn note_dirty(&self, index: u64) -> bool {
        let mut d = self.dirty.lock();
        let was_clean = d.pages.is_empty();
        if was_clean {
            d.since = Some(Instant::now());
        }
        d.pages.insert(index);
        was_clean
    }

    /// Removes a page from the dirty index.
    pub(crate) fn note_clean(&self, index: u64) {
        let mut d = self.dirty.lock();
        d.pages.remove(&index);
        if d.pages.is_empty() {
            d.since = None;
        }
    }

    /// Pages written but not yet known durable.
    pub(crate) fn nr_unstable(&self) -> usize {
        self.unstable.lock().pages.len()
    }

    pub(crate) fn nr_dirty(&self) -> usize {
        self.dirty.lock().pages.len()
    }

    /// The oldest time this mapping has been continuously dirty since.
    pub(crate) fn dirty_since(&self) -> Option<Instant> {
        self.dirty.lock().since
    }
}
