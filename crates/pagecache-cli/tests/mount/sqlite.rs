//! sqlite3 on the mount: the same script gives the same answers as on a
//! plain directory, and the database is intact on the mount and in
//! SOURCE_DIR after unmount.
//!
//! WAL mode maps its index (`DB-shm`) with `MAP_SHARED`, which FUSE allows
//! on direct-I/O files only when the kernel grants
//! `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux 6.6 and later). On older kernels the
//! test runs sqlite in exclusive locking mode, where it keeps that index on
//! its heap.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{available, fuse_problem, tool_problem, Mount, Stop};

const BUILD: &str = "
PRAGMA journal_mode=WAL;
PRAGMA cache_size=-65536;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v TEXT NOT NULL);
CREATE INDEX t_k ON t(k);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
INSERT INTO t SELECT x, (x * 7919) % 100003,
  printf('%08x-%d-%s', (x * 2654435761) % 4294967296, x, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26))
  FROM c;
COMMIT;
BEGIN;
UPDATE t SET v = v || '-updated', k = k + 1 WHERE id % 3 = 0;
COMMIT;
BEGIN;
DELETE FROM t WHERE k % 7 = 2;
COMMIT;
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 300001 UNION ALL SELECT x + 1 FROM c WHERE x < 350000)
INSERT INTO t SELECT x, x % 1000, printf('late-%d', x) FROM c;
UPDATE t SET v = upper(v) WHERE k BETWEEN 1000 AND 5000;
COMMIT;
BEGIN;
DELETE FROM t WHERE id BETWEEN 100000 AND 150000;
UPDATE t SET v = 'x' || v WHERE id % 1000 = 7;
COMMIT;
";

const QUERIES: &str = "
SELECT count(*), sum(k), total(length(v)), min(id), max(id) FROM t;
SELECT k % 10, count(*), sum(length(v)) FROM t GROUP BY k % 10 ORDER BY 1;
SELECT id, k, v FROM t WHERE id IN (1, 2, 3, 99999, 150001, 299999, 300001, 349999) ORDER BY id;
SELECT count(*) FROM t WHERE v LIKE '%UPDATED';
SELECT count(*), sum(id) FROM t WHERE k BETWEEN 500 AND 700;
PRAGMA integrity_check;
";

fn sqlite(db: &Path, script: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running sqlite3");
    let mut stdin = child.stdin.take().unwrap();
    let script = script.to_string();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(script.as_bytes())
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "sqlite3 {} failed ({}): {stderr}",
        db.display(),
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether the running kernel is 6.6 or later.
fn shared_mmap_allowed() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 6)
}

#[test]
fn sqlite_wal_on_the_mount_matches_a_plain_directory() {
    let name = "sqlite_wal_on_the_mount_matches_a_plain_directory";
    if !available(name, fuse_problem().or_else(|| tool_problem("sqlite3"))) {
        return;
    }
    let locking = if shared_mmap_allowed() {
        ""
    } else {
        eprintln!(
            "{name}: kernel before 6.6, no shared mmap on FUSE direct I/O: exclusive locking"
        );
        "PRAGMA locking_mode=EXCLUSIVE;"
    };
    let script = format!("{locking}{BUILD}{QUERIES}");
    let plain = tempfile::tempdir().unwrap();
    let expected = sqlite(&plain.path().join("db"), &script);
    assert!(expected.trim_end().ends_with("\nok"), "{expected}");
    assert!(expected.contains("wal\n"), "{expected}");

    let mut m = Mount::start(&["--memory", "8M"]);
    let got = sqlite(&m.mnt.join("db"), &script);
    assert_eq!(expected, got, "sqlite3 on the mount vs a plain directory");
    // A second process, a new connection, on the mount.
    let expected = sqlite(&plain.path().join("db"), QUERIES);
    assert_eq!(
        expected,
        sqlite(&m.mnt.join("db"), QUERIES),
        "reopened on the mount"
    );
    m.stop_ok(Stop::Term);

    let after = sqlite(&m.source.join("db"), QUERIES);
    assert!(after.trim_end().ends_with("\nok"), "{after}");
    assert_eq!(expected, after, "SOURCE_DIR/db after unmount");
}
