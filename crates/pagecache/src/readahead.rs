//! Readahead per open file (the kernel's ondemand readahead,
//! mm/readahead.c). Each open keeps a window (`RaState`): a sequential miss
//! reads the missing page and a window after it in one backend read, sized
//! from the request (`init_size`) and then doubling (`next_size`) up to the
//! configured maximum. One page of each window carries the marker
//! (`RA_MARKER`, the kernel's `PG_readahead`); its first access submits the
//! next window to the background readers, so a steady sequential reader
//! finds its pages resident or in flight and never waits on a read it
//! issued itself. A random miss reads one page.
//!
//! Readahead takes free frames above the low watermark, and below it frees
//! clean pages from the inactive tail itself (never writing, never
//! waiting); where that frees nothing it stops.
//!
//! An asynchronous window goes through the cache's `io_uring` where the
//! backend gives a descriptor for it (`Backend::async_read_fd`): the reader
//! that hit the marker inserts the window's pages write-locked, queues one
//! vectored read per piece and goes on; the ring's reaper thread publishes
//! the pages (`RingRead::complete`). Elsewhere the pieces go to the
//! background reader threads (advise.rs).
//!
//! Read-ahead pages enter the inactive list unreferenced and their first
//! access does not count as a reference (the READAHEAD flag), so a scan
//! read this way cannot push out the hot set.
//!
//! The state is per open, not per file, so two readers with their own opens
//! keep their own windows; a marker hit by an open whose window it is not
//! (interleaved streams) restarts that open's window after the resident run.

use std::io::{self, IoSliceMut};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::backend::read_full;
use crate::config::Policy;
use crate::frame::{FrameId, FrameWriteGuard, ORPHAN, RA_MARKER, READAHEAD, UPTODATE};
use crate::mapping::Mapping;
use crate::reclaim::{self, Reclaimer};
use crate::state::Inner;
use crate::stats::{add, inc};
use crate::throttle::reclaim::TICK;
use crate::writeback::uring::Iovecs;
use crate::{advise, lru};

/// How many times a background reader waits for free frames within one
/// piece of a window before leaving the rest to the reader's misses.
const REFILL_WAITS: u32 = 2;

/// An asynchronous window is read as `PIECES` reads in flight at once, each
/// of `MIN_PIECE..=MAX_PIECE` bytes: a device reads a few large requests
/// faster than one (and one faster than many small ones).
const PIECES: u64 = 4;
const MIN_PIECE: usize = 512 << 10;
const MAX_PIECE: usize = 2 << 20;

/// An open's readahead state (the kernel's `file_ra_state`).
#[derive(Default)]
pub(crate) struct RaState {
    window: Mutex<Window>,
    /// One past the last page read through this open (0: none yet).
    prev: AtomicU64,
    /// The backend gave no descriptor for a ring read: this open's windows
    /// go to the background readers without asking again.
    no_ring: AtomicBool,
}

/// The last window: pages `start..start + size`, of which the last
/// `async_size` start with the marker page.
#[derive(Default, Clone, Copy)]
struct Window {
    start: u64,
    size: u64,
    async_size: u64,
}

impl Window {
    fn marker(&self) -> u64 {
        self.start + self.size - self.async_size
    }
}

/// A read through an open: its readahead state and the pages left in the
/// request (the page being read included).
#[derive(Clone, Copy)]
pub(crate) struct Ra<'a> {
    pub(crate) state: &'a RaState,
    pub(crate) req: u64,
}

impl RaState {
    /// Records that the read through this open ended at page `last`.
    #[inline]
    pub(crate) fn note_read(&self, last: u64) {
        // A load first: readers sharing the open do not bounce the line
        // while they stay on one page.
        if self.prev.load(Ordering::Relaxed) != last + 1 {
            self.prev.store(last + 1, Ordering::Relaxed);
        }
    }
}

