//! A rate limit for the whole cluster — every shard of every instance sharing one
//! Redis — without Redis on every request.
//!
//! The allowance lives in Redis as one GCRA timestamp (`ringo:ratelimit:{name}`),
//! advanced by a Lua script ([`LEASE_SCRIPT`], called by `EVALSHA`) that grants up to a
//! batch of requests at once, by the same rule as the local [`Gcra`](super::Gcra) on
//! Redis's clock. A shard spends its leased requests locally — a `Cell` decrement, no
//! lock, no I/O — and asks for the next batch in the background when half is spent;
//! a request finding none waits for the one lease in flight (single flight per shard,
//! bounded by the client's command deadline). Unused requests of a lease lapse after
//! [`LEASE_TTL`], so an idle shard does not hoard the cluster's allowance. When Redis
//! says the allowance is spent, the shard refuses locally until the time it named.
//!
//! When Redis cannot be reached (timeout, disconnected, breaker open), the limiter
//! follows its [`OnRedisDown`] policy for [`FALLBACK_FOR`] before asking again: fail
//! open to a local per-shard limit, or fail closed. Metrics say which path admitted
//! each request (`ringo_cluster_rate_limit_admitted_total{via="lease|fallback"}`).
//!
//! Shard-owned (`Rc`, `Cell`); the Redis client is the shard's own.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::{Decision, Gcra};
use crate::metrics::ShardStats;
use crate::redis::{RedisClient, Script};

/// Leases up to `want` requests from the GCRA allowance in `KEYS[1]` (its TAT, in µs
/// on Redis's clock). `ARGV`: emission interval (µs), tolerance (µs), wanted. Returns
/// `{granted, retry_after_µs}`. The rule is [`Gcra::check`] applied `granted` times.
pub(crate) const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return {0, math.ceil(ahead - tolerance)}
end
local granted = math.floor((tolerance - ahead) / interval) + 1
if granted > want then granted = want end
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {granted, 0}
";

/// Leased requests not spent within this lapse (an idle shard hoards nothing).
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(1);
/// After Redis failed, the fallback policy holds this long before Redis is asked again.
pub(crate) const FALLBACK_FOR: Duration = Duration::from_secs(1);

/// What a cluster limit does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OnRedisDown {
    /// Admit up to this many requests per second per shard, bursts of the limit's burst.
    FailOpen {
        /// The local rate (requests/s per shard).
        local_rate: f64,
    },
    /// Refuse every request (429) until Redis answers again.
    FailClosed,
}

/// One shard's side of a cluster-wide limit.
pub(crate) struct ClusterLease {
    /// The limit's name and rate, as built (`with_policy` rebuilds from them).
    name: Box<str>,
    rate: f64,
    key: String,
    redis: RedisClient,
    script: Script,
    interval_us: f64,
    tolerance_us: f64,
    burst: u32,
    /// Requests asked for per lease.
    batch: u32,
    tokens: Cell<u32>,
    /// When (ns since the limiter's origin) the leased tokens lapse.
    lease_expires: Cell<u64>,
    /// Redis said the allowance is spent: refuse locally until then.
    refused_until: Cell<u64>,
    /// Redis failed: follow the policy until then.
    fallback_until: Cell<u64>,
    on_down: OnRedisDown,
    fallback: Gcra,
    fallback_tat: Cell<u64>,
    origin: Instant,
    /// A lease request is in flight; callers waiting for it.
    refilling: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
    /// Last time a Redis failure was logged (ns), to log at most every 10 s.
    logged: Cell<Option<u64>>,
}

impl std::fmt::Debug for ClusterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLease")
            .field("key", &self.key)
            .field("tokens", &self.tokens.get())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// How one request fared, and by which path.
pub(crate) enum Admission {
    Leased(Decision),
    Fallback(Decision),
    /// Refused because Redis is down and the policy is to fail closed.
    RefusedRedisDown(Decision),
}

impl ClusterLease {
    pub(crate) fn new(
        name: &str,
        rate: f64,
        burst: u32,
        redis: RedisClient,
        on_down: OnRedisDown,
    ) -> ClusterLease {
        let burst = burst.max(1);
        let interval_us = if rate > 0.0 { 1e6 / rate } else { f64::MAX / 4.0 };
        // A lease is about 20 ms of the cluster's rate, within the burst.
        let batch = ((rate * 0.02).round() as u32).clamp(1, burst);
        let local_rate = match on_down {
            OnRedisDown::FailOpen { local_rate } => local_rate,
            OnRedisDown::FailClosed => 0.0,
        };
        ClusterLease {
            name: name.into(),
            rate,
            key: format!("ringo:ratelimit:{name}"),
            redis,
            script: Script::new(LEASE_SCRIPT),
            interval_us,
            tolerance_us: interval_us * f64::from(burst - 1),
            burst,
            batch,
            tokens: Cell::new(0),
            lease_expires: Cell::new(0),
            refused_until: Cell::new(0),
            fallback_until: Cell::new(0),
            on_down,
            fallback: Gcra::new(local_rate, burst),
            fallback_tat: Cell::new(0),
            origin: Instant::now(),
            refilling: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
            logged: Cell::new(None),
        }
    }

