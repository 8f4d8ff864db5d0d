//! Hints and control over a file's cached pages (`posix_fadvise`,
//! `mincore` and `madvise` for this cache): asynchronous prefetch, dropping
//! a range, readahead mode, insertion without activation, residency.
//!
//! The per-file hints live in one byte of the mapping ([`Mapping::advice`]),
//! read by readahead on a miss and by the hit path (one relaxed load) to
//! decide whether an access counts as a reference.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::file::File;
use crate::frame::{Frame, REFERENCED, UPTODATE};
use crate::guard::held;
use crate::mapping::Mapping;
use crate::state::Inner;
use crate::{readahead, reclaim, writeback};

/// How a file will be accessed, or what to do with a range of it now: the
/// cache's `posix_fadvise`. See [`File::advise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Advice {
    /// Back to the defaults: readahead grows with sequential misses, and
    /// accesses count as references (undoes `Sequential`, `Random` and
    /// `NoReuse`).
    Normal,
    /// The file is read in order: every miss reads the largest readahead
    /// window (twice the default maximum), without waiting for a sequence
    /// to build up.
    Sequential,
    /// The file is read at random: no readahead, a miss reads one page.
    Random,
    /// The range will be read soon: read it in the background, from free
    /// frames only (like readahead, it never reclaims or waits), without
    /// blocking the caller.
    WillNeed,
    /// The range will not be read again soon: write its dirty pages, make
    /// them durable, and drop every clean, unpinned page of it.
    DontNeed,
    /// Pages of the file are used once: accesses to them do not count as
    /// references, so they are never promoted to the active list and leave
    /// before pages other files use repeatedly.
    NoReuse,
}

/// Readahead mode bits in [`Mapping::advice`].
const RA_MASK: u8 = 0b11;
pub(crate) const RA_SEQUENTIAL: u8 = 1;
pub(crate) const RA_RANDOM: u8 = 2;
/// Accesses do not count as references.
const NOREUSE: u8 = 0b100;

/// The mapping's readahead mode (`0`, `RA_SEQUENTIAL` or `RA_RANDOM`).
#[inline]
pub(crate) fn ra_mode(m: &Mapping) -> u8 {
    m.advice.load(Ordering::Relaxed) & RA_MASK
}

/// Records an access to a page of `m` (the hit path): a reference, unless
/// the file was advised `NoReuse`.
#[inline]
pub(crate) fn touch(m: &Mapping, f: &Frame) {
    // The frame's own word first: a hot page is referenced already, and
    // the mapping's advice shares a line with fields flushers write.
    if f.flags() & REFERENCED != 0 {
        return;
    }
    if m.advice.load(Ordering::Relaxed) & NOREUSE == 0 {
        f.mark_referenced();
    }
}

/// The background readers: `READERS` threads per cache, started on the
/// first `WillNeed` or asynchronous readahead window, fed through one
/// channel. They hold the cache weakly between jobs, so they never keep a
/// dropped cache alive; they exit when the cache (and with it the sender)
/// is gone.
#[derive(Default)]
pub(crate) struct Prefetcher {
    tx: Mutex<Option<Sender<Job>>>,
    /// Joined when the cache stops, like its other threads: a thread left
    /// running past the cache would outlive what its user expects.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct Job {
    mapping: Arc<Mapping>,
    pages: Range<u64>,
    /// A piece of a readahead window (read as one, from its first page),
    /// rather than a `WillNeed` range.
    window: bool,
    /// The window's page that gets the marker.
    marker: Option<u64>,
}

/// Background reader threads: enough to keep a window's pieces in flight at
/// once (a device reads several large requests faster than one).
const READERS: usize = 4;

