//! The crate's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `pagecache`.
///
/// New variants may be added in minor releases, so a `match` needs a `_` arm.
/// Code returning `std::io::Result` converts it with `?`: the
/// `impl From<Error> for std::io::Error` keeps the OS error number of a
/// failed read or write and maps the other variants to an
/// [`io::ErrorKind`] (listed on that impl).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected before the cache was built.
    Config(String),
    /// An argument to a call was out of range (offset overflow, bad page index…).
    InvalidArgument(String),
    /// No frame could be freed because every frame is pinned.
    OutOfMemory {
        /// Frames in the arena.
        frames: usize,
        /// Frames pinned when the allocation gave up.
        pinned: usize,
    },
    /// Under the `no-throttle` policy: nothing clean could be reclaimed, and the
    /// policy forbids waiting for writeback.
    NoCleanFrame,
    /// A write or a backend sync of this file failed since this open last
    /// synced. Every page the failure may have lost is dirty again and will
    /// be rewritten; a later `sync` that returns `Ok` means they are durable.
    Writeback {
        /// File the failure belongs to, if it has a path.
        path: Option<PathBuf>,
        /// The error the backend returned.
        source: io::Error,
    },
    /// The backend failed on a call made directly for the caller (read-in, sync, `set_len`).
    Io {
        /// What the cache was doing.
        op: &'static str,
        /// File, if it has a path.
        path: Option<PathBuf>,
        /// The backend's error.
        source: io::Error,
    },
    /// The call would wait on a page this thread has locked through a guard.
    WouldDeadlock(&'static str),
    /// The cache has been shut down.
    Shutdown,
    /// A write, `page_mut` or `set_len` through a handle opened read-only.
    ReadOnly {
        /// File, if it has a path.
        path: Option<PathBuf>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: Option<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path, source }
    }

    /// The underlying I/O error, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Writeback { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn path_suffix(path: Option<&PathBuf>) -> String {
    match path {
        Some(p) => format!(" of {}", p.display()),
        None => String::new(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "invalid cache configuration: {msg}"),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::OutOfMemory { frames, pinned } => write!(
                f,
                "out of memory: all {pinned} of {frames} frames are pinned; drop page guards or raise `memory`"
            ),
            Error::NoCleanFrame => write!(
                f,
                "no clean frame to reclaim and the `no-throttle` policy forbids waiting for writeback; use the `offload` policy"
            ),
            Error::Writeback { path, source } => write!(
                f,
                "writeback{} failed: {source}; every page it may have lost is dirty again and will be rewritten; sync again once the cause is fixed",
                path_suffix(path.as_ref())
            ),
            Error::Io { op, path, source } => {
                write!(f, "{op}{} failed: {source}", path_suffix(path.as_ref()))
            }
            Error::WouldDeadlock(what) => write!(
                f,
                "{what} would wait on a page this thread holds through a PageWriteGuard; drop the guard first"
            ),
            Error::Shutdown => write!(f, "the page cache has been shut down"),
            Error::ReadOnly { path } => write!(
                f,
                "cannot modify{}: it was opened read-only; open it with `PageCache::open_options().read(true).write(true)` to write",
                match path {
                    Some(p) => format!(" {}", p.display()),
                    None => String::new(),
                }
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Writeback { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Converts to the error a `std::fs::File` would have returned, so `?` works
/// in functions returning `std::io::Result`.
///
/// - `Io` and `Writeback` keep the backend's error: its raw OS error (errno)
///   when it has one — as `std::fs::File` reports errors, without the path —
///   or else its kind, with this error (path and operation) as the payload.
/// - `OutOfMemory` and `NoCleanFrame` become [`io::ErrorKind::OutOfMemory`].
/// - `Config` and `InvalidArgument` become [`io::ErrorKind::InvalidInput`].
/// - `WouldDeadlock` becomes [`io::ErrorKind::Deadlock`] (`EDEADLK`): the call
///   would block on the caller itself, which waiting cannot cure, so
///   `WouldBlock` (retry later) would mislead.
/// - `Shutdown` becomes [`io::ErrorKind::BrokenPipe`]: the cache behind the
///   handle is gone, as the reader behind a pipe is.
/// - `ReadOnly` becomes [`io::ErrorKind::PermissionDenied`].
///
/// Except for raw OS errors, the `io::Error` wraps this error:
/// `get_ref()` and `downcast` give it back with its full message.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Writeback { source, .. } | Error::Io { source, .. } => {
                if let Some(code) = source.raw_os_error() {
                    return io::Error::from_raw_os_error(code);
                }
                source.kind()
            }
            Error::Config(_) | Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::OutOfMemory { .. } | Error::NoCleanFrame => io::ErrorKind::OutOfMemory,
            Error::WouldDeadlock(_) => io::ErrorKind::Deadlock,
            Error::Shutdown => io::ErrorKind::BrokenPipe,
            Error::ReadOnly { .. } => io::ErrorKind::PermissionDenied,
        };
        io::Error::new(kind, e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
