//! A persistent key-value store on zero-copy pinned pages: a hash index in
//! cached pages, a write-ahead log, `sync` as the commit. The store itself is
//! in `store.rs`; this file is its command line.
//!
//! ```sh
//! cargo run -p pagecache --example kv                  # self-checking demo
//! cargo run -p pagecache --example kv -- DIR put KEY VALUE
//! cargo run -p pagecache --example kv -- DIR get KEY
//! cargo run -p pagecache --example kv -- DIR del KEY
//! ```
//!
//! `tests/kv_crash.rs` kills a writer with SIGKILL mid-stream and checks
//! that every committed key survives.

mod store;

use std::io;
use std::path::Path;

use pagecache::{Config, PageCache};
use store::Kv;

/// Slot pages of a new store: 256 pages of 32 slots, 8192 keys.
const SLOT_PAGES: u64 = 256;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A budget smaller than the index, so pages are evicted and read back.
    let cache = PageCache::new(Config::new(512 << 10))?;
    match args.as_slice() {
        [] => demo(),
        [dir, cmd, rest @ ..] => {
            let mut kv = Kv::open(&cache, Path::new(dir), SLOT_PAGES)?;
            match (cmd.as_str(), rest) {
                ("put", [k, v]) => {
                    kv.put(k.as_bytes(), v.as_bytes())?;
                    kv.commit()
                }
                ("del", [k]) => {
                    kv.delete(k.as_bytes())?;
                    kv.commit()
                }
                ("get", [k]) => match kv.get(k.as_bytes())? {
                    Some(v) => {
                        println!("{}", String::from_utf8_lossy(&v));
                        Ok(())
                    }
                    None => Err(io::Error::new(io::ErrorKind::NotFound, "no such key")),
                },
                _ => usage(),
            }
        }
        _ => usage(),
    }
}

fn usage() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "usage: kv [DIR put KEY VALUE | DIR get KEY | DIR del KEY]",
    ))
}

/// Writes, deletes, reopens in a fresh cache and checks every key.
fn demo() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = |i: u32| format!("user:{i}");
    {
        let cache = PageCache::new(Config::new(512 << 10))?;
        let mut kv = Kv::open(&cache, dir.path(), SLOT_PAGES)?;
        for i in 0..5000 {
            kv.put(key(i).as_bytes(), format!("balance={}", i * 7).as_bytes())?;
            if i % 100 == 99 {
                kv.commit()?;
            }
        }
        for i in (0..5000).step_by(3) {
            kv.delete(key(i).as_bytes())?;
        }
        kv.commit()?;
        println!("wrote 5000 keys, deleted 1667; cache: {}", summary(&cache));
        // No checkpoint: reopening replays the log.
    }
    let cache = PageCache::new(Config::new(512 << 10))?;
    let kv = Kv::open(&cache, dir.path(), SLOT_PAGES)?;
    for i in 0..5000 {
        let want = (i % 3 != 0).then(|| format!("balance={}", i * 7).into_bytes());
        if kv.get(key(i).as_bytes())? != want {
            return Err(io::Error::other(format!(
                "{} is wrong after reopen",
                key(i)
            )));
        }
    }
    println!(
        "reopened: all 5000 keys checked; cache: {}",
        summary(&cache)
    );
    Ok(())
}

fn summary(cache: &PageCache) -> String {
    let s = cache.stats();
    format!(
        "{} frames, {} hits, {} misses, {} pages written back",
        s.frames, s.events.hits, s.events.misses, s.events.writeback_pages
    )
}
