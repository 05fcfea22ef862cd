//! Internals exposed for the criterion benches in `benches/` only: hidden from the docs,
//! not a supported API, and free to change with the internals they wrap.

use crate::http::Limits;
use crate::http::chunked::{ChunkedDecoder, Progress};
use crate::http::request::{Parse, RequestHead, parse_head};
use crate::router::{Dispatch, RouteError, Router};
use crate::{Context, Method};

/// The request-head parser with a reused head, as a connection uses it.
#[derive(Debug)]
pub struct HeadParser {
    head: RequestHead,
    limits: Limits,
}

impl Default for HeadParser {
    fn default() -> Self {
        let limits = Limits::default();
        HeadParser { head: RequestHead::new(limits.header_count()), limits }
    }
}

impl HeadParser {
    /// Parses one head; the head length when complete and valid.
    pub fn parse(&mut self, buf: &[u8]) -> Option<usize> {
        match parse_head(buf, &self.limits, &mut self.head) {
            Ok(Parse::Complete(n)) => Some(n),
            _ => None,
        }
    }
}

/// Decodes a complete chunked body into `out`; whether it was complete and valid.
pub fn decode_chunked(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    matches!(ChunkedDecoder::new().decode(input, out, usize::MAX, 1 << 16), Ok(Progress::Done(_)))
}

/// A finished router plus the buffers a connection reuses for lookups.
#[derive(Debug)]
pub struct RouteTable {
    router: Router,
    params: Vec<(u32, u32)>,
    scratch: Vec<u8>,
}

impl RouteTable {
    /// Registers every route with a no-op handler.
    pub fn new(routes: &[(Method, &str)]) -> Result<RouteTable, RouteError> {
        let mut router = Router::new();
        for (method, path) in routes {
            router.handle(*method, path, |_c: &mut Context| {})?;
        }
        router.finish();
        Ok(RouteTable { router, params: Vec::with_capacity(8), scratch: Vec::new() })
    }

    /// Routes one request; whether a route matched.
    pub fn lookup(&mut self, method: Method, path: &str) -> bool {
        self.params.clear();
        matches!(
            self.router.dispatch(method, path.as_bytes(), &mut self.params, &mut self.scratch),
            Dispatch::Found(_)
        )
    }
}

/// One request through a router's whole chain (middleware and handler), as the engine
/// runs it, without sockets: the head is parsed once, then each [`run`](ChainBench::run)
/// dispatches, runs the chain to completion and resets the context and arena.
pub struct ChainBench {
    router: Router,
    ctx: Context,
    arena: crate::arena::FutureArena,
    request: Vec<u8>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for ChainBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainBench").finish_non_exhaustive()
    }
}

impl ChainBench {
    /// `router` answering `request` (a complete head, no body).
    pub fn new(mut router: Router, request: &[u8]) -> ChainBench {
        router.finish();
        let limits = Limits::default();
        let handle = crate::shard_handle::ShardHandle::new(0, limits, router.len(), 0);
        let ctx = Context::new(handle);
        ChainBench {
            router,
            ctx,
            arena: crate::arena::FutureArena::new(),
            request: request.to_vec(),
            scratch: Vec::new(),
        }
    }

    /// Runs the chain once; the response status. Must be called inside
    /// [`with_runtime`] (middleware may start shard tasks).
    pub fn run(&mut self) -> u16 {
        let ctx = &mut self.ctx;
        std::mem::swap(&mut ctx.buf, &mut self.request);
        ctx.base = 0;
        // The engine reads the clock once per request, for everyone.
        ctx.started = std::time::Instant::now();
        let limits = Limits::default();
        if !matches!(parse_head(&ctx.buf, &limits, &mut ctx.head), Ok(Parse::Complete(_))) {
            std::mem::swap(&mut ctx.buf, &mut self.request);
            return 400;
        }
        let path = ctx.head.path;
        let decision =
            self.router.dispatch(ctx.head.method, path.get(&ctx.buf), &mut ctx.raw_params, &mut self.scratch);
        let status = if let Dispatch::Found(id) = decision {
            let route = self.router.route(id);
            ctx.route = Some(std::rc::Rc::clone(&route.meta));
            let _ = ctx.decode_params();
            {
                let mut chain = std::pin::pin!(
                    crate::middleware::Next::new(&route.chain, &route.endpoint, &self.arena).run(ctx)
                );
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                // The benched chains never wait: one poll finishes them.
                let _ = chain.as_mut().poll(&mut cx);
            }
            ctx.response_status()
        } else {
            404
        };
        ctx.reset_request();
        let _ = self.arena.reset();
        std::mem::swap(&mut ctx.buf, &mut self.request);
        status
    }
}

/// Runs `f` inside a shard runtime (epoll driver), as a shard's code runs.
pub fn with_runtime<R>(f: impl FnOnce() -> R) -> R {
    let mut rt = crate::runtime::Runtime::with_backend(crate::IoBackend::Epoll).expect("runtime");
    rt.block_on(async move { f() })
}

