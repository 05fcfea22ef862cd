//! A shard: one OS thread pinned to one core, running its own runtime, listener, router,
//! connection pool and counters.
//!
//! Invariant: a shard takes no lock and touches no shared atomic on the request path.
//! Everything here is `Rc`/`Cell`, owned by the shard's thread; the only cross-thread
//! values are the start-up report and the stop flag, read off the request path.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use monoio::net::TcpListener;

use super::backend::{self, IoBackend};
use super::buffers::BufferPool;
use super::conn;
use crate::arena::FutureArena;
use crate::context::{Context, SpawnError};
use crate::control::{SNAPSHOT_EVERY, ShardLink, ShardReport};
use crate::http::Limits;
use crate::http::date::DateCache;
use crate::metrics::ShardStats;
use crate::router::{RouteError, Router};

/// What a connection needs between requests, pooled per shard.
pub(crate) struct ConnState {
    pub(crate) ctx: Context,
    pub(crate) arena: FutureArena,
}

/// Default capacity of a connection's read and write buffers (the smallest class).
pub(crate) const BUF_SMALL: usize = super::buffers::CLASSES[0];
/// Most connection states kept for reuse per shard.
const POOL_MAX: usize = 1024;

/// The shard's open connections by descriptor, so a drain can wake the idle ones.
///
/// Invariant: an entry is removed before its connection's stream is dropped, so every
/// descriptor here is a live socket of this shard.
#[derive(Debug, Default)]
pub(crate) struct ConnRegistry {
    slots: Vec<Option<(std::os::fd::RawFd, bool)>>,
    free: Vec<usize>,
}

impl ConnRegistry {
    pub(crate) fn add(&mut self, fd: std::os::fd::RawFd) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some((fd, false));
                i
            }
            None => {
                self.slots.push(Some((fd, false)));
                self.slots.len() - 1
            }
        }
    }

    pub(crate) fn remove(&mut self, slot: usize) {
        if let Some(entry) = self.slots.get_mut(slot) {
            if entry.take().is_some() {
                self.free.push(slot);
            }
        }
    }

    /// Marks whether the connection waits for a new request with nothing buffered.
    pub(crate) fn set_idle(&mut self, slot: usize, idle: bool) {
        if let Some(Some(entry)) = self.slots.get_mut(slot) {
            entry.1 = idle;
        }
    }

    /// Shuts down idle connections (or all), waking their reads with end of file.
    pub(crate) fn shutdown(&self, idle_only: bool) -> usize {
        let mut n = 0;
        for (fd, idle) in self.slots.iter().flatten() {
            if *idle || !idle_only {
                // Idle ones lose only their read side: if a request slipped in just before,
                // its answer can still be written.
                let how = if idle_only { crate::sys::Direction::Read } else { crate::sys::Direction::Both };
                crate::sys::shutdown_socket(*fd, how);
                n += 1;
            }
        }
        n
    }
}

/// Per-shard state shared by the shard's connections (`Rc`, never `Send`).
pub(crate) struct ShardLocal {
    pub(crate) id: usize,
    pub(crate) limits: Limits,
    pub(crate) date: DateCache,
    pub(crate) draining: Cell<bool>,
    pub(crate) stats: Rc<ShardStats>,
    pub(crate) buffers: BufferPool,
    pub(crate) conns: RefCell<ConnRegistry>,
    /// Boxed so a connection task holds a pointer, not a large struct, in its future.
    #[allow(clippy::vec_box)]
    pool: RefCell<Vec<Box<ConnState>>>,
}

impl ShardLocal {
    pub(crate) fn new(id: usize, limits: Limits, routes: usize) -> Rc<ShardLocal> {
        Rc::new(ShardLocal {
            id,
            limits,
            date: DateCache::new(),
            draining: Cell::new(false),
            stats: Rc::new(ShardStats::with_routes(routes)),
            buffers: BufferPool::default(),
            conns: RefCell::new(ConnRegistry::default()),
            pool: RefCell::new(Vec::new()),
        })
    }

