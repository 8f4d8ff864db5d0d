//! A wait queue: threads sleep until an event is signalled or a bound passes.
//!
//! Every wait in the cache is bounded and its caller re-checks its condition,
//! so a missed wake-up costs at most one timeout, never a hang.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Signalled events are counted; a waiter names the count it last saw.
#[derive(Default)]
pub(crate) struct WaitQueue {
    seq: Mutex<u64>,
    cv: Condvar,
}

impl WaitQueue {
    /// The current event count, to pass to [`WaitQueue::wait`].
    pub(crate) fn seq(&self) -> u64 {
        *self.seq.lock()
    }

    /// Wakes every waiter.
    pub(crate) fn notify(&self) {
        let mut s = self.seq.lock();
        *s = s.wrapping_add(1);
        self.cv.notify_all();
    }

    /// Sleeps until an event after `seen` or `timeout`; returns whether one came.
    pub(crate) fn wait(&self, seen: u64, timeout: Duration) -> bool {
        let mut s = self.seq.lock();
        if *s != seen {
            return true;
        }
        !self.cv.wait_for(&mut s, timeout).timed_out() || *s != seen
    }

    /// Sleeps until `done()` holds, re-checking after every event or `tick`.
    pub(crate) fn wait_until(&self, tick: Duration, mut done: impl FnMut() -> bool) {
        loop {
            let seen = self.seq();
            if done() {
                return;
            }
            self.wait(seen, tick);
        }
    }
}
