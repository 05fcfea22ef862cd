//! The server: starts one shard per core, each with its own listener and router, and
//! stops them.
//!
//! ```no_run
//! use ringo::{Context, Router, Server};
//! Server::new(|| {
//!     let mut r = Router::new();
//!     r.get("/ping", |c: &mut Context| c.string(200, "pong"))?;
//!     Ok(r)
//! })
//! .listen("127.0.0.1:8080".parse().unwrap())
//! .run()
//! .unwrap();
//! ```

mod accept;
pub(crate) mod backend;
pub(crate) mod buffers;
pub(crate) mod conn;
pub(crate) mod connection;
pub(crate) mod listener;
pub(crate) mod shard;

pub use backend::IoBackend;
pub use shard::{DrainReport, RESTARTS_PER_MINUTE, ShardDeathPolicy, ShardStartError};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::control::otlp::{TraceExport, TraceExportError};
use crate::control::{self, Lifecycle, LifecycleCell};
use crate::http::Limits;
use crate::router::{RouteError, Router};

/// How the server runs: address, shards, cores, io backend, limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the data listener.
    pub listen: SocketAddr,
    /// Number of shards; `None` means one per core in `cores` (or the affinity mask).
    pub shards: Option<usize>,
    /// Cores to pin shards to, in order; `None` means the process's affinity mask.
    pub cores: Option<Vec<usize>>,
    /// Whether to pin shard threads to their cores.
    pub pin: bool,
    /// The io backend.
    pub io_backend: IoBackend,
    /// Listen backlog of each shard's socket.
    pub backlog: u32,
    /// Request limits.
    pub limits: Limits,
    /// How long a stopping shard waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Admin listener (health, metrics); `None` runs no control thread.
    pub admin: Option<SocketAddr>,
    /// After `/readyz` turns 503 on shutdown, wait this long before closing listeners,
    /// so load balancers notice.
    pub drain_delay: Duration,
    /// A shard silent for longer than this fails `/healthz`.
    pub stall_threshold: Duration,
    /// Core for the control thread; `None`: the first allowed core no shard uses, if any.
    pub control_core: Option<usize>,
    /// What happens when a shard thread dies.
    pub on_shard_death: ShardDeathPolicy,
    /// OTLP export of sampled request spans (needs `admin`: spans travel with the
    /// snapshots to the control thread); `None`: no spans are kept.
    pub trace_export: Option<TraceExport>,
    /// `/readyz` answers 503 while a shard's Redis client has no connection up (and
    /// the shards connect their clients at start instead of on first use).
    pub ready_requires_redis: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            shards: None,
            cores: None,
            pin: true,
            io_backend: IoBackend::Auto,
            backlog: 4096,
            limits: Limits::default(),
            drain_timeout: Duration::from_secs(10),
            admin: None,
            drain_delay: Duration::ZERO,
            stall_threshold: Duration::from_secs(2),
            control_core: None,
            on_shard_death: ShardDeathPolicy::Exit,
            trace_export: None,
            ready_requires_redis: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listeners could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The system error.
        source: std::io::Error,
    },
    /// `--io-backend uring` was asked for and the kernel refuses io_uring.
    #[error("io_uring is unavailable: {0} (use --io-backend auto or epoll)")]
    IoUringUnavailable(String),
    /// No core to run on.
    #[error("no cores to run shards on: {0}")]
    Cores(String),
    /// A limit cannot be honoured (e.g. past what a request's 32-bit offsets address).
    #[error("invalid value for {key}: {message}")]
    Limits {
        /// The key, e.g. `limits.max_body_bytes`.
        key: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// A shard failed to start.
    #[error(transparent)]
    Shard(#[from] ShardStartError),
    /// A shard thread could not be spawned.
    #[error("cannot spawn a shard thread: {0}")]
    Thread(std::io::Error),
    /// The admin listener could not be bound, or the control thread started.
    #[error("cannot start the admin listener on {addr}: {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The system error.
        source: std::io::Error,
    },
    /// The drain timed out: requests or background tasks were abandoned.
    #[error(
        "shutdown abandoned {} request(s) and {} background task(s) at the drain timeout",
        .0.abandoned_requests,
        .0.abandoned_tasks
    )]
    Abandoned(ShutdownReport),
    /// Installing signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// Span export could not start.
    #[error(transparent)]
    TraceExport(TraceExportError),
}

/// A ringo server: an app factory plus its configuration.
///
/// The factory runs once on every shard thread, so handlers may hold `Rc`/`RefCell`
/// per-shard state (like actix's `HttpServer::new`).
pub struct Server<F> {
    factory: Arc<F>,
    config: ServerConfig,
}

