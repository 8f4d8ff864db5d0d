//! The I/O threads: `io_depth` of them, so that many writes are in flight.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::cache::Inner;
use crate::frame::FrameId;
use crate::mapping::Mapping;
use crate::stats::add;

/// Contiguous pages of one mapping, written with one vectored I/O.
pub(crate) struct Run {
    pub(crate) mapping: Arc<Mapping>,
    pub(crate) first: u64,
    pub(crate) frames: Vec<FrameId>,
    done: Option<Sender<()>>,
}

impl Run {
    pub(crate) fn new(mapping: Arc<Mapping>, done: Sender<()>) -> Self {
        Run {
            mapping,
            first: 0,
            frames: Vec::new(),
            done: Some(done),
        }
    }

    /// A run written inline, with nobody to notify.
    pub(crate) fn detached(mapping: Arc<Mapping>) -> Self {
        Run {
            mapping,
            first: 0,
            frames: Vec::new(),
            done: None,
        }
    }

    pub(crate) fn next_index(&self) -> u64 {
        self.first + self.frames.len() as u64
    }
}

/// The submission queue and its busy-time accounting.
pub(crate) struct IoPool {
    tx: Mutex<Option<Sender<Run>>>,
    rx: Receiver<Run>,
    inflight: AtomicUsize,
    busy_since_ns: AtomicU64,
}

impl IoPool {
    pub(crate) fn new() -> Self {
        let (tx, rx) = unbounded();
        IoPool {
            tx: Mutex::new(Some(tx)),
            rx,
            inflight: AtomicUsize::new(0),
            busy_since_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn receiver(&self) -> Receiver<Run> {
        self.rx.clone()
    }

    /// Queues a run; after shutdown it is written inline instead.
    pub(crate) fn submit(&self, inner: &Inner, run: Run) {
        let tx = self.tx.lock().clone();
        match tx {
            Some(tx) => {
                if let Err(e) = tx.send(run) {
                    execute(inner, e.0);
                }
            }
            None => execute(inner, run),
        }
    }

    /// Stops accepting runs; the workers exit once the queue drains.
    pub(crate) fn close(&self) {
        self.tx.lock().take();
    }
}

// Takes the run: it is done with here (its frames and completion sender).
#[allow(clippy::needless_pass_by_value)]
fn execute(inner: &Inner, run: Run) {
    let pool = &inner.io;
    let now = || inner.epoch.elapsed().as_nanos() as u64;
    if pool.inflight.fetch_add(1, Ordering::AcqRel) == 0 {
        pool.busy_since_ns.store(now(), Ordering::Relaxed);
    }
    super::writepages::write_run(inner, &run);
    inner.wbt.pending.fetch_sub(1, Ordering::AcqRel);
    inner.wbt.tick(inner.epoch);
    // Passes waiting for the depth to free up look at `pending`: wake them
    // after it dropped, not only at completion (before it did).
    inner.progress.notify();
    if pool.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
        let since = pool.busy_since_ns.load(Ordering::Relaxed);
        add(
            &inner.counters.writeback_active_ns,
            now().saturating_sub(since),
        );
    }
    if let Some(done) = &run.done {
        let _ = done.send(());
    }
}

/// An I/O thread's loop.
// The thread owns its receiver for its whole life.
#[allow(clippy::needless_pass_by_value)]
pub(crate) fn worker(inner: &Inner, rx: Receiver<Run>) {
    while let Ok(run) = rx.recv() {
        execute(inner, run);
    }
}
