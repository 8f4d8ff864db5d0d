//! How deep the allocation path goes into the stack.
//!
//! The 2010 argument against writing from direct reclaim was stack depth: the
//! allocating thread may already be deep in its own stack when reclaim splices
//! a whole filesystem write path on top. We measure it: the stack pointer at
//! allocation entry minus the lowest stack pointer seen by [`probe`] while that
//! allocation runs. Reclaim and the built-in backends' write paths call
//! `probe`; a user backend may call it too.

use crate::stats::Counter;
use std::cell::Cell;

thread_local! {
    /// Stack pointer at entry of the outermost allocation, or 0 outside one.
    static ENTRY_SP: Cell<usize> = const { Cell::new(0) };
    /// Lowest stack pointer probed during the current allocation.
    static LOW_SP: Cell<usize> = const { Cell::new(usize::MAX) };
}

// Always inlined: it must read the stack pointer of the caller's frame.
#[allow(clippy::inline_always)]
#[inline(always)]
fn current_sp() -> usize {
    let marker = 0u8;
    std::hint::black_box(std::ptr::addr_of!(marker)) as usize
}

/// Whether the calling thread is inside a page allocation (direct reclaim
/// included). A test backend uses this to prove that allocating threads never
/// write.
pub fn in_allocation() -> bool {
    ENTRY_SP.with(|s| s.get() != 0)
}

/// Records the current stack depth if the calling thread is allocating.
#[inline(never)]
pub fn probe() {
    let sp = current_sp();
    ENTRY_SP.with(|e| {
        if e.get() != 0 {
            LOW_SP.with(|l| l.set(l.get().min(sp)));
        }
    });
}

/// Marks the extent of one allocation; on drop folds its depth into `peak`.
pub(crate) struct AllocScope<'a> {
    peak: &'a Counter,
    outer: bool,
}

impl<'a> AllocScope<'a> {
    #[inline(never)]
    pub(crate) fn enter(peak: &'a Counter) -> Self {
        let sp = current_sp();
        let outer = ENTRY_SP.with(|e| {
            if e.get() == 0 {
                e.set(sp);
                LOW_SP.with(|l| l.set(sp));
                true
            } else {
                false
            }
        });
        AllocScope { peak, outer }
    }
}

impl Drop for AllocScope<'_> {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let entry = ENTRY_SP.with(|e| e.replace(0));
        let low = LOW_SP.with(|l| l.replace(usize::MAX));
        let depth = entry.saturating_sub(low) as u64;
        self.peak.max(depth);
    }
}
