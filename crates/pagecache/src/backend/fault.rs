//! A fault-injecting backend for tests: EIO, ENOSPC, short writes, delays,
//! stalled writes and power cuts, over an in-memory written-vs-durable model.
//!
//! The backend keeps two images, like redb's crash-testing backends:
//! `written` (what reads see: every write so far) and `durable` (the image as
//! of the last successful [`Backend::sync`]). [`FaultBackend::power_cut`]
//! throws away everything written since the last sync — the written image
//! becomes the durable one — and, until [`FaultBackend::reboot`], every call
//! fails with EIO, as a machine without power would.
//!
//! Clones share everything, so a test keeps one clone to steer and inspect
//! the backend while the cache owns another.
//!
//! ```
//! use pagecache::{Config, FaultBackend, PageCache};
//! # fn main() -> Result<(), pagecache::Error> {
//! let cache = PageCache::new(Config::new(1 << 20))?;
//! let disk = FaultBackend::new();
//! let file = cache.open_backend(disk.clone())?;
//! file.write_at(b"kept", 0)?;
//! file.sync()?;
//! disk.fail_writes(1, FaultBackend::EIO);
//! file.write_at(b"lost", 0)?;
//! assert!(file.sync().is_err()); // the write failed: reported once
//! disk.power_cut();
//! assert_eq!(&disk.durable()[..4], b"kept");
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Backend;

/// What happens to one write call, in a [`FaultBackend::schedule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The write goes through.
    Pass,
    /// The write fails with this errno; nothing is written.
    Errno(i32),
    /// Only the first half of the bytes (at least one) is written.
    Short,
    /// The write goes through after this long.
    Delay(Duration),
}

/// How many faults of each kind were injected, and calls seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// `write_vectored_at` calls.
    pub writes: u64,
    /// Bytes written (accepted into the written image).
    pub bytes_written: u64,
    /// `sync` calls that succeeded.
    pub syncs: u64,
    /// Write calls failed with EIO.
    pub eio: u64,
    /// Write calls failed with ENOSPC.
    pub enospc: u64,
    /// Write calls failed with another errno.
    pub other_errors: u64,
    /// Short writes returned.
    pub short_writes: u64,
    /// Calls delayed.
    pub delays: u64,
    /// Sync calls failed.
    pub failed_syncs: u64,
    /// Read calls failed.
    pub failed_reads: u64,
    /// Power cuts.
    pub power_cuts: u64,
    /// Calls refused because the power was off.
    pub refused_while_off: u64,
}

impl FaultStats {
    /// All faults injected: failed writes, short writes, delays, failed syncs and reads.
    pub fn faults(&self) -> u64 {
        self.eio
            + self.enospc
            + self.other_errors
            + self.short_writes
            + self.delays
            + self.failed_syncs
            + self.failed_reads
    }
}

#[derive(Default)]
struct State {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Per-write-call faults, consumed front first.
    schedule: VecDeque<Fault>,
    /// Fail writes with this errno while set (e.g. ENOSPC: the disk is full).
    failing: Option<i32>,
    fail_syncs: u64,
    sync_errno: i32,
    /// A failed sync keeps the writes since the last good one (a kinder
    /// world than Linux gives; off by default).
    keep_on_failed_sync: bool,
    fail_reads: u64,
    read_errno: i32,
    write_delay: Duration,
    read_delay: Duration,
    /// Random faults: (xorshift state, one in `n` writes gets a fault).
    random: Option<(u64, u32)>,
    /// Disk size: writes and extensions past it fail with ENOSPC.
    capacity: usize,
    held: bool,
    blocked: u64,
    off: bool,
    stats: FaultStats,
}

struct Shared {
    state: Mutex<State>,
    released: Condvar,
}

/// A backend that injects faults on command. See the module docs.
#[derive(Clone)]
pub struct FaultBackend {
    shared: Arc<Shared>,
}

impl Default for FaultBackend {
    fn default() -> Self {
        Self::with_contents(Vec::new())
    }
}

