//! `ringo::cache`: one local cache per shard — no lock, no shared atomic on a lookup.
//!
//! A [`LocalCache`] is built in the app factory, so every shard has its own (`Rc`,
//! `!Send`). It is bounded by entries and by bytes (each value weighed by the
//! function it was built with), keeps a TTL per entry (an expired entry is dropped
//! when read, and a shard timer sweeps the rest every second), and caches absence
//! too: a key known not to exist answers [`Lookup::Absent`] for `negative_ttl`
//! instead of reaching the store again. Eviction is `quick_cache`'s single-owner
//! (`unsync`) cache: CLOCK-PRO-style admission that keeps frequently used keys over
//! one-hit wonders, where plain LRU lets a scan flush them.
//!
//! [`get_or_load`](LocalCache::get_or_load) is the cache-aside read with dogpile
//! protection: concurrent misses of one key on a shard run one load; the others wait
//! for its result.
//!
//! Invalidation crosses shards by message only: [`LocalCache::invalidate`] drops the
//! key here at once and sends it to every other shard of the instance, which applies
//! it on its next tick (every [`INVALIDATION_TICK`]); see `bus.rs`.
//!
//! ```
//! use bytes::Bytes;
//! use ringo::cache::{CacheConfig, LocalCache, Lookup};
//!
//! let cache: LocalCache<Bytes> = LocalCache::new("items", CacheConfig::default(), |v: &Bytes| v.len());
//! cache.insert("a", Bytes::from_static(b"1"));
//! cache.insert_absent("b");
//! assert!(matches!(cache.get("a"), Lookup::Hit(v) if v == "1"));
//! assert!(matches!(cache.get("b"), Lookup::Absent));
//! assert!(matches!(cache.get("c"), Lookup::Miss));
//! ```
//!
//! Owns the shard's entries and in-flight loads; never touches another shard's.

pub(crate) mod bus;
mod filter;
mod hot;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub use bus::INVALIDATION_TICK;
pub use filter::{FilterError, KeyFilter};

/// Keys written since the current filter was built that a shard remembers; past
/// this the guard stands aside until the next filter.
const DELTA_MAX: usize = 100_000;

/// Sizes and lifetimes of a [`LocalCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries kept (values and absences).
    pub max_entries: usize,
    /// Most bytes kept: the sum of keys' lengths, values' weights and a fixed overhead
    /// per entry. Each entry is charged at least `max_bytes / max_entries`, which is
    /// how the entry bound holds too.
    pub max_bytes: u64,
    /// How long a value is kept.
    pub ttl: Duration,
    /// How long an absence is kept.
    pub negative_ttl: Duration,
    /// Probabilistic early refresh (XFetch, β = 1) in `get_or_load`: a hit close to its
    /// expiry is, with a probability that grows as expiry nears and with how long the
    /// value took to load, treated as a miss by that one caller, which reloads it while
    /// every other caller keeps getting the cached value — so a hot key is refreshed
    /// before it expires instead of stampeding when it does.
    pub early_refresh: bool,
    /// Estimated lookups per 10 s window on a shard at which a key is hot: its entry
    /// moves to the protected segment (never evicted by colder keys), and it is
    /// reported (`hot_keys`, `/debug/shards`, `/metrics`). 0: nothing is hot unless
    /// marked.
    pub hot_threshold: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_bytes: 64 << 20,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            early_refresh: true,
            hot_threshold: 1000,
        }
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<V> {
    /// A live value.
    Hit(V),
    /// The key is known not to exist (a negative entry).
    Absent,
    /// Nothing cached (or it expired).
    Miss,
}

/// Where [`LocalCache::get_or_load`]'s answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A cached value or absence.
    Cache,
    /// This call ran the load.
    Loaded,
    /// Another call on this shard was loading the key; this one waited for it.
    Coalesced,
    /// The key filter says the key cannot exist: nothing was loaded.
    Filtered,
}

