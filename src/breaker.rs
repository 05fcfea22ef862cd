//! Circuit breakers around named dependencies, one state machine per breaker per shard.
//!
//! gobreaker's semantics: a [`Breaker`] is [`State::Closed`] while calls succeed; when
//! [`Settings::ready_to_trip`] holds over the [`Counts`] of a rolling window
//! (`interval`, split into `buckets`) it opens and refuses calls for `timeout`; then it
//! lets at most `max_requests` probes through ([`State::HalfOpen`]): `max_requests`
//! consecutive successes close it, one failure opens it again.
//!
//! Two additions: [`Breaker::allow`] returns a [`Permit`] whose drop without a result
//! counts as a failure (a cancelled or panicking call cannot wedge the breaker half
//! open), and every state change starts a new *generation*, so the late result of a
//! permit from an earlier generation is ignored.
//!
//! Owns: the state machine, its window and its counters. Shard-owned (`Rc`, `Cell`,
//! `!Send`): build breakers in the app factory, one set per shard; no lock, atomic or
//! allocation on `allow`/`success`/`failure`. Never touches threads or sockets: the
//! shard's snapshot ticker copies every live breaker of its thread (a thread-local
//! registry of weak references) into the heartbeat [`Snapshot`](crate::metrics), which
//! is how state changes reach the control thread, `/metrics` and `/debug/shards`.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a breaker's lifecycle stands. The discriminant is the `ringo_breaker_state`
/// gauge's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through; failures are counted in the rolling window.
    Closed = 0,
    /// The timeout passed: at most `max_requests` probes go through.
    HalfOpen = 1,
    /// Calls are refused until the timeout passes.
    Open = 2,
}

impl State {
    /// Lower-case name: `closed`, `half_open`, `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }

    pub(crate) const ALL: [State; 3] = [State::Closed, State::HalfOpen, State::Open];
}

/// Call counts of the current state (and, while closed, of the rolling window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls allowed.
    pub requests: u32,
    /// Calls that succeeded.
    pub total_successes: u32,
    /// Calls that failed (including permits dropped without a result).
    pub total_failures: u32,
    /// Successes since the last failure.
    pub consecutive_successes: u32,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

/// How a breaker trips and recovers.
#[derive(Clone)]
pub struct Settings {
    /// Probes let through while half open, and the consecutive successes that close it
    /// (0 is taken as 1).
    pub max_requests: u32,
    /// Length of the rolling window of counts while closed (`Duration::ZERO`: counts
    /// are never forgotten while closed).
    pub interval: Duration,
    /// Buckets the window is split into (its resolution; 0 is taken as 1).
    pub buckets: u32,
    /// How long the breaker stays open before letting probes through.
    pub timeout: Duration,
    /// Checked after each failure while closed; `true` opens the breaker. (`Arc` so
    /// one `Settings` can be built outside the app factory and cloned into each shard;
    /// calling it touches no atomic.)
    pub ready_to_trip: Arc<dyn Fn(&Counts) -> bool + Send + Sync>,
}

impl Default for Settings {
    /// gobreaker's defaults: one probe, a 60 s window in 10 buckets, 60 s open, trip
    /// after more than 5 consecutive failures.
    fn default() -> Settings {
        Settings {
            max_requests: 1,
            interval: Duration::from_secs(60),
            buckets: 10,
            timeout: Duration::from_secs(60),
            ready_to_trip: Arc::new(|c: &Counts| c.consecutive_failures > 5),
        }
    }
}

