//! Global rate limits across shards: the control thread's side.
//!
//! Every shard reports its demand on each global limiter (requests that arrived,
//! admitted or not) in the snapshots it already sends. Every [`REBALANCE_EVERY`] this
//! board turns those counters into per-shard demand rates and splits each limiter's
//! rate among the shards by demand (`ratelimit::rebalance`, water-filling), then sends
//! each shard its new share by message — only when it changed by more than 2 % of an
//! even share, so a steady load sends nothing. A shard reads only its own copy on the
//! request path.
//!
//! Owns the demand history and the shares last sent; never a shard's state.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::metrics::Snapshot;
use crate::ratelimit::rebalance;

/// How often shares are recomputed.
pub(crate) const REBALANCE_EVERY: Duration = Duration::from_millis(200);

/// A new share of a global limiter for one shard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    /// The limiter's index, in the order the shard's factory created them.
    pub(crate) limiter: usize,
    /// Requests per second this shard may admit.
    pub(crate) share: f64,
}

/// One global limiter as the shards declared it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LimiterSpec {
    pub(crate) name: String,
    pub(crate) rate: f64,
}

/// The control thread's view of the global limiters.
#[derive(Debug, Default)]
pub(crate) struct LimiterBoard {
    pub(crate) limiters: Vec<LimiterSpec>,
    /// Per shard, per limiter: (last demand counter, its time in ms, smoothed rate/s).
    demand: Vec<Vec<(u64, u64, f64)>>,
    /// Per shard, per limiter: the share last sent.
    sent: Vec<Vec<f64>>,
    last: Option<Instant>,
    scratch_demand: Vec<f64>,
    scratch_shares: Vec<f64>,
}

impl LimiterBoard {
    /// A shard declared its limiters (every shard's factory builds the same ones).
    pub(crate) fn declare(&mut self, shards: usize, limiters: Vec<LimiterSpec>) {
        if self.limiters.is_empty() && !limiters.is_empty() {
            let even: Vec<f64> = limiters.iter().map(|l| l.rate / shards.max(1) as f64).collect();
            self.demand = vec![vec![(0, 0, 0.0); limiters.len()]; shards];
            self.sent = vec![even; shards];
            self.limiters = limiters;
        }
    }

    /// Folds a shard's snapshot into the demand rates.
    pub(crate) fn absorb(&mut self, snap: &Snapshot) {
        let Some(rows) = self.demand.get_mut(snap.shard) else { return };
        for (row, usage) in rows.iter_mut().zip(&snap.limiters) {
            let (prev, prev_ms, rate) = *row;
            let dt = snap.taken_ms.saturating_sub(prev_ms) as f64 / 1000.0;
            if prev_ms > 0 && dt > 0.0 {
                let now = usage.demand.saturating_sub(prev) as f64 / dt;
                *row = (usage.demand, snap.taken_ms, 0.5 * now + 0.5 * rate);
            } else {
                *row = (usage.demand, snap.taken_ms, rate);
            }
        }
    }

    /// Recomputes the shares (at most every [`REBALANCE_EVERY`]) and sends the changed
    /// ones.
    pub(crate) fn rebalance(&mut self, budgets: &[Sender<Budget>]) {
        let now = Instant::now();
        if self.limiters.is_empty() || self.last.is_some_and(|t| now.duration_since(t) < REBALANCE_EVERY) {
            return;
        }
        self.last = Some(now);
        let shards = self.demand.len();
        for (i, limiter) in self.limiters.iter().enumerate() {
            self.scratch_demand.clear();
            self.scratch_demand.extend(self.demand.iter().map(|rows| rows.get(i).map_or(0.0, |r| r.2)));
            rebalance(limiter.rate, &self.scratch_demand, &mut self.scratch_shares);
            let step = 0.02 * limiter.rate / shards.max(1) as f64;
            for (shard, &share) in self.scratch_shares.iter().enumerate() {
                let Some(sent) = self.sent.get_mut(shard).and_then(|s| s.get_mut(i)) else { continue };
                if (share - *sent).abs() > step {
                    if let Some(tx) = budgets.get(shard) {
                        if tx.try_send(Budget { limiter: i, share }).is_ok() {
                            *sent = share;
                        }
                    }
                }
            }
        }
    }
}
