//! `PageCache::set_memory`: the budget grows and shrinks while the cache runs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{page_bytes, ProbeBackend, Rng};
use pagecache::{Config, Error, MemBackend, PageCache};

const PS: usize = 4096;

fn resident(file: &pagecache::File) -> usize {
    let r = file.is_resident(0..u64::MAX).unwrap();
    r.iter().filter(|&&x| x).count()
}

#[test]
fn growing_allows_more_resident_pages() {
    let cache = PageCache::new(Config::new(64 * PS).max_memory(512 * PS)).unwrap();
    let pages = 300u64;
    let data: Vec<u8> = (0..pages).flat_map(|i| page_bytes(PS, i, 1)).collect();
    let file = cache
        .open_backend(MemBackend::with_contents(data.clone()))
        .unwrap();
    let mut buf = vec![0u8; pages as usize * PS];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert!(resident(&file) <= 64, "{}", resident(&file));
    assert_eq!(cache.stats().frames, 64);

    cache.set_memory(512 * PS).unwrap();
    assert_eq!(cache.stats().frames, 512);
    assert_eq!(cache.watermarks(), pagecache::Watermarks::for_frames(512));
    for _ in 0..2 {
        file.read_exact_at(&mut buf, 0).unwrap();
    }
    assert_eq!(buf, data);
    assert_eq!(resident(&file), pages as usize);
}

#[test]
fn shrinking_under_load_loses_no_data() {
    let cache = PageCache::new(Config::new(512 * PS).max_memory(512 * PS)).unwrap();
    let mem = MemBackend::new();
    let file = cache.open_backend(mem.clone()).unwrap();
    let pages = 1024u64;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut model = vec![0u8; pages as usize * PS];
            let mut rng = Rng(7);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 2000 {
                let i = rng.below(pages);
                let bytes = page_bytes(PS, i, n);
                file.write_at(&bytes, i * PS as u64).unwrap();
                model[i as usize * PS..][..PS].copy_from_slice(&bytes);
                n += 1;
            }
            model
        })
    };
    let reader = {
        let (file, stop) = (file.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; PS];
            let mut rng = Rng(9);
            while !stop.load(Ordering::Relaxed) {
                file.read_at(&mut buf, rng.below(pages) * PS as u64)
                    .unwrap();
            }
        })
    };
    for bytes in [64 * PS, 256 * PS, 32 * PS, 128 * PS, 48 * PS] {
        std::thread::sleep(Duration::from_millis(30));
        cache.set_memory(bytes).unwrap();
        assert_eq!(cache.stats().frames, bytes / PS);
    }
    stop.store(true, Ordering::Relaxed);
    let model = writer.join().unwrap();
    reader.join().unwrap();
    file.sync().unwrap();
    let s = cache.stats();
    assert_eq!(s.frames, 48, "{s:?}");
    assert!(resident(&file) <= 48, "{} resident", resident(&file));
    assert!(s.free <= 48, "{s:?}");
    let mut got = mem.contents();
    got.resize(model.len(), 0);
    assert!(got == model, "the backend differs from what was written");
}

#[test]
fn shrinking_waits_for_dirty_pages_to_be_written() {
    let probe = ProbeBackend::new().with_delay(Duration::from_millis(1));
    let cache = PageCache::new(
        Config::new(256 * PS)
            .dirty_ratio(90)
            .dirty_background_ratio(80),
    )
    .unwrap();
    let file = cache.open_backend(probe.clone()).unwrap();
    let data: Vec<u8> = (0..200).flat_map(|i| page_bytes(PS, i, 3)).collect();
    file.write_at(&data, 0).unwrap();
    assert!(cache.stats().dirty > 100);
    cache.set_memory(16 * PS).unwrap();
    let s = cache.stats();
    assert_eq!(s.frames, 16);
    assert!(resident(&file) <= 16);
    assert_eq!(&probe.mem.contents()[..data.len()], &data[..]);
    let mut buf = vec![0u8; data.len()];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, data);
}

#[test]
fn bad_sizes_are_refused_with_a_reason() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    for (bytes, says) in [
        (4 * PS, "at least"),
        (65 * PS, "above max_memory"),
        (0, "at least"),
    ] {
        match cache.set_memory(bytes) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{bytes}: {other:?}"),
        }
    }
    assert_eq!(cache.stats().frames, 64);
    let bad = PageCache::new(Config::new(64 * PS).max_memory(32 * PS));
    assert!(
        matches!(bad, Err(Error::Config(ref m)) if m.contains("below memory")),
        "{:?}",
        bad.err()
    );
    let w = pagecache::Watermarks {
        min: 4,
        low: 8,
        high: 30,
    };
    let cache = PageCache::new(Config::new(64 * PS).max_memory(64 * PS).watermarks(w)).unwrap();
    match cache.set_memory(24 * PS) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("high watermark"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(cache.stats().frames, 64);
}
