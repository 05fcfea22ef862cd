//! The io_uring driver: one ring per runtime, its operation slots, and its provided-buffer
//! ring.
//!
//! Every operation has a slot; its index is the entry's `user_data`, and completions are
//! queued in the slot for the future that owns it ([`Op`] for a single completion,
//! [`Multishot`] for a stream of them), which the dispatch wakes. Slots are recycled with
//! their queues, so a steady state allocates nothing.
//!
//! Ownership of what the kernel writes or reads: an operation's buffers move into its
//! [`Op`] at submission and come back with the completion. An `Op` dropped before its
//! completion moves them into its slot (abandoned), queues a cancel, and the slot frees
//! them at the completion. Receives into the buffer ring use the driver's memory, handed
//! back to the kernel once their bytes are copied out ([`Driver::give_back`]). Dropping the
//! driver cancels everything still in flight and waits for it before any of that memory
//! is freed.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, CancelBuilder, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use super::RuntimeConfig;

/// The `user_data` of cancel requests (their completions are not dispatched).
const CANCEL: u64 = u64::MAX;
/// The provided-buffer group of the runtime's receives.
pub(crate) const RECV_GROUP: u16 = 0;
/// `io_uring_enter`'s flag to reap (and, with `DEFER_TASKRUN`, to run the deferred work).
const ENTER_GETEVENTS: u32 = 1;
/// How long dropping the driver waits for cancelled operations before leaking their
/// memory instead of freeing what the kernel may still write.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Free,
    /// Owned by an [`Op`] or a [`Multishot`].
    Owned,
    /// Its owner is gone; the slot frees at the last completion.
    Abandoned,
}

/// What an operation's successful results are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Yields {
    /// Byte counts, or nothing to release.
    #[default]
    Counts,
    /// New descriptors (accepts): closed if nobody takes them.
    Descriptors,
}

#[derive(Default)]
struct Slot {
    state: State,
    yields: Yields,
    /// The kernel may post more completions for this slot.
    more: bool,
    /// Completions not taken yet: (result, flags).
    done: VecDeque<(i32, u32)>,
    waker: Option<Waker>,
    /// An abandoned operation's buffers, freed at its last completion.
    keep: Option<Box<dyn Any>>,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_flight: usize,
}

impl Slots {
    fn take(&mut self, yields: Yields) -> u32 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.state = State::Owned;
        slot.yields = yields;
        slot.more = true;
        self.in_flight += 1;
        index
    }

    fn free(&mut self, index: u32, bufs: &mut BufRing) -> Option<Box<dyn Any>> {
        let slot = &mut self.slots[index as usize];
        for (res, flags) in slot.done.drain(..) {
            release_result(res, flags, slot.yields, bufs);
        }
        slot.state = State::Free;
        slot.waker = None;
        self.free.push(index);
        slot.keep.take()
    }
}

/// A runtime's ring.
pub(crate) struct Driver {
    ring: RefCell<IoUring>,
    slots: RefCell<Slots>,
    bufs: RefCell<BufRing>,
    /// Reads that found the buffer ring empty and used the reader's buffer instead.
    fallback_reads: Cell<u64>,
    /// `io_uring_enter` calls made (submitting, waiting, or both).
    enters: Cell<u64>,
    /// The kernel flags pending deferred completions in the submission ring
    /// (`IORING_SQ_TASKRUN`), so a turn that does not wait can skip the enter.
    taskrun_flag: bool,
}

