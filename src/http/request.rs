//! Request heads: parsing (plain heads by [`super::scan`], the rest by httparse), and the
//! framing rules that stop request smuggling.
//!
//! The head is parsed straight out of the connection's read buffer; every string in a
//! [`RequestHead`] is a [`Span`] (offsets into that buffer), so nothing is copied and the
//! head can be kept in the connection's reusable [`crate::Context`] without lifetimes.
//!
//! Framing rules (RFC 9112 section 6): `Content-Length` must be plain digits and agree
//! with itself; `Transfer-Encoding` must end in exactly one `chunked`; both together are
//! refused; HTTP/1.1 needs exactly one `Host`. Each breach is an [`HttpError`] and the
//! connection closes after the answer: these are the request-smuggling vectors.
//!
//! What httparse tolerates and ringo does not:
//!
//! - a bare LF as a line ending, or a CR not followed by LF, anywhere in the head
//!   (RFC 9112 section 2.2 lets a server refuse them; a front end that splits lines
//!   differently would see other requests): [`HttpError::BareLineEnding`];
//! - more than one SP between the parts of the request line (`request-line = method SP
//!   request-target SP HTTP-version`): 400, not 505, whatever the version looks like;
//! - a `%` in the path not followed by two hex digits (RFC 3986 section 2.1), so no
//!   handler sees a malformed path: [`HttpError::InvalidTarget`];
//! - a `Host` value that is not `uri-host [ ":" port ]` (RFC 9110 section 7.2):
//!   [`HttpError::InvalidHost`].
//!
//! An absolute-form target (`GET http://host/p?q HTTP/1.1`) is reduced to its path and
//! query; an empty path is `/`, and its authority replaces the `Host` field's value
//! (RFC 9112 section 3.2.2), so every reader of `Host` sees the authority.
//!
//! Offsets are `u32`: nothing this parser accepts ends past [`SPAN_MAX`], whatever the
//! limits say (`Limits::validate` refuses limits that would allow it).

use std::mem::MaybeUninit;
use std::net::Ipv6Addr;

use super::chars::{IPV_FUTURE, REG_NAME, hex_value, is};
use super::error::HttpError;
use super::limits::{HEADER_ARRAY, Limits};
use super::method::Method;
use super::scan::{self, Scanned};
use super::words::{Stop, find_before, same_bytes, token_eq_lower};

/// The largest offset a [`Span`] can hold: a request (head and in-buffer body) must end
/// at or before it.
pub(crate) const SPAN_MAX: usize = u32::MAX as usize;

/// A byte range in the connection's read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= SPAN_MAX);
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

    /// How many bytes the span covers.
    pub(crate) fn len(self) -> usize {
        (self.end - self.start) as usize
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
    /// The path part of the target (absolute-form targets are reduced to it; an empty
    /// absolute-form path is the last `/` of the scheme's `://`, so it reads `/`).
    pub(crate) path: Span,
    /// The query after `?`, without the `?`.
    pub(crate) query: Option<Span>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    /// Header fields as (name, value) spans, in arrival order. For an absolute-form
    /// target, the `Host` field's value is the target's authority.
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
    /// The last `Host` value found valid (a keep-alive client repeats it).
    host_memo: HostMemo,
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
            host_memo: HostMemo::default(),
        }
    }
}

/// Longest `Host` value [`HostMemo`] keeps.
const HOST_MEMO_MAX: usize = 64;

/// The last `Host` value that passed [`check_authority`]. The requests of a keep-alive
/// connection repeat their `Host`, so a comparison replaces the grammar walk (which was
/// 6 % of a saturated shard's instructions). Validity is a function of the bytes alone,
/// so the memo holds whatever request state it travels with.
#[derive(Debug)]
struct HostMemo {
    bytes: [u8; HOST_MEMO_MAX],
    /// `usize::MAX` until a value is kept.
    len: usize,
}

impl Default for HostMemo {
    fn default() -> HostMemo {
        HostMemo { bytes: [0; HOST_MEMO_MAX], len: usize::MAX }
    }
}

