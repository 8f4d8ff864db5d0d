//! Zero-copy page access: pinned guards that deref to the page's bytes.

use std::ops::{Deref, DerefMut};

use parking_lot::RwLockReadGuard;

use crate::frame::{Arena, FrameId, FrameWriteGuard, Hazard};

/// Which pages the current thread holds guards on, so that a call that would
/// wait on one of them returns [`Error::WouldDeadlock`](crate::Error) instead.
pub(crate) mod held {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use crate::error::{Error, Result};

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
        static HELD: RefCell<Held> = const {
            RefCell::new(Held { list: Vec::new(), map: None })
        };
    }

    /// Guards held past this many go into a map: a thread that pins a whole
    /// range would otherwise compare every new page with every page it holds.
    const SPILL: usize = 16;

    /// The guards one thread holds: a short list (a thread usually holds a
    /// few), or, past `SPILL`, (mapping, index) -> (read, write) guards.
    pub(super) struct Held {
        list: Vec<(u64, u64, bool)>,
        map: Option<HashMap<(u64, u64), (u32, u32)>>,
    }

    impl Held {
        pub(super) fn push(&mut self, mapping: u64, index: u64, write: bool) {
            if let Some(map) = &mut self.map {
                let e = map.entry((mapping, index)).or_default();
                if write {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
                return;
            }
            self.list.push((mapping, index, write));
            if self.list.len() > SPILL {
                let mut map = HashMap::with_capacity(4 * SPILL);
                for (m, i, w) in self.list.drain(..) {
                    let e: &mut (u32, u32) = map.entry((m, i)).or_default();
                    if w {
                        e.1 += 1;
                    } else {
                        e.0 += 1;
                    }
                }
                self.map = Some(map);
            }
        }

        pub(super) fn pop(&mut self, mapping: u64, index: u64, write: bool) {
            if let Some(map) = &mut self.map {
                if let Some(e) = map.get_mut(&(mapping, index)) {
                    let n = if write { &mut e.1 } else { &mut e.0 };
                    *n = n.saturating_sub(1);
                    if *e == (0, 0) {
                        map.remove(&(mapping, index));
                    }
                }
                if map.is_empty() {
                    self.map = None;
                }
                return;
            }
            let e = (mapping, index, write);
            if let Some(pos) = self.list.iter().rposition(|&x| x == e) {
                self.list.swap_remove(pos);
            }
        }

        /// Whether read guards, and whether write guards, are held on the page.
        pub(super) fn on(&self, mapping: u64, index: u64) -> (bool, bool) {
            if let Some(map) = &self.map {
                return map
                    .get(&(mapping, index))
                    .map_or((false, false), |&(r, w)| (r > 0, w > 0));
            }
            self.list
                .iter()
                .filter(|&&(m, i, _)| m == mapping && i == index)
                .fold((false, false), |(r, w), &(_, _, x)| (r || !x, w || x))
        }

        /// Whether any guard held is on a mapping and of a kind `f` accepts.
        pub(super) fn any(&self, f: impl Fn(u64, bool) -> bool) -> bool {
            match &self.map {
                Some(map) => map
                    .iter()
                    .any(|(&(m, _), &(r, w))| (r > 0 && f(m, false)) || (w > 0 && f(m, true))),
                None => self.list.iter().any(|&(m, _, w)| f(m, w)),
            }
        }
    }

    pub(crate) fn push(mapping: u64, index: u64, write: bool) {
        COUNT.with(|c| c.set(c.get() + 1));
        HELD.with(|h| h.borrow_mut().push(mapping, index, write));
    }

    pub(crate) fn pop(mapping: u64, index: u64, write: bool) {
        COUNT.with(|c| c.set(c.get() - 1));
        HELD.with(|h| h.borrow_mut().pop(mapping, index, write));
    }

    /// Errors if taking the page (for writing if `write`) would wait on a
    /// guard this thread holds; returns whether this thread holds a read guard
    /// on it (so the caller must take the lock recursively).
    #[inline]
    pub(crate) fn check(mapping: u64, index: u64, write: bool) -> Result<bool> {
        if COUNT.with(std::cell::Cell::get) == 0 {
            return Ok(false);
        }
        let (reading, writing) = HELD.with(|h| h.borrow().on(mapping, index));
        if writing || (reading && write) {
            return Err(Error::WouldDeadlock(
                "accessing a page this thread holds a guard on",
            ));
        }
        Ok(reading)
    }

    /// Whether this thread holds any guard.
    #[inline]
    pub(crate) fn any() -> bool {
        COUNT.with(std::cell::Cell::get) != 0
    }

    /// Whether this thread holds any guard on the mapping.
    pub(crate) fn any_on(mapping: u64) -> bool {
        COUNT.with(std::cell::Cell::get) != 0 && HELD.with(|h| h.borrow().any(|m, _| m == mapping))
    }

    /// Whether this thread holds any write guard.
    pub(crate) fn any_write() -> bool {
        COUNT.with(std::cell::Cell::get) != 0 && HELD.with(|h| h.borrow().any(|_, w| w))
    }

    /// Whether this thread holds a write guard on the mapping.
    pub(crate) fn write_on(mapping: u64) -> bool {
        COUNT.with(std::cell::Cell::get) != 0
            && HELD.with(|h| h.borrow().any(|m, w| m == mapping && w))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn held() -> Held {
            Held {
                list: Vec::new(),
                map: None,
            }
        }

        /// The same answers from the list and, past `SPILL`, from the map,
        /// and back to the list once the map empties.
        #[test]
        fn many_guards_spill_into_a_map_with_the_same_answers() {
            let mut h = held();
            for n in [SPILL / 2, 10 * SPILL] {
                for i in 0..n as u64 {
                    h.push(1, i, false);
                }
                h.push(1, 0, false); // a second read guard on page 0
                h.push(2, 7, true);
                assert_eq!(h.map.is_some(), n > SPILL);
                assert_eq!(h.on(1, 3), (true, false));
                assert_eq!(h.on(1, n as u64), (false, false));
                assert_eq!(h.on(2, 7), (false, true));
                assert!(h.any(|m, w| m == 2 && w));
                assert!(!h.any(|m, w| m == 1 && w));
                h.pop(1, 0, false);
                assert_eq!(h.on(1, 0), (true, false), "one of two guards left");
                h.pop(2, 7, true);
                assert!(!h.any(|_, w| w));
                for i in 0..n as u64 {
                    h.pop(1, i, false);
                }
                assert_eq!(h.on(1, 0), (false, false));
                assert!(h.map.is_none() && h.list.is_empty());
            }
        }
    }
}

