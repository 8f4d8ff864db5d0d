//! Flusher threads (the kernel's `wb_workfn`): write dirty pages for reclaim,
//! for the background threshold and for `dirty_expire`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mapping::Mapping;
use crate::state::Inner;
use crate::stats::inc;
use crate::throttle::dirty::{levels, nr_dirty};

use super::{writepages, writepages_around, Reason};

/// Pages one background pass writes from a mapping before moving on, so a
/// huge file does not starve the others.
const CHUNK: usize = 4096;
/// Windows of a mapping's dirty set looked at for a stream.
const STREAM_PROBE_WINDOWS: usize = 8;
/// A mapping whose writeback just failed is retried after this long.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) fn run(inner: &Inner) {
    crate::sched::enter_background(inner);
    let interval = inner.cfg.dirty_writeback_interval;
    let mut last_periodic = Instant::now();
    let wb = &inner.writeback;
    loop {
        let seen = wb.wake.seq();
        if inner.shutdown.load(Ordering::Acquire) {
            return;
        }
        if let Some((m, reason)) = wb.pop() {
            flush(inner, &m, reason, usize::MAX);
            continue;
        }
        // The flag is a hint to look now; the count is what decides, checked
        // on every wakeup (the kernel's `wb_check_background_flush`), so a
        // kick lost to a race costs at most one wait. A pass that wrote
        // nothing (every file busy or backing off) waits before trying again.
        let kicked = wb.take_background();
        if (kicked || nr_dirty(inner) > levels(inner).background)
            && nr_dirty(inner) > levels(inner).background
            && background(inner) > 0
        {
            continue;
        }
        if last_periodic.elapsed() >= interval {
            last_periodic = Instant::now();
            expire(inner);
            continue;
        }
        wb.wake.wait(seen, interval.min(Duration::from_millis(100)));
    }
}

fn backing_off(inner: &Inner, m: &Mapping) -> bool {
    // The failure time may be stored by another thread after `now` was read:
    // saturate rather than wrap.
    m.wb_failing.load(Ordering::Acquire)
        && (inner.epoch.elapsed().as_nanos() as u64)
            .saturating_sub(m.last_fail_ns.load(Ordering::Relaxed))
            < RETRY_BACKOFF.as_nanos() as u64
}

/// Whether a flusher that just wrote `m` for `reason` should also commit it
/// (sync the backend). Reclaim and expiry want the pages durable now;
/// otherwise commits are batched until unstable pages pass half the
/// background threshold, so sequential writeback pays one sync per few
/// megabytes rather than one per run.
fn should_commit(inner: &Inner, m: &Mapping, reason: Reason) -> bool {
    if m.nr_unstable() == 0 {
        return false;
    }
    match reason {
        Reason::Reclaim | Reason::Commit | Reason::Expire => true,
        Reason::Background => {
            inner.nr_unstable.load(Ordering::Relaxed) >= (levels(inner).background / 2).max(1)
        }
    }
}

/// Commits `m`; returns the pages that became durable (none if the sync
/// failed: the failure is recorded in the errseq and re-dirties them).
fn commit_counted(inner: &Inner, m: &Mapping) -> usize {
    let unstable = m.nr_unstable();
    if super::commit::commit(inner, m).is_ok() {
        unstable
    } else {
        0
    }
}

/// One pass over one mapping, unless another flusher is already on it.
fn flush(inner: &Inner, m: &Arc<Mapping>, reason: Reason, nr: usize) -> usize {
    if backing_off(inner, m) {
        return 0;
    }
    if reason == Reason::Commit {
        // No walk of the dirty pages: commits have their own lock, and a
        // flusher busy writing the file must not make this one skip it.
        // Only a flusher that has the file to itself writes on meanwhile.
        if m.nr_unstable() == 0 {
            return 0;
        }
        if m.flushing.swap(true, Ordering::AcqRel) {
            return commit_counted(inner, m);
        }
        let n = commit_writing_on(inner, m);
        m.flushing.store(false, Ordering::Release);
        return n;
    }
    if m.flushing.swap(true, Ordering::AcqRel) {
        return 0;
    }
    let c = &inner.counters;
    match reason {
        Reason::Reclaim => inc(&c.flush_reason_reclaim),
        Reason::Background => inc(&c.flush_reason_background),
        Reason::Expire => inc(&c.flush_reason_expire),
        // Counted as `commits`: nothing is written.
        Reason::Commit => {}
    }
    let mut n = if reason == Reason::Reclaim {
        let wanted = std::mem::take(&mut *m.reclaim_wanted.lock());
        writepages_around(inner, m, &wanted)
    } else {
        writepages(inner, m, false, nr, 0..u64::MAX)
    };
    if should_commit(inner, m, reason) {
        n += commit_writing_on(inner, m);
    }
    m.flushing.store(false, Ordering::Release);
    n
}

