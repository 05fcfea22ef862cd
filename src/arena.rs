//! Per-request bump arenas: the futures of a request (its middleware chain, the engine's
//! slow-path reads) and typed request values.
//!
//! This is the one module where ringo erases types by hand, so all of its `unsafe` lives
//! here. Both arenas are reset after every response, which keeps the steady state free
//! of heap allocation: a reset bump arena keeps its largest chunk.
//!
//! Invariant: arena memory is reused only when nothing can still reference it. The
//! borrow checker keeps every handle from outliving the arena (handles borrow it and
//! `reset` needs `&mut self`), but safe code may `mem::forget` a handle: its future is
//! then never dropped, and whatever it registered while polled (a timer entry in the
//! runtime's lists, a waker slot) keeps pointing into the arena. So `FutureArena`
//! counts live handles, and a `reset` that finds one still counted abandons its memory
//! (leaks the chunk, taking a fresh one) instead of reusing it. A leak is bounded by
//! what the forgetting code allocated and is counted in the shard's metrics
//! (`ringo_arena_abandoned_total`); memory that something may point into is never
//! handed out again.

use std::any::TypeId;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context as TaskContext, Poll};

use bumpalo::Bump;

/// Holds the futures of one request: its middleware chain, and the engine's reads of a
/// partial head or a body still on its way.
#[derive(Debug, Default)]
pub(crate) struct FutureArena {
    bump: Bump,
    /// Handles allocated and not yet dropped.
    ///
    /// Invariant: while it is above zero, some future in `bump` may still be referenced
    /// from outside (its handle was forgotten, or is still alive), so `bump`'s memory
    /// must not be reused.
    live: Cell<usize>,
}

/// What [`FutureArena::reset`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reset {
    /// Every handle was dropped: the memory is reused.
    Reused,
    /// A handle was never dropped (`mem::forget`): the memory was abandoned.
    Abandoned,
}

impl FutureArena {
    pub(crate) fn new() -> FutureArena {
        FutureArena { bump: Bump::with_capacity(1024), live: Cell::new(0) }
    }

    /// Moves `fut` into the arena and returns an owning, pinned handle to it.
    #[cfg(test)]
    pub(crate) fn alloc<'a, F>(&'a self, fut: F) -> ArenaFuture<'a>
    where
        F: Future<Output = ()> + 'a,
    {
        self.alloc_with(|| fut)
    }

    /// Builds the future `make` returns in the arena (inlined, the future is written in
    /// place rather than built on the stack and copied: the copies of a three-middleware
    /// chain were 90 instructions a request) and returns an owning, pinned handle to it.
    #[inline(always)]
    pub(crate) fn alloc_with<'a, F>(&'a self, make: impl FnOnce() -> F) -> ArenaFuture<'a>
    where
        F: Future<Output = ()> + 'a,
    {
        let slot: &'a mut F = self.bump.alloc_with(make);
        let erased: &'a mut (dyn Future<Output = ()> + 'a) = slot;
        self.live.set(self.live.get() + 1);
        ArenaFuture { ptr: NonNull::from(erased), live: &self.live }
    }

    /// Frees everything at once for reuse, unless a handle was never dropped: then the
    /// memory is abandoned (leaked) and a fresh chunk taken (see the module invariant).
    pub(crate) fn reset(&mut self) -> Reset {
        if self.live.get() == 0 {
            self.bump.reset();
            return Reset::Reused;
        }
        let forgotten = std::mem::replace(&mut self.bump, Bump::with_capacity(1024));
        // Leaked on purpose: a forgotten future's registrations may still point here.
        std::mem::forget(forgotten);
        self.live.set(0);
        Reset::Abandoned
    }
}

/// An owning handle to a future stored in a [`FutureArena`]; drops it in place.
pub(crate) struct ArenaFuture<'a> {
    /// Invariant: points to a live, initialised future inside the arena that no one
    /// else references, and that is never moved (bump memory stays put until `reset`).
    ptr: NonNull<dyn Future<Output = ()> + 'a>,
    /// The arena's live-handle count, decremented when this handle drops.
    live: &'a Cell<usize>,
}

impl Future for ArenaFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        // SAFETY: by the field invariant the pointee is live and exclusively ours, and
        // it never moves while the handle exists, so pinning it is sound.
        let fut = unsafe { Pin::new_unchecked(&mut *self.get_mut().ptr.as_ptr()) };
        fut.poll(cx)
    }
}

impl Drop for ArenaFuture<'_> {
    fn drop(&mut self) {
        // SAFETY: the pointee is live and owned by this handle alone; the arena never
        // runs destructors itself, so this is the one drop it gets.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        self.live.set(self.live.get() - 1);
    }
}

/// A typed value stored for one request (`Context::set` / `Context::get`).
struct Slot {
    type_id: TypeId,
    /// Invariant: points to a live `T` with `TypeId::of::<T>() == type_id`, in `bump`.
    ptr: NonNull<()>,
    /// `None` for a type with nothing to drop (the ids the default stack stores): no
    /// indirect call per value and request.
    drop_fn: Option<unsafe fn(NonNull<()>)>,
}

