//! Reading and writing through the cache (the kernel's mm/filemap.c):
//! finding or reading in a page, copying to and from it, marking it dirty.

use std::io::IoSliceMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::RwLockReadGuard;

use crate::backend::read_full;
use crate::error::{Error, Result};
use crate::frame::{FrameId, FrameWriteGuard, DIRTY, ORPHAN, UPTODATE, WRITEBACK};
use crate::guard::{held, Hold};
use crate::lru;
use crate::mapping::Mapping;
use crate::readahead::{Ra, RaState};
use crate::state::Inner;
use crate::stats::inc;
use crate::throttle::{self, reclaim::TICK};
use crate::{readahead, reclaim};

/// Largest file offset accepted (the kernel's `MAX_LFS_FILESIZE`).
pub(crate) const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// How a missing page is brought in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Read it from the backend.
    Read,
    /// Zero it: it lies past the end of file. The filler keeps the write
    /// lock, and fills it in before anyone else sees it.
    Zero,
    /// Leave its bytes as the frame's last owner left them: the caller holds
    /// the write lock it comes back with and overwrites the whole page
    /// before letting go, so nobody ever sees them (zeroing first cost a
    /// page's worth of stores per written page).
    Overwrite,
}

/// Returns the page's frame, pinned and up to date. With `Fill::Zero` or
/// `Fill::Overwrite`, a page this call brought in comes back write-locked.
/// A read through an open (`ra`) reads ahead on a miss.
pub(crate) fn get_page<'a>(
    inner: &'a Inner,
    m: &Mapping,
    index: u64,
    fill: Fill,
    ra: Option<Ra<'_>>,
) -> Result<(FrameId, Option<FrameWriteGuard<'a>>)> {
    let arena = &inner.arena;
    loop {
        if let Some(id) = m.find_pin(arena, index) {
            let f = arena.frame(id);
            if f.flags() & UPTODATE == 0 {
                // Being read in: its filler holds the write lock until done.
                drop(f.lock.read_recursive());
            }
            if f.flags() & UPTODATE != 0 {
                crate::advise::touch(m, f);
                hit(inner);
                return Ok((id, None));
            }
            // The read-in failed and the filler took the page out; retry, so
            // this caller gets the error from its own attempt.
            arena.unpin(id);
            continue;
        }
        inc(&inner.counters.misses);
        crate::stats::thread_update(inner.id, |t| t.misses += 1);
        let id = reclaim::alloc_frame(inner)?;
        let f = arena.frame(id);
        let guard = arena.write_frame(id);
        if let Err(existing) = m.insert(arena, index, id) {
            drop(guard);
            arena.release_unused(id);
            arena.unpin(existing);
            continue;
        }
        inner.lru.add(lru::entry(arena, id));
        // SAFETY: a fresh frame, write-locked by us, not under writeback.
        let page = unsafe { arena.page_mut(id) };
        let filled = match fill {
            Fill::Zero => {
                page.fill(0);
                Ok(())
            }
            Fill::Overwrite => Ok(()),
            // A backend that panics fails this read-in like an I/O error,
            // so the page is taken out instead of left half-made for the
            // next reader to wait on forever.
            Fill::Read => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner
                    .wbt
                    .read(inner.epoch, || read_page(inner, m, page, index, ra))
            }))
            .unwrap_or_else(|_| Err(std::io::Error::other("the backend panicked"))),
        };
        match filled {
            Ok(()) => {
                f.set(UPTODATE);
                if fill != Fill::Read {
                    return Ok((id, Some(guard)));
                }
                inc(&inner.counters.pages_read);
                drop(guard);
                return Ok((id, None));
            }
            Err(e) => {
                m.remove(index, id);
                f.set(ORPHAN);
                drop(guard);
                arena.unpin(id);
                return Err(Error::io("reading a page", m.path.clone(), e));
            }
        }
    }
}

#[inline]
pub(crate) fn hit(inner: &Inner) {
    crate::stats::thread_hit(inner.id, &inner.counters.hits);
}

