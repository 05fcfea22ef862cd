//! uring-tasks peer: the raw loop's ring (multishot accept, multishot recv into a
//! provided-buffer ring, `DEFER_TASKRUN` + `SINGLE_ISSUER`) driven through a minimal task
//! model: one future per connection, woken by the completions it waits for, polled by a
//! run queue of task ids. It answers what uring-raw answers with the same code
//! (common/fixed_http.rs), so the difference between the two is what tasks, wakers and
//! awaits cost, the model a shard runtime of ringo's own would keep.
//!
//! - executor: tasks boxed in a slab, a FIFO of ready ids (each queued at most once), wakers
//!   that carry the id and push it (thread-local: a worker's wakers never leave its thread);
//! - reactor: the ring; completions are dispatched to per-connection state (bytes received,
//!   end of file, a send's result) and wake the waiting task; a connection's multishot recv
//!   is armed when it is accepted and re-armed when the kernel ends it;
//! - a connection's task: await bytes, answer every complete request, await the send of the
//!   answers (so, like ringo and monoio, a connection has one send in flight and reads on
//!   once it is written), repeat; close on end of file, error or `Connection: close`.
//!
//! Needs Linux 6.1 (DEFER_TASKRUN; multishot recv needs 6.0); it does not fall back.

#[path = "../../common/args.rs"]
mod args;
#[path = "../../common/buf_ring.rs"]
mod buf_ring;
#[path = "../../common/fixed_http.rs"]
mod fixed_http;
#[path = "../../common/listener.rs"]
mod listener;
#[path = "../../common/pin.rs"]
mod pin;
#[path = "../../common/raw_ring.rs"]
mod raw_ring;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, squeue, IoUring};

use buf_ring::BufRing;
use fixed_http::{process, Responses};
use raw_ring::{user_data, BUF_COUNT, BUF_GROUP, BUF_SIZE, OP_ACCEPT, OP_RECV, OP_SEND, RING_ENTRIES};

// ---------------------------------------------------------------------------------------
// Executor

type Task = Pin<Box<dyn Future<Output = ()>>>;

#[derive(Default)]
struct Executor {
    tasks: Vec<Option<Task>>,
    free: Vec<u32>,
    ready: VecDeque<u32>,
    queued: Vec<bool>,
}

thread_local! {
    static EXEC: RefCell<Executor> = RefCell::new(Executor::default());
    static REACTOR: RefCell<Option<Reactor>> = const { RefCell::new(None) };
    static RSP: RefCell<Responses> = RefCell::new(Responses::new());
}

fn schedule(id: u32) {
    EXEC.with(|e| {
        let mut e = e.borrow_mut();
        let i = id as usize;
        if i < e.queued.len() && !e.queued[i] {
            e.queued[i] = true;
            e.ready.push_back(id);
        }
    });
}

