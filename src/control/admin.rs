//! The admin listener's endpoints, served on the control thread with blocking I/O (admin
//! traffic is a scrape every few seconds; it never touches a shard).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::Serialize;

use super::{Lifecycle, State};
use crate::metrics::Snapshot;
use crate::metrics::prometheus::{self, Exposition};

const DASHBOARD: &str = include_str!("dashboard.html");

/// Answers one admin request and closes.
pub(super) fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut len = 0;
    let path = loop {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") && req.method != Some("HEAD") {
                    respond(&mut stream, 405, "text/plain", b"GET only\n");
                    return;
                }
                let p = req.path.unwrap_or("/");
                break p.split('?').next().unwrap_or("/").to_owned();
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                respond(&mut stream, 400, "text/plain", b"bad request\n");
                return;
            }
        }
    };
    match path.as_str() {
        "/healthz" => healthz(&mut stream, state),
        "/readyz" => readyz(&mut stream, state),
        "/metrics" => {
            let snaps: Vec<Snapshot> = state.latest.iter().flatten().cloned().collect();
            let ages: Vec<f64> =
                state.heartbeat_ages().iter().map(|a| a.map_or(f64::INFINITY, |d| d.as_secs_f64())).collect();
            let body = prometheus::render(&Exposition {
                shards: &snaps,
                routes: &state.routes,
                backend: state.backend,
                heartbeat_age_s: &ages,
                ready: state.lifecycle.get() == Lifecycle::Ready,
            });
            respond(&mut stream, 200, "text/plain; version=0.0.4; charset=utf-8", body.as_bytes());
        }
        "/debug/shards" => debug_shards(&mut stream, state),
        // One self-contained page (no external assets) that polls /debug/shards.
        "/debug/dashboard" => respond(&mut stream, 200, "text/html; charset=utf-8", DASHBOARD.as_bytes()),
        _ => respond(
            &mut stream,
            404,
            "text/plain",
            b"admin endpoints: /healthz /readyz /metrics /debug/shards /debug/dashboard\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let reason = crate::http::status::reason(status);
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn json(stream: &mut TcpStream, status: u16, value: &impl Serialize) {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    respond(stream, status, "application/json", &body);
}

fn healthz(stream: &mut TcpStream, state: &State) {
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
    json(stream, if ok { 200 } else { 503 }, &body);
}

fn readyz(stream: &mut TcpStream, state: &State) {
    #[derive(Serialize)]
    struct Ready {
        status: &'static str,
    }
    let l = state.lifecycle.get();
    json(stream, if l == Lifecycle::Ready { 200 } else { 503 }, &Ready { status: l.as_str() });
}

fn debug_shards(stream: &mut TcpStream, state: &State) {
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
            }
        })
        .collect();
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
    json(
        stream,
        200,
        &Report {
            lifecycle: state.lifecycle.get().as_str(),
            io_backend: state.backend,
            shards,
            total_rps: (total_rps * 10.0).round() / 10.0,
            total_requests,
            imbalance,
        },
    );
}
