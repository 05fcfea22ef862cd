//! Timers: [`sleep`], [`sleep_until`] and [`timeout`].
//!
//! A connection's read and write deadlines do not use them (they stay in its `Watch`,
//! swept on a tick); these serve tickers, backoffs, client and handler deadlines. They
//! live in an indexed binary heap: a slab of entries (deadline, insertion order, waker,
//! position in the heap) and a heap of slab indices ordered by (deadline, order), each
//! entry knowing its position, so a timer dropped early is removed at once in O(log n)
//! and nothing stale accumulates. Slots and the heap keep their capacity: once grown, a
//! timer allocates nothing. The loop waits for the first deadline in the same wait that
//! waits for I/O.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

struct Entry {
    deadline: Instant,
    /// Insertion order: equal deadlines fire in the order they were set.
    seq: u64,
    waker: Option<Waker>,
    /// Index in `heap` while pending.
    pos: usize,
}

/// A runtime's pending timers.
#[derive(Default)]
pub(crate) struct Timers {
    entries: Vec<Entry>,
    free: Vec<u32>,
    /// Entry indices, a binary min-heap by (deadline, seq).
    heap: Vec<u32>,
    next_seq: u64,
}

impl Timers {
    fn key(&self, at: usize) -> (Instant, u64) {
        let e = &self.entries[self.heap[at] as usize];
        (e.deadline, e.seq)
    }

    fn place(&mut self, at: usize, index: u32) {
        self.heap[at] = index;
        self.entries[index as usize].pos = at;
    }

    fn sift_up(&mut self, mut at: usize) {
        let index = self.heap[at];
        let key = self.key(at);
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.key(parent) <= key {
                break;
            }
            let moved = self.heap[parent];
            self.place(at, moved);
            at = parent;
        }
        self.place(at, index);
    }

    fn sift_down(&mut self, mut at: usize) {
        let index = self.heap[at];
        let key = self.key(at);
        loop {
            let left = 2 * at + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child =
                if right < self.heap.len() && self.key(right) < self.key(left) { right } else { left };
            if key <= self.key(child) {
                break;
            }
            let moved = self.heap[child];
            self.place(at, moved);
            at = child;
        }
        self.place(at, index);
    }

    fn insert(&mut self, deadline: Instant, waker: Waker) -> u32 {
        self.next_seq += 1;
        let entry = Entry { deadline, seq: self.next_seq, waker: Some(waker), pos: self.heap.len() };
        let index = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = entry;
                i
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.heap.push(index);
        self.sift_up(self.heap.len() - 1);
        index
    }

    /// Takes entry `index` out of the heap (it must be pending) and frees its slot; its
    /// waker.
    fn remove(&mut self, index: u32) -> Option<Waker> {
        let at = self.entries[index as usize].pos;
        let last = self.heap.pop().expect("a pending timer is in the heap");
        if at < self.heap.len() {
            self.place(at, last);
            self.sift_down(at);
            let at = self.entries[last as usize].pos;
            self.sift_up(at);
        }
        self.free.push(index);
        self.entries[index as usize].waker.take()
    }

    fn pending(&self, index: u32, seq: u64) -> bool {
        self.entries.get(index as usize).is_some_and(|e| e.seq == seq && e.waker.is_some())
    }

    /// Wakes the timers due by `now`.
    pub(crate) fn fire(&mut self, now: Instant) {
        while let Some(&first) = self.heap.first() {
            if self.entries[first as usize].deadline > now {
                break;
            }
            if let Some(waker) = self.remove(first) {
                waker.wake();
            }
        }
    }

    /// The earliest deadline, if any timer is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.first().map(|&i| self.entries[i as usize].deadline)
    }

    /// Timers pending.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.entries.clear();
        self.free.clear();
    }
}

/// A future that completes at its deadline (see [`sleep`]).
#[derive(Debug)]
pub(crate) struct Sleep {
    deadline: Instant,
    /// Its entry (runtime tag, index, sequence number) while registered.
    registered: Option<(u32, u32, u64)>,
}

