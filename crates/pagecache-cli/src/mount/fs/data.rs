//! The data path: opens, reads, writes, fsync, and letting go of cached
//! files.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use fuser::{Errno, FileHandle, FopenFlags, ReplyData, ReplyEmpty, ReplyOpen, ReplyWrite};
use libc::c_int;

use super::errno::{cache_errno, en, errno};
use super::meta::Owner;
use super::{is_stat_name, Handle, Inner, OpenFile, SetAside, OPEN_FLAGS, STAT_INO};
use crate::mount::inode::{self, Data};
use crate::mount::source::{Source, SourceBackend};

/// Whether opening for writing failed only because the file may not be
/// written, so a read-only open can still serve readers.
fn read_only_error(e: c_int) -> bool {
    matches!(e, libc::EACCES | libc::EROFS | libc::EPERM | libc::ETXTBSY)
}

impl Inner {
    /// The cached data of regular file `ino`, put under the cache if it is
    /// not yet. `write`: the caller will write.
    pub(super) fn data(&mut self, ino: u64, write: bool) -> Result<Data, c_int> {
        let node = self.inodes.get(ino).ok_or(libc::ENOENT)?;
        let data = match &node.data {
            Some(data) => data.clone(),
            None => {
                let rel = node.path.clone().ok_or(libc::ENOENT)?;
                let path = self.full(&rel);
                let md = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
                if !md.is_file() {
                    return Err(if md.is_dir() {
                        libc::EISDIR
                    } else {
                        libc::EINVAL
                    });
                }
                let kept = self.set_aside.lock().remove(&inode::key_of(&md));
                match kept {
                    Some((_, old)) => {
                        let node = self.inodes.get_mut(ino).ok_or(libc::ENOENT)?;
                        old.source.set_rel(Some(rel));
                        node.data = Some(old.clone());
                        old
                    }
                    None => {
                        let open = |write| {
                            OpenOptions::new()
                                .read(true)
                                .write(write)
                                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                                .open(&path)
                                .map_err(|e| errno(&e))
                        };
                        let (fd, writable) = match open(true) {
                            Ok(fd) => (fd, true),
                            Err(e) if !write && read_only_error(e) => (open(false)?, false),
                            Err(e) => return Err(e),
                        };
                        self.attach(ino, rel, fd, writable)?
                    }
                }
            }
        };
        if write && !data.source.writable {
            return Err(libc::EACCES);
        }
        Ok(data)
    }

    /// Puts source descriptor `fd` of `ino` (at `rel`) under the cache.
    fn attach(
        &mut self,
        ino: u64,
        rel: PathBuf,
        fd: fs::File,
        writable: bool,
    ) -> Result<Data, c_int> {
        let source = Arc::new(Source::new(&self.fds, rel, fd, writable).map_err(|e| errno(&e))?);
        let file = self
            .cache
            .open_backend(SourceBackend(source.clone()))
            .map_err(cache_errno)?;
        let data = Data { file, source };
        let node = self.inodes.get_mut(ino).ok_or(libc::ENOENT)?;
        node.data = Some(data.clone());
        Ok(data)
    }

    /// Lets go of cached data no node holds any more, on a worker: a file
    /// still linked in the source gets its dirty pages written (a later open
    /// makes a new cache mapping that reads the source); a deleted one is
    /// dropped. Until that succeeds the data is set aside for the next open
    /// of the inode, and its descriptor is kept (its path is no longer
    /// followed).
    pub(super) fn retire(&mut self, data: Data) {
        let _ = data.source.pin();
        let token = self.next_token;
        self.next_token += 1;
        self.set_aside
            .lock()
            .insert(data.source.key, (token, data.clone()));
        let set_aside = self.set_aside.clone();
        let backlog = self.backlog.clone();
        backlog.start();
        self.pool.run(move || {
            let linked = data
                .source
                .metadata()
                .map(|m| m.nlink() > 0)
                .unwrap_or(true);
            let result = if linked {
                // A new handle: report a failure of this write-back, not
                // one some open already saw.
                data.file.reopen().sync()
            } else {
                data.file.set_len(0)
            };
            match result {
                Ok(()) => {
                    forget_set_aside(&set_aside, &data, token);
                    data.source.unpin();
                }
                Err(e) => eprintln!(
                    "pagecache mount: writing back a closed file {}: {e}",
                    data.source.display_path()
                ),
            }
            backlog.done();
        });
    }

