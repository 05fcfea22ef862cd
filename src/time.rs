//! Timers for handlers and background tasks, on the current shard's runtime.
//!
//! Thin wrappers, so user code never names the runtime's types.

use std::future::Future;
use std::time::Duration;

/// Waits for `duration` without blocking the shard.
pub async fn sleep(duration: Duration) {
    monoio::time::sleep(duration).await;
}

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `fut`, giving up after `duration`.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    monoio::time::timeout(duration, fut).await.map_err(|_| Elapsed)
}
