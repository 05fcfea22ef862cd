//! Request limits: every bound a client could otherwise push without end.
//!
//! Each limit has its answer (see [`crate::HttpError::status`]); the defaults follow
//! nginx's where nginx has one.

use serde::{Deserialize, Serialize};

use super::request::SPAN_MAX;

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

/// A limit that cannot be used, named by its configuration key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidLimit {
    /// The key, e.g. `limits.max_body_bytes`.
    pub(crate) key: &'static str,
    /// What is wrong with its value.
    pub(crate) message: String,
}

impl Limits {
    /// `max_headers`, clamped to what the parser can hold.
    pub(crate) fn header_count(&self) -> usize {
        self.max_headers.clamp(1, HEADER_ARRAY)
    }

    /// Checks what the field types cannot say: a request's bytes are addressed with 32-bit
    /// offsets into the read buffer, so the request line, the head, and the head plus a
    /// `Content-Length` body must each end within 4 GiB - 1 bytes.
    ///
    /// The parser never produces an offset past that bound whatever the limits say (it
    /// answers 431 or 413 instead); this check makes a configuration that promises more
    /// fail at load time, naming its key, instead of being quietly capped.
    pub(crate) fn validate(&self) -> Result<(), InvalidLimit> {
        let over = |key: &'static str, value: usize, what: &str| InvalidLimit {
            key,
            message: format!("{value} is over {SPAN_MAX} bytes, the most {what} can address"),
        };
        if self.max_request_line > SPAN_MAX {
            return Err(over("limits.max_request_line", self.max_request_line, "a request line"));
        }
        if self.max_header_bytes > SPAN_MAX {
            return Err(over("limits.max_header_bytes", self.max_header_bytes, "a request head"));
        }
        let total = self.max_header_bytes.saturating_add(self.max_body_bytes);
        if total > SPAN_MAX {
            return Err(InvalidLimit {
                key: "limits.max_body_bytes",
                message: format!(
                    "{} plus max_header_bytes ({}) is over {SPAN_MAX} bytes, the most a request \
                     (head and body) can address",
                    self.max_body_bytes, self.max_header_bytes
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_past_32_bit_offsets_are_refused_by_key() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let at_bound =
            Limits { max_header_bytes: 1024, max_body_bytes: SPAN_MAX - 1024, ..Limits::default() };
        assert_eq!(at_bound.validate(), Ok(()));
        // (limits, key named): one line per limit that addresses the read buffer.
        let cases = [
            (Limits { max_request_line: SPAN_MAX + 1, ..Limits::default() }, "limits.max_request_line"),
            (Limits { max_header_bytes: SPAN_MAX + 1, ..Limits::default() }, "limits.max_header_bytes"),
            (Limits { max_body_bytes: 5 << 30, ..Limits::default() }, "limits.max_body_bytes"),
            // Each fits alone, not together.
            (
                Limits { max_header_bytes: 1025, max_body_bytes: SPAN_MAX - 1024, ..Limits::default() },
                "limits.max_body_bytes",
            ),
            (Limits { max_body_bytes: usize::MAX, ..Limits::default() }, "limits.max_body_bytes"),
        ];
        for (limits, key) in cases {
            assert_eq!(limits.validate().map_err(|e| e.key), Err(key), "{limits:?}");
        }
    }
}