/// A cache's counters on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found an absence.
    pub negative_hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Loads run by `get_or_load`.
    pub loads: u64,
    /// `get_or_load` calls that waited for another's load instead of running one.
    pub coalesced: u64,
    /// Entries dropped because their TTL passed (read or swept).
    pub expired: u64,
    /// Entries dropped by invalidation (local or from other shards).
    pub invalidated: u64,
    /// Hits that `get_or_load` turned into a reload ahead of expiry (XFetch).
    pub early_refreshes: u64,
    /// Misses the key filter answered (the key cannot exist; the store was not asked).
    pub filtered: u64,
    /// Keys in the current filter (0: none installed).
    pub filter_keys: u64,
    /// The current filter's size in bytes.
    pub filter_bytes: u64,
    /// The current filter's measured false positives per million.
    pub filter_false_positive_ppm: u64,
    /// Keys written since the current filter was built, remembered by this shard.
    pub filter_delta_keys: u64,
    /// Entries in the protected segment (hot keys).
    pub protected: u64,
    /// Entries now.
    pub entries: u64,
    /// Bytes charged now (see [`CacheConfig::max_bytes`]).
    pub bytes: u64,
}

#[derive(Clone)]
enum Slot<V> {
    Value(V),
    Absent,
}

#[derive(Clone)]
struct Entry<V> {
    slot: Slot<V>,
    expires: Instant,
    weight: u64,
    /// How long the value took to load (zero when inserted directly).
    delta: Duration,
}

/// Weighs entries by the weight computed once when they were inserted.
#[derive(Clone)]
struct ByStoredWeight;

impl<V> quick_cache::Weighter<Box<str>, Entry<V>> for ByStoredWeight {
    fn weight(&self, _key: &Box<str>, entry: &Entry<V>) -> u64 {
        entry.weight
    }
}

type Store<V> = quick_cache::unsync::Cache<Box<str>, Entry<V>, ByStoredWeight>;

/// A load in flight: its outcome, once known, and who waits for it.
struct Flight<V, E> {
    outcome: RefCell<Option<Result<Option<V>, E>>>,
    /// The loading call was dropped before it had an outcome.
    abandoned: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

/// In-flight loads by key; each a `Flight<V, E>` for the loader's error type `E`.
type Flights = RefCell<HashMap<Box<str>, Rc<dyn std::any::Any>>>;

pub(crate) struct Inner<V> {
    name: Arc<str>,
    store: RefCell<Store<V>>,
    config: CacheConfig,
    weigh: fn(&V) -> usize,
    /// The least an entry is charged: `max_bytes / max_entries`.
    min_weight: u64,
    /// xorshift64 state for early refresh draws.
    rng: Cell<u64>,
    /// The key filter, once one is installed, and the keys written since it was built.
    filter: RefCell<Option<Arc<KeyFilter>>>,
    written: RefCell<HashMap<Box<str>, Instant>>,
    /// More keys were written than `DELTA_MAX`: the guard stands aside.
    written_overflow: Cell<bool>,
    /// Lookup counts, and the hot keys' entries, kept apart from eviction.
    hot: hot::HotKeys,
    protected: RefCell<HashMap<Box<str>, Entry<V>>>,
    /// Sweeps since the hot counts last halved.
    sweeps: Cell<u32>,
    stats: Cell<CacheStats>,
}

/// One shard's cache of `V` by string key; cheap to clone (an `Rc`). See the module
/// docs.
pub struct LocalCache<V> {
    inner: Rc<Inner<V>>,
    /// In-flight loads by key (type-erased over the loader's error type).
    flights: Rc<Flights>,
}

impl<V> Clone for LocalCache<V> {
    fn clone(&self) -> Self {
        LocalCache { inner: Rc::clone(&self.inner), flights: Rc::clone(&self.flights) }
    }
}

impl<V> std::fmt::Debug for LocalCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCache")
            .field("name", &self.inner.name)
            .field("stats", &self.inner.stats())
            .finish()
    }
}

/// Fixed cost counted per entry besides its key and value (the slot, the expiry).
const ENTRY_OVERHEAD: u64 = 48;

