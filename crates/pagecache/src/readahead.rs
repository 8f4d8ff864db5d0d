//! Readahead (the kernel's mm/readahead.c, much simplified): a miss that
//! continues the previous one reads the following pages too, in the same
//! backend read as the missing page, straight into their frames, with a
//! window that doubles up to `MAX_BYTES` while misses stay sequential. A
//! random miss reads one page. Readahead pages enter the inactive list
//! unreferenced and their first access does not count as a reference (the
//! READAHEAD flag), so a scan read this way still cannot push out the hot
//! set.

use std::io::{self, IoSliceMut};
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

/// Reads page `index` into `page` (a fresh frame the caller holds
/// write-locked) together with up to `ahead` following pages, in one backend
/// read straight into the frames. Returns the bytes read into `page`. The
/// window stops at the end of file, at a resident page, or when free frames
/// run low; if the read fails, `page` fails with it and the window's pages
/// are taken out (a later miss reads them itself).
pub(crate) fn read_with_window(
    inner: &Inner,
    m: &Mapping,
    page: &mut [u8],
    index: u64,
    ahead: u64,
) -> io::Result<usize> {
    let ps = inner.page_size();
    let taken = take_frames(inner, m, index + 1, ahead);
    crate::trace::slow!(
        trace,
        index,
        asked = ahead,
        taken = taken.len(),
        "readahead window"
    );
    // The next miss continues the sequence where this window really ends,
    // even if it ended early.
    m.ra_next
        .store(index + 1 + taken.len() as u64, Ordering::Relaxed);
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut bufs = Vec::with_capacity(1 + taken.len());
        bufs.push(IoSliceMut::new(&mut *page));
        // SAFETY: fresh frames, write-locked by us, not under writeback;
        // distinct frames do not overlap, nor do they overlap `page`.
        bufs.extend(
            taken
                .iter()
                .map(|(id, _)| IoSliceMut::new(unsafe { inner.arena.page_mut(*id) })),
        );
        read_full(m.backend.as_ref(), &mut bufs, index * ps as u64)
    }))
    // A backend that panics fails the read like an I/O error.
    .unwrap_or_else(|_| Err(io::Error::other("the backend panicked")));
    let window_got = read.as_ref().ok().map(|n| n.saturating_sub(ps));
    finish(inner, m, index + 1, taken, window_got);
    read.map(|n| n.min(ps))
}

/// Brings pages `start..start + count` in with one read, under a window's
/// rules (free frames only, up to a resident page or the end of file), for
/// `Advice::WillNeed`. Returns the pages taken; a failed read takes them
/// out again, as for a window.
pub(crate) fn populate_window(inner: &Inner, m: &Mapping, start: u64, count: u64) -> u64 {
    let taken = take_frames(inner, m, start, count);
    if taken.is_empty() {
        return 0;
    }
    let n = taken.len() as u64;
    let ps = inner.page_size() as u64;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: fresh frames, write-locked by us, not under writeback;
        // distinct frames do not overlap.
        let mut bufs: Vec<IoSliceMut<'_>> = taken
            .iter()
            .map(|(id, _)| IoSliceMut::new(unsafe { inner.arena.page_mut(*id) }))
            .collect();
        read_full(m.backend.as_ref(), &mut bufs, start * ps)
    }))
    .unwrap_or_else(|_| Err(io::Error::other("the backend panicked")));
    crate::trace::slow!(
        trace,
        start,
        pages = n,
        ok = read.is_ok(),
        "prefetch window"
    );
    finish(inner, m, start, taken, read.ok());
    n
}

/// Free frames for pages `start..start + count`, inserted and write-locked.
fn take_frames<'a>(
    inner: &'a Inner,
    m: &Mapping,
    start: u64,
    count: u64,
) -> Vec<(FrameId, RwLockWriteGuard<'a, ()>)> {
    let arena = &inner.arena;
    let ps = inner.page_size();
    let end = (start + count).min(m.size().div_ceil(ps as u64));
    let mut taken = Vec::new();
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
    taken
}

/// Publishes the frames of pages `start..` once their read is done: `got`
/// is the bytes read into them, `None` if the read failed.
fn finish(
    inner: &Inner,
    m: &Mapping,
    start: u64,
    taken: Vec<(FrameId, RwLockWriteGuard<'_, ()>)>,
    got: Option<usize>,
) {
    let arena = &inner.arena;
    let ps = inner.page_size();
    if let Some(got) = got {
        // Bytes past what was read, or past the end of file, read as zero
        // (as in a single read-in).
        let valid = (m.size().saturating_sub(start * ps as u64) as usize).min(got);
        for (k, (id, _)) in taken.iter().enumerate() {
            let from = valid.saturating_sub(k * ps).min(ps);
            // SAFETY: a fresh frame, write-locked by us, not under
            // writeback; the buffers made for the read are gone.
            let page = unsafe { arena.page_mut(*id) };
            page[from..].fill(0);
        }
        add(&inner.counters.pages_read, taken.len() as u64);
        add(&inner.counters.pages_readahead, taken.len() as u64);
    }
    for (k, (id, guard)) in taken.into_iter().enumerate() {
        let f = arena.frame(id);
        if got.is_some() {
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
}
