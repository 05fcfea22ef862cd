//! TCP on the runtime's driver: listeners and streams, the one place that matches on it.
//!
//! On io_uring:
//! - a listener's accepts come from one multishot accept;
//! - an accepted (server-side) stream reads through one multishot recv into the runtime's
//!   provided-buffer ring: the kernel picks a buffer when bytes arrive, and
//!   [`TcpStream::read`] copies them into the caller's buffer and hands the ring's buffer
//!   back. So a connection waiting for its next request lends the kernel nothing of its
//!   own, and [`TcpStream::readable`] waits for bytes with no buffer at all. When the ring
//!   has no free buffer (the kernel ends the multishot recv with `ENOBUFS`), that read
//!   falls back to a single-shot recv into the caller's buffer, and the next read arms the
//!   multishot recv again: nothing is lost and no connection stalls on the shared ring;
//! - a connected (client-side) stream reads with single-shot recvs into the caller's
//!   buffer; writes are single-shot sends.
//!
//! On epoll, every socket is registered once, edge-triggered, and each operation is a
//! non-blocking syscall retried on readiness (see [`super::epoll`]).
//!
//! Sends use `MSG_NOSIGNAL` (a peer gone mid-write is an error, not a signal). Buffers
//! follow the owned-buffer model of completion I/O on both drivers: a read or write takes
//! its `Vec<u8>` and gives it back with the result, since on io_uring the kernel may use it
//! after a dropped future (see `ring::Op`).

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use io_uring::cqueue;
use io_uring::opcode;
use io_uring::types::Fd;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::epoll::{self, Direction};
use super::ring::{Multishot, Op, RECV_GROUP, Yields};
use super::{Backend, with_core};

/// A buffer a read appends to: its spare capacity is lent to the kernel (single-shot and
/// epoll reads) or filled by copying (reads through the buffer ring). Its heap memory must
/// not move when the value moves (the kernel may write it while an operation owns it).
pub(crate) trait ReadBuf: Unpin + 'static {
    /// Bytes it takes without growing.
    fn room(&self) -> usize;
    /// Where the next byte goes: valid for `room()` bytes.
    fn tail_ptr(&mut self) -> *mut u8;
    /// Counts `n` more bytes as filled.
    ///
    /// # Safety
    /// `n <= room()`, and the `n` bytes at `tail_ptr()` were written.
    unsafe fn commit(&mut self, n: usize);
    /// Appends `bytes` (at most `room()` of them: no growth).
    fn put(&mut self, bytes: &[u8]);
}

/// `Vec<u8>` and `BytesMut` keep their bytes in one heap allocation with a length and a
/// capacity, and read the same way.
macro_rules! read_buf_for_growable {
    ($($ty:ty),*) => {$(
        impl ReadBuf for $ty {
            fn room(&self) -> usize {
                self.capacity() - self.len()
            }

            fn tail_ptr(&mut self) -> *mut u8 {
                self.spare_capacity_mut().as_mut_ptr().cast()
            }

            unsafe fn commit(&mut self, n: usize) {
                // SAFETY: the caller wrote `n` bytes of the spare capacity, right after `len`.
                unsafe { self.set_len(self.len() + n) }
            }

            fn put(&mut self, bytes: &[u8]) {
                self.extend_from_slice(bytes);
            }
        }
    )*};
}

read_buf_for_growable!(Vec<u8>, bytes::BytesMut);

/// A listening socket.
pub(crate) struct TcpListener {
    /// Dropped before `fd` (a multishot accept's cancel is queued while the socket is open).
    io: ListenIo,
    fd: OwnedFd,
    local: SocketAddr,
}

enum ListenIo {
    /// io_uring: the multishot accept, once armed, and the runtime's tag.
    Ring(Option<Multishot>, u32),
    /// epoll: the registration's slot.
    Poll(u32),
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener").field("fd", &self.fd.as_raw_fd()).field("local", &self.local).finish()
    }
}

impl TcpListener {
    /// Takes over a bound, listening socket, on this thread's runtime. Accepted sockets
    /// inherit its options (set `TCP_NODELAY` on it: no system call per connection).
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let local = listener.local_addr()?;
        let fd = OwnedFd::from(listener);
        let io = match with_core(|core| core.backend()) {
            Backend::Uring => ListenIo::Ring(None, with_core(|core| core.tag)),
            Backend::Epoll => ListenIo::Poll(with_core(|core| core.epoll().register(fd.as_raw_fd()))?),
        };
        Ok(TcpListener { io, fd, local })
    }

    /// Binds and listens on `addr` (`SO_REUSEADDR`, a backlog of 1024, `TCP_NODELAY`, which
    /// accepted sockets inherit).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next connection and its peer's address. Errors (`EMFILE`, `ECONNABORTED`…)
    /// are returned one by one; the listener keeps accepting after them.
    pub(crate) async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        match self.io {
            ListenIo::Ring(..) => loop {
                let fd = poll_fn(|cx| self.poll_ring_accept(cx)).await?;
                let stream = TcpStream::new(fd, true)?;
                match stream.peer_addr() {
                    Ok(peer) => return Ok((stream, peer)),
                    // Reset before it could be asked (`ENOTCONN`): that connection is gone,
                    // not the listener's problem; the next one is taken.
                    Err(_) => continue,
                }
            },
            ListenIo::Poll(index) => {
                let listener = self.fd.as_raw_fd();
                let (fd, peer) = epoll::io(index, Direction::Read, || accept4(listener)).await?;
                Ok((TcpStream::new(fd, true)?, peer))
            }
        }
    }

    fn poll_ring_accept(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<OwnedFd>> {
        let ListenIo::Ring(armed, _) = &mut self.io else { unreachable!("called for io_uring listeners") };
        loop {
            let accept = match armed {
                Some(accept) => accept,
                None => {
                    let sqe =
                        opcode::AcceptMulti::new(Fd(self.fd.as_raw_fd())).flags(libc::SOCK_CLOEXEC).build();
                    // SAFETY: the entry points at the listening socket only, which stays open
                    // until the handle is dropped (it is dropped first, see the field order).
                    armed.insert(unsafe { Multishot::submit(sqe, Yields::Descriptors) })
                }
            };
            match accept.poll_next(cx) {
                Poll::Ready(Some((res, _))) if res >= 0 => {
                    // SAFETY: a successful accept's result is a new descriptor we own.
                    return Poll::Ready(Ok(unsafe { OwnedFd::from_raw_fd(res) }));
                }
                Poll::Ready(Some((res, _))) => return Poll::Ready(Err(io::Error::from_raw_os_error(-res))),
                // The kernel ended it (after an error, or an overflow): arm it again.
                Poll::Ready(None) => *armed = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        match &mut self.io {
            ListenIo::Poll(index) => deregister(*index, self.fd.as_raw_fd()),
            ListenIo::Ring(armed, tag) => {
                // The accept's cancel is queued, then submitted before the descriptor closes.
                drop(armed.take());
                submit_before_close(*tag);
            }
        }
    }
}

/// Submits what the ring has queued (a cancel, a last send) before a descriptor closes:
/// once closed, its number may be reused by the next accept, and an entry still queued
/// would act on that new socket.
fn submit_before_close(tag: u32) {
    super::with_own_core(tag, |core| core.ring().submit_queued());
}

/// A non-blocking `accept4`: the new socket and its peer.
fn accept4(listener: RawFd) -> io::Result<(OwnedFd, SocketAddr)> {
    // SAFETY: `try_init` hands a zeroed address buffer and its length, which `accept4`
    // fills; the descriptor it returns is new and owned here.
    let (fd, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(listener, storage.cast(), len, libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK);
            if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(OwnedFd::from_raw_fd(fd)) }
        })
    }?;
    let peer = addr.as_socket().ok_or_else(|| io::Error::other("peer is not an IP socket"))?;
    Ok((fd, peer))
}

