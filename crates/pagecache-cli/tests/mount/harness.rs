//! Starting and stopping a `pagecache mount` child, and skipping when the
//! machine cannot run it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pagecache")
}

/// Whether missing system pieces fail the test instead of skipping it.
fn required() -> bool {
    std::env::var("PAGECACHE_REQUIRE_SYSTEM_TESTS").is_ok_and(|v| v == "1")
}

/// Returns true when `problem` is `None`; otherwise skips loudly (returns
/// false) or, when system tests are required, panics.
pub fn available(test: &str, problem: Option<String>) -> bool {
    let Some(problem) = problem else { return true };
    if required() {
        panic!("{test}: {problem}, and PAGECACHE_REQUIRE_SYSTEM_TESTS=1");
    }
    // Straight to the process's stderr: the test harness captures
    // `eprintln!`, and a skip must be seen.
    let bar = "!".repeat(72);
    let msg = format!(
        "\n{bar}\n!!! SKIPPING {test}: {problem}\n\
         !!! (set PAGECACHE_REQUIRE_SYSTEM_TESTS=1 to make this a failure)\n{bar}\n\n"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), msg.as_bytes());
    false
}

/// Why FUSE mounts cannot run here, if they cannot.
pub fn fuse_problem() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    if !nix::unistd::geteuid().is_root() && which("fusermount3").is_none() {
        return Some("not root and no fusermount3 to mount with".into());
    }
    None
}

/// Why `tool` cannot run here, if it cannot.
pub fn tool_problem(tool: &str) -> Option<String> {
    match which(tool) {
        Some(_) => None,
        None => Some(format!("{tool} is not installed")),
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// A running `pagecache mount` over a temporary SOURCE_DIR.
pub struct Mount {
    child: Option<Child>,
    /// SOURCE_DIR.
    pub source: PathBuf,
    /// MOUNTPOINT.
    pub mnt: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

/// How to stop a mount.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// SIGTERM to the process.
    Term,
    /// SIGINT to the process.
    Int,
    /// `umount MOUNTPOINT`.
    Umount,
}

impl Mount {
    /// Starts `pagecache mount ARGS SOURCE MNT` and waits until it is mounted.
    pub fn start(args: &[&str]) -> Mount {
        Self::start_with(args, |_| {})
    }

    /// Like [`Mount::start`], filling SOURCE_DIR with `fill` first.
    pub fn start_with(args: &[&str], fill: impl FnOnce(&Path)) -> Mount {
        Self::spawn(args, fill, None)
    }

    /// Like [`Mount::start`], with soft and hard `RLIMIT_NOFILE` set to
    /// `nofile` in the mount process (`ulimit -n`).
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Mount {
        Self::spawn(args, |_| {}, Some(nofile))
    }

    fn spawn(args: &[&str], fill: impl FnOnce(&Path), nofile: Option<u64>) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("source");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&source).unwrap();
        fs::create_dir(&mnt).unwrap();
        fill(&source);
        let mut m = Mount {
            child: None,
            source,
            mnt,
            log: dir.path().join("mount.log"),
            _dir: dir,
        };
        m.launch(args, nofile);
        m
    }

    /// Mounts the same SOURCE_DIR at the same MOUNTPOINT again, after a
    /// stop; the log starts over.
    pub fn restart(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "mount still running");
        self.launch(args, None);
    }

    fn launch(&mut self, args: &[&str], nofile: Option<u64>) {
        let out = fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("mount")
            .args(args)
            .arg(&self.source)
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if let Some(n) = nofile {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: the closure runs in the forked child before exec and
            // only calls setrlimit, which is async-signal-safe.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        self.child = Some(cmd.spawn().expect("spawning pagecache mount"));
        while !is_mounted(&self.mnt) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "pagecache mount exited with {status} before mounting:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the mount process printed.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the mount as `how` and waits for the process; returns its status.
    pub fn stop(&mut self, how: Stop) -> ExitStatus {
        let mut child = self.child.take().expect("mount already stopped");
        match how {
            Stop::Term | Stop::Int => {
                let sig = if matches!(how, Stop::Term) {
                    Signal::SIGTERM
                } else {
                    Signal::SIGINT
                };
                kill(Pid::from_raw(child.id() as i32), sig).expect("signalling the mount");
            }
            Stop::Umount => {
                let st = Command::new("umount")
                    .arg(&self.mnt)
                    .status()
                    .expect("umount");
                assert!(st.success(), "umount failed: {st}");
            }
        }
        let status = child.wait().expect("waiting for the mount");
        assert!(
            !is_mounted(&self.mnt),
            "still mounted after the process exited"
        );
        status
    }

    /// Stops as `how` and asserts a clean exit.
    pub fn stop_ok(&mut self, how: Stop) {
        let status = self.stop(how);
        assert!(
            status.success(),
            "mount exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// One entry of a tree snapshot.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A regular file and its content.
    File(Vec<u8>),
    /// A symlink and its target.
    Link(PathBuf),
    /// Anything else, by mode.
    Other(u32),
}

/// A counter of the mount's `.pagecache-stat` file.
pub fn counter(mnt: &Path, name: &str) -> u64 {
    let text = fs::read_to_string(mnt.join(".pagecache-stat")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// Everything under `root` (relative path → entry), links counted per inode.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, (Entry, u64)> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Entry, u64)>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let md = fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let entry = if md.is_dir() {
            walk(root, &path, out);
            Entry::Dir
        } else if md.is_symlink() {
            Entry::Link(fs::read_link(&path).unwrap())
        } else if md.is_file() {
            Entry::File(fs::read(&path).unwrap())
        } else {
            Entry::Other(md.mode())
        };
        let nlink = if md.is_dir() { 0 } else { md.nlink() };
        out.insert(rel, (entry, nlink));
    }
}
