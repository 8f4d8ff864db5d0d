//! `mapped-stream`: J. Weiner's micro-mapped-file-stream and Mel Gorman's
//! mmap-strm. One thread dirties a file 4× the budget from start to end
//! through zero-copy `page_mut` guards (stores into a mapping: no copy, one
//! page at a time), while the other threads read random blocks of a hot file
//! of half the budget, read twice in order before the run. The work is fixed:
//! one pass over the file; readers run until it is done.

use super::{
    assemble, fixed_phase, read_back, timed_modify, timed_read, until_done, warm, Checker,
    FileSpec, Params, Roles, ThreadOut,
};
use crate::bench::block::{self, Rng};
use crate::bench::report::RunResult;
use crate::bench::store::Store;
use crate::CliError;

/// The readers' hot file: half the budget.
pub fn hot_blocks(frames: u64) -> u64 {
    frames / 2
}

const READERS: usize = 0;
const WRITER: usize = 1;
const HOT: usize = 0;
const STREAM: usize = 1;

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (htag, hn) = (specs[HOT].tag, specs[HOT].blocks);
    let (stag, sn) = (specs[STREAM].tag, specs[STREAM].blocks);
    let threads = p.threads.max(2);
    let mut check = Checker::default();
    for _ in 0..2 {
        warm(store, HOT, htag, hn, false, &mut check)?;
    }
    let mut ph = fixed_phase(store, threads, 1, p, |t, ctx| {
        let mut out = ThreadOut::<u64>::new(2);
        if t == 0 {
            // state: blocks written, from 0 on.
            for b in 0..sn {
                let done = until_done(ctx, &mut out, |o| {
                    timed_modify(
                        store,
                        &mut o.roles[WRITER],
                        &mut o.oom,
                        STREAM,
                        b,
                        &mut |page| block::fill(page, stag, b, 1),
                    )
                })?;
                if !done {
                    break;
                }
                out.state = b + 1;
                ctx.progress.set(t, b + 1);
            }
        } else {
            let mut rng = Rng::new(p.seed ^ t as u64);
            ctx.repeat(t, |buf| {
                let b = rng.below(hn);
                if timed_read(store, &mut out.roles[READERS], &mut out.oom, HOT, b, buf)?.is_some()
                {
                    out.check.check(buf, htag, b, 0, false);
                }
                Ok(())
            })?;
        }
        Ok(out)
    })?;
    store.sync(STREAM)?;
    let written = ph.outs[0].state;
    let mut rng = Rng::new(p.seed ^ 0x5EED);
    let sample: Vec<_> = (0..1024.min(written))
        .map(|_| (STREAM, stag, rng.below(written), 1))
        .collect();
    read_back(store, &sample, &mut check)?;
    Ok(assemble(
        p,
        policy,
        Roles(&["readers", "writers"]),
        &mut ph,
        check,
    ))
}
