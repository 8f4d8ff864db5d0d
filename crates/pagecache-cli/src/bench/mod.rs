//! `pagecache bench`: workloads × policies, side by side.

use crate::CliError;

/// Arguments of `pagecache bench`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> Result<(), CliError> {
    Err(CliError::Usage("bench is not implemented yet".into()))
}
