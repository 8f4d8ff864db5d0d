//! loom models of the frame state word's transitions, composed with the
//! locks their callers hold:
//!
//! - the mapping's index lock (a `RwLock` over "is the page in the index"):
//!   pins are taken under its read side (`Mapping::find_pin`), reclaim frees
//!   under its write side (`reclaim::direct::try_free`);
//! - the frame lock (a `RwLock` over the page's bytes): DIRTY is set under
//!   the write side with WRITEBACK clear (`filemap::write_at`), writeback
//!   starts under the read side (`writeback::writepages::start_writeback`).
//!
//! Checked: a frame is never freed while pinned, never freed or reused while
//! under writeback, a dirty bit is never lost (bytes that differ from the
//! backend's always leave the page DIRTY, whether the writeback succeeded,
//! failed, or raced a writer), and an orphan is freed exactly once.

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use loom::sync::atomic::AtomicUsize;
use loom::sync::{Arc, RwLock};
use loom::thread;

use crate::frame::{FrameState, DIRTY, FREE, ORPHAN, PIN_MASK, RECLAIM, UPTODATE, WRITEBACK};

/// Executions explored, over every model in this file.
static EXECUTIONS: StdAtomicUsize = StdAtomicUsize::new(0);

fn model(name: &str, preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let before = EXECUTIONS.load(SeqCst);
    let mut b = loom::model::Builder::new();
    b.preemption_bound = preemption_bound;
    b.check(move || {
        EXECUTIONS.fetch_add(1, Relaxed);
        f()
    });
    let n = EXECUTIONS.load(SeqCst) - before;
    println!("loom: {name}: {n} executions explored");
    assert!(n > 0);
}

/// A frame in a mapping, with the two locks its callers use.
struct Page {
    state: FrameState,
    /// The mapping's index lock; `true` while the page is in the index.
    index: RwLock<bool>,
    /// The frame lock over the page's bytes (one number stands for them).
    bytes: RwLock<u64>,
    /// What the backend holds.
    disk: loom::sync::Mutex<u64>,
    frees: AtomicUsize,
}

impl Page {
    fn new(flags: u64, bytes: u64, disk: u64) -> Arc<Page> {
        let state = FrameState::new_free();
        state.alloc(); // pinned once, as fresh from the free list
        state.set(flags);
        state.unpin();
        Arc::new(Page {
            state,
            index: RwLock::new(true),
            bytes: RwLock::new(bytes),
            disk: loom::sync::Mutex::new(disk),
            frees: AtomicUsize::new(0),
        })
    }

    /// `Mapping::find_pin`: pin under the index lock's read side.
    fn find_pin(&self) -> bool {
        let present = self.index.read().unwrap();
        if *present {
            self.state.pin();
        }
        *present
    }

    /// `reclaim::direct::try_free`: free under the index lock's write side.
    fn try_free(&self) -> bool {
        let mut present = self.index.write().unwrap();
        if !*present || !self.state.try_reclaim() {
            return false;
        }
        *present = false;
        let (bytes, disk) = (*self.bytes.read().unwrap(), *self.disk.lock().unwrap());
        assert_eq!(bytes, disk, "freed with bytes not on disk: dirty data lost");
        self.frees.fetch_add(1, SeqCst);
        true
    }

    /// `filemap::lock_for_write` + the copy + `mark_dirty`.
    fn write(&self, value: u64) {
        let mut bytes = loop {
            let g = self.bytes.write().unwrap();
            if self.state.load() & WRITEBACK == 0 {
                break g;
            }
            drop(g);
            thread::yield_now();
        };
        *bytes = value;
        let f = self.state.load();
        if f & DIRTY == 0 {
            self.state.set(DIRTY);
        }
    }

    /// `writepages`: start writeback under the frame's read lock, write the
    /// bytes with the lock dropped, end writeback. Returns whether it ran.
    fn writeback(&self, ok: bool) -> bool {
        let snapshot = {
            let bytes = self.bytes.read().unwrap();
            if !self.state.start_writeback() {
                return false;
            }
            *bytes
        };
        // Under writeback: not freed, not reused, bytes stable.
        let s = self.state.load();
        assert!(
            s & WRITEBACK != 0 && s & FREE == 0,
            "state {s:#x} under writeback"
        );
        if ok {
            *self.disk.lock().unwrap() = snapshot;
        }
        let (_, after) = self.state.end_writeback(ok);
        if ok && after & RECLAIM != 0 {
            self.state.clear(RECLAIM);
            self.try_free();
        }
        true
    }

    /// Dirty bit never lost: bytes that differ from the backend's are DIRTY
    /// (checked once every thread is done).
    fn check_dirty_bit(&self) {
        let s = self.state.load();
        assert_eq!(s & WRITEBACK, 0);
        let bytes = *self.bytes.read().unwrap();
        let disk = *self.disk.lock().unwrap();
        if bytes != disk {
            assert!(
                s & DIRTY != 0,
                "bytes {bytes} != disk {disk} but clean: {s:#x}"
            );
        }
    }
}

