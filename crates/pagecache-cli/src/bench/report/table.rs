//! The two tables of a report: the fixed-work workloads (the 2010 debate,
//! compared as Mel Gorman's tables did: elapsed time and allocation stalls)
//! and the everyday timed workloads (throughput and latency).

use std::fmt::Write as _;

use super::{bytes, ns, opt, si, RunResult};

/// The fixed-work table's columns: header and legend.
const FIXED_COLUMNS: &[(&str, &str)] = &[
    ("workload", "the workload (DESIGN §7)"),
    (
        "policy",
        "offload/legacy/no-throttle: the library; kernel: buffered pread/pwrite",
    ),
    DIRTY_COLUMN,
    ("elapsed", "time the fixed work took"),
    ("done", "the work finished within the time cap"),
    ("work/s", "the fixed work's operations per second (writers')"),
    (
        "stall",
        "allocation stall: time allocating threads spent past the fast path (reclaim, pageout writes, throttle waits)",
    ),
    (
        "drw",
        "direct reclaim writes: pages an allocating thread wrote itself",
    ),
    (
        "brw",
        "background reclaim writes: pages the background reclaimer wrote itself",
    ),
    ("wb ios", "writeback write I/Os"),
    ("wb avg io", "average writeback I/O size"),
    (
        "wb/dev",
        "bytes written back per second of elapsed time, over the device's sequential write speed",
    ),
    ("rd p50", "readers' median latency (where there are readers)"),
    ("rd p99", "readers' 99th percentile latency"),
    ("rd p99.9", "readers' 99.9th percentile latency"),
    ("oom", "operations that failed for want of a frame (retried)"),
    ("stack", "deepest stack the allocation path reached"),
    ("ok", "data read back matched what was written"),
];

const DIRTY_COLUMN: (&str, &str) = (
    "dirty",
    "dirty limit / background threshold in force, in bytes (library: its ratios of the budget; kernel: vm.dirty_bytes / vm.dirty_background_bytes, else its ratios, %)",
);

/// The run's dirty limits: bytes where they are known, else ratios.
fn dirty(r: &RunResult) -> String {
    opt(r.knobs.as_ref(), |k| {
        match (k.dirty_bytes, k.dirty_background_bytes) {
            (Some(d), Some(b)) => format!("{}/{}", bytes(d as f64), bytes(b as f64)),
            _ if r.policy == "kernel" => {
                format!("{}%/{}%", k.dirty_ratio, k.dirty_background_ratio)
            }
            _ => {
                let of = |p: u8| bytes((r.memory_bytes * u64::from(p) / 100) as f64);
                format!("{}/{}", of(k.dirty_ratio), of(k.dirty_background_ratio))
            }
        }
    })
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "NO" }.into()
}

fn policy(r: &RunResult) -> String {
    let mut policy = r.policy.clone();
    if r.kernel_memory_limited == Some(false) {
        policy.push_str(" (unlimited)");
    }
    policy
}

fn cells_fixed(r: &RunResult) -> Vec<String> {
    let readers = r.roles.get("readers");
    let work = r
        .roles
        .get("writers")
        .map_or(r.ops_per_sec, |w| w.ops_per_sec);
    vec![
        r.workload.clone(),
        policy(r),
        dirty(r),
        format!("{:.2}s", r.elapsed_secs),
        yes(r.completed),
        si(work),
        opt(r.alloc_stall_ns, ns),
        opt(r.direct_reclaim_writes, |x| x.to_string()),
        opt(r.background_reclaim_writes, |x| x.to_string()),
        r.writeback.ios.to_string(),
        if r.writeback.ios > 0 {
            bytes(r.writeback.avg_io_bytes as f64)
        } else {
            "-".into()
        },
        opt(r.writeback_of_device, |f| format!("{:.0}%", f * 100.0)),
        opt(readers, |x| ns(x.latency_ns.p50)),
        opt(readers, |x| ns(x.latency_ns.p99)),
        opt(readers, |x| ns(x.latency_ns.p999)),
        r.oom_errors.to_string(),
        opt(r.alloc_stack_peak_bytes, |b| bytes(b as f64)),
        yes(r.verified),
    ]
}

