//! `writepages`: a mapping's dirty pages in index order, contiguous runs
//! coalesced into one vectored write of up to `max_io` bytes (invariant 6).

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};

use crate::backend::write_all_vectored;
use crate::frame::{FrameId, DIRTY, ORPHAN, WRITEBACK};
use crate::guard::Hold;
use crate::mapping::Mapping;
use crate::state::Inner;
use crate::stats::{add, inc};

use super::io::Run;

/// Writes up to `nr_to_write` dirty pages of `m`; returns pages submitted.
///
/// `sync`: wait for pages locked by writers or already under writeback
/// (data-integrity writeback). Otherwise such pages are skipped and the walk
/// resumes where the last one stopped (cyclic background writeback).
pub(crate) fn writepages(
    inner: &Inner,
    m: &Arc<Mapping>,
    sync: bool,
    nr_to_write: usize,
    range: Range<u64>,
) -> usize {
    let _resize = m.resize.read_recursive();
    let cursor = if sync {
        range.start
    } else {
        m.writeback_cursor
            .load(Ordering::Relaxed)
            .clamp(range.start, range.end)
    };
    let indexes: Vec<u64> = {
        let d = m.dirty.lock();
        d.pages
            .range(cursor..range.end)
            .chain(d.pages.range(range.start..cursor))
            .take(nr_to_write)
            .copied()
            .collect()
    };
    let (submitted, last) = write_indexes(inner, m, sync, indexes);
    if let (false, Some(last)) = (sync, last) {
        m.writeback_cursor.store(last + 1, Ordering::Relaxed);
    }
    submitted
}

/// Full `max_io` windows one reclaim request may write in a row.
const STREAM_WINDOWS: u64 = 4;

/// Writeback for reclaim: for each page reclaim flagged, the run of dirty
/// pages contiguous with it inside its `max_io` window (the kernel's
/// clustering around a page it pages out), so what reclaim waits for goes
/// out in one I/O while scattered dirty pages nearby stay in memory to
/// absorb rewrites, for the background threshold to handle. A window dirty
/// from end to end is a stream being written: the following windows go too
/// while they are just as full, up to `STREAM_WINDOWS`, so its writes
/// overlap the writer instead of trickling out one request at a time.
pub(crate) fn writepages_around(inner: &Inner, m: &Arc<Mapping>, flagged: &[u64]) -> usize {
    let _resize = m.resize.read_recursive();
    let max_pages = (inner.cfg.max_io / inner.page_size()).max(1) as u64;
    let mut flagged = flagged.to_vec();
    flagged.sort_unstable();
    flagged.dedup();
    let indexes: Vec<u64> = {
        let d = m.dirty.lock();
        let dirty = |i: u64| d.pages.contains(&i);
        let mut out: Vec<u64> = Vec::new();
        for f in flagged {
            if out.last().is_some_and(|&l| l >= f) || !dirty(f) {
                continue;
            }
            let start = f - f % max_pages;
            let end = start.saturating_add(max_pages);
            let floor = out.last().map_or(start, |&l| (l + 1).max(start));
            let mut lo = f;
            while lo > floor && dirty(lo - 1) {
                lo -= 1;
            }
            let mut hi = f + 1;
            while hi < end && dirty(hi) {
                hi += 1;
            }
            out.extend(lo..hi);
            if lo != start || hi != end {
                continue;
            }
            for k in 1..STREAM_WINDOWS {
                let (s, e) = (start + k * max_pages, end + k * max_pages);
                if d.pages.range(s..e).count() as u64 != max_pages {
                    break;
                }
                out.extend(s..e);
            }
        }
        out
    };
    write_indexes(inner, m, false, indexes).0
}

/// Starts writeback of the pages at `indexes` (ascending), coalescing
/// contiguous ones into runs of up to `max_io`, with up to `io_depth` runs
/// in flight; waits for them all. Returns (pages submitted, last index).
fn write_indexes(
    inner: &Inner,
    m: &Arc<Mapping>,
    sync: bool,
    indexes: Vec<u64>,
) -> (usize, Option<u64>) {
    let arena = &inner.arena;
    let max_pages = (inner.cfg.max_io / inner.page_size()).max(1);
    let (done_tx, done_rx) = unbounded();
    let mut inflight = 0usize;
    let mut run = Run::new(m.clone(), done_tx.clone());
    let mut submitted = 0usize;
    let mut last = None;
    for index in indexes {
        let Some(id) = m.find_pin(arena, index) else {
            m.note_clean(index);
            continue;
        };
        // Never wait for a page while holding pages of an unsubmitted run
        // under writeback: the page's holder (a guard) may be waiting for
        // one of them. Submit what is gathered, then wait.
        let mut started = start_writeback(inner, m, id, index, false);
        if !started && sync {
            if !run.frames.is_empty() {
                let full = std::mem::replace(&mut run, Run::new(m.clone(), done_tx.clone()));
                submit(inner, full, &mut inflight, &done_rx);
            }
            inner.io.flush();
            started = start_writeback(inner, m, id, index, true);
        }
        arena.unpin(id);
        if !started {
            continue;
        }
        submitted += 1;
        last = Some(index);
        if !run.frames.is_empty() && (index != run.next_index() || run.frames.len() >= max_pages) {
            let full = std::mem::replace(&mut run, Run::new(m.clone(), done_tx.clone()));
            submit(inner, full, &mut inflight, &done_rx);
        }
        if run.frames.is_empty() {
            run.first = index;
        }
        run.frames.push(id);
    }
    if !run.frames.is_empty() {
        submit(inner, run, &mut inflight, &done_rx);
    }
    inner.io.flush();
    while inflight > 0 {
        let _ = done_rx.recv();
        inflight -= 1;
    }
    (submitted, last)
}

