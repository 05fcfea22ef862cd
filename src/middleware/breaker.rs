//! A route's circuit breaker: refuse with 503 while the dependency behind the route is
//! failing, and count the route's answers as the breaker's successes and failures.
//!
//! Owns only the mapping between answers and the [`Breaker`]'s permits; the state
//! machine is `crate::breaker`'s. Never touches other shards: the breaker is the shard's.

use super::timeout::WaitingOnUpstream;
use super::{Middleware, Next};
use crate::breaker::{Breaker, Rejected};
use crate::context::Context;

/// Wraps a route (or group) in `b`: while `b` is open (or its half-open probes are
/// out) the chain is not run and the client gets `503` with `Retry-After` (whole
/// seconds until the breaker lets probes through, at least 1). Otherwise the chain
/// runs; a `5xx` answer counts as a failure (change it with
/// [`BreakerMiddleware::failure_when`]), anything else as a success, and a chain that
/// is cancelled (a [`timeout`](super::timeout) around it) or panics as a failure.
///
/// The route is marked [`WaitingOnUpstream`], so a `timeout` around it answers 504.
///
/// ```
/// use std::time::Duration;
/// use ringo::{Context, Router};
/// use ringo::breaker::{Breaker, Settings};
/// use ringo::middleware::{breaker, timeout};
///
/// let users = Breaker::new("users-api", Settings { timeout: Duration::from_secs(10), ..Settings::default() });
/// let mut r = Router::new();
/// let mut api = r.group("/api");
/// api.middleware(timeout(Duration::from_secs(2)));
/// api.middleware(breaker(users.clone()));
/// api.get("/users/:id", |c: &mut Context| c.string(200, "ok")).unwrap();
/// ```
pub fn breaker(b: Breaker) -> BreakerMiddleware {
    BreakerMiddleware { breaker: b, is_failure: |status| status >= 500 }
}

/// See [`breaker`].
#[derive(Debug, Clone)]
pub struct BreakerMiddleware {
    breaker: Breaker,
    is_failure: fn(u16) -> bool,
}

impl BreakerMiddleware {
    /// Decides which answer statuses count as failures (default: `status >= 500`).
    pub fn failure_when(mut self, is_failure: fn(u16) -> bool) -> BreakerMiddleware {
        self.is_failure = is_failure;
        self
    }
}

/// `Retry-After` seconds for a refusal: rounded up, at least 1.
fn retry_after_secs(r: &Rejected) -> u64 {
    let d = r.retry_after();
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl Middleware for BreakerMiddleware {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let permit = match self.breaker.allow() {
            Ok(p) => p,
            Err(refused) => {
                let mut num = itoa::Buffer::new();
                c.string(503, "service unavailable: circuit open\n");
                c.header("Retry-After", num.format(retry_after_secs(&refused)));
                c.abort();
                return;
            }
        };
        c.set(WaitingOnUpstream);
        next.run(c).await;
        permit.record(!(self.is_failure)(c.response_status()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        for (ms, want) in [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (30_000, 30)] {
            let r = Rejected::Open { retry_after: Duration::from_millis(ms) };
            assert_eq!(retry_after_secs(&r), want, "{ms} ms");
        }
        assert_eq!(retry_after_secs(&Rejected::TooManyProbes), 1);
    }
}
