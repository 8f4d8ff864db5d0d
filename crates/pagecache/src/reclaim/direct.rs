//! Direct reclaim: scan the inactive tail, free clean frames, and decide what
//! to do with dirty ones — the one place the policies differ.

use std::sync::atomic::Ordering;

use crate::config::Policy;
use crate::frame::{
    FrameId, ACTIVE, DIRTY, FREE, ORPHAN, PIN_MASK, RECLAIM, REFERENCED, UNSTABLE, WRITEBACK,
};
use crate::lru::{self, Entry};
use crate::stack;
use crate::state::Inner;
use crate::stats::{add, inc};
use crate::writeback::{self, Reason};

use super::Reclaimer;

/// What one scan found.
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Scan {
    pub(crate) scanned: usize,
    pub(crate) freed: usize,
    pub(crate) dirty: usize,
    pub(crate) writeback: usize,
    pub(crate) pinned: usize,
}

/// Scans up to `nr` frames from the inactive tail (the kernel's
/// `shrink_inactive_list`), then rebalances the active list.
pub(crate) fn shrink(inner: &Inner, nr: usize, who: Reclaimer) -> Scan {
    stack::probe();
    let arena = &inner.arena;
    let isolated = inner.lru.isolate_inactive(arena, nr);
    let mut scan = Scan {
        scanned: isolated.len(),
        ..Scan::default()
    };
    let legacy = inner.policy() == Policy::Legacy;
    let mut putback: Vec<Entry> = Vec::new();
    let mut activate: Vec<Entry> = Vec::new();
    // Flagged for writeback or commit, parked until their I/O ends.
    let mut flagged: Vec<Entry> = Vec::new();
    let mut met_free = false;
    for e in isolated {
        let (id, _) = e;
        if lru::is_stale(arena, e) {
            continue;
        }
        let f = arena.frame(id);
        let s = f.flags();
        if s & FREE != 0 {
            // Freed since it was listed: the free list has it.
            met_free = true;
            continue;
        }
        if s & ORPHAN != 0 {
            // Normally whoever lets go of an orphan last frees it. A
            // reader without a pin letting go just as the page was
            // truncated may miss the ORPHAN flag while the truncation saw
            // its slot or lock still held (each reads before the other's
            // write lands): this entry is the one that still finds the
            // frame, so keep it until the frame is free.
            if !arena.try_free_orphan(id) && f.flags() & (ORPHAN | FREE) == ORPHAN {
                putback.push(e);
            }
            continue;
        }
        if s & REFERENCED != 0 {
            f.clear(REFERENCED);
            f.set_unless_free(ACTIVE);
            activate.push(e);
            continue;
        }
        if s & PIN_MASK != 0 {
            scan.pinned += 1;
            putback.push(e);
            continue;
        }
        if s & (WRITEBACK | UNSTABLE | DIRTY) != 0 {
            if s & WRITEBACK != 0 {
                // Freed the moment its write is durable.
                f.set_unless_free(RECLAIM);
                scan.writeback += 1;
            } else if s & DIRTY == 0 {
                // Written, not yet durable: the flushers commit it and free
                // it then. Like a page under writeback, something to wait for.
                flag_for_flushers(inner, id, Reason::Commit);
                scan.writeback += 1;
            } else {
                scan.dirty += 1;
                if legacy {
                    pageout(inner, id, who);
                } else {
                    flag_for_flushers(inner, id, Reason::Reclaim);
                }
            }
            // Reclaim cannot free it now; the end of its write or commit
            // will. Parked off the scanned lists (lru.rs) so the inactive
            // tail is not rescanned over and over while the I/O runs; the
            // 2010 kernel rotated it.
            if legacy {
                putback.push(e);
            } else {
                flagged.push(e);
            }
            continue;
        }
        if try_free(inner, id) {
            scan.freed += 1;
        } else {
            putback.push(e);
        }
    }
    inner.lru.putback(&putback);
    add(&inner.counters.pgactivate, activate.len() as u64);
    inner.lru.activate(&activate);
    add(&inner.counters.pgparked_for_io, flagged.len() as u64);
    inner.lru.park(&flagged);
    // Only pinned pages (or none) at the inactive tail: the clean pages, if
    // any, are on the active list, so demote regardless of the list ratio.
    // A scan that activated referenced pages made progress of its own and
    // must not churn the active list.
    let stuck =
        scan.freed == 0 && scan.dirty + scan.writeback == 0 && activate.is_empty() && !met_free;
    inner.lru.balance(arena, nr, stuck);
    if stuck && scan.pinned == 0 {
        // The inactive list is empty because all of it is parked for I/O:
        // that I/O is what to wait for (balance did not demote the hot set
        // for it), so say so rather than report an idle scan.
        scan.writeback += inner.lru.parked();
    }
    let (scanned, freed) = match who {
        Reclaimer::Direct => (
            &inner.counters.pgscan_direct,
            &inner.counters.pgsteal_direct,
        ),
        Reclaimer::Background => (
            &inner.counters.pgscan_background,
            &inner.counters.pgsteal_background,
        ),
    };
    add(scanned, scan.scanned as u64);
    add(freed, scan.freed as u64);
    if scan.freed > 0 {
        inner.progress.notify();
    }
    scan
}

