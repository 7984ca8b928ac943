//! Feature name → weight column, looked up for every feature of every message (~20 per word).
//!
//! Keyed by a 64-bit keyed hash of the name rather than by the name: a lookup is then one
//! probe of the table, whose buckets hold the hash and the column side by side, instead of a
//! probe plus a read of the name's heap allocation to compare it (a second cache miss, most
//! lookups being over a table far larger than the cache's share of it). P2 turns +2–3 % (A/B,
//! medians of 7 rounds).
//!
//! Two names share a hash with probability 2⁻⁶⁴ per pair: even with 10⁶ features in a model,
//! an unseen feature is taken for a known one with probability ~5·10⁻¹⁴ per lookup. The key
//! is random per index (foldhash's keyed hash), so no input can be crafted to collide.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use colloquy_plugin_api::sdk::KeyedHasher;

#[derive(Debug, Clone)]
pub struct FeatureIndex {
    key: KeyedHasher,
    columns: HashMap<u64, u32, BuildHasherDefault<AlreadyHashed>>,
}

impl FeatureIndex {
    /// The column of feature `name`, if the model knows it.
    pub fn get(&self, name: &str) -> Option<&u32> {
        self.columns.get(&self.key.hash_one(name))
    }
}

impl<S: AsRef<str>> FromIterator<(S, u32)> for FeatureIndex {
    fn from_iter<I: IntoIterator<Item = (S, u32)>>(names: I) -> FeatureIndex {
        let key = KeyedHasher::default();
        let columns = names
            .into_iter()
            .map(|(name, column)| (key.hash_one(name.as_ref()), column))
            .collect();
        FeatureIndex { key, columns }
    }
}

/// The table's own hasher: its keys are hashes already.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_find_their_column_and_unknown_ones_none() {
        let names = ["w:hello", "c: h", "c:he", "b:<s> hello", ""];
        let index: FeatureIndex = names.iter().zip(0u32..).map(|(n, i)| (*n, i)).collect();
        for (i, name) in names.iter().enumerate() {
            assert_eq!(index.get(name), Some(&(i as u32)), "{name:?}");
        }
        for unknown in ["w:hell", "w:hello ", "c:eh", "W:hello"] {
            assert_eq!(index.get(unknown), None, "{unknown:?}");
        }
    }
}
