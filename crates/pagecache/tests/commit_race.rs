//! Two overlapping syncs of one file, the first failing: the device drops
//! the unstable write when the first fails, and the second, which succeeds
//! after it, must not mark the page clean before the failure has made it
//! dirty again (the loom model `commit_vs_failed_commit`).

use std::io::{self, IoSlice};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use pagecache::{Backend, Config, FaultBackend, PageCache};

const PS: usize = 4096;

/// A `FaultBackend` whose first sync fails (dropping what was not durable)
/// and then holds its error until told to return it, or a second passes.
struct HeldFailure {
    disk: FaultBackend,
    first: Mutex<Option<(Sender<()>, Receiver<()>)>>,
}

impl Backend for HeldFailure {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.disk.read_at(buf, offset)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        self.disk.write_vectored_at(bufs, offset)
    }

    fn sync(&self) -> io::Result<()> {
        let first = self.first.lock().unwrap().take();
        let Some((entered, release)) = first else {
            return self.disk.sync();
        };
        self.disk.fail_syncs(1, FaultBackend::EIO);
        let result = self.disk.sync();
        assert!(result.is_err());
        entered.send(()).unwrap();
        // Without one commit at a time, the second sync succeeds and commits
        // meanwhile; with it, the second waits for this one, so no release
        // comes and the timeout ends the wait.
        let _ = release.recv_timeout(Duration::from_secs(1));
        result
    }

    fn len(&self) -> io::Result<u64> {
        self.disk.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.set_len(len)
    }
}

#[test]
fn a_sync_overlapping_a_failed_one_does_not_mark_dropped_pages_clean() {
    let cache = PageCache::new(Config::new(64 * PS)).unwrap();
    let disk = FaultBackend::new();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let backend = HeldFailure {
        disk: disk.clone(),
        first: Mutex::new(Some((entered_tx, release_rx))),
    };
    let f = cache.open_backend(backend).unwrap();
    let data = vec![0x5a; PS];
    f.write_at(&data, 0).unwrap();

    // The first sync writes the page (unstable) and fails its backend sync.
    let first = {
        let f = f.clone();
        thread::spawn(move || f.sync())
    };
    entered_rx.recv().unwrap();
    // The second starts while the first has failed but not yet returned.
    let second = {
        let f = f.reopen();
        thread::spawn(move || f.sync())
    };
    let _ = second.join().unwrap();
    let _ = release_tx.send(());
    assert!(first.join().unwrap().is_err(), "the failed sync reports it");

    // The dropped write is dirty again: the next sync rewrites it.
    f.sync().unwrap();
    let durable = disk.durable();
    assert!(
        durable == data,
        "the dropped write was lost: {} durable bytes, not the {PS} written",
        durable.len()
    );
}