/// Reads page `index` from the backend, with the pages after it in the same
/// read if the open's misses are sequential; bytes past the end of file are
/// zero.
fn read_page(
    inner: &Inner,
    m: &Mapping,
    page: &mut [u8],
    index: u64,
    ra: Option<Ra<'_>>,
) -> std::io::Result<()> {
    let offset = index * inner.page_size() as u64;
    let (ahead, marker) = match ra {
        Some(ra) => readahead::sync_window(inner, m, ra, index),
        None => (0, None),
    };
    let n = if ahead > 0 {
        readahead::read_with_window(inner, m, page, index, ahead, marker)?
    } else {
        read_full(m.backend.as_ref(), &mut [IoSliceMut::new(page)], offset)?
    };
    let valid = (m.size().saturating_sub(offset) as usize).min(n);
    page[valid..].fill(0);
    Ok(())
}

/// Keeps writers out of a pinned frame: its read lock, or, where this
/// thread holds the page already (`recursive`), one more hold on the hazard
/// slot it may hold the frame by. Taking the lock there could wait for a
/// writer that holds the write lock while it waits for that very slot.
pub(crate) fn hold_pinned(inner: &Inner, id: FrameId, recursive: bool) -> Hold<'_> {
    let f = inner.arena.frame(id);
    if !recursive {
        return Hold::Lock(f.lock.read());
    }
    match inner.arena.reenter(id) {
        Some(h) => Hold::Hazard(h),
        // Held by its lock (or not this frame): no writer holds it waiting
        // for this thread.
        None => Hold::Lock(f.lock.read_recursive()),
    }
}

/// Takes `m`'s `resize` lock shared for a write, and refuses the write once
/// shutdown has begun (shutdown drains this lock, so a write that got it
/// before is written back). Lock order: `resize` before frame locks. A
/// thread holding page guards already holds frame locks, so it must not
/// queue behind a waiting `set_len` while a syncing thread holds `resize`
/// shared and waits for its page: it joins the readers instead.
pub(crate) fn resize_shared<'a>(inner: &Inner, m: &'a Mapping) -> Result<RwLockReadGuard<'a, ()>> {
    let guard = if held::any() {
        m.resize.read_recursive()
    } else {
        m.resize.read()
    };
    inner.check_open()?;
    Ok(guard)
}

/// Takes a page's write lock once no writeback is reading it.
pub(crate) fn lock_for_write(inner: &Inner, id: FrameId) -> FrameWriteGuard<'_> {
    let f = inner.arena.frame(id);
    loop {
        let g = inner.arena.write_frame(id);
        if f.flags() & WRITEBACK == 0 {
            return g;
        }
        drop(g);
        inner
            .progress
            .wait_until(TICK, || f.flags() & WRITEBACK == 0);
    }
}

/// Marks a write-locked page dirty (the kernel's `folio_mark_dirty`).
pub(crate) fn mark_dirty(inner: &Inner, m: &Mapping, id: FrameId, index: u64) {
    let f = inner.arena.frame(id);
    if f.flags() & DIRTY == 0 && f.set(DIRTY) {
        inner.nr_dirty.fetch_add(1, Ordering::Relaxed);
        inc(&inner.counters.pages_dirtied);
        m.note_dirty(index);
    }
}

/// Page index, offset in page and length of the piece of `[pos, end)` that
/// falls in one page.
#[inline]
fn piece(pos: u64, end: u64, ps: u64) -> (u64, usize, usize) {
    // Shifts, not divisions: a page size is a power of two (validated), and
    // a 64-bit division costs more than the rest of a hit's bookkeeping.
    debug_assert!(ps.is_power_of_two());
    let index = pos >> ps.trailing_zeros();
    let in_page = (pos & (ps - 1)) as usize;
    let n = (ps - in_page as u64).min(end - pos) as usize;
    (index, in_page, n)
}

