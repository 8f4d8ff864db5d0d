//! `readers-vs-writer`: one thread streams whole-block writes through a file
//! 4× the budget, lap after lap, while the other threads read random blocks
//! of a hot file of half the budget, read twice in order before the run so
//! it starts resident. Readers dirty nothing: the questions are whether their
//! misses pay for the writer's dirty pages, and whether the writer's stream
//! pushes their hot pages out. At least one reader and one writer run,
//! whatever `--threads` says.

use super::{
    assemble, phase, read_back, timed_read, timed_write, warm, Checker, FileSpec, Params, Roles,
    ThreadOut,
};
use crate::bench::block::{self, Rng};
use crate::bench::report::RunResult;
use crate::bench::store::Store;
use crate::CliError;

/// The readers' hot file: half the budget.
pub fn reader_blocks(frames: u64) -> u64 {
    frames / 2
}

const READERS: usize = 0;
const WRITERS: usize = 1;

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (rtag, rn) = (specs[0].tag, specs[0].blocks);
    let (wtag, wn) = (specs[1].tag, specs[1].blocks);
    let threads = p.threads.max(2);
    let mut warm_check = Checker::default();
    for _ in 0..2 {
        warm(store, 0, rtag, rn, false, &mut warm_check)?;
    }
    let mut ph = phase(store, threads, p.duration, |t, ctx| {
        let mut out = ThreadOut::<Vec<u32>>::new(2);
        if t == 0 {
            // The writer: versions[b] is the last version written of block b
            // (0: never written).
            out.state = vec![0u32; wn as usize];
            let mut b = 0u64;
            ctx.repeat(t, |buf| {
                let v = out.state[b as usize] + 1;
                block::fill(buf, wtag, b, v);
                if timed_write(store, &mut out.roles[WRITERS], &mut out.oom, 1, b, buf)? {
                    out.state[b as usize] = v;
                    b = (b + 1) % wn;
                }
                Ok(())
            })?;
        } else {
            let mut rng = Rng::new(p.seed ^ t as u64);
            ctx.repeat(t, |buf| {
                let b = rng.below(rn);
                if timed_read(store, &mut out.roles[READERS], &mut out.oom, 0, b, buf)?.is_some() {
                    out.check.check(buf, rtag, b, 0, false);
                }
                Ok(())
            })?;
        }
        Ok(out)
    })?;
    store.sync(1)?;
    let written = &ph.outs[0].state;
    let mut rng = Rng::new(p.seed ^ 0x5EED);
    let mut sample = Vec::new();
    for _ in 0..1024 {
        let b = rng.below(wn);
        if written[b as usize] > 0 {
            sample.push((1, wtag, b, written[b as usize]));
        }
    }
    let mut check = warm_check;
    read_back(store, &sample, &mut check)?;
    Ok(assemble(
        p,
        policy,
        Roles(&["readers", "writers"]),
        &mut ph,
        check,
    ))
}
