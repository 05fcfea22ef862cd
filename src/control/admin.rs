//! The admin listener's connections, driven by the control thread's own loop.
//!
//! Owns every admin connection from accept to close: reading its request head,
//! writing the reply, the lingering close, and the bounds below. It runs on the control
//! thread with non-blocking std sockets and no thread of its own: each turn of the
//! control loop (at most [`super::TICK`] apart, sooner when a shard reports) calls
//! [`Admin::turn`], which accepts what is pending and moves every open connection as far
//! as it can go without waiting. Nothing here ever blocks, so no admin client can delay
//! another one, the heartbeat watchdog, or the recycling of shard snapshots that the
//! same loop does before each turn. It never touches a shard, and reads the control
//! thread's [`State`] only through `endpoints`.
//!
//! Why this shape rather than the alternatives: admin traffic is a probe or a scrape
//! every few seconds, and the control loop already turns every few milliseconds, so
//! trying one non-blocking `read` per open connection per turn costs a handful of
//! syscalls and answers within one turn. A pool of blocking worker threads would still
//! be held by as many slow clients as it has threads, and would need its own shutdown
//! and a lock (or messages) around the state; `poll(2)` would need `unsafe` and buy
//! only the last few milliseconds of latency.
//!
//! Bounds, each closing a door a slow or hostile client could use:
//! - the whole request head must arrive within [`HEAD_DEADLINE`] of the accept, however
//!   steadily it trickles in (then 408);
//! - a head is at most [`MAX_HEAD`] bytes (then 431);
//! - the reply must be taken within [`WRITE_DEADLINE`], the lingering close ends after
//!   [`LINGER`];
//! - at most [`MAX_CONNECTIONS`] are open. A newcomer at the cap displaces the one least
//!   likely to be a working client (a lingering one, else the oldest still sending its
//!   head), so holding the slots does not take `/healthz` away from a probe; only when
//!   every slot is writing a reply is the newcomer answered 503;
//! - at most [`ACCEPTS_PER_TURN`] accepts per turn, so a connect flood cannot hold the
//!   loop.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::State;
use super::endpoints::{self, Reply};

/// Time from accept to a complete request head: an overall deadline, not per read.
const HEAD_DEADLINE: Duration = Duration::from_secs(2);
/// Time for the client to take the whole reply.
const WRITE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a closed connection keeps discarding input so the client reads the reply
/// (not a reset) before it closes too.
const LINGER: Duration = Duration::from_secs(1);
/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Admin connections open at once.
const MAX_CONNECTIONS: usize = 64;
/// Connections accepted per turn of the control loop.
const ACCEPTS_PER_TURN: usize = 64;
/// Reads of lingering input per connection per turn.
const LINGER_READS_PER_TURN: usize = 8;

/// Where an admin connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the request head into `buf`, until `deadline` (accept + [`HEAD_DEADLINE`]).
    Head,
    /// Writing the reply held in `buf`, `written` bytes so far, until `deadline`.
    Write,
    /// Reply sent and write side shut; discarding input until EOF or `deadline`.
    Linger,
}

/// One admin connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    phase: Phase,
    /// When the current phase must be over.
    deadline: Instant,
    accepted: Instant,
    /// The head read so far (`Head`), then the encoded reply (`Write`).
    buf: Vec<u8>,
    written: usize,
}

/// What one step of a connection came to.
enum Step {
    /// Nothing more to do this turn; keep the connection.
    Wait,
    /// The phase changed; step again.
    Next,
    /// Done or broken; close.
    Close,
}

/// The admin listener and its open connections.
#[derive(Debug)]
pub(super) struct Admin {
    listener: TcpListener,
    conns: Vec<Conn>,
}

impl Admin {
    /// Takes over the listener, making it non-blocking.
    pub(super) fn new(listener: TcpListener) -> std::io::Result<Admin> {
        listener.set_nonblocking(true)?;
        Ok(Admin { listener, conns: Vec::with_capacity(MAX_CONNECTIONS) })
    }

