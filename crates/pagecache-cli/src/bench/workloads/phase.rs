//! A measured phase: worker threads, each with its own output, for a set
//! time or until the fixed-work threads are done, with a sampler recording
//! throughput and dirty pages meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Checker, Params};
use crate::bench::block::BLOCK;
use crate::bench::record::{Progress, RoleRec};
use crate::bench::report::TimePoint;
use crate::bench::store::{Snapshot, Store};
use crate::CliError;

/// What one worker thread hands back.
pub struct ThreadOut<T> {
    /// One record per role, indexed by the workload's role numbers.
    pub roles: Vec<RoleRec>,
    pub oom: u64,
    pub check: Checker,
    pub state: T,
    /// A fixed-work thread that stopped at the time cap before its work was
    /// done says so here.
    pub complete: bool,
}

impl<T: Default> ThreadOut<T> {
    pub fn new(roles: usize) -> Self {
        ThreadOut {
            roles: (0..roles).map(|_| RoleRec::default()).collect(),
            oom: 0,
            check: Checker::default(),
            state: T::default(),
            complete: true,
        }
    }
}

/// What a worker is given.
pub struct Ctx<'a> {
    pub deadline: Instant,
    pub progress: &'a Progress,
    /// Set when every fixed-work thread has finished: the others stop too.
    pub finished: &'a AtomicBool,
}

impl Ctx<'_> {
    /// Time is up (the duration, or a fixed-work run's cap), or the fixed
    /// work is done.
    #[inline]
    pub fn done(&self) -> bool {
        self.finished.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// Calls `op` with a block-sized buffer until the deadline, reporting
    /// thread `t`'s operations after each call.
    #[inline]
    pub fn repeat(
        &self,
        t: usize,
        mut op: impl FnMut(&mut [u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let mut buf = crate::bench::store::AlignedBuf::new(BLOCK);
        let buf = buf.as_mut_slice();
        let mut i = 0u64;
        while !self.done() {
            op(buf)?;
            i += 1;
            self.progress.set(t, i);
        }
        Ok(())
    }

    /// For loops that look at the clock only every 64th operation: at those,
    /// reports `i` operations done by thread `t` and says whether time is up.
    #[inline]
    pub fn check_in(&self, t: usize, i: u64) -> bool {
        if i % 64 != 0 {
            return false;
        }
        self.progress.set(t, i);
        self.done()
    }
}

/// A measured phase: every worker's output, the elapsed time, the store's
/// counters before and after, and the sampled timeline.
pub struct Phase<T> {
    pub outs: Vec<ThreadOut<T>>,
    /// Timed: the whole phase. Fixed work: until the last fixed-work thread
    /// finished.
    pub secs: f64,
    /// Fixed work: every fixed-work thread finished its work within the cap.
    pub completed: bool,
    pub delta: Snapshot,
    pub timeline: Vec<TimePoint>,
}

/// Runs `work` on `threads` threads for `duration`, sampling meanwhile.
pub fn phase<S, T, W>(
    store: &S,
    threads: usize,
    duration: Duration,
    work: W,
) -> Result<Phase<T>, CliError>
where
    S: Store,
    T: Send,
    W: Fn(usize, &Ctx) -> Result<ThreadOut<T>, CliError> + Sync,
{
    phase_with(store, threads, 0, duration, work)
}

/// The longest a fixed-work run may take before it is stopped and reported
/// as not completed.
fn work_cap(p: &Params) -> Duration {
    Duration::from_secs(300).max(p.duration * 20)
}

/// Runs `work` on `threads` threads, of which threads `0..workers` each have
/// a fixed amount of work: the phase lasts until they have all returned (at
/// most `work_cap`), and the other threads (readers) run until then.
pub fn fixed_phase<S, T, W>(
    store: &S,
    threads: usize,
    workers: usize,
    p: &Params,
    work: W,
) -> Result<Phase<T>, CliError>
where
    S: Store,
    T: Send,
    W: Fn(usize, &Ctx) -> Result<ThreadOut<T>, CliError> + Sync,
{
    phase_with(store, threads, workers.max(1), work_cap(p), work)
}

/// Counts a fixed-work thread out when it ends; the last one ends the phase.
struct WorkerDone<'a> {
    working: &'a AtomicUsize,
    finished: &'a AtomicBool,
    done_at: &'a std::sync::Mutex<Option<Instant>>,
}

impl Drop for WorkerDone<'_> {
    fn drop(&mut self) {
        if self.working.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.done_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.finished.store(true, Ordering::Relaxed);
        }
    }
}

fn phase_with<S, T, W>(
    store: &S,
    threads: usize,
    workers: usize,
    limit: Duration,
    work: W,
) -> Result<Phase<T>, CliError>
where
    S: Store,
    T: Send,
    W: Fn(usize, &Ctx) -> Result<ThreadOut<T>, CliError> + Sync,
{
    let progress = Progress::new(threads);
    let before = store.snapshot();
    let finished = AtomicBool::new(false);
    let working = AtomicUsize::new(workers);
    let done_at = std::sync::Mutex::new(None::<Instant>);
    let t0 = Instant::now();
    let ctx = Ctx {
        deadline: t0 + limit,
        progress: &progress,
        finished: &finished,
    };
    let (results, timeline) = std::thread::scope(|s| {
        let sampler = s.spawn(|| progress.sample(store, t0));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ctx = &ctx;
                let work = &work;
                let (working, finished, done_at) = (&working, &finished, &done_at);
                s.spawn(move || {
                    // Counted out even if the work panics, so the readers stop.
                    // (`then`, not `then_some`: a guard built for a reader
                    // and dropped at once would count a worker out.)
                    let _out = (t < workers).then(|| WorkerDone {
                        working,
                        finished,
                        done_at,
                    });
                    work(t, ctx)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(CliError::Check("a benchmark thread panicked".into())))
            })
            .collect();
        progress
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let timeline = sampler.join().unwrap_or_default();
        (results, timeline)
    });
    let end = done_at
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or_else(Instant::now);
    let secs = end.duration_since(t0).as_secs_f64();
    let delta = store.snapshot().since(&before);
    let outs = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(Phase {
        completed: outs.iter().all(|o| o.complete),
        outs,
        secs,
        delta,
        timeline,
    })
}

/// Repeats `op` until it succeeds (an operation refused for want of a frame
/// is retried, as an application would, after yielding), or time is up:
/// then marks `out` incomplete and returns `false`.
pub fn until_done<T>(
    ctx: &Ctx,
    out: &mut ThreadOut<T>,
    mut op: impl FnMut(&mut ThreadOut<T>) -> Result<bool, CliError>,
) -> Result<bool, CliError> {
    loop {
        if ctx.done() {
            out.complete = false;
            return Ok(false);
        }
        if op(out)? {
            return Ok(true);
        }
        std::thread::yield_now();
    }
}
