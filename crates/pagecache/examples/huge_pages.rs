//! What transparent huge pages give the hit path: `read_at`, zero-copy pins
//! and a raw 4 KiB memcpy from the arena (the floor) over a resident working
//! set of half the budget, with `Config::huge_pages` on and off in
//! alternating rounds, and the kernel's `pread` of a cached file of the same
//! size. Rates are operations per second of the thread's own CPU time, so a
//! busy machine taking the core away does not count; the medians print as a
//! table row per setting. Every read is checked.
//!
//! Run: `cargo run --release -p pagecache --example huge_pages -- 4096 3 1`
//! (budget in MiB, rounds, CPU seconds per phase).

use std::os::unix::fs::FileExt;

use pagecache::{Config, File, MemBackend, PageCache};

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

const PS: u64 = 4096;

/// This thread's CPU time in seconds.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Operations per CPU-second of `op`, run for `secs` of CPU time.
fn rate(secs: f64, mut op: impl FnMut() -> bool) -> Result<f64, String> {
    let t0 = cpu_secs();
    let mut ops = 0u64;
    loop {
        for _ in 0..1024 {
            if !op() {
                return Err("a page read back wrong".into());
            }
            ops += 1;
        }
        let t = cpu_secs() - t0;
        if t >= secs {
            return Ok(ops as f64 / t);
        }
    }
}

fn holds(page: &[u8], b: u64) -> bool {
    page[..8] == b.to_le_bytes()
}

/// Runs `work` over pages `0..n` pinned at once. A thread's `page` call
/// checks the guards that thread holds, so each thread of a chain pins
/// 512 pages and hands on, and the last does the work.
fn with_pinned<R: Send>(
    file: &File,
    from: u64,
    n: u64,
    above: &[&[&[u8]]],
    work: &(dyn Fn(&[&[u8]]) -> R + Sync),
) -> Result<R, Box<dyn std::error::Error + Send + Sync>> {
    let to = (from + 512).min(n);
    let mut guards = Vec::new();
    for b in from..to {
        guards.push(file.page(b)?);
    }
    let mine: Vec<&[u8]> = guards.iter().map(|g| &**g).collect();
    let mut chunks = above.to_vec();
    chunks.push(&mine);
    let r = if to >= n {
        Ok(work(&chunks.concat()))
    } else {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(s, || with_pinned(file, to, n, &chunks, work))?
                .join()
                .map_err(|_| "a pinning thread panicked")?
        })
    };
    drop(mine);
    while let Some(g) = guards.pop() {
        drop(g);
    }
    r
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Rates = [f64; 4];

/// One round at one setting: (read_at, pin, memcpy, kernel pread) per CPU-s.
fn round(
    budget: usize,
    huge: bool,
    n: u64,
    secs: f64,
    seed: u64,
    kernel: &std::fs::File,
) -> Result<Rates, Box<dyn std::error::Error + Send + Sync>> {
    let cache = PageCache::new(Config::new(budget).huge_pages(huge))?;
    let file = cache.open_backend(MemBackend::new())?;
    let mut chunk = vec![0u8; 256 * PS as usize];
    for start in (0..n).step_by(256) {
        let end = (start + 256).min(n);
        for b in start..end {
            let at = ((b - start) * PS) as usize;
            chunk[at..at + 8].copy_from_slice(&b.to_le_bytes());
        }
        file.write_at(&chunk[..((end - start) * PS) as usize], start * PS)?;
    }
    file.sync()?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let mut buf = vec![0u8; PS as usize];
    let read_at = rate(secs, || {
        let b = rng.below(n);
        file.read_at(&mut buf, b * PS).is_ok() && holds(&buf, b)
    })?;
    let pin = rate(secs, || {
        let b = rng.below(n);
        file.page(b).is_ok_and(|g| holds(&g, b))
    })?;
    let memcpy = with_pinned(&file, 0, n, &[], &|pages: &[&[u8]]| {
        let mut rng = Rng(0x5151_5151 ^ seed);
        let mut buf = vec![0u8; PS as usize];
        rate(secs, || {
            let b = rng.below(n);
            buf.copy_from_slice(std::hint::black_box(pages[b as usize]));
            holds(&buf, b)
        })
    })??;
    let pread = rate(secs, || {
        let b = rng.below(n);
        kernel.read_exact_at(&mut buf, b * PS).is_ok() && holds(&buf, b)
    })?;
    Ok([read_at, pin, memcpy, pread])
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: &str| args.get(i).map_or(d.to_string(), Clone::clone);
    let mib: usize = arg(0, "1024").parse()?;
    let rounds: usize = arg(1, "3").parse()?;
    let secs: f64 = arg(2, "1").parse()?;
    let budget = mib << 20;
    let n = (budget as u64 / PS / 2).max(1);
    // The kernel's side: a file of the same pages, all in its page cache
    // (written through it just now).
    let dir = tempfile::tempdir()?;
    let kernel = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("pread"))?;
    let mut page = vec![0u8; PS as usize];
    for b in 0..n {
        page[..8].copy_from_slice(&b.to_le_bytes());
        kernel.write_all_at(&page, b * PS)?;
    }
    let mut runs: Vec<(bool, Rates)> = Vec::new();
    for r in 0..rounds {
        for huge in [true, false] {
            let x = round(budget, huge, n, secs, r as u64, &kernel)?;
            eprintln!(
                "round {r} huge pages {huge}: read_at {:.0} pin {:.0} memcpy {:.0} pread {:.0} per CPU-s",
                x[0], x[1], x[2], x[3]
            );
            runs.push((huge, x));
        }
    }
    println!("| budget | huge pages | read_at/s | pin/s | memcpy/s | read_at cost | kernel pread/s | read_at ×kernel |");
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for huge in [true, false] {
        let col = |i: usize| {
            median(
                runs.iter()
                    .filter(|r| r.0 == huge)
                    .map(|r| r.1[i])
                    .collect(),
            )
        };
        let (rd, pin, mc, kr) = (col(0), col(1), col(2), col(3));
        println!(
            "| {mib} MiB | {} | {:.2}M | {:.2}M | {:.2}M | {:.2} | {:.2}M | {:.2}× |",
            if huge { "on" } else { "off" },
            rd / 1e6,
            pin / 1e6,
            mc / 1e6,
            mc / rd,
            kr / 1e6,
            rd / kr
        );
    }
    Ok(())
}
