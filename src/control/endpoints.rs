//! The admin endpoints: what `/healthz`, `/readyz`, `/metrics`, `/debug/shards` and
//! `/debug/dashboard` answer, rendered from the control thread's [`State`] into a
//! [`Reply`]. Pure functions of the state: no sockets, no clocks beyond the state's own,
//! never a shard. Reading requests, writing replies and every deadline belong to the
//! connection driver (`admin.rs`).

use serde::Serialize;

use super::{Lifecycle, State};
use crate::metrics::Snapshot;
use crate::metrics::prometheus::{self, Exposition};

const DASHBOARD: &str = include_str!("dashboard.html");

/// One admin response; the connection always closes after it.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) body: Vec<u8>,
}

impl Reply {
    /// A plain-text reply.
    pub(super) fn text(status: u16, body: &str) -> Reply {
        Reply { status, content_type: "text/plain", body: body.as_bytes().to_vec() }
    }

    fn json(status: u16, value: &impl Serialize) -> Reply {
        let body = serde_json::to_vec_pretty(value).unwrap_or_default();
        Reply { status, content_type: "application/json", body }
    }

    /// The bytes on the wire: head, then the body unless `head_only` (a `HEAD` request,
    /// which still learns the body's length).
    pub(super) fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = crate::http::status::reason(self.status);
        let allow = if self.status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reply for a `GET` (or `HEAD`) of `path` (query already stripped).
pub(super) fn answer(path: &str, state: &State) -> Reply {
    match path {
        "/healthz" => healthz(state),
        "/readyz" => readyz(state),
        "/metrics" => metrics(state),
        "/debug/shards" => debug_shards(state),
        // One self-contained page (no external assets) that polls /debug/shards.
        "/debug/dashboard" => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: DASHBOARD.as_bytes().to_vec(),
        },
        _ => Reply::text(404, "admin endpoints: /healthz /readyz /metrics /debug/shards /debug/dashboard\n"),
    }
}

fn metrics(state: &State) -> Reply {
    let snaps: Vec<Snapshot> = state.latest.iter().flatten().cloned().collect();
    let ages: Vec<f64> =
        state.heartbeat_ages().iter().map(|a| a.map_or(f64::INFINITY, |d| d.as_secs_f64())).collect();
    let limiters: Vec<String> = state.limiters.limiters.iter().map(|l| l.name.clone()).collect();
    let body = prometheus::render(&Exposition {
        limiters: &limiters,
        otlp: state.spans.as_ref().map(|s| s.counts()),
        shards: &snaps,
        routes: &state.routes,
        backend: state.backend,
        heartbeat_age_s: &ages,
        ready: state.lifecycle.get() == Lifecycle::Ready,
    });
    Reply { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body: body.into_bytes() }
}

fn healthz(state: &State) -> Reply {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        stalled_shards: Vec<usize>,
        threshold_ms: u64,
    }
    let stalled = state.stalled_shards();
    let ok = stalled.is_empty();
    let body = Health {
        status: if ok { "ok" } else { "stalled" },
        stalled_shards: stalled,
        threshold_ms: state.stall_after.as_millis() as u64,
    };
    Reply::json(if ok { 200 } else { 503 }, &body)
}

fn readyz(state: &State) -> Reply {
    #[derive(Serialize)]
    struct Ready {
        status: &'static str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        redis_down_on_shards: Vec<usize>,
    }
    let l = state.lifecycle.get();
    let redis_down = if state.redis_ready_required { state.shards_without_redis() } else { Vec::new() };
    if l == Lifecycle::Ready && !redis_down.is_empty() {
        return Reply::json(503, &Ready { status: "redis unavailable", redis_down_on_shards: redis_down });
    }
    Reply::json(
        if l == Lifecycle::Ready { 200 } else { 503 },
        &Ready { status: l.as_str(), redis_down_on_shards: redis_down },
    )
}

