//! `ringo::client` against real upstreams: a second ringo instance, nginx, and raw
//! sockets scripted to misbehave (closing pooled connections, truncating bodies,
//! breaking framing). The calls are made from handlers of a real front server, over
//! real sockets, on both io backends where the engine matters.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{BACKENDS, Nginx, Raw, Resp};
use ringo::breaker::Settings;
use ringo::client::{Upstream, UpstreamConfig};
use ringo::middleware::{request_id, trace_context};
use ringo::{Context, IoBackend, Limits, Method, RouteError, Router, RunningServer};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// The upstream service: echoes what it received, streams, sleeps, sends large bodies.
fn upstream_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.get("/hello", |c: &mut Context| c.string(200, "hello"))?;
    for method in [Method::Get, Method::Post, Method::Put, Method::Delete] {
        r.handle(method, "/echo", echo)?;
    }
    r.get("/slow", async |c: &mut Context| {
        ringo::time::sleep(Duration::from_millis(600)).await;
        c.string(200, "late");
    })?;
    r.get("/stream", async |c: &mut Context| {
        if c.start_stream(200, "text/plain").await.is_err() {
            return;
        }
        for i in 0..3 {
            ringo::time::sleep(Duration::from_millis(20)).await;
            if c.write_stream(format!("part{i};").as_bytes()).await.is_err() {
                return;
            }
        }
    })?;
    r.get("/big", |c: &mut Context| c.bytes(200, "application/octet-stream", &vec![b'x'; 2 << 20]))?;
    r.get("/status/:code", |c: &mut Context| {
        let code = c.param("code").parse().unwrap_or(500);
        c.string(code, "as asked");
    })?;
    Ok(r)
}

fn echo(c: &mut Context) {
    let h = |name: &str| c.get_header(name).map(str::to_owned);
    let target = if c.query_string().is_empty() {
        c.path().to_owned()
    } else {
        format!("{}?{}", c.path(), c.query_string())
    };
    let body = serde_json::json!({
        "method": c.method().as_str(),
        "target": target,
        "body": String::from_utf8_lossy(c.body()),
        "host": h("host"),
        "traceparent": h("traceparent"),
        "x_request_id": h("x-request-id"),
        "x_custom": h("x-custom"),
        "x_secret": h("x-secret"),
        "x_forwarded_for": h("x-forwarded-for"),
        "x_forwarded_host": h("x-forwarded-host"),
        "x_forwarded_proto": h("x-forwarded-proto"),
        "peer_port": c.client_addr().map(|a| a.port()),
    });
    c.json(200, &body);
}

fn answer_error(c: &mut Context, e: &ringo::client::ClientError) {
    c.string(e.status(), &format!("{e:?}"));
}

/// The front server's app: routes that call `url` with the client, plus counters.
fn caller(
    url: String,
    config: UpstreamConfig,
) -> impl Fn() -> Result<Router, RouteError> + Send + Sync + 'static {
    move || {
        let up = Rc::new(Upstream::new(&url, config.clone()).expect("upstream URL"));
        let mut r = Router::new();
        r.middleware(request_id());
        r.middleware(trace_context());
        for method in [Method::Get, Method::Post] {
            let u = Rc::clone(&up);
            r.handle(method, "/call/*path", async move |c: &mut Context| {
                let mut path = c.path().strip_prefix("/call").unwrap_or("/").to_owned();
                if !c.query_string().is_empty() {
                    path = format!("{path}?{}", c.query_string());
                }
                let body = c.body().to_vec();
                let sent = u.request(c.method(), &path).header("X-Custom", "1").body(body).send().await;
                match sent {
                    Ok(mut resp) => {
                        let status = resp.status();
                        let ct = resp.header("content-type").unwrap_or("text/plain").to_owned();
                        match resp.bytes().await {
                            Ok(body) => c.bytes(status, &ct, &body),
                            Err(e) => answer_error(c, &e),
                        }
                    }
                    Err(e) => answer_error(c, &e),
                }
            })?;
        }
        let u = Rc::clone(&up);
        r.get("/pieces/*path", async move |c: &mut Context| {
            let path = c.path().strip_prefix("/pieces").unwrap_or("/").to_owned();
            let mut resp = match u.get(&path).send().await {
                Ok(resp) => resp,
                Err(e) => return answer_error(c, &e),
            };
            let (mut pieces, mut body) = (0, Vec::new());
            loop {
                match resp.chunk().await {
                    Ok(Some(piece)) => {
                        pieces += 1;
                        body.extend_from_slice(piece);
                    }
                    Ok(None) => break,
                    Err(e) => return answer_error(c, &e),
                }
            }
            c.string(200, &format!("pieces={pieces} body={}", String::from_utf8_lossy(&body)));
        })?;
        let u = Rc::clone(&up);
        r.get("/stats", move |c: &mut Context| {
            let s = u.stats();
            let (open, idle) = u.connections();
            c.string(
                200,
                &format!(
                    "requests={} errors={} connects={} reused={} retries={} open={open} idle={idle}",
                    s.requests, s.errors, s.connects, s.reused, s.retries
                ),
            );
        })?;
        Ok(r)
    }
}