/// The offload decision (DESIGN §4 invariant 2): the dirty victim gets the
/// reclaim flag and its mapping goes to the flushers; nothing is written here.
fn flag_for_flushers(inner: &Inner, id: FrameId, reason: Reason) {
    let f = inner.arena.frame(id);
    if f.set_unless_free(RECLAIM) {
        inc(&inner.counters.pgreclaim_flagged);
    }
    // Read without a pin: if the frame was reused meanwhile, the flushers
    // write around the wrong page of some file, which is harmless.
    if let Some(m) = inner.mapping(f.mapping.load(Ordering::Relaxed)) {
        if reason == Reason::Reclaim {
            m.reclaim_wanted
                .lock()
                .push(f.index.load(Ordering::Relaxed));
        }
        inner.writeback.queue(&m, reason);
    }
}

/// The legacy decision (the 2010 kernel's `pageout`, from direct reclaim and
/// from kswapd alike): write the victim from this thread, on this stack,
/// synchronously. The frame is not free yet: the write is durable only once
/// a backend sync covers it, so the page is left unstable and flagged, and
/// the flushers' commit frees it.
fn pageout(inner: &Inner, id: FrameId, who: Reclaimer) {
    stack::probe();
    let arena = &inner.arena;
    let f = arena.frame(id);
    let Some(m) = inner.mapping(f.mapping.load(Ordering::Relaxed)) else {
        return;
    };
    let Some(_resize) = m.resize.try_read_recursive() else {
        return;
    };
    // `mapping` and `index` were read without a pin: the frame may have been
    // freed and reused since. A pin taken through the index, on this very
    // frame, proves it is still this file's page `index` and keeps it so.
    let index = f.index.load(Ordering::Relaxed);
    match m.find_pin(arena, index) {
        Some(pinned) if pinned == id => {}
        Some(other) => {
            arena.unpin(other);
            return;
        }
        None => return,
    }
    let written = writeback::writepage_sync(inner, &m, id, index);
    arena.unpin(id);
    if !written {
        return;
    }
    inc(match who {
        Reclaimer::Direct => &inner.counters.direct_reclaim_writes,
        Reclaimer::Background => &inner.counters.background_reclaim_writes,
    });
    flag_for_flushers(inner, id, Reason::Commit);
}

/// Frees a clean, unpinned frame not under writeback: takes it out of its
/// mapping and puts it on the free list. The CAS on the state word under the
/// mapping's write lock is what makes a concurrent pin impossible; the frame
/// lock taken with no hazard slot naming the frame excludes the readers that
/// hold a page without a pin (`Mapping::find_read`).
pub(crate) fn try_free(inner: &Inner, id: FrameId) -> bool {
    let arena = &inner.arena;
    let f = arena.frame(id);
    let Some(m) = inner.mapping(f.mapping.load(Ordering::Relaxed)) else {
        return false;
    };
    let index = f.index.load(Ordering::Relaxed);
    {
        let locked = m.pages.lock(index);
        if m.pages.get(index) != Some(id) {
            return false;
        }
        // A page guard taken on a hit holds the frame by a hazard slot or
        // its read lock, and no pin: either way the frame is in use. A
        // reader coming after this fails its identity check (FREE).
        let Some(_busy) = arena.try_write_frame(id) else {
            return false;
        };
        if !f.state.try_reclaim() {
            return false;
        }
        m.pages.remove(&locked, index, id);
    }
    arena.push_free(id);
    if m.handles.load(Ordering::Acquire) == 0 {
        inner.maybe_forget(&m);
    }
    true
}
