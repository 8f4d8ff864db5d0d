//! The fit with `std::io`: error conversion, `FileExt`, vectored I/O and the
//! cursor, each checked against what `std::fs::File` does.

use std::io::{self, IoSlice, IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use pagecache::{Config, Error, FaultBackend, MemBackend, PageCache, Policy};

const PS: usize = 4096;

fn cache() -> PageCache {
    PageCache::new(Config::new(64 * PS)).unwrap()
}

#[test]
fn errors_convert_to_io_errors_with_their_kind_and_errno() {
    let raw = |e: Error| io::Error::from(e);
    let enoent = Error::Io {
        op: "opening",
        path: None,
        source: io::Error::from_raw_os_error(2),
    };
    let e = raw(enoent);
    assert_eq!(e.raw_os_error(), Some(2));
    assert_eq!(e.kind(), io::ErrorKind::NotFound);

    // A backend error without errno keeps its kind and the cache's message.
    let custom = raw(Error::Writeback {
        path: Some("/data/t".into()),
        source: io::Error::new(io::ErrorKind::StorageFull, "device full"),
    });
    assert_eq!(custom.kind(), io::ErrorKind::StorageFull);
    assert!(custom.to_string().contains("/data/t"), "{custom}");
    let inner = custom.get_ref().unwrap().downcast_ref::<Error>().unwrap();
    assert!(matches!(inner, Error::Writeback { .. }));

    let kinds = [
        (
            Error::OutOfMemory {
                frames: 8,
                pinned: 8,
            },
            io::ErrorKind::OutOfMemory,
        ),
        (Error::NoCleanFrame, io::ErrorKind::OutOfMemory),
        (
            Error::InvalidArgument("x".into()),
            io::ErrorKind::InvalidInput,
        ),
        (Error::Config("x".into()), io::ErrorKind::InvalidInput),
        (Error::Shutdown, io::ErrorKind::BrokenPipe),
        (Error::WouldDeadlock("sync"), io::ErrorKind::Deadlock),
        (
            Error::ReadOnly { path: None },
            io::ErrorKind::PermissionDenied,
        ),
    ];
    for (e, kind) in kinds {
        let msg = e.to_string();
        let io = raw(e);
        assert_eq!(io.kind(), kind, "{msg}");
        assert_eq!(io.to_string(), msg);
    }
}

#[test]
fn real_errors_keep_their_errno_through_question_mark() {
    fn open_missing(cache: &PageCache, dir: &std::path::Path) -> io::Result<()> {
        cache.open(dir.join("missing"))?;
        Ok(())
    }
    let dir = tempfile::tempdir().unwrap();
    let e = open_missing(&cache(), dir.path()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert_eq!(e.raw_os_error(), Some(2));

    // A writeback error reported by sync keeps the backend's errno (ENOSPC).
    let c = cache();
    let disk = FaultBackend::new();
    let f = c.open_backend(disk.clone()).unwrap();
    disk.fail_writes(1, 28);
    f.write_at(&[1u8; PS], 0).unwrap();
    let e = io::Error::from(f.sync().unwrap_err());
    assert_eq!(e.raw_os_error(), Some(28));
    assert_eq!(e.kind(), io::ErrorKind::StorageFull);
}

/// Generic code over `FileExt`, run on a `std::fs::File` and a cached file.
fn generic_roundtrip(f: &impl FileExt) -> io::Result<Vec<u8>> {
    f.write_all_at(b"header", 0)?;
    f.write_all_at(&[7u8; 5000], 4000)?;
    let mut out = vec![0u8; 9100];
    let n = f.read_at(&mut out, 0)?;
    out.truncate(n);
    let mut tail = [0u8; 3];
    f.read_exact_at(&mut tail, 8997)?;
    assert_eq!(tail, [7, 7, 7]);
    let err = f.read_exact_at(&mut [0u8; 8], 8998).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    Ok(out)
}

#[test]
fn file_ext_behaves_like_std_file() {
    let dir = tempfile::tempdir().unwrap();
    let std_file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("std"))
        .unwrap();
    let want = generic_roundtrip(&std_file).unwrap();
    let c = cache();
    let cached = c.create(dir.path().join("cached")).unwrap();
    assert_eq!(generic_roundtrip(&cached).unwrap(), want);
    assert_eq!(want.len(), 9000);
    cached.sync().unwrap();
    assert_eq!(std::fs::read(dir.path().join("cached")).unwrap(), want);
}

#[test]
fn vectored_io_spans_pages_and_stops_at_end_of_file() {
    let c = cache();
    let f = c.open_backend(MemBackend::new()).unwrap();
    let (a, b, e) = (vec![1u8; 3000], vec![2u8; 6000], Vec::new());
    let n = f
        .write_vectored_at(&[IoSlice::new(&a), IoSlice::new(&e), IoSlice::new(&b)], 100)
        .unwrap();
    assert_eq!(n, 9000);
    assert_eq!(f.len(), 9100);
    let (mut x, mut y, mut z) = (vec![0u8; 50], vec![0u8; 8000], vec![0u8; 4096]);
    let n = f
        .read_vectored_at(
            &mut [
                IoSliceMut::new(&mut x),
                IoSliceMut::new(&mut y),
                IoSliceMut::new(&mut z),
            ],
            90,
        )
        .unwrap();
    assert_eq!(n, 9010, "short only at end of file");
    assert_eq!(&x[..10], &[0u8; 10]);
    assert_eq!(&x[10..], &[1u8; 40]);
    assert_eq!(&y[..2960], &a[40..]);
    assert_eq!(&y[2960..], &b[..5040]);
    assert_eq!(&z[..960], &b[5040..]);
    assert_eq!(
        &z[960..],
        &vec![0u8; 4096 - 960][..],
        "untouched past the end"
    );
    assert_eq!(
        f.read_vectored_at(&mut [IoSliceMut::new(&mut x)], 9100)
            .unwrap(),
        0
    );
}

#[test]
fn a_vectored_write_cut_short_by_memory_reports_what_landed() {
    let frames = 16u64;
    let c = PageCache::new(
        Config::new(frames as usize * PS)
            .policy(Policy::NoThrottle)
            .background_reclaim(false),
    )
    .unwrap();
    // Writes held: a dirty page can never turn clean, so exactly one frame
    // is free for the write below.
    let disk = FaultBackend::new();
    let f = c.open_backend(disk.clone()).unwrap();
    f.set_len(frames * PS as u64).unwrap();
    disk.hold_writes();
    let guards: Vec<_> = (0..frames - 1).map(|i| f.page(i).unwrap()).collect();
    let (a, b) = (vec![5u8; PS / 2], vec![6u8; 2 * PS]);
    let at = 100 * PS as u64;
    let n = f
        .write_vectored_at(&[IoSlice::new(&a), IoSlice::new(&b)], at)
        .unwrap();
    assert_eq!(n, PS, "one page landed");
    assert!(matches!(
        f.write_vectored_at(&[IoSlice::new(&b)], at + 4 * PS as u64),
        Err(Error::NoCleanFrame)
    ));
    drop(guards);
    let mut buf = vec![0u8; PS];
    f.read_exact_at(&mut buf, at).unwrap();
    assert_eq!(&buf[..PS / 2], &a[..]);
    assert_eq!(&buf[PS / 2..], &b[..PS / 2]);
    disk.release_writes();
    f.sync().unwrap();
}

/// One step applied to a `std::fs::File` and to a cursor alike.
#[derive(Debug, Clone, Copy)]
enum Step {
    Write(usize, u8),
    Read(usize),
    Seek(SeekFrom),
}

fn apply<S: Read + Write + Seek>(s: &mut S, step: Step) -> String {
    match step {
        Step::Write(n, byte) => format!("{:?}", s.write(&vec![byte; n]).map_err(|e| e.kind())),
        Step::Read(n) => {
            let mut buf = vec![0u8; n];
            let r = s.read(&mut buf).map_err(|e| e.kind());
            format!("{r:?} {:?}", &buf[..*r.as_ref().unwrap_or(&0)])
        }
        Step::Seek(to) => format!(
            "{:?} at {:?}",
            s.seek(to).map_err(|e| e.kind()),
            s.stream_position().ok()
        ),
    }
}

#[test]
fn the_cursor_reads_writes_and_seeks_like_std_file() {
    use Step::*;
    let steps = [
        Write(5000, 1),
        Read(10),
        Seek(SeekFrom::Start(10)),
        Read(20),
        Seek(SeekFrom::Current(-5)),
        Write(3, 2),
        Seek(SeekFrom::End(0)),
        Read(10),
        Seek(SeekFrom::End(3000)), // past the end: allowed
        Read(10),                  // reads nothing
        Write(7, 3),               // extends; the gap reads as zeros
        Seek(SeekFrom::Current(-10)),
        Read(10),
        Seek(SeekFrom::Current(-100_000)), // before byte 0: an error
        Seek(SeekFrom::End(-8007)),
        Read(4096),
        Seek(SeekFrom::Start(u64::MAX - 1)), // past off_t: an error
        Seek(SeekFrom::Start(1 << 40)),
        Read(1),
        Seek(SeekFrom::Current(i64::MAX)), // past off_t: an error
        Seek(SeekFrom::Start(3)),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut std_file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("std"))
        .unwrap();
    let c = cache();
    let file = c.create(dir.path().join("cached")).unwrap();
    let mut cur = file.cursor();
    for (i, &step) in steps.iter().enumerate() {
        let want = apply(&mut std_file, step);
        let got = apply(&mut cur, step);
        assert_eq!(got, want, "step {i}: {step:?}");
    }
    cur.sync().unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("cached")).unwrap(),
        std::fs::read(dir.path().join("std")).unwrap()
    );
    assert_eq!(file.len(), 8007);
}

