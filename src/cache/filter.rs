//! The penetration guard: a filter over the keys that exist, so lookups for keys that
//! cannot exist are answered without reaching the store.
//!
//! [`KeyFilter`] is a binary fuse filter (`xorf::BinaryFuse8`): about 9 bits per key
//! and a false-positive rate near 0.4 % (measured at every build and exported), against
//! about 9.6 bits per key for a Bloom filter at 1 % — fuse filters are smaller for the
//! same rate and cost one hash and three reads per lookup. It is immutable once built:
//! it is built off the request path (a builder thread), shared read-only by the shards
//! (`Arc`, never cloned or counted per lookup), and replaced whole by the next build.
//!
//! Keys written after a build started are not in its filter: each shard keeps them in
//! a small delta set (`LocalCache::note_written`, fed by invalidations, which every
//! write sends), bounded; past the bound the guard stands aside (everything may exist)
//! until the next filter arrives.
//!
//! Owns the filter and the key hash; the cache decides when to ask it.

use std::hash::{Hash, Hasher};

use xorf::{BinaryFuse8, Filter};

/// Keys checked against a fresh filter to measure its false-positive rate.
const FPR_PROBES: u64 = 20_000;

/// A filter over a set of keys; see the module docs.
#[derive(Debug)]
pub struct KeyFilter {
    fuse: BinaryFuse8,
    keys: usize,
    /// Measured false positives per million probes of keys not in the set.
    false_positive_ppm: u64,
}

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the key filter over {keys} keys: {reason}")]
pub struct FilterError {
    keys: usize,
    reason: &'static str,
}

/// The 64-bit hash the filter stores: SipHash-1-3 with fixed keys, the same in every
/// process and build.
fn hash(key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl KeyFilter {
    /// A filter over `keys` (duplicates allowed).
    pub fn build<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<KeyFilter, FilterError> {
        let mut hashes: Vec<u64> = keys.into_iter().map(hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let n = hashes.len();
        let fuse = BinaryFuse8::try_from(&hashes).map_err(|reason| FilterError { keys: n, reason })?;
        // Probe keys that are not in the set (a namespace no real key uses).
        let mut false_positives = 0;
        for i in 0..FPR_PROBES {
            let probe = hash(&format!("\u{0}ringo-fpr-probe:{i}"));
            if hashes.binary_search(&probe).is_err() && fuse.contains(&probe) {
                false_positives += 1;
            }
        }
        Ok(KeyFilter { fuse, keys: n, false_positive_ppm: false_positives * 1_000_000 / FPR_PROBES })
    }

    /// Whether `key` may be in the set (never `false` for a key that is).
    pub fn may_contain(&self, key: &str) -> bool {
        self.fuse.contains(&hash(key))
    }

    /// Keys in the set.
    pub fn keys(&self) -> usize {
        self.keys
    }

    /// The filter's size in bytes.
    pub fn bytes(&self) -> usize {
        self.fuse.fingerprints.len()
    }

    /// Bits per key.
    pub fn bits_per_key(&self) -> f64 {
        if self.keys == 0 { 0.0 } else { self.bytes() as f64 * 8.0 / self.keys as f64 }
    }

    /// The false-positive rate measured when it was built.
    pub fn false_positive_rate(&self) -> f64 {
        self.false_positive_ppm as f64 / 1e6
    }

    pub(crate) fn false_positive_ppm(&self) -> u64 {
        self.false_positive_ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_always_pass_and_few_others_do() {
        let keys: Vec<String> = (0..50_000).map(|i| format!("item-{i}")).collect();
        let f = KeyFilter::build(keys.iter().map(String::as_str)).expect("builds");
        assert!(keys.iter().all(|k| f.may_contain(k)), "no false negatives");
        let others = (0..50_000).filter(|i| f.may_contain(&format!("other-{i}"))).count();
        assert!(others < 500, "{others} false positives in 50000 (about 0.4 % expected)");
        assert!(f.bits_per_key() < 10.0, "{} bits per key", f.bits_per_key());
        assert!(f.false_positive_rate() < 0.01);
    }
}