/// Forgets an epoll registration (the socket closes right after).
fn deregister(index: u32, fd: RawFd) {
    let _ = super::CURRENT.try_with(|current| {
        if let Ok(current) = current.try_borrow()
            && let Some(core) = current.as_ref()
            && core.backend() == Backend::Epoll
        {
            core.epoll().deregister(index, fd);
        }
    });
}

/// A buffer-ring buffer whose bytes are being copied out.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    bid: u16,
    len: usize,
    taken: usize,
}

/// A stream's io_uring read state.
struct RingRead {
    /// The multishot recv (`None`: not armed).
    recv: Option<Multishot>,
    /// The front buffer of the multishot recv, partly copied out.
    chunk: Option<Chunk>,
    /// Reads use the multishot recv (accepted streams).
    multishot: bool,
    /// The peer closed its side (seen through the multishot recv).
    eof: bool,
    /// Its runtime's tag.
    tag: u32,
}

impl Drop for RingRead {
    fn drop(&mut self) {
        // A partly copied buffer goes back to the ring (the multishot recv, dropped after
        // this, gives back what it queued).
        if let Some(chunk) = self.chunk.take() {
            super::with_own_core(self.tag, |core| core.ring().give_back(chunk.bid));
        }
    }
}

/// A stream's read side: io_uring state, or nothing beyond the epoll registration.
enum ReadIo {
    Ring(RingRead),
    Poll,
}

/// The socket a stream's halves share; the last of them closes it.
struct SharedSocket {
    fd: OwnedFd,
    /// The epoll registration's slot (epoll runtimes).
    epoll: Option<u32>,
    /// Its runtime's tag.
    tag: u32,
}

impl Drop for SharedSocket {
    fn drop(&mut self) {
        match self.epoll {
            Some(index) => deregister(index, self.fd.as_raw_fd()),
            // The read side, dropped first, queued its recv's cancel.
            None => submit_before_close(self.tag),
        }
    }
}

/// A connected TCP socket.
pub(crate) struct TcpStream {
    /// Dropped before `socket` (a multishot recv's cancel is queued while it is open).
    read: ReadIo,
    socket: Rc<SharedSocket>,
}

/// The read side of a split [`TcpStream`].
pub(crate) struct ReadHalf {
    read: ReadIo,
    socket: Rc<SharedSocket>,
}

/// The write side of a split [`TcpStream`].
pub(crate) struct WriteHalf {
    socket: Rc<SharedSocket>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream").field("fd", &self.socket.fd.as_raw_fd()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHalf").field("fd", &self.socket.fd.as_raw_fd()).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteHalf").field("fd", &self.socket.fd.as_raw_fd()).finish()
    }
}

/// What one step of a multishot read found.
enum Step {
    /// Bytes were copied (how many), or the peer closed (0).
    Read(usize),
    /// The ring had no buffer for this connection: read into the caller's buffer instead.
    NoBuffers,
}

impl TcpStream {
    /// A stream on this thread's runtime; `accepted`: the server side (on io_uring, reads
    /// through the multishot recv; its options come from the listener), otherwise
    /// `TCP_NODELAY` is set.
    fn new(fd: OwnedFd, accepted: bool) -> io::Result<TcpStream> {
        if !accepted {
            let _ = SockRef::from(&fd).set_tcp_nodelay(true);
        }
        let (read, epoll) = match with_core(|core| core.backend()) {
            Backend::Uring => {
                let tag = with_core(|core| core.tag);
                (
                    ReadIo::Ring(RingRead { recv: None, chunk: None, multishot: accepted, eof: false, tag }),
                    None,
                )
            }
            Backend::Epoll => (ReadIo::Poll, Some(with_core(|core| core.epoll().register(fd.as_raw_fd()))?)),
        };
        let tag = with_core(|core| core.tag);
        Ok(TcpStream { read, socket: Rc::new(SharedSocket { fd, epoll, tag }) })
    }

