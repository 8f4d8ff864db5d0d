//! How the kernel hands data over: a 1 MiB read or write is one request,
//! not a train of page-sized ones (that takes `max_write` and
//! `FUSE_MAX_PAGES` agreed at init), so a stream costs few round trips.

use std::fs::File;
use std::io::{Read, Write};

use crate::harness::{available, counter, fuse_problem, Mount, Stop};

const MIB: usize = 1 << 20;

/// A page-aligned MiB of `storage`, as fio's buffers are: the kernel pins
/// at most 256 pages per request (`fs.fuse.max_pages_limit`), and an
/// unaligned MiB spans 257.
fn aligned(storage: &mut Vec<u8>) -> &mut [u8] {
    storage.resize(MIB + 4096, 0);
    let start = storage.as_ptr().align_offset(4096);
    &mut storage[start..start + MIB]
}

#[test]
fn a_one_mib_read_or_write_is_one_request() {
    if !available("a_one_mib_read_or_write_is_one_request", fuse_problem()) {
        return;
    }
    // Served on the threads that read the requests, and (one thread: it
    // must stay free to read) handed to the workers.
    for threads in ["8", "1"] {
        one_mib_requests(&["--memory", "64M", "--threads", threads]);
    }
}

fn one_mib_requests(args: &[&str]) {
    let mut m = Mount::start(args);
    let path = m.mnt.join("f");
    let delta = |name: &str, before: u64| counter(&m.mnt, name) - before;

    let mut f = File::create(&path).unwrap();
    let writes = counter(&m.mnt, "mount_write_requests");
    let written = counter(&m.mnt, "mount_write_request_bytes");
    let mut storage = Vec::new();
    let buf = aligned(&mut storage);
    for i in 0..16u8 {
        buf.fill(i);
        f.write_all(buf).unwrap();
    }
    assert_eq!(delta("mount_write_request_bytes", written), 16 * MIB as u64);
    let n = delta("mount_write_requests", writes);
    assert!(
        n <= 16,
        "16 writes of 1 MiB reached the mount as {n} requests"
    );
    drop(f);

    let mut f = File::open(&path).unwrap();
    let reads = counter(&m.mnt, "mount_read_requests");
    for i in 0..16u8 {
        f.read_exact(buf).unwrap();
        assert!(buf.iter().all(|&b| b == i), "MiB {i} read back wrong");
    }
    let n = delta("mount_read_requests", reads);
    assert!(
        n <= 16,
        "16 reads of 1 MiB reached the mount as {n} requests"
    );
    drop(f);
    m.stop_ok(Stop::Term);
}
