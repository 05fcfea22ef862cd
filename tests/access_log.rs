//! The access log as users run it: lines written to a real file by the writer thread,
//! JSON and combined, sampling, a sink that stops taking lines (requests still answered,
//! drops counted), and SIGHUP reopening for logrotate — over real sockets, both backends.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BACKENDS, Raw, metric};
use ringo::access_log::{AccessLogFormat, AccessLogSink, LogOutput};
use ringo::{Context, IoBackend, Router, RunningServer, Server, ServerConfig};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringo-access-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn start(sink: &AccessLogSink, format: AccessLogFormat, every: u32, backend: IoBackend) -> RunningServer {
    let sink = sink.clone();
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        shards: Some(1),
        io_backend: backend,
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    Server::new(move || {
        let mut r = ringo::default_app_with_access_log(&sink, format, every)?;
        r.get("/fail", |c: &mut Context| c.string(503, "down"))?;
        Ok::<Router, ringo::RouteError>(r)
    })
    .config(cfg)
    .start()
    .expect("server starts")
}

/// The file's lines once it has at least `n` (waiting up to 5 s).
fn lines_when(path: &Path, n: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_lines_carry_route_status_bytes_request_id_and_client() {
    for backend in BACKENDS {
        let path = temp_path(&format!("json-{backend}.log"));
        let sink = AccessLogSink::start(LogOutput::File(path.clone())).expect("writer");
        let server = start(&sink, AccessLogFormat::Json, 1, backend);
        let mut c = Raw::connect(server.local_addr());
        c.send(b"GET /users/a%22b?x=1 HTTP/1.1\r\nHost: t\r\nX-Request-Id: req-7\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n");
        let r = c.response();
        assert_eq!(r.status, 200);
        let _ = c.get("/nowhere");
        let lines = lines_when(&path, 2);
        assert_eq!(lines.len(), 2, "{backend}: {lines:?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
        assert_eq!(first["method"], "GET");
        assert_eq!(first["route"], "/users/:id");
        assert_eq!(first["path"], "/users/a%22b");
        assert_eq!(first["query"], "x=1");
        assert_eq!(first["status"], 200);
        assert_eq!(first["bytes"], r.body.len());
        assert_eq!(first["request_id"], "req-7");
        assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(first["shard"], 0);
        let client: SocketAddr = first["client"].as_str().expect("client").parse().expect("address");
        assert_eq!(client, c.stream.local_addr().expect("local"));
        let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON line");
        assert_eq!((second["status"].as_u64(), second["route"].as_str()), (Some(404), Some("")));
        server.shutdown();
    }
}

#[test]
fn combined_lines_escape_what_the_client_sent() {
    for backend in BACKENDS {
        let path = temp_path(&format!("combined-{backend}.log"));
        let sink = AccessLogSink::start(LogOutput::File(path.clone())).expect("writer");
        let server = start(&sink, AccessLogFormat::Combined, 1, backend);
        let mut c = Raw::connect(server.local_addr());
        c.send(b"GET /json HTTP/1.1\r\nHost: t\r\nUser-Agent: a\"b\\c\r\nReferer: http://r/\r\n\r\n");
        assert_eq!(c.response().status, 200);
        let lines = lines_when(&path, 1);
        let line = lines.first().expect("a line");
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(line.contains("\"GET /json HTTP/1.1\" 200 27 \"http://r/\" \"a\\x22b\\x5Cc\" rt="), "{line}");
        assert!(line.contains(" shard=0 route=/json rid="), "{line}");
        server.shutdown();
    }
}

#[test]
fn sampling_keeps_one_in_n_and_every_server_error() {
    for backend in BACKENDS {
        let path = temp_path(&format!("sampled-{backend}.log"));
        let sink = AccessLogSink::start(LogOutput::File(path.clone())).expect("writer");
        let server = start(&sink, AccessLogFormat::Json, 10, backend);
        let mut c = Raw::connect(server.local_addr());
        for _ in 0..100 {
            assert_eq!(c.get("/plaintext").status, 200);
        }
        for _ in 0..3 {
            assert_eq!(c.get("/fail").status, 503);
        }
        lines_when(&path, 13);
        // Past the periodic flush nothing more arrives.
        std::thread::sleep(Duration::from_millis(300));
        let lines = lines_when(&path, 13);
        assert_eq!(lines.len(), 13, "{backend}: 100 sampled 1 in 10, plus 3 errors");
        assert_eq!(lines.iter().filter(|l| l.contains("\"status\":503")).count(), 3);
        server.shutdown();
    }
}

#[test]
fn a_sink_that_stops_taking_lines_never_slows_requests() {
    for backend in BACKENDS {
        // A FIFO nobody opens for reading: the writer blocks in open(2) for good.
        let path = temp_path(&format!("stuck-{backend}.fifo"));
        let status = Command::new("mkfifo").arg(&path).status().expect("mkfifo (coreutils)");
        assert!(status.success());
        let sink = AccessLogSink::start(LogOutput::File(path)).expect("writer");
        let server = start(&sink, AccessLogFormat::Json, 1, backend);
        let mut c = Raw::connect(server.local_addr());
        let started = Instant::now();
        // 20,000 requests in pipelined batches of 100: far more lines than the queue holds.
        let batch = b"GET /users/1 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
        for _ in 0..200 {
            c.send(&batch);
            for _ in 0..100 {
                assert_eq!(c.response().status, 200);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{backend}: {:?}", started.elapsed());
        // Counters reach the control thread in snapshots (every 200 ms).
        let until = Instant::now() + Duration::from_secs(5);
        let (mut lines, mut dropped) = (0, 0);
        while (dropped == 0 || lines < 20_000) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            lines = metric(&server, "ringo_access_log_lines_total");
            dropped = metric(&server, "ringo_access_log_dropped_total");
        }
        assert!(dropped > 0 && lines == 20_000, "{backend}: {lines} lines, {dropped} dropped");
        server.shutdown();
    }
}

#[test]
fn sighup_reopens_the_file_for_logrotate() {
    let path = temp_path("rotated.log");
    let config = temp_path("rotate.toml");
    std::fs::write(
        &config,
        format!("[server]\nstack = \"default\"\n\n[access_log]\npath = \"{}\"\n", path.display()),
    )
    .expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringo"))
        .args(["serve", "--config", config.to_str().expect("utf8"), "--listen", &addr.to_string()])
        .args(["--admin", "", "--shards", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringo starts");
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "ringo did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = Raw::connect(addr);
    assert_eq!(c.get("/users/before").status, 200);
    assert_eq!(lines_when(&path, 1).len(), 1);
    // logrotate: move the file away, then SIGHUP.
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).expect("rotate");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.get("/users/after").status, 200);
    let fresh = lines_when(&path, 1);
    assert_eq!(fresh.len(), 1, "the reopened file has the new line");
    assert!(fresh[0].contains("/users/after"));
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    assert!(old.contains("/users/before") && !old.contains("/users/after"));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("exit");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "{status}: {err}");
    let _ = std::io::stdout().flush();
}
