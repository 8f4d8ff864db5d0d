//! `hit`: random 4 KiB reads of a working set that fits in the budget, after
//! one warming pass. Measures `read_at` (a copy), and for the library also the
//! zero-copy pin and a raw 4 KiB memcpy from the same arena (the floor).
//!
//! Each phase gets a share of `--duration`: reads ½, pins ¼, memcpy ¼ (the
//! kernel runs its reads for the same ½), alternating in rounds of about a
//! second. Every 16th operation is timed and classified as a hit or a miss, so
//! the clock does not dominate what is measured; throughput is ops over wall
//! time. Every copy is checked (header and last word; every 1024th whole);
//! every pin checks the header it points at (every 1024th: the whole page).

use std::time::{Duration, Instant};

use super::pinned::with_pinned;
use super::{assemble, phase, warm, Checker, FileSpec, Params, Phase, Roles, ThreadOut};
use crate::bench::block::{Rng, BLOCK};
use crate::bench::report::RunResult;
use crate::bench::store::{AlignedBuf, CacheStore, OpError, Store};
use crate::CliError;

/// The working set: half the budget.
pub fn blocks(frames: u64) -> u64 {
    frames / 2
}

const TIMED_EVERY: u64 = 16;

pub fn run<S: Store>(
    store: &S,
    cache: Option<&CacheStore>,
    specs: &[FileSpec],
    p: &Params,
    policy: &str,
) -> Result<RunResult, CliError> {
    let (tag, n) = (specs[0].tag, specs[0].blocks);
    let mut warm_check = Checker::default();
    warm(store, 0, tag, n, true, &mut warm_check)?;
    // Phases alternate in rounds of about a second, so that a disturbance
    // from elsewhere on the machine hits all three alike.
    let rounds = (p.duration.as_secs_f64().round() as u32).clamp(1, 30);
    let slice = p.duration / rounds;
    let before = store.snapshot();
    let mut main: Option<Phase<()>> = None;
    let (mut pin_ops, mut pin_secs, mut copy_ops, mut copy_secs) = (0, 0.0, 0, 0.0);
    let mut extra_ok = true;
    for round in 0..rounds {
        let ph = reads(store, p, tag, n, slice.mul_f64(0.5), round)?;
        match main.as_mut() {
            None => main = Some(ph),
            Some(m) => {
                let offset = m.secs;
                m.outs.extend(ph.outs);
                m.secs += ph.secs;
                m.timeline.extend(ph.timeline.into_iter().map(|mut x| {
                    x.t += offset;
                    x
                }));
            }
        }
        if let Some(c) = cache {
            let (ops, secs, ok) = pins(c, p, tag, n, slice.mul_f64(0.25), round)?;
            pin_ops += ops;
            pin_secs += secs;
            extra_ok &= ok;
            let (ops, secs, ok) = memcpy(c, p, tag, n, slice.mul_f64(0.25), round)?;
            copy_ops += ops;
            copy_secs += secs;
            extra_ok &= ok;
        }
    }
    let mut ph = main.ok_or_else(|| CliError::Check("no hit round ran".into()))?;
    ph.delta = store.snapshot().since(&before);
    let mut r = assemble(p, policy, Roles(&["readers"]), &mut ph, warm_check);
    r.threads = p.threads;
    if cache.is_some() {
        r.pin_ops_per_sec = Some(pin_ops as f64 / pin_secs.max(1e-9));
        r.memcpy_ops_per_sec = Some(copy_ops as f64 / copy_secs.max(1e-9));
        r.verified &= extra_ok;
    }
    Ok(r)
}

/// Copying reads (`read_at`, or `pread` for the kernel) of random blocks.
fn reads<S: Store>(
    store: &S,
    p: &Params,
    tag: u32,
    n: u64,
    d: Duration,
    round: u32,
) -> Result<Phase<()>, CliError> {
    phase(store, p.threads, d, |t, ctx| {
        let mut out = ThreadOut::<()>::new(1);
        let mut rng = Rng::new(p.seed ^ t as u64 ^ (round as u64) << 32);
        let mut buf = AlignedBuf::new(BLOCK);
        let buf = buf.as_mut_slice();
        let rec = &mut out.roles[0];
        let mut i = 0u64;
        while !ctx.check_in(t, i) {
            let b = rng.below(n);
            // The sampled operation is also the one whose hit or miss is
            // counted: telling them apart costs the store two looks at its
            // counters, which the memcpy floor does not pay either.
            let r = if i % TIMED_EVERY == 0 {
                let t0 = Instant::now();
                let r = store.read(0, b, buf);
                rec.latency(t0.elapsed().as_nanos() as u64);
                r.map(Some)
            } else {
                store.read_unclassified(0, b, buf).map(|()| None)
            };
            match r {
                Ok(hit) => {
                    rec.ops += 1;
                    if let Some(hit) = hit {
                        rec.hit(hit);
                    }
                    out.check.check(buf, tag, b, 0, false);
                }
                Err(OpError::Oom) => out.oom += 1,
                Err(OpError::Fatal(e)) => return Err(e),
            }
            i += 1;
        }
        Ok(out)
    })
}

/// Zero-copy pins of random pages, checking each through the guard.
fn pins(
    c: &CacheStore,
    p: &Params,
    tag: u32,
    n: u64,
    d: Duration,
    round: u32,
) -> Result<(u64, f64, bool), CliError> {
    let file = &c.files[0];
    let ph = phase(c, p.threads, d, |t, ctx| {
        let mut out = ThreadOut::<()>::new(1);
        let mut rng = Rng::new(p.seed ^ 0x100 ^ t as u64 ^ (round as u64) << 32);
        let mut i = 0u64;
        while !ctx.check_in(t, i) {
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
/// (`with_pinned`), then copied from at random by every thread, with the same
/// checks. Each thread times its own copy loop, so pinning is not counted.
fn memcpy(
    c: &CacheStore,
    p: &Params,
    tag: u32,
    n: u64,
    d: Duration,
    round: u32,
) -> Result<(u64, f64, bool), CliError> {
    let ph = with_pinned(&c.files[0], n, |pages| {
        phase(c, p.threads, d, |t, ctx| {
            let mut out = ThreadOut::<f64>::new(1);
            let mut rng = Rng::new(p.seed ^ 0x200 ^ t as u64 ^ (round as u64) << 32);
            let mut buf = AlignedBuf::new(BLOCK);
            let buf = buf.as_mut_slice();
            let start = Instant::now();
            let deadline = start + d;
            let mut i = 0u64;
            loop {
                if i % 64 == 0 {
                    ctx.progress.set(t, i);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let b = rng.below(n);
                buf.copy_from_slice(std::hint::black_box(pages[b as usize]));
                out.roles[0].ops += 1;
                out.check.check(buf, tag, b, 0, false);
                i += 1;
            }
            out.state = start.elapsed().as_secs_f64();
            Ok(out)
        })
    })?;
    let ops: u64 = ph.outs.iter().map(|o| o.roles[0].ops).sum();
    let ok = ph.outs.iter().all(|o| o.check.failures == 0);
    let secs = ph.outs.iter().map(|o| o.state).sum::<f64>() / ph.outs.len().max(1) as f64;
    Ok((ops, secs, ok))
}

/// (ops, seconds, all checks passed) of a phase.
fn rate<T>(ph: &Phase<T>) -> (u64, f64, bool) {
    let ops: u64 = ph.outs.iter().map(|o| o.roles[0].ops).sum();
    let ok = ph.outs.iter().all(|o| o.check.failures == 0);
    (ops, ph.secs, ok)
}