/// A pinned, shared view of one cached page. Reclaim cannot take the frame
/// while it exists, and writers of the page wait for it.
pub struct PageReadGuard<'a> {
    pub(crate) arena: &'a Arena,
    pub(crate) id: FrameId,
    pub(crate) hold: Option<Hold<'a>>,
    /// Whether the guard holds a pin besides its hold. A hit holds the
    /// frame by a hazard slot or its lock alone, which keeps the frame just
    /// as well and saves the pin's two atomic operations.
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
        // SAFETY: for our lifetime we hold the frame's read lock or a hazard
        // slot naming it, either of which keeps writers out (`Hold`).
        unsafe { self.arena.page(self.id) }
    }
}

impl Drop for PageReadGuard<'_> {
    fn drop(&mut self) {
        let hold = self.hold.take();
        held::pop(self.mapping, self.index, false);
        if self.pinned {
            drop(hold);
            self.arena.unpin(self.id);
        } else if let Some(hold) = hold {
            hold.release(self.arena, self.id);
        }
    }
}

/// How a page read guard keeps writers out of its frame: by what the
/// variant's drop does, never read.
#[allow(dead_code)]
pub(crate) enum Hold<'a> {
    /// The frame's read lock.
    Lock(RwLockReadGuard<'a, ()>),
    /// A hazard slot naming the frame, seen by every writer
    /// (`frame/hazard.rs`).
    Hazard(Hazard<'a>),
}

impl Hold<'_> {
    /// Lets go of a frame held without a pin, and frees it if it was
    /// truncated away meanwhile (`Arena::release_read`).
    pub(crate) fn release(self, arena: &Arena, id: FrameId) {
        drop(self);
        arena.release_read(id);
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