impl<F> std::fmt::Debug for Server<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<F> Server<F>
where
    F: Fn() -> Result<Router, RouteError> + Send + Sync + 'static,
{
    /// A server whose shards each build their router with `factory`.
    pub fn new(factory: F) -> Self {
        Server { factory: Arc::new(factory), config: ServerConfig::default() }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the data listener's address (port 0 picks a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Sets the number of shards.
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = Some(n);
        self
    }

    /// Sets the io backend.
    pub fn io_backend(mut self, backend: IoBackend) -> Self {
        self.config.io_backend = backend;
        self
    }

    /// Sets the request limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Starts every shard and returns once all of them listen.
    pub fn start(self) -> Result<RunningServer, ServerError> {
        let cfg = self.config;
        cfg.limits.validate().map_err(|e| ServerError::Limits { key: e.key, message: e.message })?;
        let cores = plan_cores(cfg.shards, cfg.cores.as_deref())?;
        let backend = backend::resolve(cfg.io_backend).map_err(ServerError::IoUringUnavailable)?;
        let listeners = listener::bind_reuseport(cfg.listen, cores.len(), cfg.backlog)
            .map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let addr =
            listeners[0].local_addr().map_err(|source| ServerError::Bind { addr: cfg.listen, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let lifecycle = LifecycleCell::default();
        let started = Instant::now();
        let (ends, links) = control::channels(cores.len(), started, cfg.ready_requires_redis);
        let spans = match (&cfg.trace_export, cfg.admin) {
            (None, _) => None,
            (Some(_), None) => return Err(ServerError::TraceExport(TraceExportError::NoControlThread)),
            (Some(export), Some(_)) => {
                Some(control::otlp::SpanExport::start(export).map_err(ServerError::TraceExport)?)
            }
        };
        let span_capacity = cfg.trace_export.as_ref().map_or(0, |e| e.spans_per_shard);
        let (cache_bus, mut invalidations) = crate::cache::bus::Bus::new(cores.len());
        let control = match cfg.admin {
            Some(admin_addr) => {
                let admin = std::net::TcpListener::bind(admin_addr)
                    .map_err(|source| ServerError::Admin { addr: admin_addr, source })?;
                let bound =
                    admin.local_addr().map_err(|source| ServerError::Admin { addr: admin_addr, source })?;
                let control_core = cfg.control_core.or_else(|| free_core(&cores));
                let spec = control::ControlSpec {
                    admin,
                    shards: cores.len(),
                    backend: backend.as_str(),
                    stall_after: cfg.stall_threshold,
                    lifecycle: lifecycle.clone(),
                    reports: ends.reports,
                    recycle: ends.recycle,
                    budgets: ends.budgets,
                    started,
                    spans,
                    redis_ready_required: cfg.ready_requires_redis,
                };
                let handle = control::spawn(spec, if cfg.pin { control_core } else { None })
                    .map_err(|source| ServerError::Admin { addr: admin_addr, source })?;
                tracing::info!(admin = %bound, core = ?control_core, "control thread started");
                Some((handle, bound))
            }
            None => None,
        };
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        let mut threads = Vec::with_capacity(cores.len());
        for (id, (listener, core)) in listeners.into_iter().zip(&cores).enumerate() {
            let spec = shard::ShardSpec {
                id,
                core: cfg.pin.then_some(*core),
                factory: Arc::clone(&self.factory),
                backend,
                limits: cfg.limits.clone(),
                stop: Arc::clone(&stop),
                ready: ready_tx.clone(),
                drain_timeout: cfg.drain_timeout,
                link: control.as_ref().map(|_| links[id].clone()),
                shards: cores.len(),
                on_death: cfg.on_shard_death,
                listen: addr,
                backlog: cfg.backlog,
                restarts: Vec::new(),
                span_capacity,
                cache_bus: Arc::clone(&cache_bus),
                invalidations: invalidations.remove(0),
            };
            let handle = std::thread::Builder::new()
                .name(format!("ringo-shard-{id}"))
                .spawn(move || shard::run(spec, listener))
                .map_err(ServerError::Thread)?;
            threads.push(handle);
        }
        drop(ready_tx);
        let (control, admin_addr) = match control {
            Some((c, a)) => (Some(c), Some(a)),
            None => (None, None),
        };
        let running = RunningServer {
            addr,
            admin_addr,
            backend,
            cores: cores.clone(),
            stop,
            threads,
            lifecycle,
            control,
            drain_delay: cfg.drain_delay,
        };
        for _ in 0..cores.len() {
            match ready_rx.recv() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    running.shutdown();
                    return Err(ServerError::Shard(e));
                }
                Err(_) => {
                    running.shutdown();
                    return Err(ServerError::Cores("a shard thread exited during start-up".into()));
                }
            }
        }
        running.lifecycle.set(Lifecycle::Ready);
        tracing::info!(
            %addr,
            shards = cores.len(),
            io_backend = %backend,
            cores = ?cores,
            "ringo listening"
        );
        Ok(running)
    }

    /// Starts, then serves until SIGINT or SIGTERM, then stops gracefully.
    ///
    /// A second signal during the drain exits the process at once with status
    /// [`EXIT_FORCED`]; a drain that times out with work left returns
    /// [`ServerError::Abandoned`] (the CLI exits with [`EXIT_ABANDONED`]).
    pub fn run(self) -> Result<(), ServerError> {
        let term = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&term)).map_err(ServerError::Signals)?;
        }
        let running = self.start()?;
        while !term.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        term.store(false, Ordering::Relaxed);
        tracing::info!("signal received; draining (a second signal forces exit)");
        let drain = std::thread::spawn(move || running.shutdown());
        while !drain.is_finished() {
            if term.load(Ordering::Relaxed) {
                tracing::error!(
                    "second signal: exiting now, abandoning in-flight requests and background tasks"
                );
                std::process::exit(EXIT_FORCED);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let report = drain.join().unwrap_or_default();
        if report.is_clean() {
            tracing::info!(answered = report.answered, "stopped");
            Ok(())
        } else {
            Err(ServerError::Abandoned(report))
        }
    }
}

