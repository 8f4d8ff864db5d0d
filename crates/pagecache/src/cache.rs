//! The public [`PageCache`] handle: builds the shared state
//! (`state::Inner`), starts and stops the background threads, and attaches
//! files to mappings.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use crate::backend::Backend;
use crate::config::{Config, Watermarks};
use crate::error::{Error, Result};
use crate::file::File;
use crate::mapping::Inode;
use crate::state::Inner;
use crate::stats::Stats;
use crate::writeback::io::IoPool;
use crate::{reclaim, writeback};

/// How long shutdown waits for a write still in flight on a file the
/// stopping thread holds a guard on (a writer stuck behind that guard
/// refuses to acknowledge its write instead).
const LATE_WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Stops the background threads when the last user handle goes away.
pub(crate) struct Owner {
    pub(crate) inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Owner {
    /// Refuses new writes, lets writes in flight finish, writes and syncs
    /// everything, then stops the background threads. Only the first call
    /// does the work; later ones report `Shutdown`.
    fn stop(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.swap(true, Ordering::AcqRel) {
            return Err(Error::Shutdown);
        }
        // A writer checks `closing` under its mapping's resize lock: taking
        // each lock once waits out writers that passed the check before it
        // was set, so every write acknowledged is dirty by now and written
        // below. Not on a mapping this thread holds a guard on: a writer
        // waiting for that page would wait forever; those are handled after.
        let mut guarded = Vec::new();
        for m in inner.mappings() {
            if crate::guard::held::any_on(m.id) {
                guarded.push(m);
            } else {
                drop(m.resize.write());
            }
        }
        let mut result = writeback::sync_all(inner);
        // From here a write still in flight on a guarded mapping refuses to
        // return `Ok` (it checks `stopped` before letting go of `resize`);
        // one that checked earlier is waited out and its file synced again.
        inner.stopped.store(true, Ordering::Release);
        for m in guarded {
            if let Some(g) = m.resize.try_write_for(LATE_WRITER_WAIT) {
                drop(g);
                let synced = writeback::sync_mapping(inner, &m, 0..u64::MAX);
                if let (Ok(()), Err(source)) = (&result, synced) {
                    result = Err(Error::Writeback {
                        path: m.path.clone(),
                        source,
                    });
                }
            }
        }
        self.stop_threads();
        result
    }

    fn stop_threads(&self) {
        let inner = &self.inner;
        inner.shutdown.store(true, Ordering::Release);
        inner.writeback.wake_all();
        inner.kswapd.notify();
        inner.progress.notify();
        inner.io.close();
        inner.prefetcher.stop();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        // Best effort: the data stays dirty in memory only until here, so
        // write it. Errors are for `PageCache::shutdown` callers to see.
        let _ = self.stop();
    }
}

/// A page cache with a fixed memory budget.
///
/// Cheap to clone; the background threads stop (after writing every dirty
/// page) when the last clone and the last [`File`] are dropped.
///
/// ```
/// use pagecache::{Config, PageCache};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let cache = PageCache::new(Config::new(1 << 20))?;
/// let file = cache.create(dir.path().join("data"))?;
/// file.write_at(b"hello, page cache", 4090)?;
/// let mut buf = [0u8; 17];
/// assert_eq!(file.read_at(&mut buf, 4090)?, 17);
/// assert_eq!(&buf, b"hello, page cache");
/// file.sync()?;
/// assert_eq!(std::fs::read(dir.path().join("data"))?.len(), 4107);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PageCache {
    pub(crate) owner: Arc<Owner>,
}