impl HostMemo {
    /// Whether `value` (already trimmed) is a valid `uri-host [ ":" port ]`.
    fn is_valid(&mut self, value: &[u8]) -> bool {
        if self.bytes.get(..self.len).is_some_and(|kept| same_bytes(kept, value)) {
            return true;
        }
        let valid = check_authority(value).is_some();
        if valid && value.len() <= HOST_MEMO_MAX {
            self.bytes[..value.len()].copy_from_slice(value);
            self.len = value.len();
        }
        valid
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
    parse_head_by(buf, limits, head, Path::Fast)
}

/// Which tokenizer [`parse_head_by`] tries first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// [`scan::scan_head`], then httparse for what it leaves.
    Fast,
    /// httparse only ([`paths_agree`] holds the two paths to the same results).
    General,
}

fn parse_head_by(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
    path: Path,
) -> Result<Parse, HttpError> {
    // A head longer than the limit is refused whatever it holds, so the fast path looks
    // no further (and every span it makes fits).
    let window = &buf[..buf.len().min(header_limit(limits))];
    let scanned = match path {
        Path::Fast => scan::scan_head(window, limits.header_count(), &mut head.headers),
        Path::General => None,
    };
    let Scanned { method, known_method, target, minor, head_len } = match scanned {
        Some(scanned) => {
            // A scanned head has no leading empty lines and ends its request line in
            // " HTTP/1.x" CRLF, so the line's length is known without a search; and it
            // ended inside the window, so within `max_header_bytes`. (`tokenize` checks
            // both for the general path, before its line-ending check.)
            let line_len = scanned.target.end as usize + " HTTP/1.1\r\n".len();
            debug_assert_eq!(line_len, request_line_len(buf), "request line end vs full scan");
            if line_len > limits.max_request_line {
                return Err(HttpError::UriTooLong);
            }
            scanned
        }
        None => match tokenize(buf, limits, &mut head.headers)? {
            Some(scanned) => scanned,
            None => return Ok(Parse::Partial),
        },
    };
    head.minor_version = minor;
    head.method = match known_method {
        Some(known) => known,
        None => Method::from_bytes(method.get(buf)).ok_or(HttpError::MethodNotImplemented)?,
    };
    head.head_len = head_len;
    head.target = target;
    let authority = split_target(buf, head)?;

    let mut fields = FieldSummary::default();
    for &(name, value) in &head.headers {
        fields.observe(name.get(buf), value.get(buf), &mut head.host_memo)?;
    }
    fields.finish(head, limits)?;
    if let Some(authority) = authority {
        // RFC 9112 section 3.2.2: the target's authority wins over the Host field.
        for (name, value) in head.headers.iter_mut() {
            if name.get(buf).eq_ignore_ascii_case(b"host") {
                *value = authority;
            }
        }
    }
    Ok(Parse::Complete(head_len))
}

/// Parses `raw` into fresh heads by both paths and compares the outcomes, and the heads
/// when complete; `Ok(true)` when the fast path tokenized it. The differential oracle of
/// the tests and of the `head` fuzz target.
pub(crate) fn paths_agree(raw: &[u8], limits: &Limits) -> Result<bool, String> {
    let mut fast = RequestHead::new(limits.header_count());
    let mut general = RequestHead::new(limits.header_count());
    let got = parse_head_by(raw, limits, &mut fast, Path::Fast);
    let want = parse_head_by(raw, limits, &mut general, Path::General);
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if got != want {
        return Err(format!("fast path {got:?}, general path {want:?}: {:?}", shown()));
    }
    if matches!(want, Ok(Parse::Complete(_))) && format!("{fast:?}") != format!("{general:?}") {
        return Err(format!("heads differ: fast {fast:?}, general {general:?}: {:?}", shown()));
    }
    let window = &raw[..raw.len().min(header_limit(limits))];
    Ok(scan::scan_head(window, limits.header_count(), &mut Vec::new()).is_some())
}

