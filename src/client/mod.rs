//! `ringo::client`: an HTTP/1.1 client for calls from a shard to an upstream service.
//!
//! An [`Upstream`] is one service (`http://host:port`) as one shard sees it: built in
//! the app factory, so every shard has its own — its own keep-alive pool, its own
//! breaker, its own counters — and nothing is shared or locked between shards
//! (`Rc`, `!Send`, like the router). The host is resolved once when the upstream is
//! built, and again (on a helper thread, never blocking the shard) after a connection
//! fails.
//!
//! ```no_run
//! use std::rc::Rc;
//! use ringo::client::{Upstream, UpstreamConfig};
//! use ringo::{Context, Router, RouteError};
//!
//! fn app() -> Result<Router, RouteError> {
//!     // Runs on each shard: each gets its own pool.
//!     let users = Rc::new(Upstream::new("http://127.0.0.1:8081", UpstreamConfig::default()).expect("url"));
//!     let mut r = Router::new();
//!     let api = Rc::clone(&users);
//!     r.get("/profile/:id", async move |c: &mut Context| {
//!         let path = format!("/users/{}", c.param("id"));
//!         match api.get(&path).send().await {
//!             Ok(mut resp) => {
//!                 let status = resp.status();
//!                 match resp.bytes().await {
//!                     Ok(body) => c.bytes(status, "application/json", &body),
//!                     Err(e) => c.string(502, &e.to_string()),
//!                 }
//!             }
//!             Err(e) => c.string(e.status(), &e.to_string()),
//!         }
//!     })?;
//!     // A reverse proxy: method, path, headers and body forwarded, the answer streamed.
//!     r.any("/api/*rest", async move |c: &mut Context| {
//!         let _ = c.proxy_to(&users).await;
//!     })?;
//!     Ok(r)
//! }
//! ```
//!
//! What a call does:
//! - takes an idle connection (LIFO; older than `idle_timeout`: closed) or opens one
//!   (at most `max_connections`; past that it waits, up to the deadline);
//! - writes the request with `Host`, `Content-Length` and — when called while serving a
//!   request — `traceparent` (a child of the request's span) and `X-Request-Id`;
//! - reads the head within `read_timeout` per read and `timeout` overall; the body by
//!   `Content-Length`, chunked, or until close, at most `max_body_bytes`;
//! - gives the connection back once the body is read, if both sides keep it alive.
//!
//! An idempotent request (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) that fails at the
//! connection level before any byte of the answer arrived (a refused connect, a pooled
//! connection the server had closed) is retried on a fresh connection, `retries` times.
//! Nothing else is retried. A [`Breaker`](crate::breaker::Breaker) per upstream counts
//! connection failures, timeouts and 5xx answers; while it is open calls fail at once
//! with [`ClientError::BreakerOpen`].
//!
//! Owns the upstream's sockets only; it never touches the serving connection's
//! (`proxy.rs` answers through the `Context`).

mod pool;
mod proxy;
mod request;
mod response;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

pub use request::RequestBuilder;
pub use response::Response;

use crate::breaker::{Breaker, Settings};
use pool::Pool;

