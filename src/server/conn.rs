//! The connection engine: read, parse, route, run the chain, encode, send.
//!
//! One task per connection. Every complete request in the read buffer is answered in
//! order and its response appended to the write buffer; the buffer is sent once, right
//! before the engine would wait for more bytes (so a pipelined batch costs one send).
//! Timeouts: idle keep-alive (close quietly), header and body (408 and close), write
//! (close). Protocol errors are answered with their status and close the connection.
//! A panicking handler is answered with 500 and the connection closed; the shard lives.

use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use super::shard::{ConnState, ShardLocal, shrink_idle};
use crate::arena::FutureArena;
use crate::context::{BodyRef, Context};
use crate::http::HttpError;
use crate::http::chunked::{ChunkedDecoder, Progress};
use crate::http::method::Method;
use crate::http::request::{BodyFraming, Parse, RequestHead, Span, parse_head};
use crate::http::response::{self, BodyLength, ConnectionHeader, Head};
use crate::http::status::forbids_body;
use crate::middleware::Next;
use crate::router::{Dispatch, Route, Router, write_allow};

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

/// Serves one accepted connection to its end.
pub(crate) async fn serve(stream: TcpStream, peer: SocketAddr, shard: Rc<ShardLocal>, router: Rc<Router>) {
    let stats = Rc::clone(&shard.stats);
    stats.open_connections.set(stats.open_connections.get() + 1);
    let mut state = shard.take_conn();
    state.ctx.conn_slot = shard.conns.borrow_mut().add(std::os::fd::AsRawFd::as_raw_fd(&stream));
    state.ctx.io = Some(stream);
    state.ctx.peer = Some(peer);
    let ConnState { ctx, arena } = &mut *state;
    let outcome = {
        // A bug in the engine must cost one connection, never the shard.
        let mut requests = pin!(serve_requests(ctx, arena, &router));
        std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| requests.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Some(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(None),
        })
        .await
    };
    let Some(outcome) = outcome else {
        tracing::error!(shard = shard.id, %peer, "connection engine panicked; connection dropped");
        settle_unsent(&mut state.ctx);
        shard.conns.borrow_mut().remove(state.ctx.conn_slot);
        stats.open_connections.set(stats.open_connections.get() - 1);
        stats.closed.set(stats.closed.get() + 1);
        // The context may be inconsistent: drop it rather than pool it.
        drop(state);
        return;
    };
    match outcome {
        Ok(()) | Err(End::Quiet) => {}
        Err(End::Answer(err)) => {
            stats.protocol_error(err);
            tracing::debug!(shard = shard.id, %peer, kind = err.kind(), status = err.status(), "refused request");
            let date = shard.date.get();
            response::write_error(&mut ctx.out, err, &date);
            if ctx.flush_out().await.is_ok() {
                linger(ctx).await;
            }
        }
        Err(End::Io(e)) => tracing::debug!(shard = shard.id, %peer, error = %e, "connection error"),
    }
    settle_unsent(&mut state.ctx);
    shard.conns.borrow_mut().remove(state.ctx.conn_slot);
    stats.open_connections.set(stats.open_connections.get() - 1);
    stats.closed.set(stats.closed.get() + 1);
    shard.give_conn(state);
}

