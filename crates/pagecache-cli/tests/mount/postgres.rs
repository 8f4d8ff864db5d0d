//! A real database service on the mount: PostgreSQL's initdb, pgbench,
//! a clean stop, unmount, remount, the same sums, and `pg_amcheck` clean.
//! Slow (about a minute), so ignored by default; CI runs it:
//! `cargo test -p pagecache-cli --test mount -- --ignored postgres`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{available, fuse_problem, tool_problem, Mount, Stop};

const ARGS: &[&str] = &["--memory", "64M", "--allow-other"];

/// The newest installed PostgreSQL's bin directory.
fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").is_file() && b.join("pg_amcheck").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

/// uid and gid of the `postgres` user.
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn problem() -> Option<String> {
    fuse_problem()
        .or_else(|| (!nix::unistd::geteuid().is_root()).then(|| "not root".to_string()))
        .or_else(|| tool_problem("setpriv"))
        .or_else(|| {
            pg_bin()
                .is_none()
                .then(|| "PostgreSQL is not installed".to_string())
        })
        .or_else(|| {
            postgres_user()
                .is_none()
                .then(|| "there is no postgres user".to_string())
        })
}

/// Runs PostgreSQL's tools as the postgres user.
struct Pg {
    bin: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    port: String,
}

impl Pg {
    /// Runs `tool args` as postgres; returns stdout, panicking with the
    /// output on failure.
    fn run(&self, tool: &str, args: &[&str], m: &Mount) -> String {
        let out = Command::new("setpriv")
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(self.bin.join(tool))
            .args(args)
            .current_dir(&self.sock)
            .env("PGHOST", &self.sock)
            .env("PGPORT", &self.port)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}):\n{stdout}\n{}\nserver log:\n{}\nmount log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.sock.join("server.log")).unwrap_or_default(),
            m.log()
        );
        stdout
    }

    fn start(&self, m: &Mount) {
        let opts = format!(
            "-k {} -p {} -c listen_addresses=''",
            self.sock.display(),
            self.port
        );
        let log = self.sock.join("server.log");
        let data = self.data.to_string_lossy().into_owned();
        let log = log.to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-w", "-t", "120", "-l", &log, "-o", &opts, "start",
            ],
            m,
        );
    }

    fn stop(&self, m: &Mount) {
        let data = self.data.to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &["-D", &data, "-w", "-t", "120", "-m", "fast", "stop"],
            m,
        );
    }

    fn sums(&self, m: &Mount) -> String {
        self.run(
            "psql",
            &[
                "-d",
                "postgres",
                "-Atc",
                "SELECT (SELECT sum(abalance) FROM pgbench_accounts), \
                 (SELECT sum(bbalance) FROM pgbench_branches), \
                 (SELECT sum(tbalance) FROM pgbench_tellers), \
                 (SELECT count(*) FROM pgbench_history)",
            ],
            m,
        )
    }
}

#[test]
#[ignore = "slow: about a minute; run with --ignored (CI does)"]
fn postgres_initdb_pgbench_remount_amcheck() {
    if !available("postgres_initdb_pgbench_remount_amcheck", problem()) {
        return;
    }
    let (uid, gid) = postgres_user().unwrap();
    let mut m = Mount::start_with(ARGS, |src| {
        let parent = src.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(src, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(src, std::fs::Permissions::from_mode(0o700)).unwrap();
    });
    let sock = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(sock.path(), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(sock.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pg = Pg {
        bin: pg_bin().unwrap(),
        data: m.mnt.join("data"),
        sock: sock.path().to_path_buf(),
        port: (5400 + std::process::id() % 500).to_string(),
    };
    let data = pg.data.to_string_lossy().into_owned();
    pg.run(
        "initdb",
        &["-D", &data, "-A", "trust", "-U", "postgres"],
        &m,
    );
    pg.start(&m);
    pg.run("pgbench", &["-i", "-s", "5", "-q", "postgres"], &m);
    pg.run(
        "pgbench",
        &["-c", "4", "-j", "2", "-T", "10", "-n", "postgres"],
        &m,
    );
    let before = pg.sums(&m);
    pg.stop(&m);
    m.stop_ok(Stop::Term);
    assert_owned_by(&m.source.join("data/base"), uid);

    m.restart(ARGS);
    pg.start(&m);
    let after = pg.sums(&m);
    assert_eq!(before, after, "sums after remount");
    let check = pg.run(
        "pg_amcheck",
        &["--heapallindexed", "--install-missing", "-d", "postgres"],
        &m,
    );
    assert!(
        check.trim().is_empty(),
        "pg_amcheck found problems:\n{check}"
    );
    pg.stop(&m);
    m.stop_ok(Stop::Term);
}

fn assert_owned_by(path: &Path, uid: u32) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).unwrap();
    assert_eq!(md.uid(), uid, "owner of {} in SOURCE_DIR", path.display());
}
