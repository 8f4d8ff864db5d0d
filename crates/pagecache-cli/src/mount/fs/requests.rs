//! Counts of the data requests the kernel sent, shown with the cache's
//! counters: their average size says whether the kernel sends writes of
//! `max_write` (1 MiB) or splits them into pages, which decides how many
//! round trips a stream costs.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Reads and writes served, and their bytes.
#[derive(Default)]
pub struct Requests {
    reads: AtomicU64,
    read_bytes: AtomicU64,
    writes: AtomicU64,
    write_bytes: AtomicU64,
}

impl Requests {
    pub fn read(&self, bytes: usize) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.read_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn write(&self, bytes: usize) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The counters as `name value` lines.
    pub fn write_lines(&self, text: &mut String) {
        for (name, v) in [
            ("mount_read_requests", &self.reads),
            ("mount_read_request_bytes", &self.read_bytes),
            ("mount_write_requests", &self.writes),
            ("mount_write_request_bytes", &self.write_bytes),
        ] {
            let _ = writeln!(text, "{name} {}", v.load(Ordering::Relaxed));
        }
    }
}
