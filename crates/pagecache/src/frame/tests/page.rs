//! One page of one file, as the models see it: the real frame state word
//! (`FrameState`) with models of what its callers hold around it.
//!
//! - `slot`, `index`: the page's slot in the mapping's page table, read
//!   without a lock (`Mapping::find_pin`, `Mapping::find_read`), and the
//!   table's writer lock, under which reclaim frees
//!   (`reclaim::direct::try_free`) and truncation takes the page out.
//! - `lock`: the frame lock, parking_lot's orderings (`lock.rs`). DIRTY is
//!   set under the write side with WRITEBACK clear (`filemap::write_at`),
//!   writeback starts under the read side (`writepages::start_writeback`).
//! - `bytes`: the page's bytes (one number), a loom cell, so any read and
//!   write of them not ordered by happens-before fails the model: the I/O
//!   reading them under WRITEBACK, a writer, and the next owner of a freed
//!   frame.
//! - `disk`: the backend as `FaultBackend` models it: what was written, and
//!   what a successful sync made durable; a failed sync drops what was not
//!   durable.
//! - `unstable`, `committing`, `sync_failures`: the mapping's unstable
//!   index (this page's entry), the lock that makes its commits one at a
//!   time, and its failed-sync count (`writeback/commit.rs`).
//!
//! Counters and the positions of frees are ghosts in std atomics: loom runs
//! one thread at a time, and they are read only once every thread is done.

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64};
use loom::sync::{Arc, Mutex};
use loom::thread;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

use super::lock::{Change, FrameLock};
use crate::frame::{
    FrameState, DIRTY, FREE, ORPHAN, PIN_MASK, RECLAIM, REFERENCED, UNSTABLE, UPTODATE, WRITEBACK,
};

/// Runs `f` on the page in a new loom thread.
pub(super) fn on_thread<T: Send + 'static>(
    p: &Arc<Page>,
    f: impl FnOnce(&Page) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let p = p.clone();
    thread::spawn(move || f(&p))
}

pub(super) struct Disk {
    pub(super) written: u64,
    pub(super) durable: u64,
}

struct Unstable {
    /// Commit generation (`UnstableIndex::gen`).
    gen: u64,
    /// This page's entry: the generation its write completed in.
    entry: Option<u64>,
}

pub(super) struct Page {
    pub(super) state: FrameState,
    slot: AtomicBool,
    index: Mutex<()>,
    pub(super) lock: FrameLock,
    bytes: UnsafeCell<u64>,
    pub(super) disk: Mutex<Disk>,
    unstable: Mutex<Unstable>,
    /// `Mapping::committing`: one commit at a time.
    committing: Mutex<()>,
    sync_failures: AtomicU64,
    frees: StdAtomicUsize,
    /// The earliest lock-word change any free read before deciding.
    first_free_seen: StdAtomicUsize,
    /// The latest lock-word change a lock-only reader's unlock made.
    last_reader_unlock: StdAtomicUsize,
}

impl Page {
    /// A page in the index, unpinned, unlocked, with `flags`; an UNSTABLE
    /// one has its entry in the unstable index.
    pub(super) fn new(flags: u64, bytes: u64, written: u64, durable: u64) -> Arc<Page> {
        let state = FrameState::new_free();
        state.alloc(); // pinned once, as fresh from the free list
        state.set(flags);
        state.unpin();
        Arc::new(Page {
            state,
            slot: AtomicBool::new(true),
            index: Mutex::new(()),
            lock: FrameLock::new(),
            bytes: UnsafeCell::new(bytes),
            disk: Mutex::new(Disk { written, durable }),
            unstable: Mutex::new(Unstable {
                gen: 0,
                entry: (flags & UNSTABLE != 0).then_some(0),
            }),
            committing: Mutex::new(()),
            sync_failures: AtomicU64::new(0),
            frees: StdAtomicUsize::new(0),
            first_free_seen: StdAtomicUsize::new(usize::MAX),
            last_reader_unlock: StdAtomicUsize::new(0),
        })
    }

