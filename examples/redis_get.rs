//! One Redis GET per request: `/plaintext` and `/json` answer the values of the keys
//! `bench:plaintext` and `bench:json`, and `/items/:id` the value of `item:<id>`, read
//! through the shard's `RedisClient` (calls
//! from all of a shard's connections auto-pipelined). What the benchmarks compare
//! with the Gin peer reading the same keys through redigo.
//!
//! Run: `cargo run --release --example redis_get -- --listen 127.0.0.1:8091 --redis
//! 127.0.0.1:6379 [--shards N]` (after `redis-cli set bench:json '{"message":"Hello, World!"}'`).

use ringo::redis::{RedisClient, RedisConfig};
use ringo::{Context, Router, Server, ServerConfig};

#[path = "common/flags.rs"]
mod flags;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let flags = flags::parse(&[("listen", "127.0.0.1:8091"), ("redis", "127.0.0.1:6379"), ("shards", "")])?;
    let (listen, redis) = (flags["listen"].clone(), flags["redis"].clone());
    let shards = if flags["shards"].is_empty() { None } else { Some(flags["shards"].parse()?) };
    let config = ServerConfig { listen: listen.parse()?, shards, admin: None, ..ServerConfig::default() };
    Server::new(move || {
        let client = RedisClient::new(RedisConfig { addr: redis.clone(), ..RedisConfig::default() });
        let mut r = Router::new();
        for (path, key, content_type) in
            [("/plaintext", "bench:plaintext", "text/plain"), ("/json", "bench:json", "application/json")]
        {
            let client = client.clone();
            r.get(path, async move |c: &mut Context| match client.get(key).await {
                Ok(Some(value)) => c.bytes(200, content_type, &value),
                Ok(None) => c.string(404, "no such key"),
                Err(e) => c.string(503, &e.to_string()),
            })?;
        }
        // The data path without a local cache: every request reads Redis.
        let items = client.clone();
        r.get("/items/:id", async move |c: &mut Context| {
            let key = format!("item:{}", c.param("id"));
            match items.get(&key).await {
                Ok(Some(value)) => c.bytes(200, "application/json", &value),
                Ok(None) => c.string(404, "no such item"),
                Err(e) => c.string(503, &e.to_string()),
            }
        })?;
        Ok(r)
    })
    .config(config)
    .run()?;
    Ok(())
}
