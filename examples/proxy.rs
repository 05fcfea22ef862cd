//! A reverse proxy in front of one upstream, built on `ringo::client` and
//! `Context::proxy_to`: what the benchmarks compare with nginx's `proxy_pass`.
//!
//! Run: `cargo run --release --example proxy -- --listen 127.0.0.1:8090 --upstream
//! http://127.0.0.1:8080 [--shards N]`, then `curl localhost:8090/json`.

use std::rc::Rc;

use ringo::client::{Upstream, UpstreamConfig};
use ringo::{Context, Router, Server, ServerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let mut listen = "127.0.0.1:8090".to_owned();
    let mut upstream = "http://127.0.0.1:8080".to_owned();
    let mut shards = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--upstream" => upstream = value,
            "--shards" => shards = Some(value.parse()?),
            _ => return Err(format!("unknown flag {flag} (--listen, --upstream, --shards)").into()),
        }
    }
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
