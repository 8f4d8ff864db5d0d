//! The knobs (DESIGN §6) and their validation.

use std::time::Duration;

use crate::error::{Error, Result};

/// What direct reclaim does with a dirty victim.
///
/// Pick [`Policy::Offload`] (the default) unless you are measuring: it is the
/// only policy that keeps an allocating thread off the disk and never fails
/// while dirty pages could be written. [`Policy::Legacy`] reproduces the
/// classic design for comparison: an allocating thread may write someone
/// else's dirty page, synchronously, one page at a time. [`Policy::NoThrottle`]
/// suits callers that prefer an immediate [`Error::NoCleanFrame`] to waiting
/// (a latency-bound server that sheds load instead of blocking): it never
/// waits for writeback, so it fails whenever every unpinned frame is dirty.
///
/// New policies may be added in minor releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Flag it for reclaim, kick the flushers, take a clean frame or wait for
    /// writeback progress (the design the kernel converged on). Writeback
    /// stays in large sorted batches; an allocator's worst case is a wait
    /// for the flushers, never its own write.
    #[default]
    Offload,
    /// Write that one page synchronously from the allocating thread, then free
    /// it (the 2010 behaviour, kept for comparison). Small random writes from
    /// reclaim and deep allocation stacks; use it to measure, not to serve.
    Legacy,
    /// Like `Offload`, but fail at once with [`Error::NoCleanFrame`] when
    /// nothing clean can be found, instead of waiting for writeback.
    NoThrottle,
}

impl Policy {
    /// All policies the library implements.
    pub const ALL: [Policy; 3] = [Policy::Offload, Policy::Legacy, Policy::NoThrottle];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Offload => "offload",
            Policy::Legacy => "legacy",
            Policy::NoThrottle => "no-throttle",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown policy {s:?}; expected one of offload, legacy, no-throttle"
                ))
            })
    }
}

/// Free-frame watermarks, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Below this, an allocating thread reclaims directly before taking a frame.
    pub min: usize,
    /// Below this, the background reclaimer is woken.
    pub low: usize,
    /// The background reclaimer works until this many frames are free.
    pub high: usize,
}

impl Watermarks {
    /// The defaults for an arena of `frames` frames.
    pub fn for_frames(frames: usize) -> Self {
        let min = (frames / 128).max(1);
        let low = (frames / 64).max(min + 1);
        let high = (frames / 32).max(low + 1);
        Watermarks { min, low, high }
    }
}

/// The cache's configuration. Build one with [`Config::new`] and the setters,
/// then hand it to [`PageCache::new`](crate::PageCache::new), which validates it.
/// The fields are private, so new knobs can arrive without breaking code;
/// read them back with the `get_` methods (as `std::process::Command` does).
#[derive(Clone, Debug)]
pub struct Config {
    /// Memory budget for page frames, in bytes.
    pub(crate) memory: usize,
    /// The largest budget [`PageCache::set_memory`](crate::PageCache::set_memory)
    /// may grow to; `None` means `memory`. Address space for this much is
    /// reserved up front; only the frames in use cost memory.
    pub(crate) max_memory: Option<usize>,
    /// Page size in bytes: a power of two, at least 512.
    pub(crate) page_size: usize,
    /// Watermarks; `None` derives them from the budget.
    pub(crate) watermarks: Option<Watermarks>,
    /// Percentage of frames dirty at which background writeback starts.
    pub(crate) dirty_background_ratio: u8,
    /// Percentage of frames dirty at which dirtying threads are stopped.
    pub(crate) dirty_ratio: u8,
    /// A file dirty for longer than this is written back.
    pub(crate) dirty_expire: Duration,
    /// How often flushers wake to look for expired dirty files.
    pub(crate) dirty_writeback_interval: Duration,
    /// Number of flusher threads.
    pub(crate) flushers: usize,
    /// Largest coalesced write, in bytes (rounded down to whole pages).
    pub(crate) max_io: usize,
    /// Writes in flight at once (at most; `writeback/wbt.rs` lowers it
    /// while reads wait behind writes). Default 256: 4 KiB random writeback
    /// is bound by the device's latency per write, and on `pagecache bench
    /// --workload randwrite` (64 MiB, `io_uring`) 256 in flight gave 62.6k
    /// ops/s against 42.0k at 64 (medians of 3 alternating runs); with
    /// `io_uring` the depth costs no threads.
    pub(crate) io_depth: usize,
    /// Whether to issue writeback through `io_uring` where the kernel allows.
    pub(crate) io_uring: bool,
    /// What direct reclaim does with dirty pages.
    pub(crate) policy: Policy,
    /// Whether to run the background reclaimer thread.
    pub(crate) background_reclaim: bool,
    /// Largest readahead window per open file, in bytes (rounded down to
    /// whole pages; at most an eighth of the budget is used). A file advised
    /// `Sequential` gets twice this.
    pub(crate) readahead_max: usize,
    /// Whether the cache's own threads run under `SCHED_BATCH` (`sched.rs`).
    pub(crate) batch_threads: bool,
    /// Whether to back the arena with transparent huge pages where the
    /// kernel has them (see the setter).
    pub(crate) huge_pages: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memory: 64 << 20,
            max_memory: None,
            page_size: 4096,
            watermarks: None,
            dirty_background_ratio: 10,
            dirty_ratio: 20,
            dirty_expire: Duration::from_secs(30),
            dirty_writeback_interval: Duration::from_secs(5),
            flushers: 1,
            max_io: 1 << 20,
            io_depth: 256,
            io_uring: true,
            policy: Policy::Offload,
            background_reclaim: true,
            readahead_max: DEFAULT_READAHEAD_MAX,
            batch_threads: false,
            huge_pages: true,
        }
    }
}

