//! Hazard slots: how a `page()` hit holds a frame without writing the
//! frame's cache line.
//!
//! A read lock is a read-modify-write of the lock word, twice per hit (take
//! and let go), on a line every thread that touches the page shares. On a
//! shared host those RMWs on lines another core may hold are what slows
//! first: in alternating rounds (`examples/pin_rounds.rs`), random RMWs on
//! such lines ran at half speed for seconds at a time while plain loads of
//! the same lines did not move. So a hit instead names the frame in a line
//! of the calling thread's own (a slot), and the frame's line is only read.
//!
//! The protocol (a Dekker pair, both sides with a `SeqCst` fence between
//! their store and their load):
//!
//! - A **reader** stores `id + 1` in a free slot of its line, fences, then
//!   reads the frame's version: odd means a writer holds the lock, and the
//!   reader clears its slot and takes the lock instead. Even, it checks the
//!   frame's identity as a locked reader would.
//! - A **writer** (anyone taking the frame's lock exclusively: to fill,
//!   write, truncate or free it) makes the version odd, fences, then scans
//!   every thread's line for the frame. `Arena::try_write_frame` gives up if
//!   it finds it; `Arena::write_frame` waits until it is gone.
//!
//! Either the writer's scan sees the reader's slot, or the reader's load
//! sees the odd version: never neither. A reader that sees an even version
//! therefore holds the frame until it clears the slot, as a read lock would.
//!
//! Lines are handed out per thread and per arena, and given back when the
//! thread exits. A thread without a line (all taken) or with all its slots
//! in use takes the lock instead, so the slots are a fast path only.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::sync::{fence, AtomicU64, AtomicUsize};

use super::FrameId;

/// Slots per line: a thread holding more `page()` guards at once takes
/// the lock for the rest.
#[cfg(not(loom))]
const SLOTS: usize = 16;
/// Lines per arena: threads past this many take the lock on every hit.
#[cfg(not(loom))]
const LINES: usize = 256;
// Small under the model checker, whose every atomic is an object it tracks.
#[cfg(loom)]
const SLOTS: usize = 2;
#[cfg(loom)]
const LINES: usize = 2;

/// One thread's slots, each `id + 1` of a frame in the low 32 bits (0:
/// free) and, above, how many more guards of this thread hold it the same
/// way. A line is a cache line or two of its own, so that its stores never
/// move another thread's line. Only the owning thread stores into it.
#[repr(align(64))]
struct Line([AtomicU64; SLOTS]);

/// A slot's frame, if any: `id + 1`.
#[inline]
fn named(v: u64) -> u32 {
    v as u32
}

/// One more guard on a slot's frame.
const ONE_MORE: u64 = 1 << 32;

/// The arena's hazard lines.
pub(crate) struct Hazards {
    lines: Box<[Line]>,
    /// Lines ever handed out: the ones a writer scans.
    used: AtomicUsize,
    /// Lines given back by threads that exited.
    free: parking_lot::Mutex<Vec<usize>>,
}

/// A slot naming a frame, held by a page guard; dropping it lets go.
/// Not `Send`: only the thread that owns the line may change its slots.
pub(crate) struct Hazard<'a> {
    slot: &'a AtomicU64,
    _owner: std::marker::PhantomData<*const ()>,
}

impl<'a> Hazard<'a> {
    fn new(slot: &'a AtomicU64) -> Self {
        Hazard {
            slot,
            _owner: std::marker::PhantomData,
        }
    }
}

impl Drop for Hazard<'_> {
    /// Writers stop seeing the frame as held once its last guard of this
    /// thread lets go. `Release`: the guards' reads of the bytes happen
    /// before a writer that sees the slot clear changes them.
    #[inline]
    fn drop(&mut self) {
        let v = self.slot.load(Ordering::Relaxed);
        if v >= ONE_MORE {
            self.slot.store(v - ONE_MORE, Ordering::Relaxed);
        } else {
            self.slot.store(0, Ordering::Release);
        }
    }
}

/// A line this thread holds in one arena; given back when the thread exits.
struct Claim {
    hazards: Weak<Hazards>,
    line: usize,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(h) = self.hazards.upgrade() {
            h.free.lock().push(self.line);
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static CLAIMS: std::cell::RefCell<Vec<Claim>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(loom)]
loom::thread_local! {
    static CLAIMS: std::cell::RefCell<Vec<Claim>> = std::cell::RefCell::new(Vec::new());
}

impl Hazards {
    pub(crate) fn new() -> Arc<Self> {
        Self::with_lines(LINES)
    }