impl<V: Clone + 'static> LocalCache<V> {
    /// A cache named `name` (its metrics label, and the name invalidations address),
    /// weighing each value with `weigh` (bytes). Build it in the app factory: it joins
    /// this shard's invalidation bus and sweep timer.
    pub fn new(name: &str, config: CacheConfig, weigh: fn(&V) -> usize) -> LocalCache<V> {
        let max_entries = config.max_entries.max(1);
        let store = Store::with(
            max_entries,
            config.max_bytes.max(1),
            ByStoredWeight,
            Default::default(),
            Default::default(),
        );
        let cache = LocalCache {
            inner: Rc::new(Inner {
                name: Arc::from(name),
                store: RefCell::new(store),
                config,
                weigh,
                min_weight: (config.max_bytes.max(1) / max_entries as u64).max(1),
                rng: Cell::new(seed()),
                filter: RefCell::new(None),
                written: RefCell::new(HashMap::new()),
                written_overflow: Cell::new(false),
                hot: hot::HotKeys::default(),
                protected: RefCell::new(HashMap::new()),
                sweeps: Cell::new(0),
                stats: Cell::new(CacheStats::default()),
            }),
            flights: Rc::default(),
        };
        bus::register(&cache.inner);
        cache
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        self.inner.count(f);
    }

    /// Looks `key` up (an expired entry is dropped and reported as a miss).
    pub fn get(&self, key: &str) -> Lookup<V> {
        let now = Instant::now();
        // Sampled lookups are counted, and only they may promote a key: the rest pay a
        // counter increment (measured: checking every hit doubled a hit's cost).
        let sampled = self.inner.config.hot_threshold > 0 && self.inner.hot.observe(key);
        let protected = {
            let protected = self.inner.protected.borrow();
            if protected.is_empty() {
                None
            } else {
                protected.get(key).map(|e| (e.expires > now, e.slot.clone()))
            }
        };
        let found = match protected {
            Some(found) => Some(found),
            None => {
                let store = self.inner.store.borrow();
                let found = store.get(key).map(|e| (e.expires > now, e.slot.clone()));
                let promote = matches!(found, Some((true, _)))
                    && sampled
                    && self.inner.is_hot(key)
                    && self.inner.protected.borrow().len() < hot::TRACKED;
                if promote {
                    if let Some(entry) = store.peek(key) {
                        self.inner.protected.borrow_mut().insert(key.into(), entry.clone());
                    }
                }
                found
            }
        };
        match found {
            Some((true, Slot::Value(v))) => {
                self.count(|s| s.hits += 1);
                Lookup::Hit(v)
            }
            Some((true, Slot::Absent)) => {
                self.count(|s| s.negative_hits += 1);
                Lookup::Absent
            }
            Some((false, _)) => {
                self.inner.store.borrow_mut().remove(key);
                self.inner.protected.borrow_mut().remove(key);
                self.count(|s| {
                    s.expired += 1;
                    s.misses += 1;
                });
                Lookup::Miss
            }
            None => {
                self.count(|s| s.misses += 1);
                Lookup::Miss
            }
        }
    }

    /// Keeps `value` for the cache's TTL.
    pub fn insert(&self, key: &str, value: V) {
        self.insert_with_ttl(key, value, self.inner.config.ttl);
    }

    /// Keeps `value` for `ttl`.
    pub fn insert_with_ttl(&self, key: &str, value: V, ttl: Duration) {
        self.put_value(key, value, ttl, Duration::ZERO);
    }

    fn put_value(&self, key: &str, value: V, ttl: Duration, delta: Duration) {
        let weight = key.len() as u64 + (self.inner.weigh)(&value) as u64 + ENTRY_OVERHEAD;
        self.put(key, Slot::Value(value), ttl, weight, delta);
    }

    /// Records that `key` does not exist, for the cache's negative TTL.
    pub fn insert_absent(&self, key: &str) {
        self.put(
            key,
            Slot::Absent,
            self.inner.config.negative_ttl,
            key.len() as u64 + ENTRY_OVERHEAD,
            Duration::ZERO,
        );
    }

    fn put(&self, key: &str, slot: Slot<V>, ttl: Duration, weight: u64, delta: Duration) {
        let weight = weight.max(self.inner.min_weight);
        let entry = Entry { slot, expires: Instant::now() + ttl, weight, delta };
        if let Some(protected) = self.inner.protected.borrow_mut().get_mut(key) {
            *protected = entry.clone();
        }
        self.inner.store.borrow_mut().insert(key.into(), entry);
    }

    /// Drops `key` on this shard only.
    pub fn remove(&self, key: &str) -> bool {
        self.inner.remove(key)
    }

    /// Drops `key` on this shard now, and on every other shard of this instance by
    /// message (applied on their next tick, within [`INVALIDATION_TICK`]). Call it
    /// after writing the key to the store.
    pub fn invalidate(&self, key: &str) {
        self.remove(key);
        self.inner.note_written(key);
        bus::broadcast(&self.inner.name, key);
    }

    /// Installs a key filter built from the keys that existed at `built_from`; keys
    /// written since then stay known through the delta set. The default app's data
    /// path sends it to every shard by message from its builder thread.
    pub fn set_filter(&self, filter: Arc<KeyFilter>, built_from: Instant) {
        self.inner.set_filter(filter, built_from);
    }

    /// Whether `key` may exist: `true` without a filter; otherwise the filter's answer,
    /// or `true` for a key written since it was built.
    pub fn may_exist(&self, key: &str) -> bool {
        self.inner.may_exist(key)
    }

    /// Drops every expired entry (a shard timer calls this every second).
    pub fn sweep(&self) -> usize {
        self.inner.sweep()
    }

    /// This shard's counters for the cache.
    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    /// Marks `key` hot whatever its traffic (a flash-sale item known in advance).
    pub fn mark_hot(&self, key: &str) {
        self.inner.hot.mark(key);
    }

    /// Whether `key` is hot on this shard (marked, or over `hot_threshold`).
    pub fn is_hot(&self, key: &str) -> bool {
        self.inner.is_hot(key)
    }

    /// This shard's most looked-up keys this window and their estimated lookups.
    pub fn hot_keys(&self, n: usize) -> Vec<(Box<str>, u64)> {
        self.inner.hot.top(n)
    }

    /// Cache-aside with dogpile protection: a cached value or absence is answered at
    /// once; otherwise `load` runs — once per key per shard however many calls miss
    /// together; the others wait for its outcome. `Ok(Some(v))` is cached for the TTL,
    /// `Ok(None)` as an absence for the negative TTL; an error is cached nowhere and
    /// handed to every waiter.
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> (Result<Option<V>, E>, Source)
    where
        E: Clone + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let mut stale = None;
        loop {
            match self.get(key) {
                Lookup::Hit(v) if self.refresh_early(key) => stale = Some(v),
                Lookup::Hit(v) => return (Ok(Some(v)), Source::Cache),
                Lookup::Absent => return (Ok(None), Source::Cache),
                Lookup::Miss => {}
            }
            if stale.is_none() && !self.may_exist(key) {
                self.count(|s| s.filtered += 1);
                return (Ok(None), Source::Filtered);
            }
            let existing = self.flights.borrow().get(key).cloned();
            if existing.is_some() {
                // Someone is loading it already: an early refresher keeps the value it has.
                if let Some(v) = stale.take() {
                    return (Ok(Some(v)), Source::Cache);
                }
            }
            let Some(flight) = existing.and_then(|f| f.downcast::<Flight<V, E>>().ok()) else { break };
            self.count(|s| s.coalesced += 1);
            if let Some(outcome) = wait(&flight).await {
                return (outcome, Source::Coalesced);
            }
            // The loading call was dropped: look again, and load if still missing.
        }
        let flight: Rc<Flight<V, E>> = Rc::new(Flight {
            outcome: RefCell::new(None),
            abandoned: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
        });
        self.flights.borrow_mut().insert(key.into(), Rc::clone(&flight) as Rc<dyn std::any::Any>);
        // Ends the flight even if this call is cancelled mid-load: waiters then load
        // again themselves instead of waiting forever.
        let landing = Landing { flights: &self.flights, key, flight: &flight };
        self.count(|s| s.loads += 1);
        if stale.is_some() {
            self.count(|s| s.early_refreshes += 1);
        }
        let began = Instant::now();
        let mut outcome = load().await;
        match &outcome {
            Ok(Some(v)) => self.put_value(key, v.clone(), self.inner.config.ttl, began.elapsed()),
            Ok(None) => self.insert_absent(key),
            Err(_) => {}
        }
        *flight.outcome.borrow_mut() = Some(outcome.clone());
        drop(landing);
        if let (Err(_), Some(v)) = (&outcome, stale) {
            // An early refresh failed: the value it had is still good until its expiry.
            outcome = Ok(Some(v));
            return (outcome, Source::Cache);
        }
        (outcome, Source::Loaded)
    }
}

