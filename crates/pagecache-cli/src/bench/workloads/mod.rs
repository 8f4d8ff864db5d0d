//! The workloads of DESIGN §7, written once against [`Store`] so the library
//! and the kernel run exactly the same code.

mod buffer_pool;
mod fsmark;
mod hit;
mod mapped_stream;
mod mixed;
mod ops;
mod phase;
mod pinned;
mod randwrite;
mod readers_writer;
mod scan;
mod small_memcg;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::args::Workload;
use super::block::{self, BLOCK};
use super::knobs::Knobs;
use super::record::RoleRec;
use super::report::{RunResult, Throttle, Writeback};
use super::store::{open_direct, CacheStore, Store};
use crate::CliError;
pub use ops::{read_back, timed_modify, timed_read, timed_write, warm, Checker};
pub use phase::{fixed_phase, phase, until_done, Phase, ThreadOut};

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
            let (files, blocks) = fsmark::layout(f, fsmark::threads(p), fsmark::loops(p));
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
