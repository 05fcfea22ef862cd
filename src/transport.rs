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
//! Invariant: `queued <= in_flight`, and the shard's `in_flight` gauge includes this
//! transport's `in_flight` until `flush` writes the queued responses or `settle` gives
//! them up.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

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
    /// Requests parsed and not yet written.
    in_flight: usize,
    /// Of those, the ones whose response is complete in `out`.
    queued: usize,
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

    /// Writes everything in `out`, within `timeout` of the shard clock's `now`;
    /// settles the queued responses.
    pub(crate) async fn flush(
        &mut self,
        stats: &ShardStats,
        clock: &ShardClock,
        timeout: Duration,
    ) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (Some(io), Some(watch)) = (self.io.as_mut(), self.watch.as_ref()) else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no connection"));
        };
        let out = std::mem::take(&mut self.out);
        let len = out.len() as u64;
        watch.arm(clock.now() + timeout);
        let written = Watched::new(watch, io.write_all(out)).await;
        watch.disarm();
        match written {
            Ok((Ok(_), mut out)) => {
                out.clear();
                self.out = out;
                stats.add_bytes(0, len);
                if self.queued > 0 {
                    stats.in_flight.set(stats.in_flight.get().saturating_sub(self.queued));
                    self.in_flight -= self.queued;
                    self.queued = 0;
                }
                Ok(())
            }
            Ok((Err(e), _)) => Err(e),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        }
    }

    /// The connection ends: whatever is still in flight will never be written. Returns
    /// how many requests that was.
    pub(crate) fn settle(&mut self, stats: &ShardStats) -> usize {
        let lost = self.in_flight;
        if lost > 0 {
            stats.in_flight.set(stats.in_flight.get().saturating_sub(lost));
        }
        self.in_flight = 0;
        self.queued = 0;
        lost
    }
}
