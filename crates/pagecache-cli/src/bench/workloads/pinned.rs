//! The whole of a working set pinned at once, for `hit`'s memcpy floor.
//!
//! `File::page` looks through every guard the calling thread already holds
//! (to refuse a page it would deadlock on), so one thread pinning `n` pages
//! makes `n²/2` comparisons: 1.4 × 10¹¹, minutes per round, for the half
//! million pages of a 4 GiB budget (at 1 GiB, 77% of a run's samples were in
//! that check). Here a chain of threads each pins one chunk and holds it
//! while the next thread pins the following chunk; the last runs the
//! caller's work over every page. The guards stay on the threads that took
//! them, as their bookkeeping requires.

use pagecache::File;

use crate::CliError;

/// Pages each thread of the chain pins: the chain pins `n` pages with
/// `n × CHUNK / 2` comparisons on `n / CHUNK` threads (1024 at 4 GiB).
const CHUNK: u64 = 512;

/// Stack of each thread of the chain: it holds a few locals and waits.
const STACK: usize = 256 << 10;

/// Pins pages `0..n` of `file` and runs `work` with their bytes, indexed by
/// page; unpins them when `work` returns.
pub fn with_pinned<R, F>(file: &File, n: u64, work: F) -> Result<R, CliError>
where
    R: Send,
    F: FnOnce(&[&[u8]]) -> Result<R, CliError> + Send,
{
    link(file, 0, n, &[], work)
}

/// One thread of the chain: pins `from..` up to a chunk, then hands on.
fn link<R, F>(file: &File, from: u64, n: u64, above: &[&[&[u8]]], work: F) -> Result<R, CliError>
where
    R: Send,
    F: FnOnce(&[&[u8]]) -> Result<R, CliError> + Send,
{
    let to = (from + CHUNK).min(n);
    let mut guards = Vec::with_capacity((to - from) as usize);
    for b in from..to {
        guards.push(file.page(b).map_err(CliError::Cache)?);
    }
    let mine: Vec<&[u8]> = guards.iter().map(|g| &**g).collect();
    let mut chunks = above.to_vec();
    chunks.push(&mine);
    let r = if to >= n {
        let pages: Vec<&[u8]> = chunks.concat();
        work(&pages)
    } else {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(STACK)
                .spawn_scoped(s, || link(file, to, n, &chunks, work))
                .map_err(|e| CliError::io("starting a pinning thread", None, e))?
                .join()
                .unwrap_or_else(|_| Err(CliError::Check("a pinning thread panicked".into())))
        })
    };
    drop(mine);
    // Last pinned first: each unpin finds its entry at the end.
    while let Some(g) = guards.pop() {
        drop(g);
    }
    r
}

#[cfg(test)]
mod tests {
    use pagecache::{Config, MemBackend, PageCache};

    use super::*;

    #[test]
    fn every_page_is_handed_over_in_order_and_held_until_work_returns() {
        let cache = PageCache::new(Config::new(64 << 20)).unwrap();
        let file = cache.open_backend(MemBackend::new()).unwrap();
        // More than two chunks, the last one partial.
        let n = 2 * CHUNK + 17;
        for b in 0..n {
            file.write_at(&b.to_le_bytes(), b * 4096).unwrap();
        }
        file.sync().unwrap();
        let bytes = n * 4096;
        let seen = with_pinned(&file, n, |pages| {
            // Held: clean as they are, none can be dropped.
            assert_eq!(file.evict(0..bytes).unwrap(), 0);
            Ok(pages
                .iter()
                .map(|p| u64::from_le_bytes(p[..8].try_into().unwrap()))
                .collect::<Vec<_>>())
        })
        .unwrap();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        // Let go: every page can be dropped now.
        assert_eq!(file.evict(0..bytes).unwrap(), n);
    }

    #[test]
    fn a_failed_pin_is_an_error_not_a_hang() {
        let cache = PageCache::new(Config::new(1 << 20)).unwrap();
        let file = cache.open_backend(MemBackend::new()).unwrap();
        file.write_at(&[7; 4096], 0).unwrap();
        // Page 1 is past the end of the file.
        let r = with_pinned(&file, 2, |_| Ok(()));
        assert!(matches!(r, Err(CliError::Cache(_))), "{r:?}");
    }
}
