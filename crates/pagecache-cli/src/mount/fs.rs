//! The passthrough filesystem: metadata goes to SOURCE_DIR, file data goes
//! through the page cache.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileType, Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, FUSE_ROOT_ID,
};
use libc::c_int;
use pagecache::{FileBackend, PageCache};

use super::inode::{self, Data, ErrLog, Inodes, STAT_INO, STAT_NAME};

/// How long the kernel may cache attributes and names. All changes go
/// through this filesystem, so the kernel is told of them anyway.
const TTL: Duration = Duration::from_secs(1);

/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux 6.6, protocol 7.39): shared mappings
/// of direct-I/O files are allowed. Without it `mmap(MAP_SHARED)` fails
/// with ENODEV (sqlite's WAL index needs it).
const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;

/// An open file.
struct Handle {
    ino: u64,
    write: bool,
    append: bool,
    /// Writeback-error generation this open has seen.
    seen: u64,
    /// Content of the counters file, generated at open.
    stat: Option<Vec<u8>>,
}

/// An open directory: its entries, read at opendir.
struct Dir {
    entries: Vec<(u64, FileType, std::ffi::OsString)>,
}

/// The filesystem.
pub struct PassFs {
    source: PathBuf,
    cache: PageCache,
    inodes: Inodes,
    handles: HashMap<u64, Handle>,
    dirs: HashMap<u64, Dir>,
    next_fh: u64,
    /// Closed files whose writeback failed, by source identity: their dirty
    /// pages are still in the cache (and retried), so a new open of the same
    /// inode must use this mapping, not a new one that would read stale data.
    unsynced: HashMap<inode::Key, Data>,
}

