//! `mixed`: YCSB-A-like. Each thread owns the blocks `b ≡ t (mod threads)` of
//! a file 4× the budget and picks one of them from a scrambled zipfian
//! distribution (θ = 0.99); half the operations read it (and check its
//! version), half overwrite it with the next version.

use super::randwrite::{owner_out, sync_and_read_back};
use super::{assemble, phase, timed_read, timed_write, FileSpec, Params, Roles};
use crate::bench::block::{self, hash, Rng};
use crate::bench::report::RunResult;
use crate::bench::store::Store;
use crate::CliError;

/// YCSB's zipfian generator (Gray et al., "Quickly generating billion-record
/// synthetic databases") over `0..n`.
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    pub fn new(n: u64, theta: f64) -> Self {
        let n = n.max(1);
        let zeta = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2.min(n));
        let eta = if n > 2 {
            (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan)
        } else {
            1.0
        };
        Zipf {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        }
    }

    /// A rank: 0 is the most popular.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let r = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.n - 1)
    }
}

const READERS: usize = 0;
const WRITERS: usize = 1;

pub fn run<S: Store>(
    store: &S,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (tag, n) = (specs[0].tag, specs[0].blocks);
    let threads = p.threads;
    let mut ph = phase(store, threads, p.duration, |t, ctx| {
        let (mut out, owned) = owner_out(2, n, threads, t);
        if owned == 0 {
            return Ok(out);
        }
        let zipf = Zipf::new(owned, 0.99);
        let mut rng = Rng::new(p.seed ^ t as u64);
        ctx.repeat(t, |buf| {
            // Scramble ranks so the popular blocks are spread over the file.
            let k = hash(zipf.next(&mut rng) ^ p.seed) % owned;
            let b = k * threads as u64 + t as u64;
            let v = out.state[k as usize];
            if rng.next_u64() & 1 == 0 {
                if timed_read(store, &mut out.roles[READERS], &mut out.oom, 0, b, buf)?.is_some() {
                    out.check.check(buf, tag, b, v, false);
                }
            } else {
                block::fill(buf, tag, b, v + 1);
                if timed_write(store, &mut out.roles[WRITERS], &mut out.oom, 0, b, buf)? {
                    out.state[k as usize] = v + 1;
                }
            }
            Ok(())
        })?;
        Ok(out)
    })?;
    let check = sync_and_read_back(store, &ph.outs, threads, tag, p.seed)?;
    Ok(assemble(
        p,
        policy,
        Roles(&["readers", "writers"]),
        &mut ph,
        check,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = Rng::new(1);
        let mut top = 0;
        for _ in 0..10_000 {
            let r = z.next(&mut rng);
            assert!(r < 1000);
            if r < 10 {
                top += 1;
            }
        }
        assert!(top > 2_000, "{top}");
    }
}