impl Driver {
    pub(crate) fn new(config: &RuntimeConfig) -> io::Result<Driver> {
        let build = |taskrun_flag: bool| {
            let mut builder = IoUring::builder();
            builder.setup_single_issuer().setup_defer_taskrun().setup_cqsize(config.entries * 2);
            if taskrun_flag {
                builder.setup_taskrun_flag();
            }
            builder.build(config.entries)
        };
        // TASKRUN_FLAG lets a busy loop skip the enter when the kernel has nothing for it.
        let (ring, taskrun_flag) = match build(true) {
            Ok(ring) => (ring, true),
            Err(_) => (
                build(false).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("io_uring with SINGLE_ISSUER and DEFER_TASKRUN (Linux 6.1): {e}"),
                    )
                })?,
                false,
            ),
        };
        let bufs = BufRing::register(&ring, RECV_GROUP, config.recv_buffers, config.recv_buffer_size)?;
        Ok(Driver {
            ring: RefCell::new(ring),
            slots: RefCell::default(),
            bufs: RefCell::new(bufs),
            fallback_reads: Cell::new(0),
            enters: Cell::new(0),
            taskrun_flag,
        })
    }

    /// Queues `sqe` with a fresh slot as its `user_data`; the slot's index.
    ///
    /// # Safety
    /// Every buffer and descriptor the entry points to stays valid and unmoved until the
    /// slot's last completion: it is owned by the `Op` made with this slot (and then by the
    /// slot, if the `Op` is dropped early), or it is the driver's buffer ring.
    unsafe fn push_op(&self, sqe: squeue::Entry, yields: Yields) -> u32 {
        let index = self.slots.borrow_mut().take(yields);
        // SAFETY: forwarded from the caller.
        unsafe { self.push(sqe.user_data(u64::from(index))) };
        index
    }

    /// Queues `sqe`, submitting what is queued first when the queue is full.
    ///
    /// # Safety
    /// As [`Driver::push_op`].
    unsafe fn push(&self, sqe: squeue::Entry) {
        let mut ring = self.ring.borrow_mut();
        // SAFETY: forwarded from the caller.
        while unsafe { ring.submission().push(&sqe) }.is_err() {
            match ring.submit() {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => panic!("io_uring_enter (submitting a full queue): {e}"),
            }
        }
    }

    fn cancel(&self, index: u32) {
        let sqe = opcode::AsyncCancel::new(u64::from(index)).build().user_data(CANCEL);
        // SAFETY: a cancel points to nothing but the `user_data` it matches.
        unsafe { self.push(sqe) };
    }

    /// The owner of slot `index` is gone. An operation still in flight is cancelled and
    /// `keep` (its buffers) stays with the slot until its last completion.
    fn release(&self, index: u32, keep: Option<Box<dyn Any>>) {
        let in_flight = {
            let mut slots = self.slots.borrow_mut();
            let slot = &mut slots.slots[index as usize];
            if slot.state != State::Owned {
                debug_assert!(false, "operation slot {index} released twice");
                // Leaked rather than freed: the kernel may still use them.
                std::mem::forget(keep);
                return;
            }
            if slot.more {
                slot.state = State::Abandoned;
                slot.keep = keep;
                slot.waker = None;
                // Buffers already received go back now, descriptors close.
                let mut bufs = self.bufs.borrow_mut();
                for (res, flags) in slot.done.drain(..) {
                    release_result(res, flags, slot.yields, &mut bufs);
                }
                true
            } else {
                let _freed = slots.free(index, &mut self.bufs.borrow_mut());
                false
            }
        };
        if in_flight {
            self.cancel(index);
        }
    }

    /// The next completion of slot `index`; `Ready(None)` once the operation ended and
    /// every completion was taken.
    fn poll_next(&self, index: u32, cx: &mut TaskContext<'_>) -> Poll<Option<(i32, u32)>> {
        let mut slots = self.slots.borrow_mut();
        let slot = &mut slots.slots[index as usize];
        if let Some(done) = slot.done.pop_front() {
            return Poll::Ready(Some(done));
        }
        if !slot.more {
            return Poll::Ready(None);
        }
        match &mut slot.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether slot `index` has a completion waiting.
    fn has_completion(&self, index: u32) -> bool {
        !self.slots.borrow().slots[index as usize].done.is_empty()
    }

    /// Whether slot `index`'s next completion carries bytes (a positive result).
    fn data_queued(&self, index: u32) -> bool {
        self.slots.borrow().slots[index as usize].done.front().is_some_and(|&(res, _)| res > 0)
    }

    /// Whether the operation of slot `index` may post more completions.
    fn in_flight(&self, index: u32) -> bool {
        self.slots.borrow().slots[index as usize].more
    }

    /// Submits what is queued without waiting (a socket about to close: its operations'
    /// cancels reach the kernel before its descriptor number can be reused).
    pub(crate) fn submit_queued(&self) {
        let Ok(mut ring) = self.ring.try_borrow_mut() else { return };
        if ring.submission().is_empty() {
            return;
        }
        self.enters.set(self.enters.get() + 1);
        match ring.submit() {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
            Err(e) => panic!("io_uring_enter (submitting before a close): {e}"),
        }
    }

    /// Hands at most `max` of bytes `from..to` of buffer `bid` to `put`; how many.
    pub(crate) fn copy_out(
        &self,
        bid: u16,
        from: usize,
        to: usize,
        max: usize,
        put: impl FnOnce(&[u8]),
    ) -> usize {
        let bufs = self.bufs.borrow();
        let src = &bufs.buf(bid)[from..to];
        let n = src.len().min(max);
        put(&src[..n]);
        n
    }

    /// Hands buffer `bid` back to the kernel.
    pub(crate) fn give_back(&self, bid: u16) {
        self.bufs.borrow_mut().give_back(bid);
    }

    /// Submits what is queued and dispatches the completions. `wait`: `None` to return
    /// at once (tasks are ready), `Some(limit)` to wait for one completion, for at most
    /// `limit` (the time left to the next timer) if there is one.
    pub(crate) fn submit_and_reap(&self, wait: Option<Option<Duration>>) {
        {
            let mut ring = self.ring.borrow_mut();
            let (queued, kernel_has_work) = {
                let sq = ring.submission();
                (sq.len(), !self.taskrun_flag || sq.taskrun() || sq.cq_overflow())
            };
            if wait.is_none() && queued == 0 && !kernel_has_work {
                // Tasks are ready and the kernel has nothing to submit or complete: reap what
                // is already posted, without a system call.
                drop(ring);
                self.dispatch();
                return;
            }
            self.enters.set(self.enters.get() + 1);
            let submitter = ring.submitter();
            let result = match wait {
                Some(None) => submitter.submit_and_wait(1),
                Some(Some(left)) if !left.is_zero() => {
                    let ts = Timespec::new().sec(left.as_secs()).nsec(left.subsec_nanos());
                    submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                }
                Some(Some(_)) => reap_now(&submitter, queued),
                None => reap_now(&submitter, queued),
            };
            match result {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::ETIME)) => {}
                Err(e) => panic!("io_uring_enter: {e}"),
            }
        }
        self.dispatch();
    }

    fn dispatch(&self) {
        let mut ring = self.ring.borrow_mut();
        let mut slots = self.slots.borrow_mut();
        let mut bufs = self.bufs.borrow_mut();
        for cqe in ring.completion() {
            let user_data = cqe.user_data();
            if user_data == CANCEL {
                continue;
            }
            let (res, flags) = (cqe.result(), cqe.flags());
            let index = user_data as u32;
            let Some(slot) = slots.slots.get_mut(index as usize) else { continue };
            let last = !cqueue::more(flags);
            match slot.state {
                State::Owned => {
                    slot.done.push_back((res, flags));
                    slot.more &= !last;
                    let waker = slot.waker.take();
                    if last {
                        slots.in_flight -= 1;
                    }
                    if let Some(w) = waker {
                        w.wake();
                    }
                }
                State::Abandoned => {
                    release_result(res, flags, slot.yields, &mut bufs);
                    if last {
                        slot.more = false;
                        slots.in_flight -= 1;
                        // An abandoned operation's buffers go with its last completion.
                        drop(slots.free(index, &mut bufs));
                    }
                }
                State::Free => {}
            }
        }
    }

    /// Counts a read that found the buffer ring empty.
    pub(crate) fn note_fallback_read(&self) {
        self.fallback_reads.set(self.fallback_reads.get() + 1);
    }

    /// Reads that found the buffer ring empty, since the runtime started.
    pub(crate) fn fallback_reads(&self) -> u64 {
        self.fallback_reads.get()
    }

    /// `io_uring_enter` calls since the runtime started.
    pub(crate) fn enters(&self) -> u64 {
        self.enters.get()
    }

    /// Operations the kernel has not finished.
    pub(crate) fn in_flight_ops(&self) -> usize {
        self.slots.borrow().in_flight
    }
}

