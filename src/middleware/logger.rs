//! Access log middleware: one `tracing` event per request, after the response is built.

use std::time::Instant;

use super::{Middleware, Next};
use crate::context::Context;

/// Logs method, path, route, status and handler time at `info` level (target
/// `ringo::access`).
pub fn logger() -> Logger {
    Logger
}

/// See [`logger`].
#[derive(Debug, Clone, Copy)]
pub struct Logger;

impl Middleware for Logger {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let start = Instant::now();
        next.run(c).await;
        tracing::info!(
            target: "ringo::access",
            shard = c.shard_id(),
            method = %c.method(),
            path = c.path(),
            route = c.full_path(),
            status = c.response_status(),
            micros = start.elapsed().as_micros() as u64,
        );
    }
}
