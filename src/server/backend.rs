//! The io backend: io_uring or epoll, chosen once, in this module only.
//!
//! Everything above this module is written against the shard runtime's driver-agnostic
//! sockets (`crate::rt`, whose `net` module holds the one `match` on the driver); here the
//! backend becomes a runtime, in [`block_on`]. `auto` probes io_uring by building a ring
//! and falls back to epoll when the kernel refuses (sysctl `kernel.io_uring_disabled`,
//! a seccomp filter, an old kernel, a memlock limit), saying why in one log line.

use std::future::Future;
use std::io;

use crate::rt::{Backend, Runtime, RuntimeConfig};
use serde::{Deserialize, Serialize};

/// Which io driver the shards run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring, or refuse to start.
    Uring,
    /// epoll (readiness-based), always available.
    Epoll,
}

impl IoBackend {
    /// The name used in flags, config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::Auto => "auto",
            IoBackend::Uring => "uring",
            IoBackend::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for IoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shard runtime's set-up for a (resolved) backend.
fn runtime_config(backend: IoBackend) -> RuntimeConfig {
    let backend = match backend {
        IoBackend::Uring | IoBackend::Auto => Backend::Uring,
        IoBackend::Epoll => Backend::Epoll,
    };
    RuntimeConfig { backend, ..RuntimeConfig::default() }
}

/// A runtime on `requested`: `Auto` tries io_uring and takes epoll when the kernel
/// refuses it (quietly: for threads that are not shards, see `ringo::runtime`).
pub(crate) fn runtime(requested: IoBackend) -> io::Result<Runtime> {
    match requested {
        IoBackend::Auto => Runtime::new(runtime_config(IoBackend::Uring))
            .or_else(|_| Runtime::new(runtime_config(IoBackend::Epoll))),
        concrete => Runtime::new(runtime_config(concrete)),
    }
}

/// The backend a runtime runs on.
pub(crate) fn backend_of(runtime: &Runtime) -> IoBackend {
    match runtime.backend() {
        Backend::Uring => IoBackend::Uring,
        Backend::Epoll => IoBackend::Epoll,
    }
}

/// Resolves `auto` to a concrete backend. `Err` only when `uring` was demanded and the
/// kernel refuses it; the string is the reason.
pub(crate) fn resolve(requested: IoBackend) -> Result<IoBackend, String> {
    match requested {
        IoBackend::Epoll => Ok(IoBackend::Epoll),
        IoBackend::Uring => probe_uring().map(|()| IoBackend::Uring),
        IoBackend::Auto => match probe_uring() {
            Ok(()) => Ok(IoBackend::Uring),
            Err(reason) => {
                tracing::warn!("io_uring unavailable ({reason}); falling back to epoll");
                Ok(IoBackend::Epoll)
            }
        },
    }
}

/// Builds (and drops) an io_uring runtime as a shard sets it up (`SINGLE_ISSUER`,
/// `DEFER_TASKRUN`, a provided-buffer ring: Linux 6.1); the error says why it failed.
fn probe_uring() -> Result<(), String> {
    match Runtime::new(runtime_config(IoBackend::Uring)) {
        Ok(_) => Ok(()),
        Err(e) => {
            let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| s != "0");
            Err(match sysctl {
                Some(v) => format!("{e}; sysctl kernel.io_uring_disabled = {v}"),
                None => e.to_string(),
            })
        }
    }
}

/// Runs `fut` to completion on a new shard runtime of the given (resolved) backend, on
/// the calling thread.
pub(crate) fn block_on<F: Future>(backend: IoBackend, fut: F) -> io::Result<F::Output> {
    Ok(runtime(backend)?.block_on(fut))
}
