//! `Transport`: a connection's socket and its write side.
//!
//! It owns the client socket, the write buffer that responses are encoded into, and the
//! in-flight accounting: a request counts in the shard's `in_flight` gauge from the
//! moment its head is parsed until its response has been written (or the connection
//! ended without writing it). The engine's `Connection` (`server/connection.rs`) owns
//! a `Transport`, and lends it to the request's `Context` while the chain runs, so a
//! streaming handler writes through the same buffer and accounting; it is handed back
//! before the next request. It never parses, routes or reads request bytes.
//!
//! A large response body is not copied into the write buffer: the head goes there, the
//! body is moved to the transport's `tail`, and `flush` writes both with one gathered
//! `sendmsg` (the write owns both buffers until the kernel is done with them, even if
//! the write is abandoned at its deadline).
//!
//! It also times requests for the latency histogram: a request's latency runs from its
//! start (the shard clock's reading when its head was parsed: when its bytes were read,
//! or when an await before it ended) until its response has been written (handed to the
//! socket), as nginx's `$request_time` does; a client of a pipelined batch has its
//! response no earlier. The time is taken once for all the requests written together,
//! not once per request (a clock read per request was the largest single cost of a
//! saturated shard: 9 % of its time under `perf`), and on io_uring without reading the
//! clock at all: the write completes in a later loop turn, whose reading
//! (`rt::loop_clock`) is the time. A write that completes at once (epoll) reads it.
//!
//! Invariant: `queued <= in_flight`, and the shard's `in_flight` gauge includes this
//! transport's `in_flight` until `flush` writes the queued responses or `settle` gives
//! them up. `tail` is empty or written right after `out`: nothing is appended to `out`
//! while a tail waits (the engine flushes first).

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::rt::net::TcpStream;

use crate::metrics::ShardStats;
use crate::shard_handle::ShardClock;
use crate::watch::{Watch, Watched};

/// A connection's socket, write buffer and in-flight count.
#[derive(Debug, Default)]
pub(crate) struct Transport {
    pub(crate) io: Option<TcpStream>,
    /// The socket's entry in the shard's registry: the deadline of its waits.
    pub(crate) watch: Option<Rc<Watch>>,
    /// Encoded responses not yet written.
    pub(crate) out: Vec<u8>,
    /// A large body to write right after `out`, without copying it there.
    pub(crate) tail: Vec<u8>,
    /// Requests parsed and not yet written.
    in_flight: usize,
    /// Of those, the ones whose response is complete in `out`.
    queued: usize,
    /// Answered requests whose latency is not recorded yet, all with one start (the
    /// shard clock's reading when their heads were parsed), and how many.
    latency_run: Option<(Instant, u64)>,
}

impl Transport {
    /// A request's head was parsed: it is in flight until its response is written.
    pub(crate) fn begin_request(&mut self, stats: &ShardStats) {
        self.in_flight += 1;
        stats.in_flight.set(stats.in_flight.get() + 1);
    }

    /// The current request's response is complete in `out`.
    pub(crate) fn response_queued(&mut self) {
        self.queued = (self.queued + 1).min(self.in_flight);
    }

    /// Times a request answered in `out` that started at `started`: its latency runs
    /// until its response is written, and is recorded then ([`flush`] and [`settle`]
    /// do). Requests that share a start (a pipelined batch: the shard clock does not
    /// move while sync handlers run) share one timing; a new start records the requests
    /// before it at once, up to a fresh clock reading.
    ///
    /// [`flush`]: Transport::flush
    /// [`settle`]: Transport::settle
    pub(crate) fn time_request(&mut self, started: Instant, stats: &ShardStats, clock: &ShardClock) {
        match &mut self.latency_run {
            Some((start, n)) if *start == started => *n += 1,
            _ => {
                self.record_latency(stats, clock);
                self.latency_run = Some((started, 1));
            }
        }
    }

    /// Records the timed requests' latency, up to a fresh clock reading.
    fn record_latency(&mut self, stats: &ShardStats, clock: &ShardClock) {
        if let Some((start, n)) = self.latency_run.take() {
            stats.record_latency(clock.refresh().saturating_duration_since(start), n);
        }
    }

    /// Records the timed requests' latency after a write that began in the loop turn
    /// read at `turn`: a write that waited for a later turn ends at that turn's reading
    /// (no clock read), one that completed at once reads the clock.
    fn record_written_latency(&mut self, stats: &ShardStats, clock: &ShardClock, turn: Instant) {
        if self.latency_run.is_none() {
            return;
        }
        let now = crate::rt::loop_clock();
        if now == turn {
            self.record_latency(stats, clock);
        } else if let Some((start, n)) = self.latency_run.take() {
            clock.sync();
            stats.record_latency(now.saturating_duration_since(start), n);
        }
    }

    /// Whether a large body waits in `tail` (the engine writes it before encoding the
    /// next response).
    pub(crate) fn has_tail(&self) -> bool {
        !self.tail.is_empty()
    }

    /// Moves a large response body to the tail (after its head, already in `out`),
    /// giving `body` the tail's old, empty buffer: no copy.
    pub(crate) fn queue_tail(&mut self, body: &mut Vec<u8>) {
        debug_assert!(self.tail.is_empty(), "one tail at a time");
        self.tail.clear();
        std::mem::swap(&mut self.tail, body);
    }

    /// Writes everything in `out` (and the tail), within `timeout` of the shard clock's
    /// `now`; settles the queued responses.
    pub(crate) async fn flush(
        &mut self,
        stats: &ShardStats,
        clock: &ShardClock,
        timeout: Duration,
    ) -> io::Result<()> {
        if self.out.is_empty() && self.tail.is_empty() {
            self.record_latency(stats, clock);
            return Ok(());
        }
        let (Some(io), Some(watch)) = (self.io.as_mut(), self.watch.as_ref()) else {
            self.record_latency(stats, clock);
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no connection"));
        };
        let turn = crate::rt::loop_clock();
        let len = (self.out.len() + self.tail.len()) as u64;
        watch.arm(clock.now() + timeout);
        let written = if self.tail.is_empty() {
            let out = std::mem::take(&mut self.out);
            Watched::new(watch, io.write_all(out)).await.map(|(r, mut out)| {
                out.clear();
                self.out = out;
                r.map(drop)
            })
        } else {
            let (head, body) = (std::mem::take(&mut self.out), std::mem::take(&mut self.tail));
            // Boxed: the gathered write's future is the largest await of the request
            // loop, and every connection's task is sized for its largest await; a large
            // body is rare and already its own allocation, so it pays this one too.
            Watched::new(watch, Box::pin(io.write_all_gathered(head, body))).await.map(
                |(r, mut head, mut body)| {
                    head.clear();
                    body.clear();
                    (self.out, self.tail) = (head, body);
                    r
                },
            )
        };
        watch.disarm();
        self.record_written_latency(stats, clock, turn);
        match written {
            Ok(Ok(())) => {
                stats.add_bytes(0, len);
                if self.queued > 0 {
                    stats.in_flight.set(stats.in_flight.get().saturating_sub(self.queued));
                    self.in_flight -= self.queued;
                    self.queued = 0;
                }
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            // Only a deadline interrupts a write.
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// The connection ends: whatever is still in flight will never be written. Returns
    /// how many requests that was.
    pub(crate) fn settle(&mut self, stats: &ShardStats, clock: &ShardClock) -> usize {
        self.record_latency(stats, clock);
        let lost = self.in_flight;
        if lost > 0 {
            stats.in_flight.set(stats.in_flight.get().saturating_sub(lost));
        }
        self.in_flight = 0;
        self.queued = 0;
        lost
    }
}
