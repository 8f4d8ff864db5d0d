//! The background reclaimer (the kernel's kswapd): keeps free frames between
//! the low and high watermarks so allocators rarely reclaim themselves.
//! Under `offload` it never writes: dirty pages it meets are flagged and
//! handed to the flushers. Under `legacy` it writes them one by one, as the
//! 2010 kernel's kswapd did.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::state::Inner;
use crate::throttle;

use super::{direct, Reclaimer, BATCH};

/// Wakes the background reclaimer.
pub(crate) fn wake(inner: &Inner) {
    inner.kswapd.notify();
}

pub(crate) fn run(inner: &Inner) {
    crate::sched::enter_background(inner);
    let arena = &inner.arena;
    loop {
        let seen = inner.kswapd.seq();
        if inner.shutdown.load(Ordering::Acquire) {
            return;
        }
        // At `low` itself there is work: readahead stops there and wakes
        // this thread to make room above it.
        if arena.nr_free() > inner.wm.low() {
            inner.kswapd.wait(seen, Duration::from_millis(100));
            continue;
        }
        while arena.nr_free() < inner.wm.high() && !inner.shutdown.load(Ordering::Acquire) {
            let progress_seen = inner.progress.seq();
            let scan = direct::shrink(inner, BATCH, Reclaimer::Background);
            let waitable = scan.dirty + scan.writeback + scan.pinned > 0;
            if scan.freed == 0 && (waitable || scan.scanned == 0) {
                // Nothing clean: wait for writeback to make some.
                throttle::reclaim::wait_quiet(inner, progress_seen);
                if arena.nr_free() >= inner.wm.low() {
                    break;
                }
            }
        }
    }
}
