//! The request a shard is working on, for log lines: request id and trace id.
//!
//! A shard runs many requests' futures interleaved on one thread, so "the current
//! request" is set by the engine around each poll of a request's chain (and of a
//! background task, with the ids of the request that spawned it) and cleared after it:
//! nothing leaks from one request to the next. Middleware that learn an id
//! (`request_id`, `trace_context`) update it during their poll. A `tracing` formatter
//! ([`RequestIds`]) puts both ids on every log line emitted meanwhile, and
//! [`current`] gives them to any other subscriber.
//!
//! Owns one thread-local cell per thread; no allocation, no cross-thread state.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The ids of the request being served on this thread (or of the one that spawned the
/// background task being run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogIds {
    request_id: [u8; 64],
    request_id_len: u8,
    trace_id: [u8; 32],
    /// This hop's span id (hex), the parent of outgoing calls.
    span_id: [u8; 16],
    sampled: bool,
    has_trace: bool,
}

impl Default for LogIds {
    fn default() -> Self {
        LogIds::EMPTY
    }
}

impl LogIds {
    const EMPTY: LogIds = LogIds {
        request_id: [0; 64],
        request_id_len: 0,
        trace_id: [0; 32],
        span_id: [0; 16],
        sampled: false,
        has_trace: false,
    };

    /// The `traceparent` for a call made on this request's behalf: its trace, with its
    /// span as the parent (what `ringo::client` sends automatically).
    pub fn traceparent(&self) -> Option<[u8; 55]> {
        if !self.has_trace {
            return None;
        }
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id);
        out[35] = b'-';
        out[36..52].copy_from_slice(&self.span_id);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        Some(out)
    }

    /// The request id, if one was set.
    pub fn request_id(&self) -> Option<&str> {
        (self.request_id_len > 0)
            .then(|| std::str::from_utf8(&self.request_id[..usize::from(self.request_id_len)]).ok())
            .flatten()
    }

    /// The trace id (32 hex digits), if the request carries a trace context.
    pub fn trace_id(&self) -> Option<&str> {
        self.has_trace.then(|| std::str::from_utf8(&self.trace_id).ok()).flatten()
    }

    /// Whether no id is set.
    pub fn is_empty(&self) -> bool {
        self.request_id_len == 0 && !self.has_trace
    }

    pub(crate) fn set_request_id(&mut self, id: &str) {
        let n = id.len().min(64);
        self.request_id[..n].copy_from_slice(&id.as_bytes()[..n]);
        self.request_id_len = n as u8;
    }

    pub(crate) fn set_trace(&mut self, trace_id: [u8; 32], span_id: [u8; 16], sampled: bool) {
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.sampled = sampled;
        self.has_trace = true;
    }
}

thread_local! {
    /// The ids of the request being polled: a handle on its own cell, so making it
    /// current costs a reference count, not a copy of the ids.
    static CURRENT: RefCell<Option<Rc<RefCell<LogIds>>>> = const { RefCell::new(None) };
}

/// The ids of the request this thread is serving right now (empty between requests).
pub fn current() -> LogIds {
    CURRENT.with(|c| c.borrow().as_ref().map(|ids| *ids.borrow()).unwrap_or_default())
}

/// Runs `poll` with `ids` as the current request's; what middleware learn during the
/// poll goes straight into `ids`. The thread's current request is cleared after.
pub(crate) fn with_ids<R>(ids: &Rc<RefCell<LogIds>>, poll: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(ids)));
    let out = poll();
    CURRENT.with(|c| *c.borrow_mut() = None);
    out
}

/// Changes the current request's ids (from middleware, during a poll), in place: a
/// copy out and back of the ids' 115 bytes was about 30 instructions an update, two
/// updates a default-stack request.
pub(crate) fn update(f: impl FnOnce(&mut LogIds)) {
    CURRENT.with(|c| {
        if let Some(cell) = c.borrow().as_ref() {
            f(&mut cell.borrow_mut());
        }
    });
}

/// A `tracing` event format that prefixes every line emitted while a request is being
/// served with `rid=… tid=…`, then writes the event with `inner` (e.g. the default
/// `tracing_subscriber::fmt::format()`).
#[derive(Debug, Clone)]
pub struct RequestIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for RequestIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = current();
        if !ids.is_empty() {
            write!(writer, "rid={} tid={} ", ids.request_id().unwrap_or("-"), ids.trace_id().unwrap_or("-"))?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_current_only_inside_the_poll_and_updates_are_kept() {
        let ids = Rc::new(RefCell::new(LogIds::default()));
        assert!(current().is_empty());
        with_ids(&ids, || {
            update(|l| l.set_request_id("req-1"));
            assert_eq!(current().request_id(), Some("req-1"));
        });
        assert!(current().is_empty(), "cleared after the poll");
        assert_eq!(ids.borrow().request_id(), Some("req-1"), "kept for the next poll");
        let other = Rc::new(RefCell::new(LogIds::default()));
        with_ids(&other, || assert!(current().request_id().is_none(), "no leak between requests"));
        with_ids(&ids, || {
            update(|l| l.set_trace(*b"4bf92f3577b34da6a3ce929d0e0e4736", *b"00f067aa0ba902b7", true));
            let now = current();
            assert_eq!(
                (now.request_id(), now.trace_id()),
                (Some("req-1"), Some("4bf92f3577b34da6a3ce929d0e0e4736"))
            );
            assert_eq!(
                now.traceparent().as_ref().map(|t| &t[..]),
                Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..])
            );
        });
    }
}