/// Default largest readahead window. On the `scan` bench (64 MiB budget,
/// 2 threads, a direct-I/O file), with windows read through `io_uring` as
/// four reads in flight, 4 MiB did best of what was measured: medians of
/// 5 alternating runs gave 539k ops/s at 4 MiB against 355k at 2 MiB, and
/// of 4 runs 491k at 4 MiB, 334k at 2 MiB, 516k at 8 MiB (which holds
/// twice the memory in flight for no clear gain). With blocking reader
/// threads 2 MiB had done best (474k against 313k at 512 KiB). The device
/// read ahead by the kernel there, `read_ahead_kb`, was 8 MiB.
pub const DEFAULT_READAHEAD_MAX: usize = 4 << 20;

/// Largest `readahead_max` accepted.
pub const MAX_READAHEAD_MAX: usize = 64 << 20;

/// Smallest arena accepted: fewer frames leave no room between watermarks.
pub const MIN_FRAMES: usize = 8;

/// A getter named `get_<knob>`, as `std::process::Command` names its
/// getters beside setters of the bare name.
macro_rules! getter {
    ($get:ident: $name:ident: $ty:ty) => {
        #[doc = concat!("The `", stringify!($name), "` knob in force (see the setter of the same name).")]
        #[must_use]
        pub fn $get(&self) -> $ty {
            self.$name
        }
    };
}

