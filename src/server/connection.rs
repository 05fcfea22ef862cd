//! `Connection`: one client connection's engine state, between and during requests.
//!
//! It owns the socket and write buffer (its [`Transport`]), the read buffer with its
//! cursor ([`ReadBuffer`]), the connection's entry in the shard's registry, and the
//! deadlines of each read. The protocol loop (`conn.rs`) drives it: it reads, hands the
//! parsed request to the `Context` by lending it the read buffer and the transport for
//! the length of the chain, takes them back, and flushes.
//!
//! Bounds that hold whatever the client does:
//! - a single read takes at most [`READ_CHUNK`] bytes;
//! - answered requests are consumed by moving a cursor, and the unread rest is moved
//!   to the front at most once per read (never once per request), so a pipelined batch
//!   costs linear time;
//! - a buffer grown for a large body goes back to its size class as soon as what is
//!   left in it fits the small class;
//! - the write buffer is flushed once it passes [`FLUSH_AT`], and the connection reads
//!   nothing more until it is written (backpressure on a client that does not read).
//!
//! It never routes, parses, or touches another connection.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;

use super::buffers::{BufferPool, CLASSES};
use crate::context::Context;
use crate::shard_handle::ShardHandle;
use crate::transport::Transport;

/// Most bytes one read may bring in.
pub(crate) const READ_CHUNK: usize = 64 << 10;
/// Write-buffer size past which responses are written before the next request is
/// parsed (the connection stops reading until they are).
pub(crate) const FLUSH_AT: usize = 64 << 10;
/// The smallest buffer class: what an idle connection keeps.
pub(crate) const BUF_SMALL: usize = CLASSES[0];

/// The read buffer: bytes received, of which those before `start` are answered.
///
/// Invariant: `start <= buf.len()`; every span the parser produces is relative to
/// `start` (the first byte of the request being served).
#[derive(Debug, Default)]
pub(crate) struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
}

impl ReadBuffer {
    fn new(buf: Vec<u8>) -> ReadBuffer {
        ReadBuffer { buf, start: 0 }
    }

    /// The bytes not yet answered.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks the first `n` pending bytes as answered.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Drops pending bytes from `at` on (a decoded chunked body's raw bytes).
    pub(crate) fn truncate_pending(&mut self, at: usize) {
        self.buf.truncate(self.start + at);
    }

    /// Moves the pending bytes to the front (into a small buffer when they fit one), and
    /// makes room for at least `min` more pending bytes in total.
    fn compact(&mut self, pool: &BufferPool, min: usize) {
        let pending = self.buf.len() - self.start;
        if self.buf.capacity() > BUF_SMALL && pending <= BUF_SMALL / 2 && min <= BUF_SMALL {
            let mut small = pool.take(BUF_SMALL);
            small.extend_from_slice(&self.buf[self.start..]);
            pool.give(std::mem::replace(&mut self.buf, small));
            self.start = 0;
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(pending);
            self.start = 0;
        }
        pool.grow(&mut self.buf, min);
    }
}

/// One connection's engine state. Pooled per shard with its `Context` and arena.
#[derive(Debug)]
pub(crate) struct Connection {
    handle: Rc<ShardHandle>,
    buffers: Rc<BufferPool>,
    pub(crate) input: ReadBuffer,
    pub(crate) transport: Transport,
    /// The entry in the shard's connection registry.
    pub(crate) slot: usize,
    pub(crate) peer: Option<SocketAddr>,
    /// The read buffer and transport are lent to the context.
    lent: bool,
}

/// Why a read brought nothing.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The wait ran out.
    TimedOut,
    /// The socket failed.
    Io(io::Error),
}

impl Connection {
    pub(crate) fn new(handle: Rc<ShardHandle>, buffers: Rc<BufferPool>) -> Connection {
        let input = ReadBuffer::new(buffers.take(BUF_SMALL));
        let mut transport = Transport::default();
        transport.out = buffers.take(BUF_SMALL);
        Connection { handle, buffers, input, transport, slot: usize::MAX, peer: None, lent: false }
    }

    /// Reads once, waiting at most `wait`, taking at most [`READ_CHUNK`] bytes. Pending
    /// bytes are compacted first; `want` is the total pending size the caller needs
    /// (the buffer grows to hold it, from the pool's size classes).
    pub(crate) async fn read_more(&mut self, wait: Duration, want: usize) -> Result<usize, ReadError> {
        let (len, cap) = (self.input.buf.len(), self.input.buf.capacity());
        let pending = len - self.input.start;
        let need = want.max(pending + 1024);
        if self.input.start > 0 || cap - len < 1024 || cap < want {
            self.input.compact(&self.buffers, need);
        }
        let Some(io) = self.transport.io.as_mut() else {
            return Err(ReadError::Io(io::Error::new(io::ErrorKind::NotConnected, "no socket")));
        };
        let buf = std::mem::take(&mut self.input.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        let end = cap.min(len + READ_CHUNK);
        // monoio reads into a `Vec` from its start; a slice of the spare capacity appends.
        match monoio::time::timeout(wait, io.read(buf.slice_mut(len..end))).await {
            Ok((result, slice)) => {
                self.input.buf = slice.into_inner();
                if let Ok(n) = result {
                    self.handle.stats.add_bytes(n as u64, 0);
                }
                result.map_err(ReadError::Io)
            }
            // The buffer went down with the cancelled read; the connection closes anyway.
            Err(_) => Err(ReadError::TimedOut),
        }
    }

    /// Writes the pending responses (within `limits.write_timeout_ms`).
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        let timeout = Duration::from_millis(self.handle.limits.write_timeout_ms);
        self.transport.flush(&self.handle.stats, timeout).await
    }

