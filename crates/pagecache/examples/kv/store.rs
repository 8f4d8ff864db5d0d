//! The store: a hash index of fixed-size slots in cached pages, and a
//! write-ahead log.
//!
//! Layout of `kv.data`: page 0 is a header (magic, page size, slot pages);
//! pages 1.. hold slots of [`SLOT`] bytes, open addressing with linear
//! probing. A slot is `[state, key len, value len, key (32), value (92)]`.
//!
//! Durability: `put` and `delete` append a checksummed record to `kv.wal`
//! and keep the change pending; `commit` syncs the log (the commit point),
//! then applies the pending changes to the pages in place through
//! `page_mut`, never before, so the flushers can write a data page at any
//! time without putting an uncommitted change on disk. A checkpoint syncs
//! the data file and empties the log. Opening replays the log's valid
//! prefix: replay is idempotent, so a crash at any point — mid-append,
//! mid-apply, mid-checkpoint — recovers every committed change.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use pagecache::{File, PageCache};

/// Bytes per slot; a 4 KiB page holds 32, and 512-byte sectors hold whole
/// slots, so a torn sector never splits one.
pub const SLOT: usize = 128;
/// Longest key and value.
pub const MAX_KEY: usize = 32;
pub const MAX_VALUE: usize = SLOT - 4 - MAX_KEY;

const MAGIC: &[u8; 8] = b"PCKV0001";
const EMPTY: u8 = 0;
const LIVE: u8 = 1;
const TOMBSTONE: u8 = 2;
const PUT: u8 = 1;
const DELETE: u8 = 2;
/// The log is emptied by a checkpoint once it passes this size.
const CHECKPOINT_BYTES: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Put(k, _) | Op::Delete(k) => k,
        }
    }
}

/// A persistent key-value store over two cached files.
pub struct Kv {
    data: File,
    wal: File,
    wal_len: u64,
    slots: u64,
    per_page: u64,
    pending: Vec<Op>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Kv {
    /// Opens the store in `dir`, creating it with `slot_pages` pages of slots
    /// if it does not exist, and recovers whatever the log holds.
    pub fn open(cache: &PageCache, dir: &Path, slot_pages: u64) -> io::Result<Kv> {
        let rw = || cache.open_options().read(true).write(true).create(true);
        let data = rw().open(dir.join("kv.data"))?;
        let wal = rw().open(dir.join("kv.wal"))?;
        let ps = cache.config().get_page_size() as u64;
        if data.is_empty() {
            data.set_len((1 + slot_pages) * ps)?;
            let mut header = data.page_mut(0)?;
            header[..8].copy_from_slice(MAGIC);
            header[8..16].copy_from_slice(&ps.to_le_bytes());
            header[16..24].copy_from_slice(&slot_pages.to_le_bytes());
            drop(header);
            data.sync()?;
        }
        let (page_size, slot_pages) = {
            let header = data.page(0)?;
            if &header[..8] != MAGIC {
                return Err(invalid(format!("{} is not a kv store", dir.display())));
            }
            let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap());
            (word(8), word(16))
        };
        if page_size != ps {
            return Err(invalid(format!(
                "the store was made with {page_size}-byte pages; open it with a cache of that page size"
            )));
        }
        let per_page = ps / SLOT as u64;
        let mut kv = Kv {
            data,
            wal,
            wal_len: 0,
            slots: slot_pages * per_page,
            per_page,
            pending: Vec::new(),
        };
        kv.recover()?;
        Ok(kv)
    }

    /// Replays the log's valid prefix, then checkpoints.
    fn recover(&mut self) -> io::Result<()> {
        let mut log = vec![0u8; self.wal.len() as usize];
        self.wal.read_exact_at(&mut log, 0)?;
        let mut at = 0;
        while let Some((op, len)) = decode(&log[at..]) {
            self.apply(&op)?;
            at += len;
        }
        self.checkpoint()
    }