    /// Connects to `addr` (`TCP_NODELAY` set).
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        let target = Box::new(SockAddr::from(addr));
        let fd = OwnedFd::from(socket);
        if with_core(|core| core.backend()) == Backend::Epoll {
            let stream = TcpStream::new(fd, false)?;
            let index = stream.socket.epoll.expect("an epoll stream is registered");
            let sock = SockRef::from(&stream.socket.fd);
            match sock.connect(&target) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    epoll::io(index, Direction::Write, || match sock.take_error()? {
                        Some(e) => Err(e),
                        None => match sock.peer_addr() {
                            Ok(_) => Ok(()),
                            // Still connecting: wait for the next write readiness.
                            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                                Err(io::ErrorKind::WouldBlock.into())
                            }
                            Err(e) => Err(e),
                        },
                    })
                    .await?;
                }
                Err(e) => return Err(e),
            }
            return Ok(stream);
        }
        let sqe = opcode::Connect::new(Fd(fd.as_raw_fd()), target.as_ptr().cast(), target.len()).build();
        // SAFETY: the address is boxed in the operation's keep; the socket is kept there too,
        // so it stays open until the completion even if this future is dropped.
        let done = unsafe { Op::submit(sqe, (target, fd)) }.await;
        done.result()?;
        let (_, fd) = done.keep;
        TcpStream::new(fd, false)
    }

    /// Connects to the first of `addrs` that accepts, in order (a name's resolved
    /// addresses); the last error when none does.
    pub(crate) async fn connect_first(addrs: impl IntoIterator<Item = SocketAddr>) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")))
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.socket.fd)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// Shuts down one or both directions of the socket (a plain syscall).
    #[cfg(test)]
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        SockRef::from(&self.socket.fd).shutdown(how)
    }

    /// Waits until a read would return at once (bytes, end of file or an error), without
    /// lending any buffer. (On epoll a stale readiness may end it early: the read then
    /// waits.)
    pub(crate) async fn readable(&mut self) -> io::Result<()> {
        readable(&mut self.read, &self.socket).await
    }

    /// Reads into the spare capacity of `buf` (appending; at most what fits), returning
    /// the count (0: the peer closed) and the buffer.
    pub(crate) async fn read<B: ReadBuf>(&mut self, buf: B) -> (io::Result<usize>, B) {
        read(&mut self.read, &self.socket, buf, usize::MAX).await
    }

    /// As [`TcpStream::read`], taking at most `max` bytes.
    pub(crate) async fn read_max<B: ReadBuf>(&mut self, buf: B, max: usize) -> (io::Result<usize>, B) {
        read(&mut self.read, &self.socket, buf, max).await
    }

    /// Sends all of `buf`.
    pub(crate) async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.socket.send_all(buf).await
    }

    /// Sends all of `head`, then all of `body`, gathered into as few sends as the socket
    /// allows (a response head and its large body, without copying the body).
    pub(crate) async fn write_all_gathered(
        &mut self,
        head: Vec<u8>,
        body: Vec<u8>,
    ) -> (io::Result<()>, Vec<u8>, Vec<u8>) {
        self.socket.send_all_gathered(head, body).await
    }

    /// Splits the stream into halves that read and write from different tasks; the
    /// socket closes when both are dropped.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        let TcpStream { read, socket } = self;
        (ReadHalf { read, socket: Rc::clone(&socket) }, WriteHalf { socket })
    }
}

impl ReadHalf {
    /// See [`TcpStream::read`].
    pub(crate) async fn read<B: ReadBuf>(&mut self, buf: B) -> (io::Result<usize>, B) {
        read(&mut self.read, &self.socket, buf, usize::MAX).await
    }
}

impl WriteHalf {
    /// See [`TcpStream::write_all`].
    pub(crate) async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.socket.send_all(buf).await
    }

    /// Shuts down one or both directions of the socket.
    #[cfg(test)]
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        SockRef::from(&self.socket.fd).shutdown(how)
    }
}