/// Submits a run once the writeback depth allows (writeback/wbt.rs): at
/// most `io_depth` of this pass's runs, and no more than the adaptive depth
/// over all passes, are in flight.
fn submit(inner: &Inner, run: Run, inflight: &mut usize, done: &Receiver<()>) {
    let wbt = &inner.wbt;
    loop {
        if *inflight < inner.cfg.io_depth && wbt.pending.load(Ordering::Acquire) < wbt.depth() {
            break;
        }
        inner.io.flush();
        if *inflight > 0 {
            // Refill in batches, not one write per completion: each
            // submission is a system call and a device notification.
            let limit = inner.cfg.io_depth.min(wbt.depth());
            let target = limit - (limit / 8).clamp(1, 32);
            let _ = done.recv();
            *inflight -= 1;
            while *inflight > target {
                let _ = done.recv();
                *inflight -= 1;
            }
            continue;
        }
        // Other passes' writes fill the depth: wait for one to complete.
        let seen = inner.progress.seq();
        if wbt.pending.load(Ordering::Acquire) >= wbt.depth() {
            inner
                .progress
                .wait(seen, std::time::Duration::from_millis(5));
            wbt.tick(inner.epoch);
        }
    }
    *inflight += 1;
    wbt.pending.fetch_add(1, Ordering::AcqRel);
    inner.io.submit(inner, run);
}

/// Moves a page from DIRTY to WRITEBACK (the kernel's
/// `folio_clear_dirty_for_io` + `folio_start_writeback`). Done under the
/// frame's read lock so no writer is mid-copy; the lock is dropped before the
/// I/O, and writers wait for WRITEBACK to clear instead.
fn start_writeback(inner: &Inner, m: &Mapping, id: FrameId, index: u64, sync: bool) -> bool {
    let f = inner.arena.frame(id);
    let _guard = loop {
        let guard = if sync {
            // A syncing thread may hold the page by a hazard slot that a
            // writer holding the frame's write lock waits for.
            crate::filemap::hold_pinned(inner, id, true)
        } else {
            match f.lock.try_read() {
                Some(g) => Hold::Lock(g),
                None => return false,
            }
        };
        if f.flags() & WRITEBACK == 0 {
            break guard;
        }
        if !sync {
            return false;
        }
        drop(guard);
        inner
            .progress
            .wait_until(crate::throttle::reclaim::TICK, || {
                f.flags() & WRITEBACK == 0
            });
    };
    if !f.state.start_writeback() {
        return false;
    }
    inner.nr_dirty.fetch_sub(1, Ordering::Relaxed);
    inner.nr_writeback.fetch_add(1, Ordering::Relaxed);
    m.nr_writeback.fetch_add(1, Ordering::Relaxed);
    m.note_clean(index);
    true
}

/// Writes one run's pages and completes their writeback; returns success.
pub(crate) fn write_run(inner: &Inner, run: &Run) -> bool {
    let w = begin_write(inner, run);
    let result = if w.len == 0 {
        Ok(())
    } else {
        write_blocking(run, &w.slices, w.offset)
    };
    let (len, failures_at_issue) = (w.len, w.failures_at_issue);
    drop(w);
    end_write(inner, run, &result, len, failures_at_issue)
}

/// A run's write, ready to issue: its bytes, clipped to the file size.
pub(crate) struct RunWrite<'a> {
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) slices: Vec<&'a [u8]>,
    /// A sync failing while this write is in flight may drop it: noted
    /// before the write is issued, checked when it completes
    /// (writeback/commit.rs).
    pub(crate) failures_at_issue: u64,
}

