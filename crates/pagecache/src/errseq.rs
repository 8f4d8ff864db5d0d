//! Writeback error sequence, after the kernel's `errseq_t`.
//!
//! One `u64` per mapping: the last error's errno in the low 16 bits, a SEEN
//! bit, and a counter above. Recording an error bumps the counter only if the
//! previous one was seen, so errors nobody looked at yet are not multiplied.
//! Each handle keeps the value it last saw; `check` reports an error once per
//! handle, and a handle opened after an unseen error still gets it.

use std::sync::atomic::{AtomicU64, Ordering};

const ERRNO_MASK: u64 = 0xffff;
const SEEN: u64 = 1 << 16;
const ONE: u64 = 1 << 17;

/// A mapping's error sequence.
#[derive(Default, Debug)]
pub(crate) struct ErrSeq(AtomicU64);

/// A handle's cursor into an [`ErrSeq`].
pub(crate) type ErrSeqSince = u64;

impl ErrSeq {
    /// Records a writeback error (errno must be non-zero).
    pub(crate) fn set(&self, errno: i32) {
        let errno = (errno as u64 & ERRNO_MASK).max(1);
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let counter = cur & !(ERRNO_MASK | SEEN);
            // A seen error is history: count a new one. An unseen one is
            // replaced in place so every handle still reports it once.
            let counter = if cur & SEEN != 0 || cur == 0 {
                counter + ONE
            } else {
                counter
            };
            let new = counter | errno;
            match self
                .0
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// The cursor for a newly opened handle: an error nobody has seen yet is
    /// still reported to it.
    pub(crate) fn sample(&self) -> ErrSeqSince {
        let cur = self.0.load(Ordering::Acquire);
        if cur & SEEN == 0 && cur & ERRNO_MASK != 0 {
            0
        } else {
            cur & !SEEN
        }
    }

    /// Reports the errno recorded since `since`, at most once, and advances it.
    pub(crate) fn check_and_advance(&self, since: &mut ErrSeqSince) -> Option<i32> {
        let cur = self.0.load(Ordering::Acquire);
        if cur & !SEEN == *since {
            return None;
        }
        if cur & SEEN == 0 {
            // Mark seen so the next error bumps the counter. Losing this race
            // to a concurrent `set` only means the counter is not bumped.
            let _ = self
                .0
                .compare_exchange(cur, cur | SEEN, Ordering::AcqRel, Ordering::Acquire);
        }
        *since = cur & !SEEN;
        Some((cur & ERRNO_MASK) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cursor_sees_an_error_once() {
        let e = ErrSeq::default();
        let mut a = e.sample();
        let mut b = e.sample();
        assert_eq!(e.check_and_advance(&mut a), None);
        e.set(5);
        assert_eq!(e.check_and_advance(&mut a), Some(5));
        assert_eq!(e.check_and_advance(&mut a), None);
        assert_eq!(e.check_and_advance(&mut b), Some(5));
        assert_eq!(e.check_and_advance(&mut b), None);
    }

    #[test]
    fn late_opener_sees_unseen_error_but_not_seen_one() {
        let e = ErrSeq::default();
        e.set(28);
        let mut late = e.sample();
        assert_eq!(e.check_and_advance(&mut late), Some(28));
        let mut later = e.sample();
        assert_eq!(e.check_and_advance(&mut later), None);
    }

    #[test]
    fn a_second_error_after_seen_is_reported_again() {
        let e = ErrSeq::default();
        let mut a = e.sample();
        e.set(5);
        assert_eq!(e.check_and_advance(&mut a), Some(5));
        e.set(5);
        assert_eq!(e.check_and_advance(&mut a), Some(5));
    }
}
