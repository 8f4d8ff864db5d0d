//! Mappings: one per cached file, like the kernel's `address_space`.
//!
//! A mapping indexes its resident pages (page index → frame) and keeps a
//! dirty index in page order, which is what lets writeback walk a file's
//! dirty pages sorted and coalesce contiguous runs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::backend::Backend;
use crate::errseq::ErrSeq;
use crate::frame::{Arena, FrameId, UPTODATE};

/// Page indexes are well spread already; a multiply is enough of a hash.
#[derive(Default)]
pub(crate) struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type PageIndex = HashMap<u64, FrameId, BuildHasherDefault<IndexHasher>>;

const SHARDS: usize = 16;

/// The page index, split by page index over locks on separate cache lines,
/// so that threads hitting different pages of one file do not contend on
/// one lock word.
pub(crate) struct PageTable {
    shards: [Shard; SHARDS],
}

#[repr(align(64))]
#[derive(Default)]
struct Shard(RwLock<PageIndex>);

impl Default for PageTable {
    fn default() -> Self {
        PageTable {
            shards: std::array::from_fn(|_| Shard::default()),
        }
    }
}

impl PageTable {
    /// The lock that covers page `index`.
    #[inline]
    pub(crate) fn shard(&self, index: u64) -> &RwLock<PageIndex> {
        // Consecutive runs of 16 pages share a shard: sequential access
        // stays on one lock, random access spreads.
        &self.shards[((index >> 4) as usize) % SHARDS].0
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().len()).sum()
    }

    /// The resident pages whose index is in `range`, in no order: a walk
    /// over the shards, or lookups when the range is the smaller.
    pub(crate) fn resident_in(&self, range: std::ops::Range<u64>) -> Vec<(u64, FrameId)> {
        let span = range.end.saturating_sub(range.start);
        if span <= self.len() as u64 {
            return range
                .filter_map(|i| self.shard(i).read().get(&i).map(|&id| (i, id)))
                .collect();
        }
        let mut found = Vec::new();
        for s in &self.shards {
            found.extend(
                s.0.read()
                    .iter()
                    .filter(|(i, _)| range.contains(i))
                    .map(|(&i, &id)| (i, id)),
            );
        }
        found
    }

    /// Removes and returns every page at or past `first`.
    pub(crate) fn remove_from(&self, first: u64) -> Vec<(u64, FrameId)> {
        let mut gone = Vec::new();
        for s in &self.shards {
            s.0.write().retain(|&i, &mut id| {
                if i >= first {
                    gone.push((i, id));
                    false
                } else {
                    true
                }
            });
        }
        gone
    }
}

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

    /// Looks a page up and pins its frame. The pin is taken under the index
    /// lock, which reclaim needs exclusively to free a frame.
    #[inline]
    pub(crate) fn find_pin(&self, arena: &Arena, index: u64) -> Option<FrameId> {
        let pages = self.pages.shard(index).read();
        let id = *pages.get(&index)?;
        arena.pin(id);
        Some(id)
    }

    /// The frame at `index`, if resident (no pin: the caller keeps it from
    /// being freed by other means, e.g. its UNSTABLE flag).
    pub(crate) fn lookup(&self, index: u64) -> Option<FrameId> {
        self.pages.shard(index).read().get(&index).copied()
    }

    /// The hit path of a copying read: looks the page up and read-locks its
    /// frame without pinning it. The frame lock is taken (without waiting)
    /// under the index lock, and reclaim frees a frame only if it can take
    /// that lock exclusively under the index write lock, so the frame stays
    /// this page's while the guard lives. `None` if absent, being read in, or
    /// write-locked: the caller then takes the pinning path.
    #[inline]
    pub(crate) fn find_read<'a>(
        &self,
        arena: &'a Arena,
        index: u64,
    ) -> Option<(FrameId, RwLockReadGuard<'a, ()>)> {
        let pages = self.pages.shard(index).read();
        let id = *pages.get(&index)?;
        let f = arena.frame(id);
        let guard = f.lock.try_read()?;
        drop(pages);
        if f.flags() & UPTODATE == 0 {
            return None;
        }
        crate::advise::touch(self, f);
        Some((id, guard))
    }

    /// Publishes `frame` (pinned by the caller) at `index`, unless a frame is
    /// there already: then that one is pinned and returned as `Err`.
    pub(crate) fn insert(&self, arena: &Arena, index: u64, frame: FrameId) -> Result<(), FrameId> {
        let mut pages = self.pages.shard(index).write();
        if let Some(&existing) = pages.get(&index) {
            arena.pin(existing);
            return Err(existing);
        }
        let f = arena.frame(frame);
        f.mapping.store(self.id, Ordering::Relaxed);
        f.index.store(index, Ordering::Relaxed);
        pages.insert(index, frame);
        Ok(())
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