/// The general tokenizer: httparse, then ringo's refusals of what httparse tolerates
/// (bare line endings, a version it lacks told apart from bad syntax). Fills `fields`;
/// `None` while the head is partial.
fn tokenize(
    buf: &[u8],
    limits: &Limits,
    fields: &mut Vec<(Span, Span)>,
) -> Result<Option<Scanned>, HttpError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_ARRAY];
    let slots = &mut slots[..limits.header_count()];
    let mut req = httparse::Request::new(&mut []);
    let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let head_len = match status {
        Ok(httparse::Status::Partial) => {
            check_partial_limits(buf, limits)?;
            return Ok(None);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::Version) => match version_verdict(buf) {
            Verdict::Partial => {
                check_partial_limits(buf, limits)?;
                return Ok(None);
            }
            Verdict::Unsupported => return Err(HttpError::VersionNotSupported),
            Verdict::Malformed => return Err(map_parse_error(buf, limits)),
        },
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(_) => return Err(map_parse_error(buf, limits)),
    };
    // httparse guarantees these are present on Complete.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed);
    };
    let target = Span::of(buf, target.as_bytes());
    if request_line_len(buf) > limits.max_request_line {
        return Err(HttpError::UriTooLong);
    }
    if head_len > header_limit(limits) {
        return Err(HttpError::HeadersTooLarge);
    }
    let method = Span::of(buf, method.as_bytes());
    let crlf_only = lines_end_in_crlf(buf, head_len, method, req.headers);
    debug_assert_eq!(crlf_only, !has_bare_cr_or_lf(&buf[..head_len]), "line-ending check vs full scan");
    if !crlf_only {
        return Err(HttpError::BareLineEnding);
    }
    fields.clear();
    fields.extend(req.headers.iter().map(|h| (Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value))));
    Ok(Some(Scanned { method, known_method: None, target, minor, head_len }))
}

/// `max_header_bytes`, capped so that a head always fits in a [`Span`].
fn header_limit(limits: &Limits) -> usize {
    limits.max_header_bytes.min(SPAN_MAX)
}

/// Whether every line of a head httparse completed ends in CRLF (no bare LF).
///
/// httparse ends a line at `\r\n` or a bare `\n`, and refuses a CR anywhere else, so
/// only line ends need a look: before the request line (empty lines), before each field
/// name, before the final empty line and at its end. That is a few loads per field, where
/// a scan of the whole head ([`has_bare_cr_or_lf`], which `debug_assert!` compares it with)
/// costs a pass over every byte on the hot path.
fn lines_end_in_crlf(buf: &[u8], head_len: usize, method: Span, headers: &[httparse::Header<'_>]) -> bool {
    let crlf_before = |at: usize| at.checked_sub(2).and_then(|from| buf.get(from..at)) == Some(&b"\r\n"[..]);
    let leading = &buf[..method.start as usize];
    leading.len() % 2 == 0
        && leading.chunks_exact(2).all(|pair| pair == b"\r\n")
        && crlf_before(head_len)
        && crlf_before(head_len.saturating_sub(2))
        && headers.iter().all(|h| crlf_before(Span::of(buf, h.name.as_bytes()).start as usize))
}

/// Whether `head` has an LF not preceded by CR, or a CR not followed by LF: a full scan,
/// for heads httparse refused (to name the error) and to check [`lines_end_in_crlf`].
fn has_bare_cr_or_lf(head: &[u8]) -> bool {
    let (Some(&first), Some(&last)) = (head.first(), head.last()) else { return false };
    let mut bad = first == b'\n' || last == b'\r';
    for (&prev, &b) in head.iter().zip(&head[1..]) {
        bad |= (b == b'\n') != (prev == b'\r');
    }
    bad
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
    if buf.len() > header_limit(limits) {
        return Err(HttpError::HeadersTooLarge);
    }
    Ok(())
}

/// The answer to a head httparse refused for its syntax.
fn map_parse_error(buf: &[u8], limits: &Limits) -> HttpError {
    // A CR at the very end may still be followed by its LF.
    let seen = buf.strip_suffix(b"\r").unwrap_or(buf);
    if request_line_len(buf) > limits.max_request_line {
        HttpError::UriTooLong
    } else if has_obs_fold(buf) {
        HttpError::ObsFold
    } else if has_bare_cr_or_lf(seen) {
        HttpError::BareLineEnding
    } else {
        HttpError::Malformed
    }
}

/// What a request line whose version httparse refused deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The line has no LF yet and may still become a well-formed line.
    Partial,
    /// `method SP target SP HTTP/DIGIT.DIGIT`, single spaces: a version ringo lacks (505).
    Unsupported,
    /// Anything else, such as a second SP before the version: not HTTP syntax (400).
    Malformed,
}

