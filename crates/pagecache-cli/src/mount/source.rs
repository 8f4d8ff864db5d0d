//! Source files under the cache, with their descriptors opened on demand.
//!
//! A cached file's mapping lives as long as its pages, but its descriptor
//! need not: a tree of thousands of files would otherwise hold thousands of
//! descriptors and run the mount out of them. [`Fds`] keeps a bounded set of
//! open descriptors, closes the least recently used one when it needs room,
//! and [`Source::fd`] reopens a file by its current path (checking it is
//! still the same inode) when its descriptor was closed. A file that lost
//! its last name while in use cannot be reopened, so its descriptor is
//! pinned before the name goes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use super::inode::Key;

/// The open descriptors of source files, least recently used first out.
pub struct Fds {
    root: PathBuf,
    capacity: usize,
    lru: Mutex<Lru>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Lru {
    open: HashMap<u64, Slot>,
    /// Unpinned open descriptors by last use.
    order: BTreeMap<u64, u64>,
    clock: u64,
}

struct Slot {
    fd: Arc<fs::File>,
    stamp: u64,
    pins: usize,
}

impl Lru {
    fn touch(&mut self, id: u64) -> Option<Arc<fs::File>> {
        let slot = self.open.get_mut(&id)?;
        // The most recently used slot already has the newest stamp: a file
        // streamed by one client reorders nothing.
        if slot.stamp != self.clock {
            self.clock += 1;
            if slot.pins == 0 {
                self.order.remove(&slot.stamp);
                self.order.insert(self.clock, id);
            }
            slot.stamp = self.clock;
        }
        Some(slot.fd.clone())
    }

    fn insert(&mut self, id: u64, fd: Arc<fs::File>, capacity: usize) -> Arc<fs::File> {
        if let Some(fd) = self.touch(id) {
            return fd;
        }
        while self.order.len() >= capacity {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            // Closed when the last request using it is done with it.
            self.open.remove(&victim);
        }
        self.clock += 1;
        self.order.insert(self.clock, id);
        self.open.insert(
            id,
            Slot {
                fd: fd.clone(),
                stamp: self.clock,
                pins: 0,
            },
        );
        fd
    }

    fn remove(&mut self, id: u64) {
        if let Some(slot) = self.open.remove(&id) {
            if slot.pins == 0 {
                self.order.remove(&slot.stamp);
            }
        }
    }
}

impl Fds {
    /// Descriptors of files under `root`, at most `capacity` unpinned ones
    /// open at once.
    pub fn new(root: PathBuf, capacity: usize) -> Arc<Self> {
        Arc::new(Fds {
            root,
            capacity: capacity.max(1),
            lru: Mutex::new(Lru::default()),
            next_id: AtomicU64::new(1),
        })
    }

    /// How many descriptors are open now (pinned ones included).
    pub fn open_count(&self) -> usize {
        self.lru.lock().open.len()
    }

    /// The full path of `rel`.
    pub fn full(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }
}

/// A regular file of SOURCE_DIR whose data is cached.
pub struct Source {
    id: u64,
    /// Identity, checked on every reopen.
    pub key: Key,
    /// Whether it could be opened for writing.
    pub writable: bool,
    /// Large writes may go through an `O_DIRECT` descriptor (cleared when
    /// the source's file system refuses one).
    direct: AtomicBool,
    /// Path relative to SOURCE_DIR; `None` once its last known name is gone.
    rel: Mutex<Option<PathBuf>>,
    /// Nanoseconds since the epoch of the last write through the mount; 0:
    /// none. The source's ctime only moves at writeback.
    written: AtomicU64,
    /// The file's modification time as its users see it, in nanoseconds
    /// since the epoch; 0: the source's own. A write through the mount sets
    /// it to the time of the write, and so does a `utimensat` to the time
    /// asked for. The source's own mtime is that of the last writeback,
    /// which is later, so it is set to this one after each backend sync:
    /// a program that writes a file and then sets its time (`tar`,
    /// `rsync -t`, `cp -p`) finds that time in the source too.
    mtime: AtomicU64,
    fds: Arc<Fds>,
}

impl Source {
    /// A source file at `rel`, whose descriptor `fd` has just been opened.
    pub fn new(fds: &Arc<Fds>, rel: PathBuf, fd: fs::File, writable: bool) -> io::Result<Self> {
        let key = super::inode::key_of(&fd.metadata()?);
        // Two ids: the buffered descriptor's, and the next one for the
        // `O_DIRECT` descriptor's own entry.
        let id = fds.next_id.fetch_add(2, Ordering::Relaxed);
        fds.lru.lock().insert(id, Arc::new(fd), fds.capacity);
        Ok(Source {
            id,
            key,
            writable,
            direct: AtomicBool::new(writable),
            rel: Mutex::new(Some(rel)),
            written: AtomicU64::new(0),
            mtime: AtomicU64::new(0),
            fds: fds.clone(),
        })
    }

