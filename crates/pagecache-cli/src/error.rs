//! The CLI's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What can stop a `pagecache` command.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments: the message says which and what is accepted.
    Usage(String),
    /// The cache refused or failed.
    Cache(pagecache::Error),
    /// An I/O error on a path.
    Io {
        /// What was being done.
        what: String,
        /// The path involved, if any.
        path: Option<PathBuf>,
        /// The error.
        source: io::Error,
    },
    /// The environment does not allow the operation (no /dev/fuse, not root…).
    Environment(String),
    /// A check failed (e.g. data read back differed).
    Check(String),
}

impl CliError {
    /// An I/O error with context.
    pub fn io(what: impl Into<String>, path: Option<PathBuf>, source: io::Error) -> Self {
        CliError::Io {
            what: what.into(),
            path,
            source,
        }
    }

    /// Exit status: 2 for usage errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Cache(e) => write!(f, "{e}"),
            CliError::Io { what, path, source } => match path {
                Some(p) => write!(f, "{what} {}: {source}", p.display()),
                None => write!(f, "{what}: {source}"),
            },
            CliError::Environment(m) => write!(f, "{m}"),
            CliError::Check(m) => write!(f, "check failed: {m}"),
        }
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CliError::Cache(e) => Some(e),
            CliError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<pagecache::Error> for CliError {
    fn from(e: pagecache::Error) -> Self {
        CliError::Cache(e)
    }
}
