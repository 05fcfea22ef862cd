//! The framework API as a user writes it: groups, onion middleware, abort, async handlers,
//! per-shard state, typed values, binding, streaming, background tasks, panics.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::{BACKENDS, Raw, start_with};
use ringo::middleware::{from_fn, request_id};
use ringo::{Context, IoBackend, Limits, Next, Router};
use serde::{Deserialize, Serialize};

/// Appends a marker to the `X-Trace` value kept for the request.
fn trace(c: &mut Context, step: &str) {
    match c.get_mut::<String>() {
        Some(t) => {
            t.push(',');
            t.push_str(step);
        }
        None => c.set(step.to_string()),
    }
}

fn onion_app() -> Result<Router, ringo::RouteError> {
    let mut r = Router::new();
    r.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
        trace(c, "global-in");
        next.run(c).await;
        trace(c, "global-out");
        let t = c.get::<String>().cloned().unwrap_or_default();
        c.header("X-Trace", &t);
    }));
    r.get("/plain", |c: &mut Context| {
        trace(c, "handler");
        c.string(200, "ok");
    })?;
    let mut api = r.group("/api");
    api.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
        trace(c, "api-in");
        if c.get_header("authorization") != Some("Bearer good") {
            c.abort_with_status(401);
            return;
        }
        next.run(c).await;
        trace(c, "api-out");
    }));
    api.get("/users/:id<\\d+>", |c: &mut Context| {
        trace(c, "numeric");
        c.json(200, &serde_json::json!({"numeric": c.param("id")}));
    })?;
    api.get("/users/:name", |c: &mut Context| {
        trace(c, "named");
        c.json(200, &serde_json::json!({"name": c.param("name")}));
    })?;
    let mut v2 = api.group("/v2");
    v2.get("/slow", async |c: &mut Context| {
        trace(c, "async-before");
        ringo::time::sleep(Duration::from_millis(30)).await;
        trace(c, "async-after");
        c.string(200, "slept");
    })?;
    v2.get("/files/*path", |c: &mut Context| {
        let p = c.param("path").to_string();
        c.string(200, &p);
    })?;
    Ok(r)
}

fn auth(raw: &mut Raw, path: &str) -> common::Resp {
    raw.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer good\r\n\r\n").as_bytes());
    raw.response()
}

