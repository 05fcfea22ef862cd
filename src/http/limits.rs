//! Request limits: every bound a client could otherwise push without end.
//!
//! Each limit has its answer (see [`crate::HttpError::status`]); the defaults follow
//! nginx's where nginx has one.

use serde::{Deserialize, Serialize};

/// Bounds applied to every request. All sizes are in bytes, all times in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest request line (method, target, version); over it: 414.
    pub max_request_line: usize,
    /// Largest request head (request line plus header fields); over it: 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request (at most 128); over it: 431.
    pub max_headers: usize,
    /// Largest request body, by Content-Length or after chunked decoding; over it: 413.
    pub max_body_bytes: usize,
    /// Answer 411 to POST, PUT and PATCH requests that carry no length.
    pub require_length: bool,
    /// Time from the first byte of a request to its complete head; over it: 408 and close.
    pub header_timeout_ms: u64,
    /// Longest wait for the next piece of a body; over it: 408 and close.
    pub body_timeout_ms: u64,
    /// Time from the end of a request's head to the end of its body, however the body
    /// trickles in; over it: 408 and close.
    pub body_deadline_ms: u64,
    /// Longest wait for the first byte of the next request on a keep-alive connection.
    pub idle_timeout_ms: u64,
    /// Longest time one response write may take; over it: the connection is closed.
    pub write_timeout_ms: u64,
    /// Most background tasks (`Context::spawn`) alive on one shard; more are rejected.
    pub max_background_tasks: usize,
    /// Most connections open on one shard; more are closed as they are accepted.
    pub max_connections: usize,
}

/// The hard upper bound for `max_headers` (the parser's on-stack header array).
pub(crate) const HEADER_ARRAY: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            require_length: true,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            body_deadline_ms: 60_000,
            idle_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            max_background_tasks: 4096,
            max_connections: 65_536,
        }
    }
}

impl Limits {
    /// `max_headers`, clamped to what the parser can hold.
    pub(crate) fn header_count(&self) -> usize {
        self.max_headers.clamp(1, HEADER_ARRAY)
    }
}
