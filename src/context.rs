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
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::arena::ValueArena;
use crate::client_ip::TrustedProxies;
use crate::http::Method;
use crate::http::field;
use crate::http::request::{RequestHead, Span};
use crate::http::response::{self, BodyLength, ConnectionHeader};
use crate::http::status::forbids_body;
use crate::http::words::str_of;
use crate::shard_handle::ShardHandle;
use crate::transport::Transport;

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

/// Why a JSON body could not be bound to a type with validation rules.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidBindError {
    /// The body is not JSON of the expected shape.
    #[error(transparent)]
    Json(#[from] BindError),
    /// The body parsed, and broke the type's rules (every failure, by field).
    #[error("validation failed: {0}")]
    Invalid(validator::ValidationErrors),
}

/// Why a background task was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The shard already runs `limits.max_background_tasks` tasks.
    #[error("background task limit reached on this shard")]
    Full,
}

/// Why a response header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The name is not a token (RFC 9110 §5.1).
    #[error("header name {0:?} is not a token")]
    Name(String),
    /// The value holds CR, LF, NUL or another control byte (header injection).
    #[error("value of header {name:?} holds a control byte (CR, LF, NUL...)")]
    Value {
        /// The header's name.
        name: String,
    },
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
    /// The stream was cut short (a deadline, a panic): its end is never marked, so the
    /// client sees a truncated body, and the connection closes.
    pub(crate) truncated: bool,
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
            truncated: false,
        }
    }

    /// Sets a final status; anything outside 200–999 is a handler bug answered as 500.
    fn set_status(&mut self, status: u16) {
        if (200..=999).contains(&status) {
            self.status = status;
        } else {
            tracing::error!(status, "refused a status outside 200-999; answering 500");
            self.status = 500;
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
        self.truncated = false;
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
    /// The connection's read buffer, lent by the engine while the chain runs.
    pub(crate) buf: Vec<u8>,
    /// Where this request starts in `buf`: every span below is relative to it.
    pub(crate) base: usize,
    pub(crate) head: RequestHead,
    pub(crate) body: BodyRef,
    pub(crate) chunked_body: Vec<u8>,
    /// Parameter spans from the router, relative to `base`.
    pub(crate) raw_params: Vec<(u32, u32)>,
    params: Vec<ParamValue>,
    decoded: Vec<u8>,
    pub(crate) route: Option<Rc<RouteMeta>>,
    pub(crate) resp: RefCell<ResponseState>,
    aborted: Cell<bool>,
    values: ValueArena,
    pub(crate) scratch: Vec<u8>,
    pub(crate) shard: Rc<ShardHandle>,
    pub(crate) peer: Option<SocketAddr>,
    /// The router's trusted proxies, set per connection (`None`: trust no one).
    pub(crate) trusted_proxies: Option<Rc<TrustedProxies>>,
    /// The connection's socket and write buffer, lent by the engine while the chain
    /// runs (streaming writes through it).
    pub(crate) transport: Box<Transport>,
    /// The request's ids for log lines, made current around each poll of its chain.
    pub(crate) log_ids: Rc<RefCell<crate::logging::LogIds>>,
    /// The request's start: the shard clock's reading when the engine parsed its head
    /// (when its bytes were read, or when an await before it ended; the clock is not
    /// read per request). The metrics, the access log and the span count from it.
    pub(crate) started: std::time::Instant,
    /// Set by the trace middleware when this request's span is to be recorded; the
    /// engine writes it to the shard's span ring once the answer is queued.
    pub(crate) span: Option<crate::span_ring::SpanIds>,
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
    pub(crate) fn new(shard: Rc<ShardHandle>) -> Context {
        let max_headers = shard.limits.header_count();
        Context {
            buf: Vec::new(),
            base: 0,
            head: RequestHead::new(max_headers),
            body: BodyRef::Empty,
            chunked_body: Vec::new(),
            raw_params: Vec::with_capacity(8),
            params: Vec::with_capacity(8),
            decoded: Vec::with_capacity(128),
            route: None,
            resp: RefCell::new(ResponseState::new()),
            aborted: Cell::new(false),
            values: ValueArena::default(),
            scratch: Vec::new(),
            shard,
            peer: None,
            trusted_proxies: None,
            transport: Box::default(),
            log_ids: Rc::new(RefCell::new(crate::logging::LogIds::default())),
            started: std::time::Instant::now(),
            span: None,
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
        *self.log_ids.borrow_mut() = crate::logging::LogIds::default();
        self.span = None;
    }

    /// Percent-decodes the router's parameter spans. `false` when one is not UTF-8.
    pub(crate) fn decode_params(&mut self) -> bool {
        self.params.clear();
        self.decoded.clear();
        for &(start, end) in &self.raw_params {
            let raw = Span { start, end }.get(self.buf.get(self.base..).unwrap_or(&[]));
            if raw.contains(&b'%') {
                let from = self.decoded.len();
                self.decoded.extend(percent_encoding::percent_decode(raw));
                let span = Span::new(from, self.decoded.len());
                if str_of(span.get(&self.decoded)).is_none() {
                    return false;
                }
                self.params.push(ParamValue::Decoded(span));
            } else {
                if str_of(raw).is_none() {
                    return false;
                }
                self.params.push(ParamValue::Raw(Span { start, end }));
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
        str_of(self.head.path.get(self.req())).unwrap_or("")
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
            Some(ParamValue::Raw(s)) => s.get(self.req()),
            Some(ParamValue::Decoded(s)) => s.get(&self.decoded),
            None => return "",
        };
        str_of(bytes).unwrap_or("")
    }

    /// The raw query string after `?`, `""` when there is none.
    pub fn query_string(&self) -> &str {
        self.head.query.map_or("", |q| str_of(q.get(self.req())).unwrap_or(""))
    }

    /// The first value of query parameter `key`, decoded (`+` is a space).
    pub fn query(&self, key: &str) -> Option<Cow<'_, str>> {
        let query = self.head.query?.get(self.req());
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
        self.header_bytes(name).and_then(str_of)
    }

    /// The raw bytes of the first request header named `name` (case-insensitive).
    // Inlined into each caller: as a call, saving and restoring registers cost more
    // than the lookup of an absent name (the default stack makes six lookups a
    // request: 142 of its 4394 instructions went with the calls).
    #[inline(always)]
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.header_lines(name).next()
    }

    /// Every request header as (name, raw value), in arrival order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers.iter().map(|(n, v)| (str_of(n.get(self.req())).unwrap_or(""), v.get(self.req())))
    }

    /// The request body (decoded when it came chunked).
    pub fn body(&self) -> &[u8] {
        match self.body {
            BodyRef::Empty => &[],
            BodyRef::InBuffer(span) => span.get(self.req()),
            BodyRef::Decoded => &self.chunked_body,
        }
    }

    /// The client's address.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The client's IP address, as Gin's `ClientIP`: the peer's, unless the peer is a
    /// trusted proxy ([`Router::trusted_proxies`](crate::Router::trusted_proxies)); then
    /// `X-Forwarded-For` (or, without it, `Forwarded`'s `for=`) is walked from the
    /// right, trusted hops skipped, and the first untrusted address is the client.
    /// Headers from untrusted peers are never believed. Parsed in place: no allocation.
    pub fn client_ip(&self) -> Option<IpAddr> {
        let peer = self.peer?.ip();
        let Some(trusted) = self.trusted_proxies.as_deref() else { return Some(peer) };
        Some(trusted.resolve(peer, self.header_lines("x-forwarded-for"), self.header_lines("forwarded")))
    }

    /// Every value of request header `name` (case-insensitive), in arrival order.
    /// Lengths are compared before bytes: nearly every field differs in length from the
    /// one asked for (the default stack asks for six names a request, most of them
    /// absent).
    #[inline(always)]
    fn header_lines<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let req = self.req();
        let name = name.as_bytes();
        self.head
            .headers
            .iter()
            .filter(move |(n, _)| n.len() == name.len() && n.get(req).eq_ignore_ascii_case(name))
            .map(move |(_, v)| v.get(req))
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
        let parsed = with_json_buffers(scratch.len(), |buffers| {
            simd_json::serde::from_slice_with_buffers::<T>(&mut scratch, buffers)
        })
        .map_err(|e| BindError { message: e.to_string() });
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

    /// Parses the body as JSON into `T` and checks `T`'s declared rules (the
    /// [`validator`] crate's `#[derive(Validate)]`: `required`, `range`, `length`,
    /// `email`, `url`…), without answering on failure (Gin's `ShouldBindJSON` with
    /// `binding:` tags).
    pub fn should_bind_json_valid<T: DeserializeOwned + Validate>(&mut self) -> Result<T, ValidBindError> {
        let value: T = self.should_bind_json()?;
        value.validate().map_err(ValidBindError::Invalid)?;
        Ok(value)
    }

    /// Like [`should_bind_json_valid`](Context::should_bind_json_valid), but answers a
    /// failure and aborts the chain: invalid JSON is a 400 `{"error":"invalid JSON
    /// body: …"}` (as [`bind_json`](Context::bind_json)); a broken rule is a 400 naming
    /// each field and its broken rules, nested fields as `outer.inner` and `list[0].x`:
    /// `{"error":"validation failed","fields":{"age":["range"],"email":["email"]}}`.
    pub fn bind_json_valid<T: DeserializeOwned + Validate>(&mut self) -> Result<T, ValidBindError> {
        let value: T = self.bind_json()?;
        if let Err(errors) = value.validate() {
            let mut fields = std::collections::BTreeMap::new();
            collect_rule_failures(&errors, &mut String::new(), &mut fields);
            self.json(400, &serde_json::json!({ "error": "validation failed", "fields": fields }));
            self.abort();
            return Err(ValidBindError::Invalid(errors));
        }
        Ok(value)
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
        resp.set_status(status);
        resp.body.clear();
        resp.set_content_type(b"application/json");
        // sonic-rs writes serde_json's bytes (the same escapes, numbers and map-key rules)
        // and escapes strings sixteen bytes at a time: benches/micro.rs `json/serialize`,
        // sonic-rs against serde_json: hello 19 against 24–29 ns, ten users 1.37 against
        // 1.68 µs, the echo document (one long string) 0.26 against 0.77 µs. simd-json's
        // serializer loses on numbers (2.6 µs on the items document).
        // No allocation once the body buffer has grown.
        if let Err(e) = sonic_rs::to_writer(&mut resp.body, value) {
            tracing::error!(error = %e, path = self.path(), "response serialization failed");
            resp.body.clear();
            resp.content_type.clear();
            resp.status = 500;
        }
    }

    /// Answers with a plain-text body.
    pub fn string(&self, status: u16, text: &str) {
        // ringo's own constant content type: nothing to check (checking it on every
        // answer was 5 % of a saturated shard's instructions).
        self.answer_bytes(status, b"text/plain; charset=utf-8", text.as_bytes());
    }

    /// Answers with raw bytes and a content type. A content type that is not a valid
    /// header value (CR, LF, NUL or another control byte) is never sent: the response
    /// becomes a 500 and the mistake is logged.
    pub fn bytes(&self, status: u16, content_type: &str, data: &[u8]) {
        if !field::is_value(content_type.as_bytes()) {
            tracing::error!(path = self.path(), "refused a content type with forbidden bytes; answering 500");
            let mut resp = self.resp.borrow_mut();
            resp.reset_for_error(500);
            resp.close = false;
            return;
        }
        self.answer_bytes(status, content_type.as_bytes(), data);
    }

    /// [`bytes`](Context::bytes) with a content type known to be a valid field value.
    fn answer_bytes(&self, status: u16, content_type: &[u8], data: &[u8]) {
        let mut resp = self.resp.borrow_mut();
        resp.set_status(status);
        resp.set_content_type(content_type);
        resp.body.clear();
        resp.body.extend_from_slice(data);
    }

    /// Sets the status code (the body, if any, stays). Only final statuses 200–999 can
    /// be set: anything else is a handler bug, logged, and answered as 500.
    pub fn status(&self, status: u16) {
        self.resp.borrow_mut().set_status(status);
    }

    /// The response status set so far (200 by default).
    pub fn response_status(&self) -> u16 {
        self.resp.borrow().status
    }

    /// Adds a response header. `Content-Type` replaces the default; framing headers
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`) are ringo's to write and are
    /// ignored, except `Connection: close`, which closes after this response. A name
    /// that is not a token, or a value with CR, LF, NUL or another control byte, is
    /// refused (never sent: header injection) and logged; see
    /// [`try_header`](Context::try_header) to handle the refusal.
    pub fn header(&self, name: &str, value: &str) {
        if let Err(e) = self.try_header(name, value) {
            tracing::warn!(error = %e, path = self.path(), "response header refused");
        }
    }

    /// Adds a response header like [`header`](Context::header), saying when it is refused.
    pub fn try_header(&self, name: &str, value: &str) -> Result<(), HeaderError> {
        if !field::is_name(name.as_bytes()) {
            return Err(HeaderError::Name(name.escape_debug().to_string()));
        }
        if !field::is_value(value.as_bytes()) {
            return Err(HeaderError::Value { name: name.to_owned() });
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
        Ok(())
    }

    /// Adds a response header that ringo's own middleware made valid by construction
    /// (a constant token name that no framing rule concerns, a value of checked
    /// characters): [`header`](Context::header)'s checks and name dispatch were 230
    /// instructions of a default-stack request for `X-Request-Id` alone.
    pub(crate) fn header_prechecked(&self, name: &'static str, value: &str) {
        debug_assert!(field::is_name(name.as_bytes()) && field::is_value(value.as_bytes()));
        debug_assert!(
            !["content-type", "connection", "content-length", "transfer-encoding"]
                .iter()
                .any(|framing| name.eq_ignore_ascii_case(framing)),
            "{name} has rules of its own: use header()"
        );
        let line = &mut self.resp.borrow_mut().headers;
        line.reserve(name.len() + value.len() + 4);
        line.extend_from_slice(name.as_bytes());
        line.extend_from_slice(b": ");
        line.extend_from_slice(value.as_bytes());
        line.extend_from_slice(b"\r\n");
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
        resp.set_status(status);
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
    /// chunked body; HTTP/1.0 clients a body that ends when the connection closes. A
    /// status that forbids a body (204, 304) and a HEAD request get the head alone:
    /// their pieces are dropped, so the next response on the connection stays framed.
    pub async fn start_stream(&mut self, status: u16, content_type: &str) -> io::Result<()> {
        let resp = self.resp.get_mut();
        if resp.streaming.is_some() {
            return Ok(());
        }
        if !field::is_value(content_type.as_bytes()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "content type holds forbidden bytes"));
        }
        if !(200..=999).contains(&status) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stream needs a final status (200-999)",
            ));
        }
        resp.status = status;
        resp.set_content_type(content_type.as_bytes());
        let length = if forbids_body(status) {
            BodyLength::Omitted
        } else if self.head.minor_version == 1 {
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
            &mut self.transport.out,
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
        self.flush_stream().await
    }

    /// Sends one piece of a streamed response (starting a 200 `application/octet-stream`
    /// stream first if none was started).
    pub async fn write_stream(&mut self, data: &[u8]) -> io::Result<()> {
        if self.resp.get_mut().streaming.is_none() {
            self.start_stream(200, "application/octet-stream").await?;
        }
        if self.head.method == Method::Head || data.is_empty() {
            return Ok(());
        }
        match self.resp.get_mut().streaming {
            Some(BodyLength::Chunked) => response::write_chunk(&mut self.transport.out, data),
            Some(BodyLength::CloseDelimited) => self.transport.out.extend_from_slice(data),
            // 204/304: no body may follow the head.
            _ => return Ok(()),
        }
        self.flush_stream().await
    }

    async fn flush_stream(&mut self) -> io::Result<()> {
        let timeout = std::time::Duration::from_millis(self.shard.limits.write_timeout_ms);
        self.transport.flush(&self.shard.stats, &self.shard.clock, timeout).await
    }

    // ----- background work -----

    /// Runs `task` in the background on this shard (Gin's `go func()`), bounded by
    /// `limits.max_background_tasks`: past it the task is dropped, counted, and
    /// [`SpawnError::Full`] returned. A panic in the task ends that task alone (logged
    /// and counted); the shard keeps serving.
    pub fn spawn<F>(&self, task: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + 'static,
    {
        self.shard.spawn_background(task)
    }

    // ----- for the engine -----

    /// Replaces whatever the chain wrote with the recovery answer: 500, a JSON error
    /// body with the request id when one is known (and its `X-Request-Id` header).
    pub(crate) fn answer_panic(&mut self) {
        let id = self.values.get::<crate::middleware::RequestId>().copied();
        let resp = self.resp.get_mut();
        resp.reset_for_error(500);
        resp.close = false;
        resp.set_content_type(b"application/json");
        resp.body.clear();
        resp.body.extend_from_slice(br#"{"error":"internal server error""#);
        if let Some(id) = id {
            // Request ids are plain ASCII (`RequestId` refuses anything else).
            resp.body.extend_from_slice(br#","request_id":""#);
            resp.body.extend_from_slice(id.as_str().as_bytes());
            resp.body.push(b'"');
            resp.headers.extend_from_slice(b"X-Request-Id: ");
            resp.headers.extend_from_slice(id.as_str().as_bytes());
            resp.headers.extend_from_slice(b"\r\n");
        }
        resp.body.push(b'}');
    }

    /// The current request's bytes (empty while the engine holds the buffer).
    pub(crate) fn req(&self) -> &[u8] {
        self.buf.get(self.base..).unwrap_or(&[])
    }

    /// The context's own buffers that an idle connection may hand back to the pool
    /// (emptied first).
    pub(crate) fn idle_buffers(&mut self) -> [&mut Vec<u8>; 3] {
        self.chunked_body.clear();
        self.scratch.clear();
        let body = &mut self.resp.get_mut().body;
        body.clear();
        [&mut self.chunked_body, &mut self.scratch, body]
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

/// Flattens validation errors into `field path → [rule codes]`, nested fields as
/// `outer.inner` and list items as `list[3].inner` (the failure path only).
fn collect_rule_failures(
    errors: &ValidationErrors,
    prefix: &mut String,
    out: &mut std::collections::BTreeMap<String, Vec<String>>,
) {
    for (field, kind) in errors.errors() {
        let at = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(field);
        match kind {
            ValidationErrorsKind::Field(list) => {
                out.entry(prefix.clone()).or_default().extend(list.iter().map(|e| e.code.to_string()));
            }
            ValidationErrorsKind::Struct(inner) => collect_rule_failures(inner, prefix, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    let at_item = prefix.len();
                    prefix.push('[');
                    prefix.push_str(itoa::Buffer::new().format(*i));
                    prefix.push(']');
                    collect_rule_failures(inner, prefix, out);
                    prefix.truncate(at_item);
                }
            }
        }
        prefix.truncate(at);
    }
}

/// Bodies up to this size parse with the shard's kept simd-json buffers; larger ones get
/// buffers of their own, freed after the parse, so one large body does not pin its size
/// of memory on the shard. The kept set stays under about 400 KiB (two copies of the
/// body, four bytes of index per structural character, the stage-2 stack).
const KEPT_JSON_BUFFERS_UP_TO: usize = 64 << 10;

thread_local! {
    /// The shard's simd-json working buffers (input copy with padding, string buffer,
    /// structural indexes, stage-2 stack), kept between parses: without them every bind
    /// allocates four buffers, two of them at least the body's size (large requests to
    /// malloc, which consolidate its free lists each time). A parse never awaits, so one
    /// set per thread serves every connection.
    static JSON_BUFFERS: RefCell<Option<simd_json::Buffers>> = const { RefCell::new(None) };
}

/// Runs `parse` with the shard's kept simd-json buffers (a fresh set for a body over
/// [`KEPT_JSON_BUFFERS_UP_TO`], or when a parse on this thread is already using them).
fn with_json_buffers<R>(len: usize, parse: impl FnOnce(&mut simd_json::Buffers) -> R) -> R {
    if len > KEPT_JSON_BUFFERS_UP_TO {
        return parse(&mut simd_json::Buffers::new(len));
    }
    JSON_BUFFERS.with(|kept| match kept.try_borrow_mut() {
        Ok(mut kept) => {
            parse(kept.get_or_insert_with(|| simd_json::Buffers::new(KEPT_JSON_BUFFERS_UP_TO / 16)))
        }
        Err(_) => parse(&mut simd_json::Buffers::new(len)),
    })
}