/// Releases a completion nobody will take: its buffer-ring buffer goes back, a descriptor
/// it made closes.
fn release_result(res: i32, flags: u32, yields: Yields, bufs: &mut BufRing) {
    if let Some(bid) = cqueue::buffer_select(flags) {
        bufs.give_back(bid);
    }
    if yields == Yields::Descriptors && res >= 0 {
        // SAFETY: an accept's result is a new descriptor that nothing else refers to.
        unsafe { libc::close(res) };
    }
}

/// Enters the ring to submit the `queued` entries and reap without waiting (with
/// `DEFER_TASKRUN` the deferred completions are only posted by an enter with GETEVENTS).
fn reap_now(submitter: &io_uring::Submitter<'_>, queued: usize) -> io::Result<usize> {
    // SAFETY: no signal mask and no argument: the flags ask for nothing but submitting the
    // queued entries and running the completions that are due.
    unsafe { submitter.enter::<libc::sigset_t>(queued as u32, 0, ENTER_GETEVENTS, None) }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Cancel whatever is still in flight and wait for it, so no memory the kernel may
        // write (abandoned buffers, the buffer ring) is freed under it.
        if self.in_flight_ops() == 0 {
            return;
        }
        let cancel_all = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(CANCEL);
        // SAFETY: a cancel points to nothing.
        unsafe { self.push(cancel_all) };
        let begun = Instant::now();
        while self.in_flight_ops() > 0 {
            if begun.elapsed() > DRAIN_LIMIT {
                // Leak what the kernel still holds rather than free it under it.
                let mut slots = self.slots.borrow_mut();
                for slot in &mut slots.slots {
                    std::mem::forget(slot.keep.take());
                }
                self.bufs.borrow_mut().leak();
                return;
            }
            // Abandon every slot, so completions free them.
            {
                let mut slots = self.slots.borrow_mut();
                for slot in slots.slots.iter_mut().filter(|s| s.state == State::Owned) {
                    slot.state = State::Abandoned;
                }
            }
            self.submit_and_reap(Some(Some(Duration::from_millis(50))));
        }
    }
}