/// A front server that proxies every path to `url`.
fn proxy(url: String) -> impl Fn() -> Result<Router, RouteError> + Send + Sync + 'static {
    move || {
        let up = Rc::new(Upstream::new(&url, UpstreamConfig::default()).expect("upstream URL"));
        let mut r = Router::new();
        r.any("/*rest", async move |c: &mut Context| {
            let _ = c.proxy_to(&up).await;
        })?;
        Ok(r)
    }
}

fn start_upstream(backend: IoBackend) -> RunningServer {
    common::start_with(upstream_app, 1, backend, Limits::default())
}

fn start_front(
    backend: IoBackend,
    factory: impl Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
) -> RunningServer {
    common::start_with(factory, 1, backend, Limits::default())
}

fn get(c: &mut Raw, path: &str, headers: &str) -> Resp {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: front.test\r\n{headers}\r\n").as_bytes());
    c.response()
}

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("JSON ({e}): {}", r.text()))
}

/// `key=value` counters from `/stats`.
fn stats(c: &mut Raw) -> std::collections::HashMap<String, u64> {
    get(c, "/stats", "")
        .text()
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("number")))
        .collect()
}

#[test]
fn calls_reuse_connections_and_carry_the_trace_and_request_id() {
    for backend in BACKENDS {
        let upstream = start_upstream(backend);
        let url = format!("http://{}", upstream.local_addr());
        let front = start_front(backend, caller(url, UpstreamConfig::default()));
        let mut c = Raw::connect(front.local_addr());
        let r = get(
            &mut c,
            "/call/echo?q=1",
            &format!("traceparent: 00-{TRACE}-{PARENT}-01\r\nX-Request-Id: rid-1\r\n"),
        );
        assert_eq!(r.status, 200, "{backend:?}: {}", r.text());
        let v = json(&r);
        let tp = v["traceparent"].as_str().expect("traceparent sent");
        assert!(tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-01"), "{tp}");
        assert_ne!(&tp[36..52], PARENT, "the upstream's parent is the front's span, not the caller's");
        assert_eq!(v["x_request_id"], "rid-1");
        assert_eq!(v["x_custom"], "1");
        assert_eq!(v["target"], "/echo?q=1");
        assert_eq!(v["host"].as_str(), Some(upstream.local_addr().to_string().as_str()));
        let port = v["peer_port"].clone();
        for _ in 0..20 {
            let r = get(&mut c, "/call/echo", "");
            assert_eq!(json(&r)["peer_port"], port, "one pooled connection serves sequential calls");
        }
        let s = stats(&mut c);
        assert_eq!(
            (s["requests"], s["connects"], s["reused"], s["errors"]),
            (21, 1, 20, 0),
            "{backend:?}: {s:?}"
        );
        assert_eq!((s["open"], s["idle"]), (1, 1));
        // A POST carries its body and length.
        c.send(b"POST /call/echo HTTP/1.1\r\nHost: f\r\nContent-Length: 5\r\n\r\nhello");
        let v = json(&c.response());
        assert_eq!((v["method"].as_str(), v["body"].as_str()), (Some("POST"), Some("hello")));
        front.shutdown();
        upstream.shutdown();
    }
}

#[test]
fn chunked_streamed_and_large_bodies_arrive_whole_or_are_refused() {
    for backend in BACKENDS {
        let upstream = start_upstream(backend);
        let url = format!("http://{}", upstream.local_addr());
        let front = start_front(backend, caller(url.clone(), UpstreamConfig::default()));
        let mut c = Raw::connect(front.local_addr());
        assert_eq!(get(&mut c, "/call/stream", "").text(), "part0;part1;part2;");
        let pieces = get(&mut c, "/pieces/stream", "").text();
        assert!(pieces.ends_with("body=part0;part1;part2;"), "{pieces}");
        assert_ne!(pieces, "pieces=0 body=part0;part1;part2;");
        let big = get(&mut c, "/call/big", "");
        assert_eq!((big.status, big.body.len()), (200, 2 << 20));
        assert_eq!(get(&mut c, "/call/status/404", "").status, 404, "statuses are the upstream's");
        front.shutdown();

        // A limit under the body's length: refused before reading it.
        let small = UpstreamConfig { max_body_bytes: 1 << 20, ..UpstreamConfig::default() };
        let front = start_front(backend, caller(url, small));
        let mut c = Raw::connect(front.local_addr());
        let r = get(&mut c, "/call/big", "");
        assert_eq!(r.status, 502);
        assert!(r.text().starts_with("TooLarge"), "{}", r.text());
        // The connection was not reused with a body left in it.
        assert_eq!(get(&mut c, "/call/hello", "").text(), "hello");
        front.shutdown();
        upstream.shutdown();
    }
}

#[test]
fn a_slow_upstream_times_out_without_holding_the_shard_or_leaking_connections() {
    for backend in BACKENDS {
        let upstream = start_upstream(backend);
        let config = UpstreamConfig { read_timeout: Duration::from_millis(200), ..UpstreamConfig::default() };
        let front = start_front(backend, caller(format!("http://{}", upstream.local_addr()), config));
        let addr = front.local_addr();
        let slow = std::thread::spawn(move || {
            let mut c = Raw::connect(addr);
            let begun = std::time::Instant::now();
            let r = get(&mut c, "/call/slow", "");
            (r.status, r.text(), begun.elapsed())
        });
        // Meanwhile the shard answers others.
        std::thread::sleep(Duration::from_millis(50));
        let mut c = Raw::connect(front.local_addr());
        assert_eq!(get(&mut c, "/call/hello", "").text(), "hello");
        let (status, text, took) = slow.join().expect("thread");
        assert_eq!(status, 504, "{text}");
        assert!(text.starts_with("ReadTimeout"), "{text}");
        assert!(
            took < Duration::from_millis(550),
            "gave up at the read timeout, not after the answer: {took:?}"
        );
        let s = stats(&mut c);
        assert_eq!(s["open"], s["idle"], "{backend:?}: no connection left lent out: {s:?}");
        assert_eq!(get(&mut c, "/call/hello", "").text(), "hello");
        front.shutdown();
        upstream.shutdown();
    }
}

/// What a scripted upstream does with a request.
enum Act {
    /// Answer these bytes and keep the connection.
    Reply(&'static [u8]),
    /// Answer these bytes and close.
    ReplyClose(&'static [u8]),
    /// Close without answering.
    Close,
}

/// An upstream on a raw socket: `script(connection index, request index, request line)`.
fn scripted(script: impl Fn(usize, usize, &str) -> Act + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(script);
    let conns = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (script, n) = (Arc::clone(&script), conns.fetch_add(1, Ordering::SeqCst));
            std::thread::spawn(move || serve_script(stream, n, &*script));
        }
    });
    addr
}