impl std::fmt::Debug for FaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.state.lock();
        f.debug_struct("FaultBackend")
            .field("written_len", &s.written.len())
            .field("durable_len", &s.durable.len())
            .field("stats", &s.stats)
            .finish()
    }
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl FaultBackend {
    /// errno for an I/O error.
    pub const EIO: i32 = 5;
    /// errno for "no space left on device".
    pub const ENOSPC: i32 = 28;

    /// Disk size of a new backend: 1 GiB.
    pub const DEFAULT_CAPACITY: usize = 1 << 30;

    /// An empty backend, nothing scheduled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose written and durable images are both `bytes` (a disk
    /// after a reboot).
    pub fn with_contents(bytes: Vec<u8>) -> Self {
        let state = State {
            durable: bytes.clone(),
            written: bytes,
            sync_errno: Self::EIO,
            read_errno: Self::EIO,
            capacity: Self::DEFAULT_CAPACITY,
            ..State::default()
        };
        FaultBackend {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                released: Condvar::new(),
            }),
        }
    }

    /// Appends per-write-call faults: the next write gets the first, and so on.
    pub fn schedule(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state.lock().schedule.extend(faults);
    }

    /// Fails the next `n` writes with `errno`.
    pub fn fail_writes(&self, n: usize, errno: i32) {
        self.schedule(std::iter::repeat_n(Fault::Errno(errno), n));
    }

    /// Makes the next `n` writes short.
    pub fn short_writes(&self, n: usize) {
        self.schedule(std::iter::repeat_n(Fault::Short, n));
    }

    /// Fails every write with `errno` until called with `None` (ENOSPC: the
    /// disk is full until space returns).
    pub fn set_failing(&self, errno: Option<i32>) {
        self.shared.state.lock().failing = errno;
    }

    /// Shorthand for `set_failing(Some(ENOSPC))` / `set_failing(None)`.
    pub fn set_full(&self, full: bool) {
        self.set_failing(full.then_some(Self::ENOSPC));
    }

    /// Sets the disk size: a write or extension past it fails with ENOSPC.
    pub fn set_capacity(&self, bytes: usize) {
        self.shared.state.lock().capacity = bytes;
    }

    /// Fails the next `n` syncs with `errno`; nothing becomes durable, and
    /// what was written since the last successful sync is dropped unless
    /// [`FaultBackend::keep_writes_on_failed_sync`] says otherwise.
    pub fn fail_syncs(&self, n: u64, errno: i32) {
        let mut s = self.shared.state.lock();
        s.fail_syncs = n;
        s.sync_errno = errno;
    }

    /// Whether a failed sync keeps the writes made since the last successful
    /// one. By default it drops them, as a device whose cache flush failed
    /// may have: reads then see the durable image, and the next sync
    /// succeeds without saying anything was lost. Only a cache that kept the
    /// data it could not prove durable gets it back.
    pub fn keep_writes_on_failed_sync(&self, keep: bool) {
        self.shared.state.lock().keep_on_failed_sync = keep;
    }

    /// Fails the next `n` reads with `errno`.
    pub fn fail_reads(&self, n: u64, errno: i32) {
        let mut s = self.shared.state.lock();
        s.fail_reads = n;
        s.read_errno = errno;
    }

    /// Delays every write (and read) by this long; zero to stop.
    pub fn set_delays(&self, write: Duration, read: Duration) {
        let mut s = self.shared.state.lock();
        s.write_delay = write;
        s.read_delay = read;
    }

    /// Injects a random fault (EIO, ENOSPC, short write or a 1 ms delay) into
    /// about one write in `one_in`, from a seeded generator; `None` stops.
    pub fn random_faults(&self, seed: u64, one_in: Option<u32>) {
        self.shared.state.lock().random = one_in.map(|n| (seed | 1, n.max(1)));
    }

    /// Stalls writes: while held, a write call blocks until [`release_writes`].
    ///
    /// [`release_writes`]: FaultBackend::release_writes
    pub fn hold_writes(&self) {
        self.shared.state.lock().held = true;
    }

    /// Lets stalled writes go on.
    pub fn release_writes(&self) {
        self.shared.state.lock().held = false;
        self.shared.released.notify_all();
    }

    /// Write calls blocked right now by [`FaultBackend::hold_writes`].
    pub fn blocked_writes(&self) -> u64 {
        self.shared.state.lock().blocked
    }

    /// Drops everything written since the last successful sync and turns the
    /// power off: every call fails with EIO until [`FaultBackend::reboot`].
    pub fn power_cut(&self) {
        let mut s = self.shared.state.lock();
        let st = &mut *s;
        st.written.clone_from(&st.durable);
        s.off = true;
        s.stats.power_cuts += 1;
        s.held = false;
        drop(s);
        self.shared.released.notify_all();
    }

    /// Turns the power back on, with the durable image as content, and
    /// forgets every scheduled fault.
    pub fn reboot(&self) {
        {
            let mut s = self.shared.state.lock();
            let s = &mut *s;
            s.written.clone_from(&s.durable);
            s.off = false;
        }
        self.clear_faults();
    }

    /// Forgets every scheduled, persistent and random fault and every delay
    /// (the images and the power are left as they are).
    pub fn clear_faults(&self) {
        let mut s = self.shared.state.lock();
        s.schedule.clear();
        s.failing = None;
        s.fail_syncs = 0;
        s.fail_reads = 0;
        s.random = None;
        s.write_delay = Duration::ZERO;
        s.read_delay = Duration::ZERO;
    }

    /// What reads see now.
    pub fn written(&self) -> Vec<u8> {
        self.shared.state.lock().written.clone()
    }

    /// What survives a power cut: the image as of the last successful sync.
    pub fn durable(&self) -> Vec<u8> {
        self.shared.state.lock().durable.clone()
    }

    /// Counts of calls and injected faults.
    pub fn stats(&self) -> FaultStats {
        self.shared.state.lock().stats
    }

    /// The fault for the next write call.
    fn next_fault(s: &mut State) -> Fault {
        if let Some(errno) = s.failing {
            return Fault::Errno(errno);
        }
        if let Some(f) = s.schedule.pop_front() {
            return f;
        }
        if let Some((x, n)) = s.random.as_mut() {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            let r = *x;
            if r % u64::from(*n) == 0 {
                return match (r >> 32) % 4 {
                    0 => Fault::Errno(Self::EIO),
                    1 => Fault::Errno(Self::ENOSPC),
                    2 => Fault::Short,
                    _ => Fault::Delay(Duration::from_millis(1)),
                };
            }
        }
        if s.write_delay.is_zero() {
            Fault::Pass
        } else {
            Fault::Delay(s.write_delay)
        }
    }
}

