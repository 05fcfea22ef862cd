//! The `conn` target: the connection engine fed arbitrary byte streams, cut at arbitrary
//! points, through one real server on loopback, driven through the public API only.
//!
//! An input is laid out as follows (a short input reads as zeros past its end):
//!
//! ```text
//! byte 0   flags: bits 0-1 framing: 0 or 3 the payload is the whole stream (raw);
//!                 1 the payload is a Content-Length body POSTed to /echo;
//!                 2 the payload is a chunked body POSTed to /echo.
//!                 bit 2 pause between pieces; bits 3-5 how many cut points;
//!                 bit 6 chunk extensions; bit 7 a trailer field (chunked framing)
//! byte 1   chunk-size seed (chunked framing)
//! then     2 bytes per cut point, little-endian, taken modulo the stream length
//! rest     the payload
//! ```
//!
//! The framed modes follow the body with a pipelined `GET /plaintext`, so they know the
//! exact answer: the echoed payload then `Hello, World!` (or one 413 that closes).
//!
//! The oracle, [`check_stream`], reads the bytes the server sent back: every response
//! well formed (status line, `Server`, `Date`, one framing header consistent with the
//! body), no status the app cannot produce (a 500 means something panicked), nothing
//! after a response that says `Connection: close`, and no more answers than request
//! lines sent. Every [`HEALTH_EVERY`] runs a fresh `GET /plaintext` must still work.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::middleware::from_fn;
use crate::{Context, IoBackend, Limits, Next, RouteError, Router, RunningServer, Server, ServerConfig};

/// Largest request body the fuzzed server accepts (small, so inputs reach the 413).
pub const MAX_BODY: usize = 2048;
/// A fresh `GET /plaintext` is checked after this many runs.
pub const HEALTH_EVERY: u64 = 64;
/// How long the client waits for the server to close after its own end of input.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between pieces, when the input asks for one.
const PAUSE: Duration = Duration::from_micros(300);
/// The body of `GET /plaintext`.
const HELLO: &[u8] = b"Hello, World!";
/// The content type of `/echo` answers: the only answers whose body the client chose,
/// so the only ones never taken for a bodiless answer to HEAD.
const ECHO_TYPE: &str = "application/x-echo";
/// Statuses the app and the engine can answer with. Not 500: no handler panics.
const STATUSES: [u16; 14] = [100, 200, 301, 308, 400, 404, 405, 408, 411, 413, 414, 431, 501, 505];

/// The fuzzed app: a static route, an echo, parameters (plain, regex, catch-all), a
/// middleware group reading the query, and a streamed answer. No handler panics.
pub fn app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.get("/plaintext", |c: &mut Context| c.string(200, "Hello, World!"))?;
    r.post("/echo", |c: &mut Context| c.bytes(200, ECHO_TYPE, c.body()))?;
    r.put("/echo", |c: &mut Context| c.bytes(200, ECHO_TYPE, c.body()))?;
    r.get("/users/:id", |c: &mut Context| c.string(200, &format!("id={}", c.param("id"))))?;
    r.post("/users/:id/items/:item", |c: &mut Context| {
        c.string(200, &format!("id={};item={}", c.param("id"), c.param("item")));
    })?;
    r.get("/n/:num<[0-9]+>", |c: &mut Context| c.string(200, &format!("num={}", c.param("num"))))?;
    r.get("/files/*path", |c: &mut Context| c.string(200, &format!("path={}", c.param("path"))))?;
    r.get("/stream", async |c: &mut Context| {
        for part in [&b"one;"[..], b"two;", b"three"] {
            if c.write_stream(part).await.is_err() {
                return;
            }
        }
    })?;
    let mut api = r.group("/api");
    api.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
        next.run(c).await;
        c.header("X-Mw", "1");
    }));
    api.get("/q", |c: &mut Context| {
        let q = c.query("q").map(|v| v.into_owned()).unwrap_or_default();
        c.string(200, &format!("q={q}"));
    })?;
    api.post("/json", |c: &mut Context| match c.should_bind_json::<serde_json::Value>() {
        Ok(v) => c.string(200, &format!("json={}", v.is_object())),
        Err(_) => c.string(400, "json=invalid"),
    })?;
    Ok(r)
}

/// One server for the whole process, and a run counter for the health check.
#[derive(Debug)]
pub struct Target {
    addr: SocketAddr,
    runs: AtomicU64,
    _server: RunningServer,
}