/// Exit status when a second signal cut the drain short.
pub const EXIT_FORCED: i32 = 4;
/// Exit status when the drain timed out with work left.
pub const EXIT_ABANDONED: i32 = 3;
/// Exit status when a shard thread died and the policy is `exit` (EX_SOFTWARE).
pub const EXIT_SHARD_DIED: i32 = 70;

/// Picks the core of each shard: `cores` (or the affinity mask), cut or cycled to
/// `shards` entries.
pub(crate) fn plan_cores(shards: Option<usize>, cores: Option<&[usize]>) -> Result<Vec<usize>, ServerError> {
    let available: Vec<usize> = match cores {
        Some(list) if !list.is_empty() => list.to_vec(),
        Some(_) => return Err(ServerError::Cores("the core list is empty".into())),
        None => {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            let mut ids: Vec<usize> = ids.into_iter().map(|c| c.id).collect();
            if ids.is_empty() {
                ids.push(0);
            }
            ids
        }
    };
    let n = match shards {
        Some(0) => return Err(ServerError::Cores("--shards must be at least 1".into())),
        Some(n) => n,
        None => available.len(),
    };
    Ok((0..n).map(|i| available[i % available.len()]).collect())
}

/// The first allowed core that no shard uses (for the control thread).
fn free_core(shard_cores: &[usize]) -> Option<usize> {
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    allowed.into_iter().map(|c| c.id).find(|id| !shard_cores.contains(id))
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    backend: IoBackend,
    cores: Vec<usize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<DrainReport>>,
    lifecycle: LifecycleCell,
    control: Option<control::Control>,
    drain_delay: Duration,
}

impl RunningServer {
    /// The address the data listener is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The io backend in use (`auto` resolved).
    pub fn io_backend(&self) -> IoBackend {
        self.backend
    }

    /// The core of each shard, by shard id.
    pub fn cores(&self) -> &[usize] {
        &self.cores
    }

    /// The admin listener's address, when a control thread runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Turns `/readyz` to 503, waits `drain_delay`, stops accepting, lets in-flight
    /// requests finish, and joins every shard and the control thread.
    pub fn shutdown(self) -> ShutdownReport {
        self.lifecycle.set(Lifecycle::Draining);
        if !self.drain_delay.is_zero() {
            std::thread::sleep(self.drain_delay);
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut report = ShutdownReport::default();
        for t in self.threads {
            match t.join() {
                Ok(r) => {
                    report.answered += r.answered;
                    report.abandoned_requests += r.abandoned_requests;
                    report.abandoned_tasks += r.abandoned_tasks;
                    report.panicked_shards += usize::from(r.died);
                }
                Err(_) => report.panicked_shards += 1,
            }
        }
        self.lifecycle.set(Lifecycle::Stopped);
        if let Some(c) = self.control {
            let _ = c.thread.join();
        }
        report
    }
}

/// How a shutdown ended, summed over the shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests answered over the server's life.
    pub answered: u64,
    /// Requests still in flight when the drain timed out.
    pub abandoned_requests: usize,
    /// Background tasks still running when the drain timed out.
    pub abandoned_tasks: usize,
    /// Shard threads that ended by panicking.
    pub panicked_shards: usize,
}

impl ShutdownReport {
    /// Whether every received request was answered and every task finished.
    pub fn is_clean(&self) -> bool {
        self.abandoned_requests == 0 && self.abandoned_tasks == 0 && self.panicked_shards == 0
    }
}
