//! Unstable pages and commits (NFS's WRITE UNSTABLE + COMMIT).
//!
//! A completed write is not a durable one: the device may hold it in a
//! volatile cache, and a failed `fdatasync` may have dropped it while the
//! next one succeeds (the 2018 "fsyncgate" lesson). So a page whose write
//! completed becomes UNSTABLE, not clean: it stays resident and counts with
//! dirty memory. A backend sync that started after the write completed and
//! succeeded makes it clean ([`commit`]); a failed sync turns every unstable
//! page of the file dirty again, so writeback rewrites it and the next
//! successful sync makes it durable. Reclaim frees only clean pages, so the
//! cache always holds every byte the device may have lost.
//!
//! Flag and index entry change together under the mapping's `unstable`
//! lock; a write records `sync_failures` before it is issued and, if a sync
//! failed meanwhile, its pages are re-dirtied instead of becoming unstable.

use std::io;
use std::sync::atomic::Ordering;

use crate::frame::{FrameId, RECLAIM, REFERENCED};
use crate::mapping::Mapping;
use crate::reclaim::direct::try_free;
use crate::state::Inner;
use crate::stats::{add, inc};

/// Records a completed write of `pages` ((index, frame), frames under
/// writeback) issued when the mapping had seen `failures_at_issue` failed
/// syncs. Ends their writeback: each becomes UNSTABLE, or DIRTY again if a
/// sync failed while the write was in flight.
pub(crate) fn written(
    inner: &Inner,
    m: &Mapping,
    pages: &[(u64, FrameId)],
    failures_at_issue: u64,
) {
    let arena = &inner.arena;
    let mut redirty = false;
    {
        let mut u = m.unstable.lock();
        if m.sync_failures.load(Ordering::Acquire) != failures_at_issue {
            redirty = true;
        } else {
            let gen = u.gen;
            for &(index, id) in pages {
                let (newly, after) = arena.frame(id).state.end_writeback_ok();
                if after & crate::frame::ORPHAN != 0 {
                    continue;
                }
                if newly {
                    inner.nr_unstable.fetch_add(1, Ordering::Relaxed);
                }
                u.pages.insert(index, gen);
            }
        }
    }
    if redirty {
        // The write may have been dropped with the failed sync: rewrite it.
        for &(index, id) in pages {
            super::writepages::end_writeback_failed(inner, m, id, index);
        }
        return;
    }
    for &(_, id) in pages {
        super::writepages::writeback_ended(inner, m, id);
    }
}

/// Makes `m`'s unstable pages durable with one backend sync. On success the
/// pages recorded before the sync started are clean (reclaim-flagged ones are
/// freed at once); on failure every unstable page is dirty again and the
/// error is recorded in the errseq.
pub(crate) fn commit(inner: &Inner, m: &Mapping) -> io::Result<()> {
    // One commit of a mapping at a time: a sync that fails may drop writes
    // a concurrent sync then reports durable (`Mapping::committing`).
    let _one = m.committing.lock();
    let gen = {
        let mut u = m.unstable.lock();
        u.gen += 1;
        u.gen - 1
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.backend.sync()))
        .unwrap_or_else(|_| Err(io::Error::other("the backend panicked in sync")));
    inc(&inner.counters.commits);
    match &result {
        Ok(()) => committed(inner, m, gen),
        Err(e) => {
            inc(&inner.counters.commit_errors);
            crate::trace::slow!(warn, path = ?m.path, error = %e, "backend sync failed; unstable pages are dirty again");
            let errno = e.raw_os_error().unwrap_or(super::libc_eio());
            uncommit_all(inner, m);
            super::writepages::record_failure(inner, m, errno);
        }
    }
    inner.progress.notify();
    result
}

fn committed(inner: &Inner, m: &Mapping, gen: u64) {
    let arena = &inner.arena;
    let mut to_free = Vec::new();
    let mut n = 0u64;
    {
        let mut u = m.unstable.lock();
        let done: Vec<u64> = u
            .pages
            .iter()
            .filter(|&(_, &g)| g <= gen)
            .map(|(&i, _)| i)
            .collect();
        for index in done {
            u.pages.remove(&index);
            let Some(id) = m.lookup(index) else { continue };
            let f = arena.frame(id);
            if f.state.commit() {
                inner.nr_unstable.fetch_sub(1, Ordering::Relaxed);
                n += 1;
                if f.flags() & (RECLAIM | REFERENCED) == RECLAIM {
                    to_free.push(id);
                }
            }
        }
    }
    add(&inner.counters.pages_committed, n);
    for id in to_free {
        let f = arena.frame(id);
        f.clear(RECLAIM);
        if try_free(inner, id) {
            inc(&inner.counters.pgreclaim_freed_on_writeback);
        }
    }
}

/// After a failed sync: every unstable page of `m` is dirty again, and
/// writes in flight are told (through `sync_failures`) to re-dirty theirs.
fn uncommit_all(inner: &Inner, m: &Mapping) {
    let arena = &inner.arena;
    let mut u = m.unstable.lock();
    m.sync_failures.fetch_add(1, Ordering::AcqRel);
    for (index, _) in std::mem::take(&mut u.pages) {
        let Some(id) = m.lookup(index) else { continue };
        let (was, dirtied) = arena.frame(id).state.uncommit();
        if was {
            inner.nr_unstable.fetch_sub(1, Ordering::Relaxed);
        }
        if dirtied {
            inner.nr_dirty.fetch_add(1, Ordering::Relaxed);
            m.note_dirty(index);
        }
    }
}

/// Truncation dropped these pages (now orphans, out of the index): they
/// need no commit.
pub(crate) fn forget(inner: &Inner, m: &Mapping, gone: &[(u64, FrameId)]) {
    let arena = &inner.arena;
    let mut u = m.unstable.lock();
    for &(index, id) in gone {
        u.pages.remove(&index);
        if arena.frame(id).state.commit() {
            inner.nr_unstable.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
