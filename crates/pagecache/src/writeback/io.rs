//! Where writeback's writes go: one `io_uring` that keeps many in flight
//! from the threads that gather them, completions reaped by one thread
//! (writeback/uring.rs); or, where the kernel refuses `io_uring`, the
//! configuration turns it off, or a backend has no descriptor to give it
//! ([`Backend::async_write_fd`](crate::Backend::async_write_fd)), a pool of
//! blocking I/O threads, started as runs wait for one, up to `io_depth`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use super::uring::Ring;
use crate::frame::FrameId;
use crate::mapping::Mapping;
use crate::state::Inner;
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

/// How a cache's writeback I/O is issued (see [`Stats::io_engine`](crate::Stats::io_engine)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum IoEngine {
    /// One `io_uring`: writes of backends that give a descriptor are
    /// submitted in batches from the writeback threads, readahead windows
    /// from the reader that hit their marker, completions reaped by one
    /// thread; other backends' I/O goes to blocking threads.
    IoUring,
    /// Blocking I/O threads only (`io_uring` unavailable or turned off).
    #[default]
    Threads,
}

impl std::fmt::Display for IoEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoEngine::IoUring => "io_uring",
            IoEngine::Threads => "threads",
        })
    }
}

/// Most blocking I/O threads: past 64, the threads' switches and wake-ups
/// cost more than the deeper queue gains (a 4 KiB random write took ~7 µs of
/// CPU in them at 64); deeper writeback is `io_uring`'s.
const MAX_THREADS: usize = 64;

/// The submission paths and their busy-time accounting.
pub(crate) struct IoPool {
    pub(crate) ring: Option<Ring>,
    tx: Mutex<Option<Sender<Run>>>,
    rx: Receiver<Run>,
    /// Blocking threads started so far; at most `max_threads`.
    workers: Mutex<Vec<JoinHandle<()>>>,
    max_threads: usize,
    /// Blocking threads waiting for a run.
    idle: AtomicUsize,
    /// The cache, so blocking threads can be started on demand.
    owner: OnceLock<Weak<Inner>>,
    inflight: AtomicUsize,
    busy_since_ns: AtomicU64,
}

impl IoPool {
    /// `uring`: try `io_uring` (falling back to threads if the kernel refuses).
    pub(crate) fn new(io_depth: usize, uring: bool) -> Self {
        let (tx, rx) = unbounded();
        let ring = if uring {
            Ring::new(io_depth)
                .map_err(|e| {
                    static TOLD: std::sync::Once = std::sync::Once::new();
                    TOLD.call_once(|| {
                        eprintln!("pagecache: the kernel refused io_uring ({e}); writeback uses blocking I/O threads (Stats::io_engine says which)");
                    });
                })
                .ok()
        } else {
            None
        };
        IoPool {
            ring,
            tx: Mutex::new(Some(tx)),
            rx,
            workers: Mutex::new(Vec::new()),
            max_threads: io_depth.clamp(1, MAX_THREADS),
            idle: AtomicUsize::new(0),
            owner: OnceLock::new(),
            inflight: AtomicUsize::new(0),
            busy_since_ns: AtomicU64::new(0),
        }
    }

    pub(crate) fn engine(&self) -> IoEngine {
        if self.ring.is_some() {
            IoEngine::IoUring
        } else {
            IoEngine::Threads
        }
    }

    /// Starts the completion thread (`io_uring`) through `spawn`; blocking
    /// threads start later, when runs need them.
    pub(crate) fn start(
        inner: &Arc<Inner>,
        spawn: impl FnOnce(String, Box<dyn FnOnce() + Send>) -> crate::Result<()>,
    ) -> crate::Result<()> {
        let _ = inner.io.owner.set(Arc::downgrade(inner));
        if inner.io.ring.is_some() {
            let inner2 = inner.clone();
            spawn(
                "pc-uring".into(),
                Box::new(move || super::uring::reap(&inner2)),
            )?;
        }
        Ok(())
    }

