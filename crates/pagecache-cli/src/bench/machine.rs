//! The machine the numbers were measured on, and its device's sequential
//! write speed.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::store::{open_direct, AlignedBuf};
use crate::CliError;

/// What the report says about the machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    /// Reads /proc for the facts.
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores,
            memory_bytes,
            kernel,
            cpu_model,
        }
    }
}

/// Sequential 1 MiB writes of a scratch file in `dir`: `O_DIRECT` where the
/// filesystem allows it, else buffered with an `fdatasync` after each write.
/// Writes for about `time` or `max_bytes`, whichever comes first; the final
/// `fdatasync` is included. Returns bytes per second.
pub fn device_seq_write(dir: &Path, time: Duration, max_bytes: u64) -> Result<f64, CliError> {
    let path = dir.join("device-seq-write");
    let err = |what: &str, e: std::io::Error| CliError::io(what, Some(path.clone()), e);
    const CHUNK: usize = 1 << 20;
    let mut buf = AlignedBuf::new(CHUNK);
    for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8;
    }
    let direct = open_direct(&path, true).map_err(|e| err("creating", e))?;
    let (mut file, is_direct) = match direct {
        Some(f) => (f, true),
        None => (
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| err("creating", e))?,
            false,
        ),
    };
    let t0 = Instant::now();
    let mut written = 0u64;
    while written < max_bytes && (t0.elapsed() < time || written == 0) {
        file.write_all(buf.as_slice())
            .map_err(|e| err("writing", e))?;
        if !is_direct {
            rustix::fs::fdatasync(file.as_fd()).map_err(|e| err("syncing", e.into()))?;
        }
        written += CHUNK as u64;
    }
    rustix::fs::fdatasync(file.as_fd()).map_err(|e| err("syncing", e.into()))?;
    let secs = t0.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(written as f64 / secs.max(1e-9))
}
