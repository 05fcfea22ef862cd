//! The `timeout` middleware on a real server, both io backends: a slow handler is
//! cancelled and answered 503 at its deadline (504 when it waits on an upstream), the
//! connection keeps serving, a breaker behind the deadline counts the cancelled call as
//! a failure, and `ringo_timeouts_total` counts each one.

mod common;

use std::time::{Duration, Instant};

use common::{BACKENDS, Raw, Resp, series, start_with_admin};
use ringo::breaker::{Breaker, Settings};
use ringo::middleware::{WaitingOnUpstream, breaker, timeout};
use ringo::{Context, RouteError, Router, RunningServer};

const DEADLINE: Duration = Duration::from_millis(150);

fn app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    let mut t = r.group("/t");
    t.middleware(timeout(DEADLINE));
    t.get("/slow", async |c: &mut Context| {
        ringo::time::sleep(Duration::from_secs(3)).await;
        c.string(200, "too late");
    })?;
    t.get("/fast", async |c: &mut Context| {
        ringo::time::sleep(Duration::from_millis(1)).await;
        c.string(200, "in time");
    })?;
    t.get("/upstream", async |c: &mut Context| {
        c.set(WaitingOnUpstream);
        ringo::time::sleep(Duration::from_secs(3)).await;
        c.string(200, "too late");
    })?;
    let dep = Breaker::new(
        "slow-dep",
        Settings { timeout: Duration::from_secs(30), ..Settings::default() }
            .trip_when(|c| c.consecutive_failures >= 1),
    );
    let mut b = r.group("/b");
    b.middleware(timeout(DEADLINE));
    b.middleware(breaker(dep));
    b.get("/call", async |c: &mut Context| {
        ringo::time::sleep(Duration::from_secs(3)).await;
        c.string(200, "too late");
    })?;
    Ok(r)
}

fn timeouts(server: &RunningServer) -> Option<u64> {
    series(server, "ringo_timeouts_total{shard=\"0\"} ")
}

/// GETs `path` and checks the answer came at the deadline, not after the handler.
fn timed(c: &mut Raw, path: &str) -> Resp {
    let start = Instant::now();
    let r = c.get(path);
    let took = start.elapsed();
    assert!(took >= DEADLINE, "{path} answered before its deadline ({took:?})");
    assert!(took < DEADLINE + Duration::from_secs(1), "{path} answered {took:?} after it started");
    r
}

#[test]
fn slow_handlers_are_cancelled_at_their_deadline_and_the_connection_keeps_serving() {
    for backend in BACKENDS {
        let server = start_with_admin(app, backend);
        let mut c = Raw::connect(server.local_addr());

        let r = timed(&mut c, "/t/slow");
        assert_eq!(r.status, 503, "{backend:?}: {}", r.text());
        assert_eq!(c.get("/t/fast").text(), "in time", "{backend:?}: same connection, next request");

        let r = timed(&mut c, "/t/upstream");
        assert_eq!(r.status, 504, "{backend:?}: marked as waiting on an upstream: {}", r.text());

        // Behind a breaker: the cancelled call is a 504 and its dropped permit a failure,
        // so the next call is refused at once.
        let r = timed(&mut c, "/b/call");
        assert_eq!(r.status, 504, "{backend:?}: {}", r.text());
        let start = Instant::now();
        let r = c.get("/b/call");
        assert_eq!(r.status, 503, "{backend:?}: the breaker opened: {}", r.text());
        assert!(r.header("retry-after").is_some());
        assert!(start.elapsed() < DEADLINE, "refused without waiting");

        assert_eq!(c.get("/t/fast").status, 200);
        let deadline = Instant::now() + Duration::from_secs(3);
        while timeouts(&server) != Some(3) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(timeouts(&server), Some(3), "{backend:?}: three chains cancelled");
        server.shutdown();
    }
}
