//! Timers and task spawning for handlers, background tasks and the engine, on the current
//! shard's runtime.
//!
//! Thin wrappers over the shard runtime (`src/rt`, which every shard and every
//! [`Runtime`](crate::runtime::Runtime) runs), so user code never names its types.

use std::future::Future;
use std::time::Duration;

/// Waits for `duration` without blocking the shard.
pub async fn sleep(duration: Duration) {
    crate::rt::sleep(duration).await;
}

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `fut`, giving up after `duration` (the future is dropped, cancelling what it had
/// in flight).
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    crate::rt::timeout(duration, fut).await.map_err(|_| Elapsed)
}

/// Spawns a task on the current shard's runtime; it runs detached until it completes or
/// the runtime ends.
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) {
    crate::rt::spawn(task);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// The same calls on each runtime: a spawned task, a sleep, a timeout that passes and
    /// one that expires.
    async fn exercise() -> (bool, Result<u8, Elapsed>, Result<(), Elapsed>) {
        let ran = Rc::new(Cell::new(false));
        let flag = Rc::clone(&ran);
        spawn(async move { flag.set(true) });
        sleep(Duration::from_millis(2)).await;
        let quick = timeout(Duration::from_secs(5), async { 7u8 }).await;
        let slow = timeout(Duration::from_millis(2), sleep(Duration::from_secs(3600))).await;
        (ran.get(), quick, slow)
    }

    #[test]
    fn they_serve_both_drivers_alike() {
        let expected = (true, Ok(7), Err(Elapsed));
        for backend in [crate::rt::Backend::Uring, crate::rt::Backend::Epoll] {
            let config = crate::rt::RuntimeConfig { backend, ..crate::rt::RuntimeConfig::default() };
            let mut rt = crate::rt::Runtime::new(config).expect("shard runtime");
            assert_eq!(rt.block_on(exercise()), expected, "{backend:?}");
        }
    }
}
