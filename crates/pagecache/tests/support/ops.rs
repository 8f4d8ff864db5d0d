//! An operation-sequence checker: runs `write_at`, `read_at`, `set_len`,
//! `sync`, `sync_range`, `page` and `page_mut` (and injected write faults)
//! against a small cache over a [`FaultBackend`], comparing every result
//! with an in-memory model, and at the end the durable image with the model.
//!
//! Shared by `tests/ops_model.rs` (proptest, on stable) and the cargo-fuzz
//! target `fuzz/fuzz_targets/ops.rs` (whose `Arbitrary` input decodes its
//! bytes with [`decode`]).
#![allow(dead_code)]

use pagecache::{Config, Error, FaultBackend, PageCache};

pub const PS: usize = 4096;
/// Offsets and lengths stay within this many pages, so sequences touch the
/// same pages often; the cache holds far fewer.
pub const MAX_PAGES: usize = 48;
const MAX: usize = MAX_PAGES * PS;

/// One operation; numbers are reduced into range by the checker.
#[derive(Clone, Debug)]
pub enum Op {
    Write {
        off: u32,
        len: u16,
        seed: u8,
    },
    Read {
        off: u32,
        len: u16,
    },
    SetLen {
        len: u32,
    },
    Sync,
    SyncRange {
        off: u32,
        len: u32,
    },
    Page {
        index: u8,
    },
    PageMut {
        index: u8,
        at: u16,
        len: u16,
        byte: u8,
    },
    /// The next write to the backend fails (EIO or ENOSPC).
    FailNextWrite {
        enospc: bool,
    },
}

/// Decodes operations from raw bytes (for callers without `Arbitrary`).
pub fn decode(bytes: &[u8]) -> Vec<Op> {
    let mut it = bytes.iter().copied();
    let mut ops = Vec::new();
    while let Some(tag) = it.next() {
        let mut n = |k: usize| -> Option<u32> {
            let mut v = 0u32;
            for _ in 0..k {
                v = (v << 8) | u32::from(it.next()?);
            }
            Some(v)
        };
        let op = match tag % 8 {
            0 => Op::Write {
                off: n(3).unwrap_or(0),
                len: n(2).unwrap_or(1) as u16,
                seed: n(1).unwrap_or(0) as u8,
            },
            1 => Op::Read {
                off: n(3).unwrap_or(0),
                len: n(2).unwrap_or(1) as u16,
            },
            2 => Op::SetLen {
                len: n(3).unwrap_or(0),
            },
            3 => Op::Sync,
            4 => Op::SyncRange {
                off: n(3).unwrap_or(0),
                len: n(3).unwrap_or(0),
            },
            5 => Op::Page {
                index: n(1).unwrap_or(0) as u8,
            },
            6 => Op::PageMut {
                index: n(1).unwrap_or(0) as u8,
                at: n(2).unwrap_or(0) as u16,
                len: n(2).unwrap_or(1) as u16,
                byte: n(1).unwrap_or(0) as u8,
            },
            _ => Op::FailNextWrite {
                enospc: n(1).unwrap_or(0) % 2 == 1,
            },
        };
        ops.push(op);
    }
    ops
}

fn fill(seed: u8, off: usize, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed.wrapping_add(((off + i) as u8).wrapping_mul(31)) ^ ((off + i) >> 8) as u8;
    }
}

/// Runs `ops`, panicking on the first disagreement with the model.
pub fn check(ops: &[Op]) {
    // 32 frames for up to 48 pages: reclaim runs; a dirty limit of 12 pages
    // keeps writers from waiting out the flushers' retry backoff too often.
    let cache = PageCache::new(
        Config::new(32 * PS)
            .dirty_ratio(40)
            .dirty_background_ratio(20)
            .io_depth(4), // a cache per sequence: few threads to start
    )
    .unwrap();
    let disk = FaultBackend::new();
    let f = cache.open_backend(disk.clone()).unwrap();
    let mut model: Vec<u8> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Write { off, len, seed } => {
                let off = off as usize % MAX;
                let len = 1 + len as usize % (3 * PS);
                let mut buf = vec![0u8; len];
                fill(seed, off, &mut buf);
                match f.write_at(&buf, off as u64) {
                    Ok(n) => assert_eq!(n, len),
                    Err(Error::Writeback { .. }) => continue,
                    Err(e) => panic!("step {step} {op:?}: {e}"),
                }
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&buf);
            }
            Op::Read { off, len } => {
                let off = off as usize % (MAX + PS);
                let len = len as usize % (3 * PS);
                let mut buf = vec![0xAAu8; len];
                let n = f.read_at(&mut buf, off as u64).unwrap();
                let want = model.len().saturating_sub(off).min(len);
                assert_eq!(n, want, "step {step} {op:?}: read length");
                assert!(
                    n == 0 || buf[..n] == model[off..off + n],
                    "step {step} {op:?}: read content"
                );
            }
            Op::SetLen { len } => {
                let len = len as usize % (MAX + 1);
                f.set_len(len as u64).unwrap();
                model.resize(len, 0);
            }
            Op::Sync => match f.sync() {
                Ok(()) => assert!(disk.durable() == model, "step {step}: durable after sync"),
                Err(Error::Writeback { .. }) => {}
                Err(e) => panic!("step {step} {op:?}: {e}"),
            },
            Op::SyncRange { off, len } => match f.sync_range(u64::from(off), u64::from(len)) {
                Ok(()) | Err(Error::Writeback { .. }) => {}
                Err(e) => panic!("step {step} {op:?}: {e}"),
            },
            Op::Page { index } => {
                let index = index as usize % (MAX_PAGES + 2);
                match f.page(index as u64) {
                    Ok(g) => {
                        assert!(index * PS < model.len(), "step {step}: page past EOF");
                        let end = model.len().min((index + 1) * PS);
                        let valid = end - index * PS;
                        assert!(g[..valid] == model[index * PS..end], "step {step}: page");
                        assert!(g[valid..].iter().all(|&b| b == 0), "step {step}: tail");
                    }
                    Err(Error::InvalidArgument(_)) => {
                        assert!(index * PS >= model.len(), "step {step}: page refused")
                    }
                    Err(e) => panic!("step {step} {op:?}: {e}"),
                }
            }
            Op::PageMut {
                index,
                at,
                len,
                byte,
            } => {
                let index = index as usize % MAX_PAGES;
                let at = at as usize % PS;
                let len = len as usize % (PS - at + 1);
                let mut g = match f.page_mut(index as u64) {
                    Ok(g) => g,
                    Err(Error::Writeback { .. }) => continue,
                    Err(e) => panic!("step {step} {op:?}: {e}"),
                };
                g[at..at + len].fill(byte);
                drop(g);
                let end = (index + 1) * PS;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[index * PS + at..index * PS + at + len].fill(byte);
            }
            Op::FailNextWrite { enospc } => disk.fail_writes(
                1,
                if enospc {
                    FaultBackend::ENOSPC
                } else {
                    FaultBackend::EIO
                },
            ),
        }
        assert_eq!(f.len(), model.len() as u64, "step {step} {op:?}: length");
    }
    // Faults off: the next sync may still report a failure from before,
    // the one after must succeed, with every byte durable.
    disk.clear_faults();
    let _ = f.sync();
    f.sync().unwrap();
    assert!(disk.durable() == model, "final durable image");
}
