//! monoio-sidering peer: the experiment behind ringo's choice of a connection-path driver.
//! monoio's runtime keeps what it does (tasks, wakers, timers, its own ring); the connection
//! path moves to a second io_uring of each worker's own, driven by the io-uring crate:
//!
//! - accept: multishot (`AcceptMulti`) on the worker's SO_REUSEPORT listener;
//! - recv: multishot (`RecvMulti`) into a provided-buffer ring, so an idle connection holds no
//!   read buffer;
//! - send: one `Send` per batch of responses, pushed by the connection's task; all the sends
//!   pushed while the runtime runs its ready tasks go to the kernel in one `io_uring_enter`
//!   (the submitter task runs after them);
//! - waking: the side ring signals an eventfd (`io_uring_register_eventfd`) that a monoio read
//!   waits on; the reaper task then reaps the side ring's completions and wakes the tasks.
//!
//! Each connection is a monoio task with the same HTTP layer as monoio-bare (common/http.rs),
//! so monoio-bare against this peer measures the driver, and this peer against uring-raw
//! measures what the task model costs over a loop with no futures.
//!
//! Needs io_uring with multishot recv and buffer rings (Linux 6.0); there is no fallback.

#[path = "../../common/args.rs"]
mod args;
#[path = "../../common/buf_ring.rs"]
mod buf_ring;
#[path = "../../common/http.rs"]
mod http;
#[path = "../../common/listener.rs"]
mod listener;
#[path = "../../common/pin.rs"]
mod pin;
#[path = "../../common/raw_ring.rs"]
mod raw_ring;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, squeue, IoUring};

use buf_ring::BufRing;
use raw_ring::{user_data, BUF_COUNT, BUF_GROUP, BUF_SIZE, OP_ACCEPT, OP_RECV, OP_SEND, RING_ENTRIES};

/// A connection as the side ring sees it; its task reads and writes it through the worker's
/// `Side`.
#[derive(Default)]
struct Conn {
    fd: RawFd,
    /// Received buffers (id, length) its task has not taken yet, in order.
    received: VecDeque<(u16, u32)>,
    /// The recv ended (the peer closed, or an error): no more bytes will come.
    ended: bool,
    /// A multishot recv is armed (the slot and fd stay until it ends).
    recv_armed: bool,
    /// The result of the send in flight, once it completed.
    sent: Option<i32>,
    /// The task waiting on this connection.
    waker: Option<Waker>,
}

/// One worker's side ring and its connections.
struct Side {
    ring: IoUring,
    bufs: BufRing,
    listener: RawFd,
    conns: Vec<Conn>,
    free: Vec<u32>,
    /// Entries pushed since the last submit.
    unsubmitted: bool,
    submitter: Option<Waker>,
    /// Reused between reaps.
    cqes: Vec<(u64, i32, u32)>,
}

type Shared = Rc<RefCell<Side>>;

fn wake(conn: &mut Conn) {
    if let Some(w) = conn.waker.take() {
        w.wake();
    }
}

/// Stores the task's waker unless it is the one already stored.
fn park(conn: &mut Conn, waker: &Waker) {
    match &conn.waker {
        Some(w) if w.will_wake(waker) => {}
        _ => conn.waker = Some(waker.clone()),
    }
}

impl Side {
    fn push(&mut self, sqe: squeue::Entry) {
        // SAFETY: every entry pushed points at memory that outlives its completion: the
        // listener and sockets stay open until their operations ended, and a send's buffer is
        // its task's, which waits for the completion (tasks are never dropped mid-send here).
        unsafe { raw_ring::push(&mut self.ring, sqe) };
        if !self.unsubmitted {
            self.unsubmitted = true;
            if let Some(w) = self.submitter.take() {
                w.wake();
            }
        }
    }

    fn submit(&mut self) {
        raw_ring::submit(&mut self.ring);
    }

    fn arm_accept(&mut self) {
        let sqe = opcode::AcceptMulti::new(Fd(self.listener)).flags(libc::SOCK_CLOEXEC).build();
        self.push(sqe.user_data(user_data(OP_ACCEPT, 0)));
    }

    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        conn.recv_armed = true;
        let sqe = opcode::RecvMulti::new(Fd(conn.fd), BUF_GROUP).build();
        self.push(sqe.user_data(user_data(OP_RECV, slot)));
    }
}

/// Reaps the side ring's completions: wakes the tasks they are for, and starts a task per
/// accepted connection.
fn reap(side: &Shared) {
    let mut s = side.borrow_mut();
    let mut cqes = std::mem::take(&mut s.cqes);
    cqes.clear();
    cqes.extend(s.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
    for &(ud, res, flags) in &cqes {
        let slot = ud as u32;
        match ud >> 32 {
            OP_ACCEPT => {
                if res >= 0 {
                    let fd = res;
                    raw_ring::set_nodelay(fd);
                    let side_mut = &mut *s;
                    let slot = raw_ring::take_slot(&mut side_mut.conns, &mut side_mut.free);
                    s.conns[slot as usize] = Conn { fd, ..Conn::default() };
                    s.arm_recv(slot);
                    monoio::spawn(connection(Rc::clone(side), slot));
                } else {
                    raw_ring::report_accept_error(res);
                }
                if !cqueue::more(flags) {
                    s.arm_accept();
                }
            }
            OP_RECV => {
                let more = cqueue::more(flags);
                let conn = &mut s.conns[slot as usize];
                if res > 0 {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        conn.received.push_back((bid, res as u32));
                    }
                } else if res != -libc::ENOBUFS {
                    conn.ended = true;
                }
                if !more {
                    conn.recv_armed = false;
                    if !conn.ended {
                        s.arm_recv(slot);
                    }
                }
                wake(&mut s.conns[slot as usize]);
            }
            OP_SEND => {
                let conn = &mut s.conns[slot as usize];
                conn.sent = Some(res);
                wake(conn);
            }
            _ => {}
        }
    }
    s.cqes = cqes;
}

