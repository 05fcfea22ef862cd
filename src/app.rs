//! The default app: what `ringo serve` answers with no configuration.
//!
//! | request            | answer |
//! |--------------------|--------|
//! | `GET /ping`        | `{"message":"pong"}` and a background task on the same shard |
//! | `GET /plaintext`   | `Hello, World!` |
//! | `GET /json`        | `{"message":"Hello, World!"}`, serialized per request |
//! | `GET /users/:id`   | `{"id":"<decoded id>"}` |
//! | `POST /echo`       | the posted JSON re-serialized; 400 invalid JSON, 411 no length, 413 too large |
//!
//! With `[redis] url` set, `/items/:id` (GET, PUT, DELETE) is the data path through
//! the shard's local cache to Redis (`crate::items`); without it those routes are
//! absent and nothing external is needed.

use std::time::Duration;

use serde::Serialize;

use crate::context::Context;
use crate::router::{RouteError, Router};

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
}

/// Builds the default app's router.
pub fn default_app() -> Result<Router, RouteError> {
    let mut r = Router::new();
    r.get("/ping", ping)?;
    r.get("/plaintext", |c: &mut Context| c.string(200, "Hello, World!"))?;
    r.get("/json", |c: &mut Context| c.json(200, &Message { message: "Hello, World!" }))?;
    r.get("/users/:id", |c: &mut Context| c.json(200, &User { id: c.param("id") }))?;
    r.post("/echo", echo)?;
    Ok(r)
}

/// The default app with the default middleware stack (Gin's `gin.Default()`): request
/// ids, trace context, and JSON access lines to stdout. Recovery is built into the engine: a panic is
/// always a JSON 500 that names the request.
pub fn default_app_with_stack() -> Result<Router, RouteError> {
    default_app_with_access_log(&crate::access_log::AccessLogSink::stdout(), Default::default(), 1)
}

/// The default app as `ringo serve` builds it from its configuration: the `[server]`
/// stack (with the access log to `sink`, when the stack is `default`), `[proxy]`
/// trusted proxies, `[cors]`, and the `[rate_limit]` limits on every route.
pub fn default_app_from(
    config: &crate::config::Config,
    sink: Option<&crate::access_log::AccessLogSink>,
) -> Result<Router, RouteError> {
    use crate::middleware::RateLimit;
    let mut r = default_app()?;
    if config.server.stack == crate::config::Stack::Default {
        r.middleware(crate::middleware::request_id());
        r.middleware(crate::middleware::trace_context().sample_ratio(config.trace.sample_ratio));
        let stdout = crate::access_log::AccessLogSink::stdout();
        let sink = sink.unwrap_or(&stdout);
        r.middleware(crate::middleware::logger_with(
            sink,
            config.access_log.format,
            config.access_log.sample_every,
        ));
    }
    if !config.proxy.trusted.is_empty() {
        r.trusted_proxies(&config.proxy.trusted)?;
    }
    if config.cors.enabled {
        r.middleware(crate::middleware::cors(config.cors.to_cors_config())?);
    }
    // One Redis client per shard (this factory runs on each), shared by the data path
    // and the cluster rate limit. Checked by `Config::server_config` before start.
    let redis = config.redis.client_config().ok().flatten().map(crate::redis::RedisClient::new);
    if let Some(redis) = &redis {
        let hot = config.redis.hot_client_config().ok().flatten().map(crate::redis::RedisClient::new);
        crate::items::routes(&mut r, redis, hot.as_ref(), &config.cache)?;
    }
    let limits = &config.rate_limit;
    if limits.global_rate > 0.0 {
        r.middleware(RateLimit::global("default", limits.global_rate, limits.global_burst));
    }
    if limits.cluster_rate > 0.0 {
        if let Some(redis) = &redis {
            let on_down = match limits.cluster_on_redis_down {
                crate::config::RedisDownPolicy::Open => {
                    crate::middleware::OnRedisDown::FailOpen { local_rate: limits.cluster_rate }
                }
                crate::config::RedisDownPolicy::Closed => crate::middleware::OnRedisDown::FailClosed,
            };
            r.middleware(
                RateLimit::cluster("default", limits.cluster_rate, limits.cluster_burst, redis)
                    .on_redis_down(on_down),
            );
        }
    }
    if limits.client_rate > 0.0 {
        let mut per_client =
            RateLimit::per_client(limits.client_rate, limits.client_burst).max_keys(limits.max_keys);
        if !limits.client_key_header.trim().is_empty() {
            per_client = per_client.key_header(limits.client_key_header.trim());
        }
        r.middleware(per_client);
    }
    Ok(r)
}

/// The default stack with the access log written to `sink` in `format`, one request in
/// `sample_every` (what `ringo serve --stack default` builds from `[access_log]`).
pub fn default_app_with_access_log(
    sink: &crate::access_log::AccessLogSink,
    format: crate::access_log::AccessLogFormat,
    sample_every: u32,
) -> Result<Router, RouteError> {
    let mut r = default_app()?;
    r.middleware(crate::middleware::request_id());
    r.middleware(crate::middleware::trace_context());
    r.middleware(crate::middleware::logger_with(sink, format, sample_every));
    Ok(r)
}

fn ping(c: &mut Context) {
    // Gin's `go func()` example: work that outlives the request, on this shard.
    let shard = c.shard_id();
    let spawned = c.spawn(async move {
        crate::time::sleep(Duration::from_millis(1)).await;
        tracing::debug!(shard, "background task after /ping finished");
    });
    if spawned.is_err() {
        tracing::debug!(shard, "background task rejected: shard at its limit");
    }
    c.json(200, &Message { message: "pong" });
}

fn echo(c: &mut Context) {
    if let Ok(doc) = c.bind_json::<serde_json::Value>() {
        c.json(200, &doc);
    }
}
