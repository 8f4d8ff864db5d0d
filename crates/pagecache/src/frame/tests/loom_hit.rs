//! The hit protocol (docs/design.md): a reader finds a frame through the
//! page table without a lock, so the frame may have been freed, and reused
//! for another page, since. Checks, against reclaim freeing the frame of
//! page P and a new owner filling it with page Q:
//!
//! - an optimistic copy (`Mapping::read_unlocked`) that validates holds
//!   P's bytes, never Q's;
//! - a lock-free pin (`Mapping::find_pin`) holds P's frame: reclaim never
//!   frees a pinned frame, and the pinned frame is P while pinned;
//! - against a writer rewriting P in place (two words, so a copy that
//!   mixes two writes shows), a validated copy is never torn.
//!
//! The real code under test: `FrameState` (pin, `try_pin`, `try_reclaim`)
//! and `Version` (the seqlock). Modelled around it: the page table's two
//! slots and writer lock, the frame's identity and bytes (a word read with
//! relaxed loads, as the racy copy reads them), the frame lock (`lock.rs`).

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::lock::FrameLock;
use super::model;
use crate::frame::seqlock::Version;
use crate::frame::{FrameState, FREE, ORPHAN, UPTODATE};

const P: u64 = 1;
const Q: u64 = 2;
const P_BYTES: u64 = 10;
const Q_BYTES: u64 = 20;
/// The one frame's slot value (frame id 0, plus one).
const FRAME: u32 = 1;

struct World {
    /// Page table slots of P and Q, and the writer lock.
    p: AtomicU32,
    q: AtomicU32,
    writer: Mutex<()>,
    state: FrameState,
    version: Version,
    lock: FrameLock,
    /// `Frame::mapping` and `Frame::index`, as one page number.
    ident: AtomicU64,
    bytes: AtomicU64,
    /// A second word of P's bytes, for the torn-copy model.
    bytes2: AtomicU64,
    /// Ghost: pins held by a pinner that accepted the frame as P.
    pinned_as_p: StdAtomicUsize,
}

impl World {
    /// Page P resident in the frame, unpinned, clean, unlocked.
    fn new() -> Arc<World> {
        let state = FrameState::new_free();
        state.alloc();
        state.set(UPTODATE);
        state.unpin();
        Arc::new(World {
            p: AtomicU32::new(FRAME),
            q: AtomicU32::new(0),
            writer: Mutex::new(()),
            state,
            version: Version::new(),
            lock: FrameLock::new(),
            ident: AtomicU64::new(P),
            bytes: AtomicU64::new(P_BYTES),
            bytes2: AtomicU64::new(P_BYTES),
            pinned_as_p: StdAtomicUsize::new(0),
        })
    }

    fn lock_write(&self) {
        self.lock.write();
        self.version.begin_write();
    }

    fn unlock_write(&self) {
        self.version.end_write();
        self.lock.unlock_write();
    }

    /// `Mapping::is_page` for P.
    fn is_p(&self) -> bool {
        self.state.load() & (UPTODATE | FREE | ORPHAN) == UPTODATE && self.ident.load(Relaxed) == P
    }

    /// `Mapping::read_unlocked` for P: the bytes, if the copy validated.
    fn read_unlocked(&self) -> Option<u64> {
        if self.p.load(Acquire) != FRAME {
            return None;
        }
        let v = self.version.begin_read()?;
        if !self.is_p() {
            return None;
        }
        let bytes = self.bytes.load(Relaxed);
        self.version.validate(v).then_some(bytes)
    }

    /// `Mapping::find_pin` for P.
    fn find_pin(&self) -> bool {
        if self.p.load(Acquire) != FRAME {
            return false;
        }
        if self.state.try_pin().is_some() {
            if self.p.load(Acquire) == FRAME {
                return true;
            }
            self.state.unpin();
        }
        let _locked = self.writer.lock().unwrap();
        let present = self.p.load(Acquire) == FRAME;
        if present {
            self.state.pin();
        }
        present
    }

