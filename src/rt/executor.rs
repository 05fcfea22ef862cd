//! The executor: a slab of boxed tasks, a FIFO of the ids that are ready (each queued at
//! most once), and wakers that carry a task id and the runtime's tag, so waking costs a
//! push and never an allocation or a reference count.
//!
//! A task is taken out of its slot while it is polled, so it can spawn (the slab grows)
//! and wake itself (its id is queued again) without a borrow held across the poll. A waker
//! that outlives its task may wake a later task given the same slot: a spurious poll,
//! which every future tolerates.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, RawWaker, RawWakerVTable, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The task id of the future given to `block_on`.
const MAIN: u32 = u32::MAX;

/// One runtime's tasks.
#[derive(Default)]
pub(crate) struct Executor {
    tasks: RefCell<Vec<Option<Task>>>,
    /// Whether each slot's id is in `ready` (so it is queued once).
    queued: RefCell<Vec<bool>>,
    free: RefCell<Vec<u32>>,
    ready: RefCell<VecDeque<u32>>,
    main_woken: Cell<bool>,
    live: Cell<usize>,
}

impl Executor {
    /// Adds a task and queues it.
    pub(crate) fn spawn(&self, task: Task) {
        let id = {
            let mut tasks = self.tasks.borrow_mut();
            match self.free.borrow_mut().pop() {
                Some(id) => {
                    tasks[id as usize] = Some(task);
                    id
                }
                None => {
                    tasks.push(Some(task));
                    self.queued.borrow_mut().push(false);
                    (tasks.len() - 1) as u32
                }
            }
        };
        self.live.set(self.live.get() + 1);
        self.schedule(id);
    }

    /// Queues task `id` unless it is queued already.
    pub(crate) fn schedule(&self, id: u32) {
        if id == MAIN {
            self.main_woken.set(true);
            return;
        }
        let mut queued = self.queued.borrow_mut();
        if let Some(q) = queued.get_mut(id as usize)
            && !*q
        {
            *q = true;
            self.ready.borrow_mut().push_back(id);
        }
    }

    pub(crate) fn wake_main(&self) {
        self.main_woken.set(true);
    }

    pub(crate) fn main_woken(&self) -> bool {
        self.main_woken.get()
    }

    pub(crate) fn take_main_woken(&self) -> bool {
        self.main_woken.replace(false)
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty()
    }

    /// Tasks spawned and not finished.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.get()
    }

    /// Polls the tasks that are ready now, once each; what they wake waits for the next
    /// batch, so completions are reaped between batches even when tasks keep waking each
    /// other.
    pub(crate) fn run_ready_batch(&self, tag: u32) {
        let batch = self.ready.borrow().len();
        for _ in 0..batch {
            let Some(id) = self.ready.borrow_mut().pop_front() else { return };
            if let Some(q) = self.queued.borrow_mut().get_mut(id as usize) {
                *q = false;
            }
            let Some(mut task) = self.tasks.borrow_mut().get_mut(id as usize).and_then(Option::take) else {
                continue;
            };
            let waker = waker(tag, id);
            let mut cx = TaskContext::from_waker(&waker);
            if task.as_mut().poll(&mut cx).is_ready() {
                // Dropped here, outside any borrow: its drop may spawn or cancel.
                drop(task);
                self.free.borrow_mut().push(id);
                self.live.set(self.live.get() - 1);
            } else {
                self.tasks.borrow_mut()[id as usize] = Some(task);
            }
        }
    }

    /// Drops every task (the runtime ends). A task's drop may spawn: repeated until none
    /// is left.
    pub(crate) fn drop_all(&self) {
        loop {
            let tasks: Vec<Task> = self.tasks.borrow_mut().iter_mut().filter_map(Option::take).collect();
            if tasks.is_empty() {
                break;
            }
            drop(tasks);
        }
        self.ready.borrow_mut().clear();
        self.live.set(0);
    }
}

/// Spawns a task on this thread's runtime. It runs until it completes or the runtime is
/// dropped.
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) {
    let task: Task = Box::pin(task);
    super::with_core(|core| core.exec.spawn(task));
}

