//! The default app's data path, present when `[redis] url` is set: `/items/:id` through
//! the shard's local cache to Redis (cache-aside).
//!
//! | request              | answer |
//! |----------------------|--------|
//! | `GET /items/:id`     | the stored bytes (200) or 404; `X-Cache: hit` (local cache), `negative` (a cached absence), `miss` (read from Redis, one read per key per shard however many ask at once) |
//! | `PUT /items/:id`     | stores the body in Redis (`item:<id>`), drops the key from every shard's cache; 204 |
//! | `DELETE /items/:id`  | deletes it in Redis, drops the key everywhere; 204 |
//!
//! Redis failures are 503 with the reason (`Timeout`, `BreakerOpen`, …), never a wait
//! past the client's command deadline. Owns the routes only; the cache is
//! `crate::cache`, the client `crate::redis`.

use bytes::Bytes;

use crate::cache::{CacheConfig, LocalCache, Source};
use crate::context::Context;
use crate::redis::RedisClient;
use crate::router::{RouteError, Router};

/// The Redis key of item `id`.
fn redis_key(id: &str) -> String {
    format!("item:{id}")
}

/// Adds the `/items/:id` routes, reading and writing through `redis`.
pub(crate) fn routes(r: &mut Router, redis: &RedisClient, config: CacheConfig) -> Result<(), RouteError> {
    let cache: LocalCache<Bytes> = LocalCache::new("items", config, |v: &Bytes| v.len());
    let (read, cached) = (redis.clone(), cache.clone());
    r.get("/items/:id", async move |c: &mut Context| {
        let id = c.param("id").to_owned();
        let (outcome, source) = cached.get_or_load(&id, || read.get(redis_key(&id))).await;
        match (outcome, source) {
            (Ok(Some(value)), source) => {
                c.header("X-Cache", if source == Source::Cache { "hit" } else { "miss" });
                c.bytes(200, "application/json", &value);
            }
            (Ok(None), source) => {
                c.header("X-Cache", if source == Source::Cache { "negative" } else { "miss" });
                c.string(404, "no such item");
            }
            (Err(e), _) => c.string(503, &format!("redis: {e}")),
        }
    })?;
    let (write, cached) = (redis.clone(), cache.clone());
    r.put("/items/:id", async move |c: &mut Context| {
        let id = c.param("id").to_owned();
        let body = c.body().to_vec();
        match write.set(redis_key(&id), body).await {
            Ok(()) => {
                cached.invalidate(&id);
                c.status(204);
            }
            Err(e) => c.string(503, &format!("redis: {e}")),
        }
    })?;
    let (delete, cached) = (redis.clone(), cache);
    r.delete("/items/:id", async move |c: &mut Context| {
        let id = c.param("id").to_owned();
        match delete.del(&[redis_key(&id)]).await {
            Ok(_) => {
                cached.invalidate(&id);
                c.status(204);
            }
            Err(e) => c.string(503, &format!("redis: {e}")),
        }
    })?;
    Ok(())
}
