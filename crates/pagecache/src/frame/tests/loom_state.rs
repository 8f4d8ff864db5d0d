//! Pins, the dirty bit and orphans: a frame is never freed while pinned,
//! never freed or reused while under writeback, a dirty bit is never lost
//! (bytes that differ from what the backend was written stay DIRTY, whether
//! the writeback succeeded, failed, or raced a writer), and an orphan is
//! freed exactly once.

use super::model;
use super::page::{on_thread, Page};
use crate::frame::{DIRTY, FREE, PIN_MASK, UPTODATE};

#[test]
fn never_freed_while_pinned() {
    model("pin vs reclaim", None, || {
        let p = Page::new(UPTODATE, 1, 1, 1);
        let reader = on_thread(&p, |p| {
            if p.find_pin() {
                let s = p.state.load();
                assert!(s & FREE == 0 && s & PIN_MASK >= 1, "pinned but {s:#x}");
                p.unpin();
            }
        });
        let freed = p.try_free();
        reader.join().unwrap();
        if freed {
            assert_eq!(p.state.load(), FREE);
        }
        assert!(p.frees() <= 1);
    });
}

#[test]
fn two_pinners_and_reclaim() {
    model("two pinners vs reclaim", Some(3), || {
        let p = Page::new(UPTODATE, 1, 1, 1);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                on_thread(&p, |p| {
                    if p.find_pin() {
                        assert_eq!(p.state.load() & FREE, 0);
                        p.unpin();
                    }
                })
            })
            .collect();
        p.try_free();
        for r in readers {
            r.join().unwrap();
        }
        assert!(p.frees() <= 1);
        let s = p.state.load();
        assert!(s == FREE || s & PIN_MASK == 0, "{s:#x}");
    });
}

#[test]
fn dirty_bit_survives_a_write_racing_writeback() {
    for io_ok in [true, false] {
        let name = if io_ok {
            "write vs writeback (I/O ok)"
        } else {
            "write vs writeback (I/O fails)"
        };
        model(name, None, move || {
            // Dirty: bytes 1 in memory, 0 on the backend.
            let p = Page::new(UPTODATE | DIRTY, 1, 0, 0);
            let writer = on_thread(&p, |p| p.write(2));
            p.writeback(io_ok);
            writer.join().unwrap();
            p.check_durable();
            if !io_ok {
                let s = p.state.load();
                assert!(s & DIRTY != 0, "a failed writeback left it clean: {s:#x}");
            }
            p.drain();
        });
    }
}

#[test]
fn never_freed_or_reused_under_writeback() {
    for io_ok in [true, false] {
        let name = if io_ok {
            "write vs writeback vs reclaim (I/O ok)"
        } else {
            "write vs writeback vs reclaim (I/O fails)"
        };
        model(name, Some(3), move || {
            // Clean: the same bytes in memory and on the backend.
            let p = Page::new(UPTODATE, 1, 1, 1);
            let writer = on_thread(&p, |p| p.write_at(2));
            let flusher = on_thread(&p, move |p| p.writeback(io_ok));
            // reclaim::direct::shrink; a frame it frees is reused at once by
            // another page, whose read-in fills it under its write lock: a
            // free under writeback would race the I/O reading the bytes.
            if p.shrink() {
                p.state.alloc();
                p.lock.write();
                p.set_bytes(9);
                p.lock.unlock_write();
            }
            writer.join().unwrap();
            flusher.join().unwrap();
            assert!(p.frees() <= 1);
            if p.frees() == 0 {
                p.check_durable();
                p.drain();
            }
        });
    }
}

#[test]
fn orphan_freed_exactly_once() {
    model("truncate vs unpin vs writeback end", Some(3), || {
        // Pinned once, under writeback.
        let p = Page::new(UPTODATE | DIRTY, 1, 0, 0);
        p.state.pin();
        assert!(p.start_writeback());
        let unpinner = on_thread(&p, |p| p.unpin());
        let io = on_thread(&p, |p| p.finish_writeback(true));
        p.truncate();
        unpinner.join().unwrap();
        io.join().unwrap();
        assert_eq!(p.frees(), 1, "an orphan is freed exactly once");
        assert_eq!(p.state.load(), FREE);
    });
}