impl Prefetcher {
    fn submit(&self, inner: &Arc<Inner>, job: Job) -> Result<()> {
        let mut tx = self.tx.lock();
        // A stopping cache starts no readers (they would not be joined).
        if inner.closing.load(Ordering::Acquire) {
            return Ok(());
        }
        if tx.is_none() {
            let (s, r) = unbounded();
            for _ in 0..READERS {
                let weak = Arc::downgrade(inner);
                let r = r.clone();
                let t = std::thread::Builder::new()
                    .name("pc-prefetch".into())
                    .spawn(move || run(&weak, &r))
                    .map_err(|e| Error::io("spawning the prefetch thread", None, e))?;
                self.threads.lock().push(t);
            }
            *tx = Some(s);
        }
        if let Some(s) = tx.as_ref() {
            // The receiver lives as long as the sender (it exits only when
            // the sender is dropped), so this cannot fail.
            let _ = s.send(job);
        }
        Ok(())
    }

    /// Stops the background readers: no more jobs are taken, the queue is
    /// closed, and the threads are joined. Jobs still queued are dropped
    /// (they are hints).
    pub(crate) fn stop(&self) {
        self.tx.lock().take();
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            // A reader thread's own drop of the last cache handle must not
            // join itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }

    /// Submits the readahead window `pages`, whose page `marker` gets the
    /// marker, in pieces of at most `piece` pages that the background
    /// readers read at once (the first piece, with the marker, first).
    pub(crate) fn readahead(
        &self,
        inner: &Arc<Inner>,
        m: &Arc<Mapping>,
        pages: Range<u64>,
        marker: u64,
        piece: u64,
    ) -> Result<()> {
        let mut start = pages.start;
        while start < pages.end {
            let end = pages.end.min(start + piece.max(1));
            self.submit(
                inner,
                Job {
                    mapping: m.clone(),
                    pages: start..end,
                    window: true,
                    marker: (start..end).contains(&marker).then_some(marker),
                },
            )?;
            start = end;
        }
        Ok(())
    }
}

fn run(inner: &Weak<Inner>, rx: &Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.closing.load(Ordering::Acquire) {
            continue;
        }
        let Job {
            mapping,
            pages,
            window,
            marker,
        } = job;
        if window {
            readahead::read_window(&inner, &mapping, pages, marker);
        } else {
            prefetch_now(&inner, &mapping, pages);
        }
    }
}

/// Reads the missing pages of `pages` in windows, skipping resident ones,
/// until the range is in or free frames run short.
fn prefetch_now(inner: &Inner, m: &Mapping, pages: Range<u64>) {
    let chunk = readahead::max_pages(inner, true);
    let end = pages.end.min(m.size().div_ceil(inner.page_size() as u64));
    let mut index = pages.start;
    while index < end {
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        if m.lookup(index).is_some() {
            index += 1;
            continue;
        }
        let n = readahead::populate_window(inner, m, index, (end - index).min(chunk), None);
        if n == 0 {
            if m.lookup(index).is_none() {
                // No free frame above the low watermark: prefetch never
                // reclaims, so it stops here.
                return;
            }
            index += 1;
        }
        index += n;
    }
}

/// Page indexes covering the byte range, or a clear error.
fn page_range(inner: &Inner, range: &Range<u64>) -> Result<Range<u64>> {
    if range.start > range.end {
        return Err(Error::InvalidArgument(format!(
            "range {}..{} ends before it starts",
            range.start, range.end
        )));
    }
    let ps = inner.page_size() as u64;
    Ok(range.start / ps..range.end.div_ceil(ps))
}

