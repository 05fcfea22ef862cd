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
//! target), a quarter of a saturated shard's instructions; this pass costs about 200.
//! Targets and values are scanned eight bytes at a time (a word's bytes compared at
//! once), so long browser heads stay cheap too.

use super::chars::{TCHAR, is};
use super::request::Span;

/// The request line's parts and the head's length, from [`scan_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned {
    pub(crate) method: Span,
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
    let method_end = token_end(buf, 0)?;
    if method_end == 0 || *buf.get(method_end)? != b' ' {
        return None;
    }
    let target_start = method_end + 1;
    let target_end = first_outside_target(buf, target_start)?;
    if target_end == target_start || buf[target_end] != b' ' {
        return None;
    }
    let version = target_end + 1;
    let minor = match buf.get(version..version + 10)? {
        b"HTTP/1.1\r\n" => 1,
        b"HTTP/1.0\r\n" => 0,
        _ => return None,
    };
    let mut at = version + 10;
    loop {
        if buf.get(at..at + 2)? == b"\r\n" {
            let target = Span::new(target_start, target_end);
            return Some(Scanned { method: Span::new(0, method_end), target, minor, head_len: at + 2 });
        }
        let name_end = token_end(buf, at)?;
        if name_end == at || *buf.get(name_end)? != b':' {
            return None;
        }
        let mut value_start = name_end + 1;
        while matches!(*buf.get(value_start)?, b' ' | b'\t') {
            value_start += 1;
        }
        let cr = line_end(buf, value_start)?;
        let mut value_end = cr;
        while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        if fields.len() == max_fields {
            return None;
        }
        fields.push((Span::new(at, name_end), Span::new(value_start, value_end)));
        at = cr + 2;
    }
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

/// The first byte from `from` outside `%x21-7E` (the ASCII a target may hold); `None`
/// if `buf` ends first.
fn first_outside_target(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = word_at(buf, at) {
        let outside = below(word, 0x21) | equal(word, 0x7f) | (word & HIGHS);
        if outside != 0 {
            return Some(at + first_flagged(outside));
        }
        at += 8;
    }
    (at..buf.len()).find(|&i| !(0x21..=0x7e).contains(&buf[i]))
}

/// The CR that ends the field value starting at `from`: every byte before it must be a
/// field-value byte (HTAB, SP, VCHAR, obs-text) and the CR must be followed by LF.
/// `None` for anything else, or if `buf` ends first.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let stop = first_control(buf, at)?;
        match buf[stop] {
            b'\t' => at = stop + 1,
            b'\r' if *buf.get(stop + 1)? == b'\n' => return Some(stop),
            _ => return None,
        }
    }
}

/// The first control byte (below SP, or DEL) from `from`; `None` if `buf` ends first.
fn first_control(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(word) = word_at(buf, at) {
        let controls = below(word, 0x20) | equal(word, 0x7f);
        if controls != 0 {
            return Some(at + first_flagged(controls));
        }
        at += 8;
    }
    (at..buf.len()).find(|&i| buf[i] < 0x20 || buf[i] == 0x7f)
}

/// The index of the first `?` or `%` in `s` (where a path ends or an escape starts).
pub(crate) fn find_query_or_escape(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(word) = word_at(s, at) {
        let hits = equal(word, b'?') | equal(word, b'%');
        if hits != 0 {
            return Some(at + first_flagged(hits));
        }
        at += 8;
    }
    (at..s.len()).find(|&i| s[i] == b'?' || s[i] == b'%')
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The eight bytes at `at` as a little-endian word (the first byte lowest).
#[inline]
fn word_at(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The high bit of each byte of `word` equal to `b`. Exact up to the first such byte;
/// bytes after it may be flagged too (a borrow runs upwards), so read only the first.
#[inline]
fn equal(word: u64, b: u8) -> u64 {
    let x = word ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The high bit of each byte of `word` below `n` (`n` at most 0x80), exact up to the
/// first such byte, like [`equal`].
#[inline]
fn below(word: u64, n: u8) -> u64 {
    debug_assert!(n <= 0x80);
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// The index of the first byte flagged in `flags` (non-zero).
#[inline]
fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
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

    #[test]
    fn word_searches_match_byte_loops() {
        for len in 0..40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    if at + 1 < len {
                        s[len - 1] = b'?';
                    }
                    let plain = s.iter().position(|&c| c == b'?' || c == b'%');
                    assert_eq!(find_query_or_escape(&s), plain, "len {len}, {b:#04x} at {at}");
                    let plain = s.iter().position(|&c| !(0x21..=0x7e).contains(&c));
                    assert_eq!(first_outside_target(&s, 0), plain, "len {len}, {b:#04x} at {at}");
                    let plain = s.iter().position(|&c| c < 0x20 || c == 0x7f);
                    assert_eq!(first_control(&s, 0), plain, "len {len}, {b:#04x} at {at}");
                }
            }
        }
    }
}
