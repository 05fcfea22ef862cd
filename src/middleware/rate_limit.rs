//! The rate-limit middleware: 429 with `Retry-After` and the `RateLimit-*` fields.
//!
//! Three scopes, all GCRA on the shard with no lock (see `crate::ratelimit`):
//!
//! ```
//! use ringo::middleware::RateLimit;
//! use ringo::Router;
//!
//! let mut r = Router::new();
//! // Every shard admits 1000/s through here (bursts of 100).
//! r.middleware(RateLimit::per_shard(1000.0, 100));
//! // 200/s for the whole process, however SO_REUSEPORT spreads the connections.
//! let mut api = r.group("/api");
//! api.middleware(RateLimit::global("api", 200.0, 20));
//! // 10/s per API key (per client IP when the header is missing), 50k keys per shard.
//! api.middleware(RateLimit::per_client(10.0, 20).key_header("x-api-key").max_keys(50_000));
//! ```
//!
//! Admitted answers carry `RateLimit-Limit` (the burst), `RateLimit-Remaining` and
//! `RateLimit-Reset` (seconds until the allowance is full); refused ones are 429 with a
//! JSON body, the same fields and `Retry-After` (seconds, at least 1). Refusals are
//! counted per shard (`ringo_rate_limited_total`), key-table evictions too.

use std::rc::Rc;
use std::time::Instant;

use super::{Middleware, Next};
use crate::context::Context;
use crate::ratelimit::cluster::{Admission, ClusterLease};
use crate::ratelimit::{Decision, Gcra, GlobalShare, KeyTable, register_global};
use crate::redis::RedisClient;

/// Keys per shard a per-client limiter keeps by default.
const DEFAULT_MAX_KEYS: usize = 10_000;

pub use crate::ratelimit::cluster::OnRedisDown;

/// A rate limit; add it with `router.middleware(…)` or `group.middleware(…)`.
#[derive(Debug)]
pub struct RateLimit {
    scope: Scope,
    origin: Instant,
}

#[derive(Debug)]
enum Scope {
    /// One allowance for everything through this middleware on this shard.
    Shard { gcra: Gcra, tat: std::cell::Cell<u64> },
    /// This shard's share of a process-wide allowance.
    Global(Rc<GlobalShare>),
    /// One allowance per client key, in a bounded table.
    Client { gcra: Gcra, table: KeyTable, header: Option<Box<str>> },
    /// This shard's leases of an allowance shared through Redis by every instance.
    Cluster(Rc<ClusterLease>),
}

impl RateLimit {
    /// `rate` requests per second on each shard, bursts of up to `burst`.
    pub fn per_shard(rate: f64, burst: u32) -> RateLimit {
        RateLimit::with(Scope::Shard { gcra: Gcra::new(rate, burst), tat: std::cell::Cell::new(0) })
    }

    /// `rate` requests per second for the whole process, bursts of up to `burst`. Each
    /// shard holds a share; with the control thread running (an admin listener) the
    /// shares follow each shard's demand, so a skewed spread of connections still gets
    /// the whole rate; without it each shard keeps `rate / shards`. `name` labels it
    /// in metrics; build it in the app factory (once per shard, like every route).
    pub fn global(name: &str, rate: f64, burst: u32) -> RateLimit {
        RateLimit::with(Scope::Global(register_global(name, rate, burst)))
    }

    /// `rate` requests per second per client (its IP address), bursts of up to `burst`,
    /// keeping at most 10,000 clients per shard (see [`max_keys`](RateLimit::max_keys)).
    pub fn per_client(rate: f64, burst: u32) -> RateLimit {
        RateLimit::with(Scope::Client {
            gcra: Gcra::new(rate, burst),
            table: KeyTable::new(DEFAULT_MAX_KEYS),
            header: None,
        })
    }

    /// `rate` requests per second for the whole cluster — every shard of every
    /// instance whose limit has this `name` and uses the same Redis — bursts of up to
    /// `burst`. Requests are leased from Redis in batches (about 20 ms of the rate),
    /// so Redis sees a few calls per second per shard, not one per request. While
    /// Redis cannot be reached the limit fails open to `rate` per shard (see
    /// [`on_redis_down`](RateLimit::on_redis_down)). Build it in the app factory with
    /// the shard's own client.
    pub fn cluster(name: &str, rate: f64, burst: u32, redis: &RedisClient) -> RateLimit {
        let on_down = OnRedisDown::FailOpen { local_rate: rate };
        RateLimit::with(Scope::Cluster(Rc::new(ClusterLease::new(name, rate, burst, redis.clone(), on_down))))
    }

