//! Opening by path: `std::fs::OpenOptions`' rules, read-only handles, and
//! files this process may only read.

use pagecache::{Config, Error, PageCache};

fn cache() -> PageCache {
    PageCache::new(Config::new(1 << 20)).unwrap()
}

fn is_read_only_error<T: std::fmt::Debug>(r: pagecache::Result<T>) -> bool {
    match r {
        Err(e @ Error::ReadOnly { .. }) => e.to_string().contains("open_options"),
        other => {
            eprintln!("expected ReadOnly, got {other:?}");
            false
        }
    }
}

#[test]
fn open_neither_creates_nor_writes() {
    let dir = tempfile::tempdir().unwrap();
    let c = cache();
    let missing = dir.path().join("missing");
    assert!(matches!(c.open(&missing), Err(Error::Io { .. })));
    assert!(!missing.exists(), "a read-only open created the file");

    std::fs::write(dir.path().join("f"), b"on disk").unwrap();
    let f = c.open(dir.path().join("f")).unwrap();
    assert!(f.is_read_only());
    let mut buf = [0u8; 7];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"on disk");
    assert!(is_read_only_error(f.write_at(b"x", 0)));
    assert!(is_read_only_error(f.page_mut(0).map(|_| ())));
    assert!(is_read_only_error(f.set_len(0)));
    assert!(is_read_only_error(f.reopen().write_at(b"x", 0)));
    assert!(f.page(0).is_ok(), "zero-copy reads are allowed");
    f.sync().unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"on disk");
}

#[test]
fn a_read_only_open_sees_a_writable_open_s_cached_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let c = cache();
    let w = c.create(&path).unwrap();
    assert!(!w.is_read_only());
    w.write_at(b"not yet on disk", 0).unwrap();
    let r = c.open(&path).unwrap();
    let mut buf = [0u8; 15];
    r.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"not yet on disk");
    // Opened read-only first, then writable: the writes go through.
    drop((w, r));
    let r = c.open(&path).unwrap();
    let w = c.open_existing(&path).unwrap();
    w.write_at(b"again", 0).unwrap();
    w.sync().unwrap();
    drop(r);
    assert_eq!(&std::fs::read(&path).unwrap()[..5], b"again");
}

#[test]
fn create_truncate_and_create_new_follow_std() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let c = cache();
    let opts = || c.open_options().read(true).write(true);

    assert!(matches!(opts().open(&path), Err(Error::Io { .. })));
    let f = opts().create(true).open(&path).unwrap();
    f.write_at(b"0123456789", 0).unwrap();
    f.sync().unwrap();

    // create without truncate keeps the contents, cached or on disk.
    let g = opts().create(true).open(&path).unwrap();
    assert_eq!(g.len(), 10);
    match opts().create_new(true).open(&path) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("create_new of an existing file: {other:?}"),
    }

    // truncate drops what other opens have cached, dirty or not.
    f.write_at(b"dirty", 20).unwrap();
    let t = opts().truncate(true).open(&path).unwrap();
    assert_eq!((t.len(), f.len(), g.len()), (0, 0, 0));
    t.sync().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // PageCache::create truncates, like std::fs::File::create.
    f.write_at(b"abc", 0).unwrap();
    f.sync().unwrap();
    assert_eq!(c.create(&path).unwrap().len(), 0);

    let new = dir.path().join("new");
    let n = opts().create_new(true).open(&new).unwrap();
    n.write_at(b"fresh", 0).unwrap();
    n.sync().unwrap();
    assert_eq!(std::fs::read(&new).unwrap(), b"fresh");
}

#[test]
fn combinations_std_rejects_are_rejected_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let c = cache();
    let bad = [
        c.open_options(),
        c.open_options().read(true).create(true),
        c.open_options().read(true).truncate(true),
        c.open_options().read(true).create_new(true),
    ];
    for o in bad {
        match o.open(&path) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("write"), "{m}"),
            other => panic!("{o:?}: {other:?}"),
        }
        assert!(!path.exists());
    }
    // Write-only is allowed, as in std (reads through the cache still work).
    let w = c
        .open_options()
        .write(true)
        .create(true)
        .open(&path)
        .unwrap();
    w.write_at(b"w", 0).unwrap();
}

#[test]
fn a_file_that_cannot_be_opened_for_writing_can_still_be_read() {
    // A running executable cannot be opened for writing (ETXTBSY), even by
    // root: the read-only open falls back to a read-only descriptor.
    let exe = std::env::current_exe().unwrap();
    let c = cache();
    let writable = c.open_options().read(true).write(true).open(&exe);
    assert!(
        matches!(&writable, Err(Error::Io { source, .. }) if source.raw_os_error() == Some(26)),
        "{writable:?}"
    );
    let f = c.open(&exe).unwrap();
    assert!(f.is_read_only());
    let mut magic = [0u8; 4];
    f.read_exact_at(&mut magic, 0).unwrap();
    assert_eq!(&magic, b"\x7fELF");
    assert_eq!(f.len(), std::fs::metadata(&exe).unwrap().len());
    f.sync().unwrap();
}

#[test]
fn without_write_permission_only_read_only_opens_succeed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"read me").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let c = cache();
    let f = c.open(&path).unwrap();
    let mut buf = [0u8; 7];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"read me");
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        return; // root may write anyway
    }
    assert!(c.open_existing(&path).is_err());
}

#[test]
fn a_file_first_opened_read_only_takes_writes_once_it_becomes_writable() {
    use std::os::unix::fs::PermissionsExt;
    // While a copy of `sleep` runs, it cannot be opened for writing: the
    // read-only open gets a read-only descriptor. Once the process exits, a
    // writable open shares that mapping, and its writes must still land.
    // Under the target directory: it runs test binaries, so it allows exec.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let exe = dir.path().join("sleeper");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = std::process::Command::new(&exe).arg("30").spawn().unwrap();
    let c = cache();
    let r = c.open(&exe).unwrap();
    assert!(c.open_existing(&exe).is_err(), "busy while it runs");
    let mut magic = [0u8; 4];
    r.read_exact_at(&mut magic, 0).unwrap();
    assert_eq!(&magic, b"\x7fELF");
    child.kill().unwrap();
    child.wait().unwrap();

    let w = c.open_existing(&exe).unwrap();
    w.write_at(b"not an ELF any more", 0).unwrap();
    w.set_len(19).unwrap();
    w.sync().unwrap();
    drop((r, w));
    assert_eq!(std::fs::read(&exe).unwrap(), b"not an ELF any more");
}