impl Settings {
    /// Replaces the trip condition.
    pub fn trip_when(mut self, f: impl Fn(&Counts) -> bool + Send + Sync + 'static) -> Settings {
        self.ready_to_trip = Arc::new(f);
        self
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("max_requests", &self.max_requests)
            .field("interval", &self.interval)
            .field("buckets", &self.buckets)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Why [`Breaker::allow`] refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The breaker is open; it lets probes through after `retry_after`.
    #[error("circuit breaker is open")]
    Open {
        /// Time left until the breaker turns half open.
        retry_after: Duration,
    },
    /// Half open, and `max_requests` probes are already out.
    #[error("circuit breaker is half open and its probes are taken")]
    TooManyProbes,
}

impl Rejected {
    /// Time after which a retry may be let through (zero for `TooManyProbes`).
    pub fn retry_after(&self) -> Duration {
        match self {
            Rejected::Open { retry_after } => *retry_after,
            Rejected::TooManyProbes => Duration::ZERO,
        }
    }
}

/// The result of [`Breaker::call`].
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker refused the call; the future was not run.
    #[error(transparent)]
    Rejected(Rejected),
    /// The call ran and failed (counted as a failure).
    #[error("call failed: {0}")]
    Failed(E),
}

/// One bucket of the rolling window: counts of the calls whose result landed in it.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-length period since the breaker's origin these counts belong to.
    epoch: u64,
    requests: u32,
    successes: u32,
    failures: u32,
}

/// The state machine; shared by the [`Breaker`] handles and permits of one shard.
struct Inner {
    name: Arc<str>,
    settings: Settings,
    origin: Instant,
    state: Cell<State>,
    generation: Cell<u64>,
    /// While open: when the breaker turns half open.
    open_until: Cell<Instant>,
    /// Counts of the current generation (the window's sums are kept in `window`).
    consecutive_successes: Cell<u32>,
    consecutive_failures: Cell<u32>,
    /// Requests, successes, failures of the current generation while half open (and
    /// while closed with no window).
    plain: Cell<Bucket>,
    /// The rolling window while closed.
    window: Box<[Cell<Bucket>]>,
    /// Length of one window bucket in nanoseconds (0: no window).
    bucket_ns: u64,
    /// Transitions into each state (indexed by the state's gauge value).
    transitions: [Cell<u64>; 3],
    /// Calls refused.
    rejected: Cell<u64>,
}

thread_local! {
    /// The breakers created on this thread (a shard's), for its snapshot ticker.
    static REGISTRY: RefCell<Vec<Weak<Inner>>> = const { RefCell::new(Vec::new()) };
}

/// A circuit breaker around one named dependency, owned by one shard.
///
/// Cheap to clone (an `Rc`); build it in the app factory and move clones into the
/// handlers and middleware that call the dependency.
///
/// ```
/// use std::time::Duration;
/// use ringo::breaker::{Breaker, BreakerError, Settings};
///
/// let users = Breaker::new(
///     "users-api",
///     Settings { timeout: Duration::from_secs(5), ..Settings::default() }
///         .trip_when(|c| c.requests >= 20 && c.total_failures * 2 >= c.requests),
/// );
/// let permit = users.allow().expect("closed");
/// permit.success();
/// # let _ = async {
/// let answer: Result<u32, BreakerError<std::io::Error>> = users.call(async { Ok(7) }).await;
/// # };
/// ```
#[derive(Clone)]
pub struct Breaker {
    inner: Rc<Inner>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &&*self.inner.name)
            .field("state", &self.inner.state.get())
            .field("generation", &self.inner.generation.get())
            .finish_non_exhaustive()
    }
}

/// The right to make one call through a breaker; report how it went with
/// [`success`](Permit::success) or [`failure`](Permit::failure). Dropped without
/// either, it counts as a failure. A result reported after the breaker changed state
/// (another generation) is ignored.
#[must_use = "a permit dropped without a result counts as a failure"]
pub struct Permit {
    /// `None` once a result was recorded.
    breaker: Option<Rc<Inner>>,
    generation: u64,
    /// The window bucket the call started in (where a success is counted).
    epoch: u64,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.as_ref().map(|b| &*b.name))
            .field("generation", &self.generation)
            .finish()
    }
}

impl Permit {
    /// The call succeeded.
    pub fn success(self) {
        self.record(true);
    }

    /// The call failed.
    pub fn failure(self) {
        self.record(false);
    }

    /// Reports how the call went (`true`: success).
    pub fn record(mut self, ok: bool) {
        self.finish(ok, None);
    }

