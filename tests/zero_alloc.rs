//! Principle 3: after warm-up, keep-alive requests to `/plaintext`, `/json` and
//! `/users/:id` make zero heap allocations on the shard.
//!
//! A counting global allocator counts per thread; a probe route, running on the shard
//! thread, reports that thread's count, so client-side allocations never mix in. Each
//! probe also arms a recorder, so a failure names where the first allocation after the
//! probe came from.

mod common;

use std::time::Duration;

use common::{BACKENDS, Raw};
use ringo::access_log::{AccessLogFormat, AccessLogSink, LogOutput};
use ringo::middleware::{AllowedOrigins, CorsConfig, cors};
use ringo::{Context, Limits, RouteError, Router, Server, ServerConfig, TraceExport};

#[global_allocator]
static GLOBAL: Counting = Counting;

use common::counting_alloc::{Counting, allocations as thread_allocations, first_recorded, record_first};

/// The default app plus a probe that answers with the shard thread's allocation count.
fn app_with_probe() -> Result<Router, RouteError> {
    probed(ringo::default_app()?)
}

/// The default app with the `default` stack (request id + an access log that writes
/// JSON lines to a file), plus the probe.
fn default_stack_with_probe() -> Result<Router, RouteError> {
    static SINK: std::sync::OnceLock<AccessLogSink> = std::sync::OnceLock::new();
    let sink = SINK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("ringo-zero-alloc-{}.log", std::process::id()));
        AccessLogSink::start(LogOutput::File(path)).expect("access-log writer starts")
    });
    probed(ringo::default_app_with_access_log(sink, AccessLogFormat::Json, 1)?)
}

fn probed(mut r: Router) -> Result<Router, RouteError> {
    r.get("/__allocations", |c: &mut Context| {
        let n = thread_allocations();
        let mut buf = itoa::Buffer::new();
        c.string(200, buf.format(n));
        // `?keep` (an "after" probe) leaves what the recorder holds for the message.
        if c.query_string().is_empty() {
            record_first();
        }
    })?;
    r.get("/__first_allocation", |c: &mut Context| {
        let trace = first_recorded().unwrap_or_else(|| "none recorded".to_owned());
        c.string(200, &trace);
    })?;
    // A route behind middleware: chain futures live in the connection's arena.
    let mut g = r.group("/mw");
    g.middleware(ringo::middleware::from_fn(async |c: &mut Context, next: ringo::Next<'_>| {
        c.header("X-Wrapped", "1");
        next.run(c).await;
    }));
    g.get("/users/:id", async |c: &mut Context| c.string(200, c.param("id")))?;
    // A body sink: answers with the body's length (no JSON tree to build).
    r.post("/sink", |c: &mut Context| {
        let mut buf = itoa::Buffer::new();
        c.string(200, buf.format(c.body().len()));
    })?;
    Ok(r)
}

/// One shard on loopback with the admin listener (so the snapshot ticker runs).
fn one_shard(backend: ringo::IoBackend) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        shards: Some(1),
        io_backend: backend,
        limits: Limits::default(),
        ..ServerConfig::default()
    }
}

/// The shard thread's allocation count; arms the recorder for [`assert_none_since`].
fn allocations(c: &mut Raw) -> u64 {
    c.get("/__allocations").text().parse().expect("number")
}

/// Asserts the shard made no allocation since the `before` probe; a failure names the
/// count and where the first one came from (the recorder the `before` probe armed).
fn assert_none_since(c: &mut Raw, before: u64, what: &str) {
    // `?keep`: this probe leaves what the recorder holds for the message.
    let after: u64 = c.get("/__allocations?keep").text().parse().expect("number");
    if after != before {
        let first = c.get("/__first_allocation").text();
        panic!("{what}: {} allocations, the first at\n{first}", after - before);
    }
}

#[test]
fn steady_state_keep_alive_requests_allocate_nothing() {
    for backend in BACKENDS {
        // With the control thread on, so the shard's snapshot ticker runs too.
        let server = Server::new(app_with_probe).config(one_shard(backend)).start().expect("starts");
        let mut c = Raw::connect(server.local_addr());
        let paths = ["/plaintext", "/json", "/users/42", "/users/a%20b", "/mw/users/7"];
        let round = |c: &mut Raw| {
            for _ in 0..500 {
                for p in paths {
                    assert_eq!(c.get(p).status, 200);
                }
            }
        };
        round(&mut c); // warm-up: buffers, arenas and timers reach their working size
        // Let a few metric snapshots go to the control thread and come back for reuse.
        std::thread::sleep(std::time::Duration::from_millis(1000));
        let _ = allocations(&mut c);
        let before = allocations(&mut c);
        assert!(before > 0, "the counter sees the shard's start-up allocations");
        // Long enough to span several snapshot ticks (one per 200 ms).
        let until = std::time::Instant::now() + std::time::Duration::from_millis(700);
        while std::time::Instant::now() < until {
            round(&mut c);
        }
        assert_none_since(&mut c, before, &format!("{backend}, in steady state"));
        server.shutdown();
    }
}

