//! Sampled spans exported over OTLP/HTTP, both backends: a collector on a real socket
//! decodes the protobuf requests the control thread posts, and the tests check the
//! spans' ids, names, attributes and status against what the requests carried; a dead
//! collector costs the requests nothing and is counted.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BACKENDS, Raw};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use ringo::middleware::{TraceContext, trace_context};
use ringo::{Context, IoBackend, RouteError, Router, RunningServer, ServerConfig, TraceExport};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// What the collector received: each span with its resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP collector on an ephemeral port: answers every POST 200 and keeps the
/// decoded spans.
fn collector() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind collector");
    let addr = listener.local_addr().expect("addr");
    let received: Received = Arc::default();
    let keep = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let keep = Arc::clone(&keep);
            std::thread::spawn(move || serve_collector(stream, &keep));
        }
    });
    (addr, received)
}

fn serve_collector(stream: TcpStream, keep: &Received) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /v1/traces "), "unexpected request line {line:?}");
        let mut length = 0;
        let mut content_type = String::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).expect("header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').expect("header has a colon");
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().expect("length"),
                "content-type" => content_type = value.trim().to_owned(),
                _ => {}
            }
        }
        assert_eq!(content_type, "application/x-protobuf");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
        for rs in request.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .and_then(|v| match v {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    keep.lock().expect("lock").push((service.clone(), span));
                }
            }
        }
        let _ = writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        );
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn app(ratio: f64) -> impl Fn() -> Result<Router, RouteError> + Send + Sync + 'static {
    move || {
        let mut r = Router::new();
        r.middleware(trace_context().sample_ratio(ratio));
        // The handler answers with the traceparent it would send downstream, so the
        // test knows this hop's span id.
        r.get("/users/:id", |c: &mut Context| {
            let tp = c.get::<TraceContext>().map(|t| t.traceparent().to_vec()).unwrap_or_default();
            c.bytes(200, "text/plain", &tp);
        })?;
        r.get("/boom", |c: &mut Context| c.string(503, "down"))?;
        Ok(r)
    }
}

fn start(backend: IoBackend, endpoint: String, ratio: f64) -> RunningServer {
    common::start_with_admin_and(app(ratio), backend, |cfg: &mut ServerConfig| {
        cfg.trace_export = Some(TraceExport {
            endpoint,
            service_name: "ringo-test".into(),
            timeout: Duration::from_millis(500),
            spans_per_shard: 64,
        });
    })
}

fn get(c: &mut Raw, path: &str, headers: &str) -> (u16, String) {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let r = c.response();
    (r.status, r.text())
}

#[test]
fn sampled_spans_reach_the_collector_with_their_ids_route_and_status() {
    for backend in BACKENDS {
        let (addr, received) = collector();
        let server = start(backend, format!("http://{addr}/v1/traces"), 1.0);
        let mut c = Raw::connect(server.local_addr());
        let (status, traceparent) =
            get(&mut c, "/users/7", &format!("traceparent: 00-{TRACE}-{PARENT}-01\r\n"));
        assert_eq!(status, 200);
        let span_id = traceparent[36..52].to_owned();
        // The caller decided not to sample: no span.
        let unsampled = "0af7651916cd43dd8448eb211c80319c";
        get(&mut c, "/users/8", &format!("traceparent: 00-{unsampled}-b7ad6b7169203331-00\r\n"));
        // No header: this server starts the trace (ratio 1: sampled).
        assert_eq!(get(&mut c, "/boom", "").0, 503);
        assert_eq!(get(&mut c, "/nowhere", "").0, 404);

        let spans = || received.lock().expect("lock").clone();
        assert!(common::eventually(Duration::from_secs(5), || spans().len() >= 3), "{:?}", spans());
        std::thread::sleep(Duration::from_millis(300));
        let spans = spans();
        assert_eq!(spans.len(), 3, "{backend:?}: {spans:?}");
        assert!(spans.iter().all(|(service, _)| service == "ringo-test"));
        assert!(!spans.iter().any(|(_, s)| hex(&s.trace_id) == unsampled), "unsampled trace exported");

        let (_, user) = spans.iter().find(|(_, s)| hex(&s.trace_id) == TRACE).expect("the continued trace");
        assert_eq!(hex(&user.span_id), span_id, "the span is this hop's, as sent downstream");
        assert_eq!(hex(&user.parent_span_id), PARENT);
        assert_eq!(user.name, "GET /users/:id");
        assert_eq!(user.kind, 2, "SPAN_KIND_SERVER");
        assert_eq!(attr(&user.attributes, "http.route"), Some(&Value::StringValue("/users/:id".into())));
        assert_eq!(attr(&user.attributes, "http.response.status_code"), Some(&Value::IntValue(200)));
        assert_eq!(attr(&user.attributes, "ringo.shard"), Some(&Value::IntValue(0)));
        assert!(user.end_time_unix_nano >= user.start_time_unix_nano);
        let now_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
        let age = now_ns.saturating_sub(u128::from(user.start_time_unix_nano));
        assert!(age < 30_000_000_000, "start time is wall-clock time, {age} ns ago");

        let (_, boom) = spans.iter().find(|(_, s)| s.name == "GET /boom").expect("the started trace");
        assert!(boom.parent_span_id.is_empty(), "a root span has no parent");
        assert_eq!(boom.status.as_ref().map(|s| s.code), Some(2), "5xx is STATUS_CODE_ERROR");

        let (_, missing) = spans.iter().find(|(_, s)| s.name == "GET").expect("the 404, named by its method");
        assert_eq!(attr(&missing.attributes, "http.route"), None, "no route matched");

        assert_eq!(common::metric(&server, "ringo_spans_recorded_total"), 3);
        assert!(common::eventually(Duration::from_secs(2), || {
            common::series(&server, "ringo_otlp_spans_total{outcome=\"exported\"}") == Some(3)
        }));
        server.shutdown();
    }
}