    /// The same limit with another fallback policy (before any use).
    pub(crate) fn with_policy(&self, on_down: OnRedisDown) -> ClusterLease {
        ClusterLease::new(&self.name, self.rate, self.burst, self.redis.clone(), on_down)
    }

    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds since this limiter was built.
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// Decides one request (waiting, at most the Redis deadline, for a lease when the
    /// shard has none).
    pub(crate) async fn admit(self: &Rc<Self>, stats: &Rc<ShardStats>) -> Admission {
        loop {
            let t = self.now();
            if self.tokens.get() > 0 && t < self.lease_expires.get() {
                let left = self.tokens.get() - 1;
                self.tokens.set(left);
                if left < self.batch / 2 + 1 && !self.refilling.get() {
                    // Ask for the next lease before this one runs out.
                    let (lease, stats) = (Rc::clone(self), Rc::clone(stats));
                    crate::time::spawn(async move { lease.refill(&stats, lease.now()).await });
                }
                return Admission::Leased(Decision {
                    allowed: true,
                    remaining: left,
                    reset_ns: 0,
                    retry_ns: 0,
                });
            }
            if t < self.refused_until.get() {
                let retry_ns = self.refused_until.get() - t;
                return Admission::Leased(Decision {
                    allowed: false,
                    remaining: 0,
                    reset_ns: retry_ns,
                    retry_ns,
                });
            }
            if t < self.fallback_until.get() {
                return self.fallback_check(t);
            }
            if self.refilling.get() {
                self.wait_for_refill().await;
            } else {
                self.refill(stats, t).await;
            }
        }
    }

    fn fallback_check(&self, t: u64) -> Admission {
        match self.on_down {
            OnRedisDown::FailOpen { .. } => {
                let mut tat = self.fallback_tat.get();
                let d = self.fallback.check(&mut tat, t);
                self.fallback_tat.set(tat);
                Admission::Fallback(d)
            }
            OnRedisDown::FailClosed => {
                let retry_ns = self.fallback_until.get().saturating_sub(t).max(1);
                Admission::RefusedRedisDown(Decision {
                    allowed: false,
                    remaining: 0,
                    reset_ns: retry_ns,
                    retry_ns,
                })
            }
        }
    }

    /// Asks Redis for a lease (one at a time per shard) and records what it said.
    async fn refill(&self, stats: &ShardStats, started: u64) {
        if self.refilling.replace(true) {
            return;
        }
        let args =
            [format!("{:.3}", self.interval_us), format!("{:.3}", self.tolerance_us), self.batch.to_string()];
        let answer: crate::redis::Result<Vec<i64>> =
            self.script.invoke(&self.redis, &[&self.key], &args).await;
        match answer.as_deref() {
            Ok([granted, retry_us]) => {
                self.fallback_until.set(0);
                if *granted > 0 {
                    let granted = (*granted).min(i64::from(u32::MAX)) as u32;
                    self.tokens.set(self.tokens.get().saturating_add(granted));
                    self.lease_expires.set(started + LEASE_TTL.as_nanos() as u64);
                    stats.cluster_leased.set(stats.cluster_leased.get() + u64::from(granted));
                } else {
                    let retry_ns = (*retry_us).max(1) as u64 * 1000;
                    self.refused_until.set(started + retry_ns);
                }
            }
            Ok(other) => self.redis_failed(stats, started, &format!("unexpected lease reply {other:?}")),
            Err(e) => self.redis_failed(stats, started, &e.to_string()),
        }
        self.refilling.set(false);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn redis_failed(&self, stats: &ShardStats, at: u64, why: &str) {
        stats.cluster_redis_errors.set(stats.cluster_redis_errors.get() + 1);
        self.fallback_until.set(at + FALLBACK_FOR.as_nanos() as u64);
        if self.logged.get().is_none_or(|l| at.saturating_sub(l) > 10_000_000_000) {
            self.logged.set(Some(at));
            let policy = match self.on_down {
                OnRedisDown::FailOpen { .. } => "admitting by the local limit",
                OnRedisDown::FailClosed => "refusing every request",
            };
            tracing::warn!(key = %self.key, error = why, "cluster rate limit cannot reach Redis; {policy} for 1 s");
        }
    }

    async fn wait_for_refill(&self) {
        let mut queued = false;
        std::future::poll_fn(|cx| {
            if queued || !self.refilling.get() {
                return Poll::Ready(());
            }
            queued = true;
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}
