//! Rate limiting, the thread-per-core way: GCRA per shard, no lock, no shared atomic.
//!
//! - [`Gcra`] is the algorithm (the generic cell rate algorithm, a token bucket that
//!   keeps one timestamp per key: the theoretical arrival time, TAT). A request at `t`
//!   is admitted when `max(TAT, t) - t <= τ`, and then `TAT = max(TAT, t) + T`, where
//!   `T = 1 s / rate` and `τ = T · (burst - 1)`.
//! - [`KeyTable`] holds the TATs of one limiter's keys (client IPs, API keys) on one
//!   shard, bounded: at capacity it evicts an idle key (one whose TAT has passed, which
//!   loses nothing) or else the oldest it finds, and counts evictions.
//! - [`GlobalShare`] is one shard's share of a limit that holds across all shards. Each
//!   shard starts with `rate / shards`; the control thread sees every shard's demand in
//!   the snapshots it already receives and moves unused budget to the busy shards
//!   ([`rebalance`], water-filling), sending each shard its new rate by message. The
//!   request path reads only the shard's own copy.
//!
//! - [`cluster::ClusterLease`] is one shard's side of a limit across every instance:
//!   requests leased from a GCRA allowance in Redis in batches, spent locally, with a
//!   fail-open or fail-closed fallback while Redis cannot be reached.
//!
//! Owns the algorithm, the per-shard tables and shares, and the rebalancing rule; the
//! middleware that applies them is `middleware::rate_limit`.

pub(crate) mod cluster;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;

/// The generic cell rate algorithm for one rate and burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gcra {
    /// Emission interval `T`, in nanoseconds.
    period_ns: u64,
    /// Tolerance `τ = T · (burst - 1)`, in nanoseconds.
    tolerance_ns: u64,
    burst: u32,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// Requests that could still be admitted right now.
    pub(crate) remaining: u32,
    /// Nanoseconds until the allowance is full again.
    pub(crate) reset_ns: u64,
    /// When refused: nanoseconds until a request would be admitted.
    pub(crate) retry_ns: u64,
}

impl Gcra {
    /// `rate` requests per second on average, up to `burst` at once (at least 1).
    pub(crate) fn new(rate: f64, burst: u32) -> Gcra {
        let burst = burst.max(1);
        let period_ns =
            if rate > 0.0 { (1e9 / rate).min(u64::MAX as f64 / 4.0) as u64 } else { u64::MAX / 4 };
        let period_ns = period_ns.max(1);
        Gcra { period_ns, tolerance_ns: period_ns.saturating_mul(u64::from(burst - 1)), burst }
    }

    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    /// Checks one request at `now_ns` against `tat` (updated when admitted).
    pub(crate) fn check(&self, tat: &mut u64, now_ns: u64) -> Decision {
        let start = (*tat).max(now_ns);
        let ahead = start - now_ns;
        if ahead > self.tolerance_ns {
            return Decision {
                allowed: false,
                remaining: 0,
                reset_ns: ahead,
                retry_ns: ahead - self.tolerance_ns,
            };
        }
        *tat = start + self.period_ns;
        let used = *tat - now_ns; // ≤ τ + T
        let left = (self.tolerance_ns + self.period_ns).saturating_sub(used) / self.period_ns;
        Decision {
            allowed: true,
            remaining: left.min(u64::from(u32::MAX)) as u32,
            reset_ns: used,
            retry_ns: 0,
        }
    }
}

