//! The raw peers' HTTP: fixed responses for `GET /plaintext` and `GET /json` (the JSON body
//! is a constant), 404 for anything else, requests parsed with httparse and Content-Length
//! bodies skipped; the Date header is refreshed once a second. uring-raw and uring-tasks
//! share it, so the difference between them is how the ring is driven.
//!
//! Included with `#[path = "../../common/fixed_http.rs"] mod fixed_http;`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Largest request head accepted (400 and close beyond it).
const MAX_HEAD: usize = 64 * 1024;

/// Fixed responses, rebuilt when the second changes; `[keep-alive, Connection: close]`.
pub struct Responses {
    secs: u64,
    plaintext: [Vec<u8>; 2],
    json: [Vec<u8>; 2],
    not_found: [Vec<u8>; 2],
    bad_request: Vec<u8>,
}

impl Responses {
    pub fn new() -> Self {
        let mut r = Responses {
            secs: u64::MAX,
            plaintext: Default::default(),
            json: Default::default(),
            not_found: Default::default(),
            bad_request: Vec::new(),
        };
        r.refresh();
        r
    }

    pub fn refresh(&mut self) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        if secs == self.secs {
            return;
        }
        self.secs = secs;
        let date = httpdate::fmt_http_date(now);
        let build = |status: &str, ctype: &str, body: &str, extra: &str| {
            format!(
                "HTTP/1.1 {status}\r\nServer: uring-raw\r\nDate: {date}\r\nContent-Type: {ctype}\r\n\
                 Content-Length: {}\r\n{extra}\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        let close = "Connection: close\r\n";
        let both = |status: &str, ctype: &str, body: &str| {
            [build(status, ctype, body, ""), build(status, ctype, body, close)]
        };
        self.plaintext = both("200 OK", "text/plain", "Hello, World!");
        self.json = both("200 OK", "application/json", r#"{"message":"Hello, World!"}"#);
        self.not_found = both("404 Not Found", "text/plain", "Not Found");
        self.bad_request = build("400 Bad Request", "text/plain", "Bad Request", close);
    }
}

/// Answers the complete requests at the start of `input`; returns (bytes consumed, close).
pub fn process(input: &[u8], out: &mut Vec<u8>, rsp: &Responses) -> (usize, bool) {
    let mut pos = 0;
    while pos < input.len() {
        let rest = &input[pos..];
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if rest.len() <= MAX_HEAD => break,
            _ => {
                out.extend_from_slice(&rsp.bad_request);
                return (input.len(), true);
            }
        };
        let mut body = 0usize;
        let mut close = req.version == Some(0);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                    Some(n) => body = n,
                    None => {
                        out.extend_from_slice(&rsp.bad_request);
                        return (input.len(), true);
                    }
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                out.extend_from_slice(&rsp.bad_request);
                return (input.len(), true);
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = h.value.eq_ignore_ascii_case(b"close")
                    || (close && !h.value.eq_ignore_ascii_case(b"keep-alive"));
            }
        }
        if rest.len() < head + body {
            break;
        }
        let answer = match (req.method, req.path.map(|p| p.split_once('?').map_or(p, |(p, _)| p))) {
            (Some("GET"), Some("/plaintext")) => &rsp.plaintext,
            (Some("GET"), Some("/json")) => &rsp.json,
            _ => &rsp.not_found,
        };
        out.extend_from_slice(&answer[close as usize]);
        pos += head + body;
        if close {
            return (pos, true);
        }
    }
    (pos, false)
}