    /// The generation this permit was issued in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Records the result; `now` is read from the clock only when a failure needs it.
    pub(crate) fn finish(&mut self, ok: bool, now: Option<Instant>) {
        if let Some(breaker) = self.breaker.take() {
            breaker.on_result(self.generation, self.epoch, ok, now);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.finish(false, None);
    }
}

impl Breaker {
    /// A closed breaker named `name` (the `name` label of its metrics; keep names unique
    /// within an app). Registered with the current thread, so a shard's breakers show in
    /// `/metrics` and `/debug/shards`.
    pub fn new(name: &str, settings: Settings) -> Breaker {
        Breaker::new_at(name, settings, Instant::now())
    }

    pub(crate) fn new_at(name: &str, settings: Settings, origin: Instant) -> Breaker {
        let buckets = settings.buckets.max(1);
        let bucket_ns = u64::try_from((settings.interval / buckets).as_nanos()).unwrap_or(u64::MAX);
        let inner = Rc::new(Inner {
            name: Arc::from(name),
            settings,
            origin,
            state: Cell::new(State::Closed),
            generation: Cell::new(0),
            open_until: Cell::new(origin),
            consecutive_successes: Cell::new(0),
            consecutive_failures: Cell::new(0),
            plain: Cell::new(Bucket::default()),
            window: (0..buckets).map(|_| Cell::new(Bucket::default())).collect(),
            bucket_ns,
            transitions: Default::default(),
            rejected: Cell::new(0),
        });
        REGISTRY.with(|r| {
            let mut r = r.borrow_mut();
            r.retain(|w| w.strong_count() > 0);
            r.push(Rc::downgrade(&inner));
        });
        Breaker { inner }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state now (an open breaker whose timeout passed reports `HalfOpen`).
    pub fn state(&self) -> State {
        self.state_at(Instant::now())
    }

    pub(crate) fn state_at(&self, now: Instant) -> State {
        self.inner.advance(now);
        self.inner.state.get()
    }

    /// The current generation: it grows by one on every state change.
    pub fn generation(&self) -> u64 {
        self.inner.generation.get()
    }

    /// The counts the trip condition would see now.
    pub fn counts(&self) -> Counts {
        self.inner.counts(Instant::now())
    }

    /// Asks to make one call: a [`Permit`], or why not.
    pub fn allow(&self) -> Result<Permit, Rejected> {
        self.allow_at(Instant::now())
    }

    pub(crate) fn allow_at(&self, now: Instant) -> Result<Permit, Rejected> {
        let inner = &self.inner;
        inner.advance(now);
        let epoch = inner.epoch(now);
        match inner.state.get() {
            State::Open => {
                inner.rejected.set(inner.rejected.get() + 1);
                let retry_after = inner.open_until.get().saturating_duration_since(now);
                return Err(Rejected::Open { retry_after });
            }
            State::HalfOpen => {
                let mut plain = inner.plain.get();
                if plain.requests >= inner.settings.max_requests.max(1) {
                    inner.rejected.set(inner.rejected.get() + 1);
                    return Err(Rejected::TooManyProbes);
                }
                plain.requests += 1;
                inner.plain.set(plain);
            }
            State::Closed => inner.bump(epoch, |b| b.requests += 1),
        }
        Ok(Permit { breaker: Some(Rc::clone(inner)), generation: inner.generation.get(), epoch })
    }

    /// Runs `call` through the breaker: refused without running it while open, its
    /// `Err` counted as a failure (and returned as [`BreakerError::Failed`]), its `Ok` as
    /// a success. If the returned future is dropped before `call` finishes, that counts
    /// as a failure.
    pub async fn call<T, E, F>(&self, call: F) -> Result<T, BreakerError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = self.allow().map_err(BreakerError::Rejected)?;
        match call.await {
            Ok(v) => {
                permit.success();
                Ok(v)
            }
            Err(e) => {
                permit.failure();
                Err(BreakerError::Failed(e))
            }
        }
    }

    /// Calls refused so far.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.get()
    }
}

impl Inner {
    /// Open → half open once the timeout passed.
    fn advance(&self, now: Instant) {
        if self.state.get() == State::Open && now >= self.open_until.get() {
            self.set_state(State::HalfOpen, Some(now));
        }
    }