/// The TATs of one limiter's keys on one shard, at most `capacity` of them.
pub(crate) struct KeyTable {
    tats: RefCell<HashMap<u64, u64>>,
    hasher: RandomState,
    capacity: usize,
    evictions: Cell<u64>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("keys", &self.tats.borrow().len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// How many entries an eviction looks at for an idle key before taking the first.
const EVICTION_SCAN: usize = 8;

impl KeyTable {
    /// A table for at most `capacity` keys, its memory taken now (none per request).
    pub(crate) fn new(capacity: usize) -> KeyTable {
        let capacity = capacity.max(1);
        KeyTable {
            tats: RefCell::new(HashMap::with_capacity(capacity)),
            hasher: RandomState::new(),
            capacity,
            evictions: Cell::new(0),
        }
    }

    /// Checks a request for `key` at `now_ns`.
    pub(crate) fn check(&self, gcra: &Gcra, key: &[u8], now_ns: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        let mut tats = self.tats.borrow_mut();
        if !tats.contains_key(&hash) && tats.len() >= self.capacity {
            let victim = tats
                .iter()
                .take(EVICTION_SCAN)
                .find(|(_, tat)| **tat <= now_ns)
                .or_else(|| tats.iter().next())
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                tats.remove(&victim);
                self.evictions.set(self.evictions.get() + 1);
            }
        }
        let tat = tats.entry(hash).or_insert(0);
        gcra.check(tat, now_ns)
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.get()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tats.borrow().len()
    }
}

/// One shard's share of a limit that holds across every shard of the process.
#[derive(Debug)]
pub(crate) struct GlobalShare {
    pub(crate) name: Box<str>,
    /// The whole process's rate and burst.
    pub(crate) rate: f64,
    pub(crate) burst: u32,
    /// This shard's algorithm at its current share.
    gcra: Cell<Gcra>,
    share: Cell<f64>,
    tat: Cell<u64>,
    /// Requests that arrived (admitted or not) and that were refused, since start.
    pub(crate) demand: Cell<u64>,
    pub(crate) refused: Cell<u64>,
}

impl GlobalShare {
    fn new(name: &str, rate: f64, burst: u32) -> GlobalShare {
        GlobalShare {
            name: name.into(),
            rate,
            burst,
            gcra: Cell::new(Gcra::new(rate, burst)),
            share: Cell::new(rate),
            tat: Cell::new(0),
            demand: Cell::new(0),
            refused: Cell::new(0),
        }
    }

    /// Sets this shard's share of the rate (its burst scales with it).
    pub(crate) fn set_share(&self, share: f64) {
        let share = share.clamp(0.0, self.rate);
        let burst =
            ((f64::from(self.burst) * share / self.rate.max(f64::MIN_POSITIVE)).round() as u32).max(1);
        self.share.set(share);
        self.gcra.set(Gcra::new(share, burst));
    }

    pub(crate) fn share(&self) -> f64 {
        self.share.get()
    }

