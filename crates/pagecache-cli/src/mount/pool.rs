//! Worker threads for work that may take seconds: fsync and writing back
//! closed files. The thread that read the request hands it over with its
//! reply and goes on reading requests, so a long sync never holds a
//! serving thread.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running jobs in submission order.
pub struct Pool {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `n` threads.
    pub fn new(n: usize) -> std::io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let pool = Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(Vec::new()),
        };
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("pc-fuse-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            match t {
                Ok(t) => pool.threads.lock().push(t),
                Err(e) => {
                    pool.join();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Runs `job` on a worker; after [`Pool::join`], on the caller's thread.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let refused = match &*self.tx.lock() {
            Some(tx) => tx.send(job).err().map(|mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = refused {
            job();
        }
    }

    /// Waits for every submitted job and stops the threads.
    pub fn join(&self) {
        self.tx.lock().take();
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_blocked_job_does_not_hold_up_the_others() {
        let pool = Pool::new(2).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        pool.run(move || {
            let _ = release_rx.recv();
        });
        let (done_tx, done_rx) = mpsc::channel();
        pool.run(move || done_tx.send(()).unwrap());
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("second job ran while the first was blocked");
        release_tx.send(()).unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let n = n.clone();
            pool.run(move || {
                n.fetch_add(1, Ordering::Relaxed);
            });
        }
        pool.join();
        assert_eq!(n.load(Ordering::Relaxed), 10);
        // After join, jobs run inline.
        let n2 = n.clone();
        pool.run(move || {
            n2.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 11);
    }
}