/// Waits on the side ring's eventfd and reaps whenever it fires.
async fn reaper(side: Shared, eventfd: monoio::fs::File) {
    let mut buf = Vec::with_capacity(8);
    loop {
        let (res, b) = eventfd.read_at(buf, 0).await;
        buf = b;
        buf.clear();
        if let Err(e) = res {
            panic!("eventfd read: {e}");
        }
        reap(&side);
    }
}

/// Submits what the tasks pushed, once per run of the ready tasks, then reaps what completed
/// inline.
async fn submitter(side: Shared) {
    loop {
        poll_fn(|cx| {
            let mut s = side.borrow_mut();
            if s.unsubmitted {
                Poll::Ready(())
            } else {
                s.submitter = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        {
            let mut s = side.borrow_mut();
            s.unsubmitted = false;
            s.submit();
        }
        reap(&side);
    }
}

/// Writes all of `buf`; false when the connection failed.
async fn send_all(side: &Shared, slot: u32, buf: &[u8]) -> bool {
    let mut off = 0;
    while off < buf.len() {
        {
            let mut s = side.borrow_mut();
            let rest = &buf[off..];
            let fd = s.conns[slot as usize].fd;
            let sqe = opcode::Send::new(Fd(fd), rest.as_ptr(), rest.len() as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(user_data(OP_SEND, slot));
            s.push(sqe);
        }
        let res = poll_fn(|cx| {
            let mut s = side.borrow_mut();
            let conn = &mut s.conns[slot as usize];
            match conn.sent.take() {
                Some(res) => Poll::Ready(res),
                None => {
                    park(conn, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await;
        if res <= 0 {
            return false;
        }
        off += res as usize;
    }
    true
}

async fn connection(side: Shared, slot: u32) {
    let mut http = http::Http::new("monoio-sidering");
    let mut input: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let next = poll_fn(|cx| {
            let mut s = side.borrow_mut();
            let conn = &mut s.conns[slot as usize];
            if let Some(got) = conn.received.pop_front() {
                Poll::Ready(Some(got))
            } else if conn.ended {
                Poll::Ready(None)
            } else {
                park(conn, cx.waker());
                Poll::Pending
            }
        })
        .await;
        let Some((bid, len)) = next else { break };
        let (close, more) = {
            let mut s = side.borrow_mut();
            let data = s.bufs.buf(bid, len as usize);
            let close = if input.is_empty() {
                let done = http.process(data, &mut out);
                input.extend_from_slice(&data[done.consumed..]);
                done.close
            } else {
                input.extend_from_slice(data);
                let done = http.process(&input, &mut out);
                input.drain(..done.consumed);
                done.close
            };
            s.bufs.give_back(bid);
            (close, !s.conns[slot as usize].received.is_empty())
        };
        // Bytes already received are answered first: their responses go out together.
        if !out.is_empty() && (close || !more) {
            if !send_all(&side, slot, &out).await {
                break;
            }
            out.clear();
        }
        if close {
            break;
        }
    }
    // Ends the armed recv (a multishot recv outlives close(2): it holds the file), waits for
    // it to end, then gives the slot back.
    let fd = side.borrow().conns[slot as usize].fd;
    // SAFETY: shutdown on the connection's own open socket.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    poll_fn(|cx| {
        let mut s = side.borrow_mut();
        let Side { conns, bufs, .. } = &mut *s;
        let conn = &mut conns[slot as usize];
        while let Some((bid, _)) = conn.received.pop_front() {
            bufs.give_back(bid);
        }
        if conn.recv_armed {
            park(conn, cx.waker());
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    let mut s = side.borrow_mut();
    // SAFETY: the socket is this connection's and no operation on it is in flight.
    unsafe { libc::close(fd) };
    s.conns[slot as usize] = Conn::default();
    s.free.push(slot);
}

fn worker(listener: RawFd) {
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .build()
        .expect("monoio runtime");
    rt.block_on(async move {
        // SIDERING_COOP=1: COOP_TASKRUN and SINGLE_ISSUER on the side ring (completions do not
        // interrupt the thread; their task work runs at its next kernel entry).
        let mut builder = IoUring::builder();
        if std::env::var_os("SIDERING_COOP").is_some_and(|v| v != "0") {
            builder.setup_coop_taskrun().setup_single_issuer();
        }
        let ring = builder.build(RING_ENTRIES).expect("io_uring_setup (side ring)");
        let bufs = BufRing::register(&ring, BUF_GROUP, BUF_COUNT, BUF_SIZE)
            .expect("provided-buffer ring refused (Linux 5.19+ needed)");
        // SAFETY: plain eventfd creation; blocking, so that io_uring waits on it rather than
        // answering EAGAIN.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(efd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        ring.submitter().register_eventfd(efd).expect("io_uring_register_eventfd");
        // SAFETY: `efd` was just created and is owned by this file from here on.
        let std_file = unsafe { std::fs::File::from_raw_fd(efd) };
        let eventfd = monoio::fs::File::from_std(std_file).expect("eventfd into monoio");
        let side = Rc::new(RefCell::new(Side {
            ring,
            bufs,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            unsubmitted: false,
            submitter: None,
            cqes: Vec::with_capacity(RING_ENTRIES as usize * 2),
        }));
        side.borrow_mut().arm_accept();
        monoio::spawn(submitter(Rc::clone(&side)));
        reaper(side, eventfd).await;
    });
}

fn main() {
    raw_ring::run_workers("sidering", worker);
}
