//! Multi-threaded stress against a model: random read/write/page_mut/sync/
//! set_len on several files through a cache far smaller than the data, over
//! backends that inject random write faults, with checksummed page versions.
//!
//! Each thread owns one file: it is the only writer of it, so its model of
//! that file is exact and every read of it is compared byte for byte. Every
//! thread also reads and syncs the other files, checking that whatever page
//! it sees is either zeros or a whole, uncorrupted version of *that* page
//! (never torn, never another page's bytes). At the end, with faults off,
//! each file is synced and its durable image compared with its model.
//!
//! The bounded test runs in CI; the long one is `#[ignore]`d:
//! `PAGECACHE_STRESS_SECS=600 cargo test -p pagecache --release --test stress -- --ignored --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use pagecache::{Config, Error, FaultBackend, File, PageCache};

const PS: usize = 4096;
const THREADS: usize = 4;
const FILE_PAGES: usize = 64;

fn checksum(file: u64, page: u64, version: u64) -> u64 {
    (file.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ page.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ version.wrapping_mul(0x1656_67b1_9e37_79f9))
        | 1
}

/// Version `version` of page `page` of file `file` (version 0: zeros).
fn make_page(file: u64, page: u64, version: u64, out: &mut [u8]) {
    if version == 0 {
        out.fill(0);
        return;
    }
    let sum = checksum(file, page, version);
    out[..8].copy_from_slice(&file.to_le_bytes());
    out[8..16].copy_from_slice(&page.to_le_bytes());
    out[16..24].copy_from_slice(&version.to_le_bytes());
    out[24..32].copy_from_slice(&sum.to_le_bytes());
    let mut rng = Rng(sum);
    for chunk in out[32..].chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Checks a page read from a file someone else writes: zeros, or a whole
/// version of exactly this page.
fn check_foreign(file: u64, page: u64, bytes: &[u8]) -> Result<(), String> {
    if bytes.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let version = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let mut want = vec![0u8; PS];
    make_page(file, page, version, &mut want);
    if bytes == want {
        Ok(())
    } else {
        Err(format!(
            "file {file} page {page}: torn or corrupt (claims version {version})"
        ))
    }
}

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    writes: AtomicU64,
    reads: AtomicU64,
    foreign_reads: AtomicU64,
    syncs: AtomicU64,
    failed_syncs: AtomicU64,
    truncates: AtomicU64,
}

