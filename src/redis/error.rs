//! `RedisError`: every way a Redis call can fail, one variant per kind.
//!
//! Owns the error type and the index each kind is counted under in the client's
//! statistics. Never decides what a failure means for the connection (that is
//! `connection.rs`) or for the breaker (that is `mod.rs`).

use std::io;
use std::sync::Arc;

/// What went wrong with a Redis call.
///
/// Cheap to clone (one failed connection fails every command it carried with the same
/// error), `Send + Sync` so it can travel into any error type.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    /// The server answered with an error reply (`ERR …`, `WRONGTYPE …`, `NOSCRIPT …`,
    /// `WRONGPASS …`); the connection is fine.
    #[error("redis: {0}")]
    Redis(String),
    /// No reply within the command's deadline. The command may still run on the
    /// server; its late reply is discarded.
    #[error("redis: no reply within the deadline")]
    Timeout,
    /// The connection the command was sent on (or queued for) went down before its
    /// reply came, or no connection is up. The command may or may not have run; it is
    /// never replayed.
    #[error("redis: disconnected")]
    Disconnected,
    /// Too many commands are waiting for replies on the connection (`max_queue`).
    #[error("redis: too many commands in flight")]
    QueueFull,
    /// The client's circuit breaker is open: Redis failed recently, the call was not
    /// sent.
    #[error("redis: circuit breaker open")]
    BreakerOpen,
    /// The server sent bytes that are not RESP, or a reply nobody asked for.
    #[error("redis: protocol error: {0}")]
    Protocol(String),
    /// The reply was well formed but not of the type the call expects.
    #[error("redis: unexpected reply: {0}")]
    Type(String),
    /// A socket error, with what the client was doing.
    #[error("redis: {context}: {source}")]
    Io {
        /// What the client was doing (`connecting`, `writing`, `reading`).
        context: &'static str,
        /// The socket's error.
        source: Arc<io::Error>,
    },
}

/// Result of a Redis call.
pub type Result<T, E = RedisError> = std::result::Result<T, E>;

impl RedisError {
    pub(crate) fn io(context: &'static str, source: io::Error) -> RedisError {
        RedisError::Io { context, source: Arc::new(source) }
    }

    /// Whether the failure says Redis (or the way to it) is unhealthy: the ones a
    /// circuit breaker counts. A server error reply is an answer, so it is not one.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RedisError::Timeout | RedisError::Disconnected | RedisError::Protocol(_) | RedisError::Io { .. }
        )
    }

    /// The counter this kind is counted under (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RedisError::Redis(_) => ErrorKind::Server,
            RedisError::Timeout => ErrorKind::Timeout,
            RedisError::Disconnected => ErrorKind::Disconnected,
            RedisError::QueueFull => ErrorKind::QueueFull,
            RedisError::BreakerOpen => ErrorKind::BreakerOpen,
            RedisError::Protocol(_) => ErrorKind::Protocol,
            RedisError::Type(_) => ErrorKind::Type,
            RedisError::Io { .. } => ErrorKind::Io,
        }
    }
}

/// The kinds of [`RedisError`], as counted in [`RedisStats::errors`](super::RedisStats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// [`RedisError::Redis`].
    Server = 0,
    /// [`RedisError::Timeout`].
    Timeout = 1,
    /// [`RedisError::Disconnected`].
    Disconnected = 2,
    /// [`RedisError::QueueFull`].
    QueueFull = 3,
    /// [`RedisError::BreakerOpen`].
    BreakerOpen = 4,
    /// [`RedisError::Protocol`].
    Protocol = 5,
    /// [`RedisError::Type`].
    Type = 6,
    /// [`RedisError::Io`].
    Io = 7,
}

impl ErrorKind {
    /// Every kind, in counter order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::Server,
        ErrorKind::Timeout,
        ErrorKind::Disconnected,
        ErrorKind::QueueFull,
        ErrorKind::BreakerOpen,
        ErrorKind::Protocol,
        ErrorKind::Type,
        ErrorKind::Io,
    ];

    /// Lower-case name, for labels: `server`, `timeout`, …
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::BreakerOpen => "breaker_open",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Type => "type",
            ErrorKind::Io => "io",
        }
    }
}
