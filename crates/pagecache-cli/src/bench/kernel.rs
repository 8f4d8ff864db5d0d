//! The `kernel` policy: the same workload through plain buffered
//! `pread`/`pwrite`, in a child process held to the same memory budget by a
//! child memory cgroup of the benchmark's own (cgroup v1
//! `memory.limit_in_bytes` or v2 `memory.max`), removed afterwards.
//!
//! The parent makes the cgroup, starts the child (this binary, hidden
//! subcommand), waits for it to say it is ready, moves it into the cgroup and
//! tells it to go; the child writes its result as JSON to a file.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::{Deserialize, Serialize};

use super::args::Workload;
use super::knobs::Knobs;
use super::report::RunResult;
use super::store::{GaugeSource, KernelDirtyLimits, KernelStore};
use super::workloads::{self, FileSpec, Params};
use crate::CliError;

/// Memory allowed above the budget for the child's own allocations made
/// after it joins the cgroup (latency histograms, version arrays, thread
/// stacks): charges made before it joins stay with the parent's cgroup.
pub const CHILD_SLACK: u64 = 4 << 20;

/// What the child is told.
#[derive(Serialize, Deserialize)]
pub struct ChildSpec {
    pub params: Params,
    pub specs: Vec<FileSpec>,
    pub paths: Vec<PathBuf>,
    pub dir: PathBuf,
    pub gauge: GaugeSource,
}

/// Arguments of the hidden child subcommand.
#[derive(clap::Args, Debug)]
pub struct ChildArgs {
    /// The JSON spec to run.
    #[arg(long)]
    pub spec: PathBuf,
    /// Where to write the JSON result.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A child memory cgroup, removed on drop.
pub struct Cgroup {
    dir: PathBuf,
    version: Version,
}

fn own_cgroup() -> Option<(Version, PathBuf)> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // A v1 memory controller wins over the unified hierarchy of a hybrid setup.
    for l in text.lines() {
        let mut it = l.splitn(3, ':');
        let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
        if ctrl.split(',').any(|c| c == "memory") {
            let base = Path::new("/sys/fs/cgroup/memory");
            if base.is_dir() {
                return Some((Version::V1, base.join(path.trim_start_matches('/'))));
            }
        }
    }
    for l in text.lines() {
        if let Some(path) = l.strip_prefix("0::") {
            let base = Path::new("/sys/fs/cgroup");
            let ctrls = std::fs::read_to_string(base.join("cgroup.controllers")).ok()?;
            if ctrls.split_whitespace().any(|c| c == "memory") {
                return Some((Version::V2, base.join(path.trim_start_matches('/'))));
            }
        }
    }
    None
}

impl Cgroup {
    /// Makes `pagecache-bench-<pid>` under our own memory cgroup, limited to
    /// `limit` bytes; `Err` says why it could not.
    pub fn create(limit: u64) -> Result<Cgroup, String> {
        let (version, parent) =
            own_cgroup().ok_or("no memory cgroup controller is mounted for this process")?;
        if version == Version::V2 {
            let ctl = parent.join("cgroup.subtree_control");
            let on = std::fs::read_to_string(&ctl).unwrap_or_default();
            if !on.split_whitespace().any(|c| c == "memory") {
                std::fs::write(&ctl, "+memory").map_err(|e| {
                    format!(
                        "cannot enable the memory controller in {}: {e}",
                        ctl.display()
                    )
                })?;
            }
        }
        let dir = parent.join(format!("pagecache-bench-{}", std::process::id()));
        if dir.exists() {
            let _ = std::fs::remove_dir(&dir);
        }
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
        let cg = Cgroup { dir, version };
        let file = match version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        std::fs::write(cg.dir.join(file), limit.to_string())
            .map_err(|e| format!("cannot set {}: {e}", cg.dir.join(file).display()))?;
        if version == Version::V2 {
            // No swapping around the limit.
            let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
        }
        Ok(cg)
    }