    /// `reclaim::direct::try_free` on the frame, then `push_free`.
    fn reclaim(&self) -> bool {
        let freed = {
            let _locked = self.writer.lock().unwrap();
            if self.p.load(Acquire) != FRAME || self.lock.try_write().is_none() {
                return false;
            }
            self.version.begin_write();
            let freed = self.state.try_reclaim();
            if freed {
                assert_eq!(
                    self.pinned_as_p.load(SeqCst),
                    0,
                    "reclaim freed a pinned frame"
                );
                self.p.store(0, Release);
            }
            self.unlock_write();
            freed
        };
        if freed {
            self.version.freed();
        }
        freed
    }

    /// The next owner: `pop_free`, `get_page`'s write lock, `insert` of Q,
    /// the fill, UPTODATE, unlock, unpin.
    fn reuse_for_q(&self) {
        self.state.alloc();
        self.lock_write();
        self.ident.store(Q, Relaxed);
        {
            let _locked = self.writer.lock().unwrap();
            self.q.store(FRAME, Release);
        }
        self.bytes.store(Q_BYTES, Relaxed);
        self.state.set(UPTODATE);
        self.unlock_write();
        self.state.unpin();
    }
}

fn on_thread(w: &Arc<World>, f: impl FnOnce(&World) + Send + 'static) -> thread::JoinHandle<()> {
    let w = w.clone();
    thread::spawn(move || f(&w))
}

fn optimistic_reader(w: &World) {
    if let Some(bytes) = w.read_unlocked() {
        assert_eq!(bytes, P_BYTES, "a validated copy of P read another page");
    }
}

fn pinner(w: &World) {
    if !w.find_pin() {
        return;
    }
    w.pinned_as_p.fetch_add(1, SeqCst);
    assert_eq!(w.ident.load(Relaxed), P, "pinned a frame that is not P");
    // Read under the frame lock, as `read_at`'s pinning path does.
    w.lock.read();
    assert_eq!(w.bytes.load(Relaxed), P_BYTES, "pinned P, read other bytes");
    w.lock.unlock_read();
    w.pinned_as_p.fetch_sub(1, SeqCst);
    w.state.unpin();
}

/// Reclaim and, if it freed the frame, its reuse for Q.
fn reclaim_and_reuse(w: &World) {
    if w.reclaim() {
        w.reuse_for_q();
    }
}

#[test]
fn optimistic_reader_vs_reclaim_and_reuse() {
    model("optimistic reader vs reclaim and reuse", Some(3), || {
        let w = World::new();
        let reader = on_thread(&w, optimistic_reader);
        reclaim_and_reuse(&w);
        reader.join().unwrap();
    });
}

#[test]
fn pinner_vs_reclaim_and_reuse() {
    model("lock-free pin vs reclaim and reuse", Some(3), || {
        let w = World::new();
        let reader = on_thread(&w, pinner);
        reclaim_and_reuse(&w);
        reader.join().unwrap();
        let s = w.state.load();
        assert_eq!(s & crate::frame::PIN_MASK, 0, "a pin leaked: {s:#x}");
    });
}

#[test]
fn pinner_and_optimistic_reader_vs_reclaim_and_reuse() {
    model(
        "pinner and optimistic reader vs reclaim and reuse",
        Some(2),
        || {
            let w = World::new();
            let a = on_thread(&w, pinner);
            let b = on_thread(&w, optimistic_reader);
            reclaim_and_reuse(&w);
            a.join().unwrap();
            b.join().unwrap();
        },
    );
}

/// `filemap::write_at` rewriting P in place (pinned, under the write lock).
fn rewrite(w: &World, value: u64) {
    assert!(w.find_pin());
    w.lock_write();
    w.bytes.store(value, Relaxed);
    w.bytes2.store(value, Relaxed);
    w.unlock_write();
    w.state.unpin();
}

#[test]
fn optimistic_reader_vs_writer_never_torn() {
    model("optimistic reader vs in-place writer", None, || {
        let w = World::new();
        let writer = on_thread(&w, |w| {
            rewrite(w, P_BYTES + 1);
            rewrite(w, P_BYTES + 2);
        });
        if w.p.load(Acquire) == FRAME {
            if let Some(v) = w.version.begin_read() {
                let (a, b) = (w.bytes.load(Relaxed), w.bytes2.load(Relaxed));
                if w.version.validate(v) {
                    assert_eq!(a, b, "a validated copy mixes two writes");
                }
            }
        }
        writer.join().unwrap();
    });
}
