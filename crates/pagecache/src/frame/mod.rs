//! Frames: the fixed arena of page-sized slots and their atomic state.
//!
//! A frame's state is one `AtomicU64`: the pin count in the low 32 bits and
//! the flags above it. The transitions (docs/design.md, "frame state machine"):
//!
//! ```text
//!  FREE --alloc--> MAPPED|pinned (read-in under the frame lock) --> UPTODATE
//!  UPTODATE --write under frame write lock--> DIRTY
//!  DIRTY --writeback start (frame read lock held)--> WRITEBACK
//!  WRITEBACK --I/O ok--> clean (freed at once if RECLAIM and unpinned)
//!  WRITEBACK --I/O error--> DIRTY again (the data is kept, retried later)
//!  clean, unpinned, not WRITEBACK --reclaim under the index writer lock--> FREE
//!  any --truncate--> ORPHAN (out of the mapping): FREE on the last unpin
//! ```
//!
//! A pin is a CAS on the state word that refuses a free frame, and reclaim
//! frees with a CAS that requires zero pins, so a pinned frame is never
//! freed; a pinner then checks the page index still names the frame
//! (docs/design.md, "The hit protocol"). Writers modify page bytes only under the
//! frame's write lock with WRITEBACK clear, and writeback sets WRITEBACK under
//! the read lock, so the bytes an I/O reads never change under it.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

mod hazard;
mod memory;
mod seqlock;
mod state;
#[cfg(all(test, loom))]
mod tests;

use crossbeam_queue::ArrayQueue;

/// Index of a frame in the arena.
pub(crate) type FrameId = u32;

pub(crate) use hazard::Hazard;
use hazard::Hazards;
pub(crate) use seqlock::{FrameLock, FrameWriteGuard};
pub(crate) use state::*;

use crate::stats::Counter;

/// One page-sized slot's metadata; the bytes live in the [`Arena`].
///
/// One cache line each (64 bytes, as the kernel aligns `struct page`): at
/// 48 bytes a third of the frames straddled two lines, and a hit that
/// touches the lock and the identity then missed twice.
#[repr(align(64))]
pub(crate) struct Frame {
    pub(crate) state: FrameState,
    /// Mapping id and page index; written only by the allocator before the
    /// frame is published in a mapping.
    pub(crate) mapping: AtomicU64,
    pub(crate) index: AtomicU64,
    /// Bumped on every free so stale LRU entries can be recognised.
    pub(crate) gen: AtomicU32,
    /// Guards the page bytes: readers share, writers exclude; its version
    /// lets a reader copy without it (`Arena::copy_unlocked`).
    pub(crate) lock: FrameLock,
}

impl Frame {
    #[inline]
    pub(crate) fn flags(&self) -> u64 {
        self.state.load()
    }

    #[inline]
    pub(crate) fn set(&self, flag: u64) -> bool {
        self.state.set(flag)
    }

    #[inline]
    pub(crate) fn clear(&self, flag: u64) -> bool {
        self.state.clear(flag)
    }

    #[inline]
    pub(crate) fn set_unless_free(&self, flag: u64) -> bool {
        self.state.set_unless_free(flag)
    }

    #[inline]
    pub(crate) fn mark_referenced(&self) {
        self.state.mark_referenced();
    }
}

/// The arena: frame metadata, page bytes, and the free list.
pub(crate) struct Arena {
    pub(crate) frames: Box<[Frame]>,
    bytes: memory::Region,
    pub(crate) page_size: usize,
    free: ArrayQueue<FrameId>,
    /// Frames the budget allows now (`PageCache::set_memory`); the rest of
    /// `frames` is parked: out of use, its bytes given back to the system.
    limit: AtomicUsize,
    pub(crate) parked: parking_lot::Mutex<Vec<FrameId>>,
    /// Frames with at least one pin: +1 on a 0 → 1 pin, −1 on 1 → 0, split
    /// per thread so that no line bounces on the pin path.
    pinned: Counter,
    /// The slots `page()` hits hold frames by (`hazard.rs`).
    hazards: std::sync::Arc<Hazards>,
}

// SAFETY: the arena owns its mapping outright; all access to page bytes
// goes through `page_ptr`, whose callers synchronise through each frame's lock
// and WRITEBACK flag (see the module comment).
unsafe impl Send for Arena {}
// SAFETY: as above; shared access is mediated by per-frame locks and atomics.
unsafe impl Sync for Arena {}

impl Arena {
    /// `None` if the page bytes cannot be mapped (a budget larger than the
    /// machine's address space). `huge`: back them with transparent huge
    /// pages where the kernel has them (`Config::huge_pages`).
    pub(crate) fn new(nframes: usize, limit: usize, page_size: usize, huge: bool) -> Option<Self> {
        let bytes = memory::Region::new(nframes.checked_mul(page_size)?, huge)?;
        let frames = (0..nframes)
            .map(|_| Frame {
                state: FrameState::new_free(),
                mapping: AtomicU64::new(0),
                index: AtomicU64::new(0),
                gen: AtomicU32::new(0),
                lock: FrameLock::new(),
            })
            .collect::<Box<[_]>>();
        let free = ArrayQueue::new(nframes);
        for id in 0..limit as FrameId {
            let _ = free.push(id);
        }
        Some(Arena {
            frames,
            bytes,
            page_size,
            free,
            limit: AtomicUsize::new(limit),
            parked: parking_lot::Mutex::new((limit as FrameId..nframes as FrameId).rev().collect()),
            pinned: Counter::default(),
            hazards: Hazards::new(),
        })
    }

