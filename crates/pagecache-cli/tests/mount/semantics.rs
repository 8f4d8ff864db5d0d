//! File semantics through `std::fs`: the mount must behave like a plain
//! directory.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use crate::harness::{available, fuse_problem, snapshot, Mount, Stop};

/// Runs a fixed sequence of operations under `root`, returning what each
/// observed (results, errors, listings, contents).
fn script(root: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let mut note = |what: &str, r: std::io::Result<String>| {
        log.push(match r {
            Ok(v) => format!("{what}: ok {v}"),
            Err(e) => format!("{what}: err {:?}", e.kind()),
        });
    };
    let p = |rel: &str| root.join(rel);
    let list = |rel: &str| -> std::io::Result<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names.join(","))
    };
    let read = |rel: &str| -> std::io::Result<String> {
        let data = fs::read(root.join(rel))?;
        Ok(format!(
            "{} bytes, sum {}",
            data.len(),
            data.iter().map(|&b| b as u64).sum::<u64>()
        ))
    };

    note(
        "write a",
        fs::write(p("a"), b"hello, world\n").map(|_| String::new()),
    );
    note("read a", read("a"));
    note(
        "create_new a",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p("a"))
            .map(|_| String::new()),
    );
    note(
        "append a",
        (|| {
            let mut f = OpenOptions::new().append(true).open(p("a"))?;
            f.write_all(b"more\n")?;
            f.write_all(b"and more\n")?;
            Ok(String::new())
        })(),
    );
    note("read a", read("a"));
    note(
        "sparse b",
        (|| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p("b"))?;
            f.write_all_at(&[7u8; 10000], 100_000)?;
            f.write_all_at(b"head", 0)?;
            f.sync_all()?;
            Ok(format!("len {}", f.metadata()?.len()))
        })(),
    );
    note("read b", read("b"));
    note(
        "read b middle",
        (|| {
            let mut f = fs::File::open(p("b"))?;
            f.seek(SeekFrom::Start(99_998))?;
            let mut buf = [0u8; 6];
            f.read_exact(&mut buf)?;
            Ok(format!("{buf:?}"))
        })(),
    );
    note(
        "truncate b shorter",
        (|| {
            let f = OpenOptions::new().write(true).open(p("b"))?;
            f.set_len(50_001)?;
            Ok(format!("len {}", fs::metadata(p("b"))?.len()))
        })(),
    );
    note("read b", read("b"));
    note(
        "truncate b longer",
        (|| {
            let f = OpenOptions::new().write(true).open(p("b"))?;
            f.set_len(70_000)?;
            Ok(format!("len {}", f.metadata()?.len()))
        })(),
    );
    note("read b", read("b"));
    note(
        "truncate by open",
        (|| {
            let mut f = OpenOptions::new().write(true).truncate(true).open(p("b"))?;
            f.write_all(b"short")?;
            Ok(String::new())
        })(),
    );
    note("read b", read("b"));
    note("mkdir d", fs::create_dir(p("d")).map(|_| String::new()));
    note(
        "mkdir d again",
        fs::create_dir(p("d")).map(|_| String::new()),
    );
    note(
        "mkdir d/e/f",
        fs::create_dir_all(p("d/e/f")).map(|_| String::new()),
    );
    note(
        "write d/e/f/x",
        fs::write(p("d/e/f/x"), vec![42u8; 70_000]).map(|_| String::new()),
    );
    note(
        "rename a -> d/a2",
        fs::rename(p("a"), p("d/a2")).map(|_| String::new()),
    );
    note("read a", read("a"));
    note("read d/a2", read("d/a2"));
    note(
        "write c",
        fs::write(p("c"), b"c content").map(|_| String::new()),
    );
    note(
        "rename c over d/a2",
        fs::rename(p("c"), p("d/a2")).map(|_| String::new()),
    );
    note("read d/a2", read("d/a2"));
    note(
        "rename dir d/e -> g",
        fs::rename(p("d/e"), p("g")).map(|_| String::new()),
    );
    note("read g/f/x", read("g/f/x"));
    note(
        "append g/f/x",
        (|| {
            let mut f = OpenOptions::new().append(true).open(p("g/f/x"))?;
            f.write_all(b"tail")?;
            Ok(String::new())
        })(),
    );
    note("read g/f/x", read("g/f/x"));
    note(
        "rmdir g (not empty)",
        fs::remove_dir(p("g")).map(|_| String::new()),
    );
    note(
        "unlink g/f/x",
        fs::remove_file(p("g/f/x")).map(|_| String::new()),
    );
    note(
        "unlink g/f/x again",
        fs::remove_file(p("g/f/x")).map(|_| String::new()),
    );
    note("rmdir g/f", fs::remove_dir(p("g/f")).map(|_| String::new()));
    note("rmdir g", fs::remove_dir(p("g")).map(|_| String::new()));
    note(
        "unlink missing",
        fs::remove_file(p("nope")).map(|_| String::new()),
    );
    note(
        "open missing",
        fs::File::open(p("nope")).map(|_| String::new()),
    );
    note(
        "hard link",
        fs::hard_link(p("d/a2"), p("h")).map(|_| String::new()),
    );
    note(
        "write via link",
        (|| {
            let f = OpenOptions::new().write(true).open(p("h"))?;
            f.write_all_at(b"C", 0)?;
            Ok(String::new())
        })(),
    );
    note("read d/a2", read("d/a2"));
    note(
        "links share an inode",
        (|| {
            let (a, b) = (fs::metadata(p("h"))?, fs::metadata(p("d/a2"))?);
            Ok(format!("{} {}", a.ino() == b.ino(), a.nlink()))
        })(),
    );
    note(
        "symlink",
        std::os::unix::fs::symlink("d/a2", p("s")).map(|_| String::new()),
    );
    note(
        "readlink",
        fs::read_link(p("s")).map(|t| t.display().to_string()),
    );
    note("read through symlink", read("s"));
    note(
        "unlink while open",
        (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(p("tmp"))?;
            f.write_all(b"temporary")?;
            fs::remove_file(p("tmp"))?;
            f.write_all(b" still usable")?;
            let mut s = String::new();
            f.seek(SeekFrom::Start(0))?;
            f.read_to_string(&mut s)?;
            Ok(s)
        })(),
    );
    note(
        "replace open file by rename",
        (|| {
            fs::write(p("r1"), b"first")?;
            let f = fs::File::open(p("r1"))?;
            fs::write(p("r2"), b"second")?;
            fs::rename(p("r2"), p("r1"))?;
            let mut old = String::new();
            (&f).read_to_string(&mut old)?;
            let new = fs::read_to_string(p("r1"))?;
            Ok(format!("{old}/{new}"))
        })(),
    );
    note(
        "recreate after unlink",
        (|| {
            fs::write(p("re"), vec![1u8; 9000])?;
            fs::remove_file(p("re"))?;
            fs::write(p("re"), b"new")?;
            fs::read_to_string(p("re"))
        })(),
    );
    note(
        "xattrs of a file and a directory",
        (|| {
            let (f, d) = (p("d/a2"), p("d"));
            rustix::fs::setxattr(&f, "user.k", b"value", rustix::fs::XattrFlags::CREATE)?;
            rustix::fs::setxattr(&d, "user.dir", b"d", rustix::fs::XattrFlags::empty())?;
            let again = rustix::fs::setxattr(&f, "user.k", b"x", rustix::fs::XattrFlags::CREATE);
            let mut buf = [0u8; 64];
            let n = rustix::fs::getxattr(&f, "user.k", &mut buf[..])?;
            let got = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut names = [0u8; 256];
            let n = rustix::fs::listxattr(&d, &mut names[..])?;
            let listed = String::from_utf8_lossy(&names[..n]).replace('\0', ";");
            rustix::fs::removexattr(&f, "user.k")?;
            let gone = rustix::fs::getxattr(&f, "user.k", &mut buf[..]);
            Ok(format!("{got} {listed} {again:?} {gone:?}"))
        })(),
    );
    note(
        "punch a hole, zero a range past the end",
        (|| {
            use rustix::fs::{fallocate, FallocateFlags};
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(p("holes"))?;
            f.write_all_at(&[0xAB; 12288], 0)?;
            fallocate(
                &f,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                1000,
                8000,
            )?;
            fallocate(&f, FallocateFlags::ZERO_RANGE, 10000, 4000)?;
            let data = fs::read(p("holes"))?;
            let nonzero = data.iter().filter(|&&b| b != 0).count();
            Ok(format!("len {} nonzero {nonzero}", data.len()))
        })(),
    );
    note("list root", list(""));
    note("list d", list("d"));
    note(
        "len d/a2",
        fs::metadata(p("d/a2")).map(|m| m.len().to_string()),
    );
    log
}

