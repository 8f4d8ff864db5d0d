//! Recognisable block contents, so every read can be checked.
//!
//! Each 4 KiB block starts with a header — a magic word with the file's tag,
//! the block number, the version written, and a seed — and its remaining
//! words are derived from the seed. A reader that knows which version it
//! expects checks the header and the last word on every read (cheap) and the
//! whole block on a sample of reads and after the run.

/// Bytes per block: the unit every workload reads and writes.
pub const BLOCK: usize = 4096;
const WORDS: usize = BLOCK / 8;
const MAGIC: u64 = 0x7063_6263; // "pcbc"
const STEP: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed(tag: u32, block: u64, version: u32) -> u64 {
    mix(((tag as u64) << 32 | version as u64) ^ mix(block))
}

fn word(seed: u64, i: usize) -> u64 {
    seed.wrapping_add((i as u64).wrapping_mul(STEP))
}

fn get(buf: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// Fills `buf` (one block) with version `version` of block `block` of the
/// file tagged `tag`.
pub fn fill(buf: &mut [u8], tag: u32, block: u64, version: u32) {
    debug_assert_eq!(buf.len(), BLOCK);
    let s = seed(tag, block, version);
    let head = [MAGIC << 32 | tag as u64, block, version as u64, s];
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        let w = if i < head.len() { head[i] } else { word(s, i) };
        chunk.copy_from_slice(&w.to_le_bytes());
    }
}

/// Checks the header only: the first cache line of the block.
pub fn check_header(buf: &[u8], tag: u32, block: u64, version: u32) -> Result<(), String> {
    if buf.len() != BLOCK {
        return Err(format!("block {block}: {} bytes read", buf.len()));
    }
    let s = seed(tag, block, version);
    let want = [MAGIC << 32 | tag as u64, block, version as u64, s];
    for (i, &w) in want.iter().enumerate() {
        if get(buf, i) != w {
            return Err(describe(buf, tag, block, version, i));
        }
    }
    Ok(())
}

/// Checks the header and the last word. Returns a description of the first
/// difference.
pub fn check_light(buf: &[u8], tag: u32, block: u64, version: u32) -> Result<(), String> {
    if buf.len() != BLOCK {
        return Err(format!("block {block}: {} bytes read", buf.len()));
    }
    let s = seed(tag, block, version);
    let want = [MAGIC << 32 | tag as u64, block, version as u64, s];
    for (i, &w) in want.iter().enumerate() {
        let got = get(buf, i);
        if got != w {
            return Err(describe(buf, tag, block, version, i));
        }
    }
    if get(buf, WORDS - 1) != word(s, WORDS - 1) {
        return Err(describe(buf, tag, block, version, WORDS - 1));
    }
    Ok(())
}

/// Checks every word of the block.
pub fn check_full(buf: &[u8], tag: u32, block: u64, version: u32) -> Result<(), String> {
    check_light(buf, tag, block, version)?;
    let s = seed(tag, block, version);
    let bad = buf
        .chunks_exact(8)
        .enumerate()
        .skip(4)
        .any(|(i, c)| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) != word(s, i));
    if bad {
        let i = (4..WORDS).find(|&i| get(buf, i) != word(s, i)).unwrap_or(4);
        return Err(describe(buf, tag, block, version, i));
    }
    Ok(())
}

fn describe(buf: &[u8], tag: u32, block: u64, version: u32, i: usize) -> String {
    format!(
        "file {tag} block {block}: expected version {version}, found header \
         (tag {:#x}, block {}, version {}); first bad word {i}",
        get(buf, 0),
        get(buf, 1),
        get(buf, 2)
    )
}

/// The version a block's header claims, for readers that cannot know which
/// version to expect: [`check_light`] against it then checks the block is
/// whole and consistent.
pub fn version(buf: &[u8]) -> u32 {
    get(buf, 2) as u32
}

/// A small, fast generator (SplitMix64) for access patterns.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed ^ 0x5851_F42D_4C95_7F2D))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(STEP);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A stateless hash of `x`, for access patterns that must be reproducible.
pub fn hash(x: u64) -> u64 {
    mix(x.wrapping_add(STEP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let mut b = vec![0u8; BLOCK];
        fill(&mut b, 3, 77, 5);
        assert!(check_full(&b, 3, 77, 5).is_ok());
        assert!(check_light(&b, 3, 77, 4).is_err());
        assert!(check_light(&b, 3, 78, 5).is_err());
        b[2000] ^= 1;
        assert!(check_light(&b, 3, 77, 5).is_ok());
        assert!(check_full(&b, 3, 77, 5).is_err());
    }
}
