//! One slow client must not stall the others: while a writer streams and
//! fsyncs, small reads and stats on the mount are answered promptly.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{available, fuse_problem, Mount, Stop};

const STREAM: usize = 384 << 20;
const CHUNK: usize = 1 << 20;
const FSYNC_EVERY: usize = 64 << 20;
const WORST_OK: Duration = Duration::from_millis(200);

#[test]
fn small_requests_stay_fast_while_a_writer_streams_and_fsyncs() {
    if !available(
        "small_requests_stay_fast_while_a_writer_streams_and_fsyncs",
        fuse_problem(),
    ) {
        return;
    }
    let mut m = Mount::start(&["--memory", "64M"]);
    let small: Vec<u8> = (0..64 << 10).map(|i: u32| (i % 253) as u8).collect();
    fs::write(m.mnt.join("small"), &small).unwrap();
    fs::create_dir(m.mnt.join("dir")).unwrap();
    fs::write(m.mnt.join("stream"), b"").unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let path = m.mnt.join("stream");
        let done = done.clone();
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().write(true).open(path).unwrap();
            let chunk = vec![0x5au8; CHUNK];
            let start = Instant::now();
            for i in 1..=STREAM / CHUNK {
                f.write_all(&chunk).unwrap();
                if (i * CHUNK) % FSYNC_EVERY == 0 {
                    f.sync_all().unwrap();
                }
            }
            f.sync_all().unwrap();
            done.store(true, Ordering::Release);
            start.elapsed()
        })
    };

    let mut worst = Duration::ZERO;
    let mut probes = 0;
    let mut i = 0u64;
    while !done.load(Ordering::Acquire) {
        let t = Instant::now();
        let back = fs::read(m.mnt.join("small")).unwrap();
        assert!(back == small, "small file read back wrong");
        fs::metadata(m.mnt.join("stream")).unwrap();
        // A name never looked up before, so the kernel must ask the mount.
        let missing = m.mnt.join(format!("dir/missing{i}"));
        assert!(fs::metadata(missing).is_err());
        worst = worst.max(t.elapsed());
        probes += 1;
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = writer.join().unwrap();
    assert!(
        probes >= 20,
        "only {probes} probes ran while the writer streamed for {elapsed:?}"
    );
    assert!(
        worst < WORST_OK,
        "worst small-request latency {worst:?} over {probes} probes while a writer \
         streamed {} MiB in {elapsed:?}",
        STREAM >> 20
    );
    eprintln!(
        "worst small-request latency {worst:?} over {probes} probes; writer {} MiB in {elapsed:?}",
        STREAM >> 20
    );
    m.stop_ok(Stop::Term);
}
