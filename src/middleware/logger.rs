//! The access-log middleware (Gin's `Logger`): one line per request, never a write on
//! the shard.
//!
//! Each shard's instance (the app factory runs per shard) formats lines into its own
//! buffer. A full buffer (32 KiB), or a non-empty one every 100 ms, is handed to the
//! sink's writer thread; when the writer cannot take it the batch is dropped and its
//! lines counted (`ringo_access_log_dropped_total`), so a slow disk or a stuck pipe
//! never slows a request. Steady state allocates nothing: buffers come back from the
//! writer for reuse.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::{Middleware, Next, RequestId, TraceContext};
use crate::access_log::sink::{self, ShardChannel};
use crate::access_log::{AccessLogFormat, AccessLogSink, Entry, TimeCache};
use crate::context::Context;
use crate::metrics::ShardStats;

/// Buffer size at which a shard hands its lines to the writer.
const BATCH_BYTES: usize = 32 << 10;
/// Room past `BATCH_BYTES` for the line that crosses it (a longer line, only possible
/// with a head near the 16 KiB limit, grows its buffer once).
const LINE_ROOM: usize = 16 << 10;
/// Buffers each shard owns, allocated when the logger is built: one filling, the rest
/// with the writer or waiting. All of them with the writer means it is behind: then the
/// current batch is dropped (and counted) instead of allocating another.
const BUFFERS: usize = 8;
/// How often a shard hands over a partly filled buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// JSON access lines to stdout, through the process-wide stdout writer.
pub fn logger() -> Logger {
    logger_with(&AccessLogSink::stdout(), AccessLogFormat::Json, 1)
}

/// Access lines in `format` to `sink`, one request in every `sample_every` (1: all);
/// 5xx answers are always logged.
pub fn logger_with(sink: &AccessLogSink, format: AccessLogFormat, sample_every: u32) -> Logger {
    Logger {
        shard: Rc::new(ShardLog {
            channel: sink.register(),
            buf: RefCell::new(Vec::with_capacity(BATCH_BYTES + LINE_ROOM)),
            spares: RefCell::new((1..BUFFERS).map(|_| Vec::with_capacity(BATCH_BYTES + LINE_ROOM)).collect()),
            lines: Cell::new(0),
            clock: TimeCache::default(),
            stats: RefCell::new(None),
            flusher: Cell::new(false),
        }),
        format,
        sample_every: u64::from(sample_every.max(1)),
        seen: Cell::new(0),
    }
}

/// See [`logger`] and [`logger_with`].
#[derive(Debug)]
pub struct Logger {
    shard: Rc<ShardLog>,
    format: AccessLogFormat,
    sample_every: u64,
    seen: Cell<u64>,
}

/// One shard's side of the log: its buffer and its channel to the writer.
struct ShardLog {
    channel: ShardChannel,
    buf: RefCell<Vec<u8>>,
    /// Buffers not handed out yet (written ones come back through `channel.recycled`).
    spares: RefCell<Vec<Vec<u8>>>,
    /// Lines in `buf`.
    lines: Cell<u64>,
    /// This shard's rendered timestamps.
    clock: TimeCache,
    /// The shard's counters, known from the first request on.
    stats: RefCell<Option<Rc<ShardStats>>>,
    /// Whether the periodic flush task runs.
    flusher: Cell<bool>,
}

impl std::fmt::Debug for ShardLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardLog").field("buffered", &self.buf.borrow().len()).finish_non_exhaustive()
    }
}

impl ShardLog {
    /// Hands the buffer to the writer, or drops and counts its lines if the writer is
    /// behind (its queue is full, or it holds every buffer). Never allocates.
    fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let lines = self.lines.replace(0);
        let fresh = self.channel.recycled.try_recv().ok().or_else(|| self.spares.borrow_mut().pop());
        let handed = match fresh {
            Some(fresh) => match sink::hand_over(&self.channel, std::mem::replace(&mut *buf, fresh)) {
                Ok(()) => true,
                Err(batch) => {
                    // Put the fresh one back and keep this one, emptied.
                    self.spares.borrow_mut().push(std::mem::replace(&mut *buf, batch));
                    false
                }
            },
            None => false,
        };
        if !handed {
            buf.clear();
            if let Some(stats) = self.stats.borrow().as_ref() {
                stats.access_log_dropped.set(stats.access_log_dropped.get() + lines);
            }
        }
    }
}

impl Drop for ShardLog {
    fn drop(&mut self) {
        // The shard is stopping: whatever is buffered goes to the writer now.
        self.flush();
    }
}

/// Hands over a partly filled buffer every [`FLUSH_EVERY`], while the logger lives.
async fn flush_periodically(log: Weak<ShardLog>) {
    loop {
        crate::time::sleep(FLUSH_EVERY).await;
        let Some(log) = log.upgrade() else { return };
        log.flush();
    }
}

impl Middleware for Logger {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        next.run(c).await;
        let seen = self.seen.get() + 1;
        self.seen.set(seen);
        let status = c.response_status();
        if seen % self.sample_every != 0 && status < 500 {
            return;
        }
        let log = &self.shard;
        if !log.flusher.replace(true) {
            *log.stats.borrow_mut() = Some(Rc::clone(&c.shard.stats));
            // Not a `c.spawn` task: it must not hold up a drain, and ends with the logger.
            crate::time::spawn(flush_periodically(Rc::downgrade(log)));
        }
        let entry = Entry {
            // The request's start, from the engine's clock read (no second read).
            time: c.shard.wall_time(c.started),
            clock: &log.clock,
            shard: c.shard_id(),
            method: c.method().as_str(),
            route: c.full_path(),
            path: c.path(),
            query: c.query_string(),
            minor_version: c.head.minor_version,
            status,
            bytes: c.resp.borrow().body.len(),
            duration_us: c.started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64,
            request_id: c.get::<RequestId>().map(RequestId::as_str),
            trace_id: c.get::<TraceContext>().map(TraceContext::trace_id_hex),
            client: c.client_addr(),
            referer: c.header_bytes("referer"),
            user_agent: c.header_bytes("user-agent"),
        };
        let full = {
            let mut buf = log.buf.borrow_mut();
            crate::access_log::write_line(&mut buf, self.format, &entry);
            buf.len() >= BATCH_BYTES
        };
        log.lines.set(log.lines.get() + 1);
        let stats = &c.shard.stats;
        stats.access_log_lines.set(stats.access_log_lines.get() + 1);
        if full {
            log.flush();
        }
    }
}
