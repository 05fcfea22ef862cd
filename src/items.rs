//! The default app's data path, present when `[redis] url` is set: `/items/:id` through
//! the shard's local cache to Redis (cache-aside).
//!
//! | request              | answer |
//! |----------------------|--------|
//! | `GET /items/:id`     | the stored bytes (200) or 404; `X-Cache: hit` (local cache), `negative` (a cached absence), `filtered` (the key filter rules it out), `miss` (read from Redis, one read per key per shard however many ask at once; a hot key from the hot-data Redis when `[redis] hot_url` is set, `X-Cache-Tier: hot`) |
//! | `PUT /items/:id`     | stores the body in Redis (`item:<id>`), drops the key from every shard's cache; 204 |
//! | `DELETE /items/:id`  | deletes it in Redis, drops the key everywhere; 204 |
//!
//! Redis failures are 503 with the reason (`Timeout`, `BreakerOpen`, …), never a wait
//! past the client's command deadline.
//!
//! Other instances sharing the Redis hear about writes too: a write publishes
//! `<instance> <id>` on [`CHANNEL`], and one subscriber per instance (on its first
//! shard, resubscribing after a lost connection) invalidates the key on all of its
//! shards — so an instance serves another's write after at most the pub/sub hop plus
//! one cache tick. Owns the routes and that subscriber; the cache is `crate::cache`,
//! the client `crate::redis`.

use bytes::Bytes;

use std::sync::Arc;
use std::time::Duration;

use crate::cache::bus::{Bus, publish_filter};
use crate::cache::{KeyFilter, LocalCache, Source};
use crate::config::CacheSection;
use crate::context::Context;
use crate::redis::Cmd;
use crate::redis::RedisClient;
use crate::router::{RouteError, Router};

/// The pub/sub channel item writes are announced on.
pub(crate) const CHANNEL: &str = "ringo:invalidate:items";

/// This process's id on [`CHANNEL`] (its own announcements are skipped).
fn instance_id() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        (nanos as u64) ^ (u64::from(std::process::id()) << 32)
    })
}

/// Tells the other instances that `id` changed.
async fn announce(redis: &RedisClient, id: &str) {
    let message = format!("{} {id}", instance_id());
    if let Err(e) = redis.publish(CHANNEL, message).await {
        tracing::warn!(error = %e, id, "could not announce an item write to other instances");
    }
}

