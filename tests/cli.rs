//! The `ringo` binary: `serve` with flags, `config` layering and errors, SIGTERM, and the
//! epoll fallback when a seccomp filter refuses io_uring (as container runtimes do).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Raw;

const BIN: &str = env!("CARGO_BIN_EXE_ringo");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_ready(addr: SocketAddr, child: &mut Child) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ringo exited early: {status}");
        }
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("ringo did not start listening on {addr}");
}

fn stop(mut child: Child) -> (i32, String) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    (status.code().unwrap_or(-1), format!("{out}{err}"))
}

fn serve(args: &[&str]) -> (Child, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &addr.to_string(), "--admin", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringo");
    wait_ready(addr, &mut child);
    (child, addr)
}

#[test]
fn serve_runs_the_default_app_and_exits_zero_on_sigterm() {
    for backend in ["uring", "epoll"] {
        let (child, addr) = serve(&["--shards", "2", "--io-backend", backend]);
        let mut c = Raw::connect(addr);
        assert_eq!(c.get("/plaintext").text(), "Hello, World!");
        assert_eq!(c.get("/users/x").text(), r#"{"id":"x"}"#);
        let (code, log) = stop(child);
        assert_eq!(code, 0, "{log}");
        assert!(log.contains(&format!("io_backend={backend}")), "{log}");
        assert!(log.contains("shards=2"), "{log}");
    }
}

#[test]
fn config_prints_layered_settings() {
    let dir = std::env::temp_dir().join(format!("ringo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("ringo.toml");
    std::fs::write(&file, "[server]\nshards = 3\nbacklog = 77\n[limits]\nmax_body_bytes = 2048\n")
        .expect("write");
    let out = Command::new(BIN)
        .args(["config", "--config", file.to_str().expect("utf8"), "--listen", "127.0.0.1:9999"])
        .env("RINGO_BACKLOG", "88")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("shards = 3"), "{text}");
    assert!(text.contains("backlog = 88"), "env beats file: {text}");
    assert!(text.contains("max_body_bytes = 2048"), "{text}");
    assert!(text.contains("admin = \"127.0.0.1:9090\""), "{text}");
}

#[test]
fn a_bad_config_is_a_clear_error_and_nonzero_exit() {
    let dir = std::env::temp_dir().join(format!("ringo-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[server]\nshards = 1\nio_backend = \"kqueue\"\n").expect("write");
    let out =
        Command::new(BIN).args(["serve", "--config", file.to_str().expect("utf8")]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("io_backend") && err.contains("line 3"), "{err}");
    let out = Command::new(BIN).args(["serve", "--listen", "nonsense"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}

/// Installs a seccomp filter in the child that fails `io_uring_setup` with EPERM.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let filter = [
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; `filter` is moved in and outlives both calls.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog)
                != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn refused_io_uring_falls_back_to_epoll_with_one_log_line() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &addr.to_string(), "--shards", "1", "--admin", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    deny_io_uring(&mut cmd);
    let mut child = cmd.spawn().expect("spawn");
    wait_ready(addr, &mut child);
    let mut c = Raw::connect(addr);
    assert_eq!(c.get("/json").text(), r#"{"message":"Hello, World!"}"#);
    let (code, log) = stop(child);
    assert_eq!(code, 0, "{log}");
    let fallback: Vec<&str> = log.lines().filter(|l| l.contains("falling back to epoll")).collect();
    assert_eq!(fallback.len(), 1, "{log}");
    assert!(fallback[0].contains("io_uring unavailable") && fallback[0].contains("not permitted"), "{log}");
    assert!(log.contains("io_backend=epoll"), "{log}");

    // Demanding io_uring under the same filter is a clear start-up error.
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &addr.to_string(), "--io-backend", "uring", "--admin", "127.0.0.1:0"]);
    deny_io_uring(&mut cmd);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("io_uring is unavailable"));
}

#[test]
fn a_second_signal_during_the_drain_forces_exit_4() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &addr.to_string(), "--admin", "127.0.0.1:0", "--shards", "1"])
        .env("RINGO_DRAIN_DELAY_MS", "5000")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_ready(addr, &mut child);
    let started = Instant::now();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(ringo::EXIT_FORCED));
    assert!(started.elapsed() < Duration::from_secs(3), "did not wait out the 5 s drain delay");
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    assert!(out.contains("second signal"), "{out}");
}

