//! Readahead (the kernel's mm/readahead.c, much simplified): a miss that
//! continues the previous one reads the following pages too, in one backend
//! read straight into their frames, with a window that doubles up to `MAX_BYTES` while misses stay
//! sequential. A random miss reads one page. Readahead pages enter the
//! inactive list unreferenced and their first access does not count as a
//! reference (the READAHEAD flag), so a scan read this way still cannot push
//! out the hot set.

use std::io::IoSliceMut;
use std::sync::atomic::Ordering;

use parking_lot::RwLockWriteGuard;

use crate::backend::read_full;
use crate::cache::Inner;
use crate::frame::{FrameId, ORPHAN, READAHEAD, UPTODATE};
use crate::mapping::Mapping;
use crate::reclaim;
use crate::stats::add;
use crate::{advise, lru};

/// Largest readahead window.
const MAX_BYTES: u64 = 256 * 1024;

/// The largest window in pages; a file advised `Sequential` gets twice
/// the default, as the kernel doubles `ra_pages` for `POSIX_FADV_SEQUENTIAL`.
pub(crate) fn max_pages(page_size: usize, sequential: bool) -> u64 {
    let bytes = if sequential { 2 * MAX_BYTES } else { MAX_BYTES };
    (bytes / page_size as u64).max(1)
}

/// Pages to read ahead after a miss at `index`, and the window recorded.
pub(crate) fn window(m: &Mapping, index: u64, page_size: usize) -> u64 {
    let mode = advise::ra_mode(m);
    let max = max_pages(page_size, mode == advise::RA_SEQUENTIAL);
    let expected = m.ra_next.load(Ordering::Relaxed);
    let last = m.ra_window.load(Ordering::Relaxed);
    let w = if mode == advise::RA_RANDOM {
        1
    } else if mode == advise::RA_SEQUENTIAL {
        max
    } else if index == expected || index == 0 {
        (last * 2).clamp(4, max)
    } else {
        1
    };
    m.ra_next.store(index + 1, Ordering::Relaxed);
    m.ra_window.store(w, Ordering::Relaxed);
    w - 1
}

/// Brings pages `start..start + count` in with one read, stopping at the end
/// of file, at a resident page, or when free frames run low. Failures are
/// not reported: readahead is a hint, and a later miss reads the page itself.
pub(crate) fn populate(inner: &Inner, m: &Mapping, start: u64, count: u64) {
    let n = populate_window(inner, m, start, count);
    crate::trace::slow!(trace, start, asked = count, read = n, "readahead window");
    // The next miss continues the sequence where this window really ended,
    // even if it ended early.
    m.ra_next.store(start + n, Ordering::Relaxed);
}

pub(crate) fn populate_window(inner: &Inner, m: &Mapping, start: u64, count: u64) -> u64 {
    let arena = &inner.arena;
    let ps = inner.page_size();
    let end = (start + count).min(m.size().div_ceil(ps as u64));
    let mut taken: Vec<(FrameId, RwLockWriteGuard<'_, ()>)> = Vec::new();
    for index in start..end {
        if let Some(id) = m.find_pin(arena, index) {
            arena.unpin(id);
            break;
        }
        // Readahead never reclaims or waits: it takes free frames above the
        // low watermark, or stops (the kernel's __GFP_NORETRY).
        if arena.nr_free() <= inner.wm.low() {
            reclaim::background::wake(inner);
            break;
        }
        let Some(id) = arena.pop_free() else {
            break;
        };
        let guard = arena.frame(id).lock.write();
        if let Err(existing) = m.insert(arena, index, id) {
            drop(guard);
            arena.release_unused(id);
            arena.unpin(existing);
            break;
        }
        inner.lru.add(lru::entry(arena, id));
        taken.push((id, guard));
    }
    if taken.is_empty() {
        return 0;
    }
    let n = taken.len() as u64;
    let offset = start * ps as u64;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Straight into the frames, which are page-aligned in the arena, so
        // a backend doing O_DIRECT can take them without a bounce buffer.
        let mut bufs: Vec<IoSliceMut<'_>> = taken
            .iter()
            // SAFETY: fresh frames, write-locked by us, not under writeback;
            // distinct frames do not overlap.
            .map(|(id, _)| IoSliceMut::new(unsafe { arena.page_mut(*id) }))
            .collect();
        inner.wbt.read(inner.epoch, || {
            read_full(m.backend.as_ref(), &mut bufs, offset)
        })
    }));
    let ok = if let Ok(Ok(got)) = read {
        // Bytes past what was read, or past the end of file, read as zero
        // (as in a single read-in).
        let valid = (m.size().saturating_sub(offset) as usize).min(got);
        for (k, (id, _)) in taken.iter().enumerate() {
            let from = valid.saturating_sub(k * ps).min(ps);
            // SAFETY: as above; the slices made for the read are gone.
            let page = unsafe { arena.page_mut(*id) };
            page[from..].fill(0);
        }
        add(&inner.counters.pages_read, n);
        add(&inner.counters.pages_readahead, n);
        true
    } else {
        false
    };
    for (k, (id, guard)) in taken.into_iter().enumerate() {
        let f = arena.frame(id);
        if ok {
            f.set(READAHEAD | UPTODATE);
        } else {
            let index = start + k as u64;
            let mut pages = m.pages.shard(index).write();
            if pages.get(&index) == Some(&id) {
                pages.remove(&index);
            }
            drop(pages);
            f.set(ORPHAN);
        }
        drop(guard);
        arena.unpin(id);
    }
    n
}