    /// A connection state from the pool, or a new one.
    pub(crate) fn take_conn(self: &Rc<Self>) -> Box<ConnState> {
        if let Some(state) = self.pool.borrow_mut().pop() {
            return state;
        }
        Box::new(ConnState {
            ctx: Context::new(Rc::clone(self), self.buffers.take(BUF_SMALL), self.buffers.take(BUF_SMALL)),
            arena: FutureArena::new(),
        })
    }

    /// Returns a finished connection's state to the pool (its socket already dropped).
    pub(crate) fn give_conn(&self, mut state: Box<ConnState>) {
        state.ctx.io = None;
        state.ctx.peer = None;
        state.ctx.reset_request();
        state.ctx.buf.clear();
        state.ctx.out.clear();
        shrink_idle(&mut state.ctx);
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(state);
        }
    }

    /// Starts a bounded background task on this shard.
    pub(crate) fn spawn_background<F>(&self, task: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + 'static,
    {
        let stats = &self.stats;
        if stats.background_live.get() >= self.limits.max_background_tasks {
            stats.background_rejected.set(stats.background_rejected.get() + 1);
            return Err(SpawnError::Full);
        }
        stats.background_live.set(stats.background_live.get() + 1);
        stats.background_started.set(stats.background_started.get() + 1);
        let stats = Rc::clone(stats);
        monoio::spawn(async move {
            struct Done(Rc<ShardStats>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.background_live.set(self.0.background_live.get() - 1);
                }
            }
            let _done = Done(stats);
            task.await;
        });
        Ok(())
    }
}

/// Hands a connection's grown buffers back to the pool once it is idle.
pub(crate) fn shrink_idle(ctx: &mut Context) {
    let shard = Rc::clone(&ctx.shard);
    let pool = &shard.buffers;
    pool.shrink(&mut ctx.buf);
    pool.shrink(&mut ctx.out);
    pool.shrink(&mut ctx.chunked_body);
    ctx.scratch.clear();
    pool.shrink(&mut ctx.scratch);
    let body = &mut ctx.resp.get_mut().body;
    body.clear();
    pool.shrink(body);
}

/// Everything a shard thread needs to start.
pub(crate) struct ShardSpec<F> {
    pub(crate) id: usize,
    pub(crate) core: Option<usize>,
    pub(crate) listener: StdListener,
    pub(crate) factory: Arc<F>,
    pub(crate) backend: IoBackend,
    pub(crate) limits: Limits,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) ready: crossbeam_channel::Sender<Result<usize, ShardStartError>>,
    pub(crate) drain_timeout: Duration,
    /// The channels to the control thread, when one runs.
    pub(crate) link: Option<ShardLink>,
}

/// Why a shard failed to start.
#[derive(Debug, thiserror::Error)]
pub enum ShardStartError {
    /// The app factory refused a route.
    #[error("shard {shard}: {source}")]
    Route {
        /// The shard.
        shard: usize,
        /// The routing error.
        source: RouteError,
    },
    /// The runtime or the listener could not be set up.
    #[error("shard {shard}: {what}: {source}")]
    Io {
        /// The shard.
        shard: usize,
        /// What was being set up.
        what: &'static str,
        /// The system error.
        source: std::io::Error,
    },
}

/// How a shard's drain ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests this shard answered over its life.
    pub answered: u64,
    /// Requests still in flight when `drain_timeout` ran out.
    pub abandoned_requests: usize,
    /// Background tasks still running when `drain_timeout` ran out.
    pub abandoned_tasks: usize,
}

/// The body of a shard thread.
pub(crate) fn run<F>(spec: ShardSpec<F>) -> DrainReport
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let id = spec.id;
    if let Some(core) = spec.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            tracing::warn!(shard = id, core, "could not pin shard to core");
        }
    }
    let ready = spec.ready.clone();
    let backend = spec.backend;
    match backend::block_on(backend, serve(spec)) {
        Ok(report) => report,
        Err(source) => {
            let _ = ready.send(Err(ShardStartError::Io { shard: id, what: "building the runtime", source }));
            DrainReport::default()
        }
    }
}