/// How an [`Upstream`] behaves; `Default` suits a service on the same network.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connections kept idle for reuse.
    pub max_idle: usize,
    /// Connections open at once (idle and busy); more calls wait for one.
    pub max_connections: usize,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
    /// Deadline of a connect.
    pub connect_timeout: Duration,
    /// Deadline of each read of the answer.
    pub read_timeout: Duration,
    /// Deadline of a whole call: waiting for a connection, connecting, writing and
    /// reading the head (and the body, when read with [`Response::bytes`]).
    pub timeout: Duration,
    /// Largest answer body; past it the read fails with [`ClientError::BodyTooLarge`].
    pub max_body_bytes: usize,
    /// Largest answer head.
    pub max_head_bytes: usize,
    /// Extra attempts for idempotent requests that failed before any answer byte.
    pub retries: u32,
    /// The breaker's settings (its name is the upstream's authority).
    pub breaker: Settings,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            max_idle: 32,
            max_connections: 256,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_body_bytes: 8 << 20,
            max_head_bytes: 64 << 10,
            retries: 1,
            breaker: Settings::default(),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The upstream URL is not `http://host[:port][/base]`.
    #[error("invalid upstream URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host and port.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// A connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// The system error.
        source: std::io::Error,
    },
    /// A connect took longer than `connect_timeout`.
    #[error("connect to {addr} timed out")]
    ConnectTimeout {
        /// The address tried.
        addr: SocketAddr,
    },
    /// No connection came free (`max_connections` busy) before the deadline.
    #[error("no connection to {upstream} came free in time")]
    PoolTimeout {
        /// The upstream's authority.
        upstream: String,
    },
    /// A read of the answer took longer than `read_timeout`.
    #[error("{upstream} did not answer within the read timeout")]
    ReadTimeout {
        /// The upstream's authority.
        upstream: String,
    },
    /// The call took longer than `timeout`.
    #[error("call to {upstream} passed its deadline")]
    Deadline {
        /// The upstream's authority.
        upstream: String,
    },
    /// Reading or writing the connection failed.
    #[error("connection to {upstream} failed: {source}")]
    Io {
        /// The upstream's authority.
        upstream: String,
        /// The system error.
        source: std::io::Error,
    },
    /// The upstream closed the connection before a complete answer.
    #[error("{upstream} closed the connection {when}")]
    Closed {
        /// The upstream's authority.
        upstream: String,
        /// Before the head, or in the body.
        when: &'static str,
    },
    /// The answer broke HTTP/1.1's framing rules.
    #[error("{upstream} sent an invalid answer: {reason}")]
    Protocol {
        /// The upstream's authority.
        upstream: String,
        /// The rule broken.
        reason: &'static str,
    },
    /// The answer's head or body is larger than allowed.
    #[error("{upstream}'s answer is larger than {limit} bytes")]
    TooLarge {
        /// The upstream's authority.
        upstream: String,
        /// The limit (`max_head_bytes` or `max_body_bytes`).
        limit: usize,
    },
    /// The upstream's breaker is open: the call was not made.
    #[error("{upstream} is failing; breaker open, retry in {retry_after:?}")]
    BreakerOpen {
        /// The upstream's authority.
        upstream: String,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },
    /// A header given to the request has a name that is not a token, or a value with
    /// CR, LF or NUL.
    #[error("invalid request header {0:?}")]
    InvalidHeader(String),
}

impl ClientError {
    /// The status a gateway answers its client with for this failure: 504 for
    /// timeouts, 503 while the breaker is open, 502 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            ClientError::ConnectTimeout { .. }
            | ClientError::ReadTimeout { .. }
            | ClientError::Deadline { .. }
            | ClientError::PoolTimeout { .. } => 504,
            ClientError::BreakerOpen { .. } => 503,
            _ => 502,
        }
    }

    /// Whether the failure happened before any byte of an answer, on the connection
    /// (what may be retried for an idempotent request).
    fn before_answer(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::ConnectTimeout { .. }
                | ClientError::Closed { when: CLOSED_BEFORE_HEAD, .. }
        ) || matches!(self, ClientError::Io { source, .. } if source.kind() != std::io::ErrorKind::TimedOut)
    }
}

/// `ClientError::Closed::when` for a connection closed before any answer byte.
const CLOSED_BEFORE_HEAD: &str = "before answering";

/// What an upstream did on this shard, since it was built.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamStats {
    /// Calls started.
    pub requests: u64,
    /// Calls that failed (any [`ClientError`]).
    pub errors: u64,
    /// Connections opened.
    pub connects: u64,
    /// Calls sent on a pooled connection.
    pub reused: u64,
    /// Retried attempts.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: Cell<u64>,
    errors: Cell<u64>,
    connects: Cell<u64>,
    reused: Cell<u64>,
    retries: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// One upstream service as one shard sees it; see the module docs.
#[derive(Debug)]
pub struct Upstream {
    /// `host:port`, the `Host` header and the name in errors and the breaker.
    authority: String,
    /// A path prefix every request path is appended to (`""` for none).
    base_path: String,
    config: UpstreamConfig,
    pool: Rc<Pool>,
    breaker: Breaker,
    counters: Counters,
}

