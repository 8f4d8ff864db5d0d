//! An in-memory backend: the model in tests, and a scratch store.

use std::io::{self, IoSlice};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Backend;

/// A backend holding its bytes in memory. Clones share the same bytes, so a
/// test can keep one clone to inspect what the cache wrote.
#[derive(Clone, Debug, Default)]
pub struct MemBackend {
    data: Arc<Mutex<Vec<u8>>>,
}

impl MemBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend holding `bytes`.
    pub fn with_contents(bytes: Vec<u8>) -> Self {
        MemBackend {
            data: Arc::new(Mutex::new(bytes)),
        }
    }

    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.data.lock().clone()
    }
}

/// Makes room for `len` bytes, failing instead of aborting when memory
/// cannot hold them.
fn grow(data: &mut Vec<u8>, len: usize) -> io::Result<()> {
    if len > data.len() {
        data.try_reserve(len - data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "backend too large"))?;
        data.resize(len, 0);
    }
    Ok(())
}

impl Backend for MemBackend {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let data = self.data.lock();
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_vectored_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<usize> {
        crate::stack::probe();
        let mut data = self.data.lock();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut pos = usize::try_from(offset)
            .ok()
            .filter(|o| o.checked_add(total).is_some())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        grow(&mut data, pos + total)?;
        let start = pos;
        for b in bufs {
            let end = pos + b.len();
            data[pos..end].copy_from_slice(b);
            pos = end;
        }
        Ok(pos - start)
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let mut data = self.data.lock();
        grow(&mut data, len)?;
        data.resize(len, 0);
        Ok(())
    }
}
