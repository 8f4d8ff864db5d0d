//! Bad input: every public entry point, given bad arguments, returns an
//! error (or a documented empty result) and never panics, aborts or hangs.
//! Property tests over huge offsets, offset + length overflow, page indexes
//! past the largest file size, every configuration knob and policy names.

use std::time::Duration;

use pagecache::{Backend, Config, Error, FaultBackend, MemBackend, PageCache, Policy, Watermarks};
use proptest::prelude::*;

const PS: u64 = 4096;
/// The largest file size (the kernel's MAX_LFS_FILESIZE).
const MAX_FILE: u64 = i64::MAX as u64;

fn small_cache() -> PageCache {
    PageCache::new(Config::new(32 * PS as usize)).unwrap()
}

/// Offsets that stress the arithmetic: near zero, near the largest file
/// size, near `u64::MAX`, and anything.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..(1 << 20),
        (MAX_FILE - (1 << 20))..=MAX_FILE,
        (MAX_FILE + 1)..(MAX_FILE + (1 << 20)),
        (u64::MAX - (1 << 20))..=u64::MAX,
        any::<u64>(),
    ]
}

fn is_invalid(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(_))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Writes past the largest file size are refused before anything is
    /// cached; reads past the end return 0.
    #[test]
    fn file_offsets(off in offset(), len in 1usize..3 * PS as usize) {
        let cache = small_cache();
        let f = cache.open_backend(MemBackend::new()).unwrap();
        let buf = vec![7u8; len];
        let end = off.checked_add(len as u64);
        match f.write_at(&buf, off) {
            Ok(n) => {
                prop_assert_eq!(n, len);
                prop_assert!(end.is_some_and(|e| e <= MAX_FILE));
                prop_assert_eq!(f.len(), end.unwrap());
            }
            Err(e) => {
                prop_assert!(is_invalid(&e), "{}", e);
                prop_assert!(end.is_none_or(|e| e > MAX_FILE));
                prop_assert_eq!(f.len(), 0);
            }
        }
        let mut rbuf = vec![0u8; len];
        let n = f.read_at(&mut rbuf, off).unwrap();
        prop_assert!(n <= len);
        if f.is_empty() {
            prop_assert_eq!(n, 0);
            prop_assert!(f.read_exact_at(&mut rbuf, off).is_err());
        }
        // The MemBackend cannot hold a file of exabytes: writeback fails,
        // sync says so, nothing panics or hangs.
        let _ = f.sync();
        drop(f);
        let _ = cache.shutdown();
    }

    /// Page indexes: past the largest file size is an error for both
    /// guards; `page` of an index at or past the end of file is an error.
    #[test]
    fn page_indexes(index in prop_oneof![0u64..64, (MAX_FILE / PS - 4)..=(MAX_FILE / PS + 4), any::<u64>()]) {
        let cache = small_cache();
        let f = cache.open_backend(FaultBackend::new()).unwrap();
        f.write_at(b"x", 0).unwrap();
        let past_max = index.checked_mul(PS).is_none_or(|o| o >= MAX_FILE);
        match f.page(index) {
            Ok(g) => prop_assert_eq!(g.index(), 0),
            Err(e) => prop_assert!(is_invalid(&e), "{}", e),
        }
        match f.page_mut(index) {
            Ok(g) => {
                prop_assert!(!past_max);
                prop_assert_eq!(g.index(), index);
            }
            Err(e) => {
                prop_assert!(past_max);
                prop_assert!(is_invalid(&e), "{}", e);
            }
        }
        let _ = f.sync();
    }

    /// set_len past the largest file size is refused; within it, a backend
    /// that cannot hold the length says so with an error.
    #[test]
    fn lengths(len in offset()) {
        let cache = small_cache();
        for backend in 0..2 {
            let f = if backend == 0 {
                cache.open_backend(MemBackend::new()).unwrap()
            } else {
                cache.open_backend(FaultBackend::new()).unwrap()
            };
            match f.set_len(len) {
                Ok(()) => prop_assert_eq!(f.len(), len),
                Err(e) => {
                    prop_assert!(len > MAX_FILE || matches!(e, Error::Io { .. }), "{}", e);
                    prop_assert_eq!(f.len(), 0);
                }
            }
        }
    }

    /// sync_range with an overflowing range is an error; any other is fine.
    #[test]
    fn sync_ranges(off in offset(), len in offset()) {
        let cache = small_cache();
        let f = cache.open_backend(MemBackend::new()).unwrap();
        f.write_at(&[1u8; 100], 0).unwrap();
        match f.sync_range(off, len) {
            Ok(()) => prop_assert!(len == 0 || off.checked_add(len).is_some()),
            Err(e) => prop_assert!(is_invalid(&e) && off.checked_add(len).is_none(), "{}", e),
        }
    }

    /// Every knob, alone and together: a configuration either validates and
    /// builds a working cache, or is refused with `Error::Config`.
    #[test]
    fn configs(
        memory in prop_oneof![
            Just(0usize),
            1usize..(64 << 20),
            (1usize << 44)..(1usize << 50),
            ((usize::MAX >> 1)..=usize::MAX),
        ],
        page_size in prop_oneof![Just(4096usize), 0usize..(2 << 20), (1usize << 20)..=usize::MAX, Just(512), Just(1 << 20), Just(2 << 20)],
        dirty_background_ratio in any::<u8>(),
        dirty_ratio in any::<u8>(),
        flushers in prop_oneof![0usize..4, 60usize..70, Just(usize::MAX)],
        io_depth in prop_oneof![0usize..4, 250usize..260, Just(usize::MAX)],
        max_io in prop_oneof![0usize..(2 << 20), Just(usize::MAX)],
        interval_ms in prop_oneof![Just(0u64), 1u64..10_000, Just(u64::MAX)],
        expire_ms in prop_oneof![Just(0u64), 1u64..100_000, Just(u64::MAX)],
        wm in proptest::option::of((any::<usize>(), any::<usize>(), any::<usize>())),
        policy in prop_oneof![Just(Policy::Offload), Just(Policy::Legacy), Just(Policy::NoThrottle)],
        background_reclaim in any::<bool>(),
    ) {
        let mut cfg = Config::new(memory)
            .page_size(page_size)
            .dirty_background_ratio(dirty_background_ratio)
            .dirty_ratio(dirty_ratio)
            .flushers(flushers)
            .io_depth(io_depth)
            .max_io(max_io)
            .dirty_writeback_interval(Duration::from_millis(interval_ms))
            .dirty_expire(Duration::from_millis(expire_ms))
            .policy(policy)
            .background_reclaim(background_reclaim);
        if let Some((min, low, high)) = wm {
            cfg = cfg.watermarks(Watermarks { min, low, high });
        }
        let _ = cfg.frames();
        match PageCache::new(cfg) {
            Ok(cache) => {
                let f = cache.open_backend(MemBackend::new()).unwrap();
                f.write_at(b"works", 3).unwrap();
                let mut buf = [0u8; 5];
                f.read_exact_at(&mut buf, 3).unwrap();
                prop_assert_eq!(&buf, b"works");
                f.sync().unwrap();
            }
            Err(e) => prop_assert!(matches!(e, Error::Config(_)), "{}", e),
        }
    }

    /// Policy names: only the three known ones parse.
    #[test]
    fn policy_names(s in ".{0,20}") {
        match s.parse::<Policy>() {
            Ok(p) => prop_assert_eq!(p.name(), s.as_str()),
            Err(e) => prop_assert!(matches!(e, Error::Config(_))),
        }
    }

    /// The in-memory backends refuse lengths and offsets they cannot hold
    /// instead of aborting on allocation.
    #[test]
    fn backends_refuse_impossible_sizes(off in (1u64 << 40)..=u64::MAX) {
        let mem = MemBackend::new();
        prop_assert!(mem.set_len(off).is_err());
        prop_assert!(mem.write_vectored_at(&[std::io::IoSlice::new(b"x")], off).is_err());
        let fault = FaultBackend::new();
        prop_assert!(fault.set_len(off).is_err());
        prop_assert!(fault.write_vectored_at(&[std::io::IoSlice::new(b"x")], off).is_err());
        let mut buf = [0u8; 4];
        prop_assert_eq!(mem.read_at(&mut buf, off).unwrap(), 0);
        prop_assert_eq!(fault.read_at(&mut buf, off).unwrap(), 0);
    }
}

