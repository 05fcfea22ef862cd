//! ringo's shard runtime: one thread, one io_uring, the tasks of one shard.
//!
//! Owns the executor ([`executor`]: a slab of boxed tasks and a FIFO of ready ids), the
//! timers ([`timer`]: `sleep` and `timeout`), two drivers behind one socket API, and the
//! sockets ([`net`]):
//!
//! - [`ring`], io_uring: the ring set up with `SINGLE_ISSUER` + `DEFER_TASKRUN`, operation
//!   slots, a provided-buffer ring; a listener has one multishot accept, and an accepted
//!   stream reads through one multishot recv into the buffer ring, so a connection waiting
//!   for its next request holds no buffer of its own;
//! - [`epoll`], readiness: edge-triggered registrations and non-blocking syscalls, for
//!   kernels or sandboxes without io_uring.
//!
//! [`net`] is the one place that matches on the driver.
//!
//! ```text
//!  block_on ─▶ loop turn: run the tasks that are ready (those queued when the turn
//!              began; what they wake runs next turn)
//!           ─▶ fire the timers that are due
//!           ─▶ submit the queued entries, and wait for one completion (or the next
//!              timer) only when no task is ready
//!           ─▶ dispatch completions to their operation slots, waking their tasks
//!           ─▶ read the clock: the turn's one reading (`loop_clock`)
//! ```
//!
//! Invariants:
//! - Everything is thread-local: a runtime, its tasks and its wakers stay on the thread
//!   that built it. A waker woken on another thread is a bug (asserted in debug builds,
//!   ignored in release ones: ringo's cross-thread inputs are polled on a tick).
//! - The kernel owns an operation's buffers from submission to completion: an operation
//!   dropped early moves them into its slot, asks the kernel to cancel, and they are freed
//!   at the completion (see [`ring::Op`]).
//! - A handle (operation, multishot operation, timer, socket) carries its runtime's tag and
//!   acts only on that runtime ([`with_own_core`]): dropped anywhere else, it leaks what
//!   the kernel may still use rather than touch another runtime's slots.
//! - Entries still queued are submitted before a socket's descriptor closes (and when
//!   `block_on` returns), so none can act on a reused descriptor number.
//!
//! Every shard runs on it (`server/backend.rs` builds one per shard thread), and so do
//! the clients' sockets; [`crate::runtime`] is its public face for other threads.

pub(crate) mod epoll;
pub(crate) mod executor;
pub(crate) mod net;
pub(crate) mod ring;
pub(crate) mod timer;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

pub(crate) use executor::spawn;
pub(crate) use timer::{sleep, timeout};

/// Which driver a runtime runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// io_uring (Linux 6.1 for `DEFER_TASKRUN`).
    Uring,
    /// epoll, always available.
    Epoll,
}

/// A runtime's driver, and how the ring and its buffer ring are sized.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuntimeConfig {
    pub(crate) backend: Backend,
    /// Submission queue entries (the completion queue gets twice as many).
    pub(crate) entries: u32,
    /// Buffers in the provided-buffer ring (a power of two, at most 32768).
    pub(crate) recv_buffers: u16,
    /// Bytes in each.
    pub(crate) recv_buffer_size: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        // 256 x 4 KiB: 1 MiB a shard, touched only as the kernel fills buffers. A shard with
        // more connections sending at once than buffers falls back to single-shot reads
        // into the connections' own buffers (see `net`), so this bounds memory, not load.
        RuntimeConfig { backend: Backend::Uring, entries: 1024, recv_buffers: 256, recv_buffer_size: 4096 }
    }
}

/// The state a runtime's thread reaches through [`with_core`].
pub(crate) struct Core {
    /// Tells this runtime's wakers from any other's.
    pub(crate) tag: u32,
    pub(crate) exec: executor::Executor,
    pub(crate) timers: RefCell<timer::Timers>,
    driver: Driver,
}

// One per runtime, built once and never moved: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Driver {
    Uring(ring::Driver),
    Epoll(epoll::Driver),
}

impl Core {
    /// Which driver this runtime runs on.
    pub(crate) fn backend(&self) -> Backend {
        match self.driver {
            Driver::Uring(_) => Backend::Uring,
            Driver::Epoll(_) => Backend::Epoll,
        }
    }

    /// The io_uring driver. Only code that checked [`Core::backend`] (the sockets, made
    /// for their runtime's driver) calls it.
    pub(crate) fn ring(&self) -> &ring::Driver {
        match &self.driver {
            Driver::Uring(d) => d,
            Driver::Epoll(_) => panic!("an io_uring operation on an epoll runtime"),
        }
    }