/// The GCRA check a rate limit makes per request.
#[derive(Debug)]
pub struct GcraBench {
    gcra: crate::ratelimit::Gcra,
    tat: u64,
    now: u64,
}

impl GcraBench {
    /// `rate` per second, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> GcraBench {
        GcraBench { gcra: crate::ratelimit::Gcra::new(rate, burst), tat: 0, now: 1_000_000_000 }
    }

    /// One check, the clock advancing 1 µs each time; whether it was admitted.
    pub fn check(&mut self) -> bool {
        self.now += 1_000;
        self.gcra.check(&mut self.tat, self.now).allowed
    }
}

/// Appends one command (`args`, name first) as the Redis client encodes it.
pub fn redis_encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    crate::redis::command::encode(out, args);
}

/// Decodes every complete reply in `buf` as the Redis client's reader does (each split
/// off the buffer as it is decoded); how many there were, or `None` on a protocol error.
pub fn redis_decode_all(buf: &mut bytes::BytesMut, resp3: bool) -> Option<usize> {
    let mut n = 0;
    loop {
        match crate::redis::reply::decode(buf, resp3) {
            Ok(Some(frame)) => {
                std::hint::black_box(frame);
                n += 1;
            }
            Ok(None) => return Some(n),
            Err(_) => return None,
        }
    }
}

/// Serves `listener` on ringo's own shard runtime (`src/rt`: io_uring, multishot accept,
/// multishot recv into a provided-buffer ring) with a fixed answerer: each connection
/// reads, hands its pending bytes to `answer` (which appends the responses to its second
/// argument and returns the bytes consumed and whether to close), writes what it
/// appended, and repeats. `tick` runs every 100 ms (a Date header's refresh). What the
/// runtime costs under a real HTTP load, before the engine moves onto it.
///
/// `lean_idle`: a connection with nothing pending waits with `readable` holding no
/// buffer, takes its two buffers from the shard's free list when bytes arrive, and gives
/// them back once everything read is answered and written: the idle footprint the engine
/// gets on this runtime (otherwise each connection keeps its two 4 KiB buffers, as the
/// hand-driven task peer does).
///
/// `epoll`: on the runtime's epoll driver (for counting instructions under valgrind,
/// which has no io_uring), else on io_uring.
pub fn serve_on_shard_runtime(
    listener: std::net::TcpListener,
    answer: fn(&[u8], &mut Vec<u8>) -> (usize, bool),
    tick: fn(),
    lean_idle: bool,
    epoll: bool,
) -> std::io::Result<()> {
    use crate::rt::net::{TcpListener, TcpStream};
    use crate::rt::{Runtime, RuntimeConfig, sleep, spawn};

    thread_local! {
        static FREE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    fn take() -> Vec<u8> {
        FREE.with(|f| f.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(4096))
    }
    fn give(mut buf: Vec<u8>) {
        buf.clear();
        FREE.with(|f| f.borrow_mut().push(buf));
    }

    /// Reads once into `input`, answers what is complete, writes the answers; the
    /// buffers back, and whether the connection goes on.
    async fn answer_once(
        stream: &mut TcpStream,
        mut input: Vec<u8>,
        mut out: Vec<u8>,
        answer: fn(&[u8], &mut Vec<u8>) -> (usize, bool),
    ) -> (bool, Vec<u8>, Vec<u8>) {
        if input.capacity() - input.len() < 1024 {
            input.reserve(4096);
        }
        let (read, back) = stream.read(input).await;
        input = back;
        if !matches!(read, Ok(n) if n > 0) {
            return (false, input, out);
        }
        let (consumed, close) = answer(&input, &mut out);
        input.drain(..consumed);
        if !out.is_empty() {
            let (sent, back) = stream.write_all(out).await;
            out = back;
            out.clear();
            if sent.is_err() {
                return (false, input, out);
            }
        }
        (!close, input, out)
    }

    async fn serve_lean(mut stream: TcpStream, answer: fn(&[u8], &mut Vec<u8>) -> (usize, bool)) {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            let (mut input, mut out) = (take(), take());
            let go_on = loop {
                let (go_on, i, o) = answer_once(&mut stream, input, out, answer).await;
                (input, out) = (i, o);
                if !go_on || input.is_empty() {
                    break go_on;
                }
            };
            give(input);
            give(out);
            if !go_on {
                return;
            }
        }
    }

    async fn serve(mut stream: TcpStream, answer: fn(&[u8], &mut Vec<u8>) -> (usize, bool)) {
        let (mut input, mut out) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
        loop {
            let (go_on, i, o) = answer_once(&mut stream, input, out, answer).await;
            (input, out) = (i, o);
            if !go_on {
                return;
            }
        }
    }

    let backend = if epoll { crate::rt::Backend::Epoll } else { crate::rt::Backend::Uring };
    let mut rt = Runtime::new(RuntimeConfig { backend, ..RuntimeConfig::default() })?;
    rt.block_on(async move {
        let mut listener = TcpListener::from_std(listener)?;
        spawn(async move {
            loop {
                sleep(std::time::Duration::from_millis(100)).await;
                tick();
            }
        });
        loop {
            match listener.accept().await {
                Ok((stream, _)) if lean_idle => spawn(serve_lean(stream, answer)),
                Ok((stream, _)) => spawn(serve(stream, answer)),
                // Out of descriptors, an aborted handshake: the next accept may succeed.
                Err(e) => tracing::debug!("accept: {e}"),
            }
        }
    })
}

