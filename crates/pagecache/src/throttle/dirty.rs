//! The dirty throttle, after the kernel's I/O-less `balance_dirty_pages`.
//!
//! Dirty and under-writeback frames together are compared with three levels
//! derived from the budget: `background` (flushers start), `limit`
//! (`dirty_ratio`: dirtiers stop), and `freerun`, halfway between, below which
//! nobody is paced. Between `freerun` and `limit` a dirtier sleeps, after each
//! batch of pages it dirtied, for as long as writing those pages takes at the
//! measured writeback bandwidth scaled by a position ratio: 2 at `freerun`, 1
//! at the setpoint halfway to `limit`, 0 at `limit`, cubic in between. That
//! gives many short pauses that grow smoothly with the excess. At `limit` the
//! dirtier waits for writeback progress. Threads that dirty nothing never get
//! here, so readers are never paced (invariant 4). A `dirty_ratio` of 100
//! turns the throttle off: only the background threshold remains.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::state::Inner;
use crate::stats::{add, inc};

/// Pauses shorter than this are accumulated rather than slept.
const MIN_PAUSE: Duration = Duration::from_millis(1);
/// Longest single pause.
const MAX_PAUSE: Duration = Duration::from_millis(50);
/// A dirtier at the limit with writeback failing and no progress for this
/// long gets the writeback error instead of waiting forever.
const STALL_LIMIT: Duration = Duration::from_secs(2);

thread_local! {
    /// Pages this thread dirtied since its last pause.
    static DEBT: Cell<u64> = const { Cell::new(0) };
}

/// Writeback bandwidth estimate, bytes per second, smoothed.
pub(crate) struct Bandwidth {
    bytes_per_sec: AtomicU64,
    window_start_ns: AtomicU64,
    window_bytes: AtomicU64,
}

impl Default for Bandwidth {
    fn default() -> Self {
        Bandwidth {
            // A modest guess until the first measurement.
            bytes_per_sec: AtomicU64::new(64 << 20),
            window_start_ns: AtomicU64::new(0),
            window_bytes: AtomicU64::new(0),
        }
    }
}