static TARGET: OnceLock<Target> = OnceLock::new();

/// The process's server, started on first use: one shard on 127.0.0.1, io backend from
/// `RINGO_FUZZ_BACKEND` (`uring`, `epoll`, or `auto`, the default), short timeouts.
pub fn target() -> &'static Target {
    TARGET.get_or_init(|| {
        let backend = match std::env::var("RINGO_FUZZ_BACKEND").as_deref() {
            Ok("uring") => IoBackend::Uring,
            Ok("epoll") => IoBackend::Epoll,
            _ => IoBackend::Auto,
        };
        let limits = Limits {
            max_request_line: 1024,
            max_header_bytes: 2048,
            max_headers: 16,
            max_body_bytes: MAX_BODY,
            header_timeout_ms: 1000,
            body_timeout_ms: 1000,
            idle_timeout_ms: 2000,
            write_timeout_ms: 2000,
            ..Limits::default()
        };
        let cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("loopback address"),
            shards: Some(1),
            pin: false,
            io_backend: backend,
            limits,
            drain_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        };
        let server = Server::new(app).config(cfg).start().expect("the fuzzed server starts");
        eprintln!("[conn] fuzzed server on {}, io backend {:?}", server.local_addr(), server.io_backend());
        Target { addr: server.local_addr(), runs: AtomicU64::new(0), _server: server }
    })
}

/// What a run sends, decoded from an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The bytes written, in order.
    pub stream: Vec<u8>,
    /// Where the stream is cut into separate writes (sorted, inside the stream).
    pub cuts: Vec<usize>,
    /// Whether to pause between writes.
    pub pause: bool,
    /// The exact answers, when the framing is known (not raw mode).
    pub expect: Option<Vec<Expected>>,
}

/// One answer a framed run must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Its status.
    pub status: u16,
    /// Its body, when it is known.
    pub body: Option<Vec<u8>>,
}

/// Decodes an input into what to send and, for the framed modes, what must come back.
pub fn plan(data: &[u8]) -> Plan {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let flags = at(0);
    let seed = at(1);
    let ncuts = usize::from((flags >> 3) & 7);
    let payload = data.get(2 + 2 * ncuts..).unwrap_or(&[]);
    let next_get: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: f\r\n\r\n";
    let hello = Expected { status: 200, body: Some(HELLO.to_vec()) };
    let (stream, expect) = match flags & 3 {
        1 => {
            let mut s =
                format!("POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: {}\r\n\r\n", payload.len())
                    .into_bytes();
            s.extend_from_slice(payload);
            s.extend_from_slice(next_get);
            (s, Some(echo_then(payload, hello)))
        }
        2 => {
            let mut s = b"POST /echo HTTP/1.1\r\nHost: f\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            encode_chunked(&mut s, payload, seed, flags & 0x40 != 0, flags & 0x80 != 0);
            s.extend_from_slice(next_get);
            (s, Some(echo_then(payload, hello)))
        }
        _ => (payload.to_vec(), None),
    };
    let mut cuts: Vec<usize> = (0..ncuts)
        .map(|i| usize::from(u16::from_le_bytes([at(2 + 2 * i), at(3 + 2 * i)])) % (stream.len() + 1))
        .filter(|&c| c > 0 && c < stream.len())
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    Plan { stream, cuts, pause: flags & 4 != 0, expect }
}

fn echo_then(payload: &[u8], hello: Expected) -> Vec<Expected> {
    if payload.len() > MAX_BODY {
        vec![Expected { status: 413, body: None }]
    } else {
        vec![Expected { status: 200, body: Some(payload.to_vec()) }, hello]
    }
}