    /// Issues a run: queued on the ring if its backend takes it (the caller
    /// calls [`IoPool::flush`] before it waits), else queued for a blocking
    /// thread; after shutdown it is written inline.
    pub(crate) fn submit(&self, inner: &Inner, run: Run) {
        let run = match &self.ring {
            Some(ring) => match ring.submit(inner, run) {
                Ok(()) => return,
                Err(run) => run,
            },
            None => run,
        };
        let tx = self.tx.lock().clone();
        let Some(tx) = tx else {
            return execute(inner, run);
        };
        if let Err(e) = tx.send(run) {
            return execute(inner, e.0);
        }
        self.add_worker_if_needed(inner);
    }

    /// Submits the runs queued on the ring by [`IoPool::submit`]: due before
    /// the submitting thread waits for any of them.
    pub(crate) fn flush(&self) {
        if let Some(ring) = &self.ring {
            ring.flush();
        }
    }

    /// Starts a blocking thread when queued runs outnumber idle threads.
    fn add_worker_if_needed(&self, inner: &Inner) {
        if self.rx.len() <= self.idle.load(Ordering::Acquire) {
            return;
        }
        let mut workers = self.workers.lock();
        if workers.len() < self.max_threads {
            let started = self.owner.get().and_then(Weak::upgrade).and_then(|me| {
                let rx = self.rx.clone();
                std::thread::Builder::new()
                    .name(format!("pc-io-{}", workers.len()))
                    .spawn(move || worker(&me, rx))
                    .ok()
            });
            if let Some(t) = started {
                workers.push(t);
                return;
            }
        }
        if workers.is_empty() {
            // No thread could be started and none runs: write here.
            drop(workers);
            while let Ok(run) = self.rx.try_recv() {
                execute(inner, run);
            }
        }
    }

    /// Stops accepting runs; returns once the blocking threads have drained
    /// the queue and the ring's writes in flight have completed.
    pub(crate) fn close(&self) {
        self.tx.lock().take();
        if let Some(ring) = &self.ring {
            ring.close();
        }
        let workers: Vec<_> = self.workers.lock().drain(..).collect();
        for t in workers {
            let _ = t.join();
        }
    }

    /// A write was issued.
    pub(crate) fn started(&self, inner: &Inner) {
        if self.inflight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.busy_since_ns.store(now(inner), Ordering::Relaxed);
        }
    }

    /// `run`'s write completed and its pages' writeback ended.
    pub(crate) fn finished(&self, inner: &Inner, run: &Run) {
        inner.wbt.pending.fetch_sub(1, Ordering::AcqRel);
        inner.wbt.tick(inner.epoch);
        // Passes waiting for the depth to free up look at `pending`: wake
        // them after it dropped, not only at completion (before it did).
        inner.progress.notify();
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let since = self.busy_since_ns.load(Ordering::Relaxed);
            add(
                &inner.counters.writeback_active_ns,
                now(inner).saturating_sub(since),
            );
        }
        if let Some(done) = &run.done {
            let _ = done.send(());
        }
    }
}

fn now(inner: &Inner) -> u64 {
    inner.epoch.elapsed().as_nanos() as u64
}

/// Writes a run with the backend's blocking call, in this thread.
// Takes the run: it is done with here (its frames and completion sender).
#[allow(clippy::needless_pass_by_value)]
fn execute(inner: &Inner, run: Run) {
    inner.io.started(inner);
    super::writepages::write_run(inner, &run);
    inner.io.finished(inner, &run);
}

/// A blocking I/O thread's loop.
// The thread owns its receiver for its whole life.
#[allow(clippy::needless_pass_by_value)]
fn worker(inner: &Inner, rx: Receiver<Run>) {
    crate::sched::enter_background(inner);
    loop {
        inner.io.idle.fetch_add(1, Ordering::AcqRel);
        let got = rx.recv();
        inner.io.idle.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(run) => execute(inner, run),
            Err(_) => return,
        }
    }
}
