//! The connection engine: read, parse, route, run the chain, encode, send.
//!
//! One task per connection. Every complete request in the read buffer is answered in
//! order and its response appended to the write buffer; the buffer is sent once, right
//! before the engine would wait for more bytes (so a pipelined batch costs one send).
//! Timeouts: idle keep-alive (close quietly), header and body (408 and close), write
//! (close). Protocol errors are answered with their status and close the connection.
//! A panicking handler is answered with 500 and the connection closed; the shard lives.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::rt::net::TcpStream;

use super::connection::{Connection, LARGE_BODY, ReadError, Socket};
use super::shard::{RequestState, ShardLocal};
use crate::arena::{FutureArena, Reset};
use crate::context::{BodyRef, Context};
use crate::http::HttpError;
use crate::http::chunked::{ChunkedDecoder, Progress};
use crate::http::method::Method;
use crate::http::request::{BodyFraming, Parse, RequestHead, Span, parse_head};
use crate::http::response::{self, BodyLength, ConnectionHeader, Head};
use crate::http::status::forbids_body;
use crate::middleware::Next;
use crate::router::{Dispatch, Route, Router, write_allow};
use crate::span_ring::SpanRecord;

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// The peer closed, or the connection was idle too long: close quietly.
    Quiet,
    /// A protocol error or timeout mid-request: answer it, then close.
    Answer(HttpError),
    /// The socket failed.
    Io(io::Error),
}

impl From<io::Error> for End {
    fn from(e: io::Error) -> End {
        End::Io(e)
    }
}

impl From<ReadError> for End {
    fn from(e: ReadError) -> End {
        match e {
            ReadError::TimedOut => End::Answer(HttpError::Timeout),
            // Only an idle read is asked to park; elsewhere it is a lost read.
            ReadError::Parked => End::Io(io::Error::new(io::ErrorKind::Interrupted, "read cancelled")),
            ReadError::Io(e) => End::Io(e),
        }
    }
}

/// Serves one accepted connection to its end. The accept loop already counted it in
/// `open_connections`; this gives the count back when the connection ends.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shard: Rc<ShardLocal>, router: Rc<Router>) {
    let (slot, watch) = shard.conns.borrow_mut().add(std::os::fd::AsRawFd::as_raw_fd(&stream));
    let socket = Socket { stream, watch, slot, peer };
    let mut conn = Connection::new(Rc::clone(&shard.handle), Rc::clone(&shard.buffers), socket);
    let mut held = None;
    let outcome = {
        // A bug in the engine must cost one connection, never the shard.
        let mut requests = pin!(serve_requests(&shard, &mut conn, &mut held, &router));
        std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| requests.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Some(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        })
        .await
    };
    if let Some(state) = held.as_mut() {
        conn.reclaim(&mut state.ctx);
    }
    let Some(outcome) = outcome else {
        tracing::error!(shard = shard.id(), %peer, "connection engine panicked; connection dropped");
        // Out of the registry before the socket closes (its invariant).
        shard.conns.borrow_mut().remove(conn.slot);
        conn.finish();
        closed(&shard);
        // The context may be inconsistent: drop it rather than pool it.
        drop(held);
        return;
    };
    if let Some(mut state) = held {
        // The connection may have ended mid-request.
        state.ctx.reset_request();
        shard.give_state(state);
    }
    match outcome {
        Ok(()) | Err(End::Quiet) => {}
        Err(End::Answer(err)) => {
            shard.handle.stats.protocol_error(err);
            tracing::debug!(shard = shard.id(), %peer, kind = err.kind(), status = err.status(), "refused request");
            let date = shard.handle.date.get();
            conn.ready_to_answer();
            response::write_error(&mut conn.transport.out, err, &date);
            conn.transport.response_queued();
            if conn.flush().await.is_ok() {
                conn.linger().await;
            }
        }
        Err(End::Io(e)) => tracing::debug!(shard = shard.id(), %peer, error = %e, "connection error"),
    }
    shard.conns.borrow_mut().remove(conn.slot);
    conn.finish();
    closed(&shard);
}

/// Counts a connection's end.
fn closed(shard: &ShardLocal) {
    let stats = &shard.handle.stats;
    stats.open_connections.set(stats.open_connections.get() - 1);
    stats.closed.set(stats.closed.get() + 1);
}

