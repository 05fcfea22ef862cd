//! The control thread over its admin listener: metrics move with traffic and add up,
//! health turns on a stalled shard, readiness follows the lifecycle, /debug/shards, and
//! slow or hostile admin clients hold back neither other admin clients nor heartbeats.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

fn slow_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.get("/slow", |c: &mut Context| {
        std::thread::sleep(Duration::from_millis(40));
        c.string(200, "slow");
    })?;
    Ok(r)
}

#[test]
fn a_pipelined_batch_is_timed_until_its_responses_are_written() {
    // Three requests in one write: their responses go out together after the third, so
    // each one's latency is the whole batch's (about 120 ms), not its own handler's 40.
    let server = start(slow_app, 1, |_| {});
    let admin_addr = server.admin_addr().expect("admin");
    let mut c = Raw::connect(server.local_addr());
    c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n".repeat(3).as_slice());
    for _ in 0..3 {
        assert_eq!(c.response().status, 200);
    }
    let name = "ringo_http_request_duration_seconds";
    let m = metrics_until(admin_addr, |m| sum(m, &format!("{name}_count"), &[]) >= 3.0);
    assert_eq!(sum(&m, &format!("{name}_count"), &[]), 3.0, "{m}");
    assert_eq!(sum(&m, "ringo_http_requests_total", &[]), 3.0);
    assert_eq!(
        sum(&m, &format!("{name}_bucket"), &["le=\"0.1\""]),
        0.0,
        "every one waited for the batch: {m}"
    );
    assert!(sum(&m, &format!("{name}_sum"), &[]) >= 3.0 * 0.115, "{m}");
    // One more, alone: its own 40 ms.
    assert_eq!(c.get("/slow").status, 200);
    let m = metrics_until(admin_addr, |m| sum(m, &format!("{name}_count"), &[]) >= 4.0);
    assert_eq!(sum(&m, &format!("{name}_bucket"), &["le=\"0.05\""]), 1.0, "{m}");
    server.shutdown();
}

/// A response far larger than the socket buffers take without the client reading.
const LARGE: usize = 16 << 20;

fn large_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.get("/large", |c: &mut Context| c.bytes(200, "application/octet-stream", &vec![b'x'; LARGE]))?;
    Ok(r)
}

