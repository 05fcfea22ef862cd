//! Graceful shutdown under load: every request the server received is answered and
//! reaches its client, pipelined requests included; in-flight slow requests finish with
//! `Connection: close`; background tasks finish; a drain that times out reports what it
//! abandoned.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Raw;
use ringo::{Context, IoBackend, Limits, RouteError, Router, RunningServer, Server, ServerConfig};

fn start<F>(factory: F, drain_timeout: Duration) -> RunningServer
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(2),
        io_backend: IoBackend::Auto,
        limits: Limits::default(),
        drain_timeout,
        ..ServerConfig::default()
    };
    Server::new(factory).config(cfg).start().expect("server starts")
}

fn app() -> Result<Router, RouteError> {
    let mut r = ringo::default_app()?;
    r.get("/slow", async |c: &mut Context| {
        ringo::time::sleep(Duration::from_millis(1000)).await;
        c.string(200, "slow done");
    })?;
    Ok(r)
}

/// A client on one keep-alive connection: sends batches of `depth` pipelined requests
/// until the server closes; returns the responses it got (each checked).
fn client(addr: std::net::SocketAddr, id: usize, depth: usize, stop: Arc<AtomicBool>) -> u64 {
    let mut c = Raw::connect(addr);
    let mut got = 0u64;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        for k in 0..depth {
            batch
                .extend_from_slice(format!("GET /users/{id}-{n}-{k} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        if std::io::Write::write_all(&mut c.stream, &batch).is_err() {
            break;
        }
        for k in 0..depth {
            let Some(r) = try_response(&mut c) else { return got };
            assert_eq!(r.status, 200);
            assert_eq!(r.text(), format!("{{\"id\":\"{id}-{n}-{k}\"}}"), "responses stay in order");
            got += 1;
            if r.header("connection") == Some("close") {
                assert_eq!(k, depth - 1, "close only on the last buffered request");
                return got;
            }
        }
        n += 1;
    }
    got
}

/// A response, or `None` when the connection ended first.
fn try_response(c: &mut Raw) -> Option<common::Resp> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.response())).ok()
}

#[test]
fn shutdown_under_load_loses_no_received_request() {
    let server = start(app, Duration::from_secs(3));
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..12)
        .map(|id| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || client(addr, id, if id % 2 == 0 { 1 } else { 4 }, stop))
        })
        .collect();
    // A slow request in flight when the drain starts.
    let slow = std::thread::spawn(move || {
        let mut c = Raw::connect(addr);
        c.get("/slow")
    });
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    let report = server.shutdown();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let received: u64 = clients.into_iter().map(|h| h.join().expect("client")).sum();
    let slow = slow.join().expect("slow client");
    assert_eq!((slow.status, slow.text().as_str()), (200, "slow done"));
    assert_eq!(slow.header("connection"), Some("close"), "the last response says close");
    assert!(report.is_clean(), "{report:?}");
    assert!(received > 100, "the load ran ({received} responses)");
    assert_eq!(report.answered, received + 1, "every answered request reached its client");
    assert!(took < Duration::from_secs(3), "drained within the deadline ({took:?})");
}

#[test]
fn background_tasks_finish_before_exit_or_are_reported() {
    let finished = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&finished);
    let server = start(
        move || {
            let counter = Arc::clone(&counter);
            let mut r = Router::new();
            r.get("/task", move |c: &mut Context| {
                let counter = Arc::clone(&counter);
                let _ = c.spawn(async move {
                    ringo::time::sleep(Duration::from_millis(300)).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                });
                c.string(200, "queued");
            })?;
            Ok(r)
        },
        Duration::from_secs(3),
    );
    let mut c = Raw::connect(server.local_addr());
    for _ in 0..5 {
        assert_eq!(c.get("/task").text(), "queued");
    }
    let report = server.shutdown();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(finished.load(Ordering::SeqCst), 5, "every task ran to the end before the shard stopped");

    // A task longer than the drain timeout is abandoned, and the report says so.
    let server = start(
        || {
            let mut r = Router::new();
            r.get("/forever", |c: &mut Context| {
                let _ = c.spawn(async {
                    ringo::time::sleep(Duration::from_secs(60)).await;
                });
                c.string(200, "queued");
            })?;
            Ok(r)
        },
        Duration::from_millis(300),
    );
    assert_eq!(Raw::connect(server.local_addr()).get("/forever").status, 200);
    let started = Instant::now();
    let report = server.shutdown();
    assert_eq!(report.abandoned_tasks, 1, "{report:?}");
    assert!(!report.is_clean());
    assert!(started.elapsed() < Duration::from_secs(2), "the timeout bounds the drain");
}