/// The request loop. Returns when the connection should close. `held` is the request
/// state while a request is being served (given back whenever the connection idles).
async fn serve_requests(
    shard: &ShardLocal,
    conn: &mut Connection,
    held: &mut Option<Box<RequestState>>,
    router: &Router,
) -> Result<(), End> {
    let stats = &*shard.handle.stats;
    loop {
        if conn.input.pending().is_empty() {
            // The answers are encoded: the request state goes back before the write, so
            // a connection waiting on a slow reader holds only its write buffer.
            if let Some(state) = held.take() {
                shard.give_state(state);
            }
            conn.flush().await?;
            conn.shrink_idle();
            wait_idle(shard, conn).await?;
        }
        conn.ready_to_answer();
        let state = match held {
            Some(state) => state,
            None => {
                let mut state = shard.take_state();
                state.ctx.peer = conn.peer;
                state.ctx.trusted_proxies.clone_from(&router.trusted_proxies);
                held.insert(state)
            }
        };
        let RequestState { ctx, arena } = &mut **state;
        // Nearly every request is complete in the buffer: parsed here. The reads a
        // partial head or a body still on its way needs run from the request's arena
        // (see `in_arena`).
        let head_len = match parse_head(conn.input.pending(), shard.limits(), &mut ctx.head) {
            Ok(Parse::Complete(n)) => n,
            Ok(Parse::Partial) => in_arena(arena, || read_head(shard, conn, ctx)).await?,
            Err(e) => return Err(End::Answer(e)),
        };
        let consumed = match ctx.head.framing {
            BodyFraming::None => {
                ctx.body = BodyRef::Empty;
                head_len
            }
            BodyFraming::Length(n) => {
                let total = sized_request_len(head_len, n);
                if conn.input.pending().len() < total {
                    in_arena(arena, || read_sized_body(shard, conn, ctx, head_len, total)).await?;
                }
                ctx.body = BodyRef::InBuffer(Span::new(head_len, total));
                total
            }
            BodyFraming::Chunked => in_arena(arena, || read_chunked_body(shard, conn, ctx, head_len)).await?,
        };
        // In flight from parsed to written: the transport settles it, so a draining
        // shard never exits with a response still in a write buffer.
        conn.transport.begin_request(stats);
        // The request starts when its bytes were read (or when an await before it
        // ended): the shard clock is not read again per request.
        let started = shard.handle.clock.now();
        ctx.started = started;

        conn.lend(ctx);
        // The scratch borrow ends before the chain runs (other connections route too).
        let routed = route_request(ctx, router, &mut shard.scratch.borrow_mut().path);
        let (outcome, slot) = match routed {
            Routed::Run(route, slot) => match route.plain_sync() {
                Some(handler) => (run_plain(handler, ctx), slot),
                None => (run_route(route, ctx, arena).await, slot),
            },
            Routed::Done(outcome, slot) => (outcome, slot),
        };
        conn.reclaim(ctx);
        let more_buffered = shard.draining.get() && complete_head_follows(shard, conn, consumed);
        let keep_alive = match outcome {
            Answered::Normal => finish_response(shard, conn, ctx, more_buffered),
            Answered::Refused(e) => return Err(End::Answer(e)),
            Answered::Panicked if ctx.resp.get_mut().streaming.is_some() => {
                // Mid-stream the head is out: only closing is left, without the end mark.
                ctx.resp.get_mut().truncated = true;
                finish_response(shard, conn, ctx, false);
                false
            }
            Answered::Panicked => {
                // The head is not out yet and the body was read whole: answer 500 and
                // keep the connection.
                ctx.answer_panic();
                finish_response(shard, conn, ctx, more_buffered)
            }
        };
        conn.transport.response_queued();
        let status = ctx.resp.get_mut().status;
        stats.count(slot, status);
        conn.transport.time_request(started, stats, &shard.handle.clock);
        if let Some(ids) = ctx.span.take() {
            // A recorded span times its own request.
            let duration = shard.handle.clock.refresh().saturating_duration_since(started);
            let method = ctx.head.method.as_str();
            shard.handle.spans.push(SpanRecord { ids, method, slot, status, start: started, duration });
        }
        conn.input.consume(consumed);
        ctx.reset_request();
        if arena.reset() == Reset::Abandoned {
            stats.arena_abandoned.set(stats.arena_abandoned.get() + 1);
            tracing::warn!(
                shard = shard.id(),
                "a middleware forgot a chain future; its arena memory is abandoned, not reused"
            );
        }
        if !keep_alive {
            conn.flush().await?;
            conn.linger().await;
            return Ok(());
        }
        if conn.must_flush() {
            // Backpressure: nothing more is parsed until a client that does not read
            // has taken what is already answered.
            conn.flush().await?;
        }
    }
}

