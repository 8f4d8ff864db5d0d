//! Each hint a storage engine can give the cache, on a real file, checking
//! what it did: `Sequential` and `Random` readahead, `WillNeed` (prefetch in
//! the background), `DontNeed` (write, then drop), `NoReuse` (a scan that
//! does not displace the hot set), `evict`, `is_resident`, and resizing the
//! budget at run time.
//!
//! Run: `cargo run -p pagecache --example hints`

use std::time::{Duration, Instant};

use pagecache::{Advice, Config, PageCache};

const PS: u64 = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("table");
    // A budget of 4 MiB that may grow to 16 MiB at run time.
    let cache = PageCache::new(Config::new(4 << 20).max_memory(16 << 20))?;
    let file = cache.create(&path)?;
    let pages = 512u64; // 2 MiB
    file.write_at(&vec![1u8; (pages * PS) as usize], 0)?;
    file.sync()?;

    // DontNeed: written (already, here) and dropped from memory.
    file.advise(0..pages * PS, Advice::DontNeed)?;
    let resident = file.is_resident(0..pages * PS)?;
    assert!(resident.iter().all(|r| !r), "DontNeed left pages resident");
    println!("DontNeed: 0 of {pages} pages resident");

    // Random: a miss reads one page, no readahead.
    file.advise(0..pages * PS, Advice::Random)?;
    let before = cache.stats().events.pages_readahead;
    let mut buf = [0u8; 16];
    file.read_at(&mut buf, 100 * PS)?;
    assert_eq!(cache.stats().events.pages_readahead, before);
    println!("Random: a miss read 1 page, none ahead");

    // Sequential: a miss reads a large window ahead at once.
    file.advise(0..pages * PS, Advice::Sequential)?;
    file.read_at(&mut buf, 200 * PS)?;
    let ahead = cache.stats().events.pages_readahead - before;
    assert!(ahead > 0, "Sequential read nothing ahead");
    println!("Sequential: one miss read {ahead} pages ahead");
    file.advise(0..pages * PS, Advice::Normal)?;

    // WillNeed / prefetch: returns at once, the pages arrive in the
    // background.
    file.evict(0..pages * PS)?;
    file.prefetch(0..64 * PS)?;
    let t = Instant::now();
    while !file.is_resident(0..64 * PS)?.iter().all(|&r| r) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "prefetch never landed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("WillNeed: 64 pages prefetched in the background");

    // NoReuse: a one-pass scan of another file does not count as use, so
    // it never promotes its pages over the hot set's.
    let scan = cache.create(dir.path().join("log"))?;
    scan.write_at(&vec![2u8; (pages * PS) as usize], 0)?;
    scan.sync()?;
    scan.advise(0..pages * PS, Advice::NoReuse)?;
    let promoted = cache.stats().events.pgactivate;
    for _ in 0..2 {
        for i in 0..pages {
            scan.read_at(&mut buf, i * PS)?;
        }
    }
    let promotions = cache.stats().events.pgactivate - promoted;
    assert_eq!(promotions, 0, "NoReuse pages were promoted");
    println!("NoReuse: two passes over {pages} pages, no promotion");

    // evict: clean, unpinned pages go; a pinned one stays.
    let held = file.page(0)?;
    let dropped = file.evict(0..64 * PS)?;
    assert!(file.is_resident(0..PS)?[0], "evict dropped a pinned page");
    drop(held);
    println!("evict: dropped {dropped} pages, kept the pinned one");

    // set_memory: grow, then shrink back, without stopping.
    cache.set_memory(16 << 20)?;
    assert_eq!(cache.stats().frames, (16 << 20) / PS as usize);
    cache.set_memory(4 << 20)?;
    assert_eq!(cache.stats().frames, (4 << 20) / PS as usize);
    println!("set_memory: grew to 16 MiB and shrank back to 4 MiB");
    Ok(())
}
