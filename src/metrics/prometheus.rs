//! Prometheus text exposition (format 0.0.4) of the shards' snapshots and the process.
//!
//! Every series carries a `shard` label; sum over it for totals. Route labels are route
//! patterns (`/users/:id`), never raw paths, so cardinality is bounded by the router.

use std::fmt::Write;

use super::{ERRORS, LATENCY_BUCKETS_US, Snapshot};

/// What the exposition needs besides the snapshots.
#[derive(Debug)]
pub(crate) struct Exposition<'a> {
    /// The latest snapshot of each shard.
    pub(crate) shards: &'a [Snapshot],
    /// Per shard: `(method, pattern)` of each route slot (then the 404 and 405 slots).
    pub(crate) routes: &'a [Vec<(String, String)>],
    /// The io backend in use.
    pub(crate) backend: &'a str,
    /// Seconds since each shard's last snapshot.
    pub(crate) heartbeat_age_s: &'a [f64],
    /// 1 while ready.
    pub(crate) ready: bool,
    /// The global rate limiters' names, in the order of `Snapshot::limiters`.
    pub(crate) limiters: &'a [String],
    /// Spans the control thread handled `(exported, failed, dropped)`, when it exports.
    pub(crate) otlp: Option<[u64; 3]>,
}

/// A per-shard series: name, type, help, and how to read it from a snapshot.
type PerShard = (&'static str, &'static str, &'static str, fn(&Snapshot) -> u64);

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A series over named things each shard reports (caches, Redis clients, breakers,
/// limiters): name, type, help, and how to read the value from one thing.
type PerItem<T, V> = (&'static str, &'static str, &'static str, fn(&T) -> V);

/// Writes each series of `table` for every thing `items` hands over from each shard,
/// as `name{shard="…",<label>="<thing>"} value`.
fn per_item<T, V: std::fmt::Display>(
    out: &mut String,
    shards: &[Snapshot],
    table: &[PerItem<T, V>],
    label: &str,
    items: impl Fn(&Snapshot, &mut dyn FnMut(&str, &T)),
) {
    for (name, kind, help, get) in table {
        header(out, name, kind, help);
        for s in shards {
            items(s, &mut |item, value| {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{}\",{label}=\"{}\"}} {}",
                    s.shard,
                    escape(item),
                    get(value)
                );
            });
        }
    }
}

/// One histogram's series over [`LATENCY_BUCKETS_US`] (then `+Inf`): cumulative
/// buckets in seconds, the sum and the count, with `labels` (`k="v",…`).
fn latency_histogram(out: &mut String, name: &str, labels: &str, buckets: &[u64], sum_us: u64) {
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = match LATENCY_BUCKETS_US.get(i) {
            Some(us) => format!("{}", *us as f64 / 1e6),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
}

/// Renders the whole exposition.
pub(crate) fn render(e: &Exposition<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    header(
        &mut out,
        "ringo_http_requests_total",
        "counter",
        "Requests answered, by route pattern, method and status class.",
    );
    for s in e.shards {
        let names = e.routes.get(s.shard).map(Vec::as_slice).unwrap_or(&[]);
        for (slot, classes) in s.routes.iter().enumerate() {
            let Some((method, route)) = names.get(slot) else { continue };
            for (i, n) in classes.iter().enumerate() {
                if *n > 0 {
                    let _ = writeln!(
                        out,
                        "ringo_http_requests_total{{shard=\"{}\",method=\"{}\",route=\"{}\",status=\"{}xx\"}} {n}",
                        s.shard,
                        escape(method),
                        escape(route),
                        i + 1
                    );
                }
            }
        }
    }
    header(
        &mut out,
        "ringo_http_request_duration_seconds",
        "histogram",
        "Time from a request's start (its bytes read, or the await before it ended) until its response is written (handed to the socket).",
    );
    for s in e.shards {
        let labels = format!("shard=\"{}\"", s.shard);
        latency_histogram(
            &mut out,
            "ringo_http_request_duration_seconds",
            &labels,
            &s.latency_buckets,
            s.latency_sum_us,
        );
    }
    let per_shard: [PerShard; 25] = [
        ("ringo_http_requests_in_flight", "gauge", "Requests being handled.", |s| s.in_flight),
        ("ringo_connections_open", "gauge", "Open client connections.", |s| s.open_connections),
        (
            "ringo_connections_parked",
            "gauge",
            "Open connections idle long enough to hold no buffers or request state.",
            |s| s.parked_connections,
        ),
        ("ringo_connections_accepted_total", "counter", "Connections accepted.", |s| s.accepted),
        ("ringo_connections_closed_total", "counter", "Connections closed.", |s| s.closed),
        (
            "ringo_connections_rejected_total",
            "counter",
            "Connections closed at accept (limits.max_connections).",
            |s| s.rejected_connections,
        ),
        ("ringo_received_bytes_total", "counter", "Bytes read from clients.", |s| s.bytes_in),
        ("ringo_sent_bytes_total", "counter", "Bytes written to clients.", |s| s.bytes_out),
        ("ringo_background_tasks", "gauge", "Background tasks alive.", |s| s.background_live),
        ("ringo_background_tasks_started_total", "counter", "Background tasks started.", |s| {
            s.background_started
        }),
        (
            "ringo_background_tasks_rejected_total",
            "counter",
            "Background tasks refused at the per-shard limit.",
            |s| s.background_rejected,
        ),
        (
            "ringo_background_tasks_panicked_total",
            "counter",
            "Background tasks that ended in a panic (caught; the shard kept serving).",
            |s| s.background_panicked,
        ),
        (
            "ringo_handler_panics_total",
            "counter",
            "Handler or middleware panics, answered 500 (the connection and shard kept serving).",
            |s| s.handler_panics,
        ),
        ("ringo_access_log_lines_total", "counter", "Access-log lines formatted.", |s| s.access_log_lines),
        (
            "ringo_access_log_dropped_total",
            "counter",
            "Access-log lines dropped because the writer fell behind (requests were not slowed).",
            |s| s.access_log_dropped,
        ),
        ("ringo_rate_limited_total", "counter", "Requests refused with 429 by a rate limit.", |s| {
            s.rate_limited
        }),
        (
            "ringo_rate_limit_evictions_total",
            "counter",
            "Client keys evicted from a full per-client rate-limit table.",
            |s| s.rate_limit_evictions,
        ),
        ("ringo_accept_errors_total", "counter", "Failed accepts (EMFILE, ENFILE, ENOBUFS...).", |s| {
            s.accept_errors
        }),
        (
            "ringo_io_enters_total",
            "counter",
            "Kernel calls the shard's loop made to submit and reap io: io_uring_enter (epoll_wait on epoll). Divided by requests: fewer than one under load.",
            |s| s.io_enters,
        ),
        (
            "ringo_io_fallback_reads_total",
            "counter",
            "Reads that found the shard's io_uring buffer ring empty and read into the connection's own buffer.",
            |s| s.io_fallback_reads,
        ),
        (
            "ringo_arena_abandoned_total",
            "counter",
            "Request arenas leaked because a chain future was forgotten, not dropped.",
            |s| s.arena_abandoned,
        ),
        (
            "ringo_shard_restarts_total",
            "counter",
            "Times this shard died and was restarted (server.on_shard_death = restart).",
            |s| s.shard_restarts,
        ),
        (
            "ringo_timeouts_total",
            "counter",
            "Handlers cancelled at their route's deadline (timeout middleware), answered 503 or 504.",
            |s| s.timeouts,
        ),
        ("ringo_spans_recorded_total", "counter", "Sampled request spans kept for OTLP export.", |s| {
            s.spans_recorded
        }),
        (
            "ringo_spans_dropped_total",
            "counter",
            "Sampled spans dropped because the shard's span ring was full (trace.spans_per_shard).",
            |s| s.spans_dropped,
        ),
    ];
    for (name, kind, help, get) in per_shard {
        header(&mut out, name, kind, help);
        for s in e.shards {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }
    header(
        &mut out,
        "ringo_http_parse_errors_total",
        "counter",
        "Requests refused by the protocol rules and limits, by kind.",
    );
    for s in e.shards {
        for (i, n) in s.protocol_errors.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringo_http_parse_errors_total{{shard=\"{}\",kind=\"{}\"}} {n}",
                s.shard,
                ERRORS[i].kind()
            );
        }
    }
    if !e.limiters.is_empty() {
        let per_limiter: [PerItem<super::LimiterUsage, f64>; 3] = [
            (
                "ringo_rate_limit_share",
                "gauge",
                "This shard's share of a global rate limit (requests/s).",
                |u| u.share,
            ),
            ("ringo_rate_limit_demand_total", "counter", "Requests that reached a global rate limit.", |u| {
                u.demand as f64
            }),
            ("ringo_rate_limit_refused_total", "counter", "Requests a global rate limit refused.", |u| {
                u.refused as f64
            }),
        ];
        per_item(&mut out, e.shards, &per_limiter, "limiter", |s, series| {
            for (limiter, usage) in e.limiters.iter().zip(&s.limiters) {
                series(limiter, usage);
            }
        });
    }
    cluster_rate_limits(&mut out, e.shards);
    redis_clients(&mut out, e.shards);
    local_caches(&mut out, e.shards);
    header(&mut out, "ringo_shard_heartbeat_age_seconds", "gauge", "Seconds since the shard last reported.");
    for (shard, age) in e.heartbeat_age_s.iter().enumerate() {
        let _ = writeln!(out, "ringo_shard_heartbeat_age_seconds{{shard=\"{shard}\"}} {age:.3}");
    }
    breakers(&mut out, e.shards);
    if let Some(counts) = e.otlp {
        header(
            &mut out,
            "ringo_otlp_spans_total",
            "counter",
            "Spans sent to the OTLP collector, by outcome (failed: the request failed; dropped: the exporter was behind).",
        );
        for (outcome, n) in ["exported", "failed", "dropped"].iter().zip(counts) {
            let _ = writeln!(out, "ringo_otlp_spans_total{{outcome=\"{outcome}\"}} {n}");
        }
    }
    header(&mut out, "ringo_io_backend_info", "gauge", "The io backend in use.");
    let _ = writeln!(out, "ringo_io_backend_info{{backend=\"{}\"}} 1", escape(e.backend));
    header(&mut out, "ringo_ready", "gauge", "1 when every shard listens and start-up work is done.");
    let _ = writeln!(out, "ringo_ready {}", u8::from(e.ready));
    process_metrics(&mut out);
    out
}

/// The cluster-wide (Redis-leased) rate limits: only when some shard has one at work.
fn cluster_rate_limits(out: &mut String, shards: &[Snapshot]) {
    if !shards.iter().any(|s| s.cluster_leased + s.cluster_redis_errors > 0) {
        return;
    }
    type Labeled = (&'static str, &'static str, &'static str, [&'static str; 2], fn(&Snapshot) -> [u64; 2]);
    let labeled: [Labeled; 2] = [
        (
            "ringo_cluster_rate_limit_admitted_total",
            "Requests a cluster-wide rate limit admitted, by a Redis lease or by the local fallback.",
            "via",
            ["lease", "fallback"],
            |s| s.cluster_admitted,
        ),
        (
            "ringo_cluster_rate_limit_refused_total",
            "Requests a cluster-wide rate limit refused: over the limit, or Redis down (fail closed).",
            "reason",
            ["limit", "redis_down"],
            |s| s.cluster_refused,
        ),
    ];
    for (name, help, label, values, get) in labeled {
        header(out, name, "counter", help);
        for s in shards {
            for (value, n) in values.iter().zip(get(s)) {
                let _ = writeln!(out, "{name}{{shard=\"{}\",{label}=\"{value}\"}} {n}", s.shard);
            }
        }
    }
    type Plain = (&'static str, &'static str, fn(&Snapshot) -> u64);
    let plain: [Plain; 2] = [
        ("ringo_cluster_rate_limit_leased_total", "Requests Redis leased to the shard.", |s| {
            s.cluster_leased
        }),
        (
            "ringo_cluster_rate_limit_redis_errors_total",
            "Lease requests that failed (Redis unreachable, timed out, breaker open).",
            |s| s.cluster_redis_errors,
        ),
    ];
    for (name, help, get) in plain {
        header(out, name, "counter", help);
        for s in shards {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }
}

/// Each shard's local caches (`cache` label: the cache's name).
fn local_caches(out: &mut String, shards: &[Snapshot]) {
    use crate::cache::CacheStats;
    if shards.iter().all(|s| s.caches.is_empty()) {
        return;
    }
    let per_cache: [PerItem<CacheStats, u64>; 15] = [
        ("ringo_cache_hits_total", "counter", "Lookups that found a value.", |c| c.hits),
        ("ringo_cache_negative_hits_total", "counter", "Lookups that found a cached absence.", |c| {
            c.negative_hits
        }),
        ("ringo_cache_misses_total", "counter", "Lookups that found nothing (or an expired entry).", |c| {
            c.misses
        }),
        (
            "ringo_cache_loads_total",
            "counter",
            "Loads run on a miss (one per key per shard at a time).",
            |c| c.loads,
        ),
        ("ringo_cache_coalesced_total", "counter", "Misses that waited for a load already running.", |c| {
            c.coalesced
        }),
        ("ringo_cache_expired_total", "counter", "Entries dropped at the end of their TTL.", |c| c.expired),
        ("ringo_cache_invalidated_total", "counter", "Entries dropped by invalidation.", |c| c.invalidated),
        (
            "ringo_cache_early_refreshes_total",
            "counter",
            "Hits reloaded ahead of their expiry (XFetch).",
            |c| c.early_refreshes,
        ),
        ("ringo_cache_filtered_total", "counter", "Misses the key filter answered without the store.", |c| {
            c.filtered
        }),
        ("ringo_cache_filter_keys", "gauge", "Keys in the installed key filter (0: none).", |c| {
            c.filter_keys
        }),
        ("ringo_cache_filter_bytes", "gauge", "Size of the installed key filter.", |c| c.filter_bytes),
        (
            "ringo_cache_filter_delta_keys",
            "gauge",
            "Keys written since the filter was built, kept aside.",
            |c| c.filter_delta_keys,
        ),
        ("ringo_cache_protected", "gauge", "Entries in the protected segment (hot keys).", |c| c.protected),
        ("ringo_cache_entries", "gauge", "Entries kept now.", |c| c.entries),
        ("ringo_cache_bytes", "gauge", "Bytes kept now (keys, weighed values, per-entry overhead).", |c| {
            c.bytes
        }),
    ];
    header(
        out,
        "ringo_cache_filter_false_positive_ratio",
        "gauge",
        "False-positive rate of the installed key filter, measured when it was built.",
    );
    for s in shards {
        for c in &s.caches {
            let _ = writeln!(
                out,
                "ringo_cache_filter_false_positive_ratio{{shard=\"{}\",cache=\"{}\"}} {}",
                s.shard,
                escape(&c.name),
                c.stats.filter_false_positive_ppm as f64 / 1e6
            );
        }
    }
    header(
        out,
        "ringo_cache_hot_key_lookups",
        "gauge",
        "Estimated lookups this 10 s window of the shard's hottest keys (top 5 per cache).",
    );
    for s in shards {
        for c in &s.caches {
            for (key, n) in &c.hot {
                let _ = writeln!(
                    out,
                    "ringo_cache_hot_key_lookups{{shard=\"{}\",cache=\"{}\",key=\"{}\"}} {n}",
                    s.shard,
                    escape(&c.name),
                    escape(key)
                );
            }
        }
    }
    per_item(out, shards, &per_cache, "cache", |s, series| {
        for c in &s.caches {
            series(&c.name, &c.stats);
        }
    });
}

/// Each shard's Redis clients (`client` label: the client's breaker name).
fn redis_clients(out: &mut String, shards: &[Snapshot]) {
    use crate::redis::{ErrorKind, RedisStats};
    if shards.iter().all(|s| s.redis.is_empty()) {
        return;
    }
    let per_client: [PerItem<RedisStats, u64>; 8] = [
        ("ringo_redis_commands_total", "counter", "Commands issued (each of a pipeline counts).", |r| {
            r.commands
        }),
        (
            "ringo_redis_writes_total",
            "counter",
            "Socket writes of queued commands (commands / writes: the auto-pipelining depth).",
            |r| r.writes,
        ),
        ("ringo_redis_written_commands_total", "counter", "Commands those writes carried.", |r| {
            r.written_commands
        }),
        ("ringo_redis_in_flight", "gauge", "Replies the client waits for now (the pipeline depth).", |r| {
            r.in_flight
        }),
        ("ringo_redis_connects_total", "counter", "Connections set up (handshake done).", |r| r.connects),
        ("ringo_redis_reconnects_total", "counter", "Connections set up again after they were lost.", |r| {
            r.reconnects
        }),
        ("ringo_redis_connect_failures_total", "counter", "Connect or set-up attempts that failed.", |r| {
            r.connect_failures
        }),
        (
            "ringo_redis_late_replies_total",
            "counter",
            "Replies that came after their call's deadline.",
            |r| r.late_replies,
        ),
    ];
    per_item(out, shards, &per_client, "client", |s, series| {
        for c in &s.redis {
            series(&c.name, &c.stats);
        }
    });
    header(out, "ringo_redis_connected", "gauge", "1 while at least one of the client's connections is up.");
    for s in shards {
        for c in &s.redis {
            let _ = writeln!(
                out,
                "ringo_redis_connected{{shard=\"{}\",client=\"{}\"}} {}",
                s.shard,
                escape(&c.name),
                u8::from(c.connected)
            );
        }
    }
    header(out, "ringo_redis_errors_total", "counter", "Failed calls, by kind.");
    for s in shards {
        for c in &s.redis {
            for kind in ErrorKind::ALL {
                let _ = writeln!(
                    out,
                    "ringo_redis_errors_total{{shard=\"{}\",client=\"{}\",kind=\"{}\"}} {}",
                    s.shard,
                    escape(&c.name),
                    kind.as_str(),
                    c.stats.errors_of(kind)
                );
            }
        }
    }
    header(out, "ringo_redis_command_duration_seconds", "histogram", "Time from a call to its answer.");
    for s in shards {
        for c in &s.redis {
            let labels = format!("shard=\"{}\",client=\"{}\"", s.shard, escape(&c.name));
            latency_histogram(
                out,
                "ringo_redis_command_duration_seconds",
                &labels,
                &c.stats.latency_buckets,
                c.stats.latency_sum_us,
            );
        }
    }
}

/// Each shard's circuit breakers: state, transitions, refusals.
fn breakers(out: &mut String, shards: &[Snapshot]) {
    use crate::breaker::State;
    let per_breaker: [PerItem<crate::breaker::BreakerSnapshot, u64>; 2] = [
        ("ringo_breaker_state", "gauge", "Circuit breaker state: 0 closed, 1 half open, 2 open.", |b| {
            b.state as u64
        }),
        (
            "ringo_breaker_rejected_total",
            "counter",
            "Calls refused by a circuit breaker (open or probes taken).",
            |b| b.rejected,
        ),
    ];
    per_item(out, shards, &per_breaker, "name", |s, series| {
        for b in &s.breakers {
            series(&b.name, b);
        }
    });
    header(
        out,
        "ringo_breaker_transitions_total",
        "counter",
        "Circuit breaker state changes, by the state entered.",
    );
    for s in shards {
        for b in &s.breakers {
            for to in State::ALL {
                let _ = writeln!(
                    out,
                    "ringo_breaker_transitions_total{{shard=\"{}\",name=\"{}\",to=\"{}\"}} {}",
                    s.shard,
                    escape(&b.name),
                    to.as_str(),
                    b.transitions[to as usize]
                );
            }
        }
    }
}

/// CPU, memory and file descriptors of this process, from /proc/self.
fn process_metrics(out: &mut String) {
    let ticks = 100.0; // USER_HZ on Linux
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            header(out, "process_cpu_seconds_total", "counter", "User and system CPU time.");
            let _ = writeln!(out, "process_cpu_seconds_total {}", (num(11) + num(12)) / ticks);
            header(out, "process_threads", "gauge", "Threads.");
            let _ = writeln!(out, "process_threads {}", num(17));
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        header(out, "process_resident_memory_bytes", "gauge", "Resident memory.");
        let _ = writeln!(out, "process_resident_memory_bytes {}", pages * 4096);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        header(out, "process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
}
