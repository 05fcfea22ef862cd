//! The control thread: lifecycle, shard snapshots and heartbeats, the admin listener.
//!
//! Shards never share state with it: each sends a [`Snapshot`] of its plain counters by
//! message (crossbeam, every [`SNAPSHOT_EVERY`]), and gets the previous one back to
//! refill, so neither side allocates in steady state. A snapshot doubles as the shard's
//! heartbeat: a shard whose thread is blocked (a handler doing blocking work) stops
//! sending, and `/healthz` fails naming it. The admin listener (loopback by default)
//! answers `/healthz`, `/readyz`, `/metrics` and `/debug/shards` (`endpoints.rs`).
//!
//! One loop does it all, and nothing in it blocks except the wait for the next report
//! (at most [`TICK`]): absorb and recycle snapshots, run the watchdog, then one turn of
//! the admin connections (`admin.rs`: non-blocking sockets, deadlines and caps), so no
//! admin client can hold back the heartbeats or snapshot recycling. Sampled spans
//! arrive inside the snapshots and leave as OTLP batches through the exporter thread
//! (`otlp.rs`), which alone may wait on the network.

mod admin;
pub(crate) mod budgets;
mod endpoints;
pub(crate) mod otlp;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::metrics::Snapshot;

/// How often a shard reports.
pub(crate) const SNAPSHOT_EVERY: Duration = Duration::from_millis(200);

/// Longest wait of the control loop for a report before it turns anyway (watchdog,
/// admin connections).
pub(crate) const TICK: Duration = Duration::from_millis(20);

/// The server's lifecycle, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Lifecycle {
    /// Shards are starting; not ready.
    Starting = 0,
    /// Every shard listens; ready for traffic.
    Ready = 1,
    /// Shutdown began: not ready, in-flight requests finish.
    Draining = 2,
    /// Every shard has stopped.
    Stopped = 3,
}

impl Lifecycle {
    fn from_u8(v: u8) -> Lifecycle {
        match v {
            1 => Lifecycle::Ready,
            2 => Lifecycle::Draining,
            3 => Lifecycle::Stopped,
            _ => Lifecycle::Starting,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Starting => "starting",
            Lifecycle::Ready => "ready",
            Lifecycle::Draining => "draining",
            Lifecycle::Stopped => "stopped",
        }
    }
}

/// The lifecycle, shared by the main thread (which moves it) and the control thread
/// (which reports it). Never touched by shards.
#[derive(Debug, Clone, Default)]
pub(crate) struct LifecycleCell(Arc<AtomicU8>);

impl LifecycleCell {
    pub(crate) fn set(&self, l: Lifecycle) {
        self.0.store(l as u8, Ordering::Release);
    }

    pub(crate) fn get(&self) -> Lifecycle {
        Lifecycle::from_u8(self.0.load(Ordering::Acquire))
    }
}

/// A message from a shard to the control thread.
// Snapshots are nearly every message; keeping them inline (channel slots are
// preallocated) avoids a box per send.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ShardReport {
    /// The shard's route slots as `(method, pattern)`, sent once at start.
    Routes { shard: usize, routes: Vec<(String, String)> },
    /// The shard's counters now.
    Snapshot(Snapshot),
    /// The shard's thread died (its next snapshot, if it is restarted, revives it).
    Died { shard: usize },
    /// The global rate limiters the shard's factory built, in order (sent once).
    Limiters { limiters: Vec<budgets::LimiterSpec> },
}

/// A shard's end of the control channels.
#[derive(Debug, Clone)]
pub(crate) struct ShardLink {
    pub(crate) reports: Sender<ShardReport>,
    pub(crate) recycled: Receiver<Snapshot>,
    /// New shares of the global rate limiters, from the control thread.
    pub(crate) budgets: Receiver<budgets::Budget>,
    pub(crate) started: Instant,
    /// `/readyz` waits for the shard's Redis clients: connect them before requests do.
    pub(crate) redis_ready_required: bool,
}

impl ShardLink {
    /// Sends a snapshot without blocking; a full channel keeps it for the next tick.
    pub(crate) fn send(&self, snap: Snapshot) -> Option<Snapshot> {
        match self.reports.try_send(ShardReport::Snapshot(snap)) {
            Ok(()) => None,
            Err(
                TrySendError::Full(ShardReport::Snapshot(s))
                | TrySendError::Disconnected(ShardReport::Snapshot(s)),
            ) => Some(s),
            Err(_) => None,
        }
    }

