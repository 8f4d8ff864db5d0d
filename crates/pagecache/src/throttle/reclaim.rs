//! The reclaim throttle (the kernel's `reclaim_throttle`): an allocator that
//! found nothing clean sleeps until writeback makes progress, for a bounded
//! time, then retries. This is Andrea's answer to OOM false positives: with
//! dirty pages or writeback in flight there is always progress to wait for.

use std::time::{Duration, Instant};

use crate::state::Inner;
use crate::stats::{add, inc};

/// Longest single wait; the caller re-scans after it either way.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Waits for progress after `seen` on behalf of an allocator, counted.
pub(crate) fn wait(inner: &Inner, seen: u64) {
    crate::trace::slow_span!("reclaim_throttle");
    let start = Instant::now();
    inner.writeback.kick_background();
    inner.progress.wait(seen, TICK);
    inc(&inner.counters.reclaim_throttle_events);
    crate::stats::thread_update(inner.id, |t| t.reclaim_throttle_events += 1);
    let waited = start.elapsed();
    add(
        &inner.counters.reclaim_throttle_ns,
        waited.as_nanos() as u64,
    );
    crate::trace::slow!(debug, ?waited, "allocator waited for writeback progress");
}

/// The same wait for the background reclaimer, not counted as throttling.
pub(crate) fn wait_quiet(inner: &Inner, seen: u64) {
    inner.writeback.kick_background();
    inner.progress.wait(seen, TICK);
}