    fn with_lines(lines: usize) -> Arc<Self> {
        Arc::new(Hazards {
            lines: (0..lines)
                .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            used: AtomicUsize::new(0),
            free: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// This thread's line, claimed on first use if `claim`; `None` if it
    /// has none (or none is left, or the thread is exiting).
    #[inline]
    fn line(self: &Arc<Self>, claim: bool) -> Option<&Line> {
        let at = CLAIMS
            .try_with(|c| {
                let mut c = c.borrow_mut();
                let me = Arc::as_ptr(self);
                if let Some(k) = c.iter().find(|k| std::ptr::eq(k.hazards.as_ptr(), me)) {
                    return Some(k.line);
                }
                if !claim {
                    return None;
                }
                // Claims of arenas that are gone are dropped on the way.
                c.retain(|k| k.hazards.strong_count() > 0);
                let line = self.claim()?;
                c.push(Claim {
                    hazards: Arc::downgrade(self),
                    line,
                });
                Some(line)
            })
            .ok()
            .flatten()?;
        self.lines.get(at)
    }

    fn claim(&self) -> Option<usize> {
        if let Some(line) = self.free.lock().pop() {
            return Some(line);
        }
        let n = self.used.fetch_add(1, Ordering::Relaxed);
        if n < self.lines.len() {
            return Some(n);
        }
        self.used.fetch_sub(1, Ordering::Relaxed);
        None
    }

    /// Holds frame `id` by this thread's line: one more hold on a slot that
    /// names it already (`false`: a guard of this thread holds it, so no
    /// writer can be inside), or a free slot newly naming it, followed by a
    /// fence (`true`: the caller must then read the frame's version, which
    /// the fence orders after the store, and let go if a writer holds it).
    /// `None` if this thread has no line or no free slot.
    #[inline]
    pub(crate) fn hold(self: &Arc<Self>, id: FrameId) -> Option<(Hazard<'_>, bool)> {
        let line = self.line(true)?;
        let want = id + 1;
        let mut free = None;
        for s in &line.0 {
            // Only this thread stores into its line: what it reads here
            // stays so until it stores.
            let v = s.load(Ordering::Relaxed);
            if named(v) == want {
                s.store(v + ONE_MORE, Ordering::Relaxed);
                return Some((Hazard::new(s), false));
            }
            if v == 0 && free.is_none() {
                free = Some(s);
            }
        }
        let slot = free?;
        slot.store(u64::from(want), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        Some((Hazard::new(slot), true))
    }

    /// One more hold on frame `id` if a guard of this thread holds it by a
    /// slot already: no writer can be inside the frame then, so no check is
    /// needed. This is how a thread takes a page it holds again without
    /// the lock, which a writer waiting for that slot holds.
    #[inline]
    pub(crate) fn reenter(self: &Arc<Self>, id: FrameId) -> Option<Hazard<'_>> {
        // A thread without a line holds nothing by one: it takes none here.
        let line = self.line(false)?;
        let want = id + 1;
        let slot = line
            .0
            .iter()
            .find(|s| named(s.load(Ordering::Relaxed)) == want)?;
        slot.store(slot.load(Ordering::Relaxed) + ONE_MORE, Ordering::Relaxed);
        Some(Hazard::new(slot))
    }

    /// Whether any thread names frame `id`. The caller has made the frame's
    /// version odd (it holds the write lock); the fence orders that before
    /// the scan. `Acquire`: a slot read as clear orders the reads its guard
    /// made before the caller's writes.
    pub(crate) fn held(&self, id: FrameId) -> bool {
        fence(Ordering::SeqCst);
        let want = id + 1;
        let used = self.used.load(Ordering::Acquire).min(self.lines.len());
        self.lines[..used]
            .iter()
            .any(|l| l.0.iter().any(|s| named(s.load(Ordering::Acquire)) == want))
    }

    /// Returns once no thread names frame `id`. A guard may be held for
    /// long (it is the user's), so the wait spins briefly, then yields,
    /// then sleeps up to a millisecond at a time.
    pub(crate) fn wait_released(&self, id: FrameId) {
        let mut round = 0u32;
        while self.held(id) {
            match round {
                0..64 => std::hint::spin_loop(),
                64..128 => std::thread::yield_now(),
                _ => std::thread::sleep(std::time::Duration::from_micros(
                    (1u64 << (round - 128).min(10)).min(1000),
                )),
            }
            round = round.saturating_add(1);
        }
    }

    /// Every frame some thread names now (a snapshot, for the rare
    /// out-of-memory decision).
    pub(crate) fn all_held(&self) -> Vec<FrameId> {
        let used = self.used.load(Ordering::Acquire).min(self.lines.len());
        self.lines[..used]
            .iter()
            .flat_map(|l| l.0.iter().map(|s| named(s.load(Ordering::Acquire))))
            .filter(|&v| v != 0)
            .map(|v| v - 1)
            .collect()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    impl Hazards {
        /// A new slot for `id`, asserting it is new.
        fn publish_fresh(self: &Arc<Self>, id: FrameId) -> Option<Hazard<'_>> {
            let line = self.line(true)?;
            let slot = line.0.iter().find(|s| s.load(Ordering::Relaxed) == 0)?;
            slot.store(u64::from(id) + 1, Ordering::Relaxed);
            Some(Hazard::new(slot))
        }
    }

    #[test]
    fn holding_again_counts_on_the_same_slot() {
        let h = Hazards::new();
        let (a, fresh) = h.hold(5).expect("a slot");
        assert!(fresh);
        let (b, fresh) = h.hold(5).expect("the same slot");
        assert!(!fresh, "this thread holds it already");
        assert_eq!(h.all_held(), vec![5]);
        drop(a);
        assert!(h.held(5));
        drop(b);
        assert!(!h.held(5));
    }

    #[test]
    fn a_published_frame_is_held_until_released() {
        let h = Hazards::new();
        assert!(!h.held(7));
        let a = h.publish_fresh(7).expect("a slot");
        let b = h.publish_fresh(7).expect("a second slot");
        assert!(h.held(7));
        assert!(!h.held(8));
        drop(a);
        assert!(h.held(7), "the second guard still names it");
        drop(b);
        assert!(!h.held(7));
    }

    #[test]
    fn slots_run_out_per_thread_and_come_back() {
        let h = Hazards::new();
        let held: Vec<_> = (0..SLOTS as FrameId)
            .map(|id| h.publish_fresh(id).expect("a slot"))
            .collect();
        assert!(h.publish_fresh(99).is_none(), "a thread has {SLOTS} slots");
        let mut all = h.all_held();
        all.sort_unstable();
        assert_eq!(all, (0..SLOTS as FrameId).collect::<Vec<_>>());
        drop(held);
        assert!(h.publish_fresh(99).is_some());
    }

    #[test]
    fn other_threads_slots_are_seen_and_lines_are_reused_after_exit() {
        let h = Hazards::with_lines(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let slot = h.publish_fresh(3).expect("a line");
                assert!(h.held(3));
                drop(slot);
            });
        });
        // The first thread's line went back when it exited: two more
        // threads, one after the other, reuse it.
        for _ in 0..2 {
            std::thread::scope(|s| {
                s.spawn(|| assert!(h.publish_fresh(4).is_some()));
            });
        }
        let mine = h.publish_fresh(5).expect("a line for this thread");
        std::thread::scope(|s| {
            s.spawn(|| {
                // This test thread took the freed line; this one the other.
                assert!(h.publish_fresh(6).is_some());
                assert!(h.held(5), "another thread's slot is seen");
            });
        });
        drop(mine);
        assert!(h.used.load(Ordering::Relaxed) <= 2);
    }

