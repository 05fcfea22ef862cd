//! An upstream's answer: the head parsed with httparse, the body framed by RFC 9112
//! §6.3 (none for HEAD, 1xx, 204 and 304; chunked when the last coding is chunked,
//! decoded by the same strict decoder as request bodies; `Content-Length`; otherwise
//! until close) and read piece by piece or whole, within its limits. The connection
//! goes back to the pool once the body is read, when both sides keep it alive.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::pool::{Lent, Pool};
use super::{CLOSED_BEFORE_HEAD, ClientError, UpstreamConfig};
use crate::http::chunked::{ChunkedDecoder, Progress};

/// Most header fields an answer may carry.
const MAX_HEADERS: usize = 128;
/// Bytes read at most per read.
const READ_CHUNK: usize = 64 << 10;
/// Trailer bytes a chunked answer may end with.
const MAX_TRAILER: usize = 16 << 10;

/// How the body ends.
#[derive(Debug)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// This many bytes are left.
    Length(u64),
    /// Chunked; the decoder's state.
    Chunked(Box<ChunkedDecoder>),
    /// Until the upstream closes the connection.
    UntilClose,
}

/// An upstream's answer; its body is read with [`chunk`](Response::chunk) or
/// [`bytes`](Response::bytes).
pub struct Response {
    status: u16,
    /// The head's bytes, then body bytes read so far (from `pos`).
    buf: Vec<u8>,
    head_len: usize,
    /// `(name, value)` byte ranges in `buf`.
    fields: Vec<(usize, usize, usize, usize)>,
    pos: usize,
    framing: Framing,
    /// Decoded chunk data handed out by the last `chunk` call.
    decoded: Vec<u8>,
    /// Body bytes handed out so far.
    body_read: usize,
    keep_alive: bool,
    done: bool,
    conn: Option<Lent>,
    pool: Rc<Pool>,
    upstream: String,
    max_body: usize,
    read_timeout: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("framing", &self.framing)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| crate::http::request::trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// What one read did.
enum Read {
    Bytes,
    Eof,
}

impl Response {
    /// Reads the head from `lent` (skipping interim 1xx answers).
    pub(super) async fn read_head(
        mut lent: Lent,
        pool: &Rc<Pool>,
        config: &UpstreamConfig,
        upstream: &str,
        head_only: bool,
    ) -> Result<Response, ClientError> {
        let mut buf = Vec::with_capacity(8 << 10);
        let err = |reason| ClientError::Protocol { upstream: upstream.to_owned(), reason };
        loop {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut storage);
            let head_len = match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if buf.len() >= config.max_head_bytes {
                        return Err(ClientError::TooLarge {
                            upstream: upstream.to_owned(),
                            limit: config.max_head_bytes,
                        });
                    }
                    let before = buf.is_empty();
                    match read_some(&mut lent, &mut buf, config.read_timeout, upstream).await {
                        Ok(Read::Bytes) => continue,
                        Ok(Read::Eof) => {
                            let when = if before { CLOSED_BEFORE_HEAD } else { "in the middle of the head" };
                            return Err(ClientError::Closed { upstream: upstream.to_owned(), when });
                        }
                        // A pooled connection reset before any answer byte: retryable.
                        Err(e @ ClientError::Io { .. }) if before => return Err(e),
                        Err(ClientError::Io { source, .. }) => {
                            return Err(ClientError::Protocol {
                                upstream: upstream.to_owned(),
                                reason: if source.kind() == std::io::ErrorKind::ConnectionReset {
                                    "connection reset in the middle of the head"
                                } else {
                                    "read failed in the middle of the head"
                                },
                            });
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(httparse::Error::TooManyHeaders) => return Err(err("more than 128 header fields")),
                Err(_) => return Err(err("malformed head")),
            };
            let status = parsed.code.unwrap_or(0);
            let minor = parsed.version.unwrap_or(1);
            if (100..200).contains(&status) {
                if status == 101 {
                    return Err(err("101 Switching Protocols: upgrades are not supported"));
                }
                // An interim answer (100 Continue, 103 Early Hints): the final one follows.
                buf.drain(..head_len);
                continue;
            }
            let base = buf.as_ptr() as usize;
            let offset = |s: &[u8]| s.as_ptr() as usize - base;
            let mut fields = Vec::with_capacity(parsed.headers.len());
            let (mut length, mut chunked, mut coded) = (None::<u64>, false, false);
            let mut close = minor == 0;
            for h in parsed.headers.iter() {
                let (n, v) = (h.name.as_bytes(), h.value);
                fields.push((offset(n), offset(n) + n.len(), offset(v), offset(v) + v.len()));
                if h.name.eq_ignore_ascii_case("content-length") {
                    let text = crate::http::request::trim_ows(v);
                    let n: u64 =
                        (!text.is_empty() && text.len() <= 19 && text.iter().all(u8::is_ascii_digit))
                            .then(|| std::str::from_utf8(text).ok()?.parse().ok())
                            .flatten()
                            .ok_or_else(|| err("invalid Content-Length"))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(err("differing Content-Length values"));
                    }
                    length = Some(n);
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    coded = true;
                    chunked = v.split(|&b| b == b',').next_back().is_some_and(|last| {
                        crate::http::request::trim_ows(last).eq_ignore_ascii_case(b"chunked")
                    });
                } else if h.name.eq_ignore_ascii_case("connection") {
                    if lists(v, "close") {
                        close = true;
                    } else if minor == 0 && lists(v, "keep-alive") {
                        close = false;
                    }
                }
            }
            let framing = if head_only || status == 204 || status == 304 {
                Framing::Empty
            } else if coded {
                // Transfer-Encoding wins over Content-Length (and the pair is suspect:
                // the connection is not reused).
                close |= length.is_some();
                if chunked { Framing::Chunked(Box::new(ChunkedDecoder::new())) } else { Framing::UntilClose }
            } else {
                match length {
                    Some(n) if n > config.max_body_bytes as u64 => {
                        return Err(ClientError::TooLarge {
                            upstream: upstream.to_owned(),
                            limit: config.max_body_bytes,
                        });
                    }
                    Some(n) => Framing::Length(n),
                    None => Framing::UntilClose,
                }
            };
            if matches!(framing, Framing::UntilClose) {
                close = true;
            }
            let done = matches!(framing, Framing::Empty | Framing::Length(0));
            let mut response = Response {
                status,
                buf,
                head_len,
                fields,
                pos: head_len,
                framing,
                decoded: Vec::new(),
                body_read: 0,
                keep_alive: !close,
                done: false,
                conn: Some(lent),
                pool: Rc::clone(pool),
                upstream: upstream.to_owned(),
                max_body: config.max_body_bytes,
                read_timeout: config.read_timeout,
                timeout: config.timeout,
            };
            if done {
                response.finish();
            }
            return Ok(response);
        }
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header named `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every header as `(name, raw value)`, in arrival order.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|&(ns, ne, vs, ve)| {
            (std::str::from_utf8(&self.buf[ns..ne]).unwrap_or(""), &self.buf[vs..ve])
        })
    }

    /// Whether the body is framed by `Content-Length` (its length), for relaying.
    pub fn content_length(&self) -> Option<u64> {
        match self.framing {
            Framing::Length(left) => Some(left + self.body_read as u64),
            Framing::Empty => Some(0),
            _ => None,
        }
    }

    /// The next piece of the body; `None` once it is complete. Each read waits at most
    /// the upstream's `read_timeout`.
    pub async fn chunk(&mut self) -> Result<Option<&[u8]>, ClientError> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(range) = self.next_piece()? {
                return Ok(Some(match range {
                    Piece::Raw(start, end) => &self.buf[start..end],
                    Piece::Decoded => &self.decoded,
                }));
            }
            if self.done {
                return Ok(None);
            }
            // Everything buffered is handed out: read more in place of it.
            self.buf.truncate(self.head_len);
            self.pos = self.head_len;
            let Some(lent) = self.conn.as_mut() else { return Ok(None) };
            match read_some(lent, &mut self.buf, self.read_timeout, &self.upstream).await? {
                Read::Bytes => {}
                Read::Eof if matches!(self.framing, Framing::UntilClose) => self.finish(),
                Read::Eof => {
                    self.conn = None;
                    return Err(ClientError::Closed {
                        upstream: self.upstream.clone(),
                        when: "in the middle of the body",
                    });
                }
            }
        }
    }

    /// Hands out what is buffered, as far as the framing allows.
    fn next_piece(&mut self) -> Result<Option<Piece>, ClientError> {
        let avail = self.buf.len() - self.pos;
        let too_large =
            |s: &Response| ClientError::TooLarge { upstream: s.upstream.clone(), limit: s.max_body };
        match &mut self.framing {
            Framing::Empty => {
                self.finish();
                Ok(None)
            }
            Framing::Length(left) => {
                if avail == 0 {
                    return Ok(None);
                }
                let take = (*left).min(avail as u64) as usize;
                *left -= take as u64;
                let start = self.pos;
                self.pos += take;
                self.body_read += take;
                if *left == 0 {
                    self.finish();
                }
                Ok(Some(Piece::Raw(start, start + take)))
            }
            Framing::UntilClose => {
                if avail == 0 {
                    return Ok(None);
                }
                if self.body_read + avail > self.max_body {
                    return Err(too_large(self));
                }
                let start = self.pos;
                self.pos += avail;
                self.body_read += avail;
                Ok(Some(Piece::Raw(start, start + avail)))
            }
            Framing::Chunked(decoder) => {
                if avail == 0 {
                    return Ok(None);
                }
                self.decoded.clear();
                let room = self.max_body.saturating_sub(self.body_read);
                let progress = decoder.decode(&self.buf[self.pos..], &mut self.decoded, room, MAX_TRAILER);
                match progress {
                    Ok(Progress::NeedMore) => self.pos = self.buf.len(),
                    Ok(Progress::Done(n)) => {
                        self.pos += n;
                        self.body_read += self.decoded.len();
                        self.finish();
                        return Ok((!self.decoded.is_empty()).then_some(Piece::Decoded));
                    }
                    Err(crate::http::HttpError::BodyTooLarge) => return Err(too_large(self)),
                    Err(_) => {
                        self.conn = None;
                        return Err(ClientError::Protocol {
                            upstream: self.upstream.clone(),
                            reason: "bad chunked framing",
                        });
                    }
                }
                self.body_read += self.decoded.len();
                Ok((!self.decoded.is_empty()).then_some(Piece::Decoded))
            }
        }
    }

    /// The body is complete: the connection goes back to the pool if it can be reused.
    fn finish(&mut self) {
        self.done = true;
        let Some(lent) = self.conn.take() else { return };
        // Bytes past the body mean the upstream broke framing: never reuse that.
        if self.keep_alive && self.pos == self.buf.len() {
            self.pool.give_back(lent);
        }
    }

    /// The whole body, within the upstream's `timeout` and `max_body_bytes`.
    pub async fn bytes(&mut self) -> Result<Vec<u8>, ClientError> {
        let until = Instant::now() + self.timeout;
        let upstream = self.upstream.clone();
        let mut body =
            Vec::with_capacity(self.content_length().unwrap_or(0).min(self.max_body as u64) as usize);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match crate::time::timeout(left, self.chunk()).await {
                Ok(Ok(Some(piece))) => body.extend_from_slice(piece),
                Ok(Ok(None)) => return Ok(body),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.conn = None;
                    return Err(ClientError::Deadline { upstream });
                }
            }
        }
    }

    /// The whole body as text (invalid UTF-8 replaced).
    pub async fn text(&mut self) -> Result<String, ClientError> {
        Ok(String::from_utf8_lossy(&self.bytes().await?).into_owned())
    }
}

/// Where a piece handed out by `next_piece` lives.
enum Piece {
    Raw(usize, usize),
    Decoded,
}

/// Reads once into `buf`'s spare room (growing it as needed), within `wait`.
async fn read_some(
    lent: &mut Lent,
    buf: &mut Vec<u8>,
    wait: Duration,
    upstream: &str,
) -> Result<Read, ClientError> {
    let Some(stream) = lent.stream.as_mut() else {
        return Err(ClientError::Closed { upstream: upstream.to_owned(), when: CLOSED_BEFORE_HEAD });
    };
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(buf.capacity().clamp(8 << 10, READ_CHUNK));
    }
    let owned = std::mem::take(buf);
    match crate::time::timeout(wait, stream.read_max(owned, READ_CHUNK)).await {
        Ok((result, owned)) => {
            *buf = owned;
            match result {
                Ok(0) => Ok(Read::Eof),
                Ok(_) => Ok(Read::Bytes),
                Err(source) => Err(ClientError::Io { upstream: upstream.to_owned(), source }),
            }
        }
        // The buffer went down with the cancelled read: the connection is not reused.
        Err(_) => {
            lent.stream = None;
            Err(ClientError::ReadTimeout { upstream: upstream.to_owned() })
        }
    }
}
