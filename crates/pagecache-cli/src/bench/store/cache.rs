//! The library's cache over the run's files.

use std::path::PathBuf;

use pagecache::PageCache;

use super::direct::DirectBackend;
use super::{Gauge, OpError, Snapshot, Store};
use crate::bench::block::BLOCK;
use crate::CliError;

/// The library's cache over the run's files.
pub struct CacheStore {
    pub cache: PageCache,
    pub files: Vec<pagecache::File>,
    pub direct: bool,
}

impl CacheStore {
    /// Builds a cache of `memory` bytes under `policy` and opens `paths`.
    pub fn open(
        memory: u64,
        policy: pagecache::Policy,
        paths: &[PathBuf],
    ) -> Result<Self, CliError> {
        let memory = usize::try_from(memory)
            .map_err(|_| CliError::Usage(format!("--memory {memory} does not fit this machine")))?;
        let cache = PageCache::new(pagecache::Config::new(memory).policy(policy))?;
        let mut files = Vec::new();
        let mut direct = true;
        for p in paths {
            let b =
                DirectBackend::open(p).map_err(|e| CliError::io("opening", Some(p.clone()), e))?;
            direct &= b.is_direct();
            files.push(cache.open_backend(b)?);
        }
        Ok(CacheStore {
            cache,
            files,
            direct,
        })
    }
}

impl Store for CacheStore {
    #[inline]
    fn read(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<bool, OpError> {
        let (_, m0) = pagecache::thread_hits_misses();
        let n = self.files[file].read_at(buf, block * BLOCK as u64)?;
        if n != buf.len() {
            return Err(OpError::Fatal(CliError::Check(format!(
                "short read of block {block}: {n} bytes"
            ))));
        }
        let (_, m1) = pagecache::thread_hits_misses();
        Ok(m1 == m0)
    }

    #[inline]
    fn write(&self, file: usize, block: u64, buf: &[u8]) -> Result<(), OpError> {
        self.files[file].write_at(buf, block * BLOCK as u64)?;
        Ok(())
    }

    fn sync(&self, file: usize) -> Result<(), CliError> {
        Ok(self.files[file].sync()?)
    }

    fn gauge(&self) -> Gauge {
        let s = self.cache.stats();
        Gauge {
            dirty_pages: s.dirty as u64,
            writeback_pages: s.writeback as u64,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let e = self.cache.stats().events;
        Snapshot {
            hits: e.hits,
            misses: e.misses,
            direct_reclaim_writes: Some(e.direct_reclaim_writes),
            writeback_ios: e.writeback_ios,
            writeback_bytes: e.writeback_bytes,
            writeback_active_ns: e.writeback_active_ns,
            throttle_events: Some(e.reclaim_throttle_events + e.dirty_throttle_events),
            throttle_ns: Some(e.reclaim_throttle_ns + e.dirty_throttle_ns),
            reclaim_throttle_events: Some(e.reclaim_throttle_events),
            dirty_throttle_events: Some(e.dirty_throttle_events),
            oom_errors: Some(e.oom_errors),
            alloc_stack_peak_bytes: Some(e.alloc_stack_peak_bytes),
        }
    }
}