/// errno of an I/O error (EIO when it carries none).
fn errno(e: &io::Error) -> c_int {
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
fn cache_errno(e: pagecache::Error) -> c_int {
    errno(&io::Error::from(e))
}

fn is_stat_name(parent: u64, name: &OsStr) -> bool {
    parent == FUSE_ROOT_ID && name == STAT_NAME
}

fn system_time(t: TimeOrNow) -> rustix::fs::Timespec {
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

impl PassFs {
    /// A filesystem over `source` (a directory), caching through `cache`.
    pub fn new(source: PathBuf, cache: PageCache) -> io::Result<Self> {
        let md = fs::metadata(&source)?;
        Ok(PassFs {
            source,
            cache,
            inodes: Inodes::new(inode::key_of(&md)),
            handles: HashMap::new(),
            dirs: HashMap::new(),
            next_fh: 1,
            unsynced: HashMap::new(),
        })
    }

    fn full(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.source.clone()
        } else {
            self.source.join(rel)
        }
    }

    /// Relative path of `ino`.
    fn rel(&self, ino: u64) -> Result<PathBuf, c_int> {
        match self.inodes.get(ino) {
            Some(node) => node.path.clone().ok_or(libc::ENOENT),
            None => Err(libc::ENOENT),
        }
    }

    /// Relative path of `name` in directory `parent`.
    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, c_int> {
        if name.is_empty() || name.as_encoded_bytes().contains(&b'/') {
            return Err(libc::EINVAL);
        }
        Ok(inode::child(&self.rel(parent)?, name))
    }

    fn stat_text(&self) -> Vec<u8> {
        self.cache.stats().to_string().into_bytes()
    }

    /// Attributes of `ino`.
    fn attr_of(&self, ino: u64) -> Result<fuser::FileAttr, c_int> {
        if ino == STAT_INO {
            return Ok(inode::stat_attr(self.stat_text().len() as u64));
        }
        let node = self.inodes.get(ino).ok_or(libc::ENOENT)?;
        if let Some(data) = &node.data {
            let md = data.fd.metadata().map_err(|e| errno(&e))?;
            let mut attr = inode::attr(ino, &md, Some(data.file.len()));
            if let Some(t) = data.modified {
                attr.mtime = attr.mtime.max(t);
                attr.ctime = attr.ctime.max(t);
            }
            return Ok(attr);
        }
        let rel = node.path.as_ref().ok_or(libc::ENOENT)?;
        let md = fs::symlink_metadata(self.full(rel)).map_err(|e| errno(&e))?;
        Ok(inode::attr(ino, &md, None))
    }

    /// Looks up relative path `rel` in the source, counting a kernel lookup.
    fn lookup_path(&mut self, rel: PathBuf) -> Result<fuser::FileAttr, c_int> {
        let md = fs::symlink_metadata(self.full(&rel)).map_err(|e| errno(&e))?;
        let key = inode::key_of(&md);
        // A node whose source inode was deleted while we held it must not be
        // reused for a new file the source filesystem gave the same number.
        if let Some(ino) = self.inodes.find(key) {
            let stale = match self.inodes.get(ino).and_then(|n| n.data.as_ref()) {
                Some(d) => d.fd.metadata().map(|m| m.nlink() == 0).unwrap_or(true),
                None => false,
            };
            if stale {
                self.inodes.detach(ino);
            }
        }
        let ino = self.inodes.remember(rel, key);
        self.attr_of(ino)
    }

    /// The cached data of regular file `ino`, opening it through the cache
    /// if needed. `write`: the caller will write.
    fn data(&mut self, ino: u64, write: bool) -> Result<&Data, c_int> {
        let has = self.inodes.get(ino).ok_or(libc::ENOENT)?.data.is_some();
        if !has {
            let rel = self.rel(ino)?;
            let path = self.full(&rel);
            let md = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
            if !md.is_file() {
                return Err(if md.is_dir() {
                    libc::EISDIR
                } else {
                    libc::EINVAL
                });
            }
            if let Some(old) = self.unsynced.remove(&inode::key_of(&md)) {
                let node = self.inodes.get_mut(ino).ok_or(libc::ENOENT)?;
                node.data = Some(old);
                return self.data(ino, write);
            }
            let (fd, writable) = match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => (f, true),
                Err(e)
                    if !write
                        && matches!(
                            errno(&e),
                            libc::EACCES | libc::EROFS | libc::EPERM | libc::ETXTBSY
                        ) =>
                {
                    let f = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .map_err(|e| errno(&e))?;
                    (f, false)
                }
                Err(e) => return Err(errno(&e)),
            };
            self.attach(ino, fd, writable)?;
        }
        let data = self
            .inodes
            .get(ino)
            .and_then(|n| n.data.as_ref())
            .ok_or(libc::EIO)?;
        if write && !data.writable {
            return Err(libc::EACCES);
        }
        Ok(data)
    }

    /// Puts source descriptor `fd` of `ino` under the cache.
    fn attach(&mut self, ino: u64, fd: fs::File, writable: bool) -> Result<(), c_int> {
        let backend = FileBackend::from_file(fd.try_clone().map_err(|e| errno(&e))?);
        let file = self.cache.open_backend(backend).map_err(cache_errno)?;
        let node = self.inodes.get_mut(ino).ok_or(libc::ENOENT)?;
        node.data = Some(Data {
            file,
            fd,
            writable,
            errors: ErrLog::default(),
            modified: None,
        });
        Ok(())
    }

    /// Retires cached data no node holds any more: a file still linked in
    /// the source gets its dirty pages written (a later open makes a new
    /// cache mapping that reads the source); a deleted one is dropped. If the
    /// writeback fails, the data is kept for the next open of the inode.
    fn retire(&mut self, data: Data) {
        let md = data.fd.metadata();
        let linked = md.as_ref().map(|m| m.nlink() > 0).unwrap_or(true);
        if !linked {
            if let Err(e) = data.file.set_len(0) {
                eprintln!("pagecache mount: dropping a deleted file: {e}");
            }
            return;
        }
        if let Err(e) = data.file.sync() {
            eprintln!("pagecache mount: writing back a closed file: {e}");
            if let Ok(md) = md {
                self.unsynced.insert(inode::key_of(&md), data);
            }
        }
    }

    /// The source inode `key` was deleted: dirty data kept for it after a
    /// failed writeback has nowhere to go any more.
    fn drop_unsynced(&mut self, key: inode::Key) {
        if let Some(data) = self.unsynced.remove(&key) {
            if let Err(e) = data.file.set_len(0) {
                eprintln!("pagecache mount: dropping a deleted file: {e}");
            }
        }
    }

    fn new_fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }

    /// Registers an open of `ino`; returns the file handle.
    fn open_handle(&mut self, ino: u64, flags: i32) -> Result<u64, c_int> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let data = self.data(ino, write)?;
        if write && flags & libc::O_TRUNC != 0 {
            data.file.set_len(0).map_err(cache_errno)?;
        }
        let seen = data.errors.sample();
        self.inodes.mark_busy(ino);
        if let Some(node) = self.inodes.get_mut(ino) {
            node.opens += 1;
        }
        let fh = self.new_fh();
        self.handles.insert(
            fh,
            Handle {
                ino,
                write,
                append: flags & libc::O_APPEND != 0,
                seen,
                stat: None,
            },
        );
        Ok(fh)
    }

    /// Syncs the file behind handle `fh`; reports each writeback error to
    /// each open once, like the kernel's errseq.
    fn sync_handle(&mut self, fh: u64) -> Result<(), c_int> {
        let handle = self.handles.get_mut(&fh).ok_or(libc::EBADF)?;
        if handle.stat.is_some() {
            return Ok(());
        }
        let node = self.inodes.get_mut(handle.ino).ok_or(libc::EBADF)?;
        let data = node.data.as_mut().ok_or(libc::EBADF)?;
        let result = data.file.sync();
        let log = &mut data.errors;
        match result {
            Ok(()) => {}
            Err(pagecache::Error::Writeback { source, .. }) => {
                log.generation += 1;
                log.errno = source.raw_os_error().unwrap_or(libc::EIO);
            }
            Err(e) => return Err(cache_errno(e)),
        }
        if handle.seen < log.generation {
            handle.seen = log.generation;
            log.seen = true;
            return Err(log.errno);
        }
        Ok(())
    }

    /// Drops node `ino` if nothing references it any more.
    fn reap(&mut self, ino: u64) {
        if let Some(data) = self.inodes.maybe_remove(ino) {
            self.retire(data);
        }
    }

    /// Answers with the entry of `rel`, or the error that came instead.
    fn entry(&mut self, rel: Result<PathBuf, c_int>, reply: ReplyEntry) {
        match rel.and_then(|rel| self.lookup_path(rel)) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    /// Makes `name` in `parent` with `make`, given its full path, and answers
    /// with its entry. The stat file's name is taken.
    fn make_entry(
        &mut self,
        parent: u64,
        name: &OsStr,
        reply: ReplyEntry,
        make: impl FnOnce(&Path) -> Result<(), c_int>,
    ) {
        if is_stat_name(parent, name) {
            return reply.error(libc::EEXIST);
        }
        let result = self.child(parent, name).and_then(|rel| {
            make(&self.full(&rel))?;
            Ok(rel)
        });
        self.entry(result, reply)
    }

    /// Writes back and closes every cached file (at unmount). What cannot
    /// be written stays dirty in the cache, for the final `sync_all` to
    /// report.
    pub fn close_all(&mut self) {
        for data in self.inodes.drain_data() {
            self.retire(data);
        }
        self.unsynced.clear();
    }
}

