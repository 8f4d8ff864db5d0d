//! Getting a free frame: the allocator, direct reclaim and the background
//! reclaimer.
//!
//! [`alloc_frame`] is the only way a frame leaves the free list. It is the
//! "allocating thread" of DESIGN §4: under the default policy nothing it calls
//! writes to a backend (invariant 1). When the free list runs low it reclaims
//! clean frames itself ([`direct`]); when it finds none it waits for writeback
//! progress ([`crate::throttle::reclaim`]) and fails only when every frame is
//! pinned (invariant 3).

pub(crate) mod background;
pub(crate) mod direct;

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::config::Policy;
use crate::error::{Error, Result};
use crate::frame::FrameId;
use crate::stack::AllocScope;
use crate::state::Inner;
use crate::stats::{add, inc, Counter};
use crate::throttle;

/// Frames one reclaim pass tries to free (the kernel's `SWAP_CLUSTER_MAX`).
pub(crate) const BATCH: usize = 32;

/// Who is reclaiming: the counters and the dirty-page decision differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reclaimer {
    Direct,
    Background,
}

/// Returns a free frame, pinned once, with no flags set.
pub(crate) fn alloc_frame(inner: &Inner) -> Result<FrameId> {
    let _scope = AllocScope::enter(&inner.counters.alloc_stack_peak_bytes);
    let arena = &inner.arena;
    if arena.nr_free() < inner.wm.low() {
        background::wake(inner);
    }
    // Below `min`, the allocator pays for reclaim itself before taking a frame.
    let mut stall = None;
    if arena.nr_free() <= inner.wm.min() {
        stall = Some(Stall::start(&inner.counters.alloc_stall_ns));
        direct::shrink(inner, BATCH, Reclaimer::Direct);
    }
    if let Some(id) = arena.pop_free() {
        return Ok(id);
    }
    let _stall = stall.unwrap_or_else(|| Stall::start(&inner.counters.alloc_stall_ns));
    alloc_slow(inner)
}

/// Adds the time from its start to its drop to a counter: the clock is read
/// only once an allocation has left the fast path.
struct Stall<'a> {
    counter: &'a Counter,
    t0: Instant,
}

impl<'a> Stall<'a> {
    fn start(counter: &'a Counter) -> Self {
        Stall {
            counter,
            t0: Instant::now(),
        }
    }
}

impl Drop for Stall<'_> {
    fn drop(&mut self) {
        add(self.counter, self.t0.elapsed().as_nanos() as u64);
    }
}

#[inline(never)]
fn alloc_slow(inner: &Inner) -> Result<FrameId> {
    let arena = &inner.arena;
    // Scans that met neither dirty pages nor writeback have nothing to wait
    // for (they moved referenced pages to the active list, or met pins):
    // scan again at once, enough times to go round both lists.
    let idle_limit = 2 * arena.len() / BATCH + 4;
    let mut idle_scans = 0;
    let mut stuck_rounds = 0;
    loop {
        if inner.shutdown.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let seen = inner.progress.seq();
        let scan = direct::shrink(inner, BATCH, Reclaimer::Direct);
        if let Some(id) = arena.pop_free() {
            return Ok(id);
        }
        background::wake(inner);
        if scan.freed > 0 {
            // Another allocator took what this scan freed: try again.
            continue;
        }
        if scan.dirty + scan.writeback == 0 {
            idle_scans += 1;
            if idle_scans < idle_limit {
                continue;
            }
            let pinned = arena.count_pinned();
            if pinned >= arena.len() {
                // Pins may be transient (another thread's read-in): give them
                // a round of progress before declaring no progress possible.
                stuck_rounds += 1;
                if stuck_rounds > 2 {
                    inc(&inner.counters.oom_errors);
                    return Err(Error::OutOfMemory {
                        frames: arena.len(),
                        pinned,
                    });
                }
            }
        } else {
            idle_scans = 0;
            stuck_rounds = 0;
        }
        if inner.policy() == Policy::NoThrottle {
            inc(&inner.counters.oom_errors);
            return Err(Error::NoCleanFrame);
        }
        throttle::reclaim::wait(inner, seen);
    }
}
