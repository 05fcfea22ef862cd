//! Response heads: encoded straight into the connection's write buffer.
//!
//! Status lines come pre-encoded ([`super::status`]), the `Date` value from the shard's
//! cache, numbers through itoa; a head is a handful of `extend_from_slice` calls, and
//! the engine's [`HeadMemo`] turns the part answers share (status line, `Server`,
//! `Date`, `Content-Type`) into one copy.

use super::date::DateValue;
use super::error::HttpError;
use super::status::{reason, status_line};
use super::words::same_bytes;

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    /// `Content-Length: n`.
    Fixed(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No length header; the body ends when the connection closes (HTTP/1.0 streaming).
    CloseDelimited,
    /// No body and no length header (1xx, 204, 304).
    Omitted,
}

/// What the `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionHeader {
    /// Nothing: HTTP/1.1's default, keep-alive.
    Default,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive`, for HTTP/1.0 clients that asked for it.
    KeepAlive,
}

/// The parts of a response head.
#[derive(Debug)]
pub(crate) struct Head<'a> {
    pub(crate) status: u16,
    pub(crate) content_type: &'a [u8],
    /// Further header lines, each already `Name: value\r\n`.
    pub(crate) extra: &'a [u8],
    pub(crate) length: BodyLength,
    pub(crate) connection: ConnectionHeader,
    pub(crate) date: &'a DateValue,
}

/// Appends the encoded head, through the empty line, to `out`.
pub(crate) fn write_head(out: &mut Vec<u8>, head: &Head<'_>) {
    write_prefix(out, head);
    write_rest(out, head);
}

/// The head's start, the part answers of one shard mostly share: status line,
/// `Server`, `Date` and `Content-Type`.
fn write_prefix(out: &mut Vec<u8>, head: &Head<'_>) {
    let line = status_line(head.status);
    if line.is_empty() {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(head.status).as_bytes());
        out.extend_from_slice(b" \r\n");
    } else {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"Server: ringo\r\nDate: ");
    out.extend_from_slice(&head.date.text);
    out.extend_from_slice(b"\r\n");
    if !head.content_type.is_empty() {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(head.content_type);
        out.extend_from_slice(b"\r\n");
    }
}

/// The head's framing, extra fields, `Connection` and the empty line.
fn write_rest(out: &mut Vec<u8>, head: &Head<'_>) {
    match head.length {
        BodyLength::Fixed(n) => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyLength::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        BodyLength::CloseDelimited | BodyLength::Omitted => {}
    }
    out.extend_from_slice(head.extra);
    match head.connection {
        ConnectionHeader::Default => {}
        ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The last head written through it, encoded, with what it was made of. A shard's
/// answers mostly share their status, date and content type (the head's
/// [prefix](write_prefix)), and answers of one route often their length too, so a head
/// costs a few comparisons and one copy instead of encoding up to nine pieces (encoding
/// was 8 % of a saturated shard's instructions, then the framing and the empty line
/// another 7 %). The bytes written are the same either way: they come from
/// [`write_prefix`] and [`write_rest`]. The heads written through one memo take their
/// dates from one [`DateCache`](super::date::DateCache), so the stamp tells dates apart.
#[derive(Debug, Default)]
pub(crate) struct HeadMemo {
    status: u16,
    date_stamp: u64,
    content_type: Vec<u8>,
    /// The encoded head: the prefix, then (when `rest` is `Some`) the rest of a head
    /// without extra fields. Empty until the first head.
    bytes: Vec<u8>,
    prefix_len: usize,
    /// The framing and `Connection` the rest in `bytes` was encoded for.
    rest: Option<(BodyLength, ConnectionHeader)>,
}

impl HeadMemo {
    /// [`write_head`], re-encoding only the parts that changed.
    pub(crate) fn write_head(&mut self, out: &mut Vec<u8>, head: &Head<'_>) {
        if self.bytes.is_empty()
            || self.status != head.status
            || self.date_stamp != head.date.stamp
            || !same_bytes(&self.content_type, head.content_type)
        {
            self.bytes.clear();
            write_prefix(&mut self.bytes, head);
            self.prefix_len = self.bytes.len();
            self.rest = None;
            self.status = head.status;
            self.date_stamp = head.date.stamp;
            self.content_type.clear();
            self.content_type.extend_from_slice(head.content_type);
        }
        if !head.extra.is_empty() {
            out.extend_from_slice(&self.bytes[..self.prefix_len]);
            write_rest(out, head);
            return;
        }
        let rest = (head.length, head.connection);
        if self.rest != Some(rest) {
            self.bytes.truncate(self.prefix_len);
            write_rest(&mut self.bytes, head);
            self.rest = Some(rest);
        }
        out.extend_from_slice(&self.bytes);
    }
}

/// Appends a complete plain-text answer to a protocol error, with `Connection: close`.
pub(crate) fn write_error(out: &mut Vec<u8>, err: HttpError, date: &DateValue) {
    let status = err.status();
    let mut body = [0u8; 128];
    let len = {
        use std::io::Write;
        let mut cursor = &mut body[..];
        let _ = writeln!(cursor, "{}: {err}", reason(status));
        128 - cursor.len()
    };
    write_head(
        out,
        &Head {
            status,
            content_type: b"text/plain; charset=utf-8",
            extra: b"",
            length: BodyLength::Fixed(len),
            connection: ConnectionHeader::Close,
            date,
        },
    );
    out.extend_from_slice(&body[..len]);
}

/// Appends one chunk of a chunked body (nothing for an empty slice: that would end it).
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    let mut n = data.len();
    let mut i = hex.len();
    while n > 0 {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
    }
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The interim answer to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &DateValue = &DateValue { text: *b"Sun, 06 Nov 1994 08:49:37 GMT", stamp: 1 };

    #[test]
    fn encodes_a_fixed_length_head() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            &Head {
                status: 200,
                content_type: b"application/json",
                extra: b"X-A: b\r\n",
                length: BodyLength::Fixed(27),
                connection: ConnectionHeader::Default,
                date: DATE,
            },
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: ringo\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: application/json\r\nContent-Length: 27\r\nX-A: b\r\n\r\n"
        );
    }

    #[test]
    fn unknown_codes_get_a_numeric_status_line() {
        let mut out = Vec::new();
        let head = Head {
            status: 299,
            content_type: b"",
            extra: b"",
            length: BodyLength::Omitted,
            connection: ConnectionHeader::Close,
            date: DATE,
        };
        write_head(&mut out, &head);
        assert!(out.starts_with(b"HTTP/1.1 299 \r\n"));
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn error_answers_close_and_explain() {
        let mut out = Vec::new();
        write_error(&mut out, HttpError::ConflictingContentLength, DATE);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nBad Request: conflicting Content-Length fields\n"));
    }

    #[test]
    fn chunks_are_hex_framed() {
        let mut out = Vec::new();
        write_chunk(&mut out, &[b'x'; 26]);
        write_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n0\r\n\r\n"));
    }

    #[test]
    fn the_memo_writes_what_write_head_writes() {
        const LATER: &DateValue = &DateValue { text: *b"Sun, 06 Nov 1994 08:49:38 GMT", stamp: 2 };
        let mut memo = HeadMemo::default();
        let statuses = [200, 200, 404, 299, 200, 204];
        let types: [&[u8]; 4] = [b"text/plain; charset=utf-8", b"application/json", b"", b"text/plain"];
        let lengths = [BodyLength::Fixed(13), BodyLength::Chunked, BodyLength::Omitted, BodyLength::Fixed(0)];
        let connections = [ConnectionHeader::Default, ConnectionHeader::Close, ConnectionHeader::KeepAlive];
        let mut n = 0;
        for date in [DATE, DATE, LATER, DATE] {
            for &status in &statuses {
                for content_type in types {
                    n += 1;
                    let head = Head {
                        status,
                        content_type,
                        extra: if n % 3 == 0 { b"X-A: 1\r\n" } else { b"" },
                        length: lengths[n % lengths.len()],
                        connection: connections[n % connections.len()],
                        date,
                    };
                    let mut plain = b"pending".to_vec();
                    write_head(&mut plain, &head);
                    // Twice: the second write finds everything memoized.
                    for _ in 0..2 {
                        let mut memoized = b"pending".to_vec();
                        memo.write_head(&mut memoized, &head);
                        assert_eq!(
                            String::from_utf8_lossy(&memoized),
                            String::from_utf8_lossy(&plain),
                            "head {n}: {head:?}"
                        );
                    }
                }
            }
        }
    }
}
