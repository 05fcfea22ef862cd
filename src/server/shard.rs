//! A shard: one OS thread pinned to one core, running its own runtime, listener, router,
//! connection pool and counters.
//!
//! Invariant: a shard takes no lock and touches no shared atomic on the request path.
//! Everything here is `Rc`/`Cell`, owned by the shard's thread; the only cross-thread
//! values are the start-up report and the stop flag, read off the request path.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::TcpListener as StdListener;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use crate::rt::net::TcpListener;

use super::accept::{AcceptGuard, Shed};
use super::backend::{self, IoBackend};
use super::buffers::BufferPool;
use super::conn;
use crate::arena::FutureArena;
use crate::context::Context;
use crate::control::budgets::LimiterSpec;
use crate::control::{SNAPSHOT_EVERY, ShardLink, ShardReport};
use crate::http::Limits;
use crate::http::response::HeadMemo;
use crate::metrics::{LimiterUsage, Snapshot};
use crate::ratelimit::GlobalShare;
use crate::router::{RouteError, Router};
use crate::shard_handle::ShardHandle;
use crate::watch::{self, ConnRegistry};

/// What a request needs while it is served: its context and the arena of its chain.
/// Pooled per shard and held by a connection only from the arrival of a request's first
/// bytes until the connection idles again, so an idle connection holds none.
pub(crate) struct RequestState {
    pub(crate) ctx: Context,
    pub(crate) arena: FutureArena,
}

/// Most request states kept for reuse per shard (more are in use only while that many
/// connections are mid-request at once).
const POOL_MAX: usize = 256;

/// The engine's per-shard state: the request-facing [`ShardHandle`], plus the
/// connection registry, pools and drain flag that only the engine touches (`Rc`, never
/// `Send`). Nothing a connection or context keeps points back here, so dropping the
/// shard frees everything without a cycle to break.
pub(crate) struct ShardLocal {
    pub(crate) handle: Rc<ShardHandle>,
    pub(crate) draining: Cell<bool>,
    pub(crate) buffers: Rc<BufferPool>,
    pub(crate) conns: RefCell<ConnRegistry>,
    /// The shard's answers' shared head start, encoded once (see [`HeadMemo`]).
    pub(crate) head_memo: RefCell<HeadMemo>,
    /// Scratch space of the request loop's synchronous steps (the router's toggled-slash
    /// path, the draining shard's look at the next buffered head). Kept here, not in
    /// each connection's future, so an idle connection does not carry them.
    pub(crate) scratch: RefCell<LoopScratch>,
    /// Boxed so a connection task holds a pointer, not a large struct, in its future.
    #[allow(clippy::vec_box)]
    pool: RefCell<Vec<Box<RequestState>>>,
}