impl SharedSocket {
    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.fd)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("peer is not an IP socket"))
    }

    async fn send_from(&self, buf: Vec<u8>, from: usize) -> (io::Result<usize>, Vec<u8>) {
        let Some(rest) = buf.get(from..) else {
            return (Err(io::Error::new(io::ErrorKind::InvalidInput, "write past the buffer's end")), buf);
        };
        let fd = self.raw();
        if let Some(index) = self.epoll {
            let sent = epoll::io(index, Direction::Write, || {
                // SAFETY: the pointer and length describe `rest`, readable for the call.
                epoll::check(unsafe { sys_send(fd, rest.as_ptr(), rest.len()) })
            })
            .await;
            return (sent, buf);
        }
        let len = rest.len().min(u32::MAX as usize) as u32;
        let sqe = opcode::Send::new(Fd(fd), rest.as_ptr(), len).flags(libc::MSG_NOSIGNAL).build();
        // SAFETY: the entry points into `buf`'s heap allocation, owned by the operation until
        // its completion, and at this socket, open for the await (a dropped send is
        // cancelled, and the kernel holds its own reference to the file meanwhile).
        let done = unsafe { Op::submit(sqe, buf) }.await;
        (done.result().map(|n| n as usize), done.keep)
    }

    async fn send_all(&self, mut buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut sent = 0;
        while sent < buf.len() {
            let (result, back) = self.send_from(buf, sent).await;
            buf = back;
            match result {
                Ok(0) => {
                    return (Err(io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes")), buf);
                }
                Ok(n) => sent += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    async fn send_all_gathered(&self, head: Vec<u8>, body: Vec<u8>) -> (io::Result<()>, Vec<u8>, Vec<u8>) {
        let mut bufs = Box::new(Gather { head, body, iov: [empty_iovec(); 2], msg: empty_msghdr() });
        let mut sent = 0;
        let total = bufs.head.len() + bufs.body.len();
        while sent < total {
            let n = bufs.point_at(sent);
            let fd = self.raw();
            let result = if let Some(index) = self.epoll {
                let msg: *const libc::msghdr = &bufs.msg;
                epoll::io(index, Direction::Write, || {
                    // SAFETY: the header points at the two iovecs, which point into the
                    // two buffers, all in `bufs`, alive and unmoved for the call.
                    epoll::check(unsafe { sys_sendmsg(fd, msg) })
                })
                .await
            } else {
                let msg: *const libc::msghdr = &bufs.msg;
                let sqe = opcode::SendMsg::new(Fd(fd), msg).flags(libc::MSG_NOSIGNAL as u32).build();
                // SAFETY: the header, its iovecs and the buffers they point into are all in
                // `bufs`, a heap allocation the operation owns until its completion.
                let done = unsafe { Op::submit(sqe, bufs) }.await;
                let result = done.result().map(|n| n as usize);
                bufs = done.keep;
                result
            };
            match result {
                Ok(0) if n > 0 => {
                    let Gather { head, body, .. } = *bufs;
                    return (
                        Err(io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes")),
                        head,
                        body,
                    );
                }
                Ok(k) => sent += k,
                Err(e) => {
                    let Gather { head, body, .. } = *bufs;
                    return (Err(e), head, body);
                }
            }
        }
        let Gather { head, body, .. } = *bufs;
        (Ok(()), head, body)
    }
}

/// A gathered send: two buffers and the message header describing what is left of them.
/// Boxed, so the header's pointers stay valid while the operation owns it.
struct Gather {
    head: Vec<u8>,
    body: Vec<u8>,
    iov: [libc::iovec; 2],
    msg: libc::msghdr,
}

fn empty_iovec() -> libc::iovec {
    libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }
}

fn empty_msghdr() -> libc::msghdr {
    // SAFETY: an all-zero msghdr is a valid empty header (no name, no iovecs, no control).
    unsafe { std::mem::zeroed() }
}

impl Gather {
    /// Points the header at what is left after the first `sent` bytes; how many bytes
    /// that is.
    fn point_at(&mut self, sent: usize) -> usize {
        let head_left = self.head.get(sent..).unwrap_or(&[]);
        let body_from = sent.saturating_sub(self.head.len());
        let body_left = self.body.get(body_from..).unwrap_or(&[]);
        self.iov[0] =
            libc::iovec { iov_base: head_left.as_ptr() as *mut libc::c_void, iov_len: head_left.len() };
        self.iov[1] =
            libc::iovec { iov_base: body_left.as_ptr() as *mut libc::c_void, iov_len: body_left.len() };
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = 2;
        head_left.len() + body_left.len()
    }
}

// The epoll driver's per-request system calls, made directly (every argument widened to
// the register's width): glibc's `recv`, `send` and `sendmsg` are thread-cancellation points, and entering and leaving cancellation mode
// around each call cost about 60 of the ~3300 user-space instructions of an unpipelined
// request (callgrind, scripts/instructions --depth 1). ringo never cancels threads.

/// `recv(fd, at, len, 0)`.
///
/// # Safety
/// `at` is valid for writes of `len` bytes for the call.
unsafe fn sys_recv(fd: RawFd, at: *mut u8, len: usize) -> isize {
    let none = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: recvfrom with no source address; the caller vouches for the buffer.
    unsafe {
        libc::syscall(libc::SYS_recvfrom, fd as libc::c_long, at, len, 0 as libc::c_long, none, none) as isize
    }
}

/// `send(fd, at, len, MSG_NOSIGNAL)`.
///
/// # Safety
/// `at` is valid for reads of `len` bytes for the call.
unsafe fn sys_send(fd: RawFd, at: *const u8, len: usize) -> isize {
    let none = std::ptr::null::<libc::c_void>();
    // SAFETY: sendto with no destination address; the caller vouches for the buffer.
    unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd as libc::c_long,
            at,
            len,
            libc::MSG_NOSIGNAL as libc::c_long,
            none,
            0 as libc::c_long,
        ) as isize
    }
}

/// `sendmsg(fd, msg, MSG_NOSIGNAL)`.
///
/// # Safety
/// `msg` and everything it points to are valid for reads for the call.
unsafe fn sys_sendmsg(fd: RawFd, msg: *const libc::msghdr) -> isize {
    // SAFETY: the caller vouches for the header and the memory it describes.
    unsafe {
        libc::syscall(libc::SYS_sendmsg, fd as libc::c_long, msg, libc::MSG_NOSIGNAL as libc::c_long) as isize
    }
}

/// Waits until `read` can read without waiting (see [`TcpStream::readable`]).
async fn readable(read: &mut ReadIo, socket: &SharedSocket) -> io::Result<()> {
    let fd = socket.raw();
    match read {
        ReadIo::Poll => {
            let index = socket.epoll.expect("an epoll stream is registered");
            poll_fn(|cx| with_core(|core| core.epoll().poll_ready(index, Direction::Read, cx))).await;
            Ok(())
        }
        ReadIo::Ring(ring) if ring.multishot => {
            poll_fn(|cx| {
                loop {
                    if ring.chunk.is_some() || ring.eof {
                        return Poll::Ready(());
                    }
                    let recv = ring.armed_recv(fd);
                    if recv.has_completion() {
                        return Poll::Ready(());
                    }
                    if !recv.is_armed() {
                        // The kernel ended it with nothing left to take: arm a new one.
                        ring.recv = None;
                        continue;
                    }
                    // Registers the waker (nothing is queued: this stays pending).
                    return match recv.poll_next(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(_) => unreachable!("checked above that nothing is queued"),
                    };
                }
            })
            .await;
            Ok(())
        }
        ReadIo::Ring(_) => {
            let sqe = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32).build();
            // SAFETY: the entry points at the socket only, which the caller's stream keeps
            // open: it is borrowed for the await, and a dropped poll is cancelled before the
            // stream closes (the kernel holds its own reference to the file meanwhile).
            let done = unsafe { Op::submit(sqe, ()) }.await;
            done.result().map(drop)
        }
    }
}

/// Reads at most `limit` bytes into the spare capacity of `buf` (see [`TcpStream::read`]).
async fn read<B: ReadBuf>(
    read: &mut ReadIo,
    socket: &SharedSocket,
    mut buf: B,
    limit: usize,
) -> (io::Result<usize>, B) {
    if buf.room() == 0 || limit == 0 {
        return (Err(io::Error::new(io::ErrorKind::InvalidInput, "read into a full buffer")), buf);
    }
    let fd = socket.raw();
    match read {
        ReadIo::Poll => {
            let index = socket.epoll.expect("an epoll stream is registered");
            let room = buf.room().min(limit);
            let got = epoll::io(index, Direction::Read, || {
                // SAFETY: the pointer and length describe (part of) `buf`'s spare capacity,
                // which the kernel may write, for the duration of the call.
                epoll::check(unsafe { sys_recv(fd, buf.tail_ptr(), room) })
            })
            .await;
            if let Ok(n) = got {
                // SAFETY: the kernel wrote `n` bytes (at most the room it was given) at the
                // buffer's tail.
                unsafe { buf.commit(n) };
                if n > 0 && n < room {
                    // A short read emptied the socket's queue: a wait for readiness
                    // (`readable`) then waits for the next event, rather than end at once on
                    // a stale flag (an idle connection's wait must be one that parks).
                    with_core(|core| core.epoll().drained(index));
                }
            }
            (got, buf)
        }
        ReadIo::Ring(ring) => {
            if ring.multishot {
                match poll_fn(|cx| ring.poll_copy(fd, cx, &mut buf, limit)).await {
                    Ok(Step::Read(n)) => return (Ok(n), buf),
                    Err(e) => return (Err(e), buf),
                    Ok(Step::NoBuffers) => {}
                }
            }
            read_single(fd, buf, limit).await
        }
    }
}

impl RingRead {
    fn armed_recv(&mut self, fd: RawFd) -> &Multishot {
        self.recv.get_or_insert_with(|| {
            let sqe = opcode::RecvMulti::new(Fd(fd), RECV_GROUP).build();
            // SAFETY: the entry points at the socket, open until this handle is dropped (the
            // stream drops it first), and at the driver's buffer ring.
            unsafe { Multishot::submit(sqe, Yields::Counts) }
        })
    }

    fn poll_copy<B: ReadBuf>(
        &mut self,
        fd: RawFd,
        cx: &mut TaskContext<'_>,
        buf: &mut B,
        limit: usize,
    ) -> Poll<io::Result<Step>> {
        // Bytes copied by this call: every buffer already received is copied while there is
        // room (a pipelined batch spread over several ring buffers is one read).
        let mut total = 0;
        loop {
            if let Some(chunk) = &mut self.chunk {
                let max = buf.room().min(limit - total);
                let n = with_core(|core| {
                    core.ring().copy_out(chunk.bid, chunk.taken, chunk.len, max, |bytes| buf.put(bytes))
                });
                chunk.taken += n;
                total += n;
                if chunk.taken == chunk.len {
                    let bid = chunk.bid;
                    self.chunk = None;
                    with_core(|core| core.ring().give_back(bid));
                }
                let more_now = self.recv.as_ref().is_some_and(Multishot::has_data_queued);
                if self.chunk.is_none() && buf.room() > 0 && total < limit && more_now {
                    continue;
                }
                return Poll::Ready(Ok(Step::Read(total)));
            }
            if self.eof {
                return Poll::Ready(Ok(Step::Read(0)));
            }
            let next = self.armed_recv(fd).poll_next(cx);
            if let Poll::Ready(Some((res, flags))) = next
                && res <= 0
                && let Some(bid) = cqueue::buffer_select(flags)
            {
                // A completion that carries a buffer hands it over, whatever its result.
                with_core(|core| core.ring().give_back(bid));
            }
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some((res, flags))) if res > 0 => match cqueue::buffer_select(flags) {
                    Some(bid) => self.chunk = Some(Chunk { bid, len: res as usize, taken: 0 }),
                    None => {
                        return Poll::Ready(Err(io::Error::other(
                            "multishot recv completed without a buffer",
                        )));
                    }
                },
                Poll::Ready(Some((0, _))) => self.eof = true,
                Poll::Ready(Some((res, _))) if -res == libc::ENOBUFS => {
                    // The kernel ended the multishot recv; the next read arms it again.
                    self.recv = None;
                    with_core(|core| core.ring().note_fallback_read());
                    return Poll::Ready(Ok(Step::NoBuffers));
                }
                Poll::Ready(Some((res, _))) if -res == libc::EINVAL => {
                    // A kernel without multishot recv (before 6.0): single-shot from now on.
                    self.recv = None;
                    self.multishot = false;
                    return Poll::Ready(Ok(Step::NoBuffers));
                }
                Poll::Ready(Some((res, _))) => {
                    self.recv = None;
                    return Poll::Ready(Err(io::Error::from_raw_os_error(-res)));
                }
                // Ended without an error (the kernel may stop a multishot at any time).
                Poll::Ready(None) => self.recv = None,
            }
        }
    }
}

