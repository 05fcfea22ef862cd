//! Trace context and `X-Response-Time` over real sockets, both backends: W3C
//! `traceparent`/`tracestate` accepted and carried on with a new span id, invalid ones
//! replaced (never trusted), B3 single and multi accepted.

mod common;

use common::{BACKENDS, Raw, Resp};
use ringo::middleware::{TraceContext, response_time, trace_context};
use ringo::{Context, Limits, RouteError, Router};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.middleware(response_time());
    r.middleware(trace_context());
    r.get("/trace", |c: &mut Context| {
        let Some(t) = c.get::<TraceContext>() else {
            c.string(500, "no trace context");
            return;
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let body = serde_json::json!({
            "trace_id": text(&t.trace_id_hex()),
            "span_id": text(&t.span_id_hex()),
            "parent_id": t.parent_id_hex().map(|p| text(&p)),
            "sampled": t.sampled(),
            "traceparent": text(&t.traceparent()),
            "tracestate": t.tracestate(c),
        });
        c.json(200, &body);
    })?;
    Ok(r)
}

fn trace(c: &mut Raw, headers: &str) -> (Resp, serde_json::Value) {
    c.send(format!("GET /trace HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = serde_json::from_slice(&r.body).expect("JSON");
    (r, v)
}

fn is_hex(v: &serde_json::Value, len: usize) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[test]
fn a_valid_traceparent_is_continued_with_a_new_span() {
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let (r, v) = trace(
            &mut c,
            &format!(
                "traceparent: 00-{TRACE}-{PARENT}-01\r\ntracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE\r\n"
            ),
        );
        assert_eq!(v["trace_id"], TRACE, "{backend}");
        assert_eq!(v["parent_id"], PARENT);
        assert!(is_hex(&v["span_id"], 16) && v["span_id"] != PARENT, "a new span for this hop");
        assert_eq!(v["traceparent"], format!("00-{TRACE}-{}-01", v["span_id"].as_str().unwrap_or("")));
        assert_eq!(v["tracestate"], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        let took = r.header("x-response-time").expect("X-Response-Time");
        assert!(took.ends_with("us") && took[..took.len() - 2].parse::<u64>().is_ok(), "{took}");
        // Unsampled stays unsampled.
        let (_, v) = trace(&mut c, &format!("traceparent: 00-{TRACE}-{PARENT}-00\r\n"));
        assert_eq!(v["sampled"], false);
        server.shutdown();
    }
}

#[test]
fn invalid_trace_headers_are_replaced_never_trusted() {
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let cases = [
            format!("traceparent: ff-{TRACE}-{PARENT}-01\r\n"), // version ff
            format!("traceparent: 00-{}-{PARENT}-01\r\n", "0".repeat(32)), // all-zero trace id
            format!("traceparent: 00-{TRACE}-0000000000000000-01\r\n"), // all-zero parent
            format!("traceparent: 00-{}-{PARENT}-01\r\n", TRACE.to_uppercase()), // uppercase
            format!("traceparent: 00-{TRACE}-{PARENT}\r\n"),    // no flags
        ];
        let mut seen = Vec::new();
        for headers in &cases {
            let (_, v) = trace(&mut c, &format!("{headers}tracestate: a=1\r\n"));
            assert!(is_hex(&v["trace_id"], 32), "{backend} {headers}: {v}");
            assert_ne!(v["trace_id"], TRACE, "{backend} {headers}: an invalid header was trusted");
            assert_ne!(v["trace_id"], "0".repeat(32));
            assert!(v["parent_id"].is_null(), "a new trace has no parent");
            assert_eq!(v["tracestate"], "", "tracestate goes with its traceparent");
            seen.push(v["trace_id"].clone());
        }
        seen.dedup();
        assert_eq!(seen.len(), cases.len(), "each new trace has its own id");
        server.shutdown();
    }
}

#[test]
fn b3_single_and_multi_headers_are_accepted() {
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let mut c = Raw::connect(server.local_addr());
        let (_, v) =
            trace(&mut c, "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90\r\n");
        assert_eq!(v["trace_id"], "80f198ee56343ba864fe8b2a57d3eff7", "{backend}");
        assert_eq!(v["parent_id"], "e457b5a2e4d86bd1");
        assert_eq!(v["sampled"], false);
        let (_, v) = trace(
            &mut c,
            "X-B3-TraceId: 64fe8b2a57d3eff7\r\nX-B3-SpanId: e457b5a2e4d86bd1\r\nX-B3-Sampled: 1\r\n",
        );
        assert_eq!(v["trace_id"], "000000000000000064fe8b2a57d3eff7");
        assert_eq!(v["sampled"], true);
        // W3C wins over B3 when both came.
        let (_, v) = trace(
            &mut c,
            &format!(
                "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n"
            ),
        );
        assert_eq!(v["trace_id"], TRACE);
        server.shutdown();
    }
}