/// A setter of the bare knob name and its `get_` getter.
macro_rules! setter {
    ($(#[$m:meta])* $name:ident, $get:ident: $ty:ty) => {
        $(#[$m])*
        #[must_use = "setters return the changed configuration"]
        pub fn $name(mut self, v: $ty) -> Self {
            self.$name = v;
            self
        }

        getter!($get: $name: $ty);
    };
}

impl Config {
    /// A default configuration with a budget of `memory` bytes.
    pub fn new(memory: usize) -> Self {
        Config {
            memory,
            ..Config::default()
        }
    }

    setter!(/// Sets the page size.
        page_size, get_page_size: usize);
    setter!(/// Sets the background writeback threshold (percent).
        dirty_background_ratio, get_dirty_background_ratio: u8);
    setter!(/// Sets the dirty limit (percent).
        dirty_ratio, get_dirty_ratio: u8);
    setter!(/// Sets the dirty expiry age.
        dirty_expire, get_dirty_expire: Duration);
    setter!(/// Sets the flusher wake-up interval.
        dirty_writeback_interval, get_dirty_writeback_interval: Duration);
    setter!(/// Sets the number of flusher threads.
        flushers, get_flushers: usize);
    setter!(/// Sets the largest coalesced write in bytes.
        max_io, get_max_io: usize);
    setter!(/// Sets the number of writes in flight.
        io_depth, get_io_depth: usize);
    setter!(/// Issues writeback and asynchronous readahead through `io_uring`
        /// where the kernel allows it (the default); `false` uses blocking
        /// I/O and background reader threads only. A backend without
        /// [`Backend::async_write_fd`](crate::Backend::async_write_fd)
        /// (or [`Backend::async_read_fd`](crate::Backend::async_read_fd))
        /// is written (or read ahead) by the threads either way.
        io_uring, get_io_uring: bool);
    setter!(/// Sets the reclaim policy.
        policy, get_policy: Policy);
    setter!(/// Turns the background reclaimer on or off.
        background_reclaim, get_background_reclaim: bool);
    setter!(/// Sets the largest readahead window in bytes.
        readahead_max, get_readahead_max: usize);
    setter!(/// Runs the cache's background threads (flushers, background
        /// reclaimer, blocking I/O threads; not the `io_uring` reaper, which
        /// readers wait on) under Linux's `SCHED_BATCH`: they keep their
        /// share of the CPU, but their wake-ups do not preempt the
        /// application's running threads. Off by default: on `pagecache
        /// bench --workload mapped-stream --batch-threads on|off` (quiet
        /// 2-core machine) the readers' tail under `offload` was the same
        /// either way (p99.9 0.9–1.1 µs), and `legacy`'s stream took 50%
        /// longer with its background threads batched. For applications
        /// whose latency-bound threads keep every core busy.
        batch_threads, get_batch_threads: bool);
    setter!(/// Backs the arena with 2 MiB transparent huge pages where the kernel
        /// has them (`madvise(MADV_HUGEPAGE)`; `/sys/kernel/mm/transparent_hugepage/enabled`
        /// must be `always` or `madvise`), so a hit's page lookup costs fewer
        /// TLB misses at large budgets. `false` refuses them
        /// (`MADV_NOHUGEPAGE`) even where the kernel would use them for
        /// everything. Frames given back by
        /// [`PageCache::set_memory`](crate::PageCache::set_memory) split
        /// the huge page they lie in (docs/design.md, "Memory").
        huge_pages, get_huge_pages: bool);

    getter!(get_memory: memory: usize);
    getter!(get_max_memory: max_memory: Option<usize>);
    getter!(get_watermarks: watermarks: Option<Watermarks>);

    /// Sets explicit watermarks (in frames).
    #[must_use = "setters return the changed configuration"]
    pub fn watermarks(mut self, w: Watermarks) -> Self {
        self.watermarks = Some(w);
        self
    }

    /// Sets the largest budget the cache may grow to at run time (see
    /// [`PageCache::set_memory`](crate::PageCache::set_memory)).
    #[must_use = "setters return the changed configuration"]
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Number of frames the largest budget holds (the arena's capacity).
    pub fn max_frames(&self) -> usize {
        self.max_memory
            .unwrap_or(self.memory)
            .checked_div(self.page_size)
            .unwrap_or(0)
    }

    /// Number of frames this budget holds.
    pub fn frames(&self) -> usize {
        self.memory.checked_div(self.page_size).unwrap_or(0)
    }

    /// Checks every knob; returns the watermarks in force.
    pub(crate) fn validate(&self) -> Result<Watermarks> {
        let bad = |m: String| Err(Error::Config(m));
        if !self.page_size.is_power_of_two() || self.page_size < 512 {
            return bad(format!(
                "page_size {} must be a power of two of at least 512",
                self.page_size
            ));
        }
        if self.page_size > 1 << 20 {
            return bad(format!(
                "page_size {} is above the 1 MiB maximum",
                self.page_size
            ));
        }
        let frames = self.frames();
        if frames < MIN_FRAMES {
            return bad(format!(
                "memory {} bytes holds {frames} pages of {} bytes; at least {MIN_FRAMES} are needed",
                self.memory, self.page_size
            ));
        }
        if frames > u32::MAX as usize / 2 {
            return bad(format!(
                "memory {} bytes is too many frames ({frames})",
                self.memory
            ));
        }
        if let Some(max) = self.max_memory {
            if max < self.memory {
                return bad(format!(
                    "max_memory {max} bytes is below memory {} bytes: set it at least as large",
                    self.memory
                ));
            }
            if self.max_frames() > u32::MAX as usize / 2 {
                return bad(format!(
                    "max_memory {max} bytes is too many frames ({})",
                    self.max_frames()
                ));
            }
        }
        if self.dirty_ratio == 0 || self.dirty_ratio > 100 {
            return bad(format!(
                "dirty_ratio {} must be in 1..=100",
                self.dirty_ratio
            ));
        }
        if self.dirty_background_ratio == 0 || self.dirty_background_ratio >= self.dirty_ratio {
            return bad(format!(
                "dirty_background_ratio {} must be at least 1 and below dirty_ratio {}",
                self.dirty_background_ratio, self.dirty_ratio
            ));
        }
        if self.flushers == 0 || self.flushers > 64 {
            return bad(format!("flushers {} must be in 1..=64", self.flushers));
        }
        if self.io_depth == 0 || self.io_depth > 256 {
            return bad(format!("io_depth {} must be in 1..=256", self.io_depth));
        }
        if self.max_io < self.page_size {
            return bad(format!(
                "max_io {} must be at least one page ({})",
                self.max_io, self.page_size
            ));
        }
        if self.readahead_max < self.page_size || self.readahead_max > MAX_READAHEAD_MAX {
            return bad(format!(
                "readahead_max {} must be at least one page ({}) and at most {MAX_READAHEAD_MAX}",
                self.readahead_max, self.page_size
            ));
        }
        if self.dirty_writeback_interval.is_zero() {
            return bad("dirty_writeback_interval must be above zero".into());
        }
        let w = self
            .watermarks
            .unwrap_or_else(|| Watermarks::for_frames(frames));
        if !(w.min >= 1 && w.min < w.low && w.low < w.high && w.high < frames) {
            return bad(format!(
                "watermarks min {} < low {} < high {} < frames {frames} do not hold",
                w.min, w.low, w.high
            ));
        }
        Ok(w)
    }
}
