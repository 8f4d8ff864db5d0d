//! `small-memcg`: M. Hocko's test for e62e384e9da8 (2012), `dd bs=1M` of
//! 1 GiB into a 5 MiB memory cgroup, where reclaim found nothing but dirty
//! pages and the cgroup's OOM killer fired. One thread writes a new file from
//! start to end, 1 MiB per write (a quarter of the budget if that is less),
//! into a budget of at most 8 MiB, then syncs it; both are the fixed work.
//! The dirty throttle looks once per write, so one write can dirty what is
//! left of the budget; without a reclaim throttle the allocator then has
//! nothing to wait on, and fails. A failed write is retried whole.

use super::{
    assemble, fixed_phase, read_back, timed_write, until_done, Checker, FileSpec, Params, Roles,
    ThreadOut,
};
use crate::bench::block::{self, Rng, BLOCK};
use crate::bench::report::RunResult;
use crate::bench::store::{AlignedBuf, Store};
use crate::CliError;

/// dd's block size.
const DD_BYTES: u64 = 1 << 20;

/// Blocks written: 128× the budget at work scale 1 (1 GiB into 8 MiB), never
/// less than 8× the budget.
pub fn blocks(p: &Params) -> u64 {
    ((128 * p.frames()) as f64 * p.work_scale).max((8 * p.frames()) as f64) as u64
}

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (tag, n) = (specs[0].tag, specs[0].blocks);
    let mut ph = fixed_phase(store, 1, 1, p, |t, ctx| {
        // state: blocks written.
        let mut out = ThreadOut::<u64>::new(1);
        let bs = (DD_BYTES / BLOCK as u64).min(p.frames() / 4).max(1);
        let mut buf = AlignedBuf::new(bs as usize * BLOCK);
        let mut b = 0;
        while b < n {
            let len = bs.min(n - b);
            let bytes = &mut buf.as_mut_slice()[..len as usize * BLOCK];
            for (i, chunk) in bytes.chunks_exact_mut(BLOCK).enumerate() {
                block::fill(chunk, tag, b + i as u64, 1);
            }
            let done = until_done(ctx, &mut out, |o| {
                timed_write(store, &mut o.roles[0], &mut o.oom, 0, b, bytes)
            })?;
            if !done {
                break;
            }
            b += len;
            out.state = b;
            ctx.progress.set(t, b);
        }
        store.sync(0)?;
        Ok(out)
    })?;
    let written = ph.outs[0].state;
    let mut rng = Rng::new(p.seed ^ 0xDD);
    let sample: Vec<_> = (0..1024.min(written))
        .map(|_| (0, tag, rng.below(written), 1))
        .collect();
    let mut check = Checker::default();
    read_back(store, &sample, &mut check)?;
    Ok(assemble(p, policy, Roles(&["writers"]), &mut ph, check))
}
