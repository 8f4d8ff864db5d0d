//! The results: JSON, the aligned table, and the markdown summary.

mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::knobs::Knobs;
use super::machine::Machine;
use super::store::DeviceModel;

/// Latency percentiles, nanoseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// One role's figures (readers, writers…).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RoleResult {
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency_ns: Latency,
    /// Fraction of this role's page lookups that hit.
    pub hit_ratio: Option<f64>,
    /// (latency ns, quantile) points.
    pub cdf: Vec<[f64; 2]>,
}

/// Writeback figures of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Writeback {
    pub ios: u64,
    pub bytes: u64,
    pub avg_io_bytes: u64,
    /// Bytes over the time writeback was active.
    pub bytes_per_sec: f64,
    /// Where the figures come from: the cache's counters, or (kernel) the
    /// block device's, machine-wide.
    pub source: String,
    /// (size class upper bound in bytes, writes) as the library's backends
    /// received them; the last class holds everything larger. `None` for the
    /// kernel, whose per-I/O sizes are not visible from user space.
    pub size_histogram: Option<Vec<[u64; 2]>>,
}

/// Throttle figures (reclaim + dirty throttles).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Throttle {
    pub events: u64,
    pub total_ns: u64,
    pub reclaim_events: u64,
    pub dirty_events: u64,
}

/// One sample of the run's progress.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct TimePoint {
    /// Seconds since the run started.
    pub t: f64,
    pub ops_per_sec: f64,
    pub dirty_pages: u64,
    pub writeback_pages: u64,
}

/// One workload × policy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub workload: String,
    pub policy: String,
    pub threads: usize,
    pub memory_bytes: u64,
    pub duration_secs: f64,
    /// "fixed": a fixed amount of work, elapsed time compares; "timed": runs
    /// for the duration, throughput compares.
    pub work: String,
    /// Fixed work: the time the work took (timed: the run's length).
    pub elapsed_secs: f64,
    /// Fixed work: it finished within the time cap.
    pub completed: bool,
    /// Time allocating threads spent past the allocator's fast path (reclaim
    /// scans, pageout writes, throttle waits). `None`: the kernel.
    pub alloc_stall_ns: Option<u64>,
    /// Pages written by the background reclaimer (`legacy` only writes them).
    pub background_reclaim_writes: Option<u64>,
    /// The knobs the run used (kernel: the dirty limits it ran under).
    pub knobs: Option<Knobs>,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency_ns: Latency,
    /// Per-role figures where roles differ (`readers`, `writers`, `scan`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub roles: BTreeMap<String, RoleResult>,
    /// Fraction of page lookups that hit (the kernel: of reads; `None` when
    /// there were none to count).
    pub hit_ratio: Option<f64>,
    /// `None` where it cannot be measured (the kernel).
    pub direct_reclaim_writes: Option<u64>,
    pub oom_errors: u64,
    pub writeback: Writeback,
    /// `None` where it cannot be measured (the kernel).
    pub throttle: Option<Throttle>,
    /// `None` where it cannot be measured (the kernel).
    pub alloc_stack_peak_bytes: Option<u64>,
    pub verified: bool,
    /// Fixed work: bytes written back over the whole elapsed time, as a
    /// fraction of the device's sequential write speed measured before the
    /// runs (what the writeback path costs against the bare device).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub writeback_of_device: Option<f64>,
    /// `hit`: zero-copy pins per second.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pin_ops_per_sec: Option<f64>,
    /// `hit`: raw 4 KiB copies per second from the same arena.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memcpy_ops_per_sec: Option<f64>,
    /// `scan`: hot-set hit ratio of this run.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hot_hit_ratio: Option<f64>,
    /// `scan`: hot-set hit ratio of an exact LRU of the same size on the same
    /// access trace.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lru_hit_ratio: Option<f64>,
    /// `kernel`: whether a memory cgroup held the child to the budget.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel_memory_limited: Option<bool>,
    /// `kernel`: the cgroup limit in force.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel_memory_limit_bytes: Option<u64>,
    /// `kernel`: the cgroup's peak usage.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel_memory_peak_bytes: Option<u64>,
    /// `kernel`: the memory cgroup's OOM killer killed the child; the run
    /// has no figures and nothing was verified.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub kernel_oom_killed: bool,
    /// Whether the library's files bypassed the kernel page cache (O_DIRECT).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub direct_io: Option<bool>,
    /// Anything the reader of the numbers should know.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
    /// The whole run's latency CDF: (latency ns, quantile).
    pub cdf: Vec<[f64; 2]>,
    /// Throughput and dirty/writeback pages every ~100 ms.
    pub timeline: Vec<TimePoint>,
}