/// The everyday table's columns: header and legend.
const COLUMNS: &[(&str, &str)] = &[
    ("workload", "the workload (DESIGN §7)"),
    (
        "policy",
        "offload/legacy/no-throttle: the library; kernel: buffered pread/pwrite",
    ),
    DIRTY_COLUMN,
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

fn cells_timed(r: &RunResult) -> Vec<String> {
    let mut hit_s = opt(r.hot_hit_ratio.or(r.hit_ratio), |h| {
        format!("{:.1}", h * 100.0)
    });
    if let Some(l) = r.lru_hit_ratio {
        let _ = write!(hit_s, " (lru {:.1})", l * 100.0);
    }
    vec![
        r.workload.clone(),
        policy(r),
        dirty(r),
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
        yes(r.verified),
    ]
}

/// The hit-path and scaling table's columns: header and legend.
const SCALE_COLUMNS: &[(&str, &str)] = &[
    ("workload", "the workload (DESIGN §7)"),
    (
        "policy",
        "offload/legacy/no-throttle: the library; kernel: buffered pread/pwrite",
    ),
    ("budget", "the cache's memory budget (kernel: its cgroup's)"),
    ("thr", "worker threads"),
    (
        "ops/s",
        "operations per second, all threads (hit: read_at / pread)",
    ),
    ("ops/s/thr", "operations per second per thread"),
    (
        "×kernel",
        "ops/s over the kernel's at the same budget and threads",
    ),
    ("pin/s", "hit: zero-copy page pins per second"),
    (
        "pin ×kernel",
        "hit: pins per second over the kernel's pread",
    ),
    (
        "memcpy/s",
        "hit: raw 4 KiB copies per second from the same arena",
    ),
    (
        "memcpy ×kernel",
        "hit: memcpy/s over the kernel's pread: the most any copying read_at could reach against the kernel here",
    ),
    (
        "read_at cost",
        "hit: memcpy/s over read_at's ops/s (1.00 = read_at at memory speed)",
    ),
];

/// Where the same workload ran under `kernel` at the same budget and threads.
fn kernel_twin<'a>(runs: &'a [RunResult], r: &RunResult) -> Option<&'a RunResult> {
    runs.iter().find(|k| {
        k.policy == "kernel"
            && k.workload == r.workload
            && k.memory_bytes == r.memory_bytes
            && k.threads == r.threads
    })
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

fn cells_scale(runs: &[RunResult], r: &RunResult) -> Vec<String> {
    let kernel = kernel_twin(runs, r).filter(|k| k.policy != r.policy);
    vec![
        r.workload.clone(),
        policy(r),
        bytes(r.memory_bytes as f64),
        r.threads.to_string(),
        si(r.ops_per_sec),
        si(r.ops_per_sec / r.threads.max(1) as f64),
        opt(kernel, |k| ratio(r.ops_per_sec, k.ops_per_sec)),
        opt(r.pin_ops_per_sec, si),
        match (r.pin_ops_per_sec, kernel) {
            (Some(p), Some(k)) => ratio(p, k.ops_per_sec),
            _ => "-".into(),
        },
        opt(r.memcpy_ops_per_sec, si),
        match (r.memcpy_ops_per_sec, kernel) {
            (Some(m), Some(k)) => ratio(m, k.ops_per_sec),
            _ => "-".into(),
        },
        opt(r.memcpy_ops_per_sec, |m| {
            if r.ops_per_sec > 0.0 {
                format!("{:.2}", m / r.ops_per_sec)
            } else {
                "-".into()
            }
        }),
    ]
}

/// Whether the timed runs sweep budgets or thread counts (`small-memcg`'s
/// own small budget is not a sweep).
fn swept(runs: &[RunResult]) -> bool {
    let mut timed = runs.iter().filter(|r| r.work != "fixed");
    let Some(first) = timed.next() else {
        return false;
    };
    timed.any(|r| r.memory_bytes != first.memory_bytes || r.threads != first.threads)
}

type Rows = (Vec<String>, Vec<Vec<String>>);
type Legend = &'static [(&'static str, &'static str)];

