//! Command-line arguments of `pagecache bench` and the plan they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use super::knobs::{Knobs, Overrides};
use super::store::DeviceModel;
use crate::size::size_arg;
use crate::CliError;

/// Budget of the quick suite.
pub const QUICK_MEMORY: u64 = 64 << 20;
/// Fraction of the fixed work the quick suite does.
pub const QUICK_WORK_SCALE: f64 = 0.25;
/// Seconds per run in the quick suite.
pub const QUICK_DURATION: f64 = 6.0;
/// The largest budget of `small-memcg`.
pub const SMALL_MEMCG_MEMORY: u64 = 8 << 20;
/// Smallest budget the workloads can be scaled to.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Worker threads per run when `--threads` is not given.
pub const DEFAULT_THREADS: usize = 2;
/// The most points one `--memory` or `--threads` list may hold.
const MAX_SWEEP: usize = 16;

/// Arguments of `pagecache bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The quick suite: a 64M budget, 6 s per timed run and a quarter of the
    /// fixed work (also what runs when `--memory` and `--duration` are not
    /// given).
    #[arg(long, conflicts_with_all = ["memory", "duration"])]
    pub quick: bool,
    /// Workload to run (repeatable): mapped-stream, fsmark, buffer-pool,
    /// small-memcg (fixed work), hit, randwrite, readers-vs-writer, mixed,
    /// scan (timed). Default: all.
    #[arg(long = "workload", value_name = "W")]
    pub workloads: Vec<String>,
    /// Policy to run (repeatable): offload, legacy, no-throttle, kernel.
    /// Default: all.
    #[arg(long = "policy", value_name = "P")]
    pub policies: Vec<String>,
    /// Memory budget of the cache (and of the kernel's cgroup), like 64M or
    /// 1G; a list such as 64M,1G,4G sweeps the budget (every workload ×
    /// policy runs at each).
    #[arg(long, value_name = "SIZE[,SIZE…]", value_parser = size_arg, value_delimiter = ',')]
    pub memory: Vec<u64>,
    /// Worker threads per run; a list such as 1,2,4 sweeps the thread count
    /// (the report then gives ops/s per thread).
    #[arg(long, value_name = "N[,N…]", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Seconds each run measures for (fractions allowed).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Directory for the report (JSON, SVG plots, summary.md).
    #[arg(long, value_name = "DIR", default_value = "report")]
    pub report: PathBuf,
    /// Directory under which the benchmark's temporary files are made
    /// (default: the system temp dir). They are removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Fraction of the default amount of work the `small-memcg` and
    /// `fsmark` workloads do (default 1; 0.25 in the quick suite).
    #[arg(long, value_name = "X")]
    pub work_scale: Option<f64>,
    /// Dirty limit, percent of the budget (default: the workload's).
    #[arg(long, value_name = "PCT")]
    pub dirty_ratio: Option<u8>,
    /// Background writeback threshold, percent of the budget (default: the
    /// workload's, kept below the dirty ratio).
    #[arg(long, value_name = "PCT")]
    pub dirty_background_ratio: Option<u8>,
    /// Whether the background reclaimer runs: on or off (default on).
    #[arg(long, value_name = "on|off", value_parser = super::knobs::on_off)]
    pub background_reclaim: Option<bool>,
    /// The cache's page size, a power of two from 4K to 1M (default 4K).
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub page_size: Option<u64>,
    /// Writeback I/Os in flight (default: the library's).
    #[arg(long, value_name = "N")]
    pub io_depth: Option<usize>,
    /// Flusher threads (default: the library's).
    #[arg(long, value_name = "N")]
    pub flushers: Option<usize>,
    /// Whether the library issues writeback through io_uring where the
    /// kernel allows it: on or off (blocking I/O threads) (default on).
    #[arg(long, value_name = "on|off", value_parser = super::knobs::on_off)]
    pub io_uring: Option<bool>,
    /// Whether the library's own threads (flushers, background reclaimer,
    /// I/O threads) run under SCHED_BATCH, so their wake-ups do not preempt
    /// the workload's threads: on or off (default: the library's, off).
    #[arg(long, value_name = "on|off", value_parser = super::knobs::on_off)]
    pub batch_threads: Option<bool>,
    /// Whether the library backs its arena with transparent huge pages
    /// where the kernel has them: on or off (default: the library's).
    #[arg(long, value_name = "on|off", value_parser = super::knobs::on_off)]
    pub huge_pages: Option<bool>,
    /// Model a slower device under the library's files: a delay added to
    /// every read and write, like 100us (the kernel policy cannot be run
    /// with it).
    #[arg(long, value_name = "DURATION", value_parser = super::knobs::duration_arg)]
    pub device_latency: Option<Duration>,
    /// With the device model: a further delay for each I/O that does not
    /// start where the previous one ended (a seek), like 8ms.
    #[arg(long, value_name = "DURATION", value_parser = super::knobs::duration_arg)]
    pub device_seek: Option<Duration>,
}

