//! The client's counters: plain `Cell`s owned by one shard's client, copied into a
//! [`RedisStats`] value on demand.
//!
//! Owns counting only; never decides anything from the counts. The shard's snapshot
//! carries every client's counters to the control thread (`ringo_redis_*` in
//! `/metrics`); [`RedisClient::stats`](super::RedisClient::stats) reads them in code.

use std::cell::Cell;
use std::time::Duration;

use super::error::ErrorKind;

/// Upper bounds of the call latency histogram, µs (the server's request histogram's;
/// the last bucket, `+Inf`, is implicit).
pub const LATENCY_BUCKETS_US: [u64; 16] = crate::metrics::LATENCY_BUCKETS_US;

/// Upper bounds of the write batch-size histogram (commands per write; the last
/// bucket, `+Inf`, is implicit).
pub const BATCH_BUCKETS: [u64; 6] = [1, 2, 4, 16, 64, 256];

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// The live counters (shared by the client's connections).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commands: Cell<u64>,
    errors: [Cell<u64>; ErrorKind::ALL.len()],
    writes: Cell<u64>,
    written_commands: Cell<u64>,
    max_batch: Cell<u64>,
    batches: [Cell<u64>; BATCH_BUCKETS.len() + 1],
    connects: Cell<u64>,
    reconnects: Cell<u64>,
    connect_failures: Cell<u64>,
    disconnects: Cell<u64>,
    late_replies: Cell<u64>,
    pushes: Cell<u64>,
    script_reloads: Cell<u64>,
    latency: [Cell<u64>; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: Cell<u64>,
}

impl Counters {
    pub(crate) fn commands(&self, n: u64) {
        bump(&self.commands, n);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        bump(&self.errors[kind as usize], 1);
    }

    /// One write carrying `commands` commands.
    pub(crate) fn write(&self, commands: u64) {
        bump(&self.writes, 1);
        bump(&self.written_commands, commands);
        self.max_batch.set(self.max_batch.get().max(commands));
        let i = BATCH_BUCKETS.iter().position(|&b| commands <= b).unwrap_or(BATCH_BUCKETS.len());
        bump(&self.batches[i], 1);
    }

    /// A connection set up; `again` when that connection had been up before.
    pub(crate) fn connected(&self, again: bool) {
        bump(&self.connects, 1);
        if again {
            bump(&self.reconnects, 1);
        }
    }

    pub(crate) fn connect_failed(&self) {
        bump(&self.connect_failures, 1);
    }

    pub(crate) fn disconnected(&self) {
        bump(&self.disconnects, 1);
    }

    pub(crate) fn late_reply(&self) {
        bump(&self.late_replies, 1);
    }

    pub(crate) fn push(&self) {
        bump(&self.pushes, 1);
    }

    pub(crate) fn script_reload(&self) {
        bump(&self.script_reloads, 1);
    }

    pub(crate) fn latency(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(LATENCY_BUCKETS_US.len());
        bump(&self.latency[i], 1);
        bump(&self.latency_sum_us, us);
    }

    pub(crate) fn snapshot(&self) -> RedisStats {
        let get = |c: &Cell<u64>| c.get();
        RedisStats {
            commands: get(&self.commands),
            errors: std::array::from_fn(|i| self.errors[i].get()),
            writes: get(&self.writes),
            written_commands: get(&self.written_commands),
            max_batch: get(&self.max_batch),
            batches: std::array::from_fn(|i| self.batches[i].get()),
            connects: get(&self.connects),
            reconnects: get(&self.reconnects),
            connect_failures: get(&self.connect_failures),
            disconnects: get(&self.disconnects),
            late_replies: get(&self.late_replies),
            pushes: get(&self.pushes),
            script_reloads: get(&self.script_reloads),
            latency_buckets: std::array::from_fn(|i| self.latency[i].get()),
            latency_sum_us: get(&self.latency_sum_us),
            in_flight: 0,
        }
    }
}

/// What one shard's client has done so far (counters since it was built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    /// Commands issued (each command of a pipeline counts), refused ones included.
    pub commands: u64,
    /// Failed calls by kind, indexed by [`ErrorKind`] (`errors[ErrorKind::Timeout as usize]`).
    pub errors: [u64; ErrorKind::ALL.len()],
    /// Socket writes of queued commands: with auto-pipelining, fewer than commands.
    pub writes: u64,
    /// Commands those writes carried.
    pub written_commands: u64,
    /// The most commands one write carried.
    pub max_batch: u64,
    /// Writes by commands carried, bucketed by [`BATCH_BUCKETS`] (then `+Inf`).
    pub batches: [u64; BATCH_BUCKETS.len() + 1],
    /// Connections set up (handshake done), the first ones included.
    pub connects: u64,
    /// Connections set up again after they were lost or failed (reconnections).
    pub reconnects: u64,
    /// Attempts to connect (or set up) that failed.
    pub connect_failures: u64,
    /// Connections lost after set-up.
    pub disconnects: u64,
    /// Replies that came after their command's deadline (discarded).
    pub late_replies: u64,
    /// RESP3 out-of-band pushes (client-tracking invalidations) read and skipped on
    /// the command connections.
    pub pushes: u64,
    /// `EVALSHA` calls answered `NOSCRIPT` and retried as `EVAL`.
    pub script_reloads: u64,
    /// Call latency histogram by [`LATENCY_BUCKETS_US`] (then `+Inf`), of calls that
    /// got an answer.
    pub latency_buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of those latencies, µs.
    pub latency_sum_us: u64,
    /// Replies the client's connections wait for now (a gauge: the pipeline depth),
    /// those of calls that gave up at their deadline included.
    pub in_flight: u64,
}

impl RedisStats {
    /// Failed calls of one kind.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }
}