#[test]
fn a_response_is_timed_until_the_socket_has_taken_it() {
    // The client waits 300 ms before reading: the write cannot complete before it reads,
    // and the latency runs until it does (nginx's $request_time). On io_uring the time is
    // the loop turn's in which the write completed; on epoll the write waited for
    // writability, a later turn too.
    for backend in [IoBackend::Uring, IoBackend::Epoll] {
        let server = start(large_app, 1, |c| c.io_backend = backend);
        let admin_addr = server.admin_addr().expect("admin");
        let mut c = Raw::connect(server.local_addr());
        c.send(b"GET /large HTTP/1.1\r\nHost: a\r\n\r\n");
        std::thread::sleep(Duration::from_millis(300));
        let r = c.response();
        assert_eq!((r.status, r.body.len()), (200, LARGE), "{backend:?}");
        let name = "ringo_http_request_duration_seconds";
        let m = metrics_until(admin_addr, |m| sum(m, &format!("{name}_count"), &[]) >= 1.0);
        assert_eq!(sum(&m, &format!("{name}_count"), &[]), 1.0, "{backend:?}: {m}");
        let early = sum(&m, &format!("{name}_bucket"), &["le=\"0.25\""]);
        assert_eq!(early, 0.0, "{backend:?}: timed past the client's wait: {m}");
        assert!(sum(&m, &format!("{name}_sum"), &[]) >= 0.29, "{backend:?}: {m}");
        server.shutdown();
    }
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

/// The start of a request head that never ends: a header value one byte at a time.
const TRICKLE: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: ";

/// Slowloris clients on the admin port: each sends one more byte of a head that never
/// ends every 300 ms and reconnects whenever the server closes it, until dropped.
struct Attack {
    stop: Arc<AtomicBool>,
    /// Connections the server closed (and the attacker reopened).
    closed: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attack {
    fn start(addr: SocketAddr, clients: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicUsize::new(0));
        let (stop2, closed2) = (stop.clone(), closed.clone());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<(Option<TcpStream>, usize)> = (0..clients).map(|_| (None, 0)).collect();
            while !stop2.load(Ordering::Relaxed) {
                for (conn, sent) in conns.iter_mut() {
                    if conn.is_none() {
                        *conn = TcpStream::connect(addr).ok();
                        *sent = 0;
                    }
                    let Some(s) = conn else { continue };
                    let byte = TRICKLE.get(*sent).copied().unwrap_or(b'a');
                    if s.write_all(&[byte]).is_err() || peer_closed(s) {
                        closed2.fetch_add(1, Ordering::Relaxed);
                        *conn = None;
                    } else {
                        *sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Attack { stop, closed, thread: Some(thread) }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True when the server has answered or closed (without waiting).
fn peer_closed(s: &mut TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 512];
    let r = s.read(&mut b);
    let _ = s.set_nonblocking(false);
    !matches!(r, Err(ref e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted))
}

/// An admin GET that must be answered within `bound`: (status, body).
fn admin_within(addr: SocketAddr, path: &str, bound: Duration) -> (u16, String) {
    let t = Instant::now();
    let got = admin(addr, path);
    assert!(t.elapsed() < bound, "{path} took {:?} while slow clients held connections", t.elapsed());
    got
}

#[test]
fn slow_admin_clients_do_not_delay_probes_and_scrapes() {
    let server = start(ringo::default_app, 1, |_| {});
    let admin_addr = server.admin_addr().expect("admin");
    std::thread::sleep(Duration::from_millis(300));
    let attack = Attack::start(admin_addr, 8);
    std::thread::sleep(Duration::from_millis(700)); // every attacker connected and trickling
    let bound = Duration::from_secs(1);
    let until = Instant::now() + Duration::from_secs(3); // past the head deadline: attackers cycle
    while Instant::now() < until {
        assert_eq!(admin_within(admin_addr, "/healthz", bound).0, 200);
        assert_eq!(admin_within(admin_addr, "/readyz", bound).0, 200);
        let (code, m) = admin_within(admin_addr, "/metrics", bound);
        assert_eq!(code, 200);
        assert!(m.contains("ringo_http_requests_total"), "{m}");
    }
    assert!(attack.closed.load(Ordering::Relaxed) >= 8, "the slow clients were closed by the deadline");
    drop(attack);
    server.shutdown();
}

#[test]
fn more_slow_clients_than_admin_slots_still_leave_healthz_answered() {
    // More attackers than the admin listener's 64 slots: newcomers displace the oldest
    // unfinished heads instead of being refused, so a probe still gets through.
    let server = start(ringo::default_app, 1, |_| {});
    let admin_addr = server.admin_addr().expect("admin");
    let attack = Attack::start(admin_addr, 80);
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..10 {
        assert_eq!(admin_within(admin_addr, "/healthz", Duration::from_secs(1)).0, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(attack);
    server.shutdown();
}

#[test]
fn a_trickling_admin_client_is_cut_off_at_the_head_deadline() {
    let server = start(ringo::default_app, 1, |_| {});
    let admin_addr = server.admin_addr().expect("admin");
    let mut s = TcpStream::connect(admin_addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let started = Instant::now();
    let (mut sent, mut got) = (0usize, Vec::new());
    let closed = loop {
        assert!(started.elapsed() < Duration::from_secs(6), "still open after 6 s: {got:?}");
        // One more byte every 300 ms (the read timeout paces the loop); no read ever times out
        // on the server's side, only the head's overall deadline can end this.
        let byte = TRICKLE.get(sent).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).is_ok() {
            sent += 1;
        }
        let mut b = [0u8; 1024];
        match s.read(&mut b) {
            Ok(0) => break started.elapsed(),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !got.is_empty() => break started.elapsed(),
            Err(e) => panic!("read: {e} after {got:?}"),
        }
    };
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert!(sent >= 5, "the client kept sending ({sent} bytes) and was still cut off");
    assert!(closed < Duration::from_secs(4), "closed {closed:?} after connecting");
    // The admin listener answers normally right after.
    assert_eq!(admin(admin_addr, "/healthz").0, 200);
    server.shutdown();
}

#[test]
fn shard_heartbeats_and_snapshots_keep_flowing_during_an_admin_attack() {
    let server = start(ringo::default_app, 2, |c| c.stall_threshold = Duration::from_millis(600));
    let admin_addr = server.admin_addr().expect("admin");
    let addr = server.local_addr();
    std::thread::sleep(Duration::from_millis(400));
    let attack = Attack::start(admin_addr, 16);
    let until = Instant::now() + Duration::from_secs(3);
    let mut last_total = 0;
    while Instant::now() < until {
        // Traffic on the data port; the next snapshots must carry it.
        let mut c = Raw::connect(addr);
        for _ in 0..5 {
            assert_eq!(c.get("/plaintext").status, 200);
        }
        drop(c);
        let sent_so_far = last_total + 5;
        let (code, body) = admin_within(admin_addr, "/healthz", Duration::from_secs(1));
        assert_eq!(code, 200, "no shard looks stalled: {body}");
        // Fresh snapshots: every shard's heartbeat is recent and the counts catch up.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let (code, body) = admin_within(admin_addr, "/debug/shards", Duration::from_secs(1));
            assert_eq!(code, 200);
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            let shards = v["shards"].as_array().expect("shards");
            assert_eq!(shards.len(), 2);
            for s in shards {
                let age = s["heartbeat_age_ms"].as_u64().expect("every shard has reported");
                assert!(age < 600, "stale heartbeat during the attack: {s}");
            }
            let total = v["total_requests"].as_u64().unwrap_or(0);
            if total >= sent_so_far {
                last_total = total;
                break;
            }
            assert!(Instant::now() < deadline, "snapshots stopped carrying traffic: {total} < {sent_so_far}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    drop(attack);
    server.shutdown();
}

#[test]
fn oversized_admin_heads_get_431_and_other_methods_405() {
    let server = start(ringo::default_app, 1, |_| {});
    let admin_addr = server.admin_addr().expect("admin");
    let big = format!("GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(one_shot(admin_addr, big.as_bytes()).status, 431);
    let r = one_shot(admin_addr, b"POST /healthz HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let mut c = Raw::connect(admin_addr);
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
    let head = c.read_response(true);
    assert_eq!(head.status, 200);
    assert!(c.closed(), "HEAD gets no body, then the close");
    server.shutdown();
}

/// The shard runtime's io counters reach /metrics, and a pipelining client is answered
/// with far fewer kernel enters than requests: one enter submits a batch's sends and
/// reaps its reads (io_uring), one `epoll_wait` serves a batch (epoll).
#[test]
fn a_pipelined_batch_costs_far_fewer_kernel_enters_than_requests() {
    const BATCHES: usize = 32;
    const DEPTH: usize = 64;
    for backend in common::BACKENDS {
        let server = common::start_with_admin_and(ringo::default_app, backend, |_| {});
        let enters = || common::metric(&server, "ringo_io_enters_total");
        assert!(common::eventually(Duration::from_secs(2), || enters() > 0), "{backend:?}: counted");
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/plaintext").status, 200);
        std::thread::sleep(Duration::from_millis(500));
        let before = enters();
        let batch = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n".repeat(DEPTH);
        for _ in 0..BATCHES {
            c.send(&batch);
            for _ in 0..DEPTH {
                assert_eq!(c.response().status, 200);
            }
        }
        // Two snapshots later the counter includes the batches.
        std::thread::sleep(Duration::from_millis(500));
        let spent = enters() - before;
        let requests = (BATCHES * DEPTH) as u64;
        // The shard's timers (sweep, stop check, snapshots) add a few dozen a second.
        assert!(spent < requests / 4, "{backend:?}: {spent} enters for {requests} requests");
        assert_eq!(common::metric(&server, "ringo_io_fallback_reads_total"), 0, "{backend:?}");
        server.shutdown();
    }
}
