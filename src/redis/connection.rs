//! One connection to Redis: its queue of waiting commands, the writer task that
//! auto-pipelines them, the reader task that completes them in order, set-up
//! (`HELLO`/`AUTH`/`SELECT`) and reconnection with backoff.
//!
//! Owns the socket and everything per connection. Never decides about the breaker,
//! deadlines or typed replies: those are the client's (`mod.rs`).
//!
//! ```text
//!  calls (any task of the shard)         writer task              Redis
//!  submit: encode into `out`,  ─wake─▶  takes all of `out`  ─one write─▶
//!          push a slot on `queue`        (one turn's commands)
//!  wait on the slot  ◀─complete FIFO──  reader (supervisor) task ◀─replies─
//! ```
//!
//! Commands issued during one executor turn land in `out` before the writer task runs,
//! so they go out in one write. Replies come back in command order, so the reader
//! completes the slot at the front of `queue`. A call that gives up at its deadline
//! leaves its slot in the queue: the reader still takes that reply off the wire (and
//! discards it), so the stream stays in step. When the connection goes down, every
//! queued slot fails (`Disconnected`, or the error that took it down); nothing is
//! replayed. Then the supervisor waits (exponential backoff with jitter) and connects
//! again; while it waits, calls fail at once.
//!
//! Shard-owned: `Rc`, `Cell`, `RefCell`, wakers of this thread's tasks; no lock.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::rt::net::{ReadHalf, TcpStream, WriteHalf};
use bytes::BytesMut;

use super::command::encode;
use super::config::RedisConfig;
use super::error::{RedisError, Result};
use super::reply::{self, Frame, Value};
use super::stats::Counters;

/// Bytes the read buffer grows by when less than [`MIN_READ`] is free.
const READ_SIZE: usize = 16 * 1024;
/// The least free space a read is offered.
const MIN_READ: usize = 4 * 1024;
/// Completed slots kept for reuse per connection.
const POOLED_SLOTS: usize = 256;

/// Where one connection's lifecycle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Not started: no call has used it yet.
    Idle,
    /// Connecting or setting up: calls queue and are sent once it is up.
    Connecting,
    /// Up: calls are written as they come.
    Ready,
    /// Down, waiting to reconnect: calls fail at once with `Disconnected`.
    Down,
}

/// The replies one submission gets.
#[derive(Debug)]
pub(crate) enum Replies {
    /// One command's reply.
    One(Result<Value>),
    /// A pipeline's replies, in order.
    Many(Vec<Result<Value>>),
}

impl Replies {
    pub(crate) fn one(self) -> Result<Value> {
        match self {
            Replies::One(r) => r,
            Replies::Many(mut v) if v.len() == 1 => v.pop().unwrap_or(Err(RedisError::Disconnected)),
            Replies::Many(_) => Err(RedisError::Protocol("several replies to one command".to_owned())),
        }
    }

    pub(crate) fn many(self) -> Vec<Result<Value>> {
        match self {
            Replies::One(r) => vec![r],
            Replies::Many(v) => v,
        }
    }
}

#[derive(Debug)]
enum Outcome {
    /// Replies still to come (collected for a pipeline).
    Waiting(Vec<Result<Value>>),
    Done(Replies),
    Failed(RedisError),
    /// Taken by the waiter (or reset for reuse).
    Taken,
}

/// Where the replies to one submission (a command or a pipeline) are delivered.
pub(crate) struct Slot {
    expect: Cell<usize>,
    outcome: RefCell<Outcome>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn new() -> Slot {
        Slot { expect: Cell::new(0), outcome: RefCell::new(Outcome::Taken), waker: Cell::new(None) }
    }

    fn arm(&self, expect: usize) {
        self.expect.set(expect);
        *self.outcome.borrow_mut() = Outcome::Waiting(Vec::new());
        self.waker.set(None);
    }

    /// Adds one reply; true once the last one is in.
    fn push(&self, r: Result<Value>) -> bool {
        let mut o = self.outcome.borrow_mut();
        let Outcome::Waiting(got) = &mut *o else { return true };
        if self.expect.get() == 1 && got.is_empty() {
            *o = Outcome::Done(Replies::One(r));
            return true;
        }
        if got.capacity() == 0 {
            got.reserve_exact(self.expect.get());
        }
        got.push(r);
        if got.len() < self.expect.get() {
            return false;
        }
        let all = std::mem::take(got);
        *o = Outcome::Done(Replies::Many(all));
        true
    }