#[test]
fn spans_finished_just_before_shutdown_are_still_exported() {
    let (addr, received) = collector();
    let server = start(IoBackend::Auto, format!("http://{addr}/v1/traces"), 1.0);
    let mut c = Raw::connect(server.local_addr());
    assert_eq!(get(&mut c, "/users/1", "").0, 200);
    drop(c);
    server.shutdown();
    assert_eq!(received.lock().expect("lock").len(), 1, "the last snapshot's span is posted before exit");
}

#[test]
fn ratio_zero_keeps_only_traces_the_caller_sampled() {
    let (addr, received) = collector();
    let server = start(IoBackend::Auto, format!("http://{addr}/v1/traces"), 0.0);
    let mut c = Raw::connect(server.local_addr());
    let (_, own) = get(&mut c, "/users/1", "");
    assert!(own.ends_with("-00"), "a trace this server starts is not sampled: {own}");
    let (_, theirs) = get(&mut c, "/users/2", &format!("traceparent: 00-{TRACE}-{PARENT}-01\r\n"));
    assert!(theirs.ends_with("-01"), "the caller's decision is kept: {theirs}");
    drop(c);
    server.shutdown();
    let spans = received.lock().expect("lock").clone();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(hex(&spans[0].1.trace_id), TRACE);
}

#[test]
fn a_dead_collector_costs_requests_nothing_and_is_counted() {
    for backend in BACKENDS {
        // A port nothing listens on.
        let dead = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let server = start(backend, format!("http://{dead}/v1/traces"), 1.0);
        let mut c = Raw::connect(server.local_addr());
        let begun = std::time::Instant::now();
        for i in 0..200 {
            assert_eq!(get(&mut c, &format!("/users/{i}"), "").0, 200);
        }
        assert!(begun.elapsed() < Duration::from_secs(5), "requests were held up: {:?}", begun.elapsed());
        assert!(
            common::eventually(Duration::from_secs(5), || {
                common::series(&server, "ringo_otlp_spans_total{outcome=\"failed\"}").unwrap_or(0) > 0
            }),
            "{backend:?}: failed exports are counted"
        );
        // A burst beyond the ring (64 per snapshot) is dropped at the shard, counted.
        let kept = common::metric(&server, "ringo_spans_recorded_total");
        let dropped = common::metric(&server, "ringo_spans_dropped_total");
        assert_eq!(kept + dropped, 200, "{backend:?}: every sampled request is kept or counted dropped");
        server.shutdown();
    }
}

#[test]
fn span_export_without_the_control_thread_is_a_clear_error() {
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(1),
        admin: None,
        trace_export: Some(TraceExport {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            ..TraceExport::default()
        }),
        ..ServerConfig::default()
    };
    let Err(err) = ringo::Server::new(app(1.0)).config(cfg).start() else {
        panic!("a server with span export but no admin listener started")
    };
    assert!(err.to_string().contains("admin listener"), "{err}");
}