/// How the task bench spawns: ringo's shard runtime ([`ShardSpawner`]) or a runtime the
/// bench brings (monoio, in `benches/micro.rs`), for the same work.
pub trait TaskSpawner {
    /// Spawns a detached task on the current thread's runtime.
    fn spawn_task<F: std::future::Future<Output = ()> + 'static>(&self, task: F);
}

/// Spawns on the shard runtime, as the engine does (inside a
/// [`Runtime`](crate::runtime::Runtime)'s `block_on`).
#[derive(Debug, Clone, Copy)]
pub struct ShardSpawner;

impl TaskSpawner for ShardSpawner {
    fn spawn_task<F: std::future::Future<Output = ()> + 'static>(&self, task: F) {
        crate::time::spawn(task);
    }
}

/// A future that is pending `n` times, waking itself each time (a task switch each).
async fn yield_times(n: usize) {
    let mut left = n;
    std::future::poll_fn(|cx| {
        if left == 0 {
            return std::task::Poll::Ready(());
        }
        left -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Counts finished tasks and wakes the waiter at the last one (so the waiting future
/// sleeps instead of polling: monoio polls a self-waking `block_on` future before its
/// tasks).
#[derive(Default)]
struct Countdown {
    left: std::cell::Cell<usize>,
    waiter: std::cell::RefCell<Option<std::task::Waker>>,
}

impl Countdown {
    fn done_one(&self) {
        self.left.set(self.left.get() - 1);
        if self.left.get() == 0
            && let Some(w) = self.waiter.borrow_mut().take()
        {
            w.wake();
        }
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.left.get() == 0 {
                return std::task::Poll::Ready(());
            }
            *self.waiter.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }
}

/// Spawns `n` tasks that each complete on their first poll, and waits for them (run it
/// in the spawner's runtime's `block_on`).
pub async fn spawn_and_run(spawner: &impl TaskSpawner, n: usize) {
    let count = std::rc::Rc::new(Countdown::default());
    count.left.set(n);
    for _ in 0..n {
        let count = std::rc::Rc::clone(&count);
        spawner.spawn_task(async move { count.done_one() });
    }
    count.wait().await;
}

/// A spawned task that wakes itself `n` times (each wake a trip through the run queue,
/// and a loop turn).
pub async fn wake_cycles(spawner: &impl TaskSpawner, n: usize) {
    let count = std::rc::Rc::new(Countdown::default());
    count.left.set(1);
    let done = std::rc::Rc::clone(&count);
    spawner.spawn_task(async move {
        yield_times(n).await;
        done.done_one();
    });
    count.wait().await;
}

/// Heap allocations made on this thread by `round_trips` request/answer exchanges over
/// loopback on ringo's shard runtime (`epoll`: its epoll driver, else io_uring), after a
/// warm-up: a server task reading into a reused buffer and answering with a send, and a
/// client task on the same runtime doing the same. `allocations` reads the thread's
/// count (the caller's counting allocator). For the zero-allocation test.
pub fn shard_runtime_round_trip_allocations(
    epoll: bool,
    round_trips: usize,
    allocations: fn() -> u64,
) -> u64 {
    use crate::rt::net::{TcpListener, TcpStream};
    use crate::rt::{Backend, Runtime, RuntimeConfig, spawn};

    async fn exchange(stream: &mut TcpStream, out: &mut Vec<u8>, input: &mut Vec<u8>, n: usize) {
        for _ in 0..n {
            let (sent, back) = stream.write_all(std::mem::take(out)).await;
            *out = back;
            sent.expect("client send");
            input.clear();
            let (read, back) = stream.read(std::mem::take(input)).await;
            *input = back;
            assert!(read.expect("client read") > 0, "the server answered");
        }
    }

    let backend = if epoll { Backend::Epoll } else { Backend::Uring };
    let mut rt = Runtime::new(RuntimeConfig { backend, ..RuntimeConfig::default() }).expect("runtime");
    rt.block_on(async move {
        let mut listener =
            TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind loopback");
        let addr = listener.local_addr();
        spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut input = Vec::with_capacity(4096);
            let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
            loop {
                input.clear();
                let (read, back) = stream.read(input).await;
                input = back;
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                let (sent, back) = stream.write_all(answer).await;
                answer = back;
                if sent.is_err() {
                    return;
                }
            }
        });
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut out = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let mut input = Vec::with_capacity(4096);
        exchange(&mut stream, &mut out, &mut input, 200).await;
        let before = allocations();
        exchange(&mut stream, &mut out, &mut input, round_trips).await;
        allocations() - before
    })
}
