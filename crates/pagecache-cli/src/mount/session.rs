//! Mounting and unmounting: with `mount(2)` as root, through the
//! fusermount3 helper otherwise.

use std::path::Path;

use fuser::{
    Config, Filesystem, FopenFlags, InitFlags, KernelConfig, MountOption, Session, SessionACL,
};

use super::fusermount;
use crate::CliError;

/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// Requests the kernel keeps in flight in the background (readahead,
/// asynchronous direct I/O) before it blocks submitters.
const MAX_BACKGROUND: u16 = 64;

/// How regular files are opened: no kernel page cache (the data is cached
/// here, once), and concurrent writes where the kernel allows them
/// (`FOPEN_PARALLEL_DIRECT_WRITES`, Linux 6.2: several writes of one file
/// at once, except appends and writes past the end, which it still sends
/// alone; older kernels ignore the flag).
pub const OPEN_FLAGS: FopenFlags =
    FopenFlags::FOPEN_DIRECT_IO.union(FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES);

/// What the mount asks of the kernel at init: 1 MiB writes in one request,
/// room for background requests, shared mappings of direct-I/O files.
pub fn negotiate(config: &mut KernelConfig) {
    let _ = config.set_max_write(MAX_WRITE);
    let _ = config.set_max_background(MAX_BACKGROUND);
    let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
    // Refused by kernels before 6.6 (protocol 7.39): shared mappings of
    // direct-I/O files then fail with ENODEV (sqlite's WAL index needs
    // them).
    let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
}

/// Fails with what to do when the kernel offers no /dev/fuse.
pub fn check_fuse_device() -> Result<(), CliError> {
    match std::fs::metadata("/dev/fuse") {
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::Environment(format!(
            "/dev/fuse is not available ({e}): load the fuse module (modprobe fuse) \
             or, in a container, pass the device through (--device /dev/fuse)"
        ))),
    }
}

fn mount_error(mountpoint: &Path, e: std::io::Error) -> CliError {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (mounting needs root, or the fusermount3 helper from the fuse3 package; \
             in a container it also needs CAP_SYS_ADMIN)"
        }
        Some(libc::ENODEV) => " (the kernel has no FUSE support: modprobe fuse)",
        _ if e.kind() == std::io::ErrorKind::NotFound => {
            " (as a non-root user this needs the fusermount3 helper: install fuse3, or run as root)"
        }
        _ => "",
    };
    CliError::Environment(format!(
        "cannot mount at {}: {e}{hint}",
        mountpoint.display()
    ))
}

/// Why this user cannot open /dev/fuse, if that is so. `fusermount3`
/// opens it as the calling user too, so nothing but root mounts without.
fn dev_fuse_refused() -> Option<std::io::Error> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => Some(e),
        _ => None,
    }
}

/// Mounts `fs` (named `fsname` in mountinfo) at `mountpoint`, to be served by
/// `threads` threads, each reading requests from its own clone of the
/// `/dev/fuse` descriptor (`FUSE_DEV_IOC_CLONE`), so none waits for
/// another to hand it work. As root with `mount(2)`; otherwise the `fuser`
/// crate falls back to the fusermount3 helper when `mount(2)` is refused.
pub fn start<F: Filesystem>(
    fs: F,
    fsname: &str,
    mountpoint: &Path,
    allow_other: bool,
    threads: usize,
) -> Result<Session<F>, CliError> {
    let root = nix::unistd::geteuid().is_root();
    if let Some(e) = dev_fuse_refused().filter(|_| !root) {
        return Err(CliError::Environment(format!(
            "cannot mount at {}: opening /dev/fuse: {e}. A user other than root needs \
             /dev/fuse readable and writable by everyone (mode 0666, as the fuse3 package's \
             udev rule sets it: chmod 0666 /dev/fuse) and the {} helper (apt-get install \
             fuse3); or run the mount as root",
            mountpoint.display(),
            fusermount::HELPER
        )));
    }
    if !root && fusermount::find().is_none() {
        return Err(CliError::Environment(format!(
            "cannot mount at {} as a user other than root without the {} helper: \
             install the fuse3 package (apt-get install fuse3), or run as root",
            mountpoint.display(),
            fusermount::HELPER
        )));
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(fsname.to_owned()),
        // In the mount(2) data, so mountinfo shows `fuse.pagecache` (what
        // `pagecache stat` looks for); fuser passes `Subtype` only to fusermount3.
        MountOption::CUSTOM("subtype=pagecache".into()),
        MountOption::DefaultPermissions,
        MountOption::RW,
    ];
    if allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(threads.max(1));
    config.clone_fd = true;
    Session::new(fs, mountpoint, &config).map_err(|e| mount_error(mountpoint, e))
}

/// Unmounts `mountpoint`, lazily if it is busy.
pub fn unmount(mountpoint: &Path) {
    use nix::mount::{umount2, MntFlags};
    match umount2(mountpoint, MntFlags::empty()) {
        Ok(()) => {}
        // Not root: the helper that mounted it unmounts it.
        Err(nix::errno::Errno::EPERM) => {
            if fusermount::unmount(mountpoint, false).is_err() {
                eprintln!(
                    "pagecache: {} is busy; detaching it, the cache stays up until the last file on it is closed",
                    mountpoint.display()
                );
                if let Err(e) = fusermount::unmount(mountpoint, true) {
                    eprintln!("pagecache: cannot unmount {}: {e}", mountpoint.display());
                }
            }
        }
        Err(nix::errno::Errno::EBUSY) => {
            eprintln!(
                "pagecache: {} is busy; detaching it, the cache stays up until the last file on it is closed",
                mountpoint.display()
            );
            if let Err(e) = umount2(mountpoint, MntFlags::MNT_DETACH) {
                eprintln!("pagecache: cannot unmount {}: {e}", mountpoint.display());
            }
        }
        Err(e) => eprintln!("pagecache: cannot unmount {}: {e}", mountpoint.display()),
    }
}
