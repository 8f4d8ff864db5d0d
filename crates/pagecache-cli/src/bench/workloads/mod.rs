//! The workloads of DESIGN §7, written once against [`Store`] so the library
//! and the kernel run exactly the same code.

mod buffer_pool;
mod fsmark;
mod hit;
mod mapped_stream;
mod mixed;
mod randwrite;
mod readers_writer;
mod scan;
mod small_memcg;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::args::Workload;
use super::block::{self, BLOCK};
use super::knobs::Knobs;
use super::record::{Progress, RoleRec};
use super::report::{RunResult, Throttle, TimePoint, Writeback};
use super::store::{open_direct, CacheStore, OpError, Snapshot, Store};
use crate::CliError;

/// Everything a run needs to know, also handed to the kernel child.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    pub workload: Workload,
    pub memory: u64,
    pub threads: usize,
    pub duration: Duration,
    pub seed: u64,
    pub knobs: Knobs,
    /// Fraction of the default fixed work.
    pub work_scale: f64,
}

impl Params {
    /// Frames the budget holds.
    pub fn frames(&self) -> u64 {
        (self.memory / BLOCK as u64).max(8)
    }
}

/// One file a workload uses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileSpec {
    pub name: String,
    /// Tag written into every block, so blocks of different files differ.
    pub tag: u32,
    pub blocks: u64,
    /// Whether the file is written (version 0 of every block) before the run;
    /// otherwise it starts empty.
    pub prewrite: bool,
}

/// The files of a workload, sized from the budget.
pub fn files(p: &Params) -> Vec<FileSpec> {
    let f = p.frames();
    let spec = |name: &str, tag, blocks: u64, prewrite| FileSpec {
        name: name.to_string(),
        tag,
        blocks: blocks.max(1),
        prewrite,
    };
    match p.workload {
        Workload::Hit => vec![spec("hit", 1, hit::blocks(f), true)],
        Workload::RandWrite => vec![spec("randwrite", 2, 4 * f, true)],
        Workload::ReadersVsWriter => vec![
            spec("readers", 3, readers_writer::reader_blocks(f), true),
            spec("stream", 4, 4 * f, false),
        ],
        Workload::Mixed => vec![spec("mixed", 5, 4 * f, true)],
        Workload::MappedStream => vec![
            spec("hot", 8, mapped_stream::hot_blocks(f), true),
            spec("mapped", 9, 4 * f, false),
        ],
        Workload::Fsmark => {
            let (files, blocks) = fsmark::layout(f, fsmark::threads(p));
            std::iter::once(spec("resident", 10, fsmark::resident_blocks(f), true))
                .chain(
                    (0..files)
                        .map(|i| spec(&format!("fsmark-{i:04}"), 0x100 + i as u32, blocks, false)),
                )
                .collect()
        }
        Workload::BufferPool => vec![spec("pool", 11, 4 * f, true)],
        Workload::SmallMemcg => vec![spec("dd", 12, small_memcg::blocks(p), false)],
        Workload::Scan => vec![
            spec("hot", 6, scan::hot_blocks(f), true),
            spec("scan", 7, scan::scan_blocks(f), true),
        ],
    }
}

