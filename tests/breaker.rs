//! The circuit breaker on a real server, both io backends: a route whose dependency
//! fails on demand (`?fail=1`, `?sleep=MS`) driven through every transition, seen from
//! the client (503 + `Retry-After`), in `/metrics` and in `/debug/shards`.

mod common;

use std::time::Duration;

use common::{BACKENDS, Raw, Resp, admin_get, eventually, series, start_with_admin};
use ringo::breaker::{Breaker, Settings};
use ringo::middleware::breaker;
use ringo::{Context, RouteError, Router, RunningServer};

/// How long the breaker stays open in these tests.
const OPEN_FOR: Duration = Duration::from_millis(400);

fn app() -> Result<Router, RouteError> {
    // Built per shard: each shard has its own `dep` breaker.
    let dep = Breaker::new(
        "dep",
        Settings {
            max_requests: 2,
            interval: Duration::from_secs(10),
            timeout: OPEN_FOR,
            ..Settings::default()
        }
        .trip_when(|c| c.consecutive_failures >= 3),
    );
    let mut r = Router::new();
    let mut g = r.group("");
    g.middleware(breaker(dep.clone()));
    g.get("/dep", async |c: &mut Context| {
        let fail = c.query("fail").is_some_and(|v| v == "1");
        let sleep: u64 = c.query("sleep").and_then(|v| v.parse().ok()).unwrap_or(0);
        if sleep > 0 {
            ringo::time::sleep(Duration::from_millis(sleep)).await;
        }
        if fail { c.string(500, "dependency failed") } else { c.string(200, "ok") }
    })?;
    // A caller that takes a permit and loses it (an early return, a panic...).
    r.get("/drop", move |c: &mut Context| match dep.allow() {
        Ok(permit) => {
            drop(permit);
            c.string(200, "dropped");
        }
        Err(e) => c.string(503, &e.to_string()),
    })?;
    Ok(r)
}

fn state_is(server: &RunningServer, value: u64) -> bool {
    series(server, "ringo_breaker_state{shard=\"0\",name=\"dep\"} ") == Some(value)
}

fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"), "{what}: whole seconds, rounded up");
}

fn trip(c: &mut Raw) {
    for i in 0..3 {
        assert_eq!(c.get("/dep?fail=1").status, 500, "failure {i} goes through while closed");
    }
}

#[test]
fn a_failing_dependency_drives_the_breaker_through_every_transition() {
    for backend in BACKENDS {
        let server = start_with_admin(app, backend);
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/dep").status, 200);

        // closed → open: the third consecutive 5xx trips it; the next call is refused.
        trip(&mut c);
        assert_refused(&c.get("/dep"), "open");
        assert!(eventually(Duration::from_secs(3), || state_is(&server, 2)), "{backend:?}: gauge says open");
        let shards = admin_get(&server, "/debug/shards");
        let json: serde_json::Value = serde_json::from_slice(&shards.body).expect("json");
        let b = &json["shards"][0]["breakers"][0];
        assert_eq!((b["name"].as_str(), b["state"].as_str()), (Some("dep"), Some("open")), "{json}");

        // open → half open after the timeout; two probes at most (both slow), the third
        // call is refused while they are out.
        std::thread::sleep(OPEN_FOR + Duration::from_millis(50));
        let mut p1 = Raw::connect(server.local_addr());
        let mut p2 = Raw::connect(server.local_addr());
        p1.send(b"GET /dep?sleep=300 HTTP/1.1\r\nHost: t\r\n\r\n");
        p2.send(b"GET /dep?sleep=300 HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(100));
        assert_refused(&c.get("/dep"), "half open, probes taken");
        // half open → closed: both probes succeed.
        assert_eq!(p1.response().status, 200);
        assert_eq!(p2.response().status, 200);
        assert_eq!(c.get("/dep").status, 200, "{backend:?}: closed again");
        assert!(
            eventually(Duration::from_secs(3), || state_is(&server, 0)),
            "{backend:?}: gauge says closed"
        );

        // half open → open: the probe fails.
        trip(&mut c);
        assert_refused(&c.get("/dep"), "open again");
        std::thread::sleep(OPEN_FOR + Duration::from_millis(50));
        assert_eq!(c.get("/dep?fail=1").status, 500, "the probe goes through and fails");
        assert_refused(&c.get("/dep"), "a failed probe reopens");

        // half open → open: a probe's permit dropped without a result.
        std::thread::sleep(OPEN_FOR + Duration::from_millis(50));
        assert_eq!(c.get("/drop").text(), "dropped");
        assert_refused(&c.get("/dep"), "a dropped probe reopens");

        let transitions = |to: &str| {
            series(
                &server,
                &format!("ringo_breaker_transitions_total{{shard=\"0\",name=\"dep\",to=\"{to}\"}} "),
            )
        };
        assert!(
            eventually(Duration::from_secs(3), || transitions("open") == Some(4)
                && transitions("half_open") == Some(3)
                && transitions("closed") == Some(1)),
            "{backend:?}: transitions {:?} {:?} {:?}",
            transitions("open"),
            transitions("half_open"),
            transitions("closed")
        );
        let rejected = series(&server, "ringo_breaker_rejected_total{shard=\"0\",name=\"dep\"} ");
        assert!(rejected.is_some_and(|n| n >= 4), "{backend:?}: rejected {rejected:?}");
        server.shutdown();
    }
}
