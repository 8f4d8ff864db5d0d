//! `scan`: a hot set of half the budget read at random, interleaved one for
//! one with a sequential scan of a file 4× the budget. Operations follow a
//! shared ticket sequence — even tickets read a hot block chosen by hashing
//! the ticket, odd tickets read the next scan block — so the access trace is
//! a function of the number of tickets and an exact LRU of the same size can
//! be simulated on it. The hot set is read twice, in order, before the run
//! (and before the simulation). The figure of merit is the hot set's hit ratio.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{assemble, phase, timed_read, warm, Checker, FileSpec, Params, Roles, ThreadOut};
use crate::bench::block::hash;
use crate::bench::lru_sim::Lru;
use crate::bench::report::RunResult;
use crate::bench::store::Store;
use crate::CliError;

pub fn hot_blocks(frames: u64) -> u64 {
    frames / 2
}

pub fn scan_blocks(frames: u64) -> u64 {
    frames * 4
}

const HOT: usize = 0;
const SCAN: usize = 1;

/// The access of ticket `t`: (file, block).
fn access(t: u64, seed: u64, hot: u64, scan: u64) -> (usize, u64) {
    if t % 2 == 1 {
        (SCAN, (t / 2) % scan)
    } else {
        (HOT, hash(t ^ seed) % hot)
    }
}

/// Hot-set hit ratio of an exact LRU of `frames` pages over the warm-up and
/// tickets `0..tickets`.
pub fn lru_hot_hit_ratio(frames: u64, hot: u64, scan: u64, seed: u64, tickets: u64) -> f64 {
    let mut lru = Lru::new(frames as usize);
    let key = |file: usize, b: u64| (file as u64) << 48 | b;
    for _ in 0..2 {
        for b in 0..hot {
            lru.access(key(HOT, b));
        }
    }
    let (mut hits, mut total) = (0u64, 0u64);
    for t in 0..tickets {
        let (f, b) = access(t, seed, hot, scan);
        let hit = lru.access(key(f, b));
        if f == HOT {
            total += 1;
            hits += hit as u64;
        }
    }
    if total == 0 {
        1.0
    } else {
        hits as f64 / total as f64
    }
}

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (htag, hot) = (specs[HOT].tag, specs[HOT].blocks);
    let (stag, scan) = (specs[SCAN].tag, specs[SCAN].blocks);
    let mut warm_check = Checker::default();
    for _ in 0..2 {
        warm(store, HOT, htag, hot, false, &mut warm_check)?;
    }
    let tickets = AtomicU64::new(0);
    let mut ph = phase(store, p.threads, p.duration, |t, ctx| {
        let mut out = ThreadOut::<()>::new(2);
        ctx.repeat(t, |buf| {
            let ticket = tickets.fetch_add(1, Ordering::Relaxed);
            let (f, b) = access(ticket, p.seed, hot, scan);
            let tag = if f == HOT { htag } else { stag };
            if timed_read(store, &mut out.roles[f], &mut out.oom, f, b, buf)?.is_some() {
                out.check.check(buf, tag, b, 0, false);
            }
            Ok(())
        })?;
        Ok(out)
    })?;
    let mut r = assemble(p, policy, Roles(&["readers", "scan"]), &mut ph, warm_check);
    r.hot_hit_ratio = r.roles.get("readers").and_then(|x| x.hit_ratio);
    r.lru_hit_ratio = Some(lru_hot_hit_ratio(
        p.frames(),
        hot,
        scan,
        p.seed,
        tickets.load(Ordering::Relaxed),
    ));
    Ok(r)
}
