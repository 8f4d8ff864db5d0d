//! Lock-only readers (`Mapping::find_read`), which find the page without a
//! lock and may lock a frame already taken out: a frame is never freed
//! while a reader that took its lock without a pin and accepted it holds
//! it, whether reclaim (`try_free`) or truncation (`try_free_orphan`) frees
//! it, both taking the frame lock exclusively without waiting; and an
//! orphan is freed exactly once and never leaked, though reader and
//! truncation may each miss the other.

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::SeqCst;

use super::model;
use super::page::{on_thread, Page};
use crate::frame::{FREE, UPTODATE};

/// A reader as `filemap::read_at` does it on a hit: copy under the lock,
/// let go. Returns whether its `release_read` freed the frame.
fn read_hit(p: &Page) -> bool {
    if !p.find_read() {
        return false;
    }
    assert_eq!(p.bytes(), 1, "a lock-only reader saw another page's bytes");
    assert_eq!(
        p.state.load() & FREE,
        0,
        "a lock-only reader holds a free frame"
    );
    p.release_read()
}

#[test]
fn lock_only_readers_vs_reclaim() {
    for readers in [1, 2] {
        let name = if readers == 1 {
            "lock-only reader vs reclaim"
        } else {
            "two lock-only readers vs reclaim"
        };
        let bound = if readers == 1 { None } else { Some(3) };
        model(name, bound, move || {
            let p = Page::new(UPTODATE, 1, 1, 1);
            let threads: Vec<_> = (0..readers)
                .map(|_| on_thread(&p, |p| assert!(!read_hit(p))))
                .collect();
            if p.try_free() {
                // The next owner fills the frame at once, without its lock:
                // stricter than `get_page`, which write-locks it first, so
                // every reader's copy must happen before the free itself.
                p.set_bytes(2);
            }
            for t in threads {
                t.join().unwrap();
            }
            assert!(p.frees() <= 1);
            p.check_not_freed_under_reader();
        });
    }
}

/// Executions of the truncation model in which the reader, the truncation
/// and the later reclaim sweep freed the orphan.
static FREED_BY: [StdAtomicUsize; 3] = [
    StdAtomicUsize::new(0),
    StdAtomicUsize::new(0),
    StdAtomicUsize::new(0),
];

#[test]
fn lock_only_reader_vs_truncation() {
    // Bounded: with the slot read without a lock, the unbounded space is
    // far larger than the other models'.
    model(
        "lock-only reader vs truncation, then a reclaim sweep",
        Some(3),
        || {
            let p = Page::new(UPTODATE, 1, 1, 1);
            let reader = on_thread(&p, read_hit);
            let by_truncation = p.truncate();
            if by_truncation {
                // The next owner fills the frame under its write lock
                // (`get_page`), which orders the fill after any reader's
                // copy. Then the frame goes back to the free list.
                p.state.alloc();
                p.lock.write();
                p.set_bytes(2);
                p.lock.unlock_write();
                p.state.release_unused();
            }
            let by_reader = reader.join().unwrap();
            // reclaim::direct::shrink meets the orphan on the inactive list.
            let by_sweep = p.shrink();
            let who = [by_reader, by_truncation, by_sweep];
            assert_eq!(p.frees(), 1, "freed {} times ({who:?})", p.frees());
            assert_eq!(p.state.load(), FREE, "leaked");
            p.check_not_freed_under_reader();
            for (n, by) in FREED_BY.iter().zip(who) {
                if by {
                    n.fetch_add(1, SeqCst);
                }
            }
        },
    );
    let [reader, truncation, sweep] = FREED_BY.each_ref().map(|n| n.load(SeqCst));
    println!("loom: freed by the reader {reader}, the truncation {truncation}, the sweep {sweep}");
    // Each path is reached, including the one where reader and truncation
    // both missed the other and only the sweep frees the orphan.
    assert!(reader > 0 && truncation > 0 && sweep > 0);
}
