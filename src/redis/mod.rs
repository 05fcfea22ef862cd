//! A Redis client for the shard runtime: one [`RedisClient`] per shard, auto-pipelined,
//! with deadlines, reconnection and a circuit breaker.
//!
//! Shard-owned like everything on the request path: a client is `Rc`-based and
//! `!Send`; build one per shard in the app factory (which runs on the shard's thread)
//! from a shared [`RedisConfig`], and clone it into the handlers that use it. Its
//! connections start with the first call.
//!
//! - **Auto-pipelining**: the commands the shard's tasks issue during one turn of the
//!   executor are encoded into one buffer and sent with one write; replies complete
//!   the callers in order. [`RedisClient::pipeline`] sends a fixed batch (optionally
//!   as `MULTI`/`EXEC`).
//! - **Deadlines**: each call gives up after `command_timeout` ([`RedisError::Timeout`]);
//!   a late reply is read and discarded, the connection stays in step.
//! - **Failures are never hidden**: commands in flight on a connection that drops fail
//!   with [`RedisError::Disconnected`] and are not replayed. The connection comes back
//!   in the background (exponential backoff with jitter); while it is down calls fail
//!   at once, and the client's [`Breaker`] opens after a few failures, so callers get
//!   [`RedisError::BreakerOpen`] without touching the network until a probe succeeds.
//! - **Backpressure**: at most `max_queue` commands wait per connection
//!   ([`RedisError::QueueFull`]).
//! - [`RedisClient::stats`]: counters for commands, errors by kind, writes and batch
//!   sizes, connects, latency.
//!
//! ```no_run
//! use ringo::redis::{RedisClient, RedisConfig};
//! use ringo::{Context, Router, Server};
//!
//! let config = RedisConfig::from_url("redis://127.0.0.1:6379/0").expect("url");
//! Server::new(move || {
//!     let redis = RedisClient::new(config.clone()); // this shard's client
//!     let mut r = Router::new();
//!     r.get("/items/:id", async move |c: &mut Context| {
//!         let key = format!("item:{}", c.param("id"));
//!         match redis.get(&key).await {
//!             Ok(Some(v)) => c.bytes(200, "application/octet-stream", &v),
//!             Ok(None) => c.string(404, "no such item"),
//!             Err(e) => c.string(503, &e.to_string()),
//!         }
//!     })?;
//!     Ok(r)
//! })
//! .run()
//! .unwrap();
//! ```
//!
//! Module map: `config.rs` (settings, URL), `command.rs` (encoding, [`Cmd`],
//! [`SetOptions`]), `reply.rs` (decoding, [`Value`], [`FromValue`]), `connection.rs`
//! (queue, writer and reader tasks, set-up, reconnection), `pipeline.rs`,
//! `script.rs`, `pubsub.rs`, `stats.rs`, `error.rs`. No runtime type appears in this
//! API.

pub(crate) mod command;
mod config;
mod connection;
mod error;
mod pipeline;
mod pubsub;
pub(crate) mod reply;
mod script;
mod stats;

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use bytes::Bytes;
pub use command::{Cmd, SetOptions};
pub use config::{RedisConfig, UrlError};
pub use error::{ErrorKind, RedisError, Result};
pub use pipeline::Pipeline;
pub use pubsub::{Message, Subscriber};
pub use reply::{FromValue, Value};
pub use script::Script;
pub use stats::{BATCH_BUCKETS, LATENCY_BUCKETS_US, RedisStats};

use crate::breaker::Breaker;
use connection::{Conn, Replies, State};
use stats::Counters;

/// What a client's handles share.
struct Client {
    config: Rc<RedisConfig>,
    conns: Vec<Rc<Conn>>,
    next: Cell<usize>,
    breaker: Breaker,
    stats: Rc<Counters>,
    /// The `client` label in `/metrics` (the breaker's name).
    name: Arc<str>,
}

thread_local! {
    /// The clients built on this thread (a shard), for its snapshots.
    static CLIENTS: RefCell<Vec<Weak<Client>>> = const { RefCell::new(Vec::new()) };
}

