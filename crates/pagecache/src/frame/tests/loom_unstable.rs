//! Unstable pages and commits (`writeback/commit.rs`): a page whose write
//! completed is UNSTABLE until a sync that started after it succeeds. Its
//! bytes are never freed while they differ from the durable image, a failed
//! sync leaves every page whose bytes are not durable DIRTY (including one
//! whose write completes after the failure: `sync_failures`), and a later
//! writeback and commit always make the page clean and freeable.

use super::model;
use super::page::{on_thread, Page};
use crate::frame::{DIRTY, UNSTABLE, UPTODATE};

fn outcome(sync_ok: bool) -> &'static str {
    if sync_ok {
        "sync ok"
    } else {
        "sync fails"
    }
}

#[test]
fn writeback_end_vs_commit_vs_reclaim() {
    for sync_ok in [true, false] {
        let name = format!("writeback end vs commit vs reclaim ({})", outcome(sync_ok));
        model(&name, None, move || {
            // Dirty: bytes 1 in memory, 0 on the backend.
            let p = Page::new(UPTODATE | DIRTY, 1, 0, 0);
            let flusher = on_thread(&p, |p| p.writeback(true));
            let committer = on_thread(&p, move |p| p.commit(sync_ok));
            p.shrink();
            flusher.join().unwrap();
            committer.join().unwrap();
            p.check_durable();
            p.drain();
        });
    }
}

#[test]
fn writer_redirties_during_writeback_and_commit() {
    for sync_ok in [true, false] {
        let name = format!(
            "unstable page: writer vs writeback vs commit vs reclaim ({})",
            outcome(sync_ok)
        );
        model(&name, Some(3), move || {
            // Unstable: bytes 1 written to the backend, not durable.
            let p = Page::new(UPTODATE | UNSTABLE, 1, 1, 0);
            let writer = on_thread(&p, |p| p.write_at(2));
            let flusher = on_thread(&p, |p| p.writeback(true));
            p.commit(sync_ok);
            p.shrink();
            writer.join().unwrap();
            flusher.join().unwrap();
            p.check_durable();
            p.drain();
        });
    }
}

#[test]
fn commit_vs_failed_commit() {
    let name = "unstable page rewritten: writeback vs commit vs failed commit vs reclaim";
    model(name, Some(3), || {
        // Written once (1, not durable), then rewritten (2): UNSTABLE and
        // DIRTY, so its writeback runs while the two syncs do.
        let p = Page::new(UPTODATE | UNSTABLE | DIRTY, 2, 1, 0);
        let flusher = on_thread(&p, |p| p.writeback(true));
        let ok = on_thread(&p, |p| p.commit(true));
        let failing = on_thread(&p, |p| p.commit(false));
        p.shrink();
        flusher.join().unwrap();
        ok.join().unwrap();
        failing.join().unwrap();
        p.check_durable();
        p.drain();
    });
}