async fn serve<F>(spec: ShardSpec<F>) -> DrainReport
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let id = spec.id;
    let mut router = match (spec.factory)() {
        Ok(r) => r,
        Err(source) => {
            let _ = spec.ready.send(Err(ShardStartError::Route { shard: id, source }));
            return DrainReport::default();
        }
    };
    router.finish();
    let router = Rc::new(router);
    let listener = match TcpListener::from_std(spec.listener) {
        Ok(l) => l,
        Err(source) => {
            let _ = spec.ready.send(Err(ShardStartError::Io {
                shard: id,
                what: "registering the listener",
                source,
            }));
            return DrainReport::default();
        }
    };
    let shard = ShardLocal::new(id, spec.limits, router.len());
    spawn_date_ticker(&shard);
    if let Some(link) = spec.link.clone() {
        let _ = link.reports.send(ShardReport::Routes { shard: id, routes: router.slot_names() });
        spawn_snapshot_ticker(&shard, link);
    }
    let _ = spec.ready.send(Ok(id));
    tracing::debug!(shard = id, core = ?spec.core, "shard ready");

    accept_loop(&listener, &shard, &router, &spec.stop).await;
    drop(listener);

    // Drain: requests already received are answered (the last response of each
    // connection says `Connection: close`), then background tasks finish; idle
    // keep-alive connections close with the runtime. All within `drain_timeout`.
    shard.draining.set(true);
    let deadline = Instant::now() + spec.drain_timeout;
    let stats = Rc::clone(&shard.stats);
    let mut woken = 0;
    while (stats.open_connections.get() > 0 || stats.background_live.get() > 0) && Instant::now() < deadline {
        // Wake connections idling between requests (new ones may turn idle after
        // answering what they had buffered).
        woken += shard.conns.borrow().shutdown(true);
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    // Whatever is still open past the deadline gets end of file, not a silent drop.
    shard.conns.borrow().shutdown(false);
    tracing::debug!(shard = id, idle_closed = woken, "drain finished");
    let report = DrainReport {
        answered: stats.requests.get(),
        abandoned_requests: stats.in_flight.get(),
        abandoned_tasks: stats.background_live.get(),
    };
    if report.abandoned_requests > 0 || report.abandoned_tasks > 0 {
        tracing::error!(
            shard = id,
            requests = report.abandoned_requests,
            background_tasks = report.abandoned_tasks,
            timeout_ms = spec.drain_timeout.as_millis() as u64,
            "drain timed out; abandoning work"
        );
    }
    // Pooled contexts hold an `Rc` of the shard: clear the pool to break the cycle.
    shard.pool.borrow_mut().clear();
    tracing::debug!(shard = id, requests = report.answered, "shard stopped");
    report
}

async fn accept_loop(listener: &TcpListener, shard: &Rc<ShardLocal>, router: &Rc<Router>, stop: &AtomicBool) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = stop_requested(stop) => None,
        };
        let Some(accepted) = accepted else { return };
        match accepted {
            Ok((stream, peer)) => {
                let stats = &shard.stats;
                stats.accepted.set(stats.accepted.get() + 1);
                if stats.open_connections.get() >= shard.limits.max_connections {
                    stats.rejected_connections.set(stats.rejected_connections.get() + 1);
                    tracing::debug!(shard = shard.id, %peer, "connection limit reached; closing");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                monoio::spawn(conn::serve(stream, peer, Rc::clone(shard), Rc::clone(router)));
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: back off briefly instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn stop_requested(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the shard's counters to the control thread every `SNAPSHOT_EVERY` (the shard's
/// heartbeat). Snapshots come back to be refilled, so steady state allocates nothing.
fn spawn_snapshot_ticker(shard: &Rc<ShardLocal>, link: ShardLink) {
    let shard = Rc::downgrade(shard);
    monoio::spawn(async move {
        let mut unsent = None;
        loop {
            let Some(shard) = shard.upgrade() else { return };
            let mut snap = unsent.take().unwrap_or_else(|| link.blank());
            shard.stats.fill(&mut snap);
            snap.shard = shard.id;
            snap.taken_ms = link.now_ms();
            drop(shard);
            unsent = link.send(snap);
            monoio::time::sleep(SNAPSHOT_EVERY).await;
        }
    });
}

fn spawn_date_ticker(shard: &Rc<ShardLocal>) {
    let shard = Rc::downgrade(shard);
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(Duration::from_millis(500)).await;
            let Some(shard) = shard.upgrade() else { return };
            shard.date.refresh(SystemTime::now());
        }
    });
}
