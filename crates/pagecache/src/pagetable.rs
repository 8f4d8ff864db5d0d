//! A mapping's page index (page index → frame): a radix tree of atomic
//! slots, like the kernel's xarray. Readers take no lock: a lookup is a few
//! dependent loads. Writers (insert, remove, truncate) take one of a few
//! sharded mutexes, so that a removal and a truncation never both take the
//! same page out; readers validate what they find against the frame itself
//! (the hit protocol, docs/design.md).
//!
//! Indexes are split by bit length over a forest of trees of growing
//! height (64 slots per node): tree `t` holds the indexes of `6t + 1` to
//! `6t + 6` bits, so a file of 16 MiB (4 KiB pages) is two levels deep, one
//! of 1 GiB three, without a root that must be swapped to grow. Nodes are
//! made once (`OnceLock`) and live as long as the mapping: no reader can
//! ever hold a node that is being freed, so the tree needs no unsafe code.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::{Mutex, MutexGuard};

use crate::frame::FrameId;

const BITS: u32 = 6;
const FANOUT: usize = 1 << BITS;
/// Trees enough for any `u64` index (11 × 6 bits ≥ 64).
const TREES: usize = 11;
const LOCKS: usize = 16;

struct Leaf([AtomicU32; FANOUT]);

struct Interior([OnceLock<Child>; FANOUT]);

enum Child {
    Inner(Box<Interior>),
    Leaf(Box<Leaf>),
}

impl Child {
    /// A fresh node for `level` (0 is the leaf level).
    fn new(level: u32) -> Child {
        if level == 0 {
            Child::Leaf(Box::new(Leaf(std::array::from_fn(|_| AtomicU32::new(0)))))
        } else {
            Child::Inner(Box::new(Interior(std::array::from_fn(|_| OnceLock::new()))))
        }
    }
}

/// The tree holding `index`; its root is at the same level as its number.
#[inline]
fn tree_of(index: u64) -> u32 {
    let bits = u64::BITS - index.leading_zeros();
    bits.saturating_sub(1) / BITS
}

#[inline]
fn digit(index: u64, level: u32) -> usize {
    ((index >> (BITS * level)) as usize) & (FANOUT - 1)
}

#[repr(align(64))]
#[derive(Default)]
struct Lock(Mutex<()>);

/// Resident page count, on its own line: misses update it, hits never do.
#[repr(align(64))]
#[derive(Default)]
struct Count(AtomicUsize);

/// Slot values are frame id + 1; 0 is empty.
pub(crate) struct PageTable {
    trees: [OnceLock<Child>; TREES],
    locks: [Lock; LOCKS],
    len: Count,
}

impl Default for PageTable {
    fn default() -> Self {
        PageTable {
            trees: std::array::from_fn(|_| OnceLock::new()),
            locks: std::array::from_fn(|_| Lock::default()),
            len: Count::default(),
        }
    }
}

/// Proof that the caller holds the writer lock covering some indexes.
pub(crate) struct Locked<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl PageTable {
    /// The slot of `index`, if the nodes down to it exist.
    #[inline]
    fn slot(&self, index: u64) -> Option<&AtomicU32> {
        let mut level = tree_of(index);
        let mut node = self.trees[level as usize].get()?;
        loop {
            match node {
                Child::Leaf(l) => return Some(&l.0[digit(index, 0)]),
                Child::Inner(n) => {
                    node = n.0[digit(index, level)].get()?;
                    level -= 1;
                }
            }
        }
    }

    /// The slot of `index`, making the nodes down to it.
    fn slot_or_make(&self, index: u64) -> &AtomicU32 {
        let mut level = tree_of(index);
        let mut node = self.trees[level as usize].get_or_init(|| Child::new(level));
        loop {
            match node {
                Child::Leaf(l) => return &l.0[digit(index, 0)],
                Child::Inner(n) => {
                    node = n.0[digit(index, level)].get_or_init(|| Child::new(level - 1));
                    level -= 1;
                }
            }
        }
    }

    /// The frame at `index` now. Without a lock this is a hint: the caller
    /// validates it against the frame (docs/design.md, "The hit protocol").
    #[inline]
    pub(crate) fn get(&self, index: u64) -> Option<FrameId> {
        self.slot(index)?.load(Ordering::Acquire).checked_sub(1)
    }

