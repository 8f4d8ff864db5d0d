//! The state every subsystem shares: the arena, the LRU lists, the registry
//! of mappings, the frame counts and counters, the wait queues, the
//! writeback queue and I/O engine. The facade (`cache.rs`: `PageCache`)
//! builds it and owns the threads; reclaim, writeback, throttle, readahead
//! and the file paths take `&Inner`, never the facade, so the dependencies
//! run one way: API → state ← subsystems.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::backend::Backend;
use crate::config::{Config, Policy, Watermarks};
use crate::error::{Error, Result};
use crate::frame::Arena;
use crate::lru::Lru;
use crate::mapping::{Inode, Mapping};
use crate::stats::{Counters, Stats};
use crate::throttle::dirty::Bandwidth;
use crate::wait::WaitQueue;
use crate::writeback::{io::IoPool, wbt::Wbt, Writeback};

#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) by_id: HashMap<u64, Arc<Mapping>>,
    /// Files opened by path, keyed by (device, inode) like the kernel's
    /// inode cache: a rename keeps the mapping, a new file gets a new one.
    pub(crate) by_inode: HashMap<(u64, u64), u64>,
}

/// `Err(Shutdown)` once a shutdown flag is set.
fn refuse_once_set(flag: &AtomicBool) -> Result<()> {
    if flag.load(Ordering::Acquire) {
        Err(Error::Shutdown)
    } else {
        Ok(())
    }
}

/// State shared by handles and background threads.
pub(crate) struct Inner {
    pub(crate) cfg: Config,
    pub(crate) wm: crate::resize::LiveWatermarks,
    pub(crate) arena: Arena,
    pub(crate) lru: Lru,
    pub(crate) registry: RwLock<Registry>,
    next_id: AtomicU64,
    /// Frames with DIRTY set, with WRITEBACK set, and with UNSTABLE set.
    pub(crate) nr_dirty: AtomicUsize,
    pub(crate) nr_writeback: AtomicUsize,
    pub(crate) nr_unstable: AtomicUsize,
    /// Mappings whose last writeback failed.
    pub(crate) failing_mappings: AtomicUsize,
    pub(crate) counters: Counters,
    /// Signalled whenever a frame may have become reclaimable or free:
    /// writeback completion, a frame freed, a last unpin of a flagged page.
    pub(crate) progress: WaitQueue,
    pub(crate) kswapd: WaitQueue,
    pub(crate) writeback: Writeback,
    pub(crate) io: IoPool,
    pub(crate) wbt: Wbt,
    pub(crate) bandwidth: Bandwidth,
    /// Set when shutdown begins: from then on writes and syncs fail with
    /// `Error::Shutdown` (they could not be written back).
    pub(crate) closing: AtomicBool,
    /// Set once shutdown's final write-back has run: a write still in
    /// flight then fails instead of being acknowledged.
    pub(crate) stopped: AtomicBool,
    /// Set once the final write-back is done: background threads exit.
    pub(crate) shutdown: AtomicBool,
    pub(crate) epoch: Instant,
    /// Runs `Advice::WillNeed` reads off the caller's thread.
    pub(crate) prefetcher: crate::advise::Prefetcher,
    /// Held by `PageCache::set_memory`: one resize at a time.
    pub(crate) resizing: Mutex<()>,
    /// Unique in the process: keys the per-thread figures of this cache.
    pub(crate) id: u64,
}

/// Source of cache ids.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

impl Inner {
    /// The state for `cfg` (validated, watermarks `wm`): the arena
    /// allocated, every list and queue empty, no thread started.
    pub(crate) fn new(cfg: Config, wm: Watermarks) -> Result<Self> {
        let frames = cfg.frames();
        Ok(Inner {
            arena: Arena::new(cfg.max_frames(), frames, cfg.page_size, cfg.huge_pages).ok_or_else(
                || {
                    Error::Config(format!(
                        "memory {} bytes could not be allocated",
                        cfg.max_memory.unwrap_or(cfg.memory)
                    ))
                },
            )?,
            lru: Lru::default(),
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            nr_dirty: AtomicUsize::new(0),
            nr_writeback: AtomicUsize::new(0),
            nr_unstable: AtomicUsize::new(0),
            failing_mappings: AtomicUsize::new(0),
            counters: Counters::default(),
            progress: WaitQueue::default(),
            kswapd: WaitQueue::default(),
            writeback: Writeback::default(),
            io: IoPool::new(cfg.io_depth, cfg.io_uring),
            wbt: Wbt::new(cfg.io_depth),
            bandwidth: Bandwidth::default(),
            closing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            epoch: Instant::now(),
            prefetcher: crate::advise::Prefetcher::default(),
            resizing: Mutex::new(()),
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            wm: crate::resize::LiveWatermarks::new(wm),
            cfg,
        })
    }

    pub(crate) fn page_size(&self) -> usize {
        self.arena.page_size
    }

    /// `Err(Shutdown)` once shutdown has begun; writers check it under
    /// their mapping's `resize` lock, which shutdown drains.
    /// `Err(Shutdown)` once shutdown's final write-back has run: called by
    /// a writer, under `resize`, before it acknowledges a write.
    pub(crate) fn check_not_stopped(&self) -> Result<()> {
        refuse_once_set(&self.stopped)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        refuse_once_set(&self.closing)
    }

    pub(crate) fn policy(&self) -> Policy {
        self.cfg.policy
    }

    pub(crate) fn mapping(&self, id: u64) -> Option<Arc<Mapping>> {
        self.registry.read().by_id.get(&id).cloned()
    }

    pub(crate) fn mappings(&self) -> Vec<Arc<Mapping>> {
        self.registry.read().by_id.values().cloned().collect()
    }

    /// Drops a mapping nobody holds and nothing is cached for.
    pub(crate) fn maybe_forget(&self, m: &Mapping) {
        if m.handles.load(Ordering::Acquire) != 0 || m.nr_pages() != 0 {
            return;
        }
        let mut reg = self.registry.write();
        if m.handles.load(Ordering::Acquire) != 0 || m.nr_pages() != 0 {
            return;
        }
        reg.by_id.remove(&m.id);
        if let Some(inode) = &m.inode {
            if reg.by_inode.get(&inode.key) == Some(&m.id) {
                reg.by_inode.remove(&inode.key);
            }
        }
    }

    pub(crate) fn register(
        &self,
        backend: Box<dyn Backend>,
        path: Option<PathBuf>,
        inode: Option<Inode>,
    ) -> Result<Arc<Mapping>> {
        let size = backend
            .len()
            .map_err(|e| Error::io("reading the backend's length", path.clone(), e))?;
        if backend.direct_io_fallback() {
            crate::stats::inc(&self.counters.direct_io_fallbacks);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Mapping::new(id, backend, path, size, inode)))
    }

    pub(crate) fn stats(&self) -> Stats {
        let frames = self.arena.len();
        let free = self.arena.nr_free();
        let dirty = self.nr_dirty.load(Ordering::Relaxed);
        let writeback = self.nr_writeback.load(Ordering::Relaxed);
        let unstable = self.nr_unstable.load(Ordering::Relaxed);
        let (inactive, active) = self.lru.lens();
        Stats {
            frames,
            page_size: self.page_size(),
            free,
            clean: frames.saturating_sub(free + dirty + writeback + unstable),
            dirty,
            writeback,
            unstable,
            pinned: self.arena.nr_pinned(),
            inactive,
            active,
            write_bandwidth: self.bandwidth.bytes_per_sec(),
            io_engine: self.io.engine(),
            events: self.counters.snapshot(),
        }
    }
}