/// Requests whose head or body comes in two writes: (name, first write, second write).
const SPLIT: [(&str, &[u8], &[u8]); 3] = [
    ("head in two writes", b"GET /plaintext HTTP/1.1\r\nHo", b"st: t\r\n\r\n"),
    (
        "body in a second write",
        b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello",
        b" world",
    ),
    (
        "chunked body in two writes",
        b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n\r\n",
    ),
];

/// Every other request shape the engine handles: pipelined batches, Content-Length and
/// chunked bodies, 404, 405, trailing-slash redirects and HEAD, on the bare app, through
/// the `default` stack (request id, trace context, access log), and through that stack
/// with every request recorded as a span for OTLP export.
#[test]
fn pipelines_bodies_errors_and_the_default_stack_allocate_nothing() {
    let pipelined: Vec<u8> = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16);
    // Larger than the small read buffer a connection starts with: it grows from the pool.
    let deep: Vec<u8> = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n".repeat(64);
    let shapes: [(&str, &[u8], usize); 9] = [
        ("pipelined x16", &pipelined, 16),
        ("pipelined x64", &deep, 64),
        ("content-length body", b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world", 1),
        (
            "chunked body",
            b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
            1,
        ),
        ("404", b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", 1),
        ("405", b"DELETE /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", 1),
        ("redirect", b"GET /plaintext/ HTTP/1.1\r\nHost: t\r\n\r\n", 1),
        ("HEAD", b"HEAD /json HTTP/1.1\r\nHost: t\r\n\r\n", 1),
        ("query", b"GET /users/9?x=1&y=%20 HTTP/1.1\r\nHost: t\r\n\r\n", 1),
    ];
    for backend in BACKENDS {
        let stacks = [
            ("bare", app_with_probe as fn() -> _, false),
            ("default", default_stack_with_probe, false),
            ("default + spans", default_stack_with_probe, true),
        ];
        for (stack, factory, spans) in stacks {
            let cfg = ServerConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                admin: Some("127.0.0.1:0".parse().expect("addr")),
                shards: Some(1),
                io_backend: backend,
                // The collector is a port nothing listens on: export fails on the
                // exporter thread; the shard's side (ring, snapshot swap) is the same.
                trace_export: spans.then(|| TraceExport {
                    endpoint: "http://127.0.0.1:9/v1/traces".into(),
                    ..TraceExport::default()
                }),
                ..ServerConfig::default()
            };
            let server = Server::new(factory).config(cfg).start().expect("starts");
            let mut c = Raw::connect(server.local_addr());
            let round = |c: &mut Raw, bytes: &[u8], responses: usize, name: &str| {
                for _ in 0..300 {
                    c.send(bytes);
                    for _ in 0..responses {
                        let r = c.read_response(bytes.starts_with(b"HEAD"));
                        assert!(r.status < 500, "{name}: {}", r.status);
                    }
                }
            };
            // A request in two writes, the second after the server has read the first:
            // the engine waits for the rest of a head or body (reads built in the
            // request's arena).
            let split_round = |c: &mut Raw, first: &[u8], rest: &[u8], name: &str| {
                for _ in 0..50 {
                    c.send(first);
                    std::thread::sleep(Duration::from_millis(2));
                    c.send(rest);
                    let r = c.read_response(false);
                    assert!(r.status < 500, "{name}: {}", r.status);
                }
            };
            // Warm-up: buffers, arenas and timers reach their working size, and a few
            // metric snapshots go to the control thread and come back for reuse.
            for (name, bytes, responses) in shapes {
                round(&mut c, bytes, responses, name);
            }
            for (name, first, rest) in SPLIT {
                split_round(&mut c, first, rest, name);
            }
            std::thread::sleep(std::time::Duration::from_millis(1000));
            for (name, bytes, responses) in shapes {
                let before = allocations(&mut c);
                round(&mut c, bytes, responses, name);
                assert_none_since(&mut c, before, &format!("{backend} {stack} {name}"));
            }
            for (name, first, rest) in SPLIT {
                let before = allocations(&mut c);
                split_round(&mut c, first, rest, name);
                assert_none_since(&mut c, before, &format!("{backend} {stack} {name}"));
            }
            if spans {
                assert!(
                    common::eventually(Duration::from_secs(2), || {
                        common::metric(&server, "ringo_spans_recorded_total") > 0
                    }),
                    "{backend}: spans were recorded"
                );
            }
            server.shutdown();
        }
    }
}

