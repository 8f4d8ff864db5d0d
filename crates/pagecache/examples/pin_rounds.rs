//! How steady the zero-copy pin's lead over the kernel's `pread` is: in
//! short alternating rounds, 2 threads pin random pages of a resident working
//! set (half the budget), then `pread` random 4 KiB blocks of a cached file
//! of the same size, then follow a chain of dependent loads through a buffer
//! of the same size (one line per 4 KiB page, as a pin's first touch), then
//! do random atomic adds, and random loads, on one line per page of the
//! working set (each thread its own half, so no line is shared): the last
//! three involve neither the library nor the kernel. A row per round, then
//! the spread. Every pin and every read is checked.
//!
//! On a shared host, RMWs on lines outside the core's own cache slow down
//! for seconds at a time while loads of the same lines do not. A pin holds
//! its frame by a hazard slot in its thread's own line and only reads the
//! frame's line (`frame/hazard.rs`), so it should not move with the RMWs;
//! a pin that took the frame's read lock (two RMWs on that line) ran at
//! half speed in those rounds. A `pread`, mostly system call, moves less.
//! Rounds where the RMWs halve show the machine's slow stretches; pins
//! that move with the loads and the chain, not with the RMWs, show the
//! code does not depend on them.
//!
//! Run: `cargo run --release -p pagecache --example pin_rounds -- 64 20`
//! (budget in MiB, rounds).

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pagecache::{Config, File, MemBackend, PageCache};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const PS: u64 = 4096;
const THREADS: u64 = 2;
const PHASE: Duration = Duration::from_millis(250);

/// Operations per second of wall time over all threads, each running `op`
/// (given its thread number) for `PHASE`.
fn rate(op: impl Fn(u64, &mut Rng) -> bool + Sync) -> Result<f64, String> {
    let per_thread = std::thread::scope(|s| {
        let op = &op;
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((t + 1) * 7919));
                    let t0 = Instant::now();
                    let mut ops = 0u64;
                    while t0.elapsed() < PHASE {
                        for _ in 0..256 {
                            if !op(t, &mut rng) {
                                return Err("a page read back wrong".to_string());
                            }
                            ops += 1;
                        }
                    }
                    Ok(ops as f64 / t0.elapsed().as_secs_f64())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().map_err(|_| "a thread panicked".to_string())?)
            .collect::<Result<Vec<f64>, String>>()
    })?;
    Ok(per_thread.iter().sum())
}

fn holds(page: &[u8], b: u64) -> bool {
    page[..8] == b.to_le_bytes()
}

/// One cycle through `n` pages, visiting each page's first word once, in
/// random order (Sattolo's shuffle): `next[page * words]` is where to go next.
fn chain(n: u64, seed: u64) -> Vec<u64> {
    let words = PS / 8;
    let mut order: Vec<u64> = (0..n).collect();
    let mut rng = Rng(seed);
    for i in (1..n).rev() {
        order.swap(i as usize, rng.below(i) as usize);
    }
    let mut next = vec![0u64; (n * words) as usize];
    for k in 0..n as usize {
        next[(order[k] * words) as usize] = order[(k + 1) % n as usize] * words;
    }
    next
}

/// Nanoseconds per dependent load through `next`, one thread per chain.
fn chase(chains: &[Vec<u64>]) -> Result<f64, String> {
    let loads = rate(|t, rng| {
        let next = &chains[t as usize];
        // From a random page, so that the walk covers the whole chain.
        let mut at = rng.below(next.len() as u64 / (PS / 8)) * (PS / 8);
        for _ in 0..64 {
            at = next[at as usize];
        }
        std::hint::black_box(at);
        true
    })?;
    Ok(1e9 * THREADS as f64 / (loads * 64.0))
}

