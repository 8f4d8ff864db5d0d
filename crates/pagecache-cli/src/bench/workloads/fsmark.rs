//! `fsmark`: `fs_mark -S0` as Mel Gorman ran it against the 2010 series.
//! Each thread writes its share of many new files, one after another, each
//! from start to end with whole-block writes and no fsync; the files total 3×
//! the budget per loop (fs_mark's `-L`), 10 MiB each (smaller when the budget
//! is small, so there are still several per thread). Eight loops at work
//! scale 1, two in the quick suite: one loop over a budget that starts half
//! free is mostly the free half filling, over in a fraction of a second.
//! The files are created empty before the run: the work measured is writing
//! them.
//!
//! fs_mark never runs on an empty machine: binaries, metadata and whatever
//! else was used twice sit on the active list, which leaves the inactive list
//! — where reclaim looks, and where dirty pages go — a fraction of memory.
//! A resident file of half the budget, read twice before the run and not
//! touched during it, stands for that (file 0).

use super::{
    assemble, fixed_phase, read_back, timed_write, until_done, warm, FileSpec, Params, Roles,
    ThreadOut,
};
use crate::bench::block::{self, Rng, BLOCK};
use crate::bench::report::RunResult;
use crate::bench::store::Store;
use crate::CliError;

/// fs_mark's file size in the record.
const FILE_BYTES: u64 = 10 << 20;

/// The resident working set: half the budget.
pub fn resident_blocks(frames: u64) -> u64 {
    frames / 2
}

/// Writer threads, each on its own file: at least four, since many files
/// written at once is one of the record's conditions (the flusher writes
/// them one at a time, oldest first, while reclaim meets all of them).
pub fn threads(p: &Params) -> usize {
    p.threads.max(4)
}

/// fs_mark loops at the work scale: 8 at scale 1, at least one.
pub fn loops(p: &Params) -> u64 {
    ((8.0 * p.work_scale).round() as u64).max(1)
}

/// (files, blocks per file) for a budget of `frames` blocks, `loops` loops.
pub fn layout(frames: u64, threads: usize, loops: u64) -> (usize, u64) {
    let total = 3 * frames * loops;
    let per_file = (FILE_BYTES / BLOCK as u64)
        .min(3 * frames / (threads as u64 * 4))
        .max(16);
    (total.div_ceil(per_file) as usize, per_file)
}

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let threads = threads(p);
    let mut check = super::Checker::default();
    for _ in 0..2 {
        warm(store, 0, specs[0].tag, specs[0].blocks, false, &mut check)?;
    }
    let mut ph = fixed_phase(store, threads, threads, p, |t, ctx| {
        // state: (file, blocks of it written).
        let mut out = ThreadOut::<Vec<(usize, u64)>>::new(1);
        let mut buf = crate::bench::store::AlignedBuf::new(BLOCK);
        let mut ops = 0;
        'files: for (f, spec) in specs.iter().enumerate().skip(1 + t).step_by(threads) {
            out.state.push((f, 0));
            for b in 0..spec.blocks {
                block::fill(buf.as_mut_slice(), spec.tag, b, 1);
                let done = until_done(ctx, &mut out, |o| {
                    timed_write(store, &mut o.roles[0], &mut o.oom, f, b, buf.as_slice())
                })?;
                if !done {
                    break 'files;
                }
                if let Some(last) = out.state.last_mut() {
                    last.1 = b + 1;
                }
                ops += 1;
                ctx.progress.set(t, ops);
            }
        }
        Ok(out)
    })?;
    let written: Vec<(usize, u64)> = ph
        .outs
        .iter()
        .flat_map(|o| o.state.iter().copied())
        .filter(|&(_, n)| n > 0)
        .collect();
    for &(f, _) in &written {
        store.sync(f)?;
    }
    let mut rng = Rng::new(p.seed ^ 0xF5);
    let sample: Vec<_> = (0..if written.is_empty() { 0 } else { 1024 })
        .map(|_| {
            let (f, n) = written[rng.below(written.len() as u64) as usize];
            (f, specs[f].tag, rng.below(n), 1)
        })
        .collect();
    read_back(store, &sample, &mut check)?;
    Ok(assemble(p, policy, Roles(&["writers"]), &mut ph, check))
}
