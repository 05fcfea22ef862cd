//! What the peers that drive an io_uring by hand (uring-raw, uring-tasks, monoio-sidering)
//! share: the ring's sizes, the `user_data` layout (an operation in the high half, a
//! connection slot in the low half), pushing an entry, TCP_NODELAY on accepted sockets, and the workers: one
//! pinned thread per worker, each with its own SO_REUSEPORT listener.
//!
//! Included with `#[path = "../../common/raw_ring.rs"] mod raw_ring;`, beside the `args`,
//! `listener` and `pin` modules it uses.

use std::os::fd::{IntoRawFd, RawFd};

use io_uring::{squeue, IoUring};

pub const RING_ENTRIES: u32 = 4096;
/// The provided-buffer group of the multishot receives.
pub const BUF_GROUP: u16 = 0;
/// Buffers in the ring (a power of two), and their size.
pub const BUF_COUNT: u16 = 1024;
pub const BUF_SIZE: usize = 4096;

pub const OP_ACCEPT: u64 = 1;
pub const OP_RECV: u64 = 2;
pub const OP_SEND: u64 = 3;

pub fn user_data(op: u64, slot: u32) -> u64 {
    (op << 32) | slot as u64
}

/// Queues `sqe`, submitting what is queued first when the submission queue is full.
///
/// # Safety
/// Every buffer and descriptor the entry points to must stay valid, and unmoved, until its
/// completion is reaped.
pub unsafe fn push(ring: &mut IoUring, sqe: squeue::Entry) {
    // SAFETY: the caller keeps what the entry points to alive until its completion.
    while unsafe { ring.submission().push(&sqe) }.is_err() {
        submit(ring);
    }
}

/// Submits what is queued, without waiting; an interrupted or busy (completion queue
/// full) submit is left for the next one.
pub fn submit(ring: &mut IoUring) {
    match ring.submit() {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
        Err(e) => panic!("io_uring_enter: {e}"),
    }
}

/// Sets TCP_NODELAY on an accepted socket (best effort, as the other peers' runtimes do).
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: a plain setsockopt on an open socket, with an int option that outlives the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Runs `worker` on `--workers` pinned threads named `name-i`, each given its own listener
/// on `--host`/`--port`, and waits for them.
pub fn run_workers(name: &str, worker: fn(RawFd)) {
    let args = crate::args::parse();
    let addr = args.addr();
    let cpus = crate::pin::allowed_cpus();
    let workers: Vec<_> = (0..args.workers)
        .map(|i| {
            let listener =
                crate::listener::reuseport(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")).into_raw_fd();
            let cpus = cpus.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    crate::pin::pin_current(i, &cpus);
                    worker(listener)
                })
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// A free connection slot: one given back before, or a new one at the end of `conns`.
pub fn take_slot<T: Default>(conns: &mut Vec<T>, free: &mut Vec<u32>) -> u32 {
    free.pop().unwrap_or_else(|| {
        conns.push(T::default());
        (conns.len() - 1) as u32
    })
}

/// Reports an accept that failed for a reason other than the transient ones (out of
/// descriptors, an aborted handshake, an interruption).
pub fn report_accept_error(res: i32) {
    if !matches!(-res, libc::EMFILE | libc::ENFILE | libc::ECONNABORTED | libc::EINTR | libc::EAGAIN) {
        eprintln!("accept: {}", std::io::Error::from_raw_os_error(-res));
    }
}
