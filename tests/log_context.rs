//! Every log line emitted while a request is served carries its request id and trace
//! id — also across awaits interleaved with other requests on the same shard, and in
//! the background tasks it spawns — and nothing leaks to the next request.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{BACKENDS, Raw};
use ringo::middleware::{request_id, trace_context};
use ringo::{Context, Limits, RouteError, Router};

/// Log output captured from the whole test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let writer = log.clone();
        let format = tracing_subscriber::fmt::format().with_target(false).with_ansi(false);
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .event_format(ringo::logging::RequestIds(format))
            .init();
        log
    })
}

fn app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.middleware(request_id());
    r.middleware(trace_context());
    r.get("/task/:tag", async |c: &mut Context| {
        let tag = c.param("tag").to_owned();
        tracing::info!("marker {tag} before");
        ringo::time::sleep(Duration::from_millis(60)).await;
        tracing::info!("marker {tag} after");
        let _ = c.spawn(async move {
            ringo::time::sleep(Duration::from_millis(10)).await;
            tracing::info!("marker {tag} background");
        });
        c.string(200, "ok");
    })?;
    r.get("/quiet", |c: &mut Context| c.string(200, "quiet"))?;
    Ok(r)
}

#[test]
fn log_lines_name_their_request_across_awaits_and_background_tasks() {
    let log = captured();
    tracing::info!("marker outside any request");
    for backend in BACKENDS {
        let server = common::start_with(app, 1, backend, Limits::default());
        let addr = server.local_addr();
        // Two requests interleave on the one shard: each sleeps between its log lines.
        let tags = [format!("a-{backend}"), format!("b-{backend}")];
        let workers: Vec<_> = tags
            .iter()
            .map(|tag| {
                let tag = tag.clone();
                std::thread::spawn(move || {
                    let mut c = Raw::connect(addr);
                    let trace = format!("00-{:0>32}-00f067aa0ba902b7-01", format!("{:x}", tag.len() * 7919 + tag.as_bytes()[0] as usize));
                    c.send(format!("GET /task/{tag} HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-{tag}\r\ntraceparent: {trace}\r\n\r\n").as_bytes());
                    assert_eq!(c.response().status, 200);
                    (tag, trace[3..35].to_string())
                })
            })
            .collect();
        let expected: Vec<(String, String)> =
            workers.into_iter().map(|w| w.join().expect("client")).collect();
        std::thread::sleep(Duration::from_millis(200));
        let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf8");
        for (tag, trace) in &expected {
            for when in ["before", "after", "background"] {
                let line = text
                    .lines()
                    .find(|l| l.contains(&format!("marker {tag} {when}")))
                    .unwrap_or_else(|| panic!("no '{tag} {when}' line in:\n{text}"));
                assert!(line.starts_with(&format!("rid=rid-{tag} tid={trace} ")), "{backend}: {line}");
            }
        }
        server.shutdown();
    }
    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf8");
    let outside = text.lines().find(|l| l.contains("marker outside")).expect("outside line");
    assert!(!outside.contains("rid="), "no ids outside a request: {outside}");
}