/// The largest window in pages: `readahead_max` (twice that for a file
/// advised `Sequential`, as the kernel doubles `ra_pages` for
/// `POSIX_FADV_SEQUENTIAL`), and never more than an eighth of the budget, so
/// windows in flight for a few readers cannot crowd out everything else.
pub(crate) fn max_pages(inner: &Inner, sequential: bool) -> u64 {
    let ps = inner.page_size();
    let bytes = if sequential {
        2 * inner.cfg.readahead_max
    } else {
        inner.cfg.readahead_max
    };
    let budget = inner.arena.len() / 8;
    (bytes / ps).min(budget).max(1) as u64
}

/// The first window of a sequence: the request rounded up to a power of
/// two, ×4 if small, ×2 if medium (the kernel's `get_init_ra_size`).
fn init_size(req: u64, max: u64) -> u64 {
    let size = req.max(1).next_power_of_two();
    let size = if size <= max / 32 {
        size * 4
    } else if size <= max / 4 {
        size * 2
    } else {
        max
    };
    size.min(max)
}

/// The window after one of `cur` pages (the kernel's `get_next_ra_size`).
fn next_size(cur: u64, max: u64) -> u64 {
    let next = if cur < max / 16 {
        4 * cur
    } else if cur <= max / 2 {
        2 * cur
    } else {
        max
    };
    next.clamp(1, max)
}

/// Cached pages needed right before a miss for it to count as part of
/// someone's sequence: enough that a random reader rarely finds them.
const HISTORY: u64 = 4;

/// The run of cached pages right before `index`, if it is long enough to
/// call the miss sequential (or reaches the start of the file).
fn history(m: &Mapping, index: u64) -> Option<u64> {
    let mut n = 0;
    while n < HISTORY && n < index && m.lookup(index - 1 - n).is_some() {
        n += 1;
    }
    (n == HISTORY || (n > 0 && n == index)).then_some(n)
}

/// The window a miss at `index` reads: pages after `index` to read with it,
/// and the marker page among them (`None`: none).
pub(crate) fn sync_window(
    inner: &Inner,
    m: &Mapping,
    ra: Ra<'_>,
    index: u64,
) -> (u64, Option<u64>) {
    let mode = advise::ra_mode(m);
    if mode == advise::RA_RANDOM {
        return (0, None);
    }
    let max = max_pages(inner, mode == advise::RA_SEQUENTIAL);
    let prev = ra.state.prev.load(Ordering::Relaxed);
    let mut w = ra.state.window.lock();
    // Sequential: the start of the file, the page after the last one read,
    // or where this open's window ends (it was cut short).
    let sequential =
        index == 0 || (prev != 0 && prev == index) || (w.size > 0 && index == w.start + w.size);
    let size = if mode == advise::RA_SEQUENTIAL {
        max
    } else if w.size > 0 && index == w.start {
        // The window a marker submitted, not taken by a background reader
        // yet: read it now, at the size planned.
        w.size
    } else if sequential && w.size > 0 && index > w.start {
        next_size(w.size, max)
    } else if sequential {
        init_size(ra.req, max)
    } else if let Some(history) = history(m, index) {
        // No sequence of ours, but the pages before are cached: another
        // open is (or was) reading this way (the kernel's context
        // readahead); start a window of our own.
        init_size(history + ra.req, max)
    } else {
        return (0, None);
    };
    let async_size = if size > ra.req { size - ra.req } else { size };
    *w = Window {
        start: index,
        size,
        async_size,
    };
    let marker = w.marker();
    (size - 1, (marker > index).then_some(marker))
}

/// Takes the marker off the frame `id` (held by the caller as page `index`
/// of `m`); returns whether it was there, for exactly one accessor.
#[inline]
pub(crate) fn take_marker(inner: &Inner, id: FrameId) -> bool {
    let f = inner.arena.frame(id);
    f.flags() & RA_MARKER != 0 && f.clear(RA_MARKER)
}