/// Paths that cannot be opened are errors.
#[test]
fn bad_paths() {
    let cache = small_cache();
    let dir = tempfile::tempdir().unwrap();
    assert!(cache.open("").is_err());
    assert!(cache.open(dir.path()).is_err(), "a directory");
    assert!(cache.open(dir.path().join("no/such/dir/file")).is_err());
    assert!(cache.open_existing(dir.path().join("missing")).is_err());
    assert!(matches!(
        cache.open_existing(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
}

/// A backend that fails reads: read-in errors reach the caller and the page
/// is not left half-made.
#[test]
fn failing_reads_are_errors() {
    let cache = small_cache();
    let disk = FaultBackend::with_contents(vec![5u8; 3 * PS as usize]);
    let f = cache.open_backend(disk.clone()).unwrap();
    disk.fail_reads(2, FaultBackend::EIO);
    let mut buf = vec![0u8; PS as usize];
    assert!(matches!(f.read_at(&mut buf, 0), Err(Error::Io { .. })));
    assert!(f.page(1).is_err());
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 5));
}

/// A budget that validates but that the machine cannot allocate is an
/// error, not an abort.
#[test]
fn budgets_too_large_to_allocate_are_errors() {
    for (memory, page_size) in [(1usize << 42, 4096usize), (1 << 50, 1 << 20)] {
        match PageCache::new(Config::new(memory).page_size(page_size)) {
            Err(Error::Config(_)) => {}
            Err(e) => panic!("{memory} bytes: unexpected error {e}"),
            Ok(_) => panic!("{memory} bytes: allocated?"),
        }
    }
}
