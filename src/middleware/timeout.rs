//! Route deadlines: cancel a chain that runs past its time and answer for it.
//!
//! Owns the deadline and the answer. Cancelling drops the chain's future in place (the
//! futures live in the connection's `FutureArena`; dropping them is what the arena
//! expects, and every resource a handler held — a breaker permit, a pooled client
//! connection — is released by its `Drop`). Never touches the connection: the engine
//! writes the answer as for any other response.

use std::time::Duration;

use super::{Middleware, Next};
use crate::context::Context;

/// Marks a request as waiting on an upstream dependency: when a [`timeout`] cancels
/// it, the answer is `504 Gateway Timeout` instead of `503 Service Unavailable`.
/// Set it with `c.set(WaitingOnUpstream)` before calling the dependency; the
/// [`breaker`](super::breaker) middleware sets it for its routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingOnUpstream;

/// Gives the rest of the chain `deadline`: past it, the chain is cancelled (its future
/// dropped, so nothing after its current `.await` runs) and the client gets `503`, or
/// `504` when the request was marked [`WaitingOnUpstream`]. What the chain had written
/// to the response is replaced (headers set before are kept). Counted in
/// `ringo_timeouts_total`. A streamed response whose head was already sent cannot be
/// answered again: the connection closes after it instead.
///
/// Only an `.await` can be cancelled: a handler that blocks the shard's thread runs to
/// its end, and the timeout fires after it.
///
/// ```
/// use std::time::Duration;
/// use ringo::{Context, Router};
/// use ringo::middleware::timeout;
///
/// let mut r = Router::new();
/// let mut slow = r.group("/reports");
/// slow.middleware(timeout(Duration::from_millis(500)));
/// slow.get("/daily", async |c: &mut Context| {
///     ringo::time::sleep(Duration::from_millis(10)).await;
///     c.string(200, "done");
/// })
/// .unwrap();
/// ```
pub fn timeout(deadline: Duration) -> Timeout {
    Timeout { deadline }
}

/// See [`timeout`].
#[derive(Debug, Clone, Copy)]
pub struct Timeout {
    deadline: Duration,
}

impl Middleware for Timeout {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let finished = crate::time::timeout(self.deadline, next.run(c)).await;
        if finished.is_ok() {
            return;
        }
        let stats = &c.shard.stats;
        stats.timeouts.set(stats.timeouts.get() + 1);
        let upstream = c.get::<WaitingOnUpstream>().is_some();
        let status = if upstream { 504 } else { 503 };
        {
            let mut resp = c.resp.borrow_mut();
            if resp.streaming.is_some() {
                resp.close = true;
                resp.truncated = true;
                c.abort();
                return;
            }
        }
        let body = if upstream { "gateway timeout\n" } else { "service unavailable: deadline passed\n" };
        c.string(status, body);
        c.abort();
    }
}
