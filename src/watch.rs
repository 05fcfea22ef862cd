//! What a shard knows of each open connection between polls: its descriptor, the
//! deadline of the wait it is in, whether it idles between requests, and how to wake it.
//!
//! Timeouts cost no timer per read or write. A connection about to wait stores one
//! deadline in its [`Watch`] (a plain `Cell` write, from the shard's cached clock) and
//! waits through [`Watched`]; the shard's sweep ([`ConnRegistry::sweep`], every
//! [`TICK`]) marks the watches whose deadline passed and wakes their tasks, and the
//! waiting future then ends with [`Interrupted::Expired`] (dropping, so cancelling, the
//! operation). Deadlines are therefore kept to within one tick, late, never early.
//!
//! The same sweep parks connections that idle longer than [`PARK_AFTER`]: a parkable
//! wait ([`Watched::parkable`], an idle connection's wait for readiness, which holds no
//! buffer and consumes no byte) ends with [`Interrupted::Parked`], so the connection can
//! return its buffers and go on waiting holding none.
//!
//! Invariant: a registry entry is live from `add` until `remove`, and `remove` comes
//! before the connection's socket is closed, so every live descriptor here is a socket
//! of this shard. Watches are recycled with their slots: no allocation per connection
//! once the registry has grown.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

/// How often the sweep looks at deadlines: the precision of every timeout.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// How long a connection idles between requests before it parks (gives its buffers
/// back and waits for readiness without one).
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(1000);

/// One connection's wait state, shared by its task and the shard's registry.
#[derive(Default)]
pub(crate) struct Watch {
    fd: Cell<RawFd>,
    live: Cell<bool>,
    /// The current wait's deadline; `None` while the connection is not waiting.
    deadline: Cell<Option<Instant>>,
    /// The sweep found the deadline passed.
    expired: Cell<bool>,
    /// Since when the connection waits for a new request with nothing buffered.
    idle_since: Cell<Option<Instant>>,
    /// The sweep asked this idle period's read to give its buffer back (once per
    /// idle period).
    park_asked: Cell<bool>,
    /// The request, not yet seen by the waiting future.
    park_now: Cell<bool>,
    /// The connection task, woken by the sweep.
    waker: RefCell<Option<Waker>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("fd", &self.fd.get())
            .field("live", &self.live.get())
            .field("deadline", &self.deadline.get())
            .field("idle_since", &self.idle_since.get())
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// Starts a wait that must end by `deadline`.
    pub(crate) fn arm(&self, deadline: Instant) {
        self.deadline.set(Some(deadline));
        self.expired.set(false);
    }

    /// The wait ended (either way).
    pub(crate) fn disarm(&self) {
        self.deadline.set(None);
        self.expired.set(false);
    }

    /// Marks the connection idle between requests (from `since`) or busy (`None`).
    pub(crate) fn set_idle(&self, since: Option<Instant>) {
        self.idle_since.set(since);
        if since.is_none() {
            self.park_asked.set(false);
            self.park_now.set(false);
        }
    }

    /// Whether the connection waits for a new request with nothing buffered.
    pub(crate) fn is_idle(&self) -> bool {
        self.idle_since.get().is_some()
    }

    fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }
}

/// Why a watched wait ended before its future did (the future is dropped, cancelling
/// its operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The sweep found its deadline passed.
    Expired,
    /// The sweep asked the idle connection to park (parkable waits only).
    Parked,
}

pin_project_lite::pin_project! {
    /// A future that ends with its own output, or when the sweep finds its deadline
    /// passed, or (a parkable one) when the sweep asks the connection to park.
    pub(crate) struct Watched<'a, F> {
        watch: &'a Watch,
        parkable: bool,
        #[pin]
        inner: F,
    }
}

impl<'a, F: Future> Watched<'a, F> {
    /// A wait that only its deadline interrupts (reads and writes, whose dropping may
    /// lose bytes or a buffer).
    pub(crate) fn new(watch: &'a Watch, inner: F) -> Watched<'a, F> {
        Watched { watch, parkable: false, inner }
    }

    /// A wait that parking interrupts too: one that holds no buffer and consumes no byte
    /// (a wait for readiness), so dropping it loses nothing.
    pub(crate) fn parkable(watch: &'a Watch, inner: F) -> Watched<'a, F> {
        Watched { watch, parkable: true, inner }
    }
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = Result<F::Output, Interrupted>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let watch: &Watch = this.watch;
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if watch.expired.get() {
            return Poll::Ready(Err(Interrupted::Expired));
        }
        if *this.parkable && watch.park_now.replace(false) {
            return Poll::Ready(Err(Interrupted::Parked));
        }
        watch.register(cx.waker());
        Poll::Pending
    }
}

/// The shard's open connections: slots with recycled watches.
#[derive(Debug, Default)]
pub(crate) struct ConnRegistry {
    slots: Vec<Rc<Watch>>,
    free: Vec<usize>,
    live: usize,
}

impl ConnRegistry {
    /// Registers a connection's socket; returns its slot and watch.
    pub(crate) fn add(&mut self, fd: RawFd) -> (usize, Rc<Watch>) {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Rc::new(Watch::default()));
                self.slots.len() - 1
            }
        };
        let watch = &self.slots[slot];
        watch.fd.set(fd);
        watch.live.set(true);
        watch.disarm();
        watch.set_idle(None);
        watch.waker.borrow_mut().take();
        self.live += 1;
        (slot, Rc::clone(watch))
    }

    /// Forgets a connection (before its socket closes).
    pub(crate) fn remove(&mut self, slot: usize) {
        if let Some(watch) = self.slots.get(slot) {
            if watch.live.replace(false) {
                watch.disarm();
                watch.waker.borrow_mut().take();
                self.free.push(slot);
                self.live -= 1;
            }
        }
    }

    /// Drops every stored waker. The shard calls this when it ends (also by unwinding):
    /// a waker holds its connection's task, whose future holds the shard, which holds
    /// this registry, a cycle only this breaks.
    pub(crate) fn forget_wakers(&self) {
        for watch in &self.slots {
            watch.waker.borrow_mut().take();
        }
    }

    /// Connections registered now.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Wakes the connections whose deadline passed by `now`, and asks those idle since
    /// before `now - PARK_AFTER` to park.
    pub(crate) fn sweep(&self, now: Instant) {
        let park_before = now.checked_sub(PARK_AFTER);
        for watch in self.slots.iter().filter(|w| w.live.get()) {
            if watch.deadline.get().is_some_and(|d| d <= now) && !watch.expired.get() {
                watch.expired.set(true);
                watch.wake();
                continue;
            }
            let idle_long = matches!((watch.idle_since.get(), park_before), (Some(s), Some(b)) if s <= b);
            if idle_long && !watch.park_asked.get() {
                // Asked once per idle period: `set_idle(None)` re-allows it.
                watch.park_asked.set(true);
                watch.park_now.set(true);
                watch.wake();
            }
        }
    }

    /// Shuts down idle connections (or all), waking their waits with end of file.
    pub(crate) fn shutdown(&self, idle_only: bool) -> usize {
        let mut n = 0;
        for watch in self.slots.iter().filter(|w| w.live.get()) {
            let idle = watch.idle_since.get().is_some();
            if idle || !idle_only {
                // Idle ones lose only their read side: if a request slipped in just before,
                // its answer can still be written.
                let how = if idle_only { crate::sys::Direction::Read } else { crate::sys::Direction::Both };
                crate::sys::shutdown_socket(watch.fd.get(), how);
                n += 1;
            }
        }
        n
    }
}