/// Spawns a task whose output is awaited through the returned handle. Dropping the
/// handle detaches the task: it runs on, and its output is dropped when it comes.
pub(crate) fn spawn_with_handle<T: 'static>(task: impl Future<Output = T> + 'static) -> JoinHandle<T> {
    let state = Rc::new(RefCell::new(Join { out: None, waiter: None }));
    let shared = Rc::clone(&state);
    spawn(async move {
        let out = task.await;
        let waiter = {
            let mut join = shared.borrow_mut();
            join.out = Some(out);
            join.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    });
    JoinHandle { state }
}

/// The output of a task spawned with [`spawn_with_handle`], once it completes.
pub(crate) struct JoinHandle<T> {
    state: Rc<RefCell<Join<T>>>,
}

struct Join<T> {
    out: Option<T>,
    waiter: Option<Waker>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("done", &self.state.borrow().out.is_some()).finish()
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> std::task::Poll<T> {
        let mut join = self.state.borrow_mut();
        match join.out.take() {
            Some(out) => std::task::Poll::Ready(out),
            None => {
                join.waiter = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// The waker of `block_on`'s future.
pub(crate) fn main_waker(tag: u32) -> Waker {
    waker(tag, MAIN)
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop_waker);

fn pack(tag: u32, id: u32) -> *const () {
    ((u64::from(tag) << 32) | u64::from(id)) as usize as *const ()
}

fn waker(tag: u32, id: u32) -> Waker {
    // SAFETY: the data is a runtime tag and a task id packed in a pointer-sized integer,
    // never dereferenced: clone copies it, drop does nothing, wake queues the id on this
    // thread's runtime if the tag is its own. The vtable's functions uphold RawWaker's
    // contract (they are thread-safe: a wake on another thread finds no runtime, or
    // another tag, and does nothing).
    unsafe { Waker::from_raw(RawWaker::new(pack(tag, id), &VTABLE)) }
}

fn clone(data: *const ()) -> RawWaker {
    RawWaker::new(data, &VTABLE)
}

fn wake(data: *const ()) {
    let packed = data as usize as u64;
    let (tag, id) = ((packed >> 32) as u32, packed as u32);
    let delivered = super::CURRENT.with(|current| match current.try_borrow() {
        Ok(current) => match current.as_ref() {
            Some(core) if core.tag == tag => {
                core.exec.schedule(id);
                true
            }
            _ => false,
        },
        Err(_) => false,
    });
    debug_assert!(delivered, "a ringo runtime's waker was woken off its runtime's thread");
}

fn drop_waker(_: *const ()) {}

#[cfg(test)]
mod tests {
    use super::super::tests::runtime;
    use super::*;
    use std::future::poll_fn;
    use std::rc::Rc;
    use std::task::Poll;

    /// A future that is pending `n` times, waking itself each time.
    async fn yield_times(n: usize) {
        let mut left = n;
        poll_fn(|cx| {
            if left == 0 {
                return Poll::Ready(());
            }
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
        .await
    }

    #[test]
    fn tasks_interleave_in_wake_order_and_slots_are_reused() {
        let mut rt = runtime();
        let order = Rc::new(RefCell::new(Vec::new()));
        rt.block_on({
            let order = Rc::clone(&order);
            async move {
                for name in ["a", "b"] {
                    let order = Rc::clone(&order);
                    spawn(async move {
                        for step in 0..3 {
                            order.borrow_mut().push(format!("{name}{step}"));
                            yield_times(1).await;
                        }
                    });
                }
                yield_times(10).await;
                // Both finished: their slots are free, and new tasks take them.
                let slots = super::super::with_core(|core| core.exec.tasks.borrow().len());
                spawn(async {});
                spawn(async {});
                yield_times(2).await;
                let after =
                    super::super::with_core(|core| (core.exec.tasks.borrow().len(), core.exec.live()));
                assert_eq!(after, (slots, 0));
            }
        });
        assert_eq!(*order.borrow(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
    }

    #[test]
    fn a_join_handle_gives_the_output_and_a_dropped_one_detaches() {
        let mut rt = runtime();
        let ran = Rc::new(Cell::new(false));
        let out = rt.block_on({
            let ran = Rc::clone(&ran);
            async move {
                let handle = spawn_with_handle(async {
                    yield_times(3).await;
                    21 * 2
                });
                // Dropped at once: the task still runs to its end.
                drop(spawn_with_handle(async move {
                    yield_times(2).await;
                    ran.set(true);
                }));
                handle.await
            }
        });
        assert_eq!(out, 42);
        assert!(ran.get(), "the detached task ran");
    }

    #[test]
    fn a_waker_woken_twice_queues_its_task_once() {
        let mut rt = runtime();
        let polls = Rc::new(Cell::new(0));
        rt.block_on({
            let polls = Rc::clone(&polls);
            async move {
                let stored: Rc<RefCell<Option<Waker>>> = Rc::default();
                let slot = Rc::clone(&stored);
                let counted = Rc::clone(&polls);
                spawn(poll_fn(move |cx| {
                    counted.set(counted.get() + 1);
                    *slot.borrow_mut() = Some(cx.waker().clone());
                    if counted.get() >= 2 { Poll::Ready(()) } else { Poll::Pending }
                }));
                yield_times(1).await;
                let waker = stored.borrow_mut().take().expect("the task ran");
                waker.wake_by_ref();
                waker.wake();
                yield_times(3).await;
            }
        });
        assert_eq!(polls.get(), 2);
    }

    #[test]
    fn a_task_that_keeps_waking_itself_does_not_starve_the_others() {
        let mut rt = runtime();
        let done = rt.block_on(async {
            let stop = Rc::new(Cell::new(false));
            let flag = Rc::clone(&stop);
            spawn(async move {
                while !flag.get() {
                    yield_times(1).await;
                }
            });
            // Needs the timers and the ring to be served between the spinner's polls.
            super::super::sleep(std::time::Duration::from_millis(2)).await;
            stop.set(true);
            true
        });
        assert!(done);
    }
}
