//! The frame lock and its version: a reader-writer lock over the page's
//! bytes, plus a sequence number that lets a reader copy the bytes without
//! taking the lock and tell afterwards whether anything changed them
//! (the optimistic latch of the `LeanStore` paper, vmcache's page-state word).
//!
//! The version is odd while a writer holds the lock, and moves on when the
//! frame is freed. Bytes change only under the write lock (every `page_mut`
//! caller holds it), so a copy made between two reads of the same even
//! version saw no writer and no reuse.

use std::sync::atomic::Ordering;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::sync::{fence, AtomicU64};

/// The sequence number: odd while a writer holds the lock. Every transition
/// is here, so the loom model (`frame/tests/loom_hit.rs`) checks this code.
pub(crate) struct Version(AtomicU64);

impl Version {
    pub(crate) fn new() -> Self {
        Version(AtomicU64::new(0))
    }

    /// A writer took the lock.
    #[inline]
    pub(crate) fn begin_write(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
        // Orders the odd version before the bytes this writer changes: a
        // reader that sees any of them sees the odd version after its copy.
        fence(Ordering::Release);
    }

    /// The writer is about to let go of the lock.
    #[inline]
    pub(crate) fn end_write(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    /// The frame was freed: moves on by 2 (parity is the writer's), so a
    /// reader that began before cannot validate a copy of bytes the next
    /// owner, or `set_memory` giving a parked frame's memory back, changes.
    #[inline]
    pub(crate) fn freed(&self) {
        self.0.fetch_add(2, Ordering::Release);
    }

    /// The version before an optimistic read; `None` while a writer holds
    /// the lock. `Acquire`: whatever the last writer or free did before its
    /// release (the frame's identity, its bytes) is visible after this.
    #[inline]
    pub(crate) fn begin_read(&self) -> Option<u64> {
        let v = self.0.load(Ordering::Acquire);
        (v & 1 == 0).then_some(v)
    }

    /// Whether nothing changed the bytes since `begin_read` returned `v`.
    #[inline]
    pub(crate) fn validate(&self, v: u64) -> bool {
        // The copy's loads happen before the version is read again.
        fence(Ordering::Acquire);
        self.0.load(Ordering::Relaxed) == v
    }
}

/// A frame's lock over its bytes, with the version optimistic readers check.
pub(crate) struct FrameLock {
    rw: RwLock<()>,
    version: Version,
}

/// Exclusive access to a frame's bytes; the version is odd while it lives.
pub(crate) struct FrameWriteGuard<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
    version: &'a Version,
}

impl Drop for FrameWriteGuard<'_> {
    fn drop(&mut self) {
        // Even again before the lock is free (the field drops after this),
        // so the next writer's odd bump cannot interleave with this one.
        self.version.end_write();
    }
}

impl FrameWriteGuard<'_> {
    /// Keeps the frame write-locked (its version odd) past this guard, for
    /// a read that another thread completes: that thread takes the lock
    /// back with [`FrameLock::adopt_write`].
    pub(crate) fn detach(self) {
        std::mem::forget(self);
    }
}

impl FrameLock {
    /// The guard of a write lock left held by [`FrameWriteGuard::detach`].
    ///
    /// # Safety
    /// The lock is held exclusively by a detached guard, and no other
    /// thread adopts it: the returned guard is its only owner.
    pub(crate) unsafe fn adopt_write(&self) -> FrameWriteGuard<'_> {
        FrameWriteGuard {
            // SAFETY: the caller's contract: the lock is write-locked and
            // this guard is the one that will unlock it. parking_lot's lock
            // does not record which thread locked it, so another thread
            // may unlock it.
            _guard: unsafe { self.rw.make_write_guard_unchecked() },
            version: &self.version,
        }
    }

    pub(crate) fn new() -> Self {
        FrameLock {
            rw: RwLock::new(()),
            version: Version::new(),
        }
    }

    fn writing<'a>(&'a self, guard: RwLockWriteGuard<'a, ()>) -> FrameWriteGuard<'a> {
        self.version.begin_write();
        FrameWriteGuard {
            _guard: guard,
            version: &self.version,
        }
    }

    pub(crate) fn write(&self) -> FrameWriteGuard<'_> {
        self.writing(self.rw.write())
    }

    pub(crate) fn try_write(&self) -> Option<FrameWriteGuard<'_>> {
        self.rw.try_write().map(|g| self.writing(g))
    }

    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.rw.read()
    }

    #[inline]
    pub(crate) fn read_recursive(&self) -> RwLockReadGuard<'_, ()> {
        self.rw.read_recursive()
    }

    #[inline]
    pub(crate) fn try_read(&self) -> Option<RwLockReadGuard<'_, ()>> {
        self.rw.try_read()
    }

    #[inline]
    pub(crate) fn is_locked(&self) -> bool {
        self.rw.is_locked()
    }

    #[inline]
    pub(crate) fn is_locked_exclusive(&self) -> bool {
        self.rw.is_locked_exclusive()
    }

    #[inline]
    pub(crate) fn version(&self) -> &Version {
        &self.version
    }
}

/// Copies `dst.len()` bytes from `src` while a writer may be changing them;
/// the caller keeps the copy only if the frame's version validates.
///
/// # Safety
/// `src..src + dst.len()` lies in one live allocation (the arena).
#[inline]
pub(crate) unsafe fn racy_copy(src: *const u8, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `rep movsb` copies rcx bytes from rsi to rdi, both in bounds
    // (the caller's contract and `dst`'s length); the direction flag is
    // clear on entry to an `asm!` block. On why a copy that may race with a
    // writer is sound: the bytes are read by this block, which the
    // compiler cannot see into, as x86 loads, each single-copy atomic; that
    // is the per-byte relaxed atomic copy of C++'s P1478 (the seqlock
    // reader's copy), which may read torn data but never invokes undefined
    // behaviour by itself, and torn data is discarded unless the version
    // validates (only `u8`s, so any value read is valid meanwhile). The
    // writer's side are plain stores under the lock; the language's model
    // still calls a plain store racing with a load a data race, the same
    // residual gap crossbeam's `AtomicCell` seqlock documents. It cannot
    // miscompile here: the writer's stores are ordered by the lock and the
    // version's release, and the reader's loads are in `asm!`, which the
    // compiler may neither elide, duplicate nor reason about.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") dst.len() => _,
            inout("rsi") src => _,
            inout("rdi") dst.as_mut_ptr() => _,
            options(nostack, preserves_flags)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (k, d) in dst.iter_mut().enumerate() {
        // SAFETY: in bounds per the contract; an atomic load races with no
        // atomic access, and the torn-data argument is the one above.
        *d = unsafe { (*src.add(k).cast::<std::sync::atomic::AtomicU8>()).load(Ordering::Relaxed) };
    }
}
