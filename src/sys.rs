//! Raw operating-system calls that no safe wrapper covers, each with its reason.
//!
//! Today: shutting a connection's socket down by its descriptor: the drain uses it to
//! wake connections blocked in a read, and a server-side close uses it to send end of
//! file before lingering, and a dropped Redis client uses it to end its connections'
//! reads (the runtime's stream type offers no `AsFd`).

use std::os::fd::RawFd;

/// Which directions [`shutdown_socket`] closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Reads end (a pending read completes with end of file); writes still work.
    Read,
    /// Our side's writes end (the peer reads end of file); reads still work.
    Write,
    /// Both.
    Both,
}

/// `shutdown(2)` on a connection's socket.
///
/// Callers keep the invariant that `fd` belongs to a connection that is still open (the
/// shard's connection registry removes an entry before its stream is dropped; a Redis
/// connection forgets its descriptor before either half of its stream is dropped), so
/// the number cannot have been reused for another file.
pub(crate) fn shutdown_socket(fd: RawFd, how: Direction) {
    let how = match how {
        Direction::Read => libc::SHUT_RD,
        Direction::Write => libc::SHUT_WR,
        Direction::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown(2) only takes a descriptor number and flags and touches no memory
    // of ours; by the caller's invariant the descriptor is a live socket of this shard.
    let _ = unsafe { libc::shutdown(fd, how) };
}

/// Accepts and at once closes up to `max` connections queued on `listener`, without
/// blocking; returns how many. Used when the process is out of descriptors and a spare
/// one was just freed: the client gets a close now instead of waiting in the backlog.
pub(crate) fn accept_and_close(listener: RawFd, max: usize) -> usize {
    let mut closed = 0;
    while closed < max {
        let mut poll = libc::pollfd { fd: listener, events: libc::POLLIN, revents: 0 };
        // SAFETY: `poll` points to one valid, initialised pollfd for the length of the
        // call; a zero timeout makes it return at once.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        if ready <= 0 || poll.revents & libc::POLLIN == 0 {
            break;
        }
        // SAFETY: accept4 with null address pointers writes no memory of ours; the
        // listener is this shard's own socket, readable per the poll above, so the call
        // does not block.
        let fd = unsafe {
            libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        };
        if fd < 0 {
            break;
        }
        // SAFETY: `fd` was just returned by accept4 and is owned by nobody else.
        unsafe { libc::close(fd) };
        closed += 1;
    }
    closed
}
