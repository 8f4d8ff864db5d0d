//! `buffer-pool`: a database buffer pool that lets most of its pages be dirty
//! (InnoDB's `innodb_max_dirty_pages_pct` 90; PostgreSQL backends that call
//! `FlushBuffer` themselves). Writer threads update pages in place — read,
//! check, modify through a `page_mut` guard — picked from a scrambled zipfian
//! distribution (θ 0.99) over a file 4× the budget; each owns the blocks
//! `b ≡ t (mod writers)` so it knows every version. Reader threads read pages
//! from the same distribution (checking each is whole and self-consistent)
//! until the writers have made their fixed number of updates.

use super::mixed::Zipf;
use super::randwrite::{owner_out, sync_and_read_back};
use super::{
    assemble, fixed_phase, timed_modify, timed_read, until_done, FileSpec, Params, Roles, ThreadOut,
};
use crate::bench::block::{self, hash, Rng};
use crate::bench::report::RunResult;
use crate::bench::store::{OpError, Store};
use crate::CliError;

const READERS: usize = 0;
const WRITERS: usize = 1;

/// Updates all writers make together: sixteen times the budget's pages.
/// The pool starts cold, and under a zipfian choice the first few times the
/// budget's updates mostly fill it: dirty pages start to reach the LRU tail
/// only towards the end of them. With four times the budget, the run was
/// that filling, the policies differed by less than the device's noise
/// from one run to the next (legacy/offload elapsed 0.92–1.29), and legacy
/// had made only about 3,300 reclaim writes; with sixteen times, most of
/// the run is the steady state the workload models (legacy about 32,000
/// reclaim writes and elapsed 1.25–1.45× offload's in four alternating
/// runs, `pagecache bench --workload buffer-pool`).
pub fn updates(p: &Params) -> u64 {
    16 * p.frames()
}

/// Buffered reads and writes of the kernel are not atomic against each
/// other: a read racing an update can see part of each version. A block that
/// is not self-consistent is read again, yielding between reads, before it
/// counts as wrong (the library's reads are, and pass the first time). A
/// few times were not enough on a loaded machine, where the writer can be
/// in the middle of the same block's next update at each look; a block that
/// is really wrong stays wrong however often it is read.
fn settle<S: Store>(store: &S, b: u64, tag: u32, buf: &mut [u8]) -> Result<(), CliError> {
    for _ in 0..64 {
        if block::check_light(buf, tag, b, block::version(buf)).is_ok() {
            break;
        }
        std::thread::yield_now();
        match store.read(0, b, buf) {
            Ok(_) | Err(OpError::Oom) => {}
            Err(OpError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (tag, n) = (specs[0].tag, specs[0].blocks);
    let threads = p.threads.max(2);
    let writers = (threads / 2).max(1);
    let per_writer = updates(p).div_ceil(writers as u64);
    let mut ph = fixed_phase(store, threads, writers, p, |t, ctx| {
        if t >= writers {
            let mut out = ThreadOut::<Vec<u32>>::new(2);
            let zipf = Zipf::new(n, 0.99);
            let mut rng = Rng::new(p.seed ^ t as u64);
            ctx.repeat(t, |buf| {
                let b = hash(zipf.next(&mut rng) ^ p.seed) % n;
                if timed_read(store, &mut out.roles[READERS], &mut out.oom, 0, b, buf)?.is_some() {
                    settle(store, b, tag, buf)?;
                    out.check.check(buf, tag, b, block::version(buf), false);
                }
                Ok(())
            })?;
            return Ok(out);
        }
        let (mut out, owned) = owner_out(2, n, writers, t);
        if owned == 0 {
            return Ok(out);
        }
        let zipf = Zipf::new(owned, 0.99);
        let mut rng = Rng::new(p.seed ^ t as u64);
        for i in 0..per_writer {
            let k = hash(zipf.next(&mut rng) ^ p.seed) % owned;
            let b = k * writers as u64 + t as u64;
            let v = out.state[k as usize];
            let done = until_done(ctx, &mut out, |o| {
                timed_modify(
                    store,
                    &mut o.roles[WRITERS],
                    &mut o.oom,
                    0,
                    b,
                    &mut |page| {
                        o.check.check(page, tag, b, v, false);
                        block::fill(page, tag, b, v + 1);
                    },
                )
            })?;
            if !done {
                break;
            }
            out.state[k as usize] = v + 1;
            ctx.progress.set(t, i + 1);
        }
        Ok(out)
    })?;
    // Readers' outputs have no versions: only the writers' are read back.
    let check = sync_and_read_back(store, &ph.outs[..writers], writers, tag, p.seed)?;
    Ok(assemble(
        p,
        policy,
        Roles(&["readers", "writers"]),
        &mut ph,
        check,
    ))
}
