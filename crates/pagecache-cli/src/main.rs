//! `pagecache`: the benchmark, the FUSE mount and the counters.

mod bench;
mod error;
mod mount;
mod size;
mod stat_format;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// A page cache whose direct reclaim never writes, and the tools that measure it.
#[derive(Parser)]
#[command(name = "pagecache", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run workloads under each reclaim policy side by side.
    Bench(bench::Args),
    /// Mount a directory through the cache (FUSE).
    Mount(mount::Args),
    /// Print the counters of a running mount.
    Stat(mount::StatArgs),
    /// Diagnostic: the FUSE transport alone (one file, nothing stored), to
    /// compare the mount's throughput with.
    #[command(hide = true)]
    FuseFloor(mount::FloorArgs),
    /// Internal: the `kernel` policy's child process of `bench`.
    #[command(hide = true)]
    BenchKernelChild(bench::KernelChildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Bench(a) => bench::run(a),
        Cmd::Mount(a) => mount::run(a),
        Cmd::Stat(a) => mount::stat(a),
        Cmd::FuseFloor(a) => mount::fuse_floor(a),
        Cmd::BenchKernelChild(a) => bench::kernel_child(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagecache: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
