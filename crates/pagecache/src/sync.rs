//! Atomics used by the frame state machine and the frame version, swapped
//! for loom's under `--cfg loom` so the model checker can explore every
//! interleaving.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, AtomicUsize};
