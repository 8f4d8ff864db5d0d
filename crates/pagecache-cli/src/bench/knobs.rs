//! The cache knobs a run uses (DESIGN §6): each workload's defaults, what the
//! command line overrides, and, for the `kernel` policy, the dirty limits the
//! kernel actually ran under.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::args::Workload;
use crate::CliError;

/// Knobs given on the command line; `None` keeps the workload's default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub dirty_ratio: Option<u8>,
    pub dirty_background_ratio: Option<u8>,
    pub background_reclaim: Option<bool>,
    pub page_size: Option<usize>,
    pub io_depth: Option<usize>,
    pub flushers: Option<usize>,
    pub io_uring: Option<bool>,
    pub batch_threads: Option<bool>,
    pub huge_pages: Option<bool>,
}

/// The knobs of one run, recorded in its JSON.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Knobs {
    /// Percent of the budget dirty at which dirtiers are stopped.
    pub dirty_ratio: u8,
    /// Percent of the budget dirty at which background writeback starts.
    pub dirty_background_ratio: u8,
    /// Whether the background reclaimer (kswapd) runs.
    pub background_reclaim: bool,
    pub page_size: usize,
    /// Writes in flight (`None`: not a knob of this policy).
    pub io_depth: Option<usize>,
    /// Flusher threads (`None`: not a knob of this policy).
    pub flushers: Option<usize>,
    /// Whether writeback may use io_uring (`None`: not a knob of this
    /// policy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub io_uring: Option<bool>,
    /// Whether the library's threads run under SCHED_BATCH (`None`: not a
    /// knob of this policy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub batch_threads: Option<bool>,
    /// Whether the arena asks for transparent huge pages (`None`: not a
    /// knob of this policy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub huge_pages: Option<bool>,
    /// What the dirty ratios are a percentage of.
    pub dirty_limit_of: String,
    /// The kernel's `vm.dirty_bytes` / `vm.dirty_background_bytes` when set
    /// (they replace the ratios).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dirty_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dirty_background_bytes: Option<u64>,
}

impl Knobs {
    /// The library's knobs for `w`: the workload's defaults, then `o`.
    /// A background ratio left to its default is lowered below an overridden
    /// dirty ratio rather than rejected.
    pub fn resolve(w: Workload, o: &Overrides) -> Result<Knobs, CliError> {
        let d = pagecache::Config::default();
        let (ratio, background) = match w {
            // The record's conditions: a high dirty limit and no early
            // background writeback, so dirty pages reach the LRU tail.
            Workload::MappedStream | Workload::BufferPool => (90, 80),
            Workload::Fsmark => (40, 30),
            // A memory cgroup of 2012 had no dirty limit of its own, and
            // the global background threshold was far above its size.
            Workload::SmallMemcg => (100, 99),
            _ => (d.get_dirty_ratio(), d.get_dirty_background_ratio()),
        };
        let dirty_ratio = o.dirty_ratio.unwrap_or(ratio);
        let dirty_background_ratio = match o.dirty_background_ratio {
            Some(b) => b,
            None if background < dirty_ratio => background,
            None => (dirty_ratio / 2).max(1),
        };
        let k = Knobs {
            dirty_ratio,
            dirty_background_ratio,
            // A memory cgroup's limit is enforced by direct reclaim alone
            // (kswapd works for the machine's watermarks, not a cgroup's);
            // a database buffer pool has no kswapd either: the backend that
            // needs a buffer evicts one itself (PostgreSQL's
            // StrategyGetBuffer, InnoDB's LRU single-page flush).
            background_reclaim: o.background_reclaim.unwrap_or(
                d.get_background_reclaim()
                    && !matches!(w, Workload::SmallMemcg | Workload::BufferPool),
            ),
            page_size: o.page_size.unwrap_or(d.get_page_size()),
            io_depth: Some(o.io_depth.unwrap_or(d.get_io_depth())),
            flushers: Some(o.flushers.unwrap_or(d.get_flushers())),
            io_uring: Some(o.io_uring.unwrap_or(d.get_io_uring())),
            batch_threads: Some(o.batch_threads.unwrap_or(d.get_batch_threads())),
            huge_pages: Some(o.huge_pages.unwrap_or(d.get_huge_pages())),
            dirty_limit_of: "the cache's budget".into(),
            dirty_bytes: None,
            dirty_background_bytes: None,
        };
        k.check()?;
        Ok(k)
    }