    /// The writer lock covering `index`. Consecutive runs of 16 pages share
    /// one, so sequential misses stay on one lock and random ones spread.
    pub(crate) fn lock(&self, index: u64) -> Locked<'_> {
        Locked(self.locks[((index >> 4) as usize) % LOCKS].0.lock())
    }

    /// Publishes `frame` at `index` unless a frame is there (returned as
    /// `Err`). The caller holds `lock(index)` and has set the frame's
    /// identity: the `Release` store is what makes it visible with it.
    pub(crate) fn insert(&self, _: &Locked<'_>, index: u64, frame: FrameId) -> Result<(), FrameId> {
        let slot = self.slot_or_make(index);
        if let Some(existing) = slot.load(Ordering::Acquire).checked_sub(1) {
            return Err(existing);
        }
        // Counted before it is visible, so `len` is never below the pages a
        // reader can find (a mapping with pages is never forgotten).
        self.len.0.fetch_add(1, Ordering::AcqRel);
        slot.store(frame + 1, Ordering::Release);
        Ok(())
    }

    /// Takes `frame` out of `index` if it is there. The caller holds
    /// `lock(index)`.
    pub(crate) fn remove(&self, _: &Locked<'_>, index: u64, frame: FrameId) -> bool {
        match self.slot(index) {
            Some(slot) if slot.load(Ordering::Acquire) == frame + 1 => {
                slot.store(0, Ordering::Release);
                self.len.0.fetch_sub(1, Ordering::AcqRel);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.0.load(Ordering::Acquire)
    }

    /// The resident pages whose index is in `range`, in index order: lookups
    /// when the range is small, else a walk over the nodes that exist.
    pub(crate) fn resident_in(&self, range: Range<u64>) -> Vec<(u64, FrameId)> {
        let span = range.end.saturating_sub(range.start);
        if span <= FANOUT as u64 * 4 {
            return range
                .filter_map(|i| self.get(i).map(|id| (i, id)))
                .collect();
        }
        let mut found = Vec::new();
        self.walk(&range, &mut |i, slot| {
            if let Some(id) = slot.load(Ordering::Acquire).checked_sub(1) {
                found.push((i, id));
            }
        });
        found
    }

    /// Removes and returns every page at or past `first`, under every
    /// writer lock.
    pub(crate) fn remove_from(&self, first: u64) -> Vec<(u64, FrameId)> {
        let _all: Vec<_> = self.locks.iter().map(|l| l.0.lock()).collect();
        let mut gone = Vec::new();
        self.walk(&(first..u64::MAX), &mut |i, slot| {
            if let Some(id) = slot.swap(0, Ordering::AcqRel).checked_sub(1) {
                gone.push((i, id));
            }
        });
        // The last index, which the half-open range leaves out.
        if let Some(slot) = self.slot(u64::MAX) {
            if let Some(id) = slot.swap(0, Ordering::AcqRel).checked_sub(1) {
                gone.push((u64::MAX, id));
            }
        }
        self.len.0.fetch_sub(gone.len(), Ordering::AcqRel);
        gone
    }

    /// Calls `f` on every existing slot whose index is in `range`, in order.
    fn walk(&self, range: &Range<u64>, f: &mut impl FnMut(u64, &AtomicU32)) {
        for (t, tree) in self.trees.iter().enumerate() {
            if let Some(root) = tree.get() {
                walk_node(root, t as u32, 0, range, f);
            }
        }
    }
}

/// Visits the slots under `node` (at `level`, covering indexes from `base`)
/// that fall in `range`.
fn walk_node(
    node: &Child,
    level: u32,
    base: u64,
    range: &Range<u64>,
    f: &mut impl FnMut(u64, &AtomicU32),
) {
    // Indexes under one child of a node at `level` (at most 2^60).
    let step = 1u64 << (BITS * level);
    for k in 0..FANOUT as u64 {
        // Children past the top of the index space never exist.
        let Some(start) = k.checked_mul(step).and_then(|o| base.checked_add(o)) else {
            return;
        };
        if start >= range.end {
            return;
        }
        if start.saturating_add(step - 1) < range.start {
            continue;
        }
        match node {
            Child::Leaf(l) => f(start, &l.0[k as usize]),
            Child::Inner(n) => {
                if let Some(c) = n.0[k as usize].get() {
                    walk_node(c, level - 1, start, range, f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(indexes: &[u64]) -> PageTable {
        let t = PageTable::default();
        for (k, &i) in indexes.iter().enumerate() {
            let g = t.lock(i);
            t.insert(&g, i, k as FrameId).unwrap();
        }
        t
    }

    const SPREAD: [u64; 9] = [0, 1, 63, 64, 4095, 4096, 1 << 30, (1 << 51) + 7, u64::MAX];

    #[test]
    fn lookups_find_what_was_inserted_and_nothing_else() {
        let t = table_with(&SPREAD);
        for (k, &i) in SPREAD.iter().enumerate() {
            assert_eq!(t.get(i), Some(k as FrameId), "index {i}");
            let g = t.lock(i);
            assert_eq!(t.insert(&g, i, 99), Err(k as FrameId));
        }
        for i in [2, 62, 65, 4094, 4097, 1 << 29, u64::MAX - 1] {
            assert_eq!(t.get(i), None, "index {i}");
        }
        assert_eq!(t.len(), SPREAD.len());
    }

    #[test]
    fn remove_takes_only_the_named_frame() {
        let t = table_with(&SPREAD);
        let g = t.lock(64);
        assert!(!t.remove(&g, 64, 0), "frame 0 is not at 64");
        assert!(t.remove(&g, 64, 3));
        assert!(!t.remove(&g, 64, 3));
        assert_eq!(t.get(64), None);
        assert_eq!(t.len(), SPREAD.len() - 1);
    }

    #[test]
    fn resident_in_walks_in_order_over_every_tree() {
        let t = table_with(&SPREAD);
        let all: Vec<u64> = t.resident_in(0..u64::MAX).iter().map(|p| p.0).collect();
        assert_eq!(all, SPREAD[..SPREAD.len() - 1]);
        let mid: Vec<u64> = t.resident_in(63..(1 << 31)).iter().map(|p| p.0).collect();
        assert_eq!(mid, [63, 64, 4095, 4096, 1 << 30]);
        let small: Vec<u64> = t.resident_in(60..70).iter().map(|p| p.0).collect();
        assert_eq!(small, [63, 64]);
    }

    #[test]
    fn remove_from_takes_the_tail_and_keeps_the_head() {
        let t = table_with(&SPREAD);
        let mut gone: Vec<u64> = t.remove_from(4096).iter().map(|p| p.0).collect();
        gone.sort_unstable();
        assert_eq!(gone, [4096, 1 << 30, (1 << 51) + 7, u64::MAX]);
        assert_eq!(t.len(), 5);
        assert_eq!(t.get(4095), Some(4));
        assert_eq!(t.get(4096), None);
        assert_eq!(t.remove_from(0).len(), 5);
        assert_eq!(t.len(), 0);
    }
}
