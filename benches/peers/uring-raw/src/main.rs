//! uring-raw peer, "the practical ceiling": the io-uring crate directly, no runtime, no
//! futures. One thread per worker (pinned), each with its own ring and SO_REUSEPORT listener.
//!
//! - accept: multishot (`AcceptMulti`, Linux 5.19), single-shot `Accept` where the kernel
//!   answers EINVAL;
//! - recv: multishot (`RecvMulti`, Linux 6.0) into a provided-buffer ring (Linux 5.19),
//!   single-shot `Recv` into the connection's own buffer where either is refused;
//! - send: one `Send` in flight per connection; responses produced meanwhile wait in a second
//!   buffer and go out together (pipelining);
//! - requests: httparse, Content-Length bodies skipped; `GET /plaintext` and `GET /json` get
//!   fixed responses (the JSON body is a constant here), everything else 404. The Date header
//!   is refreshed once a second.
//!
//! `URING_RAW_SINGLESHOT=1` forces the single-shot accept and recv paths.

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

use std::os::fd::RawFd;

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, squeue, IoUring};

use buf_ring::BufRing;
use fixed_http::{process, Responses};
use raw_ring::{user_data, BUF_COUNT, BUF_GROUP, BUF_SIZE, OP_ACCEPT, OP_RECV, OP_SEND, RING_ENTRIES};

#[derive(Default)]
struct Conn {
    fd: RawFd,
    open: bool,
    /// Bytes of an incomplete request (multishot), or the receive buffer (single-shot).
    input: Vec<u8>,
    /// The buffer of the `Send` in flight; not touched until it completes.
    sending: Vec<u8>,
    sent: usize,
    /// Responses produced while a send is in flight.
    pending: Vec<u8>,
    recv_armed: bool,
    send_busy: bool,
    /// Close once everything queued is written (Connection: close, bad request).
    close_after_flush: bool,
    closing: bool,
}

struct Worker {
    ring: IoUring,
    listener: RawFd,
    bufs: Option<BufRing>,
    multishot_accept: bool,
    accepted_any: bool,
    multishot_recv: bool,
    received_any: bool,
    conns: Vec<Conn>,
    free: Vec<u32>,
    rsp: Responses,
}

/// Queues an entry on the worker's ring.
fn push(ring: &mut IoUring, sqe: squeue::Entry) {
    // SAFETY: receives point into the connection's own buffer or the registered buffer ring,
    // sends into `sending`, neither touched until the completion; descriptors close only once
    // their operations ended.
    unsafe { raw_ring::push(ring, sqe) }
}

fn new_ring() -> IoUring {
    let attempts: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        },
        |b| {
            b.setup_coop_taskrun();
        },
        |_| {},
    ];
    for setup in attempts {
        let mut builder = IoUring::builder();
        setup(&mut builder);
        if let Ok(ring) = builder.build(RING_ENTRIES) {
            return ring;
        }
    }
    panic!("io_uring_setup failed: {}", std::io::Error::last_os_error());
}

impl Worker {
    fn new(listener: RawFd) -> Worker {
        let ring = new_ring();
        // URING_RAW_SINGLESHOT=1 forces the single-shot paths (the fallback for older kernels).
        let singleshot = std::env::var_os("URING_RAW_SINGLESHOT").is_some_and(|v| v != "0");
        let bufs = if singleshot { None } else { BufRing::register(&ring, BUF_GROUP, BUF_COUNT, BUF_SIZE) };
        let multishot_recv = bufs.is_some();
        Worker {
            ring,
            listener,
            bufs,
            multishot_accept: !singleshot,
            accepted_any: false,
            multishot_recv,
            received_any: false,
            conns: Vec::new(),
            free: Vec::new(),
            rsp: Responses::new(),
        }
    }

