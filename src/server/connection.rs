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

use super::buffers::{BufferPool, CLASSES};
use crate::context::Context;
use crate::shard_handle::ShardHandle;
use crate::transport::Transport;
use crate::watch::{Interrupted, Watched};

/// Most bytes one read may bring in.
pub(crate) const READ_CHUNK: usize = 64 << 10;
/// Write-buffer size past which responses are written before the next request is
/// parsed (the connection stops reading until they are).
pub(crate) const FLUSH_AT: usize = 64 << 10;
/// Response bodies from this size on are written from their own buffer after the head
/// (one `writev`), not copied into the write buffer.
pub(crate) const LARGE_BODY: usize = 16 << 10;
/// The smallest buffer class: what a new (or unparked) connection reads into.
pub(crate) const BUF_SMALL: usize = CLASSES[0];
/// The working class: what a buffer grown for a large request or a pipelined batch
/// goes back to, and the write buffer's class (taken when a request arrives).
pub(crate) const BUF_WORK: usize = CLASSES[1];

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
        if self.buf.capacity() > BUF_WORK && pending <= BUF_WORK / 2 && min <= BUF_WORK {
            let mut small = pool.take(BUF_WORK);
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

/// An accepted client socket with its registry entry.
#[derive(Debug)]
pub(crate) struct Socket {
    pub(crate) stream: crate::rt::net::TcpStream,
    pub(crate) watch: Rc<crate::watch::Watch>,
    pub(crate) slot: usize,
    pub(crate) peer: SocketAddr,
}

/// One connection's engine state, owned by its task. Between requests it holds only
/// the socket and its watch; the read buffer, the write buffer and the request state
/// are taken from the shard's pools when a request's bytes arrive.
#[derive(Debug)]
pub(crate) struct Connection {
    handle: Rc<ShardHandle>,
    buffers: Rc<BufferPool>,
    pub(crate) input: ReadBuffer,
    /// Boxed: lending it to the context for the chain swaps a pointer, not the
    /// transport's ~130 bytes twice per request (measured: about 100 instructions).
    pub(crate) transport: Box<Transport>,
    /// The entry in the shard's connection registry (its watch is the transport's).
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
    /// The shard asked the idle connection to park while it waited for its next request
    /// (no byte was taken).
    Parked,
    /// The socket failed.
    Io(io::Error),
}

impl Connection {
    /// A connection on `socket`, with a small read buffer from the pool; the write
    /// buffer is taken when the first request arrives.
    pub(crate) fn new(handle: Rc<ShardHandle>, buffers: Rc<BufferPool>, socket: Socket) -> Connection {
        let input = ReadBuffer::new(buffers.take(BUF_SMALL));
        let mut transport = Box::<Transport>::default();
        transport.io = Some(socket.stream);
        transport.watch = Some(socket.watch);
        Connection {
            handle,
            buffers,
            input,
            transport,
            slot: socket.slot,
            peer: Some(socket.peer),
            lent: false,
        }
    }

    /// Marks the connection idle between requests since `since` (drain and parking
    /// look at it), or busy again (`None`).
    pub(crate) fn set_idle(&self, since: Option<Instant>) {
        if let Some(watch) = &self.transport.watch {
            watch.set_idle(since);
        }
    }

    /// Request bytes arrived: the write buffer is taken from the pool if the connection
    /// gave it back while idle.
    #[inline]
    pub(crate) fn ready_to_answer(&mut self) {
        if self.transport.out.capacity() == 0 {
            self.transport.out = self.buffers.take(BUF_WORK);
        }
    }

    /// Parks the idle connection: counted in the parked gauge, it goes on waiting for
    /// readiness (holding no buffer, as every idle wait does) until `deadline`.
    /// `Ok(false)`: the deadline passed.
    pub(crate) async fn park(&mut self, deadline: Instant) -> io::Result<bool> {
        debug_assert!(self.input.pending().is_empty(), "only an idle connection parks");
        let (Some(io), Some(watch)) = (self.transport.io.as_mut(), self.transport.watch.as_ref()) else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no socket"));
        };
        let parked = &self.handle.stats.parked_connections;
        parked.set(parked.get() + 1);
        watch.arm(deadline);
        let ready = Watched::new(watch, io.readable()).await;
        watch.disarm();
        parked.set(parked.get() - 1);
        self.handle.clock.sync();
        match ready {
            Ok(r) => r.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Reads once, until `deadline` at the latest, taking at most [`READ_CHUNK`] bytes.
    /// Pending bytes are compacted first; `want` is the total pending size the caller
    /// needs (the buffer grows to hold it, from the pool's size classes). A completed
    /// read brings the shard clock to the runtime's loop-turn reading.
    ///
    /// An idle connection (nothing pending, marked idle) first waits for readiness,
    /// which holds no buffer and takes no byte: that wait is the one the shard may
    /// interrupt to park the connection ([`ReadError::Parked`]), losing nothing.
    pub(crate) async fn read_more(&mut self, deadline: Instant, want: usize) -> Result<usize, ReadError> {
        let (len, cap) = (self.input.buf.len(), self.input.buf.capacity());
        let pending = len - self.input.start;
        let need = want.max(pending + 1024);
        if self.input.start > 0 || cap - len < 1024 || cap < want {
            self.input.compact(&self.buffers, need);
        }
        let (Some(io), Some(watch)) = (self.transport.io.as_mut(), self.transport.watch.as_ref()) else {
            return Err(ReadError::Io(io::Error::new(io::ErrorKind::NotConnected, "no socket")));
        };
        watch.arm(deadline);
        if self.input.start == self.input.buf.len() && watch.is_idle() {
            // Between requests the connection holds no read buffer: it goes back to the
            // pool for the wait, and one of its class comes back when bytes are there (on
            // io_uring they wait in the shard's buffer ring meanwhile).
            let class = self.input.buf.capacity().max(BUF_SMALL);
            self.buffers.give(std::mem::take(&mut self.input.buf));
            self.input.start = 0;
            // Interrupted, it comes back without one (a parked connection goes on holding
            // none; a closing one needs none).
            match Watched::parkable(watch, io.readable()).await {
                Ok(Ok(())) => self.input.buf = self.buffers.take(class),
                Ok(Err(e)) => {
                    watch.disarm();
                    return Err(ReadError::Io(e));
                }
                Err(Interrupted::Parked) => {
                    watch.disarm();
                    return Err(ReadError::Parked);
                }
                Err(Interrupted::Expired) => {
                    watch.disarm();
                    return Err(ReadError::TimedOut);
                }
            }
        }
        let buf = std::mem::take(&mut self.input.buf);
        let read = Watched::new(watch, io.read_max(buf, READ_CHUNK)).await;
        watch.disarm();
        match read {
            Ok((result, buf)) => {
                self.input.buf = buf;
                self.handle.clock.sync();
                match result {
                    Ok(n) => {
                        self.handle.stats.add_bytes(n as u64, 0);
                        let buf = &mut self.input.buf;
                        if buf.len() == buf.capacity() && buf.capacity() < BUF_WORK {
                            // The small buffer was too small for what the client sends at
                            // once (a pipelined batch, a large head): the working class
                            // from now on, or every batch would take two reads and two
                            // sends.
                            self.buffers.grow(buf, BUF_WORK);
                        }
                        Ok(n)
                    }
                    Err(e) => Err(ReadError::Io(e)),
                }
            }
            // The buffer went down with the cancelled read; the connection closes anyway.
            Err(_) => Err(ReadError::TimedOut),
        }
    }

    /// Writes the pending responses (within `limits.write_timeout_ms`).
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        let timeout = Duration::from_millis(self.handle.limits.write_timeout_ms);
        self.transport.flush(&self.handle.stats, &self.handle.clock, timeout).await
    }

    /// Whether the write buffer is past its threshold, or a large body waits after it,
    /// so it must be written before more requests are parsed.
    pub(crate) fn must_flush(&self) -> bool {
        self.transport.out.len() >= FLUSH_AT || self.transport.has_tail()
    }

    /// Queues a large response body (its head is in the write buffer) to be written
    /// after it without a copy; `body` gets an empty buffer back.
    pub(crate) fn queue_large_body(&mut self, body: &mut Vec<u8>) {
        self.transport.queue_tail(body);
        if body.capacity() == 0 {
            *body = self.buffers.take(BUF_WORK);
        }
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
        let until = self.handle.clock.refresh() + LINGER;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.input.buf.clear();
            self.input.start = 0;
            match self.read_more(until, BUF_SMALL).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }

    /// Between requests: the write buffer goes back to the pool (when written), and a
    /// read buffer grown for a large request goes back to the small class.
    pub(crate) fn shrink_idle(&mut self) {
        let pool = &self.buffers;
        if self.input.pending().is_empty() {
            self.input.buf.clear();
            self.input.start = 0;
            pool.shrink(&mut self.input.buf);
        }
        if self.transport.out.is_empty() {
            pool.give(std::mem::take(&mut self.transport.out));
        }
        if !self.transport.has_tail() {
            pool.give(std::mem::take(&mut self.transport.tail));
        }
    }

    /// The connection ended: settles unwritten responses, closes the socket (it must be
    /// out of the registry already) and gives the buffers back to the pool.
    pub(crate) fn finish(&mut self) {
        let lost = self.transport.settle(&self.handle.stats, &self.handle.clock);
        if lost > 0 {
            tracing::debug!(shard = self.handle.id, requests = lost, "responses not sent: connection ended");
        }
        self.transport.io = None;
        self.transport.watch = None;
        self.buffers.give(std::mem::take(&mut self.transport.out));
        self.buffers.give(std::mem::take(&mut self.transport.tail));
        self.buffers.give(std::mem::take(&mut self.input.buf));
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
    fn a_grown_buffer_returns_to_the_working_class_once_the_rest_fits() {
        let pool = BufferPool::default();
        let mut input = ReadBuffer::new(pool.take(BUF_SMALL));
        input.buf.resize(300_000, b'x');
        assert!(input.buf.capacity() >= 300_000);
        input.consume(299_990);
        input.compact(&pool, 100);
        assert_eq!(input.buf.capacity(), BUF_WORK);
        assert_eq!(input.pending(), b"xxxxxxxxxx");
    }
}