    /// Whether the write buffer is past its threshold and must be written before more
    /// requests are parsed.
    pub(crate) fn must_flush(&self) -> bool {
        self.transport.out.len() >= FLUSH_AT
    }

    /// Lends the request bytes and the transport to `ctx` for the chain (`reclaim`
    /// takes them back). Spans in `ctx.head` are relative to `ctx.base`.
    pub(crate) fn lend(&mut self, ctx: &mut Context) {
        if self.lent {
            return;
        }
        self.lent = true;
        std::mem::swap(&mut self.input.buf, &mut ctx.buf);
        ctx.base = self.input.start;
        std::mem::swap(&mut self.transport, &mut ctx.transport);
    }

    /// Takes back what [`lend`](Connection::lend) gave (nothing if nothing is lent).
    pub(crate) fn reclaim(&mut self, ctx: &mut Context) {
        if !self.lent {
            return;
        }
        self.lent = false;
        std::mem::swap(&mut self.input.buf, &mut ctx.buf);
        std::mem::swap(&mut self.transport, &mut ctx.transport);
    }

    /// Lingering close, after the server decided to close: send end of file, then read
    /// and discard what the client still sends (bounded in time and bytes) before
    /// closing. A plain close with unread input makes the kernel send RST, and an RST
    /// can destroy the last response before the client has read it.
    pub(crate) async fn linger(&mut self) {
        const LINGER: Duration = Duration::from_millis(1000);
        const LINGER_BYTES: usize = 1 << 20;
        let Some(io) = self.transport.io.as_ref() else { return };
        crate::sys::shutdown_socket(std::os::fd::AsRawFd::as_raw_fd(io), crate::sys::Direction::Write);
        let until = Instant::now() + LINGER;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            let Some(left) = until.checked_duration_since(Instant::now()) else { return };
            self.input.buf.clear();
            self.input.start = 0;
            match self.read_more(left, BUF_SMALL).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }

    /// Hands grown buffers back to the pool while nothing is pending (the connection
    /// is idle, or finished), and those of `ctx` with them.
    pub(crate) fn shrink_idle(&mut self, ctx: &mut Context) {
        let pool = &self.buffers;
        if self.input.pending().is_empty() {
            self.input.buf.clear();
            self.input.start = 0;
            pool.shrink(&mut self.input.buf);
        }
        if self.transport.out.is_empty() {
            pool.shrink(&mut self.transport.out);
        }
        for buf in ctx.idle_buffers() {
            pool.shrink(buf);
        }
    }

    /// The connection ended: settles unwritten responses and forgets the socket, so the
    /// state can be pooled.
    pub(crate) fn finish(&mut self) {
        let lost = self.transport.settle(&self.handle.stats);
        if lost > 0 {
            tracing::debug!(shard = self.handle.id, requests = lost, "responses not sent: connection ended");
        }
        self.transport.io = None;
        self.transport.out.clear();
        self.input.buf.clear();
        self.input.start = 0;
        self.peer = None;
        self.slot = usize::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuming_moves_a_cursor_and_compaction_happens_once() {
        let pool = BufferPool::default();
        let mut input = ReadBuffer::new(pool.take(BUF_SMALL));
        let ptr = input.buf.as_ptr();
        input.buf.extend_from_slice(b"aaaabbbbcc");
        input.consume(4);
        assert_eq!(input.pending(), b"bbbbcc");
        input.consume(4);
        assert_eq!(input.pending(), b"cc");
        input.compact(&pool, 16);
        assert_eq!(input.pending(), b"cc");
        assert_eq!(input.start, 0);
        assert_eq!(input.buf.as_ptr(), ptr, "compaction in place keeps the buffer");
        input.consume(2);
        assert!(input.buf.is_empty() && input.start == 0, "fully consumed: reset");
    }

    #[test]
    fn a_grown_buffer_returns_to_the_small_class_once_the_rest_fits() {
        let pool = BufferPool::default();
        let mut input = ReadBuffer::new(pool.take(BUF_SMALL));
        input.buf.resize(300_000, b'x');
        assert!(input.buf.capacity() >= 300_000);
        input.consume(299_990);
        input.compact(&pool, 100);
        assert_eq!(input.buf.capacity(), BUF_SMALL);
        assert_eq!(input.pending(), b"xxxxxxxxxx");
    }
}