impl<V> Inner<V> {
    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    fn is_hot(&self, key: &str) -> bool {
        let threshold = self.config.hot_threshold;
        self.hot.is_hot(key, if threshold == 0 { u64::MAX } else { threshold })
    }

    fn remove(&self, key: &str) -> bool {
        let in_protected = self.protected.borrow_mut().remove(key).is_some();
        let removed = self.store.borrow_mut().remove(key).is_some() || in_protected;
        if removed {
            self.count(|s| s.invalidated += 1);
        }
        removed
    }

    fn sweep(&self) -> usize {
        let now = Instant::now();
        let sweeps = self.sweeps.get() + 1;
        if u64::from(sweeps) * bus::SWEEP_EVERY.as_secs().max(1) >= hot::WINDOW.as_secs() {
            self.sweeps.set(0);
            self.hot.decay();
            let cooled: Vec<Box<str>> =
                self.protected.borrow().keys().filter(|k| !self.is_hot(k)).cloned().collect();
            let mut protected = self.protected.borrow_mut();
            for k in cooled {
                protected.remove(&k);
            }
        } else {
            self.sweeps.set(sweeps);
        }
        self.protected.borrow_mut().retain(|_, e| e.expires > now);
        let mut store = self.store.borrow_mut();
        let before = store.len();
        store.retain(|_, e| e.expires > now);
        let dropped = before - store.len();
        drop(store);
        self.count(|s| s.expired += dropped as u64);
        dropped
    }