    /// The epoll driver (see [`Core::ring`]).
    pub(crate) fn epoll(&self) -> &epoll::Driver {
        match &self.driver {
            Driver::Epoll(d) => d,
            Driver::Uring(_) => panic!("an epoll operation on an io_uring runtime"),
        }
    }
}

/// What a runtime's driver has done since it started, for the shard's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IoCounts {
    /// Calls into the kernel to submit and reap (`io_uring_enter`), or to wait for
    /// events (`epoll_wait`).
    pub(crate) enters: u64,
    /// Reads that found the buffer ring empty and read into the reader's own buffer
    /// (io_uring only).
    pub(crate) fallback_reads: u64,
}

/// This thread's runtime's [`IoCounts`] (zeros outside a runtime).
pub(crate) fn io_counts() -> IoCounts {
    CURRENT
        .try_with(|current| {
            let current = current.try_borrow().ok()?;
            let core = current.as_ref()?;
            Some(match &core.driver {
                Driver::Uring(ring) => {
                    IoCounts { enters: ring.enters(), fallback_reads: ring.fallback_reads() }
                }
                Driver::Epoll(epoll) => IoCounts { enters: epoll.waits(), fallback_reads: 0 },
            })
        })
        .ok()
        .flatten()
        .unwrap_or_default()
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

thread_local! {
    /// The current runtime's loop-turn reading (`None` outside a runtime): read once a
    /// turn after the wait; the timers fire by it, the next wait is measured from it, and
    /// [`loop_clock`] hands it out. Kept apart from [`CURRENT`] so reading it is a plain
    /// thread-local load: no borrow flag, no destructor state.
    static TURN_CLOCK: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The current loop turn's clock reading: when the driver's last wait returned, so when
/// every completion this turn dispatches had arrived (the system clock outside a runtime).
/// Costs a thread-local load instead of a clock read (34 ns on a VM's TSC clock source:
/// `cargo bench --bench micro -- clock`).
#[inline]
pub(crate) fn loop_clock() -> Instant {
    TURN_CLOCK.with(Cell::get).unwrap_or_else(Instant::now)
}

/// Runs `f` with this thread's runtime; panics outside one (a spawn, sleep or socket
/// operation outside `block_on` is a bug).
pub(crate) fn with_core<R>(f: impl FnOnce(&Core) -> R) -> R {
    CURRENT.with(|current| {
        let current = current.borrow();
        let core = current.as_ref().expect("ringo's runtime: called outside Runtime::block_on");
        f(core)
    })
}

/// Runs `f` with this thread's runtime if it is the one tagged `tag` (a handle's own):
/// `None` outside it (no runtime, another one, or one being torn down). Drops use it, so
/// a handle dropped off its runtime never touches another runtime's driver.
pub(crate) fn with_own_core<R>(tag: u32, f: impl FnOnce(&Core) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| {
            let current = current.try_borrow().ok()?;
            let core = current.as_ref().filter(|core| core.tag == tag)?;
            Some(f(core))
        })
        .ok()
        .flatten()
}

/// One shard's runtime.
pub(crate) struct Runtime {
    core: Rc<Core>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("tag", &self.core.tag).finish_non_exhaustive()
    }
}

static TAGS: AtomicU32 = AtomicU32::new(1);

impl Runtime {
    /// Sets up the driver: for io_uring the ring and its buffer ring, failing with the
    /// kernel's reason where io_uring, `DEFER_TASKRUN` (Linux 6.1) or provided-buffer rings
    /// (5.19) are unavailable.
    pub(crate) fn new(config: RuntimeConfig) -> io::Result<Runtime> {
        let driver = match config.backend {
            Backend::Uring => Driver::Uring(ring::Driver::new(&config)?),
            Backend::Epoll => Driver::Epoll(epoll::Driver::new()?),
        };
        let tag = TAGS.fetch_add(1, Ordering::Relaxed);
        let core = Core {
            tag,
            exec: executor::Executor::default(),
            timers: RefCell::new(timer::Timers::default()),
            driver,
        };
        Ok(Runtime { core: Rc::new(core) })
    }

    /// Which driver it runs on.
    pub(crate) fn backend(&self) -> Backend {
        self.core.backend()
    }

