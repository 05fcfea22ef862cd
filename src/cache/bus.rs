//! How a shard's caches hear about each other: invalidations by message, and the
//! shard's cache timer.
//!
//! The server makes one bounded channel per shard ([`Bus`]); every shard holds the
//! senders to all of them. A cache built in the app factory registers with its
//! shard's thread-local registry; [`broadcast`] sends `(cache name, key)` to every
//! other shard, and each shard's timer task drains its channel every
//! [`INVALIDATION_TICK`] and drops the keys from its caches of that name — so every
//! shard has dropped an invalidated key within one tick (plus the time its executor
//! is busy), with no lock anywhere. The same task sweeps expired entries every second.
//! A full channel (a shard stalled for 65k invalidations) drops the message, counts
//! it and logs it: that shard then serves the old value until its TTL.
//!
//! Owns the channels and the registry; the caches' contents are `mod.rs`'s.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{CacheStats, Inner, KeyFilter};

/// How often a shard applies the invalidations sent to it.
pub const INVALIDATION_TICK: Duration = Duration::from_millis(10);
/// How often a shard sweeps its caches' expired entries.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Invalidations waiting per shard before new ones are dropped.
const QUEUED: usize = 65_536;

/// What the shards' caches are told.
#[derive(Debug)]
pub(crate) enum Message {
    /// Drop this key from caches of this name.
    Invalidate(Arc<str>, Box<str>),
    /// Install this key filter (built from the keys at that instant) in caches of
    /// this name.
    Filter(Arc<str>, Arc<KeyFilter>, Instant),
}

/// The server's invalidation channels: one per shard.
#[derive(Debug)]
pub(crate) struct Bus {
    senders: Vec<Sender<Message>>,
    /// Invalidations dropped because a shard's channel was full.
    pub(crate) dropped: AtomicU64,
}

impl Bus {
    /// Channels for `shards` shards; each shard's receiving end.
    pub(crate) fn new(shards: usize) -> (Arc<Bus>, Vec<Receiver<Message>>) {
        let (senders, receivers) = (0..shards).map(|_| crossbeam_channel::bounded(QUEUED)).unzip();
        (Arc::new(Bus { senders, dropped: AtomicU64::new(0) }), receivers)
    }
}

/// A cache as its shard's registry sees it (any value type).
pub(crate) trait Registered {
    fn name(&self) -> &Arc<str>;
    fn remove_key(&self, key: &str);
    fn install_filter(&self, filter: Arc<KeyFilter>, built_from: Instant);
    fn sweep_expired(&self);
    fn counters(&self) -> CacheStats;
    fn hottest(&self, n: usize) -> Vec<(Box<str>, u64)>;
}

impl<V: 'static> Registered for Inner<V> {
    fn name(&self) -> &Arc<str> {
        &self.name
    }
    fn remove_key(&self, key: &str) {
        self.remove(key);
        self.note_written(key);
    }
    fn install_filter(&self, filter: Arc<KeyFilter>, built_from: Instant) {
        self.set_filter(filter, built_from);
    }
    fn sweep_expired(&self) {
        self.sweep();
    }
    fn counters(&self) -> CacheStats {
        self.stats()
    }
    fn hottest(&self, n: usize) -> Vec<(Box<str>, u64)> {
        self.hot.top(n)
    }
}

/// This shard's side of the bus: who it is, and the senders to every shard.
struct Membership {
    shard: usize,
    bus: Arc<Bus>,
}

thread_local! {
    static CACHES: RefCell<Vec<Weak<dyn Registered>>> = const { RefCell::new(Vec::new()) };
    static MEMBERSHIP: RefCell<Option<Membership>> = const { RefCell::new(None) };
}

/// Registers a cache built on this thread (a shard, in its app factory), weakly: a
/// dropped cache leaves the registry.
pub(super) fn register<V: 'static>(cache: &Rc<Inner<V>>) {
    let weak: Weak<dyn Registered> = Rc::downgrade(cache) as Weak<dyn Registered>;
    CACHES.with_borrow_mut(|c| {
        c.retain(|w| w.strong_count() > 0);
        c.push(weak);
    });
}