    /// Sets `key` to `value` at the next commit.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key.is_empty() || key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(invalid(format!(
                "keys take 1..={MAX_KEY} bytes and values up to {MAX_VALUE} (got {} and {})",
                key.len(),
                value.len()
            )));
        }
        self.log(Op::Put(key.to_vec(), value.to_vec()))
    }

    /// Removes `key` at the next commit.
    pub fn delete(&mut self, key: &[u8]) -> io::Result<()> {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(invalid(format!("keys take 1..={MAX_KEY} bytes")));
        }
        self.log(Op::Delete(key.to_vec()))
    }

    fn log(&mut self, op: Op) -> io::Result<()> {
        let rec = encode(&op);
        self.wal.write_all_at(&rec, self.wal_len)?;
        self.wal_len += rec.len() as u64;
        self.pending.push(op);
        Ok(())
    }

    /// Makes every change since the last commit durable, then visible in the
    /// index. When this returns `Ok`, the changes survive a crash.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.wal.sync()?; // the commit point
        for op in std::mem::take(&mut self.pending) {
            self.apply(&op)?;
        }
        if self.wal_len > CHECKPOINT_BYTES {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Makes the index durable and empties the log.
    pub fn checkpoint(&mut self) -> io::Result<()> {
        self.data.sync()?;
        self.wal.set_len(0)?;
        self.wal.sync()?;
        self.wal_len = 0;
        Ok(())
    }

    /// The value of `key`, including changes not yet committed.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        if let Some(op) = self.pending.iter().rev().find(|op| op.key() == key) {
            return Ok(match op {
                Op::Put(_, v) => Some(v.clone()),
                Op::Delete(_) => None,
            });
        }
        let probe = self.probe(key)?;
        let Some(&slot) = probe.matches.first() else {
            return Ok(None);
        };
        let (page, off) = self.place(slot);
        let page = self.data.page(page)?; // pinned, no copy until here
        let s = &page[off..off + SLOT];
        Ok(Some(s[4 + MAX_KEY..4 + MAX_KEY + s[2] as usize].to_vec()))
    }

    fn place(&self, slot: u64) -> (u64, usize) {
        (
            1 + slot / self.per_page,
            (slot % self.per_page) as usize * SLOT,
        )
    }

    /// Walks the probe chain of `key` up to the first empty slot: every slot
    /// holding `key` (a crash can leave a stale copy after the live one) and
    /// the first reusable slot.
    fn probe(&self, key: &[u8]) -> io::Result<Probe> {
        let mut probe = Probe::default();
        let home = fnv1a(key) % self.slots;
        let mut guard: Option<(u64, pagecache::PageReadGuard<'_>)> = None;
        for step in 0..self.slots {
            let slot = (home + step) % self.slots;
            let (page, off) = self.place(slot);
            if guard.as_ref().is_none_or(|(p, _)| *p != page) {
                drop(guard.take()); // one pin at a time
                guard = Some((page, self.data.page(page)?));
            }
            let s = &guard.as_ref().unwrap().1[off..off + SLOT];
            match s[0] {
                EMPTY => {
                    probe.free.get_or_insert(slot);
                    return Ok(probe);
                }
                LIVE if &s[4..4 + s[1] as usize] == key => probe.matches.push(slot),
                TOMBSTONE => {
                    probe.free.get_or_insert(slot);
                }
                _ => {}
            }
        }
        Ok(probe)
    }

    /// Applies one logged change to the index; applying it twice is the same
    /// as once.
    fn apply(&self, op: &Op) -> io::Result<()> {
        let probe = self.probe(op.key())?;
        let mut stale = probe.matches.iter().copied();
        if let Op::Put(key, value) = op {
            let slot = match stale.next().or(probe.free) {
                Some(s) => s,
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "every slot holds a key; make a store with more slot pages",
                    ))
                }
            };
            let (page, off) = self.place(slot);
            let mut page = self.data.page_mut(page)?; // in place, no copy
            let s = &mut page[off..off + SLOT];
            s.fill(0);
            s[0] = LIVE;
            s[1] = key.len() as u8;
            s[2] = value.len() as u8;
            s[4..4 + key.len()].copy_from_slice(key);
            s[4 + MAX_KEY..4 + MAX_KEY + value.len()].copy_from_slice(value);
        }
        for slot in stale {
            let (page, off) = self.place(slot);
            self.data.page_mut(page)?[off] = TOMBSTONE;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Probe {
    matches: Vec<u64>,
    free: Option<u64>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// CRC-32 (IEEE), bitwise: the log is small and this keeps the example
/// free of dependencies.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// `[crc32 of the rest][op][key len][value len][key][value]`.
fn encode(op: &Op) -> Vec<u8> {
    let (tag, key, value): (u8, &[u8], &[u8]) = match op {
        Op::Put(k, v) => (PUT, k, v),
        Op::Delete(k) => (DELETE, k, &[]),
    };
    let mut rec = vec![0u8; 4];
    rec.extend_from_slice(&[tag, key.len() as u8, value.len() as u8]);
    rec.extend_from_slice(key);
    rec.extend_from_slice(value);
    let crc = crc32(&rec[4..]);
    rec[..4].copy_from_slice(&crc.to_le_bytes());
    rec
}

/// The record at the start of `log` and its length, or `None` at the end of
/// the valid prefix (end of log, a torn append, zeros).
fn decode(log: &[u8]) -> Option<(Op, usize)> {
    let head = log.get(..7)?;
    let (klen, vlen) = (head[5] as usize, head[6] as usize);
    let len = 7 + klen + vlen;
    let rec = log.get(..len)?;
    if klen == 0 || klen > MAX_KEY || vlen > MAX_VALUE {
        return None;
    }
    if u32::from_le_bytes(rec[..4].try_into().unwrap()) != crc32(&rec[4..]) {
        return None;
    }
    let key = rec[7..7 + klen].to_vec();
    match head[4] {
        PUT => Some((Op::Put(key, rec[7 + klen..].to_vec()), len)),
        DELETE if vlen == 0 => Some((Op::Delete(key), len)),
        _ => None,
    }
}