#[test]
fn file_semantics_match_a_plain_directory() {
    if !available("file_semantics_match_a_plain_directory", fuse_problem()) {
        return;
    }
    let plain = tempfile::tempdir().unwrap();
    let expected = script(plain.path());

    let mut m = Mount::start(&["--memory", "1M"]);
    let got = script(&m.mnt);
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(e, g, "plain directory vs mount");
    }
    assert_eq!(expected.len(), got.len());
    let through_mount = snapshot(&m.mnt);
    assert_eq!(snapshot(plain.path()), through_mount);
    m.stop_ok(Stop::Term);
    assert_eq!(
        snapshot(&m.source),
        through_mount,
        "SOURCE_DIR after unmount"
    );
}

/// Appenders in several processes' worth of opens, at once, while other
/// threads write inside the file: no append overwrites another.
#[test]
fn concurrent_appends_do_not_overlap() {
    if !available("concurrent_appends_do_not_overlap", fuse_problem()) {
        return;
    }
    const THREADS: usize = 4;
    const RECORDS: usize = 200;
    const LEN: usize = 100;
    let mut m = Mount::start(&["--memory", "8M"]);
    let path = m.mnt.join("log");
    fs::write(&path, b"").unwrap();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                let other = OpenOptions::new().write(true).open(&path).unwrap();
                for r in 0..RECORDS {
                    let mut rec = format!("{t} {r:04} ").into_bytes();
                    rec.resize(LEN - 1, b'a' + t as u8);
                    rec.push(b'\n');
                    f.write_all(&rec).unwrap();
                    // Rewrite the record just appended, in place and with
                    // the same bytes: a write inside the file, which the
                    // kernel may send alongside other threads' writes.
                    let end = f.stream_position().unwrap();
                    other.write_all_at(&rec, end - LEN as u64).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let data = fs::read(&path).unwrap();
    assert_eq!(data.len(), THREADS * RECORDS * LEN);
    let mut seen = std::collections::BTreeSet::new();
    for rec in data.chunks(LEN) {
        let text = std::str::from_utf8(rec).expect("a record was torn");
        let mut parts = text.split(' ');
        let t: usize = parts.next().unwrap().parse().expect("a record was torn");
        let r: usize = parts.next().unwrap().parse().expect("a record was torn");
        let fill = (b'a' + t as u8) as char;
        assert!(
            text[text.find(' ').unwrap() + 6..LEN - 1]
                .chars()
                .all(|c| c == fill),
            "record {t}/{r} torn: {text:?}"
        );
        assert!(seen.insert((t, r)), "record {t}/{r} twice");
    }
    assert_eq!(seen.len(), THREADS * RECORDS);
    m.stop_ok(Stop::Term);
}

/// What `tar x`, `rsync -t` and `cp -p` do: write a file, then set its
/// modification time. The time set is what the mount shows, also while the
/// data is still dirty in the cache, and what SOURCE_DIR holds after the
/// write-back (which on its own would stamp the source with its own time).
/// A write after the time was set moves it to the time of the write.
#[test]
fn modification_times_set_after_writing_survive_write_back() {
    if !available(
        "modification_times_set_after_writing_survive_write_back",
        fuse_problem(),
    ) {
        return;
    }
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let secs = |p: &Path| fs::metadata(p).unwrap().mtime();
    let mut m = Mount::start(&["--memory", "4M"]);
    // Closed, then its time set.
    fs::write(m.mnt.join("closed"), vec![1u8; 300_000]).unwrap();
    fs::File::options()
        .write(true)
        .open(m.mnt.join("closed"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    // Its time set while still open and dirty, then closed.
    let mut f = fs::File::create(m.mnt.join("open")).unwrap();
    f.write_all(&vec![2u8; 300_000]).unwrap();
    f.set_modified(old).unwrap();
    assert_eq!(secs(&m.mnt.join("open")), 1_000_000_000, "while open");
    drop(f);
    // Its time set, then written again.
    fs::write(m.mnt.join("rewritten"), b"first").unwrap();
    let f = fs::File::options()
        .write(true)
        .open(m.mnt.join("rewritten"))
        .unwrap();
    f.set_modified(old).unwrap();
    f.write_all_at(b"second", 0).unwrap();
    drop(f);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for name in ["closed", "open"] {
        assert_eq!(secs(&m.mnt.join(name)), 1_000_000_000, "{name}");
    }
    assert!(
        secs(&m.mnt.join("rewritten")) >= now - 60,
        "a later write moves it"
    );
    m.stop_ok(Stop::Term);
    for name in ["closed", "open"] {
        assert_eq!(
            secs(&m.source.join(name)),
            1_000_000_000,
            "{name} in SOURCE_DIR after unmount"
        );
    }
    assert!(secs(&m.source.join("rewritten")) >= now - 60);
}
