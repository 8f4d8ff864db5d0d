//! The descriptor limit of the mount process.

/// Descriptors kept for other uses than cached source files: /dev/fuse,
/// directories being listed or synced, standard streams, the cache's own.
const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns how many
/// source descriptors the mount may keep open within it.
pub fn raise_nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 256;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; the call only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // Half the limit: requests in flight may hold a descriptor that was
    // already replaced in the set, and directories being read need theirs.
    let usable = lim.rlim_cur.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(usable.clamp(16, 1 << 20)).unwrap_or(1 << 20)
}
