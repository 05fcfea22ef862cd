//! `X-Response-Time`: how long the rest of the chain took, as a response header.

use std::time::Instant;

use super::{Middleware, Next};
use crate::context::Context;

/// Adds `X-Response-Time: <µs>us` (the time spent inside the middleware it wraps, so
/// put it first to cover the whole chain). Streamed responses, whose head is sent
/// before the chain ends, get none.
pub fn response_time() -> ResponseTime {
    ResponseTime
}

/// See [`response_time`].
#[derive(Debug, Clone, Copy)]
pub struct ResponseTime;

impl Middleware for ResponseTime {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        // From its own start, not the engine's: it times what it wraps.
        let start = Instant::now();
        next.run(c).await;
        let micros = start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        let mut num = itoa::Buffer::new();
        let digits = num.format(micros);
        // "<digits>us" in a stack buffer: no allocation.
        let mut value = [0u8; 24];
        value[..digits.len()].copy_from_slice(digits.as_bytes());
        value[digits.len()..digits.len() + 2].copy_from_slice(b"us");
        c.header("X-Response-Time", std::str::from_utf8(&value[..digits.len() + 2]).unwrap_or("0us"));
    }
}
