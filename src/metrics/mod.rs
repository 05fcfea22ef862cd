//! Per-shard counters and latency histograms, and their snapshots.
//!
//! A shard counts in plain `Cell`s it alone touches: no atomics, no locks, no allocation
//! on the request path. Every few hundred milliseconds a timer task on the shard copies
//! the counters into a [`Snapshot`] (a plain `Send` value, recycled so steady state
//! allocates nothing) and sends it to the control thread, which aggregates and exports
//! (Prometheus text, `/debug/shards`) at scrape time.

pub(crate) mod prometheus;

use std::cell::Cell;
use std::time::Duration;

use crate::breaker::{self, BreakerSnapshot};
use crate::http::HttpError;

/// Upper bounds of the latency histogram buckets, in microseconds (the last bucket,
/// `+Inf`, is implicit).
pub(crate) const LATENCY_BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 10_000_000,
];

/// Number of `HttpError` kinds: one counter each, indexed by [`HttpError::index`].
pub(crate) const ERROR_KINDS: usize = HttpError::ALL.len();

/// Every `HttpError`, in the order of their counters.
pub(crate) const ERRORS: [HttpError; ERROR_KINDS] = HttpError::ALL;

/// The counter index of an error kind.
pub(crate) fn error_index(e: HttpError) -> usize {
    e.index()
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// Counters of one route (or of the 404/405 answers).
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub(crate) by_class: [Cell<u64>; 5],
}

/// Everything one shard counts. Owned by the shard (`Rc`), never shared across threads.
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) requests: Cell<u64>,
    pub(crate) accepted: Cell<u64>,
    pub(crate) closed: Cell<u64>,
    pub(crate) rejected_connections: Cell<u64>,
    pub(crate) open_connections: Cell<usize>,
    /// Open connections parked: idle long enough to hold no buffers.
    pub(crate) parked_connections: Cell<usize>,
    pub(crate) in_flight: Cell<usize>,
    pub(crate) bytes_in: Cell<u64>,
    pub(crate) bytes_out: Cell<u64>,
    pub(crate) protocol_errors: [Cell<u64>; ERROR_KINDS],
    pub(crate) background_live: Cell<usize>,
    pub(crate) background_started: Cell<u64>,
    pub(crate) background_rejected: Cell<u64>,
    pub(crate) background_panicked: Cell<u64>,
    pub(crate) handler_panics: Cell<u64>,
    pub(crate) access_log_lines: Cell<u64>,
    pub(crate) access_log_dropped: Cell<u64>,
    pub(crate) rate_limited: Cell<u64>,
    pub(crate) rate_limit_evictions: Cell<u64>,
    pub(crate) accept_errors: Cell<u64>,
    pub(crate) arena_abandoned: Cell<u64>,
    pub(crate) shard_restarts: Cell<u64>,
    /// Chains cancelled by the `timeout` middleware.
    pub(crate) timeouts: Cell<u64>,
    /// Requests Redis leased to this shard's cluster-wide rate limits.
    pub(crate) cluster_leased: Cell<u64>,
    /// Requests the cluster-wide limits admitted: by a lease, by the local fallback.
    pub(crate) cluster_admitted: [Cell<u64>; 2],
    /// Requests the cluster-wide limits refused: over the limit, Redis down (fail closed).
    pub(crate) cluster_refused: [Cell<u64>; 2],
    /// Lease requests that failed (Redis unreachable, timed out, breaker open).
    pub(crate) cluster_redis_errors: Cell<u64>,
    pub(crate) latency_buckets: [Cell<u64>; LATENCY_BUCKETS_US.len() + 1],
    pub(crate) latency_sum_us: Cell<u64>,
    /// Per route id, then the redirect, 404 and 405 answers; sized from the router.
    pub(crate) routes: Vec<RouteCounters>,
}

impl ShardStats {
    /// Counters for a router with `routes` routes (plus the redirect, 404 and 405 slots).
    pub(crate) fn with_routes(routes: usize) -> ShardStats {
        ShardStats {
            routes: (0..routes + 3).map(|_| RouteCounters::default()).collect(),
            ..Default::default()
        }
    }

