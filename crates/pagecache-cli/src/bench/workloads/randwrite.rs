//! `randwrite`: random whole-block overwrites over a file 4× the budget.
//! Thread `t` owns the blocks `b ≡ t (mod threads)`, so it knows the version
//! of each; after the run the file is synced and a sample read back.

use super::{assemble, phase, read_back, timed_write, Checker, FileSpec, Params, Roles, ThreadOut};
use crate::bench::block::{self, Rng};
use crate::bench::report::RunResult;
use crate::bench::store::Store;
use crate::CliError;

/// A writer thread's output, with one version slot per block it owns (the
/// blocks `b < n` with `b % threads == t`), and how many that is.
pub fn owner_out(roles: usize, n: u64, threads: usize, t: usize) -> (ThreadOut<Vec<u32>>, u64) {
    let mut out = ThreadOut::<Vec<u32>>::new(roles);
    let owned = owned(n, threads, t);
    out.state = vec![0u32; owned as usize];
    (out, owned)
}

/// Blocks `b < n` with `b % threads == t`.
pub fn owned(n: u64, threads: usize, t: usize) -> u64 {
    let (th, t) = (threads as u64, t as u64);
    if t >= n {
        0
    } else {
        (n - t).div_ceil(th)
    }
}

/// Blocks read back after the run, per thread.
pub const READ_BACK: usize = 512;

/// Picks blocks to read back: random ones a thread wrote, with their versions.
fn sample(
    versions: &[Vec<u32>],
    threads: usize,
    file: usize,
    tag: u32,
    seed: u64,
) -> Vec<(usize, u32, u64, u32)> {
    let mut out = Vec::new();
    for (t, vs) in versions.iter().enumerate() {
        if vs.is_empty() {
            continue;
        }
        let mut rng = Rng::new(seed ^ 0xBAC ^ t as u64);
        for _ in 0..READ_BACK.min(vs.len()) {
            let k = rng.below(vs.len() as u64);
            out.push((file, tag, k * threads as u64 + t as u64, vs[k as usize]));
        }
    }
    out
}

/// Syncs file 0 and reads back a sample of the blocks each thread wrote, at
/// the versions it last wrote.
pub fn sync_and_read_back<S: Store>(
    store: &S,
    outs: &[ThreadOut<Vec<u32>>],
    threads: usize,
    tag: u32,
    seed: u64,
) -> Result<Checker, CliError> {
    store.sync(0)?;
    let versions: Vec<Vec<u32>> = outs.iter().map(|o| o.state.clone()).collect();
    let mut check = Checker::default();
    read_back(store, &sample(&versions, threads, 0, tag, seed), &mut check)?;
    Ok(check)
}

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (tag, n) = (specs[0].tag, specs[0].blocks);
    let threads = p.threads;
    let mut ph = phase(store, threads, p.duration, |t, ctx| {
        let (mut out, owned) = owner_out(1, n, threads, t);
        if owned == 0 {
            return Ok(out);
        }
        let mut rng = Rng::new(p.seed ^ t as u64);
        ctx.repeat(t, |buf| {
            let k = rng.below(owned);
            let b = k * threads as u64 + t as u64;
            let v = out.state[k as usize] + 1;
            block::fill(buf, tag, b, v);
            if timed_write(store, &mut out.roles[0], &mut out.oom, 0, b, buf)? {
                out.state[k as usize] = v;
            }
            Ok(())
        })?;
        Ok(out)
    })?;
    let check = sync_and_read_back(store, &ph.outs, threads, tag, p.seed)?;
    Ok(assemble(p, policy, Roles(&["writers"]), &mut ph, check))
}
