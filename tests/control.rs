//! The control thread over its admin listener: metrics move with traffic and add up,
//! health turns on a stalled shard, readiness follows the lifecycle, /debug/shards.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Raw, one_shot};
use ringo::{Context, IoBackend, Limits, RouteError, Router, RunningServer, Server, ServerConfig};

fn start(
    factory: fn() -> Result<Router, RouteError>,
    shards: usize,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RunningServer {
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        shards: Some(shards),
        io_backend: IoBackend::Auto,
        limits: Limits::default(),
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    tweak(&mut cfg);
    Server::new(factory).config(cfg).start().expect("server starts")
}

/// GET on the admin listener: (status, body).
fn admin(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = one_shot(addr, format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes());
    (r.status, r.text())
}

/// Sum of a metric's samples whose labels contain every `want` fragment.
fn sum(metrics: &str, name: &str, want: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| want.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Polls `/metrics` until `done` holds (snapshots arrive every 200 ms).
fn metrics_until(addr: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (_, m) = admin(addr, "/metrics");
        if done(&m) || start.elapsed() > Duration::from_secs(5) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_traffic_by_route_and_the_histogram_adds_up() {
    let server = start(ringo::default_app, 2, |_| {});
    let admin_addr = server.admin_addr().expect("admin");
    let addr = server.local_addr();
    for _ in 0..30 {
        let mut c = Raw::connect(addr); // new connections spread over both shards
        assert_eq!(c.get("/plaintext").status, 200);
        assert_eq!(c.get("/users/a").status, 200);
        assert_eq!(c.get("/nope").status, 404);
    }
    assert_eq!(one_shot(addr, b"GET / HTTP/1.1\r\n\r\n").status, 400);
    let m = metrics_until(admin_addr, |m| sum(m, "ringo_http_requests_total", &[]) >= 90.0);
    assert_eq!(
        sum(&m, "ringo_http_requests_total", &["route=\"/plaintext\"", "status=\"2xx\""]),
        30.0,
        "{m}"
    );
    assert_eq!(sum(&m, "ringo_http_requests_total", &["route=\"/users/:id\"", "method=\"GET\""]), 30.0);
    assert_eq!(sum(&m, "ringo_http_requests_total", &["route=\"<not found>\"", "status=\"4xx\""]), 30.0);
    assert!(!m.contains("route=\"/users/a\""), "raw paths never become labels");
    let count = sum(&m, "ringo_http_request_duration_seconds_count", &[]);
    assert_eq!(count, sum(&m, "ringo_http_requests_total", &[]), "histogram count = requests");
    assert_eq!(sum(&m, "ringo_http_request_duration_seconds_bucket", &["le=\"+Inf\""]), count);
    assert!(sum(&m, "ringo_http_request_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(sum(&m, "ringo_http_parse_errors_total", &["kind=\"missing_host\""]), 1.0);
    assert!(sum(&m, "ringo_connections_accepted_total", &[]) >= 31.0);
    assert!(sum(&m, "ringo_sent_bytes_total", &[]) > 0.0 && sum(&m, "ringo_received_bytes_total", &[]) > 0.0);
    assert!(m.contains("ringo_io_backend_info{backend=\"uring\"} 1") || m.contains("backend=\"epoll\""));
    assert!(m.contains("process_resident_memory_bytes ") && m.contains("process_open_fds "));
    // Counters move with more traffic.
    let mut c = Raw::connect(addr);
    for _ in 0..10 {
        c.get("/plaintext");
    }
    let m =
        metrics_until(admin_addr, |m| sum(m, "ringo_http_requests_total", &["route=\"/plaintext\""]) >= 40.0);
    assert_eq!(sum(&m, "ringo_http_requests_total", &["route=\"/plaintext\""]), 40.0);
    let (code, shards) = admin(admin_addr, "/debug/shards");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&shards).expect("json");
    assert_eq!(v["shards"].as_array().map(Vec::len), Some(2));
    assert!(v["total_requests"].as_u64().unwrap_or(0) >= 100);
    assert!(v["imbalance"].as_f64().unwrap_or(0.0) >= 1.0);
    server.shutdown();
}

fn blocking_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.get("/block", |c: &mut Context| {
        // A handler doing blocking work: the whole shard stops.
        std::thread::sleep(Duration::from_millis(1500));
        c.string(200, "done");
    })?;
    r.get("/ok", |c: &mut Context| c.string(200, "ok"))?;
    Ok(r)
}

#[test]
fn a_stalled_shard_fails_healthz_by_id_and_recovers() {
    let server = start(blocking_app, 1, |c| c.stall_threshold = Duration::from_millis(500));
    let admin_addr = server.admin_addr().expect("admin");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(admin(admin_addr, "/healthz").0, 200);
    let addr = server.local_addr();
    let blocker = std::thread::spawn(move || Raw::connect(addr).get("/block").status);
    std::thread::sleep(Duration::from_millis(1000));
    let (code, body) = admin(admin_addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["stalled_shards"], serde_json::json!([0]));
    assert_eq!(blocker.join().expect("join"), 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(admin(admin_addr, "/healthz").0, 200, "healthy again once the shard reports");
    server.shutdown();
}

#[test]
fn readyz_is_503_while_draining() {
    let server = start(ringo::default_app, 1, |c| c.drain_delay = Duration::from_millis(800));
    let admin_addr = server.admin_addr().expect("admin");
    let (code, body) = admin(admin_addr, "/readyz");
    assert_eq!((code, body.contains("ready")), (200, true));
    let addr = server.local_addr();
    let stopper = std::thread::spawn(move || server.shutdown());
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = admin(admin_addr, "/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("draining"), "{body}");
    // During the drain delay the data listener still serves.
    assert_eq!(Raw::connect(addr).get("/plaintext").status, 200);
    stopper.join().expect("shutdown");
    assert!(std::net::TcpStream::connect(admin_addr).is_err(), "admin listener closed after shutdown");
}

fn slow_factory() -> Result<Router, RouteError> {
    // Start-up work (think cache preheat) that readiness must wait for.
    std::thread::sleep(Duration::from_millis(800));
    ringo::default_app()
}

#[test]
fn readyz_is_503_while_starting() {
    let admin_port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let starting = std::thread::spawn(move || start(slow_factory, 1, |c| c.admin = Some(admin_addr)));
    // The admin listener answers before the shards are ready.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen_starting = false;
    while Instant::now() < deadline && !starting.is_finished() {
        if std::net::TcpStream::connect(admin_addr).is_ok() {
            let (code, body) = admin(admin_addr, "/readyz");
            if code == 503 && body.contains("starting") {
                seen_starting = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = starting.join().expect("start");
    assert!(seen_starting, "readyz said 503 starting before the shards were up");
    assert_eq!(admin(admin_addr, "/readyz").0, 200);
    server.shutdown();
}
