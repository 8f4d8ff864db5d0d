//! The inode table: FUSE inode numbers ↔ files of SOURCE_DIR.
//!
//! Each node remembers the path (relative to SOURCE_DIR) it was last looked
//! up by and the source file's identity (device, inode). A regular file that
//! has been opened also holds its cached data: one cache mapping per source
//! inode, shared by every open of that inode, so hard links share pages.
//! The mapping's backend reopens the source by the node's path when its
//! descriptor was closed, so every change of a node's path is passed on to
//! it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

/// The kernel's number for the mount's root directory.
pub const FUSE_ROOT_ID: u64 = INodeNo::ROOT.0;

use super::source::Source;

/// Inode number of the read-only counters file at the mount root.
pub const STAT_INO: u64 = 2;
/// Name of the counters file at the mount root.
pub const STAT_NAME: &str = ".pagecache-stat";
/// Idle cached files (no open handle) kept before the oldest is written back
/// and let go, so a tree of many files does not keep a mapping each.
pub const MAX_IDLE: usize = 1024;

/// Identity of a source inode.
pub type Key = (u64, u64);

/// Cached data of a regular file.
#[derive(Clone)]
pub struct Data {
    /// The cache's handle for the file; each FUSE open gets its own
    /// [`pagecache::File::reopen`] of it.
    pub file: pagecache::File,
    /// The source file, whose path follows renames of the node.
    pub source: Arc<Source>,
}

/// One inode known to the kernel.
pub struct Node {
    /// Path relative to SOURCE_DIR; `None` once unlinked under this name.
    pub path: Option<PathBuf>,
    /// Source identity.
    pub key: Key,
    /// Kernel lookup count.
    pub lookups: u64,
    /// Open file handles.
    pub opens: u64,
    /// Cached data, for a regular file that has been opened or truncated.
    pub data: Option<Data>,
    /// Position in the idle list, while `data` is held with no open handle.
    pub idle: Option<u64>,
}

impl Node {
    /// Points the node, and the backend of its cached data, at `path`.
    pub fn set_path(&mut self, path: Option<PathBuf>) {
        if let Some(data) = &self.data {
            data.source.set_rel(path.clone());
        }
        self.path = path;
    }
}

/// The table.
pub struct Inodes {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<Key, u64>,
    idle: BTreeMap<u64, u64>,
    next_ino: u64,
    next_idle: u64,
}

impl Inodes {
    /// A table holding the root.
    pub fn new(root_key: Key) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            FUSE_ROOT_ID,
            Node {
                path: Some(PathBuf::new()),
                key: root_key,
                lookups: 1,
                opens: 0,
                data: None,
                idle: None,
            },
        );
        let mut by_key = HashMap::new();
        by_key.insert(root_key, FUSE_ROOT_ID);
        Inodes {
            nodes,
            by_key,
            idle: BTreeMap::new(),
            next_ino: STAT_INO + 1,
            next_idle: 0,
        }
    }

    /// The node of `ino`.
    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The node of `ino`, mutably.
    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    /// The inode number of a source identity, if known.
    pub fn find(&self, key: Key) -> Option<u64> {
        self.by_key.get(&key).copied()
    }

    /// Records a lookup of `path` (whose source identity is `key`): finds or
    /// creates its node, points it at `path`, counts the lookup.
    pub fn remember(&mut self, path: PathBuf, key: Key) -> u64 {
        if let Some(ino) = self.find(key) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.set_path(Some(path));
                node.lookups += 1;
                return ino;
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                path: Some(path),
                key,
                lookups: 1,
                opens: 0,
                data: None,
                idle: None,
            },
        );
        self.by_key.insert(key, ino);
        ino
    }

    /// Forgets the source identity of `ino` (its inode number may be reused
    /// by the source filesystem) and its path. The node lives on while the
    /// kernel references it.
    pub fn detach(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.set_path(None);
            if self.by_key.get(&node.key) == Some(&ino) {
                self.by_key.remove(&node.key);
            }
        }
    }

    /// Removes `ino` if the kernel no longer references it and nothing has it
    /// open; returns its cached data for the caller to retire.
    pub fn maybe_remove(&mut self, ino: u64) -> Option<Data> {
        if ino == FUSE_ROOT_ID {
            return None;
        }
        let node = self.nodes.get(&ino)?;
        if node.lookups > 0 || node.opens > 0 {
            return None;
        }
        let node = self.nodes.remove(&ino)?;
        if self.by_key.get(&node.key) == Some(&ino) {
            self.by_key.remove(&node.key);
        }
        if let Some(seq) = node.idle {
            self.idle.remove(&seq);
        }
        node.data
    }

    /// Marks `ino` idle (data held, no open handle); returns the data of the
    /// oldest idle file if there are now too many.
    pub fn mark_idle(&mut self, ino: u64) -> Option<Data> {
        let seq = self.next_idle;
        let node = self.nodes.get_mut(&ino)?;
        if node.opens > 0 || node.data.is_none() || node.idle.is_some() {
            return None;
        }
        self.next_idle += 1;
        node.idle = Some(seq);
        self.idle.insert(seq, ino);
        if self.idle.len() <= MAX_IDLE {
            return None;
        }
        let (_, oldest) = self.idle.pop_first()?;
        let node = self.nodes.get_mut(&oldest)?;
        node.idle = None;
        node.data.take()
    }

    /// Takes `ino` off the idle list (it is being opened again).
    pub fn mark_busy(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if let Some(seq) = node.idle.take() {
                self.idle.remove(&seq);
            }
        }
    }

    /// After a rename of `from` to `to`: every node at or below `from` moves
    /// below `to`.
    pub fn rename_paths(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            let Some(p) = &node.path else { continue };
            if let Ok(rest) = p.strip_prefix(from) {
                let moved = join(to, rest);
                node.set_path(Some(moved));
            }
        }
    }

    /// After an exchange of `a` and `b`: swaps the paths at or below each.
    pub fn exchange_paths(&mut self, a: &Path, b: &Path) {
        for node in self.nodes.values_mut() {
            let Some(p) = &node.path else { continue };
            let moved = if let Ok(rest) = p.strip_prefix(a) {
                Some(join(b, rest))
            } else if let Ok(rest) = p.strip_prefix(b) {
                Some(join(a, rest))
            } else {
                None
            };
            if moved.is_some() {
                node.set_path(moved);
            }
        }
    }

    /// Takes every cached data out of the table (at unmount).
    pub fn drain_data(&mut self) -> Vec<Data> {
        self.idle.clear();
        self.nodes
            .values_mut()
            .filter_map(|n| {
                n.idle = None;
                n.data.take()
            })
            .collect()
    }
}

