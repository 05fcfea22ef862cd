//! A global allocator that counts allocations per thread, for the zero-allocation
//! tests. A test crate installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and reads its own thread's
//! count with [`allocations`] (on a shard's thread, through a probe route), so other
//! threads' allocations never mix in. [`record_first`] arms a recorder: the next
//! allocation on the thread leaves its backtrace for [`first_recorded`], so a failing
//! test says where the allocation came from.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

/// Forwards to the system allocator, counting allocations on the calling thread.
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Whether the next allocation records its backtrace.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Set while a backtrace is taken: its own allocations are not counted.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static FIRST: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn count() {
    if RECORDING.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    if ARMED.try_with(|a| a.replace(false)).unwrap_or(false) {
        RECORDING.with(|r| r.set(true));
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        FIRST.with(|f| *f.borrow_mut() = Some(trace));
        RECORDING.with(|r| r.set(false));
    }
}

/// Arms the recorder: the next allocation on this thread keeps its backtrace (and
/// forgets the one kept before).
pub fn record_first() {
    FIRST.with(|f| f.borrow_mut().take());
    ARMED.with(|a| a.set(true));
}

/// The backtrace of the first allocation since [`record_first`], if one happened.
pub fn first_recorded() -> Option<String> {
    RECORDING.with(|r| r.set(true));
    let first = FIRST.with(|f| f.borrow().clone());
    RECORDING.with(|r| r.set(false));
    first
}

/// Allocations (including reallocations) this thread has made so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches
// only a const-initialised thread-local cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
