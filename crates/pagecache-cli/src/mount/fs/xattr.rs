//! Extended attributes: passed through to the source file or directory.
//!
//! A cached file's go through its source descriptor (the file may have no
//! name left); anything else's through its path, without following a
//! symbolic link. The kernel has checked the caller's right to the
//! namespace (`trusted.*` needs `CAP_SYS_ADMIN`, `user.*` write permission)
//! against the attributes this file system reports, which are the source's.
//! POSIX ACLs are not negotiated, so the kernel refuses their attributes
//! itself and permissions stay the mode bits.

use std::ffi::OsStr;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use libc::c_int;
use rustix::fs::XattrFlags;

use super::Inner;
use crate::mount::inode::STAT_INO;

/// Where an inode's attributes live.
pub(super) enum Target {
    Fd(Arc<fs::File>),
    Path(PathBuf),
}

/// A `getxattr`/`listxattr` answer: the size asked for (with a size of 0),
/// or the bytes.
pub(super) enum Value {
    Size(u32),
    Bytes(Vec<u8>),
}

impl Inner {
    /// Where `ino`'s attributes are. The counters file has none.
    pub(super) fn xattr_target(&self, ino: u64) -> Result<Target, c_int> {
        if ino == STAT_INO {
            return Err(libc::ENOTSUP);
        }
        if let Some(data) = self.inodes.get(ino).and_then(|n| n.data.as_ref()) {
            return data
                .source
                .fd()
                .map(Target::Fd)
                .map_err(|e| super::errno(&e));
        }
        Ok(Target::Path(self.full(&self.rel(ino)?)))
    }
}

fn raw(e: rustix::io::Errno) -> c_int {
    e.raw_os_error()
}

/// Reads attribute `name` into a buffer of `size` bytes (0: asks its size).
pub(super) fn get(t: &Target, name: &OsStr, size: u32) -> Result<Value, c_int> {
    let mut buf = vec![0u8; size as usize];
    let n = match t {
        Target::Fd(fd) => rustix::fs::fgetxattr(&**fd, name, &mut buf[..]),
        Target::Path(p) => rustix::fs::lgetxattr(p, name, &mut buf[..]),
    }
    .map_err(raw)?;
    Ok(value(buf, size, n))
}

/// Lists attribute names into a buffer of `size` bytes (0: asks its size).
pub(super) fn list(t: &Target, size: u32) -> Result<Value, c_int> {
    let mut buf = vec![0u8; size as usize];
    let n = match t {
        Target::Fd(fd) => rustix::fs::flistxattr(&**fd, &mut buf[..]),
        Target::Path(p) => rustix::fs::llistxattr(p, &mut buf[..]),
    }
    .map_err(raw)?;
    Ok(value(buf, size, n))
}

fn value(mut buf: Vec<u8>, size: u32, n: usize) -> Value {
    if size == 0 {
        Value::Size(u32::try_from(n).unwrap_or(u32::MAX))
    } else {
        buf.truncate(n);
        Value::Bytes(buf)
    }
}

/// Sets attribute `name` (`flags`: `XATTR_CREATE`, `XATTR_REPLACE`).
pub(super) fn set(t: &Target, name: &OsStr, value: &[u8], flags: i32) -> Result<(), c_int> {
    let flags = XattrFlags::from_bits(flags as u32).ok_or(libc::EINVAL)?;
    match t {
        Target::Fd(fd) => rustix::fs::fsetxattr(&**fd, name, value, flags),
        Target::Path(p) => rustix::fs::lsetxattr(p, name, value, flags),
    }
    .map_err(raw)
}

/// Removes attribute `name`.
pub(super) fn remove(t: &Target, name: &OsStr) -> Result<(), c_int> {
    match t {
        Target::Fd(fd) => rustix::fs::fremovexattr(&**fd, name),
        Target::Path(p) => rustix::fs::lremovexattr(p, name),
    }
    .map_err(raw)
}
