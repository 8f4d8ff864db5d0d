//! `pagecache fuse-floor`: the FUSE transport alone, as a yardstick for the
//! mount's throughput.
//!
//! It serves one file in an otherwise empty directory, with the mount's
//! session (threads, cloned `/dev/fuse` descriptors, init negotiation,
//! open flags), but stores nothing: a write is acknowledged at once (it
//! only moves the file's end), a read returns zeros. fio on it measures
//! what a request costs in the kernel, the scheduler and fuser, with no
//! cache behind; whatever the mount does more comes on top of that.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, KernelConfig,
    LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::session::{self, OPEN_FLAGS};
use crate::size::size_arg;
use crate::CliError;

/// Arguments of `pagecache fuse-floor`.
#[derive(clap::Args)]
pub struct Args {
    /// Threads reading and answering requests (as `mount --threads`).
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Length of the file at start; writes past the end extend it.
    #[arg(long, default_value = "0", value_parser = size_arg)]
    size: u64,
    /// Name of the file.
    #[arg(long, default_value = "data")]
    name: String,
    /// Where to mount it.
    mountpoint: PathBuf,
}

const TTL: Duration = Duration::from_secs(1);
const ROOT: u64 = 1;
const FILE: u64 = 2;

/// What a read answers with: no read is longer than `max_write`.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Reads and writes answered, printed at exit: a run that reached the
/// floor shows it here.
#[derive(Default)]
struct Served {
    reads: AtomicU64,
    writes: AtomicU64,
}

/// The one-file filesystem that stores nothing.
struct Floor {
    name: std::ffi::OsString,
    len: AtomicU64,
    served: Arc<Served>,
    uid: u32,
    gid: u32,
}

impl Floor {
    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, perm, size, nlink) = if ino == ROOT {
            (FileType::Directory, 0o755, 0, 2)
        } else {
            (
                FileType::RegularFile,
                0o644,
                self.len.load(Ordering::Relaxed),
                1,
            )
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn is_file(&self, parent: INodeNo, name: &OsStr) -> bool {
        parent.0 == ROOT && name == self.name
    }
}

impl Filesystem for Floor {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        session::negotiate(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if self.is_file(parent, name) {
            reply.entry(&TTL, &self.attr(FILE), Generation(0))
        } else {
            reply.error(Errno::ENOENT)
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            ROOT | FILE => reply.attr(&TTL, &self.attr(ino.0)),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if let (FILE, Some(size)) = (ino.0, size) {
            self.len.store(size, Ordering::Relaxed);
        }
        reply.attr(&TTL, &self.attr(ino.0))
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match ino.0 {
            FILE => reply.opened(FileHandle(0), OPEN_FLAGS),
            _ => reply.error(Errno::EISDIR),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        if self.is_file(parent, name) {
            reply.created(
                &TTL,
                &self.attr(FILE),
                Generation(0),
                FileHandle(0),
                OPEN_FLAGS,
            )
        } else {
            reply.error(Errno::EPERM)
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.served.reads.fetch_add(1, Ordering::Relaxed);
        let left = self.len.load(Ordering::Relaxed).saturating_sub(offset);
        let n = left.min(u64::from(size)).min(ZEROS.len() as u64) as usize;
        reply.data(&ZEROS[..n])
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.served.writes.fetch_add(1, Ordering::Relaxed);
        self.len
            .fetch_max(offset.saturating_add(data.len() as u64), Ordering::Relaxed);
        reply.written(data.len() as u32)
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 != ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, OsStr::new(".")),
            (ROOT, FileType::Directory, OsStr::new("..")),
            (FILE, FileType::RegularFile, self.name.as_os_str()),
        ];
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(start) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Room for any file fio asks for.
        reply.statfs(1 << 40, 1 << 40, 1 << 40, 1 << 20, 1 << 20, 4096, 255, 4096)
    }
}

/// Mounts the floor file system and serves it until unmounted or
/// signalled; prints how many reads and writes it answered.
pub fn run(args: Args) -> Result<(), CliError> {
    if args.threads == 0 {
        return Err(CliError::Usage("--threads must be at least 1".into()));
    }
    if args.name.is_empty() || args.name.contains('/') {
        return Err(CliError::Usage(format!(
            "--name {:?} must be one non-empty path component",
            args.name
        )));
    }
    let signals = super::block_signals()?;
    let mountpoint = super::directory("MOUNTPOINT", &args.mountpoint)?;
    session::check_fuse_device()?;
    let served = Arc::new(Served::default());
    let floor = Floor {
        name: args.name.into(),
        len: AtomicU64::new(args.size),
        served: served.clone(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
    };
    let session = session::start(floor, "fuse-floor", &mountpoint, false, args.threads)?;
    eprintln!(
        "pagecache: fuse-floor mounted at {} (stores nothing); \
         SIGINT, SIGTERM or `umount {}` to unmount",
        mountpoint.display(),
        mountpoint.display()
    );
    super::serve(session, &mountpoint, &signals)?
        .map_err(|e| CliError::io("serving FUSE requests", None, e))?;
    eprintln!(
        "pagecache: fuse-floor unmounted {}; answered {} reads and {} writes",
        mountpoint.display(),
        served.reads.load(Ordering::Relaxed),
        served.writes.load(Ordering::Relaxed)
    );
    Ok(())
}
