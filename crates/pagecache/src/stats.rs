//! Counters, in the spirit of `/proc/vmstat`.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

const SHARDS: usize = 8;

/// One counter alone on its cache line.
#[derive(Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

/// An event counter split over cache lines, so threads bumping it on the hit
/// path do not bounce one line between cores. Reads sum the shards.
#[derive(Default)]
pub(crate) struct Counter([Slot; SHARDS]);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        let i = SHARD.with(|s| *s);
        self.0[i].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` (a gauge: shards may go below zero; `get_signed` sums).
    #[inline]
    pub(crate) fn sub(&self, n: u64) {
        let i = SHARD.with(|s| *s);
        self.0[i].0.fetch_sub(n, Ordering::Relaxed);
    }

    /// The sum of a gauge kept with `add` and `sub`.
    pub(crate) fn get_signed(&self) -> i64 {
        self.0
            .iter()
            .fold(0u64, |a, s| a.wrapping_add(s.0.load(Ordering::Relaxed))) as i64
    }

    /// Raises the value to at least `v` (kept in one shard, so `get` is the max).
    pub(crate) fn max(&self, v: u64) {
        self.0[0].0.fetch_max(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// A count kept in one slot per thread, each written only by its thread
/// with a plain store, and summed on read: the hit path then makes no
/// atomic read-modify-write at all (a locked add costs little by itself, but
/// it is a full barrier, so the misses on the frame word and on the page
/// around it cannot overlap). Slots of threads that have exited are folded
/// into `retired` when the next thread registers.
#[derive(Default)]
pub(crate) struct PerThread {
    live: parking_lot::Mutex<Vec<Arc<Slot>>>,
    retired: AtomicU64,
}

impl PerThread {
    /// A new slot for the calling thread.
    fn register(&self) -> Arc<Slot> {
        let mut live = self.live.lock();
        let mut kept = Vec::with_capacity(live.len() + 1);
        for slot in live.drain(..) {
            // Only this list holds a dead thread's slot: `try_unwrap`
            // succeeds, and its acquire orders the thread's last store
            // before the read.
            match Arc::try_unwrap(slot) {
                Ok(v) => {
                    self.retired.fetch_add(v.0.into_inner(), Ordering::Relaxed);
                }
                Err(slot) => kept.push(slot),
            }
        }
        // Its own line: two threads' slots side by side in one line made
        // each hit bounce it between the cores (pins ran at 15M/s or 30M/s
        // by where the allocator happened to put the slots).
        let slot = Arc::new(Slot::default());
        kept.push(Arc::clone(&slot));
        *live = kept;
        slot
    }

    pub(crate) fn get(&self) -> u64 {
        let live = self.live.lock();
        live.iter()
            .fold(self.retired.load(Ordering::Relaxed), |a, s| {
                a + s.0.load(Ordering::Relaxed)
            })
    }
}

/// A counter's type: `Counter` unless the list names another.
macro_rules! counter_type {
    () => {
        Counter
    };
    ($t:ty) => {
        $t
    };
}

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident $(: $t:ty)?,)*) => {
        /// Live counters.
        #[derive(Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: counter_type!($($t)?),)*
        }

        /// Event counts since the cache was built.
        ///
        /// New counters may be added in minor releases; read fields by name
        /// or iterate [`Events::pairs`].
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize))]
        #[non_exhaustive]
        pub struct Events {
            $($(#[$m])* pub $name: u64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Events {
                Events { $($name: self.$name.get(),)* }
            }
        }

        impl Events {
            /// Counts that happened between `earlier` and `self`.
            #[must_use]
            pub fn since(&self, earlier: &Events) -> Events {
                Events { $($name: self.$name.saturating_sub(earlier.$name),)* }
            }

            /// (name, value) pairs, in declaration order.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Page lookups that found the page resident.
    // In per-thread slots: the one count a hit makes, with no atomic
    // read-modify-write.
    hits: PerThread,
    /// Page lookups that had to allocate a frame.
    misses,
    /// Pages read in from backends.
    pages_read,
    /// Of those, pages read ahead of a sequential reader.
    pages_readahead,
    /// Readahead reads submitted through `io_uring` (the rest were read by
    /// background reader threads).
    readahead_uring_ios,
    /// Pages that went from clean to dirty.
    pages_dirtied,
    /// Frames scanned by direct reclaim.
    pgscan_direct,
    /// Frames freed by direct reclaim.
    pgsteal_direct,
    /// Frames scanned by the background reclaimer.
    pgscan_background,
    /// Frames freed by the background reclaimer.
    pgsteal_background,
    /// Dirty frames reclaim flagged and left to the flushers.
    pgreclaim_flagged,
    /// Flagged frames freed the moment their write was durable.
    pgreclaim_freed_on_writeback,
    /// Frames moved to the active list.
    pgactivate,
    /// Frames reclaim flagged for writeback or commit and parked off the
    /// scanned lists until their I/O ends, rather than rescanned (not under
    /// `legacy`).
    pgparked_for_io,
    /// Pages written by an allocating thread (only under `legacy`).
    direct_reclaim_writes,
    /// Pages written by the background reclaimer (only under `legacy`).
    background_reclaim_writes,
    /// Write I/Os issued by writeback.
    writeback_ios,
    /// Of those, I/Os submitted through `io_uring` (the rest went to blocking
    /// I/O threads).
    writeback_uring_ios,
    /// Bytes written by writeback.
    writeback_bytes,
    /// Pages written by writeback.
    writeback_pages,
    /// Nanoseconds during which at least one writeback I/O was in flight.
    writeback_active_ns,
    /// Writeback I/Os that failed (pages kept dirty).
    writeback_errors,
    /// Backend syncs (commits of unstable pages), by flushers and `sync`.
    commits,
    /// Commits that failed (their pages were dirtied again).
    commit_errors,
    /// Pages made durable by a commit.
    pages_committed,
    /// Flusher passes started for reclaim.
    flush_reason_reclaim,
    /// Flusher passes started by the background threshold.
    flush_reason_background,
    /// Flusher passes started by `dirty_expire`.
    flush_reason_expire,
    /// `sync` calls.
    flush_reason_sync,
    /// Times an allocator waited for writeback progress.
    reclaim_throttle_events,
    /// Nanoseconds allocators spent waiting for writeback progress.
    reclaim_throttle_ns,
    /// Nanoseconds allocating threads spent past the allocator's fast path:
    /// their own reclaim scans, `legacy` pageout writes and throttle waits.
    alloc_stall_ns,
    /// Pauses imposed on dirtying threads.
    dirty_throttle_events,
    /// Nanoseconds dirtying threads were paused.
    dirty_throttle_ns,
    /// Allocations that failed with out-of-memory (or no clean frame).
    oom_errors,
    /// Deepest stack any allocation reached, in bytes.
    alloc_stack_peak_bytes,
    /// Files opened with buffered I/O because their file system refused
    /// `O_DIRECT` (or keeps files in memory, as tmpfs does): the kernel's
    /// page cache holds their pages too, outside the budget.
    direct_io_fallbacks,
}

/// A snapshot of the cache: frame states now, and event counts so far.
///
/// New fields may be added in minor releases. With the `serde` feature it
/// implements `serde::Serialize` (events nested under `events`).
#[derive(Clone, Copy, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// Frames in the arena.
    pub frames: usize,
    /// Page size in bytes.
    pub page_size: usize,
    /// Frames on the free list.
    pub free: usize,
    /// Frames holding clean pages.
    pub clean: usize,
    /// Frames holding dirty pages.
    pub dirty: usize,
    /// Frames under writeback.
    pub writeback: usize,
    /// Frames written but not yet known durable (a backend sync will tell).
    pub unstable: usize,
    /// Frames with at least one pin.
    pub pinned: usize,
    /// Frames on the inactive list (approximate).
    pub inactive: usize,
    /// Frames on the active list (approximate).
    pub active: usize,
    /// Measured writeback bandwidth, bytes per second.
    pub write_bandwidth: u64,
    /// How writeback I/O is issued: `io_uring` where the kernel allows it and
    /// [`Config::io_uring`](crate::Config::`io_uring`) is on, else threads.
    pub io_engine: crate::IoEngine,
    /// Event counts.
    pub events: Events,
}

impl Stats {
    /// Fraction of lookups that hit, in 0..=1 (1 when there were none).
    pub fn hit_ratio(&self) -> f64 {
        let total = self.events.hits + self.events.misses;
        if total == 0 {
            1.0
        } else {
            self.events.hits as f64 / total as f64
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = [
            ("frames", self.frames as u64),
            ("page_size", self.page_size as u64),
            ("nr_free", self.free as u64),
            ("nr_clean", self.clean as u64),
            ("nr_dirty", self.dirty as u64),
            ("nr_writeback", self.writeback as u64),
            ("nr_unstable", self.unstable as u64),
            ("nr_pinned", self.pinned as u64),
            ("nr_inactive", self.inactive as u64),
            ("nr_active", self.active as u64),
            ("write_bandwidth", self.write_bandwidth),
            (
                "io_uring",
                u64::from(self.io_engine == crate::IoEngine::IoUring),
            ),
        ];
        for (k, v) in rows.into_iter().chain(self.events.pairs()) {
            writeln!(f, "{k} {v}")?;
        }
        Ok(())
    }
}

/// What the calling thread itself went through: lets a benchmark or a test
/// report per role (a reader is never dirty-throttled, invariant 4).
/// New fields may be added in minor releases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ThreadStats {
    /// Page lookups that hit.
    pub hits: u64,
    /// Page lookups that missed.
    pub misses: u64,
    /// Pauses imposed on this thread by the dirty throttle.
    pub dirty_throttle_events: u64,
    /// Waits of this thread in the reclaim throttle.
    pub reclaim_throttle_events: u64,
}

/// One cache's counts for the calling thread, and its published hit count.
struct Entry {
    cache: u64,
    stats: ThreadStats,
    hits: Option<Arc<Slot>>,
}

thread_local! {
    /// The calling thread's counts, one entry per cache it used (by cache
    /// id, the most recently added last). A thread uses few caches, so a
    /// short scan from the end beats a hash on the hit path.
    static THREAD: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    /// Where in `THREAD` the last update went.
    static LAST: Cell<usize> = const { Cell::new(0) };
}

/// The calling thread's own counts since it started, summed over every
/// cache it used. [`PageCache::thread_stats`](crate::PageCache::thread_stats)
/// gives one cache's.
pub fn thread_stats() -> ThreadStats {
    THREAD.with(|t| {
        t.borrow()
            .iter()
            .fold(ThreadStats::default(), |a, Entry { stats: s, .. }| {
                ThreadStats {
                    hits: a.hits + s.hits,
                    misses: a.misses + s.misses,
                    dirty_throttle_events: a.dirty_throttle_events + s.dirty_throttle_events,
                    reclaim_throttle_events: a.reclaim_throttle_events + s.reclaim_throttle_events,
                }
            })
    })
}

/// Hits and misses of page lookups made by the calling thread, summed over
/// every cache it used.
pub fn thread_hits_misses() -> (u64, u64) {
    let t = thread_stats();
    (t.hits, t.misses)
}

/// The calling thread's counts in the cache with id `cache`.
pub(crate) fn thread_stats_for(cache: u64) -> ThreadStats {
    THREAD.with(|t| {
        t.borrow()
            .iter()
            .rev()
            .find(|e| e.cache == cache)
            .map(|e| e.stats)
            .unwrap_or_default()
    })
}

#[inline]
pub(crate) fn thread_update(cache: u64, f: impl FnOnce(&mut ThreadStats)) {
    with_entry(cache, |e| f(&mut e.stats));
}

/// Counts a hit of the calling thread in the cache `cache`, whose
/// per-thread sum is `sum`: a plain store into this thread's own slot.
#[inline]
pub(crate) fn thread_hit(cache: u64, sum: &PerThread) {
    with_entry(cache, |e| {
        e.stats.hits += 1;
        let slot = e.hits.get_or_insert_with(|| sum.register());
        // This thread is the slot's only writer, so a load and a store
        // count exactly; its hits before the slot existed were none (only
        // this function counts them).
        slot.0.store(e.stats.hits, Ordering::Relaxed);
    });
}

#[inline]
fn with_entry(cache: u64, f: impl FnOnce(&mut Entry)) {
    THREAD.with(|t| {
        let mut v = t.borrow_mut();
        // A thread mostly works in one cache: try the entry it used last
        // before scanning.
        let last = LAST.with(Cell::get);
        if let Some(e) = v.get_mut(last) {
            if e.cache == cache {
                f(e);
                return;
            }
        }
        let at = match v.iter().rposition(|e| e.cache == cache) {
            Some(at) => at,
            None => {
                v.push(Entry {
                    cache,
                    stats: ThreadStats::default(),
                    hits: None,
                });
                v.len() - 1
            }
        };
        LAST.with(|l| l.set(at));
        f(&mut v[at]);
    });
}

/// Adds one to a counter.
#[inline]
pub(crate) fn inc(c: &Counter) {
    c.add(1);
}

/// Adds `n` to a counter.
#[inline]
pub(crate) fn add(c: &Counter, n: u64) {
    c.add(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads' hit slots never share a cache line: each is a line of its
    /// own, whatever the allocator does.
    #[test]
    fn hit_slots_are_each_on_their_own_cache_line() {
        let sum = PerThread::default();
        let slots: Vec<_> = (0..8).map(|_| sum.register()).collect();
        for s in &slots {
            let at = &s.0 as *const AtomicU64 as usize;
            assert_eq!(at % 64, 0, "slot at {at:#x}");
        }
        assert!(std::mem::size_of::<Slot>() >= 64);
    }

    /// Every hit is counted once: by live threads, by threads that have
    /// exited (folded when a later thread registers), and by the caller.
    #[test]
    fn per_thread_hits_sum_exactly_across_exited_threads() {
        // A cache id no real cache has, so this thread's other entries
        // cannot mix in.
        const CACHE: u64 = u64::MAX - 7;
        let sum = Arc::new(PerThread::default());
        // Joined, not scoped: `join` returns once the thread is gone,
        // thread-local destructors included, so its slot is dead.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let sum = Arc::clone(&sum);
                std::thread::spawn(move || {
                    for _ in 0..1000 + t {
                        thread_hit(CACHE, &sum);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(sum.get(), 4006);
        // The exited threads' slots are folded into `retired` here.
        thread_hit(CACHE, &sum);
        assert_eq!(sum.live.lock().len(), 1, "dead threads' slots kept");
        assert_eq!(sum.get(), 4007);
        assert_eq!(thread_stats_for(CACHE).hits, 1);
    }
}