    /// One turn: accept what is pending, then move every connection as far as it goes
    /// without waiting. Never blocks.
    pub(super) fn turn(&mut self, state: &State, now: Instant) {
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors and the like: try again next turn.
                    tracing::warn!(error = %e, "admin accept failed");
                    break;
                }
            }
        }
        self.conns.retain_mut(|c| c.advance(state, now));
    }

    /// Open connections (for tests).
    #[cfg(test)]
    fn open(&self) -> usize {
        self.conns.len()
    }

    fn admit(&mut self, stream: TcpStream, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return; // a blocking socket would stall the loop: refuse it
        }
        if self.conns.len() >= MAX_CONNECTIONS && !self.make_room() {
            busy(stream);
            return;
        }
        let conn = Conn {
            stream,
            phase: Phase::Head,
            deadline: now + HEAD_DEADLINE,
            accepted: now,
            buf: Vec::new(),
            written: 0,
        };
        self.conns.push(conn);
    }

    /// Frees a slot by closing a lingering connection, else the oldest one still
    /// sending its head; false when every connection is writing a reply.
    fn make_room(&mut self) -> bool {
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.phase != Phase::Write)
            .min_by_key(|(_, c)| (c.phase == Phase::Head, c.accepted))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                let c = self.conns.swap_remove(i);
                if c.phase == Phase::Head {
                    busy(c.stream);
                }
                true
            }
            None => false,
        }
    }
}

/// Best-effort 503 for a connection turned away, then close. Input already here is
/// read first, so the close is a FIN the client can read the 503 before, not a reset.
fn busy(mut stream: TcpStream) {
    let reply = Reply::text(503, "admin listener busy\n").encode(false);
    let mut sink = [0u8; 4096];
    for _ in 0..LINGER_READS_PER_TURN {
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = stream.write(&reply);
    let _ = stream.shutdown(Shutdown::Write);
}

impl Conn {
    /// Moves the connection on; false to close it.
    fn advance(&mut self, state: &State, now: Instant) -> bool {
        loop {
            let step = match self.phase {
                Phase::Head => self.read_head(state, now),
                Phase::Write => self.write(now),
                Phase::Linger => self.linger(now),
            };
            match step {
                Step::Wait => return true,
                Step::Next => {}
                Step::Close => return false,
            }
        }
    }

    fn read_head(&mut self, state: &State, now: Instant) -> Step {
        let mut chunk = [0u8; 2048];
        while self.buf.len() < MAX_HEAD {
            let room = (MAX_HEAD - self.buf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return Step::Close,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Step::Close,
            }
        }
        let reply = match parse(&self.buf) {
            Head::Complete { head_only, path } => {
                let reply = path
                    .map_or_else(|| Reply::text(405, "GET only\n"), |path| endpoints::answer(path, state));
                reply.encode(head_only)
            }
            Head::Partial if self.buf.len() >= MAX_HEAD => {
                Reply::text(431, "request head too large\n").encode(false)
            }
            Head::Partial if now >= self.deadline => {
                Reply::text(408, "request head too slow\n").encode(false)
            }
            Head::Partial => return Step::Wait,
            Head::TooManyHeaders => Reply::text(431, "too many header fields\n").encode(false),
            Head::Invalid => Reply::text(400, "bad request\n").encode(false),
        };
        self.buf = reply;
        self.written = 0;
        self.phase = Phase::Write;
        self.deadline = now + WRITE_DEADLINE;
        Step::Next
    }

    fn write(&mut self, now: Instant) -> Step {
        while self.written < self.buf.len() {
            match self.stream.write(&self.buf[self.written..]) {
                Ok(0) => return Step::Close,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return if now >= self.deadline { Step::Close } else { Step::Wait };
                }
                Err(_) => return Step::Close,
            }
        }
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return Step::Close;
        }
        self.buf = Vec::new();
        self.phase = Phase::Linger;
        self.deadline = now + LINGER;
        Step::Next
    }

    fn linger(&mut self, now: Instant) -> Step {
        let mut sink = [0u8; 4096];
        for _ in 0..LINGER_READS_PER_TURN {
            match self.stream.read(&mut sink) {
                Ok(0) => return Step::Close,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Step::Close,
            }
        }
        if now >= self.deadline { Step::Close } else { Step::Wait }
    }
}