    /// The descriptor, reopened by path if it was closed.
    pub fn fd(&self) -> io::Result<Arc<fs::File>> {
        self.cached(self.id, 0)
    }

    /// An `O_DIRECT` descriptor for writing, in its own entry of the
    /// descriptor LRU; `None` for a read-only source, one whose file system
    /// has no `O_DIRECT`, or one that cannot be reopened (no name left).
    fn direct_fd(&self) -> Option<Arc<fs::File>> {
        if !self.direct.load(Ordering::Relaxed) {
            return None;
        }
        self.cached(self.id + 1, libc::O_DIRECT)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    self.direct.store(false, Ordering::Relaxed);
                }
            })
            .ok()
    }

    /// The LRU's descriptor `id`, opened by path with `flags` if it was
    /// closed.
    fn cached(&self, id: u64, flags: i32) -> io::Result<Arc<fs::File>> {
        if let Some(fd) = self.fds.lru.lock().touch(id) {
            return Ok(fd);
        }
        let fd = Arc::new(self.open(flags)?);
        Ok(self.fds.lru.lock().insert(id, fd, self.fds.capacity))
    }

    /// Opens the file again by its path, with `flags` besides the usual.
    fn open(&self, flags: i32) -> io::Result<fs::File> {
        let rel = self.rel.lock().clone().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "the file has no name left to reopen it by",
            )
        })?;
        let fd = OpenOptions::new()
            .read(true)
            .write(self.writable)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | flags)
            .open(self.fds.full(&rel))?;
        if super::inode::key_of(&fd.metadata()?) != self.key {
            // Replaced behind the mount's back: writing there would
            // corrupt another file.
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(fd)
    }

    /// Keeps the descriptor open until [`Source::unpin`] (or for good), for
    /// while the file's path is not kept up to date: it is being unlinked,
    /// or set aside out of the inode table.
    pub fn pin(&self) -> io::Result<()> {
        let fd = self.fd()?;
        let mut lru = self.fds.lru.lock();
        let lru = &mut *lru;
        match lru.open.get_mut(&self.id) {
            Some(slot) => {
                if slot.pins == 0 {
                    lru.order.remove(&slot.stamp);
                }
                slot.pins += 1;
            }
            None => {
                // Evicted between `fd()` and here: put it back pinned.
                lru.clock += 1;
                lru.open.insert(
                    self.id,
                    Slot {
                        fd,
                        stamp: lru.clock,
                        pins: 1,
                    },
                );
            }
        }
        Ok(())
    }

    /// Undoes one [`Source::pin`].
    pub fn unpin(&self) {
        let mut lru = self.fds.lru.lock();
        let lru = &mut *lru;
        if let Some(slot) = lru.open.get_mut(&self.id) {
            if slot.pins > 0 {
                slot.pins -= 1;
                if slot.pins == 0 {
                    lru.clock += 1;
                    slot.stamp = lru.clock;
                    lru.order.insert(lru.clock, self.id);
                }
            }
        }
    }

    /// The path (relative to SOURCE_DIR) it is reopened by.
    pub fn set_rel(&self, rel: Option<PathBuf>) {
        *self.rel.lock() = rel;
    }

    /// The path it was last known by, for messages.
    pub fn display_path(&self) -> String {
        match &*self.rel.lock() {
            Some(rel) => self.fds.full(rel).display().to_string(),
            None => format!("(deleted file, inode {})", self.key.1),
        }
    }

    /// `fstat` of the source file.
    pub fn metadata(&self) -> io::Result<fs::Metadata> {
        self.fd()?.metadata()
    }

    /// Notes a write (or a change of size) through the mount now.
    pub fn touch(&self) {
        let now = nanos(SystemTime::now());
        self.written.fetch_max(now, Ordering::Relaxed);
        self.mtime.store(now, Ordering::Relaxed);
    }

    /// When it was last written through the mount.
    pub fn written(&self) -> Option<SystemTime> {
        time(self.written.load(Ordering::Relaxed))
    }

    /// Its modification time as set through the mount, if it was.
    pub fn mtime(&self) -> Option<SystemTime> {
        time(self.mtime.load(Ordering::Relaxed))
    }

    /// Its modification time was set to `t` (already done on the source).
    pub fn set_mtime(&self, t: SystemTime) {
        self.mtime.store(nanos(t), Ordering::Relaxed);
    }

    /// After a sync: the source's mtime is the writeback's; gives it the
    /// file's own. Best effort: a source the mount may not set times on
    /// keeps the writeback's.
    fn restore_mtime(&self, fd: &fs::File) {
        let Some(t) = self.mtime() else { return };
        let omit = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        };
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let times = rustix::fs::Timestamps {
            last_access: omit,
            last_modification: rustix::fs::Timespec {
                tv_sec: d.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: d.subsec_nanos().into(),
            },
        };
        let _ = rustix::fs::futimens(fd, &times);
    }
}

