//! Route registration errors: configuration mistakes are values, never panics.

/// Why a route could not be registered. Messages name every route involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The new route would be ambiguous with one already registered.
    #[error("route `{route}` conflicts with existing route `{existing}`")]
    Conflict {
        /// The route being registered, `METHOD /pattern`.
        route: String,
        /// The route already in the tree it collides with.
        existing: String,
    },
    /// The pattern is not well formed.
    #[error("invalid route pattern `{route}`: {reason}")]
    InvalidPattern {
        /// The route being registered.
        route: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A parameter's regular expression does not compile.
    #[error("invalid pattern for a parameter in route `{route}`: {message}")]
    InvalidRegex {
        /// The route being registered.
        route: String,
        /// The regex compiler's message.
        message: String,
    },
    /// A trusted proxy entry is not a CIDR or an address
    /// ([`Router::trusted_proxies`](crate::Router::trusted_proxies)).
    #[error(transparent)]
    TrustedProxy(#[from] crate::client_ip::TrustedProxyError),
    /// A CORS configuration was refused ([`cors`](crate::middleware::cors)).
    #[error(transparent)]
    Cors(#[from] crate::middleware::CorsError),
}