impl Bandwidth {
    pub(crate) fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    /// Folds completed writeback bytes into the estimate every 100 ms.
    pub(crate) fn record(&self, now_ns: u64, bytes: u64) {
        let total = self.window_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let start = self.window_start_ns.load(Ordering::Relaxed);
        if start == 0 {
            let _ = self.window_start_ns.compare_exchange(
                0,
                now_ns,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return;
        }
        let elapsed = now_ns.saturating_sub(start);
        if elapsed < 100_000_000 {
            return;
        }
        if self
            .window_start_ns
            .compare_exchange(start, now_ns, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.window_bytes.fetch_sub(total, Ordering::Relaxed);
        let sample = total.saturating_mul(1_000_000_000) / elapsed.max(1);
        let old = self.bytes_per_sec.load(Ordering::Relaxed);
        self.bytes_per_sec
            .store((old * 3 + sample) / 4, Ordering::Relaxed);
    }
}

/// The levels, in frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Levels {
    pub(crate) background: usize,
    pub(crate) freerun: usize,
    pub(crate) limit: usize,
}

pub(crate) fn levels(inner: &Inner) -> Levels {
    let frames = inner.arena.len();
    let limit = (frames * inner.cfg.dirty_ratio as usize / 100).max(2);
    let background = (frames * inner.cfg.dirty_background_ratio as usize / 100)
        .max(1)
        .min(limit - 1);
    Levels {
        background,
        freerun: usize::midpoint(background, limit),
        limit,
    }
}

/// Position ratio: 2 at `freerun`, 1 at the setpoint, 0 at `limit`.
pub(crate) fn pos_ratio(l: &Levels, dirty: usize) -> f64 {
    if dirty <= l.freerun {
        return 2.0;
    }
    if dirty >= l.limit {
        return 0.0;
    }
    let setpoint = (l.freerun + l.limit) as f64 / 2.0;
    let half_span = ((l.limit - l.freerun) as f64 / 2.0).max(0.5);
    let x = (setpoint - dirty as f64) / half_span;
    (1.0 + x * x * x).clamp(0.0, 2.0)
}

/// Pages that are not yet durable: dirty, under writeback, or unstable
/// (the kernel counted NFS's unstable pages the same way).
pub(crate) fn nr_dirty(inner: &Inner) -> usize {
    inner.nr_dirty.load(Ordering::Relaxed)
        + inner.nr_writeback.load(Ordering::Relaxed)
        + inner.nr_unstable.load(Ordering::Relaxed)
}

/// The dirty count `m`'s writers are paced by: other files' dirty pages
/// whose writeback keeps failing (a full disk) are left out, since no amount
/// of waiting writes them, so they cannot stop writers of healthy files (the
/// kernel's per-writeback-domain limits serve the same end). The total is
/// still capped, at twice the limit and at half the frames. The walk over
/// mappings happens only while some writeback is failing.
fn dirty_for(inner: &Inner, m: &Mapping, l: &Levels, dirty: usize) -> usize {
    if dirty <= l.freerun
        || inner.failing_mappings.load(Ordering::Relaxed) == 0
        || m.wb_failing.load(Ordering::Acquire)
        || dirty >= (2 * l.limit).min(inner.arena.len() / 2)
    {
        return dirty;
    }
    let stuck: usize = inner
        .mappings()
        .iter()
        .filter(|o| o.id != m.id && o.wb_failing.load(Ordering::Acquire))
        .map(|o| o.nr_dirty())
        .sum();
    dirty.saturating_sub(stuck)
}

/// How long a dirtier owing `debt` pages sleeps at `dirty`, given writeback
/// runs at `bw_pages` per second and it has already `waited` at the limit.
/// Zero once `dirty` is back under `freerun`: a dirtier that waited at the
/// limit while a commit brought the count down has paid, and sleeping on
/// for its debt would leave the device idle while memory is free.
pub(crate) fn pause_for(
    l: &Levels,
    dirty: usize,
    debt: u64,
    bw_pages: f64,
    waited: Duration,
) -> Duration {
    if dirty <= l.freerun {
        return Duration::ZERO;
    }
    let rate = bw_pages * pos_ratio(l, dirty);
    let pause = if rate <= 0.0 {
        MAX_PAUSE
    } else {
        Duration::from_secs_f64(debt as f64 / rate).min(MAX_PAUSE)
    };
    pause.saturating_sub(waited)
}

/// Called before a thread dirties `pages` pages of `m`.
pub(crate) fn balance_dirty_pages(inner: &Inner, m: &Mapping, pages: u64) -> Result<()> {
    let l = levels(inner);
    let mut dirty = nr_dirty(inner);
    // Counted with the pages about to be dirtied: a write that crosses the
    // threshold starts writeback, not only the one after it.
    if dirty.saturating_add(pages as usize) > l.background {
        inner.writeback.kick_background();
    }
    // A limit of the whole budget is no limit (a memory cgroup of 2012 had
    // none of its own): dirty memory is bounded by the budget alone, and
    // what makes a dirtier wait when all of it is dirty is reclaim, with
    // its policy's throttle or failure. Waiting here instead would be the
    // reclaim throttle under another name, also for `no-throttle`.
    if inner.cfg.dirty_ratio >= 100 {
        return Ok(());
    }
    dirty = dirty_for(inner, m, &l, dirty);
    if dirty <= l.freerun {
        DEBT.with(|d| d.set(0));
        return Ok(());
    }
    let debt = DEBT.with(std::cell::Cell::get) + pages;
    let start = Instant::now();
    let mut last_progress = (inner.counters.writeback_pages.get(), Instant::now());
    // Hard stop at the limit: wait for writeback to bring the count down —
    // unless this thread holds a write guard, whose page writeback cannot
    // take: it would wait on itself. It is only paced below.
    let may_wait = !crate::guard::held::any_write();
    crate::trace::slow_span!("dirty_throttle", dirty, limit = l.limit);
    while may_wait && dirty >= l.limit {
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let seen = inner.progress.seq();
        inner.writeback.kick_background();
        inner.progress.wait(seen, MAX_PAUSE);
        crate::trace::slow!(
            debug,
            dirty,
            limit = l.limit,
            "dirtier waited at the dirty limit"
        );
        inc(&inner.counters.dirty_throttle_events);
        crate::stats::thread_update(inner.id, |t| t.dirty_throttle_events += 1);
        let written = inner.counters.writeback_pages.get();
        if written != last_progress.0 {
            last_progress = (written, Instant::now());
        } else if m.wb_failing.load(Ordering::Acquire) && last_progress.1.elapsed() > STALL_LIMIT {
            add(
                &inner.counters.dirty_throttle_ns,
                start.elapsed().as_nanos() as u64,
            );
            return Err(Error::Writeback {
                path: m.path.clone(),
                // The errno of the failing writes (ENOSPC, EIO…), so a
                // caller can tell a full device from a broken one.
                source: std::io::Error::from_raw_os_error(m.last_errno.load(Ordering::Relaxed)),
            });
        }
        dirty = dirty_for(inner, m, &l, nr_dirty(inner));
    }
    let bw_pages = (inner.bandwidth.bytes_per_sec() / inner.page_size() as u64).max(16) as f64;
    let pause = pause_for(&l, dirty, debt, bw_pages, start.elapsed());
    if pause.is_zero() {
        DEBT.with(|d| d.set(0));
    } else if pause < MIN_PAUSE {
        DEBT.with(|d| d.set(debt));
    } else {
        DEBT.with(|d| d.set(0));
        std::thread::sleep(pause);
        crate::trace::slow!(
            debug,
            ?pause,
            dirty,
            ratio = pos_ratio(&l, dirty),
            "dirtier paused"
        );
        inc(&inner.counters.dirty_throttle_events);
        crate::stats::thread_update(inner.id, |t| t.dirty_throttle_events += 1);
    }
    let waited = start.elapsed();
    if waited >= MIN_PAUSE {
        add(&inner.counters.dirty_throttle_ns, waited.as_nanos() as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pause_below_freerun_and_waiting_counts_toward_the_debt() {
        let l = Levels {
            background: 2027,
            freerun: 2037,
            limit: 2048,
        };
        // A 1 MiB write's debt after a wait at the limit that a commit
        // ended: the count is far below freerun again.
        let none = pause_for(&l, 1024, 512, 16_384.0, Duration::from_micros(700));
        assert_eq!(none, Duration::ZERO);
        let full = pause_for(&l, 2042, 256, 16_384.0, Duration::ZERO);
        assert!(full >= MIN_PAUSE, "{full:?}");
        let part = pause_for(&l, 2042, 256, 16_384.0, Duration::from_millis(5));
        assert_eq!(part, full.saturating_sub(Duration::from_millis(5)));
    }

    #[test]
    fn pos_ratio_falls_from_two_to_zero() {
        let l = Levels {
            background: 100,
            freerun: 150,
            limit: 200,
        };
        assert_eq!(pos_ratio(&l, 150), 2.0);
        assert!((pos_ratio(&l, 175) - 1.0).abs() < 1e-9);
        assert_eq!(pos_ratio(&l, 200), 0.0);
        let mut prev = 2.0;
        for d in 150..=200 {
            let r = pos_ratio(&l, d);
            assert!(r <= prev, "not monotonic at {d}");
            prev = r;
        }
    }
}