/// One client's counters in a shard's snapshot.
#[derive(Debug, Clone)]
pub(crate) struct RedisSnapshot {
    pub(crate) name: Arc<str>,
    pub(crate) stats: RedisStats,
    pub(crate) connected: bool,
}

/// Copies the counters of this thread's live clients into `out` (reused: no
/// allocation once its capacity fits). With `wake`, a client with no connection up
/// is pinged, so it connects before the first request needs it (`/readyz` waits for
/// that when `redis.ready_required` is set).
pub(crate) fn fill_snapshots(out: &mut Vec<RedisSnapshot>, wake: bool) {
    out.clear();
    CLIENTS.with_borrow(|clients| {
        for inner in clients.iter().filter_map(Weak::upgrade) {
            let client = RedisClient { timeout: inner.config.command_timeout, inner };
            let connected = client.is_connected();
            if wake && !connected {
                let probe = client.clone();
                crate::time::spawn(async move {
                    let _ = probe.ping().await;
                });
            }
            out.push(RedisSnapshot {
                name: Arc::clone(&client.inner.name),
                stats: client.stats(),
                connected,
            });
        }
    });
}

impl Drop for Client {
    fn drop(&mut self) {
        for c in &self.conns {
            c.close();
        }
    }
}

/// One shard's Redis client. Cheap to clone (an `Rc`); `!Send`.
///
/// See the [module docs](self) for what it does and an example.
#[derive(Clone)]
pub struct RedisClient {
    inner: Rc<Client>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("addr", &self.inner.config.addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds the argument list `head… items…` (for commands with any number of keys).
fn args_with<'a>(head: &[&'a [u8]], items: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut v = Vec::with_capacity(head.len() + items.size_hint().0);
    v.extend_from_slice(head);
    v.extend(items);
    v
}

impl RedisClient {
    /// A client for this shard. Nothing connects until the first call. Build it on the
    /// shard's thread (in the app factory, or in a task) and let it drop there, while the
    /// shard runs: dropping the last handle ends its connections' tasks.
    pub fn new(config: RedisConfig) -> RedisClient {
        let config = Rc::new(config);
        let stats = Rc::new(Counters::default());
        let conns = (0..config.connections.max(1))
            .map(|i| Conn::new(i, Rc::clone(&config), Rc::clone(&stats)))
            .collect();
        let breaker = Breaker::new(&config.breaker_name, config.breaker.clone());
        let timeout = config.command_timeout;
        let name: Arc<str> = Arc::from(config.breaker_name.as_str());
        let inner = Rc::new(Client { config, conns, next: Cell::new(0), breaker, stats, name });
        CLIENTS.with_borrow_mut(|c| {
            c.retain(|w| w.strong_count() > 0);
            c.push(Rc::downgrade(&inner));
        });
        RedisClient { inner, timeout }
    }

    /// A client whose connections are up: connects now and returns the first
    /// connection's failure (refused, `WRONGPASS`, timeout) instead of the client.
    pub async fn connect(config: RedisConfig) -> Result<RedisClient> {
        let timeout = config.connect_timeout + config.command_timeout;
        let client = RedisClient::new(config).with_timeout(timeout);
        client.ping().await?;
        let timeout = client.inner.config.command_timeout;
        Ok(client.with_timeout(timeout))
    }

    /// A handle on the same client whose calls have `timeout` as their deadline.
    pub fn with_timeout(&self, timeout: Duration) -> RedisClient {
        RedisClient { inner: Rc::clone(&self.inner), timeout }
    }

    /// The configuration the client was built with (to build another, e.g. on a
    /// helper thread).
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The client's circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// The client's counters so far.
    pub fn stats(&self) -> RedisStats {
        let mut s = self.inner.stats.snapshot();
        s.in_flight = self.inner.conns.iter().map(|c| c.queued() as u64).sum();
        s
    }

    /// Whether at least one connection is up (set up and not known to be down).
    pub fn is_connected(&self) -> bool {
        self.inner.conns.iter().any(|c| c.state() == State::Ready)
    }