    fn arm_accept(&mut self) {
        let sqe = if self.multishot_accept {
            opcode::AcceptMulti::new(Fd(self.listener)).flags(libc::SOCK_CLOEXEC).build()
        } else {
            opcode::Accept::new(Fd(self.listener), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        push(&mut self.ring, sqe.user_data(user_data(OP_ACCEPT, 0)));
    }

    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let sqe = if self.multishot_recv {
            opcode::RecvMulti::new(Fd(conn.fd), BUF_GROUP).build()
        } else {
            if conn.input.capacity() - conn.input.len() < BUF_SIZE / 4 {
                conn.input.reserve(BUF_SIZE);
            }
            let spare = conn.input.capacity() - conn.input.len();
            let ptr = unsafe { conn.input.as_mut_ptr().add(conn.input.len()) };
            opcode::Recv::new(Fd(conn.fd), ptr, spare as u32).build()
        };
        conn.recv_armed = true;
        push(&mut self.ring, sqe.user_data(user_data(OP_RECV, slot)));
    }

    fn flush(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.send_busy || conn.closing {
            return;
        }
        if conn.sent == conn.sending.len() {
            conn.sending.clear();
            conn.sent = 0;
            if conn.pending.is_empty() {
                if conn.close_after_flush {
                    self.begin_close(slot);
                }
                return;
            }
            std::mem::swap(&mut conn.sending, &mut conn.pending);
        }
        let rest = &conn.sending[conn.sent..];
        let sqe = opcode::Send::new(Fd(conn.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(OP_SEND, slot));
        conn.send_busy = true;
        push(&mut self.ring, sqe);
    }

    fn begin_close(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if !conn.closing {
            conn.closing = true;
            // Ends the armed recv (a multishot recv outlives close(2): it holds the file).
            unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
        }
        self.maybe_free(slot);
    }

    fn maybe_free(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.closing && !conn.recv_armed && !conn.send_busy && conn.open {
            unsafe { libc::close(conn.fd) };
            conn.open = false;
            conn.input.clear();
            conn.sending.clear();
            conn.pending.clear();
            conn.sent = 0;
            self.free.push(slot);
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if res >= 0 {
            self.accepted_any = true;
            let fd = res;
            raw_ring::set_nodelay(fd);
            let slot = raw_ring::take_slot(&mut self.conns, &mut self.free);
            let conn = &mut self.conns[slot as usize];
            conn.fd = fd;
            conn.open = true;
            conn.closing = false;
            conn.close_after_flush = false;
            self.arm_recv(slot);
        } else if res == -libc::EINVAL && self.multishot_accept && !self.accepted_any {
            self.multishot_accept = false;
        } else {
            raw_ring::report_accept_error(res);
        }
        if !cqueue::more(flags) {
            self.arm_accept();
        }
    }

    fn on_recv(&mut self, slot: u32, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.conns[slot as usize].recv_armed = false;
        }
        if res > 0 {
            self.received_any = true;
            let conn = &mut self.conns[slot as usize];
            let (consumed, close) = if let Some(bid) = cqueue::buffer_select(flags) {
                let bufs = self.bufs.as_mut().expect("buffer ring");
                let data = bufs.buf(bid, res as usize);
                let done = if conn.closing || conn.close_after_flush {
                    (0, false)
                } else if conn.input.is_empty() {
                    let (n, close) = process(data, &mut conn.pending, &self.rsp);
                    conn.input.extend_from_slice(&data[n..]);
                    (0, close)
                } else {
                    conn.input.extend_from_slice(data);
                    process(&conn.input, &mut conn.pending, &self.rsp)
                };
                bufs.give_back(bid);
                done
            } else {
                unsafe { conn.input.set_len(conn.input.len() + res as usize) };
                process(&conn.input, &mut conn.pending, &self.rsp)
            };
            conn.input.drain(..consumed);
            if close {
                conn.close_after_flush = true;
            }
            self.flush(slot);
        } else if res == 0 {
            self.begin_close(slot);
        } else if res == -libc::ENOBUFS {
            // The buffer ring ran dry; buffers go back as completions are handled: re-arm below.
        } else if res == -libc::EINVAL && self.multishot_recv && !self.received_any {
            self.multishot_recv = false;
        } else {
            self.begin_close(slot);
        }
        let conn = &self.conns[slot as usize];
        if conn.closing {
            self.maybe_free(slot);
        } else if !conn.recv_armed && !conn.close_after_flush {
            self.arm_recv(slot);
        }
    }

    fn on_send(&mut self, slot: u32, res: i32) {
        let conn = &mut self.conns[slot as usize];
        conn.send_busy = false;
        if res < 0 {
            self.begin_close(slot);
            return;
        }
        conn.sent += res as usize;
        if conn.closing {
            self.maybe_free(slot);
        } else {
            self.flush(slot);
        }
    }

    fn run(&mut self) -> ! {
        self.arm_accept();
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize * 2);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => panic!("io_uring_enter: {e}"),
            }
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
            self.rsp.refresh();
            for &(ud, res, flags) in &cqes {
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
}

fn main() {
    raw_ring::run_workers("uring", |listener| Worker::new(listener).run());
}
