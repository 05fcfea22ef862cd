//! The head parser's fast path: one pass over a plain, complete request head.
//!
//! [`scan_head`] tokenizes the heads almost every client sends: a token method, an ASCII
//! target, `HTTP/1.0` or `HTTP/1.1`, fields of token names and field-value bytes, every
//! line ending in CRLF. It yields exactly the spans httparse would, and for anything
//! else (a partial head, a bare LF, leading empty lines, a non-ASCII target, a byte
//! httparse refuses, more fields than allowed) it yields `None` and httparse decides,
//! with its errors. So the fast path changes no answer; `request`'s tests hold the two
//! paths to the same results over every one-byte change of a set of heads.
//!
//! Written by hand because it measured worth it: httparse cost about 560 instructions
//! per request on a 48-byte head (its runtime SIMD dispatch and a UTF-8 check of the
//! target), a quarter of a saturated shard's instructions. Each part of a line is one
//! class search ([`find`]: sixteen bytes a step with SSE2 on x86_64): the target to its
//! first byte outside `%x21-7E`, a field name to its first byte outside `tchar` (which
//! must be the colon), a value to the line's first control byte but HTAB (which must be
//! the CR of a CRLF). So a byte costs a fraction of an instruction and a line a few
//! dozen: about 500 instructions for wrk's 49-byte head, 2 680 for a 600-byte browser head
//! (3 770 when values were searched eight bytes at a time and names a byte at a time).

use super::chars::{TCHAR, is};
use super::method::Method;
use super::request::Span;
use super::words::{Stop, find, first_control, word_at};

/// The request line's parts and the head's length, from [`scan_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned {
    pub(crate) method: Span,
    /// The method, when the scan recognized it by its bytes (`GET`, `POST`, `PUT`,
    /// `HEAD`: one word comparison); `None` leaves it to `Method::from_bytes`.
    pub(crate) known_method: Option<Method>,
    pub(crate) target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    /// Bytes through the empty line.
    pub(crate) head_len: usize,
}

/// Tokenizes a complete, plain head at the start of `buf`, its fields into `fields`
/// (cleared first) as (name, value) spans, values without surrounding SP and HTAB.
/// `None` when the head is not complete in `buf`, not plain, or has more than
/// `max_fields` fields: the general parser decides then.
pub(crate) fn scan_head(buf: &[u8], max_fields: usize, fields: &mut Vec<(Span, Span)>) -> Option<Scanned> {
    fields.clear();
    let (method_end, known_method) = match word_at(buf, 0) {
        Some(word) if word & LOW4 == GET => (3, Some(Method::Get)),
        Some(word) if word & LOW5 == POST => (4, Some(Method::Post)),
        Some(word) if word & LOW4 == PUT => (3, Some(Method::Put)),
        Some(word) if word & LOW5 == HEAD => (4, Some(Method::Head)),
        _ => (token_end(buf, 0)?, None),
    };
    if method_end == 0 || *buf.get(method_end)? != b' ' {
        return None;
    }
    let target_start = method_end + 1;
    // The target runs to its first byte outside `%x21-7E` (the ASCII a target may hold).
    let target_end = find(buf, target_start, Stop::OutsideTarget)?;
    if target_end == target_start || buf[target_end] != b' ' {
        return None;
    }
    let version = target_end + 1;
    let minor = match (word_at(buf, version)?, buf.get(version + 8..version + 10)?) {
        (HTTP_1_1, b"\r\n") => 1,
        (HTTP_1_0, b"\r\n") => 0,
        _ => return None,
    };
    let mut at = version + 10;
    loop {
        if buf.get(at..at + 2)? == b"\r\n" {
            let target = Span::new(target_start, target_end);
            let method = Span::new(0, method_end);
            return Some(Scanned { method, known_method, target, minor, head_len: at + 2 });
        }
        // field-line = field-name ":" OWS field-value OWS CRLF, the name a token: the
        // first byte outside the token's class must be its colon.
        let colon = find(buf, at, Stop::NotToken)?;
        if colon == at || buf[colon] != b':' {
            return None;
        }
        // The value ends at the line's first control byte but HTAB.
        let mut end = first_control(buf, colon + 1)?;
        while buf[end] == b'\t' {
            end = first_control(buf, end + 1)?;
        }
        if buf[end] != b'\r' || *buf.get(end + 1)? != b'\n' {
            return None;
        }
        // Without OWS at either end (`end` is a CR, so each loop stops by itself).
        let mut start = colon + 1;
        while matches!(buf[start], b' ' | b'\t') {
            start += 1;
        }
        let mut stop = end;
        while stop > start && matches!(buf[stop - 1], b' ' | b'\t') {
            stop -= 1;
        }
        if fields.len() == max_fields {
            return None;
        }
        fields.push((Span::new(at, colon), Span::new(start, stop)));
        at = end + 2;
    }
}

