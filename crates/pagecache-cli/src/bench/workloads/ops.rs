//! One operation at a time: timed reads, writes and in-place changes that
//! count refusals for want of a frame, the warm-up and read-back passes, and
//! the checker of what was read.

use std::time::{Duration, Instant};

use crate::bench::block::{self, BLOCK};
use crate::bench::record::RoleRec;
use crate::bench::store::{OpError, Store};
use crate::CliError;

/// One read in this many is checked word by word (the others: header and
/// last word). A whole-block check costs about 0.6 µs, which every 64th
/// read made about 10 ns a read: an eighth of a zero-copy pin but a fiftieth
/// of the kernel's `pread`, so the pins' ratio to the kernel measured the
/// checker too (pins went from 22.2–22.8M/s to 24.7–25.0M/s with every
/// 1024th). Blocks read back after a run are checked whole.
const FULL_EVERY: u64 = 1024;

/// Checks blocks read back, remembering the first difference.
#[derive(Default)]
pub struct Checker {
    pub(super) reads: u64,
    pub failures: u64,
    pub first: Option<String>,
}

impl Checker {
    /// Every read: header and last word; every `FULL_EVERY`th read and
    /// `full`: all words.
    #[inline]
    pub fn check(&mut self, buf: &[u8], tag: u32, b: u64, version: u32, full: bool) {
        self.reads += 1;
        let r = if full || self.reads % FULL_EVERY == 0 {
            block::check_full(buf, tag, b, version)
        } else {
            block::check_light(buf, tag, b, version)
        };
        if let Err(e) = r {
            self.failures += 1;
            self.first.get_or_insert(e);
        }
    }

    /// For zero-copy pins, which copy nothing: the header (one cache line)
    /// on every pin, every word on every `FULL_EVERY`th.
    #[inline]
    pub fn check_pinned(&mut self, page: &[u8], tag: u32, b: u64, version: u32) {
        self.reads += 1;
        let r = if self.reads % FULL_EVERY == 0 {
            block::check_full(page, tag, b, version)
        } else {
            block::check_header(page, tag, b, version)
        };
        if let Err(e) = r {
            self.failures += 1;
            self.first.get_or_insert(e);
        }
    }

    pub(super) fn merge(&mut self, o: Checker) {
        self.reads += o.reads;
        self.failures += o.failures;
        if self.first.is_none() {
            self.first = o.first;
        }
    }
}

/// Runs one operation timed into `rec`, counting it done (`Ok(Some)`) or
/// refused for want of a frame (`Ok(None)`, counted in `oom`).
#[inline]
fn timed<T>(
    rec: &mut RoleRec,
    oom: &mut u64,
    op: impl FnOnce() -> Result<T, OpError>,
) -> Result<Option<T>, CliError> {
    let t = Instant::now();
    let r = op();
    rec.latency(t.elapsed().as_nanos() as u64);
    match r {
        Ok(v) => {
            rec.ops += 1;
            Ok(Some(v))
        }
        Err(OpError::Oom) => {
            *oom += 1;
            Ok(None)
        }
        Err(OpError::Fatal(e)) => Err(e),
    }
}

/// Reads one block, counting OOMs (`Ok(None)`), timing it into `rec`.
#[inline]
pub fn timed_read<S: Store>(
    store: &S,
    rec: &mut RoleRec,
    oom: &mut u64,
    file: usize,
    b: u64,
    buf: &mut [u8],
) -> Result<Option<bool>, CliError> {
    let hit = timed(rec, oom, || store.read(file, b, buf))?;
    if let Some(h) = hit {
        rec.hit(h);
    }
    Ok(hit)
}

/// Writes one block, counting OOMs (`Ok(false)`), timing it into `rec`.
#[inline]
pub fn timed_write<S: Store>(
    store: &S,
    rec: &mut RoleRec,
    oom: &mut u64,
    file: usize,
    b: u64,
    buf: &[u8],
) -> Result<bool, CliError> {
    let (_, m0) = pagecache::thread_hits_misses();
    let done = timed(rec, oom, || store.write(file, b, buf))?.is_some();
    if done && store.write_lookups() {
        let (_, m1) = pagecache::thread_hits_misses();
        rec.hit(m1 == m0);
    }
    Ok(done)
}

/// Changes one block in place through `f`, counting OOMs (`Ok(false)`),
/// timing it into `rec`.
#[inline]
pub fn timed_modify<S: Store>(
    store: &S,
    rec: &mut RoleRec,
    oom: &mut u64,
    file: usize,
    b: u64,
    f: &mut dyn FnMut(&mut [u8]),
) -> Result<bool, CliError> {
    let hit = timed(rec, oom, || store.modify(file, b, f))?;
    if let Some(h) = hit {
        rec.hit(h);
    }
    Ok(hit.is_some())
}

/// Reads every block `0..n` of `file` once, checking each is at version 0
/// (`full`: every word); a read refused for want of a frame is skipped.
pub fn warm<S: Store>(
    store: &S,
    file: usize,
    tag: u32,
    n: u64,
    full: bool,
    check: &mut Checker,
) -> Result<(), CliError> {
    let mut buf = crate::bench::store::AlignedBuf::new(BLOCK);
    for b in 0..n {
        match store.read(file, b, buf.as_mut_slice()) {
            Ok(_) => check.check(buf.as_slice(), tag, b, 0, full),
            Err(OpError::Oom) => {}
            Err(OpError::Fatal(e)) => return Err(e),
        }
    }
    Ok(())
}

/// Reads back `(file, tag, block, version)` after syncing, checking every
/// word; counts OOMs and retries them a few times.
pub fn read_back<S: Store>(
    store: &S,
    sample: &[(usize, u32, u64, u32)],
    check: &mut Checker,
) -> Result<(), CliError> {
    let mut buf = crate::bench::store::AlignedBuf::new(BLOCK);
    for &(file, tag, b, v) in sample {
        let mut tries = 0;
        loop {
            match store.read(file, b, buf.as_mut_slice()) {
                Ok(_) => break,
                Err(OpError::Oom) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(OpError::Oom) => {
                    return Err(CliError::Check(format!(
                        "reading block {b} back after the run kept failing for want of a frame"
                    )))
                }
                Err(OpError::Fatal(e)) => return Err(e),
            }
        }
        check.check(buf.as_slice(), tag, b, v, true);
    }
    Ok(())
}
