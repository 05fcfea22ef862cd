//! A small hand-written HTTP/1.1 server side for the peers that get no HTTP layer from their
//! runtime (glommio, monoio-bare): httparse for the request head, Content-Length bodies,
//! keep-alive and pipelining, responses written by hand. Both peers share it, so the difference
//! between them is the runtime.
//!
//! Included with `#[path = "../../common/http.rs"] mod http;`.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Largest request head accepted (431 beyond it).
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted (413 beyond it).
pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEADERS: usize = 32;

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
}

/// What one pass over the received bytes did.
pub struct Processed {
    /// Bytes of `input` that were whole requests, answered; the rest is an incomplete request.
    pub consumed: usize,
    /// Close the connection once `out` is written.
    pub close: bool,
}

/// Per-connection state: a scratch buffer for bodies serialized before their headers.
pub struct Http {
    server: &'static str,
    scratch: Vec<u8>,
    /// The request being answered closes the connection: say so in the response.
    closing: bool,
    date_secs: u64,
    date: [u8; 29],
}

impl Http {
    pub fn new(server: &'static str) -> Self {
        Http { server, scratch: Vec::with_capacity(256), closing: false, date_secs: 0, date: [b' '; 29] }
    }

    fn refresh_date(&mut self) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if secs != self.date_secs {
            self.date_secs = secs;
            self.date.copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        }
    }

    /// Answers every complete request at the start of `input`, appending the responses to `out`.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Processed {
        self.refresh_date();
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            if rest.is_empty() {
                return Processed { consumed: pos, close: false };
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let head_len = match req.parse(rest) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if rest.len() > MAX_HEAD => {
                    self.fatal(out, "431 Request Header Fields Too Large");
                    return Processed { consumed: input.len(), close: true };
                }
                Ok(httparse::Status::Partial) => return Processed { consumed: pos, close: false },
                Err(_) => {
                    self.fatal(out, "400 Bad Request");
                    return Processed { consumed: input.len(), close: true };
                }
            };
            let mut body_len = 0usize;
            let mut close = req.version == Some(0);
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                        Some(n) => body_len = n,
                        None => {
                            self.fatal(out, "400 Bad Request");
                            return Processed { consumed: input.len(), close: true };
                        }
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    self.fatal(out, "501 Not Implemented");
                    return Processed { consumed: input.len(), close: true };
                } else if h.name.eq_ignore_ascii_case("connection") {
                    if h.value.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
            if body_len > MAX_BODY {
                self.fatal(out, "413 Payload Too Large");
                return Processed { consumed: input.len(), close: true };
            }
            if rest.len() < head_len + body_len {
                return Processed { consumed: pos, close: false };
            }
            let body = &rest[head_len..head_len + body_len];
            let method = req.method.unwrap_or("");
            let target = req.path.unwrap_or("");
            let path = target.split_once('?').map_or(target, |(p, _)| p);
            self.closing = close;
            self.route(method, path, body, out);
            pos += head_len + body_len;
            if close {
                return Processed { consumed: pos, close: true };
            }
        }
    }

    fn route(&mut self, method: &str, path: &str, body: &[u8], out: &mut Vec<u8>) {
        let get = method == "GET";
        match path {
            "/plaintext" if get => self.respond(out, "200 OK", "text/plain", b"Hello, World!"),
            "/json" if get => {
                self.scratch.clear();
                serde_json::to_writer(&mut self.scratch, &Message { message: "Hello, World!" }).unwrap();
                self.respond_scratch(out, "200 OK", "application/json");
            }
            "/echo" if method == "POST" => match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(doc) => {
                    self.scratch.clear();
                    serde_json::to_writer(&mut self.scratch, &doc).unwrap();
                    self.respond_scratch(out, "200 OK", "application/json");
                }
                Err(_) => self.respond(out, "400 Bad Request", "text/plain", b"invalid JSON"),
            },
            "/plaintext" | "/json" | "/echo" => self.error(out, "405 Method Not Allowed"),
            _ => match path.strip_prefix("/users/") {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    if !get {
                        return self.error(out, "405 Method Not Allowed");
                    }
                    let id: Cow<str> = percent_encoding::percent_decode_str(id).decode_utf8_lossy();
                    self.scratch.clear();
                    serde_json::to_writer(&mut self.scratch, &User { id: &id }).unwrap();
                    self.respond_scratch(out, "200 OK", "application/json");
                }
                _ => self.error(out, "404 Not Found"),
            },
        }
    }

    fn error(&mut self, out: &mut Vec<u8>, status: &str) {
        self.respond_with(out, status, "text/plain", &status.as_bytes()[4..], self.closing);
    }

    /// An error after which the connection is closed.
    fn fatal(&mut self, out: &mut Vec<u8>, status: &str) {
        self.respond_with(out, status, "text/plain", &status.as_bytes()[4..], true);
    }

    fn respond_scratch(&mut self, out: &mut Vec<u8>, status: &str, content_type: &str) {
        let body = std::mem::take(&mut self.scratch);
        self.respond(out, status, content_type, &body);
        self.scratch = body;
    }

    fn respond(&mut self, out: &mut Vec<u8>, status: &str, content_type: &str, body: &[u8]) {
        self.respond_with(out, status, content_type, body, self.closing);
    }

    fn respond_with(
        &mut self,
        out: &mut Vec<u8>,
        status: &str,
        content_type: &str,
        body: &[u8],
        close: bool,
    ) {
        let mut len = itoa::Buffer::new();
        for part in [
            b"HTTP/1.1 ".as_slice(),
            status.as_bytes(),
            b"\r\nServer: ",
            self.server.as_bytes(),
            b"\r\nDate: ",
            &self.date,
            b"\r\nContent-Type: ",
            content_type.as_bytes(),
            b"\r\nContent-Length: ",
            len.format(body.len()).as_bytes(),
            if close { b"\r\nConnection: close\r\n\r\n".as_slice() } else { b"\r\n\r\n" },
            body,
        ] {
            out.extend_from_slice(part);
        }
    }
}