    /// The connection for the next call: the least loaded of those up (or coming up),
    /// starting the round at the next one.
    fn pick(&self) -> &Rc<Conn> {
        let conns = &self.inner.conns;
        let start = self.inner.next.get();
        self.inner.next.set(start.wrapping_add(1));
        let mut best = &conns[start % conns.len()];
        for i in 1..conns.len() {
            let c = &conns[(start + i) % conns.len()];
            let usable = |c: &Conn| c.state() != State::Down;
            if (usable(c) && !usable(best)) || (usable(c) == usable(best) && c.queued() < best.queued()) {
                best = c;
            }
        }
        best
    }

    /// Sends one submission (`commands` commands, `replies` replies) and waits for its
    /// replies within the deadline, through the breaker.
    async fn call(&self, commands: u64, replies: usize, write: impl FnOnce(&mut Vec<u8>)) -> Result<Replies> {
        let inner = &*self.inner;
        inner.stats.commands(commands);
        let conn = self.pick();
        conn.start();
        if conn.queued() + replies > inner.config.max_queue.max(1) {
            return Err(RedisError::QueueFull);
        }
        let permit = inner.breaker.allow().map_err(|_| RedisError::BreakerOpen)?;
        let started = Instant::now();
        let slot = match conn.submit(commands, replies, write) {
            Ok(s) => s,
            Err(e) => {
                permit.failure();
                return Err(e);
            }
        };
        let outcome = match crate::time::timeout(self.timeout, slot.wait()).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout),
        };
        conn.recycle(slot);
        match &outcome {
            Err(e) if e.is_unavailable() => permit.failure(),
            _ => {
                permit.success();
                inner.stats.latency(started.elapsed());
            }
        }
        outcome
    }

    /// One command, its reply converted to `T`; failures counted.
    async fn call1<T: FromValue>(&self, write: impl FnOnce(&mut Vec<u8>)) -> Result<T> {
        let r = self.call(1, 1, write).await.and_then(Replies::one).and_then(T::from_value);
        if let Err(e) = &r {
            self.inner.stats.error(e.kind());
        }
        r
    }

    /// Any command, its reply converted to `T`.
    ///
    /// The connection is shared by the shard's tasks, so commands that change its
    /// state (`SELECT`, `SUBSCRIBE`, `MULTI`, `WATCH`, `CLIENT REPLY`, `HELLO`) do not
    /// belong here: use [`RedisConfig::db`], [`subscribe`](Self::subscribe) and
    /// [`pipeline`](Self::pipeline)`().atomic()`.
    ///
    /// ```no_run
    /// # async fn f(redis: ringo::redis::RedisClient) -> ringo::redis::Result<()> {
    /// use ringo::redis::Cmd;
    /// let n: i64 = redis.query(&Cmd::new("HSET").arg("user:1").arg("name").arg("Ada")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn query<T: FromValue>(&self, cmd: &Cmd) -> Result<T> {
        self.call1(|out| cmd.encode_into(out)).await
    }

    /// `GET key`: the value, or `None` when the key does not exist. The bytes are a
    /// slice of the connection's read buffer (no copy).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        self.call1(|out| command::encode(out, &[b"GET", key])).await
    }

    /// `SET key value`.
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.call1(|out| command::encode(out, &[b"SET", key, value])).await
    }

    /// `SET key value [EX s|PX ms] [NX|XX]`: whether the value was set (false when the
    /// `NX`/`XX` condition did not hold).
    pub async fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> Result<bool> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.call1(|out| options.encode(out, key, value)).await
    }

    /// `DEL key…`: how many keys existed.
    pub async fn del<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<i64> {
        let args = args_with(&[b"DEL"], keys.iter().map(AsRef::as_ref));
        self.call1(|out| command::encode(out, &args)).await
    }

    /// `MGET key…`: each key's value, in order.
    pub async fn mget<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        let args = args_with(&[b"MGET"], keys.iter().map(AsRef::as_ref));
        self.call1(|out| command::encode(out, &args)).await
    }

    /// `MSET key value…`.
    pub async fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, pairs: &[(K, V)]) -> Result<()> {
        let args = args_with(&[b"MSET"], pairs.iter().flat_map(|(k, v)| [k.as_ref(), v.as_ref()]));
        self.call1(|out| command::encode(out, &args)).await
    }

    /// `EXPIRE key seconds` (whole seconds of `ttl`): whether the key exists.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        let key = key.as_ref();
        let mut n = itoa::Buffer::new();
        let secs = n.format(ttl.as_secs()).as_bytes();
        self.call1(|out| command::encode(out, &[b"EXPIRE", key, secs])).await
    }

    /// `TTL key`: seconds to live; -1 without an expiry, -2 when the key does not exist.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<i64> {
        let key = key.as_ref();
        self.call1(|out| command::encode(out, &[b"TTL", key])).await
    }

    /// `INCR key`: the new value.
    pub async fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64> {
        let key = key.as_ref();
        self.call1(|out| command::encode(out, &[b"INCR", key])).await
    }

    /// `INCRBY key by`: the new value.
    pub async fn incr_by(&self, key: impl AsRef<[u8]>, by: i64) -> Result<i64> {
        let key = key.as_ref();
        let mut n = itoa::Buffer::new();
        let by = n.format(by).as_bytes();
        self.call1(|out| command::encode(out, &[b"INCRBY", key, by])).await
    }

    /// `EVAL script numkeys key… arg…`.
    pub async fn eval<T: FromValue, K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        script: &str,
        keys: &[K],
        args: &[A],
    ) -> Result<T> {
        self.eval_like(b"EVAL", script.as_bytes(), keys, args).await
    }

    /// `EVALSHA sha1 numkeys key… arg…` (fails with `NOSCRIPT` when the server does
    /// not have the script: [`Script`] handles that).
    pub async fn evalsha<T: FromValue, K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        sha1: &str,
        keys: &[K],
        args: &[A],
    ) -> Result<T> {
        self.eval_like(b"EVALSHA", sha1.as_bytes(), keys, args).await
    }

    async fn eval_like<T: FromValue, K: AsRef<[u8]>, A: AsRef<[u8]>>(
        &self,
        name: &[u8],
        body: &[u8],
        keys: &[K],
        args: &[A],
    ) -> Result<T> {
        let mut n = itoa::Buffer::new();
        let numkeys = n.format(keys.len()).as_bytes();
        let rest = keys.iter().map(AsRef::as_ref).chain(args.iter().map(AsRef::as_ref));
        let all = args_with(&[name, body, numkeys], rest);
        self.call1(|out| command::encode(out, &all)).await
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<()> {
        self.call1(|out| command::encode(out, &[b"PING"])).await
    }

    /// `PUBLISH channel message`: how many subscribers got it.
    pub async fn publish(&self, channel: impl AsRef<[u8]>, message: impl AsRef<[u8]>) -> Result<i64> {
        let (channel, message) = (channel.as_ref(), message.as_ref());
        self.call1(|out| command::encode(out, &[b"PUBLISH", channel, message])).await
    }

    /// An explicit pipeline: commands queued on the builder go out together, replies
    /// come back as a `Vec` (see [`Pipeline`]).
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(self.clone())
    }

    /// A [`Subscriber`] on a connection of its own, subscribed to `channels` (each
    /// confirmed when this returns). It does not go through the breaker or the queue.
    pub async fn subscribe<C: AsRef<[u8]>>(&self, channels: &[C]) -> Result<Subscriber> {
        let channels: Vec<&[u8]> = channels.iter().map(AsRef::as_ref).collect();
        Subscriber::connect(&self.inner.config, &channels).await
    }

    /// Sends a pipeline's encoded commands: `replies` replies, in order.
    pub(crate) async fn call_many(
        &self,
        commands: u64,
        replies: usize,
        encoded: &[u8],
    ) -> Result<Vec<Result<Value>>> {
        let r = self.call(commands, replies, |out| out.extend_from_slice(encoded)).await.map(Replies::many);
        if let Err(e) = &r {
            self.inner.stats.error(e.kind());
        }
        r
    }

    pub(crate) fn count_error(&self, e: &RedisError) {
        self.inner.stats.error(e.kind());
    }

    pub(crate) fn count_script_reload(&self) {
        self.inner.stats.script_reload();
    }
}