    /// Runs `future` to completion on this thread, with every task it spawns. Tasks still
    /// running when it completes are dropped with the runtime.
    pub(crate) fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let _entered = Entered::enter(&self.core);
        let core = &*self.core;
        let mut future = pin!(future);
        let waker = executor::main_waker(core.tag);
        let mut cx = TaskContext::from_waker(&waker);
        core.exec.wake_main();
        let mut now = loop_clock();
        loop {
            if core.exec.take_main_woken()
                && let Poll::Ready(out) = future.as_mut().poll(&mut cx)
            {
                // What the last polls queued (a closing socket's cancel) reaches the kernel
                // now, not at the next `block_on`.
                if let Driver::Uring(ring) = &core.driver {
                    ring.submit_queued();
                }
                return out;
            }
            core.exec.run_ready_batch(core.tag);
            core.timers.borrow_mut().fire(now);
            let idle = !core.exec.has_ready() && !core.exec.main_woken();
            // The wait is measured from the turn's reading, not a fresh one: a timer fires
            // late by at most the batch just run, and the turn reads the clock once.
            let wait = if idle {
                Some(core.timers.borrow().next_deadline().map(|d| d.saturating_duration_since(now)))
            } else {
                None
            };
            match &core.driver {
                Driver::Uring(ring) => ring.submit_and_reap(wait),
                Driver::Epoll(epoll) => epoll.poll_events(wait),
            }
            now = Instant::now();
            TURN_CLOCK.with(|c| c.set(Some(now)));
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Tasks may hold sockets and operations: drop them with the runtime current, so
        // their operations can be abandoned to the ring, then let the ring go.
        let _entered = Entered::enter(&self.core);
        self.core.exec.drop_all();
        self.core.timers.borrow_mut().clear();
    }
}

/// Makes a runtime this thread's current one for a scope.
struct Entered {
    previous: Option<Rc<Core>>,
    previous_turn: Option<Instant>,
}

impl Entered {
    fn enter(core: &Rc<Core>) -> Entered {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(Rc::clone(core)));
        let previous_turn = TURN_CLOCK.with(|c| c.replace(Some(Instant::now())));
        Entered { previous, previous_turn }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        TURN_CLOCK.with(|c| c.set(self.previous_turn));
        let previous = self.previous.take();
        // The core is put back before the previous one is dropped outside the borrow.
        let _ours = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    pub(crate) fn runtime() -> Runtime {
        Runtime::new(RuntimeConfig::default()).expect("io_uring with DEFER_TASKRUN and buffer rings")
    }

    /// A runtime of each driver.
    pub(crate) fn runtimes() -> [Runtime; 2] {
        let epoll = RuntimeConfig { backend: Backend::Epoll, ..RuntimeConfig::default() };
        [runtime(), Runtime::new(epoll).expect("epoll")]
    }

    #[test]
    fn block_on_returns_the_output_and_runs_spawned_tasks() {
        let mut rt = runtime();
        let seen = Rc::new(Cell::new(0));
        let out = rt.block_on({
            let seen = Rc::clone(&seen);
            async move {
                for i in 1..=3 {
                    let seen = Rc::clone(&seen);
                    spawn(async move { seen.set(seen.get() + i) });
                }
                sleep(Duration::from_millis(5)).await;
                seen.get() * 10
            }
        });
        assert_eq!(out, 60);
    }

    #[test]
    fn tasks_left_running_are_dropped_with_the_runtime() {
        struct Flag(Rc<Cell<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let dropped = Rc::new(Cell::new(false));
        {
            let mut rt = runtime();
            let flag = Flag(Rc::clone(&dropped));
            rt.block_on(async move {
                spawn(async move {
                    let _flag = flag;
                    sleep(Duration::from_secs(3600)).await;
                });
                sleep(Duration::from_millis(1)).await;
            });
            assert!(!dropped.get(), "the task still sleeps");
        }
        assert!(dropped.get(), "dropped with the runtime");
    }

    #[test]
    fn the_loop_clock_is_read_once_a_turn_and_timers_still_wait_their_time() {
        for mut rt in runtimes() {
            let backend = rt.backend();
            rt.block_on(async move {
                let before = loop_clock();
                std::thread::sleep(Duration::from_millis(5));
                // No turn passed: the same reading, however long the task ran.
                assert_eq!(loop_clock(), before, "{backend:?}");
                // The wait is measured from that stale reading, yet the sleep does not
                // end early, and the turn after it reads the clock again.
                let asked = Instant::now();
                sleep(Duration::from_millis(10)).await;
                assert!(asked.elapsed() >= Duration::from_millis(10), "{backend:?}: woke early");
                assert!(loop_clock() >= asked + Duration::from_millis(10), "{backend:?}: a fresh reading");
            });
        }
        // Outside a runtime it is the system clock.
        let outside = loop_clock();
        std::thread::sleep(Duration::from_millis(2));
        assert!(loop_clock() > outside);
    }

    #[test]
    fn runtimes_nest_and_restore_the_outer_one() {
        let mut outer = runtime();
        let out = outer.block_on(async {
            let inner_out = std::thread::spawn(|| runtime().block_on(async { 7 })).join().expect("thread");
            sleep(Duration::from_millis(1)).await;
            inner_out + 1
        });
        assert_eq!(out, 8);
    }
}
