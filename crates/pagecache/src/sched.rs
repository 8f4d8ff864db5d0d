//! How the cache's own threads are scheduled.
//!
//! The flushers, the background reclaimer and the blocking I/O threads do
//! batch work: none of them answers a caller that is waiting on it at that
//! instant more than once per batch of pages. (The `io_uring` reaper is
//! not one of them: readers wait on the readahead reads it completes.)
//! Under `SCHED_BATCH` they keep their fair share of the CPU but do not
//! preempt a running thread when they wake (the kernel skips wake-up
//! preemption for batch tasks). On a machine with as many busy threads as
//! cores, each of their wake-ups (every completion, every throttle period)
//! would otherwise take the CPU from whichever application thread runs
//! there. Off by default (`Config::batch_threads`): on this project's
//! benchmark it did not shorten the readers' tail.

use crate::state::Inner;

/// Puts the calling thread, one of the cache's own, under `SCHED_BATCH`
/// if the configuration asks for it. Best effort: a kernel or sandbox that
/// refuses leaves the thread as it was.
pub(crate) fn enter_background(inner: &Inner) {
    if inner.cfg.batch_threads {
        set_batch();
    }
}

#[cfg(target_os = "linux")]
fn set_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the duration of the
    // call; pid 0 is the calling thread; the call changes nothing but the
    // scheduling of this thread, and any failure is returned, not raised.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) };
}

#[cfg(not(target_os = "linux"))]
fn set_batch() {}
