//! The kernel's dirty limits during a `kernel` run, set to the library's.
//!
//! A v1 memory cgroup has no dirty limit of its own: the global
//! `vm.dirty_ratio` is a percentage of the whole machine's memory, so the
//! kernel could keep its entire cgroup dirty while the library ran at 20%
//! of the same budget. For a like-for-like run the kernel gets
//! `vm.dirty_bytes`/`vm.dirty_background_bytes` equal to the library's
//! limits in bytes, and the old values come back when the guard drops (on
//! error and unwinding too). The settings are global: other processes'
//! dirty pages count against them while the run lasts.
//!
//! Two benches at once (parallel tests, two terminals) would otherwise save
//! each other's settings and leave the machine at one run's limits: the
//! guard holds an exclusive `flock` for its life, so the second waits for
//! the first to restore. SIGINT, SIGTERM and SIGHUP while the limits are in
//! force restore them before the process dies of the signal.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

const VM: &str = "/proc/sys/vm";

/// The four knobs, as read before the run.
#[derive(Clone, Copy, Debug)]
struct Saved {
    dirty_bytes: u64,
    dirty_ratio: u64,
    background_bytes: u64,
    background_ratio: u64,
}

fn read(name: &str) -> Result<u64, String> {
    let p = Path::new(VM).join(name);
    std::fs::read_to_string(&p)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("cannot parse {}: {e}", p.display()))
}

fn write(name: &str, v: u64) -> Result<(), String> {
    let p = Path::new(VM).join(name);
    std::fs::write(&p, v.to_string()).map_err(|e| {
        format!(
            "cannot set {} to {v}: {e} (run the bench as root to give the kernel the library's dirty limit)",
            p.display()
        )
    })
}

/// Holds the kernel at given dirty limits until dropped.
pub struct KernelDirtyLimits {
    saved: Saved,
    /// The limits in force: (dirty, background) bytes.
    pub bytes: (u64, u64),
    /// Held until the old values are back; dropped after `Drop::drop`.
    _lock: Flock<std::fs::File>,
    /// The signal dispositions replaced while the limits are in force.
    old_actions: Vec<(Signal, SigAction)>,
}

/// Where concurrent benches serialize their kernel runs.
fn lock_path() -> std::path::PathBuf {
    let run = Path::new("/run/lock");
    let dir = if run.is_dir() {
        run.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join("pagecache-bench-vm-dirty.lock")
}

fn lock() -> Result<Flock<std::fs::File>, String> {
    let path = lock_path();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", path.display()))
}

/// What the signal handler restores: the saved values (`u64::MAX`: leave
/// that knob) and whether a guard is live. Atomics, because a handler may
/// touch nothing else.
static ARMED: AtomicBool = AtomicBool::new(false);
static RESTORE: [AtomicU64; 4] = [
    AtomicU64::new(u64::MAX),
    AtomicU64::new(u64::MAX),
    AtomicU64::new(u64::MAX),
    AtomicU64::new(u64::MAX),
];
const KNOB_PATHS: [&std::ffi::CStr; 4] = [
    c"/proc/sys/vm/dirty_bytes",
    c"/proc/sys/vm/dirty_ratio",
    c"/proc/sys/vm/dirty_background_bytes",
    c"/proc/sys/vm/dirty_background_ratio",
];
const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Which of each pair to write back: the one that was in force.
fn restore_plan(s: Saved) -> [u64; 4] {
    let pick = |bytes: u64, ratio: u64| {
        if bytes > 0 {
            (bytes, u64::MAX)
        } else {
            (u64::MAX, ratio)
        }
    };
    let (db, dr) = pick(s.dirty_bytes, s.dirty_ratio);
    let (bb, br) = pick(s.background_bytes, s.background_ratio);
    [db, dr, bb, br]
}

/// Writes `v` in decimal to `path` with raw system calls: no allocation,
/// no lock, so it may run in a signal handler.
fn write_raw(path: &std::ffi::CStr, v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if let Ok(fd) = rustix::fs::open(
        path,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        let _ = rustix::io::write(&fd, &buf[i..]);
    }
}

extern "C" fn on_signal(sig: nix::libc::c_int) {
    if ARMED.swap(false, Ordering::AcqRel) {
        for (path, v) in KNOB_PATHS.iter().zip(&RESTORE) {
            let v = v.load(Ordering::Acquire);
            if v != u64::MAX {
                write_raw(path, v);
            }
        }
    }
    // Die of the signal as if nothing had caught it.
    if let Ok(sig) = Signal::try_from(sig) {
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: restoring the default disposition installs no handler.
        let _ = unsafe { signal::sigaction(sig, &dfl) };
        let _ = signal::raise(sig);
    }
}

/// Installs `on_signal` for SIGINT, SIGTERM and SIGHUP, unless a signal is
/// ignored (a bench under `nohup` keeps ignoring SIGHUP); returns what to
/// put back.
fn catch_signals() -> Vec<(Signal, SigAction)> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let mut old = Vec::new();
    for sig in SIGNALS {
        // SAFETY: `on_signal` only loads atomics, makes raw open/write
        // system calls and re-raises: all async-signal-safe.
        if let Ok(prev) = unsafe { signal::sigaction(sig, &act) } {
            if prev.handler() == SigHandler::SigIgn {
                // SAFETY: putting back the disposition that was in force.
                let _ = unsafe { signal::sigaction(sig, &prev) };
            } else {
                old.push((sig, prev));
            }
        }
    }
    old
}

