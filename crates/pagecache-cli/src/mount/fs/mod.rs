//! The passthrough filesystem: metadata goes to SOURCE_DIR, file data goes
//! through the page cache.
//!
//! Several threads read requests from the kernel, each from its own
//! cloned `/dev/fuse` descriptor, and answer them where they read them:
//! metadata requests one at a time under the table's lock (they touch the
//! inode table and SOURCE_DIR), reads and writes without it, side by side,
//! as long as that leaves one thread free to read; beyond that, and always
//! for an fsync or the write-back of a closed file (which may take
//! seconds), they run on a [`Pool`] and answer from there.

mod backlog;
mod data;
mod errno;
mod meta;
mod requests;
mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use libc::c_int;
use pagecache::PageCache;
use parking_lot::{Mutex, RwLock};

use super::inode::{self, Data, Inodes, FUSE_ROOT_ID, STAT_INO, STAT_NAME};
use super::pool::Pool;
use super::session::{self, OPEN_FLAGS};
use super::source::{Fds, Source};
use backlog::Backlog;
use errno::{en, errno};
use requests::Requests;

/// How long the kernel may cache attributes and names. All changes go
/// through this filesystem, so the kernel is told of them anyway.
const TTL: Duration = Duration::from_secs(1);

/// An open file.
#[derive(Clone)]
enum Handle {
    /// The counters file, its content generated at open.
    Stat(Arc<Vec<u8>>),
    /// A regular file.
    File(Arc<OpenFile>),
}

/// Open files by handle number. Apart from the table, so that reads and
/// writes never wait for a metadata request (an `O_TRUNC` open may wait
/// for writeback) while they look up their file.
type Handles = Arc<RwLock<HashMap<u64, Handle>>>;

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

/// The filesystem: the table and everything metadata requests change,
/// behind one lock; beside it what reads and writes need, so they can run
/// side by side.
pub struct PassFs {
    inner: Mutex<Inner>,
    handles: Handles,
    requests: Arc<Requests>,
    pool: Arc<Pool>,
    backlog: Arc<Backlog>,
    /// Reads and writes being served on the threads that read them.
    inline: AtomicUsize,
    /// At most this many, so one serving thread is always free to read the
    /// next request however many readers and writers the cache makes wait;
    /// the rest go to the pool.
    inline_max: usize,
}

/// A serving thread's turn at a read or write; given back when dropped.
struct Inline<'a>(&'a AtomicUsize);

impl Drop for Inline<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`PassFs`] guards.
struct Inner {
    source: PathBuf,
    cache: PageCache,
    fds: Arc<Fds>,
    inodes: Inodes,
    handles: Handles,
    dirs: HashMap<u64, Dir>,
    next_fh: u64,
    set_aside: SetAside,
    next_token: u64,
    pool: Arc<Pool>,
    backlog: Arc<Backlog>,
    /// Files the final write-back could not make durable, with the error.
    failures: Arc<Mutex<Vec<String>>>,
    /// Whether new files can be given to their creator (running as root).
    as_root: bool,
    requests: Arc<Requests>,
}

impl PassFs {
    /// A filesystem over `source` (a directory), caching through `cache`,
    /// keeping at most `max_fds` source descriptors open, running fsyncs
    /// and write-backs of closed files on `threads` threads. The final write-back at unmount
    /// records each file it could not make durable in `failures`.
    pub fn new(
        source: PathBuf,
        cache: PageCache,
        max_fds: usize,
        threads: usize,
        failures: Arc<Mutex<Vec<String>>>,
    ) -> io::Result<Self> {
        let md = fs::metadata(&source)?;
        let requests = Arc::new(Requests::default());
        let handles = Handles::default();
        let pool = Arc::new(Pool::new(threads)?);
        // Pinned descriptors come on top of the `max_fds / 2` kept open.
        let backlog = Arc::new(Backlog::new(max_fds / 4));
        let inner = Inner {
            fds: Fds::new(source.clone(), max_fds),
            source,
            cache,
            inodes: Inodes::new(inode::key_of(&md)),
            handles: handles.clone(),
            dirs: HashMap::new(),
            next_fh: 1,
            set_aside: SetAside::default(),
            next_token: 1,
            pool: pool.clone(),
            backlog: backlog.clone(),
            failures,
            as_root: nix::unistd::geteuid().is_root(),
            requests: requests.clone(),
        };
        Ok(PassFs {
            inner: Mutex::new(inner),
            handles,
            requests,
            pool,
            backlog,
            inline: AtomicUsize::new(0),
            inline_max: threads.saturating_sub(1),
        })
    }

    /// A turn at serving a read or write on this thread, if that leaves a
    /// serving thread free.
    fn inline(&self) -> Option<Inline<'_>> {
        if self.inline.fetch_add(1, Ordering::Relaxed) < self.inline_max {
            Some(Inline(&self.inline))
        } else {
            self.inline.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }

    /// Runs a read, write or zeroing on this serving thread if it may take
    /// a turn, else on the pool.
    fn serve(&self, job: impl FnOnce() + Send + 'static) {
        match self.inline() {
            Some(_turn) => job(),
            None => self.pool.run(job),
        }
    }

    /// The open file behind handle `fh`, if it is one.
    fn open_file(&self, fh: FileHandle) -> Option<Arc<OpenFile>> {
        match self.handles.read().get(&fh.0) {
            Some(Handle::File(open)) => Some(open.clone()),
            _ => None,
        }
    }