    /// Checks one request at `now_ns` against this shard's share.
    pub(crate) fn check(&self, now_ns: u64) -> (Decision, u32) {
        self.demand.set(self.demand.get() + 1);
        let gcra = self.gcra.get();
        let mut tat = self.tat.get();
        let d = gcra.check(&mut tat, now_ns);
        self.tat.set(tat);
        if !d.allowed {
            self.refused.set(self.refused.get() + 1);
        }
        (d, gcra.burst())
    }
}

thread_local! {
    /// Global shares created on this thread (by the app factory, on a shard's thread),
    /// collected by the shard once the factory returns.
    static REGISTERED: RefCell<Vec<Rc<GlobalShare>>> = const { RefCell::new(Vec::new()) };
}

/// A new share of the global limit `name`, registered with the shard being built.
pub(crate) fn register_global(name: &str, rate: f64, burst: u32) -> Rc<GlobalShare> {
    let share = Rc::new(GlobalShare::new(name, rate, burst));
    REGISTERED.with_borrow_mut(|r| r.push(Rc::clone(&share)));
    share
}

/// The global shares the app factory just created on this thread.
pub(crate) fn take_registered() -> Vec<Rc<GlobalShare>> {
    REGISTERED.with_borrow_mut(std::mem::take)
}

/// Splits `rate` among shards by their recent demand (requests per second, admitted or
/// not), water-filling: a shard that wants less than an equal part gets what it wants
/// (plus 10 % headroom), the rest is split evenly among the busier ones (or among all,
/// when none is busy). Every shard keeps at least `rate / (20 · shards)` so new demand
/// is seen and served at once.
pub(crate) fn rebalance(rate: f64, demand: &[f64], shares: &mut Vec<f64>) {
    let n = demand.len();
    shares.clear();
    if n == 0 {
        return;
    }
    let floor = rate / (20.0 * n as f64);
    shares.resize(n, f64::NAN);
    let mut left = rate;
    let mut open = n;
    loop {
        let fair = left / open as f64;
        let mut settled = false;
        for (i, &d) in demand.iter().enumerate() {
            if shares[i].is_nan() {
                let want = (d * 1.1).max(floor);
                if want < fair {
                    shares[i] = want;
                    left -= want;
                    open -= 1;
                    settled = true;
                }
            }
        }
        if !settled || open == 0 {
            break;
        }
    }
    if open == 0 {
        // Every shard wants less than an equal part: hand out the rest evenly.
        let extra = left / n as f64;
        shares.iter_mut().for_each(|s| *s += extra);
        return;
    }
    let fair = left / open as f64;
    for s in shares.iter_mut().filter(|s| s.is_nan()) {
        *s = fair;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn gcra_admits_the_burst_then_the_rate() {
        let g = Gcra::new(10.0, 5); // 10/s, 5 at once
        let mut tat = 0;
        let t0 = 100 * SEC;
        let admitted = (0..8).filter(|_| g.check(&mut tat, t0).allowed).count();
        assert_eq!(admitted, 5, "the burst");
        let refused = g.check(&mut tat, t0);
        assert!(!refused.allowed && refused.retry_ns > 0 && refused.retry_ns <= SEC / 10);
        // One period later, one more.
        assert!(g.check(&mut tat, t0 + SEC / 10).allowed);
        assert!(!g.check(&mut tat, t0 + SEC / 10).allowed);
        // Over 10 s at a steady 20/s offered, about 10/s are admitted.
        let mut ok = 0;
        for i in 0..200 {
            ok += usize::from(g.check(&mut tat, t0 + SEC + i * SEC / 20).allowed);
        }
        assert!((100..=106).contains(&ok), "{ok}");
    }

    #[test]
    fn gcra_reports_remaining_and_reset() {
        let g = Gcra::new(1.0, 3);
        let mut tat = 0;
        let d = g.check(&mut tat, SEC);
        assert_eq!((d.allowed, d.remaining), (true, 2));
        assert_eq!(d.reset_ns, SEC);
        let d = g.check(&mut tat, SEC);
        assert_eq!(d.remaining, 1);
        assert_eq!(d.reset_ns, 2 * SEC);
    }

    #[test]
    fn key_tables_stay_bounded_and_evict_idle_keys_first() {
        let g = Gcra::new(1.0, 1);
        let t = KeyTable::new(4);
        for k in 0..4u8 {
            assert!(t.check(&g, &[k], SEC).allowed);
        }
        assert!(!t.check(&g, &[0], SEC).allowed, "a key keeps its state");
        // Ten new keys later: still four entries, evictions counted.
        for k in 10..20u8 {
            t.check(&g, &[k], 2 * SEC);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.evictions(), 10);
    }

    #[test]
    fn rebalancing_gives_idle_budget_to_busy_shards() {
        let mut shares = Vec::new();
        // Skewed: shard 1 wants 20/s of a 200/s budget; shard 0 all it can get.
        rebalance(200.0, &[5000.0, 20.0], &mut shares);
        assert!((shares[1] - 22.0).abs() < 1e-9, "{shares:?}");
        assert!((shares[0] + shares[1] - 200.0).abs() < 1e-9, "{shares:?}");
        // Both busy: even split.
        rebalance(200.0, &[900.0, 700.0], &mut shares);
        assert_eq!(shares, vec![100.0, 100.0]);
        // All idle: the floor each, the rest even.
        rebalance(200.0, &[0.0, 0.0, 0.0, 0.0], &mut shares);
        assert!(shares.iter().all(|s| (s - 50.0).abs() < 1e-9), "{shares:?}");
        // Three quiet shards and one busy one.
        rebalance(400.0, &[1.0, 1.0, 1.0, 10_000.0], &mut shares);
        assert!(shares[3] > 390.0 - 3.0 * 5.0, "{shares:?}");
        assert!((shares.iter().sum::<f64>() - 400.0).abs() < 1e-9);
    }
}
