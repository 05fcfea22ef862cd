//! CORS (the Fetch standard's cross-origin protocol): preflights answered, and the
//! `Access-Control-*` headers on actual requests from allowed origins.
//!
//! ```text
//! preflight = OPTIONS with Origin and Access-Control-Request-Method
//!   origin, method and every requested header allowed → 204 + Allow-* headers, aborted
//!   otherwise                                          → 403, no CORS headers, aborted
//! actual request with Origin
//!   origin allowed → Allow-Origin (+ Allow-Credentials, Expose-Headers), then the chain
//!   otherwise      → the chain, no CORS headers (the browser withholds the answer)
//! ```
//!
//! `Access-Control-Allow-Origin` is `*` only for any origin without credentials;
//! otherwise it echoes the request's origin, and responses carry `Vary: Origin`.
//! Everything configured is validated and joined once, in [`cors`]; the request path
//! only compares bytes and writes headers. This module owns no state beyond its
//! configuration and never touches the router: a global middleware also wraps the
//! 404/405 answers, so a preflight for a path with only a GET route is answered here.

use std::rc::Rc;
use std::time::Duration;

use super::{Middleware, Next};
use crate::context::Context;
use crate::http::{Method, field};

/// Which origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Every origin.
    Any,
    /// Exactly these origins (`https://app.example.com`, compared ASCII
    /// case-insensitively).
    List(Vec<String>),
}

/// What [`cors`] allows. `CorsConfig::default()` allows any origin, no credentials,
/// the methods `GET HEAD POST PUT PATCH DELETE`, the request headers `Content-Type`
/// and `Authorization`, exposes nothing, and sends no `Access-Control-Max-Age`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins allowed to read responses.
    pub allowed_origins: AllowedOrigins,
    /// Methods a preflight may ask for (tokens, e.g. `"PUT"`).
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for; `"*"` allows whatever is asked.
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read (`Access-Control-Expose-Headers`).
    pub exposed_headers: Vec<String>,
    /// Whether cookies and credentials are allowed (`Access-Control-Allow-Credentials`);
    /// the origin is then always echoed, never `*`.
    pub allow_credentials: bool,
    /// How long a browser may cache a preflight (`Access-Control-Max-Age`, seconds).
    pub max_age: Option<Duration>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: AllowedOrigins::Any,
            allowed_methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].map(String::from).to_vec(),
            allowed_headers: ["Content-Type", "Authorization"].map(String::from).to_vec(),
            exposed_headers: Vec::new(),
            allow_credentials: false,
            max_age: None,
        }
    }
}

/// Why a CORS configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// An origin is empty, `*` (use [`AllowedOrigins::Any`]) or holds control bytes,
    /// spaces or commas.
    #[error("invalid CORS origin {0:?}")]
    Origin(String),
    /// A method is not a token.
    #[error("invalid CORS method {0:?}")]
    Method(String),
    /// A header name is not a token.
    #[error("invalid CORS header name {0:?}")]
    Header(String),
}

/// CORS middleware; add it globally (`r.middleware(cors(config)?)`) so preflights for
/// any path are answered. The error names the first bad entry and converts into
/// [`RouteError`](crate::RouteError), so `?` works in the app factory:
///
/// ```
/// use ringo::middleware::{AllowedOrigins, CorsConfig, cors};
/// let mut r = ringo::Router::new();
/// r.middleware(cors(CorsConfig {
///     allowed_origins: AllowedOrigins::List(vec!["https://app.example.com".into()]),
///     allow_credentials: true,
///     max_age: Some(std::time::Duration::from_secs(600)),
///     ..CorsConfig::default()
/// })?);
/// # Ok::<(), ringo::RouteError>(())
/// ```
pub fn cors(config: CorsConfig) -> Result<Cors, CorsError> {
    if let AllowedOrigins::List(origins) = &config.allowed_origins {
        for o in origins {
            let bad = o.is_empty() || o == "*" || o.bytes().any(|b| b == b' ' || b == b',');
            if bad || !field::is_value(o.as_bytes()) {
                return Err(CorsError::Origin(o.clone()));
            }
        }
    }
    for m in &config.allowed_methods {
        if !field::is_name(m.as_bytes()) {
            return Err(CorsError::Method(m.clone()));
        }
    }
    for h in config.exposed_headers.iter().chain(config.allowed_headers.iter().filter(|h| *h != "*")) {
        if !field::is_name(h.as_bytes()) {
            return Err(CorsError::Header(h.clone()));
        }
    }
    let any_header = config.allowed_headers.iter().any(|h| h == "*");
    Ok(Cors {
        inner: Rc::new(Inner {
            methods: config.allowed_methods.join(", "),
            headers: config
                .allowed_headers
                .iter()
                .filter(|h| *h != "*")
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            exposed: config.exposed_headers.join(", "),
            max_age: config.max_age.map(|d| d.as_secs().to_string()),
            any_header,
            config,
        }),
    })
}

/// See [`cors`]. Cloning is cheap (the configuration is shared within a shard).
#[derive(Debug, Clone)]
pub struct Cors {
    inner: Rc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CorsConfig,
    /// The configured lists joined once, as header values.
    methods: String,
    headers: String,
    exposed: String,
    max_age: Option<String>,
    any_header: bool,
}