/// Waits, with nothing buffered, for the first bytes of the next request: until the
/// idle timeout, quietly closing after it. Parks when the shard asks (after
/// [`PARK_AFTER`](crate::watch::PARK_AFTER) idle): the read buffer goes back to the pool
/// and the wait goes on holding none.
async fn wait_idle(shard: &ShardLocal, conn: &mut Connection) -> Result<(), End> {
    if shard.draining.get() {
        return Err(End::Quiet);
    }
    let clock = &shard.handle.clock;
    let deadline = clock.now() + Duration::from_millis(shard.limits().idle_timeout_ms);
    conn.set_idle(Some(clock.now()));
    let outcome = loop {
        match conn.read_more(deadline, 0).await {
            Ok(0) | Err(ReadError::TimedOut) => break Err(End::Quiet),
            Ok(_) => break Ok(()),
            Err(ReadError::Parked) => match conn.park(deadline).await {
                Ok(true) => {}
                Ok(false) => break Err(End::Quiet),
                Err(e) => break Err(End::Io(e)),
            },
            Err(ReadError::Io(e)) => break Err(End::Io(e)),
        }
    };
    conn.set_idle(None);
    outcome
}

enum Answered {
    /// The chain ran (or a redirect, 404 or 405 was set up).
    Normal,
    /// A handler panicked.
    Panicked,
    /// The request is refused with an error status; the connection closes.
    Refused(HttpError),
}

/// What routing decided: a route's chain to run, or an answer already made (a
/// redirect, or a refusal); each with the route's metric slot.
enum Routed<'r> {
    Run(&'r Route, usize),
    Done(Answered, usize),
}

/// Routes the request in `ctx`: finds its route (or the 404/405 one) and sets up what
/// routing answers itself.
fn route_request<'r>(ctx: &mut Context, router: &'r Router, scratch: &mut Vec<u8>) -> Routed<'r> {
    let path = ctx.head.path;
    let base = path.start;
    let req = ctx.buf.get(ctx.base..).unwrap_or(&[]);
    let decision = router.dispatch(ctx.head.method, path.get(req), &mut ctx.raw_params, scratch);
    for p in ctx.raw_params.iter_mut() {
        p.0 += base;
        p.1 += base;
    }
    let slot = router.slot_of(decision);
    let route: &Route = match decision {
        Dispatch::Found(_) if ctx.head.length_missing => {
            return Routed::Done(Answered::Refused(HttpError::LengthRequired), slot);
        }
        Dispatch::Found(id) => {
            let route = router.route(id);
            ctx.route = Some(Rc::clone(&route.meta));
            if !ctx.decode_params() {
                ctx.string(400, "400 bad request: path parameter is not valid UTF-8");
                return Routed::Done(Answered::Normal, slot);
            }
            route
        }
        Dispatch::Redirect(status) => {
            redirect(ctx, status, scratch);
            return Routed::Done(Answered::Normal, slot);
        }
        Dispatch::NotAllowed(allowed) => {
            let resp = ctx.resp.get_mut();
            resp.headers.extend_from_slice(b"Allow: ");
            write_allow(&mut resp.headers, allowed);
            resp.headers.extend_from_slice(b"\r\n");
            &router.not_allowed
        }
        Dispatch::NotFound => &router.not_found,
    };
    Routed::Run(route, slot)
}

/// Runs the handler of a route with no middleware (a synchronous one): a plain call,
/// no future. Its log ids are not made current: only middleware set them, so they are
/// empty here, and a log line reads the same without them (no thread-local swap per
/// request).
fn run_plain(handler: &dyn Fn(&mut Context), ctx: &mut Context) -> Answered {
    debug_assert!(ctx.log_ids.borrow().is_empty(), "ids are set by middleware only");
    match catch_unwind(AssertUnwindSafe(|| handler(ctx))) {
        Ok(()) => Answered::Normal,
        Err(panic) => panicked(ctx, &*panic),
    }
}

/// Runs a route's chain, turning a panic into `Answered::Panicked`.
async fn run_route(route: &Route, ctx: &mut Context, arena: &FutureArena) -> Answered {
    let ids = Rc::clone(&ctx.log_ids);
    let mut payload = None;
    let finished = {
        let mut chain = pin!(Next::new(&route.chain, &route.endpoint, arena).run(ctx));
        std::future::poll_fn(|cx| {
            // Log lines emitted during this poll name this request.
            match crate::logging::with_ids(&ids, || {
                catch_unwind(AssertUnwindSafe(|| chain.as_mut().poll(cx)))
            }) {
                Ok(Poll::Ready(())) => Poll::Ready(true),
                Ok(Poll::Pending) => Poll::Pending,
                Err(panic) => {
                    payload = Some(panic);
                    Poll::Ready(false)
                }
            }
        })
        .await
    };
    match payload {
        Some(panic) if !finished => panicked(ctx, &*panic),
        _ => Answered::Normal,
    }
}