/// The bytes of `run`'s pages to write.
pub(crate) fn begin_write<'a>(inner: &'a Inner, run: &Run) -> RunWrite<'a> {
    let ps = inner.page_size() as u64;
    let m = &run.mapping;
    let offset = run.first * ps;
    let failures_at_issue = m.sync_failures.load(Ordering::Acquire);
    // Clip to the file size: the tail of the last page past EOF is not data.
    let size = m.size();
    let len = (run.frames.len() as u64 * ps).min(size.saturating_sub(offset)) as usize;
    let mut slices: Vec<&[u8]> = Vec::with_capacity(run.frames.len());
    let mut left = len;
    for &id in &run.frames {
        if left == 0 {
            break;
        }
        // SAFETY: the frame is under writeback started by this run, so no
        // writer modifies it until its writeback ends in `end_write`.
        let page = unsafe { inner.arena.page(id) };
        let n = left.min(page.len());
        slices.push(&page[..n]);
        left -= n;
    }
    RunWrite {
        offset,
        len,
        slices,
        failures_at_issue,
    }
}

/// Writes `slices` at `offset` through the backend's blocking call.
pub(crate) fn write_blocking(run: &Run, slices: &[&[u8]], offset: u64) -> std::io::Result<()> {
    // A backend that panics is a failed write, not a run whose pages stay
    // under writeback forever (and whose waiters never wake).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        write_all_vectored(run.mapping.backend.as_ref(), slices, offset)
    }))
    .unwrap_or_else(|_| Err(std::io::Error::other("the backend panicked")))
}

/// Ends writeback of `run`'s pages after its write of `len` bytes finished
/// with `result`; returns success.
pub(crate) fn end_write(
    inner: &Inner,
    run: &Run,
    result: &std::io::Result<()>,
    len: usize,
    failures_at_issue: u64,
) -> bool {
    let m = &run.mapping;
    let pages: Vec<(u64, FrameId)> = run
        .frames
        .iter()
        .enumerate()
        .map(|(i, &id)| (run.first + i as u64, id))
        .collect();
    let ok = result.is_ok();
    if let Err(e) = result {
        inc(&inner.counters.writeback_errors);
        crate::trace::slow!(warn, path = ?m.path, first = run.first, pages = run.frames.len(), error = %e, "writeback failed; the pages stay dirty");
        record_failure(inner, m, e.raw_os_error().unwrap_or(super::libc_eio()));
        for &(index, id) in &pages {
            end_writeback_failed(inner, m, id, index);
        }
    } else {
        if m.wb_failing.swap(false, Ordering::AcqRel) {
            inner.failing_mappings.fetch_sub(1, Ordering::Relaxed);
        }
        inc(&inner.counters.writeback_ios);
        add(&inner.counters.writeback_bytes, len as u64);
        add(&inner.counters.writeback_pages, run.frames.len() as u64);
        inner
            .bandwidth
            .record(inner.epoch.elapsed().as_nanos() as u64, len as u64);
        super::commit::written(inner, m, &pages, failures_at_issue);
    }
    inner.progress.notify();
    ok
}

/// Records a failed write or sync of `m`: the errseq for every open, and the
/// back-off state the flushers and the dirty throttle consult.
pub(crate) fn record_failure(inner: &Inner, m: &Mapping, errno: i32) {
    m.errseq.set(errno);
    m.last_errno.store(errno, Ordering::Relaxed);
    m.last_fail_ns
        .store(inner.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    if !m.wb_failing.swap(true, Ordering::AcqRel) {
        inner.failing_mappings.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ends writeback of a page whose write failed (or may have been dropped by a
/// failed sync): it is dirty again before WRITEBACK clears, so it is never
/// clean with unwritten data (invariant 7).
pub(crate) fn end_writeback_failed(inner: &Inner, m: &Mapping, id: FrameId, index: u64) {
    let f = inner.arena.frame(id);
    let (redirtied, s) = f.state.end_writeback_err();
    if redirtied {
        inner.nr_dirty.fetch_add(1, Ordering::Relaxed);
        if s & ORPHAN == 0 {
            m.note_dirty(index);
        }
    }
    if s & ORPHAN != 0 && f.clear(DIRTY) {
        inner.nr_dirty.fetch_sub(1, Ordering::Relaxed);
    }
    writeback_ended(inner, m, id);
}

/// The accounting common to every end of writeback; frees a truncated page.
pub(crate) fn writeback_ended(inner: &Inner, m: &Mapping, id: FrameId) {
    inner.nr_writeback.fetch_sub(1, Ordering::Relaxed);
    m.nr_writeback.fetch_sub(1, Ordering::Release);
    if inner.arena.frame(id).flags() & ORPHAN != 0 {
        inner.arena.try_free_orphan(id);
    }
}

/// Writes one page synchronously from the calling thread (the legacy policy's
/// direct reclaim). Returns whether it was written.
pub(crate) fn writepage_sync(inner: &Inner, m: &Arc<Mapping>, id: FrameId, index: u64) -> bool {
    if !start_writeback(inner, m, id, index, false) {
        return false;
    }
    let mut run = Run::detached(m.clone());
    run.first = index;
    run.frames.push(id);
    write_run(inner, &run)
}
