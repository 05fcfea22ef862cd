//! The engine's failure paths, over real sockets on both io backends: panics outside a
//! handler, forgotten futures, pipelining cost, clients that never read, header
//! injection, bodies on statuses that forbid them, trickled bodies, and accept limits.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BACKENDS, Raw, admin_get, eventually, metric};
use ringo::middleware::from_fn;
use ringo::{
    Context, IoBackend, Limits, Next, RouteError, Router, RunningServer, Server, ServerConfig,
    ShardDeathPolicy,
};

/// Starts `factory` on loopback with one shard, an admin listener and `policy`.
fn start_admin<F>(factory: F, backend: IoBackend, limits: Limits, policy: ShardDeathPolicy) -> RunningServer
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    common::start_with_admin_and(factory, backend, |cfg| {
        cfg.limits = limits;
        cfg.stall_threshold = Duration::from_secs(5);
        cfg.on_shard_death = policy;
    })
}

fn plain_app() -> Router {
    let mut r = Router::new();
    r.get("/plaintext", |c: &mut Context| c.string(200, "Hello, World!")).expect("route");
    r
}

#[test]
fn a_panicking_background_task_ends_alone_and_the_shard_keeps_serving() {
    for backend in BACKENDS {
        let server = start_admin(
            || {
                let mut r = plain_app();
                r.get("/spawn-panic", |c: &mut Context| {
                    let _ = c.spawn(async { panic!("background boom") });
                    c.string(200, "spawned");
                })?;
                Ok(r)
            },
            backend,
            Limits::default(),
            ShardDeathPolicy::Exit,
        );
        let addr = server.local_addr();
        let mut c = Raw::connect(addr);
        assert_eq!(c.get("/spawn-panic").text(), "spawned");
        // Regression: the task's panic used to unwind through the runtime and kill the
        // shard, leaving its listener open and new connections timing out.
        for _ in 0..3 {
            assert_eq!(Raw::connect(addr).get("/plaintext").status, 200, "{backend:?}");
        }
        assert_eq!(c.get("/plaintext").status, 200, "the same connection lives on");
        assert!(eventually(Duration::from_secs(2), || metric(
            &server,
            "ringo_background_tasks_panicked_total"
        ) == 1));
        assert_eq!(admin_get(&server, "/healthz").status, 200);
        server.shutdown();
    }
}

/// A route whose task panics outside every containment: a task put on the runtime
/// directly, not through `Context::spawn`. It takes the shard thread down.
fn killer_app() -> Result<Router, RouteError> {
    let mut r = plain_app();
    r.get("/kill-shard", |c: &mut Context| {
        drop(ringo::runtime::spawn(async { panic!("escaped containment") }));
        c.string(200, "doomed");
    })?;
    Ok(r)
}

/// Asks for `/kill-shard`; the answer may die with the shard before it is written.
fn kill_shard(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /kill-shard HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut b = [0u8; 256];
    let _ = s.read(&mut b);
}

#[test]
fn a_dead_shard_is_restarted_with_a_fresh_listener_under_the_restart_policy() {
    for backend in BACKENDS {
        let server = start_admin(killer_app, backend, Limits::default(), ShardDeathPolicy::Restart);
        let addr = server.local_addr();
        kill_shard(addr);
        // The restarted shard listens again on the same port and says it restarted.
        assert!(
            eventually(Duration::from_secs(5), || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok_and(|mut s| {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    let _ = s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
                    let mut b = [0u8; 64];
                    matches!(s.read(&mut b), Ok(n) if b[..n].starts_with(b"HTTP/1.1 200"))
                })
            }),
            "{backend:?}: no answer after the restart"
        );
        // Every new connection is answered: the dead shard's listener left the port's
        // SO_REUSEPORT group (one nobody accepts on would take its share and hang them).
        for i in 0..24 {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap_or(0);
            assert!(
                b[..n].starts_with(b"HTTP/1.1 200"),
                "{backend:?}: connection {i} after the restart hung"
            );
        }
        assert!(eventually(Duration::from_secs(3), || metric(&server, "ringo_shard_restarts_total") == 1));
        assert!(eventually(Duration::from_secs(3), || admin_get(&server, "/healthz").status == 200));
        let report = server.shutdown();
        assert_eq!(report.panicked_shards, 0, "the restarted shard stopped cleanly");
    }
}