    fn stats(&self) -> CacheStats {
        let mut s = self.stats.get();
        let store = self.store.borrow();
        s.entries = store.len() as u64;
        s.bytes = store.weight();
        if let Some(f) = self.filter.borrow().as_ref() {
            s.filter_keys = f.keys() as u64;
            s.filter_bytes = f.bytes() as u64;
            s.filter_false_positive_ppm = f.false_positive_ppm();
        }
        s.filter_delta_keys = self.written.borrow().len() as u64;
        s.protected = self.protected.borrow().len() as u64;
        s
    }

    fn note_written(&self, key: &str) {
        if self.filter.borrow().is_none() || self.written_overflow.get() {
            return;
        }
        let mut written = self.written.borrow_mut();
        if written.len() >= DELTA_MAX {
            written.clear();
            self.written_overflow.set(true);
            return;
        }
        written.insert(key.into(), Instant::now());
    }

    fn set_filter(&self, filter: Arc<KeyFilter>, built_from: Instant) {
        *self.filter.borrow_mut() = Some(filter);
        self.written.borrow_mut().retain(|_, at| *at >= built_from);
        self.written_overflow.set(false);
    }

    fn may_exist(&self, key: &str) -> bool {
        if self.written_overflow.get() {
            return true;
        }
        match self.filter.borrow().as_ref() {
            None => true,
            Some(f) => f.may_contain(key) || self.written.borrow().contains_key(key),
        }
    }
}

impl<V: Clone + 'static> LocalCache<V> {
    /// XFetch: whether this hit should reload now, `now + delta · (−ln u) ≥ expiry`
    /// for a uniform draw `u`.
    fn refresh_early(&self, key: &str) -> bool {
        if !self.inner.config.early_refresh {
            return false;
        }
        let (delta, expires) = match self.inner.store.borrow().peek(key) {
            Some(e) if !e.delta.is_zero() => (e.delta, e.expires),
            _ => return false,
        };
        let mut x = self.inner.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.inner.rng.set(x);
        // A uniform draw in (0, 1].
        let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ahead = delta.mul_f64(-u.ln());
        Instant::now() + ahead >= expires
    }
}

/// A per-cache seed for the early-refresh draws.
fn seed() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos | 1
}

/// Removes a flight from the in-flight map and wakes its waiters when dropped.
struct Landing<'a, V, E> {
    flights: &'a Flights,
    key: &'a str,
    flight: &'a Rc<Flight<V, E>>,
}

impl<V, E> Drop for Landing<'_, V, E> {
    fn drop(&mut self) {
        self.flights.borrow_mut().remove(self.key);
        self.flight.abandoned.set(self.flight.outcome.borrow().is_none());
        for w in self.flight.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// Waits for `flight` to land: its outcome, or `None` if its loader was dropped.
async fn wait<V: Clone, E: Clone>(flight: &Rc<Flight<V, E>>) -> Option<Result<Option<V>, E>> {
    std::future::poll_fn(|cx| {
        if let Some(outcome) = flight.outcome.borrow().as_ref() {
            return Poll::Ready(Some(outcome.clone()));
        }
        if flight.abandoned.get() {
            return Poll::Ready(None);
        }
        flight.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    })
    .await
}