/// Recovery: logs a handler or middleware panic once, with what identifies the request.
fn panicked(ctx: &Context, panic: &(dyn std::any::Any + Send)) -> Answered {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    let request_id = ctx.get::<crate::middleware::RequestId>().map(|id| id.as_str());
    tracing::error!(
        shard = ctx.shard.id,
        route = ctx.full_path(),
        path = ctx.path(),
        request_id,
        panic = message,
        "handler panicked; answered 500"
    );
    let stats = &ctx.shard.stats;
    stats.handler_panics.set(stats.handler_panics.get() + 1);
    Answered::Panicked
}

fn redirect(ctx: &mut Context, status: u16, target_path: &[u8]) {
    let req = ctx.buf.get(ctx.base..).unwrap_or(&[]);
    let query = ctx.head.query.map(|q| q.get(req));
    let resp = ctx.resp.get_mut();
    resp.status = status;
    resp.headers.extend_from_slice(b"Location: ");
    resp.headers.extend_from_slice(target_path);
    if let Some(q) = query {
        resp.headers.push(b'?');
        resp.headers.extend_from_slice(q);
    }
    resp.headers.extend_from_slice(b"\r\n");
}

/// While draining: whether another complete request head is already buffered after the
/// current one (it is answered before the connection closes).
fn complete_head_follows(shard: &ShardLocal, conn: &Connection, consumed: usize) -> bool {
    let pending = conn.input.pending();
    let rest = &pending[consumed.min(pending.len())..];
    if rest.is_empty() {
        return false;
    }
    let limits = shard.limits();
    let mut scratch = shard.scratch.borrow_mut();
    let head = scratch.next_head.get_or_insert_with(|| RequestHead::new(limits.header_count()));
    matches!(parse_head(rest, limits, head), Ok(Parse::Complete(_)))
}

/// Encodes the response into the write buffer. Returns whether to keep the connection:
/// while the shard drains, only when `more_buffered` (pipelined requests already here
/// are answered; the last response says `Connection: close`).
fn finish_response(
    shard: &ShardLocal,
    conn: &mut Connection,
    ctx: &mut Context,
    more_buffered: bool,
) -> bool {
    let draining = shard.draining.get() && !more_buffered;
    let head_request = ctx.head.method == Method::Head;
    let minor = ctx.head.minor_version;
    let request_keep_alive = ctx.head.keep_alive;
    let date = shard.handle.date.get();
    let out = &mut conn.transport.out;
    let resp = ctx.resp.get_mut();
    if let Some(length) = resp.streaming {
        // The head is already out; end the body (unless it was cut short: then the
        // missing end tells the client the body is incomplete).
        if length == BodyLength::Chunked && !head_request && !resp.truncated {
            out.extend_from_slice(response::LAST_CHUNK);
        }
        let framed = matches!(length, BodyLength::Chunked | BodyLength::Omitted);
        return request_keep_alive && !resp.close && !resp.truncated && !draining && framed;
    }
    let keep_alive = request_keep_alive && !resp.close && !draining;
    let connection = match (keep_alive, minor) {
        (false, _) => ConnectionHeader::Close,
        (true, 0) => ConnectionHeader::KeepAlive,
        (true, _) => ConnectionHeader::Default,
    };
    let no_body = forbids_body(resp.status);
    let length = if no_body { BodyLength::Omitted } else { BodyLength::Fixed(resp.body.len()) };
    shard.head_memo.borrow_mut().write_head(
        out,
        &Head {
            status: resp.status,
            content_type: &resp.content_type,
            extra: &resp.headers,
            length,
            connection,
            date: &date,
        },
    );
    if !no_body && !head_request {
        if resp.body.len() >= LARGE_BODY {
            conn.queue_large_body(&mut resp.body);
        } else {
            out.extend_from_slice(&resp.body);
        }
    }
    keep_alive
}

