//! A reverse proxy in front of one upstream, built on `ringo::client` and
//! `Context::proxy_to`: what the benchmarks compare with nginx's `proxy_pass`.
//!
//! Run: `cargo run --release --example proxy -- --listen 127.0.0.1:8090 --upstream
//! http://127.0.0.1:8080 [--shards N]`, then `curl localhost:8090/json`.

use std::rc::Rc;

use ringo::client::{Upstream, UpstreamConfig};
use ringo::{Context, Router, Server, ServerConfig};

#[path = "common/flags.rs"]
mod flags;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let flags =
        flags::parse(&[("listen", "127.0.0.1:8090"), ("upstream", "http://127.0.0.1:8080"), ("shards", "")])?;
    let (listen, upstream) = (flags["listen"].clone(), flags["upstream"].clone());
    let shards = if flags["shards"].is_empty() { None } else { Some(flags["shards"].parse()?) };
    // Fail here, with the reason, rather than on every shard.
    Upstream::new(&upstream, UpstreamConfig::default())?;
    let config = ServerConfig { listen: listen.parse()?, shards, admin: None, ..ServerConfig::default() };
    Server::new(move || {
        let up = Rc::new(Upstream::new(&upstream, UpstreamConfig::default()).expect("checked at start"));
        let mut r = Router::new();
        r.any("/*path", async move |c: &mut Context| {
            let _ = c.proxy_to(&up).await;
        })?;
        Ok(r)
    })
    .config(config)
    .run()?;
    Ok(())
}