/// Joins this thread (shard `shard`) to the server's bus; called before the factory.
pub(crate) fn join(shard: usize, bus: Arc<Bus>) {
    MEMBERSHIP.with_borrow_mut(|m| *m = Some(Membership { shard, bus }));
}

/// This thread's shard id, when it is a shard of a running server.
pub(crate) fn shard_id() -> Option<usize> {
    MEMBERSHIP.with_borrow(|m| m.as_ref().map(|m| m.shard))
}

/// Sends an invalidation of `key` in caches named `name` to every other shard.
pub(super) fn broadcast(name: &Arc<str>, key: &str) {
    MEMBERSHIP.with_borrow(|m| {
        let Some(m) = m else { return };
        for (i, tx) in m.bus.senders.iter().enumerate() {
            if i == m.shard {
                continue;
            }
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                tx.try_send(Message::Invalidate(Arc::clone(name), key.into()))
            {
                let dropped = m.bus.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        shard = i,
                        dropped,
                        "cache invalidation dropped: the shard's queue is full"
                    );
                }
            }
        }
    });
}

fn apply(message: Message) {
    let caches: Vec<Rc<dyn Registered>> =
        CACHES.with_borrow(|c| c.iter().filter_map(Weak::upgrade).collect());
    match message {
        Message::Invalidate(name, key) => {
            for cache in caches.iter().filter(|c| **c.name() == *name) {
                cache.remove_key(&key);
            }
        }
        Message::Filter(name, filter, built_from) => {
            for cache in caches.iter().filter(|c| **c.name() == *name) {
                cache.install_filter(Arc::clone(&filter), built_from);
            }
        }
    }
}

/// The bus of the server this thread is a shard of (to hand to a helper thread).
pub(crate) fn current() -> Option<Arc<Bus>> {
    MEMBERSHIP.with_borrow(|m| m.as_ref().map(|m| Arc::clone(&m.bus)))
}

/// Sends `filter` to the caches named `name` on every shard of `bus`'s server (from
/// any thread); `false` once the server's shards are gone.
pub(crate) fn publish_filter(
    bus: &Bus,
    name: &Arc<str>,
    filter: &Arc<KeyFilter>,
    built_from: Instant,
) -> bool {
    let mut delivered = false;
    for tx in &bus.senders {
        delivered |= tx.try_send(Message::Filter(Arc::clone(name), Arc::clone(filter), built_from)).is_ok();
    }
    delivered
}

/// Hot keys a snapshot carries per cache.
const HOT_REPORTED: usize = 5;

/// One cache's counters and hottest keys in a shard's snapshot.
#[derive(Debug, Clone)]
pub(crate) struct CacheSnapshot {
    pub(crate) name: Arc<str>,
    pub(crate) stats: CacheStats,
    pub(crate) hot: Vec<(Box<str>, u64)>,
}

/// This shard's caches' counters and hot keys, by name (for its snapshot).
pub(crate) fn fill_snapshots(out: &mut Vec<CacheSnapshot>) {
    out.clear();
    CACHES.with_borrow(|c| {
        out.extend(c.iter().filter_map(Weak::upgrade).map(|cache| CacheSnapshot {
            name: Arc::clone(cache.name()),
            stats: cache.counters(),
            hot: cache.hottest(HOT_REPORTED),
        }));
    });
}

/// Starts this shard's cache timer: invalidations every tick, sweeps every second.
pub(crate) fn spawn_timer(receiver: Receiver<Message>) {
    crate::time::spawn(async move {
        let mut since_sweep = Duration::ZERO;
        loop {
            crate::time::sleep(INVALIDATION_TICK).await;
            while let Ok(message) = receiver.try_recv() {
                apply(message);
            }
            since_sweep += INVALIDATION_TICK;
            if since_sweep >= SWEEP_EVERY {
                since_sweep = Duration::ZERO;
                let caches: Vec<Rc<dyn Registered>> =
                    CACHES.with_borrow(|c| c.iter().filter_map(Weak::upgrade).collect());
                for cache in caches {
                    cache.sweep_expired();
                }
            }
        }
    });
}