    fn add(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    fn gauge(&self) -> GaugeSource {
        let stat = self.dir.join("memory.stat");
        match self.version {
            Version::V1 => GaugeSource::CgroupV1(stat),
            Version::V2 => GaugeSource::CgroupV2(stat),
        }
    }

    /// Processes the cgroup's OOM killer has killed.
    fn oom_kills(&self) -> Option<u64> {
        let f = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        std::fs::read_to_string(self.dir.join(f))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
    }

    fn peak(&self) -> Option<u64> {
        let f = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        std::fs::read_to_string(self.dir.join(f))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Kills the child if the parent gives up on it.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs workload `p` on `paths` in a child process under a memory cgroup.
pub fn run(
    p: &Params,
    specs: &[FileSpec],
    paths: &[PathBuf],
    dir: &Path,
) -> Result<RunResult, CliError> {
    let limit = p.memory + CHILD_SLACK;
    let cgroup = Cgroup::create(limit);
    // The library's dirty limits in bytes, so both sides run alike.
    let pct = |r: u8| p.memory * u64::from(r) / 100;
    let dirty = KernelDirtyLimits::set(
        pct(p.knobs.dirty_ratio),
        pct(p.knobs.dirty_background_ratio),
    );
    let gauge = match &cgroup {
        Ok(c) => c.gauge(),
        Err(_) => GaugeSource::Meminfo,
    };
    let spec_path = dir.join("kernel-child.json");
    let out_path = dir.join("kernel-result.json");
    let spec = ChildSpec {
        params: p.clone(),
        specs: specs.to_vec(),
        paths: paths.to_vec(),
        dir: dir.to_path_buf(),
        gauge,
    };
    let text = serde_json::to_vec(&spec)
        .map_err(|e| CliError::Check(format!("encoding the child's spec: {e}")))?;
    std::fs::write(&spec_path, text)
        .map_err(|e| CliError::io("writing", Some(spec_path.clone()), e))?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::io("finding the benchmark's own executable", None, e))?;
    let child = Command::new(&exe)
        .arg("bench-kernel-child")
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CliError::io("starting", Some(exe.clone()), e))?;
    let mut reaper = Reaper(Some(child));
    let child = reaper
        .0
        .as_mut()
        .ok_or_else(|| CliError::Check("no child".into()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.as_mut() {
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| CliError::io("waiting for the kernel child", None, e))?;
    }
    if line.trim() != "ready" {
        return Err(CliError::Check(
            "the kernel child stopped before it was ready".into(),
        ));
    }
    let mut limited = match &cgroup {
        Ok(c) => match c.add(child.id()) {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("cannot move the child into the cgroup: {e}")),
        },
        Err(e) => Err(e.clone()),
    };
    if let Some(stdin) = child.stdin.as_mut() {
        stdin
            .write_all(b"go\n")
            .map_err(|e| CliError::io("starting the kernel child", None, e))?;
    }
    let status = child
        .wait()
        .map_err(|e| CliError::io("waiting for the kernel child", None, e))?;
    reaper.0 = None;
    let oom_killed = cgroup
        .as_ref()
        .ok()
        .and_then(Cgroup::oom_kills)
        .unwrap_or(0)
        > 0;
    if !status.success() && oom_killed && limited.is_ok() {
        // The kernel's own answer to the workload: a result, not a failure
        // of the benchmark.
        let _ = std::fs::remove_file(&spec_path);
        return Ok(RunResult {
            workload: p.workload.name().into(),
            policy: "kernel".into(),
            memory_bytes: p.memory,
            work: if p.workload.fixed_work() { "fixed" } else { "timed" }.into(),
            oom_errors: 1,
            knobs: Some(Knobs::kernel(matches!(&cgroup, Ok(c) if c.version == Version::V2))),
            kernel_memory_limited: Some(true),
            kernel_memory_limit_bytes: Some(limit),
            kernel_memory_peak_bytes: cgroup.as_ref().ok().and_then(Cgroup::peak),
            kernel_oom_killed: true,
            notes: vec![format!(
                "kernel: the memory cgroup's OOM killer killed the child ({status}); nothing to verify"
            )],
            ..RunResult::default()
        });
    }
    if !status.success() {
        return Err(CliError::Check(format!(
            "the kernel child failed ({status}){}",
            if limited.is_ok() {
                "; it may have been killed by the memory cgroup's OOM killer"
            } else {
                ""
            }
        )));
    }
    let text = std::fs::read(&out_path).map_err(|e| {
        CliError::io(
            "reading the kernel child's result",
            Some(out_path.clone()),
            e,
        )
    })?;
    let mut r: RunResult = serde_json::from_slice(&text)
        .map_err(|e| CliError::Check(format!("decoding the kernel child's result: {e}")))?;
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&spec_path);
    if let Ok(c) = &cgroup {
        r.kernel_memory_peak_bytes = c.peak();
    }
    if matches!(p.workload, Workload::MappedStream | Workload::BufferPool) {
        r.notes.push(
            "kernel: stores into pages are pread + pwrite here (no mapping), so its writer is dirty-throttled on every write".into(),
        );
    }
    let v2 = matches!(&cgroup, Ok(c) if c.version == Version::V2) && limited.is_ok();
    r.knobs = Some(Knobs::kernel(v2));
    r.notes.push(match &dirty {
        Ok(d) => format!(
            "kernel: vm.dirty_bytes {} and vm.dirty_background_bytes {} for the run (the library's dirty_ratio {}% and dirty_background_ratio {}% of the budget; global settings, restored afterwards)",
            d.bytes.0, d.bytes.1, p.knobs.dirty_ratio, p.knobs.dirty_background_ratio
        ),
        Err(why) => format!("kernel: ran at the system's dirty limits, not the library's: {why}"),
    });
    match limited.as_mut() {
        Ok(()) => {
            r.kernel_memory_limited = Some(true);
            r.kernel_memory_limit_bytes = Some(limit);
            r.notes.push(format!(
                "kernel: memory cgroup limit {} bytes (the budget + {} for the child's own allocations)",
                limit, CHILD_SLACK
            ));
        }
        Err(why) => {
            r.kernel_memory_limited = Some(false);
            r.notes
                .push(format!("kernel: ran without a memory limit: {why}"));
        }
    }
    drop(cgroup);
    Ok(r)
}

/// The child's side: get ready, wait for "go", run, write the result.
pub fn child(a: ChildArgs) -> Result<(), CliError> {
    let text =
        std::fs::read(&a.spec).map_err(|e| CliError::io("reading", Some(a.spec.clone()), e))?;
    let spec: ChildSpec = serde_json::from_slice(&text)
        .map_err(|e| CliError::Check(format!("decoding the child's spec: {e}")))?;
    let store = KernelStore::open(&spec.paths, spec.gauge.clone(), &spec.dir)?;
    {
        let mut out = std::io::stdout().lock();
        out.write_all(b"ready\n")
            .and_then(|_| out.flush())
            .map_err(|e| CliError::io("talking to the parent", None, e))?;
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::io("waiting for the parent", None, e))?;
    if line.trim() != "go" {
        return Err(CliError::Check("the parent did not say go".into()));
    }
    let r = workloads::run(&store, None, &spec.specs, &spec.params, "kernel")?;
    let text =
        serde_json::to_vec(&r).map_err(|e| CliError::Check(format!("encoding the result: {e}")))?;
    std::fs::write(&a.out, text).map_err(|e| CliError::io("writing", Some(a.out.clone()), e))
}
