//! The frame lock as parking_lot 0.12 builds it (`raw_rwlock.rs`), because
//! the models need the lock word's own history: one word with a writer bit
//! and a reader count; `Acquire` on every lock, `Release` on every unlock
//! (all read-modify-writes). Blocking locks spin with `yield_now` where
//! parking_lot would park.
//!
//! Above the lock bits the word counts its own changes, a ghost the real
//! lock lacks. Every change is a read-modify-write that adds one, so the
//! count a thread reads says where in the word's modification order it
//! stood: "freed while a reader held the lock" is then a plain comparison
//! made once every thread is done, with no appeal to a global clock the
//! memory model does not have.

use loom::sync::atomic::AtomicUsize;
use loom::thread;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

const WRITER: usize = 1;
const ONE_READER: usize = 2;
const LOCK_BITS: usize = 0xff;
const ONE_CHANGE: usize = 0x100;

/// A position in the lock word's modification order: the number of lock
/// and unlock operations before the value read.
pub(super) type Change = usize;

fn change(word: usize) -> Change {
    word / ONE_CHANGE
}

pub(super) struct FrameLock {
    word: AtomicUsize,
}

impl FrameLock {
    pub(super) fn new() -> Self {
        FrameLock {
            word: AtomicUsize::new(0),
        }
    }

    /// parking_lot's `try_lock_shared`: fails only if a writer holds it.
    pub(super) fn try_read(&self) -> bool {
        let mut cur = self.word.load(Relaxed);
        loop {
            if cur & WRITER != 0 {
                return false;
            }
            let new = cur + ONE_READER + ONE_CHANGE;
            match self.word.compare_exchange(cur, new, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    pub(super) fn read(&self) {
        while !self.try_read() {
            thread::yield_now();
        }
    }

    /// Returns the change this unlock made.
    pub(super) fn unlock_read(&self) -> Change {
        change(self.word.fetch_add(ONE_CHANGE - ONE_READER, Release)) + 1
    }

    /// parking_lot's `try_lock_exclusive`: succeeds iff the word, read by
    /// the read-modify-write, is unlocked. Returns the change it read.
    pub(super) fn try_write(&self) -> Option<Change> {
        let mut cur = self.word.load(Relaxed);
        loop {
            if cur & LOCK_BITS != 0 {
                return None;
            }
            match self
                .word
                .compare_exchange(cur, cur + WRITER + ONE_CHANGE, Acquire, Relaxed)
            {
                Ok(_) => return Some(change(cur)),
                Err(now) => cur = now,
            }
        }
    }

    pub(super) fn write(&self) {
        while self.try_write().is_none() {
            thread::yield_now();
        }
    }

    pub(super) fn unlock_write(&self) {
        self.word.fetch_add(ONE_CHANGE - WRITER, Release);
    }

    /// parking_lot's `is_locked_exclusive` (a `Relaxed` load).
    pub(super) fn is_locked_exclusive(&self) -> bool {
        self.word.load(Relaxed) & WRITER != 0
    }
}