    /// The bytes, for a thread that holds the frame lock or runs the I/O of
    /// a writeback it started (or is alone).
    pub(super) fn bytes(&self) -> u64 {
        // SAFETY: a plain u64 read; loom fails the model if a write to the
        // cell is not ordered with it, which is what the models check.
        self.bytes.with(|p| unsafe { *p })
    }

    /// Overwrites the bytes: a writer holding the write lock with WRITEBACK
    /// clear, or the next owner of a freed frame.
    pub(super) fn set_bytes(&self, v: u64) {
        // SAFETY: as in `bytes`; loom checks the ordering.
        self.bytes.with_mut(|p| unsafe { *p = v })
    }

    pub(super) fn frees(&self) -> usize {
        self.frees.load(SeqCst)
    }

    fn freed(&self, seen: Change) {
        self.frees.fetch_add(1, SeqCst);
        self.first_free_seen.fetch_min(seen, SeqCst);
    }

    /// Never freed while a lock-only reader held it: every free decided on a
    /// lock word at or after every reader's unlock (including a reader that
    /// locked after the free, whose unlock comes later still). Call once
    /// every thread is done.
    pub(super) fn check_not_freed_under_reader(&self) {
        let first = self.first_free_seen.load(SeqCst);
        let last = self.last_reader_unlock.load(SeqCst);
        assert!(
            self.frees() == 0 || first >= last,
            "freed at lock change {first}, before a lock-only reader let go at {last}"
        );
    }

    /// `Mapping::find_pin` by its settling path: a plain pin under the
    /// table's writer lock. Its lock-free first step (a CAS pin, then the
    /// slot checked again) is modelled in `loom_hit.rs`; composed here with
    /// the writer's wait for writeback, these models exceed loom's branch
    /// limit (a spin it does not bound), so they keep the locked path.
    pub(super) fn find_pin(&self) -> bool {
        let _locked = self.index.lock().unwrap();
        let present = self.slot.load(Acquire);
        if present {
            self.state.pin();
        }
        present
    }

    /// `Arena::unpin`: frees an orphan on its last unpin.
    pub(super) fn unpin(&self) {
        let prev = self.state.unpin();
        assert_eq!(prev & FREE, 0, "unpinned a free frame");
        if prev & PIN_MASK == 1 && prev & ORPHAN != 0 {
            self.free_orphan();
        }
    }

    /// `Mapping::find_read`: the slot read without a lock, the frame's read
    /// lock taken without waiting, no pin, then the frame checked under the
    /// lock (up to date, not free, not an orphan: the model's one page has
    /// no other identity). True if the caller now holds the read lock.
    pub(super) fn find_read(&self) -> bool {
        if !self.slot.load(Acquire) || !self.lock.try_read() {
            return false;
        }
        if self.state.load() & (UPTODATE | FREE | ORPHAN) != UPTODATE {
            // Not the page: a late reader, not one that held it.
            self.lock.unlock_read();
            if self.state.load() & ORPHAN != 0 {
                self.free_orphan();
            }
            return false;
        }
        self.state.mark_referenced();
        true
    }

    /// Drops a lock-only reader's lock; `Arena::release_read`.
    /// Returns whether this freed the frame.
    pub(super) fn release_read(&self) -> bool {
        let at = self.lock.unlock_read();
        self.last_reader_unlock.fetch_max(at, SeqCst);
        self.state.load() & ORPHAN != 0 && self.free_orphan()
    }

    /// `Arena::try_free_orphan`: takes the frame lock exclusively without
    /// waiting on readers (a lock-only reader frees it when it lets go),
    /// retrying while another freer holds it.
    pub(super) fn free_orphan(&self) -> bool {
        loop {
            if !self.state.orphan_freeable() {
                return false;
            }
            if let Some(seen) = self.lock.try_write() {
                let freed = self.state.try_free_orphan();
                self.lock.unlock_write();
                if freed {
                    self.freed(seen);
                }
                return freed;
            }
            if !self.lock.is_locked_exclusive() {
                return false;
            }
            thread::yield_now();
        }
    }

