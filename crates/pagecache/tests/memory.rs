//! The cache stays within its budget plus a small, stated overhead.
//!
//! Frame metadata is a fixed 40 bytes per page-sized frame (~1% at 4 KiB
//! pages); mapping indexes and LRU entries add a few dozen bytes per resident
//! page. This test measures resident memory with every frame in use and
//! holds it under 5% over the budget (measured: about 3%).

use pagecache::{Config, PageCache};

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn resident_memory_is_budget_plus_small_overhead() {
    let Some(before) = rss_bytes() else {
        eprintln!("no /proc/self/status here: skipping the RSS measurement");
        return;
    };
    let budget = 128usize << 20;
    let cache = PageCache::new(Config::new(budget)).unwrap();
    // A backend that allocates nothing per read: a sparse file of zeros.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(budget as u64 * 2)
        .unwrap();
    let f = cache.open(&path).unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..(budget as u64 * 2 / 4096) {
        f.read_at(&mut buf, i * 4096).unwrap();
    }
    let st = cache.stats();
    assert!(st.free <= st.frames / 16, "arena should be full: {st:?}");
    let after = rss_bytes().unwrap();
    let grown = after.saturating_sub(before);
    let overhead = grown as f64 / budget as f64 - 1.0;
    eprintln!(
        "budget {budget} rss grew {grown} overhead {:.2}%",
        overhead * 100.0
    );
    assert!(
        grown >= budget as u64 * 9 / 10,
        "the arena must be resident: grew {grown}"
    );
    assert!(
        overhead < 0.05,
        "overhead {:.2}% of budget",
        overhead * 100.0
    );
}