/// The two tables' rows: (title, legend, header and body), empty ones left out.
fn sections(runs: &[RunResult]) -> Vec<(&'static str, Legend, Rows)> {
    let part = |fixed: bool| -> Vec<&RunResult> {
        runs.iter()
            .filter(|r| (r.work == "fixed") == fixed)
            .collect()
    };
    let mut out = Vec::new();
    for (fixed, title, cols, cells) in [
        (
            true,
            "The 2010 debate: fixed work",
            FIXED_COLUMNS,
            cells_fixed as fn(&RunResult) -> Vec<String>,
        ),
        (false, "Everyday workloads: timed", COLUMNS, cells_timed),
    ] {
        let rs = part(fixed);
        if rs.is_empty() {
            continue;
        }
        let head = cols.iter().map(|(h, _)| h.to_string()).collect();
        let body = rs.into_iter().map(cells).collect();
        out.push((title, cols, (head, body)));
    }
    // The hit path's ratios, and every timed run's scaling when the budget or
    // thread count was swept.
    let sweep = swept(runs);
    let scale: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r.work != "fixed" && (sweep || r.workload == "hit"))
        .map(|r| cells_scale(runs, r))
        .collect();
    if !scale.is_empty() {
        let head = SCALE_COLUMNS.iter().map(|(h, _)| h.to_string()).collect();
        out.push((
            "Hit path and scaling",
            SCALE_COLUMNS as Legend,
            (head, scale),
        ));
    }
    out
}

fn aligned((head, body): &Rows) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in body {
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
    let mut out = line(head);
    let mut last = String::new();
    for r in body {
        if !last.is_empty() && r[0] != last {
            out.push('\n');
        }
        last = r[0].clone();
        out.push_str(&line(r));
    }
    out
}

/// The aligned plain-text tables.
pub fn table(runs: &[RunResult]) -> String {
    let mut out = String::new();
    for (i, (title, _, rows)) in sections(runs).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{title}\n");
        out.push_str(&aligned(rows));
    }
    out
}

/// The markdown tables with their legends.
pub fn markdown(s: &mut String, runs: &[RunResult]) {
    for (title, cols, (head, body)) in sections(runs) {
        let _ = writeln!(s, "#### {title}\n");
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
        for (h, d) in cols {
            let _ = writeln!(s, "- **{h}**: {d}");
        }
        s.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(workload: &str, work: &str, memory_bytes: u64, threads: usize) -> RunResult {
        RunResult {
            workload: workload.into(),
            policy: "offload".into(),
            work: work.into(),
            memory_bytes,
            threads,
            ..RunResult::default()
        }
    }

    #[test]
    fn only_hit_has_a_scaling_row_without_a_sweep() {
        // small-memcg runs at its own 8 MiB: that is not a sweep.
        let runs = [
            run("small-memcg", "fixed", 8 << 20, 2),
            run("hit", "timed", 64 << 20, 2),
            run("scan", "timed", 64 << 20, 2),
        ];
        assert!(!swept(&runs));
        let (_, _, (_, rows)) = sections(&runs).pop().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0], "hit");
    }

    #[test]
    fn a_thread_sweep_gives_every_timed_run_a_row() {
        let runs = [
            run("small-memcg", "fixed", 8 << 20, 1),
            run("scan", "timed", 64 << 20, 1),
            run("scan", "timed", 64 << 20, 2),
        ];
        assert!(swept(&runs));
        let (title, _, (_, rows)) = sections(&runs).pop().unwrap();
        assert_eq!(title, "Hit path and scaling");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][5], "0", "ops/s per thread of an empty run");
    }

    #[test]
    fn the_hit_row_sets_read_at_pins_and_the_copy_floor_against_the_kernel() {
        let mut hit = run("hit", "timed", 1 << 30, 2);
        hit.ops_per_sec = 3.0e6;
        hit.pin_ops_per_sec = Some(9.0e6);
        hit.memcpy_ops_per_sec = Some(3.3e6);
        let mut kernel = run("hit", "timed", 1 << 30, 2);
        kernel.policy = "kernel".into();
        kernel.ops_per_sec = 1.5e6;
        let runs = [hit, kernel];
        let (_, cols, (head, rows)) = sections(&runs).pop().unwrap();
        assert_eq!(head.len(), cols.len());
        let cell = |name: &str| {
            let i = head.iter().position(|h| h == name).unwrap();
            rows[0][i].clone()
        };
        assert_eq!(cell("×kernel"), "2.00×");
        assert_eq!(cell("pin ×kernel"), "6.00×");
        assert_eq!(cell("memcpy ×kernel"), "2.20×");
        assert_eq!(cell("read_at cost"), "1.10");
        assert_eq!(
            rows[1][head.iter().position(|h| h == "memcpy ×kernel").unwrap()],
            "-"
        );
    }
}
