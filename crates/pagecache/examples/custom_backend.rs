//! A custom `Backend`: pages are stored scrambled on disk and unscrambled
//! on the way in, so the cache (and every page guard) holds plain bytes.
//!
//! The scrambling is a toy keystream, not encryption: the example is about
//! the trait — positional reads, vectored writes at any offset, `sync`,
//! `len`, `set_len` — not about cryptography.
//!
//! ```sh
//! cargo run -p pagecache --example custom_backend
//! ```

use std::io::{self, IoSlice};
use std::path::Path;

use pagecache::{Backend, Config, FileBackend, PageCache};

/// A file whose byte at offset `o` is stored as `byte ^ keystream(o)`.
struct Scrambled {
    file: FileBackend,
    key: u64,
}

impl Scrambled {
    fn open(path: &Path, key: u64) -> io::Result<Self> {
        Ok(Scrambled {
            file: FileBackend::open(path, true)?,
            key,
        })
    }

    /// XORs `buf` (which sits at `offset` in the file) with the keystream.
    fn apply(&self, buf: &mut [u8], offset: u64) {
        for (i, b) in buf.iter_mut().enumerate() {
            let o = offset + i as u64;
            let x = (o ^ self.key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            *b ^= (x >> 56) as u8;
        }
    }
}

impl Backend for Scrambled {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.file.read_at(buf, offset)?;
        self.apply(&mut buf[..n], offset);
        Ok(n)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        // The cache's buffers are its pages: scramble a copy, never them.
        let mut out = Vec::with_capacity(bufs.iter().map(|b| b.len()).sum());
        for b in bufs {
            out.extend_from_slice(b);
        }
        self.apply(&mut out, offset);
        // A short count is fine: the cache resubmits the rest.
        self.file.write_vectored_at(&[IoSlice::new(&out)], offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }

    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

fn main() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("secret.db");
    let text: Vec<u8> = b"attack at dawn. "
        .iter()
        .copied()
        .cycle()
        .take(100_000)
        .collect();
    {
        let cache = PageCache::new(Config::new(1 << 20))?;
        let file = cache.open_backend(Scrambled::open(&path, 42)?)?;
        file.write_at(&text, 0)?;
        {
            let mut page = file.page_mut(3)?; // plain bytes in the cache
            page[..6].copy_from_slice(b"DAWN!!");
        }
        file.sync()?;
    }
    let on_disk = std::fs::read(&path)?;
    let plain_runs = on_disk.windows(6).filter(|w| w == b"attack").count();
    println!(
        "{} bytes on disk, {plain_runs} plain \"attack\" in them",
        on_disk.len()
    );
    if on_disk.len() != text.len() || plain_runs != 0 {
        return Err(io::Error::other("the file holds plain text"));
    }

    // A fresh cache reads it back through the backend, plain again.
    let cache = PageCache::new(Config::new(1 << 20))?;
    let file = cache.open_backend(Scrambled::open(&path, 42)?)?;
    let mut back = vec![0u8; text.len()];
    file.read_exact_at(&mut back, 0)?;
    let mut want = text;
    want[3 * 4096..3 * 4096 + 6].copy_from_slice(b"DAWN!!");
    if back != want {
        return Err(io::Error::other("read back differs"));
    }
    println!("read back {} plain bytes through a fresh cache", back.len());
    Ok(())
}
