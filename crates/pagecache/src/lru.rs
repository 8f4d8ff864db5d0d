//! Eviction order: the kernel's two lists, active and inactive.
//!
//! A page enters the inactive list on read-in. A hit only sets the frame's
//! REFERENCED bit (no lock on the hit path). When reclaim meets a referenced
//! page at the inactive tail it moves it to the active list; unreferenced
//! pages are the victims. The active list is kept no larger than the inactive
//! one by demoting unreferenced pages from its tail. A page touched once — a
//! scan — never leaves the inactive list, so a large sequential read cannot
//! push the hot set out: this is what makes the policy scan-resistant, at the
//! cost of one list lock taken on insertion and by reclaim, never on a hit.
//!
//! A page reclaim flagged for writeback or commit waits on a third list,
//! `io`, that reclaim does not scan: it is freed when its I/O ends (its entry
//! goes stale), and one that is still in use then (referenced, pinned) goes
//! back to the inactive list when `balance` finds its I/O over. Rotating
//! such pages on the inactive list made reclaim rescan them over and over;
//! moving them to the active list (the kernel's `activate_locked`) made the
//! active list look large, so that balancing demoted the hot set in their
//! place.
//!
//! Entries carry the frame's generation; a frame freed elsewhere (truncate,
//! writeback completion of a reclaim-flagged page) leaves a stale entry that
//! reclaim drops when it reaches it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::frame::{Arena, FrameId, ACTIVE, FREE, REFERENCED, UNSTABLE, WRITEBACK};

/// The active list may hold this many times the inactive list's pages (the
/// kernel's `inactive_ratio` at about 1 GiB). A larger ratio protects a
/// larger hot set against a fast stream of new pages; the inactive quarter
/// that remains is where new pages prove themselves.
const ACTIVE_RATIO: usize = 3;

/// A list entry: frame and the generation it had when listed.
pub(crate) type Entry = (FrameId, u32);

#[derive(Default)]
struct Lists {
    inactive: VecDeque<Entry>,
    active: VecDeque<Entry>,
    /// Flagged by reclaim, waiting for their write or commit.
    io: VecDeque<Entry>,
}

/// Both lists under one lock. Heads are the front, tails the back.
#[derive(Default)]
pub(crate) struct Lru {
    lists: Mutex<Lists>,
}

pub(crate) fn entry(arena: &Arena, id: FrameId) -> Entry {
    (id, arena.frame(id).gen.load(Ordering::Relaxed))
}

pub(crate) fn is_stale(arena: &Arena, e: Entry) -> bool {
    arena.frame(e.0).gen.load(Ordering::Relaxed) != e.1
}

impl Lru {
    /// A newly read-in page goes to the inactive head.
    pub(crate) fn add(&self, e: Entry) {
        self.lists.lock().inactive.push_front(e);
    }

    /// Pages read in together (a readahead window) go to the inactive head
    /// under one lock, in order, the last at the head.
    pub(crate) fn add_many(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut l = self.lists.lock();
        for e in entries {
            l.inactive.push_front(e);
        }
    }

    /// Takes up to `n` entries off the inactive tail, dropping stale ones.
    pub(crate) fn isolate_inactive(&self, arena: &Arena, n: usize) -> Vec<Entry> {
        let mut l = self.lists.lock();
        let mut out = Vec::with_capacity(n);
        let mut budget = n * 4;
        while out.len() < n && budget > 0 {
            budget -= 1;
            let Some(e) = l.inactive.pop_back() else {
                break;
            };
            if !is_stale(arena, e) {
                out.push(e);
            }
        }
        out
    }

    /// Returns entries reclaim could not free now to the inactive head.
    pub(crate) fn putback(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut l = self.lists.lock();
        l.inactive.extend(entries.iter().copied());
        // `extend` appends at the tail; rotate them to the head instead so the
        // next scan looks at other pages first.
        let n = entries.len();
        l.inactive.rotate_right(n);
    }

    /// Parks pages reclaim flagged for I/O where reclaim does not scan.
    pub(crate) fn park(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut l = self.lists.lock();
        l.io.extend(entries.iter().copied());
    }

    /// Moves referenced pages to the active head.
    pub(crate) fn activate(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut l = self.lists.lock();
        for &e in entries {
            l.active.push_front(e);
        }
    }

    /// Keeps the active list within `ACTIVE_RATIO` × the inactive one: scans up to `n`
    /// active-tail entries, rotating referenced ones and demoting the rest.
    /// Pages parked for I/O count as inactive: they are a stream's pages
    /// waiting to be freed, and leaving them out made a fast writer look
    /// like a small inactive list, so the hot set was demoted (and then
    /// evicted) in their place.
    /// With `force`, demotes regardless of the ratio: for a scan that found
    /// nothing to free on the inactive list (all of it pinned, say), the
    /// only clean pages may be on the active list — unless pages parked for
    /// I/O are still in flight: their completion frees frames, and waiting
    /// for it is cheaper than evicting the hot set.
    pub(crate) fn balance(&self, arena: &Arena, n: usize, force: bool) {
        let mut l = self.lists.lock();
        // Parked pages stay while their write or commit is under way. Those
        // whose I/O is over but were not freed by it (in use meanwhile), and
        // dirty ones whose write has not started (the flushers may have been
        // busy with the file), go back where reclaim sees them again.
        for _ in 0..n.min(l.io.len()) {
            let Some(e) = l.io.pop_front() else { break };
            let flags = arena.frame(e.0).flags();
            // Freed when its I/O ended (the frame keeps its generation
            // until reused): nothing left to scan.
            if is_stale(arena, e) || flags & FREE != 0 {
                continue;
            }
            if flags & (WRITEBACK | UNSTABLE) != 0 {
                l.io.push_back(e);
            } else {
                l.inactive.push_front(e);
            }
        }
        let force = force && l.io.is_empty();
        for _ in 0..n {
            if !force && l.active.len() <= (l.inactive.len() + l.io.len()) * ACTIVE_RATIO {
                break;
            }
            let Some(e) = l.active.pop_back() else { break };
            if is_stale(arena, e) {
                continue;
            }
            let f = arena.frame(e.0);
            if f.clear(REFERENCED) {
                l.active.push_front(e);
            } else {
                f.clear(ACTIVE);
                l.inactive.push_front(e);
            }
        }
        // Stale entries only leave when scanned; bound the lists anyway.
        if l.inactive.len() + l.active.len() + l.io.len() > arena.len() * 3 {
            l.inactive.retain(|&e| !is_stale(arena, e));
            l.active.retain(|&e| !is_stale(arena, e));
            l.io.retain(|&e| !is_stale(arena, e));
        }
    }

    /// Pages parked for I/O, stale entries included.
    pub(crate) fn parked(&self) -> usize {
        self.lists.lock().io.len()
    }

    /// (inactive, active) lengths, stale entries included; pages parked
    /// for I/O count as inactive (they are the next to go).
    pub(crate) fn lens(&self) -> (usize, usize) {
        let l = self.lists.lock();
        (l.inactive.len() + l.io.len(), l.active.len())
    }
}
