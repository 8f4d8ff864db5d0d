//! Random read/write/set_len/sync sequences against an in-memory model, with
//! the background threads running and budgets from a handful of frames up.
//! After every sync the backend holds exactly the model.

mod common;

use common::ProbeBackend;
use pagecache::{Config, PageCache, Policy};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write { offset: u64, len: usize, seed: u8 },
    Read { offset: u64, len: usize },
    SetLen(u64),
    Sync,
    PageMut { index: u64, seed: u8 },
}

const SPAN: u64 = 48 * 1024;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SPAN, 1..9000usize, any::<u8>()).prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        4 => (0..SPAN + 4096, 0..9000usize).prop_map(|(offset, len)| Op::Read { offset, len }),
        1 => (0..SPAN).prop_map(Op::SetLen),
        1 => Just(Op::Sync),
        1 => (0..SPAN / 1024, any::<u8>()).prop_map(|(index, seed)| Op::PageMut { index, seed }),
    ]
}

fn fill(len: usize, seed: u8, offset: u64) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add(((offset as usize + i) % 251) as u8))
        .collect()
}

fn run(policy: Policy, frames: usize, page_size: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let cache = PageCache::new(
        Config::new(frames * page_size)
            .page_size(page_size)
            .policy(policy)
            .dirty_writeback_interval(std::time::Duration::from_millis(5))
            .dirty_expire(std::time::Duration::from_millis(10)),
    )
    .unwrap();
    let probe = ProbeBackend::new();
    let file = cache.open_backend(probe.clone()).unwrap();
    let mut model: Vec<u8> = Vec::new();
    for op in ops {
        match *op {
            Op::Write { offset, len, seed } => {
                let data = fill(len, seed, offset);
                prop_assert_eq!(file.write_at(&data, offset).unwrap(), len);
                let end = offset as usize + len;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[offset as usize..end].copy_from_slice(&data);
            }
            Op::Read { offset, len } => {
                let mut buf = vec![0xAA; len];
                let n = file.read_at(&mut buf, offset).unwrap();
                let want = model.len().saturating_sub(offset as usize).min(len);
                prop_assert_eq!(n, want, "read length at {}", offset);
                if n > 0 {
                    let at = offset as usize;
                    prop_assert!(buf[..n] == model[at..at + n], "read at {}", offset);
                }
            }
            Op::SetLen(len) => {
                file.set_len(len).unwrap();
                model.resize(len as usize, 0);
            }
            Op::Sync => {
                file.sync().unwrap();
                prop_assert!(probe.mem.contents() == model, "backend differs after sync");
            }
            Op::PageMut { index, seed } => {
                let ps = page_size as u64;
                {
                    let mut page = file.page_mut(index).unwrap();
                    let data = fill(page_size, seed, index * ps);
                    page.copy_from_slice(&data);
                    let start = (index * ps) as usize;
                    if model.len() < start + page_size {
                        model.resize(start + page_size, 0);
                    }
                    model[start..start + page_size].copy_from_slice(&data);
                }
            }
        }
        prop_assert_eq!(file.len(), model.len() as u64);
    }
    file.sync().unwrap();
    prop_assert!(probe.mem.contents() == model, "backend differs at the end");
    if policy != Policy::Legacy {
        prop_assert_eq!(probe.writes_in_allocation(), 0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn offload_matches_model(frames in 8usize..40, ops in prop::collection::vec(op(), 1..80)) {
        run(Policy::Offload, frames, 1024, &ops)?;
    }

    #[test]
    fn legacy_matches_model(frames in 8usize..40, ops in prop::collection::vec(op(), 1..80)) {
        run(Policy::Legacy, frames, 1024, &ops)?;
    }

    #[test]
    fn page_size_4k_matches_model(frames in 8usize..24, ops in prop::collection::vec(op(), 1..60)) {
        run(Policy::Offload, frames, 4096, &ops)?;
    }
}