    /// `reclaim::direct::try_free`: under the index write lock, the frame
    /// lock taken exclusively without waiting, then the CAS. A page whose
    /// bytes are not durable must never get here.
    pub(super) fn try_free(&self) -> bool {
        let locked = self.index.lock().unwrap();
        if !self.slot.load(Acquire) {
            return false;
        }
        let Some(seen) = self.lock.try_write() else {
            return false;
        };
        let freed = self.state.try_reclaim();
        if freed {
            self.slot.store(false, Release);
            let (bytes, durable) = (self.bytes(), self.disk.lock().unwrap().durable);
            assert_eq!(
                bytes, durable,
                "freed with bytes {bytes} not durable ({durable})"
            );
        }
        self.lock.unlock_write();
        drop(locked);
        if freed {
            self.freed(seen);
        }
        freed
    }

    /// `filemap::write_at` on a resident page: pinned across the write.
    /// A page already freed is not written (the write would read it in
    /// anew, into another frame).
    pub(super) fn write_at(&self, value: u64) {
        if self.find_pin() {
            self.write(value);
            self.unpin();
        }
    }

    /// `filemap::lock_for_write` + the copy + `mark_dirty`. The caller
    /// holds a pin.
    pub(super) fn write(&self, value: u64) {
        loop {
            self.lock.write();
            if self.state.load() & WRITEBACK == 0 {
                break;
            }
            self.lock.unlock_write();
            thread::yield_now();
        }
        self.set_bytes(value);
        if self.state.load() & DIRTY == 0 {
            self.state.set(DIRTY);
        }
        self.lock.unlock_write();
    }

    /// `writepages` for this page: start writeback under the frame's read
    /// lock, then write the bytes and complete (`finish_writeback`). `io_ok`
    /// is whether the backend write succeeds. Returns whether it ran.
    pub(super) fn writeback(&self, io_ok: bool) -> bool {
        let started = self.start_writeback();
        if started {
            self.finish_writeback(io_ok);
        }
        started
    }

    /// `writepages::start_writeback`: DIRTY → WRITEBACK under the read lock.
    pub(super) fn start_writeback(&self) -> bool {
        self.lock.read();
        let started = self.state.start_writeback();
        self.lock.unlock_read();
        started
    }

    /// `writepages::write_run` for a page under writeback this thread
    /// started: the bytes are read with the frame lock dropped.
    pub(super) fn finish_writeback(&self, io_ok: bool) {
        let failures_at_issue = self.sync_failures.load(Acquire);
        let snapshot = self.bytes();
        let s = self.state.load();
        assert!(
            s & WRITEBACK != 0 && s & FREE == 0,
            "state {s:#x} under writeback"
        );
        if io_ok {
            self.disk.lock().unwrap().written = snapshot;
            self.written(failures_at_issue);
        } else {
            self.end_writeback_failed();
        }
    }

    /// `commit::written`: UNSTABLE with an entry at the current generation,
    /// or DIRTY again if a sync failed since the write was issued.
    fn written(&self, failures_at_issue: u64) {
        let redirty = {
            let mut u = self.unstable.lock().unwrap();
            if self.sync_failures.load(Acquire) != failures_at_issue {
                true
            } else {
                let (_, after) = self.state.end_writeback_ok();
                if after & ORPHAN == 0 {
                    u.entry = Some(u.gen);
                }
                false
            }
        };
        if redirty {
            self.end_writeback_failed();
        } else {
            self.writeback_ended();
        }
    }

    /// `writepages::end_writeback_failed`.
    fn end_writeback_failed(&self) {
        let (_, s) = self.state.end_writeback_err();
        if s & ORPHAN != 0 {
            self.state.clear(DIRTY);
        }
        self.writeback_ended();
    }

    /// `writepages::writeback_ended`: frees a truncated page.
    fn writeback_ended(&self) {
        if self.state.load() & ORPHAN != 0 {
            self.free_orphan();
        }
    }

    /// `commit::commit`: a backend sync that succeeds (`sync_ok`) or fails.
    pub(super) fn commit(&self, sync_ok: bool) {
        let _one = self.committing.lock().unwrap();
        let gen = {
            let mut u = self.unstable.lock().unwrap();
            u.gen += 1;
            u.gen - 1
        };
        {
            let mut d = self.disk.lock().unwrap();
            if sync_ok {
                d.durable = d.written;
            } else {
                d.written = d.durable;
            }
        }
        if sync_ok {
            self.committed(gen);
        } else {
            self.uncommit_all();
        }
    }