impl Upstream {
    /// An upstream at `url` (`http://host[:port][/base]`), resolving the host now.
    pub fn new(url: &str, config: UpstreamConfig) -> Result<Upstream, ClientError> {
        let invalid = |reason| ClientError::InvalidUrl { url: url.to_owned(), reason };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            invalid(if url.starts_with("https://") {
                "https is not supported yet"
            } else {
                "must start with http://"
            })
        })?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("needs a host (and no user info)"));
        }
        if !crate::http::field::is_value(base.as_bytes()) || base.contains(['?', '#', ' ']) {
            return Err(invalid("the base path holds characters a request target cannot"));
        }
        let authority = if has_port(authority) { authority.to_owned() } else { format!("{authority}:80") };
        let addrs = pool::resolve(&authority)?;
        let breaker = Breaker::new(&authority, config.breaker.clone());
        Ok(Upstream {
            pool: Rc::new(Pool::new(authority.clone(), addrs, &config)),
            authority,
            base_path: base.to_owned(),
            config,
            breaker,
            counters: Counters::default(),
        })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// A request with `method` to `path` (appended to the URL's base path).
    pub fn request(&self, method: crate::Method, path: &str) -> RequestBuilder<'_> {
        RequestBuilder::new(self, method, path)
    }

    /// A GET request.
    pub fn get(&self, path: &str) -> RequestBuilder<'_> {
        self.request(crate::Method::Get, path)
    }

    /// A POST request.
    pub fn post(&self, path: &str) -> RequestBuilder<'_> {
        self.request(crate::Method::Post, path)
    }

    /// A PUT request.
    pub fn put(&self, path: &str) -> RequestBuilder<'_> {
        self.request(crate::Method::Put, path)
    }

    /// A DELETE request.
    pub fn delete(&self, path: &str) -> RequestBuilder<'_> {
        self.request(crate::Method::Delete, path)
    }

    /// The upstream's breaker on this shard.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// This shard's counters for the upstream.
    pub fn stats(&self) -> UpstreamStats {
        let c = &self.counters;
        UpstreamStats {
            requests: c.requests.get(),
            errors: c.errors.get(),
            connects: c.connects.get(),
            reused: c.reused.get(),
            retries: c.retries.get(),
        }
    }

    /// Connections open now (idle and busy) and idle now.
    pub fn connections(&self) -> (usize, usize) {
        (self.pool.open(), self.pool.idle())
    }
}

/// Whether `authority` names a port (`host:port`, `[v6]:port`).
fn has_port(authority: &str) -> bool {
    match authority.rfind(':') {
        Some(i) => {
            !authority[..i].ends_with(':') && (!authority.starts_with('[') || authority[..i].ends_with(']'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_ports_defaulted() {
        let up = Upstream::new("http://127.0.0.1:9/api/", UpstreamConfig::default()).expect("valid");
        assert_eq!((up.authority(), up.base_path.as_str()), ("127.0.0.1:9", "/api"));
        let up = Upstream::new("http://localhost", UpstreamConfig::default()).expect("valid");
        assert_eq!(up.authority(), "localhost:80");
        let up = Upstream::new("http://[::1]:8080", UpstreamConfig::default()).expect("valid");
        assert_eq!(up.authority(), "[::1]:8080");
        for bad in ["127.0.0.1:9", "https://example.com", "http://", "http://u:p@h:1", "http://h:1/a b"] {
            assert!(
                matches!(Upstream::new(bad, UpstreamConfig::default()), Err(ClientError::InvalidUrl { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            Upstream::new("http://no-such-host.invalid:80", UpstreamConfig::default()),
            Err(ClientError::Resolve { .. })
        ));
    }

    #[test]
    fn gateway_statuses() {
        let up = || "u".to_owned();
        assert_eq!(ClientError::ReadTimeout { upstream: up() }.status(), 504);
        assert_eq!(ClientError::BreakerOpen { upstream: up(), retry_after: Duration::ZERO }.status(), 503);
        assert_eq!(ClientError::Protocol { upstream: up(), reason: "x" }.status(), 502);
    }
}