#[test]
fn onion_order_groups_abort_and_async_handlers() {
    for backend in BACKENDS {
        let server = start_with(onion_app, 2, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let r = c.get("/plain");
        assert_eq!(r.header("x-trace"), Some("global-in,handler,global-out"));

        let r = auth(&mut c, "/api/users/42");
        assert_eq!(r.text(), r#"{"numeric":"42"}"#, "regex param wins over the plain one");
        assert_eq!(r.header("x-trace"), Some("global-in,api-in,numeric,api-out,global-out"));
        let r = auth(&mut c, "/api/users/bob%20b");
        assert_eq!(r.text(), r#"{"name":"bob b"}"#);

        // Abort short-circuits the group's routes but the outer layer still runs.
        let r = c.get("/api/users/42");
        assert_eq!(r.status, 401);
        assert_eq!(r.header("x-trace"), Some("global-in,api-in,global-out"));

        let r = auth(&mut c, "/api/v2/slow");
        assert_eq!(r.text(), "slept");
        assert_eq!(r.header("x-trace"), Some("global-in,api-in,async-before,async-after,api-out,global-out"));
        assert_eq!(auth(&mut c, "/api/v2/files/a/b%2Fc.txt").text(), "a/b/c.txt");

        // Global middleware wrap the 404 too.
        let r = c.get("/missing");
        assert_eq!(r.status, 404);
        assert_eq!(r.header("x-trace"), Some("global-in,global-out"));
        server.shutdown();
    }
}

#[test]
fn redirects_and_method_not_allowed() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/dir/", |c: &mut Context| c.string(200, "dir"))?;
            r.get("/file", |c: &mut Context| c.string(200, "file"))?;
            r.post("/file", |c: &mut Context| c.string(201, "made"))?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    let r = c.get("/dir?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/dir/?x=1"));
    let r = c.get("/file/");
    assert_eq!((r.status, r.header("location")), (301, Some("/file")));
    c.send(b"POST /file/ HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(c.response().status, 308);
    c.send(b"DELETE /file HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    server.shutdown();
}

thread_local! {
    static FACTORY_RUNS: Cell<usize> = const { Cell::new(0) };
}

#[test]
fn each_shard_builds_its_own_router_with_rc_state() {
    let server = start_with(
        || {
            FACTORY_RUNS.with(|n| n.set(n.get() + 1));
            // Plain Rc/RefCell state: the factory runs on each shard's own thread.
            let hits = Rc::new(RefCell::new(0u64));
            let mut r = Router::new();
            r.get("/hits", move |c: &mut Context| {
                *hits.borrow_mut() += 1;
                let n = *hits.borrow();
                c.json(200, &serde_json::json!({"shard": c.shard_id(), "hits": n}));
            })?;
            Ok(r)
        },
        2,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut seen = std::collections::HashMap::new();
    for _ in 0..40 {
        let mut c = Raw::connect(server.local_addr());
        let v: serde_json::Value = serde_json::from_str(&c.get("/hits").text()).expect("json");
        let shard = v["shard"].as_u64().expect("shard");
        let hits = v["hits"].as_u64().expect("hits");
        let last = seen.entry(shard).or_insert(0);
        assert_eq!(hits, *last + 1, "each shard counts its own hits");
        *last = hits;
    }
    assert!(seen.keys().all(|s| *s < 2));
    server.shutdown();
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
struct Order {
    item: String,
    qty: u32,
}

#[test]
fn bind_json_into_a_struct() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.post("/orders", |c: &mut Context| {
                if let Ok(order) = c.bind_json::<Order>() {
                    c.json(201, &order);
                }
            })?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    let body = r#"{"item":"tea","qty":2}"#;
    c.send(
        format!("POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .as_bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 201);
    assert_eq!(serde_json::from_str::<Order>(&r.text()).expect("json"), Order { item: "tea".into(), qty: 2 });
    // Wrong type: 400 with a JSON error, connection kept.
    let body = r#"{"item":"tea","qty":"two"}"#;
    c.send(
        format!("POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .as_bytes(),
    );
    let r = c.response();
    assert_eq!(r.status, 400);
    let err: serde_json::Value = serde_json::from_str(&r.text()).expect("json error body");
    assert!(err["error"].is_string());
    assert_eq!(c.get("/nope").status, 404, "connection still in sync");
    server.shutdown();
}

/// Values whose JSON has rules to get right: escapes, non-finite floats, integer map
/// keys, 128-bit integers, map order.
fn tricky_values() -> Vec<serde_json::Value> {
    let mut int_keys = std::collections::BTreeMap::new();
    int_keys.insert(7, "seven");
    int_keys.insert(-1, "minus one");
    vec![
        serde_json::json!("a\u{0}\u{1f}\u{7f}\"\\/\n\t\r é€😀\u{2028}"),
        serde_json::json!("x".repeat(5000) + "\"" + &"y".repeat(70)),
        serde_json::json!([0.1, -0.0, 1e300, 5.0, 16777216.0, f64::MIN_POSITIVE]),
        serde_json::to_value(int_keys).expect("int keys"),
        serde_json::json!({"z": 1, "a": [u64::MAX, i64::MIN, null, true], "m": {"b": {}, "a": []}}),
    ]
}

#[test]
fn json_answers_are_serde_json_bytes_and_unserializable_values_are_500() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/tricky/:i", |c: &mut Context| {
                let i: usize = c.param("i").parse().unwrap_or(usize::MAX);
                match tricky_values().get(i) {
                    Some(v) => c.json(200, v),
                    None => c.string(404, "no such value"),
                }
            })?;
            r.get("/nan", |c: &mut Context| c.json(200, &[f64::NAN, f64::INFINITY]))?;
            r.get("/u128", |c: &mut Context| c.json(200, &(u128::MAX, i128::MIN)))?;
            r.get("/tuple-keys", |c: &mut Context| {
                let mut m = std::collections::BTreeMap::new();
                m.insert((1, 2), "pair");
                c.json(200, &m);
            })?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    for (i, value) in tricky_values().iter().enumerate() {
        let r = c.get(&format!("/tricky/{i}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), serde_json::to_string(value).expect("serializes"), "value {i}");
    }
    assert_eq!(c.get("/nan").text(), "[null,null]");
    assert_eq!(c.get("/u128").text(), serde_json::to_string(&(u128::MAX, i128::MIN)).expect("u128"));
    // A map with non-string keys has no JSON: 500 with an empty body, connection kept.
    let r = c.get("/tuple-keys");
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "");
    assert_eq!(c.get("/tricky/0").status, 200, "connection still in sync");
    server.shutdown();
}

fn boom(_c: &mut Context) {
    panic!("handler bug");
}

#[test]
fn a_panicking_handler_gets_a_json_500_and_the_connection_lives() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/boom", boom)?;
            r.get("/boom-async", async |_c: &mut Context| {
                ringo::time::sleep(Duration::from_millis(1)).await;
                panic!("async handler bug");
            })?;
            r.get("/fine", |c: &mut Context| c.string(200, "fine"))?;
            let mut mw = r.group("/mw");
            mw.middleware(request_id());
            mw.get("/boom", boom)?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    for path in ["/boom", "/boom-async", "/mw/boom"] {
        let mut c = Raw::connect(server.local_addr());
        let r = c.get(path);
        // Recovery: a JSON 500 naming the request, and the connection keeps serving
        // (the request was read whole before the handler ran).
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("connection"), None, "{path}: kept alive");
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error body");
        assert_eq!(body["error"], "internal server error");
        if path == "/mw/boom" {
            let id = r.header("x-request-id").expect("request id echoed");
            assert_eq!(body["request_id"], id);
        }
        assert_eq!(c.get("/fine").text(), "fine", "{path}: same connection, next request");
    }
    server.shutdown();
}

#[test]
fn streamed_responses_are_chunked_for_1_1_and_close_delimited_for_1_0() {
    for backend in BACKENDS {
        let server = start_with(
            || {
                let mut r = Router::new();
                r.get("/stream", async |c: &mut Context| {
                    if c.start_stream(200, "text/plain").await.is_err() {
                        return;
                    }
                    for i in 0..3 {
                        ringo::time::sleep(Duration::from_millis(5)).await;
                        if c.write_stream(format!("part{i};").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                })?;
                Ok(r)
            },
            1,
            backend,
            Limits::default(),
        );
        let mut c = Raw::connect(server.local_addr());
        let r = c.get("/stream");
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.text(), "part0;part1;part2;");
        assert_eq!(c.get("/stream").text(), "part0;part1;part2;", "keep-alive after a stream");
        let mut c = Raw::connect(server.local_addr());
        c.send(b"GET /stream HTTP/1.0\r\n\r\n");
        let r = c.response();
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(r.text(), "part0;part1;part2;");
        server.shutdown();
    }
}

#[test]
fn background_tasks_are_bounded_per_shard() {
    let limits = Limits { max_background_tasks: 3, ..Limits::default() };
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/spawn", |c: &mut Context| {
                let outcome = c.spawn(async {
                    ringo::time::sleep(Duration::from_millis(300)).await;
                });
                c.string(200, if outcome.is_ok() { "started" } else { "rejected" });
            })?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        limits,
    );
    let mut c = Raw::connect(server.local_addr());
    let answers: Vec<String> = (0..5).map(|_| c.get("/spawn").text()).collect();
    assert_eq!(answers, ["started", "started", "started", "rejected", "rejected"]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get("/spawn").text(), "started", "slots free again once tasks finish");
    server.shutdown();
}

#[test]
fn request_ids_and_header_injection() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.middleware(request_id());
            r.get("/id", |c: &mut Context| {
                let id = c
                    .get::<ringo::middleware::RequestId>()
                    .map(|r| r.as_str().to_owned())
                    .unwrap_or_default();
                c.header("X-Evil", "a\r\nSet-Cookie: x=1");
                c.string(200, &id);
            })?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    let a = c.get("/id");
    let b = c.get("/id");
    assert_ne!(a.text(), b.text(), "fresh ids");
    assert_eq!(a.header("x-request-id"), Some(a.text().as_str()));
    assert!(a.header("set-cookie").is_none() && a.header("x-evil").is_none(), "CRLF in a value is refused");
    c.send(b"GET /id HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n");
    assert_eq!(c.response().text(), "abc-123", "the client's id is kept");
    server.shutdown();
}

