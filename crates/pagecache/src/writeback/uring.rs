//! The `io_uring` engine: the threads that gather runs (flushers, `sync`)
//! queue each run's write themselves and submit them in batches; one thread
//! reaps the completions and ends the pages' writeback. Readahead windows
//! go on the same ring (`Ring::submit_read`): the reader that hits a marker
//! submits the next window's reads and goes on; the reaper publishes their
//! pages (`readahead::RingRead::complete`). No thread blocks per
//! write, so `io_depth` writes are in flight without `io_depth` threads
//! switching in and out, and a batch reaches the device with one
//! notification (on a virtual disk each notification is a VM exit: per 4 KiB
//! write they were a visible share of the flusher's time in `perf`).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring, Probe};
use parking_lot::Mutex;

use super::io::Run;
use super::writepages::{begin_write, end_write, write_blocking};
use crate::readahead::RingRead;
use crate::state::Inner;

/// `user_data` of the no-op that wakes the reaper at shutdown.
const WAKE: u64 = u64::MAX;
/// Writes queued before they are submitted without waiting for a flush.
const BATCH: usize = 32;

/// The ring and the writes in flight on it.
pub(crate) struct Ring {
    uring: IoUring,
    /// The kernel's ring has vectored reads (readahead may use it).
    reads: bool,
    /// Held to push onto the submission queue (one pusher at a time) and to
    /// change `ops`; never across a system call.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// I/Os in flight, keyed by slot (the entry's `user_data`).
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    live: usize,
    /// Entries pushed since the last submission.
    queued: usize,
    closed: bool,
}

enum Op {
    Write(WriteOp),
    Read(RingRead),
}

struct WriteOp {
    run: Run,
    iov: Iovecs,
    offset: u64,
    len: usize,
    failures_at_issue: u64,
}

/// The buffers of a write in flight: the pages of frames under writeback.
pub(crate) struct Iovecs(pub(crate) Vec<libc::iovec>);

// SAFETY: the pointers are into the cache's arena, which outlives every
// I/O in flight (the reaper holds the cache). A write's frames are under
// writeback, so nothing writes them until the write completes, and they are
// only read (by the kernel, and by `complete`); a read's frames are fresh
// and write-locked by it (a detached guard), so only the kernel touches
// them until the reaper completes the read.
unsafe impl Send for Iovecs {}

impl Ring {
    /// A ring with room for `depth` writes, or why the kernel refused one.
    pub(crate) fn new(depth: usize) -> io::Result<Ring> {
        let entries = (depth.max(1) + 1).next_power_of_two() as u32;
        // Completions wait for the next system call of the thread that
        // submitted instead of interrupting it (5.19+; plain where refused).
        let ring = IoUring::builder()
            .setup_clamp()
            .setup_coop_taskrun()
            .build(entries)
            .or_else(|_| IoUring::builder().setup_clamp().build(entries))?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Writev::CODE) || !probe.is_supported(opcode::Nop::CODE) {
            return Err(io::Error::other(
                "the kernel's io_uring has no vectored write",
            ));
        }
        Ok(Ring {
            uring: ring,
            reads: probe.is_supported(opcode::Readv::CODE),
            state: Mutex::new(State::default()),
        })
    }

    /// Queues `run`'s write (submitted with the next [`Ring::flush`], or now
    /// if `BATCH` are queued); gives the run back if its backend has no
    /// descriptor for it (or the ring is closed), for a blocking thread.
    pub(crate) fn submit(&self, inner: &Inner, run: Run) -> Result<(), Run> {
        let w = begin_write(inner, &run);
        if w.len == 0 {
            drop(w);
            return Err(run);
        }
        let bufs: Vec<IoSlice<'_>> = w.slices.iter().map(|s| IoSlice::new(s)).collect();
        let Some(fd) = run.mapping.backend.async_write_fd(&bufs, w.offset) else {
            drop((bufs, w));
            return Err(run);
        };
        let fd = fd.as_raw_fd();
        let iov = Iovecs(
            w.slices
                .iter()
                .map(|s| libc::iovec {
                    iov_base: s.as_ptr().cast_mut().cast(),
                    iov_len: s.len(),
                })
                .collect(),
        );
        let (offset, len, failures_at_issue) = (w.offset, w.len, w.failures_at_issue);
        drop((bufs, w));
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            return Err(run);
        }
        inner.io.started(inner);
        crate::stats::inc(&inner.counters.writeback_uring_ios);
        let entry = opcode::Writev::new(types::Fd(fd), iov.0.as_ptr(), iov.0.len() as u32)
            .offset(offset)
            .build();
        let key = st.insert(Op::Write(WriteOp {
            run,
            iov,
            offset,
            len,
            failures_at_issue,
        }));
        self.push(&mut st, &entry.user_data(key as u64));
        let full = st.queued >= BATCH;
        drop(st);
        if full {
            self.flush();
        }
        Ok(())
    }

    /// Whether readahead may read through the ring.
    pub(crate) fn has_reads(&self) -> bool {
        self.reads
    }

    /// Queues a readahead read into `read`'s frames through `fd` (submitted
    /// with the next [`Ring::flush`]); gives the read back if the ring is
    /// closed or has no vectored read.
    pub(crate) fn submit_read(&self, fd: RawFd, read: RingRead) -> Result<(), RingRead> {
        if !self.reads {
            return Err(read);
        }
        let mut st = self.state.lock();
        if st.closed {
            return Err(read);
        }
        let iov = &read.iov().0;
        let entry = opcode::Readv::new(types::Fd(fd), iov.as_ptr(), iov.len() as u32)
            .offset(read.offset())
            .build();
        let key = st.insert(Op::Read(read));
        self.push(&mut st, &entry.user_data(key as u64));
        Ok(())
    }

    /// Submits the I/Os queued so far.
    pub(crate) fn flush(&self) {
        let queued = std::mem::take(&mut self.state.lock().queued);
        if queued > 0 {
            self.enter();
        }
    }

    /// Pushes `entry` (submitting what is queued if the queue is full).
    /// `st` proves the state lock is held: one pusher at a time.
    fn push(&self, st: &mut State, entry: &squeue::Entry) {
        st.queued += 1;
        loop {
            // SAFETY: only a holder of the state lock makes a submission
            // queue, and it drops it before letting go.
            let mut sq = unsafe { self.uring.submission_shared() };
            // SAFETY: the entry's buffers (an `Op`'s iovecs, the pages they
            // point to) and descriptor (its run's or read's mapping's
            // backend) live in `ops` until the reaper takes its completion.
            if unsafe { sq.push(entry) }.is_ok() {
                return;
            }
            drop(sq);
            // Full: entries leave the queue when submitted.
            self.enter();
        }
    }

    /// Submits what is queued. A transient refusal (a full completion
    /// queue, no memory for requests) is retried until it passes: a write
    /// left queued could wait forever, with nothing in flight to wake the
    /// reaper.
    fn enter(&self) {
        let mut tries = 0u32;
        loop {
            match self.uring.submit() {
                Err(e) if busy(&e) => {
                    tries += 1;
                    if tries < 100 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(std::time::Duration::from_micros(100));
                    }
                }
                _ => return,
            }
        }
    }

    /// Stops taking writes and wakes the reaper, which leaves once those in
    /// flight have completed.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        self.push(&mut st, &opcode::Nop::new().build().user_data(WAKE));
        st.queued = 0;
        drop(st);
        self.enter();
    }
}

