//! The `metrics` feature: every counter and gauge of [`Stats`] through the
//! `metrics` crate's facade, so any exporter (Prometheus, `StatsD`, …) shows
//! them.
//!
//! Publishing is a pull: [`PageCache::publish_metrics`] takes one
//! [`Stats`] snapshot and hands each value to the installed recorder.
//! Nothing on the cache's own paths touches the facade, so the hit path
//! pays nothing; call it from the exporter's scrape hook or a timer.

#[cfg(feature = "metrics")]
use crate::cache::PageCache;
use crate::stats::Stats;

/// Prefix of every published name.
#[cfg(feature = "metrics")]
const PREFIX: &str = "pagecache_";

impl Stats {
    /// The gauges (frame counts and rates now) as (name, value) pairs, in
    /// the order of the fields.
    pub fn gauges(&self) -> Vec<(&'static str, f64)> {
        #[allow(clippy::cast_precision_loss)] // counts of frames fit in f64's 52 bits
        let g = |v: usize| v as f64;
        vec![
            ("frames", g(self.frames)),
            ("page_size_bytes", g(self.page_size)),
            ("free", g(self.free)),
            ("clean", g(self.clean)),
            ("dirty", g(self.dirty)),
            ("writeback", g(self.writeback)),
            ("unstable", g(self.unstable)),
            ("pinned", g(self.pinned)),
            ("inactive", g(self.inactive)),
            ("active", g(self.active)),
            ("write_bandwidth_bytes_per_second", {
                #[allow(clippy::cast_precision_loss)] // a rate; rounding is fine
                let b = self.write_bandwidth as f64;
                b
            }),
            (
                "io_uring",
                f64::from(u8::from(self.io_engine == crate::IoEngine::IoUring)),
            ),
        ]
    }
}

#[cfg(feature = "metrics")]
impl PageCache {
    /// Publishes a snapshot of every statistic through the `metrics`
    /// facade: each [`Events`](crate::Events) counter as a counter named
    /// `pagecache_<field>` (set to its absolute value), and each frame count
    /// of [`Stats`] as a gauge (`pagecache_frames`, `pagecache_free`,
    /// `pagecache_dirty`, …; the list is [`Stats::gauges`]). `labels` are
    /// attached to every value, e.g. `&[("cache", "index")]` to tell caches
    /// apart. Needs the `metrics` feature.
    pub fn publish_metrics(&self, labels: &[(&'static str, String)]) {
        let s = self.stats();
        let labels: Vec<::metrics::Label> = labels
            .iter()
            .map(|(k, v)| ::metrics::Label::new(*k, v.clone()))
            .collect();
        for (name, v) in s.events.pairs() {
            ::metrics::counter!(format!("{PREFIX}{name}"), labels.iter()).absolute(v);
        }
        for (name, v) in s.gauges() {
            ::metrics::gauge!(format!("{PREFIX}{name}"), labels.iter()).set(v);
        }
    }
}
