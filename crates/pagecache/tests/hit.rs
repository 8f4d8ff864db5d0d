//! The hit protocol under churn: readers find pages without a lock while
//! reclaim frees their frames and new owners fill them with other pages,
//! and while truncation takes pages out. Every page of every file is
//! stamped with its own (file, index) in each 8-byte word, so a reader that
//! copied from, or pinned, a frame reused for another page sees the wrong
//! stamp.

use std::sync::atomic::{AtomicBool, Ordering};

use pagecache::{Config, File, MemBackend, PageCache};

const PS: usize = 4096;
/// Pages per file: the two files together are three times the budget.
const PAGES: u64 = 48;
const FRAMES: usize = 32;

fn stamp(file: u64, index: u64) -> [u8; 8] {
    (file << 32 | index | 1 << 63).to_le_bytes()
}

fn stamped(file: u64, index: u64) -> Vec<u8> {
    stamp(file, index)
        .iter()
        .copied()
        .cycle()
        .take(PS)
        .collect()
}

/// Every word of `bytes` (read at `at` in page `index`) is the page's stamp,
/// or zero where `zeros_ok` (a truncated and re-extended page not yet
/// rewritten).
fn check(bytes: &[u8], file: u64, index: u64, at: usize, zeros_ok: bool) {
    let want = stamp(file, index);
    for (k, b) in bytes.iter().enumerate() {
        let w = want[(at + k) % 8];
        assert!(
            *b == w || zeros_ok && *b == 0,
            "file {file} page {index} byte {}: {b:#x}, not its stamp {w:#x}",
            at + k
        );
    }
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn fill(file: &File, tag: u64) {
    for i in 0..PAGES {
        file.write_at(&stamped(tag, i), i * PS as u64).unwrap();
    }
}

fn read_loop(files: &[File; 2], seed: u64, stop: &AtomicBool, truncated: u64) {
    let mut rng = Rng(seed);
    let mut buf = vec![0u8; PS];
    while !stop.load(Ordering::Relaxed) {
        let tag = rng.below(2);
        let file = &files[tag as usize];
        let index = rng.below(PAGES);
        let zeros_ok = tag == truncated;
        match rng.below(3) {
            // A whole page.
            0 => {
                let n = file.read_at(&mut buf, index * PS as u64).unwrap();
                check(&buf[..n], tag, index, 0, zeros_ok);
            }
            // A piece inside a page, at an odd offset.
            1 => {
                let at = rng.below(PS as u64 - 100) as usize | 1;
                let n = file
                    .read_at(&mut buf[..99], index * PS as u64 + at as u64)
                    .unwrap();
                check(&buf[..n], tag, index, at, zeros_ok);
            }
            // A zero-copy guard (past the end of a truncated file: refused).
            _ => {
                if let Ok(g) = file.page(index) {
                    check(&g, tag, index, 0, zeros_ok);
                }
            }
        }
    }
}

#[test]
fn readers_never_see_another_pages_bytes_while_frames_are_reused() {
    let cache = PageCache::new(Config::new(FRAMES * PS)).unwrap();
    let files = [0, 1].map(|_| cache.open_backend(MemBackend::new()).unwrap());
    for (tag, f) in files.iter().enumerate() {
        fill(f, tag as u64);
        f.sync().unwrap();
    }
    let before = cache.stats().events;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|t| {
                let (files, stop) = (&files, &stop);
                s.spawn(move || read_loop(files, 11 + t, stop, u64::MAX))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    });
    let ev = cache.stats().events.since(&before);
    // The budget holds a third of the pages: the readers hit and missed,
    // and reclaim freed frames under them all along.
    assert!(ev.hits > 1000 && ev.misses > 1000, "{ev:?}");
    assert!(ev.pgsteal_direct + ev.pgsteal_background > 1000, "{ev:?}");
    assert_eq!(cache.stats().pinned, 0, "a pin leaked");
}

#[test]
fn readers_never_see_another_pages_bytes_while_a_file_is_truncated() {
    let cache = PageCache::new(Config::new(FRAMES * PS)).unwrap();
    let files = [0, 1].map(|_| cache.open_backend(MemBackend::new()).unwrap());
    for (tag, f) in files.iter().enumerate() {
        fill(f, tag as u64);
        f.sync().unwrap();
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (files, stop) = (&files, &stop);
                s.spawn(move || read_loop(files, 23 + t, stop, 0))
            })
            .collect();
        // File 0 is cut to a random length and written back whole, again
        // and again: its pages are orphaned under the readers.
        let mut rng = Rng(5);
        for _ in 0..200 {
            let len = rng.below(PAGES * PS as u64);
            files[0].set_len(len).unwrap();
            fill(&files[0], 0);
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
    });
    assert_eq!(cache.stats().pinned, 0, "a pin leaked");
}

/// Page guards against in-place writers: writers rewrite whole pages with
/// a new generation in every word while readers hold `page()` guards, take
/// the page again while holding it (a second guard, a copying read), and
/// yield in between. A guard's bytes must be one generation throughout and
/// must not change while it lives; reclaim frees and refills frames all
/// along (the pages are twice the budget).
#[test]
fn page_guards_keep_writers_out_while_frames_are_reused() {
    const N: u64 = 2 * FRAMES as u64;
    let word = |index: u64, generation: u64| (index << 32 | generation).to_le_bytes();
    let page = |index: u64, generation: u64| -> Vec<u8> {
        word(index, generation)
            .iter()
            .copied()
            .cycle()
            .take(PS)
            .collect()
    };
    // One generation in every word of a whole page of `index`.
    let uniform = |bytes: &[u8], index: u64| -> u64 {
        let first = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(first >> 32, index, "page {index} holds another page");
        for w in bytes.chunks_exact(8) {
            assert_eq!(
                u64::from_le_bytes(w.try_into().unwrap()),
                first,
                "page {index} is torn"
            );
        }
        first & 0xffff_ffff
    };
    let cache = PageCache::new(Config::new(FRAMES * PS)).unwrap();
    let file = cache.open_backend(MemBackend::new()).unwrap();
    for i in 0..N {
        file.write_at(&page(i, 0), i * PS as u64).unwrap();
    }
    let stop = AtomicBool::new(false);
    let held = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (file, stop) = (&file, &stop);
            s.spawn(move || {
                let mut rng = Rng(31 + t);
                let mut generation = 1;
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.below(N);
                    file.write_at(&page(i, generation), i * PS as u64).unwrap();
                    generation += 1;
                }
            });
        }
        for t in 0..2u64 {
            let (file, stop, held) = (&file, &stop, &held);
            s.spawn(move || {
                let mut rng = Rng(71 + t);
                let mut buf = vec![0u8; PS];
                while !stop.load(Ordering::Relaxed) {
                    let i = rng.below(N);
                    let g = file.page(i).unwrap();
                    let generation = uniform(&g, i);
                    std::thread::yield_now();
                    if rng.below(2) == 0 {
                        let again = file.page(i).unwrap();
                        assert_eq!(uniform(&again, i), generation, "a second guard differs");
                    } else {
                        file.read_at(&mut buf, i * PS as u64).unwrap();
                        assert_eq!(uniform(&buf, i), generation, "a read under a guard differs");
                    }
                    assert_eq!(uniform(&g, i), generation, "a held page changed");
                    held.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        held.load(Ordering::Relaxed) > 1000,
        "too few guards to tell"
    );
    let ev = cache.stats().events;
    assert!(ev.pgsteal_direct + ev.pgsteal_background > 100, "{ev:?}");
    assert_eq!(cache.stats().pinned, 0, "a pin leaked");
}
