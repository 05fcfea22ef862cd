//! What the accept loop does when `accept` fails.
//!
//! Running out of descriptors (EMFILE for the process, ENFILE for the system) leaves
//! the pending connection in the listen queue, so the next accept fails again at once:
//! without care a shard spins, logs a line per try, and clients wait in the backlog
//! until they time out. The guard keeps one spare descriptor open; when descriptors run
//! out it closes the spare, accepts and closes what is queued (the clients get a fast
//! close instead of a timeout, counted as rejected), and takes the spare back. Failures
//! are logged at most once a second with the count of those not logged, and other
//! errors (ENOBUFS, ENOMEM) back off from 10 ms up to 1 s.
//!
//! Owns the spare descriptor and the log and back-off state of one shard's accept loop;
//! it never touches accepted connections.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// What the accept loop should do after a failed accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    /// Queued connections were accepted and closed (this many): accept again now.
    Closed(usize),
    /// Wait this long before accepting again.
    Wait(Duration),
}

/// Most queued connections shed per failure (the rest wait for the next round).
const SHED_MAX: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// One shard's accept-failure handling.
#[derive(Debug)]
pub(crate) struct AcceptGuard {
    shard: usize,
    /// The spare descriptor, given up to shed connections when descriptors run out.
    spare: Option<File>,
    backoff: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl AcceptGuard {
    pub(crate) fn new(shard: usize) -> AcceptGuard {
        AcceptGuard { shard, spare: open_spare(), backoff: BACKOFF_MIN, last_log: None, unlogged: 0 }
    }

    /// An accept succeeded: failures are over.
    pub(crate) fn accepted(&mut self) {
        self.backoff = BACKOFF_MIN;
        if self.spare.is_none() {
            self.spare = open_spare();
        }
    }

    /// An accept on `listener` failed with `e`.
    pub(crate) fn failed(&mut self, e: &io::Error, listener: RawFd) -> Shed {
        self.log(e);
        let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
        if out_of_fds {
            if let Some(spare) = self.spare.take() {
                drop(spare);
                let shed = crate::sys::accept_and_close(listener, SHED_MAX);
                self.spare = open_spare();
                if shed > 0 {
                    return Shed::Closed(shed);
                }
            }
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Shed::Wait(pause)
    }

    fn log(&mut self, e: &io::Error) {
        let now = Instant::now();
        match self.last_log {
            Some(at) if now.duration_since(at) < LOG_EVERY => self.unlogged += 1,
            _ => {
                tracing::warn!(shard = self.shard, error = %e, not_logged = self.unlogged, "accept failed");
                self.last_log = Some(now);
                self.unlogged = 0;
            }
        }
    }
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}