/// Nanoseconds since the epoch, at least 1 (0 means "none"); times before
/// the epoch count as just after it.
fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos().try_into().unwrap_or(u64::MAX))
        .max(1)
}

fn time(n: u64) -> Option<SystemTime> {
    (n != 0).then(|| UNIX_EPOCH + Duration::from_nanos(n))
}

impl Drop for Source {
    fn drop(&mut self) {
        let mut lru = self.fds.lru.lock();
        lru.remove(self.id);
        lru.remove(self.id + 1);
    }
}

/// Writes at least this long, and aligned, go through `O_DIRECT`.
const DIRECT_MIN: usize = 64 << 10;

/// Alignment `O_DIRECT` asks of offsets, lengths and buffers: the largest
/// logical block size in use, so right for 512-byte blocks too.
const DIRECT_ALIGN: usize = 4096;

fn direct_aligned(bufs: &[IoSlice<'_>], offset: u64) -> bool {
    offset % DIRECT_ALIGN as u64 == 0
        && bufs
            .iter()
            .all(|b| b.len() % DIRECT_ALIGN == 0 && (b.as_ptr() as usize) % DIRECT_ALIGN == 0)
}

/// The cache's backend for a source file: every call goes through the
/// file's current descriptor.
pub struct SourceBackend(pub Arc<Source>);

impl pagecache::Backend for SourceBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Ok(rustix::io::pread(self.0.fd()?.as_fd(), buf, offset)?)
    }

    /// Large aligned runs (sequential writeback) go through `O_DIRECT`:
    /// straight from the cache's frames to the device, with no second copy
    /// in the kernel's page cache and, within the file's size, side by
    /// side rather than one at a time under the inode's lock. Small ones
    /// stay buffered, where the kernel absorbs random writes.
    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len >= DIRECT_MIN && direct_aligned(bufs, offset) {
            if let Some(fd) = self.0.direct_fd() {
                match rustix::io::pwritev(fd.as_fd(), bufs, offset) {
                    Err(rustix::io::Errno::INVAL) => {
                        self.0.direct.store(false, Ordering::Relaxed);
                    }
                    r => return Ok(r?),
                }
            }
        }
        Ok(rustix::io::pwritev(self.0.fd()?.as_fd(), bufs, offset)?)
    }

    fn sync(&self) -> io::Result<()> {
        let fd = self.0.fd()?;
        rustix::fs::fdatasync(fd.as_fd())?;
        self.0.restore_mtime(&fd);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.size())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.fd()?.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(fds: &Arc<Fds>, dir: &Path, name: &str) -> Source {
        let fd = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(name))
            .unwrap();
        Source::new(fds, name.into(), fd, true).unwrap()
    }

    #[test]
    fn closed_descriptors_are_reopened_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let fds = Fds::new(dir.path().into(), 2);
        let s: Vec<Source> = (0..5)
            .map(|i| source(&fds, dir.path(), &format!("f{i}")))
            .collect();
        assert_eq!(fds.open_count(), 2);
        for (i, s) in s.iter().enumerate() {
            s.fd().unwrap().set_len(i as u64 * 10).unwrap();
            assert!(fds.open_count() <= 2);
        }
        for (i, s) in s.iter().enumerate() {
            assert_eq!(s.metadata().unwrap().len(), i as u64 * 10);
        }
        drop(s);
        assert_eq!(fds.open_count(), 0);
    }

    #[test]
    fn a_renamed_file_is_reopened_by_its_new_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let fds = Fds::new(dir.path().into(), 1);
        let a = source(&fds, dir.path(), "a");
        let _b = source(&fds, dir.path(), "b");
        fs::rename(dir.path().join("a"), dir.path().join("c")).unwrap();
        // Still by the old name: another file took it.
        fs::write(dir.path().join("a"), b"other").unwrap();
        let err = a.metadata().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
        a.set_rel(Some("c".into()));
        assert_eq!(a.metadata().unwrap().len(), 0);
    }

    #[test]
    fn pinned_descriptors_survive_unlink_and_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let fds = Fds::new(dir.path().into(), 1);
        let a = source(&fds, dir.path(), "a");
        a.pin().unwrap();
        fs::remove_file(dir.path().join("a")).unwrap();
        a.set_rel(None);
        let others: Vec<Source> = (0..3)
            .map(|i| source(&fds, dir.path(), &format!("o{i}")))
            .collect();
        assert_eq!(a.metadata().unwrap().nlink(), 0);
        assert_eq!(fds.open_count(), 2);
        a.unpin();
        let _more = source(&fds, dir.path(), "more");
        assert!(a.metadata().is_err(), "unpinned and evicted: no name left");
        drop(others);
    }
}
