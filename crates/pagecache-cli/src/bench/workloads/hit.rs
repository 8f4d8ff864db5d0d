//! `hit`: random 4 KiB reads of a working set that fits in the budget, after
//! one warming pass. Measures `read_at` (a copy), and for the library also the
//! zero-copy pin and a raw 4 KiB memcpy from the same arena (the floor).
//!
//! Each phase gets a share of `--duration`: reads ½, pins ¼, memcpy ¼ (the
//! kernel runs its reads for the same ½). Every 16th operation is timed, so
//! the clock does not dominate what is measured; throughput is ops over wall
//! time. Every copy is checked (header and last word; every 64th whole);
//! every pin checks the header it points at (every 64th: the whole page).

use std::time::Instant;

use super::{assemble, phase, Checker, FileSpec, Params, Roles, ThreadOut};
use crate::bench::block::{Rng, BLOCK};
use crate::bench::report::RunResult;
use crate::bench::store::{AlignedBuf, CacheStore, OpError, Store};
use crate::CliError;

/// The working set: half the budget.
pub fn blocks(frames: u64) -> u64 {
    frames / 2
}

const TIMED_EVERY: u64 = 16;

/// Reads every block once, checking it whole.
fn warm<S: Store>(store: &S, tag: u32, n: u64, check: &mut Checker) -> Result<(), CliError> {
    let mut buf = AlignedBuf::new(BLOCK);
    for b in 0..n {
        match store.read(0, b, buf.as_mut_slice()) {
            Ok(_) => check.check(buf.as_slice(), tag, b, 0, true),
            Err(OpError::Oom) => {}
            Err(OpError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

pub fn run<S: Store>(
    store: &S,
    cache: Option<&CacheStore>,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (tag, n) = (specs[0].tag, specs[0].blocks);
    let mut warm_check = Checker::default();
    warm(store, tag, n, &mut warm_check)?;
    let mut ph = phase(store, p.threads, p.duration.mul_f64(0.5), |t, ctx| {
        let mut out = ThreadOut::<()>::new(1);
        let mut rng = Rng::new(p.seed ^ t as u64);
        let mut buf = AlignedBuf::new(BLOCK);
        let buf = buf.as_mut_slice();
        let rec = &mut out.roles[0];
        let mut i = 0u64;
        loop {
            if i % 64 == 0 {
                ctx.progress.set(t, i);
                if ctx.done() {
                    break;
                }
            }
            let b = rng.below(n);
            let r = if i % TIMED_EVERY == 0 {
                let t0 = Instant::now();
                let r = store.read(0, b, buf);
                rec.latency(t0.elapsed().as_nanos() as u64);
                r
            } else {
                store.read(0, b, buf)
            };
            match r {
                Ok(hit) => {
                    rec.ops += 1;
                    rec.hit(hit);
                    out.check.check(buf, tag, b, 0, false);
                }
                Err(OpError::Oom) => out.oom += 1,
                Err(OpError::Fatal(e)) => return Err(e),
            }
            i += 1;
        }
        Ok(out)
    })?;
    let mut r = assemble(p, policy, Roles(&["readers"]), &mut ph, warm_check);
    if let Some(c) = cache {
        let (pin, pin_ok) = pins(c, p, tag, n)?;
        let (copy, copy_ok) = memcpy(c, p, tag, n)?;
        r.pin_ops_per_sec = Some(pin);
        r.memcpy_ops_per_sec = Some(copy);
        r.verified &= pin_ok && copy_ok;
    }
    Ok(r)
}

/// Zero-copy pins of random pages, checking each through the guard.
fn pins(c: &CacheStore, p: &Params, tag: u32, n: u64) -> Result<(f64, bool), CliError> {
    let file = &c.files[0];
    let ph = phase(c, p.threads, p.duration.mul_f64(0.25), |t, ctx| {
        let mut out = ThreadOut::<()>::new(1);
        let mut rng = Rng::new(p.seed ^ 0x100 ^ t as u64);
        let mut i = 0u64;
        loop {
            if i % 64 == 0 {
                ctx.progress.set(t, i);
                if ctx.done() {
                    break;
                }
            }
            let b = rng.below(n);
            match file.page(b) {
                Ok(g) => {
                    out.roles[0].ops += 1;
                    out.check.check_pinned(&g, tag, b, 0);
                }
                Err(e) => match OpError::from(e) {
                    OpError::Oom => out.oom += 1,
                    OpError::Fatal(e) => return Err(e),
                },
            }
            i += 1;
        }
        Ok(out)
    })?;
    Ok(rate(&ph))
}

/// Raw 4 KiB copies from the arena: every page of the working set pinned
/// once per thread, then copied from at random, with the same checks.
fn memcpy(c: &CacheStore, p: &Params, tag: u32, n: u64) -> Result<(f64, bool), CliError> {
    let file = &c.files[0];
    let ph = phase(c, p.threads, p.duration.mul_f64(0.25), |t, ctx| {
        let mut out = ThreadOut::<()>::new(1);
        let mut guards = Vec::with_capacity(n as usize);
        for b in 0..n {
            guards.push(file.page(b).map_err(CliError::Cache)?);
        }
        {
            let pages: Vec<&[u8]> = guards.iter().map(|g| &**g).collect();
            let mut rng = Rng::new(p.seed ^ 0x200 ^ t as u64);
            let mut buf = AlignedBuf::new(BLOCK);
            let buf = buf.as_mut_slice();
            let mut i = 0u64;
            loop {
                if i % 64 == 0 {
                    ctx.progress.set(t, i);
                    if ctx.done() {
                        break;
                    }
                }
                let b = rng.below(n);
                buf.copy_from_slice(std::hint::black_box(pages[b as usize]));
                out.roles[0].ops += 1;
                out.check.check(buf, tag, b, 0, false);
                i += 1;
            }
        }
        // Last pinned first: each unpin finds its entry at the end.
        while let Some(g) = guards.pop() {
            drop(g);
        }
        Ok(out)
    })?;
    Ok(rate(&ph))
}

fn rate<T>(ph: &super::Phase<T>) -> (f64, bool) {
    let ops: u64 = ph.outs.iter().map(|o| o.roles[0].ops).sum();
    let ok = ph.outs.iter().all(|o| o.check.failures == 0);
    (ops as f64 / ph.secs.max(1e-9), ok)
}
