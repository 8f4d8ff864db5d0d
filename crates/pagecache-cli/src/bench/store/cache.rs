//! The library's cache over the run's files.

use std::path::PathBuf;
use std::sync::Arc;

use pagecache::PageCache;

use super::direct::{Device, DeviceModel, DirectBackend, Shared};
use super::{Gauge, OpError, Snapshot, Store};
use crate::bench::block::BLOCK;
use crate::CliError;

/// The library's cache over the run's files.
pub struct CacheStore {
    pub cache: PageCache,
    pub files: Vec<pagecache::File>,
    pub direct: bool,
    page_size: u64,
    shared: Shared,
}

impl CacheStore {
    /// Builds a cache configured by `cfg` and opens `paths`, through the
    /// device model if there is one.
    pub fn open(
        cfg: pagecache::Config,
        device: Option<DeviceModel>,
        paths: &[PathBuf],
    ) -> Result<Self, CliError> {
        let page_size = cfg.get_page_size() as u64;
        let cache = PageCache::new(cfg)?;
        let shared = Shared {
            sizes: Arc::default(),
            device: device.map(|d| Arc::new(Device::new(d))),
        };
        let mut files = Vec::new();
        let mut direct = true;
        for (i, p) in paths.iter().enumerate() {
            let b = DirectBackend::open(p, i, shared.clone())
                .map_err(|e| CliError::io("opening", Some(p.clone()), e))?;
            direct &= b.is_direct();
            files.push(cache.open_backend(b)?);
        }
        Ok(CacheStore {
            cache,
            files,
            direct,
            page_size,
            shared,
        })
    }
}

impl Store for CacheStore {
    #[inline]
    fn read(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<bool, OpError> {
        let (_, m0) = pagecache::thread_hits_misses();
        self.read_unclassified(file, block, buf)?;
        let (_, m1) = pagecache::thread_hits_misses();
        Ok(m1 == m0)
    }

    #[inline]
    fn read_unclassified(&self, file: usize, block: u64, buf: &mut [u8]) -> Result<(), OpError> {
        let n = self.files[file].read_at(buf, block * BLOCK as u64)?;
        if n != buf.len() {
            return Err(OpError::Fatal(CliError::Check(format!(
                "short read of block {block}: {n} bytes"
            ))));
        }
        Ok(())
    }

    #[inline]
    fn write(&self, file: usize, block: u64, buf: &[u8]) -> Result<(), OpError> {
        // A write that failed part way returns what landed; the call for the
        // rest then reports the failure.
        let mut done = 0;
        while done < buf.len() {
            done +=
                self.files[file].write_at(&buf[done..], (block * BLOCK as u64) + done as u64)?;
        }
        Ok(())
    }

    fn modify(
        &self,
        file: usize,
        block: u64,
        f: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, OpError> {
        let off = block * BLOCK as u64;
        let at = (off % self.page_size) as usize;
        let (_, m0) = pagecache::thread_hits_misses();
        let mut page = self.files[file].page_mut(off / self.page_size)?;
        f(&mut page[at..at + BLOCK]);
        drop(page);
        let (_, m1) = pagecache::thread_hits_misses();
        Ok(m1 == m0)
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
            device_write_bytes: None,
            writeback_active_ns: e.writeback_active_ns,
            throttle_events: Some(e.reclaim_throttle_events + e.dirty_throttle_events),
            throttle_ns: Some(e.reclaim_throttle_ns + e.dirty_throttle_ns),
            reclaim_throttle_events: Some(e.reclaim_throttle_events),
            dirty_throttle_events: Some(e.dirty_throttle_events),
            oom_errors: Some(e.oom_errors),
            alloc_stall_ns: Some(e.alloc_stall_ns),
            background_reclaim_writes: Some(e.background_reclaim_writes),
            write_sizes: Some(self.shared.sizes.counts()),
            alloc_stack_peak_bytes: Some(e.alloc_stack_peak_bytes),
        }
    }
}