    /// The table, for one request.
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

impl Inner {
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
        self.requests.write_lines(&mut text);
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
            if let Some(t) = data.source.written() {
                attr.ctime = attr.ctime.max(t);
            }
            if let Some(t) = data.source.mtime() {
                attr.mtime = t;
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
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(en(e)),
        }
    }
}

fn is_stat_name(parent: u64, name: &OsStr) -> bool {
    parent == FUSE_ROOT_ID && name == STAT_NAME
}

impl Filesystem for PassFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        session::negotiate(config);
        Ok(())
    }

    fn destroy(&mut self) {
        self.inner.get_mut().close_all();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut fs = self.lock();
        if is_stat_name(parent.0, name) {
            let attr = inode::stat_attr(fs.stat_text().len() as u64);
            return reply.entry(&TTL, &attr, Generation(0));
        }
        let rel = fs.child(parent.0, name);
        fs.entry(rel, reply)
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut fs = self.lock();
        if let Some(node) = fs.inodes.get_mut(ino.0) {
            node.lookups = node.lookups.saturating_sub(nlookup);
        }
        fs.reap(ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lock().attr_of(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(en(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
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
        match self.lock().set_attr(ino.0, change) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(en(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let target = self.lock().xattr_target(ino.0);
        xattr_reply(target.and_then(|t| xattr::get(&t, name, size)), reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let target = self.lock().xattr_target(ino.0);
        xattr_reply(target.and_then(|t| xattr::list(&t, size)), reply);
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let target = self.lock().xattr_target(ino.0);
        errno::reply_empty(
            reply,
            target.and_then(|t| xattr::set(&t, name, value, flags)),
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let target = self.lock().xattr_target(ino.0);
        errno::reply_empty(reply, target.and_then(|t| xattr::remove(&t, name)));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.lock();
        let result = fs
            .rel(ino.0)
            .and_then(|rel| fs::read_link(fs.full(&rel)).map_err(|e| errno(&e)));
        match result {
            Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(en(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.lock().make_entry(req, parent.0, name, reply, |path| {
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
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        use std::os::unix::fs::DirBuilderExt;
        self.lock().make_entry(req, parent.0, name, reply, |path| {
            fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(path)
                .map_err(|e| errno(&e))
        })
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.lock().remove_file(parent.0, name);
        errno::reply_empty(reply, result)
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.lock().remove_dir(parent.0, name);
        errno::reply_empty(reply, result)
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.lock()
            .make_entry(req, parent.0, link_name, reply, |path| {
                std::os::unix::fs::symlink(target, path).map_err(|e| errno(&e))
            })
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self
            .lock()
            .rename_entry(parent.0, name, newparent.0, newname, flags.bits());
        errno::reply_empty(reply, result)
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (ino, newparent) = (ino.0, newparent.0);
        if is_stat_name(newparent, newname) || ino == STAT_INO {
            return reply.error(Errno::EPERM);
        }
        let mut fs = self.lock();
        let result = (|| -> Result<PathBuf, c_int> {
            let from = fs.rel(ino)?;
            let to = fs.child(newparent, newname)?;
            fs::hard_link(fs.full(&from), fs.full(&to)).map_err(|e| errno(&e))?;
            Ok(to)
        })();
        fs.entry(result, reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.backlog.wait_for_room();
        self.lock().open_file(ino.0, flags.0, reply)
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let handle = self.handles.read().get(&fh.0).cloned();
        // Reads of the counters file would count themselves.
        if let Some(Handle::File(_)) = handle {
            self.requests.read(size as usize);
        }
        self.serve(move || data::read(handle, offset, size, reply));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        buf: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let open = self.open_file(fh);
        self.requests.write(buf.len());
        match self.inline() {
            Some(_turn) => data::write(open, offset, buf, reply),
            None => {
                // The request buffer is reused for the next request.
                let buf = buf.to_vec();
                self.pool
                    .run(move || data::write(open, offset, &buf, reply))
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().release_file(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().sync_file(fh.0, reply)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut fs = self.lock();
        match fs.read_dir(ino.0) {
            Ok(dir) => {
                let fh = fs.new_fh();
                fs.dirs.insert(fh, dir);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(en(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.lock();
        let Some(dir) = fs.dirs.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in dir.entries.iter().enumerate().skip(start) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let path = {
            let fs = self.lock();
            fs.rel(ino.0).map(|rel| fs.full(&rel))
        };
        let result = path.and_then(|path| {
            let dir = fs::File::open(path).map_err(|e| errno(&e))?;
            dir.sync_all().map_err(|e| errno(&e))
        });
        errno::reply_empty(reply, result)
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let source = self.lock().source.clone();
        match rustix::fs::statvfs(&source) {
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
            Err(e) => reply.error(en(e.raw_os_error())),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        if ino.0 == STAT_INO || self.lock().inodes.get(ino.0).is_some() {
            reply.ok();
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.backlog.wait_for_room();
        let mut fs = self.lock();
        let owner = fs.owner(req, parent.0);
        match fs.create_file(parent.0, name, mode & !umask & 0o7777, flags, owner) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(en(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let open = self.open_file(fh);
        // Zeroing a range may wait for the dirty throttle: not on the
        // thread that must stay free to read requests.
        self.serve(move || errno::reply_empty(reply, data::allocate(open, offset, length, mode)));
    }
}

fn xattr_reply(r: Result<xattr::Value, c_int>, reply: ReplyXattr) {
    match r {
        Ok(xattr::Value::Size(n)) => reply.size(n),
        Ok(xattr::Value::Bytes(b)) => reply.data(&b),
        Err(e) => reply.error(en(e)),
    }
}
