//! `pagecache mount` and `pagecache stat`.
//!
//! `mount` serves SOURCE_DIR at MOUNTPOINT over FUSE: metadata passes through
//! to SOURCE_DIR, file data goes through a [`pagecache::PageCache`]. Files are
//! opened with `FOPEN_DIRECT_IO`, so the kernel's own page cache keeps no
//! second copy. It runs in the foreground; SIGINT, SIGTERM, SIGHUP or
//! `umount MOUNTPOINT` write every dirty page, make it durable, unmount and
//! exit 0 — or exit 1 naming each file that could not be made durable.
//!
//! `stat` prints a running mount's counters, read from the virtual file
//! `MOUNTPOINT/.pagecache-stat`.

mod floor;
mod fs;
mod fusermount;
mod inode;
mod limits;
mod pool;
mod session;
mod source;
mod stat;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use pagecache::{Config, PageCache, Policy};

use crate::size::size_arg;
use crate::CliError;

pub use floor::{run as fuse_floor, Args as FloorArgs};
pub use stat::stat;

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
    /// Threads reading and answering requests, each from its own
    /// /dev/fuse descriptor; as many again run fsyncs and write-backs of
    /// closed files.
    #[arg(long, default_value_t = 8)]
    threads: usize,
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
    if args.threads == 0 {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
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

/// Mounts SOURCE_DIR through the cache and serves it until unmounted or
/// signalled.
pub fn run(args: Args) -> Result<(), CliError> {
    let cfg = config(&args)?;
    let signals = block_signals()?;

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
    session::check_fuse_device()?;

    let max_fds = limits::raise_nofile();
    let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let filesystem = fs::PassFs::new(
        source.clone(),
        cache.clone(),
        max_fds,
        args.threads,
        failures.clone(),
    )
    .map_err(|e| CliError::io("reading", Some(source.clone()), e))?;
    let session = session::start(
        filesystem,
        &source.to_string_lossy(),
        &mountpoint,
        args.allow_other,
        args.threads,
    )?;
    eprintln!(
        "pagecache: {} mounted at {} ({} bytes of cache, policy {}); \
         SIGINT, SIGTERM or `umount {}` to unmount",
        source.display(),
        mountpoint.display(),
        cache.config().get_memory(),
        cache.config().get_policy(),
        mountpoint.display()
    );

    let served = serve(session, &mountpoint, &signals)?;
    // The session's teardown wrote back every file and noted which failed;
    // these write what is still dirty and make it durable.
    let synced = cache.sync_all();
    let stopped = cache.shutdown();
    served.map_err(|e| CliError::io("serving FUSE requests", None, e))?;
    let mut failed: Vec<String> = std::mem::take(&mut *failures.lock());
    for result in [synced, stopped] {
        if let Err(e) = result {
            failed.push(e.to_string());
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "pagecache: unmounted {}, but data could not be made durable:",
            mountpoint.display()
        );
        for f in &failed {
            eprintln!("pagecache:   {f}");
        }
        return Err(CliError::Check(format!(
            "{} write-back failure(s) at unmount: what those files last had \
             written through the mount may not be in {}",
            failed.len(),
            source.display()
        )));
    }
    eprintln!(
        "pagecache: unmounted {}, all data written",
        mountpoint.display()
    );
    Ok(())
}

/// Blocks the signals that end a mount, before any thread starts, so
/// every thread inherits the mask and only [`serve`]'s `sigwait` sees them.
fn block_signals() -> Result<SigSet, CliError> {
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
    Ok(signals)
}

/// Serves `session` until `umount MOUNTPOINT` or one of `signals` (which
/// unmounts it); returns once every serving thread has stopped and the
/// filesystem's teardown has run, with what serving returned.
fn serve<F: fuser::Filesystem + Send + 'static>(
    session: fuser::Session<F>,
    mountpoint: &Path,
    signals: &SigSet,
) -> Result<std::io::Result<()>, CliError> {
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let server = std::thread::Builder::new()
        .name("pc-fuse".into())
        .spawn(move || {
            // Returns once every serving thread has seen the unmount and the
            // filesystem's teardown has written back every cached file.
            let result = session.run();
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
        session::unmount(mountpoint);
        // Wait for the server thread to see the unmount.
        while !done.load(Ordering::Acquire) {
            let _ = signals.wait();
        }
        break;
    }
    server
        .join()
        .map_err(|_| CliError::Check("the FUSE thread panicked".into()))
}