    /// Counts one answered request by route and status class (its latency is added
    /// when its response is written: [`record_latency`](ShardStats::record_latency)).
    pub(crate) fn count(&self, route_slot: usize, status: u16) {
        add(&self.requests, 1);
        if let Some(r) = self.routes.get(route_slot) {
            let class = usize::from(status / 100).clamp(1, 5) - 1;
            add(&r.by_class[class], 1);
        }
    }

    /// Adds `n` requests that each took `took` to the latency histogram.
    pub(crate) fn record_latency(&self, took: Duration, n: u64) {
        // u64 arithmetic (`as_micros` is u128): this runs once per flush.
        let us = took.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(took.subsec_micros()));
        let bucket = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        add(&self.latency_buckets[bucket], n);
        add(&self.latency_sum_us, us.saturating_mul(n));
    }

    pub(crate) fn protocol_error(&self, e: HttpError) {
        add(&self.protocol_errors[error_index(e)], 1);
    }

    pub(crate) fn add_bytes(&self, read: u64, written: u64) {
        add(&self.bytes_in, read);
        add(&self.bytes_out, written);
    }

    /// Copies the counters into `snap` (reusing its buffers).
    pub(crate) fn fill(&self, snap: &mut Snapshot) {
        snap.requests = self.requests.get();
        snap.accepted = self.accepted.get();
        snap.closed = self.closed.get();
        snap.rejected_connections = self.rejected_connections.get();
        snap.open_connections = self.open_connections.get() as u64;
        snap.parked_connections = self.parked_connections.get() as u64;
        snap.in_flight = self.in_flight.get() as u64;
        snap.bytes_in = self.bytes_in.get();
        snap.bytes_out = self.bytes_out.get();
        for (d, s) in snap.protocol_errors.iter_mut().zip(&self.protocol_errors) {
            *d = s.get();
        }
        snap.background_live = self.background_live.get() as u64;
        snap.background_started = self.background_started.get();
        snap.background_rejected = self.background_rejected.get();
        snap.background_panicked = self.background_panicked.get();
        snap.handler_panics = self.handler_panics.get();
        snap.access_log_lines = self.access_log_lines.get();
        snap.access_log_dropped = self.access_log_dropped.get();
        snap.rate_limited = self.rate_limited.get();
        snap.rate_limit_evictions = self.rate_limit_evictions.get();
        snap.accept_errors = self.accept_errors.get();
        snap.arena_abandoned = self.arena_abandoned.get();
        snap.shard_restarts = self.shard_restarts.get();
        snap.timeouts = self.timeouts.get();
        snap.cluster_leased = self.cluster_leased.get();
        snap.cluster_admitted = [self.cluster_admitted[0].get(), self.cluster_admitted[1].get()];
        snap.cluster_refused = [self.cluster_refused[0].get(), self.cluster_refused[1].get()];
        snap.cluster_redis_errors = self.cluster_redis_errors.get();
        breaker::fill_snapshots(&mut snap.breakers);
        for (d, s) in snap.latency_buckets.iter_mut().zip(&self.latency_buckets) {
            *d = s.get();
        }
        snap.latency_sum_us = self.latency_sum_us.get();
        snap.routes.clear();
        snap.routes.extend(self.routes.iter().map(|r| std::array::from_fn(|i| r.by_class[i].get())));
    }
}

/// One global rate limiter's counters on one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct LimiterUsage {
    /// Requests that arrived (admitted or refused), since the shard started.
    pub(crate) demand: u64,
    /// Of those, refused.
    pub(crate) refused: u64,
    /// The shard's share of the limiter's rate now (requests per second).
    pub(crate) share: f64,
}