/// A single-shot recv of at most `limit` bytes into the spare capacity of `buf`.
async fn read_single<B: ReadBuf>(fd: RawFd, mut buf: B, limit: usize) -> (io::Result<usize>, B) {
    let room = buf.room().min(limit).min(u32::MAX as usize) as u32;
    let at = buf.tail_ptr();
    let sqe = opcode::Recv::new(Fd(fd), at, room).build();
    // SAFETY: the entry points at `buf`'s spare capacity, heap memory owned by the operation
    // until its completion (a `ReadBuf`'s memory does not move with it), and at the caller's
    // socket, open for the await (a dropped read is cancelled, and the kernel holds its own
    // reference to the file meanwhile).
    let done = unsafe { Op::submit(sqe, buf) }.await;
    let result = done.result();
    let mut buf = done.keep;
    match result {
        Ok(n) => {
            // SAFETY: the kernel wrote `n` bytes (at most `room`) at the buffer's tail.
            unsafe { buf.commit(n as usize) };
            (Ok(n as usize), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.raw()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Runtime, RuntimeConfig, sleep, spawn, timeout, with_core};
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind")
    }

    /// A blocking client on its own thread: sends `send`, then reads until the server
    /// closes; what it read.
    fn client(addr: SocketAddr, send: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            s.write_all(&send).expect("send");
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read to end");
            got
        })
    }

    /// Waits for a client thread to end without blocking the loop (a socket dropped on it
    /// closes once the loop runs on).
    async fn thread_done<T>(thread: &std::thread::JoinHandle<T>) {
        while !thread.is_finished() {
            sleep(Duration::from_millis(1)).await;
        }
    }

    /// A client that reads at most `chunk` bytes at a time, pausing `pause` before each
    /// read, until the server closes; what it read.
    fn slow_reader(addr: SocketAddr, chunk: usize, pause: Duration) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            let mut got = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                std::thread::sleep(pause);
                match s.read(&mut buf).expect("read") {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        })
    }

    /// A client that sends `send` and reads until the server closes, by end of file or
    /// reset (a server closing with bytes unread resets the connection).
    fn quiet_client(addr: SocketAddr, send: Vec<u8>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            s.write_all(&send).expect("send");
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        })
    }

    /// Echoes one connection until the peer closes its side, reading into `cap`-byte
    /// buffers; then closes.
    async fn echo_one(listener: &mut TcpListener, cap: usize) -> usize {
        let (mut stream, peer) = listener.accept().await.expect("accept");
        assert!(peer.ip().is_loopback());
        let mut total = 0;
        let mut buf = Vec::with_capacity(cap);
        loop {
            buf.clear();
            let (n, back) = stream.read(buf).await;
            buf = back;
            let n = n.expect("read");
            if n == 0 {
                return total;
            }
            total += n;
            let (sent, back) = stream.write_all(buf).await;
            sent.expect("write");
            buf = back;
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_stream_echoes_through_the_buffer_ring_in_order() {
        for mut rt in super::super::tests::runtimes() {
            let backend = rt.backend();
            let data = pattern(300_000);
            rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                let sender = std::thread::spawn({
                    let data = data.clone();
                    move || {
                        let mut s = std::net::TcpStream::connect(addr).expect("connect");
                        let mut reader = s.try_clone().expect("clone");
                        let reading = std::thread::spawn(move || {
                            let mut got = Vec::new();
                            reader.read_to_end(&mut got).expect("read");
                            got
                        });
                        s.write_all(&data).expect("send");
                        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                        reading.join().expect("reader")
                    }
                });
                assert_eq!(echo_one(&mut listener, 1500).await, data.len());
                // The echo's stream is dropped: the client reads to its end.
                assert!(sender.join().expect("client") == data, "the echo differs");
                if backend == Backend::Uring {
                    assert_eq!(
                        with_core(|core| core.ring().fallback_reads()),
                        0,
                        "every read came through the ring"
                    );
                }
            });
        }
    }

    #[test]
    fn reads_fill_bytes_buffers_and_respect_a_limit() {
        for mut rt in super::super::tests::runtimes() {
            rt.block_on(async {
                let mut listener = listener();
                assert!(listener.as_raw_fd() >= 0);
                let c = quiet_client(listener.local_addr(), pattern(5000));
                let (mut stream, _) = listener.accept().await.expect("accept");
                stream.readable().await.expect("readable");
                sleep(Duration::from_millis(20)).await;
                // At most 100 bytes, though the buffer has room for more.
                let (n, first) = stream.read_max(Vec::with_capacity(4096), 100).await;
                assert_eq!(n.expect("read"), 100);
                // The rest into a BytesMut, as the Redis reader reads.
                let mut rest = bytes::BytesMut::with_capacity(8192);
                while first.len() + rest.len() < 5000 {
                    let (n, back) = stream.read(rest).await;
                    rest = back;
                    assert!(n.expect("read") > 0);
                }
                assert_eq!([&first[..], &rest[..]].concat(), pattern(5000));
                drop(stream);
                thread_done(&c).await;
            });
        }
    }

    #[test]
    fn connect_first_skips_addresses_that_refuse() {
        for mut rt in super::super::tests::runtimes() {
            rt.block_on(async {
                let mut listener = listener();
                let refused = {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    l.local_addr().expect("addr")
                };
                let good = listener.local_addr();
                spawn(async move {
                    let _ = listener.accept().await;
                });
                let stream = TcpStream::connect_first([refused, good]).await.expect("the second address");
                assert_eq!(stream.peer_addr().expect("peer"), good);
                let none = TcpStream::connect_first([refused]).await.expect_err("refused");
                assert_eq!(none.kind(), io::ErrorKind::ConnectionRefused);
                let empty = TcpStream::connect_first([]).await.expect_err("no address");
                assert_eq!(empty.kind(), io::ErrorKind::InvalidInput);
            });
        }
    }

    #[test]
    fn a_read_takes_every_buffer_already_received() {
        // 64-byte ring buffers: 1000 bytes arrive in many of them, and one read with room
        // for all takes all.
        let config = RuntimeConfig { recv_buffers: 64, recv_buffer_size: 64, ..RuntimeConfig::default() };
        let mut rt = Runtime::new(config).expect("runtime");
        rt.block_on(async {
            let mut listener = listener();
            let c = quiet_client(listener.local_addr(), pattern(1000));
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.readable().await.expect("readable");
            // Let the rest arrive; the kernel has filled several buffers by then.
            sleep(Duration::from_millis(20)).await;
            let (n, buf) = stream.read(Vec::with_capacity(4096)).await;
            assert_eq!(n.expect("read"), 1000, "one read");
            assert_eq!(buf, pattern(1000));
            // Room for less: the read stops there and the rest waits, in order.
            drop(stream);
            thread_done(&c).await;
            let c = quiet_client(listener.local_addr(), pattern(1000));
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.readable().await.expect("readable");
            sleep(Duration::from_millis(20)).await;
            let (n, first) = stream.read(Vec::with_capacity(300)).await;
            assert_eq!(n.expect("read"), 300);
            let (n, second) = stream.read(Vec::with_capacity(4096)).await;
            assert_eq!(n.expect("read"), 700);
            assert_eq!([first, second].concat(), pattern(1000));
            drop(stream);
            thread_done(&c).await;
        });
    }

    #[test]
    fn a_dropped_listener_closes_the_connections_it_accepted_for_nobody() {
        for mut rt in super::super::tests::runtimes() {
            rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                // Arms the accept; nobody connects yet.
                assert!(timeout(Duration::from_millis(5), listener.accept()).await.is_err());
                let clients: Vec<_> = (0..3)
                    .map(|_| {
                        let s = std::net::TcpStream::connect(addr).expect("connect");
                        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                        s
                    })
                    .collect();
                // Their accepts complete into the armed operation, then the listener goes.
                sleep(Duration::from_millis(20)).await;
                drop(listener);
                sleep(Duration::from_millis(20)).await;
                for mut c in clients {
                    let mut byte = [0u8; 1];
                    match c.read(&mut byte) {
                        Ok(0) => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                        other => panic!("a connection accepted for nobody stayed open: {other:?}"),
                    }
                }
            });
        }
    }

    #[test]
    fn a_gathered_write_sends_head_then_body_whole() {
        for mut rt in super::super::tests::runtimes() {
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 3000000\r\n\r\n".to_vec();
            let body = pattern(3_000_000);
            let expected: Vec<u8> = head.iter().chain(&body).copied().collect();
            let got = rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                // A slow reader: the socket takes the message in many partial sends.
                let reader = slow_reader(addr, 65536, Duration::from_micros(200));
                let (mut stream, _) = listener.accept().await.expect("accept");
                let (sent, head_back, body_back) =
                    stream.write_all_gathered(head.clone(), body.clone()).await;
                sent.expect("gathered write");
                assert_eq!((head_back, body_back), (head, body), "both buffers come back");
                drop(stream);
                thread_done(&reader).await;
                reader.join().expect("reader")
            });
            assert!(got == expected, "{} bytes of {} arrived intact", got.len(), expected.len());
        }
    }

    #[test]
    fn split_halves_read_and_write_from_different_tasks() {
        for mut rt in super::super::tests::runtimes() {
            rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                spawn(async move {
                    // The server sends 50 lines, then echoes what it gets until the end.
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    for i in 0..50 {
                        let (sent, _) = stream.write_all(format!("line {i}\n").into_bytes()).await;
                        sent.expect("write");
                    }
                    loop {
                        let (n, buf) = stream.read(Vec::with_capacity(256)).await;
                        if n.expect("read") == 0 {
                            return;
                        }
                        let (sent, _) = stream.write_all(buf).await;
                        sent.expect("echo");
                    }
                });
                let stream = TcpStream::connect(addr).await.expect("connect");
                let (mut rd, mut wr) = stream.into_split();
                let received = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
                let sink = std::rc::Rc::clone(&received);
                spawn(async move {
                    loop {
                        let (n, buf) = rd.read(Vec::with_capacity(64)).await;
                        if n.expect("read") == 0 {
                            return;
                        }
                        sink.borrow_mut().extend_from_slice(&buf);
                    }
                });
                for i in 0..20 {
                    let (sent, _) = wr.write_all(format!("ping {i}\n").into_bytes()).await;
                    sent.expect("write half");
                    sleep(Duration::from_millis(1)).await;
                }
                wr.shutdown(std::net::Shutdown::Write).expect("shutdown");
                let expected: String = (0..50)
                    .map(|i| format!("line {i}\n"))
                    .chain((0..20).map(|i| format!("ping {i}\n")))
                    .collect();
                while received.borrow().len() < expected.len() {
                    sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(String::from_utf8(received.borrow().clone()).expect("text"), expected);
            });
        }
    }

    #[test]
    fn a_stream_dropped_mid_buffer_gives_the_buffer_back() {
        // Two ring buffers: two leaked ones would leave every later read on the fallback.
        let config = RuntimeConfig { recv_buffers: 2, recv_buffer_size: 256, ..RuntimeConfig::default() };
        let mut rt = Runtime::new(config).expect("runtime");
        rt.block_on(async {
            let mut listener = listener();
            let addr = listener.local_addr();
            for _ in 0..4 {
                let c = quiet_client(addr, pattern(200));
                let (mut stream, _) = listener.accept().await.expect("accept");
                // Ten of the 200 bytes: the rest of the ring's buffer is left uncopied.
                let (n, _) = stream.read(Vec::with_capacity(10)).await;
                assert_eq!(n.expect("read"), 10);
                drop(stream);
                thread_done(&c).await;
            }
            let c = quiet_client(addr, pattern(200));
            let (mut stream, _) = listener.accept().await.expect("accept");
            let (n, _) = stream.read(Vec::with_capacity(4096)).await;
            assert!(n.expect("read") > 0);
            assert_eq!(with_core(|core| core.ring().fallback_reads()), 0, "the ring still has its buffers");
            drop(stream);
            thread_done(&c).await;
        });
    }

    #[test]
    fn a_stream_dropped_off_its_runtime_touches_no_other() {
        let [mut a, mut b] = super::super::tests::runtimes();
        let mut uring_listener = None;
        let stray = a.block_on(async {
            let mut listener = listener();
            let c = client(listener.local_addr(), b"x".to_vec());
            let (mut stream, _) = listener.accept().await.expect("accept");
            // Arms its recv (the byte comes in).
            let (n, _) = stream.read(Vec::with_capacity(1)).await;
            assert_eq!(n.expect("read"), 1);
            uring_listener = Some(listener);
            (stream, c)
        });
        // Dropped inside another runtime's `block_on`: nothing of that runtime is touched,
        // and the other runtime still serves.
        b.block_on(async move {
            drop(stray);
            let mut listener = listener();
            let c = client(listener.local_addr(), pattern(1000));
            let got = echo_one_without_eof(&mut listener, 1000).await;
            assert_eq!(got, 1000);
            thread_done(&c).await;
            assert_eq!(c.join().expect("client"), pattern(1000));
        });
        // Outside any runtime: a plain drop, then the first runtime goes (cancelling what
        // it still has in flight).
        drop(uring_listener);
        drop(a);
    }

    /// Echoes `total` bytes of one connection, then closes it.
    async fn echo_one_without_eof(listener: &mut TcpListener, total: usize) -> usize {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut got = 0;
        while got < total {
            let (n, buf) = stream.read(Vec::with_capacity(4096)).await;
            got += n.expect("read");
            let (sent, _) = stream.write_all(buf).await;
            sent.expect("write");
        }
        got
    }

    #[test]
    fn io_completes_while_another_task_spins() {
        for mut rt in super::super::tests::runtimes() {
            rt.block_on(async {
                let stop = std::rc::Rc::new(std::cell::Cell::new(false));
                let flag = std::rc::Rc::clone(&stop);
                // Never idle: the loop must still reap completions between its polls.
                spawn(async move {
                    while !flag.get() {
                        std::future::poll_fn(|cx| {
                            cx.waker().wake_by_ref();
                            Poll::Ready(())
                        })
                        .await;
                        let mut yielded = false;
                        std::future::poll_fn(|cx| {
                            if yielded {
                                return Poll::Ready(());
                            }
                            yielded = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        })
                        .await;
                    }
                });
                let mut listener = listener();
                let echo = client(listener.local_addr(), pattern(10_000));
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut got = 0;
                while got < 10_000 {
                    let (n, buf) = stream.read(Vec::with_capacity(4096)).await;
                    got += n.expect("read");
                    let (sent, _) = stream.write_all(buf).await;
                    sent.expect("write");
                }
                // The socket closes once the recv's cancel reaches the kernel, at the loop's
                // next enter: wait for the client without blocking the loop.
                drop(stream);
                thread_done(&echo).await;
                assert_eq!(echo.join().expect("client"), pattern(10_000));
                stop.set(true);
            });
        }
    }

    #[test]
    fn an_exhausted_buffer_ring_falls_back_and_loses_nothing() {
        // Two 64-byte buffers for every connection of the runtime: the kernel runs out at
        // once, and reads go through the single-shot fallback in turns with the ring.
        let config = RuntimeConfig { recv_buffers: 2, recv_buffer_size: 64, ..RuntimeConfig::default() };
        let mut rt = Runtime::new(config).expect("runtime");
        let payloads: Vec<Vec<u8>> = (0..3).map(|i| pattern(100_000 + i * 17)).collect();
        let echoed = rt.block_on(async {
            let mut listener = listener();
            let addr = listener.local_addr();
            let clients: Vec<_> = payloads
                .iter()
                .map(|p| {
                    let p = p.clone();
                    std::thread::spawn(move || {
                        let mut s = std::net::TcpStream::connect(addr).expect("connect");
                        s.write_all(&p).expect("send");
                        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
                        let mut got = Vec::new();
                        s.read_to_end(&mut got).expect("read");
                        got
                    })
                })
                .collect();
            let done = std::rc::Rc::new(std::cell::Cell::new(0));
            for _ in 0..payloads.len() {
                let (mut stream, _) = listener.accept().await.expect("accept");
                let done = std::rc::Rc::clone(&done);
                spawn(async move {
                    let mut buf = Vec::with_capacity(4096);
                    loop {
                        buf.clear();
                        let (n, back) = stream.read(buf).await;
                        buf = back;
                        if n.expect("read") == 0 {
                            break;
                        }
                        let (sent, back) = stream.write_all(buf).await;
                        sent.expect("write");
                        buf = back;
                    }
                    done.set(done.get() + 1);
                });
            }
            while done.get() < payloads.len() {
                sleep(Duration::from_millis(1)).await;
            }
            assert!(with_core(|core| core.ring().fallback_reads()) > 0, "the ring ran out");
            clients.into_iter().map(|c| c.join().expect("client")).collect::<Vec<_>>()
        });
        assert_eq!(echoed, payloads);
    }

    #[test]
    fn readable_waits_without_a_buffer_and_a_dropped_read_loses_nothing() {
        for mut rt in super::super::tests::runtimes() {
            let backend = rt.backend();
            rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let client = std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).expect("connect");
                    rx.recv().expect("go");
                    s.write_all(b"hello").expect("send");
                    let mut got = [0u8; 5];
                    s.read_exact(&mut got).expect("read");
                    got
                });
                let (mut stream, _) = listener.accept().await.expect("accept");
                // Nothing sent yet: a read times out (its future dropped), readable waits.
                assert!(
                    timeout(Duration::from_millis(20), stream.read(Vec::with_capacity(64))).await.is_err()
                );
                assert!(timeout(Duration::from_millis(20), stream.readable()).await.is_err());
                tx.send(()).expect("go");
                stream.readable().await.expect("readable");
                // The bytes wait in the ring's buffer, not in one of ours.
                if backend == Backend::Uring {
                    let ReadIo::Ring(ring) = &stream.read else { panic!("an io_uring stream") };
                    assert!(ring.recv.as_ref().is_some_and(Multishot::has_completion));
                }
                let (n, buf) = stream.read(Vec::with_capacity(64)).await;
                assert_eq!(n.expect("read"), 5);
                assert_eq!(buf, b"hello");
                let (sent, _) = stream.write_all(buf).await;
                sent.expect("write");
                assert_eq!(&client.join().expect("client"), b"hello");
            });
        }
    }

    /// What the engine's idle wait relies on: once a read took every byte, `readable`
    /// waits for the next ones (no stale readiness on epoll), yet an end of file that came
    /// with the last bytes is still seen at once.
    #[test]
    fn readable_after_a_draining_read_waits_for_new_bytes_but_not_for_a_seen_close() {
        for mut rt in super::super::tests::runtimes() {
            let backend = rt.backend();
            rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                let (tx, rx) = std::sync::mpsc::channel::<&'static [u8]>();
                let client = std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).expect("connect");
                    while let Ok(bytes) = rx.recv() {
                        s.write_all(bytes).expect("send");
                    }
                    // Dropped: the last bytes and the end of file leave together.
                });
                let (mut stream, _) = listener.accept().await.expect("accept");
                tx.send(b"first").expect("go");
                let (n, _) = stream.read(Vec::with_capacity(64)).await;
                assert_eq!(n.expect("read"), 5, "{backend:?}");
                assert!(
                    timeout(Duration::from_millis(30), stream.readable()).await.is_err(),
                    "{backend:?}: drained, so readable waits"
                );
                tx.send(b"last").expect("go");
                drop(tx);
                thread_done(&client).await;
                stream.readable().await.expect("readable");
                let (n, buf) = stream.read(Vec::with_capacity(64)).await;
                assert_eq!((n.expect("read"), buf.as_slice()), (4, &b"last"[..]), "{backend:?}");
                timeout(Duration::from_secs(2), stream.readable())
                    .await
                    .expect("the close was seen: readable at once")
                    .expect("readable");
                let (n, _) = stream.read(Vec::with_capacity(64)).await;
                assert_eq!(n.expect("read"), 0, "{backend:?}: end of file");
            });
        }
    }

    #[test]
    fn a_client_connects_reads_and_sees_the_peer_close() {
        for mut rt in super::super::tests::runtimes() {
            rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                spawn(async move {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    let (sent, _) = stream.write_all(b"greetings".to_vec()).await;
                    sent.expect("write");
                    // Dropped: the socket closes, and the client reads its end.
                });
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                assert_eq!(stream.peer_addr().expect("peer"), addr);
                assert!(stream.local_addr().expect("local").ip().is_loopback());
                let mut got = Vec::new();
                loop {
                    let (n, back) = stream.read(Vec::with_capacity(4)).await;
                    match n.expect("read") {
                        0 => break,
                        _ => got.extend_from_slice(&back),
                    }
                }
                assert_eq!(got, b"greetings");
                // Shutting down our side is seen by the peer as the end of the stream.
                let mut listener2 =
                    super::TcpListener::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
                let peer = std::thread::spawn({
                    let addr = listener2.local_addr();
                    move || {
                        let mut s = std::net::TcpStream::connect(addr).expect("connect");
                        let mut got = Vec::new();
                        s.read_to_end(&mut got).expect("read");
                        got.len()
                    }
                });
                let (accepted, _) = listener2.accept().await.expect("accept");
                accepted.shutdown(std::net::Shutdown::Write).expect("shutdown");
                assert_eq!(peer.join().expect("peer"), 0);
                // A refused connection is an error with the kernel's reason.
                let closed = {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    l.local_addr().expect("addr")
                };
                let refused = TcpStream::connect(closed).await.expect_err("nothing listens");
                assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
            });
        }
    }

    #[test]
    fn a_large_write_completes_against_a_slow_reader() {
        for mut rt in super::super::tests::runtimes() {
            let data = pattern(8 << 20);
            let got = rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                let reader = slow_reader(addr, 4096, Duration::from_micros(50));
                let (mut stream, _) = listener.accept().await.expect("accept");
                let (sent, _) = stream.write_all(data.clone()).await;
                sent.expect("write all");
                drop(stream);
                reader.join().expect("reader")
            });
            assert!(got == data, "{} bytes of {} came back intact", got.len(), data.len());
        }
    }

    #[test]
    fn dropping_streams_and_the_runtime_closes_sockets_and_drains_the_ring() {
        for mut rt in super::super::tests::runtimes() {
            let backend = rt.backend();
            let (addr, clients) = rt.block_on(async {
                let mut listener = listener();
                let addr = listener.local_addr();
                let clients: Vec<_> = (0..4).map(|_| client(addr, b"x".to_vec())).collect();
                for _ in 0..4 {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    // Each connection's task waits in a read forever; the runtime's drop ends it.
                    spawn(async move {
                        loop {
                            let (n, _) = stream.read(Vec::with_capacity(16)).await;
                            if n.map_or(true, |n| n == 0) {
                                return;
                            }
                        }
                    });
                }
                sleep(Duration::from_millis(5)).await;
                if backend == Backend::Uring {
                    assert!(
                        with_core(|core| core.ring().in_flight_ops()) >= 5,
                        "recvs and the accept are armed"
                    );
                }
                (addr, clients)
            });
            drop(rt);
            for c in clients {
                assert!(c.join().expect("client").is_empty(), "closed without an answer");
            }
            let _ = addr;
        }
    }
}
