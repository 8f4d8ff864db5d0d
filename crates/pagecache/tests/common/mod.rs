//! A backend that records how it is called, for the invariant tests.
#![allow(dead_code)]

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pagecache::{Backend, MemBackend};

#[derive(Default)]
pub struct Calls {
    /// Reads issued.
    pub reads: AtomicU64,
    /// Vectored writes issued.
    pub writes: AtomicU64,
    /// Writes issued by a thread inside a page allocation.
    pub writes_in_allocation: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Largest single write in bytes.
    pub max_write: AtomicU64,
    /// Delay per write, in microseconds.
    pub write_delay_us: AtomicU64,
    /// Delay per sync, in microseconds.
    pub sync_delay_us: AtomicU64,
    /// Syncs running now.
    pub syncing: AtomicU64,
    /// Writes issued while a sync was running.
    pub writes_during_sync: AtomicU64,
    /// While true, writes block.
    pub gate_closed: Mutex<bool>,
    pub gate: Condvar,
}

/// Wraps a [`MemBackend`]; the test keeps clones of both to inspect.
#[derive(Clone)]
pub struct ProbeBackend {
    pub mem: MemBackend,
    pub calls: Arc<Calls>,
}

impl ProbeBackend {
    pub fn new() -> Self {
        ProbeBackend {
            mem: MemBackend::new(),
            calls: Arc::default(),
        }
    }

    pub fn with_delay(self, d: Duration) -> Self {
        self.calls
            .write_delay_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
        self
    }

    pub fn with_sync_delay(self, d: Duration) -> Self {
        self.calls
            .sync_delay_us
            .store(d.as_micros() as u64, Ordering::Relaxed);
        self
    }

    /// Makes writes block until [`ProbeBackend::open_gate`].
    pub fn close_gate(&self) {
        *self.calls.gate_closed.lock().unwrap() = true;
    }

    pub fn open_gate(&self) {
        *self.calls.gate_closed.lock().unwrap() = false;
        self.calls.gate.notify_all();
    }

    pub fn reads(&self) -> u64 {
        self.calls.reads.load(Ordering::Relaxed)
    }

    pub fn writes(&self) -> u64 {
        self.calls.writes.load(Ordering::Relaxed)
    }

    pub fn writes_in_allocation(&self) -> u64 {
        self.calls.writes_in_allocation.load(Ordering::Relaxed)
    }
}

impl Backend for ProbeBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.calls.reads.fetch_add(1, Ordering::Relaxed);
        self.mem.read_at(buf, offset)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        let c = &self.calls;
        c.writes.fetch_add(1, Ordering::Relaxed);
        if c.syncing.load(Ordering::Acquire) > 0 {
            c.writes_during_sync.fetch_add(1, Ordering::Relaxed);
        }
        if pagecache::stack::in_allocation() {
            c.writes_in_allocation.fetch_add(1, Ordering::Relaxed);
        }
        let mut closed = c.gate_closed.lock().unwrap();
        while *closed {
            closed = c.gate.wait(closed).unwrap();
        }
        drop(closed);
        let delay = c.write_delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let n = self.mem.write_vectored_at(bufs, offset)?;
        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
        c.max_write.fetch_max(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn sync(&self) -> io::Result<()> {
        let c = &self.calls;
        c.syncing.fetch_add(1, Ordering::AcqRel);
        let delay = c.sync_delay_us.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        let r = self.mem.sync();
        c.syncing.fetch_sub(1, Ordering::AcqRel);
        r
    }

    fn len(&self) -> io::Result<u64> {
        self.mem.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.mem.set_len(len)
    }
}

/// Deterministic page content: page `index` at version `v`.
pub fn page_bytes(ps: usize, index: u64, v: u64) -> Vec<u8> {
    xorshift_bytes(
        index.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ v.wrapping_mul(0xd1b5_4a32_d192_ed03) ^ 1,
        ps,
    )
}

/// `len` bytes from a [`Rng`] seeded with `seed`, one byte per step.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A small xorshift for deterministic randomness in tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

/// The page size the fault and durability tests use.
pub const PAGE: usize = 4096;

/// A page of bytes derived from `seed`.
pub fn page(seed: u64) -> Vec<u8> {
    xorshift_bytes(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, PAGE)
}

/// Writes `page(seed ^ i)` at each page `i` of `pages`; returns the bytes.
pub fn write_pages(f: &pagecache::File, seed: u64, pages: std::ops::Range<u64>) -> Vec<u8> {
    let mut all = Vec::new();
    for i in pages {
        let p = page(seed ^ i);
        f.write_at(&p, i * PAGE as u64).unwrap();
        all.extend_from_slice(&p);
    }
    all
}

/// The errno of a failed call (-1 if it carries none), `None` if it worked.
pub fn errno(r: pagecache::Result<()>) -> Option<i32> {
    match r {
        Ok(()) => None,
        Err(e) => Some(e.io_error().and_then(|e| e.raw_os_error()).unwrap_or(-1)),
    }
}

/// Polls `cond` every 5 ms until it holds (`true`) or `limit` passes
/// (`false`): a hang guard, not a timing assertion.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `cond` for up to 30 s and fails the test if it never holds.
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(Duration::from_secs(30), cond),
        "gave up waiting for {what}"
    );
}