fn debug_shards(state: &State) -> Reply {
    #[derive(Serialize)]
    struct Shard {
        shard: usize,
        rps: f64,
        requests: u64,
        in_flight: u64,
        open_connections: u64,
        accepted: u64,
        p99_ms: Option<f64>,
        heartbeat_age_ms: Option<u64>,
        timeouts: u64,
        breakers: Vec<Breaker>,
        hot_keys: Vec<HotKey>,
    }
    #[derive(Serialize, Clone)]
    struct HotKey {
        cache: String,
        key: String,
        /// Estimated lookups this 10 s window.
        lookups: u64,
    }
    #[derive(Serialize)]
    struct Breaker {
        name: String,
        state: &'static str,
        transitions: u64,
        rejected: u64,
    }
    #[derive(Serialize)]
    struct Report {
        lifecycle: &'static str,
        io_backend: &'static str,
        shards: Vec<Shard>,
        total_rps: f64,
        total_requests: u64,
        /// max / mean of per-shard rps (requests when idle): SO_REUSEPORT skew.
        imbalance: f64,
        /// The instance's hottest cache keys: the shards' reports summed per key.
        hot_keys: Vec<HotKey>,
    }
    let ages = state.heartbeat_ages();
    let shards: Vec<Shard> = (0..state.spec_shards)
        .map(|i| {
            let s = state.latest[i].as_ref();
            Shard {
                shard: i,
                rps: (state.rate[i] * 10.0).round() / 10.0,
                requests: s.map_or(0, |s| s.requests),
                in_flight: s.map_or(0, |s| s.in_flight),
                open_connections: s.map_or(0, |s| s.open_connections),
                accepted: s.map_or(0, |s| s.accepted),
                p99_ms: s
                    .and_then(|s| Snapshot::latency_quantile_us(&s.latency_buckets, 0.99))
                    .map(|us| us as f64 / 1000.0),
                heartbeat_age_ms: ages[i].map(|d| d.as_millis() as u64),
                timeouts: s.map_or(0, |s| s.timeouts),
                breakers: s
                    .map_or(&[][..], |s| &s.breakers[..])
                    .iter()
                    .map(|b| Breaker {
                        name: b.name.to_string(),
                        state: b.state.as_str(),
                        transitions: b.transitions.iter().sum(),
                        rejected: b.rejected,
                    })
                    .collect(),
                hot_keys: s
                    .map_or(&[][..], |s| &s.caches[..])
                    .iter()
                    .flat_map(|c| {
                        c.hot.iter().map(|(k, n)| HotKey {
                            cache: c.name.to_string(),
                            key: k.to_string(),
                            lookups: *n,
                        })
                    })
                    .collect(),
            }
        })
        .collect();
    let mut merged: Vec<HotKey> = Vec::new();
    for h in shards.iter().flat_map(|s| &s.hot_keys) {
        match merged.iter_mut().find(|m| m.cache == h.cache && m.key == h.key) {
            Some(m) => m.lookups += h.lookups,
            None => merged.push(h.clone()),
        }
    }
    merged.sort_by_key(|h| std::cmp::Reverse(h.lookups));
    merged.truncate(10);
    let total_rps: f64 = shards.iter().map(|s| s.rps).sum();
    let total_requests: u64 = shards.iter().map(|s| s.requests).sum();
    let load: Vec<f64> = if total_rps > 0.0 {
        shards.iter().map(|s| s.rps).collect()
    } else {
        shards.iter().map(|s| s.requests as f64).collect()
    };
    let mean = load.iter().sum::<f64>() / load.len().max(1) as f64;
    let max = load.iter().copied().fold(0.0, f64::max);
    let imbalance = if mean > 0.0 { ((max / mean) * 100.0).round() / 100.0 } else { 1.0 };
    Reply::json(
        200,
        &Report {
            lifecycle: state.lifecycle.get().as_str(),
            io_backend: state.backend,
            shards,
            total_rps: (total_rps * 10.0).round() / 10.0,
            total_requests,
            imbalance,
            hot_keys: merged,
        },
    )
}