/// Chunked framing of `payload`, chunk sizes from `seed`, with RFC 9112 extensions
/// (token, token=token, token=quoted-string, around optional whitespace) and a trailer.
fn encode_chunked(out: &mut Vec<u8>, payload: &[u8], seed: u8, extensions: bool, trailer: bool) {
    const EXTS: [&str; 4] = [";a", ";name=value", " ; q=\"x \\\" y\"", ";n=1;m"];
    let mut rest = payload;
    let mut i = 0usize;
    while !rest.is_empty() {
        let size = (1 + (usize::from(seed) + i * 37) % 97).min(rest.len());
        if seed & 1 == 0 {
            out.extend_from_slice(format!("{size:x}").as_bytes());
        } else {
            out.extend_from_slice(format!("{size:03X}").as_bytes());
        }
        if extensions {
            out.extend_from_slice(EXTS[i % EXTS.len()].as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..size]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[size..];
        i += 1;
    }
    out.extend_from_slice(if extensions { b"0;end\r\n" } else { b"0\r\n" });
    if trailer {
        out.extend_from_slice(b"X-Trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What came back from one connection.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// The server closed cleanly (end of file, not a reset).
    pub clean_eof: bool,
    /// The server kept the connection open past the read timeout.
    pub timed_out: bool,
}

impl Target {
    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs one input: sends its plan, checks the answers, and every [`HEALTH_EVERY`]
    /// runs checks that a fresh connection is still served.
    pub fn run(&self, data: &[u8]) -> Result<(), String> {
        let plan = plan(data);
        let got = self.exchange(&plan.stream, &plan.cuts, plan.pause);
        check_run(&plan, &got)?;
        if self.runs.fetch_add(1, Ordering::Relaxed) % HEALTH_EVERY == HEALTH_EVERY - 1 {
            self.health()?;
        }
        Ok(())
    }

    /// A fresh `GET /plaintext` gets `Hello, World!`.
    pub fn health(&self) -> Result<(), String> {
        let req = b"GET /plaintext HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n";
        let got = self.exchange(req, &[], false);
        let answers = check_stream(req, &got).map_err(|e| format!("health check: {e}"))?;
        match answers.as_slice() {
            [a] if a.status == 200 && a.body.as_deref() == Some(HELLO) => Ok(()),
            other => Err(format!("health check: GET /plaintext got {other:?}")),
        }
    }

    /// Writes `stream` cut at `cuts` on a new connection, ends its write side, and reads
    /// until the server closes.
    pub fn exchange(&self, stream: &[u8], cuts: &[usize], pause: bool) -> Received {
        let conn = match TcpStream::connect(self.addr) {
            Ok(c) => c,
            Err(e) => panic!("cannot connect to the fuzzed server: {e}"),
        };
        let _ = conn.set_nodelay(true);
        let _ = conn.set_write_timeout(Some(READ_TIMEOUT));
        let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
        let reader = conn.try_clone().expect("clone the client socket");
        std::thread::scope(|s| {
            let read = s.spawn(move || read_to_end(reader));
            let mut from = 0;
            for (i, &to) in cuts.iter().chain(std::iter::once(&stream.len())).enumerate() {
                if i > 0 && pause {
                    std::thread::sleep(PAUSE);
                }
                // A refused request closes the connection; what was not sent does not matter.
                if (&conn).write_all(&stream[from..to]).is_err() {
                    break;
                }
                from = to;
            }
            let _ = conn.shutdown(Shutdown::Write);
            read.join().expect("the reader thread does not panic")
        })
    }
}

fn read_to_end(mut conn: TcpStream) -> Received {
    let mut got = Received::default();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => {
                got.clean_eof = true;
                return got;
            }
            Ok(n) => got.bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                got.timed_out = true;
                return got;
            }
            Err(_) => return got,
        }
    }
}

/// The whole oracle for one run: the stream checks, then the exact answers when the
/// plan knows them.
pub fn check_run(plan: &Plan, got: &Received) -> Result<(), String> {
    let answers = check_stream(&plan.stream, got)?;
    let Some(expect) = &plan.expect else { return Ok(()) };
    if !got.clean_eof {
        return Err("a framed run ended with a reset instead of a close".into());
    }
    let finals: Vec<&Response> = answers.iter().filter(|a| a.status >= 200).collect();
    let matches = finals.len() == expect.len()
        && finals
            .iter()
            .zip(expect)
            .all(|(a, e)| a.status == e.status && e.body.as_ref().is_none_or(|b| a.body.as_ref() == Some(b)));
    if !matches {
        return Err(format!("expected {expect:?}, got {answers:?}"));
    }
    Ok(())
}

/// One response as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body; `None` when the answer to a HEAD request left it out.
    pub body: Option<Vec<u8>>,
    /// It said `Connection: close`.
    pub close: bool,
}