/// Reads until the request head that the pending bytes start is complete (the first
/// parse found it partial; pending responses are sent first). Returns its length.
///
/// The head must be complete within `header_timeout_ms` of the call (the shard clock
/// has not moved since that parse); past it the answer is 408.
async fn read_head(shard: &ShardLocal, conn: &mut Connection, ctx: &mut Context) -> Result<usize, End> {
    let limits = shard.limits();
    let clock = &shard.handle.clock;
    let head_deadline = clock.now() + Duration::from_millis(limits.header_timeout_ms);
    loop {
        conn.flush().await?;
        if head_deadline <= clock.now() {
            return Err(End::Answer(HttpError::Timeout));
        }
        match conn.read_more(head_deadline, 0).await {
            Ok(0) => return Err(End::Quiet),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match parse_head(conn.input.pending(), limits, &mut ctx.head) {
            Ok(Parse::Complete(n)) => return Ok(n),
            Ok(Parse::Partial) => {}
            Err(e) => return Err(End::Answer(e)),
        }
    }
}

/// The bytes a request with a `head_len`-byte head and an `n`-byte body occupies. The
/// parser refused lengths over `max_body_bytes`, so this fits.
fn sized_request_len(head_len: usize, n: u64) -> usize {
    head_len.saturating_add(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Runs one of the reads that a partial head or a body still on its way needs, built
/// in place in the request's arena rather than inside the connection's future. A task
/// is as large as its largest await, and these were the largest (680 and 744 bytes,
/// against 472 for the idle wait every connection makes), so every idle connection
/// carried them; in the arena they cost only the requests that wait for more bytes.
async fn in_arena<'a, F>(arena: &'a FutureArena, read: impl FnOnce() -> F + 'a) -> Result<usize, End>
where
    F: Future<Output = Result<usize, End>> + 'a,
{
    let mut out = None;
    arena.alloc_with(|| async { out = Some(read().await) }).await;
    out.unwrap_or_else(|| Err(End::Io(io::Error::other("a request read ended without its result"))))
}

/// Reads the rest of the body of the request whose `head_len`-byte head starts the
/// pending bytes, until `total` bytes are pending (sending pending responses first).
/// Returns `total`, the bytes the request occupies.
///
/// The body must be complete within `body_deadline_ms` of the head, each read of it
/// within `body_timeout_ms`; past either the answer is 408.
async fn read_sized_body(
    shard: &ShardLocal,
    conn: &mut Connection,
    ctx: &Context,
    head_len: usize,
    total: usize,
) -> Result<usize, End> {
    if ctx.head.expect_continue && conn.input.pending().len() == head_len {
        conn.transport.out.extend_from_slice(response::CONTINUE);
    }
    let deadline = body_deadline(shard);
    while conn.input.pending().len() < total {
        read_body_piece(shard, conn, deadline, total).await?;
    }
    Ok(total)
}

/// Decodes the chunked body of the request whose `head_len`-byte head starts the
/// pending bytes, reading as needed, within the deadlines of [`read_sized_body`].
/// Returns the bytes the request occupied.
async fn read_chunked_body(
    shard: &ShardLocal,
    conn: &mut Connection,
    ctx: &mut Context,
    head_len: usize,
) -> Result<usize, End> {
    if ctx.head.expect_continue && conn.input.pending().len() == head_len {
        conn.transport.out.extend_from_slice(response::CONTINUE);
    }
    let limits = shard.limits();
    let mut decoder = ChunkedDecoder::new();
    let deadline = body_deadline(shard);
    ctx.chunked_body.clear();
    loop {
        let raw = conn.input.pending().get(head_len..).unwrap_or(&[]);
        match decoder
            .decode(raw, &mut ctx.chunked_body, limits.max_body_bytes, limits.max_header_bytes)
            .map_err(End::Answer)?
        {
            Progress::Done(n) => {
                ctx.body = BodyRef::Decoded;
                return Ok(head_len + n);
            }
            Progress::NeedMore => {
                // Everything after the head is decoded: drop the raw bytes so the buffer
                // stays bounded however the body is chunked.
                conn.input.truncate_pending(head_len);
                read_body_piece(shard, conn, deadline, 0).await?;
            }
        }
    }
}

/// When a body whose head is parsed now must be complete.
fn body_deadline(shard: &ShardLocal) -> Instant {
    shard.handle.clock.now() + Duration::from_millis(shard.limits().body_deadline_ms)
}

/// Reads one more piece of a body, within the per-read timeout and the body deadline.
async fn read_body_piece(
    shard: &ShardLocal,
    conn: &mut Connection,
    deadline: Instant,
    want: usize,
) -> Result<(), End> {
    conn.flush().await?;
    let now = shard.handle.clock.now();
    if deadline <= now {
        return Err(End::Answer(HttpError::Timeout));
    }
    let per_read = now + Duration::from_millis(shard.limits().body_timeout_ms);
    match conn.read_more(per_read.min(deadline), want).await {
        // The peer closed mid-body: nothing sensible to answer.
        Ok(0) => Err(End::Quiet),
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