/// Sorts a request line with a version httparse refused (it refuses anything but
/// `HTTP/1.0` and `HTTP/1.1`, and reads an extra SP as the start of the version).
fn version_verdict(buf: &[u8]) -> Verdict {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let rest = &buf[start..];
    let (line, finished) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]), true),
        None => (rest.strip_suffix(b"\r").unwrap_or(rest), false),
    };
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::Malformed;
    };
    if method.is_empty() || target.is_empty() {
        return Verdict::Malformed;
    }
    // HTTP-version = HTTP-name "/" DIGIT "." DIGIT (RFC 9112 section 2.3).
    let shape = b"HTTP/0.0";
    let fits = version.len() <= shape.len()
        && version.iter().zip(shape).all(|(&b, &s)| if s == b'0' { b.is_ascii_digit() } else { b == s });
    match (fits, finished) {
        (true, true) if version.len() == shape.len() => Verdict::Unsupported,
        (true, false) => Verdict::Partial,
        _ => Verdict::Malformed,
    }
}

/// Whether a header line in `buf` starts with whitespace (obs-fold, RFC 9112 section 5.2).
fn has_obs_fold(buf: &[u8]) -> bool {
    buf.windows(2).any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}

/// Fills `path` and `query` from `target`; returns an absolute-form target's authority.
///
/// ```text
/// origin-form   = absolute-path [ "?" query ]
/// absolute-form = absolute-URI              ; http:// or https:// authority path-abempty
/// asterisk-form = "*"                       ; OPTIONS only
/// ```
///
/// An absolute-form authority must be a non-empty `uri-host [ ":" port ]` (no userinfo:
/// RFC 9110 section 4.2.4); its empty path means `/`. The path's percent-encoding is
/// checked; the query is left as sent.
fn split_target(buf: &[u8], head: &mut RequestHead) -> Result<Option<Span>, HttpError> {
    let t = head.target;
    let bytes = t.get(buf);
    let base = t.start as usize;
    // (authority, where the path starts, the last "/" of "://" for an empty path)
    let (authority, path_start, slash) =
        if bytes.first() == Some(&b'/') || (bytes == b"*" && head.method == Method::Options) {
            (None, 0, None)
        } else if let Some(scheme) = scheme_len(bytes) {
            let after = &bytes[scheme..];
            let end = after.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(after.len());
            if check_authority(&after[..end]).is_none_or(|host| host.is_empty()) {
                return Err(HttpError::InvalidTarget);
            }
            let slash = Span::new(base + scheme - 1, base + scheme);
            (Some(Span::new(base + scheme, base + scheme + end)), scheme + end, Some(slash))
        } else {
            return Err(HttpError::InvalidTarget);
        };
    let rest = &bytes[path_start..];
    let path_at = base + path_start;
    // One pass in the common case: the path ends at '?' (or the end) and holds no '%'.
    let mut path_len = find_before(buf, path_at, base + bytes.len(), Stop::QueryOrEscape)
        .map_or(rest.len(), |at| at - path_at);
    if rest.get(path_len) == Some(&b'%') {
        path_len += rest[path_len..].iter().position(|&b| b == b'?').unwrap_or(rest.len() - path_len);
        if !pct_encoding_ok(&rest[..path_len]) {
            return Err(HttpError::InvalidTarget);
        }
    }
    head.path = match slash {
        Some(slash) if path_len == 0 => slash,
        _ => Span::new(path_at, path_at + path_len),
    };
    head.query = (path_len < rest.len()).then(|| Span::new(path_at + path_len + 1, base + bytes.len()));
    Ok(authority)
}

/// The length of an `http://` or `https://` prefix of `target` (any case).
fn scheme_len(target: &[u8]) -> Option<usize> {
    [&b"http://"[..], b"https://"].into_iter().find_map(|scheme| {
        let prefix = target.get(..scheme.len())?;
        prefix.eq_ignore_ascii_case(scheme).then_some(scheme.len())
    })
}

