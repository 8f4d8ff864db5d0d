//! `Stats` and `Events` serialize with the `serde` feature
//! (`cargo test -p pagecache --features serde --test serde`).
#![cfg(feature = "serde")]

use pagecache::{Config, MemBackend, PageCache};

#[test]
fn stats_serialize_every_field_with_its_value() {
    let cache = PageCache::new(Config::new(1 << 20)).unwrap();
    let f = cache.open_backend(MemBackend::new()).unwrap();
    f.write_at(&[1u8; 3 * 4096], 0).unwrap();
    let stats = cache.stats();
    let v = serde_json::to_value(stats).unwrap();
    assert_eq!(v["frames"], stats.frames as u64);
    assert_eq!(v["page_size"], 4096);
    assert_eq!(v["dirty"], stats.dirty as u64);
    let events = v["events"].as_object().unwrap();
    let pairs = stats.events.pairs();
    assert_eq!(events.len(), pairs.len(), "one JSON field per counter");
    for (name, value) in pairs {
        assert_eq!(events[name], value, "{name}");
    }
    assert_eq!(events["misses"], 3);
}
