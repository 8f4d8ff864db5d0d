//! Writeback: turning dirty pages clean, in sorted, coalesced batches.
//!
//! Flusher threads ([`flusher`]) pick mappings off a queue (reason: reclaim)
//! or walk dirty mappings (background threshold, `dirty_expire`); `sync`
//! runs the same [`writepages`] in the caller's thread for its own file.
//! Writes go to one `io_uring`, or to blocking I/O threads where it cannot
//! take them ([`io`]), so up to `io_depth` are in flight at once. A completed write leaves its page UNSTABLE until a
//! backend sync ([`commit`]) makes it durable; the commit frees
//! reclaim-flagged frames at once and wakes throttled threads.

pub(crate) mod commit;
pub(crate) mod flusher;
pub(crate) mod io;
pub(crate) mod uring;
pub(crate) mod wbt;
mod writepages;

use std::collections::VecDeque;
use std::io as sio;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::state::Inner;
use crate::wait::WaitQueue;

pub(crate) use writepages::{writepage_sync, writepages, writepages_around};

/// Why a flusher pass runs (the kernel's `wb_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Reclaim met dirty pages: write them, then commit.
    Reclaim,
    /// Reclaim met unstable pages only: commit, nothing to write.
    Commit,
    Background,
    Expire,
}

/// The flushers' work queue.
#[derive(Default)]
pub(crate) struct Writeback {
    queue: Mutex<VecDeque<(Arc<Mapping>, Reason)>>,
    background: AtomicBool,
    pub(crate) wake: WaitQueue,
}

impl Writeback {
    /// Hands a mapping to the flushers (once while it is queued; a reclaim
    /// request upgrades a queued commit-only one).
    pub(crate) fn queue(&self, m: &Arc<Mapping>, reason: Reason) {
        if reason == Reason::Reclaim {
            m.queued_write.store(true, Ordering::Release);
        }
        if !m.queued.swap(true, Ordering::AcqRel) {
            self.queue.lock().push_back((m.clone(), reason));
            self.wake.notify();
        }
    }

    /// Asks the flushers to bring dirty pages under the background threshold.
    pub(crate) fn kick_background(&self) {
        if !self.background.swap(true, Ordering::AcqRel) {
            self.wake.notify();
        }
    }

    pub(crate) fn take_background(&self) -> bool {
        self.background.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn pop(&self) -> Option<(Arc<Mapping>, Reason)> {
        let (m, mut reason) = self.queue.lock().pop_front()?;
        m.queued.store(false, Ordering::Release);
        if m.queued_write.swap(false, Ordering::AcqRel) {
            reason = Reason::Reclaim;
        }
        Some((m, reason))
    }

    pub(crate) fn wake_all(&self) {
        self.wake.notify();
    }
}

/// Writes every dirty page of `m` in `range` from the calling thread, waits
/// for all of the mapping's writeback, then makes the backend durable. Errors
/// are recorded in the mapping's errseq, for each open to collect once, and
/// the backend sync's error is returned.
pub(crate) fn sync_mapping(inner: &Inner, m: &Arc<Mapping>, range: Range<u64>) -> sio::Result<()> {
    crate::stats::inc(&inner.counters.flush_reason_sync);
    writepages(inner, m, true, usize::MAX, range);
    // Pages a flusher started before us must be on the backend too.
    inner
        .progress
        .wait_until(crate::throttle::reclaim::TICK, || {
            m.nr_writeback.load(Ordering::Acquire) == 0
        });
    commit::commit(inner, m)
}

pub(crate) fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

/// Syncs every mapping; reports the first failure: a backend sync that
/// failed, or a file that still has dirty pages after (its writes failed).
pub(crate) fn sync_all(inner: &Inner) -> Result<()> {
    let mut first = Ok(());
    for m in inner.mappings() {
        let synced = sync_mapping(inner, &m, 0..u64::MAX);
        if first.is_err() {
            continue;
        }
        if let Err(source) = synced {
            first = Err(Error::Writeback {
                path: m.path.clone(),
                source,
            });
        } else if m.nr_dirty() > 0 {
            let errno = m.last_errno.load(Ordering::Relaxed);
            first = Err(Error::Writeback {
                path: m.path.clone(),
                source: if errno != 0 {
                    sio::Error::from_raw_os_error(errno)
                } else {
                    sio::Error::other(format!("{} pages could not be written", m.nr_dirty()))
                },
            });
        }
    }
    first
}