impl ShardLocal {
    pub(crate) fn new(id: usize, limits: Limits, routes: usize, span_capacity: usize) -> Rc<ShardLocal> {
        Rc::new(ShardLocal {
            handle: ShardHandle::new(id, limits, routes, span_capacity),
            draining: Cell::new(false),
            buffers: Rc::new(BufferPool::default()),
            conns: RefCell::new(ConnRegistry::default()),
            head_memo: RefCell::new(HeadMemo::default()),
            scratch: RefCell::new(LoopScratch::default()),
            pool: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn id(&self) -> usize {
        self.handle.id
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.handle.limits
    }

    /// A request state from the pool, or a new one.
    pub(crate) fn take_state(&self) -> Box<RequestState> {
        if let Some(state) = self.pool.borrow_mut().pop() {
            return state;
        }
        Box::new(RequestState { ctx: Context::new(Rc::clone(&self.handle)), arena: FutureArena::new() })
    }

    /// Returns a request state between requests (already reset: the request loop resets
    /// each one as its request ends): its grown buffers go back to the buffer pool, the
    /// state to the pool (or is dropped when the pool is full).
    pub(crate) fn give_state(&self, mut state: Box<RequestState>) {
        let ctx = &mut state.ctx;
        ctx.peer = None;
        for buf in ctx.idle_buffers() {
            self.buffers.shrink(buf);
        }
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_MAX {
            pool.push(state);
        }
    }
}

/// See [`ShardLocal::scratch`]. Each use borrows it for one synchronous step, never
/// across an await.
#[derive(Default)]
pub(crate) struct LoopScratch {
    /// The request path with its trailing slash toggled (redirect lookups).
    pub(crate) path: Vec<u8>,
    /// A parse of the head after the current request, made while draining.
    pub(crate) next_head: Option<crate::http::request::RequestHead>,
}

/// Everything a shard thread needs to start (and to start again after a death).
pub(crate) struct ShardSpec<F> {
    pub(crate) id: usize,
    pub(crate) core: Option<usize>,
    pub(crate) factory: Arc<F>,
    pub(crate) backend: IoBackend,
    pub(crate) limits: Limits,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) ready: crossbeam_channel::Sender<Result<usize, ShardStartError>>,
    pub(crate) drain_timeout: Duration,
    /// The channels to the control thread, when one runs.
    pub(crate) link: Option<ShardLink>,
    /// How many shards the server runs (global rate limits start with an even share).
    pub(crate) shards: usize,
    /// What happens when the shard thread dies.
    pub(crate) on_death: ShardDeathPolicy,
    /// Where a restarted shard binds its fresh listener.
    pub(crate) listen: std::net::SocketAddr,
    pub(crate) backlog: u32,
    /// When this shard was restarted before (for the restart budget).
    pub(crate) restarts: Vec<Instant>,
    /// Sampled spans kept between snapshots; 0 when no span export is configured.
    pub(crate) span_capacity: usize,
    /// The server's cache invalidation channels, and this shard's receiving end.
    pub(crate) cache_bus: Arc<crate::cache::bus::Bus>,
    pub(crate) invalidations: crossbeam_channel::Receiver<crate::cache::bus::Message>,
}

/// What the server does when a shard thread dies (a panic that escaped every
/// containment: a task spawned on the runtime directly, a bug in the engine's own loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardDeathPolicy {
    /// Log it and exit the process with [`EXIT_SHARD_DIED`](crate::EXIT_SHARD_DIED), so a
    /// supervisor (systemd, Kubernetes) restarts the whole server.
    #[default]
    Exit,
    /// Start the shard again on a fresh thread with a fresh listener (at most
    /// [`RESTARTS_PER_MINUTE`] times a minute; past that, exit as above).
    Restart,
}

/// Restarts allowed per shard within one minute before a restart policy gives up.
pub const RESTARTS_PER_MINUTE: usize = 5;

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
    /// A start-up task the factory registered (`ringo::startup::before_ready`) failed
    /// and its policy is to stop the start.
    #[error("shard {shard}: start-up task {task} failed: {reason}")]
    Startup {
        /// The shard.
        shard: usize,
        /// The task's name.
        task: String,
        /// Why it failed.
        reason: String,
    },
}

/// How a shard's drain ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// The shard thread died (a panic no containment caught) and was not replaced.
    pub died: bool,
    /// Requests this shard answered over its life.
    pub answered: u64,
    /// Requests still in flight when `drain_timeout` ran out.
    pub abandoned_requests: usize,
    /// Background tasks still running when `drain_timeout` ran out.
    pub abandoned_tasks: usize,
}

