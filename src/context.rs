//! `Context`: one request's view and its response builder, as handlers see it.
//!
//! A connection owns one `Context` for its whole life and reuses it for every request:
//! the read buffer, header spans, parameter spans, the response buffers and the typed
//! value arena keep their capacity, so a keep-alive request in steady state allocates
//! nothing. Request data is borrowed from the connection's read buffer (spans, not
//! copies); per-request values live in a bump arena that is reset after each response.
//!
//! A `Context` is `!Send`: it belongs to the shard that accepted the connection.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::arena::ValueArena;
use crate::http::Method;
use crate::http::request::{RequestHead, Span};
use crate::http::response::{self, BodyLength, ConnectionHeader};
use crate::server::shard::ShardLocal;

/// Names of a route's parameters and its pattern, shared by every request it serves.
#[derive(Debug)]
pub(crate) struct RouteMeta {
    pub(crate) pattern: Box<str>,
    pub(crate) param_names: Box<[Box<str>]>,
}

/// Where a parameter's value lives.
#[derive(Debug, Clone, Copy)]
enum ParamValue {
    /// Bytes in the read buffer, needing no decoding.
    Raw(Span),
    /// Bytes in `Context::decoded` after percent-decoding.
    Decoded(Span),
}

/// Where the request body lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyRef {
    /// No body.
    Empty,
    /// A Content-Length body, in the read buffer.
    InBuffer(Span),
    /// A chunked body, decoded into `Context::chunked_body`.
    Decoded,
}

/// Why a JSON body could not be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON body: {message}")]
pub struct BindError {
    /// What the parser said.
    pub message: String,
}

/// Why a background task was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The shard already runs `limits.max_background_tasks` tasks.
    #[error("background task limit reached on this shard")]
    Full,
}

/// The response as the handlers leave it.
#[derive(Debug)]
pub(crate) struct ResponseState {
    pub(crate) status: u16,
    pub(crate) content_type: Vec<u8>,
    /// Extra header lines, `Name: value\r\n` each.
    pub(crate) headers: Vec<u8>,
    pub(crate) body: Vec<u8>,
    /// The handler asked for the connection to close after this response.
    pub(crate) close: bool,
    /// A streamed response has started: its head is already on the wire.
    pub(crate) streaming: Option<BodyLength>,
}

impl ResponseState {
    fn new() -> ResponseState {
        ResponseState {
            status: 200,
            content_type: Vec::with_capacity(64),
            headers: Vec::with_capacity(256),
            body: Vec::with_capacity(1024),
            close: false,
            streaming: None,
        }
    }

    fn set_content_type(&mut self, ct: &[u8]) {
        self.content_type.clear();
        self.content_type.extend_from_slice(ct);
    }

    /// Replaces whatever the handlers wrote with a plain error answer that closes.
    pub(crate) fn reset_for_error(&mut self, status: u16) {
        self.reset();
        self.status = status;
        self.close = true;
        self.set_content_type(b"text/plain; charset=utf-8");
        self.body.extend_from_slice(crate::http::status::reason(status).as_bytes());
        self.body.push(b'\n');
    }

    fn reset(&mut self) {
        self.status = 200;
        self.content_type.clear();
        self.headers.clear();
        self.body.clear();
        self.close = false;
        self.streaming = None;
    }
}

