//! An exact LRU cache of a fixed number of pages, for comparing hit ratios.

use std::collections::{BTreeMap, HashMap};

/// Exact least-recently-used replacement over `capacity` pages.
pub struct Lru {
    capacity: usize,
    clock: u64,
    last_use: HashMap<u64, u64>,
    by_time: BTreeMap<u64, u64>,
}

impl Lru {
    pub fn new(capacity: usize) -> Self {
        Lru {
            capacity: capacity.max(1),
            clock: 0,
            last_use: HashMap::with_capacity(capacity + 1),
            by_time: BTreeMap::new(),
        }
    }

    /// Touches `page`; returns whether it was resident.
    pub fn access(&mut self, page: u64) -> bool {
        self.clock += 1;
        let now = self.clock;
        let hit = match self.last_use.insert(page, now) {
            Some(old) => {
                self.by_time.remove(&old);
                true
            }
            None => false,
        };
        self.by_time.insert(now, page);
        if self.last_use.len() > self.capacity {
            if let Some((_, victim)) = self.by_time.pop_first() {
                self.last_use.remove(&victim);
            }
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recent() {
        let mut l = Lru::new(2);
        assert!(!l.access(1));
        assert!(!l.access(2));
        assert!(l.access(1));
        assert!(!l.access(3)); // evicts 2
        assert!(l.access(1));
        assert!(!l.access(2));
    }
}