/// Parses and checks every response the server sent for `sent`.
///
/// A response's body may only be left out when it is an answer to HEAD: the input has
/// one more `HEAD ` not yet spent, the answer is not an echo, and what follows is the
/// end of the stream or another status line (no other body of the app starts with
/// `HTTP/`). A stream cut by a reset may end inside its last response.
pub fn check_stream(sent: &[u8], got: &Received) -> Result<Vec<Response>, String> {
    if got.timed_out {
        return Err(format!(
            "the server kept the connection open {READ_TIMEOUT:?} after the client's end of input \
             (received so far: {:?})",
            String::from_utf8_lossy(&got.bytes)
        ));
    }
    let mut heads_left = count(sent, b"HEAD ");
    let request_lines = count(sent, b"HTTP/1.");
    let out = &got.bytes;
    let mut answers = Vec::new();
    let mut pos = 0;
    while pos < out.len() {
        let Some((resp, used)) = parse_one(&out[pos..], &mut heads_left, got.clean_eof)
            .map_err(|e| format!("response {} (byte {pos}): {e}; stream: {:?}", answers.len(), lossy(out)))?
        else {
            break; // cut by a reset
        };
        pos += used;
        if resp.close && pos < out.len() {
            return Err(format!(
                "{} bytes after a response with Connection: close: {:?}",
                out.len() - pos,
                lossy(&out[pos..])
            ));
        }
        answers.push(resp);
    }
    let finals = answers.iter().filter(|a| a.status >= 200).count();
    // Every answer but a closing error answer consumed a request line.
    let closing = answers.last().is_some_and(|a| a.close);
    if finals > request_lines + usize::from(closing) {
        return Err(format!("{finals} answers to {request_lines} request lines: {:?}", lossy(out)));
    }
    Ok(answers)
}

/// Parses one response off the front of `out`: `Ok(None)` when a reset cut it.
fn parse_one(
    out: &[u8],
    heads_left: &mut usize,
    clean_eof: bool,
) -> Result<Option<(Response, usize)>, String> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut fields);
    let head_len = match r.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if clean_eof => return Err("the stream ends inside a head".into()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed head: {e}")),
    };
    if !out.starts_with(b"HTTP/1.1 ") {
        return Err("status line is not HTTP/1.1".into());
    }
    let status = r.code.unwrap_or(0);
    if !STATUSES.contains(&status) {
        return Err(format!("status {status} (500: a handler or the engine panicked)"));
    }
    let headers: Vec<(String, Vec<u8>)> =
        r.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
    if status == 100 {
        if &out[..head_len] != b"HTTP/1.1 100 Continue\r\n\r\n" {
            return Err("an interim answer with fields".into());
        }
        return Ok(Some((Response { status, headers, body: Some(Vec::new()), close: false }, head_len)));
    }
    let one = |name: &str| -> Result<Option<&[u8]>, String> {
        let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_slice());
        if found.next().is_some() {
            return Err(format!("{name} twice"));
        }
        Ok(first)
    };
    if one("server")? != Some(b"ringo") {
        return Err("no `Server: ringo`".into());
    }
    if one("date")?.is_none_or(|d| d.len() != 29) {
        return Err("no well-formed Date".into());
    }
    let close = match one("connection")? {
        None | Some(b"keep-alive") => false,
        Some(b"close") => true,
        Some(other) => return Err(format!("Connection: {:?}", lossy(other))),
    };
    let echo = one("content-type")? == Some(ECHO_TYPE.as_bytes());
    let rest = &out[head_len..];
    let bodiless = *heads_left > 0 && !echo && (rest.is_empty() || rest.starts_with(b"HTTP/"));
    let (body, body_len) = match (one("content-length")?, one("transfer-encoding")?) {
        (Some(_), Some(_)) => return Err("both Content-Length and Transfer-Encoding".into()),
        (Some(cl), None) => {
            let n: usize = std::str::from_utf8(cl)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("Content-Length: {:?}", lossy(cl)))?;
            if n > 0 && bodiless {
                *heads_left -= 1;
                (None, 0)
            } else if rest.len() < n {
                if clean_eof {
                    return Err(format!("Content-Length {n} but the stream ends after {}", rest.len()));
                }
                return Ok(None);
            } else {
                (Some(rest[..n].to_vec()), n)
            }
        }
        (None, Some(te)) => {
            if te != b"chunked" {
                return Err(format!("Transfer-Encoding: {:?}", lossy(te)));
            }
            if bodiless {
                *heads_left -= 1;
                (None, 0)
            } else {
                match parse_chunked_response(rest)? {
                    Some((body, used)) => (Some(body), used),
                    None if clean_eof => return Err("the stream ends inside a chunked body".into()),
                    None => return Ok(None),
                }
            }
        }
        (None, None) => {
            // A body delimited by the close: HTTP/1.0 streaming only.
            if !close || status != 200 {
                return Err("a response with no framing that does not close".into());
            }
            (Some(rest.to_vec()), rest.len())
        }
    };
    Ok(Some((Response { status, headers, body, close }, head_len + body_len)))
}