impl PageCache {
    /// Validates `cfg`, allocates the arena and starts the flushers, the I/O
    /// threads and (if enabled) the background reclaimer.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a knob is out of range or the arena cannot be
    /// allocated; [`Error::Io`] if a thread cannot be started.
    pub fn new(cfg: Config) -> Result<Self> {
        let wm = cfg.validate()?;
        let inner = Arc::new(Inner::new(cfg, wm)?);
        // The owner exists before the threads, so a failed spawn stops the
        // ones already started (dropping it would write back, so stop only
        // the threads).
        let owner = Owner {
            inner: inner.clone(),
            threads: Mutex::new(Vec::new()),
        };
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| -> Result<()> {
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::io("spawning a cache thread", None, e))?;
            owner.threads.lock().push(t);
            Ok(())
        };
        let started = (|| {
            IoPool::start(&inner, spawn)?;
            for i in 0..inner.cfg.flushers {
                let inner2 = inner.clone();
                spawn(
                    format!("pc-flush-{i}"),
                    Box::new(move || writeback::flusher::run(&inner2)),
                )?;
            }
            if inner.cfg.background_reclaim {
                let inner2 = inner.clone();
                spawn(
                    "pc-kswapd".into(),
                    Box::new(move || reclaim::background::run(&inner2)),
                )?;
            }
            Ok(())
        })();
        if let Err(e) = started {
            inner.closing.store(true, Ordering::Release);
            owner.stop_threads();
            return Err(e);
        }
        Ok(PageCache {
            owner: Arc::new(owner),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.owner.inner
    }

    /// Caches a file opened by path (see [`OpenOptions`](crate::OpenOptions)):
    /// shares the mapping of a live earlier open of the same inode, or makes
    /// one over `backend`.
    pub(crate) fn attach(
        &self,
        path: PathBuf,
        inode: Inode,
        backend: Box<dyn Backend>,
        writable: bool,
    ) -> Result<File> {
        let inner = self.inner();
        let mut reg = inner.registry.write();
        let existing = reg
            .by_inode
            .get(&inode.key)
            .and_then(|id| reg.by_id.get(id))
            .cloned();
        // A mapping whose file was deleted keeps its pages until written and
        // evicted, but a new file that reuses the inode number is not it.
        let live = existing.filter(|m| m.inode.as_ref().is_some_and(Inode::linked));
        let mapping = match live {
            Some(m) => m,
            None => {
                let key = inode.key;
                let m = inner.register(backend, Some(path), Some(inode))?;
                reg.by_inode.insert(key, m.id);
                reg.by_id.insert(m.id, m.clone());
                m
            }
        };
        mapping.handles.fetch_add(1, Ordering::AcqRel);
        drop(reg);
        Ok(File::with_access(self.owner.clone(), mapping, writable))
    }

    /// Caches a user-supplied backend. Each call makes a separate mapping.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the backend cannot report its length.
    pub fn open_backend(&self, backend: impl Backend) -> Result<File> {
        let inner = self.inner();
        let m = inner.register(Box::new(backend), None, None)?;
        m.handles.fetch_add(1, Ordering::AcqRel);
        inner.registry.write().by_id.insert(m.id, m.clone());
        Ok(File::new(self.owner.clone(), m))
    }

    /// A snapshot of frame states and event counters.
    pub fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// What the calling thread went through in this cache since it
    /// started: its hits, misses and throttle waits here, not in other
    /// caches of the process.
    pub fn thread_stats(&self) -> crate::ThreadStats {
        crate::stats::thread_stats_for(self.inner().id)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner().cfg
    }

    /// The watermarks in force.
    pub fn watermarks(&self) -> Watermarks {
        self.inner().wm.get()
    }

    /// Writes every dirty page of every file and makes them durable.
    ///
    /// # Errors
    /// The first failure: a backend sync that failed (its pages are dirty
    /// again and will be rewritten), or a file whose pages could not be
    /// written. `Error::Shutdown` after [`PageCache::shutdown`].
    pub fn sync_all(&self) -> Result<()> {
        self.inner().check_open()?;
        if crate::guard::held::any_write() {
            return Err(Error::WouldDeadlock("sync_all"));
        }
        writeback::sync_all(self.inner())
    }

    /// Writes everything, stops the background threads and reports the first
    /// error. Other clones and open files stay usable for reads of resident
    /// pages; every write, `set_len` and sync through them fails with
    /// `Error::Shutdown`, since nothing is written back after this.
    ///
    /// # Errors
    /// As [`PageCache::sync_all`].
    pub fn shutdown(self) -> Result<()> {
        if crate::guard::held::any_write() {
            return Err(Error::WouldDeadlock("shutdown"));
        }
        self.owner.stop()
    }
}
