//! Hazard slots (`frame/hazard.rs`): a `page()` hit holds a frame by naming
//! it in a line of its own thread, and a writer scans for it after making
//! the frame's version odd. Checks that a reader that saw an even version
//! after naming the frame, and a writer that found no slot naming it, are
//! never both inside the frame: the page's bytes are a `loom` cell, so an
//! overlap of the reader's read and the writer's write is a data race that
//! loom reports. Both the writer that gives up (`try_write_frame`) and the
//! one that waits (`write_frame`) are modelled, against one reader and
//! against a reader that holds the frame again (`reenter`) before letting
//! go of its first hold.
//!
//! The real code under test: `Hazards` (hold, reenter, held, the slots'
//! drop) and `Version`. Modelled: the frame lock's exclusion between
//! writers (one writer here).

use loom::cell::UnsafeCell;
use loom::thread;
use std::sync::Arc;

use super::model;
use crate::frame::hazard::Hazards;
use crate::frame::seqlock::Version;

const FRAME: u32 = 0;

struct Frame {
    version: Version,
    bytes: UnsafeCell<u64>,
}

/// A reader's hit: name the frame, then read the version; read the bytes
/// only if no writer holds the frame.
fn reader(h: &Arc<Hazards>, f: &Frame, again: bool) -> Option<u64> {
    let (hold, fresh) = h.hold(FRAME)?;
    assert!(fresh, "nothing held before");
    f.version.begin_read()?;
    // SAFETY (model): the slot keeps writers out until it is dropped.
    let first = f.bytes.with(|b| unsafe { *b });
    if again {
        let inner = h.reenter(FRAME).expect("held by this thread");
        drop(hold);
        let second = f.bytes.with(|b| unsafe { *b });
        assert_eq!(first, second, "the bytes changed under a hold");
        drop(inner);
    } else {
        drop(hold);
    }
    Some(first)
}

/// A writer: version odd, then the scan; in the frame only if no slot
/// names it. `wait`: spin (with loom's yield) until none does, as
/// `write_frame`; else give up, as `try_write_frame`.
fn writer(h: &Hazards, f: &Frame, wait: bool) -> bool {
    f.version.begin_write();
    while h.held(FRAME) {
        if !wait {
            f.version.end_write();
            return false;
        }
        thread::yield_now();
    }
    // SAFETY (model): no reader holds the frame (the property checked).
    f.bytes.with_mut(|b| unsafe { *b += 1 });
    f.version.end_write();
    true
}

fn run(name: &str, wait: bool, again: bool) {
    model(name, None, move || {
        let h = Hazards::new();
        let f = Arc::new(Frame {
            version: Version::new(),
            bytes: UnsafeCell::new(0),
        });
        let (h2, f2) = (h.clone(), f.clone());
        let r = thread::spawn(move || reader(&h2, &f2, again));
        let wrote = writer(&h, &f, wait);
        let seen = r.join().unwrap();
        if wait {
            assert!(wrote);
        }
        if let Some(v) = seen {
            assert!(v <= 1);
        }
    });
}

#[test]
fn hazard_reader_vs_giving_up_writer() {
    run("hazard reader vs try_write_frame", false, false);
}

#[test]
fn hazard_reader_vs_waiting_writer() {
    run("hazard reader vs write_frame", true, false);
}

#[test]
fn reentering_hazard_reader_vs_waiting_writer() {
    run("reentering hazard reader vs write_frame", true, true);
}