    /// A snapshot to refill: one sent back by the control thread, or a new one.
    pub(crate) fn blank(&self) -> Snapshot {
        self.recycled.try_recv().unwrap_or_default()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// What the control thread is started with.
pub(crate) struct ControlSpec {
    pub(crate) admin: TcpListener,
    pub(crate) shards: usize,
    pub(crate) backend: &'static str,
    pub(crate) stall_after: Duration,
    pub(crate) lifecycle: LifecycleCell,
    pub(crate) reports: Receiver<ShardReport>,
    pub(crate) recycle: Vec<Sender<Snapshot>>,
    pub(crate) budgets: Vec<Sender<budgets::Budget>>,
    pub(crate) started: Instant,
    /// Span export, started by the server (so a bad endpoint fails `start`).
    pub(crate) spans: Option<otlp::SpanExport>,
    /// `/readyz` also needs every shard's Redis clients connected.
    pub(crate) redis_ready_required: bool,
}

/// The control thread, as the server holds it.
#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) thread: JoinHandle<()>,
}

/// The control thread's ends of the channels to the shards.
pub(crate) struct ControlEnds {
    pub(crate) reports: Receiver<ShardReport>,
    pub(crate) recycle: Vec<Sender<Snapshot>>,
    pub(crate) budgets: Vec<Sender<budgets::Budget>>,
}

/// Channels for `shards` shards: the control thread's ends and each shard's link.
pub(crate) fn channels(
    shards: usize,
    started: Instant,
    redis_ready_required: bool,
) -> (ControlEnds, Vec<ShardLink>) {
    let (tx, rx) = crossbeam_channel::bounded(shards * 8 + 8);
    let mut recycle = Vec::with_capacity(shards);
    let mut budgets = Vec::with_capacity(shards);
    let mut links = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (rtx, rrx) = crossbeam_channel::bounded(4);
        let (btx, brx) = crossbeam_channel::bounded(64);
        recycle.push(rtx);
        budgets.push(btx);
        links.push(ShardLink {
            reports: tx.clone(),
            recycled: rrx,
            budgets: brx,
            started,
            redis_ready_required,
        });
    }
    (ControlEnds { reports: rx, recycle, budgets }, links)
}

/// Starts the control thread on `core` (when given).
pub(crate) fn spawn(spec: ControlSpec, core: Option<usize>) -> std::io::Result<Control> {
    let thread = std::thread::Builder::new().name("ringo-control".into()).spawn(move || {
        if let Some(core) = core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                tracing::warn!(core, "could not pin the control thread");
            }
        }
        run(spec);
    })?;
    Ok(Control { thread })
}

/// The control thread's view of the shards.
pub(crate) struct State {
    pub(crate) latest: Vec<Option<Snapshot>>,
    pub(crate) routes: Vec<Vec<(String, String)>>,
    /// Requests per second per shard, smoothed.
    pub(crate) rate: Vec<f64>,
    /// Shards reported stalled (logged once per stall).
    pub(crate) stalled: Vec<bool>,
    /// Shards whose thread died and has not reported since.
    pub(crate) dead: Vec<bool>,
    /// Global rate limiters: demand per shard, shares sent.
    pub(crate) limiters: budgets::LimiterBoard,
    pub(crate) spec_shards: usize,
    pub(crate) backend: &'static str,
    pub(crate) stall_after: Duration,
    pub(crate) lifecycle: LifecycleCell,
    pub(crate) started: Instant,
    /// OTLP export of the shards' sampled spans, when configured.
    pub(crate) spans: Option<otlp::SpanExport>,
    /// `/readyz` also needs every shard's Redis clients connected.
    pub(crate) redis_ready_required: bool,
}

impl State {
    /// Shards with a Redis client whose connections are all down, by their latest
    /// snapshot.
    pub(crate) fn shards_without_redis(&self) -> Vec<usize> {
        self.latest
            .iter()
            .flatten()
            .filter(|s| s.redis.iter().any(|c| !c.connected))
            .map(|s| s.shard)
            .collect()
    }

