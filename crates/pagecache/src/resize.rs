//! Resizing the budget at run time (`PageCache::set_memory`).
//!
//! The arena is allocated once for `Config::max_memory`; the frame limit
//! says how many of its frames may be in use. Shrinking lowers the limit
//! (so watermarks, dirty levels and statistics follow at once), then takes
//! frames out of use one by one, each through the ordinary allocator: a free
//! one if there is one, else one that reclaim freed. Reclaim frees only
//! clean pages, so dirty and unstable data is written and committed by the
//! flushers first, never dropped. A frame taken out is parked and its bytes
//! returned to the system with `madvise(MADV_DONTNEED)`. Growing unparks
//! frames onto the free list.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::PageCache;
use crate::config::{Watermarks, MIN_FRAMES};
use crate::error::{Error, Result};
use crate::frame::{Arena, FrameId};
use crate::reclaim;
use crate::state::Inner;
use crate::throttle::reclaim::TICK;

/// The watermarks in force, replaced when the budget changes.
pub(crate) struct LiveWatermarks {
    min: AtomicUsize,
    low: AtomicUsize,
    high: AtomicUsize,
}

impl LiveWatermarks {
    pub(crate) fn new(w: Watermarks) -> Self {
        LiveWatermarks {
            min: AtomicUsize::new(w.min),
            low: AtomicUsize::new(w.low),
            high: AtomicUsize::new(w.high),
        }
    }

