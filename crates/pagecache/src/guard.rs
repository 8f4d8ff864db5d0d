//! Zero-copy page access: pinned guards that deref to the page's bytes.

use std::ops::{Deref, DerefMut};

use parking_lot::RwLockReadGuard;

use crate::frame::{Arena, FrameId, FrameWriteGuard};

/// Which pages the current thread holds guards on, so that a call that would
/// wait on one of them returns [`Error::WouldDeadlock`](crate::Error) instead.
pub(crate) mod held {
    use std::cell::{Cell, RefCell};

    use crate::error::{Error, Result};

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
        static HELD: RefCell<Vec<(u64, u64, bool)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn push(mapping: u64, index: u64, write: bool) {
        COUNT.with(|c| c.set(c.get() + 1));
        HELD.with(|h| h.borrow_mut().push((mapping, index, write)));
    }

    pub(crate) fn pop(mapping: u64, index: u64, write: bool) {
        COUNT.with(|c| c.set(c.get() - 1));
        HELD.with(|h| {
            let mut h = h.borrow_mut();
            if let Some(pos) = h.iter().rposition(|&e| e == (mapping, index, write)) {
                h.swap_remove(pos);
            }
        });
    }

    /// Errors if taking the page (for writing if `write`) would wait on a
    /// guard this thread holds; returns whether this thread holds a read guard
    /// on it (so the caller must take the lock recursively).
    #[inline]
    pub(crate) fn check(mapping: u64, index: u64, write: bool) -> Result<bool> {
        if COUNT.with(std::cell::Cell::get) == 0 {
            return Ok(false);
        }
        HELD.with(|h| {
            let mut reading = false;
            for &(m, i, w) in h.borrow().iter() {
                if m == mapping && i == index {
                    if w || write {
                        return Err(Error::WouldDeadlock(
                            "accessing a page this thread holds a guard on",
                        ));
                    }
                    reading = true;
                }
            }
            Ok(reading)
        })
    }

    /// Whether this thread holds any guard.
    #[inline]
    pub(crate) fn any() -> bool {
        COUNT.with(std::cell::Cell::get) != 0
    }

    /// Whether this thread holds any guard on the mapping.
    pub(crate) fn any_on(mapping: u64) -> bool {
        COUNT.with(std::cell::Cell::get) != 0
            && HELD.with(|h| h.borrow().iter().any(|&(m, _, _)| m == mapping))
    }

    /// Whether this thread holds any write guard.
    pub(crate) fn any_write() -> bool {
        COUNT.with(std::cell::Cell::get) != 0
            && HELD.with(|h| h.borrow().iter().any(|&(_, _, w)| w))
    }

    /// Whether this thread holds a write guard on the mapping.
    pub(crate) fn write_on(mapping: u64) -> bool {
        COUNT.with(std::cell::Cell::get) != 0
            && HELD.with(|h| h.borrow().iter().any(|&(m, _, w)| m == mapping && w))
    }
}

/// A pinned, shared view of one cached page. Reclaim cannot take the frame
/// while it exists, and writers of the page wait for it.
pub struct PageReadGuard<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) id: FrameId,
    pub(crate) lock: Option<RwLockReadGuard<'a, ()>>,
    /// Whether the guard holds a pin besides the lock. A hit takes the lock
    /// alone (under the index lock, like a copying read), which keeps the
    /// frame just as well and saves two atomic operations.
    pub(crate) pinned: bool,
    pub(crate) mapping: u64,
    pub(crate) index: u64,
}

impl PageReadGuard<'_> {
    /// The page index in its file.
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl Deref for PageReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the frame's read lock for our lifetime.
        unsafe { self.arena.page(self.id) }
    }
}

impl Drop for PageReadGuard<'_> {
    fn drop(&mut self) {
        self.lock.take();
        held::pop(self.mapping, self.index, false);
        if self.pinned {
            self.arena.unpin(self.id);
        } else {
            self.arena.release_read(self.id);
        }
    }
}

/// A pinned, exclusive view of one cached page, already marked dirty.
/// Its bytes reach the backend by writeback after the guard is dropped.
pub struct PageWriteGuard<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) id: FrameId,
    pub(crate) lock: Option<FrameWriteGuard<'a>>,
    pub(crate) mapping: u64,
    pub(crate) index: u64,
}

impl PageWriteGuard<'_> {
    /// The page index in its file.
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl Deref for PageWriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the frame's write lock with WRITEBACK clear.
        unsafe { self.arena.page(self.id) }
    }
}

impl DerefMut for PageWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: we hold the frame's write lock with WRITEBACK clear, and
        // `&mut self` makes this the only live view.
        unsafe { self.arena.page_mut(self.id) }
    }
}

impl Drop for PageWriteGuard<'_> {
    fn drop(&mut self) {
        self.lock.take();
        held::pop(self.mapping, self.index, true);
        self.arena.unpin(self.id);
    }
}
