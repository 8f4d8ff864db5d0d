//! Files opened by path: sharing, renames, re-creation, and nothing lost
//! when the cache goes away.

use pagecache::{Config, PageCache};

#[test]
fn two_opens_of_one_file_share_pages_and_renames_keep_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let a = cache.create(dir.path().join("a")).unwrap();
    a.write_at(b"dirty in cache", 10).unwrap();
    let a2 = cache.open_existing(dir.path().join("a")).unwrap();
    let mut buf = [0u8; 14];
    a2.read_at(&mut buf, 10).unwrap();
    assert_eq!(&buf, b"dirty in cache");
    std::fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
    let b = cache.open_existing(dir.path().join("b")).unwrap();
    assert_eq!(b.len(), 24, "the renamed file is the same cached file");
    b.read_at(&mut buf, 10).unwrap();
    assert_eq!(&buf, b"dirty in cache");
    b.sync().unwrap();
    assert_eq!(
        &std::fs::read(dir.path().join("b")).unwrap()[10..],
        b"dirty in cache"
    );
}

#[test]
fn a_recreated_file_does_not_see_the_old_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let old = cache.create(&path).unwrap();
    old.write_at(b"old", 0).unwrap();
    std::fs::remove_file(&path).unwrap();
    let new = cache.create(&path).unwrap();
    assert_eq!(new.len(), 0);
    new.write_at(b"new", 0).unwrap();
    new.sync().unwrap();
    old.sync().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"new");
}

#[test]
fn dropping_the_cache_writes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    {
        let cache = PageCache::new(Config::new(1 << 20)).unwrap();
        let f = cache.create(&path).unwrap();
        f.write_at(&data, 123).unwrap();
        // Closed without sync: the cache must still write it when it stops.
    }
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), data.len() + 123);
    assert_eq!(&on_disk[123..], &data[..]);
}

#[test]
fn a_closed_file_reopened_sees_its_cached_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    cache
        .create(&path)
        .unwrap()
        .write_at(b"kept", 4096)
        .unwrap();
    let f = cache.open_existing(&path).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(f.read_at(&mut buf, 4096).unwrap(), 4);
    assert_eq!(&buf, b"kept");
    cache.shutdown().unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[4096..], b"kept");
}
