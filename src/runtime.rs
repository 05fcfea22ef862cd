//! ringo's runtime for threads that are not shards: programs, tools and tests that use
//! ringo's clients (Redis, upstream HTTP) or sockets on a thread of their own.
//!
//! It is the runtime every shard runs (`src/rt`: one thread, io_uring or epoll), with the
//! same fallback rule as the server's `auto` backend: io_uring where the kernel allows it,
//! else epoll. A `Runtime` and everything spawned on it stay on the thread that built it.
//!
//! ```
//! let mut rt = ringo::runtime::Runtime::new().expect("a runtime");
//! let doubled = rt.block_on(async {
//!     let task = ringo::runtime::spawn(async { 21 });
//!     task.await * 2
//! });
//! assert_eq!(doubled, 42);
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::IoBackend;
use crate::rt;

/// A single-threaded runtime: [`block_on`](Runtime::block_on) runs a future, with the
/// tasks it [`spawn`]s, on the calling thread.
#[derive(Debug)]
pub struct Runtime {
    inner: rt::Runtime,
}

impl Runtime {
    /// A runtime on io_uring where the kernel allows it (Linux 6.1), else on epoll.
    pub fn new() -> io::Result<Runtime> {
        Runtime::with_backend(IoBackend::Auto)
    }

    /// A runtime on the given backend; `Uring` fails with the kernel's reason where
    /// io_uring is unavailable, `Auto` falls back to epoll.
    pub fn with_backend(backend: IoBackend) -> io::Result<Runtime> {
        Ok(Runtime { inner: crate::server::backend::runtime(backend)? })
    }

    /// The backend it runs on (`Uring` or `Epoll`).
    pub fn backend(&self) -> IoBackend {
        crate::server::backend::backend_of(&self.inner)
    }

    /// Runs `future` to completion on this thread, with the tasks it spawns. Tasks still
    /// running when it completes are dropped with the runtime (or run on at the next
    /// `block_on`).
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        self.inner.block_on(future)
    }
}

/// Spawns a task on the current thread's runtime (a shard's, or a [`Runtime`]'s inside
/// `block_on`). Awaiting the handle gives the task's output; dropping it detaches the
/// task. A task that panics takes its runtime's thread down with it: a handler's own
/// work belongs in `Context::spawn`, which contains panics.
///
/// # Panics
/// Outside a runtime.
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    JoinHandle { inner: rt::executor::spawn_with_handle(task) }
}

/// The output of a task started with [`spawn`].
#[derive(Debug)]
pub struct JoinHandle<T> {
    inner: rt::executor::JoinHandle<T>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<T> {
        Pin::new(&mut self.inner).poll(cx)
    }
}