    /// The source inode `key` was deleted: dirty data set aside for it has
    /// nowhere to go any more.
    pub(super) fn drop_set_aside(&mut self, key: inode::Key) {
        if let Some((_, data)) = self.set_aside.lock().remove(&key) {
            self.pool.run(move || {
                if let Err(e) = data.file.set_len(0) {
                    eprintln!("pagecache mount: dropping a deleted file: {e}");
                }
            });
        }
    }

    /// Drops node `ino` if nothing references it any more.
    pub(super) fn reap(&mut self, ino: u64) {
        if let Some(data) = self.inodes.maybe_remove(ino) {
            self.retire(data);
        }
    }

    /// Registers an open of `ino`; returns the file handle.
    fn open_handle(&mut self, ino: u64, flags: i32) -> Result<u64, c_int> {
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let data = self.data(ino, write)?;
        if write && flags & libc::O_TRUNC != 0 {
            data.file.set_len(0).map_err(cache_errno)?;
            data.source.touch();
        }
        self.inodes.mark_busy(ino);
        if let Some(node) = self.inodes.get_mut(ino) {
            node.opens += 1;
        }
        let fh = self.new_fh();
        self.handles.write().insert(
            fh,
            Handle::File(Arc::new(OpenFile {
                ino,
                write,
                append: flags & libc::O_APPEND != 0,
                file: data.file.reopen(),
                source: data.source,
            })),
        );
        Ok(fh)
    }

    pub(super) fn open_file(&mut self, ino: u64, flags: i32, reply: ReplyOpen) {
        if ino == STAT_INO {
            let acc = flags & libc::O_ACCMODE;
            if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                return reply.error(Errno::EACCES);
            }
            let fh = self.new_fh();
            let text = self.stat_text();
            self.handles
                .write()
                .insert(fh, Handle::Stat(Arc::new(text)));
            return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
        }
        match self.open_handle(ino, flags) {
            Ok(fh) => reply.opened(FileHandle(fh), OPEN_FLAGS),
            Err(e) => reply.error(en(e)),
        }
    }

    /// Syncs the file behind handle `fh`: each writeback error is reported
    /// to each open once, by the library's per-handle error cursor.
    pub(super) fn sync_file(&mut self, fh: u64, reply: ReplyEmpty) {
        match self.handles.read().get(&fh) {
            None => reply.error(Errno::EBADF),
            Some(Handle::Stat(_)) => reply.ok(),
            Some(Handle::File(open)) => {
                let file = open.file.clone();
                self.pool.run(move || match file.sync() {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(en(cache_errno(e))),
                });
            }
        }
    }

    pub(super) fn release_file(&mut self, fh: u64) {
        let removed = self.handles.write().remove(&fh);
        if let Some(Handle::File(open)) = removed {
            let ino = open.ino;
            if let Some(node) = self.inodes.get_mut(ino) {
                node.opens = node.opens.saturating_sub(1);
            }
            if let Some(old) = self.inodes.mark_idle(ino) {
                self.retire(old);
            }
            self.reap(ino);
        }
    }

    pub(super) fn create_file(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        owner: Owner,
    ) -> Result<(fuser::FileAttr, u64), c_int> {
        if is_stat_name(parent, name) {
            return Err(libc::EEXIST);
        }
        let rel = self.child(parent, name)?;
        let path = self.full(&rel);
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if flags & libc::O_EXCL != 0 {
            opts.create_new(true);
        } else {
            opts.create(true);
        }
        let existed = fs::symlink_metadata(&path).is_ok();
        let fd = opts.open(&path).map_err(|e| errno(&e))?;
        if !existed {
            owner.give(&path)?;
        }
        self.lookup_path(rel.clone())?;
        let md = fd.metadata().map_err(|e| errno(&e))?;
        let ino = self.inodes.find(inode::key_of(&md)).ok_or(libc::EIO)?;
        if self.inodes.get(ino).is_some_and(|n| n.data.is_none())
            && !self.set_aside.lock().contains_key(&inode::key_of(&md))
        {
            self.attach(ino, rel, fd, true)?;
        }
        let fh = self.open_handle(ino, flags)?;
        Ok((self.attr_of(ino)?, fh))
    }

    /// The final write-back at unmount: waits for the workers, then writes
    /// back every cached file, records each one that could not be made
    /// durable, and lets them go.
    pub fn close_all(&mut self) {
        self.pool.join();
        let mut all: Vec<Data> = self.inodes.drain_data();
        all.extend(self.set_aside.lock().drain().map(|(_, (_, d))| d));
        let mut failures = Vec::new();
        for data in all {
            let linked = data
                .source
                .metadata()
                .map(|m| m.nlink() > 0)
                .unwrap_or(true);
            if !linked {
                continue;
            }
            if let Err(e) = data.file.reopen().sync() {
                failures.push(format!("{}: {e}", data.source.display_path()));
            }
        }
        self.failures.lock().extend(failures);
    }
}

