//! `pagecache mount` and `pagecache stat`.
//!
//! `mount` serves SOURCE_DIR at MOUNTPOINT over FUSE: metadata passes through
//! to SOURCE_DIR, file data goes through a [`pagecache::PageCache`]. Files are
//! opened with `FOPEN_DIRECT_IO`, so the kernel's own page cache keeps no
//! second copy. It runs in the foreground; SIGINT, SIGTERM, SIGHUP or
//! `umount MOUNTPOINT` write every dirty page, make it durable, unmount and
//! exit 0.
//!
//! `stat` prints a running mount's counters, read from the virtual file
//! `MOUNTPOINT/.pagecache-stat`.

mod fs;
mod inode;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use pagecache::{Config, PageCache, Policy};

use crate::size::size_arg;
use crate::CliError;

pub use inode::STAT_NAME;

/// Arguments of `pagecache mount`.
#[derive(clap::Args)]
pub struct Args {
    /// Memory budget of the cache (e.g. 64M, 1G).
    #[arg(long, default_value = "64M", value_parser = size_arg)]
    memory: u64,
    /// Reclaim policy: offload, legacy or no-throttle.
    #[arg(long, default_value = "offload")]
    policy: String,
    /// Page size (a power of two, at least 512).
    #[arg(long, value_parser = size_arg)]
    page_size: Option<u64>,
    /// Dirty limit, percent of the budget: dirtiers are paced above it.
    #[arg(long)]
    dirty_ratio: Option<u8>,
    /// Background writeback threshold, percent of the budget.
    #[arg(long)]
    dirty_background_ratio: Option<u8>,
    /// Age in seconds after which dirty pages are written back.
    #[arg(long)]
    dirty_expire: Option<u64>,
    /// Number of flusher threads.
    #[arg(long)]
    flushers: Option<usize>,
    /// Largest coalesced write (e.g. 1M).
    #[arg(long, value_parser = size_arg)]
    max_io: Option<u64>,
    /// Writes in flight at once.
    #[arg(long)]
    io_depth: Option<usize>,
    /// Let users other than the one mounting access the mount.
    #[arg(long)]
    allow_other: bool,
    /// Directory whose files are served.
    source_dir: PathBuf,
    /// Where to mount it.
    mountpoint: PathBuf,
}

/// Arguments of `pagecache stat`.
#[derive(clap::Args)]
pub struct StatArgs {
    /// Mount point of a running `pagecache mount`.
    mountpoint: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: crate::stat_format::Format,
}

fn usize_of(what: &str, v: u64) -> Result<usize, CliError> {
    usize::try_from(v).map_err(|_| CliError::Usage(format!("{what} {v} is too large")))
}

/// The cache configuration the arguments ask for.
fn config(args: &Args) -> Result<Config, CliError> {
    let policy: Policy = args
        .policy
        .parse()
        .map_err(|e: pagecache::Error| CliError::Usage(e.to_string()))?;
    if args.memory == 0 {
        return Err(CliError::Usage("--memory must be above zero".into()));
    }
    let mut cfg = Config::new(usize_of("--memory", args.memory)?).policy(policy);
    if let Some(v) = args.page_size {
        cfg = cfg.page_size(usize_of("--page-size", v)?);
    }
    if let Some(v) = args.dirty_ratio {
        cfg = cfg.dirty_ratio(v);
    }
    if let Some(v) = args.dirty_background_ratio {
        cfg = cfg.dirty_background_ratio(v);
    }
    if let Some(v) = args.dirty_expire {
        cfg = cfg.dirty_expire(Duration::from_secs(v));
    }
    if let Some(v) = args.flushers {
        cfg = cfg.flushers(v);
    }
    if let Some(v) = args.max_io {
        cfg = cfg.max_io(usize_of("--max-io", v)?);
    }
    if let Some(v) = args.io_depth {
        cfg = cfg.io_depth(v);
    }
    Ok(cfg)
}

/// Checks that `path` is an existing directory; returns its canonical form.
fn directory(what: &str, path: &Path) -> Result<PathBuf, CliError> {
    let canon = std::fs::canonicalize(path)
        .map_err(|e| CliError::io(format!("{what} is not usable:"), Some(path.into()), e))?;
    if !canon.is_dir() {
        return Err(CliError::Usage(format!(
            "{what} {} is not a directory",
            path.display()
        )));
    }
    Ok(canon)
}

fn check_fuse_device() -> Result<(), CliError> {
    match std::fs::metadata("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::Environment(format!(
            "/dev/fuse is not available ({e}): load the fuse module (modprobe fuse) \
             or, in a container, pass the device through (--device /dev/fuse)"
        ))),
    }
}

fn mount_error(mountpoint: &Path, e: std::io::Error) -> CliError {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (mounting needs root, or the fusermount3 helper from the fuse3 package; \
             in a container it also needs CAP_SYS_ADMIN)"
        }
        Some(libc::ENODEV) => " (the kernel has no FUSE support: modprobe fuse)",
        _ if e.kind() == std::io::ErrorKind::NotFound => {
            " (as a non-root user this needs the fusermount3 helper: install fuse3, or run as root)"
        }
        _ => "",
    };
    CliError::Environment(format!(
        "cannot mount at {}: {e}{hint}",
        mountpoint.display()
    ))
}