    fn check(&self) -> Result<(), CliError> {
        let bad = |m: String| Err(CliError::Usage(m));
        if self.dirty_ratio == 0 || self.dirty_ratio > 100 {
            return bad(format!(
                "--dirty-ratio {} must be in 1..=100",
                self.dirty_ratio
            ));
        }
        if self.dirty_background_ratio == 0 || self.dirty_background_ratio >= self.dirty_ratio {
            return bad(format!(
                "--dirty-background-ratio {} must be at least 1 and below the dirty ratio {}",
                self.dirty_background_ratio, self.dirty_ratio
            ));
        }
        // Workloads read and write 4 KiB blocks with O_DIRECT: a page must
        // hold whole blocks.
        if !self.page_size.is_power_of_two() || !(4096..=1 << 20).contains(&self.page_size) {
            return bad(format!(
                "--page-size {} must be a power of two from 4K to 1M",
                self.page_size
            ));
        }
        if let Some(d) = self.io_depth.filter(|d| !(1..=256).contains(d)) {
            return bad(format!("--io-depth {d} must be in 1..=256"));
        }
        if let Some(f) = self.flushers.filter(|f| !(1..=64).contains(f)) {
            return bad(format!("--flushers {f} must be in 1..=64"));
        }
        Ok(())
    }

    /// The cache configuration of a run.
    pub fn config(&self, memory: usize, policy: pagecache::Policy) -> pagecache::Config {
        let d = pagecache::Config::default();
        pagecache::Config::new(memory)
            .policy(policy)
            .dirty_ratio(self.dirty_ratio)
            .dirty_background_ratio(self.dirty_background_ratio)
            .background_reclaim(self.background_reclaim)
            .page_size(self.page_size)
            .io_depth(self.io_depth.unwrap_or(d.get_io_depth()))
            .flushers(self.flushers.unwrap_or(d.get_flushers()))
            .io_uring(self.io_uring.unwrap_or(d.get_io_uring()))
            .batch_threads(self.batch_threads.unwrap_or(d.get_batch_threads()))
            .huge_pages(self.huge_pages.unwrap_or(d.get_huge_pages()))
    }

    /// What the kernel ran under: `vm.dirty_*` from /proc/sys, a percentage
    /// of the memory cgroup's memory under cgroup v2 and of the machine's
    /// dirtyable memory otherwise (v1 memory cgroups have no dirty limit).
    pub fn kernel(cgroup_v2: bool) -> Knobs {
        let read = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/vm/{name}"))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        };
        let nonzero = |v: Option<u64>| v.filter(|&b| b > 0);
        Knobs {
            dirty_ratio: read("dirty_ratio").unwrap_or(0).min(100) as u8,
            dirty_background_ratio: read("dirty_background_ratio").unwrap_or(0).min(100) as u8,
            background_reclaim: true,
            // SAFETY: sysconf reads a constant of the running system and
            // touches no memory of ours.
            page_size: usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .unwrap_or(4096),
            io_depth: None,
            flushers: None,
            io_uring: None,
            batch_threads: None,
            huge_pages: None,
            dirty_limit_of: if nonzero(read("dirty_bytes")).is_some() {
                "bytes (vm.dirty_bytes, machine-wide)".into()
            } else if cgroup_v2 {
                "the memory cgroup's memory (cgroup v2 writeback)".into()
            } else {
                "the machine's dirtyable memory (no per-cgroup dirty limit)".into()
            },
            dirty_bytes: nonzero(read("dirty_bytes")),
            dirty_background_bytes: nonzero(read("dirty_background_bytes")),
        }
    }
}

/// Parses `on`/`off` (also `true`/`false`, `1`/`0`).
pub fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}

/// Parses a duration: a number with a unit `ns`, `us`, `ms` or `s`.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| {
        format!("cannot parse duration {s:?}: expected a number and a unit, like 8ms")
    })?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => {
            return Err(format!(
                "cannot parse duration {s:?}: the unit must be ns, us, ms or s, like 8ms"
            ))
        }
    };
    let secs = n * scale;
    if !secs.is_finite() || secs > 10.0 {
        return Err(format!("duration {s:?} must be at most 10s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let k = Knobs::resolve(Workload::BufferPool, &Overrides::default()).unwrap();
        assert_eq!((k.dirty_ratio, k.dirty_background_ratio), (90, 80));
        let o = Overrides {
            dirty_ratio: Some(40),
            ..Overrides::default()
        };
        let k = Knobs::resolve(Workload::BufferPool, &o).unwrap();
        assert_eq!((k.dirty_ratio, k.dirty_background_ratio), (40, 20));
        let o = Overrides {
            dirty_background_ratio: Some(95),
            ..Overrides::default()
        };
        assert!(Knobs::resolve(Workload::Hit, &o).is_err());
        let o = Overrides {
            page_size: Some(2048),
            ..Overrides::default()
        };
        assert!(Knobs::resolve(Workload::Hit, &o).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_arg("8ms").unwrap(), Duration::from_millis(8));
        assert_eq!(duration_arg("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(duration_arg("0.5s").unwrap(), Duration::from_millis(500));
        assert!(duration_arg("8").is_err());
        assert!(duration_arg("1h").is_err());
        assert!(duration_arg("20s").is_err());
    }
}