/// Completes after `duration`.
pub(crate) fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Completes at `deadline` (at once if it has passed).
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, registered: None }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let registered = self.registered;
        super::with_core(|core| {
            let mut timers = core.timers.borrow_mut();
            let pending = registered
                .filter(|&(tag, index, seq)| tag == core.tag && timers.pending(index, seq))
                .map(|(_, index, seq)| (index, seq));
            if Instant::now() >= deadline {
                if let Some((index, _)) = pending {
                    timers.remove(index);
                }
                self.registered = None;
                return Poll::Ready(());
            }
            match pending {
                Some((index, _)) => {
                    if let Some(waker) = &mut timers.entries[index as usize].waker {
                        waker.clone_from(cx.waker());
                    }
                }
                // Not registered yet, or fired by a loop clock read a little before the
                // deadline was reached by ours: register (again).
                None => {
                    let index = timers.insert(deadline, cx.waker().clone());
                    self.registered = Some((core.tag, index, timers.entries[index as usize].seq));
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((tag, index, seq)) = self.registered {
            // Only on its own runtime; a runtime being dropped clears its timers itself.
            super::with_own_core(tag, |core| {
                if let Ok(mut timers) = core.timers.try_borrow_mut()
                    && timers.pending(index, seq)
                {
                    timers.remove(index);
                }
            });
        }
    }
}

/// The deadline of a [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub(crate) struct Elapsed;

pin_project_lite::pin_project! {
    /// `future`, or [`Elapsed`] at the deadline (see [`timeout`]).
    #[derive(Debug)]
    pub(crate) struct Timeout<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
    }
}

/// Runs `future` for at most `duration`; at the deadline it is dropped (cancelling its
/// operations) and the result is [`Elapsed`].
pub(crate) fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.sleep.poll(cx).map(|()| Err(Elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{spawn, tests::runtime, with_core};
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn sleeps_end_in_deadline_order_and_never_early() {
        let mut rt = runtime();
        let order = Rc::new(RefCell::new(Vec::new()));
        let start = Instant::now();
        rt.block_on({
            let order = Rc::clone(&order);
            async move {
                for ms in [30u64, 10, 20] {
                    let order = Rc::clone(&order);
                    spawn(async move {
                        let begun = Instant::now();
                        sleep(Duration::from_millis(ms)).await;
                        assert!(begun.elapsed() >= Duration::from_millis(ms), "woke early");
                        order.borrow_mut().push(ms);
                    });
                }
                sleep(Duration::from_millis(40)).await;
            }
        });
        assert_eq!(*order.borrow(), [10, 20, 30]);
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_timeout_ends_a_pending_future_and_forgets_its_timer() {
        let mut rt = runtime();
        rt.block_on(async {
            let slow = timeout(Duration::from_millis(5), sleep(Duration::from_secs(3600))).await;
            assert_eq!(slow, Err(Elapsed));
            let quick = timeout(Duration::from_secs(3600), async { 5 }).await;
            assert_eq!(quick, Ok(5));
            // Both futures are gone, and so are their timers.
            assert_eq!(with_core(|core| core.timers.borrow().len()), 0);
        });
    }

    #[test]
    fn the_heap_orders_any_mix_of_inserts_and_removals() {
        // A deterministic shuffle of deadlines; every third timer dropped before it fires.
        let mut rt = runtime();
        rt.block_on(async {
            let base = Instant::now() + Duration::from_secs(3600);
            let waker = std::task::Waker::noop().clone();
            let mut timers = Timers::default();
            let mut live = Vec::new();
            for i in 0..500u64 {
                let at = base + Duration::from_millis((i * 7919) % 1000);
                let index = timers.insert(at, waker.clone());
                if i % 3 == 0 {
                    timers.remove(index);
                } else {
                    live.push(at);
                }
            }
            live.sort();
            let mut fired = Vec::new();
            while let Some(next) = timers.next_deadline() {
                fired.push(next);
                timers.fire(next);
            }
            fired.dedup();
            live.dedup();
            assert_eq!(fired, live);
            assert_eq!(timers.len(), 0);
            // Slots are reused: inserting again does not grow the slab.
            let slots = timers.entries.len();
            for i in 0..100 {
                timers.insert(base + Duration::from_millis(i), waker.clone());
            }
            assert_eq!(timers.entries.len(), slots);
        });
    }

    #[test]
    fn a_past_deadline_is_ready_at_once() {
        let mut rt = runtime();
        rt.block_on(async {
            let begun = Instant::now();
            sleep_until(begun - Duration::from_millis(1)).await;
            sleep(Duration::ZERO).await;
            assert!(begun.elapsed() < Duration::from_secs(1));
        });
    }
}