impl Slot {
    /// Drops the value.
    ///
    /// # Safety
    /// The slot must hold a live value (its invariant) that is not used again.
    unsafe fn drop_value(self) {
        if let Some(drop_fn) = self.drop_fn {
            // SAFETY: guaranteed by the caller; `drop_fn` is the drop of the slot's type.
            unsafe { drop_fn(self.ptr) };
        }
    }
}

/// Typed per-request values, one per type, stored in a bump arena.
#[derive(Default)]
pub(crate) struct ValueArena {
    bump: Bump,
    slots: Vec<Slot>,
}

impl std::fmt::Debug for ValueArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueArena").field("values", &self.slots.len()).finish()
    }
}

/// # Safety
/// `ptr` must point to a live `T` that is not used again.
unsafe fn drop_value<T>(ptr: NonNull<()>) {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ptr::drop_in_place(ptr.cast::<T>().as_ptr()) }
}

impl ValueArena {
    /// Stores `value`, replacing (and dropping) an earlier value of the same type.
    pub(crate) fn set<T: 'static>(&mut self, value: T) {
        let type_id = TypeId::of::<T>();
        let ptr = NonNull::from(self.bump.alloc(value)).cast::<()>();
        let drop_fn = std::mem::needs_drop::<T>().then_some(drop_value::<T> as unsafe fn(NonNull<()>));
        let slot = Slot { type_id, ptr, drop_fn };
        if let Some(old) = self.slots.iter_mut().find(|s| s.type_id == type_id) {
            let previous = std::mem::replace(old, slot);
            // SAFETY: `previous` held a live value of its type and is now unreachable.
            unsafe { previous.drop_value() };
        } else {
            self.slots.push(slot);
        }
    }

    /// The stored value of type `T`, if any.
    pub(crate) fn get<T: 'static>(&self) -> Option<&T> {
        let type_id = TypeId::of::<T>();
        let slot = self.slots.iter().find(|s| s.type_id == type_id)?;
        // SAFETY: the slot's type id is `T`'s, so the pointee is a live `T` (invariant).
        Some(unsafe { slot.ptr.cast::<T>().as_ref() })
    }

    /// The stored value of type `T`, mutably.
    pub(crate) fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        let type_id = TypeId::of::<T>();
        let slot = self.slots.iter_mut().find(|s| s.type_id == type_id)?;
        // SAFETY: as in `get`; `&mut self` makes the access exclusive.
        Some(unsafe { slot.ptr.cast::<T>().as_mut() })
    }

    /// Drops every value and frees the arena.
    pub(crate) fn reset(&mut self) {
        if self.slots.is_empty() {
            return;
        }
        for slot in self.slots.drain(..) {
            // SAFETY: each slot holds a live value that is dropped exactly once here.
            unsafe { slot.drop_value() };
        }
        self.bump.reset();
    }
}

impl Drop for ValueArena {
    fn drop(&mut self) {
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn values_are_typed_replaced_and_dropped() {
        let tracker = Rc::new(());
        let mut arena = ValueArena::default();
        arena.set(Rc::clone(&tracker));
        arena.set(7u32);
        arena.set(Rc::clone(&tracker)); // replaces, dropping the first clone
        assert_eq!(Rc::strong_count(&tracker), 2);
        assert_eq!(arena.get::<u32>(), Some(&7));
        *arena.get_mut::<u32>().expect("set") += 1;
        assert_eq!(arena.get::<u32>(), Some(&8));
        assert!(arena.get::<String>().is_none());
        arena.reset();
        assert_eq!(Rc::strong_count(&tracker), 1);
        assert!(arena.get::<u32>().is_none());
    }

    #[test]
    fn futures_run_and_drop_in_the_arena() {
        let tracker = Rc::new(());
        let mut arena = FutureArena::new();
        {
            let t = Rc::clone(&tracker);
            let fut = arena.alloc(async move {
                let _keep = t;
            });
            assert_eq!(Rc::strong_count(&tracker), 2);
            drop(fut); // never polled: still dropped
        }
        assert_eq!(Rc::strong_count(&tracker), 1);
        assert_eq!(arena.reset(), Reset::Reused);
    }

    #[test]
    fn a_forgotten_future_makes_the_arena_abandon_its_memory() {
        let mut arena = FutureArena::new();
        let first = {
            let fut = arena.alloc(async {});
            let at = fut.ptr.as_ptr() as *const u8 as usize;
            std::mem::forget(fut);
            at
        };
        // The forgotten future's memory must never be handed out again.
        assert_eq!(arena.reset(), Reset::Abandoned);
        let fut = arena.alloc(async {});
        let second = fut.ptr.as_ptr() as *const u8 as usize;
        drop(fut);
        assert_ne!(first, second, "abandoned memory was reused");
        assert_eq!(arena.reset(), Reset::Reused, "a clean request reuses again");
    }
}