impl RunResult {
    /// Records what the fixed work's writeback achieved against the device
    /// speed `device` (bytes per second) measured before the runs.
    pub fn note_device(&mut self, device: f64) {
        if self.work == "fixed" && self.elapsed_secs > 0.0 && device > 0.0 {
            self.writeback_of_device =
                Some(self.writeback.bytes as f64 / self.elapsed_secs / device);
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub device_seq_write_bytes_per_sec: f64,
    /// The (first) budget.
    pub memory_bytes: u64,
    /// The (first) thread count.
    pub threads: usize,
    /// Every budget the runs were made at (`--memory 64M,1G`).
    #[serde(default)]
    pub sweep_memory_bytes: Vec<u64>,
    /// Every thread count the runs were made with (`--threads 1,2,4`).
    #[serde(default)]
    pub sweep_threads: Vec<usize>,
    pub duration_secs: f64,
    pub kernel_memory_limited: Option<bool>,
    /// Fraction of the default fixed work `small-memcg` did.
    pub work_scale: f64,
    /// The modelled device under the library's files, if any.
    pub device_model: Option<DeviceModel>,
    /// How the numbers were taken.
    pub method: Vec<String>,
    /// How the library issued writeback I/O (`io_uring` or `threads`).
    #[serde(default)]
    pub io_engine: String,
    pub runs: Vec<RunResult>,
}

/// A count, SI-scaled (k, M, G).
pub fn si(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A duration in ns, human-scaled.
pub fn ns(x: u64) -> String {
    let f = x as f64;
    if f >= 1e9 {
        format!("{:.2}s", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1}ms", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}us", f / 1e3)
    } else {
        format!("{x}ns")
    }
}

pub fn bytes(x: f64) -> String {
    let a = x.abs();
    if a >= (1u64 << 30) as f64 {
        format!("{:.2}GiB", x / (1u64 << 30) as f64)
    } else if a >= (1u64 << 20) as f64 {
        format!("{:.1}MiB", x / (1u64 << 20) as f64)
    } else if a >= 1024.0 {
        format!("{:.1}KiB", x / 1024.0)
    } else {
        format!("{x:.0}B")
    }
}

pub fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The machine line shown above the table.
pub fn machine_line(rep: &Report) -> String {
    let m = &rep.machine;
    let budgets = if rep.sweep_memory_bytes.len() > 1 {
        let list: Vec<String> = rep
            .sweep_memory_bytes
            .iter()
            .map(|&b| bytes(b as f64))
            .collect();
        format!("budgets {}", list.join(", "))
    } else {
        format!("budget {}", bytes(rep.memory_bytes as f64))
    };
    let threads = if rep.sweep_threads.len() > 1 {
        let list: Vec<String> = rep.sweep_threads.iter().map(|t| t.to_string()).collect();
        format!("{} threads", list.join(", "))
    } else {
        format!("{} threads", rep.threads)
    };
    let mut line = format!(
        "{} cores ({}), {} RAM, Linux {}; device sequential write {}/s; {budgets}, {threads}, {:.1} s per run; kernel runs {}",
        m.cores,
        m.cpu_model,
        bytes(m.memory_bytes as f64),
        m.kernel,
        bytes(rep.device_seq_write_bytes_per_sec),
        rep.duration_secs,
        match rep.kernel_memory_limited {
            Some(true) => "limited to the budget by a memory cgroup",
            Some(false) => "NOT memory-limited (no memory cgroup could be made)",
            None => "not run",
        }
    );
    let _ = write!(line, "; fixed work ×{}", rep.work_scale);
    if !rep.io_engine.is_empty() {
        let _ = write!(line, "; library writeback I/O: {}", rep.io_engine);
    }
    if let Some(d) = rep.device_model {
        let _ = write!(
            line,
            "; modelled device: {:?} per I/O, {:?} more per seek",
            d.latency, d.seek
        );
    }
    line
}

pub use table::table;

/// The markdown summary: machine line, tables, column legends.
pub fn summary_md(rep: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Machine: {}\n", machine_line(rep));
    table::markdown(&mut s, &rep.runs);
    for m in &rep.method {
        let _ = writeln!(s, "- {m}");
    }
    let _ = writeln!(
        s,
        "\nPlots: `fixed-<workload>.svg` (elapsed and allocation stall time per policy) and `wsize-<workload>.svg` (writes by size) for the fixed-work workloads; `latency-<workload>.svg` (latency CDF per policy), `timeline-<workload>.svg` (throughput, dirty and writeback pages over time) for all."
    );
    s
}