/// A single-shot operation in flight, and the buffers it lent the kernel.
pub(crate) struct Op<T: 'static> {
    slot: u32,
    /// Its runtime's tag.
    tag: u32,
    keep: Option<T>,
}

/// A finished operation: the kernel's result (a count or `-errno`) and the buffers back.
#[derive(Debug)]
pub(crate) struct Completion<T> {
    pub(crate) res: i32,
    pub(crate) keep: T,
}

impl<T> Completion<T> {
    /// The result as a count or an error.
    pub(crate) fn result(&self) -> io::Result<u32> {
        if self.res < 0 { Err(io::Error::from_raw_os_error(-self.res)) } else { Ok(self.res as u32) }
    }
}

impl<T: 'static> Op<T> {
    /// Queues `sqe` on this thread's ring.
    ///
    /// # Safety
    /// Every pointer in `sqe` points into `keep` (at memory that does not move when `keep`
    /// moves: a heap allocation it owns) or at memory that outlives the operation, and every
    /// descriptor in it stays open until the completion.
    pub(crate) unsafe fn submit(sqe: squeue::Entry, keep: T) -> Op<T> {
        // SAFETY: forwarded from the caller; `keep` lives in the Op, then in the slot.
        let (slot, tag) =
            super::with_core(|core| (unsafe { core.ring().push_op(sqe, Yields::Counts) }, core.tag));
        Op { slot, tag, keep: Some(keep) }
    }
}