#[test]
fn io_copy_round_trips_through_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let src: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(dir.path().join("src"), &src).unwrap();
    let c = PageCache::new(Config::new(16 * PS)).unwrap(); // smaller than the data
    let file = c.create(dir.path().join("dst")).unwrap();
    let mut cur = file.cursor();
    let n = io::copy(
        &mut std::fs::File::open(dir.path().join("src")).unwrap(),
        &mut cur,
    )
    .unwrap();
    assert_eq!(n, src.len() as u64);
    assert_eq!(cur.position(), n);

    cur.rewind().unwrap();
    let mut back = Vec::new();
    io::copy(&mut cur, &mut back).unwrap();
    assert_eq!(back, src);

    // Through a BufReader and back out through a BufWriter at an offset.
    cur.set_position(1000);
    let mut reader = io::BufReader::new(cur.clone()).take(5000);
    let mut other = file.cursor();
    other.seek(SeekFrom::End(0)).unwrap();
    let mut writer = io::BufWriter::new(other);
    io::copy(&mut reader, &mut writer).unwrap();
    writer.into_inner().unwrap().sync().unwrap();
    let disk = std::fs::read(dir.path().join("dst")).unwrap();
    assert_eq!(&disk[..src.len()], &src[..]);
    assert_eq!(&disk[src.len()..], &src[1000..6000]);
}

#[test]
fn a_cursor_on_a_read_only_file_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"abc").unwrap();
    let c = cache();
    let mut cur = c.open(dir.path().join("f")).unwrap().cursor();
    let e = cur.write(b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("read-only"), "{e}");
    let mut s = String::new();
    cur.read_to_string(&mut s).unwrap();
    assert_eq!(s, "abc");
}