/// Atomic adds (`rmw`) or loads of random lines of `lines`, thread `t`
/// on every other line from its own offset; per second, all threads.
fn touch(lines: &[AtomicU64], rmw: bool) -> Result<f64, String> {
    rate(|t, rng| {
        let n = lines.len() as u64 / 8 / THREADS;
        let line = &lines[((rng.below(n) * THREADS + t) * 8) as usize];
        if rmw {
            line.fetch_add(1, Ordering::AcqRel);
        } else {
            std::hint::black_box(line.load(Ordering::Acquire));
        }
        true
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn run(budget_mib: u64, rounds: usize) -> Result<(), String> {
    let cache = PageCache::new(Config::new((budget_mib << 20) as usize))
        .map_err(|e| format!("cannot make a cache of {budget_mib} MiB: {e}"))?;
    let file: File = cache
        .open_backend(MemBackend::new())
        .map_err(|e| e.to_string())?;
    let n = (budget_mib << 20) / PS / 2;
    let dir = tempfile_dir()?;
    let path = dir.join("pin-rounds.dat");
    let kernel = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut page = vec![0u8; PS as usize];
    for b in 0..n {
        page[..8].copy_from_slice(&b.to_le_bytes());
        file.write_at(&page, b * PS).map_err(|e| e.to_string())?;
        kernel
            .write_all_at(&page, b * PS)
            .map_err(|e| e.to_string())?;
    }
    file.sync().map_err(|e| e.to_string())?;
    for b in 0..n {
        kernel
            .read_exact_at(&mut page, b * PS)
            .map_err(|e| e.to_string())?;
    }
    let chains: Vec<_> = (0..THREADS).map(|t| chain(n, 0x5EED + t)).collect();
    // One line per page, like the frames' headers.
    let lines: Vec<AtomicU64> = (0..n * 8).map(|_| AtomicU64::new(0)).collect();

    println!("{n} pages resident, {THREADS} threads, {PHASE:?} per phase");
    println!("round   pins/s   pread/s  pin ×pread  chain ns/load    rmw/s   load/s");
    let (mut ratios, mut pins, mut lats) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rmws, mut loads) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let pin = rate(|_, rng| {
            let b = rng.below(n);
            file.page(b).is_ok_and(|g| holds(&g, b))
        })?;
        let pread = rate(|_, rng| {
            let b = rng.below(n);
            let mut buf = [0u8; PS as usize];
            kernel.read_exact_at(&mut buf, b * PS).is_ok() && holds(&buf, b)
        })?;
        let ns = chase(&chains)?;
        let rmw = touch(&lines, true)?;
        let load = touch(&lines, false)?;
        println!(
            "{round:>5} {:>7.2}M {:>8.2}M {:>10.1}× {:>14.0} {:>7.0}M {:>7.0}M",
            pin / 1e6,
            pread / 1e6,
            pin / pread,
            ns,
            rmw / 1e6,
            load / 1e6
        );
        rmws.push(rmw);
        loads.push(load);
        ratios.push(pin / pread);
        pins.push(pin);
        lats.push(ns);
    }
    let _ = std::fs::remove_file(&path);
    let spread = |v: &mut Vec<f64>| (median(v), v[0], v[v.len() - 1]);
    let (rm, rlo, rhi) = spread(&mut ratios);
    let (pm, plo, phi) = spread(&mut pins);
    let (lm, llo, lhi) = spread(&mut lats);
    println!("pin ×pread: median {rm:.1}×, range {rlo:.1}–{rhi:.1}×");
    println!(
        "pins/s: median {:.2}M, range {:.2}–{:.2}M",
        pm / 1e6,
        plo / 1e6,
        phi / 1e6
    );
    println!("chain: median {lm:.0} ns, range {llo:.0}–{lhi:.0} ns");
    for (name, v) in [("rmw/s", &mut rmws), ("load/s", &mut loads)] {
        let (m, lo, hi) = spread(v);
        println!(
            "{name}: median {:.0}M, range {:.0}–{:.0}M",
            m / 1e6,
            lo / 1e6,
            hi / 1e6
        );
    }
    Ok(())
}

/// Where the kernel's file goes: `TMPDIR` if set, else `/var/tmp` (on disk,
/// so its pages are the page cache's, not tmpfs's).
fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let dir = std::env::var_os("TMPDIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("/var/tmp"));
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(format!("{} is not a directory: set TMPDIR", dir.display()))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let parse = |a: Option<String>, default: u64, what: &str| -> Result<u64, String> {
        match a {
            None => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(format!("{what} must be a positive integer, got {s:?}")),
            },
        }
    };
    let result = parse(args.next(), 64, "budget (MiB)")
        .and_then(|mib| Ok((mib, parse(args.next(), 20, "rounds")?)))
        .and_then(|(mib, rounds)| run(mib, rounds as usize));
    if let Err(e) = result {
        eprintln!("pin_rounds: {e}");
        std::process::exit(1);
    }
}
