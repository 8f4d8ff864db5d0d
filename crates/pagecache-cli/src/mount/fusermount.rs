//! The setuid `fusermount3` helper of the fuse3 package. A user who may
//! open /dev/fuse but not call `mount(2)` mounts through it (the `fuser`
//! crate runs it), and unmounts through it too.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helper's name.
pub const HELPER: &str = "fusermount3";

/// Where the helper is, from PATH or the usual places.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(HELPER))
        .find(|p| p.is_file())
}

/// Unmounts a mount the helper made (`fusermount3 -u`, `-z` for lazy).
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    let helper = find().ok_or_else(|| io::Error::other(format!("{HELPER} is not installed")))?;
    let mut cmd = Command::new(helper);
    cmd.arg("-u").arg("-q");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg("--").arg(mountpoint).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}