/// One request and its response. Handlers and middleware receive `&mut Context`.
///
/// Reading: [`method`](Context::method), [`path`](Context::path),
/// [`param`](Context::param), [`query`](Context::query),
/// [`get_header`](Context::get_header), [`body`](Context::body),
/// [`bind_json`](Context::bind_json). Writing: [`json`](Context::json),
/// [`string`](Context::string), [`bytes`](Context::bytes), [`header`](Context::header),
/// [`status`](Context::status), [`abort_with_status`](Context::abort_with_status).
pub struct Context {
    pub(crate) buf: Vec<u8>,
    pub(crate) head: RequestHead,
    pub(crate) body: BodyRef,
    pub(crate) chunked_body: Vec<u8>,
    /// Parameter spans from the router, absolute in `buf`.
    pub(crate) raw_params: Vec<(u32, u32)>,
    params: Vec<ParamValue>,
    decoded: Vec<u8>,
    pub(crate) route: Option<Rc<RouteMeta>>,
    pub(crate) resp: RefCell<ResponseState>,
    pub(crate) out: Vec<u8>,
    aborted: Cell<bool>,
    values: ValueArena,
    pub(crate) scratch: Vec<u8>,
    pub(crate) shard: Rc<ShardLocal>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) io: Option<TcpStream>,
    /// Requests answered into `out` but not yet written (counted in flight).
    pub(crate) unflushed: usize,
    /// This connection's entry in the shard's connection registry.
    pub(crate) conn_slot: usize,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("method", &self.head.method)
            .field("path", &self.path())
            .field("status", &self.resp.borrow().status)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(shard: Rc<ShardLocal>, buf: Vec<u8>, out: Vec<u8>) -> Context {
        let max_headers = shard.limits.header_count();
        Context {
            buf,
            head: RequestHead::new(max_headers),
            body: BodyRef::Empty,
            chunked_body: Vec::new(),
            raw_params: Vec::with_capacity(8),
            params: Vec::with_capacity(8),
            decoded: Vec::with_capacity(128),
            route: None,
            resp: RefCell::new(ResponseState::new()),
            out,
            aborted: Cell::new(false),
            values: ValueArena::default(),
            scratch: Vec::new(),
            shard,
            peer: None,
            io: None,
            unflushed: 0,
            conn_slot: usize::MAX,
        }
    }

    /// Clears per-request state after a response (buffers keep their capacity).
    pub(crate) fn reset_request(&mut self) {
        self.body = BodyRef::Empty;
        self.chunked_body.clear();
        self.raw_params.clear();
        self.params.clear();
        self.decoded.clear();
        self.route = None;
        self.resp.get_mut().reset();
        self.aborted.set(false);
        self.values.reset();
    }

    /// Percent-decodes the router's parameter spans. `false` when one is not UTF-8.
    pub(crate) fn decode_params(&mut self) -> bool {
        self.params.clear();
        self.decoded.clear();
        for &(start, end) in &self.raw_params {
            let raw = &self.buf[start as usize..end as usize];
            if raw.contains(&b'%') {
                let from = self.decoded.len();
                self.decoded.extend(percent_encoding::percent_decode(raw));
                let span = Span::new(from, self.decoded.len());
                if std::str::from_utf8(span.get(&self.decoded)).is_err() {
                    return false;
                }
                self.params.push(ParamValue::Decoded(span));
            } else {
                if std::str::from_utf8(raw).is_err() {
                    return false;
                }
                self.params.push(ParamValue::Raw(Span::new(start as usize, end as usize)));
            }
        }
        true
    }

    // ----- the request -----

    /// The request method.
    pub fn method(&self) -> Method {
        self.head.method
    }

    /// The request path as sent (still percent-encoded), without the query.
    pub fn path(&self) -> &str {
        std::str::from_utf8(self.head.path.get(&self.buf)).unwrap_or("")
    }

    /// The matched route's pattern, e.g. `/users/:id` (Gin's `FullPath`); `""` if none.
    pub fn full_path(&self) -> &str {
        self.route.as_deref().map_or("", |r| &r.pattern)
    }

    /// A path parameter, percent-decoded; `""` when the route has no such parameter.
    pub fn param(&self, name: &str) -> &str {
        let Some(route) = self.route.as_deref() else { return "" };
        let Some(i) = route.param_names.iter().position(|n| &**n == name) else { return "" };
        let bytes = match self.params.get(i) {
            Some(ParamValue::Raw(s)) => s.get(&self.buf),
            Some(ParamValue::Decoded(s)) => s.get(&self.decoded),
            None => return "",
        };
        std::str::from_utf8(bytes).unwrap_or("")
    }

    /// The raw query string after `?`, `""` when there is none.
    pub fn query_string(&self) -> &str {
        self.head.query.map_or("", |q| std::str::from_utf8(q.get(&self.buf)).unwrap_or(""))
    }

    /// The first value of query parameter `key`, decoded (`+` is a space).
    pub fn query(&self, key: &str) -> Option<Cow<'_, str>> {
        let query = self.head.query?.get(&self.buf);
        for pair in query.split(|&b| b == b'&') {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            if decode_query_part(k).as_deref() == Some(key) {
                return decode_query_part(v);
            }
        }
        None
    }

    /// The first request header named `name` (case-insensitive), if it is valid UTF-8.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.head
            .headers
            .iter()
            .find(|(n, _)| n.get(&self.buf).eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v.get(&self.buf)).ok())
    }

    /// Every request header as (name, raw value), in arrival order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head
            .headers
            .iter()
            .map(|(n, v)| (std::str::from_utf8(n.get(&self.buf)).unwrap_or(""), v.get(&self.buf)))
    }

    /// The request body (decoded when it came chunked).
    pub fn body(&self) -> &[u8] {
        match self.body {
            BodyRef::Empty => &[],
            BodyRef::InBuffer(span) => span.get(&self.buf),
            BodyRef::Decoded => &self.chunked_body,
        }
    }

    /// The client's address.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The shard (0-based) serving this request.
    pub fn shard_id(&self) -> usize {
        self.shard.id
    }

    /// Parses the body as JSON into `T`, without answering on failure (Gin's
    /// `ShouldBindJSON`).
    pub fn should_bind_json<T: DeserializeOwned>(&mut self) -> Result<T, BindError> {
        if self.body().is_empty() {
            return Err(BindError { message: "empty body".into() });
        }
        // simd-json parses in place, so the body is copied into a reused scratch buffer.
        // benches/micro.rs, 1 KiB document, idle machine: simd-json 6.1 µs (its serde
        // path) against serde_json's 7.4 µs, copy included.
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend_from_slice(self.body());
        let parsed =
            simd_json::serde::from_slice::<T>(&mut scratch).map_err(|e| BindError { message: e.to_string() });
        self.scratch = scratch;
        parsed
    }

    /// Parses the body as JSON into `T`; on failure answers 400 with a JSON error body
    /// and aborts the chain (Gin's `BindJSON`).
    pub fn bind_json<T: DeserializeOwned>(&mut self) -> Result<T, BindError> {
        let parsed = self.should_bind_json();
        if let Err(e) = &parsed {
            #[derive(Serialize)]
            struct ErrorBody<'a> {
                error: &'a str,
            }
            let message = e.to_string();
            self.json(400, &ErrorBody { error: &message });
            self.abort();
        }
        parsed
    }

    // ----- per-request values -----

    /// Stores a typed value for the rest of this request (replacing one of the same type).
    pub fn set<T: 'static>(&mut self, value: T) {
        self.values.set(value);
    }

    /// A value stored earlier in this request with [`set`](Context::set).
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.values.get()
    }

    /// A value stored earlier in this request, mutably.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.values.get_mut()
    }

    // ----- the response -----
    //
    // The response methods take `&self`, so a handler can answer with data borrowed from
    // the request: `c.json(200, &User { id: c.param("id") })`.

    /// Answers with `value` serialized as JSON, straight into the reused response buffer.
    pub fn json<T: Serialize + ?Sized>(&self, status: u16, value: &T) {
        let mut resp = self.resp.borrow_mut();
        resp.status = status;
        resp.body.clear();
        resp.set_content_type(b"application/json");
        // serde_json writes: 18 ns against simd-json's 21 ns for a small message
        // (benches/micro.rs), no allocation either way.
        if let Err(e) = serde_json::to_writer(&mut resp.body, value) {
            tracing::error!(error = %e, path = self.path(), "response serialization failed");
            resp.body.clear();
            resp.content_type.clear();
            resp.status = 500;
        }
    }

    /// Answers with a plain-text body.
    pub fn string(&self, status: u16, text: &str) {
        self.bytes(status, "text/plain; charset=utf-8", text.as_bytes());
    }

    /// Answers with raw bytes and a content type.
    pub fn bytes(&self, status: u16, content_type: &str, data: &[u8]) {
        let mut resp = self.resp.borrow_mut();
        resp.status = status;
        resp.set_content_type(content_type.as_bytes());
        resp.body.clear();
        resp.body.extend_from_slice(data);
    }

    /// Sets the status code (the body, if any, stays).
    pub fn status(&self, status: u16) {
        self.resp.borrow_mut().status = status;
    }

    /// The response status set so far (200 by default).
    pub fn response_status(&self) -> u16 {
        self.resp.borrow().status
    }

    /// Adds a response header. `Content-Type` replaces the default; framing headers
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`) are ringo's to write and are
    /// ignored, except `Connection: close`, which closes after this response. A name or
    /// value containing CR, LF or NUL is refused (header injection) and logged.
    pub fn header(&self, name: &str, value: &str) {
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        if name.is_empty() || bad(name) || bad(value) || name.contains(':') {
            tracing::debug!(name, "refused a response header with forbidden bytes");
            return;
        }
        let mut resp = self.resp.borrow_mut();
        if name.eq_ignore_ascii_case("content-type") {
            resp.set_content_type(value.as_bytes());
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                resp.close = true;
            }
        } else if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            tracing::debug!(name, "ignored a framing header set by a handler");
        } else {
            let h = &mut resp.headers;
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b": ");
            h.extend_from_slice(value.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
    }

    /// Answers with a redirect to `location` (301, 302, 303, 307 or 308).
    pub fn redirect(&self, status: u16, location: &str) {
        self.status(status);
        self.header("Location", location);
    }

    /// Stops the chain: handlers and middleware not yet run are skipped.
    pub fn abort(&self) {
        self.aborted.set(true);
    }

    /// Sets the status, drops any body written so far, and stops the chain.
    pub fn abort_with_status(&self, status: u16) {
        let mut resp = self.resp.borrow_mut();
        resp.status = status;
        resp.body.clear();
        resp.content_type.clear();
        self.aborted.set(true);
    }

    /// Whether [`abort`](Context::abort) was called.
    pub fn is_aborted(&self) -> bool {
        self.aborted.get()
    }

    // ----- streaming -----

    /// Starts a streamed response now: the head goes out at once, then each
    /// [`write_stream`](Context::write_stream) sends one piece. HTTP/1.1 clients get a
    /// chunked body; HTTP/1.0 clients a body that ends when the connection closes.
    pub async fn start_stream(&mut self, status: u16, content_type: &str) -> io::Result<()> {
        let resp = self.resp.get_mut();
        if resp.streaming.is_some() {
            return Ok(());
        }
        resp.status = status;
        resp.set_content_type(content_type.as_bytes());
        let length = if self.head.minor_version == 1 {
            BodyLength::Chunked
        } else {
            resp.close = true;
            BodyLength::CloseDelimited
        };
        let date = self.shard.date.get();
        let connection = if length == BodyLength::CloseDelimited || resp.close {
            ConnectionHeader::Close
        } else {
            ConnectionHeader::Default
        };
        response::write_head(
            &mut self.out,
            &response::Head {
                status,
                content_type: &resp.content_type,
                extra: &resp.headers,
                length,
                connection,
                date: &date,
            },
        );
        resp.streaming = Some(length);
        self.flush_out().await
    }

    /// Sends one piece of a streamed response (starting a 200 `application/octet-stream`
    /// stream first if none was started).
    pub async fn write_stream(&mut self, data: &[u8]) -> io::Result<()> {
        if self.resp.get_mut().streaming.is_none() {
            self.start_stream(200, "application/octet-stream").await?;
        }
        if self.head.method == Method::Head {
            return Ok(());
        }
        match self.resp.get_mut().streaming {
            Some(BodyLength::Chunked) => response::write_chunk(&mut self.out, data),
            _ => self.out.extend_from_slice(data),
        }
        self.flush_out().await
    }

    /// Writes the connection's pending output now.
    pub(crate) async fn flush_out(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let Some(io) = self.io.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no connection"));
        };
        let out = std::mem::take(&mut self.out);
        self.shard.stats.add_bytes(0, out.len() as u64);
        let timeout = std::time::Duration::from_millis(self.shard.limits.write_timeout_ms);
        match monoio::time::timeout(timeout, io.write_all(out)).await {
            Ok((Ok(_), mut out)) => {
                out.clear();
                self.out = out;
                if self.unflushed > 0 {
                    let stats = &self.shard.stats;
                    stats.in_flight.set(stats.in_flight.get().saturating_sub(self.unflushed));
                    self.unflushed = 0;
                }
                Ok(())
            }
            Ok((Err(e), _)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    // ----- background work -----

    /// Runs `task` in the background on this shard (Gin's `go func()`), bounded by
    /// `limits.max_background_tasks`: past it the task is dropped, counted, and
    /// [`SpawnError::Full`] returned.
    pub fn spawn<F>(&self, task: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + 'static,
    {
        self.shard.spawn_background(task)
    }
}

fn decode_query_part(raw: &[u8]) -> Option<Cow<'_, str>> {
    if !raw.contains(&b'+') && !raw.contains(&b'%') {
        return std::str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let plus_free: Cow<'_, [u8]> = if raw.contains(&b'+') {
        Cow::Owned(raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect())
    } else {
        Cow::Borrowed(raw)
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode(&plus_free).collect();
    String::from_utf8(decoded).ok().map(Cow::Owned)
}
