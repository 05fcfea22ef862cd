//! Two ringo instances behind a real nginx: restarting each one gracefully while load
//! runs through nginx loses no client request. This is how a deployment grows past one
//! machine (see README, "Behind a load balancer").

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Nginx, Raw, free_port, wait_listening};

const BIN: &str = env!("CARGO_BIN_EXE_ringo");

fn start_ringo(port: u16) -> Child {
    let child = Command::new(BIN)
        // No admin listener: one bound to port 0 can take a port this test reserved with
        // `free_port` and has not bound yet (nginx's, or the other instance's).
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--admin", "", "--shards", "1"])
        .args(["--log", "warn"])
        .env("RINGO_DRAIN_DELAY_MS", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringo");
    wait_listening(format!("127.0.0.1:{port}").parse().expect("addr"));
    child
}

/// SIGTERM and wait: the graceful path must exit 0.
fn stop_ringo(mut child: Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "ringo exited with {status}: {err}");
}

fn start_nginx(listen: u16, upstreams: &[u16]) -> Nginx {
    let servers: String =
        upstreams.iter().map(|p| format!("        server 127.0.0.1:{p} max_fails=0;\n")).collect();
    let http = format!(
        "    upstream ringo {{\n{servers}        keepalive 16;\n    }}\n\
             keepalive_requests 1000000;\n\
             server {{\n        listen 127.0.0.1:{listen};\n        location / {{\n\
                     proxy_pass http://ringo;\n            proxy_http_version 1.1;\n\
                     proxy_set_header Connection \"\";\n            proxy_connect_timeout 1s;\n\
                     proxy_next_upstream error timeout http_502;\n            proxy_next_upstream_tries 4;\n\
                 }}\n    }}\n"
    );
    Nginx::start(listen, &http)
}

#[test]
fn rolling_restart_behind_nginx_loses_no_request() {
    let (pa, pb, pn) = (free_port(), free_port(), free_port());
    // nginx first: its port is bound before anything else here binds or connects.
    let nginx = start_nginx(pn, &[pa, pb]);
    let mut a = start_ringo(pa);
    let mut b = start_ringo(pb);
    let front: SocketAddr = format!("127.0.0.1:{pn}").parse().expect("addr");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|id| {
            let (stop, ok, failed) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            let retried = Arc::clone(&retried);
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut c = Raw::connect(front);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let path = format!("/users/{id}-{n}");
                    let mut got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.get(&path)));
                    if got.is_err() {
                        // A kept-alive connection closed by nginx before answering: a real
                        // client retries a GET once on a fresh connection. Counted: none is
                        // expected (nginx's keepalive_requests is raised above).
                        retried.fetch_add(1, Ordering::Relaxed);
                        c = Raw::connect(front);
                        got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.get(&path)));
                    }
                    match got {
                        Ok(r) if r.status == 200 && r.text() == format!("{{\"id\":\"{id}-{n}\"}}") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            eprintln!("client {id}: {} {}", r.status, r.text());
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            c = Raw::connect(front);
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    for round in 0..2 {
        // Restart A, then B, each gracefully while the other carries the load.
        stop_ringo(a);
        std::thread::sleep(Duration::from_millis(200));
        a = start_ringo(pa);
        std::thread::sleep(Duration::from_millis(300));
        stop_ringo(b);
        std::thread::sleep(Duration::from_millis(200));
        b = start_ringo(pb);
        std::thread::sleep(Duration::from_millis(300));
        let f = failed.load(Ordering::Relaxed);
        if f > 0 {
            let log = std::fs::read_to_string(nginx.dir().join("error.log")).unwrap_or_default();
            panic!("{f} failures after round {round}; nginx error.log:\n{log}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    drop(nginx);
    stop_ringo(a);
    stop_ringo(b);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 500, "load ran through nginx ({ok} requests)");
    assert_eq!(failed, 0, "{failed} of {} client requests failed", ok + failed);
    assert_eq!(retried.load(Ordering::Relaxed), 0, "no client connection was cut by a restart");
}
