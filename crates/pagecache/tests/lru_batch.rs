//! Pages threads have read in but not yet put on the LRU (each thread adds
//! its pages to the inactive list in batches) are still found by reclaim
//! when nothing else can be freed.

use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use pagecache::{Advice, Config, MemBackend, PageCache};

/// A cache large enough to batch (16 MiB of 4 KiB pages); threads holding
/// back fewer pages each than a batch; every other frame pinned. A read of
/// a new page must take one of the held-back pages rather than wait
/// forever or fail.
#[test]
fn held_back_pages_are_reclaimed_when_nothing_else_is_free() {
    const FRAMES: u64 = 4096;
    const THREADS: u64 = 20;
    const EACH: u64 = 10;
    let cache = PageCache::new(Config::new((FRAMES * 4096) as usize)).unwrap();
    let frames = cache.stats().frames as u64;
    assert_eq!(frames, FRAMES);
    let file = cache.open_backend(MemBackend::new()).unwrap();
    let len = (frames + THREADS * EACH + 1) * 4096;
    file.set_len(len).unwrap();
    file.sync().unwrap();
    // Exactly the pages asked for, none read ahead.
    file.advise(0..len, Advice::Random).unwrap();
    let hold = Arc::new(Barrier::new(THREADS as usize + 1));
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        // Each helper reads its pages (held back in its batch) and stays
        // alive, so its batch is not the leftover of an exited thread.
        for t in 0..THREADS {
            let (file, hold) = (&file, Arc::clone(&hold));
            s.spawn(move || {
                let mut buf = [0u8; 1];
                for i in 0..EACH {
                    file.read_at(&mut buf, (t * EACH + i) * 4096).unwrap();
                }
                hold.wait(); // read
                hold.wait(); // released
            });
        }
        hold.wait();
        // Pin every frame still free: the held-back pages are the only
        // ones left that can be freed.
        let base = THREADS * EACH;
        let free = cache.stats().free as u64;
        let mut guards = Vec::new();
        for i in 0..free {
            guards.push(file.page(base + i).unwrap());
        }
        assert_eq!(cache.stats().free, 0);
        let (file_ref, tx) = (&file, done_tx.clone());
        let reader = s.spawn(move || {
            let mut buf = [0u8; 1];
            let r = file_ref.read_at(&mut buf, (base + free) * 4096);
            let _ = tx.send(r.map(|_| ()));
        });
        let got = done_rx.recv_timeout(Duration::from_secs(20));
        drop(guards);
        hold.wait();
        reader.join().unwrap();
        match got {
            Ok(r) => r.expect("the read found a frame"),
            Err(_) => panic!("the read waited 20 s for a frame that was held back"),
        }
    });
}