/// Called on an access to a page that carried the marker (cleared by the
/// caller): moves this open's window on and submits it to the background
/// readers. Never waits for the read.
pub(crate) fn marker_hit(inner: &Arc<Inner>, m: &Arc<Mapping>, ra: Ra<'_>, index: u64) {
    let mode = advise::ra_mode(m);
    if mode == advise::RA_RANDOM {
        return;
    }
    let max = max_pages(inner, mode == advise::RA_SEQUENTIAL);
    let next = {
        let mut w = ra.state.window.lock();
        if w.size > 0 && index == w.marker() {
            w.start += w.size;
            w.size = next_size(w.size, max);
        } else {
            // Another open's marker, or this open's window moved on: the
            // new window starts after the pages already here.
            let mut start = index + 1;
            while start - index <= max && m.lookup(start).is_some() {
                start += 1;
            }
            if start - index > max {
                return;
            }
            w.start = start;
            w.size = next_size(start - index + ra.req, max);
        }
        if mode == advise::RA_SEQUENTIAL {
            w.size = max;
        }
        w.async_size = w.size;
        *w
    };
    let end = (next.start + next.size).min(m.size().div_ceil(inner.page_size() as u64));
    if next.start >= end {
        return;
    }
    let piece = piece_pages(inner, next.size);
    let Some(rest) = read_on_ring(inner, m, ra.state, next.start..end, next.marker(), piece) else {
        return;
    };
    // Readahead is a hint: if the background reader cannot be started, the
    // reader's own misses read the pages instead.
    let _ = inner
        .prefetcher
        .readahead(inner, m, rest, next.marker(), piece);
}

/// Pages per read of an asynchronous window of `size` pages.
fn piece_pages(inner: &Inner, size: u64) -> u64 {
    let ps = inner.page_size() as u64;
    let bytes = (size * ps / PIECES).clamp(MIN_PIECE as u64, MAX_PIECE as u64);
    (bytes / ps).max(1)
}

/// Queues the window `pages` on the cache's ring, one read per `piece`
/// pages, and submits them. Returns the pages left for the background
/// readers (`None`: none), which is all of them where there is no ring or
/// the backend gives no descriptor. Like a background reader, it stops at
/// a resident page or where no frame can be had.
fn read_on_ring(
    inner: &Inner,
    m: &Arc<Mapping>,
    state: &RaState,
    pages: Range<u64>,
    marker: u64,
    piece: u64,
) -> Option<Range<u64>> {
    let ring = match &inner.io.ring {
        Some(r) if r.has_reads() && !state.no_ring.load(Ordering::Relaxed) => r,
        _ => return Some(pages),
    };
    let ps = inner.page_size() as u64;
    let mut start = pages.start;
    let mut left = None;
    while start < pages.end {
        let want = (pages.end - start).min(piece);
        let taken = take_frames(inner, m, start, want);
        if taken.is_empty() {
            break;
        }
        let n = taken.len() as u64;
        let offset = start * ps;
        let fd = {
            // SAFETY: fresh frames, write-locked by us; these slices only
            // show the backend the buffers and are gone before the read.
            let bufs: Vec<IoSliceMut<'_>> = taken
                .iter()
                .map(|(id, _)| IoSliceMut::new(unsafe { inner.arena.page_mut(*id) }))
                .collect();
            m.backend
                .async_read_fd(&bufs, offset)
                .map(|fd| fd.as_raw_fd())
        };
        let Some(fd) = fd else {
            state.no_ring.store(true, Ordering::Relaxed);
            finish(inner, m, start, taken, None, None);
            left = Some(start..pages.end);
            break;
        };
        // The kernel writes the frames through these until the reaper
        // completes the read; nothing else touches them meanwhile (see
        // `Iovecs`).
        let iov: Vec<libc::iovec> = taken
            .iter()
            .map(|(id, _)| libc::iovec {
                iov_base: inner.arena.page_ptr(*id).cast(),
                iov_len: ps as usize,
            })
            .collect();
        let read = RingRead {
            mapping: m.clone(),
            start,
            frames: taken
                .into_iter()
                .map(|(id, guard)| {
                    // Unlocked by the reaper when the read completes.
                    guard.detach();
                    id
                })
                .collect(),
            marker: (start..start + n).contains(&marker).then_some(marker),
            iov: Iovecs(iov),
            offset,
        };
        if let Err(read) = ring.submit_read(fd, read) {
            read.complete(inner, -libc::ECANCELED);
            break;
        }
        inc(&inner.counters.readahead_uring_ios);
        start += n;
        if n < want {
            break;
        }
    }
    ring.flush();
    left
}

