//! The `metrics` feature: every counter and gauge reaches the recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use pagecache::{Config, MemBackend, PageCache};

/// The last value each metric was given, with its labels.
#[derive(Default)]
struct Seen {
    counters: Mutex<HashMap<String, Arc<Value>>>,
    gauges: Mutex<HashMap<String, Arc<Value>>>,
}

#[derive(Default)]
struct Value {
    v: Mutex<f64>,
    labels: Vec<(String, String)>,
}

impl CounterFn for Value {
    fn increment(&self, n: u64) {
        *self.v.lock().unwrap() += n as f64;
    }
    fn absolute(&self, n: u64) {
        *self.v.lock().unwrap() = n as f64;
    }
}

impl GaugeFn for Value {
    fn increment(&self, n: f64) {
        *self.v.lock().unwrap() += n;
    }
    fn decrement(&self, n: f64) {
        *self.v.lock().unwrap() -= n;
    }
    fn set(&self, n: f64) {
        *self.v.lock().unwrap() = n;
    }
}

fn value(map: &Mutex<HashMap<String, Arc<Value>>>, key: &Key) -> Arc<Value> {
    map.lock()
        .unwrap()
        .entry(key.name().to_string())
        .or_insert_with(|| {
            Arc::new(Value {
                v: Mutex::new(f64::NAN),
                labels: key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect(),
            })
        })
        .clone()
}

impl Recorder for Seen {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(value(&self.counters, key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(value(&self.gauges, key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn get(map: &Mutex<HashMap<String, Arc<Value>>>, name: &str) -> f64 {
    let m = map.lock().unwrap();
    let v = m
        .get(name)
        .unwrap_or_else(|| panic!("{name} was not published"));
    let x = *v.v.lock().unwrap();
    x
}

#[test]
fn every_counter_and_gauge_is_published() {
    let cache = PageCache::new(Config::new(64 * 4096)).unwrap();
    let file = cache.open_backend(MemBackend::new()).unwrap();
    file.write_at(&[1u8; 3 * 4096], 0).unwrap();
    let mut buf = [0u8; 100];
    for _ in 0..5 {
        file.read_at(&mut buf, 10).unwrap();
    }
    file.sync().unwrap();
    let seen = Seen::default();
    metrics::with_local_recorder(&seen, || {
        cache.publish_metrics(&[("cache", "test".to_string())]);
    });
    let stats = cache.stats();
    let counters = seen.counters.lock().unwrap().len();
    assert_eq!(counters, stats.events.pairs().len());
    for (name, _) in stats.events.pairs() {
        get(&seen.counters, &format!("pagecache_{name}"));
    }
    assert_eq!(
        get(&seen.counters, "pagecache_hits"),
        stats.events.hits as f64
    );
    assert!(get(&seen.counters, "pagecache_hits") >= 5.0);
    assert_eq!(get(&seen.counters, "pagecache_pages_dirtied"), 3.0);
    assert_eq!(seen.gauges.lock().unwrap().len(), stats.gauges().len());
    assert_eq!(get(&seen.gauges, "pagecache_frames"), 64.0);
    assert_eq!(get(&seen.gauges, "pagecache_page_size_bytes"), 4096.0);
    assert_eq!(get(&seen.gauges, "pagecache_dirty"), 0.0);
    let labels = seen.gauges.lock().unwrap()["pagecache_free"].labels.clone();
    assert_eq!(labels, [("cache".to_string(), "test".to_string())]);

    // A second publish moves the values with the cache.
    file.write_at(&[2u8; 4096], 8 * 4096).unwrap();
    metrics::with_local_recorder(&seen, || cache.publish_metrics(&[]));
    assert_eq!(get(&seen.counters, "pagecache_pages_dirtied"), 4.0);
}