/// Commits `m`, and meanwhile, if dirty memory is over the background
/// threshold and `m` is being written as a stream, writes its next full
/// `max_io` windows. A commit is a device cache flush (for a growing file,
/// a journal commit too): done alone, it leaves the device idle while every
/// writer waits for the frames it frees (an 8 MiB budget then got a third
/// of the device's sequential bandwidth). Scattered dirty pages are left alone: written
/// early they would only stop absorbing rewrites. The pages written
/// meanwhile are not covered by this commit (it covers writes that
/// completed before it started) but by the next one.
fn commit_writing_on(inner: &Inner, m: &Arc<Mapping>) -> usize {
    let stream = if nr_dirty(inner) > levels(inner).background {
        first_full_window(inner, m)
    } else {
        None
    };
    let Some(start) = stream else {
        return commit_counted(inner, m);
    };
    std::thread::scope(|s| {
        let committer = std::thread::Builder::new()
            .name("pagecache-commit".into())
            .spawn_scoped(s, || commit_counted(inner, m));
        match committer {
            Ok(c) => {
                // The window and the full ones after it (writepages_around).
                let written = writepages_around(inner, m, &[start]);
                // A panicking backend sync is caught inside the commit.
                written + c.join().unwrap_or(0)
            }
            // No thread to spare: commit alone.
            Err(_) => commit_counted(inner, m),
        }
    })
}

/// The first index of the first `max_io` window of `m` dirty from end to
/// end, among the lowest few windows holding dirty pages.
fn first_full_window(inner: &Inner, m: &Mapping) -> Option<u64> {
    let max_pages = (inner.cfg.max_io / inner.page_size()).max(1) as u64;
    let d = m.dirty.lock();
    let mut from = 0;
    for _ in 0..STREAM_PROBE_WINDOWS {
        let first = *d.pages.range(from..).next()?;
        let start = first - first % max_pages;
        let end = start.saturating_add(max_pages);
        if d.pages.range(start..end).count() as u64 == max_pages {
            return Some(start);
        }
        from = end;
    }
    None
}

/// Dirty mappings, the longest-dirty first; then mappings with only
/// unstable pages (they need a commit, not a write).
fn dirty_mappings(inner: &Inner) -> Vec<(Instant, Arc<Mapping>)> {
    let now = Instant::now();
    let mut v: Vec<_> = inner
        .mappings()
        .into_iter()
        .filter_map(|m| match m.dirty_since() {
            Some(t) => Some((t, m)),
            None if m.nr_unstable() > 0 => Some((now, m)),
            None => None,
        })
        .collect();
    v.sort_by_key(|(t, _)| *t);
    v
}

/// Writes until dirty pages are under the background threshold; returns
/// pages written or committed.
fn background(inner: &Inner) -> usize {
    let target = levels(inner).background;
    let mut total = 0;
    loop {
        let mut progress = 0;
        for (_, m) in dirty_mappings(inner) {
            if nr_dirty(inner) <= target || inner.shutdown.load(Ordering::Acquire) {
                return total + progress;
            }
            progress += flush(inner, &m, Reason::Background, CHUNK);
            // Reclaim requests jump the queue between chunks.
            while let Some((m, reason)) = inner.writeback.pop() {
                progress += flush(inner, &m, reason, usize::MAX);
            }
        }
        total += progress;
        if progress == 0 {
            return total;
        }
    }
}

/// Writes mappings dirty for longer than `dirty_expire`, and commits every
/// other mapping with unstable pages, so none stays undurable for longer
/// than a writeback interval past its write.
fn expire(inner: &Inner) {
    let expire = inner.cfg.dirty_expire;
    for (_, m) in dirty_mappings(inner) {
        if m.dirty_since().is_some_and(|t| t.elapsed() >= expire) {
            flush(inner, &m, Reason::Expire, usize::MAX);
        } else if m.nr_unstable() > 0 {
            flush(inner, &m, Reason::Commit, 0);
        }
    }
}
