//! The response-cache middleware: whole GET answers kept per shard and replayed
//! without running the handler.
//!
//! The key is the request path and its query with the parameters sorted (so `?b=2&a=1`
//! and `?a=1&b=2` share an entry), plus the values of the headers named by
//! [`vary_on`](ResponseCache::vary_on). What is stored: a 200 answer that was not
//! streamed, whose handler did not say `Cache-Control: no-store` or `private`, and that
//! sets no cookie; its status, content type, headers and body, for the cache's TTL or
//! the handler's `Cache-Control: max-age` when that is shorter (`max-age=0`: not
//! stored). A request that carries `Authorization` or `Cookie` is neither answered from
//! nor stored in the cache unless those headers are part of the key (`vary_on`), so one
//! user's answer never reaches another. Replayed answers say `X-Cache: hit` and their
//! `Age`.
//!
//! The entries live in a [`LocalCache`] named `responses` (per shard, bounded by
//! entries and bytes, in `/metrics` like any cache).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Middleware, Next};
use crate::cache::{CacheConfig, LocalCache, Lookup};
use crate::context::Context;
use crate::http::Method;

/// An answer as stored.
#[derive(Debug)]
struct Stored {
    status: u16,
    content_type: Box<[u8]>,
    headers: Box<[u8]>,
    body: Box<[u8]>,
    at: Instant,
}

/// Caches whole GET answers for `ttl`; build it in the app factory (one per shard).
pub fn response_cache(ttl: Duration) -> ResponseCache {
    let config = CacheConfig { ttl, ..CacheConfig::default() };
    ResponseCache { ttl, cache: LocalCache::new("responses", config, weigh), vary: Vec::new() }
}

/// See [`response_cache`].
#[derive(Debug)]
pub struct ResponseCache {
    ttl: Duration,
    /// Request headers whose values are part of the key (lower case).
    vary: Vec<Box<str>>,
    cache: LocalCache<Rc<Stored>>,
}

impl ResponseCache {
    /// Keeps at most `entries` answers and `bytes` bytes on each shard.
    pub fn limits(mut self, entries: usize, bytes: u64) -> ResponseCache {
        let config =
            CacheConfig { ttl: self.ttl, max_entries: entries, max_bytes: bytes, ..CacheConfig::default() };
        self.cache = LocalCache::new("responses", config, weigh);
        self
    }

    /// Makes `header`'s value part of the key, as HTTP's `Vary` (e.g. `accept-language`;
    /// `authorization` to cache answers per credential).
    pub fn vary_on(mut self, header: &str) -> ResponseCache {
        self.vary.push(header.to_ascii_lowercase().into());
        self
    }

    /// The cache key, or `None` when this request must bypass the cache.
    fn key(&self, c: &Context) -> Option<String> {
        if !matches!(c.method(), Method::Get | Method::Head) {
            return None;
        }
        let personal = ["authorization", "cookie"];
        if personal.iter().any(|h| c.header_bytes(h).is_some() && !self.vary.iter().any(|v| &**v == *h)) {
            return None;
        }
        let mut key = String::with_capacity(c.path().len() + c.query_string().len() + 16);
        key.push_str(c.path());
        let mut params: Vec<&str> = c.query_string().split('&').filter(|p| !p.is_empty()).collect();
        params.sort_unstable();
        for (i, p) in params.iter().enumerate() {
            key.push(if i == 0 { '?' } else { '&' });
            key.push_str(p);
        }
        for v in &self.vary {
            key.push('\0');
            key.push_str(c.get_header(v).unwrap_or(""));
        }
        Some(key)
    }
}

fn weigh(s: &Rc<Stored>) -> usize {
    s.content_type.len() + s.headers.len() + s.body.len()
}

/// What the handler's headers say about storing the answer: `None` not to store,
/// else the longest it may be kept.
fn storable_for(headers: &[u8], ttl: Duration) -> Option<Duration> {
    let mut keep = ttl;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], crate::http::request::trim_ows(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"set-cookie") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"cache-control") {
            for directive in value.split(|&b| b == b',') {
                let d = crate::http::request::trim_ows(directive);
                if d.eq_ignore_ascii_case(b"no-store") || d.eq_ignore_ascii_case(b"private") {
                    return None;
                }
                if d.len() > 8 && d[..8].eq_ignore_ascii_case(b"max-age=") {
                    let secs: u64 = std::str::from_utf8(&d[8..]).ok()?.parse().ok()?;
                    if secs == 0 {
                        return None;
                    }
                    keep = keep.min(Duration::from_secs(secs));
                }
            }
        }
    }
    Some(keep)
}

impl Middleware for ResponseCache {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let Some(key) = self.key(c) else {
            next.run(c).await;
            return;
        };
        let store = &self.cache;
        if let Lookup::Hit(stored) = store.get(&key) {
            let resp = c.resp.get_mut();
            resp.status = stored.status;
            resp.content_type.clear();
            resp.content_type.extend_from_slice(&stored.content_type);
            resp.headers.clear();
            resp.headers.extend_from_slice(&stored.headers);
            resp.body.clear();
            resp.body.extend_from_slice(&stored.body);
            c.header("X-Cache", "hit");
            c.header("Age", itoa::Buffer::new().format(stored.at.elapsed().as_secs()));
            return;
        }
        next.run(c).await;
        let aborted = c.is_aborted();
        let resp = c.resp.get_mut();
        if resp.status != 200 || resp.streaming.is_some() || aborted {
            return;
        }
        let Some(keep) = storable_for(&resp.headers, self.ttl) else { return };
        let stored = Rc::new(Stored {
            status: resp.status,
            content_type: resp.content_type.as_slice().into(),
            headers: resp.headers.as_slice().into(),
            body: resp.body.as_slice().into(),
            at: Instant::now(),
        });
        store.insert_with_ttl(&key, stored, keep);
    }
}
