//! The machine the numbers were measured on, and its device's sequential
//! write speed.

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

/// Writes in flight at once by the device probe: enough to keep a device
/// with internal parallelism busy, as writeback's I/O queue does. On the
/// development machine's virtio disk, fio's 1 MiB `O_DIRECT` sequential
/// writes ran at 1.6–2.2 GiB/s 8 deep, 2.1 at 32 and 2.3–2.5 at 128: at 8
/// the probe read less than the library's own writeback then reached,
/// which made writeback's share of the device meaningless.
const PROBE_DEPTH: u64 = 32;

/// What the device sustains for sequential writes: 1 MiB `O_DIRECT` writes
/// (buffered with an `fdatasync` after each where the filesystem refuses
/// it) of one scratch file in `dir`, `PROBE_DEPTH` in flight at once (each
/// thread takes the next megabyte in file order), for about `time` or
/// `max_bytes`, whichever comes first, and at least 256 MiB so a device's
/// write cache cannot hold it all; the final `fdatasync` is included.
/// The file is written once before the pass that is timed, as fio lays out
/// its file: a write that extends a file is serialized by the file system
/// (ext4 holds the inode lock across it and waits for it), which measured
/// the file system's appends, not the device. Returns bytes per second.
pub fn device_seq_write(dir: &Path, time: Duration, max_bytes: u64) -> Result<f64, CliError> {
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    let path = dir.join("device-seq-write");
    let err = |what: &str, e: std::io::Error| CliError::io(what, Some(path.clone()), e);
    const CHUNK: u64 = 1 << 20;
    const MIN_BYTES: u64 = 256 << 20;
    let direct = open_direct(&path, true).map_err(|e| err("creating", e))?;
    let (file, is_direct) = match direct {
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
    let bytes = max_bytes.max(MIN_BYTES);
    // One pass over the file, for at most `time` once past MIN_BYTES:
    // (bytes written, seconds).
    let pass = |time: Duration| -> std::io::Result<(u64, f64)> {
        let next = AtomicU64::new(0);
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..PROBE_DEPTH)
                .map(|_| {
                    s.spawn(|| -> std::io::Result<()> {
                        let mut buf = AlignedBuf::new(CHUNK as usize);
                        for (i, b) in buf.as_mut_slice().iter_mut().enumerate() {
                            *b = (i * 131 % 251) as u8;
                        }
                        loop {
                            let at = next.fetch_add(CHUNK, Ordering::Relaxed);
                            if at >= bytes || (at >= MIN_BYTES && t0.elapsed() >= time) {
                                return Ok(());
                            }
                            file.write_all_at(buf.as_slice(), at)?;
                            if !is_direct {
                                rustix::fs::fdatasync(file.as_fd())?;
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("probe thread panicked")))
            })
        })?;
        rustix::fs::fdatasync(file.as_fd())?;
        // Each thread's last claim is the one it did not write.
        let written = next.load(Ordering::Relaxed) - PROBE_DEPTH * CHUNK;
        Ok((written, t0.elapsed().as_secs_f64()))
    };
    pass(Duration::MAX).map_err(|e| err("laying out", e))?;
    let (written, secs) = pass(time).map_err(|e| err("writing", e))?;
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(written as f64 / secs.max(1e-9))
}
