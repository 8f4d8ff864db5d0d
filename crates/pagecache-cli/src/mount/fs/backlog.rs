//! The write-backs of closed files still in flight. Each keeps its source
//! descriptor pinned until it is done, so opens wait while too many are:
//! a client reading thousands of files would otherwise open them faster
//! than the workers write the closed ones back, and run the mount out of
//! descriptors.

use parking_lot::{Condvar, Mutex};

/// How many write-backs are in flight, and a bound for them.
pub struct Backlog {
    n: Mutex<usize>,
    changed: Condvar,
    max: usize,
}

impl Backlog {
    /// A backlog of at most `max` write-backs (at least one).
    pub fn new(max: usize) -> Self {
        Backlog {
            n: Mutex::new(0),
            changed: Condvar::new(),
            max: max.max(1),
        }
    }

    /// One more write-back is in flight.
    pub fn start(&self) {
        *self.n.lock() += 1;
    }

    /// One write-back is over, whether it succeeded or not.
    pub fn done(&self) {
        let mut n = self.n.lock();
        *n = n.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Waits until fewer than the bound are in flight.
    pub fn wait_for_room(&self) {
        let mut n = self.n.lock();
        while *n >= self.max {
            self.changed.wait(&mut n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn an_open_waits_while_the_backlog_is_full() {
        let b = Arc::new(Backlog::new(2));
        b.start();
        b.wait_for_room();
        b.start();
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || {
            b2.wait_for_room();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        b.done();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("room after a write-back ended");
        waiter.join().unwrap();
    }
}
