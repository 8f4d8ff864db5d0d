//! errno values for FUSE replies, and small conversions.

use std::fs;
use std::io;
use std::time::UNIX_EPOCH;

use fuser::{Errno, ReplyEmpty, TimeOrNow};
use libc::c_int;

/// errno of an I/O error (EIO when it carries none).
pub fn errno(e: &io::Error) -> c_int {
    if let Some(code) = e.raw_os_error() {
        return code;
    }
    match e.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::PermissionDenied => libc::EACCES,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::InvalidInput => libc::EINVAL,
        io::ErrorKind::OutOfMemory => libc::ENOMEM,
        io::ErrorKind::Deadlock => libc::EDEADLK,
        _ => libc::EIO,
    }
}

/// errno of a cache error. Writeback errors keep the backend's errno.
pub fn cache_errno(e: pagecache::Error) -> c_int {
    errno(&io::Error::from(e))
}

/// The FUSE form of errno `e`.
pub fn en(e: c_int) -> Errno {
    Errno::from_i32(e)
}

/// Answers an operation that returns nothing but success or an errno.
pub fn reply_empty(reply: ReplyEmpty, result: Result<(), c_int>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(en(e)),
    }
}

/// A FUSE time as a `utimensat` timestamp.
pub fn timespec(t: TimeOrNow) -> rustix::fs::Timespec {
    match t {
        TimeOrNow::Now => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        TimeOrNow::SpecificTime(t) => {
            let (sec, nsec) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
                Err(e) => {
                    let d = e.duration();
                    let mut sec = -(d.as_secs() as i64);
                    let mut nsec = d.subsec_nanos();
                    if nsec > 0 {
                        sec -= 1;
                        nsec = 1_000_000_000 - nsec;
                    }
                    (sec, nsec)
                }
            };
            rustix::fs::Timespec {
                tv_sec: sec,
                tv_nsec: nsec.into(),
            }
        }
    }
}

/// The `S_IFMT` bits of a file type.
pub fn t_mode(t: &fs::FileType) -> u32 {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        libc::S_IFDIR
    } else if t.is_symlink() {
        libc::S_IFLNK
    } else if t.is_fifo() {
        libc::S_IFIFO
    } else if t.is_char_device() {
        libc::S_IFCHR
    } else if t.is_block_device() {
        libc::S_IFBLK
    } else if t.is_socket() {
        libc::S_IFSOCK
    } else {
        libc::S_IFREG
    }
}
