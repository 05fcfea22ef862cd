//! Building and sending one request to an upstream: the head encoded once (with the
//! serving request's trace context and id), attempts with retries for idempotent
//! methods, the breaker's verdict and the call's deadline.

use std::borrow::Cow;
use std::time::Instant;

use serde::Serialize;

use super::pool::Lent;
use super::response::Response;
use super::{ClientError, Upstream, bump};
use crate::Method;
use crate::http::field;

/// One request being put together; [`send`](RequestBuilder::send) makes the call.
#[derive(Debug)]
pub struct RequestBuilder<'a> {
    upstream: &'a Upstream,
    method: Method,
    /// The request target: the upstream's base path, then the path given.
    target: String,
    /// `Name: value\r\n` lines given by the caller.
    headers: Vec<u8>,
    /// Which automatic fields the caller set itself.
    has_content_type: bool,
    has_traceparent: bool,
    has_request_id: bool,
    body: Cow<'a, [u8]>,
    /// The first invalid header, reported by `send`.
    invalid: Option<String>,
}

impl<'a> RequestBuilder<'a> {
    pub(super) fn new(upstream: &'a Upstream, method: Method, path: &str) -> RequestBuilder<'a> {
        let mut target = String::with_capacity(upstream.base_path.len() + path.len() + 1);
        target.push_str(&upstream.base_path);
        if !path.starts_with('/') {
            target.push('/');
        }
        target.push_str(path);
        let invalid = (!field::is_value(target.as_bytes()) || target.contains([' ', '#']))
            .then(|| format!("request target {target:?}"));
        RequestBuilder {
            upstream,
            method,
            target,
            headers: Vec::new(),
            has_content_type: false,
            has_traceparent: false,
            has_request_id: false,
            body: Cow::Borrowed(&[]),
            invalid,
        }
    }

    /// Adds a header. A name that is not a token or a value with CR, LF or NUL makes
    /// `send` fail with [`ClientError::InvalidHeader`]. `Host`, `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are the client's own and are ignored.
    pub fn header(mut self, name: &str, value: &str) -> RequestBuilder<'a> {
        if !field::is_name(name.as_bytes()) || !field::is_value(value.as_bytes()) {
            self.invalid.get_or_insert_with(|| name.to_owned());
            return self;
        }
        let lower = |n: &str| name.eq_ignore_ascii_case(n);
        if lower("host") || lower("content-length") || lower("transfer-encoding") || lower("connection") {
            return self;
        }
        self.has_content_type |= lower("content-type");
        self.has_traceparent |= lower("traceparent");
        self.has_request_id |= lower("x-request-id");
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value.as_bytes());
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// The body (sent with `Content-Length`).
    pub fn body(mut self, body: impl Into<Cow<'a, [u8]>>) -> RequestBuilder<'a> {
        self.body = body.into();
        self
    }

    /// `value` as a JSON body, with `Content-Type: application/json` unless one was set.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> RequestBuilder<'a> {
        match serde_json::to_vec(value) {
            Ok(body) => {
                if !self.has_content_type {
                    self = self.header("Content-Type", "application/json");
                }
                self.body(body)
            }
            Err(_) => {
                self.invalid.get_or_insert_with(|| "body: not serializable as JSON".to_owned());
                self
            }
        }
    }

    /// The request's bytes: head (with the automatic fields) and body.
    fn encode(&self) -> Vec<u8> {
        let up = self.upstream;
        let mut out = Vec::with_capacity(128 + self.target.len() + self.headers.len() + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(up.authority.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.headers);
        // Called while serving a request: carry its trace (this hop as the parent) and
        // its id, unless the caller set its own.
        let ids = crate::logging::current();
        if !self.has_traceparent {
            if let Some(tp) = ids.traceparent() {
                out.extend_from_slice(b"traceparent: ");
                out.extend_from_slice(&tp);
                out.extend_from_slice(b"\r\n");
            }
        }
        if !self.has_request_id {
            if let Some(id) = ids.request_id() {
                out.extend_from_slice(b"X-Request-Id: ");
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        if !self.body.is_empty() || matches!(self.method, Method::Post | Method::Put | Method::Patch) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Makes the call: the answer's head is read; the body is read from the
    /// [`Response`]. Fails fast while the upstream's breaker is open.
    pub async fn send(self) -> Result<Response, ClientError> {
        let up = self.upstream;
        bump(&up.counters.requests);
        let result = self.send_counted().await;
        if result.is_err() {
            bump(&up.counters.errors);
        }
        result
    }

    async fn send_counted(self) -> Result<Response, ClientError> {
        let up = self.upstream;
        if let Some(what) = self.invalid {
            return Err(ClientError::InvalidHeader(what));
        }
        let permit = up.breaker.allow().map_err(|rejected| ClientError::BreakerOpen {
            upstream: up.authority.clone(),
            retry_after: rejected.retry_after(),
        })?;
        let mut bytes = self.encode();
        let head_only = self.method == Method::Head;
        let idempotent = matches!(
            self.method,
            Method::Get | Method::Head | Method::Put | Method::Delete | Method::Options | Method::Trace
        );
        let deadline = Instant::now() + up.config.timeout;
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = crate::time::timeout(left, attempt_once(up, bytes, attempt > 0, head_only)).await;
            let error = match outcome {
                Ok((Ok(response), _)) => {
                    permit.record(response.status() < 500);
                    return Ok(response);
                }
                Ok((Err(e), returned)) => {
                    bytes = returned;
                    e
                }
                Err(_) => {
                    permit.failure();
                    return Err(ClientError::Deadline { upstream: up.authority.clone() });
                }
            };
            let retry =
                idempotent && attempt < up.config.retries && error.before_answer() && !bytes.is_empty();
            if !retry {
                permit.failure();
                return Err(error);
            }
            attempt += 1;
            bump(&up.counters.retries);
        }
    }
}

/// One attempt on one connection (a fresh one when `fresh`); gives the request bytes
/// back (empty if a write lost them) for a retry.
async fn attempt_once(
    up: &Upstream,
    bytes: Vec<u8>,
    fresh: bool,
    head_only: bool,
) -> (Result<Response, ClientError>, Vec<u8>) {
    let (mut lent, connected): (Lent, bool) = match up.pool.take(fresh).await {
        Ok(taken) => taken,
        Err(e) => return (Err(e), bytes),
    };
    bump(if connected { &up.counters.connects } else { &up.counters.reused });
    let Some(stream) = lent.stream.as_mut() else {
        return (
            Err(ClientError::Closed { upstream: up.authority.clone(), when: super::CLOSED_BEFORE_HEAD }),
            bytes,
        );
    };
    let write = crate::time::timeout(up.config.read_timeout, stream.write_all(bytes)).await;
    let bytes = match write {
        Ok((Ok(_), bytes)) => bytes,
        Ok((Err(source), bytes)) => {
            return (Err(ClientError::Io { upstream: up.authority.clone(), source }), bytes);
        }
        Err(_) => return (Err(ClientError::ReadTimeout { upstream: up.authority.clone() }), Vec::new()),
    };
    let response = Response::read_head(lent, &up.pool, &up.config, &up.authority, head_only).await;
    (response, bytes)
}
