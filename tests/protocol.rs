//! HTTP/1.1 framing over raw sockets: keep-alive, pipelining, bodies, HEAD, limits,
//! smuggling vectors and timeouts. Each case runs against the real server.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{BACKENDS, Raw, one_shot, start_default, start_with};
use ringo::{Context, IoBackend, Limits, Router};

#[test]
fn keep_alive_and_connection_close() {
    for backend in BACKENDS {
        let server = start_default(1, backend);
        let addr = server.local_addr();
        // HTTP/1.1 keeps the connection by default.
        let mut c = Raw::connect(addr);
        for _ in 0..3 {
            let r = c.get("/plaintext");
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), None);
        }
        // Connection: close is honoured and announced.
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = c.response();
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed(), "closed after Connection: close");
        // HTTP/1.0 closes unless it asks for keep-alive.
        let mut c = Raw::connect(addr);
        c.send(b"GET /plaintext HTTP/1.0\r\n\r\n");
        assert_eq!(c.response().header("connection"), Some("close"));
        assert!(c.closed());
        let mut c = Raw::connect(addr);
        c.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response().header("connection"), Some("keep-alive"));
        c.send(b"GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response().text(), r#"{"message":"Hello, World!"}"#);
        server.shutdown();
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    for backend in BACKENDS {
        let server = start_default(1, backend);
        let mut c = Raw::connect(server.local_addr());
        let mut batch = Vec::new();
        for i in 0..64 {
            batch.extend_from_slice(format!("GET /users/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        // A POST with a body in the middle of the pipeline, and a HEAD.
        batch.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        batch.extend_from_slice(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        batch.extend_from_slice(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        c.send(&batch);
        for i in 0..64 {
            assert_eq!(c.response().text(), format!("{{\"id\":\"{i}\"}}"));
        }
        assert_eq!(c.response().text(), r#"{"a":1}"#);
        let head = c.read_response(true);
        assert_eq!(head.header("content-length"), Some("13"), "HEAD keeps GET's headers");
        assert_eq!(c.response().text(), "Hello, World!", "no body bytes leaked from HEAD");
        server.shutdown();
    }
}

#[test]
fn requests_split_at_every_byte_still_parse() {
    let server = start_default(1, IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    let req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n{\"k\":\"v\"}";
    for b in req.iter() {
        c.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(c.response().text(), r#"{"k":"v"}"#);
    server.shutdown();
}

#[test]
fn chunked_bodies_with_extensions_and_trailers() {
    for backend in BACKENDS {
        let server = start_default(1, backend);
        let mut c = Raw::connect(server.local_addr());
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"a\"\r\n");
        std::thread::sleep(Duration::from_millis(20));
        c.send(b"3\r\n:[1\r\n2\r\n]}\r\n0\r\nX-Trailer: yes\r\n\r\n");
        assert_eq!(c.response().text(), r#"{"a":[1]}"#);
        // The connection is still usable afterwards.
        assert_eq!(c.get("/plaintext").status, 200);
        server.shutdown();
    }
}

#[test]
fn expect_100_continue_gets_an_interim_answer() {
    let server = start_default(1, IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response(true);
    assert_eq!(interim.status, 100);
    c.send(b"{\"x\":2}\n");
    assert_eq!(c.response().text(), r#"{"x":2}"#);
    // Too large: the final answer comes at once, without 100 Continue.
    let mut c = Raw::connect(server.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response().status, 413);
    server.shutdown();
}

#[test]
fn every_limit_and_framing_error_has_its_status_and_closes() {
    let limits =
        Limits { max_request_line: 256, max_header_bytes: 1024, max_headers: 8, ..Limits::default() };
    let server = start_with(ringo::default_app, 1, IoBackend::Auto, limits);
    let addr = server.local_addr();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(300));
    let big_header = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(1100));
    let many_headers = format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", "X-H: 1\r\n".repeat(9));
    // (request, status): one line per rule.
    let cases: Vec<(String, u16)> = vec![
        (long_uri, 414),
        (big_header, 431),
        (many_headers, 431),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n".into(), 413),
        ("POST /echo HTTP/1.1\r\nHost: t\r\n\r\n".into(), 411),
        // Smuggling vectors: CL+TE, conflicting CLs, non-digit CL, TE not ending in chunked.
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd".into(), 400),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4x\r\n\r\nabcd".into(), 400),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n".into(), 400),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".into(), 501),
        ("GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\n\r\n".into(), 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), 400),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".into(), 400),
        ("GET / HTTP/3.0\r\nHost: t\r\n\r\n".into(), 505),
        ("BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n".into(), 501),
        ("GET nowhere HTTP/1.1\r\nHost: t\r\n\r\n".into(), 400),
        ("\x01\x02garbage\r\n\r\n".into(), 400),
    ];
    for (raw, status) in cases {
        let mut c = Raw::connect(addr);
        c.send(raw.as_bytes());
        let r = c.response();
        assert_eq!(r.status, status, "{raw:?}");
        assert_eq!(r.header("connection"), Some("close"), "{raw:?}");
        assert!(c.closed(), "closed after {raw:?}");
    }
    // The shard is unaffected: a normal request still works.
    assert_eq!(one_shot(addr, b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
    server.shutdown();
}

#[test]
fn a_smuggled_second_request_is_never_answered() {
    let server = start_default(1, IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    // Classic CL.TE: a front end using Content-Length would forward the smuggled GET.
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(c.response().status, 400);
    assert!(c.closed(), "nothing after the refusal");
    server.shutdown();
}

fn timeout_limits() -> Limits {
    Limits { header_timeout_ms: 300, body_timeout_ms: 300, idle_timeout_ms: 400, ..Limits::default() }
}

#[test]
fn slow_heads_and_bodies_get_408_and_idle_connections_close() {
    for backend in BACKENDS {
        let server = start_with(ringo::default_app, 1, backend, timeout_limits());
        let addr = server.local_addr();
        // Header timeout: half a head, then silence.
        let mut c = Raw::connect(addr);
        c.send(b"GET /plaintext HTTP/1.1\r\nHo");
        let started = Instant::now();
        assert_eq!(c.response().status, 408);
        assert!(c.closed());
        assert!(started.elapsed() < Duration::from_secs(3));
        // A head trickled byte by byte still times out as a whole (no reset per byte).
        let mut c = Raw::connect(addr);
        let started = Instant::now();
        let mut got_408 = false;
        for b in b"GET /plaintext HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if c.stream.write_all(std::slice::from_ref(b)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            if started.elapsed() > Duration::from_millis(600) {
                break;
            }
        }
        if c.response().status == 408 {
            got_408 = true;
        }
        assert!(got_408, "slowloris head answered 408");
        // Body timeout.
        let mut c = Raw::connect(addr);
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"a\"");
        assert_eq!(c.response().status, 408);
        // Idle keep-alive: closed quietly, without a response.
        let mut c = Raw::connect(addr);
        assert_eq!(c.get("/plaintext").status, 200);
        std::thread::sleep(Duration::from_millis(700));
        assert!(c.closed(), "idle connection closed");
        server.shutdown();
    }
}

#[test]
fn a_slow_client_does_not_hold_the_shard() {
    let server = start_with(ringo::default_app, 1, IoBackend::Auto, Limits::default());
    let addr = server.local_addr();
    let mut slow = Raw::connect(addr);
    slow.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{");
    let mut half = Raw::connect(addr);
    half.send(b"GET /plain");
    let started = Instant::now();
    let mut fast = Raw::connect(addr);
    for _ in 0..100 {
        assert_eq!(fast.get("/plaintext").status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    server.shutdown();
}

#[test]
fn head_and_no_body_statuses() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/empty", |c: &mut Context| c.status(204))?;
            r.get("/text", |c: &mut Context| c.string(200, "twelve bytes"))?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    c.send(b"HEAD /text HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(true);
    assert_eq!(r.header("content-length"), Some("12"));
    let r = c.get("/empty");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "204 carries no Content-Length");
    assert_eq!(c.get("/text").text(), "twelve bytes", "stream still in sync");
    server.shutdown();
}

#[test]
fn absolute_form_targets_are_routed_by_path() {
    let server = start_default(1, IoBackend::Auto);
    let r = one_shot(
        server.local_addr(),
        b"GET http://example.com/users/7?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
    assert_eq!(r.text(), r#"{"id":"7"}"#);
    server.shutdown();
}

#[test]
fn a_client_that_stops_reading_is_cut_off_by_the_write_timeout() {
    let limits = Limits { write_timeout_ms: 300, ..Limits::default() };
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/big", |c: &mut Context| c.bytes(200, "application/octet-stream", &vec![b'x'; 32 << 20]))?;
            r.get("/small", |c: &mut Context| c.string(200, "small"))?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        limits,
    );
    let addr = server.local_addr();
    let mut stuck = Raw::connect(addr);
    stuck.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    // Meanwhile the shard serves others.
    assert_eq!(Raw::connect(addr).get("/small").text(), "small");
    std::thread::sleep(Duration::from_millis(1000));
    // Now read: the server gave up, so the stream ends well before 32 MiB.
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut stuck.stream, &mut chunk) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(total < 32 << 20, "connection closed mid-response ({total} bytes)");
    server.shutdown();
}

#[test]
fn a_missing_length_is_411_only_on_a_route_that_exists() {
    let server = start_default(1, IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    c.send(b"POST /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 405, "wrong method wins over the missing length");
    c.send(b"PUT /nowhere HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 404);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 411);
    assert!(c.closed());
    server.shutdown();
}

#[test]
fn large_bodies_one_after_another_on_one_connection() {
    let server = start_default(1, IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    for size in [200_000usize, 900_000, 10, 500_000] {
        let doc = format!("{{\"pad\":\"{}\"}}", "p".repeat(size));
        c.send(
            format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{doc}", doc.len())
                .as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), doc.len(), "size {size}");
    }
    server.shutdown();
}

/// A body of `n` bytes that a shifted or truncated copy cannot match.
fn patterned(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn large_bodies_are_written_whole_and_in_order_without_a_copy() {
    for backend in BACKENDS {
        let server = start_with(
            || {
                let mut r = Router::new();
                r.get("/bytes/:n", |c: &mut Context| {
                    let n: usize = c.param("n").parse().unwrap_or(0);
                    c.bytes(200, "application/octet-stream", &patterned(n));
                })?;
                r.get("/plaintext", |c: &mut Context| c.string(200, "Hello, World!"))?;
                Ok(r)
            },
            1,
            backend,
            Limits::default(),
        );
        let mut c = Raw::connect(server.local_addr());
        // Around the size where bodies leave the write buffer, a large one, and small
        // answers pipelined between them: each whole, in order.
        let sizes = [16_383usize, 16_384, 16_385, 1 << 20, 100];
        let mut batch = Vec::new();
        for n in sizes {
            batch.extend_from_slice(format!("GET /bytes/{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            batch.extend_from_slice(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        batch.extend_from_slice(b"HEAD /bytes/20000 HTTP/1.1\r\nHost: t\r\n\r\n");
        c.send(&batch);
        for n in sizes {
            let r = c.response();
            assert_eq!(r.status, 200, "{backend:?} {n}");
            assert_eq!(r.header("content-length"), Some(n.to_string().as_str()), "{backend:?} {n}");
            assert!(r.body == patterned(n), "{backend:?}: the {n}-byte body arrived altered");
            assert_eq!(c.response().text(), "Hello, World!", "{backend:?} after {n}");
        }
        let head = c.read_response(true);
        assert_eq!(head.header("content-length"), Some("20000"), "{backend:?}: HEAD");
        // Nothing of the HEAD's body followed: the connection is in sync.
        assert_eq!(c.get("/plaintext").text(), "Hello, World!", "{backend:?}");
        server.shutdown();
    }
}
