//! Per-thread recording: latency histograms, op and hit counts, and the
//! sampler that records throughput and dirty/writeback pages over time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::report::{Latency, RoleResult, TimePoint};
use super::store::Store;

/// Latencies above this (ns) are recorded as this.
const MAX_NS: u64 = 60_000_000_000;

/// What one thread measured for one role.
pub struct RoleRec {
    pub hist: Histogram<u64>,
    pub ops: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Default for RoleRec {
    fn default() -> Self {
        RoleRec {
            hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds"),
            ops: 0,
            hits: 0,
            misses: 0,
        }
    }
}

impl RoleRec {
    /// Records one op's latency.
    #[inline]
    pub fn latency(&mut self, ns: u64) {
        self.hist.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Counts a lookup as a hit or miss.
    #[inline]
    pub fn hit(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }

    /// Folds another thread's record in.
    pub fn merge(&mut self, o: &RoleRec) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.hist.add(&o.hist);
        self.ops += o.ops;
        self.hits += o.hits;
        self.misses += o.misses;
    }

    /// Percentiles of the recorded latencies.
    pub fn latency_ns(&self) -> Latency {
        let h = &self.hist;
        if h.is_empty() {
            return Latency::default();
        }
        let p50 = h.value_at_quantile(0.5);
        let p99 = h.value_at_quantile(0.99).max(p50);
        let p999 = h.value_at_quantile(0.999).max(p99);
        let max = h.max().max(p999);
        Latency {
            p50,
            p99,
            p999,
            max,
        }
    }

    /// (latency ns, quantile) points of the CDF, for plots.
    pub fn cdf(&self) -> Vec<[f64; 2]> {
        let h = &self.hist;
        if h.is_empty() {
            return Vec::new();
        }
        let mut qs: Vec<f64> = (0..50).map(|i| i as f64 / 50.0).collect();
        qs.extend([
            0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
        ]);
        qs.into_iter()
            .map(|q| [h.value_at_quantile(q) as f64, q])
            .collect()
    }

    /// The role's figures for the report.
    pub fn result(&self, secs: f64) -> RoleResult {
        let lookups = self.hits + self.misses;
        RoleResult {
            ops: self.ops,
            ops_per_sec: self.ops as f64 / secs.max(1e-9),
            latency_ns: self.latency_ns(),
            hit_ratio: (lookups > 0).then(|| self.hits as f64 / lookups as f64),
            cdf: self.cdf(),
        }
    }
}

/// One cache line per thread: its count of completed ops, read by the sampler.
#[repr(align(128))]
#[derive(Default)]
pub struct Slot(pub AtomicU64);

/// Shared progress of a run's threads.
pub struct Progress {
    pub slots: Vec<Slot>,
    pub stop: AtomicBool,
}

impl Progress {
    pub fn new(threads: usize) -> Self {
        Progress {
            slots: (0..threads).map(|_| Slot::default()).collect(),
            stop: AtomicBool::new(false),
        }
    }

    /// Publishes thread `t`'s op count.
    #[inline]
    pub fn set(&self, t: usize, ops: u64) {
        self.slots[t].0.store(ops, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    /// Samples throughput and the store's gauges every 100 ms until stopped.
    pub fn sample<S: Store>(&self, store: &S, t0: Instant) -> Vec<TimePoint> {
        let period = Duration::from_millis(100);
        let mut out = Vec::new();
        let mut last_ops = self.total();
        let mut last_t = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(period);
            let now = Instant::now();
            let ops = self.total();
            let g = store.gauge();
            let dt = now.duration_since(last_t).as_secs_f64().max(1e-9);
            out.push(TimePoint {
                t: now.duration_since(t0).as_secs_f64(),
                ops_per_sec: ops.saturating_sub(last_ops) as f64 / dt,
                dirty_pages: g.dirty_pages,
                writeback_pages: g.writeback_pages,
            });
            last_ops = ops;
            last_t = now;
        }
        out
    }
}
