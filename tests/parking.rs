//! Idle keep-alive connections park: after a second without a request they give their
//! buffers and request state back and wait for readiness holding none. A parked
//! connection must lose nothing: the next request on it is answered, the idle timeout
//! still closes it, and a draining server still wakes and closes it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{BACKENDS, Raw, eventually, metric, start_with_admin_and};
use ringo::{Limits, ServerConfig};

fn parked(server: &ringo::RunningServer) -> u64 {
    metric(server, "ringo_connections_parked")
}

#[test]
fn a_parked_connection_answers_its_next_request_and_unparks() {
    for backend in BACKENDS {
        let server = start_with_admin_and(ringo::default_app, backend, |_| {});
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/plaintext").status, 200, "{backend:?}");
        assert!(
            eventually(Duration::from_secs(4), || parked(&server) == 1),
            "{backend:?}: the idle connection parks"
        );
        // The request lands on a connection that holds no buffer: answered whole.
        let r = c.get("/users/7?x=1");
        assert_eq!((r.status, r.text().as_str()), (200, r#"{"id":"7"}"#), "{backend:?}");
        assert!(eventually(Duration::from_secs(2), || parked(&server) == 0), "{backend:?}: unparked");
        // And it parks again after the next idle second.
        assert!(eventually(Duration::from_secs(4), || parked(&server) == 1), "{backend:?}: parks again");
        // A pipelined pair on the parked connection: both answered, in order.
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().text(), "Hello, World!", "{backend:?}");
        assert_eq!(c.response().text(), r#"{"message":"Hello, World!"}"#, "{backend:?}");
        server.shutdown();
    }
}

#[test]
fn a_request_split_across_the_park_is_answered() {
    for backend in BACKENDS {
        let server = start_with_admin_and(ringo::default_app, backend, |_| {});
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/plaintext").status, 200);
        assert!(eventually(Duration::from_secs(4), || parked(&server) == 1), "{backend:?}: parked");
        // Half a head wakes the connection; the rest comes later, within the header timeout.
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n");
        std::thread::sleep(Duration::from_millis(200));
        c.send(b"Content-Length: 7\r\n\r\n{\"a\":1}");
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, r#"{"a":1}"#), "{backend:?}");
        server.shutdown();
    }
}

#[test]
fn a_parked_connection_still_meets_its_idle_timeout() {
    for backend in BACKENDS {
        let limits = Limits { idle_timeout_ms: 1_600, ..Limits::default() };
        let server = start_with_admin_and(ringo::default_app, backend, |cfg: &mut ServerConfig| {
            cfg.limits = limits;
        });
        let mut c = Raw::connect(server.local_addr());
        assert_eq!(c.get("/plaintext").status, 200);
        let idle_from = Instant::now();
        assert!(eventually(Duration::from_secs(3), || parked(&server) == 1), "{backend:?}: parked");
        // Closed quietly at the idle timeout, counted from the last answer, not from the park.
        c.stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut b = [0u8; 64];
        let n = c.stream.read(&mut b).unwrap_or(0);
        let waited = idle_from.elapsed();
        assert_eq!(n, 0, "{backend:?}: closed without a response");
        assert!(waited < Duration::from_millis(2_600), "{backend:?}: closed after {waited:?}");
        assert!(eventually(Duration::from_secs(2), || metric(&server, "ringo_connections_open") == 0));
        assert_eq!(parked(&server), 0, "{backend:?}: the gauge gives the connection back");
        server.shutdown();
    }
}

#[test]
fn a_draining_server_closes_parked_connections_at_once() {
    for backend in BACKENDS {
        let server = start_with_admin_and(ringo::default_app, backend, |_| {});
        let mut conns: Vec<TcpStream> =
            (0..20).map(|_| TcpStream::connect(server.local_addr()).expect("connect")).collect();
        for s in &mut conns {
            s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
            let mut b = [0u8; 256];
            assert!(s.read(&mut b).expect("answer") > 0);
        }
        assert!(eventually(Duration::from_secs(4), || parked(&server) == 20), "{backend:?}: all parked");
        let started = Instant::now();
        let report = server.shutdown();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{backend:?}: drained in {:?}",
            started.elapsed()
        );
        assert_eq!(report.abandoned_requests, 0);
        for mut s in conns {
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            let mut b = [0u8; 16];
            assert!(matches!(s.read(&mut b), Ok(0) | Err(_)), "{backend:?}: closed by the drain");
        }
    }
}