    #[test]
    fn with_no_line_left_a_thread_gets_no_slot() {
        let h = Hazards::with_lines(1);
        let mine = h.publish_fresh(1).expect("the only line");
        std::thread::scope(|s| {
            s.spawn(|| assert!(h.publish_fresh(2).is_none(), "no line left"));
        });
        drop(mine);
    }

    #[test]
    fn reentering_counts_and_needs_a_slot_already_held() {
        let h = Hazards::new();
        assert!(h.reenter(9).is_none(), "nothing held yet");
        let outer = h.publish_fresh(9).expect("a slot");
        let inner = h.reenter(9).expect("held by this thread");
        let third = h.reenter(9).expect("again");
        assert_eq!(h.all_held(), vec![9], "one slot, counted");
        drop(outer);
        drop(third);
        assert!(h.held(9), "the last guard still holds it");
        drop(inner);
        assert!(!h.held(9));
        // A thread that holds nothing by a slot takes no line to find out.
        std::thread::scope(|s| {
            s.spawn(|| {
                let before = h.used.load(Ordering::Relaxed);
                assert!(h.reenter(9).is_none());
                assert_eq!(h.used.load(Ordering::Relaxed), before);
            });
        });
        // Another thread's slot is not this thread's to reenter.
        let other = h.publish_fresh(4).expect("a slot");
        std::thread::scope(|s| {
            s.spawn(|| assert!(h.reenter(4).is_none()));
        });
        drop(other);
    }
}
