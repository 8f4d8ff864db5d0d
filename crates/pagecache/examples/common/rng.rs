//! The examples' random numbers: xorshift64, cheap, so that a loop measures
//! the cache and not the generator.

pub struct Rng(pub u64);

impl Rng {
    /// Uniform in `0..n` (multiply-shift, no division).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((u128::from(self.0) * u128::from(n)) >> 64) as u64
    }
}