impl<T: 'static + Unpin> Future for Op<T> {
    type Output = Completion<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Completion<T>> {
        // Checked before the slot is touched: after the completion it may be another's.
        assert!(self.keep.is_some(), "an Op is not polled after it completed");
        let (slot, tag) = (self.slot, self.tag);
        let polled = super::with_own_core(tag, |core| core.ring().poll_next(slot, cx))
            .expect("an Op is polled on the runtime that submitted it");
        match polled {
            Poll::Ready(Some((res, _))) => {
                let keep = self.keep.take().expect("checked above");
                super::with_own_core(tag, |core| core.ring().release(slot, None));
                Poll::Ready(Completion { res, keep })
            }
            Poll::Ready(None) => unreachable!("a single-shot operation ends with its completion"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(keep) = self.keep.take() {
            let mut keep: Option<Box<dyn Any>> = Some(Box::new(keep));
            let slot = self.slot;
            let released = super::with_own_core(self.tag, |core| core.ring().release(slot, keep.take()));
            if released.is_none() {
                // Off its runtime (dropped outside `block_on`, in another runtime, or while
                // unwinding): the kernel may still write into these buffers, so they are
                // leaked, not freed. The runtime's own drop cancels the operation.
                std::mem::forget(keep);
            }
        }
    }
}

/// A multishot operation (accept, recv): its completions, one at a time.
pub(crate) struct Multishot {
    slot: u32,
    /// Its runtime's tag.
    tag: u32,
}

impl Multishot {
    /// Queues `sqe`, a multishot operation whose results are `yields`.
    ///
    /// # Safety
    /// As [`Op::submit`], with nothing kept: the entry points at nothing but descriptors
    /// that stay open until this handle is dropped and at the driver's buffer ring.
    pub(crate) unsafe fn submit(sqe: squeue::Entry, yields: Yields) -> Multishot {
        // SAFETY: forwarded from the caller.
        let (slot, tag) = super::with_core(|core| (unsafe { core.ring().push_op(sqe, yields) }, core.tag));
        Multishot { slot, tag }
    }

    /// The next completion; `Ready(None)` once the kernel ended the operation (its last
    /// completion was taken before).
    pub(crate) fn poll_next(&self, cx: &mut TaskContext<'_>) -> Poll<Option<(i32, u32)>> {
        self.on_own(|ring| ring.poll_next(self.slot, cx))
    }

    /// Whether a completion is queued.
    pub(crate) fn has_completion(&self) -> bool {
        self.on_own(|ring| ring.has_completion(self.slot))
    }

    /// Whether the next completion carries bytes.
    pub(crate) fn has_data_queued(&self) -> bool {
        self.on_own(|ring| ring.data_queued(self.slot))
    }

    /// Whether the kernel may still post completions.
    pub(crate) fn is_armed(&self) -> bool {
        self.on_own(|ring| ring.in_flight(self.slot))
    }

    fn on_own<R>(&self, f: impl FnOnce(&Driver) -> R) -> R {
        super::with_own_core(self.tag, |core| f(core.ring()))
            .expect("a multishot operation is used on the runtime that submitted it")
    }
}

impl Drop for Multishot {
    fn drop(&mut self) {
        // Off its runtime it stays armed until that runtime's drop cancels everything.
        let slot = self.slot;
        super::with_own_core(self.tag, |core| core.ring().release(slot, None));
    }
}

/// A provided-buffer ring (Linux 5.19): `count` buffers of `size` bytes in one allocation,
/// lent to the kernel through a registered ring of descriptors. A multishot recv takes
/// one per completion (its id is in the completion's flags); [`Driver::give_back`] returns
/// it once its bytes are copied out.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    mem: Vec<u8>,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    fn register(ring: &IoUring, group: u16, count: u16, size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "buffer ring: {count} buffers of {size} bytes (a power of two up to 32768, non-empty)"
                ),
            ));
        }
        let layout = Layout::from_size_align(usize::from(count) * size_of::<BufRingEntry>(), 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout's size is non-zero (count >= 1).
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer ring descriptors"));
        }
        // SAFETY: `entries` is a page-aligned, zeroed array of `count` descriptors; it stays
        // allocated until the ring is unregistered (`Drop`) or leaked.
        let registered = unsafe { ring.submitter().register_buf_ring(entries as u64, count, group) };
        if let Err(e) = registered {
            // SAFETY: allocated above with this layout and not registered.
            unsafe { dealloc(entries.cast(), layout) };
            return Err(io::Error::new(e.kind(), format!("provided-buffer ring (Linux 5.19): {e}")));
        }
        let mut bufs = BufRing {
            entries,
            layout,
            mem: vec![0u8; usize::from(count) * size as usize],
            count,
            size: size as usize,
            tail: 0,
        };
        for bid in 0..count {
            bufs.give_back(bid);
        }
        Ok(bufs)
    }

    fn buf(&self, bid: u16) -> &[u8] {
        assert!(bid < self.count, "buffer id {bid} out of the ring");
        // SAFETY: buffer `bid` lies inside `mem` (checked above); it came back with a
        // completion, so the kernel does not write it until it is given back. Only this
        // buffer is borrowed: the kernel may be writing others of `mem` meanwhile.
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(usize::from(bid) * self.size), self.size) }
    }

    fn give_back(&mut self, bid: u16) {
        debug_assert!(bid < self.count);
        let addr = self.mem.as_ptr() as u64 + u64::from(bid) * self.size as u64;
        // SAFETY: the descriptor index is masked into the ring; the tail word is the ring's
        // shared tail, published with release ordering after the descriptor is written, as
        // the kernel's reader expects.
        unsafe {
            let entry = &mut *self.entries.add(usize::from(self.tail & (self.count - 1)));
            entry.set_addr(addr);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            let tail = &*BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            tail.store(self.tail, Ordering::Release);
        }
    }

    /// Forgets the ring's memory (the kernel may still write it).
    fn leak(&mut self) {
        std::mem::forget(std::mem::take(&mut self.mem));
        self.entries = std::ptr::null_mut();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if !self.entries.is_null() {
            // SAFETY: allocated in `register` with this layout. The driver drains its
            // operations before dropping (or leaks this ring), and its ring field, dropped
            // before this one, unregistered the group when it closed.
            unsafe { dealloc(self.entries.cast(), self.layout) };
        }
    }
}
