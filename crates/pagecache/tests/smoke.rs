use pagecache::{Config, MemBackend, PageCache, Policy};

#[test]
fn write_read_sync_over_budget() {
    for policy in Policy::ALL {
        let cache = PageCache::new(Config::new(64 * 4096).policy(policy)).unwrap();
        let be = MemBackend::new();
        let f = cache.open_backend(be.clone()).unwrap();
        let mut model = vec![0u8; 1024 * 4096];
        for i in 0..1024u64 {
            let b = vec![(i % 251) as u8; 4096];
            f.write_at(&b, i * 4096).unwrap();
            model[i as usize * 4096..(i as usize + 1) * 4096].copy_from_slice(&b);
        }
        let mut buf = vec![0u8; 4096];
        for i in (0..1024u64).rev() {
            f.read_at(&mut buf, i * 4096).unwrap();
            assert_eq!(buf[0], (i % 251) as u8, "{policy} page {i}");
        }
        f.sync().unwrap();
        assert_eq!(be.contents(), model, "{policy}");
        println!("{policy}: {}", cache.stats());
    }
}