/// Creates the files in `dir` with version 0 of every block, written with
/// `O_DIRECT` where possible (else buffered, then synced and dropped from the
/// kernel page cache), so every policy starts cold.
pub fn prepare(dir: &Path, specs: &[FileSpec]) -> Result<Vec<PathBuf>, CliError> {
    let mut paths = Vec::new();
    for s in specs {
        let path = dir.join(&s.name);
        let err = |what: &str, e: std::io::Error| CliError::io(what, Some(path.clone()), e);
        let _ = std::fs::remove_file(&path);
        if !s.prewrite {
            std::fs::File::create(&path).map_err(|e| err("creating", e))?;
            paths.push(path);
            continue;
        }
        let direct = open_direct(&path, true).map_err(|e| err("creating", e))?;
        let is_direct = direct.is_some();
        let mut file = match direct {
            Some(f) => f,
            None => std::fs::File::create(&path).map_err(|e| err("creating", e))?,
        };
        const CHUNK_BLOCKS: u64 = 256;
        let mut buf = super::store::AlignedBuf::new(CHUNK_BLOCKS as usize * BLOCK);
        let mut b = 0;
        while b < s.blocks {
            let n = CHUNK_BLOCKS.min(s.blocks - b);
            let bytes = &mut buf.as_mut_slice()[..n as usize * BLOCK];
            for (i, chunk) in bytes.chunks_exact_mut(BLOCK).enumerate() {
                block::fill(chunk, s.tag, b + i as u64, 0);
            }
            file.write_all(bytes).map_err(|e| err("writing", e))?;
            b += n;
        }
        rustix::fs::fdatasync(file.as_fd()).map_err(|e| err("syncing", e.into()))?;
        if !is_direct {
            drop_cached(&file);
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Drops a synced file's pages from the kernel page cache.
pub fn drop_cached(file: &std::fs::File) {
    let _ = rustix::fs::fadvise(file.as_fd(), 0, None, rustix::fs::Advice::DontNeed);
}

/// Checks blocks read back, remembering the first difference.
#[derive(Default)]
pub struct Checker {
    reads: u64,
    pub failures: u64,
    pub first: Option<String>,
}

impl Checker {
    /// Every read: header and last word; every 64th read and `full`: all words.
    #[inline]
    pub fn check(&mut self, buf: &[u8], tag: u32, b: u64, version: u32, full: bool) {
        self.reads += 1;
        let r = if full || self.reads % 64 == 0 {
            block::check_full(buf, tag, b, version)
        } else {
            block::check_light(buf, tag, b, version)
        };
        if let Err(e) = r {
            self.failures += 1;
            self.first.get_or_insert(e);
        }
    }

    /// For zero-copy pins, which copy nothing: the header (one cache line)
    /// on every pin, every word on every 64th.
    #[inline]
    pub fn check_pinned(&mut self, page: &[u8], tag: u32, b: u64, version: u32) {
        self.reads += 1;
        let r = if self.reads % 64 == 0 {
            block::check_full(page, tag, b, version)
        } else {
            block::check_header(page, tag, b, version)
        };
        if let Err(e) = r {
            self.failures += 1;
            self.first.get_or_insert(e);
        }
    }

    fn merge(&mut self, o: Checker) {
        self.reads += o.reads;
        self.failures += o.failures;
        if self.first.is_none() {
            self.first = o.first;
        }
    }
}

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
        let mut buf = super::store::AlignedBuf::new(BLOCK);
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
pub fn work_cap(p: &Params) -> Duration {
    Duration::from_secs(300).max(p.duration * 20)
}

/// Runs `work` on `threads` threads, of which threads `0..workers` each have
/// a fixed amount of work: the phase lasts until they have all returned (at
/// most `cap`), and the other threads (readers) run until then.
pub fn fixed_phase<S, T, W>(
    store: &S,
    threads: usize,
    workers: usize,
    cap: Duration,
    work: W,
) -> Result<Phase<T>, CliError>
where
    S: Store,
    T: Send,
    W: Fn(usize, &Ctx) -> Result<ThreadOut<T>, CliError> + Sync,
{
    phase_with(store, threads, workers.max(1), cap, work)
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

/// Runs one operation timed into `rec`, counting it done (`Ok(Some)`) or
/// refused for want of a frame (`Ok(None)`, counted in `oom`).
#[inline]
fn timed<T>(
    rec: &mut RoleRec,
    oom: &mut u64,
    op: impl FnOnce() -> Result<T, OpError>,
) -> Result<Option<T>, CliError> {
    let t = Instant::now();
    let r = op();
    rec.latency(t.elapsed().as_nanos() as u64);
    match r {
        Ok(v) => {
            rec.ops += 1;
            Ok(Some(v))
        }
        Err(OpError::Oom) => {
            *oom += 1;
            Ok(None)
        }
        Err(OpError::Fatal(e)) => Err(e),
    }
}

/// Reads one block, counting OOMs (`Ok(None)`), timing it into `rec`.
#[inline]
pub fn timed_read<S: Store>(
    store: &S,
    rec: &mut RoleRec,
    oom: &mut u64,
    file: usize,
    b: u64,
    buf: &mut [u8],
) -> Result<Option<bool>, CliError> {
    let hit = timed(rec, oom, || store.read(file, b, buf))?;
    if let Some(h) = hit {
        rec.hit(h);
    }
    Ok(hit)
}

/// Writes one block, counting OOMs (`Ok(false)`), timing it into `rec`.
#[inline]
pub fn timed_write<S: Store>(
    store: &S,
    rec: &mut RoleRec,
    oom: &mut u64,
    file: usize,
    b: u64,
    buf: &[u8],
) -> Result<bool, CliError> {
    let (_, m0) = pagecache::thread_hits_misses();
    let done = timed(rec, oom, || store.write(file, b, buf))?.is_some();
    if done && store.write_lookups() {
        let (_, m1) = pagecache::thread_hits_misses();
        rec.hit(m1 == m0);
    }
    Ok(done)
}

/// Changes one block in place through `f`, counting OOMs (`Ok(false)`),
/// timing it into `rec`.
#[inline]
pub fn timed_modify<S: Store>(
    store: &S,
    rec: &mut RoleRec,
    oom: &mut u64,
    file: usize,
    b: u64,
    f: &mut dyn FnMut(&mut [u8]),
) -> Result<bool, CliError> {
    let hit = timed(rec, oom, || store.modify(file, b, f))?;
    if let Some(h) = hit {
        rec.hit(h);
    }
    Ok(hit.is_some())
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

/// Reads every block `0..n` of `file` once, checking each is at version 0
/// (`full`: every word); a read refused for want of a frame is skipped.
pub fn warm<S: Store>(
    store: &S,
    file: usize,
    tag: u32,
    n: u64,
    full: bool,
    check: &mut Checker,
) -> Result<(), CliError> {
    let mut buf = super::store::AlignedBuf::new(BLOCK);
    for b in 0..n {
        match store.read(file, b, buf.as_mut_slice()) {
            Ok(_) => check.check(buf.as_slice(), tag, b, 0, full),
            Err(OpError::Oom) => {}
            Err(OpError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Reads back `(file, tag, block, version)` after syncing, checking every
/// word; counts OOMs and retries them a few times.
pub fn read_back<S: Store>(
    store: &S,
    sample: &[(usize, u32, u64, u32)],
    check: &mut Checker,
) -> Result<(), CliError> {
    let mut buf = super::store::AlignedBuf::new(BLOCK);
    for &(file, tag, b, v) in sample {
        let mut tries = 0;
        loop {
            match store.read(file, b, buf.as_mut_slice()) {
                Ok(_) => break,
                Err(OpError::Oom) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(OpError::Oom) => {
                    return Err(CliError::Check(format!(
                        "reading block {b} back after the run kept failing for want of a frame"
                    )))
                }
                Err(OpError::Fatal(e)) => return Err(e),
            }
        }
        check.check(buf.as_slice(), tag, b, v, true);
    }
    Ok(())
}

/// The role names of a workload, in its role-number order.
pub struct Roles(pub &'static [&'static str]);

/// Builds the run's result from a phase. Roles are reported separately when
/// there are several.
pub fn assemble<T>(
    p: &Params,
    policy: &str,
    roles: Roles,
    phase: &mut Phase<T>,
    extra_check: Checker,
) -> RunResult {
    let nroles = roles.0.len();
    let mut per_role: Vec<RoleRec> = (0..nroles).map(|_| RoleRec::default()).collect();
    let mut check = Checker::default();
    let mut oom = 0;
    for o in phase.outs.iter_mut() {
        for (i, r) in o.roles.iter().enumerate() {
            per_role[i].merge(r);
        }
        oom += o.oom;
        check.merge(std::mem::take(&mut o.check));
    }
    check.merge(extra_check);
    let mut all = RoleRec::default();
    for r in &per_role {
        all.merge(r);
    }
    let secs = phase.secs;
    let d = &phase.delta;
    let lookups = d.hits + d.misses;
    let hit_ratio = if lookups > 0 {
        Some(d.hits as f64 / lookups as f64)
    } else {
        None
    };
    let mut roles_out = BTreeMap::new();
    if nroles > 1 {
        for (name, r) in roles.0.iter().zip(&per_role) {
            roles_out.insert(name.to_string(), r.result(secs));
        }
    }
    let active = d.writeback_active_ns as f64 / 1e9;
    let mut notes = Vec::new();
    if let Some(first) = &check.first {
        notes.push(format!(
            "{} block(s) read back differed; first: {first}",
            check.failures
        ));
    }
    RunResult {
        workload: p.workload.name().into(),
        policy: policy.into(),
        threads: phase.outs.len(),
        memory_bytes: p.memory,
        duration_secs: secs,
        work: if p.workload.fixed_work() {
            "fixed"
        } else {
            "timed"
        }
        .into(),
        elapsed_secs: secs,
        completed: phase.completed,
        alloc_stall_ns: d.alloc_stall_ns,
        background_reclaim_writes: d.background_reclaim_writes,
        knobs: Some(p.knobs.clone()),
        ops: all.ops,
        ops_per_sec: all.ops as f64 / secs.max(1e-9),
        latency_ns: all.latency_ns(),
        roles: roles_out,
        hit_ratio,
        direct_reclaim_writes: d.direct_reclaim_writes,
        oom_errors: oom.max(d.oom_errors.unwrap_or(0)),
        writeback: Writeback {
            ios: d.writeback_ios,
            bytes: d.writeback_bytes,
            avg_io_bytes: d.writeback_bytes.checked_div(d.writeback_ios).unwrap_or(0),
            bytes_per_sec: if active > 0.0 {
                d.writeback_bytes as f64 / active
            } else {
                0.0
            },
            source: String::new(),
            size_histogram: d.write_sizes.map(|c| {
                c.iter()
                    .enumerate()
                    .map(|(i, &n)| [4096u64 << i, n])
                    .collect()
            }),
        },
        throttle: d.throttle_events.map(|events| Throttle {
            events,
            total_ns: d.throttle_ns.unwrap_or(0),
            reclaim_events: d.reclaim_throttle_events.unwrap_or(0),
            dirty_events: d.dirty_throttle_events.unwrap_or(0),
        }),
        alloc_stack_peak_bytes: d.alloc_stack_peak_bytes,
        verified: check.failures == 0 && check.reads > 0,
        notes,
        cdf: all.cdf(),
        timeline: std::mem::take(&mut phase.timeline),
        ..RunResult::default()
    }
}

/// Runs workload `p` against `store`. `cache` is the library's store when
/// that is what runs (the `hit` workload also measures pins and raw copies
/// from its arena).
pub fn run<S: Store>(
    store: &S,
    cache: Option<&CacheStore>,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let mut r = match p.workload {
        Workload::Hit => hit::run(store, cache, specs, p, policy)?,
        Workload::RandWrite => randwrite::run(store, specs, p, policy)?,
        Workload::ReadersVsWriter => readers_writer::run(store, specs, p, policy)?,
        Workload::Mixed => mixed::run(store, specs, p, policy)?,
        Workload::Scan => scan::run(store, specs, p, policy)?,
        Workload::MappedStream => mapped_stream::run(store, specs, p, policy)?,
        Workload::Fsmark => fsmark::run(store, specs, p, policy)?,
        Workload::BufferPool => buffer_pool::run(store, specs, p, policy)?,
        Workload::SmallMemcg => small_memcg::run(store, specs, p, policy)?,
    };
    r.writeback.source = if cache.is_some() {
        "cache counters".into()
    } else {
        "block device counters (machine-wide; busy time includes reads)".into()
    };
    Ok(r)
}
