//! Handlers: plain functions and async functions over `&mut Context`.
//!
//! A route's handler is either synchronous, `Fn(&mut Context)`, called in place with no
//! future and no allocation, or asynchronous, `AsyncFn(&mut Context)`, whose future is
//! placed in the connection's future arena (still no heap allocation). Both are accepted
//! by the same registration methods; the marker type parameter tells them apart.

use std::rc::Rc;

use crate::arena::{ArenaFuture, FutureArena};
use crate::context::Context;

/// Marks a synchronous handler, `Fn(&mut Context)`.
#[derive(Debug)]
pub struct SyncHandler;

/// Marks an asynchronous handler, `AsyncFn(&mut Context)`.
#[derive(Debug)]
pub struct AsyncHandler;

/// Something that can answer requests on a route: a closure or function taking
/// `&mut Context`, sync or async.
///
/// ```
/// use ringo::{Context, Router};
/// let mut r = Router::new();
/// r.get("/sync", |c: &mut Context| c.string(200, "now")).unwrap();
/// r.get("/async", async |c: &mut Context| c.string(200, "later")).unwrap();
/// ```
pub trait Handler<Marker>: 'static {
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn into_endpoint(self) -> Endpoint;
}

impl<F> Handler<SyncHandler> for F
where
    F: Fn(&mut Context) + 'static,
{
    #[allow(private_interfaces)]
    fn into_endpoint(self) -> Endpoint {
        Endpoint::Sync(Rc::new(self))
    }
}

impl<F> Handler<AsyncHandler> for F
where
    F: AsyncFn(&mut Context) + 'static,
{
    #[allow(private_interfaces)]
    fn into_endpoint(self) -> Endpoint {
        Endpoint::Async(Rc::new(AsyncFnEndpoint(self)))
    }
}

/// The type-erased end of a route's chain.
#[derive(Clone)]
pub(crate) enum Endpoint {
    Sync(Rc<dyn Fn(&mut Context)>),
    Async(Rc<dyn AsyncEndpoint>),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endpoint::Sync(_) => "Endpoint::Sync",
            Endpoint::Async(_) => "Endpoint::Async",
        })
    }
}

/// An async handler with its future type erased into the arena.
pub(crate) trait AsyncEndpoint {
    fn call<'a>(&'a self, c: &'a mut Context, arena: &'a FutureArena) -> ArenaFuture<'a>;
}

struct AsyncFnEndpoint<F>(F);

impl<F> AsyncEndpoint for AsyncFnEndpoint<F>
where
    F: AsyncFn(&mut Context),
{
    fn call<'a>(&'a self, c: &'a mut Context, arena: &'a FutureArena) -> ArenaFuture<'a> {
        arena.alloc_with(|| (self.0)(c))
    }
}