/// The first four and five bytes of a word.
const LOW4: u64 = 0xffff_ffff;
const LOW5: u64 = 0xff_ffff_ffff;
/// The request lines' starts the scan recognizes by one comparison.
const GET: u64 = prefix(b"GET ");
const PUT: u64 = prefix(b"PUT ");
const POST: u64 = prefix(b"POST ");
const HEAD: u64 = prefix(b"HEAD ");
/// The versions, as words.
const HTTP_1_1: u64 = prefix(b"HTTP/1.1");
const HTTP_1_0: u64 = prefix(b"HTTP/1.0");

/// `start` as the low bytes of a little-endian word (as [`word_at`] reads them).
const fn prefix(start: &[u8]) -> u64 {
    let mut word = 0;
    let mut i = start.len();
    while i > 0 {
        i -= 1;
        word = (word << 8) | start[i] as u64;
    }
    word
}

/// The end of the run of `tchar` bytes from `from`; `None` if `buf` ends inside it.
#[inline]
fn token_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while is(&TCHAR, *buf.get(at)?) {
        at += 1;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(raw: &[u8]) -> Option<(Scanned, Vec<(Span, Span)>)> {
        let mut fields = Vec::new();
        scan_head(raw, 64, &mut fields).map(|s| (s, fields))
    }

    #[test]
    fn plain_heads_take_the_fast_path() {
        let heads: [&[u8]; 4] = [
            b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
            b"POST /users?x=1 HTTP/1.0\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: h\r\nEmpty:\r\nSpaced:  v \t \r\nTabbed:\ta\tb\r\nObs: caf\xc3\xa9\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n",
        ];
        for raw in heads {
            let (s, fields) = scan(raw).unwrap_or_else(|| panic!("{:?}", String::from_utf8_lossy(raw)));
            assert!(s.head_len <= raw.len() && raw[..s.head_len].ends_with(b"\r\n\r\n"));
            assert!(!fields.is_empty());
        }
        let (s, fields) = scan(heads[2]).expect("plain");
        assert_eq!(s.method.get(heads[2]), b"GET");
        assert_eq!(s.known_method, Some(Method::Get));
        for (raw, known) in [
            (&b"POST / HTTP/1.1\r\n\r\n"[..], Some(Method::Post)),
            (b"PUT / HTTP/1.1\r\n\r\n", Some(Method::Put)),
            (b"HEAD / HTTP/1.1\r\n\r\n", Some(Method::Head)),
            (b"GETS / HTTP/1.1\r\n\r\n", None),
            (b"get / HTTP/1.1\r\n\r\n", None),
            (b"DELETE / HTTP/1.1\r\n\r\n", None),
        ] {
            let (s, _) = scan(raw).expect("plain");
            assert_eq!(s.known_method, known, "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(s.method.get(raw), &raw[..raw.iter().position(|&b| b == b' ').unwrap_or(0)]);
        }
        assert_eq!(s.target.get(heads[2]), b"/");
        let value = |i: usize| fields[i].1.get(heads[2]);
        assert_eq!(value(1), b"");
        assert_eq!(value(2), b"v");
        assert_eq!(value(3), b"a\tb");
        assert_eq!(value(4), "café".as_bytes());
    }

    #[test]
    fn anything_else_is_left_to_the_general_parser() {
        let heads: [&[u8]; 12] = [
            b"GET / HTTP/1.1\r\nHost: h\r\n",                // partial
            b"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",        // leading empty line
            b"GET / HTTP/1.1\nHost: h\r\n\r\n",              // bare LF
            b"GET / HTTP/1.1\r\nHost: h\n\r\n",              // bare LF
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", // non-ASCII target
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",           // two spaces
            b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",            // version
            b"GET / HTTP/1.1\r\nHost : h\r\n\r\n",           // space before the colon
            b"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", // obs-fold
            b"GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n",         // bare CR
            b"GET / HTTP/1.1\r\nHost: h\x7f\r\n\r\n",        // DEL
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",            // not a token
        ];
        for raw in heads {
            assert_eq!(scan(raw), None, "{:?}", String::from_utf8_lossy(raw));
        }
        let mut fields = Vec::new();
        let two = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(scan_head(two, 2, &mut fields).is_some());
        assert_eq!(scan_head(two, 1, &mut fields), None, "more fields than allowed");
    }
}