impl KernelDirtyLimits {
    /// Sets `vm.dirty_bytes` to `dirty` and `vm.dirty_background_bytes` to
    /// `background`; `Err` says why not (the old values are back then).
    pub fn set(dirty: u64, background: u64) -> Result<Self, String> {
        // Check before waiting for another bench: without root there is
        // nothing to serialize.
        if !nix::unistd::geteuid().is_root() {
            return Err(
                "run the bench as root to give the kernel the library's dirty limit".into(),
            );
        }
        let lock = lock()?;
        let saved = Saved {
            dirty_bytes: read("dirty_bytes")?,
            dirty_ratio: read("dirty_ratio")?,
            background_bytes: read("dirty_background_bytes")?,
            background_ratio: read("dirty_background_ratio")?,
        };
        for (slot, v) in RESTORE.iter().zip(restore_plan(saved)) {
            slot.store(v, Ordering::Release);
        }
        ARMED.store(true, Ordering::Release);
        // Built before the first write: a failure after it restores.
        let guard = KernelDirtyLimits {
            saved,
            bytes: (dirty, background),
            _lock: lock,
            old_actions: catch_signals(),
        };
        // The kernel refuses a dirty limit below two pages.
        write("dirty_bytes", dirty.max(2 * 4096))?;
        write("dirty_background_bytes", background.max(4096))?;
        Ok(guard)
    }
}

impl Drop for KernelDirtyLimits {
    fn drop(&mut self) {
        // Writing a `_bytes` knob zeroes its `_ratio` twin and vice versa:
        // restore whichever of the pair was in force. A signal handler that
        // got here first has done it.
        if ARMED.swap(false, Ordering::AcqRel) {
            let names = [
                "dirty_bytes",
                "dirty_ratio",
                "dirty_background_bytes",
                "dirty_background_ratio",
            ];
            for (name, v) in names.iter().zip(restore_plan(self.saved)) {
                if v != u64::MAX {
                    let _ = write(name, v);
                }
            }
        }
        for (sig, act) in self.old_actions.drain(..) {
            // SAFETY: putting back the disposition that was in force
            // before `set`.
            let _ = unsafe { signal::sigaction(sig, &act) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_knobs() -> Vec<u64> {
        [
            "dirty_bytes",
            "dirty_ratio",
            "dirty_background_bytes",
            "dirty_background_ratio",
        ]
        .iter()
        .map(|n| read(n).unwrap())
        .collect()
    }

    #[test]
    fn limits_are_set_then_restored() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: setting vm.dirty_bytes needs root");
            return;
        }
        let before = all_knobs();
        {
            let g = KernelDirtyLimits::set(13 << 20, 6 << 20).unwrap();
            assert_eq!(g.bytes, (13 << 20, 6 << 20));
            assert_eq!(read("dirty_bytes").unwrap(), 13 << 20);
            assert_eq!(read("dirty_background_bytes").unwrap(), 6 << 20);
            assert_eq!(read("dirty_ratio").unwrap(), 0, "bytes replace the ratio");
        }
        let after = all_knobs();
        assert_eq!(before, after);
    }
}
