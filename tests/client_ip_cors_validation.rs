//! The client address behind proxies, validated JSON binding and CORS, over real
//! sockets on both backends: forwarding headers believed only from trusted peers and
//! walked from the right, bad CIDRs refused at start naming the entry, a 400 naming
//! every broken rule, preflights answered (or refused) before any handler runs.

mod common;

use std::time::Duration;

use common::{BACKENDS, Raw, Resp};
use ringo::middleware::{AllowedOrigins, CorsConfig, cors};
use ringo::{Context, Limits, RouteError, Router, Server, ServerConfig};
use serde::Deserialize;
use validator::Validate;

fn ip_app(trusted: &'static [&'static str]) -> impl Fn() -> Result<Router, RouteError> + Send + Sync {
    move || {
        let mut r = Router::new();
        r.trusted_proxies(trusted)?;
        r.get("/ip", |c: &mut Context| {
            let ip = c.client_ip().map(|ip| ip.to_string()).unwrap_or_default();
            c.string(200, &ip);
        })?;
        Ok(r)
    }
}

fn ip_of(c: &mut Raw, headers: &str) -> String {
    c.send(format!("GET /ip HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn forwarding_headers_are_believed_only_from_trusted_peers() {
    for backend in BACKENDS {
        // The test client is 127.0.0.1: trusted here...
        let server = common::start_with(ip_app(&["127.0.0.0/8", "::1/128"]), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(ip_of(&mut c, ""), "127.0.0.1", "{backend}: no header, the peer");
        assert_eq!(ip_of(&mut c, "X-Forwarded-For: 198.51.100.7\r\n"), "198.51.100.7");
        // multi-hop: a spoofed left part, then the client, then a trusted hop
        assert_eq!(ip_of(&mut c, "X-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.5\r\n"), "198.51.100.7");
        // two header lines are one list
        assert_eq!(
            ip_of(&mut c, "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.9, 127.0.0.2\r\n"),
            "203.0.113.9"
        );
        assert_eq!(ip_of(&mut c, "Forwarded: for=\"[2001:db8::1]:4711\"\r\n"), "2001:db8::1");
        assert_eq!(ip_of(&mut c, "Forwarded: for=192.0.2.60;proto=http;by=127.0.0.1\r\n"), "192.0.2.60");
        // garbage where the nearest proxy writes: the peer, never the garbage
        assert_eq!(ip_of(&mut c, "X-Forwarded-For: 198.51.100.7, bogus\r\n"), "127.0.0.1");
        server.shutdown();

        // ...and untrusted here: a spoofed header is ignored.
        let server = common::start_with(ip_app(&["10.0.0.0/8"]), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(ip_of(&mut c, "X-Forwarded-For: 198.51.100.7\r\n"), "127.0.0.1", "{backend}");
        assert_eq!(ip_of(&mut c, "Forwarded: for=198.51.100.7\r\n"), "127.0.0.1");
        server.shutdown();

        // No trusted proxies at all (the default): the peer.
        let server = common::start_with(ip_app(&[]), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(ip_of(&mut c, "X-Forwarded-For: 198.51.100.7\r\n"), "127.0.0.1", "{backend}");
        server.shutdown();
    }
}

#[test]
fn an_invalid_cidr_stops_the_server_naming_the_entry() {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(1),
        ..ServerConfig::default()
    };
    let err = Server::new(ip_app(&["10.0.0.0/8", "10.0.0.0/33"])).config(cfg).start().expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("`10.0.0.0/33`") && text.contains("at most 32"), "{text}");
    let err = Router::new().trusted_proxies(&["not-an-ip"]).map(|_| ()).expect_err("refused");
    assert_eq!(err.to_string(), "invalid trusted proxy `not-an-ip`: not an IPv4 or IPv6 address");
}

#[derive(Debug, Deserialize, Validate)]
struct SignUp {
    #[validate(email)]
    email: String,
    #[validate(range(min = 18, max = 150))]
    age: u32,
    #[validate(length(min = 1, max = 20))]
    name: String,
    #[validate(required, url)]
    homepage: Option<String>,
}

fn validation_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.post("/signup", |c: &mut Context| {
        if let Ok(s) = c.bind_json_valid::<SignUp>() {
            c.json(201, &serde_json::json!({ "name": s.name, "age": s.age, "email": s.email }));
        }
    })?;
    Ok(r)
}

fn post(c: &mut Raw, path: &str, body: &str) -> Resp {
    c.send(
        format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .as_bytes(),
    );
    c.response()
}

#[test]
fn validation_failures_are_a_400_naming_fields_and_rules() {
    for backend in BACKENDS {
        let server = common::start_with(validation_app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let r = post(
            &mut c,
            "/signup",
            r#"{"email":"alice@example.com","age":30,"name":"Alice","homepage":"https://a.example"}"#,
        );
        assert_eq!(r.status, 201, "{backend}: {}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(v["name"], "Alice");

        let r = post(&mut c, "/signup", r#"{"email":"not-an-email","age":7,"name":""}"#);
        assert_eq!(r.status, 400, "{backend}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "error": "validation failed",
                "fields": {"age": ["range"], "email": ["email"], "homepage": ["required"], "name": ["length"]}
            })
        );

        // Broken JSON stays a bind error, and the connection carries on.
        let r = post(&mut c, "/signup", r#"{"email":"#);
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert!(v["error"].as_str().is_some_and(|e| e.starts_with("invalid JSON body")), "{v}");
        let r = post(
            &mut c,
            "/signup",
            r#"{"email":"b@example.com","age":18,"name":"B","homepage":"not a url"}"#,
        );
        assert_eq!(r.status, 400);
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
        assert_eq!(v["fields"], serde_json::json!({"homepage": ["url"]}));
        server.shutdown();
    }
}

const ORIGIN: &str = "https://app.example";

fn cors_app(config: CorsConfig) -> impl Fn() -> Result<Router, RouteError> + Send + Sync {
    move || {
        let mut r = Router::new();
        r.middleware(cors(config.clone())?);
        r.get("/items", |c: &mut Context| {
            c.header("X-Total", "3");
            c.string(200, "items");
        })?;
        r.options("/probe", |c: &mut Context| c.string(200, "handler reached"))?;
        Ok(r)
    }
}

fn credentialed() -> CorsConfig {
    CorsConfig {
        allowed_origins: AllowedOrigins::List(vec![ORIGIN.into()]),
        allowed_methods: vec!["GET".into(), "PUT".into()],
        allowed_headers: vec!["Content-Type".into(), "X-Token".into()],
        exposed_headers: vec!["X-Total".into()],
        allow_credentials: true,
        max_age: Some(Duration::from_secs(600)),
    }
}

fn send(c: &mut Raw, method: &str, path: &str, headers: &str) -> Resp {
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.response()
}

fn preflight(c: &mut Raw, path: &str, origin: &str, method: &str, headers: &str) -> Resp {
    send(
        c,
        "OPTIONS",
        path,
        &format!("Origin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n{headers}"),
    )
}

#[test]
fn preflights_are_answered_before_any_handler() {
    for backend in BACKENDS {
        let server = common::start_with(cors_app(credentialed()), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        // /items has only GET: without CORS an OPTIONS there is a 405; the global
        // middleware answers the preflight first.
        for path in ["/items", "/probe", "/nowhere"] {
            let r = preflight(
                &mut c,
                path,
                ORIGIN,
                "PUT",
                "Access-Control-Request-Headers: x-token, content-type\r\n",
            );
            assert_eq!(r.status, 204, "{backend} {path}: {}", r.text());
            assert!(r.body.is_empty(), "the handler never ran: {}", r.text());
            assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
            assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
            assert_eq!(r.header("access-control-allow-methods"), Some("GET, PUT"));
            assert_eq!(r.header("access-control-allow-headers"), Some("Content-Type, X-Token"));
            assert_eq!(r.header("access-control-max-age"), Some("600"));
            assert!(r.header("vary").is_some_and(|v| v.starts_with("Origin")), "{:?}", r.header("vary"));
        }
        // Refused: another origin, a method or a header not allowed.
        for (origin, method, headers) in [
            ("https://evil.example", "PUT", ""),
            (ORIGIN, "DELETE", ""),
            (ORIGIN, "PUT", "Access-Control-Request-Headers: x-other\r\n"),
        ] {
            let r = preflight(&mut c, "/probe", origin, method, headers);
            assert_eq!(r.status, 403, "{backend} {origin} {method} {headers}");
            assert_eq!(r.header("access-control-allow-origin"), None);
            assert_eq!(r.header("access-control-allow-methods"), None);
            assert!(r.body.is_empty(), "the handler never ran: {}", r.text());
        }
        // A plain OPTIONS (no Access-Control-Request-Method) is no preflight.
        let r = send(&mut c, "OPTIONS", "/probe", &format!("Origin: {ORIGIN}\r\n"));
        assert_eq!((r.status, r.text().as_str()), (200, "handler reached"));
        let r = send(&mut c, "OPTIONS", "/items", "");
        assert_eq!(r.status, 405);
        server.shutdown();
    }
}

#[test]
fn actual_requests_get_cors_headers_only_for_allowed_origins() {
    for backend in BACKENDS {
        let server = common::start_with(cors_app(credentialed()), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let r = send(&mut c, "GET", "/items", &format!("Origin: {ORIGIN}\r\n"));
        assert_eq!((r.status, r.text().as_str()), (200, "items"), "{backend}");
        assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN), "echoed, never *");
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"));
        assert_eq!(r.header("vary"), Some("Origin"));

        let r = send(&mut c, "GET", "/items", "Origin: https://evil.example\r\n");
        assert_eq!((r.status, r.text().as_str()), (200, "items"));
        assert_eq!(r.header("access-control-allow-origin"), None);
        assert_eq!(r.header("access-control-allow-credentials"), None);
        assert_eq!(r.header("vary"), Some("Origin"), "caches must still key on the origin");

        let r = send(&mut c, "GET", "/items", "");
        assert_eq!(r.header("access-control-allow-origin"), None);
        server.shutdown();

        // Any origin without credentials: `*`, nothing to vary on.
        let server = common::start_with(cors_app(CorsConfig::default()), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let r = send(&mut c, "GET", "/items", "Origin: https://anyone.example\r\n");
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{backend}");
        assert_eq!(r.header("access-control-allow-credentials"), None);
        assert_eq!(r.header("vary"), None);
        server.shutdown();

        // Any origin with credentials: the origin is echoed, `*` never.
        let any_creds = CorsConfig { allow_credentials: true, ..CorsConfig::default() };
        let server = common::start_with(cors_app(any_creds), 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let r = send(&mut c, "GET", "/items", "Origin: https://anyone.example\r\n");
        assert_eq!(r.header("access-control-allow-origin"), Some("https://anyone.example"), "{backend}");
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert_eq!(r.header("vary"), Some("Origin"));
        let r = preflight(&mut c, "/items", "https://anyone.example", "GET", "");
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-origin"), Some("https://anyone.example"));
        server.shutdown();
    }
}

#[test]
fn a_bad_cors_configuration_stops_the_server() {
    let bad = CorsConfig { allowed_headers: vec!["X-Ok".into(), "Bad Name".into()], ..CorsConfig::default() };
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(1),
        ..ServerConfig::default()
    };
    let err = Server::new(cors_app(bad)).config(cfg).start().expect_err("refused");
    assert!(err.to_string().contains("invalid CORS header name \"Bad Name\""), "{err}");
}