fn join(base: &Path, rest: &Path) -> PathBuf {
    if rest.as_os_str().is_empty() {
        base.to_path_buf()
    } else {
        base.join(rest)
    }
}

/// Path of `name` inside the directory at relative path `dir`.
pub fn child(dir: &Path, name: &OsStr) -> PathBuf {
    dir.join(name)
}

/// The identity of a source file.
pub fn key_of(md: &fs::Metadata) -> Key {
    (md.dev(), md.ino())
}

/// FUSE file type of a `st_mode`.
pub fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = nsecs.clamp(0, 999_999_999) as u32;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nsecs.into())
    }
}

/// The attributes FUSE reports for `md`, as inode `ino`; `size` overrides the
/// size on disk (a cached file may be longer or shorter than its source).
pub fn attr(ino: u64, md: &fs::Metadata, size: Option<u64>) -> FileAttr {
    let size = size.unwrap_or(md.size());
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: md.blocks().max(size.div_ceil(512)),
        atime: time(md.atime(), md.atime_nsec()),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind_of(md.mode()),
        perm: (md.mode() & 0o7777) as u16,
        nlink: md.nlink().try_into().unwrap_or(u32::MAX),
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev().try_into().unwrap_or(0),
        blksize: md.blksize().try_into().unwrap_or(4096),
        flags: 0,
    }
}

/// Attributes of the counters file, `len` bytes long.
pub fn stat_attr(len: u64) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(STAT_INO),
        size: len,
        blocks: len.div_ceil(512),
        atime: now,
        mtime: now,
        ctime: now,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0o444,
        nlink: 1,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (Inodes, u64, u64, u64) {
        let mut t = Inodes::new((1, 100));
        let d = t.remember("d".into(), (1, 101));
        let f = t.remember("d/f".into(), (1, 102));
        let g = t.remember("d/e/g".into(), (1, 103));
        (t, d, f, g)
    }

    fn path(t: &Inodes, ino: u64) -> Option<PathBuf> {
        t.get(ino).and_then(|n| n.path.clone())
    }

    #[test]
    fn lookups_are_counted_per_identity() {
        let (mut t, _, f, _) = table();
        assert_eq!(t.remember("link-to-f".into(), (1, 102)), f);
        let node = t.get(f).unwrap();
        assert_eq!(node.lookups, 2);
        assert_eq!(node.path.as_deref(), Some(Path::new("link-to-f")));
        assert_eq!(t.find((1, 102)), Some(f));
    }

    #[test]
    fn rename_moves_everything_below() {
        let (mut t, d, f, g) = table();
        t.rename_paths(Path::new("d"), Path::new("x/y"));
        assert_eq!(path(&t, d), Some("x/y".into()));
        assert_eq!(path(&t, f), Some("x/y/f".into()));
        assert_eq!(path(&t, g), Some("x/y/e/g".into()));
        assert_eq!(path(&t, FUSE_ROOT_ID), Some(PathBuf::new()));
        // A sibling whose name merely starts with the same letters stays.
        let dd = t.remember("x/yy".into(), (1, 104));
        t.rename_paths(Path::new("x/y"), Path::new("z"));
        assert_eq!(path(&t, dd), Some("x/yy".into()));
        assert_eq!(path(&t, f), Some("z/f".into()));
    }

    #[test]
    fn exchange_swaps_both_trees() {
        let (mut t, d, f, _) = table();
        let o = t.remember("o".into(), (1, 110));
        let p = t.remember("o/p".into(), (1, 111));
        t.exchange_paths(Path::new("d"), Path::new("o"));
        assert_eq!(path(&t, d), Some("o".into()));
        assert_eq!(path(&t, f), Some("o/f".into()));
        assert_eq!(path(&t, o), Some("d".into()));
        assert_eq!(path(&t, p), Some("d/p".into()));
    }

    #[test]
    fn detached_nodes_live_until_forgotten() {
        let (mut t, _, f, _) = table();
        t.detach(f);
        assert_eq!(t.find((1, 102)), None);
        assert!(t.get(f).is_some());
        // The source reuses the inode number: a new node.
        let f2 = t.remember("d/f".into(), (1, 102));
        assert_ne!(f2, f);
        t.get_mut(f).unwrap().lookups = 0;
        assert!(t.maybe_remove(f).is_none());
        assert!(t.get(f).is_none());
        // Removing the old node leaves the new identity alone.
        assert_eq!(t.find((1, 102)), Some(f2));
        // The root is never removed.
        t.get_mut(FUSE_ROOT_ID).unwrap().lookups = 0;
        t.maybe_remove(FUSE_ROOT_ID);
        assert!(t.get(FUSE_ROOT_ID).is_some());
    }
}