/// Whether `path` is a mount point of a `pagecache` filesystem, per
/// /proc/self/mountinfo.
fn is_pagecache_mount(path: &Path) -> Option<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = path.to_str()?;
    Some(info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        fields.get(4).map(|m| unescape(m)) == Some(want.to_string())
            && fields.get(sep + 1) == Some(&"fuse.pagecache")
    }))
}

/// Undoes the octal escapes of mountinfo (`\040` for space…).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts SOURCE_DIR through the cache and serves it until unmounted or
/// signalled.
pub fn run(args: Args) -> Result<(), CliError> {
    let cfg = config(&args)?;
    // Block the signals that end the mount before any thread starts, so
    // every thread inherits the mask and only `sigwait` below sees them.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| CliError::io("blocking signals", None, e.into()))?;

    let cache = PageCache::new(cfg).map_err(|e| match e {
        pagecache::Error::Config(m) => CliError::Usage(m),
        e => CliError::Cache(e),
    })?;
    let source = directory("SOURCE_DIR", &args.source_dir)?;
    let mountpoint = directory("MOUNTPOINT", &args.mountpoint)?;
    if mountpoint.starts_with(&source) || source.starts_with(&mountpoint) {
        return Err(CliError::Usage(format!(
            "SOURCE_DIR {} and MOUNTPOINT {} must not contain one another",
            source.display(),
            mountpoint.display()
        )));
    }
    check_fuse_device()?;

    let filesystem = fs::PassFs::new(source.clone(), cache.clone())
        .map_err(|e| CliError::io("reading", Some(source.clone()), e))?;
    let mut options = vec![
        fuser::MountOption::FSName(source.to_string_lossy().into_owned()),
        fuser::MountOption::CUSTOM("subtype=pagecache".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::RW,
    ];
    if args.allow_other {
        options.push(fuser::MountOption::AllowOther);
    }
    let mut session = fuser::Session::new(filesystem, &mountpoint, &options)
        .map_err(|e| mount_error(&mountpoint, e))?;
    eprintln!(
        "pagecache: {} mounted at {} ({} bytes of cache, policy {}); \
         SIGINT, SIGTERM or `umount {}` to unmount",
        source.display(),
        mountpoint.display(),
        cache.config().memory,
        cache.config().policy,
        mountpoint.display()
    );

    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let server = std::thread::Builder::new()
        .name("pc-fuse".into())
        .spawn(move || {
            let result = session.run();
            // Dropping the session closes every cached file.
            drop(session);
            done2.store(true, Ordering::Release);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGUSR1);
            result
        })
        .map_err(|e| CliError::io("starting the FUSE thread", None, e))?;

    loop {
        let sig = signals
            .wait()
            .map_err(|e| CliError::io("waiting for signals", None, e.into()))?;
        if done.load(Ordering::Acquire) {
            break;
        }
        if sig == Signal::SIGUSR1 {
            continue;
        }
        eprintln!("pagecache: {sig}, unmounting {}", mountpoint.display());
        unmount(&mountpoint);
        // Wait for the server thread to see the unmount.
        while !done.load(Ordering::Acquire) {
            let _ = signals.wait();
        }
        break;
    }
    let served = server
        .join()
        .map_err(|_| CliError::Check("the FUSE thread panicked".into()))?;
    let synced = cache.sync_all();
    let stopped = cache.shutdown();
    served.map_err(|e| CliError::io("serving FUSE requests", None, e))?;
    synced?;
    stopped?;
    eprintln!(
        "pagecache: unmounted {}, all data written",
        mountpoint.display()
    );
    Ok(())
}

/// Unmounts `mountpoint`, lazily if it is busy.
fn unmount(mountpoint: &Path) {
    use nix::mount::{umount2, MntFlags};
    match umount2(mountpoint, MntFlags::empty()) {
        Ok(()) => {}
        Err(nix::errno::Errno::EBUSY) => {
            eprintln!(
                "pagecache: {} is busy; detaching it, the cache stays up until the last file on it is closed",
                mountpoint.display()
            );
            if let Err(e) = umount2(mountpoint, MntFlags::MNT_DETACH) {
                eprintln!("pagecache: cannot unmount {}: {e}", mountpoint.display());
            }
        }
        Err(e) => eprintln!("pagecache: cannot unmount {}: {e}", mountpoint.display()),
    }
}

/// Prints a mount's counters.
pub fn stat(args: StatArgs) -> Result<(), CliError> {
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .map_err(|e| CliError::io("cannot use", Some(args.mountpoint.clone()), e))?;
    if is_pagecache_mount(&mountpoint) == Some(false) {
        return Err(CliError::Usage(format!(
            "{} is not a pagecache mount (start one with `pagecache mount SOURCE_DIR {}`)",
            args.mountpoint.display(),
            args.mountpoint.display()
        )));
    }
    let path = mountpoint.join(STAT_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Environment(format!(
            "{} is not a pagecache mount: cannot read {}: {e}",
            args.mountpoint.display(),
            path.display()
        ))
    })?;
    if !text.starts_with("frames ") {
        return Err(CliError::Environment(format!(
            "{} is not a pagecache mount: {} does not hold counters",
            args.mountpoint.display(),
            path.display()
        )));
    }
    let origin = path.display().to_string();
    print!(
        "{}",
        crate::stat_format::render(&text, args.format, &origin)?
    );
    Ok(())
}