pub(crate) fn read_at(
    inner: &Arc<Inner>,
    m: &Arc<Mapping>,
    state: &RaState,
    buf: &mut [u8],
    offset: u64,
) -> Result<usize> {
    let size = m.size();
    if offset >= size || buf.is_empty() {
        return Ok(0);
    }
    let end = size.min(offset.saturating_add(buf.len() as u64));
    let ps = inner.page_size() as u64;
    let last = (end - 1) >> ps.trailing_zeros();
    let arena = &inner.arena;
    let mut pos = offset;
    let mut missed = false;
    while pos < end {
        let (index, in_page, n) = piece(pos, end, ps);
        let at = (pos - offset) as usize;
        let recursive = held::check(m.id, index, false)?;
        let ra = Ra {
            state,
            req: last - index + 1,
        };
        if !recursive && m.read_unlocked(arena, index, in_page, &mut buf[at..at + n]) {
            hit(inner);
            pos += n as u64;
            continue;
        }
        missed = true;
        let (id, _) = get_page(inner, m, index, Fill::Read, Some(ra))?;
        if readahead::take_marker(inner, id) {
            readahead::marker_hit(inner, m, ra, index);
        }
        {
            let _g = hold_pinned(inner, id, recursive);
            // SAFETY: we hold the frame's read lock or a hazard slot naming
            // it, so no writer runs.
            let page = unsafe { arena.page(id) };
            buf[at..at + n].copy_from_slice(&page[in_page..in_page + n]);
        }
        arena.unpin(id);
        pos += n as u64;
    }
    // Only a read that left the optimistic path records where it ended: a
    // hit needs no readahead decision, and random hits from threads sharing
    // the open would bounce this line between cores on every read. A
    // sequential reader coming through cached pages is still recognised at
    // its first miss, by the cached run behind it (`readahead::history`).
    if missed {
        state.note_read(last);
    }
    Ok((end - offset) as usize)
}

pub(crate) fn write_at(inner: &Inner, m: &Mapping, buf: &[u8], offset: u64) -> Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let end = offset
        .checked_add(buf.len() as u64)
        .filter(|&e| e <= MAX_FILE_SIZE)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "write of {} bytes at offset {offset} ends past the largest file size {MAX_FILE_SIZE}",
                buf.len()
            ))
        })?;
    let ps = inner.page_size() as u64;
    let pages = (end - 1) / ps - offset / ps + 1;
    throttle::dirty::balance_dirty_pages(inner, m, pages)?;
    let _resize = resize_shared(inner, m)?;
    let arena = &inner.arena;
    let mut pos = offset;
    while pos < end {
        let (index, in_page, n) = piece(pos, end, ps);
        held::check(m.id, index, true)?;
        let fill = if n as u64 == ps {
            // Copied over in full below, under the lock get_page returns.
            Fill::Overwrite
        } else if index * ps >= m.size() {
            Fill::Zero
        } else {
            Fill::Read
        };
        let (id, locked) = match get_page(inner, m, index, fill, None) {
            Ok(got) => got,
            // Like write(2): what was written before the failure counts, and
            // the caller learns how much landed; the next call gets the error.
            Err(_) if pos > offset => return Ok((pos - offset) as usize),
            Err(e) => return Err(e),
        };
        let guard = match locked {
            Some(g) => g,
            None => lock_for_write(inner, id),
        };
        // SAFETY: write lock held and WRITEBACK clear (lock_for_write, or a
        // fresh frame), so nobody else reads or writes these bytes.
        let page = unsafe { arena.page_mut(id) };
        let at = (pos - offset) as usize;
        page[in_page..in_page + n].copy_from_slice(&buf[at..at + n]);
        // Extend the size before the page can be written back, so writeback
        // never clips away bytes written here.
        m.size.fetch_max(pos + n as u64, Ordering::AcqRel);
        mark_dirty(inner, m, id, index);
        drop(guard);
        arena.unpin(id);
        pos += n as u64;
    }
    // Still under `resize`: shutdown's final write-back may have missed
    // this write, so it must not be acknowledged.
    inner.check_not_stopped()?;
    Ok(buf.len())
}
