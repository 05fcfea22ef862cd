//! Sampled request spans on a shard: a bounded ring the engine fills and the snapshot
//! ticker empties.
//!
//! The trace middleware marks a request for recording ([`SpanIds`] on the `Context`)
//! when its trace is sampled and this shard keeps spans (an OTLP endpoint is
//! configured). When the request's answer is queued, the engine writes one
//! [`SpanRecord`] — ids, method, route slot, status, start and duration, all plain
//! `Copy` data — into the ring. Every snapshot (200 ms) the ring's records travel to the
//! control thread inside the shard's `Snapshot`, which turns them into OpenTelemetry
//! spans and exports them (`control/otlp.rs`); no OpenTelemetry type is ever built on a
//! shard. A full ring drops the newest record and counts it: the request is never slowed.
//!
//! Shard-owned (`Cell`/`RefCell`, `!Send`); the buffers are allocated once and swapped
//! with the snapshot's, so steady state allocates nothing.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// How many rings' worth of spans an unsent snapshot may gather before more are dropped.
const UNSENT_RINGS: usize = 4;

/// The ids a sampled request's span carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanIds {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    /// The caller's span; `None` when this request started the trace.
    pub(crate) parent_id: Option<[u8; 8]>,
}

/// One finished server span, as the shard records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanRecord {
    pub(crate) ids: SpanIds,
    pub(crate) method: &'static str,
    /// The route's metric slot (its name comes from the shard's route table).
    pub(crate) slot: usize,
    pub(crate) status: u16,
    /// When the request's head was parsed.
    pub(crate) start: Instant,
    pub(crate) duration: Duration,
}

/// A shard's bounded span buffer; capacity 0 keeps nothing (no exporter configured).
#[derive(Debug)]
pub(crate) struct SpanRing {
    records: RefCell<Vec<SpanRecord>>,
    capacity: usize,
    /// Records written since the shard started.
    recorded: Cell<u64>,
    /// Records refused because the ring was full, since the shard started.
    dropped: Cell<u64>,
}

impl SpanRing {
    /// A ring holding up to `capacity` records between two snapshots.
    pub(crate) fn new(capacity: usize) -> SpanRing {
        SpanRing {
            records: RefCell::new(Vec::with_capacity(capacity)),
            capacity,
            recorded: Cell::new(0),
            dropped: Cell::new(0),
        }
    }

    /// Whether this shard keeps spans at all.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Keeps `record`, or counts it dropped when the ring is full.
    pub(crate) fn push(&self, record: SpanRecord) {
        let mut records = self.records.borrow_mut();
        if records.len() < self.capacity {
            records.push(record);
            self.recorded.set(self.recorded.get() + 1);
        } else {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    /// Moves the kept records into `out` — by swapping buffers when `out` is an emptied
    /// one — and returns the counters `(recorded, dropped)`.
    pub(crate) fn take_into(&self, out: &mut Vec<SpanRecord>) -> (u64, u64) {
        let mut records = self.records.borrow_mut();
        if out.is_empty() && out.capacity() >= self.capacity {
            std::mem::swap(&mut *records, out);
        } else {
            // `out` is new, or still holds the spans of a snapshot the control thread
            // could not take yet: append, up to a few rings' worth.
            if out.capacity() < self.capacity {
                // Once per snapshot buffer: from then on it is swapped, not grown.
                out.reserve_exact(self.capacity - out.len().min(self.capacity));
            }
            let room = (UNSENT_RINGS * self.capacity).saturating_sub(out.len());
            let lost = records.len().saturating_sub(room);
            out.extend(records.drain(..).take(room));
            self.dropped.set(self.dropped.get() + lost as u64);
            self.recorded.set(self.recorded.get() - lost as u64);
        }
        (self.recorded.get(), self.dropped.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> SpanRecord {
        SpanRecord {
            ids: SpanIds { trace_id: [n; 16], span_id: [n; 8], parent_id: None },
            method: "GET",
            slot: 0,
            status: 200,
            start: Instant::now(),
            duration: Duration::from_micros(5),
        }
    }

    #[test]
    fn a_full_ring_drops_and_counts_the_newest() {
        let ring = SpanRing::new(2);
        for n in 1..=3 {
            ring.push(record(n));
        }
        let mut out = Vec::new();
        assert_eq!(ring.take_into(&mut out), (2, 1));
        assert_eq!(out.iter().map(|r| r.ids.trace_id[0]).collect::<Vec<_>>(), [1, 2]);
        // Emptied: the next interval starts with room again.
        out.clear();
        ring.push(record(4));
        assert_eq!(ring.take_into(&mut out), (3, 1));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn buffers_are_swapped_not_reallocated() {
        let ring = SpanRing::new(4);
        let mut out = Vec::with_capacity(4);
        for round in 0..3 {
            ring.push(record(round));
            out.clear();
            ring.take_into(&mut out);
            assert_eq!(out.len(), 1);
            assert!(out.capacity() >= 4 && ring.records.borrow().capacity() >= 4);
        }
    }

    #[test]
    fn an_unsent_snapshot_gathers_spans_up_to_a_bound() {
        let ring = SpanRing::new(1);
        let mut out = Vec::new();
        for n in 0..6 {
            ring.push(record(n));
            ring.take_into(&mut out);
        }
        assert_eq!(out.len(), UNSENT_RINGS);
        assert_eq!(ring.take_into(&mut out), (UNSENT_RINGS as u64, 2));
    }

    #[test]
    fn capacity_zero_is_off() {
        let ring = SpanRing::new(0);
        assert!(!ring.enabled());
        ring.push(record(1));
        let mut out = Vec::new();
        assert_eq!(ring.take_into(&mut out), (0, 1));
        assert!(out.is_empty());
    }
}
