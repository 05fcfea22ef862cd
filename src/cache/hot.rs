//! Hot keys on one shard: which keys its lookups hit most, right now.
//!
//! A sampled Space-Saving top-k: one lookup in [`SAMPLE`] is counted (as `SAMPLE`
//! lookups) against [`TRACKED`] counters; a key not tracked takes the place of the
//! smallest counter, inheriting its count (Space-Saving's bound: a key's estimate is
//! never below its true count and over-counts by at most the smallest counter). Every
//! [`WINDOW`] the counts halve, so a key that cools down leaves. A key whose estimate
//! reaches the cache's `hot_threshold`, or that was marked hot, is hot: its entry is
//! kept in the cache's protected segment (never evicted by colder keys) and the data
//! path may read it from a separate hot-data Redis.
//!
//! Owns the counters; the cache decides what to do with them. Shard-owned, no lock.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::time::Duration;

/// One lookup in this many is counted.
pub(crate) const SAMPLE: u64 = 4;
/// Keys tracked per cache per shard.
pub(crate) const TRACKED: usize = 16;
/// The counts halve this often.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct HotKeys {
    counters: RefCell<Vec<Counter>>,
    tick: Cell<u64>,
    marked: RefCell<HashSet<Box<str>>>,
}

/// One tracked key. Its `key` string is reused when another key takes the counter, so
/// counting allocates nothing once the strings have grown to the keys' length.
#[derive(Debug, Clone)]
struct Counter {
    hash: u64,
    key: String,
    count: u64,
}

fn hash(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl HotKeys {
    /// Counts a lookup of `key` (one in [`SAMPLE`]); whether this one was counted.
    pub(crate) fn observe(&self, key: &str) -> bool {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick % SAMPLE != 0 {
            return false;
        }
        let h = hash(key);
        let mut counters = self.counters.borrow_mut();
        if let Some(c) = counters.iter_mut().find(|c| c.hash == h && c.key == key) {
            c.count += SAMPLE;
        } else if counters.len() < TRACKED {
            counters.push(Counter { hash: h, key: key.to_owned(), count: SAMPLE });
        } else if let Some(min) = counters.iter_mut().min_by_key(|c| c.count) {
            min.hash = h;
            min.key.clear();
            min.key.push_str(key);
            min.count += SAMPLE;
        }
        true
    }

    /// Whether `key` is hot: marked, or estimated at `threshold` lookups or more in
    /// the current window.
    pub(crate) fn is_hot(&self, key: &str, threshold: u64) -> bool {
        let marked = self.marked.borrow();
        (!marked.is_empty() && marked.contains(key)) || {
            let h = hash(key);
            self.counters.borrow().iter().any(|c| c.hash == h && c.count >= threshold && c.key == key)
        }
    }

    /// Marks `key` hot whatever its traffic.
    pub(crate) fn mark(&self, key: &str) {
        self.marked.borrow_mut().insert(key.into());
    }

    /// Halves every count (the end of a window); keys at zero leave.
    pub(crate) fn decay(&self) {
        let mut counters = self.counters.borrow_mut();
        for c in counters.iter_mut() {
            c.count /= 2;
        }
        counters.retain(|c| c.count > 0);
    }

    /// The `n` most looked-up keys and their estimated lookups this window, hottest first.
    pub(crate) fn top(&self, n: usize) -> Vec<(Box<str>, u64)> {
        let mut top: Vec<(Box<str>, u64)> =
            self.counters.borrow().iter().map(|c| (c.key.as_str().into(), c.count)).collect();
        top.sort_unstable_by_key(|(_, n)| std::cmp::Reverse(*n));
        top.truncate(n);
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_stream_surfaces_its_heavy_hitters() {
        let hot = HotKeys::default();
        // "a" is 50 % of the traffic, "b" 20 %, the rest spread over 1000 keys.
        for i in 0..40_000u64 {
            let key = match i % 10 {
                0..=4 => "a".to_owned(),
                5 | 6 => "b".to_owned(),
                _ => format!("cold-{}", i % 1000),
            };
            hot.observe(&key);
        }
        let top = hot.top(2);
        assert_eq!(top.iter().map(|(k, _)| &**k).collect::<Vec<_>>(), ["a", "b"]);
        assert!(hot.is_hot("a", 10_000) && !hot.is_hot("cold-7", 10_000));
        hot.decay();
        assert!(hot.top(1)[0].1 <= top[0].1 / 2 + SAMPLE);
        hot.mark("flash-sale");
        assert!(hot.is_hot("flash-sale", u64::MAX));
    }
}
