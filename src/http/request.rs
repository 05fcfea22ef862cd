//! Request heads: parsing with httparse, and the framing rules that stop request smuggling.
//!
//! The head is parsed straight out of the connection's read buffer; every string in a
//! [`RequestHead`] is a [`Span`] (offsets into that buffer), so nothing is copied and the
//! head can be kept in the connection's reusable [`crate::Context`] without lifetimes.
//!
//! Framing rules (RFC 9112 section 6): `Content-Length` must be plain digits and agree
//! with itself; `Transfer-Encoding` must end in exactly one `chunked`; both together are
//! refused; HTTP/1.1 needs exactly one `Host`. Each breach is an [`HttpError`] and the
//! connection closes after the answer: these are the request-smuggling vectors.

use std::mem::MaybeUninit;

use super::error::HttpError;
use super::limits::{HEADER_ARRAY, Limits};
use super::method::Method;

/// A byte range in the connection's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end);
        Span { start: start as u32, end: end as u32 }
    }

    /// The span of `part`, which must be a sub-slice of `base`.
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - base.as_ptr() as usize;
        debug_assert!(start + part.len() <= base.len());
        Span::new(start, start + part.len())
    }

    pub(crate) fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// A chunked body follows the head.
    Chunked,
}

/// A parsed request head. Reused across the requests of a connection.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    /// The request target as sent.
    pub(crate) target: Span,
    /// The path part of the target (absolute-form targets are reduced to it).
    pub(crate) path: Span,
    /// The query after `?`, without the `?`.
    pub(crate) query: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    /// Header fields as (name, value) spans, in arrival order.
    pub(crate) headers: Vec<(Span, Span)>,
    /// Bytes from the start of the buffer to the end of the empty line.
    pub(crate) head_len: usize,
    pub(crate) framing: BodyFraming,
    /// Whether the connection stays open after this request (before the handler's say).
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub(crate) expect_continue: bool,
    /// A POST, PUT or PATCH came with no length (and `limits.require_length` is on).
    pub(crate) length_missing: bool,
}

impl RequestHead {
    pub(crate) fn new(max_headers: usize) -> RequestHead {
        RequestHead {
            method: Method::Get,
            target: Span::default(),
            path: Span::default(),
            query: None,
            minor_version: 1,
            headers: Vec::with_capacity(max_headers),
            head_len: 0,
            framing: BodyFraming::None,
            keep_alive: true,
            expect_continue: false,
            length_missing: false,
        }
    }
}

/// The outcome of feeding bytes to the head parser. "Need more" is a value, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// A complete head of this many bytes was parsed into the [`RequestHead`].
    Complete(usize),
    /// The bytes so far are a valid prefix of a head; read more.
    Partial,
}

/// Parses one request head from the start of `buf` into `head`.
///
/// Limits are checked on partial input too, so a client cannot make the buffer grow
/// past `max_header_bytes` by never finishing its head.
pub(crate) fn parse_head(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Result<Parse, HttpError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_ARRAY];
    let slots = &mut slots[..limits.header_count()];
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let head_len = match status {
        Ok(httparse::Status::Partial) => {
            check_partial_limits(buf, limits)?;
            return Ok(Parse::Partial);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(e) => return Err(map_parse_error(e, buf, limits)),
    };
    if request_line_len(buf) > limits.max_request_line {
        return Err(HttpError::UriTooLong);
    }
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    // httparse guarantees these are present on Complete.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed);
    };
    head.minor_version = minor;
    head.method = Method::from_bytes(method.as_bytes()).ok_or(HttpError::MethodNotImplemented)?;
    head.head_len = head_len;
    head.target = Span::of(buf, target.as_bytes());
    split_target(buf, head)?;

    head.headers.clear();
    let mut fields = FieldSummary::default();
    for h in req.headers.iter() {
        let name = Span::of(buf, h.name.as_bytes());
        let value = Span::of(buf, h.value);
        head.headers.push((name, value));
        fields.observe(h.name.as_bytes(), h.value)?;
    }
    fields.finish(head, limits)?;
    Ok(Parse::Complete(head_len))
}

/// Length of the request line including its line ending (leading empty lines included).
fn request_line_len(buf: &[u8]) -> usize {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
    match memchr_newline(&buf[start..]) {
        Some(i) => start + i + 1,
        None => buf.len(),
    }
}

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

fn check_partial_limits(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    if request_line_len(buf) > limits.max_request_line {
        return Err(HttpError::UriTooLong);
    }
    if buf.len() > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge);
    }
    Ok(())
}

fn map_parse_error(e: httparse::Error, buf: &[u8], limits: &Limits) -> HttpError {
    match e {
        httparse::Error::Version => HttpError::VersionNotSupported,
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        _ if request_line_len(buf) > limits.max_request_line => HttpError::UriTooLong,
        _ if has_obs_fold(buf) => HttpError::ObsFold,
        _ => HttpError::Malformed,
    }
}