/// Under the default `exit` policy a dead shard ends the process with status 70, so a
/// supervisor restarts it. The server runs in a child process: this same test, re-run
/// with `RINGO_DEATH_CHILD` set, plays the child.
#[test]
fn a_dead_shard_exits_the_process_under_the_exit_policy() {
    if std::env::var_os("RINGO_DEATH_CHILD").is_some() {
        let server = start_admin(killer_app, IoBackend::Auto, Limits::default(), ShardDeathPolicy::Exit);
        println!("\nPORT {}", server.local_addr().port());
        std::io::stdout().flush().expect("stdout");
        std::thread::sleep(Duration::from_secs(30));
        panic!("the child was not ended by the shard's death");
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "a_dead_shard_exits_the_process_under_the_exit_policy",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RINGO_DEATH_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("child starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let port: u16 = loop {
        let mut b = [0u8; 256];
        let n = out.read(&mut b).expect("child output");
        assert!(n > 0, "child ended before listening: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&seen);
        if let Some((_, rest)) = text.split_once("PORT ") {
            if let Some((digits, _)) = rest.split_once('\n') {
                break digits.trim().parse().expect("port");
            }
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    kill_shard(addr);
    let until = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the process kept running with a dead shard");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(ringo::EXIT_SHARD_DIED));
}

#[test]
fn a_middleware_that_forgets_its_chain_future_cannot_corrupt_later_requests() {
    for backend in BACKENDS {
        let server = start_admin(
            || {
                let mut r = Router::new();
                let mut forgetful = r.group("/forget");
                // Polls the chain once (the handler registers a timer in arena memory),
                // then leaks the future without dropping it.
                forgetful.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
                    let mut chain = Box::pin(next.run(c));
                    std::future::poll_fn(|cx| {
                        let _ = chain.as_mut().poll(cx);
                        std::task::Poll::Ready(())
                    })
                    .await;
                    std::mem::forget(chain);
                }));
                forgetful.get("/x", async |c: &mut Context| {
                    ringo::time::sleep(Duration::from_millis(30)).await;
                    c.string(200, "late");
                })?;
                let mut timed = r.group("/timed");
                timed.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
                    next.run(c).await;
                }));
                timed.get("/:n", async |c: &mut Context| {
                    ringo::time::sleep(Duration::from_millis(1)).await;
                    let n = c.param("n").to_owned();
                    c.string(200, &n);
                })?;
                Ok(r)
            },
            backend,
            Limits::default(),
            ShardDeathPolicy::Exit,
        );
        let mut c = Raw::connect(server.local_addr());
        for _ in 0..3 {
            let _ = c.get("/forget/x");
        }
        // Regression: the next requests reused the arena memory the forgotten future's
        // timer pointed into, and the process aborted or crashed.
        for i in 0..200 {
            assert_eq!(c.get(&format!("/timed/{i}")).text(), i.to_string(), "{backend:?}");
        }
        assert!(eventually(Duration::from_secs(2), || metric(&server, "ringo_arena_abandoned_total") == 3));
        server.shutdown();
    }
}