/// Forgets the set-aside entry of `data` if it is still the one retirement
/// `token` put there (a new open may have taken it back, and a later
/// retirement replaced it).
fn forget_set_aside(set_aside: &SetAside, data: &Data, token: u64) {
    let mut map = set_aside.lock();
    if map.get(&data.source.key).is_some_and(|(t, _)| *t == token) {
        map.remove(&data.source.key);
    }
}

/// Serves a read of `handle` on the thread that received it: a read waits
/// at most for its own pages, and the table is not held meanwhile.
pub(super) fn read(handle: Option<Handle>, offset: u64, size: u32, reply: ReplyData) {
    match handle {
        None => reply.error(Errno::EBADF),
        Some(Handle::Stat(text)) => {
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(text.len());
            let end = start.saturating_add(size as usize).min(text.len());
            reply.data(&text[start..end])
        }
        Some(Handle::File(open)) => {
            let mut buf = vec![0u8; size as usize];
            match open.file.read_at(&mut buf, offset) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(en(cache_errno(e))),
            }
        }
    }
}

/// Serves a write on the thread that received it, straight from the
/// request buffer. A writer the dirty throttle paces holds only this
/// thread; the others go on serving.
pub(super) fn write(open: Option<Arc<OpenFile>>, offset: u64, buf: &[u8], reply: ReplyWrite) {
    let Some(open) = open.filter(|open| open.write) else {
        return reply.error(Errno::EBADF);
    };
    // The kernel sends an append (or any write past the end) only when no
    // other write of the file is in flight, so the end read here is where
    // this append lands.
    let offset = if open.append { open.file.len() } else { offset };
    open.source.touch();
    match open.file.write_at(buf, offset) {
        Ok(n) => reply.written(n as u32),
        Err(e) => reply.error(en(cache_errno(e))),
    }
}

/// `fallocate` on an open file. Reserving space (with or without growing
/// the file) needs nothing of the cache but the new size. Punching a hole
/// or zeroing a range writes zeros through the cache, so reads see zeros at
/// once and the source gets them at write-back: the data is what the call
/// promises, but the source's blocks are not freed. Collapsing or inserting
/// a range is refused (`EOPNOTSUPP`), as by many file systems.
pub(super) fn allocate(
    open: Option<Arc<OpenFile>>,
    offset: u64,
    length: u64,
    mode: i32,
) -> Result<(), c_int> {
    let Some(open) = open.filter(|open| open.write) else {
        return Err(libc::EBADF);
    };
    let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
    let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
    let len = open.file.len();
    match mode & !libc::FALLOC_FL_KEEP_SIZE {
        // Reserve: nothing visible to do but the size.
        0 => {}
        libc::FALLOC_FL_PUNCH_HOLE if keep_size => zero(&open, offset, end.min(len))?,
        libc::FALLOC_FL_ZERO_RANGE => {
            zero(&open, offset, if keep_size { end.min(len) } else { end })?
        }
        _ => return Err(libc::EOPNOTSUPP),
    }
    if !keep_size && end > open.file.len() {
        open.file.set_len(end).map_err(cache_errno)?;
        open.source.touch();
    }
    Ok(())
}

/// Writes zeros over `[from, to)` of an open file.
fn zero(open: &OpenFile, from: u64, to: u64) -> Result<(), c_int> {
    static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
    if from >= to {
        return Ok(());
    }
    open.source.touch();
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        match open.file.write_at(&ZEROS[..n], at).map_err(cache_errno)? {
            0 => return Err(libc::EIO),
            done => at += done as u64,
        }
    }
    Ok(())
}