/// Whether a header line in `buf` starts with whitespace (obs-fold, RFC 9112 section 5.2).
fn has_obs_fold(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}

/// Fills `path` and `query` from `target`.
///
/// origin-form `/p?q`, absolute-form `http://host/p?q` (RFC 9112 section 3.2.2: servers
/// must accept it) and `*` for OPTIONS.
fn split_target(buf: &[u8], head: &mut RequestHead) -> Result<(), HttpError> {
    let t = head.target;
    let bytes = t.get(buf);
    let path_start = if bytes.first() == Some(&b'/') || (bytes == b"*" && head.method == Method::Options) {
        0
    } else if let Some(after_scheme) = strip_scheme(bytes) {
        let authority_start = bytes.len() - after_scheme.len();
        match after_scheme.iter().position(|&b| b == b'/' || b == b'?') {
            Some(i) if after_scheme[i] == b'/' => authority_start + i,
            _ => return Err(HttpError::InvalidTarget),
        }
    } else {
        return Err(HttpError::InvalidTarget);
    };
    let rest = &bytes[path_start..];
    let base = t.start as usize + path_start;
    match rest.iter().position(|&b| b == b'?') {
        Some(q) => {
            head.path = Span::new(base, base + q);
            head.query = Some(Span::new(base + q + 1, base + rest.len()));
        }
        None => {
            head.path = Span::new(base, base + rest.len());
            head.query = None;
        }
    }
    Ok(())
}

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// What the framing-relevant header fields said, gathered in one pass.
#[derive(Default)]
struct FieldSummary {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// `chunked` was seen, and so far it is the last coding.
    chunked_last: bool,
    chunked_count: u32,
    /// A coding other than `chunked` appeared.
    other_coding: bool,
    empty_coding: bool,
    hosts: u32,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
}