/// The body of a shard thread: serves until stopped, and handles the shard's death.
pub(crate) fn run<F>(spec: ShardSpec<F>, listener: StdListener) -> DrainReport
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let id = spec.id;
    if let Some(core) = spec.core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            tracing::warn!(shard = id, core, "could not pin shard to core");
        }
    }
    // A second descriptor for the listening socket, outside the runtime: if the shard
    // dies, the runtime's own may never be closed (its close is queued on a ring that is
    // torn down unwinding), and a listener nobody accepts on would keep its share of
    // the port's SO_REUSEPORT group, so this one takes the socket out of LISTEN.
    let dead_listener_guard = listener.try_clone().ok();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        backend::block_on(spec.backend, serve(&spec, listener))
    }));
    match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(source)) => {
            let _ =
                spec.ready.send(Err(ShardStartError::Io { shard: id, what: "building the runtime", source }));
            DrainReport::default()
        }
        Err(panic) => {
            if let Some(l) = &dead_listener_guard {
                crate::sys::shutdown_socket(std::os::fd::AsRawFd::as_raw_fd(l), crate::sys::Direction::Both);
            }
            drop(dead_listener_guard);
            died(spec, panic_message(&*panic))
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

/// A shard thread died: never silently. Tell the control thread (`/healthz` fails at
/// once), log, and exit or restart by policy.
fn died<F>(mut spec: ShardSpec<F>, why: &str) -> DrainReport
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let id = spec.id;
    if let Some(link) = &spec.link {
        let _ = link.reports.send(ShardReport::Died { shard: id });
    }
    if spec.stop.load(Ordering::Relaxed) {
        tracing::error!(shard = id, panic = why, "shard thread died while stopping");
        return DrainReport { died: true, ..DrainReport::default() };
    }
    let now = Instant::now();
    spec.restarts.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
    let restart = spec.on_death == ShardDeathPolicy::Restart && spec.restarts.len() < RESTARTS_PER_MINUTE;
    if !restart {
        tracing::error!(
            shard = id,
            panic = why,
            policy = ?spec.on_death,
            exit_status = crate::EXIT_SHARD_DIED,
            "shard thread died; exiting so the supervisor restarts the server"
        );
        std::process::exit(crate::EXIT_SHARD_DIED);
    }
    spec.restarts.push(now);
    tracing::error!(
        shard = id,
        panic = why,
        restarts = spec.restarts.len(),
        "shard thread died; restarting it"
    );
    let listener = match super::listener::bind_reuseport(spec.listen, 1, spec.backlog).map(|mut l| l.pop()) {
        Ok(Some(l)) => l,
        Ok(None) | Err(_) => {
            tracing::error!(shard = id, addr = %spec.listen, "cannot bind a listener for the restarted shard; exiting");
            std::process::exit(crate::EXIT_SHARD_DIED);
        }
    };
    let replacement =
        std::thread::Builder::new().name(format!("ringo-shard-{id}")).spawn(move || run(spec, listener));
    match replacement {
        // This thread stays parked in `join`, so the server's handle still joins the
        // shard's whole line of replacements at shutdown.
        Ok(thread) => thread.join().unwrap_or(DrainReport { died: true, ..DrainReport::default() }),
        Err(e) => {
            tracing::error!(shard = id, error = %e, "cannot spawn the restarted shard; exiting");
            std::process::exit(crate::EXIT_SHARD_DIED);
        }
    }
}

