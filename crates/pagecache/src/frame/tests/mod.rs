//! Model checks of the frame state machine (DESIGN §4 invariant 8), run
//! under loom: `RUSTFLAGS="--cfg loom" cargo test -p pagecache --lib --release frame::tests`.
//!
//! Each model composes the real transitions of `frame/state.rs` with models
//! of the locks and the backend their callers use (`page.rs`, `lock.rs`).

mod lock;
mod loom_hazard;
mod loom_hit;
mod loom_readers;
mod loom_state;
mod loom_unstable;
mod page;

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// Executions explored, over every model.
static EXECUTIONS: StdAtomicUsize = StdAtomicUsize::new(0);

/// Runs `f` under loom with the given preemption bound; prints and returns
/// the number of executions explored.
fn model(
    name: &str,
    preemption_bound: Option<usize>,
    f: impl Fn() + Sync + Send + 'static,
) -> usize {
    let before = EXECUTIONS.load(SeqCst);
    let mut b = loom::model::Builder::new();
    b.preemption_bound = preemption_bound;
    b.check(move || {
        EXECUTIONS.fetch_add(1, Relaxed);
        f()
    });
    let n = EXECUTIONS.load(SeqCst) - before;
    println!("loom: {name}: {n} executions explored");
    assert!(n > 0);
    n
}

#[test]
fn zz_report_executions() {
    // Runs last in name order when tests run one at a time; the total is
    // printed by each model as well.
    println!("loom: {} executions so far", EXECUTIONS.load(SeqCst));
}
