//! The frame state word and every transition on it.
//!
//! One `AtomicU64`: pin count in the low 32 bits, flags above. Each
//! transition that must be atomic with respect to another is one CAS here;
//! the callers add the locks (mapping index lock for pin vs. free, frame lock
//! for dirty vs. writeback start). The loom models in `frame/tests/` check
//! these functions under those locks.

use std::sync::atomic::Ordering;

use crate::sync::AtomicU64;

pub(crate) const PIN_MASK: u64 = 0xffff_ffff;
/// The page's bytes are valid (read-in finished).
pub(crate) const UPTODATE: u64 = 1 << 32;
/// The bytes differ from the backend's.
pub(crate) const DIRTY: u64 = 1 << 33;
/// An I/O is reading the bytes; writers must wait.
pub(crate) const WRITEBACK: u64 = 1 << 34;
/// Reclaim wants the frame: free it when its writeback completes.
pub(crate) const RECLAIM: u64 = 1 << 35;
/// Accessed since reclaim last looked.
pub(crate) const REFERENCED: u64 = 1 << 36;
/// On the active list.
pub(crate) const ACTIVE: u64 = 1 << 37;
/// Out of its mapping (truncated, or a failed read-in): free on last unpin.
pub(crate) const ORPHAN: u64 = 1 << 38;
/// On the free list.
pub(crate) const FREE: u64 = 1 << 39;
/// Read ahead and not yet accessed: its first access is the one that would
/// have read it in, so it does not count as a reference.
pub(crate) const READAHEAD: u64 = 1 << 40;
/// The readahead marker (the kernel's `PG_readahead`): the first access to
/// this page starts reading the open's next window in the background, so it
/// arrives before the reader gets there.
pub(crate) const RA_MARKER: u64 = 1 << 42;
/// Written to the backend, not yet known durable (NFS's unstable write): the
/// bytes must stay until a backend sync covering them succeeds, because a
/// failed sync may have dropped them (`writeback/commit.rs`).
pub(crate) const UNSTABLE: u64 = 1 << 41;

/// A frame's state word.
pub(crate) struct FrameState(AtomicU64);

impl FrameState {
    pub(crate) fn new_free() -> Self {
        FrameState(AtomicU64::new(FREE))
    }

    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Sets `flag`; returns whether it was clear before.
    #[inline]
    pub(crate) fn set(&self, flag: u64) -> bool {
        self.0.fetch_or(flag, Ordering::AcqRel) & flag == 0
    }

