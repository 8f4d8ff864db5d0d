//! `pagecache bench`: every workload × policy side by side, with the kernel
//! page cache as the anchor (DESIGN §5, §7).
//!
//! The library's policies run in this process over files opened with
//! `O_DIRECT`, so the cache's budget is the only memory their pages live in;
//! the `kernel` policy runs the same workload code in a child process through
//! buffered `pread`/`pwrite`, held to the same budget by a memory cgroup.
//! Every run starts cold: files are written with `O_DIRECT` just before it.

mod args;
mod block;
mod kernel;
mod knobs;
mod lru_sim;
mod machine;
mod plot;
mod record;
mod report;
mod store;
mod workloads;

use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub use args::Args;
use args::Workload;
use args::{Plan, Point, PolicyKind};
pub use kernel::{child as kernel_child, ChildArgs as KernelChildArgs};
use knobs::Knobs;
use report::{Report, RunResult};
use store::{CacheStore, DeviceModel};
use workloads::Params;

use crate::CliError;

/// Runs the benchmark.
pub fn run(a: Args) -> Result<(), CliError> {
    let plan = Plan::from_args(a)?;
    std::fs::create_dir_all(&plan.dir)
        .map_err(|e| CliError::io("creating", Some(plan.dir.clone()), e))?;
    let tmp = tempfile::Builder::new()
        .prefix("pagecache-bench-")
        .tempdir_in(&plan.dir)
        .map_err(|e| {
            CliError::io(
                "creating a temporary directory in",
                Some(plan.dir.clone()),
                e,
            )
        })?;
    check_space(tmp.path(), &plan)?;
    std::fs::create_dir_all(&plan.report)
        .map_err(|e| CliError::io("creating", Some(plan.report.clone()), e))?;

    let total = plan.points().len() * plan.workloads.len() * plan.policies.len();
    let pb = ProgressBar::new(total as u64 + 1);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb.set_message("device sequential write speed");
    let machine = machine::Machine::detect();
    let device = machine::device_seq_write(tmp.path(), Duration::from_secs(2), 1 << 30)?;
    pb.inc(1);

    let mut runs: Vec<RunResult> = Vec::new();
    for point in plan.points() {
        for (wi, &w) in plan.workloads.iter().enumerate() {
            for &pol in &plan.policies {
                pb.set_message(format!(
                    "{}{} / {}",
                    point.label(&plan),
                    w.name(),
                    pol.name()
                ));
                let params = params(&plan, point, wi, w)?;
                settle();
                let run_dir = tmp.path().join(format!("{}-{}", w.name(), pol.name()));
                std::fs::create_dir_all(&run_dir)
                    .map_err(|e| CliError::io("creating", Some(run_dir.clone()), e))?;
                let mut r = run_one(&params, pol, plan.device, &run_dir)?;
                r.note_device(device);
                let _ = std::fs::remove_dir_all(&run_dir);
                runs.push(r);
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();

    let kernel_memory_limited = runs
        .iter()
        .filter_map(|r| r.kernel_memory_limited)
        .reduce(|a, b| a && b);
    let rep = Report {
        machine,
        device_seq_write_bytes_per_sec: device,
        memory_bytes: plan.memories[0],
        threads: plan.threads[0],
        sweep_memory_bytes: plan.memories.clone(),
        sweep_threads: plan.threads.clone(),
        duration_secs: plan.duration.as_secs_f64(),
        kernel_memory_limited,
        work_scale: plan.work_scale,
        device_model: plan.device,
        method: method(),
        io_engine: io_engine(plan.overrides.io_uring),
        runs,
    };
    write_report(&plan, &rep)?;
    println!("{}\n", report::machine_line(&rep));
    print!("{}", report::table(&rep.runs));
    println!("\nreport: {}", plan.report.display());
    drop(tmp);
    let bad: Vec<String> = rep
        .runs
        .iter()
        .filter(|r| !r.verified && !r.kernel_oom_killed)
        .map(|r| format!("{}/{}", r.workload, r.policy))
        .collect();
    if !bad.is_empty() {
        return Err(CliError::Check(format!(
            "data read back differed from what was written in {}",
            bad.join(", ")
        )));
    }
    Ok(())
}

/// How the library issues writeback I/O here: a small cache is asked.
fn io_engine(uring: Option<bool>) -> String {
    let cfg = pagecache::Config::new(1 << 20);
    let uring = uring.unwrap_or(cfg.get_io_uring());
    pagecache::PageCache::new(cfg.io_uring(uring))
        .map(|c| c.stats().io_engine.to_string())
        .unwrap_or_default()
}

/// How the numbers were taken, for the report.
fn method() -> Vec<String> {
    vec![
        "Every run starts cold, after a sync() of the machine and a 200 ms pause: its files are written with O_DIRECT just before it, so neither the kernel page cache nor the library holds them; `hit`, `readers-vs-writer` and `scan` then warm their hot set by reading it (twice for the last two) under every policy alike.".into(),
        "The library's policies read and write their files with O_DIRECT, so the budget is the only memory their pages live in. `kernel` runs the same workload code in a child process through buffered pread/pwrite, in a child memory cgroup limited to the budget plus 4 MiB for the child's own allocations.".into(),
        "`hit` alternates read_at, pin and memcpy phases in one-second rounds and times every 16th operation, which is also the one whose hit or miss it counts (hit% is over those); other workloads time and count every operation. Kernel hits are told from misses with preadv2(RWF_NOWAIT).".into(),
        "Kernel writeback bytes are its child process's own (`/proc/self/io` write_bytes less cancelled_write_bytes); its write I/O count is the block device's (machine-wide) scaled to that process's share of the bytes the device wrote, so its average I/O size is the device's over the run. Throttle, direct reclaim writes and stack depth cannot be measured for the kernel and are shown as -.".into(),
        "Dirty limits are alike on both sides: for its run the kernel gets vm.dirty_bytes and vm.dirty_background_bytes equal to the library's dirty_ratio and dirty_background_ratio of the budget (the `dirty` columns show each side's limit in bytes; the sysctls are machine-wide and restored after the run). Without root the kernel runs at the system's limits, and its row's `dirty` says so.".into(),
        "Writes: threads own disjoint blocks and track each block's version; every read is checked against the version expected, and after the run the files are synced and a sample of blocks read back whole.".into(),
        "Fixed-work workloads (the 2010 debate) do a set amount of work (`small-memcg` and `fsmark` scaled by --work-scale) and report the time it took; their readers run until it is done. Allocation stall is the library's `alloc_stall_ns`: time allocating threads spent past the allocator's fast path. Writes by size are what the library's backends received (the kernel's per-I/O sizes are not visible; its row gives the block device's count and average).".into(),
        "`legacy` is 2010's reclaim (an allocating thread writes the dirty page it meets, one page, synchronously) paired with today's I/O-less dirty throttle: it is not a 2010 kernel.".into(),
    ]
}

/// What workload `w`, number `wi` in the plan, runs with at `point`.
fn params(plan: &Plan, point: Point, wi: usize, w: Workload) -> Result<Params, CliError> {
    Ok(Params {
        workload: w,
        memory: w.memory(point.memory),
        threads: point.threads,
        duration: plan.duration,
        seed: 0x5EED_0000 + wi as u64,
        knobs: Knobs::resolve(w, &plan.overrides)?,
        work_scale: plan.work_scale,
    })
}

/// Before each run: writes out whatever the machine has dirty (the last
/// run's kernel writeback, its deleted files' journal) and lets the
/// flushing threads finish, so that no run measures the one before it.
fn settle() {
    rustix::fs::sync();
    std::thread::sleep(Duration::from_millis(200));
}

/// One run's files at a time are on disk: the largest decides.
fn check_space(dir: &Path, plan: &Plan) -> Result<(), CliError> {
    let mut need = 0;
    for point in plan.points() {
        for (wi, &w) in plan.workloads.iter().enumerate() {
            let files = workloads::files(&params(plan, point, wi, w)?);
            need = need.max(files.iter().map(|f| f.blocks).sum::<u64>() * block::BLOCK as u64);
        }
    }
    let need = need + (64 << 20);
    if let Ok(st) = rustix::fs::statvfs(dir) {
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        if avail < need {
            return Err(CliError::Environment(format!(
                "{} has {avail} bytes free; the benchmark needs about {need}; use --dir or a smaller --memory (or fewer --workload)",
                dir.display()
            )));
        }
    }
    Ok(())
}

fn run_one(
    p: &Params,
    pol: PolicyKind,
    device: Option<DeviceModel>,
    dir: &Path,
) -> Result<RunResult, CliError> {
    let specs = workloads::files(p);
    let paths = workloads::prepare(dir, &specs)?;
    match pol {
        PolicyKind::Cache(policy) => {
            let memory = usize::try_from(p.memory).map_err(|_| {
                CliError::Usage(format!("--memory {} does not fit this machine", p.memory))
            })?;
            let store = CacheStore::open(p.knobs.config(memory, policy), device, &paths)?;
            let mut r = workloads::run(&store, Some(&store), &specs, p, policy.name())?;
            r.direct_io = Some(store.direct);
            if let Some(d) = device {
                r.notes.push(format!(
                    "modelled device: {:?} per I/O, {:?} more per seek",
                    d.latency, d.seek
                ));
            }
            if !store.direct {
                r.notes.push(
                    "the filesystem refused O_DIRECT: the cache's files went through the kernel page cache too"
                        .into(),
                );
            }
            drop(store);
            Ok(r)
        }
        PolicyKind::Kernel => kernel::run(p, &specs, &paths, dir),
    }
}

fn write_report(plan: &Plan, rep: &Report) -> Result<(), CliError> {
    let json = serde_json::to_string_pretty(rep)
        .map_err(|e| CliError::Check(format!("encoding the report: {e}")))?;
    let main = plan.report.join("bench.json");
    std::fs::write(&main, &json).map_err(|e| CliError::io("writing", Some(main.clone()), e))?;
    if let Some(j) = &plan.json {
        std::fs::write(j, &json).map_err(|e| CliError::io("writing", Some(j.clone()), e))?;
    }
    let md = plan.report.join("summary.md");
    std::fs::write(&md, report::summary_md(rep))
        .map_err(|e| CliError::io("writing", Some(md.clone()), e))?;
    plot::all(&plan.report, &rep.runs)?;
    Ok(())
}