    /// The window bucket period `now` falls in (0 without a window).
    fn epoch(&self, now: Instant) -> u64 {
        if self.bucket_ns == 0 {
            return 0;
        }
        let since = now.saturating_duration_since(self.origin);
        // u64 nanoseconds cover 584 years of uptime; a u128 division costs more.
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX) / self.bucket_ns
    }

    /// Applies `f` to the counts of bucket period `epoch` while closed with a window
    /// (a period whose slot already holds a newer one is outside the window: nothing to
    /// count), else to the generation's plain counts.
    fn bump(&self, epoch: u64, f: impl FnOnce(&mut Bucket)) {
        if self.state.get() != State::Closed || self.bucket_ns == 0 {
            let mut b = self.plain.get();
            f(&mut b);
            self.plain.set(b);
            return;
        }
        let slot = &self.window[(epoch % self.window.len() as u64) as usize];
        let mut b = slot.get();
        if b.epoch > epoch {
            return;
        }
        if b.epoch < epoch {
            b = Bucket { epoch, ..Bucket::default() };
        }
        f(&mut b);
        slot.set(b);
    }

    fn counts(&self, now: Instant) -> Counts {
        let (requests, successes, failures) = if self.state.get() != State::Closed || self.bucket_ns == 0 {
            let b = self.plain.get();
            (b.requests, b.successes, b.failures)
        } else {
            let epoch = self.epoch(now);
            let oldest = epoch.saturating_sub(self.window.len() as u64 - 1);
            self.window.iter().map(Cell::get).filter(|b| b.epoch >= oldest && b.epoch <= epoch).fold(
                (0u32, 0u32, 0u32),
                |(r, s, f), b| {
                    (
                        r.saturating_add(b.requests),
                        s.saturating_add(b.successes),
                        f.saturating_add(b.failures),
                    )
                },
            )
        };
        Counts {
            requests,
            total_successes: successes,
            total_failures: failures,
            consecutive_successes: self.consecutive_successes.get(),
            consecutive_failures: self.consecutive_failures.get(),
        }
    }

    /// A permit's result. A permit of the current generation was issued while closed or
    /// half open, and only a result can leave those states, so no timeout applies here.
    /// A success is counted in the bucket its call started in, without reading the
    /// clock; a failure reads it (`now`, when not given) to count and maybe trip.
    fn on_result(&self, generation: u64, started: u64, ok: bool, now: Option<Instant>) {
        if generation != self.generation.get() {
            return;
        }
        if ok {
            self.bump(started, |b| b.successes += 1);
            self.consecutive_successes.set(self.consecutive_successes.get().saturating_add(1));
            self.consecutive_failures.set(0);
            if self.state.get() == State::HalfOpen
                && self.consecutive_successes.get() >= self.settings.max_requests.max(1)
            {
                self.set_state(State::Closed, None);
            }
        } else {
            let now = now.unwrap_or_else(Instant::now);
            self.bump(self.epoch(now), |b| b.failures += 1);
            self.consecutive_failures.set(self.consecutive_failures.get().saturating_add(1));
            self.consecutive_successes.set(0);
            match self.state.get() {
                State::Closed => {
                    if (self.settings.ready_to_trip)(&self.counts(now)) {
                        self.set_state(State::Open, Some(now));
                    }
                }
                State::HalfOpen => self.set_state(State::Open, Some(now)),
                State::Open => {}
            }
        }
    }

    /// A new state and generation, with fresh counts. `now` matters (and is read when
    /// not given) only when opening.
    fn set_state(&self, to: State, now: Option<Instant>) {
        let from = self.state.get();
        if from == to {
            return;
        }
        self.state.set(to);
        self.generation.set(self.generation.get() + 1);
        self.consecutive_successes.set(0);
        self.consecutive_failures.set(0);
        self.plain.set(Bucket::default());
        for b in self.window.iter() {
            b.set(Bucket::default());
        }
        if to == State::Open {
            let now = now.unwrap_or_else(Instant::now);
            self.open_until.set(now + self.settings.timeout);
        }
        let t = &self.transitions[to as usize];
        t.set(t.get() + 1);
        tracing::debug!(breaker = &*self.name, from = from.as_str(), to = to.as_str(), "circuit breaker");
    }
}