#[test]
fn megabytes_of_pipelined_requests_are_all_answered_in_order() {
    for backend in BACKENDS {
        let server = common::start_with(ringo::default_app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        c.stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        // 4 MiB of small pipelined requests in one write, and a marker last.
        let one = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
        let n = (4 << 20) / one.len();
        let mut batch = Vec::with_capacity(n * one.len() + 64);
        for _ in 0..n {
            batch.extend_from_slice(one);
        }
        batch.extend_from_slice(b"GET /users/last HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut writer = c.stream.try_clone().expect("clone");
        let sender = std::thread::spawn(move || writer.write_all(&batch));
        for i in 0..n {
            let r = c.response();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, World!"[..]), "response {i}");
        }
        assert_eq!(c.response().text(), r#"{"id":"last"}"#);
        sender.join().expect("sender").expect("sent");
        server.shutdown();
    }
}

#[test]
fn a_client_that_never_reads_stops_being_read() {
    for backend in BACKENDS {
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&handled);
        let server = common::start_with(
            move || {
                let mut r = Router::new();
                let counter = Arc::clone(&counter);
                r.get("/big", move |c: &mut Context| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    c.bytes(200, "application/octet-stream", &[b'x'; 256 << 10]);
                })?;
                Ok(r)
            },
            1,
            backend,
            Limits::default(),
        );
        let mut c = Raw::connect(server.local_addr());
        let requests = 200;
        let mut batch = Vec::new();
        for _ in 0..requests {
            batch.extend_from_slice(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
        }
        c.send(&batch);
        std::thread::sleep(Duration::from_millis(800));
        // Regression: every response was rendered into one write buffer (50 MiB) before
        // the first send. Now the engine stops parsing once the socket is full.
        let answered = handled.load(Ordering::Relaxed);
        assert!(answered < requests / 2, "{backend:?}: {answered} of {requests} answered without reading");
        for i in 0..requests {
            assert_eq!(c.response().body.len(), 256 << 10, "{backend:?}: response {i}");
        }
        server.shutdown();
    }
}

#[test]
fn header_values_from_handlers_never_inject_lines() {
    for backend in BACKENDS {
        let server = common::start_with(
            || {
                let mut r = Router::new();
                r.get("/ct", |c: &mut Context| {
                    let forwarded = "text/plain\r\nSet-Cookie: stolen=1";
                    c.bytes(200, forwarded, b"body");
                })?;
                r.get("/header", |c: &mut Context| {
                    c.header("X-Note", "a\r\nSet-Cookie: stolen=1");
                    c.header("Bad Name", "v");
                    let refused = c.try_header("X-Nul", "a\0b").is_err();
                    c.string(200, if refused { "refused" } else { "sent" });
                })?;
                r.get("/status/:n", |c: &mut Context| {
                    let n: u16 = c.param("n").parse().unwrap_or(0);
                    c.status(n);
                })?;
                r.get("/stream-ct", async |c: &mut Context| {
                    let refused = c.start_stream(200, "a\nb").await.is_err();
                    c.string(200, if refused { "refused" } else { "sent" });
                })?;
                Ok(r)
            },
            1,
            backend,
            Limits::default(),
        );
        let mut c = Raw::connect(server.local_addr());
        let r = c.get("/ct");
        assert_eq!(r.status, 500, "{backend:?}: an invalid content type is a handler bug");
        assert!(r.header("set-cookie").is_none());
        let r = c.get("/header");
        assert_eq!((r.status, r.text().as_str()), (200, "refused"));
        assert!(r.header("set-cookie").is_none() && r.header("x-note").is_none());
        // Only final statuses 200-999: a 1xx, a two-digit or a four-digit status is a 500.
        for (n, want) in [(204, 204), (599, 599), (999, 999), (101, 500), (99, 500), (1000, 500), (0, 500)] {
            assert_eq!(c.get(&format!("/status/{n}")).status, want, "{backend:?}: status({n})");
        }
        let r = c.get("/stream-ct");
        assert_eq!(r.text(), "refused");
        assert_eq!(c.get("/status/200").status, 200, "the connection is still in step");
        server.shutdown();
    }
}

#[test]
fn a_stream_on_a_bodiless_status_sends_no_body_and_keeps_the_connection_framed() {
    for backend in BACKENDS {
        let server = common::start_with(
            || {
                let mut r = Router::new();
                r.get("/stream/:status", async |c: &mut Context| {
                    let status: u16 = c.param("status").parse().unwrap_or(200);
                    if c.start_stream(status, "text/plain").await.is_ok() {
                        let _ = c.write_stream(b"must not be sent").await;
                        let _ = c.write_stream(b"nor this").await;
                    }
                })?;
                r.get("/next", |c: &mut Context| c.string(200, "next"))?;
                Ok(r)
            },
            1,
            backend,
            Limits::default(),
        );
        for status in [204, 304] {
            let mut c = Raw::connect(server.local_addr());
            c.send(
                format!(
                    "GET /stream/{status} HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n"
                )
                .as_bytes(),
            );
            let r = c.response();
            assert_eq!(r.status, status);
            // Regression: a chunked header and chunk bytes followed, desyncing the next
            // response on the connection.
            assert!(r.header("transfer-encoding").is_none(), "{backend:?} {status}: {r:?}");
            let next = c.response();
            assert_eq!((next.status, next.text().as_str()), (200, "next"), "{backend:?} {status}");
        }
        server.shutdown();
    }
}

#[test]
fn a_trickled_body_meets_its_overall_deadline() {
    for backend in BACKENDS {
        let limits = Limits { body_timeout_ms: 1_000, body_deadline_ms: 1_500, ..Limits::default() };
        let server = common::start_with(ringo::default_app, 1, backend, limits);
        let mut c = Raw::connect(server.local_addr());
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n");
        let started = Instant::now();
        // One byte every 300 ms never trips the per-read timeout; the deadline stops it.
        let mut writer = c.stream.try_clone().expect("clone");
        let trickle = std::thread::spawn(move || {
            for _ in 0..40 {
                if writer.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let r = c.response();
        assert_eq!(r.status, 408, "{backend:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{backend:?}: answered after {:?}",
            started.elapsed()
        );
        assert!(c.closed());
        trickle.join().expect("trickle");
        server.shutdown();
    }
}

#[test]
fn max_connections_holds_for_a_burst_of_accepts() {
    for backend in BACKENDS {
        let limits = Limits { max_connections: 5, ..Limits::default() };
        let server = start_admin(|| Ok(plain_app()), backend, limits, ShardDeathPolicy::Exit);
        let addr = server.local_addr();
        // Twenty connections land in one burst, before any of them sends a byte.
        let conns: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).expect("connect")).collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut served = 0;
        // All stay open until the count is taken, so the server is at its peak.
        for mut s in &conns {
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            let _ = s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut b = [0u8; 128];
            if matches!(s.read(&mut b), Ok(n) if n > 0) {
                served += 1;
            }
        }
        assert_eq!(served, 5, "{backend:?}: the limit is counted at accept time");
        assert!(
            eventually(Duration::from_secs(2), || metric(&server, "ringo_connections_rejected_total") == 15)
        );
        drop(conns);
        server.shutdown();
    }
}

#[test]
fn limits_past_what_request_offsets_address_are_refused_at_start() {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(1),
        limits: Limits { max_body_bytes: 5 << 30, ..Limits::default() },
        ..ServerConfig::default()
    };
    let err = Server::new(|| Ok(plain_app())).config(cfg).start().expect_err("a 5 GiB body limit is refused");
    assert!(err.to_string().contains("limits.max_body_bytes"), "{err}");
}

#[test]
fn a_stream_cut_short_by_a_panic_or_a_deadline_never_looks_complete() {
    for backend in BACKENDS {
        let server = common::start_with(
            || {
                let mut r = Router::new();
                r.get("/stream-panic", async |c: &mut Context| {
                    let _ = c.write_stream(b"first piece").await;
                    panic!("mid-stream bug");
                })?;
                let mut slow = r.group("/slow");
                slow.middleware(ringo::middleware::timeout(Duration::from_millis(200)));
                slow.get("/stream", async |c: &mut Context| {
                    let _ = c.write_stream(b"first piece").await;
                    ringo::time::sleep(Duration::from_secs(5)).await;
                    let _ = c.write_stream(b"never").await;
                })?;
                Ok(r)
            },
            1,
            backend,
            Limits::default(),
        );
        for path in ["/stream-panic", "/slow/stream"] {
            let mut s = TcpStream::connect(server.local_addr()).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).expect("send");
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            let text = String::from_utf8_lossy(&all);
            assert!(
                text.starts_with("HTTP/1.1 200") && text.contains("first piece"),
                "{backend} {path}: {text}"
            );
            // Regression: the last-chunk mark was appended, so a truncated body looked whole.
            assert!(!text.ends_with("0\r\n\r\n"), "{backend} {path}: {text:?}");
        }
        server.shutdown();
    }
}