/// Checks `uri-host [ ":" port ]` and returns the uri-host (RFC 3986 section 3.2):
///
/// ```text
/// uri-host    = IP-literal / IPv4address / reg-name
/// IP-literal  = "[" ( IPv6address / IPvFuture ) "]"
/// IPvFuture   = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
/// reg-name    = *( unreserved / pct-encoded / sub-delims )   ; may be empty
/// port        = *DIGIT                                         ; here at most 65535
/// ```
fn check_authority(authority: &[u8]) -> Option<&[u8]> {
    let (host, port) = if let Some(inner) = authority.strip_prefix(b"[") {
        let close = inner.iter().position(|&b| b == b']')?;
        if !is_ip_literal(&inner[..close]) {
            return None;
        }
        let host = &authority[..close + 2];
        match &inner[close + 1..] {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    } else {
        let (host, rest) = authority.split_at(reg_name_len(authority)?);
        match rest {
            [] => (host, None),
            [b':', port @ ..] => (host, Some(port)),
            _ => return None,
        }
    };
    port.is_none_or(is_port).then_some(host)
}

/// The length of the `reg-name` that starts `s` (it runs on every request's Host); `None`
/// when a `%` there does not start a pct-encoded triple.
fn reg_name_len(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        at += s[at..].iter().position(|&b| !is(&REG_NAME, b)).unwrap_or(s.len() - at);
        match s.get(at..) {
            Some([b'%', hi, lo, ..]) if hex_value(*hi).is_some() && hex_value(*lo).is_some() => at += 3,
            Some([b'%', ..]) => return None,
            _ => return Some(at),
        }
    }
}

/// `port = *DIGIT`, at most 65535.
fn is_port(digits: &[u8]) -> bool {
    let mut n: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return false;
        }
        n = n * 10 + u32::from(d - b'0');
        if n > 65_535 {
            return false;
        }
    }
    true
}

/// The inside of an `IP-literal`'s brackets: an IPv6 address or an `IPvFuture`.
fn is_ip_literal(inner: &[u8]) -> bool {
    match inner {
        [b'v' | b'V', rest @ ..] => {
            let Some(dot) = rest.iter().position(|&b| b == b'.') else { return false };
            let (version, tail) = (&rest[..dot], &rest[dot + 1..]);
            !version.is_empty()
                && version.iter().all(|&b| hex_value(b).is_some())
                && !tail.is_empty()
                && tail.iter().all(|&b| is(&IPV_FUTURE, b))
        }
        _ => std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok()),
    }
}

