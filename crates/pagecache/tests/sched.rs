//! The cache's background threads run under `SCHED_BATCH` when told to.

use pagecache::{Config, PageCache};

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// (name, scheduling policy) of every thread of this process.
fn threads() -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = e.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // exited meanwhile
        };
        // Fields after the command name (which may hold spaces) start at
        // field 3; the policy is field 41.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let policy = rest.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        out.push((comm.trim().to_string(), policy));
    }
    out
}

/// The policies of the cache's threads, after a write that woke them.
fn cache_thread_policies(cfg: Config) -> Vec<(String, u32)> {
    let dir = tempfile::tempdir().unwrap();
    let cache = PageCache::new(cfg).unwrap();
    let f = cache.create(dir.path().join("f")).unwrap();
    f.write_at(&[1u8; 1 << 16], 0).unwrap();
    f.sync().unwrap();
    let found: Vec<_> = threads()
        .into_iter()
        // The readahead threads and the ring's reaper serve readers waiting
        // on them: not batch.
        .filter(|(name, _)| {
            name.starts_with("pc-") && !["pc-prefetch", "pc-uring"].contains(&name.as_str())
        })
        .collect();
    drop(f);
    drop(cache);
    found
}

#[test]
fn the_caches_background_threads_are_batch_threads_when_configured() {
    let batch = cache_thread_policies(Config::new(4 << 20).batch_threads(true));
    assert!(
        batch.iter().any(|(n, _)| n.starts_with("pc-flush")),
        "no flusher among {batch:?}"
    );
    assert!(batch.iter().all(|&(_, p)| p == SCHED_BATCH), "{batch:?}");
    // The test thread itself is untouched.
    let me = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = &me[me.rfind(')').unwrap() + 2..];
    assert_eq!(rest.split(' ').nth(41 - 3), Some("0"), "caller changed");

    let normal = cache_thread_policies(Config::new(4 << 20));
    assert!(!normal.is_empty());
    assert!(normal.iter().all(|&(_, p)| p == SCHED_OTHER), "{normal:?}");
}