    /// Frames the budget allows now: what watermarks, dirty levels and
    /// statistics are relative to.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, frames: usize) {
        self.limit.store(frames, Ordering::Relaxed);
    }

    /// Frames allocated, parked or not.
    pub(crate) fn capacity(&self) -> usize {
        self.frames.len()
    }

    #[inline]
    pub(crate) fn frame(&self, id: FrameId) -> &Frame {
        &self.frames[id as usize]
    }

    /// Raw pointer to a frame's bytes. Reading or writing through it is the
    /// caller's to synchronise (frame lock, WRITEBACK flag).
    #[inline]
    pub(crate) fn page_ptr(&self, id: FrameId) -> *mut u8 {
        // Checked in every build: the pointer is dereferenced by unsafe code
        // that trusts it, and a frame id comes from internal tables only, so
        // a bad one is a bug to stop at, not memory to corrupt.
        assert!((id as usize) < self.frames.len(), "frame {id} out of range");
        // SAFETY: id < nframes, so the offset stays inside the mapping.
        unsafe { self.bytes.base().as_ptr().add(id as usize * self.page_size) }
    }

    /// Starts loading the first line of the page at `at` of frame `id` into
    /// the cache, so that its miss overlaps the frame word's (a lock's
    /// atomic would otherwise order the two misses one after the other).
    /// A hint only: it reads nothing and cannot fault.
    #[inline]
    pub(crate) fn prefetch(&self, id: FrameId, at: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.page_ptr(id).wrapping_add(at.min(self.page_size - 1));
            // SAFETY: `sse` is part of the x86_64 baseline, and a prefetch
            // only hints the cache: it dereferences nothing and cannot fault,
            // whatever the address (this one is inside the arena anyway).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (id, at);
    }

    /// The bytes of a frame the caller holds the read lock of, or which is
    /// under writeback it started (no writer can run either way).
    ///
    /// # Safety
    /// No thread may write the frame's bytes for the lifetime `'a`.
    #[inline]
    pub(crate) unsafe fn page(&self, id: FrameId) -> &[u8] {
        // SAFETY: in bounds (page_ptr); no concurrent writer per the contract.
        unsafe { std::slice::from_raw_parts(self.page_ptr(id), self.page_size) }
    }

    /// The bytes of a frame the caller holds the write lock of with WRITEBACK clear.
    ///
    /// # Safety
    /// No other thread may read or write the frame's bytes for `'a`.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn page_mut(&self, id: FrameId) -> &mut [u8] {
        // SAFETY: in bounds; exclusive per the contract.
        unsafe { std::slice::from_raw_parts_mut(self.page_ptr(id), self.page_size) }
    }

    /// Takes a free frame, returned pinned once and with no other flags.
    pub(crate) fn pop_free(&self) -> Option<FrameId> {
        let id = self.free.pop()?;
        let f = self.frame(id);
        f.state.alloc();
        self.pinned.add(1);
        Some(id)
    }

    /// Frames with at least one pin now (page guards taken on a hit hold
    /// the frame by its lock instead, and are not counted).
    pub(crate) fn nr_pinned(&self) -> usize {
        usize::try_from(self.pinned.get_signed()).unwrap_or(0)
    }

    /// Frames with at least one pin, locked, or named by a hazard slot (a
    /// reader holding a frame that way holds it as surely as a pin). A walk
    /// over the arena, for the rare out-of-memory decision only.
    pub(crate) fn count_pinned(&self) -> usize {
        let mut held = self.hazards.all_held();
        held.sort_unstable();
        self.frames
            .iter()
            .enumerate()
            .filter(|(id, f)| {
                f.flags() & PIN_MASK != 0
                    || f.lock.is_locked()
                    || held.binary_search(&(*id as FrameId)).is_ok()
            })
            .count()
    }

    /// Holds frame `id` by this thread's hazard slots (`hazard.rs`); with
    /// `true` the caller must then check the frame's version and identity
    /// to see whether it holds it. `None` if this thread has no free slot.
    #[inline]
    pub(crate) fn hold(&self, id: FrameId) -> Option<(Hazard<'_>, bool)> {
        self.hazards.hold(id)
    }

    /// One more hold on frame `id` if this thread holds it by a hazard slot
    /// already: how a thread takes a frame it holds again without the
    /// frame's lock, which a writer waiting for that slot holds.
    #[inline]
    pub(crate) fn reenter(&self, id: FrameId) -> Option<Hazard<'_>> {
        self.hazards.reenter(id)
    }

    /// Frame `id`'s write lock, once no `page()` guard names the frame:
    /// every exclusive use of a frame's bytes or identity takes it here.
    pub(crate) fn write_frame(&self, id: FrameId) -> FrameWriteGuard<'_> {
        let guard = self.frame(id).lock.write();
        self.hazards.wait_released(id);
        guard
    }

    /// Frame `id`'s write lock if nobody holds the frame: no lock holder
    /// and no `page()` guard naming it.
    pub(crate) fn try_write_frame(&self, id: FrameId) -> Option<FrameWriteGuard<'_>> {
        let guard = self.frame(id).lock.try_write()?;
        (!self.hazards.held(id)).then_some(guard)
    }

    /// After a reader without a pin let go (its slot or its read lock):
    /// frees the frame if it was truncated away meanwhile (nobody else
    /// will).
    #[inline]
    pub(crate) fn release_read(&self, id: FrameId) {
        if self.frame(id).flags() & ORPHAN != 0 {
            self.try_free_orphan(id);
        }
    }

    pub(crate) fn nr_free(&self) -> usize {
        self.free.len()
    }

    /// Returns a frame whose state the caller has just set to FREE.
    pub(crate) fn push_free(&self, id: FrameId) {
        let f = self.frame(id);
        f.gen.fetch_add(1, Ordering::Relaxed);
        f.lock.version().freed();
        debug_assert_eq!(f.flags(), FREE);
        // Capacity equals the frame count and a frame is freed once per
        // allocation, so the queue cannot be full.
        let pushed = self.free.push(id);
        debug_assert!(pushed.is_ok());
    }

    /// Returns a frame fresh from `pop_free` that was never published.
    pub(crate) fn release_unused(&self, id: FrameId) {
        self.frame(id).state.release_unused();
        self.pinned.sub(1);
        self.push_free(id);
    }

    /// Adds a pin to a frame that cannot be freed meanwhile: one the
    /// caller owns or pins already, or one in a page index slot the caller
    /// holds the writer lock of.
    #[inline]
    pub(crate) fn pin(&self, id: FrameId) {
        if self.frame(id).state.pin() {
            self.pinned.add(1);
        }
    }

    /// Pins a frame found without a lock, unless it is free or an orphan:
    /// one CAS, which a reclaim CAS on the same word excludes. The caller
    /// then checks the frame is still the page it looked for.
    #[inline]
    pub(crate) fn try_pin(&self, id: FrameId) -> bool {
        match self.frame(id).state.try_pin() {
            Some(first) => {
                if first {
                    self.pinned.add(1);
                }
                true
            }
            None => false,
        }
    }

    /// Copies `dst.len()` bytes at `at` of frame `id` without its lock. The
    /// copy is meaningful only if `Version::validate` then accepts the version
    /// `Version::begin_read` returned before it.
    #[inline]
    pub(crate) fn copy_unlocked(&self, id: FrameId, at: usize, dst: &mut [u8]) {
        assert!(at + dst.len() <= self.page_size, "copy past the page");
        // SAFETY: page_ptr is in bounds, and so is the range (asserted).
        unsafe { seqlock::racy_copy(self.page_ptr(id).add(at), dst) }
    }

    /// Drops a pin; frees an orphaned frame on its last unpin. Returns whether
    /// this was the last pin.
    #[inline]
    pub(crate) fn unpin(&self, id: FrameId) -> bool {
        let prev = self.frame(id).state.unpin();
        if prev & PIN_MASK != 1 {
            return false;
        }
        self.pinned.sub(1);
        if prev & ORPHAN != 0 {
            self.try_free_orphan(id);
        }
        true
    }

    /// Frees an orphan (out of any mapping) once it is unpinned and not under
    /// writeback. Exactly one caller wins the CAS.
    pub(crate) fn try_free_orphan(&self, id: FrameId) -> bool {
        // A page guard taken on a hit holds the frame by a hazard slot (or
        // its read lock) and no pin, and may have found the frame in the
        // index before truncation took it out. Taking the lock exclusively
        // with no slot naming the frame orders this free against such a
        // reader: one that comes after sees the frame FREE and lets go. A
        // reader that holds it frees the orphan itself when it lets go
        // (`release_read`). Reader and truncation may each miss the other's
        // write (a release and a flag set on different words); then reclaim,
        // meeting the orphan on the inactive list, frees it
        // (`reclaim::direct::shrink`): late, never leaked, and without a
        // fence on the hit path's release.
        let f = self.frame(id);
        loop {
            if !f.state.orphan_freeable() {
                return false;
            }
            if let Some(busy) = self.try_write_frame(id) {
                if !f.state.try_free_orphan() {
                    return false;
                }
                drop(busy);
                self.push_free(id);
                return true;
            }
            if !f.lock.is_locked_exclusive() {
                return false;
            }
            // Another freer holds it for a moment (truncation, the last
            // unpin and the end of writeback may all try at once): had this
            // one given up, the holder may have looked before the state
            // became freeable, and nobody would free it.
            std::thread::yield_now();
        }
    }
}
