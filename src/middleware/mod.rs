//! The onion: middleware around a route's handler, and the built-in middleware.
//!
//! A middleware gets the [`Context`] and a [`Next`]; code before `next.run(c).await`
//! runs on the way in, code after it on the way out, and not calling it (or calling
//! [`Context::abort`]) short-circuits the rest. Global middleware (on the [`Router`])
//! wrap every route and the 404/405 answers; group middleware wrap the routes
//! registered on that group after it was added. Chain futures live in the connection's
//! future arena, so a chain costs no heap allocation.
//!
//! [`Router`]: crate::Router

mod breaker;
mod cors;
mod logger;
mod rate_limit;
mod request_id;
mod response_cache;
mod response_time;
mod timeout;
mod trace;

pub use breaker::{BreakerMiddleware, breaker};
pub use cors::{AllowedOrigins, Cors, CorsConfig, CorsError, cors};
pub use logger::{Logger, logger, logger_with};
pub use rate_limit::{OnRedisDown, RateLimit};
pub use request_id::{RequestId, request_id};
pub use response_cache::{ResponseCache, response_cache};
pub use response_time::{ResponseTime, response_time};
pub use timeout::{Timeout, WaitingOnUpstream, timeout};
pub use trace::{TraceContext, TraceContextMiddleware, trace_context};

use std::future::Future;
use std::rc::Rc;

use crate::arena::{ArenaFuture, FutureArena};
use crate::context::Context;
use crate::handler::Endpoint;

/// Middleware: code around the rest of the chain.
///
/// Implement it for a struct with state, or wrap an async closure with [`from_fn`].
pub trait Middleware: 'static {
    /// Handles one request; call `next.run(c).await` to run the rest of the chain.
    fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) -> impl Future<Output = ()> + 'a;
}

/// The rest of the chain after the current middleware.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Rc<dyn ErasedMiddleware>],
    endpoint: &'a Endpoint,
    arena: &'a FutureArena,
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Next").field("remaining_middleware", &self.rest.len()).finish()
    }
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        rest: &'a [Rc<dyn ErasedMiddleware>],
        endpoint: &'a Endpoint,
        arena: &'a FutureArena,
    ) -> Next<'a> {
        Next { rest, endpoint, arena }
    }

    /// Runs the rest of the chain (unless the request was aborted).
    pub async fn run(self, c: &mut Context) {
        if c.is_aborted() {
            return;
        }
        match self.rest.split_first() {
            Some((first, rest)) => {
                let next = Next { rest, endpoint: self.endpoint, arena: self.arena };
                first.call(c, next).await;
            }
            None => match self.endpoint {
                Endpoint::Sync(f) => f(c),
                Endpoint::Async(f) => f.call(c, self.arena).await,
            },
        }
    }
}

/// A middleware with its future type erased into the arena.
pub(crate) trait ErasedMiddleware {
    fn call<'a>(&'a self, c: &'a mut Context, next: Next<'a>) -> ArenaFuture<'a>;
}

impl<M: Middleware> ErasedMiddleware for M {
    fn call<'a>(&'a self, c: &'a mut Context, next: Next<'a>) -> ArenaFuture<'a> {
        let arena = next.arena;
        arena.alloc_with(|| self.handle(c, next))
    }
}

pub(crate) fn erase<M: Middleware>(m: M) -> Rc<dyn ErasedMiddleware> {
    Rc::new(m)
}

/// Middleware from an async closure, like axum's `from_fn`:
///
/// ```
/// use ringo::{Context, Next, Router, middleware::from_fn};
/// let mut r = Router::new();
/// r.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
///     c.header("X-Before", "1");
///     next.run(c).await;
///     // runs after the handler
/// }));
/// ```
pub fn from_fn<F>(f: F) -> FromFn<F>
where
    F: AsyncFn(&mut Context, Next<'_>) + 'static,
{
    FromFn(f)
}

/// See [`from_fn`].
#[derive(Debug, Clone)]
pub struct FromFn<F>(F);

impl<F> Middleware for FromFn<F>
where
    F: AsyncFn(&mut Context, Next<'_>) + 'static,
{
    fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) -> impl Future<Output = ()> + 'a {
        (self.0)(c, next)
    }
}