    #[inline]
    pub(crate) fn min(&self) -> usize {
        self.min.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn low(&self) -> usize {
        self.low.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn high(&self) -> usize {
        self.high.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self) -> Watermarks {
        Watermarks {
            min: self.min(),
            low: self.low(),
            high: self.high(),
        }
    }

    fn set(&self, w: Watermarks) {
        self.min.store(w.min, Ordering::Relaxed);
        self.low.store(w.low, Ordering::Relaxed);
        self.high.store(w.high, Ordering::Relaxed);
    }
}

/// The watermarks for a budget of `frames`: the configured ones if they
/// still fit, else the defaults for that size.
fn watermarks_for(inner: &Inner, frames: usize) -> Result<Watermarks> {
    let w = inner
        .cfg
        .watermarks
        .unwrap_or_else(|| Watermarks::for_frames(frames));
    if w.high >= frames {
        return Err(Error::InvalidArgument(format!(
            "a budget of {frames} frames leaves no room above the configured high watermark {}: \
             pick a larger budget or smaller watermarks",
            w.high
        )));
    }
    Ok(w)
}

impl Arena {
    /// Takes a frame the caller got from the allocator (pinned once, no
    /// flags, in no mapping) out of use and gives its bytes back.
    fn park(&self, id: FrameId) {
        let f = self.frame(id);
        f.state.release_unused();
        f.gen.fetch_add(1, Ordering::Relaxed);
        let ps = self.page_size;
        // Only whole system pages can be given back; the arena is aligned
        // to at least 4096 bytes, so a frame of 4096 bytes or more is.
        if ps >= 4096 {
            // SAFETY: the frame is out of use (on no list, in no mapping,
            // unpinned and unlocked), so nothing refers to its bytes; they
            // lie inside the arena's allocation (`page_ptr` checks the id).
            // MADV_DONTNEED on private memory only makes the next touch
            // read zeros, and a frame's bytes are filled before use.
            let _ = unsafe {
                rustix::mm::madvise(
                    self.page_ptr(id).cast(),
                    ps,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
        self.parked.lock().push(id);
    }

    fn unpark(&self) -> bool {
        let Some(id) = self.parked.lock().pop() else {
            return false;
        };
        self.push_free(id);
        true
    }

    fn in_use_limit(&self) -> usize {
        self.capacity() - self.parked.lock().len()
    }
}

impl PageCache {
    /// Changes the memory budget to `bytes` while the cache runs, up to
    /// [`Config::max_memory`](crate::Config::max_memory).
    ///
    /// Growing makes frames available at once. Shrinking lowers the
    /// watermarks and dirty levels at once, then frees frames through
    /// reclaim, waiting (like any allocation) for the flushers to write and
    /// commit dirty pages: no data is dropped. Frames taken out of use give
    /// their memory back to the system (pages of at least 4 KiB). Readers
    /// and writers go on meanwhile; [`PageCache::stats`] shows the new
    /// `frames` as soon as the call starts.
    ///
    /// ```
    /// use pagecache::{Config, PageCache};
    /// # fn main() -> Result<(), pagecache::Error> {
    /// let cache = PageCache::new(Config::new(1 << 20).max_memory(4 << 20))?;
    /// cache.set_memory(4 << 20)?;
    /// assert_eq!(cache.stats().frames, 1024);
    /// cache.set_memory(512 << 10)?;
    /// assert_eq!(cache.stats().frames, 128);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `bytes` holds fewer than
    /// [`MIN_FRAMES`](crate::MIN_FRAMES) pages, is above `max_memory`, or
    /// leaves configured watermarks no room; [`Error::OutOfMemory`] if
    /// shrinking met only pinned frames (the budget is then what could be
    /// reached, shown by `stats().frames`); [`Error::Shutdown`] after
    /// shutdown.
    pub fn set_memory(&self, bytes: usize) -> Result<()> {
        let inner = self.inner();
        inner.check_open()?;
        let ps = inner.page_size();
        let frames = bytes / ps;
        if frames < MIN_FRAMES {
            return Err(Error::InvalidArgument(format!(
                "memory {bytes} bytes holds {frames} pages of {ps} bytes; at least {MIN_FRAMES} are needed"
            )));
        }
        let arena = &inner.arena;
        if frames > arena.capacity() {
            return Err(Error::InvalidArgument(format!(
                "memory {bytes} bytes is above max_memory ({} bytes): build the cache with \
                 Config::max_memory to grow this far",
                arena.capacity() * ps
            )));
        }
        let wm = watermarks_for(inner, frames)?;
        // One resize at a time: the parked list is what a resize counts.
        let _one = inner.resizing.lock();
        arena.set_limit(frames);
        inner.wm.set(wm);
        while arena.in_use_limit() < frames {
            arena.unpark();
        }
        inner.progress.notify();
        while arena.in_use_limit() > frames {
            let id = match arena.pop_free() {
                Some(id) => id,
                None => match reclaim::alloc_frame(inner) {
                    Ok(id) => id,
                    Err(Error::NoCleanFrame) => {
                        // `no-throttle` fails rather than wait; a resize
                        // may wait for the flushers.
                        inner.writeback.kick_background();
                        let seen = inner.progress.seq();
                        inner.progress.wait(seen, TICK);
                        continue;
                    }
                    Err(e) => {
                        // Keep what was reached, so the figures stay true.
                        let reached = arena.in_use_limit();
                        arena.set_limit(reached);
                        inner.wm.set(watermarks_for(inner, reached).unwrap_or(wm));
                        return Err(e);
                    }
                },
            };
            arena.park(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, MemBackend, PageCache};

    /// Whether the system page at `ptr` is in memory (`mincore`).
    fn in_core(ptr: *mut u8) -> bool {
        let mut v = [0u8; 1];
        // SAFETY: `ptr` is page-aligned inside the arena's live allocation,
        // and `v` has room for the one page asked about.
        let rc = unsafe { libc::mincore(ptr.cast(), 4096, v.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        v[0] & 1 != 0
    }

    #[test]
    fn parked_frames_give_their_memory_back() {
        parked_frames_give_their_memory_back_with(false);
    }

    /// The arena here is one 2 MiB huge page where the kernel has them (all
    /// 512 frames are in memory after 480 are written); each frame given back
    /// splits it, and its own 4 KiB leave memory.
    #[test]
    fn parked_frames_give_their_memory_back_from_huge_pages() {
        parked_frames_give_their_memory_back_with(true);
    }

    fn parked_frames_give_their_memory_back_with(huge: bool) {
        let cache = PageCache::new(Config::new(512 * 4096).huge_pages(huge)).unwrap();
        let file = cache.open_backend(MemBackend::new()).unwrap();
        file.write_at(&vec![0xa5; 480 * 4096], 0).unwrap();
        file.sync().unwrap();
        let arena = &cache.inner().arena;
        let touched = (0..arena.capacity() as u32)
            .filter(|&id| in_core(arena.page_ptr(id)))
            .count();
        // Written frames are in memory: the measure can tell.
        assert!(touched >= 480, "{touched}");
        cache.set_memory(64 * 4096).unwrap();
        let parked = arena.parked.lock().clone();
        assert_eq!(parked.len(), 512 - 64);
        let still = parked
            .iter()
            .filter(|&&id| in_core(arena.page_ptr(id)))
            .count();
        assert_eq!(still, 0, "{still} parked frames still in memory");
        // And the data is all there.
        let mut buf = vec![0u8; 480 * 4096];
        file.read_exact_at(&mut buf, 0).unwrap();
        assert!(buf.iter().all(|&b| b == 0xa5));
    }
}
