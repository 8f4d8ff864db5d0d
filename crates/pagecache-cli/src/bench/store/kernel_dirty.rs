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

use std::path::Path;

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
}

impl KernelDirtyLimits {
    /// Sets `vm.dirty_bytes` to `dirty` and `vm.dirty_background_bytes` to
    /// `background`; `Err` says why not (the old values are back then).
    pub fn set(dirty: u64, background: u64) -> Result<Self, String> {
        let saved = Saved {
            dirty_bytes: read("dirty_bytes")?,
            dirty_ratio: read("dirty_ratio")?,
            background_bytes: read("dirty_background_bytes")?,
            background_ratio: read("dirty_background_ratio")?,
        };
        // Built before the first write: a failure after it restores.
        let guard = KernelDirtyLimits {
            saved,
            bytes: (dirty, background),
        };
        // The kernel refuses a dirty limit below two pages.
        write("dirty_bytes", dirty.max(2 * 4096))?;
        write("dirty_background_bytes", background.max(4096))?;
        Ok(guard)
    }
}

impl Drop for KernelDirtyLimits {
    fn drop(&mut self) {
        let s = self.saved;
        // Writing a `_bytes` knob zeroes its `_ratio` twin and vice versa:
        // restore whichever of the pair was in force.
        let _ = if s.dirty_bytes > 0 {
            write("dirty_bytes", s.dirty_bytes)
        } else {
            write("dirty_ratio", s.dirty_ratio)
        };
        let _ = if s.background_bytes > 0 {
            write("dirty_background_bytes", s.background_bytes)
        } else {
            write("dirty_background_ratio", s.background_ratio)
        };
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