/// One breaker as the shard's snapshot carries it to the control thread.
#[derive(Debug, Clone)]
pub(crate) struct BreakerSnapshot {
    pub(crate) name: Arc<str>,
    pub(crate) state: State,
    /// Transitions into closed, half open, open.
    pub(crate) transitions: [u64; 3],
    pub(crate) rejected: u64,
}

/// Copies the state of every live breaker of this thread into `out` (reusing it: no
/// allocation once its capacity fits). Called by the shard's snapshot ticker.
pub(crate) fn fill_snapshots(out: &mut Vec<BreakerSnapshot>) {
    out.clear();
    let now = Instant::now();
    REGISTRY.with(|r| {
        for inner in r.borrow().iter().filter_map(Weak::upgrade) {
            inner.advance(now);
            out.push(BreakerSnapshot {
                name: Arc::clone(&inner.name),
                state: inner.state.get(),
                transitions: std::array::from_fn(|i| inner.transitions[i].get()),
                rejected: inner.rejected.get(),
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One scripted step at `t` milliseconds after the breaker's origin.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        /// allow + success.
        Succeed,
        /// allow + failure.
        Fail,
        /// allow, keep the permit.
        Take,
        /// Report the result of the n-th kept permit.
        Report(usize, bool),
        /// Drop the n-th kept permit without a result.
        Drop(usize),
        /// allow must refuse (`true`: open, `false`: too many probes).
        Refused(bool),
        /// Only look at the state.
        Look,
    }

    /// A scripted step: time (ms), op, the state expected after it.
    type Step = (u64, Op, State);

    fn ms(origin: Instant, t: u64) -> Instant {
        origin + Duration::from_millis(t)
    }

    /// Runs `steps` (time in ms, op, state expected after it) on a breaker.
    fn run(name: &str, settings: Settings, steps: &[Step]) -> Breaker {
        // A dropped permit reports at the real `Instant::now()`: put the origin 101 ms in
        // the past so a `Drop` scripted at 101 ms happens at about that real time.
        let origin = Instant::now().checked_sub(Duration::from_millis(101)).expect("uptime");
        let b = Breaker::new_at(name, settings, origin);
        let mut kept: Vec<Option<Permit>> = Vec::new();
        for (i, &(t, op, want)) in steps.iter().enumerate() {
            let now = ms(origin, t);
            match op {
                Op::Succeed | Op::Fail => {
                    let mut p = b.allow_at(now).unwrap_or_else(|e| panic!("{name} step {i}: refused {e:?}"));
                    p.finish(matches!(op, Op::Succeed), Some(now));
                }
                Op::Take => {
                    kept.push(Some(b.allow_at(now).unwrap_or_else(|e| panic!("{name} step {i}: {e:?}"))))
                }
                Op::Report(n, ok) => kept[n].take().expect("kept permit").finish(ok, Some(now)),
                Op::Drop(n) => {
                    let p = kept[n].take().expect("kept permit");
                    b.inner.advance(now);
                    drop(p);
                }
                Op::Refused(open) => match b.allow_at(now) {
                    Err(Rejected::Open { .. }) if open => {}
                    Err(Rejected::TooManyProbes) if !open => {}
                    other => panic!("{name} step {i}: expected a refusal (open: {open}), got {other:?}"),
                },
                Op::Look => {}
            }
            assert_eq!(b.state_at(now), want, "{name} step {i} ({op:?} at {t} ms)");
        }
        b
    }

    fn settings(max_requests: u32, trip_at: u32) -> Settings {
        Settings {
            max_requests,
            interval: Duration::from_secs(10),
            buckets: 10,
            timeout: Duration::from_millis(100),
            ..Settings::default()
        }
        .trip_when(move |c| c.consecutive_failures >= trip_at)
    }

    use Op::*;
    use State::{Closed as C, HalfOpen as H, Open as O};

    #[test]
    fn the_state_machine_follows_its_table() {
        let cases: &[(&str, Settings, &[Step])] = &[
            (
                "trips after 3 consecutive failures",
                settings(1, 3),
                &[(0, Fail, C), (1, Fail, C), (2, Fail, O), (3, Refused(true), O)],
            ),
            (
                "a success resets the consecutive failures",
                settings(1, 3),
                &[(0, Fail, C), (1, Fail, C), (2, Succeed, C), (3, Fail, C), (4, Fail, C), (5, Fail, O)],
            ),
            (
                "open turns half open after the timeout",
                settings(1, 1),
                &[(0, Fail, O), (99, Refused(true), O), (102, Look, H)],
            ),
            (
                "half open lets max_requests probes through",
                settings(2, 1),
                &[(0, Fail, O), (100, Take, H), (101, Take, H), (102, Refused(false), H)],
            ),
            (
                "max_requests consecutive successes close it",
                settings(2, 1),
                &[
                    (0, Fail, O),
                    (100, Take, H),
                    (101, Take, H),
                    (102, Report(0, true), H),
                    (103, Report(1, true), C),
                    (104, Succeed, C),
                ],
            ),
            (
                "a failed probe opens it again, with a fresh timeout",
                settings(2, 1),
                &[
                    (0, Fail, O),
                    (100, Take, H),
                    (101, Report(0, false), O),
                    (150, Refused(true), O),
                    (201, Look, H),
                ],
            ),
            (
                "a probe dropped without a result counts as a failure",
                settings(1, 1),
                &[(0, Fail, O), (100, Take, H), (101, Drop(0), O), (102, Refused(true), O)],
            ),
            (
                "a late success from the closed generation cannot close a half-open breaker",
                settings(2, 1),
                &[
                    (0, Take, C),
                    (1, Fail, O),
                    (101, Take, H),
                    (102, Report(0, true), H),
                    (103, Report(1, true), H),
                ],
            ),
            (
                "a late drop from an earlier generation cannot reopen",
                settings(1, 1),
                &[(0, Take, C), (1, Fail, O), (101, Succeed, C), (102, Drop(0), C), (103, Succeed, C)],
            ),
        ];
        for (name, s, steps) in cases {
            run(name, s.clone(), steps);
        }
    }

    #[test]
    fn generations_advance_on_each_change_and_late_results_are_ignored() {
        let origin = Instant::now();
        let b = Breaker::new_at("gen", settings(1, 1), origin);
        assert_eq!(b.generation(), 0);
        let old = b.allow_at(origin).expect("closed");
        b.allow_at(origin).expect("closed").finish(false, Some(origin));
        assert_eq!((b.state_at(origin), b.generation()), (State::Open, 1));
        let now = ms(origin, 100);
        let mut probe = b.allow_at(now).expect("half open");
        assert_eq!((probe.generation(), b.generation()), (2, 2));
        let mut old = old;
        old.finish(false, Some(now)); // generation 0: ignored
        assert_eq!(b.state_at(now), State::HalfOpen);
        probe.finish(true, Some(now));
        assert_eq!((b.state_at(now), b.generation()), (State::Closed, 3));
        let t = std::array::from_fn::<u64, 3, _>(|i| b.inner.transitions[i].get());
        assert_eq!(t, [1, 1, 1], "into closed, half open, open");
    }

    #[test]
    fn the_rolling_window_forgets_old_buckets() {
        // 1 s window in 10 buckets of 100 ms; trip at 3 failures in the window.
        let s = Settings { interval: Duration::from_secs(1), buckets: 10, ..settings(1, 0) }
            .trip_when(|c| c.total_failures >= 3);
        let b = run(
            "window",
            s,
            &[
                (0, Fail, C),
                (500, Fail, C),
                (600, Succeed, C),
                // At 1100 ms the window covers buckets 200..1100 ms: the failure at 0 is gone.
                (1100, Fail, C),
                (1150, Fail, O),
            ],
        );
        assert_eq!(b.state_at(Instant::now()), State::Open);
        let cases: &[(&[u64], u64, u32)] = &[
            // (failure times, look at, failures counted)
            (&[0, 50, 99], 99, 3),
            (&[0, 50, 99], 999, 3),
            (&[0, 50, 99], 1000, 0),
            (&[0, 950], 1000, 1),
            (&[0, 950, 1999], 1999, 1),
            (&[0, 950, 1999], 5000, 0),
        ];
        for (fails, at, want) in cases {
            let origin = Instant::now();
            let b = Breaker::new_at(
                "window-table",
                Settings { interval: Duration::from_secs(1), ..settings(1, 0) }.trip_when(|_| false),
                origin,
            );
            for t in *fails {
                b.allow_at(ms(origin, *t)).expect("closed").finish(false, Some(ms(origin, *t)));
            }
            assert_eq!(
                b.inner.counts(ms(origin, *at)).total_failures,
                *want,
                "failures {fails:?} seen at {at}"
            );
        }
    }

    #[test]
    fn a_success_is_counted_in_the_bucket_its_call_started_in() {
        let origin = Instant::now();
        let s = Settings { interval: Duration::from_secs(1), ..settings(1, 0) }.trip_when(|_| false);
        let b = Breaker::new_at("started", s, origin);
        let mut slow = b.allow_at(origin).expect("closed");
        let mut recent = b.allow_at(ms(origin, 900)).expect("closed");
        // Reported long after: the slow call's bucket left the window, the recent one's
        // is still in it.
        slow.finish(true, Some(ms(origin, 1500)));
        recent.finish(true, Some(ms(origin, 1500)));
        let c = b.inner.counts(ms(origin, 1500));
        assert_eq!((c.requests, c.total_successes, c.consecutive_successes), (1, 1, 2));
        // A bucket slot already reused by a newer period ignores an older result.
        let mut stale = b.allow_at(ms(origin, 1500)).expect("closed");
        stale.epoch = 5; // as if started at 500 ms, whose slot now holds 1500 ms
        stale.finish(true, None);
        assert_eq!(b.inner.counts(ms(origin, 1500)).total_successes, 1);
    }

    #[test]
    fn without_an_interval_counts_are_never_forgotten() {
        let origin = Instant::now();
        let s = Settings { interval: Duration::ZERO, ..settings(1, 0) }.trip_when(|c| c.total_failures >= 2);
        let b = Breaker::new_at("no-window", s, origin);
        b.allow_at(origin).expect("closed").finish(false, Some(origin));
        let later = ms(origin, 3_600_000);
        assert_eq!(b.inner.counts(later).total_failures, 1);
        b.allow_at(later).expect("closed").finish(false, Some(later));
        assert_eq!(b.state_at(later), State::Open);
    }

    #[test]
    fn call_counts_results_and_refuses_while_open() {
        let b = Breaker::new("call", settings(1, 1).trip_when(|c| c.consecutive_failures >= 1));
        let ok: Result<u8, BreakerError<&str>> = block_on(b.call(async { Ok(1) }));
        assert!(matches!(ok, Ok(1)));
        let failed: Result<u8, BreakerError<&str>> = block_on(b.call(async { Err("down") }));
        assert!(matches!(failed, Err(BreakerError::Failed("down"))));
        let refused: Result<u8, BreakerError<&str>> = block_on(b.call(async { Ok(2) }));
        assert!(matches!(refused, Err(BreakerError::Rejected(Rejected::Open { .. }))));
        assert_eq!(b.rejected(), 1);
    }

    #[test]
    fn snapshots_list_the_live_breakers_of_this_thread() {
        let b = Breaker::new("snap-a", settings(1, 1));
        {
            let _gone = Breaker::new("snap-gone", settings(1, 1));
        }
        b.allow().expect("closed").failure();
        let mut out = Vec::new();
        fill_snapshots(&mut out);
        let mine: Vec<_> = out.iter().filter(|s| s.name.starts_with("snap-")).collect();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].state, mine[0].transitions), (State::Open, [0, 0, 1]));
    }

    /// Polls a future that never waits (the calls above are ready at once).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }
}
