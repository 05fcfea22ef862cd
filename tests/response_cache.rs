//! The response-cache middleware over real sockets, both backends: GET answers replayed
//! without the handler (status, type, headers, body, `X-Cache`, `Age`), keys that
//! ignore query order, and the rules that keep an answer out of the cache: no-store,
//! private, max-age=0 and shorter max-ages, cookies, credentials, non-GET methods,
//! non-200 statuses.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{BACKENDS, Raw, Resp};
use ringo::middleware::response_cache;
use ringo::{Context, Limits, RouteError, Router};

/// Routes that answer with how many times their handler ran on this shard.
fn app() -> Result<Router, RouteError> {
    let calls = Rc::new(Cell::new(0u32));
    let mut r = Router::new();
    r.middleware(response_cache(Duration::from_secs(60)));
    // Path, a header the handler sets, its status.
    type Route = (&'static str, Option<(&'static str, &'static str)>, u16);
    let routes: [Route; 7] = [
        ("/plain", Some(("X-Custom", "kept")), 200),
        ("/no-store", Some(("Cache-Control", "no-store")), 200),
        ("/private", Some(("Cache-Control", "private, max-age=60")), 200),
        ("/max-age-0", Some(("Cache-Control", "max-age=0")), 200),
        ("/short", Some(("Cache-Control", "public, max-age=1")), 200),
        ("/cookie", Some(("Set-Cookie", "session=1")), 200),
        ("/missing", None, 404),
    ];
    for (path, header, status) in routes {
        let calls = Rc::clone(&calls);
        r.get(path, move |c: &mut Context| {
            calls.set(calls.get() + 1);
            if let Some((name, value)) = header {
                c.header(name, value);
            }
            c.bytes(status, "application/json", format!(r#"{{"calls":{}}}"#, calls.get()).as_bytes());
        })?;
    }
    let calls = Rc::clone(&calls);
    r.post("/plain", move |c: &mut Context| {
        calls.set(calls.get() + 1);
        c.string(200, &calls.get().to_string());
    })?;
    Ok(r)
}

fn get(c: &mut Raw, path: &str, headers: &str) -> Resp {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.response()
}

#[test]
fn get_answers_are_replayed_without_the_handler() {
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let first = get(&mut c, "/plain?b=2&a=1", "");
        assert_eq!((first.status, first.header("x-cache")), (200, None));
        let again = get(&mut c, "/plain?a=1&b=2", "");
        assert_eq!(again.text(), first.text(), "{backend:?}: the handler did not run again");
        assert_eq!(again.header("x-cache"), Some("hit"));
        assert_eq!(again.header("age"), Some("0"));
        assert_eq!(again.header("x-custom"), Some("kept"), "headers are replayed");
        assert_eq!(again.header("content-type"), Some("application/json"));
        // Another path or query is another entry.
        assert_ne!(get(&mut c, "/plain?a=1", "").text(), first.text());
        // HEAD is answered from the entry too (without a body).
        c.send(b"HEAD /plain?a=1&b=2 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response(true).header("x-cache"), Some("hit"));
        server.shutdown();
    }
}

#[test]
fn answers_the_rules_forbid_are_never_stored() {
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        for path in ["/no-store", "/private", "/max-age-0", "/cookie", "/missing"] {
            let a = get(&mut c, path, "");
            let b = get(&mut c, path, "");
            assert_ne!(a.text(), b.text(), "{backend:?} {path}: the handler ran both times");
            assert_eq!(b.header("x-cache"), None, "{path}");
        }
        // Credentials bypass the cache: one user's answer never reaches another.
        let open = get(&mut c, "/plain", "");
        let with_auth = get(&mut c, "/plain", "Authorization: Bearer x\r\n");
        assert_ne!(open.text(), with_auth.text());
        assert_eq!(get(&mut c, "/plain", "Cookie: s=1\r\n").header("x-cache"), None);
        // POST is never cached.
        c.send(b"POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let p1 = c.response().text();
        c.send(b"POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        assert_ne!(c.response().text(), p1);
        server.shutdown();
    }
}

#[test]
fn a_shorter_max_age_from_the_handler_wins() {
    let server = common::start_with(app, 1, ringo::IoBackend::Auto, Limits::default());
    let mut c = Raw::connect(server.local_addr());
    let first = get(&mut c, "/short", "");
    assert_eq!(get(&mut c, "/short", "").header("x-cache"), Some("hit"));
    std::thread::sleep(Duration::from_millis(1100));
    let later = get(&mut c, "/short", "");
    assert_eq!(later.header("x-cache"), None, "expired after max-age=1");
    assert_ne!(later.text(), first.text());
    server.shutdown();
}

#[test]
fn vary_on_keys_answers_by_a_header() {
    let server = common::start_with(
        || {
            let mut r = Router::new();
            r.middleware(response_cache(Duration::from_secs(60)).vary_on("authorization"));
            r.get("/me", |c: &mut Context| {
                let who = c.get_header("authorization").unwrap_or("anonymous").to_owned();
                c.string(200, &who);
            })?;
            Ok(r)
        },
        1,
        ringo::IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    assert_eq!(get(&mut c, "/me", "Authorization: alice\r\n").text(), "alice");
    assert_eq!(get(&mut c, "/me", "Authorization: bob\r\n").text(), "bob");
    let alice = get(&mut c, "/me", "Authorization: alice\r\n");
    assert_eq!((alice.text().as_str(), alice.header("x-cache")), ("alice", Some("hit")));
    server.shutdown();
}
