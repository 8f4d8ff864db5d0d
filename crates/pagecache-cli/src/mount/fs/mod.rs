//! The passthrough filesystem: metadata goes to SOURCE_DIR, file data goes
//! through the page cache.
//!
//! One thread reads requests and answers the ones that only touch the inode
//! table and SOURCE_DIR's metadata; requests that may wait on the cache
//! (read, write, fsync, writing back a closed file) run on a [`Pool`] and
//! answer from there.

mod data;
mod errno;
mod meta;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, FUSE_ROOT_ID,
};
use libc::c_int;
use pagecache::PageCache;
use parking_lot::Mutex;

use super::inode::{self, Data, Inodes, STAT_INO, STAT_NAME};
use super::pool::Pool;
use super::source::{Fds, Source};
use errno::errno;

/// How long the kernel may cache attributes and names. All changes go
/// through this filesystem, so the kernel is told of them anyway.
const TTL: Duration = Duration::from_secs(1);

/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// Requests the kernel keeps in flight in the background (readahead,
/// asynchronous direct I/O) before it blocks submitters.
const MAX_BACKGROUND: u16 = 64;

/// `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux 6.6, protocol 7.39): shared mappings
/// of direct-I/O files are allowed. Without it `mmap(MAP_SHARED)` fails
/// with ENODEV (sqlite's WAL index needs it).
const FUSE_DIRECT_IO_ALLOW_MMAP: u64 = 1 << 36;

/// `FOPEN_PARALLEL_DIRECT_WRITES` (Linux 6.2): the kernel may send several
/// writes of one file at once, except appends and writes past the end,
/// which it still sends alone (older kernels ignore the flag).
const FOPEN_PARALLEL_DIRECT_WRITES: u32 = 1 << 6;

/// How regular files are opened: no kernel page cache (the data is cached
/// here, once), and concurrent writes where the kernel allows them.
const OPEN_FLAGS: u32 = fuser::consts::FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;

/// An open file.
enum Handle {
    /// The counters file, its content generated at open.
    Stat(Vec<u8>),
    /// A regular file.
    File(OpenFile),
}

/// An open regular file: its own library handle, so each open sees each
/// writeback error once at fsync.
struct OpenFile {
    ino: u64,
    write: bool,
    append: bool,
    file: pagecache::File,
    source: Arc<Source>,
}

/// An open directory: its entries, read at opendir.
struct Dir {
    entries: Vec<(u64, fuser::FileType, std::ffi::OsString)>,
}

/// Cached files the inode table let go of whose writeback has not (yet)
/// succeeded, by source identity, with the token of the retirement: their
/// dirty pages are still in the cache, so a new open of the same inode must
/// use this mapping, not a new one that would read stale data.
type SetAside = Arc<Mutex<HashMap<inode::Key, (u64, Data)>>>;

/// The filesystem.
pub struct PassFs {
    source: PathBuf,
    cache: PageCache,
    fds: Arc<Fds>,
    inodes: Inodes,
    handles: HashMap<u64, Handle>,
    dirs: HashMap<u64, Dir>,
    next_fh: u64,
    set_aside: SetAside,
    next_token: u64,
    pool: Pool,
    /// Files the final write-back could not make durable, with the error.
    failures: Arc<Mutex<Vec<String>>>,
    /// Whether new files can be given to their creator (running as root).
    as_root: bool,
}

impl PassFs {
    /// A filesystem over `source` (a directory), caching through `cache`,
    /// keeping at most `max_fds` source descriptors open, serving slow
    /// requests on `threads` threads. The final write-back at unmount
    /// records each file it could not make durable in `failures`.
    pub fn new(
        source: PathBuf,
        cache: PageCache,
        max_fds: usize,
        threads: usize,
        failures: Arc<Mutex<Vec<String>>>,
    ) -> io::Result<Self> {
        let md = fs::metadata(&source)?;
        Ok(PassFs {
            fds: Fds::new(source.clone(), max_fds),
            source,
            cache,
            inodes: Inodes::new(inode::key_of(&md)),
            handles: HashMap::new(),
            dirs: HashMap::new(),
            next_fh: 1,
            set_aside: SetAside::default(),
            next_token: 1,
            pool: Pool::new(threads)?,
            failures,
            as_root: nix::unistd::geteuid().is_root(),
        })
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.fds.full(rel)
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

    /// The cache's counters, then the mount's own.
    fn stat_text(&self) -> Vec<u8> {
        let mut text = self.cache.stats().to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("mount_source_fds {}\n", self.fds.open_count()));
        text.into_bytes()
    }

    /// Attributes of `ino`.
    fn attr_of(&self, ino: u64) -> Result<fuser::FileAttr, c_int> {
        if ino == STAT_INO {
            return Ok(inode::stat_attr(self.stat_text().len() as u64));
        }
        let node = self.inodes.get(ino).ok_or(libc::ENOENT)?;
        if let Some(data) = &node.data {
            let md = data.source.metadata().map_err(|e| errno(&e))?;
            let mut attr = inode::attr(ino, &md, Some(data.file.len()));
            if let Some(t) = data.source.modified() {
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
                Some(d) => d.source.metadata().map(|m| m.nlink() == 0).unwrap_or(true),
                None => false,
            };
            if stale {
                self.inodes.detach(ino);
            }
        }
        let ino = self.inodes.remember(rel, key);
        self.attr_of(ino)
    }

    fn new_fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }

    /// Answers with the entry of `rel`, or the error that came instead.
    fn entry(&mut self, rel: Result<PathBuf, c_int>, reply: ReplyEntry) {
        match rel.and_then(|rel| self.lookup_path(rel)) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }
}

fn is_stat_name(parent: u64, name: &OsStr) -> bool {
    parent == FUSE_ROOT_ID && name == STAT_NAME
}

impl Filesystem for PassFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), c_int> {
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
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
        let change = meta::Change {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        match self.set_attr(ino, change) {
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
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.make_entry(req, parent, name, reply, |path| {
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
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        use std::os::unix::fs::DirBuilderExt;
        self.make_entry(req, parent, name, reply, |path| {
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(path)
                .map_err(|e| errno(&e))
        })
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let result = self.remove_file(parent, name);
        errno::reply_empty(reply, result)
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let result = self.remove_dir(parent, name);
        errno::reply_empty(reply, result)
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.make_entry(req, parent, link_name, reply, |path| {
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
        let result = self.rename_entry(parent, name, newparent, newname, flags);
        errno::reply_empty(reply, result)
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
        self.open_file(ino, flags, reply)
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
        self.read_file(fh, offset, size, reply)
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
        self.write_file(fh, offset, buf, reply)
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
        self.release_file(fh);
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
        self.sync_file(fh, reply)
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.read_dir(ino) {
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
        errno::reply_empty(reply, result)
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
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let owner = self.owner(req, parent);
        match self.create_file(parent, name, mode & !umask & 0o7777, flags, owner) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, 0, fh, OPEN_FLAGS),
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
        let result = self.allocate(fh, offset, length, mode);
        errno::reply_empty(reply, result)
    }
}