/// Decodes a chunked response body as ringo writes it (no extensions, no trailers):
/// `None` when it is incomplete.
fn parse_chunked_response(mut rest: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let start = rest.len();
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return if rest.len() > 16 { Err("chunk-size line too long".into()) } else { Ok(None) };
        };
        let digits = &rest[..eol];
        if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("chunk-size {:?}", lossy(digits)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 16)
            .map_err(|e| format!("chunk-size: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return match rest.get(..2) {
                Some(b"\r\n") => Ok(Some((body, start - rest.len() + 2))),
                Some(_) => Err("trailer fields in a response".into()),
                None => Ok(None),
            };
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle).count()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(bytes: &[u8]) -> Received {
        Received { bytes: bytes.to_vec(), clean_eof: true, timed_out: false }
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nServer: ringo\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    fn resp(extra: &str, body: &str) -> Vec<u8> {
        let mut v = OK.to_vec();
        v.extend_from_slice(extra.as_bytes());
        v.extend_from_slice(b"\r\n");
        v.extend_from_slice(body.as_bytes());
        v
    }

    #[test]
    fn oracle_accepts_what_ringo_writes() {
        let get = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut two = resp("Content-Length: 2\r\n", "hi");
        two.extend(resp("Transfer-Encoding: chunked\r\nConnection: close\r\n", "2\r\nab\r\n0\r\n\r\n"));
        let a = check_stream(get, &got(&two)).expect("valid");
        assert_eq!(a[1].body.as_deref(), Some(&b"ab"[..]));
        // A HEAD answer has its length but no body.
        let head = b"HEAD / HTTP/1.1\r\n\r\n";
        let a = check_stream(head, &got(&resp("Content-Length: 13\r\n", ""))).expect("valid");
        assert_eq!(a[0].body, None);
    }

    #[test]
    fn oracle_refuses_broken_streams() {
        // (sent, received): one line per rule the oracle enforces.
        let get: &[u8] = b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut after_close = resp("Content-Length: 0\r\nConnection: close\r\n", "");
        after_close.extend(resp("Content-Length: 0\r\n", ""));
        let mut two = resp("Content-Length: 0\r\n", "");
        two.extend(two.clone());
        let cases: Vec<(&[u8], Vec<u8>)> = vec![
            (get, after_close),                                             // an answer after close
            (get, resp("Content-Length: 5\r\n", "abc")),                    // short body
            (get, resp("Content-Length: 1\r\nContent-Length: 1\r\n", "a")), // two lengths
            (get, resp("", "abc")),                                         // no framing, keeps alive
            (get, b"HTTP/1.1 500 Internal Server Error\r\n\r\n".to_vec()),  // something panicked
            (b"GET / HTTP/1.1\r\n\r\n", two),                               // two answers, one request
            (get, resp("Transfer-Encoding: chunked\r\n", "2\r\nab\r\n0\r\nX: y\r\n\r\n")), // trailers
            (get, resp("Content-Length: 4\r\n", "")),                       // bodiless without HEAD
        ];
        for (sent, out) in cases {
            assert!(check_stream(sent, &got(&out)).is_err(), "{:?}", lossy(&out));
        }
    }

    #[test]
    fn plans_cut_inside_the_stream() {
        let mut input = vec![0b0001_1000, 0, 5, 0, 200, 0, 5, 0];
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let p = plan(&input);
        assert_eq!(p.cuts, vec![200 % (p.stream.len() + 1), 5]);
        assert!(p.expect.is_none());
        let p = plan(&[2, 2, b'a', b'b']);
        assert!(p.stream.ends_with(b"2\r\nab\r\n0\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: f\r\n\r\n"));
        assert_eq!(p.expect.map(|e| e.len()), Some(2));
    }
}