impl FieldSummary {
    fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<(), HttpError> {
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            match self.content_length {
                Some(prev) if prev != n => return Err(HttpError::ConflictingContentLength),
                _ => self.content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            for coding in value.split(|&b| b == b',') {
                let coding = trim_ows(coding);
                if coding.is_empty() {
                    self.empty_coding = true;
                } else if coding.eq_ignore_ascii_case(b"chunked") {
                    self.chunked_count += 1;
                    self.chunked_last = true;
                } else {
                    self.other_coding = true;
                    self.chunked_last = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim_ows(token);
                if token.eq_ignore_ascii_case(b"close") {
                    self.conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.conn_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue = trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    fn finish(self, head: &mut RequestHead, limits: &Limits) -> Result<(), HttpError> {
        let http11 = head.minor_version == 1;
        if self.hosts > 1 {
            return Err(HttpError::DuplicateHost);
        }
        if http11 && self.hosts == 0 {
            return Err(HttpError::MissingHost);
        }
        head.framing = if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(HttpError::ContentLengthAndTransferEncoding);
            }
            if !http11 {
                return Err(HttpError::TransferEncodingInHttp10);
            }
            if self.empty_coding || self.chunked_count > 1 {
                return Err(HttpError::InvalidTransferEncoding);
            }
            if self.other_coding {
                // A coding we do not decode: 501 when chunked still frames the message,
                // 400 when it does not (the length would be unknowable).
                return Err(if self.chunked_last {
                    HttpError::UnsupportedTransferCoding
                } else {
                    HttpError::InvalidTransferEncoding
                });
            }
            head.length_missing = false;
            BodyFraming::Chunked
        } else if let Some(n) = self.content_length {
            head.length_missing = false;
            if n > limits.max_body_bytes as u64 {
                return Err(HttpError::BodyTooLarge);
            }
            if n == 0 { BodyFraming::None } else { BodyFraming::Length(n) }
        } else {
            // Answered with 411 once routing shows the request reached a route: a
            // wrong method or path still gets its 405 or 404.
            head.length_missing = limits.require_length && head.method.expects_body();
            BodyFraming::None
        };
        head.keep_alive = if http11 { !self.conn_close } else { self.conn_keep_alive && !self.conn_close };
        head.expect_continue = http11 && self.expect_continue;
        Ok(())
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 section 8.6); anything else is refused.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    if value.is_empty() || value.len() > 19 {
        return Err(HttpError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(HttpError::InvalidContentLength);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Ok(n)
}

/// Trims optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<(Parse, RequestHead), HttpError> {
        parse_with(raw, &Limits::default())
    }

    fn parse_with(raw: &str, limits: &Limits) -> Result<(Parse, RequestHead), HttpError> {
        let mut head = RequestHead::new(limits.header_count());
        let p = parse_head(raw.as_bytes(), limits, &mut head)?;
        Ok((p, head))
    }

    fn err(raw: &str) -> HttpError {
        parse(raw).expect_err("must be refused")
    }

    const GOOD: &str = "POST /users/42?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn parses_a_complete_head() {
        let (p, head) = parse(GOOD).expect("valid");
        assert_eq!(p, Parse::Complete(GOOD.len() - 3));
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path.get(GOOD.as_bytes()), b"/users/42");
        assert_eq!(head.query.map(|q| q.get(GOOD.as_bytes())), Some(&b"x=1"[..]));
        assert_eq!(head.framing, BodyFraming::Length(3));
        assert!(head.keep_alive);
        assert_eq!(head.headers.len(), 2);
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_partial() {
        let head_only = &GOOD[..GOOD.len() - 3];
        for end in 0..head_only.len() {
            let (p, _) = parse(&head_only[..end]).expect("prefix is valid");
            assert_eq!(p, Parse::Partial, "prefix of {end} bytes");
        }
    }

    #[test]
    fn framing_and_limit_table() {
        // (request, expected error)
        let cases: &[(&str, HttpError)] = &[
            ("GET / HTTP/1.1\r\n\r\n", HttpError::MissingHost),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", HttpError::DuplicateHost),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::ContentLengthAndTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                HttpError::ConflictingContentLength,
            ),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", HttpError::InvalidContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3 4\r\n\r\n", HttpError::InvalidContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", HttpError::InvalidContentLength),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,3\r\n\r\n", HttpError::InvalidContentLength),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                HttpError::InvalidContentLength,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                HttpError::UnsupportedTransferCoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                HttpError::InvalidTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                HttpError::InvalidTransferEncoding,
            ),
            // chunked twice, split over two fields: a classic smuggling vector.
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                HttpError::InvalidTransferEncoding,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n",
                HttpError::InvalidTransferEncoding,
            ),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", HttpError::TransferEncodingInHttp10),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", HttpError::ObsFold),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HttpError::VersionNotSupported),
            ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", HttpError::VersionNotSupported),
            ("BREW / HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::MethodNotImplemented),
            ("GET foo HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::InvalidTarget),
            ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::InvalidTarget),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", HttpError::Malformed),
            ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::Malformed),
            ("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n", HttpError::Malformed),
        ];
        for (raw, want) in cases {
            assert_eq!(err(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn limits_apply_to_partial_and_complete_heads() {
        let limits =
            Limits { max_request_line: 32, max_header_bytes: 64, max_headers: 2, ..Limits::default() };
        let long_line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(40));
        assert_eq!(parse_with(&long_line, &limits).unwrap_err(), HttpError::UriTooLong);
        // Still partial, but already too long: refused without waiting for the rest.
        assert_eq!(parse_with(&long_line[..38], &limits).unwrap_err(), HttpError::UriTooLong);
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "b".repeat(60));
        assert_eq!(parse_with(&big, &limits).unwrap_err(), HttpError::HeadersTooLarge);
        let many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse_with(many, &limits).unwrap_err(), HttpError::TooManyHeaders);
        let body = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n";
        assert_eq!(parse(body).unwrap_err(), HttpError::BodyTooLarge);
    }

    #[test]
    fn keep_alive_rules() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ];
        for (raw, want) in cases {
            assert_eq!(parse(raw).expect("valid").1.keep_alive, want, "{raw:?}");
        }
    }

    #[test]
    fn accepted_framings() {
        let (_, h) = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").expect("ok");
        assert_eq!(h.framing, BodyFraming::Chunked);
        let (_, h) = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .expect("ok");
        assert_eq!(h.framing, BodyFraming::Length(5));
        let (_, h) = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").expect("ok");
        assert_eq!(h.framing, BodyFraming::None);
        assert!(!h.length_missing);
        // No length on a body method: flagged, answered 411 once it reaches a route.
        let (_, h) = parse("POST / HTTP/1.1\r\nHost: a\r\n\r\n").expect("ok");
        assert!(h.length_missing);
        let (_, h) = parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("ok");
        assert!(!h.length_missing);
        let (_, h) = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n")
            .expect("ok");
        assert!(h.expect_continue);
        // Leading empty lines before the request line are ignored (RFC 9112 section 2.2).
        let (_, h) = parse("\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n").expect("ok");
        assert_eq!(h.method, Method::Get);
    }

    #[test]
    fn absolute_form_targets_route_on_their_path() {
        let raw = "GET http://example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let (_, h) = parse(raw).expect("ok");
        assert_eq!(h.path.get(raw.as_bytes()), b"/a/b");
        assert_eq!(h.query.map(|q| q.get(raw.as_bytes())), Some(&b"c=d"[..]));
    }
}