/// A workload of DESIGN §7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Workload {
    /// A writer dirtying a file 4× the budget through page guards, with readers.
    MappedStream,
    /// Threads writing many 10 MiB files, 3× the budget per loop, no fsync.
    Fsmark,
    /// Zipfian read-modify-write of pages at 90% dirty, with readers.
    BufferPool,
    /// A 1 GiB sequential write into a tiny budget, then sync.
    SmallMemcg,
    /// Random 4 KiB reads of a resident working set.
    Hit,
    /// Random 4 KiB overwrites over a file 4× the budget.
    RandWrite,
    /// One streaming writer and random readers.
    ReadersVsWriter,
    /// Zipfian 50/50 read/update.
    Mixed,
    /// A hot set and a large sequential scan.
    Scan,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 9] = [
        Workload::MappedStream,
        Workload::Fsmark,
        Workload::BufferPool,
        Workload::SmallMemcg,
        Workload::Hit,
        Workload::RandWrite,
        Workload::ReadersVsWriter,
        Workload::Mixed,
        Workload::Scan,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::MappedStream => "mapped-stream",
            Workload::Fsmark => "fsmark",
            Workload::BufferPool => "buffer-pool",
            Workload::SmallMemcg => "small-memcg",
            Workload::Hit => "hit",
            Workload::RandWrite => "randwrite",
            Workload::ReadersVsWriter => "readers-vs-writer",
            Workload::Mixed => "mixed",
            Workload::Scan => "scan",
        }
    }

    /// Whether it does a fixed amount of work (elapsed time compares) rather
    /// than run for `--duration`.
    pub fn fixed_work(self) -> bool {
        matches!(
            self,
            Workload::MappedStream | Workload::Fsmark | Workload::BufferPool | Workload::SmallMemcg
        )
    }

    /// The budget it runs with: `small-memcg` is the tiny cgroup of the record.
    pub fn memory(self, memory: u64) -> u64 {
        match self {
            Workload::SmallMemcg => memory.min(SMALL_MEMCG_MEMORY),
            _ => memory,
        }
    }

    fn parse(s: &str) -> Result<Self, CliError> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown workload {s:?}; expected one of {}",
                    names(Workload::ALL.iter().map(|w| w.name()))
                ))
            })
    }
}

/// A policy column of the benchmark: a library policy, or the OS page cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// One of the library's policies.
    Cache(pagecache::Policy),
    /// Buffered pread/pwrite through the kernel page cache.
    Kernel,
}

impl PolicyKind {
    /// Every policy, in report order.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Cache(pagecache::Policy::Offload),
        PolicyKind::Cache(pagecache::Policy::Legacy),
        PolicyKind::Cache(pagecache::Policy::NoThrottle),
        PolicyKind::Kernel,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Cache(p) => p.name(),
            PolicyKind::Kernel => "kernel",
        }
    }

    fn parse(s: &str) -> Result<Self, CliError> {
        PolicyKind::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "unknown policy {s:?}; expected one of {}",
                    names(PolicyKind::ALL.iter().map(|p| p.name()))
                ))
            })
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.collect::<Vec<_>>().join(", ")
}

/// What to run, validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub workloads: Vec<Workload>,
    pub policies: Vec<PolicyKind>,
    /// The budgets to run at (one unless `--memory` lists several).
    pub memories: Vec<u64>,
    /// The thread counts to run with (one unless `--threads` lists several).
    pub threads: Vec<usize>,
    pub duration: Duration,
    pub json: Option<PathBuf>,
    pub report: PathBuf,
    pub dir: PathBuf,
    /// Fraction of the default fixed work.
    pub work_scale: f64,
    pub overrides: Overrides,
    pub device: Option<DeviceModel>,
}

/// One point of a sweep: a budget and a thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    pub memory: u64,
    pub threads: usize,
}

impl Point {
    /// A prefix for progress messages naming the point, empty without a sweep.
    pub fn label(self, plan: &Plan) -> String {
        let mut s = String::new();
        if plan.memories.len() > 1 {
            s.push_str(&crate::bench::report::bytes(self.memory as f64));
            s.push(' ');
        }
        if plan.threads.len() > 1 {
            s.push_str(&format!("{}t ", self.threads));
        }
        s
    }
}

impl Plan {
    /// Every (budget, threads) point to run, budgets outermost.
    pub fn points(&self) -> Vec<Point> {
        self.memories
            .iter()
            .flat_map(|&memory| {
                self.threads
                    .iter()
                    .map(move |&threads| Point { memory, threads })
            })
            .collect()
    }
}

fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out = Vec::new();
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

impl Plan {
    /// Checks the arguments and fills in the defaults.
    pub fn from_args(a: Args) -> Result<Self, CliError> {
        let workloads = if a.workloads.is_empty() {
            Workload::ALL.to_vec()
        } else {
            dedup(
                a.workloads
                    .iter()
                    .map(|s| Workload::parse(s))
                    .collect::<Result<_, _>>()?,
            )
        };
        let policies = if a.policies.is_empty() {
            PolicyKind::ALL.to_vec()
        } else {
            dedup(
                a.policies
                    .iter()
                    .map(|s| PolicyKind::parse(s))
                    .collect::<Result<_, _>>()?,
            )
        };
        let memories = if a.memory.is_empty() {
            vec![QUICK_MEMORY]
        } else {
            sweep("--memory", a.memory.clone())?
        };
        let ram = super::machine::Machine::detect().memory_bytes;
        for &m in &memories {
            check_memory(m, ram)?;
        }
        let threads = if a.threads.is_empty() {
            vec![DEFAULT_THREADS]
        } else {
            sweep("--threads", a.threads)?
        };
        if let Some(t) = threads.iter().find(|&&t| t == 0 || t > 256) {
            return Err(CliError::Usage(format!("--threads {t} must be in 1..=256")));
        }
        let secs = a.duration.unwrap_or(QUICK_DURATION);
        if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
            return Err(CliError::Usage(format!(
                "--duration {secs} must be a number of seconds above zero (at most a day)"
            )));
        }
        let dir = match a.dir {
            Some(d) => d,
            None => std::env::temp_dir(),
        };
        let quick = a.quick || (a.memory.is_empty() && a.duration.is_none());
        let work_scale = a
            .work_scale
            .unwrap_or(if quick { QUICK_WORK_SCALE } else { 1.0 });
        if !work_scale.is_finite() || work_scale <= 0.0 || work_scale > 100.0 {
            return Err(CliError::Usage(format!(
                "--work-scale {work_scale} must be above 0 and at most 100"
            )));
        }
        let overrides = Overrides {
            dirty_ratio: a.dirty_ratio,
            dirty_background_ratio: a.dirty_background_ratio,
            background_reclaim: a.background_reclaim,
            page_size: a
                .page_size
                .map(|p| usize::try_from(p).unwrap_or(usize::MAX)),
            io_depth: a.io_depth,
            flushers: a.flushers,
            io_uring: a.io_uring,
            batch_threads: a.batch_threads,
            huge_pages: a.huge_pages,
        };
        for &w in &workloads {
            Knobs::resolve(w, &overrides)?;
        }
        let device = match (a.device_latency, a.device_seek) {
            (None, None) => None,
            (l, s) => Some(DeviceModel {
                latency: l.unwrap_or_default(),
                seek: s.unwrap_or_default(),
            }),
        };
        let mut policies = policies;
        if device.is_some() {
            if !a.policies.is_empty() && policies.contains(&PolicyKind::Kernel) {
                return Err(CliError::Usage(
                    "--device-latency/--device-seek model the library's device only; drop --policy kernel".into(),
                ));
            }
            policies.retain(|&p| p != PolicyKind::Kernel);
        }
        Ok(Plan {
            work_scale,
            overrides,
            device,
            workloads,
            policies,
            memories,
            threads,
            duration: Duration::from_secs_f64(secs),
            json: a.json,
            report: a.report,
            dir,
        })
    }
}

/// A list given to a sweep flag, duplicates dropped, order kept.
fn sweep<T: PartialEq + Copy>(flag: &str, v: Vec<T>) -> Result<Vec<T>, CliError> {
    let v = dedup(v);
    if v.len() > MAX_SWEEP {
        return Err(CliError::Usage(format!(
            "{flag} lists {} values; at most {MAX_SWEEP}",
            v.len()
        )));
    }
    Ok(v)
}

/// One budget must be usable here: at least 1M, at most 1T and three
/// quarters of the machine's RAM (`ram`, 0 when unknown).
fn check_memory(m: u64, ram: u64) -> Result<(), CliError> {
    if m == 0 {
        return Err(CliError::Usage(
            "--memory must be above zero, like 64M".into(),
        ));
    }
    if m < MIN_MEMORY {
        return Err(CliError::Usage(format!(
            "--memory {m} is too small: the workloads need at least 1M"
        )));
    }
    if m > 1 << 40 {
        return Err(CliError::Usage(format!(
            "--memory {m} is too large: at most 1T"
        )));
    }
    if ram > 0 && m > ram / 4 * 3 {
        return Err(CliError::Usage(format!(
            "--memory {m} is more than three quarters of this machine's {ram} bytes of RAM"
        )));
    }
    Ok(())
}