    fn absorb(&mut self, report: ShardReport, recycle: &[Sender<Snapshot>]) {
        match report {
            ShardReport::Routes { shard, routes } => {
                if let Some(slot) = self.routes.get_mut(shard) {
                    *slot = routes;
                }
            }
            ShardReport::Limiters { limiters } => {
                self.limiters.declare(self.spec_shards, limiters);
            }
            ShardReport::Died { shard } => {
                if let Some(dead) = self.dead.get_mut(shard) {
                    *dead = true;
                    tracing::error!(shard, "shard thread died; /healthz fails until it reports again");
                }
            }
            ShardReport::Snapshot(mut snap) => {
                let shard = snap.shard;
                if let Some(export) = self.spans.as_mut() {
                    let routes = self.routes.get(shard).map(Vec::as_slice).unwrap_or(&[]);
                    export.absorb(shard, &snap.spans, routes);
                }
                // Emptied either way: the buffer goes back to the shard for reuse.
                snap.spans.clear();
                if let Some(dead) = self.dead.get_mut(shard) {
                    *dead = false;
                }
                self.limiters.absorb(&snap);
                let Some(slot) = self.latest.get_mut(shard) else { return };
                if let Some(prev) = slot.take() {
                    let dt = snap.taken_ms.saturating_sub(prev.taken_ms) as f64 / 1000.0;
                    if dt > 0.0 {
                        let now = snap.requests.saturating_sub(prev.requests) as f64 / dt;
                        self.rate[shard] =
                            if self.rate[shard] == 0.0 { now } else { 0.6 * now + 0.4 * self.rate[shard] };
                    }
                    // Hand the old one back for refilling; if the shard's queue is full,
                    // dropping it is fine (the shard allocates a new one later).
                    let _ = recycle[shard].try_send(prev);
                }
                *slot = Some(snap);
            }
        }
    }

    /// Age of each shard's last report; `None` before the first.
    pub(crate) fn heartbeat_ages(&self) -> Vec<Option<Duration>> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.latest
            .iter()
            .map(|s| s.as_ref().map(|s| Duration::from_millis(now_ms.saturating_sub(s.taken_ms))))
            .collect()
    }

    /// Shards whose thread died, or whose last report is older than the stall threshold
    /// (or never came while the server is ready).
    pub(crate) fn stalled_shards(&self) -> Vec<usize> {
        let ready = matches!(self.lifecycle.get(), Lifecycle::Ready | Lifecycle::Draining);
        self.heartbeat_ages()
            .iter()
            .enumerate()
            .filter(|(i, age)| match age {
                _ if self.dead.get(*i).copied().unwrap_or(false) => true,
                Some(age) => *age > self.stall_after,
                None => ready && self.started.elapsed() > self.stall_after,
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn watch(&mut self) {
        let stalled = self.stalled_shards();
        for shard in 0..self.spec_shards {
            let now = stalled.contains(&shard);
            if now && !self.stalled[shard] {
                tracing::error!(
                    shard,
                    threshold_ms = self.stall_after.as_millis() as u64,
                    "shard stalled: no heartbeat"
                );
            } else if !now && self.stalled[shard] {
                tracing::warn!(shard, "shard recovered");
            }
            self.stalled[shard] = now;
        }
    }
}

fn run(spec: ControlSpec) {
    let ControlSpec {
        admin,
        shards,
        backend,
        stall_after,
        lifecycle,
        reports,
        recycle,
        budgets,
        started,
        spans,
        redis_ready_required,
    } = spec;
    let mut admin = match admin::Admin::new(admin) {
        Ok(admin) => Some(admin),
        Err(e) => {
            tracing::error!(error = %e, "admin listener cannot be made non-blocking; admin endpoints off");
            None
        }
    };
    let mut state = State {
        latest: vec![None; shards],
        routes: vec![Vec::new(); shards],
        rate: vec![0.0; shards],
        stalled: vec![false; shards],
        dead: vec![false; shards],
        limiters: budgets::LimiterBoard::default(),
        spec_shards: shards,
        backend,
        stall_after,
        lifecycle,
        started,
        spans,
        redis_ready_required,
    };
    loop {
        match reports.recv_timeout(TICK) {
            Ok(r) => {
                state.absorb(r, &recycle);
                while let Ok(r) = reports.try_recv() {
                    state.absorb(r, &recycle);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if state.lifecycle.get() == Lifecycle::Stopped {
                    if let Some(export) = state.spans.as_mut() {
                        export.finish();
                    }
                    return;
                }
                std::thread::sleep(TICK);
            }
        }
        state.watch();
        state.limiters.rebalance(&budgets);
        let now = Instant::now();
        if let Some(export) = state.spans.as_mut() {
            export.tick(now);
        }
        if let Some(admin) = admin.as_mut() {
            admin.turn(&state, now);
        }
        if state.lifecycle.get() == Lifecycle::Stopped {
            // The shards' last snapshots are in: post their spans before going.
            while let Ok(r) = reports.try_recv() {
                state.absorb(r, &recycle);
            }
            if let Some(export) = state.spans.as_mut() {
                export.finish();
            }
            return;
        }
    }
}