impl Inner {
    fn origin_allowed(&self, origin: &str) -> bool {
        match &self.config.allowed_origins {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }

    /// Whether the answer depends on the request's origin (so caches must key on it).
    fn varies(&self) -> bool {
        self.config.allow_credentials || self.config.allowed_origins != AllowedOrigins::Any
    }

    fn allow_origin(&self, c: &Context, origin: &str) {
        if self.varies() {
            c.header("Access-Control-Allow-Origin", origin);
        } else {
            c.header("Access-Control-Allow-Origin", "*");
        }
        if self.config.allow_credentials {
            c.header("Access-Control-Allow-Credentials", "true");
        }
    }

    fn method_allowed(&self, method: &[u8]) -> bool {
        self.config.allowed_methods.iter().any(|m| m.as_bytes() == method)
    }

    fn headers_allowed(&self, requested: &[u8]) -> bool {
        self.any_header
            || requested
                .split(|&b| b == b',')
                .map(trim)
                .filter(|h| !h.is_empty())
                .all(|h| self.config.allowed_headers.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(h)))
    }

    /// Answers a preflight and aborts the chain.
    fn preflight(&self, c: &Context, origin: Option<&str>, method: &[u8]) {
        c.header("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
        let requested = c.header_bytes("access-control-request-headers").unwrap_or(b"");
        let allowed = origin.filter(|o| self.origin_allowed(o));
        let (Some(origin), true, true) =
            (allowed, self.method_allowed(method), self.headers_allowed(requested))
        else {
            c.abort_with_status(403);
            return;
        };
        self.allow_origin(c, origin);
        c.header("Access-Control-Allow-Methods", &self.methods);
        if self.any_header {
            // Echoed: the request's own header value (already free of CR/LF).
            if let Some(asked) = c.get_header("access-control-request-headers") {
                c.header("Access-Control-Allow-Headers", asked);
            }
        } else if !self.headers.is_empty() {
            c.header("Access-Control-Allow-Headers", &self.headers);
        }
        if let Some(age) = &self.max_age {
            c.header("Access-Control-Max-Age", age);
        }
        c.abort_with_status(204);
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

impl Middleware for Cors {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let inner = &*self.inner;
        let origin_present = c.header_bytes("origin").is_some();
        if c.method() == Method::Options && origin_present {
            if let Some(method) = c.header_bytes("access-control-request-method") {
                inner.preflight(c, c.get_header("origin"), method);
                return;
            }
        }
        if inner.varies() {
            c.header("Vary", "Origin");
        }
        if let Some(origin) = c.get_header("origin") {
            if inner.origin_allowed(origin) {
                inner.allow_origin(c, origin);
                if !inner.exposed.is_empty() {
                    c.header("Access-Control-Expose-Headers", &inner.exposed);
                }
            }
        }
        next.run(c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row: is this configuration refused with this error?
    fn check_refused(config: CorsConfig, want: CorsError) {
        assert_eq!(cors(config).expect_err("refused"), want);
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_entry() {
        let list = |o: &str| AllowedOrigins::List(vec![o.to_owned()]);
        for (config, want) in [
            (
                CorsConfig { allowed_origins: list("*"), ..CorsConfig::default() },
                CorsError::Origin("*".into()),
            ),
            (CorsConfig { allowed_origins: list(""), ..CorsConfig::default() }, CorsError::Origin("".into())),
            (
                // header injection through an origin
                CorsConfig { allowed_origins: list("https://a\r\nX-Evil: 1"), ..CorsConfig::default() },
                CorsError::Origin("https://a\r\nX-Evil: 1".into()),
            ),
            (
                CorsConfig { allowed_origins: list("https://a, https://b"), ..CorsConfig::default() },
                CorsError::Origin("https://a, https://b".into()),
            ),
            (
                CorsConfig { allowed_methods: vec!["GE T".into()], ..CorsConfig::default() },
                CorsError::Method("GE T".into()),
            ),
            (
                CorsConfig {
                    allowed_headers: vec!["X-Ok".into(), "Bad:Name".into()],
                    ..CorsConfig::default()
                },
                CorsError::Header("Bad:Name".into()),
            ),
            (
                CorsConfig { exposed_headers: vec!["X\nY".into()], ..CorsConfig::default() },
                CorsError::Header("X\nY".into()),
            ),
        ] {
            check_refused(config, want);
        }
    }

    #[test]
    fn requested_headers_are_matched_case_insensitively() {
        let c = cors(CorsConfig::default()).expect("default config");
        for (asked, want) in [
            (&b""[..], true),
            (b"content-type", true),
            (b"Content-Type, AUTHORIZATION", true),
            (b" content-type ,, authorization ", true),
            (b"content-type, x-other", false),
        ] {
            assert_eq!(c.inner.headers_allowed(asked), want, "{}", String::from_utf8_lossy(asked));
        }
        let any =
            cors(CorsConfig { allowed_headers: vec!["*".into()], ..CorsConfig::default() }).expect("any");
        assert!(any.inner.headers_allowed(b"x-whatever"));
    }
}
