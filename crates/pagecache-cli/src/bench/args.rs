//! Command-line arguments of `pagecache bench` and the plan they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use crate::size::size_arg;
use crate::CliError;

/// Budget of the quick suite.
pub const QUICK_MEMORY: u64 = 64 << 20;
/// Seconds per run in the quick suite.
pub const QUICK_DURATION: f64 = 6.0;
/// Smallest budget the workloads can be scaled to.
pub const MIN_MEMORY: u64 = 1 << 20;

/// Arguments of `pagecache bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The quick suite: a 64M budget and 6 s per run (also what runs when
    /// `--memory` and `--duration` are not given).
    #[arg(long, conflicts_with_all = ["memory", "duration"])]
    pub quick: bool,
    /// Workload to run (repeatable): hit, randwrite, readers-vs-writer, mixed,
    /// scan. Default: all.
    #[arg(long = "workload", value_name = "W")]
    pub workloads: Vec<String>,
    /// Policy to run (repeatable): offload, legacy, no-throttle, kernel.
    /// Default: all.
    #[arg(long = "policy", value_name = "P")]
    pub policies: Vec<String>,
    /// Memory budget of the cache (and of the kernel's cgroup), like 64M or 1G.
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub memory: Option<u64>,
    /// Worker threads per run.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
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
}

/// A workload of DESIGN §7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Workload {
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
    pub const ALL: [Workload; 5] = [
        Workload::Hit,
        Workload::RandWrite,
        Workload::ReadersVsWriter,
        Workload::Mixed,
        Workload::Scan,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Hit => "hit",
            Workload::RandWrite => "randwrite",
            Workload::ReadersVsWriter => "readers-vs-writer",
            Workload::Mixed => "mixed",
            Workload::Scan => "scan",
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
    pub memory: u64,
    pub threads: usize,
    pub duration: Duration,
    pub json: Option<PathBuf>,
    pub report: PathBuf,
    pub dir: PathBuf,
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
        let memory = match a.memory {
            Some(0) => {
                return Err(CliError::Usage(
                    "--memory must be above zero, like 64M".into(),
                ))
            }
            Some(m) if m < MIN_MEMORY => {
                return Err(CliError::Usage(format!(
                    "--memory {m} is too small: the workloads need at least 1M"
                )))
            }
            Some(m) if m > 1 << 40 => {
                return Err(CliError::Usage(format!(
                    "--memory {m} is too large: at most 1T"
                )))
            }
            Some(m) => m,
            None => QUICK_MEMORY,
        };
        let ram = super::machine::Machine::detect().memory_bytes;
        if ram > 0 && memory > ram / 4 * 3 {
            return Err(CliError::Usage(format!(
                "--memory {memory} is more than three quarters of this machine's {ram} bytes of RAM"
            )));
        }
        if a.threads == 0 || a.threads > 256 {
            return Err(CliError::Usage(format!(
                "--threads {} must be in 1..=256",
                a.threads
            )));
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
        Ok(Plan {
            workloads,
            policies,
            memory,
            threads: a.threads,
            duration: Duration::from_secs_f64(secs),
            json: a.json,
            report: a.report,
            dir,
        })
    }
}