    fn fail(&self, e: RedisError) {
        *self.outcome.borrow_mut() = Outcome::Failed(e);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits for the replies (or the failure).
    pub(crate) async fn wait(&self) -> Result<Replies> {
        poll_fn(|cx| {
            let mut o = self.outcome.borrow_mut();
            match std::mem::replace(&mut *o, Outcome::Taken) {
                Outcome::Done(r) => Poll::Ready(Ok(r)),
                Outcome::Failed(e) => Poll::Ready(Err(e)),
                waiting @ Outcome::Waiting(_) => {
                    *o = waiting;
                    self.waker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
                Outcome::Taken => Poll::Ready(Err(RedisError::Disconnected)),
            }
        })
        .await
    }
}

/// One connection and its queue; shared by the client and the connection's tasks.
pub(crate) struct Conn {
    index: usize,
    config: Rc<RedisConfig>,
    stats: Rc<Counters>,
    state: Cell<State>,
    /// Set when the client is dropped: the tasks end.
    closed: Cell<bool>,
    /// Bumped each time the connection goes down; tasks of an older epoch end.
    epoch: Cell<u64>,
    /// The protocol agreed at set-up.
    resp3: Cell<bool>,
    /// Encoded commands not yet taken by the writer.
    out: RefCell<Vec<u8>>,
    /// Commands in `out`.
    out_commands: Cell<u64>,
    /// Slots waiting for replies, in the order their commands were encoded.
    queue: RefCell<VecDeque<Rc<Slot>>>,
    /// Replies the queue waits for.
    queued: Cell<usize>,
    pool: RefCell<Vec<Rc<Slot>>>,
    writer_waker: Cell<Option<Waker>>,
    /// The supervisor's (which is also the reader).
    task_waker: Cell<Option<Waker>>,
    ever_up: Cell<bool>,
    rng: Cell<u64>,
    /// The socket's descriptor while the connection is up (both halves alive: set when
    /// it is up, cleared by `fail` before either half can be dropped), for `close`.
    fd: Cell<Option<RawFd>>,
}

impl Conn {
    pub(crate) fn new(index: usize, config: Rc<RedisConfig>, stats: Rc<Counters>) -> Rc<Conn> {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ ((index as u64 + 1) << 32);
        Rc::new(Conn {
            index,
            config,
            stats,
            state: Cell::new(State::Idle),
            closed: Cell::new(false),
            epoch: Cell::new(0),
            resp3: Cell::new(false),
            out: RefCell::new(Vec::with_capacity(8 * 1024)),
            out_commands: Cell::new(0),
            queue: RefCell::new(VecDeque::with_capacity(64)),
            queued: Cell::new(0),
            pool: RefCell::new(Vec::new()),
            writer_waker: Cell::new(None),
            task_waker: Cell::new(None),
            ever_up: Cell::new(false),
            rng: Cell::new(seed | 1),
            fd: Cell::new(None),
        })
    }

    pub(crate) fn state(&self) -> State {
        self.state.get()
    }

    /// Replies this connection waits for.
    pub(crate) fn queued(&self) -> usize {
        self.queued.get()
    }

    /// Starts the connection's supervisor task if nothing used the connection yet.
    pub(crate) fn start(self: &Rc<Conn>) {
        if self.state.get() == State::Idle && !self.closed.get() {
            self.state.set(State::Connecting);
            crate::time::spawn(supervise(Rc::clone(self)));
        }
    }

    /// Queues one submission of `commands` commands expecting `replies` replies,
    /// encoded by `write`.
    pub(crate) fn submit(
        &self,
        commands: u64,
        replies: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Rc<Slot>> {
        if self.closed.get() {
            return Err(RedisError::Disconnected);
        }
        match self.state.get() {
            State::Down | State::Idle => return Err(RedisError::Disconnected),
            State::Connecting | State::Ready => {}
        }
        if self.queued.get() + replies > self.config.max_queue.max(1) {
            return Err(RedisError::QueueFull);
        }
        let slot = self.pool.borrow_mut().pop().unwrap_or_else(|| Rc::new(Slot::new()));
        slot.arm(replies);
        write(&mut self.out.borrow_mut());
        self.out_commands.set(self.out_commands.get() + commands);
        self.queue.borrow_mut().push_back(Rc::clone(&slot));
        self.queued.set(self.queued.get() + replies);
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
        Ok(slot)
    }

    /// Gives a slot back for reuse once nobody else holds it.
    pub(crate) fn recycle(&self, slot: Rc<Slot>) {
        if Rc::strong_count(&slot) == 1 {
            let mut pool = self.pool.borrow_mut();
            if pool.len() < POOLED_SLOTS {
                *slot.outcome.borrow_mut() = Outcome::Taken;
                pool.push(slot);
            }
        }
    }

    /// The reader's hand-off: one reply, for the slot at the front of the queue.
    fn deliver(&self, r: Result<Value>) -> Result<()> {
        let front = self.queue.borrow().front().cloned();
        let Some(slot) = front else {
            return Err(RedisError::Protocol("a reply with no command waiting for it".to_owned()));
        };
        if !slot.push(r) {
            return Ok(());
        }
        self.queue.borrow_mut().pop_front();
        self.queued.set(self.queued.get().saturating_sub(slot.expect.get()));
        if Rc::strong_count(&slot) == 1 {
            // Its caller gave up at the deadline: the reply is dropped here.
            self.stats.late_reply();
            self.recycle(slot);
        } else {
            slot.wake();
        }
        Ok(())
    }

    /// Takes the connection of `epoch` down: every queued slot fails with `e`, the
    /// tasks of that epoch end. No-op when that epoch already ended.
    fn fail(&self, epoch: u64, e: RedisError) {
        if self.epoch.get() != epoch {
            return;
        }
        self.epoch.set(epoch + 1);
        self.state.set(State::Down);
        self.fd.set(None);
        self.out.borrow_mut().clear();
        self.out_commands.set(0);
        self.queued.set(0);
        let failed = std::mem::take(&mut *self.queue.borrow_mut());
        for slot in failed {
            slot.fail(e.clone());
        }
        self.wake_tasks();
    }

    fn wake_tasks(&self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
        if let Some(w) = self.task_waker.take() {
            w.wake();
        }
    }

    /// The client is gone: drop what is queued and end the tasks.
    ///
    /// This may run after the shard's runtime is gone (a client kept past it), where
    /// waking a task panics, so it wakes nothing: no caller waits (each holds the
    /// client), and the supervisor learns of the closure from its socket, shut down
    /// here (a pending read ends), or at the end of its backoff wait or connect attempt.
    /// The supervisor then ends the writer from inside the runtime.
    pub(crate) fn close(&self) {
        self.closed.set(true);
        for slot in std::mem::take(&mut *self.queue.borrow_mut()) {
            slot.waker.take();
            *slot.outcome.borrow_mut() = Outcome::Failed(RedisError::Disconnected);
        }
        self.queued.set(0);
        if let Some(fd) = self.fd.take() {
            crate::sys::shutdown_socket(fd, crate::sys::Direction::Both);
        }
    }

    fn stale(&self, epoch: u64) -> bool {
        self.closed.get() || self.epoch.get() != epoch
    }

    /// Runs `fut` until it finishes (`Some`) or the connection of `epoch` ends (`None`).
    async fn until_stale<F: Future>(&self, epoch: u64, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        poll_fn(|cx| {
            if self.stale(epoch) {
                return Poll::Ready(None);
            }
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            self.task_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// The wait before reconnect attempt `attempt` (0-based): `reconnect_min` doubled
    /// per attempt up to `reconnect_max`, drawn uniformly from its upper half.
    fn backoff(&self, attempt: u32) -> Duration {
        let min = self.config.reconnect_min.max(Duration::from_millis(1));
        let max = self.config.reconnect_max.max(min);
        let full = min.saturating_mul(1u32 << attempt.min(20)).min(max);
        let half = full / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).saturating_add(1);
        half + Duration::from_nanos(self.random() % span)
    }

    /// xorshift64: jitter only, never anything secret.
    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }
}

/// The connection's life: connect, set up, read until it fails, wait, again; until
/// the client is dropped.
async fn supervise(conn: Rc<Conn>) {
    let mut attempt = 0u32;
    while !conn.closed.get() {
        conn.state.set(State::Connecting);
        let epoch = conn.epoch.get();
        let timeout = conn.config.connect_timeout;
        let set_up = crate::time::timeout(timeout, set_up(&conn.config));
        match conn.until_stale(epoch, set_up).await {
            None => {}
            Some(Ok(Ok(up))) => {
                attempt = 0;
                conn.stats.connected(conn.ever_up.replace(true));
                conn.resp3.set(up.resp3);
                conn.state.set(State::Ready);
                conn.fd.set(Some(up.stream.as_raw_fd()));
                tracing::debug!(conn = conn.index, addr = %conn.config.addr, resp3 = up.resp3, "redis connected");
                let (rd, wr) = up.stream.into_split();
                crate::time::spawn(write_loop(Rc::clone(&conn), wr, epoch));
                let e = read_loop(&conn, rd, up.buf, epoch).await;
                if !conn.closed.get() {
                    // The reader's error, or the writer's (which ended the epoch first).
                    conn.stats.disconnected();
                    tracing::debug!(conn = conn.index, error = %e, "redis connection lost");
                }
                conn.fail(epoch, e);
            }
            Some(Ok(Err(e))) => {
                conn.stats.connect_failed();
                tracing::debug!(conn = conn.index, error = %e, "redis connect failed");
                conn.fail(epoch, e);
            }
            Some(Err(_elapsed)) => {
                conn.stats.connect_failed();
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect and set-up timed out");
                conn.fail(epoch, RedisError::io("connecting", e));
            }
        }
        if conn.closed.get() {
            break;
        }
        let wait = conn.backoff(attempt);
        attempt = attempt.saturating_add(1);
        let epoch = conn.epoch.get();
        conn.until_stale(epoch, crate::time::sleep(wait)).await;
    }
}

/// Writes whatever calls queued, all of it at once, until the connection of `epoch`
/// ends.
async fn write_loop(conn: Rc<Conn>, mut wr: WriteHalf, epoch: u64) {
    let mut spare = Vec::with_capacity(8 * 1024);
    loop {
        let go = poll_fn(|cx| {
            if conn.stale(epoch) {
                return Poll::Ready(false);
            }
            if !conn.out.borrow().is_empty() {
                return Poll::Ready(true);
            }
            conn.writer_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        if !go {
            return;
        }
        let batch = std::mem::replace(&mut *conn.out.borrow_mut(), spare);
        conn.stats.write(conn.out_commands.replace(0));
        let written = poll_stale(&conn, epoch, wr.write_all(batch)).await;
        match written {
            None => return,
            Some((Ok(_), mut buf)) => {
                buf.clear();
                spare = buf;
            }
            Some((Err(e), _)) => {
                tracing::debug!(conn = conn.index, error = %e, "redis write failed");
                conn.fail(epoch, RedisError::Disconnected);
                return;
            }
        }
    }
}

/// Like [`Conn::until_stale`], for the writer (it must not take the supervisor's
/// waker slot).
async fn poll_stale<F: Future>(conn: &Conn, epoch: u64, fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if conn.stale(epoch) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        conn.writer_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    })
    .await
}

/// Decodes replies and completes slots until the connection fails; returns why.
async fn read_loop(conn: &Conn, mut rd: ReadHalf, mut buf: BytesMut, epoch: u64) -> RedisError {
    loop {
        loop {
            match reply::decode(&mut buf, conn.resp3.get()) {
                Ok(None) => break,
                // Out-of-band RESP3 data (client tracking) is not a reply.
                Ok(Some(Frame::Push(_))) => conn.stats.push(),
                Ok(Some(Frame::Reply(r))) => {
                    if let Err(e) = conn.deliver(r) {
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
        if buf.capacity() - buf.len() < MIN_READ {
            buf.reserve(READ_SIZE);
        }
        // The read appends to the buffer's spare capacity; replies are slices of it.
        let read = rd.read(std::mem::take(&mut buf));
        match conn.until_stale(epoch, read).await {
            None | Some((Ok(0), _)) => return RedisError::Disconnected,
            Some((Ok(_), back)) => buf = back,
            // Commands in flight learn that the connection dropped; why is logged.
            Some((Err(e), _)) => {
                tracing::debug!(conn = conn.index, error = %e, "redis read failed");
                return RedisError::Disconnected;
            }
        }
    }
}

/// A connection that is set up.
struct SetUp {
    stream: TcpStream,
    /// Bytes read past the set-up replies (none, in practice).
    buf: BytesMut,
    resp3: bool,
}

/// Connects and runs the set-up commands: `HELLO 3 [AUTH user pass]` when RESP3 is
/// wanted (RESP2 with `AUTH` when the server has no `HELLO`), else `AUTH`; then
/// `SELECT` when the database is not 0.
async fn set_up(config: &RedisConfig) -> Result<SetUp> {
    // The name resolves on this thread (as a connect by name does), and `connect_first`
    // tries its addresses in order; it sets TCP_NODELAY (latency over throughput: the
    // writer already batches).
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(config.addr.as_str())
        .map_err(|e| RedisError::io("resolving the address", e))?;
    let mut stream = TcpStream::connect_first(addrs).await.map_err(|e| RedisError::io("connecting", e))?;
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let user = config.username.as_deref().unwrap_or("default").as_bytes();
    let mut resp3 = false;
    if config.resp3 {
        let mut out = Vec::new();
        match config.password.as_deref() {
            Some(p) => encode(&mut out, &[b"HELLO", b"3", b"AUTH", user, p.as_bytes()]),
            None => encode(&mut out, &[b"HELLO", b"3"]),
        }
        write(&mut stream, out).await?;
        match read_reply(&mut stream, &mut buf, true).await? {
            Ok(_) => resp3 = true,
            // A server before Redis 6 (no HELLO) or without RESP3: RESP2 from here.
            Err(RedisError::Redis(m)) if m.starts_with("NOPROTO") || m.contains("unknown command") => {}
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    let mut replies = 0;
    if let (false, Some(p)) = (resp3, config.password.as_deref()) {
        match config.username.as_deref() {
            Some(u) => encode(&mut out, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
            None => encode(&mut out, &[b"AUTH", p.as_bytes()]),
        }
        replies += 1;
    }
    if config.db != 0 {
        let mut n = itoa::Buffer::new();
        encode(&mut out, &[b"SELECT", n.format(config.db).as_bytes()]);
        replies += 1;
    }
    if replies > 0 {
        write(&mut stream, out).await?;
        for _ in 0..replies {
            read_reply(&mut stream, &mut buf, resp3).await??;
        }
    }
    Ok(SetUp { stream, buf, resp3 })
}

/// Writes all of `out`.
pub(crate) async fn write(stream: &mut TcpStream, out: Vec<u8>) -> Result<()> {
    let (r, _) = stream.write_all(out).await;
    r.map(|_| ()).map_err(|e| RedisError::io("writing", e))
}

/// Reads the next reply (pushes included when `pushes`) on a connection nobody else
/// reads: set-up and subscribers. Outer error: the connection failed; inner: the
/// server's error reply.
pub(crate) async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut, resp3: bool) -> Result<Frame> {
    loop {
        if let Some(f) = reply::decode(buf, resp3)? {
            return Ok(f);
        }
        if buf.capacity() - buf.len() < MIN_READ {
            buf.reserve(READ_SIZE);
        }
        let (r, back) = stream.read(std::mem::take(buf)).await;
        *buf = back;
        match r {
            Ok(0) => return Err(RedisError::Disconnected),
            Ok(_) => {}
            Err(e) => return Err(RedisError::io("reading", e)),
        }
    }
}

async fn read_reply(stream: &mut TcpStream, buf: &mut BytesMut, resp3: bool) -> Result<Result<Value>> {
    loop {
        if let Frame::Reply(r) = read_frame(stream, buf, resp3).await? {
            return Ok(r);
        }
    }
}

/// Connects and sets up a connection for its caller alone (a subscriber): the stream,
/// bytes read past the set-up, and whether RESP3 was agreed.
pub(crate) async fn set_up_stream(config: &RedisConfig) -> Result<(TcpStream, BytesMut, bool)> {
    let up = set_up(config).await?;
    Ok((up.stream, up.buf, up.resp3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter_in_the_upper_half() {
        let config = RedisConfig {
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(300),
            ..RedisConfig::default()
        };
        let conn = Conn::new(0, Rc::new(config), Rc::new(Counters::default()));
        // (attempt, full wait before jitter)
        let cases: &[(u32, u64)] = &[(0, 10), (1, 20), (2, 40), (4, 160), (5, 300), (40, 300)];
        for &(attempt, full) in cases {
            let full = Duration::from_millis(full);
            let mut seen = std::collections::HashSet::new();
            for _ in 0..50 {
                let d = conn.backoff(attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
                seen.insert(d);
            }
            assert!(seen.len() > 10, "attempt {attempt}: jitter varies the waits");
        }
    }

    #[test]
    fn a_slot_collects_a_pipeline_and_completes_once() {
        let slot = Slot::new();
        slot.arm(3);
        assert!(!slot.push(Ok(Value::Int(1))));
        assert!(!slot.push(Err(RedisError::Redis("ERR x".into()))));
        assert!(slot.push(Ok(Value::Nil)));
        match std::mem::replace(&mut *slot.outcome.borrow_mut(), Outcome::Taken) {
            Outcome::Done(Replies::Many(v)) => {
                assert_eq!(v.len(), 3);
                assert!(matches!(v[1], Err(RedisError::Redis(_))));
            }
            other => panic!("{other:?}"),
        }
        slot.arm(1);
        assert!(slot.push(Ok(Value::Int(7))));
        assert!(matches!(&*slot.outcome.borrow(), Outcome::Done(Replies::One(Ok(Value::Int(7))))));
    }
}