#[test]
fn never_freed_while_pinned() {
    model("pin vs reclaim", None, || {
        let p = Page::new(UPTODATE, 1, 1);
        let r = p.clone();
        let reader = thread::spawn(move || {
            if r.find_pin() {
                let s = r.state.load();
                assert!(s & FREE == 0 && s & PIN_MASK >= 1, "pinned but {s:#x}");
                r.state.unpin();
            }
        });
        let freed = p.try_free();
        reader.join().unwrap();
        if freed {
            assert_eq!(p.state.load(), FREE);
        }
        assert!(p.frees.load(SeqCst) <= 1);
    });
}

#[test]
fn two_pinners_and_reclaim() {
    model("two pinners vs reclaim", Some(3), || {
        let p = Page::new(UPTODATE, 1, 1);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let r = p.clone();
                thread::spawn(move || {
                    if r.find_pin() {
                        assert_eq!(r.state.load() & FREE, 0);
                        r.state.unpin();
                    }
                })
            })
            .collect();
        p.try_free();
        for r in readers {
            r.join().unwrap();
        }
        assert!(p.frees.load(SeqCst) <= 1);
        let s = p.state.load();
        assert!(s == FREE || s & PIN_MASK == 0, "{s:#x}");
    });
}

#[test]
fn dirty_bit_survives_a_write_racing_writeback() {
    for ok in [true, false] {
        model(
            if ok {
                "write vs writeback (I/O ok)"
            } else {
                "write vs writeback (I/O fails)"
            },
            None,
            move || {
                // Dirty: bytes 1 in memory, 0 on disk.
                let p = Page::new(UPTODATE | DIRTY, 1, 0);
                let w = p.clone();
                let writer = thread::spawn(move || w.write(2));
                p.writeback(ok);
                writer.join().unwrap();
                p.check_dirty_bit();
                if !ok {
                    assert!(
                        p.state.load() & DIRTY != 0,
                        "a failed writeback left it clean"
                    );
                }
            },
        );
    }
}

#[test]
fn never_freed_or_reused_under_writeback() {
    for ok in [true, false] {
        let name = if ok {
            "write vs writeback vs reclaim (I/O ok)"
        } else {
            "write vs writeback vs reclaim (I/O fails)"
        };
        model(name, Some(3), move || {
            // Clean: the same bytes in memory and on disk.
            let p = Page::new(UPTODATE, 1, 1);
            let w = p.clone();
            let writer = thread::spawn(move || {
                // filemap::write_at: pinned across the write.
                if w.find_pin() {
                    w.write(2);
                    w.state.unpin();
                }
            });
            let f = p.clone();
            let flusher = thread::spawn(move || {
                f.writeback(ok);
            });
            let r = p.clone();
            let reclaimer = thread::spawn(move || {
                // reclaim::direct::shrink on a stale snapshot of the flags: a
                // page under writeback gets RECLAIM (freed when its I/O
                // ends), a clean one is freed now, a dirty one is left. A
                // freed frame is reused at once for another page.
                let s = r.state.load();
                if s & WRITEBACK != 0 {
                    r.state.set(RECLAIM);
                } else if s & DIRTY == 0 && r.try_free() {
                    r.state.alloc();
                }
            });
            writer.join().unwrap();
            flusher.join().unwrap();
            reclaimer.join().unwrap();
            assert!(p.frees.load(SeqCst) <= 1);
            if p.frees.load(SeqCst) == 0 {
                p.check_dirty_bit();
            }
        });
    }
}

#[test]
fn orphan_freed_exactly_once() {
    model("truncate vs unpin vs writeback end", Some(3), || {
        // Pinned once, under writeback (started with the frame read lock).
        let p = Page::new(UPTODATE | DIRTY, 1, 0);
        p.state.pin();
        {
            let _r = p.bytes.read().unwrap();
            assert!(p.state.start_writeback());
        }
        let u = p.clone();
        let unpinner = thread::spawn(move || {
            let prev = u.state.unpin();
            assert_eq!(prev & FREE, 0);
            if prev & PIN_MASK == 1 && prev & ORPHAN != 0 && u.state.try_free_orphan() {
                u.frees.fetch_add(1, SeqCst);
            }
        });
        let w = p.clone();
        let io = thread::spawn(move || {
            let (_, after) = w.state.end_writeback(true);
            if after & ORPHAN != 0 && w.state.try_free_orphan() {
                w.frees.fetch_add(1, SeqCst);
            }
        });
        // truncate::set_len: out of the index, ORPHAN, DIRTY dropped, free if idle.
        *p.index.write().unwrap() = false;
        p.state.set(ORPHAN);
        p.state.clear(DIRTY);
        if p.state.try_free_orphan() {
            p.frees.fetch_add(1, SeqCst);
        }
        unpinner.join().unwrap();
        io.join().unwrap();
        assert_eq!(p.frees.load(SeqCst), 1, "an orphan is freed exactly once");
        assert_eq!(p.state.load(), FREE);
    });
}

#[test]
fn zz_report_executions() {
    // Runs last in name order when tests run one at a time; the total is
    // printed by each model above as well.
    println!("loom: {} executions so far", EXECUTIONS.load(SeqCst));
}
