//! The default app of DESIGN.md, end to end: every row of its table, on both io backends,
//! with one and two shards, through a real HTTP client crate, curl and raw sockets.

mod common;

use common::{BACKENDS, Raw, curl, start_default};

fn check_table(addr: std::net::SocketAddr) {
    let base = format!("http://{addr}");
    let agent = ureq::AgentBuilder::new().build();

    let r = agent.get(&format!("{base}/ping")).call().expect("ping");
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.into_string().expect("body"), r#"{"message":"pong"}"#);

    let r = agent.get(&format!("{base}/plaintext")).call().expect("plaintext");
    assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"));
    assert!(r.header("date").is_some(), "Date header");
    assert_eq!(r.into_string().expect("body"), "Hello, World!");

    let r = agent.get(&format!("{base}/json")).call().expect("json");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.into_string().expect("body"), r#"{"message":"Hello, World!"}"#);

    let r = agent.get(&format!("{base}/users/a%20b")).call().expect("users");
    assert_eq!(r.into_string().expect("body"), r#"{"id":"a b"}"#);
    // A quote in the id must come back escaped, not break the JSON.
    let r = agent.get(&format!("{base}/users/x%22y")).call().expect("users");
    assert_eq!(r.into_string().expect("body"), r#"{"id":"x\"y"}"#);

    let r = agent
        .post(&format!("{base}/echo"))
        .set("content-type", "application/json")
        .send_string(r#"{ "b": [1, 2.5, true, null], "a": "x" }"#)
        .expect("echo");
    let echoed: serde_json::Value = serde_json::from_str(&r.into_string().expect("body")).expect("json");
    assert_eq!(echoed, serde_json::json!({"b": [1, 2.5, true, null], "a": "x"}));

    match agent.post(&format!("{base}/echo")).send_string("{not json") {
        Err(ureq::Error::Status(400, r)) => {
            assert_eq!(r.header("content-type"), Some("application/json"));
            let body: serde_json::Value =
                serde_json::from_str(&r.into_string().expect("body")).expect("json error");
            assert!(body["error"].as_str().unwrap_or("").contains("invalid JSON"), "{body}");
        }
        other => panic!("expected 400, got {other:?}"),
    }

    match agent.get(&format!("{base}/nope")).call() {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("expected 404, got {other:?}"),
    }
    match agent.delete(&format!("{base}/plaintext")).call() {
        Err(ureq::Error::Status(405, r)) => assert_eq!(r.header("allow"), Some("GET, HEAD")),
        other => panic!("expected 405, got {other:?}"),
    }
}

/// The shard keeps its JSON parser's buffers between requests: documents of every size
/// (a few bytes, kilobytes, one past the size whose buffers are kept), and a broken one
/// between them, each bind sees its own document only.
#[test]
fn echo_binds_documents_of_mixed_sizes_on_one_connection() {
    let doc = |n: usize| serde_json::json!({ "n": n, "text": "é\"x".repeat(n / 4), "list": [n, 1.5, null] });
    for backend in BACKENDS {
        let server = start_default(1, backend);
        let base = format!("http://{}", server.local_addr());
        let agent = ureq::AgentBuilder::new().build();
        for (round, size) in [10, 4_000, 200_000, 12, 70_000, 0, 1_000].into_iter().enumerate() {
            if size == 0 {
                // A document cut short: 400, and the next bind is unaffected.
                match agent.post(&format!("{base}/echo")).send_string(r#"{"n": [1, 2"#) {
                    Err(ureq::Error::Status(400, _)) => continue,
                    other => panic!("{backend} round {round}: expected 400, got {other:?}"),
                }
            }
            let sent = doc(size);
            let r = agent
                .post(&format!("{base}/echo"))
                .set("content-type", "application/json")
                .send_string(&sent.to_string())
                .unwrap_or_else(|e| panic!("{backend} round {round} ({size}): {e}"));
            let echoed: serde_json::Value =
                serde_json::from_str(&r.into_string().expect("body")).expect("json");
            assert_eq!(echoed, sent, "{backend} round {round} ({size})");
        }
        server.shutdown();
    }
}

#[test]
fn default_app_answers_its_table_on_both_backends_and_shard_counts() {
    for backend in BACKENDS {
        for shards in [1, 2] {
            let server = start_default(shards, backend);
            assert_eq!(server.io_backend(), backend);
            check_table(server.local_addr());
            server.shutdown();
        }
    }
}

#[test]
fn echo_limits_answer_411_and_413() {
    let server = start_default(1, ringo::IoBackend::Auto);
    let addr = server.local_addr();
    let mut c = Raw::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 411);
    assert_eq!(r.header("connection"), Some("close"));

    let mut c = Raw::connect(addr);
    c.send(
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", 1024 * 1024 + 1).as_bytes(),
    );
    assert_eq!(c.response().status, 413);
    assert!(c.closed());

    // A chunked body that grows past the limit is cut off with 413 too.
    let mut c = Raw::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    let mut status = None;
    while sent <= 1024 * 1024 + 64 * 1024 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if std::io::Write::write_all(&mut c.stream, &piece).is_err() {
            break;
        }
        sent += chunk.len();
    }
    if status.is_none() {
        status = Some(c.response().status);
    }
    assert_eq!(status, Some(413));
    server.shutdown();
}

#[test]
fn curl_sees_the_default_app() {
    let server = start_default(2, ringo::IoBackend::Auto);
    let base = format!("http://{}", server.local_addr());
    assert_eq!(curl(&[&format!("{base}/plaintext")]), (200, "Hello, World!".into()));
    assert_eq!(curl(&[&format!("{base}/users/42")]), (200, r#"{"id":"42"}"#.into()));
    let (code, body) =
        curl(&["-H", "content-type: application/json", "--data", r#"{"k":[1,2]}"#, &format!("{base}/echo")]);
    assert_eq!((code, body.as_str()), (200, r#"{"k":[1,2]}"#));
    // curl sends chunked bodies with -H 'Transfer-Encoding: chunked'.
    let (code, body) =
        curl(&["-H", "Transfer-Encoding: chunked", "--data", r#"{"c":true}"#, &format!("{base}/echo")]);
    assert_eq!((code, body.as_str()), (200, r#"{"c":true}"#));
    // HTTP/1.0 and keep-alive reuse, as curl does them.
    assert_eq!(curl(&["--http1.0", &format!("{base}/json")]).0, 200);
    let (code, body) = curl(&[&format!("{base}/plaintext"), &format!("{base}/plaintext")]);
    assert_eq!(code, 200);
    assert_eq!(body, "Hello, World!\n200Hello, World!");
    server.shutdown();
}

#[test]
fn ping_runs_a_background_task_per_request() {
    let server = start_default(1, ringo::IoBackend::Auto);
    let mut c = Raw::connect(server.local_addr());
    for _ in 0..50 {
        let r = c.get("/ping");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), r#"{"message":"pong"}"#);
    }
    server.shutdown();
}
