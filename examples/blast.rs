//! `blast`: a pipelined HTTP/1.1 load generator that costs far less per response than
//! wrk, so that one client core can saturate one server core (the `saturate` scenario of
//! `scripts/bench`).
//!
//! Each connection writes `--depth` identical GET requests in one write (POST requests
//! carrying a file's bytes as a JSON body with `--body FILE`), then reads until
//! it has seen as many status lines, and repeats. Responses are counted by their status
//! line (`HTTP/1.1 2xx` or another status); bodies are not parsed, so it suits endpoints
//! whose body cannot contain a status line (`/plaintext`, `/json`). It runs `--threads`
//! threads, each a monoio runtime (io_uring, or epoll when the kernel refuses it) with its
//! share of the connections, for `--duration` seconds, and prints one JSON line:
//! `{"requests":…,"non2xx":…,"errors":…,"seconds":…,"rps":…}` (requests answered before
//! the stop).
//!
//! With `--rate R` it is an open-loop client instead (the stepwise ramp of
//! `scripts/bench`): requests are scheduled at R per second whatever the server does, one
//! at a time per connection; a request due while every connection is busy waits for the
//! next free one, and its latency counts from when it was due (no coordinated omission).
//! The JSON line then adds `rate` and the latency percentiles `p50_ms`, `p90_ms`,
//! `p99_ms`, `p999_ms`, `max_ms`. The pacer runs on the runtime's millisecond timer:
//! each tick releases every request that fell due since the last one, and their latency
//! counts from that tick (so traffic arrives in millisecond bursts of rate/1000).
//!
//! ```text
//! cargo build --release --example blast
//! taskset -c 0 target/release/examples/blast --connections 64 --depth 64 --duration 10 \
//!     http://127.0.0.1:8080/plaintext
//! taskset -c 0 target/release/examples/blast --connections 64 --rate 50000 --duration 10 \
//!     http://127.0.0.1:8080/plaintext
//! ```

use std::cell::Cell;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

/// Open loop: how long the connections have to open before the schedule starts.
const OPEN_DELAY: Duration = Duration::from_millis(100);

/// What a status line starts with; the byte after it is the status's first digit.
const STATUS_LINE: &[u8] = b"HTTP/1.1 ";

struct Args {
    addr: SocketAddr,
    host: String,
    path: String,
    connections: usize,
    depth: usize,
    duration: Duration,
    threads: usize,
    /// Open loop: requests per second, all threads together.
    rate: Option<f64>,
    /// `--body FILE`: POST this as an `application/json` body instead of a GET.
    body: Option<Vec<u8>>,
    /// `--fields FILE`: header field lines (`Name: value`, one a line) sent after `Host`,
    /// for heads like a browser's.
    fields: String,
}

fn usage() -> String {
    "usage: blast [--connections N] [--depth N | --rate R] [--duration SECONDS] [--threads N] [--body FILE] [--fields FILE] http://HOST:PORT/PATH"
        .to_string()
}

fn parse_args() -> Result<Args, String> {
    let mut connections = 64;
    let mut depth = 64;
    let mut duration = 10.0_f64;
    let mut threads = 1;
    let mut rate = None;
    let mut body = None;
    let mut fields = String::new();
    let mut url = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{}", usage()));
        match arg.as_str() {
            "--connections" | "-c" => connections = number(&value(&arg)?, &arg)?,
            "--depth" | "-d" => depth = number(&value(&arg)?, &arg)?,
            "--threads" | "-t" => threads = number(&value(&arg)?, &arg)?,
            "--duration" | "-z" => {
                let v = value(&arg)?;
                duration = v.parse().map_err(|_| format!("--duration: {v:?} is not a number of seconds"))?;
            }
            "--rate" | "-q" => {
                let v = value(&arg)?;
                let r: f64 = v.parse().map_err(|_| format!("--rate: {v:?} is not a number of requests/s"))?;
                if !r.is_finite() || r <= 0.0 {
                    return Err("--rate must be positive".into());
                }
                rate = Some(r);
            }
            "--body" | "-b" => {
                let file = value(&arg)?;
                body = Some(std::fs::read(&file).map_err(|e| format!("--body: cannot read {file:?}: {e}"))?);
            }
            "--fields" | "-f" => {
                let file = value(&arg)?;
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("--fields: cannot read {file:?}: {e}"))?;
                for line in text.lines().map(str::trim_end).filter(|line| !line.is_empty()) {
                    if !line.contains(':') {
                        return Err(format!("--fields: {line:?} in {file:?} is not a `Name: value` line"));
                    }
                    fields.push_str(line);
                    fields.push_str("\r\n");
                }
            }
            "--help" | "-h" => return Err(usage()),
            _ if url.is_none() && !arg.starts_with('-') => url = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}\n{}", usage())),
        }
    }
    let url = url.ok_or_else(usage)?;
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority:?} resolves to nothing"))?;
    if connections == 0 || depth == 0 || threads == 0 || !duration.is_finite() || duration <= 0.5 {
        return Err("--connections, --depth and --threads must be positive, --duration over 0.5 s".into());
    }
    Ok(Args {
        addr,
        host: authority.to_string(),
        path: path.to_string(),
        connections,
        depth,
        duration: Duration::from_secs_f64(duration),
        threads: threads.min(connections),
        rate,
        body,
        fields,
    })
}