/// A request head, as far as the admin endpoints care.
#[derive(Debug, PartialEq, Eq)]
enum Head<'a> {
    /// Complete: `path` without its query, `None` for a method other than GET/HEAD.
    Complete { head_only: bool, path: Option<&'a str> },
    /// More bytes needed.
    Partial,
    /// More header fields than the admin parser takes.
    TooManyHeaders,
    /// Not HTTP/1.x.
    Invalid,
}

fn parse(buf: &[u8]) -> Head<'_> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let head_only = req.method == Some("HEAD");
            let path = (head_only || req.method == Some("GET"))
                .then(|| req.path.unwrap_or("/").split('?').next().unwrap_or("/"));
            Head::Complete { head_only, path }
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Err(httparse::Error::TooManyHeaders) => Head::TooManyHeaders,
        Err(_) => Head::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_table() {
        let cases: &[(&[u8], Head<'_>)] = &[
            (b"GET /healthz HTTP/1.1\r\n\r\n", Head::Complete { head_only: false, path: Some("/healthz") }),
            (
                b"HEAD /readyz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                Head::Complete { head_only: true, path: Some("/readyz") },
            ),
            (b"POST /healthz HTTP/1.1\r\n\r\n", Head::Complete { head_only: false, path: None }),
            (b"GET /healthz HTTP/1.1\r\nHost: a\r\n", Head::Partial),
            (b"", Head::Partial),
            (b"\x00\x01 nonsense\r\n\r\n", Head::Invalid),
        ];
        for (raw, want) in cases {
            assert_eq!(&parse(raw), want, "{:?}", String::from_utf8_lossy(raw));
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(40));
        assert_eq!(parse(many.as_bytes()), Head::TooManyHeaders);
    }

    #[test]
    fn every_prefix_of_a_head_is_partial() {
        let raw = b"GET /metrics HTTP/1.1\r\nHost: admin\r\nAccept: */*\r\n\r\n";
        for end in 0..raw.len() {
            assert_eq!(parse(&raw[..end]), Head::Partial, "prefix {end}");
        }
    }

    fn state() -> State {
        State {
            latest: vec![None],
            routes: vec![Vec::new()],
            rate: vec![0.0],
            stalled: vec![false],
            dead: vec![false],
            limiters: super::super::budgets::LimiterBoard::default(),
            spec_shards: 1,
            backend: "test",
            stall_after: Duration::from_secs(2),
            lifecycle: super::super::LifecycleCell::default(),
            started: Instant::now(),
            spans: None,
            redis_ready_required: false,
        }
    }

    #[test]
    fn at_the_cap_the_oldest_unfinished_head_makes_room() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut admin = Admin::new(listener).expect("admin");
        let st = state();
        let t0 = Instant::now();
        let mut clients: Vec<TcpStream> = Vec::new();
        for i in 0..MAX_CONNECTIONS + 1 {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            if i == MAX_CONNECTIONS {
                c.write_all(b"GET /readyz HTTP/1.1\r\n\r\n").expect("send");
            } else {
                c.write_all(b"GET /h").expect("send");
            }
            clients.push(c);
            // Distinct accept times: the oldest is the first client.
            admin.turn(&st, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(admin.open(), MAX_CONNECTIONS);
        for _ in 0..20 {
            admin.turn(&st, t0 + Duration::from_millis(100));
            std::thread::sleep(Duration::from_millis(5));
        }
        let got = read_all(clients.last_mut().expect("clients"));
        assert!(got.starts_with("HTTP/1.1 503"), "readyz while starting: {got}");
        let first = read_all(&mut clients[0]);
        assert!(first.starts_with("HTTP/1.1 503"), "the oldest was turned away: {first}");
        // Past the head deadline every remaining slow head is answered 408.
        admin.turn(&st, t0 + HEAD_DEADLINE + Duration::from_secs(1));
        let second = read_all(&mut clients[1]);
        assert!(second.starts_with("HTTP/1.1 408"), "{second}");
    }

    /// What the peer sent before it closed.
    fn read_all(c: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    }
}
