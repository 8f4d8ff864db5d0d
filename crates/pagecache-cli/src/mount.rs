//! `pagecache mount` and `pagecache stat`.

use crate::CliError;

/// Arguments of `pagecache mount`.
#[derive(clap::Args)]
pub struct Args {}

/// Arguments of `pagecache stat`.
#[derive(clap::Args)]
pub struct StatArgs {}

/// Mounts SOURCE_DIR through the cache.
pub fn run(_args: Args) -> Result<(), CliError> {
    Err(CliError::Usage("mount is not implemented yet".into()))
}

/// Prints a mount's counters.
pub fn stat(_args: StatArgs) -> Result<(), CliError> {
    Err(CliError::Usage("stat is not implemented yet".into()))
}