fn number(v: &str, flag: &str) -> Result<usize, String> {
    v.parse().map_err(|_| format!("{flag}: {v:?} is not a whole number"))
}

/// Counts across threads; read once at the stop.
#[derive(Default)]
struct Totals {
    ok: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
    /// Open loop: every answered request's latency in microseconds.
    latencies: std::sync::Mutex<Vec<u32>>,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("blast: {e}");
            return ExitCode::from(2);
        }
    };
    let request = match &args.body {
        None => {
            format!("GET {} HTTP/1.1\r\nHost: {}\r\n{}\r\n", args.path, args.host, args.fields).into_bytes()
        }
        Some(body) => {
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                args.path,
                args.host,
                args.fields,
                body.len()
            );
            [head.as_bytes(), body].concat()
        }
    };
    let batch: &'static [u8] = request.repeat(args.depth).leak();
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let stop_at = started + args.duration;
    let threads: Vec<_> = (0..args.threads)
        .map(|i| {
            let conns = args.connections / args.threads + usize::from(i < args.connections % args.threads);
            let totals = Arc::clone(&totals);
            let (addr, depth) = (args.addr, args.depth);
            let single: &'static [u8] = &batch[..request.len()];
            let rate = args.rate.map(|r| r / args.threads as f64);
            std::thread::spawn(move || match rate {
                Some(rate) => run_open_loop(addr, single, conns, rate, started, stop_at, &totals),
                None => run_thread(addr, batch, depth, conns, stop_at, &totals),
            })
        })
        .collect();
    for t in threads {
        if t.join().is_err() {
            eprintln!("blast: a client thread panicked");
            return ExitCode::FAILURE;
        }
    }
    // Open loop: the schedule starts once the connections had their 100 ms to open.
    let seconds =
        args.duration.as_secs_f64() - if args.rate.is_some() { OPEN_DELAY.as_secs_f64() } else { 0.0 };
    let ok = totals.ok.load(Ordering::Relaxed);
    let other = totals.other.load(Ordering::Relaxed);
    let errors = totals.errors.load(Ordering::Relaxed);
    let requests = ok + other;
    let mut line = format!(
        "{{\"requests\":{requests},\"non2xx\":{other},\"errors\":{errors},\"seconds\":{seconds:.3},\"rps\":{:.0}",
        requests as f64 / seconds
    );
    if let Some(rate) = args.rate {
        let mut lat = std::mem::take(&mut *totals.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        lat.sort_unstable();
        let at = |q: f64| {
            let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
            lat.get(i).map_or(0.0, |&us| f64::from(us) / 1e3)
        };
        line.push_str(&format!(
            ",\"rate\":{rate:.0},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3}",
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            at(1.0)
        ));
    }
    line.push('}');
    println!("{line}");
    if requests == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn run_thread(
    addr: SocketAddr,
    batch: &'static [u8],
    depth: usize,
    conns: usize,
    stop_at: Instant,
    totals: &Totals,
) {
    let body = async move {
        let stop = Rc::new(Cell::new(false));
        let counts = Rc::new((Cell::new(0u64), Cell::new(0u64), Cell::new(0u64)));
        for _ in 0..conns {
            monoio::spawn(connection(addr, batch, depth, Rc::clone(&stop), Rc::clone(&counts)));
        }
        monoio::time::sleep(stop_at.saturating_duration_since(Instant::now())).await;
        stop.set(true);
        // Only what was answered before the stop counts.
        (counts.0.get(), counts.1.get(), counts.2.get())
    };
    let (ok, other, errors) = block_on(body).unwrap_or((0, 0, conns as u64));
    totals.ok.fetch_add(ok, Ordering::Relaxed);
    totals.other.fetch_add(other, Ordering::Relaxed);
    totals.errors.fetch_add(errors, Ordering::Relaxed);
}

/// One connection: a batch out, its answers in, until the stop.
async fn connection(
    addr: SocketAddr,
    batch: &'static [u8],
    depth: usize,
    stop: Rc<Cell<bool>>,
    counts: Rc<(Cell<u64>, Cell<u64>, Cell<u64>)>,
) {
    let fail = || counts.2.set(counts.2.get() + 1);
    let Ok(mut stream) = TcpStream::connect(addr).await else { return fail() };
    let _ = stream.set_nodelay(true);
    let finder = memchr::memmem::Finder::new(STATUS_LINE);
    let mut buf: Vec<u8> = Vec::with_capacity(256 << 10);
    while !stop.get() {
        let (written, _) = stream.write_all(batch).await;
        if written.is_err() {
            return fail();
        }
        let mut seen = 0;
        while seen < depth {
            if !read_into(&mut stream, &mut buf).await {
                return fail();
            }
            let mut pos = 0;
            while let Some(i) = finder.find(&buf[pos..]) {
                let at = pos + i;
                let Some(&digit) = buf.get(at + STATUS_LINE.len()) else { break };
                if stop.get() {
                    return;
                }
                if digit == b'2' {
                    counts.0.set(counts.0.get() + 1);
                } else {
                    counts.1.set(counts.1.get() + 1);
                }
                seen += 1;
                pos = at + STATUS_LINE.len() + 1;
            }
            // A status line split by the read boundary is at most its length long.
            let keep_from = pos.max(buf.len().saturating_sub(STATUS_LINE.len()));
            buf.drain(..keep_from);
        }
    }
}

/// A runtime for one client thread: io_uring, or epoll when the kernel refuses it.
fn block_on<F: std::future::Future>(fut: F) -> Option<F::Output> {
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(1024).enable_timer().build() {
        Ok(mut rt) => Some(rt.block_on(fut)),
        Err(_) => match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build() {
            Ok(mut rt) => Some(rt.block_on(fut)),
            Err(e) => {
                eprintln!("blast: cannot build a runtime: {e}");
                None
            }
        },
    }
}

/// The open-loop schedule one thread keeps: which connections are free, and the
/// requests already due that wait for one.
struct Schedule {
    /// A request handed to connection `i`: when it was due.
    assigned: Vec<Cell<Option<Instant>>>,
    wakers: Vec<std::cell::RefCell<Option<std::task::Waker>>>,
    free: std::cell::RefCell<Vec<usize>>,
    backlog: std::cell::RefCell<std::collections::VecDeque<Instant>>,
    stop: Cell<bool>,
    ok: Cell<u64>,
    other: Cell<u64>,
    errors: Cell<u64>,
    latencies: std::cell::RefCell<Vec<u32>>,
}

impl Schedule {
    /// A request is due at `due`: to a free connection, or into the backlog.
    fn issue(&self, due: Instant) {
        match self.free.borrow_mut().pop() {
            Some(i) => {
                self.assigned[i].set(Some(due));
                if let Some(w) = self.wakers[i].borrow_mut().take() {
                    w.wake();
                }
            }
            None => self.backlog.borrow_mut().push_back(due),
        }
    }

    /// Connection `i` is free: the oldest waiting request, or wait for the pacer.
    async fn next(&self, i: usize) -> Option<Instant> {
        if let Some(due) = self.backlog.borrow_mut().pop_front() {
            return Some(due);
        }
        self.free.borrow_mut().push(i);
        std::future::poll_fn(|cx| {
            if let Some(due) = self.assigned[i].take() {
                return std::task::Poll::Ready(Some(due));
            }
            if self.stop.get() {
                return std::task::Poll::Ready(None);
            }
            *self.wakers[i].borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

fn run_open_loop(
    addr: SocketAddr,
    request: &'static [u8],
    conns: usize,
    rate: f64,
    started: Instant,
    stop_at: Instant,
    totals: &Totals,
) {
    let body = async move {
        let schedule = Rc::new(Schedule {
            assigned: (0..conns).map(|_| Cell::new(None)).collect(),
            wakers: (0..conns).map(|_| std::cell::RefCell::new(None)).collect(),
            free: std::cell::RefCell::new(Vec::with_capacity(conns)),
            backlog: std::cell::RefCell::new(std::collections::VecDeque::new()),
            stop: Cell::new(false),
            ok: Cell::new(0),
            other: Cell::new(0),
            errors: Cell::new(0),
            latencies: std::cell::RefCell::new(Vec::with_capacity((rate * 12.0) as usize)),
        });
        for i in 0..conns {
            monoio::spawn(open_loop_connection(addr, request, i, Rc::clone(&schedule)));
        }
        // Let the connections open before the schedule starts.
        monoio::time::sleep(OPEN_DELAY).await;
        let begin = Instant::now().max(started);
        let interval = 1.0 / rate;
        let mut issued: u64 = 0;
        loop {
            let now = Instant::now();
            if now >= stop_at {
                break;
            }
            // Every request due by now leaves now, and its latency counts from now: the
            // runtime's timer ticks by the millisecond, so the schedule is kept in
            // millisecond steps (a request due while every connection is busy waits in
            // the backlog, and that wait counts).
            let due_count = ((now - begin).as_secs_f64() / interval) as u64 + 1;
            while issued < due_count {
                schedule.issue(now);
                issued += 1;
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        schedule.stop.set(true);
        for w in &schedule.wakers {
            if let Some(w) = w.borrow_mut().take() {
                w.wake();
            }
        }
        let latencies = std::mem::take(&mut *schedule.latencies.borrow_mut());
        (schedule.ok.get(), schedule.other.get(), schedule.errors.get(), latencies)
    };
    let (ok, other, errors, latencies) = block_on(body).unwrap_or((0, 0, conns as u64, Vec::new()));
    totals.ok.fetch_add(ok, Ordering::Relaxed);
    totals.other.fetch_add(other, Ordering::Relaxed);
    totals.errors.fetch_add(errors, Ordering::Relaxed);
    totals.latencies.lock().unwrap_or_else(|e| e.into_inner()).extend(latencies);
}

/// One open-loop connection: a request when one is due, its answer, its latency.
async fn open_loop_connection(addr: SocketAddr, request: &'static [u8], i: usize, schedule: Rc<Schedule>) {
    let fail = || schedule.errors.set(schedule.errors.get() + 1);
    let Ok(mut stream) = TcpStream::connect(addr).await else { return fail() };
    let _ = stream.set_nodelay(true);
    let finder = memchr::memmem::Finder::new(STATUS_LINE);
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    while let Some(due) = schedule.next(i).await {
        let (written, _) = stream.write_all(request).await;
        if written.is_err() {
            return fail();
        }
        // One answer: its status line, then whatever the read brought with it.
        loop {
            if !read_into(&mut stream, &mut buf).await {
                return fail();
            }
            if let Some(at) = finder.find(&buf) {
                if let Some(&digit) = buf.get(at + STATUS_LINE.len()) {
                    if schedule.stop.get() {
                        return;
                    }
                    let us =
                        Instant::now().saturating_duration_since(due).as_micros().min(u128::from(u32::MAX));
                    schedule.latencies.borrow_mut().push(us as u32);
                    let counter = if digit == b'2' { &schedule.ok } else { &schedule.other };
                    counter.set(counter.get() + 1);
                    buf.clear();
                    break;
                }
            }
        }
    }
}

/// Appends one read's bytes to `buf` (growing it as needed); `false` when the server
/// closed or the read failed.
async fn read_into(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let len = buf.len();
    if buf.capacity() - len < 16 << 10 {
        buf.reserve(64 << 10);
    }
    let cap = buf.capacity();
    let (read, slice) = stream.read(std::mem::take(buf).slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    matches!(read, Ok(n) if n > 0)
}