#[test]
fn route_conflicts_stop_the_server_from_starting() {
    let err = ringo::Server::new(|| {
        let mut r = Router::new();
        r.get("/u/:id", |c: &mut Context| c.status(200))?;
        r.get("/u/:name", |c: &mut Context| c.status(200))?;
        Ok(r)
    })
    .listen("127.0.0.1:0".parse().expect("addr"))
    .shards(1)
    .start()
    .expect_err("conflict refuses start");
    assert!(err.to_string().contains("`GET /u/:name` conflicts with existing route `GET /u/:id`"), "{err}");
}

#[test]
fn query_parameters_are_decoded() {
    let server = start_with(
        || {
            let mut r = Router::new();
            r.get("/search", |c: &mut Context| {
                let q = c.query("q").unwrap_or_default().into_owned();
                let missing = c.query("missing").is_none();
                c.json(200, &serde_json::json!({"q": q, "missing": missing, "raw": c.query_string()}));
            })?;
            Ok(r)
        },
        1,
        IoBackend::Auto,
        Limits::default(),
    );
    let mut c = Raw::connect(server.local_addr());
    let v: serde_json::Value =
        serde_json::from_str(&c.get("/search?x=1&q=caf%C3%A9+au+lait&q=second").text()).expect("json");
    assert_eq!(v["q"], "café au lait", "first value, + and %XX decoded");
    assert_eq!(v["missing"], true);
    assert_eq!(v["raw"], "x=1&q=caf%C3%A9+au+lait&q=second");
    server.shutdown();
}