    /// `commit::committed`: entries recorded at `gen` or before are clean;
    /// a reclaim-flagged, unreferenced one is freed at once.
    fn committed(&self, gen: u64) {
        let to_free = {
            let mut u = self.unstable.lock().unwrap();
            match u.entry {
                Some(g) if g <= gen => {
                    u.entry = None;
                    let mapped = self.slot.load(Acquire);
                    mapped
                        && self.state.commit()
                        && self.state.load() & (RECLAIM | REFERENCED) == RECLAIM
                }
                _ => false,
            }
        };
        if to_free {
            self.state.clear(RECLAIM);
            self.try_free();
        }
    }

    /// `commit::uncommit_all`.
    fn uncommit_all(&self) {
        let mut u = self.unstable.lock().unwrap();
        self.sync_failures.fetch_add(1, AcqRel);
        if u.entry.take().is_some() && self.slot.load(Acquire) {
            self.state.uncommit();
        }
    }

    /// `truncate::drop_pages_from` for this page: out of the index, ORPHAN,
    /// dirty and unstable state dropped (`commit::forget`), freed if idle.
    /// Returns whether this freed the frame.
    pub(super) fn truncate(&self) -> bool {
        {
            let _locked = self.index.lock().unwrap();
            self.slot.store(false, Release);
        }
        self.state.set(ORPHAN);
        self.state.clear(DIRTY);
        {
            let mut u = self.unstable.lock().unwrap();
            u.entry = None;
            self.state.commit();
        }
        self.free_orphan()
    }

    /// One look by `reclaim::direct::shrink` at the page on the inactive
    /// list (no REFERENCED handling: the models' pages are unreferenced).
    /// Returns whether this freed the frame.
    pub(super) fn shrink(&self) -> bool {
        let s = self.state.load();
        if s & FREE != 0 || s & PIN_MASK != 0 && s & ORPHAN == 0 {
            false
        } else if s & ORPHAN != 0 {
            self.free_orphan()
        } else if s & (WRITEBACK | UNSTABLE | DIRTY) != 0 {
            // Under writeback, unstable or dirty: flagged for the flushers,
            // freed by the commit that makes it durable.
            self.state.set(RECLAIM);
            false
        } else {
            self.try_free()
        }
    }

    /// Once every thread is done: bytes that differ from what the backend
    /// was last written are DIRTY, and bytes that are not durable are DIRTY
    /// or UNSTABLE with their write on the backend; UNSTABLE and the
    /// unstable index agree.
    pub(super) fn check_durable(&self) {
        let s = self.state.load();
        if s & FREE != 0 {
            return; // try_free checked its bytes were durable
        }
        assert_eq!(s & WRITEBACK, 0);
        let bytes = self.bytes();
        let d = self.disk.lock().unwrap();
        if bytes != d.written {
            assert!(
                s & DIRTY != 0,
                "bytes {bytes} not on the backend ({}) but clean: {s:#x}",
                d.written
            );
        }
        if bytes != d.durable {
            assert!(
                s & (DIRTY | UNSTABLE) != 0,
                "bytes {bytes} not durable ({}) but clean: {s:#x}",
                d.durable
            );
        }
        if s & ORPHAN == 0 {
            let entry = self.unstable.lock().unwrap().entry;
            assert_eq!(
                s & UNSTABLE != 0,
                entry.is_some(),
                "flag {s:#x} and unstable entry {entry:?} disagree"
            );
        }
    }

    /// Once every thread is done: what the flushers would do next (write a
    /// dirty page, commit), after which the page is clean, durable and can
    /// be freed; nothing is stuck.
    pub(super) fn drain(&self) {
        if self.state.load() & FREE != 0 {
            return;
        }
        if self.state.load() & DIRTY != 0 {
            assert!(self.writeback(true));
        }
        self.commit(true);
        let s = self.state.load();
        assert_eq!(
            s & (DIRTY | UNSTABLE | WRITEBACK),
            0,
            "{s:#x} after a commit"
        );
        if s & FREE == 0 {
            assert!(
                self.try_free(),
                "clean and durable but not freeable: {s:#x}"
            );
        }
    }
}
