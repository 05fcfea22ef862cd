//! Internals exposed for the criterion benches in `benches/` only: hidden from the docs,
//! not a supported API, and free to change with the internals they wrap.

use crate::http::Limits;
use crate::http::chunked::{ChunkedDecoder, Progress};
use crate::http::request::{Parse, RequestHead, parse_head};
use crate::router::{Dispatch, RouteError, Router};
use crate::{Context, Method};

/// The request-head parser with a reused head, as a connection uses it.
#[derive(Debug)]
pub struct HeadParser {
    head: RequestHead,
    limits: Limits,
}

impl Default for HeadParser {
    fn default() -> Self {
        let limits = Limits::default();
        HeadParser { head: RequestHead::new(limits.header_count()), limits }
    }
}

impl HeadParser {
    /// Parses one head; the head length when complete and valid.
    pub fn parse(&mut self, buf: &[u8]) -> Option<usize> {
        match parse_head(buf, &self.limits, &mut self.head) {
            Ok(Parse::Complete(n)) => Some(n),
            _ => None,
        }
    }
}

/// Decodes a complete chunked body into `out`; whether it was complete and valid.
pub fn decode_chunked(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    matches!(ChunkedDecoder::new().decode(input, out, usize::MAX, 1 << 16), Ok(Progress::Done(_)))
}

/// A finished router plus the buffers a connection reuses for lookups.
#[derive(Debug)]
pub struct RouteTable {
    router: Router,
    params: Vec<(u32, u32)>,
    scratch: Vec<u8>,
}

impl RouteTable {
    /// Registers every route with a no-op handler.
    pub fn new(routes: &[(Method, &str)]) -> Result<RouteTable, RouteError> {
        let mut router = Router::new();
        for (method, path) in routes {
            router.handle(*method, path, |_c: &mut Context| {})?;
        }
        router.finish();
        Ok(RouteTable { router, params: Vec::with_capacity(8), scratch: Vec::new() })
    }

    /// Routes one request; whether a route matched.
    pub fn lookup(&mut self, method: Method, path: &str) -> bool {
        self.params.clear();
        matches!(
            self.router.dispatch(method, path.as_bytes(), &mut self.params, &mut self.scratch),
            Dispatch::Found(_)
        )
    }
}