    /// Sets `flag` unless the frame is free (reclaim marks frames it looked
    /// at a moment ago, which I/O completion may have freed since); returns
    /// whether it was set by this call.
    #[inline]
    pub(crate) fn set_unless_free(&self, flag: u64) -> bool {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            if cur & (FREE | flag) != 0 {
                return false;
            }
            match self
                .0
                .compare_exchange_weak(cur, cur | flag, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Clears `flag`; returns whether it was set before.
    #[inline]
    pub(crate) fn clear(&self, flag: u64) -> bool {
        self.0.fetch_and(!flag, Ordering::AcqRel) & flag != 0
    }

    /// Records an access: sets REFERENCED, or, on a read-ahead page's first
    /// access, only clears READAHEAD. Skips the read-modify-write when the
    /// bit is already set. A CAS that leaves a free frame alone: an
    /// optimistic reader marks the page after its copy, holding nothing,
    /// when the frame may have been freed since (a free frame's word is
    /// exactly FREE).
    #[inline]
    pub(crate) fn mark_referenced(&self) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            if cur & (REFERENCED | FREE) != 0 {
                return;
            }
            let new = if cur & READAHEAD != 0 {
                cur & !READAHEAD
            } else {
                cur | REFERENCED
            };
            match self
                .0
                .compare_exchange(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// FREE → pinned once, no flags: the frame leaves the free list.
    #[inline]
    pub(crate) fn alloc(&self) {
        debug_assert_eq!(self.load(), FREE);
        self.0.store(1, Ordering::Release);
    }

    /// Pinned once, never published → FREE.
    #[inline]
    pub(crate) fn release_unused(&self) {
        debug_assert_eq!(self.load() & !PIN_MASK, 0);
        self.0.store(FREE, Ordering::Release);
    }

    /// Adds a pin; returns whether the count was zero.
    #[inline]
    pub(crate) fn pin(&self) -> bool {
        self.0.fetch_add(1, Ordering::AcqRel) & PIN_MASK == 0
    }

    /// Adds a pin unless the frame is free or an orphan; `Some(whether the
    /// count was zero)` if pinned. A free frame's word is overwritten when
    /// it is allocated, so a blind add there could be lost or steal a pin.
    #[inline]
    pub(crate) fn try_pin(&self) -> Option<bool> {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            if cur & (FREE | ORPHAN) != 0 {
                return None;
            }
            // Strong: no spurious failure for the loom models to loop on.
            match self
                .0
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(cur & PIN_MASK == 0),
                Err(now) => cur = now,
            }
        }
    }

    /// Drops a pin; returns the state before.
    #[inline]
    pub(crate) fn unpin(&self) -> u64 {
        let prev = self.0.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(prev & PIN_MASK > 0, "unpin of an unpinned frame");
        prev
    }

    /// Clean, durable, unpinned, not under writeback, still mapped → FREE.
    /// A pin racing in changes the word, so the CAS fails; a pinner that
    /// comes after sees FREE and refuses (`try_pin`).
    pub(crate) fn try_reclaim(&self) -> bool {
        let cur = self.load();
        if cur & (PIN_MASK | DIRTY | WRITEBACK | UNSTABLE | FREE | ORPHAN) != 0 {
            return false;
        }
        self.0
            .compare_exchange(cur, FREE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether `try_free_orphan` could succeed now.
    #[inline]
    pub(crate) fn orphan_freeable(&self) -> bool {
        self.load() & (ORPHAN | PIN_MASK | WRITEBACK | DIRTY | UNSTABLE | FREE) == ORPHAN
    }

    /// ORPHAN, unpinned, not under writeback, its dirty and unstable state
    /// dropped by whoever orphaned it (so the counts stay exact) → FREE.
    /// Exactly one caller wins.
    pub(crate) fn try_free_orphan(&self) -> bool {
        let mut cur = self.load();
        loop {
            if cur & ORPHAN == 0 || cur & (PIN_MASK | WRITEBACK | DIRTY | UNSTABLE | FREE) != 0 {
                return false;
            }
            match self
                .0
                .compare_exchange(cur, FREE, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// DIRTY → WRITEBACK (the kernel's `folio_clear_dirty_for_io` +
    /// `folio_start_writeback`). The caller holds the frame's read lock, so
    /// no writer is between copying bytes and setting DIRTY.
    pub(crate) fn start_writeback(&self) -> bool {
        let mut cur = self.load();
        loop {
            if cur & (DIRTY | WRITEBACK | ORPHAN) != DIRTY {
                return false;
            }
            let new = (cur & !DIRTY) | WRITEBACK;
            match self
                .0
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Ends a failed writeback: DIRTY is set before WRITEBACK clears, so the
    /// page is never clean with unwritten data. Returns (re-dirtied, state
    /// after).
    pub(crate) fn end_writeback_err(&self) -> (bool, u64) {
        let redirtied = self.set(DIRTY);
        let after = self.0.fetch_and(!WRITEBACK, Ordering::AcqRel) & !WRITEBACK;
        (redirtied, after)
    }

    /// Ends a successful writeback: WRITEBACK → UNSTABLE in one step, so
    /// reclaim never sees the page clean before a sync made it durable. An
    /// orphan (truncated away) only loses WRITEBACK. Returns (newly unstable,
    /// state after).
    pub(crate) fn end_writeback_ok(&self) -> (bool, u64) {
        let mut cur = self.load();
        loop {
            let mut new = cur & !WRITEBACK;
            if cur & ORPHAN == 0 {
                new |= UNSTABLE;
            }
            match self
                .0
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (new & !cur & UNSTABLE != 0, new),
                Err(now) => cur = now,
            }
        }
    }

    /// A sync that covered the page succeeded: UNSTABLE → clean (durable).
    /// Returns whether it was unstable.
    pub(crate) fn commit(&self) -> bool {
        self.clear(UNSTABLE)
    }

    /// A sync failed: the device may have dropped the write, so UNSTABLE →
    /// DIRTY in one step (rewritten by the next writeback). Returns (was
    /// unstable, newly dirty).
    /// A truncated page (ORPHAN) only loses UNSTABLE: its bytes are no
    /// longer the file's.
    pub(crate) fn uncommit(&self) -> (bool, bool) {
        let mut cur = self.load();
        loop {
            if cur & UNSTABLE == 0 {
                return (false, false);
            }
            let new = if cur & ORPHAN != 0 {
                cur & !UNSTABLE
            } else {
                (cur | DIRTY) & !UNSTABLE
            };
            match self
                .0
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (true, cur & DIRTY == 0),
                Err(now) => cur = now,
            }
        }
    }
}
