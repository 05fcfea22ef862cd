//! `AccessLogSink`: the one thread that writes access-log lines, off every shard.
//!
//! Shards never write a log line themselves. Each shard's logger formats lines into its
//! own buffer and hands full buffers (batches) to this thread over its own bounded
//! channel, so shards share no lock and no contended atomic; the thread writes each
//! batch with one `write`, and sends the emptied buffer back for reuse (steady state
//! allocates nothing). When the writer falls behind (a slow disk, a pipe nobody reads),
//! a shard's channel fills and the shard drops the batch and counts its lines: requests
//! are never slowed by logging.
//!
//! Output is stdout or a file opened for appending; a file is reopened on SIGHUP (what
//! logrotate's `postrotate` sends). The file is opened on the writer thread, so even an
//! open that blocks (a FIFO) never holds up a shard or the caller.
//!
//! Owns the writer thread and its output. Never touches a shard's buffers except the
//! batches handed to it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Select, Sender, TrySendError, bounded, unbounded};

/// Batches a shard may have queued before it starts dropping.
pub(crate) const QUEUE_BATCHES: usize = 16;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// The process's standard output.
    Stdout,
    /// A file, created if missing, appended to, reopened on SIGHUP.
    File(PathBuf),
}

/// One shard's two channels to the writer.
pub(crate) struct ShardChannel {
    /// Full batches, to the writer.
    pub(crate) batches: Sender<Vec<u8>>,
    /// Written batches, back for reuse.
    pub(crate) recycled: Receiver<Vec<u8>>,
}

/// What the writer thread receives besides batches.
enum Control {
    /// A new shard logger: its batch receiver and the sender for emptied buffers.
    Register(Receiver<Vec<u8>>, Sender<Vec<u8>>),
    /// Write everything queued so far, then answer.
    Drain(Sender<()>),
}

/// A handle to an access-log writer thread; cheap to clone, `Send + Sync`, so an app
/// factory can capture it and every shard's logger registers with it.
#[derive(Clone)]
pub struct AccessLogSink {
    control: Sender<Control>,
    output: LogOutput,
}

impl std::fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogSink").field("output", &self.output).finish_non_exhaustive()
    }
}

impl AccessLogSink {
    /// A writer thread for `output`. For a file, SIGHUP makes it reopen the path.
    pub fn start(output: LogOutput) -> io::Result<AccessLogSink> {
        let (control, inbox) = unbounded();
        let reopen = Arc::new(AtomicBool::new(false));
        if matches!(output, LogOutput::File(_)) {
            signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reopen))?;
        }
        let target = output.clone();
        std::thread::Builder::new()
            .name("ringo-access-log".into())
            .spawn(move || Writer { target, out: None, reopen, shards: Vec::new() }.run(&inbox))?;
        Ok(AccessLogSink { control, output })
    }

    /// The process-wide stdout sink, started on first use (what [`logger`] writes to).
    ///
    /// [`logger`]: crate::middleware::logger
    pub fn stdout() -> AccessLogSink {
        static STDOUT: OnceLock<AccessLogSink> = OnceLock::new();
        STDOUT
            .get_or_init(|| {
                // Stdout needs no signal handler, so starting can only fail to spawn a
                // thread; then lines go nowhere (and are counted as dropped).
                AccessLogSink::start(LogOutput::Stdout).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot start the access-log writer; access log off");
                    AccessLogSink { control: unbounded().0, output: LogOutput::Stdout }
                })
            })
            .clone()
    }

    /// Where this sink writes.
    pub fn output(&self) -> &LogOutput {
        &self.output
    }

    /// Waits (at most `timeout`) until every batch already handed over is written. Call
    /// it after the server stopped, so the last lines reach the output before exit.
    pub fn drain(&self, timeout: Duration) -> bool {
        let (done, wait) = bounded(1);
        if self.control.send(Control::Drain(done)).is_err() {
            return false;
        }
        wait.recv_timeout(timeout).is_ok()
    }

    /// A channel pair for one shard's logger.
    pub(crate) fn register(&self) -> ShardChannel {
        let (batches, from_shard) = bounded(QUEUE_BATCHES);
        let (to_shard, recycled) = bounded(QUEUE_BATCHES);
        // A writer that is gone leaves the channels unread: batches fill and are dropped.
        let _ = self.control.send(Control::Register(from_shard, to_shard));
        ShardChannel { batches, recycled }
    }
}

/// Hands `batch` to the writer; gives it back when the writer cannot take it now.
pub(crate) fn hand_over(channel: &ShardChannel, batch: Vec<u8>) -> Result<(), Vec<u8>> {
    match channel.batches.try_send(batch) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) => Err(b),
    }
}

/// The writer's end of one shard's channels: batches in, emptied buffers back.
type WriterEnd = (Receiver<Vec<u8>>, Sender<Vec<u8>>);

/// The writer thread's state.
struct Writer {
    target: LogOutput,
    out: Option<Box<dyn Write>>,
    reopen: Arc<AtomicBool>,
    shards: Vec<WriterEnd>,
}

impl Writer {
    fn run(mut self, inbox: &Receiver<Control>) {
        loop {
            let mut select = Select::new();
            select.recv(inbox);
            for (rx, _) in &self.shards {
                select.recv(rx);
            }
            // Wake at least every 200 ms to notice SIGHUP.
            let ready = select.ready_timeout(Duration::from_millis(200));
            if self.reopen.swap(false, Ordering::Relaxed) {
                self.out = None;
            }
            match ready {
                Ok(0) => match inbox.try_recv() {
                    Ok(Control::Register(rx, tx)) => self.shards.push((rx, tx)),
                    Ok(Control::Drain(done)) => {
                        self.write_all_queued();
                        let _ = done.send(());
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {}
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        // Every sink handle is gone: write what is left and stop.
                        self.write_all_queued();
                        return;
                    }
                },
                Ok(_) | Err(_) => self.write_all_queued(),
            }
            self.forget_stopped_shards();
        }
    }

    /// Forgets the channels of loggers that are gone (stopped shards), once drained.
    fn forget_stopped_shards(&mut self) {
        let mut i = 0;
        while i < self.shards.len() {
            match self.shards[i].0.try_recv() {
                Ok(mut batch) => {
                    self.write(&batch);
                    batch.clear();
                    let _ = self.shards[i].1.try_send(batch);
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.shards.swap_remove(i);
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            i += 1;
        }
        if let Some(out) = self.out.as_mut() {
            let _ = out.flush();
        }
    }

    /// Writes every queued batch of every shard, then flushes.
    fn write_all_queued(&mut self) {
        let mut wrote = false;
        for i in 0..self.shards.len() {
            while let Ok(mut batch) = self.shards[i].0.try_recv() {
                self.write(&batch);
                wrote = true;
                batch.clear();
                let _ = self.shards[i].1.try_send(batch);
            }
        }
        if wrote {
            if let Some(out) = self.out.as_mut() {
                let _ = out.flush();
            }
        }
    }

    fn write(&mut self, batch: &[u8]) {
        if self.out.is_none() {
            self.out = match &self.target {
                LogOutput::Stdout => Some(Box::new(io::stdout())),
                LogOutput::File(path) => match open_append(path) {
                    Ok(f) => Some(Box::new(f)),
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "cannot open the access log; lines dropped");
                        None
                    }
                },
            };
        }
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.write_all(batch) {
                tracing::error!(error = %e, "access log write failed; reopening");
                self.out = None;
            }
        }
    }
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
