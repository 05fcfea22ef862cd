//! Shared helpers for the integration tests: start a real server on an ephemeral port,
//! and talk to it over raw sockets.
#![allow(dead_code, unreachable_pub)]

pub mod counting_alloc;
pub mod redis_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringo::{IoBackend, Limits, RouteError, Router, RunningServer, Server, ServerConfig};

/// Both io backends, for tests that must pass on each.
pub const BACKENDS: [IoBackend; 2] = [IoBackend::Uring, IoBackend::Epoll];

/// Starts `factory` on loopback, ephemeral port.
pub fn start_with<F>(factory: F, shards: usize, backend: IoBackend, limits: Limits) -> RunningServer
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(shards),
        io_backend: backend,
        limits,
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    Server::new(factory).config(cfg).start().expect("server starts")
}

/// Starts `factory` on loopback with one shard and an admin listener (metrics, health).
pub fn start_with_admin<F>(factory: F, backend: IoBackend) -> RunningServer
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    start_with_admin_and(factory, backend, |_| {})
}

/// Like [`start_with_admin`], with `tweak` applied to the configuration first.
pub fn start_with_admin_and<F>(
    factory: F,
    backend: IoBackend,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RunningServer
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        shards: Some(1),
        io_backend: backend,
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        drain_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    tweak(&mut cfg);
    Server::new(factory).config(cfg).start().expect("server starts")
}

/// The default app, `shards` shards.
pub fn start_default(shards: usize, backend: IoBackend) -> RunningServer {
    start_with(ringo::default_app, shards, backend, Limits::default())
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 connection.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Raw { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a GET and reads its response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response()
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16384];
        match read_retrying(&mut self.stream, &mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) => panic!("read failed: {e} (have {:?})", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Reads one response (with a body unless `head_only`).
    pub fn read_response(&mut self, head_only: bool) -> Resp {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf).expect("valid response head") {
                httparse::Status::Complete(n) => {
                    let status = r.code.expect("code");
                    let headers: Vec<(String, String)> = r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    self.buf.drain(..n);
                    let mut resp = Resp { status, headers, body: Vec::new() };
                    if head_only || status / 100 == 1 || status == 204 || status == 304 {
                        return resp;
                    }
                    if let Some(len) = resp.header("content-length") {
                        let len: usize = len.parse().expect("numeric length");
                        while self.buf.len() < len {
                            assert!(self.fill() > 0, "closed mid-body");
                        }
                        resp.body = self.buf.drain(..len).collect();
                    } else if resp.header("transfer-encoding").is_some() {
                        resp.body = self.read_chunked();
                    } else {
                        while self.fill() > 0 {}
                        resp.body = std::mem::take(&mut self.buf);
                    }
                    return resp;
                }
                httparse::Status::Partial => {
                    assert!(
                        self.fill() > 0,
                        "closed before a response: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                }
            }
        }
    }

    pub fn response(&mut self) -> Resp {
        self.read_response(false)
    }

    fn read_chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                assert!(self.fill() > 0, "closed in chunk size");
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .expect("hex size");
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill() > 0, "closed in chunk data");
            }
            if size == 0 {
                // No trailers from ringo: the final CRLF follows.
                self.buf.drain(..2);
                return body;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// True when the server closes the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut b = [0u8; 1];
        match read_retrying(&mut self.stream, &mut b) {
            Ok(0) => true,
            Ok(_) => {
                self.buf.push(b[0]);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Err(_) => false,
        }
    }
}

fn read_retrying(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// One request on a fresh connection, returning the response.
pub fn one_shot(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut c = Raw::connect(addr);
    c.send(raw);
    c.response()
}

/// Runs curl and returns (status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("code"), body.to_string())
}

/// GET `path` on the server's admin listener.
pub fn admin_get(server: &RunningServer, path: &str) -> Resp {
    let mut c = Raw::connect(server.admin_addr().expect("admin listener"));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes());
    c.response()
}

/// The value of the series whose line starts with `line_prefix` (name and labels) in
/// `/metrics`, if present.
pub fn series(server: &RunningServer, line_prefix: &str) -> Option<u64> {
    let text = admin_get(server, "/metrics").text();
    text.lines().find_map(|l| l.strip_prefix(line_prefix)).and_then(|v| v.trim().parse().ok())
}

/// The value of a per-shard counter for shard 0 (0 until it is exported).
pub fn metric(server: &RunningServer, name: &str) -> u64 {
    series(server, &format!("{name}{{shard=\"0\"}} ")).unwrap_or(0)
}

/// Polls `check` for up to `within`; whether it held.
pub fn eventually(within: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}

/// A port free right now on loopback (for servers that need one named up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Waits (up to 10 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    let start = std::time::Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A real nginx (Debian's package) in the foreground, with its own prefix directory;
/// killed and cleaned up on drop.
pub struct Nginx {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    /// Starts nginx with `http` as the body of its `http {}` block (which may name
    /// `{prefix}`: the instance's own directory), and waits until `listen` accepts.
    /// Fails loudly when nginx is missing: scripts/test installs it.
    pub fn start(listen: u16, http: &str) -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx is not installed: scripts/test installs it (apt-get install nginx)");
        let dir = std::env::temp_dir().join(format!("ringo-nginx-{}-{listen}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let d = dir.display();
        let http = http.replace("{prefix}", &d.to_string());
        let conf = format!(
            "user root;\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
             {http}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write conf");
        let child = std::process::Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn nginx");
        wait_listening(format!("127.0.0.1:{listen}").parse().expect("addr"));
        Nginx { child, dir }
    }

    /// The instance's prefix directory (for files it serves).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}