/// A piece of a readahead window in flight on the ring. Its frames are in
/// the mapping, write-locked by guards detached at submission, so a reader
/// that gets to one waits for the read instead of issuing its own.
pub(crate) struct RingRead {
    mapping: Arc<Mapping>,
    start: u64,
    frames: Vec<FrameId>,
    marker: Option<u64>,
    iov: Iovecs,
    offset: u64,
}

impl RingRead {
    pub(crate) fn iov(&self) -> &Iovecs {
        &self.iov
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Publishes the pages of a read that completed with `res` (bytes read,
    /// or `-errno`), as a background reader would have. A read cut short
    /// before the end of the file, or one the kernel would not take
    /// asynchronously, is made again through the backend's blocking call;
    /// one that failed takes its pages out (a reader's miss reads them and
    /// gets the error itself).
    pub(crate) fn complete(self, inner: &Inner, res: i32) {
        let m = &self.mapping;
        let taken: Vec<_> = self
            .frames
            .iter()
            // SAFETY: each frame's lock was left held by the guard detached
            // in `read_on_ring`, and only this completion adopts it.
            .map(|&id| (id, unsafe { inner.arena.frame(id).lock.adopt_write() }))
            .collect();
        let len: usize = self.iov.0.iter().map(|v| v.iov_len).sum();
        let got = match usize::try_from(res) {
            Ok(n) if n >= len || self.offset + n as u64 >= m.size() => Some(n),
            Ok(_) => read_frames(inner, m, None, &taken, self.offset).ok(),
            Err(_)
                if [libc::EINVAL, libc::EAGAIN, libc::EINTR, libc::EOPNOTSUPP].contains(&-res) =>
            {
                read_frames(inner, m, None, &taken, self.offset).ok()
            }
            Err(_) => None,
        };
        crate::trace::slow!(
            trace,
            start = self.start,
            pages = taken.len(),
            res,
            "ring readahead"
        );
        finish(inner, m, self.start, taken, got, self.marker);
    }
}

/// Reads a piece of an asynchronous window (a background reader's job).
/// Where free frames run out at the low watermark, it waits a little for
/// background reclaim to make room (a background reader may wait; it never
/// reclaims), then reads the rest; it stops at a resident page.
pub(crate) fn read_window(inner: &Inner, m: &Mapping, pages: Range<u64>, marker: Option<u64>) {
    let end = pages.end.min(m.size().div_ceil(inner.page_size() as u64));
    let mut start = pages.start;
    let mut waits = 0;
    while start < end {
        start += populate_window(inner, m, start, end - start, marker);
        if start >= end || m.lookup(start).is_some() || waits == REFILL_WAITS {
            return;
        }
        waits += 1;
        // One tick at most: reclaim may be stuck behind writeback, and the
        // reader's own miss can then do better than this thread.
        let seen = inner.progress.seq();
        if inner.arena.nr_free() <= inner.wm.low() && !inner.closing.load(Ordering::Acquire) {
            inner.progress.wait(seen, TICK);
        }
    }
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
    marker: Option<u64>,
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
    let read = read_frames(inner, m, Some(page), &taken, index * ps as u64);
    let window_got = read.as_ref().ok().map(|n| n.saturating_sub(ps));
    finish(inner, m, index + 1, taken, window_got, marker);
    read.map(|n| n.min(ps))
}

/// One vectored backend read at `offset` into `first` (the reader's own
/// page, if any) followed by the `taken` frames. A backend that panics
/// fails the read like an I/O error.
fn read_frames(
    inner: &Inner,
    m: &Mapping,
    first: Option<&mut [u8]>,
    taken: &[(FrameId, FrameWriteGuard<'_>)],
    offset: u64,
) -> io::Result<usize> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut bufs = Vec::with_capacity(1 + taken.len());
        bufs.extend(first.map(IoSliceMut::new));
        // SAFETY: fresh frames, write-locked by us, not under writeback;
        // distinct frames do not overlap, nor do they overlap `first`.
        bufs.extend(
            taken
                .iter()
                .map(|(id, _)| IoSliceMut::new(unsafe { inner.arena.page_mut(*id) })),
        );
        read_full(m.backend.as_ref(), &mut bufs, offset)
    }))
    .unwrap_or_else(|_| Err(io::Error::other("the backend panicked")))
}