impl Filesystem for PassFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), c_int> {
        let _ = config.set_max_write(MAX_WRITE);
        // Refused by kernels before 6.6: shared mappings then fail with ENODEV.
        let _ = config.add_capabilities(FUSE_DIRECT_IO_ALLOW_MMAP);
        Ok(())
    }

    fn destroy(&mut self) {
        self.close_all();
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        if is_stat_name(parent, name) {
            let attr = inode::stat_attr(self.stat_text().len() as u64);
            return reply.entry(&TTL, &attr, 0);
        }
        self.entry(self.child(parent, name), reply)
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        if let Some(node) = self.inodes.get_mut(ino) {
            node.lookups = node.lookups.saturating_sub(nlookup);
        }
        self.reap(ino);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr_of(ino) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        if ino == STAT_INO {
            return reply.error(libc::EPERM);
        }
        let result = (|| -> Result<(), c_int> {
            if let Some(len) = size {
                let data = self.data(ino, true)?;
                data.file.set_len(len).map_err(cache_errno)?;
                // A file truncated without being opened is idle.
                if let Some(old) = self.inodes.mark_idle(ino) {
                    self.retire(old);
                }
            }
            let path = self.full(&self.rel(ino)?);
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| errno(&e))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(|e| errno(&e))?;
            }
            if atime.is_some() || mtime.is_some() {
                let omit = rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                };
                let times = rustix::fs::Timestamps {
                    last_access: atime.map(system_time).unwrap_or(omit),
                    last_modification: mtime.map(system_time).unwrap_or(omit),
                };
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    &path,
                    &times,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| e.raw_os_error())?;
            }
            Ok(())
        })();
        match result.and_then(|()| self.attr_of(ino)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let result = self
            .rel(ino)
            .and_then(|rel| fs::read_link(self.full(&rel)).map_err(|e| errno(&e)));
        match result {
            Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.make_entry(parent, name, reply, |path| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::from_raw_mode(mode),
                rustix::fs::Mode::from_raw_mode(mode & !umask & 0o7777),
                rdev.into(),
            )
            .map_err(|e| e.raw_os_error())
        })
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.make_entry(parent, name, reply, |path| {
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(path)
                .map_err(|e| errno(&e))
        })
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if is_stat_name(parent, name) {
            return reply.error(libc::EPERM);
        }
        let result = self.child(parent, name).and_then(|rel| {
            let path = self.full(&rel);
            let md = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
            fs::remove_file(&path).map_err(|e| errno(&e))?;
            if md.nlink() <= 1 {
                self.drop_unsynced(inode::key_of(&md));
            }
            if let Some(ino) = self.inodes.find(inode::key_of(&md)) {
                if md.nlink() <= 1 {
                    self.inodes.detach(ino);
                } else if let Some(node) = self.inodes.get_mut(ino) {
                    if node.path.as_deref() == Some(rel.as_path()) {
                        node.path = None;
                    }
                }
            }
            Ok(())
        });
        reply_empty(reply, result)
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let result = self.child(parent, name).and_then(|rel| {
            let path = self.full(&rel);
            let md = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
            fs::remove_dir(&path).map_err(|e| errno(&e))?;
            if let Some(ino) = self.inodes.find(inode::key_of(&md)) {
                self.inodes.detach(ino);
            }
            Ok(())
        });
        reply_empty(reply, result)
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.make_entry(parent, link_name, reply, |path| {
            std::os::unix::fs::symlink(target, path).map_err(|e| errno(&e))
        })
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if is_stat_name(parent, name) || is_stat_name(newparent, newname) {
            return reply.error(libc::EPERM);
        }
        let result = (|| -> Result<(), c_int> {
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
                    self.drop_unsynced(inode::key_of(&md));
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
                                node.path = None;
                            }
                        }
                    }
                }
            }
            self.inodes.rename_paths(&from, &to);
            Ok(())
        })();
        reply_empty(reply, result)
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        if is_stat_name(newparent, newname) || ino == STAT_INO {
            return reply.error(libc::EPERM);
        }
        let result = (|| -> Result<PathBuf, c_int> {
            let from = self.rel(ino)?;
            let to = self.child(newparent, newname)?;
            fs::hard_link(self.full(&from), self.full(&to)).map_err(|e| errno(&e))?;
            Ok(to)
        })();
        self.entry(result, reply)
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if ino == STAT_INO {
            let acc = flags & libc::O_ACCMODE;
            if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                return reply.error(libc::EACCES);
            }
            let fh = self.new_fh();
            let text = self.stat_text();
            self.handles.insert(
                fh,
                Handle {
                    ino,
                    write: false,
                    append: false,
                    seen: 0,
                    stat: Some(text),
                },
            );
            return reply.opened(fh, FOPEN_DIRECT_IO);
        }
        match self.open_handle(ino, flags) {
            Ok(fh) => reply.opened(fh, FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(handle) = self.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        if let Some(text) = &handle.stat {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(text.len());
            let end = start.saturating_add(size as usize).min(text.len());
            return reply.data(&text[start..end]);
        }
        let Some(data) = self.inodes.get(handle.ino).and_then(|n| n.data.as_ref()) else {
            return reply.error(libc::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        match data.file.read_at(&mut buf, offset) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(cache_errno(e)),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        buf: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some(handle) = self.handles.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        if !handle.write {
            return reply.error(libc::EBADF);
        }
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        let append = handle.append;
        let ino = handle.ino;
        let Some(data) = self.inodes.get_mut(ino).and_then(|n| n.data.as_mut()) else {
            return reply.error(libc::EBADF);
        };
        let offset = if append { data.file.len() } else { offset };
        data.modified = Some(SystemTime::now());
        match data.file.write_at(buf, offset) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(cache_errno(e)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(handle) = self.handles.remove(&fh) {
            if handle.stat.is_none() {
                let ino = handle.ino;
                if let Some(node) = self.inodes.get_mut(ino) {
                    node.opens = node.opens.saturating_sub(1);
                }
                if let Some(old) = self.inodes.mark_idle(ino) {
                    self.retire(old);
                }
                self.reap(ino);
            }
        }
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.sync_handle(fh))
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let result = (|| -> Result<Dir, c_int> {
            let rel = self.rel(ino)?;
            let path = self.full(&rel);
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
        })();
        match result {
            Ok(dir) => {
                let fh = self.new_fh();
                self.dirs.insert(fh, dir);
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let Some(dir) = self.dirs.get(&fh) else {
            return reply.error(libc::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(0);
        for (i, (ino, kind, name)) in dir.entries.iter().enumerate().skip(start) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        self.dirs.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.rel(ino).and_then(|rel| {
            let dir = fs::File::open(self.full(&rel)).map_err(|e| errno(&e))?;
            dir.sync_all().map_err(|e| errno(&e))
        });
        reply_empty(reply, result)
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.source) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize.try_into().unwrap_or(4096),
                s.f_namemax.try_into().unwrap_or(255),
                s.f_frsize.try_into().unwrap_or(4096),
            ),
            Err(e) => reply.error(e.raw_os_error()),
        }
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        if ino == STAT_INO || self.inodes.get(ino).is_some() {
            reply.ok();
        } else {
            reply.error(libc::ENOENT);
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if is_stat_name(parent, name) {
            return reply.error(libc::EEXIST);
        }
        let result = (|| -> Result<(fuser::FileAttr, u64), c_int> {
            let rel = self.child(parent, name)?;
            let mut opts = OpenOptions::new();
            opts.read(true)
                .write(true)
                .mode(mode & !umask & 0o7777)
                .custom_flags(libc::O_NOFOLLOW);
            if flags & libc::O_EXCL != 0 {
                opts.create_new(true);
            } else {
                opts.create(true);
            }
            let fd = opts.open(self.full(&rel)).map_err(|e| errno(&e))?;
            self.lookup_path(rel)?;
            let md = fd.metadata().map_err(|e| errno(&e))?;
            let ino = self.inodes.find(inode::key_of(&md)).ok_or(libc::EIO)?;
            if self.inodes.get(ino).is_some_and(|n| n.data.is_none()) {
                self.attach(ino, fd, true)?;
            }
            let fh = self.open_handle(ino, flags)?;
            Ok((self.attr_of(ino)?, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, 0, fh, FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = (|| -> Result<(), c_int> {
            let handle = self.handles.get(&fh).ok_or(libc::EBADF)?;
            if !handle.write {
                return Err(libc::EBADF);
            }
            let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
                return Err(libc::EINVAL);
            };
            let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
            let data = self
                .inodes
                .get(handle.ino)
                .and_then(|n| n.data.as_ref())
                .ok_or(libc::EBADF)?;
            match mode {
                // Reserve without changing the size: nothing visible to do.
                libc::FALLOC_FL_KEEP_SIZE => Ok(()),
                0 => {
                    if end > data.file.len() {
                        data.file.set_len(end).map_err(cache_errno)?;
                    }
                    Ok(())
                }
                _ => Err(libc::EOPNOTSUPP),
            }
        })();
        reply_empty(reply, result)
    }
}

/// Answers an operation that returns nothing but success or an errno.
fn reply_empty(reply: ReplyEmpty, result: Result<(), c_int>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn t_mode(t: &fs::FileType) -> u32 {
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