async fn serve<F>(spec: &ShardSpec<F>, listener: StdListener) -> DrainReport
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    let id = spec.id;
    // Caches the factory builds join this shard's side of the invalidation bus.
    crate::cache::bus::join(id, Arc::clone(&spec.cache_bus));
    let mut router = match (spec.factory)() {
        Ok(r) => r,
        Err(source) => {
            let _ = spec.ready.send(Err(ShardStartError::Route { shard: id, source }));
            return DrainReport::default();
        }
    };
    router.finish();
    let router = Rc::new(router);
    // Global rate limiters the factory built: an even share each until the control
    // thread rebalances by demand.
    let limiters = crate::ratelimit::take_registered();
    for l in &limiters {
        l.set_share(l.rate / spec.shards.max(1) as f64);
    }
    let mut listener = match TcpListener::from_std(listener) {
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
    let shard = ShardLocal::new(id, spec.limits.clone(), router.len(), spec.span_capacity);
    let _wakers = ForgetWakers(Rc::clone(&shard));
    let stats = Rc::clone(&shard.handle.stats);
    stats.shard_restarts.set(spec.restarts.len() as u64);
    spawn_date_ticker(&shard.handle);
    spawn_sweeper(&shard);
    crate::cache::bus::spawn_timer(spec.invalidations.clone());
    if let Some(link) = spec.link.clone() {
        let _ = link.reports.send(ShardReport::Routes { shard: id, routes: router.slot_names() });
        if !limiters.is_empty() {
            let specs =
                limiters.iter().map(|l| LimiterSpec { name: l.name.to_string(), rate: l.rate }).collect();
            let _ = link.reports.send(ShardReport::Limiters { limiters: specs });
        }
        spawn_snapshot_ticker(&shard.handle, link, limiters.clone());
    }
    if let Err((task, reason)) = crate::startup::run_registered(id).await {
        let _ = spec.ready.send(Err(ShardStartError::Startup { shard: id, task, reason }));
        return DrainReport::default();
    }
    let _ = spec.ready.send(Ok(id));
    tracing::debug!(shard = id, core = ?spec.core, "shard ready");

    accept_loop(&mut listener, &shard, &router, &spec.stop).await;
    drop(listener);

    // Drain: requests already received are answered (the last response of each
    // connection says `Connection: close`), then background tasks finish; idle
    // keep-alive connections close with the runtime. All within `drain_timeout`.
    shard.draining.set(true);
    let deadline = Instant::now() + spec.drain_timeout;
    let mut woken = 0;
    while (stats.open_connections.get() > 0 || stats.background_live.get() > 0) && Instant::now() < deadline {
        // Wake connections idling between requests (new ones may turn idle after
        // answering what they had buffered).
        woken += shard.conns.borrow().shutdown(true);
        crate::time::sleep(Duration::from_millis(5)).await;
    }
    // Whatever is still open past the deadline gets end of file, not a silent drop.
    shard.conns.borrow().shutdown(false);
    tracing::debug!(shard = id, idle_closed = woken, "drain finished");
    if let Some(link) = &spec.link {
        // The last counters (and spans) since the ticker's final turn.
        let _ = link.send(fill_snapshot(&shard.handle, link, &limiters, link.blank()));
    }
    let report = DrainReport {
        answered: stats.requests.get(),
        abandoned_requests: stats.in_flight.get(),
        abandoned_tasks: stats.background_live.get(),
        died: false,
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
    tracing::debug!(shard = id, requests = report.answered, "shard stopped");
    report
}

async fn accept_loop(
    listener: &mut TcpListener,
    shard: &Rc<ShardLocal>,
    router: &Rc<Router>,
    stop: &AtomicBool,
) {
    let stats = Rc::clone(&shard.handle.stats);
    let mut guard = AcceptGuard::new(shard.id());
    // One stop check for the loop's life (a 20 ms timer re-armed), not one per accept.
    let mut stopped = pin!(stop_requested(stop));
    loop {
        let accepted = {
            // The accept, or the stop request, whichever comes first. A dropped accept
            // loses no connection: the listener's multishot accept stays armed, and what
            // it accepted waits in the listener for the next call.
            let mut accept = pin!(listener.accept());
            poll_fn(|cx| {
                if let Poll::Ready(r) = accept.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                stopped.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        let Some(accepted) = accepted else { return };
        match accepted {
            Ok((stream, peer)) => {
                guard.accepted();
                stats.accepted.set(stats.accepted.get() + 1);
                // Counted here, before the task runs, so a burst of accepts in one turn
                // cannot overshoot the limit.
                if stats.open_connections.get() >= shard.limits().max_connections {
                    stats.rejected_connections.set(stats.rejected_connections.get() + 1);
                    tracing::debug!(shard = shard.id(), %peer, "connection limit reached; closing");
                    drop(stream);
                    continue;
                }
                stats.open_connections.set(stats.open_connections.get() + 1);
                // TCP_NODELAY comes from the listener (Linux copies it to every accepted
                // socket; `listener`'s test holds it): no setsockopt per connection.
                crate::time::spawn(conn::serve(stream, peer, Rc::clone(shard), Rc::clone(router)));
            }
            Err(e) => {
                stats.accept_errors.set(stats.accept_errors.get() + 1);
                let listener_fd = std::os::fd::AsRawFd::as_raw_fd(&*listener);
                match guard.failed(&e, listener_fd) {
                    Shed::Closed(n) => {
                        stats.rejected_connections.set(stats.rejected_connections.get() + n as u64);
                    }
                    Shed::Wait(pause) => crate::time::sleep(pause).await,
                }
            }
        }
    }
}

async fn stop_requested(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        crate::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the shard's counters to the control thread every `SNAPSHOT_EVERY` (the shard's
/// heartbeat), with the demand on each global rate limiter, and applies the shares the
/// control thread sends back. Snapshots come back to be refilled, so steady state
/// allocates nothing.
fn spawn_snapshot_ticker(shard: &Rc<ShardHandle>, link: ShardLink, limiters: Vec<Rc<GlobalShare>>) {
    let shard = Rc::downgrade(shard);
    crate::time::spawn(async move {
        let mut unsent = None;
        loop {
            let Some(shard) = shard.upgrade() else { return };
            while let Ok(budget) = link.budgets.try_recv() {
                if let Some(l) = limiters.get(budget.limiter) {
                    l.set_share(budget.share);
                }
            }
            let snap = unsent.take().unwrap_or_else(|| link.blank());
            let snap = fill_snapshot(&shard, &link, &limiters, snap);
            drop(shard);
            unsent = link.send(snap);
            crate::time::sleep(SNAPSHOT_EVERY).await;
        }
    });
}

/// The shard's counters, limiter demand and finished spans, written into `snap`.
fn fill_snapshot(
    shard: &ShardHandle,
    link: &ShardLink,
    limiters: &[Rc<GlobalShare>],
    mut snap: Snapshot,
) -> Snapshot {
    shard.stats.fill(&mut snap);
    let io = crate::rt::io_counts();
    (snap.io_enters, snap.io_fallback_reads) = (io.enters, io.fallback_reads);
    snap.limiters.clear();
    snap.limiters.extend(limiters.iter().map(|l| LimiterUsage {
        demand: l.demand.get(),
        refused: l.refused.get(),
        share: l.share(),
    }));
    (snap.spans_recorded, snap.spans_dropped) = shard.spans.take_into(&mut snap.spans);
    crate::redis::fill_snapshots(&mut snap.redis, link.redis_ready_required);
    crate::cache::bus::fill_snapshots(&mut snap.caches);
    snap.shard = shard.id;
    snap.taken_ms = link.now_ms();
    snap
}

fn spawn_date_ticker(shard: &Rc<ShardHandle>) {
    let shard = Rc::downgrade(shard);
    crate::time::spawn(async move {
        loop {
            crate::time::sleep(Duration::from_millis(500)).await;
            let Some(shard) = shard.upgrade() else { return };
            let now = SystemTime::now();
            shard.date.refresh(now);
            shard.refresh_wall_anchor(now);
        }
    });
}

/// Breaks the registry's waker cycle when the shard's serve future ends or unwinds.
struct ForgetWakers(Rc<ShardLocal>);

impl Drop for ForgetWakers {
    fn drop(&mut self) {
        if let Ok(conns) = self.0.conns.try_borrow() {
            conns.forget_wakers();
        }
    }
}

/// Every [`watch::TICK`]: expires the deadlines of waiting connections and asks
/// long-idle ones to park. Ends with the shard.
fn spawn_sweeper(shard: &Rc<ShardLocal>) {
    let shard = Rc::downgrade(shard);
    crate::time::spawn(async move {
        loop {
            crate::time::sleep(watch::TICK).await;
            let Some(shard) = shard.upgrade() else { return };
            if shard.conns.borrow().len() == 0 {
                continue;
            }
            let now = Instant::now();
            shard.conns.borrow().sweep(now);
        }
    });
}