/// One thread's life: owns `files[me]`, reads and syncs all of them.
fn worker(me: usize, files: &[File], seed: u64, deadline: Instant, max_ops: u64, c: &Counts) {
    let mut rng = Rng(seed | 1);
    let own = &files[me];
    let fid = me as u64;
    // Versions of the owned file's pages; its length in pages.
    let mut model = vec![0u64; FILE_PAGES];
    let mut len_pages = 0usize;
    let mut next_version = 1u64;
    let mut buf = vec![0u8; PS];
    let mut want = vec![0u8; PS];
    let mut ops = 0;
    while ops < max_ops && Instant::now() < deadline {
        ops += 1;
        match rng.below_usize(20) {
            0..=6 => {
                let p = rng.below_usize(FILE_PAGES);
                let v = next_version;
                next_version += 1;
                make_page(fid, p as u64, v, &mut buf);
                let r = if rng.below_usize(3) == 0 {
                    own.page_mut(p as u64).map(|mut g| g.copy_from_slice(&buf))
                } else {
                    own.write_at(&buf, (p * PS) as u64).map(|_| ())
                };
                match r {
                    Ok(()) => {}
                    Err(Error::Writeback { .. }) => continue, // paced out: not written
                    Err(e) => panic!("thread {me}: write: {e}"),
                }
                // Pages between the old end and this one read as zeros.
                for v in &mut model[len_pages.min(p)..p] {
                    *v = 0;
                }
                model[p] = v;
                len_pages = len_pages.max(p + 1);
                c.writes.fetch_add(1, Ordering::Relaxed);
            }
            7..=11 => {
                let p = rng.below_usize(FILE_PAGES);
                let n = own.read_at(&mut buf, (p * PS) as u64).unwrap();
                if p < len_pages {
                    assert_eq!(n, PS, "thread {me}: short read of page {p}");
                    make_page(fid, p as u64, model[p], &mut want);
                    assert!(
                        buf == want,
                        "thread {me}: page {p} is not version {}",
                        model[p]
                    );
                } else {
                    assert_eq!(n, 0, "thread {me}: read past end of file");
                }
                c.reads.fetch_add(1, Ordering::Relaxed);
            }
            12..=15 => {
                let f = rng.below_usize(files.len());
                let p = rng.below_usize(FILE_PAGES);
                let n = files[f].read_at(&mut buf, (p * PS) as u64).unwrap();
                // The owner may truncate meanwhile; check only whole pages.
                if n == PS {
                    if let Err(e) = check_foreign(f as u64, p as u64, &buf) {
                        panic!("thread {me}: {e}");
                    }
                }
                c.foreign_reads.fetch_add(1, Ordering::Relaxed);
            }
            16..=18 => {
                let f = if rng.below_usize(2) == 0 {
                    me
                } else {
                    rng.below_usize(files.len())
                };
                match files[f].sync() {
                    Ok(()) => c.syncs.fetch_add(1, Ordering::Relaxed),
                    Err(Error::Writeback { .. }) => c.failed_syncs.fetch_add(1, Ordering::Relaxed),
                    Err(e) => panic!("thread {me}: sync: {e}"),
                };
            }
            _ => {
                let new = rng.below_usize(FILE_PAGES);
                own.set_len((new * PS) as u64).unwrap();
                for v in &mut model[new.min(len_pages)..] {
                    *v = 0;
                }
                len_pages = new;
                c.truncates.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    c.ops.fetch_add(ops, Ordering::Relaxed);
    // The model's image, compared with the durable one at the end.
    let mut image = vec![0u8; len_pages * PS];
    for (p, chunk) in image.chunks_mut(PS).enumerate() {
        make_page(fid, p as u64, model[p], chunk);
    }
    RESULTS.lock().unwrap()[me] = Some(image);
}

static RESULTS: std::sync::Mutex<[Option<Vec<u8>>; THREADS]> =
    std::sync::Mutex::new([None, None, None, None]);

fn run(duration: Duration, max_ops: u64, seed: u64) {
    let cache = PageCache::new(
        Config::new(48 * PS)
            .dirty_expire(Duration::from_millis(20))
            .dirty_writeback_interval(Duration::from_millis(10)),
    )
    .unwrap();
    let disks: Vec<FaultBackend> = (0..THREADS).map(|_| FaultBackend::new()).collect();
    for (i, d) in disks.iter().enumerate() {
        d.random_faults(seed ^ ((i as u64 + 1) * 0x1234_5678_9abc), Some(64));
    }
    let files: Arc<Vec<File>> = Arc::new(
        disks
            .iter()
            .map(|d| cache.open_backend(d.clone()).unwrap())
            .collect(),
    );
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + duration;
    let failed = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..THREADS)
        .map(|me| {
            let files = files.clone();
            let counts = counts.clone();
            let failed = failed.clone();
            let s = seed.wrapping_add(me as u64 * 0x9e37_79b9);
            thread::spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker(me, &files, s, deadline, max_ops, &counts)
                }));
                if let Err(e) = r {
                    failed.store(true, Ordering::Relaxed);
                    std::panic::resume_unwind(e);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a stress thread failed");
    }
    assert!(!failed.load(Ordering::Relaxed));
    let mut injected = 0;
    for (i, (d, f)) in disks.iter().zip(files.iter()).enumerate() {
        d.random_faults(0, None);
        let _ = f.sync(); // may report a failure from before faults stopped
        f.sync().unwrap();
        let image = RESULTS.lock().unwrap()[i].take().unwrap();
        assert!(
            d.durable() == image,
            "file {i}: durable image differs from the model"
        );
        injected += d.stats().faults();
    }
    let c = &counts;
    println!(
        "stress: {} ops ({} writes, {} reads, {} foreign reads, {} syncs ok, {} syncs failed, {} truncates), {} faults injected, 0 bytes lost",
        c.ops.load(Ordering::Relaxed),
        c.writes.load(Ordering::Relaxed),
        c.reads.load(Ordering::Relaxed),
        c.foreign_reads.load(Ordering::Relaxed),
        c.syncs.load(Ordering::Relaxed),
        c.failed_syncs.load(Ordering::Relaxed),
        c.truncates.load(Ordering::Relaxed),
        injected,
    );
    println!("{}", cache.stats());
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// Serialises the two tests: they share `RESULTS`.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn stress_bounded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ops = env_u64("PAGECACHE_STRESS_OPS").unwrap_or(50_000);
    run(Duration::from_secs(20), ops, 0x57e5_5001);
}

/// The long run: `PAGECACHE_STRESS_SECS` seconds (default 300), optional
/// `PAGECACHE_STRESS_SEED`.
#[test]
#[ignore = "long: PAGECACHE_STRESS_SECS=600 cargo test --release --test stress -- --ignored"]
fn stress_long() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let secs = env_u64("PAGECACHE_STRESS_SECS").unwrap_or(300);
    let seed = env_u64("PAGECACHE_STRESS_SEED").unwrap_or(0x57e5_5002);
    run(Duration::from_secs(secs), u64::MAX, seed);
}