/// Out of descriptors: connections past the limit get a fast close (the spare
/// descriptor sheds them) instead of waiting in the backlog, the log says so about once
/// a second instead of a hundred times, and the server still answers once descriptors
/// free up. Run under `prlimit --nofile`, on both backends.
#[test]
fn descriptor_exhaustion_sheds_connections_fast_and_logs_sparingly() {
    for backend in ["uring", "epoll"] {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let mut child = Command::new("prlimit")
            .args(["--nofile=40:40", BIN, "serve", "--listen", &addr.to_string(), "--admin", ""])
            .args(["--shards", "1", "--io-backend", backend, "--log", "warn"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn prlimit (util-linux) and ringo");
        wait_ready(addr, &mut child);
        // Far more connections than descriptors; each sends a request.
        let mut conns = Vec::new();
        for _ in 0..80 {
            let mut s = std::net::TcpStream::connect(addr).expect("connect (the backlog takes it)");
            s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
            let _ = s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
            conns.push(s);
        }
        let started = Instant::now();
        let (mut answered, mut shed) = (0, 0);
        for s in &mut conns {
            let mut b = [0u8; 256];
            match s.read(&mut b) {
                Ok(n) if n > 0 && b.starts_with(b"HTTP/1.1 200") => answered += 1,
                Ok(0) => shed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => shed += 1,
                other => panic!("{backend}: a connection neither answered nor closed: {other:?}"),
            }
        }
        assert!(answered > 0 && shed > 0, "{backend}: answered {answered}, shed {shed}");
        assert!(started.elapsed() < Duration::from_secs(10), "{backend}: took {:?}", started.elapsed());
        drop(conns);
        std::thread::sleep(Duration::from_millis(300));
        // Descriptors are back: the server answers again.
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
        let mut b = [0u8; 64];
        let n = s.read(&mut b).expect("answer after recovery");
        assert!(b[..n].starts_with(b"HTTP/1.1 200"), "{backend}");
        let (_, log) = stop(child);
        let lines = log.lines().filter(|l| l.contains("accept failed")).count();
        assert!((1..=10).contains(&lines), "{backend}: {lines} accept-failure lines:\n{log}");
    }
}

/// The binary's config turns the middleware on: `[cors]`, `[proxy]` and `[rate_limit]`
/// apply to every default-app route.
#[test]
fn config_tables_turn_on_cors_trusted_proxies_and_rate_limits() {
    let dir = std::env::temp_dir().join(format!("ringo-cli-mw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("ringo.toml");
    std::fs::write(
        &file,
        "[cors]\nenabled = true\norigins = [\"https://app.example\"]\nmax_age_s = 600\n\n\
         [proxy]\ntrusted = [\"127.0.0.1/32\"]\n\n\
         [rate_limit]\nclient_rate = 1.0\nclient_burst = 2\n",
    )
    .expect("config");
    let (child, addr) = serve(&["--config", file.to_str().expect("utf8"), "--shards", "1"]);
    let mut c = Raw::connect(addr);
    c.send(b"OPTIONS /json HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 204, "preflight answered");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    // Per-client limit keyed by the forwarded client (the peer, 127.0.0.1, is trusted).
    let get = |c: &mut Raw, client: &str| {
        c.send(format!("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {client}\r\n\r\n").as_bytes());
        c.response().status
    };
    assert_eq!(
        [get(&mut c, "203.0.113.7"), get(&mut c, "203.0.113.7"), get(&mut c, "203.0.113.7")],
        [200, 200, 429]
    );
    assert_eq!(get(&mut c, "203.0.113.8"), 200, "another client has its own allowance");
    let (code, _) = stop(child);
    assert_eq!(code, 0);
}
