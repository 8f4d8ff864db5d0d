//! The results: JSON, the aligned table, and the markdown summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::machine::Machine;

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

/// The whole report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub device_seq_write_bytes_per_sec: f64,
    pub memory_bytes: u64,
    pub threads: usize,
    pub duration_secs: f64,
    pub kernel_memory_limited: Option<bool>,
    /// How the numbers were taken.
    pub method: Vec<String>,
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

fn bytes(x: f64) -> String {
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

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The table's columns: header and cell of a run.
pub const COLUMNS: &[(&str, &str)] = &[
    ("workload", "the workload (DESIGN §7)"),
    (
        "policy",
        "offload/legacy/no-throttle: the library; kernel: buffered pread/pwrite",
    ),
    ("ops/s", "operations per second, all threads"),
    ("p50", "median latency of one operation"),
    ("p99", "99th percentile latency"),
    ("p99.9", "99.9th percentile latency"),
    ("max", "slowest operation"),
    (
        "rd p99.9",
        "readers' 99.9th percentile latency (where roles differ)",
    ),
    (
        "hit%",
        "page lookups that hit (scan: the hot set's; kernel: reads)",
    ),
    (
        "drw",
        "direct reclaim writes: pages an allocating thread wrote itself",
    ),
    ("oom", "operations that failed for want of a frame"),
    ("wb avg io", "average writeback I/O size"),
    (
        "wb rate",
        "writeback bytes over the time writeback was active",
    ),
    ("throttle", "throttle pauses (count / total time)"),
    ("stack", "deepest stack the allocation path reached"),
    ("ok", "data read back matched what was written"),
];

fn cells(r: &RunResult) -> Vec<String> {
    let mut hit_s = opt(r.hot_hit_ratio.or(r.hit_ratio), |h| {
        format!("{:.1}", h * 100.0)
    });
    if let Some(l) = r.lru_hit_ratio {
        let _ = write!(hit_s, " (lru {:.1})", l * 100.0);
    }
    let mut policy = r.policy.clone();
    if r.kernel_memory_limited == Some(false) {
        policy.push_str(" (unlimited)");
    }
    vec![
        r.workload.clone(),
        policy,
        si(r.ops_per_sec),
        ns(r.latency_ns.p50),
        ns(r.latency_ns.p99),
        ns(r.latency_ns.p999),
        ns(r.latency_ns.max),
        opt(r.roles.get("readers"), |x| ns(x.latency_ns.p999)),
        hit_s,
        opt(r.direct_reclaim_writes, |x| x.to_string()),
        r.oom_errors.to_string(),
        if r.writeback.ios > 0 {
            bytes(r.writeback.avg_io_bytes as f64)
        } else {
            "-".into()
        },
        if r.writeback.bytes_per_sec > 0.0 {
            format!("{}/s", bytes(r.writeback.bytes_per_sec))
        } else {
            "-".into()
        },
        opt(r.throttle, |t| format!("{} / {}", t.events, ns(t.total_ns))),
        opt(r.alloc_stack_peak_bytes, |b| bytes(b as f64)),
        if r.verified { "yes" } else { "NO" }.into(),
    ]
}

fn rows(runs: &[RunResult]) -> (Vec<String>, Vec<Vec<String>>) {
    (
        COLUMNS.iter().map(|(h, _)| h.to_string()).collect(),
        runs.iter().map(cells).collect(),
    )
}

/// The aligned plain-text table.
pub fn table(runs: &[RunResult]) -> String {
    let (head, body) = rows(runs);
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &body {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            // Text columns left-aligned, numbers right-aligned.
            if i < 2 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            if i + 1 < cells.len() {
                s.push_str("  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&head);
    let mut last = String::new();
    for r in &body {
        if !last.is_empty() && r[0] != last {
            out.push('\n');
        }
        last = r[0].clone();
        out.push_str(&line(r));
    }
    out
}

/// The machine line shown above the table.
pub fn machine_line(rep: &Report) -> String {
    let m = &rep.machine;
    format!(
        "{} cores ({}), {} RAM, Linux {}; device sequential write {}/s; budget {}, {} threads, {:.1} s per run; kernel runs {}",
        m.cores,
        m.cpu_model,
        bytes(m.memory_bytes as f64),
        m.kernel,
        bytes(rep.device_seq_write_bytes_per_sec),
        bytes(rep.memory_bytes as f64),
        rep.threads,
        rep.duration_secs,
        match rep.kernel_memory_limited {
            Some(true) => "limited to the budget by a memory cgroup",
            Some(false) => "NOT memory-limited (no memory cgroup could be made)",
            None => "not run",
        }
    )
}

/// The markdown summary: machine line, table, column legend.
pub fn summary_md(rep: &Report) -> String {
    let (head, body) = rows(&rep.runs);
    let mut s = String::new();
    let _ = writeln!(s, "Machine: {}\n", machine_line(rep));
    let _ = writeln!(s, "| {} |", head.join(" | "));
    let _ = writeln!(
        s,
        "|{}",
        head.iter()
            .enumerate()
            .map(|(i, _)| if i < 2 { " --- |" } else { " ---: |" })
            .collect::<String>()
    );
    for r in &body {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s.push('\n');
    for (h, d) in COLUMNS {
        let _ = writeln!(s, "- **{h}**: {d}");
    }
    s.push('\n');
    for m in &rep.method {
        let _ = writeln!(s, "- {m}");
    }
    let _ = writeln!(
        s,
        "\nPlots: `latency-<workload>.svg` (latency CDF per policy), `timeline-<workload>.svg` (throughput, dirty and writeback pages over time)."
    );
    s
}