    /// What a [`cluster`](RateLimit::cluster) limit does while Redis cannot be
    /// reached (other limits ignore it).
    pub fn on_redis_down(mut self, policy: OnRedisDown) -> RateLimit {
        if let Scope::Cluster(lease) = &self.scope {
            let lease = lease.with_policy(policy);
            self.scope = Scope::Cluster(Rc::new(lease));
        }
        self
    }

    /// Per-client limits keyed by this request header (an API key) instead of the IP;
    /// requests without it are keyed by IP.
    pub fn key_header(mut self, name: &str) -> RateLimit {
        if let Scope::Client { header, .. } = &mut self.scope {
            *header = Some(name.into());
        }
        self
    }

    /// Per-client limits keep at most `n` keys per shard: past it, an idle key (whose
    /// allowance is full again, so nothing is lost) or else an arbitrary one is evicted.
    pub fn max_keys(mut self, n: usize) -> RateLimit {
        if let Scope::Client { table, .. } = &mut self.scope {
            *table = KeyTable::new(n);
        }
        self
    }

    fn with(scope: Scope) -> RateLimit {
        RateLimit { scope, origin: Instant::now() }
    }

    /// Checks the request; the decision and the burst it was measured against. The time
    /// is the request's start (the shard clock's reading), not a fresh clock read.
    fn check(&self, c: &Context) -> (Decision, u32, bool) {
        let now =
            c.started.saturating_duration_since(self.origin).as_nanos().min(u128::from(u64::MAX)) as u64;
        match &self.scope {
            Scope::Shard { gcra, tat } => {
                let mut t = tat.get();
                let d = gcra.check(&mut t, now);
                tat.set(t);
                (d, gcra.burst(), false)
            }
            Scope::Global(share) => {
                let (d, burst) = share.check(now);
                (d, burst, false)
            }
            // Decided in `handle`: it may wait for a lease.
            Scope::Cluster(lease) => (Decision::default(), lease.burst(), false),
            Scope::Client { gcra, table, header } => {
                let by_header = header.as_deref().and_then(|h| c.header_bytes(h));
                let ip;
                let key: &[u8] = match by_header {
                    Some(v) => v,
                    None => {
                        ip = client_key(c);
                        &ip.0[..ip.1]
                    }
                };
                let before = table.evictions();
                let d = table.check(gcra, key, now);
                (d, gcra.burst(), table.evictions() != before)
            }
        }
    }
}

/// The client's address as key bytes (no allocation): `Context::client_ip`, so behind
/// trusted proxies the forwarded client, not the proxy.
fn client_key(c: &Context) -> ([u8; 16], usize) {
    match c.client_ip() {
        Some(std::net::IpAddr::V4(v4)) => {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&v4.octets());
            (k, 4)
        }
        Some(std::net::IpAddr::V6(v6)) => (v6.octets(), 16),
        None => ([0; 16], 0),
    }
}

/// Whole seconds, rounded up, of `ns` nanoseconds.
fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

fn set_number(c: &Context, name: &str, n: u64) {
    let mut buf = itoa::Buffer::new();
    c.header(name, buf.format(n));
}

impl Middleware for RateLimit {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let (d, burst, evicted) = match &self.scope {
            Scope::Cluster(lease) => {
                let stats = Rc::clone(&c.shard.stats);
                let (d, counter) = match lease.admit(&stats).await {
                    Admission::Leased(d) if d.allowed => (d, &stats.cluster_admitted[0]),
                    Admission::Leased(d) => (d, &stats.cluster_refused[0]),
                    Admission::Fallback(d) if d.allowed => (d, &stats.cluster_admitted[1]),
                    Admission::Fallback(d) => (d, &stats.cluster_refused[0]),
                    Admission::RefusedRedisDown(d) => (d, &stats.cluster_refused[1]),
                };
                counter.set(counter.get() + 1);
                (d, lease.burst(), false)
            }
            _ => self.check(c),
        };
        let stats = &c.shard.stats;
        if evicted {
            stats.rate_limit_evictions.set(stats.rate_limit_evictions.get() + 1);
        }
        set_number(c, "RateLimit-Limit", u64::from(burst));
        set_number(c, "RateLimit-Remaining", u64::from(d.remaining));
        set_number(c, "RateLimit-Reset", ceil_secs(d.reset_ns));
        if !d.allowed {
            let stats = &c.shard.stats;
            stats.rate_limited.set(stats.rate_limited.get() + 1);
            set_number(c, "Retry-After", ceil_secs(d.retry_ns).max(1));
            c.bytes(429, "application/json", br#"{"error":"rate limited"}"#);
            c.abort();
            return;
        }
        next.run(c).await;
    }
}