/// A shard's counters at one moment: plain data, sent to the control thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) shard: usize,
    /// Milliseconds since the server started, when the snapshot was taken (the heartbeat).
    pub(crate) taken_ms: u64,
    pub(crate) requests: u64,
    pub(crate) accepted: u64,
    pub(crate) closed: u64,
    pub(crate) rejected_connections: u64,
    pub(crate) open_connections: u64,
    pub(crate) parked_connections: u64,
    pub(crate) in_flight: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) protocol_errors: [u64; ERROR_KINDS],
    pub(crate) background_live: u64,
    pub(crate) background_started: u64,
    pub(crate) background_rejected: u64,
    pub(crate) background_panicked: u64,
    pub(crate) handler_panics: u64,
    pub(crate) access_log_lines: u64,
    pub(crate) access_log_dropped: u64,
    pub(crate) rate_limited: u64,
    pub(crate) rate_limit_evictions: u64,
    pub(crate) accept_errors: u64,
    /// The shard runtime's kernel calls to submit and reap io (see `rt::IoCounts`).
    pub(crate) io_enters: u64,
    /// Reads that found the shard's buffer ring empty.
    pub(crate) io_fallback_reads: u64,
    pub(crate) arena_abandoned: u64,
    pub(crate) shard_restarts: u64,
    pub(crate) timeouts: u64,
    pub(crate) cluster_leased: u64,
    /// Admitted by a lease, by the fallback.
    pub(crate) cluster_admitted: [u64; 2],
    /// Refused over the limit, with Redis down.
    pub(crate) cluster_refused: [u64; 2],
    pub(crate) cluster_redis_errors: u64,
    /// The local caches built on this shard: name and counters.
    pub(crate) caches: Vec<crate::cache::bus::CacheSnapshot>,
    /// The Redis clients built on this shard, in creation order.
    pub(crate) redis: Vec<crate::redis::RedisSnapshot>,
    /// The circuit breakers built on this shard, in creation order.
    pub(crate) breakers: Vec<BreakerSnapshot>,
    pub(crate) latency_buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub(crate) latency_sum_us: u64,
    /// Per route slot: responses by status class.
    pub(crate) routes: Vec<[u64; 5]>,
    /// Per global rate limiter, in declaration order.
    pub(crate) limiters: Vec<LimiterUsage>,
    /// Sampled spans finished since the last snapshot (emptied by the control thread).
    pub(crate) spans: Vec<crate::span_ring::SpanRecord>,
    /// Spans kept for export since the shard started.
    pub(crate) spans_recorded: u64,
    /// Spans dropped because the shard's ring was full, since the shard started.
    pub(crate) spans_dropped: u64,
}

impl Snapshot {
    /// The latency (µs) below which `q` of the requests fall, from the buckets (the
    /// bucket's upper bound; `None` without requests).
    pub(crate) fn latency_quantile_us(buckets: &[u64], q: f64) -> Option<u64> {
        let total: u64 = buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_US.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_their_buckets_and_classes() {
        let s = ShardStats::with_routes(1);
        for (slot, status, took) in [
            (0, 200, Duration::from_micros(40)),
            (0, 404, Duration::from_micros(700)),
            (1, 500, Duration::from_secs(20)),
        ] {
            s.count(slot, status);
            s.record_latency(took, 1);
        }
        s.record_latency(Duration::from_micros(30), 2);
        let mut snap = Snapshot::default();
        s.fill(&mut snap);
        assert_eq!(snap.requests, 3);
        assert_eq!(snap.routes[0], [0, 1, 0, 1, 0]);
        assert_eq!(snap.routes[1], [0, 0, 0, 0, 1]);
        assert_eq!(snap.latency_buckets[0], 3, "40 µs once, 30 µs twice");
        assert_eq!(snap.latency_sum_us, 40 + 700 + 20_000_000 + 60);
        assert_eq!(snap.latency_buckets[4], 1, "700 µs is in the 1 ms bucket");
        assert_eq!(snap.latency_buckets[LATENCY_BUCKETS_US.len()], 1, "20 s is in +Inf");
        assert_eq!(Snapshot::latency_quantile_us(&snap.latency_buckets, 0.5), Some(LATENCY_BUCKETS_US[0]));
        assert!(ERRORS.iter().enumerate().all(|(i, e)| error_index(*e) == i));
    }
}
