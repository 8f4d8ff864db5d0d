//! kill -9 (DESIGN §4 invariant 7): a child process writes through the cache
//! to a real file with periodic `sync`, and reports every write it issues and
//! every sync acknowledged through a pipe; the parent kills it with SIGKILL at
//! a random point, over several rounds on the same file, and checks that
//! every acknowledged byte is on disk with the right content.
//!
//! The file is made of 512-byte sectors, each self-describing: version, sector
//! number, a checksum and bytes derived from both. A write covers a run of
//! sectors with one new version (runs start and end anywhere in a page, so
//! partial pages are read, modified and written back). After a kill, each
//! sector must be intact and hold a version at least as new as the last
//! acknowledged write to it — and one that was really written there.
//!
//! The child is this test binary itself, re-executed with
//! `PAGECACHE_KILL9_DIR` set, running only [`child_process_entry`].

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Rng;
use pagecache::{Config, PageCache};

const SECTOR: usize = 512;
const SECTORS: usize = 4096; // a 2 MiB file over a 256 KiB cache
const ROUNDS: u64 = 16;
const DIR_ENV: &str = "PAGECACHE_KILL9_DIR";
const MARK: &str = "#PC ";

fn mix(version: u64, sector: u64) -> u64 {
    (version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ sector.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)) | 1
}

fn encode(version: u64, sector: u64, out: &mut [u8]) {
    out[..8].copy_from_slice(&version.to_le_bytes());
    out[8..16].copy_from_slice(&sector.to_le_bytes());
    out[16..24].copy_from_slice(&mix(version, sector).to_le_bytes());
    let mut rng = Rng(mix(version, sector));
    for b in &mut out[24..] {
        *b = rng.next() as u8;
    }
}

/// The sector's version (0 if never written), or an error if it is corrupt.
fn decode(sector: u64, bytes: &[u8]) -> Result<u64, String> {
    if bytes.iter().all(|&b| b == 0) {
        return Ok(0);
    }
    let version = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let mut want = vec![0u8; SECTOR];
    encode(version, sector, &mut want);
    if bytes == want {
        Ok(version)
    } else {
        Err(format!(
            "sector {sector} is corrupt (claims version {version})"
        ))
    }
}

/// The child: writes and syncs until killed (or, as a guard, for 30 s).
#[test]
fn child_process_entry() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return; // run as a normal test: nothing to do
    };
    let base: u64 = std::env::var("PAGECACHE_KILL9_BASE")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = Rng(base.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1);
    let cache = PageCache::new(
        Config::new(64 * 4096)
            .dirty_expire(Duration::from_millis(10))
            .dirty_writeback_interval(Duration::from_millis(5)),
    )
    .unwrap();
    let file = cache
        .open_options()
        .read(true)
        .write(true)
        .create(true)
        .open(Path::new(&dir).join("data"))
        .unwrap();
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut version = base;
    let mut since_sync = 0;
    let mut sync_every = 1 + rng.below_usize(12);
    while Instant::now() < deadline {
        let first = rng.below_usize(SECTORS);
        let n = 1 + rng.below_usize(24.min(SECTORS - first));
        let mut buf = vec![0u8; n * SECTOR];
        for (i, s) in buf.chunks_mut(SECTOR).enumerate() {
            encode(version, (first + i) as u64, s);
        }
        writeln!(out, "{MARK}W {version} {first} {n}").unwrap();
        out.flush().unwrap();
        file.write_at(&buf, (first * SECTOR) as u64).unwrap();
        since_sync += 1;
        if since_sync == sync_every {
            if file.sync().is_ok() {
                writeln!(out, "{MARK}A {version}").unwrap();
                out.flush().unwrap();
            }
            since_sync = 0;
            sync_every = 1 + rng.below_usize(12);
        }
        version += 1;
    }
}

#[derive(Default, Debug)]
struct Totals {
    kill_rounds: u64,
    writes_issued: u64,
    syncs_acked: u64,
    acked_sectors_checked: u64,
    bytes_lost: u64,
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x6b69_6c6c_0009);
    // Every write issued, by version, and each sector's version on disk.
    let mut writes: HashMap<u64, (usize, usize)> = HashMap::new();
    let mut on_disk = vec![0u64; SECTORS];
    let mut totals = Totals::default();
    for round in 0..ROUNDS {
        let base = (round + 1) * 1_000_000;
        let mut child = Command::new(&exe)
            .args([
                "child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env("PAGECACHE_KILL9_BASE", base.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = 20 + rng.below_usize(3000);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        let mut acked = 0u64;
        let mut killed = false;
        while let Some(Ok(line)) = lines.next() {
            let Some(pos) = line.find(MARK) else { continue };
            let f: Vec<u64> = line[pos + MARK.len() + 2..]
                .split(' ')
                .map(|x| x.parse().unwrap())
                .collect();
            if line[pos + MARK.len()..].starts_with('W') {
                writes.insert(f[0], (f[1] as usize, f[2] as usize));
                totals.writes_issued += 1;
            } else {
                acked = acked.max(f[0]);
                totals.syncs_acked += 1;
            }
            seen += 1;
            if seen == kill_after && !killed {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child ended before it was killed"
        );
        totals.kill_rounds += 1;

        // The newest acknowledged version of each sector, this round.
        let mut required = on_disk.clone();
        let mut issued: HashMap<usize, Vec<u64>> = HashMap::new();
        for (&v, &(first, n)) in &writes {
            for (s, req) in required.iter_mut().enumerate().skip(first).take(n) {
                issued.entry(s).or_default().push(v);
                if v >= base && v <= acked {
                    *req = (*req).max(v);
                }
            }
        }
        let disk = std::fs::read(dir.path().join("data")).unwrap();
        for s in 0..SECTORS {
            let bytes = disk.get(s * SECTOR..(s + 1) * SECTOR);
            let version = match bytes {
                Some(b) => decode(s as u64, b).unwrap_or_else(|e| panic!("round {round}: {e}")),
                None => 0,
            };
            if required[s] > 0 {
                totals.acked_sectors_checked += 1;
            }
            if version < required[s] {
                totals.bytes_lost += SECTOR as u64;
                eprintln!(
                    "round {round}: sector {s} holds version {version}, acknowledged {}",
                    required[s]
                );
            }
            assert!(
                version == 0 || issued.get(&s).is_some_and(|v| v.contains(&version)),
                "round {round}: sector {s} holds version {version}, never written there"
            );
            on_disk[s] = version;
        }
        assert_eq!(
            totals.bytes_lost, 0,
            "round {round}: acknowledged bytes lost"
        );
    }
    println!("kill -9 totals: {totals:?}");
    assert!(totals.syncs_acked > 0);
}
