//! ringo: a thread-per-core HTTP/1.1 server framework on io_uring, with Gin's way of
//! working.
//!
//! Each shard is one thread pinned to one core, with its own io_uring (or epoll)
//! runtime, its own SO_REUSEPORT listener and its own [`Router`], built by the app
//! factory you give [`Server::new`]. Nothing is shared between shards on the request
//! path.
//!
//! ```no_run
//! use ringo::{Context, Router, Server};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct User<'a> { id: &'a str }
//!
//! Server::new(|| {
//!     let mut r = Router::new();
//!     r.get("/users/:id", |c: &mut Context| c.json(200, &User { id: c.param("id") }))?;
//!     Ok(r)
//! })
//! .run()
//! .unwrap();
//! ```
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod access_log;
mod app;
mod arena;
#[doc(hidden)]
pub mod bench_api;
pub mod breaker;
pub mod cache;
pub mod client;
mod client_ip;
pub mod config;
mod context;
mod control;
pub mod doctor;
#[doc(hidden)]
pub mod fuzz_api;
mod handler;
pub mod http;
mod items;
pub mod logging;
mod metrics;
pub mod middleware;
mod ratelimit;
pub mod redis;
mod router;
pub(crate) mod rt;
pub mod runtime;
mod server;
mod shard_handle;
mod span_ring;
pub mod startup;
mod sys;
pub mod time;
mod transport;
mod watch;

/// The README's code blocks, compiled as doc tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use app::{default_app, default_app_from, default_app_with_access_log, default_app_with_stack};
pub use client_ip::{TrustedProxies, TrustedProxyError};
pub use context::{BindError, Context, HeaderError, SpawnError, ValidBindError};
pub use handler::{AsyncHandler, Handler, SyncHandler};
pub use http::{HttpError, Limits, Method};
pub use middleware::{Middleware, Next};
pub use router::{Group, RouteError, Router};
pub use server::{
    DrainReport, EXIT_ABANDONED, EXIT_FORCED, EXIT_SHARD_DIED, IoBackend, RESTARTS_PER_MINUTE, RunningServer,
    Server, ServerConfig, ServerError, ShardDeathPolicy, ShardStartError, ShutdownReport, TraceExport,
    TraceExportError,
};