/// Lingering close, after the server decided to close: send end of file, then read and
/// discard what the client still sends (bounded in time and bytes) before closing. A
/// plain close with unread input makes the kernel send RST, and an RST can destroy the
/// last response before the client has read it.
async fn linger(ctx: &mut Context) {
    const LINGER: Duration = Duration::from_millis(1000);
    const LINGER_BYTES: usize = 1 << 20;
    let Some(io) = ctx.io.as_ref() else { return };
    crate::sys::shutdown_socket(std::os::fd::AsRawFd::as_raw_fd(io), crate::sys::Direction::Write);
    let until = Instant::now() + LINGER;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let Some(left) = until.checked_duration_since(Instant::now()) else { return };
        ctx.buf.clear();
        match read_more(ctx, left).await {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// Responses that never reached the socket leave the in-flight count with the connection.
fn settle_unsent(ctx: &mut Context) {
    if ctx.unflushed > 0 {
        let stats = &ctx.shard.stats;
        stats.in_flight.set(stats.in_flight.get().saturating_sub(ctx.unflushed));
        tracing::debug!(
            shard = ctx.shard.id,
            responses = ctx.unflushed,
            "responses not sent: connection ended"
        );
        ctx.unflushed = 0;
    }
}

/// The request loop. Returns when the connection should close.
async fn serve_requests(ctx: &mut Context, arena: &mut FutureArena, router: &Router) -> Result<(), End> {
    let mut scratch = Vec::new();
    let mut drain_head = None;
    loop {
        let consumed = next_request(ctx).await?;
        let shard = Rc::clone(&ctx.shard);
        let stats = &shard.stats;
        // In flight from parsed to sent: `flush_out` settles it, so a draining shard
        // never exits with a response still in a write buffer.
        stats.in_flight.set(stats.in_flight.get() + 1);
        let started = Instant::now();

        let (outcome, slot) = answer(ctx, arena, router, &mut scratch).await;
        ctx.unflushed += 1;
        let more_buffered = shard.draining.get() && complete_head_follows(ctx, consumed, &mut drain_head);
        let keep_alive = match outcome {
            Answered::Normal => finish_response(ctx, more_buffered),
            Answered::Refused(e) => return Err(End::Answer(e)),
            Answered::Panicked => {
                let resp = ctx.resp.get_mut();
                if resp.streaming.is_none() {
                    // The head is not out yet: answer 500. Mid-stream, only closing is left.
                    resp.reset_for_error(500);
                    finish_response(ctx, false);
                }
                false
            }
        };
        stats.record(slot, ctx.resp.get_mut().status, started.elapsed());
        ctx.buf.drain(..consumed);
        ctx.reset_request();
        arena.reset();
        if !keep_alive {
            ctx.flush_out().await?;
            linger(ctx).await;
            return Ok(());
        }
    }
}

enum Answered {
    /// The chain ran (or a redirect, 404 or 405 was set up).
    Normal,
    /// A handler panicked.
    Panicked,
    /// The request is refused with an error status; the connection closes.
    Refused(HttpError),
}

/// Routes the request in `ctx` and runs its chain; also returns the metric slot.
async fn answer(
    ctx: &mut Context,
    arena: &FutureArena,
    router: &Router,
    scratch: &mut Vec<u8>,
) -> (Answered, usize) {
    let path = ctx.head.path;
    let base = path.start;
    let decision = router.dispatch(ctx.head.method, path.get(&ctx.buf), &mut ctx.raw_params, scratch);
    for p in ctx.raw_params.iter_mut() {
        p.0 += base;
        p.1 += base;
    }
    let slot = router.slot_of(decision);
    let route: &Route = match decision {
        Dispatch::Found(_) if ctx.head.length_missing => {
            return (Answered::Refused(HttpError::LengthRequired), slot);
        }
        Dispatch::Found(id) => {
            let route = router.route(id);
            ctx.route = Some(Rc::clone(&route.meta));
            if !ctx.decode_params() {
                ctx.string(400, "400 bad request: path parameter is not valid UTF-8");
                return (Answered::Normal, slot);
            }
            route
        }
        Dispatch::Redirect(status) => {
            redirect(ctx, status, scratch);
            return (Answered::Normal, slot);
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
    (run_route(route, ctx, arena).await, slot)
}

/// Runs a route's chain, turning a panic into `Answered::Panicked`.
async fn run_route(route: &Route, ctx: &mut Context, arena: &FutureArena) -> Answered {
    if route.is_plain_sync() {
        if let crate::handler::Endpoint::Sync(f) = &route.endpoint {
            return match catch_unwind(AssertUnwindSafe(|| f(ctx))) {
                Ok(()) => Answered::Normal,
                Err(_) => panicked(ctx),
            };
        }
    }
    let shard_id = ctx.shard.id;
    let mut chain = pin!(Next::new(&route.chain, &route.endpoint, arena).run(ctx));
    let result =
        std::future::poll_fn(|cx| match catch_unwind(AssertUnwindSafe(|| chain.as_mut().poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(true),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(false),
        })
        .await;
    if result {
        Answered::Normal
    } else {
        tracing::error!(shard = shard_id, "handler panicked; answering 500 and closing");
        Answered::Panicked
    }
}

fn panicked(ctx: &Context) -> Answered {
    tracing::error!(shard = ctx.shard.id, path = ctx.path(), "handler panicked; answering 500 and closing");
    Answered::Panicked
}

fn redirect(ctx: &mut Context, status: u16, target_path: &[u8]) {
    let query = ctx.head.query;
    let resp = ctx.resp.get_mut();
    resp.status = status;
    resp.headers.extend_from_slice(b"Location: ");
    resp.headers.extend_from_slice(target_path);
    if let Some(q) = query {
        resp.headers.push(b'?');
        resp.headers.extend_from_slice(q.get(&ctx.buf));
    }
    resp.headers.extend_from_slice(b"\r\n");
}

/// While draining: whether another complete request head is already buffered after the
/// current one (it is answered before the connection closes).
fn complete_head_follows(ctx: &Context, consumed: usize, head: &mut Option<RequestHead>) -> bool {
    let rest = &ctx.buf[consumed.min(ctx.buf.len())..];
    if rest.is_empty() {
        return false;
    }
    let limits = &ctx.shard.limits;
    let head = head.get_or_insert_with(|| RequestHead::new(limits.header_count()));
    matches!(parse_head(rest, limits, head), Ok(Parse::Complete(_)))
}

/// Encodes the response into the write buffer. Returns whether to keep the connection:
/// while the shard drains, only when `more_buffered` (pipelined requests already here
/// are answered; the last response says `Connection: close`).
fn finish_response(ctx: &mut Context, more_buffered: bool) -> bool {
    let draining = ctx.shard.draining.get() && !more_buffered;
    let head_request = ctx.head.method == Method::Head;
    let minor = ctx.head.minor_version;
    let request_keep_alive = ctx.head.keep_alive;
    let date = ctx.shard.date.get();
    let resp = ctx.resp.get_mut();
    if let Some(length) = resp.streaming {
        // The head is already out; end the body.
        if length == BodyLength::Chunked && !head_request {
            ctx.out.extend_from_slice(response::LAST_CHUNK);
        }
        return request_keep_alive && !resp.close && !draining && length == BodyLength::Chunked;
    }
    let keep_alive = request_keep_alive && !resp.close && !draining;
    let connection = match (keep_alive, minor) {
        (false, _) => ConnectionHeader::Close,
        (true, 0) => ConnectionHeader::KeepAlive,
        (true, _) => ConnectionHeader::Default,
    };
    let no_body = forbids_body(resp.status);
    let length = if no_body { BodyLength::Omitted } else { BodyLength::Fixed(resp.body.len()) };
    response::write_head(
        &mut ctx.out,
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
        ctx.out.extend_from_slice(&resp.body);
    }
    keep_alive
}

/// Makes sure one complete request (head and body) starts the read buffer; reads as
/// needed (sending pending responses first). Returns the bytes the request occupies.
async fn next_request(ctx: &mut Context) -> Result<usize, End> {
    let limits_header_ms = ctx.shard.limits.header_timeout_ms;
    let idle = Duration::from_millis(ctx.shard.limits.idle_timeout_ms);
    let mut head_deadline =
        (!ctx.buf.is_empty()).then(|| Instant::now() + Duration::from_millis(limits_header_ms));
    let head_len = loop {
        if !ctx.buf.is_empty() {
            match parse_head(&ctx.buf, &ctx.shard.limits, &mut ctx.head) {
                Ok(Parse::Complete(n)) => break n,
                Ok(Parse::Partial) => {}
                Err(e) => return Err(End::Answer(e)),
            }
        }
        ctx.flush_out().await?;
        let wait = match head_deadline {
            None => {
                shrink_idle(ctx);
                idle
            }
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => return Err(End::Answer(HttpError::Timeout)),
            },
        };
        let idle = head_deadline.is_none();
        if idle {
            if ctx.shard.draining.get() {
                return Err(End::Quiet);
            }
            ctx.shard.conns.borrow_mut().set_idle(ctx.conn_slot, true);
        }
        let read = read_more(ctx, wait).await;
        if idle {
            ctx.shard.conns.borrow_mut().set_idle(ctx.conn_slot, false);
        }
        match read {
            Ok(0) => return Err(End::Quiet),
            Ok(_) => {}
            Err(ReadError::TimedOut) if head_deadline.is_none() => return Err(End::Quiet),
            Err(ReadError::TimedOut) => return Err(End::Answer(HttpError::Timeout)),
            Err(ReadError::Io(e)) => return Err(End::Io(e)),
        }
        if head_deadline.is_none() {
            head_deadline = Some(Instant::now() + Duration::from_millis(limits_header_ms));
        }
    };
    match ctx.head.framing {
        BodyFraming::None => {
            ctx.body = BodyRef::Empty;
            Ok(head_len)
        }
        BodyFraming::Length(n) => {
            let total = head_len + n as usize;
            if ctx.buf.len() < total {
                if ctx.head.expect_continue && ctx.buf.len() == head_len {
                    ctx.out.extend_from_slice(response::CONTINUE);
                }
                let shard = Rc::clone(&ctx.shard);
                shard.buffers.grow(&mut ctx.buf, total + 1024);
                while ctx.buf.len() < total {
                    read_body_piece(ctx).await?;
                }
            }
            ctx.body = BodyRef::InBuffer(Span::new(head_len, total));
            Ok(total)
        }
        BodyFraming::Chunked => {
            if ctx.head.expect_continue && ctx.buf.len() == head_len {
                ctx.out.extend_from_slice(response::CONTINUE);
            }
            let max_body = ctx.shard.limits.max_body_bytes;
            let max_trailer = ctx.shard.limits.max_header_bytes;
            let mut decoder = ChunkedDecoder::new();
            ctx.chunked_body.clear();
            loop {
                match decoder
                    .decode(&ctx.buf[head_len..], &mut ctx.chunked_body, max_body, max_trailer)
                    .map_err(End::Answer)?
                {
                    Progress::Done(n) => {
                        ctx.body = BodyRef::Decoded;
                        return Ok(head_len + n);
                    }
                    Progress::NeedMore => {
                        // Everything after the head is decoded: drop the raw bytes so the
                        // buffer stays bounded however the body is chunked.
                        ctx.buf.truncate(head_len);
                        read_body_piece(ctx).await?;
                    }
                }
            }
        }
    }
}

async fn read_body_piece(ctx: &mut Context) -> Result<(), End> {
    ctx.flush_out().await?;
    let wait = Duration::from_millis(ctx.shard.limits.body_timeout_ms);
    match read_more(ctx, wait).await {
        // The peer closed mid-body: nothing sensible to answer.
        Ok(0) => Err(End::Quiet),
        Ok(_) => Ok(()),
        Err(ReadError::TimedOut) => Err(End::Answer(HttpError::Timeout)),
        Err(ReadError::Io(e)) => Err(End::Io(e)),
    }
}

enum ReadError {
    TimedOut,
    Io(io::Error),
}

/// Reads once into the spare capacity of the read buffer (growing it when full).
async fn read_more(ctx: &mut Context, wait: Duration) -> Result<usize, ReadError> {
    if ctx.buf.capacity() - ctx.buf.len() < 1024 {
        let shard = Rc::clone(&ctx.shard);
        let want = ctx.buf.len() + super::shard::BUF_SMALL;
        shard.buffers.grow(&mut ctx.buf, want);
    }
    let Some(io) = ctx.io.as_mut() else {
        return Err(ReadError::Io(io::Error::new(io::ErrorKind::NotConnected, "no socket")));
    };
    let buf = std::mem::take(&mut ctx.buf);
    // monoio reads into a `Vec` from its start; a slice of the spare capacity appends.
    let (len, cap) = (buf.len(), buf.capacity());
    match monoio::time::timeout(wait, io.read(buf.slice_mut(len..cap))).await {
        Ok((result, slice)) => {
            ctx.buf = slice.into_inner();
            if let Ok(n) = result {
                ctx.shard.stats.add_bytes(n as u64, 0);
            }
            result.map_err(ReadError::Io)
        }
        // The buffer went down with the cancelled read; the connection closes anyway.
        Err(_) => Err(ReadError::TimedOut),
    }
}
