//! Writeback errors reach `fsync` through the mount: SOURCE_DIR on a full
//! tmpfs makes writeback fail with ENOSPC.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::harness::{available, fuse_problem, Mount, Stop};

fn mount_tmpfs(dir: &Path, size: &str) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(format!("size={size}").as_str()),
    )
    .map_err(|e| format!("cannot mount a tmpfs ({e})"))
}

/// Unmounts the tmpfs at its path when dropped, also when a test panics.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A mount whose SOURCE_DIR is a fresh 1 MiB tmpfs, with dirty pages that
/// do not expire; `None` (the test is skipped) if FUSE or tmpfs is not
/// available.
fn mount_on_small_tmpfs(name: &str) -> Option<Mount> {
    let probe = tempfile::tempdir().unwrap();
    let problem = fuse_problem().or_else(|| {
        mount_tmpfs(probe.path(), "64k")
            .and_then(|()| umount2(probe.path(), MntFlags::MNT_DETACH).map_err(|e| e.to_string()))
            .err()
    });
    if !available(name, problem) {
        return None;
    }
    Some(Mount::start_with(
        &["--memory", "32M", "--dirty-expire", "3600"],
        |src| mount_tmpfs(src, "1M").unwrap(),
    ))
}

#[test]
fn fsync_reports_enospc_from_writeback() {
    let Some(mut m) = mount_on_small_tmpfs("fsync_reports_enospc_from_writeback") else {
        return;
    };
    let _tmpfs = Tmpfs(m.source.clone());
    {
        // Fits: fsync succeeds.
        let mut small = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.mnt.join("small"))
            .unwrap();
        small.write_all(&[1u8; 100_000]).unwrap();
        small.sync_all().unwrap();
        // Does not fit: write succeeds (2 MiB is below the cache's dirty
        // limits, so it stays in the cache), fsync fails.
        let mut big = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.mnt.join("big"))
            .unwrap();
        let other = OpenOptions::new()
            .write(true)
            .open(m.mnt.join("big"))
            .unwrap();
        big.write_all(&vec![2u8; 2 << 20]).unwrap();
        let err = big
            .sync_all()
            .expect_err("fsync of a file that does not fit");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        // Every open file description sees the error.
        let err = other.sync_all().expect_err("fsync through a second open");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        // Make room: the retried pages are written and fsync succeeds (after
        // `big` is told of the error `other`'s fsync met, if it was not).
        big.set_len(0).unwrap();
        let _ = big.sync_all();
        big.sync_all().unwrap();
        other.sync_all().unwrap();
        assert_eq!(std::fs::metadata(m.source.join("big")).unwrap().len(), 0);
    }
    m.stop_ok(Stop::Term);
}

/// A file closed (and written back and let go by the mount) while its
/// writeback fails
/// keeps its dirty pages: reopened, it reads what was written, and once
/// there is room the data reaches SOURCE_DIR.
#[test]
fn dirty_data_of_a_closed_file_survives_failed_writeback() {
    let Some(mut m) = mount_on_small_tmpfs("dirty_data_of_a_closed_file_survives_failed_writeback")
    else {
        return;
    };
    let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    let _tmpfs = Tmpfs(m.source.clone());
    {
        std::fs::write(m.mnt.join("big"), &data).unwrap();
        // Close more files than the mount keeps idle under the cache: it
        // writes the oldest, `big`, back (in the background) and lets it
        // go, which fails for lack of room.
        for i in 0..1100 {
            std::fs::File::create(m.mnt.join(format!("empty{i}"))).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !m.log().contains("writing back a closed file") {
            assert!(
                std::time::Instant::now() < deadline,
                "no failed write-back of a closed file reported:\n{}",
                m.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let back = std::fs::read(m.mnt.join("big")).unwrap();
        assert!(
            back == data,
            "read back {} bytes that differ from what was written",
            back.len()
        );
        // Make room; the retried pages are written.
        mount(
            None::<&str>,
            &m.source,
            None::<&str>,
            MsFlags::MS_REMOUNT,
            Some("size=8M"),
        )
        .unwrap();
        let f = OpenOptions::new()
            .write(true)
            .open(m.mnt.join("big"))
            .unwrap();
        let _ = f.sync_all();
        f.sync_all().unwrap();
    }
    m.stop_ok(Stop::Term);
    let on_disk = std::fs::read(m.source.join("big"));
    assert!(
        on_disk.unwrap() == data,
        "SOURCE_DIR/big differs from what was written"
    );
}

/// The final write-back at unmount cannot write a file for lack of room:
/// the mount says which file and exits non-zero instead of claiming that
/// all data was written.
#[test]
fn a_failed_final_write_back_is_reported_at_exit() {
    let Some(mut m) = mount_on_small_tmpfs("a_failed_final_write_back_is_reported_at_exit") else {
        return;
    };
    let _tmpfs = Tmpfs(m.source.clone());
    std::fs::write(m.mnt.join("fits"), [3u8; 10_000]).unwrap();
    // Below the dirty limits and never expiring: still dirty at unmount.
    std::fs::write(m.mnt.join("too-big"), vec![4u8; 2 << 20]).unwrap();
    let status = m.stop(Stop::Term);
    let log = m.log();
    assert!(!status.success(), "exited with {status}:\n{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("could not be made durable"), "{log}");
    assert!(log.contains("too-big"), "the failed file is named:\n{log}");
    assert!(!log.contains("all data written"), "{log}");
}