impl Backend for FaultBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = self.shared.state.lock();
        if s.off {
            s.stats.refused_while_off += 1;
            return Err(err(Self::EIO));
        }
        if s.fail_reads > 0 {
            s.fail_reads -= 1;
            s.stats.failed_reads += 1;
            return Err(err(s.read_errno));
        }
        let delay = s.read_delay;
        if !delay.is_zero() {
            s.stats.delays += 1;
            drop(s);
            std::thread::sleep(delay);
            s = self.shared.state.lock();
        }
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= s.written.len() {
            return Ok(0);
        }
        let n = buf.len().min(s.written.len() - start);
        buf[..n].copy_from_slice(&s.written[start..start + n]);
        Ok(n)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        crate::stack::probe();
        let mut s = self.shared.state.lock();
        s.stats.writes += 1;
        while s.held && !s.off {
            s.blocked += 1;
            self.shared.released.wait(&mut s);
            s.blocked -= 1;
        }
        if s.off {
            s.stats.refused_while_off += 1;
            return Err(err(Self::EIO));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut limit = total;
        match Self::next_fault(&mut s) {
            Fault::Pass => {}
            Fault::Errno(e) => {
                match e {
                    Self::EIO => s.stats.eio += 1,
                    Self::ENOSPC => s.stats.enospc += 1,
                    _ => s.stats.other_errors += 1,
                }
                return Err(err(e));
            }
            Fault::Short => {
                if total > 1 {
                    s.stats.short_writes += 1;
                    limit = total / 2;
                }
            }
            Fault::Delay(d) => {
                s.stats.delays += 1;
                drop(s);
                std::thread::sleep(d);
                s = self.shared.state.lock();
                if s.off {
                    s.stats.refused_while_off += 1;
                    return Err(err(Self::EIO));
                }
            }
        }
        let capacity = s.capacity;
        let end = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(limit))
            .filter(|&e| e <= capacity || e <= s.written.len());
        let Some(end) = end else {
            s.stats.enospc += 1;
            return Err(err(Self::ENOSPC));
        };
        let start = end - limit;
        if s.written.len() < end {
            s.written.resize(end, 0);
        }
        let mut pos = start;
        for b in bufs {
            let n = b.len().min(end - pos);
            s.written[pos..pos + n].copy_from_slice(&b[..n]);
            pos += n;
            if pos == end {
                break;
            }
        }
        s.stats.bytes_written += limit as u64;
        Ok(limit)
    }

    fn sync(&self) -> io::Result<()> {
        let mut s = self.shared.state.lock();
        if s.off {
            s.stats.refused_while_off += 1;
            return Err(err(Self::EIO));
        }
        let s = &mut *s;
        if s.fail_syncs > 0 {
            s.fail_syncs -= 1;
            s.stats.failed_syncs += 1;
            if !s.keep_on_failed_sync {
                // As on a real device after a failed flush: what was not yet
                // durable may be gone, and the next sync will not say so.
                s.written.clone_from(&s.durable);
            }
            return Err(err(s.sync_errno));
        }
        s.durable.clone_from(&s.written);
        s.stats.syncs += 1;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut s = self.shared.state.lock();
        if s.off {
            s.stats.refused_while_off += 1;
            return Err(err(Self::EIO));
        }
        Ok(s.written.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.shared.state.lock();
        if s.off {
            s.stats.refused_while_off += 1;
            return Err(err(Self::EIO));
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= s.capacity || l <= s.written.len())
            .ok_or_else(|| err(Self::ENOSPC))?;
        s.written.resize(len, 0);
        Ok(())
    }
}
