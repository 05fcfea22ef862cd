//! The io backend: io_uring or epoll, chosen once, in this module only.
//!
//! Everything above this module is written against monoio's driver-agnostic types; the
//! one `match` on the driver is [`block_on`]. `auto` probes io_uring by building a ring
//! and falls back to epoll when the kernel refuses (sysctl `kernel.io_uring_disabled`,
//! a seccomp filter, an old kernel, a memlock limit), saying why in one log line.

use std::future::Future;
use std::io;

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
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

/// Submission queue size of each shard's ring.
const RING_ENTRIES: u32 = 1024;

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

/// Builds (and drops) an io_uring runtime; the error says why it failed.
fn probe_uring() -> Result<(), String> {
    match RuntimeBuilder::<IoUringDriver>::new().with_entries(RING_ENTRIES).build() {
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

/// Ring set-up flags for a thread-per-core ring: one thread submits (SINGLE_ISSUER), and
/// completions need not interrupt it (COOP_TASKRUN): task work runs when the shard next
/// enters the kernel, which it does every loop.
fn tuned_ring() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_coop_taskrun().setup_single_issuer();
    b
}

/// Runs `fut` to completion on a new runtime of the given (resolved) backend, on the
/// calling thread.
pub(crate) fn block_on<F: Future>(backend: IoBackend, fut: F) -> io::Result<F::Output> {
    match backend {
        IoBackend::Uring | IoBackend::Auto => {
            let tuned = RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(RING_ENTRIES)
                .uring_builder(tuned_ring())
                .enable_timer()
                .build();
            let mut rt = match tuned {
                Ok(rt) => rt,
                // Kernels before 6.0 refuse the setup flags: plain ring then.
                Err(_) => RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(RING_ENTRIES)
                    .enable_timer()
                    .build()?,
            };
            Ok(rt.block_on(fut))
        }
        IoBackend::Epoll => {
            let mut rt = RuntimeBuilder::<LegacyDriver>::new().enable_timer().build()?;
            Ok(rt.block_on(fut))
        }
    }
}