/// Applies other instances' announcements to this instance's `items` caches.
async fn listen(redis: RedisClient, cache: LocalCache<Bytes>) {
    let me = instance_id().to_string();
    loop {
        match redis.subscribe(&[CHANNEL]).await {
            Ok(mut sub) => loop {
                match sub.next_message().await {
                    Ok(m) => {
                        let text = String::from_utf8_lossy(&m.payload);
                        if let Some((from, id)) = text.split_once(' ') {
                            if from != me {
                                cache.invalidate(id);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "item invalidation subscriber lost its connection; resubscribing");
                        break;
                    }
                }
            },
            Err(e) => tracing::debug!(error = %e, "item invalidation subscriber cannot subscribe yet"),
        }
        crate::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Where the preheat finds its keys.
enum KeySource {
    /// Item ids, one per line.
    File(std::path::PathBuf),
    /// A Redis `SCAN` pattern over the Redis keys (`item:*`).
    Scan(String),
}

/// Keys read per `MGET` while preheating.
const PREHEAT_BATCH: usize = 200;

/// Loads the items `source` names into `cache` (values only: absent keys stay out).
async fn preheat(
    redis: &RedisClient,
    cache: &LocalCache<Bytes>,
    source: KeySource,
) -> Result<String, String> {
    let ids: Vec<String> = match source {
        KeySource::File(path) => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        KeySource::Scan(pattern) => scan(redis, &pattern).await?,
    };
    let mut loaded = 0;
    let mut last_log = std::time::Instant::now();
    for (n, batch) in ids.chunks(PREHEAT_BATCH).enumerate() {
        let keys: Vec<String> = batch.iter().map(|id| redis_key(id)).collect();
        let values = redis.mget(&keys).await.map_err(|e| format!("MGET: {e}"))?;
        for (id, value) in batch.iter().zip(values) {
            if let Some(value) = value {
                cache.insert(id, value);
                loaded += 1;
            }
        }
        if last_log.elapsed() >= std::time::Duration::from_secs(1) {
            last_log = std::time::Instant::now();
            let done = ((n + 1) * PREHEAT_BATCH).min(ids.len());
            tracing::info!(done, total = ids.len(), "preheating items");
        }
    }
    Ok(format!("{loaded} of {} items loaded", ids.len()))
}

/// The ids of every Redis key matching `pattern` (`item:*` gives ids after `item:`).
async fn scan(redis: &RedisClient, pattern: &str) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let cmd = Cmd::new("SCAN").arg(&cursor).arg("MATCH").arg(pattern).arg("COUNT").arg("1000");
        let reply: crate::redis::Value = redis.query(&cmd).await.map_err(|e| format!("SCAN: {e}"))?;
        let crate::redis::Value::Array(parts) = reply else { return Err("SCAN: unexpected reply".into()) };
        let [next, keys] = parts.as_slice() else { return Err("SCAN: unexpected reply".into()) };
        let (Some(next), crate::redis::Value::Array(keys)) = (next.as_bytes(), keys) else {
            return Err("SCAN: unexpected reply".into());
        };
        for key in keys {
            if let Some(id) = key.as_bytes().and_then(|k| k.strip_prefix(b"item:")) {
                ids.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            return Ok(ids);
        }
    }
}

/// Builds the key filter over the item ids in Redis on a thread of its own (its own
/// runtime and client: a large `SCAN` and build never run on a shard), then every
/// `every`, and sends each to every shard; ends once the server's shards are gone.
fn spawn_filter_builder(config: crate::redis::RedisConfig, bus: Arc<Bus>, every: Duration) {
    let spawned = std::thread::Builder::new().name("ringo-filter".into()).spawn(move || {
        let mut rt = match crate::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "key filter builder cannot start its runtime; no penetration guard");
                return;
            }
        };
        rt.block_on(async move {
            let redis = RedisClient::new(config);
            let name: Arc<str> = Arc::from("items");
            loop {
                let started = std::time::Instant::now();
                match scan(&redis, "item:*").await {
                    Ok(ids) => match KeyFilter::build(ids.iter().map(String::as_str)) {
                        Ok(filter) => {
                            tracing::info!(
                                keys = filter.keys(),
                                bits_per_key = format!("{:.2}", filter.bits_per_key()),
                                false_positive_rate = format!("{:.4}", filter.false_positive_rate()),
                                ms = started.elapsed().as_millis() as u64,
                                "items key filter built"
                            );
                            if !publish_filter(&bus, &name, &Arc::new(filter), started) {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "items key filter not rebuilt"),
                    },
                    Err(e) => tracing::warn!(error = %e, "items key filter not rebuilt: cannot scan Redis"),
                }
                crate::time::sleep(every).await;
            }
        });
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the key filter builder; no penetration guard");
    }
}

/// The hot-data Redis key of item `id` (the `hot:` namespace).
fn hot_key(id: &str) -> String {
    format!("hot:item:{id}")
}

/// How many local TTLs a hot item's copy lives in the hot-data Redis (writes drop it
/// sooner): long enough to outlast the shards' own copies, so the hot tier, not the
/// main one, refills them.
const HOT_TTL_FACTOR: u32 = 10;

/// Reads a hot item from the hot-data Redis, filling it from the main one on a miss
/// (kept there for [`HOT_TTL_FACTOR`] cache TTLs); `None` when the hot tier cannot
/// answer (the caller then reads the main Redis itself).
async fn load_hot(hot: &RedisClient, main: &RedisClient, id: &str, ttl: Duration) -> Option<Option<Bytes>> {
    match hot.get(hot_key(id)).await {
        Ok(Some(value)) => Some(Some(value)),
        Ok(None) => {
            let value = main.get(redis_key(id)).await.ok()?;
            if let Some(v) = &value {
                let keep = (ttl * HOT_TTL_FACTOR).max(Duration::from_millis(1));
                let options = crate::redis::SetOptions::default().px(keep);
                if let Err(e) = hot.set_with(hot_key(id), v, options).await {
                    tracing::debug!(error = %e, id, "hot-data Redis not filled");
                }
            }
            Some(value)
        }
        Err(e) => {
            tracing::debug!(error = %e, id, "hot-data Redis unavailable; reading the main Redis");
            None
        }
    }
}

/// Drops a written item's copy from the hot-data Redis (best effort: it expires anyway).
async fn forget_hot(hot: Option<&RedisClient>, id: &str) {
    if let Some(hot) = hot {
        if let Err(e) = hot.del(&[hot_key(id)]).await {
            tracing::warn!(error = %e, id, "hot-data Redis copy not dropped; it expires with the cache TTL");
        }
    }
}

/// The Redis key of item `id`.
fn redis_key(id: &str) -> String {
    format!("item:{id}")
}

/// Adds the `/items/:id` routes, reading and writing through `redis`, and registers
/// the `[cache]` preheat, if any, to run before the shard reports ready.
pub(crate) fn routes(
    r: &mut Router,
    redis: &RedisClient,
    hot_redis: Option<&RedisClient>,
    section: &CacheSection,
) -> Result<(), RouteError> {
    let cache: LocalCache<Bytes> = LocalCache::new("items", section.cache_config(), |v: &Bytes| v.len());
    for id in &section.hot_keys {
        cache.mark_hot(id);
    }
    let ttl = section.cache_config().ttl;
    let source = if !section.preheat_file.trim().is_empty() {
        Some(KeySource::File(section.preheat_file.trim().into()))
    } else if !section.preheat_pattern.trim().is_empty() {
        Some(KeySource::Scan(section.preheat_pattern.trim().to_owned()))
    } else {
        None
    };
    if let Some(source) = source {
        let (redis, cache) = (redis.clone(), cache.clone());
        crate::startup::before_ready("preheat items", section.preheat_on_failure, async move {
            preheat(&redis, &cache, source).await
        });
    }
    if crate::cache::bus::shard_id() == Some(0) {
        // One subscriber per instance; it fans out through the shards' bus.
        crate::time::spawn(listen(redis.clone(), cache.clone()));
        if section.filter_rebuild_s > 0 {
            if let Some(bus) = crate::cache::bus::current() {
                spawn_filter_builder(
                    redis.config().clone(),
                    bus,
                    Duration::from_secs(section.filter_rebuild_s),
                );
            }
        }
    }
    let (read, cached, hot) = (redis.clone(), cache.clone(), hot_redis.cloned());
    r.get("/items/:id", async move |c: &mut Context| {
        let id = c.param("id").to_owned();
        // A hot key is read from the hot-data Redis when there is one, so a flash-sale
        // item's traffic stays off the main tier.
        let hot = hot.as_ref().filter(|_| cached.is_hot(&id));
        let from_hot = std::cell::Cell::new(false);
        let load = || async {
            if let Some(hot) = hot {
                if let Some(value) = load_hot(hot, &read, &id, ttl).await {
                    from_hot.set(true);
                    return Ok(value);
                }
            }
            read.get(redis_key(&id)).await
        };
        let (outcome, source) = cached.get_or_load(&id, load).await;
        if from_hot.get() {
            c.header("X-Cache-Tier", "hot");
        }
        match (outcome, source) {
            (_, Source::Filtered) => {
                c.header("X-Cache", "filtered");
                c.string(404, "no such item");
            }
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
    let (write, cached, hot_write) = (redis.clone(), cache.clone(), hot_redis.cloned());
    r.put("/items/:id", async move |c: &mut Context| {
        let id = c.param("id").to_owned();
        let body = c.body().to_vec();
        match write.set(redis_key(&id), body).await {
            Ok(()) => {
                cached.invalidate(&id);
                forget_hot(hot_write.as_ref(), &id).await;
                announce(&write, &id).await;
                c.status(204);
            }
            Err(e) => c.string(503, &format!("redis: {e}")),
        }
    })?;
    let (delete, cached, hot_delete) = (redis.clone(), cache, hot_redis.cloned());
    r.delete("/items/:id", async move |c: &mut Context| {
        let id = c.param("id").to_owned();
        match delete.del(&[redis_key(&id)]).await {
            Ok(_) => {
                cached.invalidate(&id);
                forget_hot(hot_delete.as_ref(), &id).await;
                announce(&delete, &id).await;
                c.status(204);
            }
            Err(e) => c.string(503, &format!("redis: {e}")),
        }
    })?;
    Ok(())
}