/// Client addresses behind trusted proxies and CORS, plus the probe.
fn proxy_cors_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.trusted_proxies(&["127.0.0.0/8", "::1/128"])?;
    r.middleware(cors(CorsConfig {
        allowed_origins: AllowedOrigins::List(vec!["https://app.example".into()]),
        allow_credentials: true,
        exposed_headers: vec!["X-Total".into()],
        max_age: Some(Duration::from_secs(600)),
        ..CorsConfig::default()
    })?);
    // The client's address answered from a stack buffer.
    r.get("/ip", |c: &mut Context| {
        use std::io::Write;
        let mut buf = [0u8; 64];
        let mut out = &mut buf[..];
        if let Some(ip) = c.client_ip() {
            let _ = write!(out, "{ip}");
        }
        let left = out.len();
        c.string(200, std::str::from_utf8(&buf[..64 - left]).unwrap_or(""));
    })?;
    probed(r)
}

/// `Context::client_ip` through multi-hop `X-Forwarded-For` and `Forwarded`, and CORS
/// actual and preflight requests, allocate nothing either.
#[test]
fn client_ip_and_cors_allocate_nothing_in_steady_state() {
    let requests: [(&str, &str, u16); 4] = [
        ("GET /ip", "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.2\r\n", 200),
        ("GET /ip", "Forwarded: for=\"[2001:db8::1]:4711\";proto=https, for=127.0.0.9\r\n", 200),
        ("GET /ip", "Origin: https://app.example\r\n", 200),
        (
            "OPTIONS /ip",
            "Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: content-type\r\n",
            204,
        ),
    ];
    for backend in BACKENDS {
        let server = common::start_with(proxy_cors_app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let round = |c: &mut Raw| {
            for _ in 0..300 {
                for (line, headers, status) in requests {
                    c.send(format!("{line} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
                    let r = c.response();
                    assert_eq!(r.status, status, "{line} {headers}: {}", r.text());
                }
            }
        };
        round(&mut c); // warm-up
        // The shard's tickers (date every 500 ms, sweep every 50 ms) take their first
        // turns inside the warm-up too (shorter than the 1 s that parks a connection).
        std::thread::sleep(Duration::from_millis(600));
        let _ = allocations(&mut c);
        let before = allocations(&mut c);
        assert!(before > 0, "the counter sees the shard's start-up allocations");
        round(&mut c);
        assert_none_since(&mut c, before, &format!("{backend}, in steady state"));
        // And the answers are right.
        c.send(b"GET /ip HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.2\r\n\r\n");
        assert_eq!(c.response().text(), "198.51.100.7");
        server.shutdown();
    }
}

/// Parking: an idle connection gives its buffers and request state back to the shard's
/// pools and takes them again when its next request arrives. Parking interrupts a wait
/// for readiness (no buffer, no operation to cancel), so the whole cycle allocates
/// nothing.
#[test]
fn parking_and_unparking_allocate_nothing() {
    for backend in BACKENDS {
        let server = Server::new(app_with_probe).config(one_shard(backend)).start().expect("starts");
        let mut c = Raw::connect(server.local_addr());
        let mut other = Raw::connect(server.local_addr());
        for _ in 0..200 {
            assert_eq!(c.get("/json").status, 200);
            assert_eq!(other.get("/json").status, 200);
        }
        let parked = |n: u64, other: &mut Raw| {
            common::eventually(Duration::from_secs(4), || {
                // `other` keeps the shard busy (and its pools warm) meanwhile.
                assert_eq!(other.get("/users/1").status, 200);
                common::metric(&server, "ringo_connections_parked") == n
            })
        };
        // Warm-up includes one park: the first one grows the runtime's structures.
        assert!(parked(1, &mut other), "{backend}: parked");
        let _ = allocations(&mut c);
        assert!(parked(0, &mut other), "{backend}: unparked");
        for cycle in 0..3 {
            let before = allocations(&mut c);
            assert!(parked(0, &mut other), "{backend} cycle {cycle}: unparked");
            assert!(parked(1, &mut other), "{backend} cycle {cycle}: parked");
            // `other`'s requests and the metric reads ran meanwhile; their allocations are
            // zero (steady state), so the difference is the park and unpark of `c`.
            assert_none_since(&mut c, before, &format!("{backend} cycle {cycle}, across a park and unpark"));
        }
        server.shutdown();
    }
}

/// The shard runtime the engine moves onto next (`src/rt`): after warm-up, request and
/// answer exchanges over loopback, both ends on the runtime's thread, allocate nothing on
/// either driver (io_uring: operation slots and their completion queues are recycled, the
/// server side reads through the multishot recv into the buffer ring; epoll: readiness
/// flags and non-blocking syscalls).
#[test]
fn the_shard_runtime_exchanges_without_allocating() {
    for epoll in [false, true] {
        let n = ringo::bench_api::shard_runtime_round_trip_allocations(epoll, 2000, thread_allocations);
        assert_eq!(n, 0, "allocations over 2000 round trips (epoll: {epoll})");
    }
}