impl State {
    fn insert(&mut self, op: Op) -> usize {
        self.live += 1;
        match self.free.pop() {
            Some(k) => {
                self.ops[k] = Some(op);
                k
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        }
    }

    fn remove(&mut self, key: usize) -> Option<Op> {
        let op = self.ops.get_mut(key)?.take()?;
        self.free.push(key);
        self.live -= 1;
        Some(op)
    }
}

fn busy(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// The reaper's loop: waits for completions and ends their runs' writeback.
pub(crate) fn reap(inner: &Inner) {
    let Some(ring) = &inner.io.ring else {
        return;
    };
    loop {
        if let Err(e) = ring.uring.submit_and_wait(1) {
            if !busy(&e) {
                eprintln!("pagecache: waiting for io_uring completions failed: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        let done: Vec<(u64, i32)> = {
            // SAFETY: this thread is the only one that reads completions.
            let cq = unsafe { ring.uring.completion_shared() };
            cq.map(|c| (c.user_data(), c.result())).collect()
        };
        for (key, res) in done {
            if key == WAKE {
                continue;
            }
            let op = ring.state.lock().remove(key as usize);
            match op {
                Some(Op::Write(op)) => complete(inner, op, res),
                Some(Op::Read(read)) => read.complete(inner, res),
                None => {}
            }
        }
        let st = ring.state.lock();
        if st.closed && st.live == 0 {
            return;
        }
    }
}

/// Ends a write that completed with `res` (bytes written, or `-errno`). A
/// short write, or one the kernel would not take asynchronously, finishes
/// through the backend's blocking call, as it would have without the ring.
// Takes the op: it is done with here (its run's completion sender).
#[allow(clippy::needless_pass_by_value)]
fn complete(inner: &Inner, op: WriteOp, res: i32) {
    let written = usize::try_from(res).ok();
    let result = match written {
        Some(n) if n >= op.len => Ok(()),
        Some(_) | None
            if written.is_some()
                || [libc::EINVAL, libc::EAGAIN, libc::EINTR, libc::EOPNOTSUPP].contains(&-res) =>
        {
            let n = written.unwrap_or(0);
            // SAFETY: see `Iovecs`: the frames are under writeback until
            // `end_write` below, so these bytes are stable and alive.
            let slices: Vec<&[u8]> = op
                .iov
                .0
                .iter()
                .map(|v| unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) })
                .collect();
            let mut skip = n;
            let rest: Vec<&[u8]> = slices
                .into_iter()
                .filter_map(|s| {
                    let k = skip.min(s.len());
                    skip -= k;
                    (k < s.len()).then(|| &s[k..])
                })
                .collect();
            write_blocking(&op.run, &rest, op.offset + n as u64)
        }
        _ => Err(io::Error::from_raw_os_error(-res)),
    };
    end_write(inner, &op.run, &result, op.len, op.failures_at_issue);
    inner.io.finished(inner, &op.run);
}
