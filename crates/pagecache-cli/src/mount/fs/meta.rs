//! Metadata operations: they pass through to SOURCE_DIR, keeping the inode
//! table (and the paths cached files are reopened by) in step.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fuser::{FileType, ReplyEntry, Request, TimeOrNow};
use libc::c_int;

use super::errno::{cache_errno, errno, t_mode, timespec};
use super::{is_stat_name, Dir, Inner, STAT_INO, STAT_NAME};
use crate::mount::inode::{self, FUSE_ROOT_ID};

/// Who a new file belongs to: the caller, when the mount runs as root and
/// so can give it away; otherwise whoever runs the mount.
pub struct Owner {
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Owner {
    /// Gives the just-created `path` (not following a symlink) to its owner.
    pub fn give(&self, path: &Path) -> Result<(), c_int> {
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, self.uid, self.gid).map_err(|e| {
            // Leave no file behind that the caller was told was not made.
            let _ = match fs::symlink_metadata(path) {
                Ok(md) if md.is_dir() => fs::remove_dir(path),
                _ => fs::remove_file(path),
            };
            errno(&e)
        })
    }
}

/// The attribute changes of a setattr.
pub struct Change {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

impl Inner {
    /// The owner of a file `req`'s caller creates in directory `parent`. In
    /// a set-group-ID directory the group is the directory's, which the
    /// source filesystem already gave it.
    pub(super) fn owner(&self, req: &Request, parent: u64) -> Owner {
        if !self.as_root {
            return Owner {
                uid: None,
                gid: None,
            };
        }
        let setgid_dir = self
            .rel(parent)
            .ok()
            .and_then(|rel| fs::metadata(self.full(&rel)).ok())
            .is_some_and(|md| md.mode() & libc::S_ISGID != 0);
        Owner {
            uid: Some(req.uid()),
            gid: (!setgid_dir).then(|| req.gid()),
        }
    }

    /// Makes `name` in `parent` with `make`, given its full path, gives it
    /// to the caller, and answers with its entry. The stat file's name is
    /// taken.
    pub(super) fn make_entry(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        reply: ReplyEntry,
        make: impl FnOnce(&Path) -> Result<(), c_int>,
    ) {
        if is_stat_name(parent, name) {
            return reply.error(fuser::Errno::EEXIST);
        }
        let owner = self.owner(req, parent);
        let result = self.child(parent, name).and_then(|rel| {
            let path = self.full(&rel);
            make(&path)?;
            owner.give(&path)?;
            Ok(rel)
        });
        self.entry(result, reply)
    }