impl File {
    /// Tells the cache how the file, or the byte range `range` of it, will
    /// be used (see [`Advice`]). `Normal`, `Sequential`, `Random` and
    /// `NoReuse` apply to the whole file (every open of it) and ignore
    /// `range`, as Linux's `posix_fadvise` does; `WillNeed` and `DontNeed`
    /// act on the pages overlapping `range`.
    ///
    /// `WillNeed` returns at once; the pages arrive in the background.
    /// `DontNeed` writes in the caller's thread: a page whose write fails
    /// stays dirty and resident, and the error is reported by this open's
    /// next [`File::sync`], not here.
    ///
    /// ```
    /// use pagecache::{Advice, Config, MemBackend, PageCache};
    /// # fn main() -> Result<(), pagecache::Error> {
    /// let cache = PageCache::new(Config::new(1 << 20))?;
    /// let file = cache.open_backend(MemBackend::new())?;
    /// file.write_at(&[7; 8192], 0)?;
    /// // Written, made durable, and dropped from memory.
    /// file.advise(0..8192, Advice::DontNeed)?;
    /// assert_eq!(file.is_resident(0..8192)?, [false, false]);
    /// // Read back in the background; this call does not wait.
    /// file.advise(0..8192, Advice::WillNeed)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `range` ends before it starts;
    /// [`Error::WouldDeadlock`] for `DontNeed` while this thread holds a
    /// write guard on the file; [`Error::Io`] if the prefetch thread cannot
    /// be started.
    pub fn advise(&self, range: Range<u64>, advice: Advice) -> Result<()> {
        let inner = self.inner();
        let pages = page_range(inner, &range)?;
        let m = self.m();
        let set_mode = |mask: u8, bits: u8| {
            let _ = m
                .advice
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                    Some((a & !mask) | bits)
                });
        };
        match advice {
            Advice::Normal => set_mode(RA_MASK | NOREUSE, 0),
            Advice::Sequential => set_mode(RA_MASK, RA_SEQUENTIAL),
            Advice::Random => set_mode(RA_MASK, RA_RANDOM),
            Advice::NoReuse => set_mode(NOREUSE, NOREUSE),
            Advice::WillNeed => {
                if !pages.is_empty() {
                    inner.prefetcher.submit(
                        self.inner_arc(),
                        Job {
                            mapping: m.clone(),
                            pages,
                            window: false,
                            marker: None,
                        },
                    )?;
                }
            }
            Advice::DontNeed => {
                if held::write_on(m.id) {
                    return Err(Error::WouldDeadlock("advise(DontNeed)"));
                }
                // After shutdown nothing is written; clean pages still go.
                if inner.check_open().is_ok() {
                    // A failure is in the errseq, for this open's next sync.
                    let _ = writeback::sync_mapping(inner, m, pages.clone());
                }
                evict_pages(inner, m, pages);
            }
        }
        Ok(())
    }

    /// Reads the pages overlapping `range` in the background
    /// (`advise(range, Advice::WillNeed)`).
    ///
    /// # Errors
    ///
    /// As [`File::advise`].
    pub fn prefetch(&self, range: Range<u64>) -> Result<()> {
        self.advise(range, Advice::WillNeed)
    }

    /// Drops the clean, unpinned pages overlapping `range` from the cache
    /// and returns how many were dropped. Dirty, unstable, pinned pages and
    /// pages under writeback stay (nothing is written: see
    /// [`Advice::DontNeed`] to write them first).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `range` ends before it starts.
    pub fn evict(&self, range: Range<u64>) -> Result<u64> {
        let inner = self.inner();
        let pages = page_range(inner, &range)?;
        Ok(evict_pages(inner, self.m(), pages))
    }

    /// Which pages overlapping `range` are resident (like `mincore`): one
    /// entry per page from the one holding `range.start` up to the end of
    /// `range` or of the file, whichever comes first.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `range` ends before it starts.
    pub fn is_resident(&self, range: Range<u64>) -> Result<Vec<bool>> {
        let inner = self.inner();
        let pages = page_range(inner, &range)?;
        let m = self.m();
        let end = pages.end.min(m.size().div_ceil(inner.page_size() as u64));
        Ok((pages.start..end.max(pages.start))
            .map(|i| {
                m.lookup(i)
                    .is_some_and(|id| inner.arena.frame(id).flags() & UPTODATE != 0)
            })
            .collect())
    }
}

/// Frees every clean, unpinned resident page of `m` in `pages`.
fn evict_pages(inner: &Inner, m: &Mapping, pages: Range<u64>) -> u64 {
    let mut dropped = 0;
    for (_, id) in m.pages.resident_in(pages) {
        if reclaim::direct::try_free(inner, id) {
            dropped += 1;
        }
    }
    if dropped > 0 {
        inner.progress.notify();
    }
    dropped
}
