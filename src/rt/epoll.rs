//! The epoll driver: readiness for kernels (or sandboxes) without io_uring.
//!
//! Each socket registers once, edge-triggered, for both directions; its registration keeps
//! two readiness flags and the waker of the task waiting on each. An operation tries its
//! non-blocking syscall while its flag is set, clears the flag on `EAGAIN` and waits; the
//! loop's `epoll_wait` sets flags again and wakes the waiters. Flags start set, so the
//! first attempt is a plain syscall. Registrations are recycled with their slots.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

/// Events reaped by one `epoll_wait`.
const EVENTS: usize = 256;

/// Which readiness an operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

#[derive(Default)]
struct Reg {
    live: bool,
    read_ready: bool,
    write_ready: bool,
    /// The peer closed its side (or the socket failed): readable for good.
    read_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

#[derive(Default)]
struct Regs {
    regs: Vec<Reg>,
    free: Vec<u32>,
}

/// A runtime's epoll instance.
pub(crate) struct Driver {
    epfd: OwnedFd,
    regs: RefCell<Regs>,
    events: RefCell<Vec<libc::epoll_event>>,
    /// `epoll_wait` calls made.
    waits: Cell<u64>,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        // SAFETY: a plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor this driver owns from now on.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        let events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        Ok(Driver { epfd, regs: RefCell::default(), events: RefCell::new(events), waits: Cell::new(0) })
    }

    /// Registers `fd` (made non-blocking) for both directions; its slot.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<u32> {
        set_nonblocking(fd)?;
        let index = {
            let mut regs = self.regs.borrow_mut();
            let index = match regs.free.pop() {
                Some(i) => i,
                None => {
                    regs.regs.push(Reg::default());
                    (regs.regs.len() - 1) as u32
                }
            };
            let reg = &mut regs.regs[index as usize];
            *reg = Reg {
                live: true,
                read_ready: true,
                write_ready: true,
                read_closed: false,
                reader: None,
                writer: None,
            };
            index
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: u64::from(index),
        };
        // SAFETY: `event` outlives the call; both descriptors are open.
        let rc = unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            self.release(index);
            return Err(e);
        }
        Ok(index)
    }

    /// Forgets registration `index` of `fd` (before `fd` closes).
    pub(crate) fn deregister(&self, index: u32, fd: RawFd) {
        // SAFETY: a plain syscall on open descriptors; a null event is allowed for DEL.
        unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        self.release(index);
    }

    fn release(&self, index: u32) {
        let mut regs = self.regs.borrow_mut();
        if let Some(reg) = regs.regs.get_mut(index as usize)
            && reg.live
        {
            *reg = Reg::default();
            regs.free.push(index);
        }
    }

    /// Ready when `dir` may not block; otherwise waits for the next event.
    pub(crate) fn poll_ready(&self, index: u32, dir: Direction, cx: &mut TaskContext<'_>) -> Poll<()> {
        let mut regs = self.regs.borrow_mut();
        let reg = &mut regs.regs[index as usize];
        let (ready, waiter) = match dir {
            Direction::Read => (reg.read_ready, &mut reg.reader),
            Direction::Write => (reg.write_ready, &mut reg.writer),
        };
        if ready {
            return Poll::Ready(());
        }
        match waiter {
            Some(w) => w.clone_from(cx.waker()),
            None => *waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The syscall for `dir` said `EAGAIN`: wait for the next event.
    pub(crate) fn clear_ready(&self, index: u32, dir: Direction) {
        let mut regs = self.regs.borrow_mut();
        let reg = &mut regs.regs[index as usize];
        match dir {
            Direction::Read => reg.read_ready = false,
            Direction::Write => reg.write_ready = false,
        }
    }

    /// `epoll_wait` calls since the runtime started.
    pub(crate) fn waits(&self) -> u64 {
        self.waits.get()
    }

    /// A read came back short: the socket's queue is empty, so it is not readable until
    /// the next event (bytes that arrive later raise one), unless the peer's end of file
    /// was already seen (no event comes after it).
    pub(crate) fn drained(&self, index: u32) {
        let mut regs = self.regs.borrow_mut();
        let reg = &mut regs.regs[index as usize];
        if !reg.read_closed {
            reg.read_ready = false;
        }
    }

    /// Waits for events and wakes the waiters. `wait`: `None` to return at once,
    /// `Some(None)` to wait for an event, `Some(Some(limit))` to wait for `limit` at most.
    pub(crate) fn poll_events(&self, wait: Option<Option<Duration>>) {
        let timeout_ms: libc::c_int = match wait {
            None => 0,
            Some(None) => -1,
            Some(Some(left)) => {
                // Rounded up: waking before a timer's deadline only costs another turn.
                left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut events = self.events.borrow_mut();
        self.waits.set(self.waits.get() + 1);
        // SAFETY: the buffer holds `events.len()` entries, written by the kernel up to the
        // count it returns.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return;
            }
            panic!("epoll_wait: {e}");
        }
        let mut regs = self.regs.borrow_mut();
        for event in &events[..n as usize] {
            let Some(reg) = regs.regs.get_mut(event.u64 as usize).filter(|r| r.live) else { continue };
            let flags = event.events as libc::c_int;
            let closed = flags & (libc::EPOLLHUP | libc::EPOLLERR) != 0;
            if closed || flags & libc::EPOLLRDHUP != 0 {
                reg.read_closed = true;
            }
            if closed || flags & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0 {
                reg.read_ready = true;
                if let Some(w) = reg.reader.take() {
                    w.wake();
                }
            }
            if closed || flags & libc::EPOLLOUT != 0 {
                reg.write_ready = true;
                if let Some(w) = reg.writer.take() {
                    w.wake();
                }
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the non-blocking syscall `op` for `dir` of registration `index` until it does not
/// say `EAGAIN` (waiting for readiness in between) or is interrupted.
pub(crate) async fn io<T>(
    index: u32,
    dir: Direction,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    std::future::poll_fn(|cx| {
        loop {
            let ready = super::with_core(|core| core.epoll().poll_ready(index, dir, cx));
            if ready.is_pending() {
                return Poll::Pending;
            }
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    super::with_core(|core| core.epoll().clear_ready(index, dir));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                done => return Poll::Ready(done),
            }
        }
    })
    .await
}

/// A syscall's result: the count, or the error it set.
pub(crate) fn check(rc: isize) -> io::Result<usize> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc as usize) }
}