/// Whether every `%` in `s` starts a `pct-encoded = "%" HEXDIG HEXDIG` (RFC 3986 section 2.1).
fn pct_encoding_ok(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(i) = s[from..].iter().position(|&b| b == b'%') {
        let at = from + i;
        match s.get(at + 1..at + 3) {
            Some(&[hi, lo]) if hex_value(hi).is_some() && hex_value(lo).is_some() => from = at + 3,
            _ => return false,
        }
    }
    true
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
    /// Notes one field. The name is a token; most are none of the five that matter,
    /// so its length picks the one comparison worth making (a word at a time). The value
    /// comes without surrounding SP and HTAB (both tokenizers trim them), so only the
    /// parts of a list need trimming.
    fn observe(&mut self, name: &[u8], value: &[u8], host_memo: &mut HostMemo) -> Result<(), HttpError> {
        debug_assert_eq!(trim_ows(value), value, "field values arrive trimmed");
        match name.len() {
            4 if token_eq_lower(name, b"host") => {
                self.hosts += 1;
                if !host_memo.is_valid(value) {
                    return Err(HttpError::InvalidHost);
                }
            }
            6 if token_eq_lower(name, b"expect") => {
                self.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
            10 if token_eq_lower(name, b"connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = trim_ows(token);
                    if token.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    }
                }
            }
            14 if token_eq_lower(name, b"content-length") => {
                let n = parse_content_length(value)?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(HttpError::ConflictingContentLength),
                    _ => self.content_length = Some(n),
                }
            }
            17 if token_eq_lower(name, b"transfer-encoding") => {
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
            }
            _ => {}
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
            // The body stays in the read buffer: it must end within a span's reach too.
            if n > limits.max_body_bytes as u64 || n > (SPAN_MAX - head.head_len) as u64 {
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
        let heads = [
            &GOOD[..GOOD.len() - 3],
            "\r\nGET http://[::1]:8080?q=%41 HTTP/1.1\r\nHost: [v1.a:b]:\r\nX:\t1 \r\n\r\n",
            "OPTIONS * HTTP/1.0\r\nHost:\r\n\r\n",
        ];
        for head in heads {
            assert!(matches!(parse(head), Ok((Parse::Complete(_), _))), "{head:?}");
            for end in 0..head.len() {
                let (p, _) = parse(&head[..end]).expect("prefix is valid");
                assert_eq!(p, Parse::Partial, "prefix of {end} bytes of {head:?}");
            }
        }
        // A version httparse refuses stays partial until its line ends: then it is 505.
        let other = "GET / HTTP/2.0\r\n";
        for end in 0..other.len() {
            assert_eq!(parse(&other[..end]).expect("prefix").0, Parse::Partial, "{end}");
        }
        assert_eq!(err(other), HttpError::VersionNotSupported);
    }

    #[test]
    fn bare_cr_or_lf_in_the_head_is_refused() {
        // (request): each has one line ending that is not CRLF.
        let cases = [
            "GET / HTTP/1.1\nHost: a\r\n\r\n",         // bare LF after the request line
            "GET / HTTP/1.1\r\nHost: a\n\r\n",         // bare LF after a field
            "GET / HTTP/1.1\r\nHost: a\r\n\n",         // bare LF as the empty line
            "GET / HTTP/1.1\n\n",                      // LF-only head
            "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",     // bare LF before the request line
            "GET / HTTP/1.1\rHost: a\r\n\r\n",         // bare CR after the request line
            "GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", // bare CR between fields
            "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\r\n\r\n", // CR CR LF
            "GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n", // CR inside a value
            // The smuggling shape: a front end reading only CRLF sees one request here.
            "GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in cases {
            assert_eq!(err(raw), HttpError::BareLineEnding, "{raw:?}");
        }
        assert!(!has_bare_cr_or_lf(b""));
        assert!(!has_bare_cr_or_lf(b"\r\n\r\n"));
        assert!(has_bare_cr_or_lf(b"\r"));
        assert!(has_bare_cr_or_lf(b"a\n"));
    }

    #[test]
    fn line_end_check_agrees_with_a_full_scan() {
        // The fast check trusts httparse to refuse a CR anywhere but before LF. Every head
        // below with one byte replaced or inserted is parsed: a complete head must have
        // no bare CR or LF (and the debug_assert! in parse_head compares both checks).
        let heads = ["GET /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1 2\r\nY:\r\n\r\n", "\r\nGET / HTTP/1.0\r\n\r\n"];
        for head in heads {
            let head = head.as_bytes();
            for at in 0..=head.len() {
                for b in [b'\r', b'\n', b' ', b'\t', b':', b'a', 0x80] {
                    let mut replaced = head.to_vec();
                    if at < head.len() {
                        replaced[at] = b;
                    }
                    let mut inserted = head.to_vec();
                    inserted.insert(at, b);
                    for raw in [replaced, inserted] {
                        let limits = Limits::default();
                        let mut h = RequestHead::new(limits.header_count());
                        if let Ok(Parse::Complete(n)) = parse_head(&raw, &limits, &mut h) {
                            let shown = String::from_utf8_lossy(&raw);
                            assert!(!has_bare_cr_or_lf(&raw[..n]), "{shown:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn request_line_spacing_and_versions() {
        // (request, expected error): 505 only for a well-formed line with another version.
        let cases: &[(&str, HttpError)] = &[
            ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::Malformed), // two SP before the version
            ("GET /  HTTP/2.0\r\nHost: a\r\n\r\n", HttpError::Malformed), // same, other version
            ("GET / x HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::Malformed), // a space in the target
            ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", HttpError::Malformed), // trailing SP
            ("GET / HTTP/2.0 \r\nHost: a\r\n\r\n", HttpError::Malformed), // trailing SP, other version
            ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", HttpError::Malformed), // three-digit version
            ("GET / HTTP/12.0\r\nHost: a\r\n\r\n", HttpError::Malformed),
            ("GET / HTTP/2\r\nHost: a\r\n\r\n", HttpError::Malformed),
            ("GET / http/1.1\r\nHost: a\r\n\r\n", HttpError::Malformed), // HTTP-name is case-sensitive
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", HttpError::VersionNotSupported),
            ("GET / HTTP/0.9\r\nHost: a\r\n\r\n", HttpError::VersionNotSupported),
            ("GET / HTTP/2.0x", HttpError::Malformed), // no LF yet, but no version either
        ];
        for (raw, want) in cases {
            assert_eq!(err(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn host_values() {
        // (Host value, valid): uri-host [ ":" port ], RFC 3986 section 3.2.2.
        let cases = [
            ("example.com", true),
            ("example.com:8080", true),
            ("", true),   // empty reg-name: allowed for origin-form
            ("a:", true), // port = *DIGIT may be empty
            ("a:65535", true),
            ("a:065535", true), // leading zeros are digits
            ("127.0.0.1:80", true),
            ("[::1]:8080", true),
            ("[2001:db8::7]", true),
            ("[::ffff:192.0.2.1]", true),
            ("[v1.fe:x]", true),               // IPvFuture
            ("ex%41mple.com", true),           // pct-encoded reg-name
            ("a_b~c-d", true),                 // unreserved
            ("a b", false),                    // SP inside
            ("a/b", false),                    // path in Host
            ("user@a", false),                 // userinfo
            ("a:b", false),                    // non-numeric port
            ("a:65536", false),                // port over 65535
            ("a:99999999999999999999", false), // port overflow
            ("a:1:2", false),                  // two colons
            ("a:-1", false),
            ("[::1", false),       // unclosed bracket
            ("::1", false),        // IPv6 without brackets
            ("[::g]", false),      // not an IPv6 address
            ("[::1%eth0]", false), // zone id (not RFC 3986)
            ("[::1]x", false),     // junk after the bracket
            ("[v1.]", false),      // IPvFuture without tail
            ("[vz.a]", false),     // IPvFuture without hex version
            ("a%zz", false),       // bad pct-encoding
            ("a%4", false),
            ("\"a\"", false),
        ];
        for (host, ok) in cases {
            let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let got = parse(&raw).map(|_| ());
            let want = if ok { Ok(()) } else { Err(HttpError::InvalidHost) };
            assert_eq!(got, want, "{host:?}");
        }
        // One reused head (as a connection reuses it), each value after every other:
        // the memo of the last valid Host never lets a different value skip the check.
        let limits = Limits::default();
        let mut head = RequestHead::new(limits.header_count());
        let long_valid = "h".repeat(HOST_MEMO_MAX + 1);
        let cases: Vec<(&str, bool)> =
            cases.iter().copied().chain([(long_valid.as_str(), true), ("hh", true)]).collect();
        for (before, _) in &cases {
            for (host, ok) in &cases {
                for value in [*before, *host] {
                    let raw = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
                    let _ = parse_head(raw.as_bytes(), &limits, &mut head);
                }
                let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
                let got = parse_head(raw.as_bytes(), &limits, &mut head).map(|_| ());
                let want = if *ok { Ok(()) } else { Err(HttpError::InvalidHost) };
                assert_eq!(got, want, "{host:?} after {before:?}");
            }
        }
    }

    fn both_paths_agree(raw: &[u8], limits: &Limits) -> bool {
        paths_agree(raw, limits).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_fast_path_changes_no_answer() {
        let heads: [&[u8]; 8] = [
            b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            b"POST /users/42?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            b"GET http://ex.com:81/p%41?q HTTP/1.0\r\nConnection: keep-alive\r\nHost: b\r\n\r\n",
            b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nA:\r\nB: \t x \t\r\nC:\ty\r\nD: caf\xc3\xa9\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
            b"DELETE /a/b/c/d/e/f/g/h HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            b"GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\r\n",
        ];
        let small = Limits { max_headers: 3, max_request_line: 24, ..Limits::default() };
        // The fast path's window ends inside most of these heads.
        let short = Limits { max_header_bytes: 48, ..Limits::default() };
        for limits in [Limits::default(), small, short] {
            for raw in heads {
                both_paths_agree(raw, &limits);
                // Every prefix (partial heads), every one-byte change, every one-byte
                // insertion: the answers agree, and most of the plain ones are fast.
                for cut in 0..raw.len() {
                    both_paths_agree(&raw[..cut], &limits);
                }
                for at in 0..raw.len() {
                    for b in 0..=255u8 {
                        let mut changed = raw.to_vec();
                        changed[at] = b;
                        both_paths_agree(&changed, &limits);
                        let mut longer = raw.to_vec();
                        longer.insert(at, b);
                        both_paths_agree(&longer, &limits);
                    }
                }
            }
        }
        for raw in heads {
            assert!(
                both_paths_agree(raw, &Limits::default()),
                "{:?} takes the fast path",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn percent_encoding_in_the_path() {
        // (target, valid): a "%" in the path must start "%" HEXDIG HEXDIG.
        let cases = [
            ("/a%2Fb%c3%A9", true),
            ("/a?x=%zz", true),       // the query is left as sent
            ("/a%zz", false),         // not hex
            ("/a%2", false),          // one digit, end of path
            ("/a%2?x=1", false),      // one digit, then the query
            ("/a%", false),           // "%" last
            ("/%%41", false),         // "%%" is no escape
            ("http://h/a%g1", false), // absolute-form path is checked too
        ];
        for (target, ok) in cases {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let got = parse(&raw).map(|_| ());
            let want = if ok { Ok(()) } else { Err(HttpError::InvalidTarget) };
            assert_eq!(got, want, "{target:?}");
        }
    }

    #[test]
    fn content_length_bodies_stay_within_span_reach() {
        let limits = Limits { max_body_bytes: usize::MAX, ..Limits::default() };
        let at = |n: usize| format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\n\r\n");
        let head_len = at(SPAN_MAX).len();
        let fits = at(SPAN_MAX - head_len);
        assert_eq!(fits.len(), head_len, "same digit count on both sides of the bound");
        let (_, h) = parse_with(&fits, &limits).expect("ends exactly at the bound");
        assert_eq!(h.framing, BodyFraming::Length((SPAN_MAX - head_len) as u64));
        assert_eq!(parse_with(&at(SPAN_MAX - head_len + 1), &limits).unwrap_err(), HttpError::BodyTooLarge);
        assert_eq!(parse_with(&at(1 << 40), &limits).unwrap_err(), HttpError::BodyTooLarge);
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
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HttpError::InvalidHost),
            ("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::InvalidTarget),
            ("GET / HTTP/1.1\nHost: a\n\n", HttpError::BareLineEnding),
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

    /// (path, query, Host value) as a handler would read them.
    fn view(raw: &str) -> (String, Option<String>, Option<String>) {
        let (_, h) = parse(raw).expect("valid");
        let text = |s: Span| String::from_utf8_lossy(s.get(raw.as_bytes())).into_owned();
        let host = h.headers.iter().find(|(n, _)| n.get(raw.as_bytes()).eq_ignore_ascii_case(b"host"));
        (text(h.path), h.query.map(text), host.map(|(_, v)| text(*v)))
    }

    #[test]
    fn absolute_form_empty_path_is_root_and_authority_replaces_host() {
        let s = |v: &str| Some(v.to_string());
        // (request, path, query, Host as seen)
        let cases = [
            ("GET http://example.com HTTP/1.1\r\nHost: other\r\n\r\n", "/", None, s("example.com")),
            ("GET http://h:8080?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", "/", s("x=1"), s("h:8080")),
            ("GET HTTPS://[::1]/a?b HTTP/1.1\r\nHost: h\r\n\r\n", "/a", s("b"), s("[::1]")),
            ("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", "/", None, s("h")),
            ("GET http://h? HTTP/1.1\r\nHost: h\r\n\r\n", "/", s(""), s("h")),
            ("GET http://h HTTP/1.0\r\n\r\n", "/", None, None), // HTTP/1.0: no Host to replace
            ("GET /p?q HTTP/1.1\r\nHost: h:1\r\n\r\n", "/p", s("q"), s("h:1")), // origin-form untouched
        ];
        for (raw, path, query, host) in cases {
            assert_eq!(view(raw), (path.to_string(), query, host), "{raw:?}");
        }
        // (target): absolute-form authorities that are refused.
        let bad = [
            "http://user@h/",  // userinfo (RFC 9110 section 4.2.4)
            "http:///a",       // empty host
            "http://?x",       // empty host, query only
            "http://",         // nothing after the scheme
            "http://h:x/",     // non-numeric port
            "http://h:70000/", // port over 65535
            "http://[::1/",    // unclosed IP-literal
            "http://h%zz/",    // bad pct-encoding in the reg-name
            "ftp://h/",        // another scheme
            "http:/a",         // not "://"
        ];
        for target in bad {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(parse(&raw).map(|_| ()), Err(HttpError::InvalidTarget), "{target:?}");
        }
    }
}