fn serve_script(stream: TcpStream, conn: usize, script: &dyn Fn(usize, usize, &str) -> Act) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    for req in 0.. {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim_end().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        match script(conn, req, line.trim_end()) {
            Act::Reply(bytes) => {
                let _ = writer.write_all(bytes);
            }
            Act::ReplyClose(bytes) => {
                let _ = writer.write_all(bytes);
                return;
            }
            Act::Close => return,
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn a_pooled_connection_the_upstream_closed_is_retried_for_idempotent_methods_only() {
    // The first connection answers one request, then closes on the next without a byte.
    let upstream = scripted(|conn, req, _| if conn == 0 && req == 1 { Act::Close } else { Act::Reply(OK) });
    let front = start_front(IoBackend::Auto, caller(format!("http://{upstream}"), UpstreamConfig::default()));
    let mut c = Raw::connect(front.local_addr());
    assert_eq!(get(&mut c, "/call/a", "").text(), "ok");
    assert_eq!(get(&mut c, "/call/b", "").text(), "ok", "GET retried on a fresh connection");
    let s = stats(&mut c);
    assert_eq!((s["retries"], s["connects"], s["errors"]), (1, 2, 0), "{s:?}");
    front.shutdown();

    let upstream = scripted(|conn, req, _| if conn == 0 && req == 1 { Act::Close } else { Act::Reply(OK) });
    let front = start_front(IoBackend::Auto, caller(format!("http://{upstream}"), UpstreamConfig::default()));
    let mut c = Raw::connect(front.local_addr());
    c.send(b"POST /call/a HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(c.response().text(), "ok");
    c.send(b"POST /call/b HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\nx");
    let r = c.response();
    assert_eq!(r.status, 502, "a POST is never replayed");
    assert!(r.text().starts_with("Closed"), "{}", r.text());
    assert_eq!(stats(&mut c)["retries"], 0);
    front.shutdown();
}

#[test]
fn broken_framing_from_the_upstream_is_a_502_and_the_connection_is_dropped() {
    let upstream = scripted(|_, _, line| match line.split(' ').nth(1).unwrap_or("") {
        "/truncated" => Act::ReplyClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten.."),
        "/until-close" => {
            Act::ReplyClose(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until close")
        }
        "/bad-chunk" => Act::ReplyClose(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        "/bad-head" => Act::ReplyClose(b"HTTP/1.1 2OO OK\r\n\r\n"),
        "/two-lengths" => {
            Act::ReplyClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok")
        }
        "/continue" => {
            Act::Reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
        _ => Act::Reply(OK),
    });
    let front = start_front(IoBackend::Auto, caller(format!("http://{upstream}"), UpstreamConfig::default()));
    let mut c = Raw::connect(front.local_addr());
    let cases = [
        ("/call/truncated", 502, "Closed"),
        ("/call/until-close", 200, "read until close"),
        ("/call/bad-chunk", 502, "Protocol"),
        ("/call/bad-head", 502, "Protocol"),
        ("/call/two-lengths", 502, "Protocol"),
        ("/call/continue", 200, "ok"),
    ];
    for (path, status, text) in cases {
        let r = get(&mut c, path, "");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.text().starts_with(text), "{path}: {}", r.text());
    }
    let s = stats(&mut c);
    assert_eq!(s["open"], s["idle"], "broken connections are closed, not pooled: {s:?}");
    front.shutdown();
}

#[test]
fn a_dead_upstream_fails_fast_once_its_breaker_opens() {
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let config = UpstreamConfig {
        breaker: Settings::default().trip_when(|counts| counts.consecutive_failures >= 3),
        ..UpstreamConfig::default()
    };
    let front = start_front(IoBackend::Auto, caller(format!("http://{dead}"), config));
    let mut c = Raw::connect(front.local_addr());
    for _ in 0..3 {
        let r = get(&mut c, "/call/x", "");
        assert_eq!(r.status, 502);
        assert!(r.text().starts_with("Connect"), "{}", r.text());
    }
    let r = get(&mut c, "/call/x", "");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().starts_with("BreakerOpen"), "{}", r.text());
    front.shutdown();
}

#[test]
fn proxy_to_relays_method_target_headers_and_bodies() {
    for backend in BACKENDS {
        let upstream = start_upstream(backend);
        let front = start_front(backend, proxy(format!("http://{}", upstream.local_addr())));
        let mut c = Raw::connect(front.local_addr());
        c.send(
            b"POST /echo?x=1 HTTP/1.1\r\nHost: front.test\r\nContent-Length: 5\r\nX-Custom: yes\r\n\
              Connection: keep-alive, X-Secret\r\nX-Secret: hop\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nhello",
        );
        let r = c.response();
        assert_eq!(r.status, 200, "{backend:?}: {}", r.text());
        let v = json(&r);
        assert_eq!((v["method"].as_str(), v["target"].as_str()), (Some("POST"), Some("/echo?x=1")));
        assert_eq!(v["body"], "hello");
        assert_eq!(v["x_custom"], "yes");
        assert_eq!(v["x_secret"], serde_json::Value::Null, "a field named by Connection is hop-by-hop");
        assert_eq!(v["x_forwarded_for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(
            (v["x_forwarded_host"].as_str(), v["x_forwarded_proto"].as_str()),
            (Some("front.test"), Some("http"))
        );
        assert_eq!(v["host"].as_str(), Some(upstream.local_addr().to_string().as_str()));
        assert_eq!(r.header("content-type"), Some("application/json"));

        let streamed = get(&mut c, "/stream", "");
        assert_eq!(streamed.text(), "part0;part1;part2;");
        assert_eq!(streamed.header("transfer-encoding"), Some("chunked"), "an unknown length is streamed");
        let big = get(&mut c, "/big", "");
        assert_eq!(big.body.len(), 2 << 20, "a body over the buffer limit is streamed whole");
        let small = get(&mut c, "/hello", "");
        assert_eq!((small.text().as_str(), small.header("content-length")), ("hello", Some("5")));
        assert_eq!(get(&mut c, "/status/418", "").status, 418);
        assert_eq!(get(&mut c, "/nowhere", "").status, 404);
        front.shutdown();
        upstream.shutdown();
    }
    let dead = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let front = start_front(IoBackend::Auto, proxy(format!("http://{dead}")));
    let mut c = Raw::connect(front.local_addr());
    assert_eq!(get(&mut c, "/anything", "").status, 502);
    front.shutdown();
}

#[test]
fn a_body_cut_mid_stream_reaches_the_client_truncated_not_complete() {
    let upstream = scripted(|_, _, _| {
        Act::ReplyClose(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    });
    let front = start_front(IoBackend::Auto, proxy(format!("http://{upstream}")));
    let mut c = TcpStream::connect(front.local_addr()).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    c.write_all(b"GET /cut HTTP/1.1\r\nHost: f\r\n\r\n").expect("send");
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("5\r\nhello\r\n"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "the end mark is not sent for a cut body: {text:?}");
    front.shutdown();
}

#[test]
fn nginx_as_the_upstream() {
    let port = common::free_port();
    let nginx = Nginx::start(
        port,
        &format!(
            "    server {{\n        listen 127.0.0.1:{port};\n        keepalive_requests 1000;\n\
                     location = /hello {{ return 200 \"from nginx\\n\"; }}\n\
                     location /files/ {{ alias {{prefix}}/files/; }}\n    }}\n"
        ),
    );
    std::fs::create_dir_all(nginx.dir().join("files")).expect("dir");
    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(nginx.dir().join("files/blob.bin"), &file).expect("file");
    let front =
        start_front(IoBackend::Auto, caller(format!("http://127.0.0.1:{port}"), UpstreamConfig::default()));
    let mut c = Raw::connect(front.local_addr());
    assert_eq!(get(&mut c, "/call/hello", "").text(), "from nginx\n");
    let blob = get(&mut c, "/call/files/blob.bin", "");
    assert_eq!(blob.status, 200);
    assert!(blob.body == file, "the file arrives byte for byte ({} bytes)", blob.body.len());
    assert_eq!(get(&mut c, "/call/files/missing", "").status, 404);
    let s = stats(&mut c);
    assert_eq!((s["connects"], s["reused"]), (1, 2), "nginx keeps the connection alive: {s:?}");
    front.shutdown();
}
