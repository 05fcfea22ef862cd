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

/// One request through a router's whole chain (middleware and handler), as the engine
/// runs it, without sockets: the head is parsed once, then each [`run`](ChainBench::run)
/// dispatches, runs the chain to completion and resets the context and arena.
pub struct ChainBench {
    router: Router,
    ctx: Context,
    arena: crate::arena::FutureArena,
    request: Vec<u8>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for ChainBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainBench").finish_non_exhaustive()
    }
}

impl ChainBench {
    /// `router` answering `request` (a complete head, no body).
    pub fn new(mut router: Router, request: &[u8]) -> ChainBench {
        router.finish();
        let limits = Limits::default();
        let handle = crate::shard_handle::ShardHandle::new(0, limits, router.len(), 0);
        let ctx = Context::new(handle);
        ChainBench {
            router,
            ctx,
            arena: crate::arena::FutureArena::new(),
            request: request.to_vec(),
            scratch: Vec::new(),
        }
    }

    /// Runs the chain once; the response status. Must be called inside
    /// [`with_runtime`] (middleware may start shard tasks).
    pub fn run(&mut self) -> u16 {
        let ctx = &mut self.ctx;
        std::mem::swap(&mut ctx.buf, &mut self.request);
        ctx.base = 0;
        // The engine reads the clock once per request, for everyone.
        ctx.started = std::time::Instant::now();
        let limits = Limits::default();
        if !matches!(parse_head(&ctx.buf, &limits, &mut ctx.head), Ok(Parse::Complete(_))) {
            std::mem::swap(&mut ctx.buf, &mut self.request);
            return 400;
        }
        let path = ctx.head.path;
        let decision =
            self.router.dispatch(ctx.head.method, path.get(&ctx.buf), &mut ctx.raw_params, &mut self.scratch);
        let status = if let Dispatch::Found(id) = decision {
            let route = self.router.route(id);
            ctx.route = Some(std::rc::Rc::clone(&route.meta));
            let _ = ctx.decode_params();
            {
                let mut chain = std::pin::pin!(
                    crate::middleware::Next::new(&route.chain, &route.endpoint, &self.arena).run(ctx)
                );
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                // The benched chains never wait: one poll finishes them.
                let _ = chain.as_mut().poll(&mut cx);
            }
            ctx.response_status()
        } else {
            404
        };
        ctx.reset_request();
        let _ = self.arena.reset();
        std::mem::swap(&mut ctx.buf, &mut self.request);
        status
    }
}

/// Runs `f` inside a shard runtime (epoll driver), as a shard's code runs.
pub fn with_runtime<R>(f: impl FnOnce() -> R) -> R {
    let mut rt =
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime");
    rt.block_on(async move { f() })
}

/// The GCRA check a rate limit makes per request.
#[derive(Debug)]
pub struct GcraBench {
    gcra: crate::ratelimit::Gcra,
    tat: u64,
    now: u64,
}

impl GcraBench {
    /// `rate` per second, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> GcraBench {
        GcraBench { gcra: crate::ratelimit::Gcra::new(rate, burst), tat: 0, now: 1_000_000_000 }
    }

    /// One check, the clock advancing 1 µs each time; whether it was admitted.
    pub fn check(&mut self) -> bool {
        self.now += 1_000;
        self.gcra.check(&mut self.tat, self.now).allowed
    }
}

/// Appends one command (`args`, name first) as the Redis client encodes it.
pub fn redis_encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    crate::redis::command::encode(out, args);
}

/// Decodes every complete reply in `buf` as the Redis client's reader does (each split
/// off the buffer as it is decoded); how many there were, or `None` on a protocol error.
pub fn redis_decode_all(buf: &mut bytes::BytesMut, resp3: bool) -> Option<usize> {
    let mut n = 0;
    loop {
        match crate::redis::reply::decode(buf, resp3) {
            Ok(Some(frame)) => {
                std::hint::black_box(frame);
                n += 1;
            }
            Ok(None) => return Some(n),
            Err(_) => return None,
        }
    }
}