fn spawn(task: impl Future<Output = ()> + 'static) {
    let id = EXEC.with(|e| {
        let mut e = e.borrow_mut();
        let id = match e.free.pop() {
            Some(id) => id,
            None => {
                e.tasks.push(None);
                e.queued.push(false);
                (e.tasks.len() - 1) as u32
            }
        };
        e.tasks[id as usize] = Some(Box::pin(task));
        id
    });
    schedule(id);
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(waker_clone, waker_wake, waker_wake, waker_drop);

fn waker_clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn waker_wake(data: *const ()) {
    schedule(data as usize as u32);
}

fn waker_drop(_: *const ()) {}

fn waker_for(id: u32) -> Waker {
    // SAFETY: the data is a task id, not a pointer: cloning and dropping it need nothing, and
    // waking pushes it on this thread's run queue. Wakers are only used on the worker thread
    // that made them (the tasks and the reactor are thread-local), so the thread-local queue is
    // the task's own; a stale id (its task ended) only causes a harmless extra poll.
    unsafe { Waker::from_raw(RawWaker::new(id as usize as *const (), &VTABLE)) }
}

/// Polls every ready task (and those they wake) until none is ready.
fn run_ready() {
    loop {
        let next = EXEC.with(|e| {
            let mut e = e.borrow_mut();
            let id = e.ready.pop_front()?;
            e.queued[id as usize] = false;
            let task = e.tasks[id as usize].take();
            Some((id, task))
        });
        let Some((id, task)) = next else { return };
        let Some(mut task) = task else { continue };
        let waker = waker_for(id);
        let mut cx = Context::from_waker(&waker);
        let done = task.as_mut().poll(&mut cx).is_ready();
        EXEC.with(|e| {
            let mut e = e.borrow_mut();
            if done {
                e.free.push(id);
            } else {
                e.tasks[id as usize] = Some(task);
            }
        });
    }
}

// ---------------------------------------------------------------------------------------
// Reactor

#[derive(Default)]
struct ConnIo {
    fd: RawFd,
    open: bool,
    /// Bytes received and not yet taken by the task.
    input: Vec<u8>,
    eof: bool,
    recv_armed: bool,
    reader: Option<Waker>,
    /// The buffer of the send in flight (its bytes must stay put until it completes).
    sending: Option<Vec<u8>>,
    send_result: Option<i32>,
    writer: Option<Waker>,
    closing: bool,
}

struct Reactor {
    ring: IoUring,
    listener: RawFd,
    bufs: BufRing,
    conns: Vec<ConnIo>,
    free: Vec<u32>,
}

fn with_reactor<R>(f: impl FnOnce(&mut Reactor) -> R) -> R {
    REACTOR.with(|r| f(r.borrow_mut().as_mut().expect("the worker's reactor")))
}

/// Queues an entry on the worker's ring.
fn push(ring: &mut IoUring, sqe: squeue::Entry) {
    // SAFETY: every buffer an entry points to stays alive and unmoved until its completion:
    // receives use the registered buffer ring, sends a buffer held in the connection's state
    // until the send completes; descriptors close only once their operations ended.
    unsafe { raw_ring::push(ring, sqe) }
}

impl Reactor {
    fn new(listener: RawFd) -> Reactor {
        let mut builder = IoUring::builder();
        builder.setup_single_issuer().setup_defer_taskrun();
        let ring = builder.build(RING_ENTRIES).expect("io_uring with DEFER_TASKRUN (Linux 6.1)");
        let bufs = BufRing::register(&ring, BUF_GROUP, BUF_COUNT, BUF_SIZE).expect("provided-buffer ring");
        Reactor { ring, listener, bufs, conns: Vec::new(), free: Vec::new() }
    }

    fn arm_accept(&mut self) {
        let sqe = opcode::AcceptMulti::new(Fd(self.listener)).flags(libc::SOCK_CLOEXEC).build();
        push(&mut self.ring, sqe.user_data(user_data(OP_ACCEPT, 0)));
    }

    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        conn.recv_armed = true;
        let sqe = opcode::RecvMulti::new(Fd(conn.fd), BUF_GROUP).build();
        push(&mut self.ring, sqe.user_data(user_data(OP_RECV, slot)));
    }

    fn maybe_free(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.closing && conn.open && !conn.recv_armed && conn.sending.is_none() {
            // SAFETY: the descriptor is this connection's, and no operation uses it now.
            unsafe { libc::close(conn.fd) };
            conn.open = false;
            conn.input.clear();
            conn.reader = None;
            conn.writer = None;
            self.free.push(slot);
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if res >= 0 {
            let fd = res;
            raw_ring::set_nodelay(fd);
            let slot = raw_ring::take_slot(&mut self.conns, &mut self.free);
            let conn = &mut self.conns[slot as usize];
            conn.fd = fd;
            conn.open = true;
            conn.eof = false;
            conn.closing = false;
            conn.send_result = None;
            self.arm_recv(slot);
            spawn(serve(slot));
        } else {
            raw_ring::report_accept_error(res);
        }
        if !cqueue::more(flags) {
            self.arm_accept();
        }
    }

    fn on_recv(&mut self, slot: u32, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let conn = &mut self.conns[slot as usize];
        if !more {
            conn.recv_armed = false;
        }
        if res > 0 {
            if let Some(bid) = cqueue::buffer_select(flags) {
                conn.input.extend_from_slice(self.bufs.buf(bid, res as usize));
                self.bufs.give_back(bid);
            }
        } else if res != -libc::ENOBUFS {
            // End of file or an error: the task closes.
            conn.eof = true;
        }
        if let Some(w) = conn.reader.take() {
            w.wake();
        }
        let conn = &self.conns[slot as usize];
        if conn.closing {
            self.maybe_free(slot);
        } else if !conn.recv_armed && !conn.eof {
            self.arm_recv(slot);
        }
    }

    fn on_send(&mut self, slot: u32, res: i32) {
        let conn = &mut self.conns[slot as usize];
        conn.send_result = Some(res);
        if let Some(w) = conn.writer.take() {
            w.wake();
        }
    }

    fn dispatch(&mut self, cqes: &mut Vec<(u64, i32, u32)>) {
        cqes.clear();
        cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        for &(ud, res, flags) in cqes.iter() {
            let slot = ud as u32;
            match ud >> 32 {
                OP_ACCEPT => self.on_accept(res, flags),
                OP_RECV => self.on_recv(slot, res, flags),
                OP_SEND => self.on_send(slot, res),
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations and the connection task

/// Waits for received bytes and appends them to `into`; `true` at end of file.
struct Recv<'a> {
    slot: u32,
    into: &'a mut Vec<u8>,
}

impl Future for Recv<'_> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = self.get_mut();
        with_reactor(|r| {
            let conn = &mut r.conns[this.slot as usize];
            if !conn.input.is_empty() {
                if this.into.is_empty() {
                    std::mem::swap(this.into, &mut conn.input);
                } else {
                    this.into.extend_from_slice(&conn.input);
                    conn.input.clear();
                }
                return Poll::Ready(false);
            }
            if conn.eof {
                return Poll::Ready(true);
            }
            conn.reader = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// Writes all of `buf`; gives it back (or `None` when the send failed).
struct Send {
    slot: u32,
    buf: Option<Vec<u8>>,
    sent: usize,
}

impl Future for Send {
    type Output = Option<Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<u8>>> {
        let this = self.get_mut();
        with_reactor(|r| {
            let conn = &mut r.conns[this.slot as usize];
            if let Some(res) = conn.send_result.take() {
                let buf = conn.sending.take();
                if res <= 0 {
                    return Poll::Ready(None);
                }
                this.sent += res as usize;
                this.buf = buf;
            }
            let Some(buf) = this.buf.take() else {
                // Submitted, not completed yet.
                conn.writer = Some(cx.waker().clone());
                return Poll::Pending;
            };
            if this.sent >= buf.len() {
                return Poll::Ready(Some(buf));
            }
            let rest = &buf[this.sent..];
            let sqe = opcode::Send::new(Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data(OP_SEND, this.slot));
            conn.sending = Some(buf);
            conn.writer = Some(cx.waker().clone());
            push(&mut r.ring, sqe);
            Poll::Pending
        })
    }
}

async fn serve(slot: u32) {
    let mut input = Vec::with_capacity(BUF_SIZE);
    let mut out = Vec::with_capacity(BUF_SIZE);
    loop {
        if (Recv { slot, into: &mut input }).await {
            break;
        }
        let (consumed, close) = RSP.with(|rsp| process(&input, &mut out, &rsp.borrow()));
        input.drain(..consumed);
        if !out.is_empty() {
            match (Send { slot, buf: Some(out), sent: 0 }).await {
                Some(mut back) => {
                    back.clear();
                    out = back;
                }
                None => break,
            }
        }
        if close {
            break;
        }
    }
    with_reactor(|r| {
        let conn = &mut r.conns[slot as usize];
        conn.closing = true;
        // Ends the armed multishot recv (it holds the file past close(2)).
        // SAFETY: a plain shutdown of this connection's descriptor.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
        r.maybe_free(slot);
    });
}

fn run(listener: RawFd) -> ! {
    REACTOR.with(|r| *r.borrow_mut() = Some(Reactor::new(listener)));
    with_reactor(Reactor::arm_accept);
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize * 2);
    loop {
        run_ready();
        with_reactor(|r| {
            match r.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(e) => panic!("io_uring_enter: {e}"),
            }
            RSP.with(|rsp| rsp.borrow_mut().refresh());
            r.dispatch(&mut cqes);
        });
    }
}

fn main() {
    raw_ring::run_workers("tasks", |listener| run(listener));
}
