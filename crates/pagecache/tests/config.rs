//! Bad configuration and bad arguments are errors, never panics.

use pagecache::{Config, Error, MemBackend, PageCache, Policy, Watermarks};

fn rejected(cfg: Config, what: &str) {
    match PageCache::new(cfg) {
        Err(Error::Config(msg)) => assert!(msg.contains(what), "{msg:?} should mention {what}"),
        Err(e) => panic!("expected a config error about {what}, got {e}"),
        Ok(_) => panic!("config with bad {what} accepted"),
    }
}

#[test]
fn bad_configs_are_rejected_with_the_knob_named() {
    rejected(Config::new(0), "memory");
    rejected(Config::new(7 * 4096), "memory");
    rejected(Config::new(1 << 20).page_size(3000), "page_size");
    rejected(Config::new(1 << 20).page_size(256), "page_size");
    rejected(Config::new(1 << 20).page_size(0), "page_size");
    rejected(Config::new(1 << 20).dirty_ratio(0), "dirty_ratio");
    rejected(Config::new(1 << 20).dirty_ratio(101), "dirty_ratio");
    rejected(
        Config::new(1 << 20)
            .dirty_background_ratio(20)
            .dirty_ratio(20),
        "dirty_background_ratio",
    );
    rejected(
        Config::new(1 << 20).dirty_background_ratio(0),
        "dirty_background_ratio",
    );
    rejected(Config::new(1 << 20).flushers(0), "flushers");
    rejected(Config::new(1 << 20).io_depth(0), "io_depth");
    rejected(Config::new(1 << 20).max_io(100), "max_io");
    rejected(
        Config::new(1 << 20).dirty_writeback_interval(std::time::Duration::ZERO),
        "dirty_writeback_interval",
    );
    rejected(
        Config::new(1 << 20).watermarks(Watermarks {
            min: 10,
            low: 5,
            high: 20,
        }),
        "watermarks",
    );
    rejected(
        Config::new(1 << 20).watermarks(Watermarks {
            min: 1,
            low: 2,
            high: 1000,
        }),
        "watermarks",
    );
}

#[test]
fn policies_parse_by_name() {
    for p in Policy::ALL {
        assert_eq!(p.name().parse::<Policy>().unwrap(), p);
    }
    assert!(matches!("kernel".parse::<Policy>(), Err(Error::Config(_))));
    assert!("".parse::<Policy>().is_err());
}

#[test]
fn bad_arguments_are_errors() {
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let f = cache.open_backend(MemBackend::new()).unwrap();
    assert!(matches!(
        f.write_at(b"x", u64::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.write_at(b"xy", i64::MAX as u64 - 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.set_len(u64::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        f.sync_range(u64::MAX, 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(f.page(u64::MAX), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        f.page_mut(u64::MAX),
        Err(Error::InvalidArgument(_))
    ));
    assert!(
        matches!(f.page(0), Err(Error::InvalidArgument(_))),
        "past end of file"
    );
    let mut buf = [0u8; 8];
    assert_eq!(f.read_at(&mut buf, u64::MAX).unwrap(), 0);
    assert!(f.read_exact_at(&mut buf, 0).is_err());
    let missing = tempfile::tempdir().unwrap().path().join("no/such/dir/file");
    assert!(matches!(cache.open(&missing), Err(Error::Io { .. })));
    assert!(matches!(
        cache.open_existing(&missing),
        Err(Error::Io { .. })
    ));
}

#[test]
fn guards_refuse_calls_that_would_deadlock() {
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let f = cache.open_backend(MemBackend::new()).unwrap();
    let g = f.page_mut(0).unwrap();
    assert!(matches!(f.sync(), Err(Error::WouldDeadlock(_))));
    assert!(matches!(f.set_len(0), Err(Error::WouldDeadlock(_))));
    assert!(matches!(f.write_at(b"x", 1), Err(Error::WouldDeadlock(_))));
    let mut buf = [0u8; 1];
    assert!(matches!(
        f.read_at(&mut buf, 1),
        Err(Error::WouldDeadlock(_))
    ));
    drop(g);
    let r = f.page(0).unwrap();
    // Reading a page this thread holds a read guard on is fine.
    assert_eq!(f.read_at(&mut buf, 1).unwrap(), 1);
    assert!(matches!(f.write_at(b"x", 1), Err(Error::WouldDeadlock(_))));
    drop(r);
    f.write_at(b"x", 1).unwrap();
    f.sync().unwrap();
}

/// The fields are private; what the setters set reads back through the
/// getters, and the cache reports the configuration it was built with.
#[test]
fn setters_read_back_through_getters() {
    let cfg = Config::new(1 << 20)
        .page_size(8192)
        .dirty_ratio(33)
        .dirty_background_ratio(11)
        .io_depth(7)
        .policy(pagecache::Policy::Legacy);
    assert_eq!(cfg.get_memory(), 1 << 20);
    assert_eq!(cfg.get_page_size(), 8192);
    assert_eq!(
        (cfg.get_dirty_ratio(), cfg.get_dirty_background_ratio()),
        (33, 11)
    );
    assert_eq!(cfg.get_io_depth(), 7);
    let cache = pagecache::PageCache::new(cfg).unwrap();
    assert_eq!(cache.config().get_policy(), pagecache::Policy::Legacy);
    assert_eq!(cache.config().get_page_size(), 8192);
}