    pub(super) fn set_attr(&mut self, ino: u64, c: Change) -> Result<fuser::FileAttr, c_int> {
        if ino == STAT_INO {
            return Err(libc::EPERM);
        }
        if let Some(len) = c.size {
            let data = self.data(ino, true)?;
            data.file.set_len(len).map_err(cache_errno)?;
            data.source.touch();
            // A file truncated without being opened is idle.
            if let Some(old) = self.inodes.mark_idle(ino) {
                self.retire(old);
            }
        }
        let path = self.full(&self.rel(ino)?);
        if let Some(mode) = c.mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| errno(&e))?;
        }
        if c.uid.is_some() || c.gid.is_some() {
            std::os::unix::fs::lchown(&path, c.uid, c.gid).map_err(|e| errno(&e))?;
        }
        if c.atime.is_some() || c.mtime.is_some() {
            let omit = rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            };
            let times = rustix::fs::Timestamps {
                last_access: c.atime.map(timespec).unwrap_or(omit),
                last_modification: c.mtime.map(timespec).unwrap_or(omit),
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &path,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| e.raw_os_error())?;
            if let Some(t) = c.mtime {
                let source = self.inodes.get(ino).and_then(|n| n.data.as_ref());
                if let Some(data) = source {
                    data.source.set_mtime(match t {
                        TimeOrNow::SpecificTime(t) => t,
                        TimeOrNow::Now => std::time::SystemTime::now(),
                    });
                }
            }
        }
        self.attr_of(ino)
    }

    /// Before a name of source inode `key` goes: a cached file keeps its
    /// descriptor, as it may have no other name to be reopened by.
    fn keep_open(&self, key: inode::Key) {
        let data = self
            .inodes
            .find(key)
            .and_then(|ino| self.inodes.get(ino))
            .and_then(|n| n.data.as_ref());
        if let Some(data) = data {
            let _ = data.source.pin();
        }
    }

    pub(super) fn remove_file(&mut self, parent: u64, name: &OsStr) -> Result<(), c_int> {
        if is_stat_name(parent, name) {
            return Err(libc::EPERM);
        }
        let rel = self.child(parent, name)?;
        let path = self.full(&rel);
        let md = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
        let key = inode::key_of(&md);
        self.keep_open(key);
        fs::remove_file(&path).map_err(|e| errno(&e))?;
        if md.nlink() <= 1 {
            self.drop_set_aside(key);
        }
        if let Some(ino) = self.inodes.find(key) {
            if md.nlink() <= 1 {
                self.inodes.detach(ino);
            } else if let Some(node) = self.inodes.get_mut(ino) {
                if node.path.as_deref() == Some(rel.as_path()) {
                    node.set_path(None);
                }
            }
        }
        Ok(())
    }

    pub(super) fn remove_dir(&mut self, parent: u64, name: &OsStr) -> Result<(), c_int> {
        let path = self.full(&self.child(parent, name)?);
        let md = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
        fs::remove_dir(&path).map_err(|e| errno(&e))?;
        if let Some(ino) = self.inodes.find(inode::key_of(&md)) {
            self.inodes.detach(ino);
        }
        Ok(())
    }

    pub(super) fn rename_entry(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), c_int> {
        if is_stat_name(parent, name) || is_stat_name(newparent, newname) {
            return Err(libc::EPERM);
        }
        let from = self.child(parent, name)?;
        let to = self.child(newparent, newname)?;
        let rflags = rustix::fs::RenameFlags::from_bits(flags).ok_or(libc::EINVAL)?;
        let exchange = rflags.contains(rustix::fs::RenameFlags::EXCHANGE);
        // The file a plain rename replaces, if any.
        let replaced = if exchange {
            None
        } else {
            fs::symlink_metadata(self.full(&to)).ok()
        };
        if let Some(md) = &replaced {
            self.keep_open(inode::key_of(md));
        }
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            self.full(&from),
            rustix::fs::CWD,
            self.full(&to),
            rflags,
        )
        .map_err(|e| e.raw_os_error())?;
        if exchange {
            self.inodes.exchange_paths(&from, &to);
            return Ok(());
        }
        if let Some(md) = replaced {
            if md.nlink() <= 1 && !md.is_dir() {
                self.drop_set_aside(inode::key_of(&md));
            }
            if let Some(ino) = self.inodes.find(inode::key_of(&md)) {
                let moved = self.inodes.get(ino).and_then(|n| n.path.clone());
                // Renaming a hard link onto another link of the same
                // inode is a no-op and removes nothing.
                if moved.as_deref() != Some(from.as_path()) {
                    if md.nlink() <= 1 || md.is_dir() {
                        self.inodes.detach(ino);
                    } else if moved.as_deref() == Some(to.as_path()) {
                        if let Some(node) = self.inodes.get_mut(ino) {
                            node.set_path(None);
                        }
                    }
                }
            }
        }
        self.inodes.rename_paths(&from, &to);
        Ok(())
    }

    pub(super) fn read_dir(&self, ino: u64) -> Result<Dir, c_int> {
        let rel = self.rel(ino)?;
        let path: PathBuf = self.full(&rel);
        let mut entries = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        for entry in fs::read_dir(&path).map_err(|e| errno(&e))? {
            let entry = entry.map_err(|e| errno(&e))?;
            let name = entry.file_name();
            if ino == FUSE_ROOT_ID && name == STAT_NAME {
                continue;
            }
            let kind = match entry.file_type() {
                Ok(t) => inode::kind_of(t_mode(&t)),
                Err(_) => FileType::RegularFile,
            };
            entries.push((
                std::os::unix::fs::DirEntryExt::ino(&entry).max(1),
                kind,
                name,
            ));
        }
        Ok(Dir { entries })
    }
}
