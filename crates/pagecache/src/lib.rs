//! A page cache whose direct reclaim never writes.
//!
//! `pagecache` holds file pages in a fixed memory budget. A thread that needs
//! a frame takes a clean one or waits for the background flushers, which
//! write dirty pages in large, sorted, coalesced batches — the design the
//! Linux kernel converged on after the 2010 "Do not call ->writepage from
//! direct reclaim" debate. See `docs/design.md` for the invariants.
//!
//! ```
//! use pagecache::{Config, PageCache, Policy};
//! # fn main() -> Result<(), pagecache::Error> {
//! let cache = PageCache::new(Config::new(4 << 20).policy(Policy::Offload))?;
//! let file = cache.open_backend(pagecache::MemBackend::new())?;
//! {
//!     let mut page = file.page_mut(0)?; // zero-copy, pinned, dirty
//!     page[..5].copy_from_slice(b"hello");
//! }
//! assert_eq!(&file.page(0)?[..5], b"hello");
//! file.sync()?;
//! println!("{}", cache.stats());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]
// Pedantic on the library itself; unit tests compare exact values and
// sleep in plain statements, which the group flags for no gain.
#![cfg_attr(not(test), warn(clippy::pedantic))]
// Pedantic lints not followed, each for a reason:
#![allow(
    // Queries and getters are cheap and an ignored result is harmless;
    // builder setters, where dropping the result is a bug, are #[must_use].
    clippy::must_use_candidate,
    // Bounded by validation: frames <= u32::MAX / 2 (`Config`), offsets <=
    // i64::MAX (`MAX_FILE_SIZE`), nanosecond durations < 584 years, errno
    // and statx fields small and positive.
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    // Rates, ratios and gauges tolerate rounding.
    clippy::cast_precision_loss,
    // A `match` with both arms spelled out reads better than `if let …
    // else` when both arms are long; the error case first reads better.
    clippy::single_match_else,
    clippy::if_not_else,
    // A constant or `use` next to its one use beats one far above it.
    clippy::items_after_statements,
    // `OpenOptions` mirrors `std::fs::OpenOptions`, a set of flags.
    clippy::struct_excessive_bools
)]

mod advise;
pub mod backend;
mod cache;
mod config;
mod cursor;
mod error;
mod errseq;
mod file;
mod filemap;
mod frame;
mod guard;
mod io;
mod lru;
mod mapping;
mod open_options;
mod pagetable;
mod publish;
mod readahead;
mod reclaim;
mod resize;
mod sched;
pub mod stack;
mod state;
mod stats;
mod sync;
mod throttle;
mod trace;
mod truncate;
mod wait;
mod writeback;

pub use advise::Advice;
pub use backend::{Backend, Fault, FaultBackend, FaultStats, FileBackend, MemBackend};
pub use cache::PageCache;
pub use config::{
    Config, Policy, Watermarks, DEFAULT_READAHEAD_MAX, MAX_READAHEAD_MAX, MIN_FRAMES,
};
pub use cursor::Cursor;
pub use error::{Error, Result};
pub use file::File;
pub use guard::{PageReadGuard, PageWriteGuard};
pub use open_options::OpenOptions;
pub use stats::{thread_hits_misses, thread_stats, Events, Stats, ThreadStats};
pub use writeback::io::IoEngine;

// The README's Rust examples run as doc-tests, so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