/// Brings pages `start..start + count` in with one read, under a window's
/// rules (free frames only, up to a resident page or the end of file), for
/// `Advice::WillNeed` and asynchronous readahead (which marks `marker`).
/// Returns the pages taken; a failed read takes them out again, as for a
/// window.
pub(crate) fn populate_window(
    inner: &Inner,
    m: &Mapping,
    start: u64,
    count: u64,
    marker: Option<u64>,
) -> u64 {
    let taken = take_frames(inner, m, start, count);
    if taken.is_empty() {
        return 0;
    }
    let n = taken.len() as u64;
    let ps = inner.page_size() as u64;
    let read = read_frames(inner, m, None, &taken, start * ps);
    crate::trace::slow!(
        trace,
        start,
        pages = n,
        ok = read.is_ok(),
        "prefetch window"
    );
    finish(inner, m, start, taken, read.ok(), marker);
    n
}

/// Free frames for pages `start..start + count`, inserted and write-locked.
fn take_frames<'a>(
    inner: &'a Inner,
    m: &Mapping,
    start: u64,
    count: u64,
) -> Vec<(FrameId, FrameWriteGuard<'a>)> {
    let arena = &inner.arena;
    let ps = inner.page_size();
    let end = (start + count).min(m.size().div_ceil(ps as u64));
    let mut taken = Vec::new();
    for index in start..end {
        // Resident already: the window ends here (a lookup is enough; a
        // page inserted meanwhile is caught by `insert`).
        if m.lookup(index).is_some() {
            break;
        }
        // Readahead never waits: it takes free frames above the low
        // watermark, and below it frees clean pages itself, or stops (the
        // kernel's __GFP_NORETRY).
        if arena.nr_free() <= inner.wm.low() && !reclaim_light(inner) {
            reclaim::background::wake(inner);
            break;
        }
        let Some(id) = arena.pop_free() else {
            break;
        };
        let guard = arena.write_frame(id);
        if let Err(existing) = m.insert(arena, index, id) {
            drop(guard);
            arena.release_unused(id);
            arena.unpin(existing);
            break;
        }
        taken.push((id, guard));
    }
    // A window joins the inactive list at once, under one lock: its own
    // batch (write-locked until read, reclaim could not take its pages
    // before anyway).
    inner
        .lru
        .add_many(taken.iter().map(|&(id, _)| lru::entry(arena, id)).collect());
    taken
}

/// Frees a batch of clean pages for readahead: one scan of the inactive
/// tail, as the background reclaimer makes (it never writes under
/// `offload` and `no-throttle`, and never waits). Under `legacy` the
/// background reclaimer writes dirty victims, which readahead must not:
/// there it leaves reclaim to that thread. Returns whether it freed any.
fn reclaim_light(inner: &Inner) -> bool {
    inner.policy() != Policy::Legacy
        && reclaim::direct::shrink(inner, reclaim::BATCH, Reclaimer::Background).freed > 0
}

/// Publishes the frames of pages `start..` once their read is done: `got`
/// is the bytes read into them, `None` if the read failed. Page `marker`,
/// if among them, gets the readahead marker.
fn finish(
    inner: &Inner,
    m: &Mapping,
    start: u64,
    taken: Vec<(FrameId, FrameWriteGuard<'_>)>,
    got: Option<usize>,
    marker: Option<u64>,
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
            let mark = if marker == Some(start + k as u64) {
                RA_MARKER
            } else {
                0
            };
            f.set(READAHEAD | UPTODATE | mark);
        } else {
            let index = start + k as u64;
            m.remove(index, id);
            f.set(ORPHAN);
        }
        drop(guard);
        arena.unpin(id);
    }
}
