//! Many files under a low descriptor limit: the mount keeps descriptors
//! only for the files it uses most recently, not one per file ever opened.

use std::fs;
use std::io::Write;

use crate::harness::{available, counter, fuse_problem, Mount, Stop};

const FILES: usize = 3000;

fn content(i: usize) -> Vec<u8> {
    format!("file {i}\n").repeat(1 + i % 7).into_bytes()
}

#[test]
fn three_thousand_files_under_ulimit_1024() {
    if !available("three_thousand_files_under_ulimit_1024", fuse_problem()) {
        return;
    }
    let mut m = Mount::start_with_nofile(&["--memory", "16M", "--dirty-expire", "3600"], 1024);
    fs::create_dir(m.mnt.join("d")).unwrap();
    for i in 0..FILES {
        let mut f = fs::File::create(m.mnt.join(format!("d/f{i}"))).unwrap();
        f.write_all(&content(i)).unwrap();
        // Renamed while its data is dirty, and some while open: the data
        // follows the new name.
        if i % 10 == 0 {
            fs::rename(m.mnt.join(format!("d/f{i}")), m.mnt.join(format!("d/r{i}"))).unwrap();
        }
    }
    let open = counter(&m.mnt, "mount_source_fds");
    assert!(
        open < 1024,
        "{open} source descriptors open under a limit of 1024"
    );
    // Listing still works (it needs a descriptor of its own).
    assert_eq!(fs::read_dir(m.mnt.join("d")).unwrap().count(), FILES);
    let name = |i: usize| {
        if i % 10 == 0 {
            format!("d/r{i}")
        } else {
            format!("d/f{i}")
        }
    };
    for i in 0..FILES {
        let got = fs::read(m.mnt.join(name(i))).unwrap();
        assert!(got == content(i), "{} differs through the mount", name(i));
    }
    m.stop_ok(Stop::Term);
    for i in 0..FILES {
        let got = fs::read(m.source.join(name(i))).unwrap();
        assert!(got == content(i), "{} differs in SOURCE_DIR", name(i));
    }
}
