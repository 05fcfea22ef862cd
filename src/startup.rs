//! Work a shard finishes before it reports ready: `ringo::startup::before_ready`.
//!
//! The app factory (running on the shard's thread) registers futures — a cache
//! preheat, a connection warm-up — in a thread-local list; the shard runs them on its
//! runtime after the router is built and before it reports ready, so `Server::start`
//! returns, and `/readyz` answers 200, only once every shard's are done. Each task
//! says what happens when it fails: [`OnFailure::FailStart`] stops the server's start
//! with the task's error, [`OnFailure::StartCold`] logs it and serves anyway.
//!
//! Owns the list; the tasks are the factory's.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

/// What a failed start-up task does to the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The server does not start; `Server::start` returns the task's error.
    #[default]
    #[serde(rename = "fail")]
    FailStart,
    /// The failure is logged and the shard serves without it (a cold cache).
    #[serde(rename = "cold")]
    StartCold,
}

type Task = Pin<Box<dyn Future<Output = Result<String, String>>>>;

thread_local! {
    static TASKS: RefCell<Vec<(String, OnFailure, Task)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `task` on this shard before it reports ready (call it from the app factory).
/// `Ok(summary)` is logged (e.g. "5000 keys"); `Err(reason)` follows `on_failure`.
pub fn before_ready<F>(name: &str, on_failure: OnFailure, task: F)
where
    F: Future<Output = Result<String, String>> + 'static,
{
    TASKS.with_borrow_mut(|t| t.push((name.to_owned(), on_failure, Box::pin(task))));
}

/// Runs this thread's registered tasks in order; the first failure that must stop
/// the start, as `(task name, reason)`.
pub(crate) async fn run_registered(shard: usize) -> Result<(), (String, String)> {
    let tasks = TASKS.with_borrow_mut(std::mem::take);
    for (name, on_failure, task) in tasks {
        let began = std::time::Instant::now();
        tracing::info!(shard, task = %name, "start-up task running before the shard reports ready");
        match task.await {
            Ok(summary) => {
                tracing::info!(shard, task = %name, %summary, ms = began.elapsed().as_millis() as u64, "start-up task done");
            }
            Err(reason) if on_failure == OnFailure::StartCold => {
                tracing::warn!(shard, task = %name, %reason, "start-up task failed; serving without it");
            }
            Err(reason) => return Err((name, reason)),
        }
    }
    Ok(())
}
