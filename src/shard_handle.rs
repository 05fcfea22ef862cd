//! `ShardHandle`: what a request may know of the shard serving it.
//!
//! A [`Context`](crate::Context) reaches its shard only through this small handle: the
//! shard's id, its limits, the cached `Date`, its counters, its ring of sampled spans,
//! and the bounded spawner for background tasks. It sits below both `context.rs` and `server/`, so the request view
//! never imports the engine. It must never hold connections, listeners or pools: those
//! are the engine's (`server/shard.rs`), and a handle kept alive by a request must not
//! keep them alive.
//!
//! Shard-owned (`Rc`, `!Send`): nothing here is touched by another thread.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use crate::context::SpawnError;
use crate::http::Limits;
use crate::http::date::DateCache;
use crate::metrics::ShardStats;
use crate::span_ring::SpanRing;

/// The shard's monotonic clock. When a read completes the engine takes the runtime's
/// loop-turn reading ([`sync`](ShardClock::sync): when the turn's completions had
/// arrived, no clock read), and so it does when a write of responses completes in a
/// later turn (io_uring); a write that completes at once (epoll) reads the system
/// clock ([`refresh`](ShardClock::refresh)): the responses' latency ends then. Every
/// deadline, request start and rate-limit check in between uses the last of these
/// ([`now`](ShardClock::now)), stale by at most the work done since the turn began.
#[derive(Debug)]
pub(crate) struct ShardClock {
    now: Cell<Instant>,
}

impl ShardClock {
    fn new() -> ShardClock {
        ShardClock { now: Cell::new(Instant::now()) }
    }

    /// The last reading.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.now.get()
    }

    /// Takes the runtime's loop-turn reading, unless the clock already holds a later one
    /// (a write this turn refreshed it).
    #[inline]
    pub(crate) fn sync(&self) {
        let turn = crate::rt::loop_clock();
        if turn > self.now.get() {
            self.now.set(turn);
        }
    }

    /// Reads the system clock, keeps and returns the reading.
    #[inline]
    pub(crate) fn refresh(&self) -> Instant {
        let now = Instant::now();
        self.now.set(now);
        now
    }
}

/// The per-shard facts and services a request uses.
#[derive(Debug)]
pub(crate) struct ShardHandle {
    pub(crate) id: usize,
    pub(crate) limits: Limits,
    pub(crate) date: DateCache,
    pub(crate) stats: Rc<ShardStats>,
    /// Sampled spans waiting for the next snapshot (capacity 0: none kept).
    pub(crate) spans: SpanRing,
    /// The shard's monotonic clock, read once per event instead of once per use.
    pub(crate) clock: ShardClock,
    /// A monotonic instant and the wall-clock time at it (since the Unix epoch),
    /// refreshed with the `Date` cache (every 500 ms): requests turn their start instant
    /// into wall-clock time without reading the clock again.
    wall_anchor: Cell<(Instant, Duration)>,
}

impl ShardHandle {
    pub(crate) fn new(id: usize, limits: Limits, routes: usize, span_capacity: usize) -> Rc<ShardHandle> {
        Rc::new(ShardHandle {
            id,
            limits,
            date: DateCache::new(),
            stats: Rc::new(ShardStats::with_routes(routes)),
            spans: SpanRing::new(span_capacity),
            clock: ShardClock::new(),
            wall_anchor: Cell::new((Instant::now(), since_epoch(SystemTime::now()))),
        })
    }

    /// Re-reads the wall clock (the date ticker calls this with the time it read).
    pub(crate) fn refresh_wall_anchor(&self, now: SystemTime) {
        self.wall_anchor.set((Instant::now(), since_epoch(now)));
    }

    /// The wall-clock time of `at` since the Unix epoch, from the anchor (within the
    /// clock's slew over 500 ms of the true time). Plain `Duration` arithmetic: the
    /// access log asks on every request.
    pub(crate) fn wall_time(&self, at: Instant) -> Duration {
        let (instant, wall) = self.wall_anchor.get();
        match at.checked_duration_since(instant) {
            Some(after) => wall + after,
            None => wall.saturating_sub(instant.duration_since(at)),
        }
    }

    /// Starts a bounded background task on this shard. A panic inside the task ends
    /// that task only: it is caught at the task boundary, logged with the shard id and
    /// counted (`ringo_background_tasks_panicked_total`); the shard keeps serving.
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
        let shard = self.id;
        // The task's log lines name the request that spawned it.
        let ids = Rc::new(std::cell::RefCell::new(crate::logging::current()));
        crate::time::spawn(async move {
            struct Done(Rc<ShardStats>);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.background_live.set(self.0.background_live.get() - 1);
                }
            }
            let done = Done(stats);
            let mut task = pin!(task);
            let finished = std::future::poll_fn(|cx| {
                match crate::logging::with_ids(&ids, || {
                    catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(cx)))
                }) {
                    Ok(Poll::Ready(())) => Poll::Ready(true),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(_) => Poll::Ready(false),
                }
            })
            .await;
            if !finished {
                let panicked = &done.0.background_panicked;
                panicked.set(panicked.get() + 1);
                tracing::error!(shard, "background task panicked; the task ended, the shard keeps serving");
            }
        });
        Ok(())
    }
}

/// `time` since the Unix epoch (zero for a clock set before it).
fn since_epoch(time: SystemTime) -> Duration {
    time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::{Runtime, RuntimeConfig};

    #[test]
    fn the_clock_takes_the_turn_reading_and_never_goes_back() {
        let mut rt = Runtime::new(RuntimeConfig::default()).expect("shard runtime");
        rt.block_on(async {
            let clock = ShardClock::new();
            std::thread::sleep(Duration::from_millis(2));
            // A write read the clock after the turn began: a sync keeps that reading.
            let written = clock.refresh();
            clock.sync();
            assert_eq!(clock.now(), written);
            // A turn later (the sleep waits in the driver) the turn's reading is newer.
            crate::rt::sleep(Duration::from_millis(5)).await;
            clock.sync();
            assert!(clock.now() >= written + Duration::from_millis(5));
            assert_eq!(clock.now(), crate::rt::loop_clock());
        });
    }
}
