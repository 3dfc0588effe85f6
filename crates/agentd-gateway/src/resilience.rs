//! Routing health: a circuit breaker per deployment, latency tracking for least-latency
//! balancing, the order in which to try a model's deployments, and the retry budget and backoff.
//!
//! The one decision to know: this module is pure bookkeeping. It does no I/O, spawns no tasks
//! and arms no timers. Time comes from `tokio::time::Instant`, and every state change happens
//! inside a call the request path already makes: an open breaker turns half-open when the next
//! request asks for a permit, not when a timer fires. Every method is synchronous, and the
//! `std::sync::Mutex`es inside are never held across an `.await`. Each time-dependent method
//! has a private twin taking `now` explicitly, which is what the tests drive: deterministic
//! without paused time (the gateway does not enable tokio's `test-util`).
//!
//! How a request uses it, per model:
//!
//! 1. Build one [`Candidate`] per deployment (`available` = the breaker is not open, `score` from
//!    its [`LatencyEwma`]) and call [`order`] to get the order in which to try them.
//! 2. For each deployment in turn, [`Breaker::try_acquire`] a [`Permit`]. `None` means skip this
//!    deployment (the breaker opened since step 1, or the half-open probes are taken).
//! 3. Make the call under a [`LatencyEwma::start`] guard, then [`Permit::record`] the outcome
//!    and [`LatencyEwma::observe`] the latency. A client that goes away drops the permit, which
//!    records nothing but gives back a half-open probe slot.
//! 4. Before moving to the next deployment after a retryable error, ask the [`RetryBudget`] and
//!    wait [`backoff`].

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

/// When a deployment's breaker trips and how it recovers: `[routing.breaker]` of the config
/// (`agentd_config::BreakerConfig`, whose `Default` is the documented defaults). Semantics the
/// breaker adds: `consecutive_failures = 0` turns that rule off; the error-rate window moves in
/// tenths, so the oldest outcome it counts is between 0.9 and 1.0 `window` old; a success slower
/// than `slow_ttft` to its first token counts as a failure; `half_open_probes = 0` is treated as 1.
pub(crate) use agentd_config::BreakerConfig as BreakerSettings;

/// The externally visible state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests are refused until the open period is over.
    Open,
    /// A few probe requests decide whether to close again or reopen.
    HalfOpen,
}

impl BreakerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the breaker-state gauge: 0 closed, 1 open, 2 half-open.
    pub(crate) fn gauge_value(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// Why a breaker changed state, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransitionReason {
    /// `consecutive_failures` failures in a row (closed → open).
    ConsecutiveFailures,
    /// The window's error rate reached `error_rate_percent` (closed → open).
    ErrorRate,
    /// The open period was over and a request asked for a permit (open → half-open).
    OpenElapsed,
    /// A half-open probe failed (half-open → open).
    ProbeFailed,
    /// Enough half-open probes succeeded (half-open → closed).
    ProbesSucceeded,
}

impl TransitionReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TransitionReason::ConsecutiveFailures => "consecutive_failures",
            TransitionReason::ErrorRate => "error_rate",
            TransitionReason::OpenElapsed => "open_elapsed",
            TransitionReason::ProbeFailed => "probe_failed",
            TransitionReason::ProbesSucceeded => "probes_succeeded",
        }
    }
}

/// A state change, handed to the listener set with [`Breaker::on_transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: TransitionReason,
}

/// How a call through a [`Permit`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The deployment answered. `ttft` is the time to the first streamed token, when there was
    /// one; it is compared against [`BreakerSettings::slow_ttft`].
    Success { ttft: Option<Duration> },
    /// The deployment failed in a way that says something about its health (5xx, timeout,
    /// connection error) — not a client error such as a 400.
    Failure,
}

type Listener = Box<dyn Fn(&Transition) + Send + Sync>;

/// One deployment's circuit breaker. Share it as `Arc<Breaker>`: permits keep a reference so
/// that a dropped permit can give its probe slot back.
///
/// Transitions are reported through a listener rather than return values so that call sites
/// stay `let Some(permit) = breaker.try_acquire() else { continue }`, and so that the reports
/// come out in the order the transitions happened (the listener runs under the breaker's lock).
pub(crate) struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
    listener: Option<Listener>,
}

struct Inner {
    phase: Phase,
    /// Bumped on every transition. A permit remembers the generation it was issued in, and its
    /// outcome only counts in that same generation: a slow request admitted while closed must
    /// not decide the fate of a later half-open period, nor free one of its probe slots.
    generation: u64,
    consecutive_failures: u32,
    window: Window,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { since: Instant, until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Breaker {
        let window = Window::new(Instant::now(), settings.window);
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                generation: 0,
                consecutive_failures: 0,
                window,
            }),
            listener: None,
        }
    }

    /// Calls `listener` on every state change, for the log line and the state gauge. It runs
    /// while the breaker is locked, so it must not call back into this breaker.
    pub(crate) fn on_transition(
        mut self,
        listener: impl Fn(&Transition) + Send + Sync + 'static,
    ) -> Breaker {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Asks to send one request to this deployment. `None` means skip it: the breaker is open,
    /// or it is half-open and all probe slots are taken.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        if !self.settings.enabled {
            return Some(self.permit(0, false));
        }
        let mut inner = self.lock();
        match inner.phase {
            Phase::Closed => Some(self.permit(inner.generation, false)),
            Phase::Open { until, .. } => {
                if now < until {
                    return None;
                }
                self.transition(
                    &mut inner,
                    Phase::HalfOpen {
                        in_flight: 1,
                        successes: 0,
                    },
                    TransitionReason::OpenElapsed,
                );
                Some(self.permit(inner.generation, true))
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                // Admit only as many probes as it takes to close: a deployment that may still be
                // broken gets the smallest possible share of traffic.
                if in_flight + successes >= self.probes() {
                    return None;
                }
                inner.phase = Phase::HalfOpen {
                    in_flight: in_flight + 1,
                    successes,
                };
                Some(self.permit(inner.generation, true))
            }
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) would admit a request now: closed, open with
    /// its open period over, or half-open with a probe slot free. For [`Candidate::available`],
    /// so that ordering skips deployments that would refuse; only a hint, as another request
    /// may take the last probe slot in between.
    pub(crate) fn is_available(&self) -> bool {
        self.is_available_at(Instant::now())
    }

    fn is_available_at(&self, now: Instant) -> bool {
        if !self.settings.enabled {
            return true;
        }
        match self.lock().phase {
            Phase::Closed => true,
            Phase::Open { until, .. } => now >= until,
            Phase::HalfOpen {
                in_flight,
                successes,
            } => in_flight + successes < self.probes(),
        }
    }

    /// The current state. An open breaker whose open period is over still reads `Open` until
    /// the next [`try_acquire`](Self::try_acquire) turns it half-open.
    pub(crate) fn state(&self) -> BreakerState {
        if !self.settings.enabled {
            return BreakerState::Closed;
        }
        self.lock().phase.state()
    }

    /// The breaker as the admin API shows it.
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        self.snapshot_at(Instant::now())
    }

    fn snapshot_at(&self, now: Instant) -> serde_json::Value {
        let inner = self.lock();
        let (requests, failures) = inner.window.totals(now);
        let state = if self.settings.enabled {
            inner.phase.state()
        } else {
            BreakerState::Closed
        };
        let mut snapshot = json!({
            "enabled": self.settings.enabled,
            "state": state.as_str(),
            "consecutive_failures": inner.consecutive_failures,
            "window": {
                "seconds": self.settings.window.as_secs_f64(),
                "requests": requests,
                "failures": failures,
            },
        });
        match inner.phase {
            Phase::Closed => {}
            Phase::Open { since, until } => {
                snapshot["opened_ms_ago"] = json!(millis(now.saturating_duration_since(since)));
                snapshot["retry_in_ms"] = json!(millis(until.saturating_duration_since(now)));
            }
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                snapshot["probes_in_flight"] = json!(in_flight);
                snapshot["probe_successes"] = json!(successes);
            }
        }
        snapshot
    }

    fn record_at(&self, permit: &Permit, outcome: Outcome, now: Instant) {
        if !self.settings.enabled {
            return;
        }
        let failed = match outcome {
            Outcome::Failure => true,
            Outcome::Success { ttft } => match (ttft, self.settings.slow_ttft) {
                (Some(ttft), Some(limit)) => ttft > limit,
                (None, _) | (_, None) => false,
            },
        };
        let mut inner = self.lock();
        if inner.generation != permit.generation {
            return;
        }
        match inner.phase {
            Phase::Closed => {
                inner.window.record(now, failed);
                if !failed {
                    inner.consecutive_failures = 0;
                    return;
                }
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                if let Some(reason) = self.trip_reason(&inner, now) {
                    self.open(&mut inner, now, reason);
                }
            }
            // Unreachable with a matching generation (entering Open bumps it); a late outcome
            // has nothing to say about an open breaker anyway.
            Phase::Open { .. } => {}
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                if failed {
                    self.open(&mut inner, now, TransitionReason::ProbeFailed);
                    return;
                }
                let successes = successes + 1;
                if successes >= self.probes() {
                    inner.consecutive_failures = 0;
                    inner.window.reset();
                    self.transition(&mut inner, Phase::Closed, TransitionReason::ProbesSucceeded);
                } else {
                    inner.phase = Phase::HalfOpen {
                        in_flight: in_flight.saturating_sub(1),
                        successes,
                    };
                }
            }
        }
    }

    /// A probe permit dropped without an outcome: free its slot so the next request can probe.
    fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        match inner.phase {
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                inner.phase = Phase::HalfOpen {
                    in_flight: in_flight.saturating_sub(1),
                    successes,
                };
            }
            Phase::Closed | Phase::Open { .. } => {}
        }
    }

    fn trip_reason(&self, inner: &Inner, now: Instant) -> Option<TransitionReason> {
        let s = &self.settings;
        if s.consecutive_failures > 0 && inner.consecutive_failures >= s.consecutive_failures {
            return Some(TransitionReason::ConsecutiveFailures);
        }
        let (requests, failures) = inner.window.totals(now);
        if requests >= s.min_requests.max(1)
            && u64::from(failures) * 100 >= u64::from(s.error_rate_percent) * u64::from(requests)
        {
            return Some(TransitionReason::ErrorRate);
        }
        None
    }

    fn open(&self, inner: &mut Inner, now: Instant, reason: TransitionReason) {
        let phase = Phase::Open {
            since: now,
            until: now + self.settings.open_for,
        };
        self.transition(inner, phase, reason);
    }

    fn transition(&self, inner: &mut Inner, to: Phase, reason: TransitionReason) {
        let from = inner.phase.state();
        inner.phase = to;
        inner.generation += 1;
        if let Some(listener) = &self.listener {
            listener(&Transition {
                from,
                to: to.state(),
                reason,
            });
        }
    }

    fn probes(&self) -> u32 {
        self.settings.half_open_probes.max(1)
    }

    fn permit(self: &Arc<Self>, generation: u64, probe: bool) -> Permit {
        Permit {
            breaker: Arc::clone(self),
            generation,
            probe,
            recorded: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking listener must not take the deployment down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Leave to send one request to a deployment. It holds no lock, only a reference to the
/// breaker. Report the result with [`record`](Self::record); dropping it instead (the client
/// went away, the request was cancelled) counts neither as success nor as failure, and gives a
/// half-open probe slot back.
#[must_use = "record the outcome, or drop the permit if the call never finished"]
pub(crate) struct Permit {
    breaker: Arc<Breaker>,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl Permit {
    /// Whether this request is a half-open probe: its outcome decides whether the breaker
    /// closes or reopens.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    pub(crate) fn record(self, outcome: Outcome) {
        self.record_at(outcome, Instant::now());
    }

    fn record_at(mut self, outcome: Outcome, now: Instant) {
        self.recorded = true;
        self.breaker.record_at(&self, outcome, now);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.recorded {
            self.breaker.release_probe(self.generation);
        }
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

const BUCKETS: usize = 10;

/// Outcome counts over a sliding window, kept as a ring of `BUCKETS` time slices so the cost is
/// fixed whatever the request rate.
struct Window {
    origin: Instant,
    width: Duration,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice since `origin` the counts belong to; a stale slice is reset on first use.
    slice: u64,
    requests: u32,
    failures: u32,
}

impl Window {
    fn new(origin: Instant, window: Duration) -> Window {
        Window {
            origin,
            // A zero window would divide by zero; a millisecond is "no window" in practice.
            width: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn slice(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.width.as_nanos()) as u64
    }

    fn record(&mut self, now: Instant, failed: bool) {
        let slice = self.slice(now);
        let bucket = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if bucket.slice != slice {
            *bucket = Bucket {
                slice,
                requests: 0,
                failures: 0,
            };
        }
        bucket.requests = bucket.requests.saturating_add(1);
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        }
    }

    /// (requests, failures) in the window ending now.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let slice = self.slice(now);
        self.buckets
            .iter()
            .filter(|b| b.slice <= slice && b.slice + BUCKETS as u64 > slice)
            .fold((0u32, 0u32), |(r, f), b| {
                (r.saturating_add(b.requests), f.saturating_add(b.failures))
            })
    }

    fn reset(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Latency tracking
// ---------------------------------------------------------------------------------------------

/// Weight of the newest sample. At 0.3 the last three samples carry two thirds of the weight
/// (0.3, 0.21, 0.147): one slow answer moves the average noticeably, and a deployment that has
/// really slowed down is overtaken within a handful of requests, while single outliers fade.
pub(crate) const EWMA_ALPHA: f64 = 0.3;

/// How fast a deployment's latency is forgotten while it gets no traffic: the score is
/// multiplied by `exp(-idle / EWMA_FORGET)`. Without it, least-latency balancing between two
/// deployments would never again try the one that was once slow, and never learn it recovered;
/// with 10 s, a deployment ten times slower than its sibling gets one request every ~23 s.
pub(crate) const EWMA_FORGET: Duration = Duration::from_secs(10);

/// Observed latency of one deployment (time to first token for streams, whole latency
/// otherwise) and its in-flight count: the input of least-latency balancing. Lock-free: it is
/// read for every candidate of every request.
///
/// The average and the time of the last sample are separate atomics; a reader racing a writer
/// may pair a new average with an old time, which only nudges one score for one request.
pub(crate) struct LatencyEwma {
    origin: Instant,
    /// f64 bits of the average in seconds; 0 means nothing observed yet.
    ewma: AtomicU64,
    /// Nanoseconds from `origin` to the last sample (u64 nanoseconds last 584 years).
    last_sample: AtomicU64,
    in_flight: AtomicU32,
}

impl Default for LatencyEwma {
    fn default() -> Self {
        LatencyEwma::new()
    }
}

impl LatencyEwma {
    pub(crate) fn new() -> LatencyEwma {
        LatencyEwma {
            origin: Instant::now(),
            ewma: AtomicU64::new(0f64.to_bits()),
            last_sample: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
        }
    }

    pub(crate) fn observe(&self, latency: Duration) {
        self.observe_at(latency, Instant::now());
    }

    fn observe_at(&self, latency: Duration, now: Instant) {
        let sample = latency.as_secs_f64();
        // `fetch_update` retries on contention, so concurrent samples are all folded in.
        let _ = self
            .ewma
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old == 0.0 {
                    sample
                } else {
                    EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * old
                };
                Some(new.to_bits())
            });
        let at = nanos(now.saturating_duration_since(self.origin));
        self.last_sample.store(at, Ordering::Relaxed);
    }

    /// The average latency, `None` before the first sample.
    pub(crate) fn ewma(&self) -> Option<Duration> {
        let secs = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        (secs > 0.0).then(|| Duration::from_secs_f64(secs))
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts one request in flight until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            latency: Arc::clone(self),
        }
    }

    /// Lower is better: the average latency in seconds, fading while the deployment is idle
    /// (see [`EWMA_FORGET`]), times (in-flight + 1) so that a fast deployment that is already
    /// busy stops attracting every request. A deployment never observed scores 0, so it is
    /// tried early and gets a measurement.
    pub(crate) fn score(&self) -> f64 {
        self.score_at(Instant::now())
    }

    fn score_at(&self, now: Instant) -> f64 {
        let ewma = f64::from_bits(self.ewma.load(Ordering::Relaxed));
        if ewma == 0.0 {
            return 0.0;
        }
        let last = self.origin + Duration::from_nanos(self.last_sample.load(Ordering::Relaxed));
        let idle = now.saturating_duration_since(last).as_secs_f64();
        let fade = (-idle / EWMA_FORGET.as_secs_f64()).exp();
        ewma * fade * f64::from(self.in_flight() + 1)
    }
}

/// One request in flight to a deployment; dropping it ends the count.
#[must_use = "the request counts as in flight only while the guard lives"]
pub(crate) struct InFlight {
    latency: Arc<LatencyEwma>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.latency.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// Balancing
// ---------------------------------------------------------------------------------------------

/// How to order a model's deployments (`models.<name>.balance`): `Weighted` is random in
/// proportion to the weights, `LeastLatency` prefers the lowest [`LatencyEwma::score`].
pub(crate) use agentd_config::Balance;

/// One deployment as [`order`] sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub weight: u32,
    /// From [`LatencyEwma::score`]; lower is better.
    pub score: f64,
    /// False when the breaker is open: such candidates are left out entirely.
    pub available: bool,
}

/// The indices of the available candidates, in the order to try them.
pub(crate) fn order(balance: Balance, candidates: &[Candidate]) -> Vec<usize> {
    order_with(&mut rand::thread_rng(), balance, candidates)
}

/// [`order`] with the random source given, for tests.
///
/// - `Weighted`: weighted random without replacement — the first by weight, the next by weight
///   among the rest, and so on — so fallbacks spread by weight too. If all remaining weights are
///   0, they are taken uniformly.
/// - `LeastLatency`: the first by power of two choices (two distinct random candidates, the
///   lower score wins), then the rest by ascending score, ties in random order. Two choices
///   rather than the global minimum so that many gateways reading slightly stale scores do not
///   all pile onto the same deployment at once.
pub(crate) fn order_with(
    rng: &mut impl Rng,
    balance: Balance,
    candidates: &[Candidate],
) -> Vec<usize> {
    let mut available: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].available)
        .collect();
    match balance {
        Balance::Weighted => {
            let mut ordered = Vec::with_capacity(available.len());
            while !available.is_empty() {
                let total: u64 = available
                    .iter()
                    .map(|&i| u64::from(candidates[i].weight))
                    .sum();
                let pos = if total == 0 {
                    rng.gen_range(0..available.len())
                } else {
                    let mut ticket = rng.gen_range(0..total);
                    available
                        .iter()
                        .position(|&i| {
                            let w = u64::from(candidates[i].weight);
                            if ticket < w {
                                true
                            } else {
                                ticket -= w;
                                false
                            }
                        })
                        .unwrap_or(available.len() - 1)
                };
                ordered.push(available.remove(pos));
            }
            ordered
        }
        Balance::LeastLatency => {
            if available.len() < 2 {
                return available;
            }
            let a = rng.gen_range(0..available.len());
            let mut b = rng.gen_range(0..available.len() - 1);
            if b >= a {
                b += 1;
            }
            let first = if candidates[available[b]].score < candidates[available[a]].score {
                b
            } else {
                a
            };
            let first = available.swap_remove(first);
            available.shuffle(rng);
            // Stable sort after the shuffle: equal scores (say, two unobserved deployments)
            // come out in random order instead of always favouring the first in the config.
            available.sort_by(|&x, &y| candidates[x].score.total_cmp(&candidates[y].score));
            let mut ordered = Vec::with_capacity(available.len() + 1);
            ordered.push(first);
            ordered.extend(available);
            ordered
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------

/// Token bucket limiting retries to a share of the traffic, like Finagle's and linkerd's retry
/// budgets: when a deployment goes down, per-request retry limits alone would multiply the
/// load on the ones still up; a budget keeps retries at, say, 20 % on top of the requests.
///
/// Each request deposits `ratio` tokens and each retry withdraws one, with the balance capped
/// so a quiet hour does not bank a storm of retries. A separate reserve refilled at
/// `min_per_sec` lets low-traffic gateways retry at all. Tokens are counted in thousandths so
/// that fractional deposits do not drift.
pub(crate) struct RetryBudget {
    deposit: u64,
    max_balance: u64,
    min_per_sec: u64,
    inner: Mutex<BudgetInner>,
}

struct BudgetInner {
    /// Deposited tokens, in thousandths.
    balance: u64,
    /// The `min_per_sec` floor: holds at most one second's worth, in thousandths.
    reserve: u64,
    refilled_at: Instant,
}

const MILLI: u64 = 1000;

impl Default for RetryBudget {
    /// Finagle's defaults: 20 % of requests, at least 10 retries a second; at most 100 banked.
    fn default() -> Self {
        RetryBudget::new(0.2, 10, 100)
    }
}

impl RetryBudget {
    /// `ratio`: tokens per request (0.2 allows one retry per five requests; negative counts as
    /// 0); `min_per_sec`: retries always allowed per second; `max_balance`: the most deposited
    /// retries that can be banked.
    pub(crate) fn new(ratio: f64, min_per_sec: u32, max_balance: u32) -> RetryBudget {
        let min_per_sec = u64::from(min_per_sec);
        RetryBudget {
            // `as` saturates: NaN and negatives become 0, huge ratios the maximum.
            deposit: (ratio * MILLI as f64).round() as u64,
            max_balance: u64::from(max_balance) * MILLI,
            min_per_sec,
            inner: Mutex::new(BudgetInner {
                balance: 0,
                reserve: min_per_sec * MILLI,
                refilled_at: Instant::now(),
            }),
        }
    }

    /// One request was made.
    pub(crate) fn deposit(&self) {
        let mut inner = self.lock();
        inner.balance = inner
            .balance
            .saturating_add(self.deposit)
            .min(self.max_balance);
    }

    /// Asks for one retry; false means give up instead of retrying.
    pub(crate) fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    fn try_withdraw_at(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        if inner.balance >= MILLI {
            inner.balance -= MILLI;
            return true;
        }
        self.refill(&mut inner, now);
        if inner.reserve >= MILLI {
            inner.reserve -= MILLI;
            return true;
        }
        false
    }

    fn refill(&self, inner: &mut BudgetInner, now: Instant) {
        let cap = self.min_per_sec * MILLI;
        if inner.reserve >= cap {
            inner.refilled_at = now;
            return;
        }
        // `min_per_sec` tokens a second is `min_per_sec` thousandths of a token a millisecond,
        // or `min_per_sec / 1000` thousandths a microsecond.
        let elapsed = now.saturating_duration_since(inner.refilled_at).as_micros();
        let added = elapsed * u128::from(self.min_per_sec) / 1000;
        let added = u64::try_from(added).unwrap_or(u64::MAX);
        if inner.reserve.saturating_add(added) >= cap {
            inner.reserve = cap;
            inner.refilled_at = now;
        } else if added > 0 {
            inner.reserve += added;
            // Advance only by the time converted into tokens, so frequent calls do not lose
            // the fractions to rounding.
            inner.refilled_at += Duration::from_micros(added * 1000 / self.min_per_sec);
        }
    }

    fn lock(&self) -> MutexGuard<'_, BudgetInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long to wait before retry number `attempt` (0 for the first retry): "full jitter"
/// exponential backoff, uniform in `[0, min(max, base * 2^attempt)]`, so that clients that
/// failed together do not retry together. A `retry_after` from the upstream (429/503) is a
/// floor. `None` when `retry_after` is longer than `max`: waiting that long is worse than
/// moving on to the next deployment, so don't retry this one.
pub(crate) fn backoff(
    attempt: u32,
    base: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    if retry_after.is_some_and(|after| after > max) {
        return None;
    }
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    let cap = base.checked_mul(factor).unwrap_or(max).min(max);
    let jittered = Duration::from_nanos(rng.gen_range(0..=nanos(cap)));
    Some(jittered.max(retry_after.unwrap_or(Duration::ZERO)))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const SEC: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn success() -> Outcome {
        Outcome::Success { ttft: None }
    }

    /// A breaker plus the transitions its listener saw.
    fn breaker(settings: BreakerSettings) -> (Arc<Breaker>, Arc<Mutex<Vec<Transition>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let b = Breaker::new(settings).on_transition(move |t| sink.lock().unwrap().push(*t));
        (Arc::new(b), seen)
    }

    fn take(seen: &Mutex<Vec<Transition>>) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
        seen.lock()
            .unwrap()
            .drain(..)
            .map(|t| (t.from, t.to, t.reason))
            .collect()
    }

    fn fail_n(b: &Arc<Breaker>, n: u32, now: Instant) {
        for _ in 0..n {
            b.try_acquire_at(now)
                .expect("closed breaker admits")
                .record_at(Outcome::Failure, now);
        }
    }

    /// Settings where only the consecutive-failures rule can trip.
    fn consecutive_only(n: u32) -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: n,
            min_requests: u32::MAX,
            ..BreakerSettings::default()
        }
    }

    /// Settings where only the error-rate rule can trip.
    fn rate_only() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 0,
            ..BreakerSettings::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = BreakerSettings::default();
        assert!(s.enabled);
        assert_eq!(s.consecutive_failures, 5);
        assert_eq!(s.error_rate_percent, 50);
        assert_eq!(s.min_requests, 20);
        assert_eq!(s.window, Duration::from_secs(30));
        assert_eq!(s.open_for, Duration::from_secs(30));
        assert_eq!(s.slow_ttft, None);
        assert_eq!(s.half_open_probes, 1);
    }

    #[test]
    fn state_names_and_gauge_values() {
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
        assert_eq!(BreakerState::Closed.gauge_value(), 0.0);
        assert_eq!(BreakerState::Open.gauge_value(), 1.0);
        assert_eq!(BreakerState::HalfOpen.gauge_value(), 2.0);
    }

    #[test]
    fn consecutive_failures_trip_and_open_refuses_until_open_for_is_over() {
        let (b, seen) = breaker(consecutive_only(5));
        let t0 = Instant::now();
        fail_n(&b, 4, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(take(&seen).is_empty());
        fail_n(&b, 1, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            take(&seen),
            vec![(
                BreakerState::Closed,
                BreakerState::Open,
                TransitionReason::ConsecutiveFailures
            )]
        );
        assert!(b.try_acquire_at(t0).is_none());
        assert!(b.try_acquire_at(t0 + 30 * SEC - ms(1)).is_none());
        assert_eq!(b.state(), BreakerState::Open);
        let probe = b.try_acquire_at(t0 + 30 * SEC).expect("open period over");
        assert!(probe.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            take(&seen),
            vec![(
                BreakerState::Open,
                BreakerState::HalfOpen,
                TransitionReason::OpenElapsed
            )]
        );
    }

    #[test]
    fn is_available_says_whether_try_acquire_would_admit() {
        let (b, _) = breaker(consecutive_only(1));
        let t0 = Instant::now();
        assert!(b.is_available_at(t0));
        fail_n(&b, 1, t0);
        assert!(!b.is_available_at(t0 + 30 * SEC - ms(1)));
        let t1 = t0 + 30 * SEC;
        assert!(
            b.is_available_at(t1),
            "the open period is over: a probe may go"
        );
        let probe = b.try_acquire_at(t1).unwrap();
        assert!(!b.is_available_at(t1), "the only probe slot is taken");
        drop(probe);
        assert!(b.is_available_at(t1));
    }

    #[test]
    fn a_success_resets_the_failure_streak() {
        let (b, _) = breaker(consecutive_only(3));
        let t0 = Instant::now();
        for _ in 0..5 {
            fail_n(&b, 2, t0);
            b.try_acquire_at(t0).unwrap().record_at(success(), t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        fail_n(&b, 3, t0);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_open_admits_one_probe_and_closes_on_its_success() {
        let (b, seen) = breaker(consecutive_only(1));
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        let probe = b.try_acquire_at(t1).unwrap();
        assert!(b.try_acquire_at(t1).is_none(), "only one probe at a time");
        assert!(b.try_acquire_at(t1 + 60 * SEC).is_none());
        probe.record_at(success(), t1 + SEC);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            take(&seen).last().unwrap().2,
            TransitionReason::ProbesSucceeded
        );
        let p = b.try_acquire_at(t1 + SEC).expect("closed admits");
        assert!(!p.is_probe());
        let snap = b.snapshot_at(t1 + SEC);
        assert_eq!(snap["state"], "closed");
        assert_eq!(snap["consecutive_failures"], 0);
        assert_eq!(snap["window"]["requests"], 0, "counters reset on close");
    }

    #[test]
    fn a_failed_probe_reopens_for_a_fresh_open_for() {
        let (b, seen) = breaker(consecutive_only(1));
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 40 * SEC;
        b.try_acquire_at(t1)
            .unwrap()
            .record_at(Outcome::Failure, t1 + SEC);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            take(&seen).last().unwrap(),
            &(
                BreakerState::HalfOpen,
                BreakerState::Open,
                TransitionReason::ProbeFailed
            )
        );
        // Reopened at t1 + 1 s, so refused until t1 + 31 s.
        assert!(b.try_acquire_at(t1 + 31 * SEC - ms(1)).is_none());
        assert!(b.try_acquire_at(t1 + 31 * SEC).unwrap().is_probe());
    }

    #[test]
    fn half_open_admits_only_as_many_probes_as_it_needs() {
        let (b, _) = breaker(BreakerSettings {
            half_open_probes: 3,
            ..consecutive_only(1)
        });
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        let probes: Vec<Permit> = (0..3).map(|_| b.try_acquire_at(t1).unwrap()).collect();
        assert!(probes.iter().all(Permit::is_probe));
        assert!(b.try_acquire_at(t1).is_none(), "three probes in flight");
        let mut probes = probes.into_iter();
        probes.next().unwrap().record_at(success(), t1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(
            b.try_acquire_at(t1).is_none(),
            "one success + two in flight already make three"
        );
        probes.next().unwrap().record_at(success(), t1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let snap = b.snapshot_at(t1);
        assert_eq!(snap["state"], "half_open");
        assert_eq!(snap["probes_in_flight"], 1);
        assert_eq!(snap["probe_successes"], 2);
        probes.next().unwrap().record_at(success(), t1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn dropping_a_probe_permit_frees_its_slot_without_counting() {
        let (b, seen) = breaker(consecutive_only(1));
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        let probe = b.try_acquire_at(t1).unwrap();
        assert!(b.try_acquire_at(t1).is_none());
        drop(probe); // the client went away mid-call
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen,
            "neither success nor failure"
        );
        let probe = b.try_acquire_at(t1).expect("slot given back");
        assert!(probe.is_probe());
        assert!(b.try_acquire_at(t1).is_none());
        probe.record_at(success(), t1);
        assert_eq!(b.state(), BreakerState::Closed);
        let reasons: Vec<_> = take(&seen).into_iter().map(|t| t.2).collect();
        assert_eq!(
            reasons,
            vec![
                TransitionReason::ConsecutiveFailures,
                TransitionReason::OpenElapsed,
                TransitionReason::ProbesSucceeded
            ]
        );
    }

    #[test]
    fn dropping_a_closed_permit_counts_nothing() {
        let (b, _) = breaker(consecutive_only(2));
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        for _ in 0..10 {
            drop(b.try_acquire_at(t0).unwrap());
        }
        let snap = b.snapshot_at(t0);
        assert_eq!(snap["consecutive_failures"], 1);
        assert_eq!(snap["window"]["requests"], 1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn outcomes_of_permits_from_an_earlier_state_are_ignored() {
        let (b, _) = breaker(BreakerSettings {
            half_open_probes: 2,
            ..consecutive_only(1)
        });
        let t0 = Instant::now();
        // A long call admitted while closed...
        let slow_call = b.try_acquire_at(t0).unwrap();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        let probe_a = b.try_acquire_at(t1).unwrap();
        let probe_b = b.try_acquire_at(t1).unwrap();
        // ...finishing during the half-open period neither reopens nor frees a probe slot.
        slow_call.record_at(Outcome::Failure, t1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire_at(t1).is_none());
        // B fails: open again; A is still out.
        probe_b.record_at(Outcome::Failure, t1);
        assert_eq!(b.state(), BreakerState::Open);
        let t2 = t1 + 30 * SEC;
        let probe_c = b.try_acquire_at(t2).unwrap();
        // A, from the previous half-open period, can neither count towards closing this one...
        probe_a.record_at(success(), t2);
        let snap = b.snapshot_at(t2);
        assert_eq!(snap["probe_successes"], 0);
        assert_eq!(snap["probes_in_flight"], 1);
        // ...nor free one of its slots.
        let probe_d = b.try_acquire_at(t2).unwrap();
        assert!(b.try_acquire_at(t2).is_none());
        probe_c.record_at(success(), t2);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        probe_d.record_at(success(), t2);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_stale_probe_dropped_late_frees_nothing() {
        let (b, _) = breaker(BreakerSettings {
            half_open_probes: 2,
            ..consecutive_only(1)
        });
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        let stale = b.try_acquire_at(t1).unwrap();
        b.try_acquire_at(t1)
            .unwrap()
            .record_at(Outcome::Failure, t1);
        let t2 = t1 + 30 * SEC;
        let _c = b.try_acquire_at(t2).unwrap();
        let _d = b.try_acquire_at(t2).unwrap();
        drop(stale);
        assert!(b.try_acquire_at(t2).is_none(), "both slots still taken");
        assert_eq!(b.snapshot_at(t2)["probes_in_flight"], 2);
    }

    #[test]
    fn error_rate_trips_once_min_requests_are_in_the_window() {
        let (b, seen) = breaker(rate_only());
        let t0 = Instant::now();
        // 19 outcomes, 10 of them failures (53 %): below min_requests, stays closed.
        for i in 0..19 {
            let outcome = if i % 2 == 0 {
                Outcome::Failure
            } else {
                success()
            };
            b.try_acquire_at(t0).unwrap().record_at(outcome, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // The 20th outcome is a success: a success never trips, even at 50 %.
        b.try_acquire_at(t0).unwrap().record_at(success(), t0);
        assert_eq!(b.state(), BreakerState::Closed);
        // 21 outcomes, 11 failures: 52 % >= 50 %.
        b.try_acquire_at(t0)
            .unwrap()
            .record_at(Outcome::Failure, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            take(&seen),
            vec![(
                BreakerState::Closed,
                BreakerState::Open,
                TransitionReason::ErrorRate
            )]
        );
        let snap = b.snapshot_at(t0 + SEC);
        assert_eq!(snap["state"], "open");
        assert_eq!(snap["window"]["requests"], 21);
        assert_eq!(snap["window"]["failures"], 11);
        assert_eq!(snap["opened_ms_ago"], 1000);
        assert_eq!(snap["retry_in_ms"], 29_000);
    }

    #[test]
    fn error_rate_below_the_threshold_does_not_trip() {
        let (b, _) = breaker(rate_only());
        let t0 = Instant::now();
        // 9 failures in 20 (45 %), ending on a failure so the rule is checked.
        for i in 0..20 {
            let outcome = if i % 2 == 1 && i > 1 {
                Outcome::Failure
            } else {
                success()
            };
            b.try_acquire_at(t0).unwrap().record_at(outcome, t0);
        }
        let snap = b.snapshot_at(t0);
        assert_eq!(snap["window"]["failures"], 9);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn failures_older_than_the_window_no_longer_count() {
        let (b, _) = breaker(rate_only());
        let t0 = Instant::now();
        fail_n(&b, 15, t0);
        assert_eq!(b.state(), BreakerState::Closed, "below min_requests");
        // A 30 s window in 3 s slices: at t0 + 29 s the failures are still in...
        assert_eq!(b.snapshot_at(t0 + 29 * SEC)["window"]["failures"], 15);
        // ...and at t0 + 30 s they have slid out.
        let t1 = t0 + 30 * SEC;
        assert_eq!(b.snapshot_at(t1)["window"]["requests"], 0);
        for _ in 0..10 {
            b.try_acquire_at(t1).unwrap().record_at(success(), t1);
        }
        fail_n(&b, 9, t1);
        // 19 outcomes in the window, 9 failures: neither enough requests nor enough failures.
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot_at(t1)["window"]["requests"], 19);
    }

    #[test]
    fn the_window_spans_slices() {
        let (b, _) = breaker(rate_only());
        let t0 = Instant::now();
        // Ten failures and ten successes spread over 20 s trip on the last failure.
        for i in 0..19u32 {
            let t = t0 + SEC * i;
            let outcome = if i % 2 == 0 {
                success()
            } else {
                Outcome::Failure
            };
            b.try_acquire_at(t).unwrap().record_at(outcome, t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot_at(t0 + 19 * SEC)["window"]["requests"], 19);
        fail_n(&b, 1, t0 + 19 * SEC);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn slow_first_tokens_count_as_failures() {
        let (b, _) = breaker(BreakerSettings {
            slow_ttft: Some(2 * SEC),
            ..consecutive_only(3)
        });
        let t0 = Instant::now();
        let slow = Outcome::Success {
            ttft: Some(2 * SEC + ms(1)),
        };
        let fast = Outcome::Success {
            ttft: Some(2 * SEC),
        };
        b.try_acquire_at(t0).unwrap().record_at(slow, t0);
        b.try_acquire_at(t0).unwrap().record_at(slow, t0);
        // Exactly at the limit, or without a ttft, is a success and resets the streak.
        b.try_acquire_at(t0).unwrap().record_at(fast, t0);
        b.try_acquire_at(t0).unwrap().record_at(slow, t0);
        b.try_acquire_at(t0).unwrap().record_at(slow, t0);
        b.try_acquire_at(t0).unwrap().record_at(success(), t0);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot_at(t0)["window"]["failures"], 4);
        for _ in 0..3 {
            b.try_acquire_at(t0).unwrap().record_at(slow, t0);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_slow_probe_reopens() {
        let (b, _) = breaker(BreakerSettings {
            slow_ttft: Some(SEC),
            ..consecutive_only(1)
        });
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        b.try_acquire_at(t1).unwrap().record_at(
            Outcome::Success {
                ttft: Some(5 * SEC),
            },
            t1,
        );
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_disabled_breaker_always_admits() {
        let (b, seen) = breaker(BreakerSettings {
            enabled: false,
            ..consecutive_only(1)
        });
        let t0 = Instant::now();
        fail_n(&b, 100, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        let permits: Vec<_> = (0..10).map(|_| b.try_acquire_at(t0).unwrap()).collect();
        assert!(permits.iter().all(|p| !p.is_probe()));
        assert!(take(&seen).is_empty());
        assert_eq!(b.snapshot_at(t0)["enabled"], false);
    }

    #[test]
    fn zero_probes_means_one() {
        let (b, _) = breaker(BreakerSettings {
            half_open_probes: 0,
            ..consecutive_only(1)
        });
        let t0 = Instant::now();
        fail_n(&b, 1, t0);
        let t1 = t0 + 30 * SEC;
        let probe = b.try_acquire_at(t1).unwrap();
        assert!(b.try_acquire_at(t1).is_none());
        probe.record_at(success(), t1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn the_public_api_reads_the_clock_itself() {
        let (b, _) = breaker(BreakerSettings {
            open_for: Duration::ZERO,
            ..consecutive_only(1)
        });
        b.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot()["state"], "open");
        let probe = b.try_acquire().expect("a zero open period is over at once");
        assert!(probe.is_probe());
        probe.record(success());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    // --- latency ---

    #[test]
    fn an_unobserved_deployment_scores_zero() {
        let l = Arc::new(LatencyEwma::new());
        let _busy = l.start();
        assert_eq!(l.score(), 0.0);
        assert_eq!(l.ewma(), None);
    }

    #[test]
    fn ewma_weights_the_newest_sample_by_alpha() {
        let l = LatencyEwma::new();
        let t0 = Instant::now();
        l.observe_at(SEC, t0);
        assert_eq!(l.ewma(), Some(SEC), "the first sample is the average");
        l.observe_at(2 * SEC, t0);
        let expected = 0.3 * 2.0 + 0.7 * 1.0;
        assert!((l.score_at(t0) - expected).abs() < 1e-9);
        l.observe_at(2 * SEC, t0);
        let expected = 0.3 * 2.0 + 0.7 * expected;
        assert!((l.score_at(t0) - expected).abs() < 1e-9);
    }

    #[test]
    fn in_flight_requests_multiply_the_score() {
        let l = Arc::new(LatencyEwma::new());
        let t0 = Instant::now();
        l.observe_at(ms(500), t0);
        assert!((l.score_at(t0) - 0.5).abs() < 1e-9);
        let a = l.start();
        let b = l.start();
        assert_eq!(l.in_flight(), 2);
        assert!((l.score_at(t0) - 1.5).abs() < 1e-9);
        drop(a);
        drop(b);
        assert_eq!(l.in_flight(), 0);
        assert!((l.score_at(t0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn an_idle_deployments_score_fades() {
        let l = LatencyEwma::new();
        let t0 = Instant::now();
        l.observe_at(5 * SEC, t0);
        let later = l.score_at(t0 + EWMA_FORGET);
        assert!((later - 5.0 * (-1f64).exp()).abs() < 1e-6, "{later}");
        assert!(l.score_at(t0 + 30 * SEC) < 0.5);
        // A fresh sample counts from now again.
        l.observe_at(5 * SEC, t0 + 30 * SEC);
        assert!((l.score_at(t0 + 30 * SEC) - 5.0).abs() < 1e-6);
    }

    // --- balancing ---

    fn cand(weight: u32, score: f64) -> Candidate {
        Candidate {
            weight,
            score,
            available: true,
        }
    }

    fn is_permutation_of(order: &[usize], expected: &[usize]) -> bool {
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        sorted == expected
    }

    #[test]
    fn weighted_first_pick_follows_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let cands = [cand(1, 0.0), cand(3, 0.0), cand(6, 0.0)];
        let mut first = [0u32; 3];
        let mut second_after_2 = [0u32; 3];
        const DRAWS: u32 = 10_000;
        for _ in 0..DRAWS {
            let o = order_with(&mut rng, Balance::Weighted, &cands);
            assert!(is_permutation_of(&o, &[0, 1, 2]));
            first[o[0]] += 1;
            if o[0] == 2 {
                second_after_2[o[1]] += 1;
            }
        }
        for (i, expected) in [0.1, 0.3, 0.6].into_iter().enumerate() {
            let share = f64::from(first[i]) / f64::from(DRAWS);
            assert!((share - expected).abs() < 0.02, "candidate {i}: {share}");
        }
        // Without replacement: after 2, candidate 1 follows three times in four.
        let share = f64::from(second_after_2[1]) / f64::from(second_after_2[1] + second_after_2[0]);
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }

    #[test]
    fn weighted_with_zero_weights_still_orders_everyone() {
        let mut rng = StdRng::seed_from_u64(1);
        let cands = [cand(0, 0.0), cand(0, 0.0), cand(5, 0.0)];
        for _ in 0..100 {
            let o = order_with(&mut rng, Balance::Weighted, &cands);
            assert_eq!(o[0], 2, "the only weighted candidate goes first");
            assert!(is_permutation_of(&o, &[0, 1, 2]));
        }
    }

    #[test]
    fn unavailable_candidates_are_never_returned() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut cands = [cand(1, 0.1), cand(100, 0.0), cand(1, 0.3), cand(100, 0.2)];
        cands[1].available = false;
        cands[3].available = false;
        for balance in [Balance::Weighted, Balance::LeastLatency] {
            for _ in 0..1000 {
                let o = order_with(&mut rng, balance, &cands);
                assert!(is_permutation_of(&o, &[0, 2]), "{balance:?}: {o:?}");
            }
        }
        for c in &mut cands {
            c.available = false;
        }
        assert!(order_with(&mut rng, Balance::Weighted, &cands).is_empty());
        assert!(order_with(&mut rng, Balance::LeastLatency, &cands).is_empty());
        assert!(order_with(&mut rng, Balance::LeastLatency, &[]).is_empty());
    }

    #[test]
    fn p2c_never_picks_the_worst_first_and_orders_the_rest_by_score() {
        let mut rng = StdRng::seed_from_u64(11);
        let cands = [cand(1, 3.0), cand(1, 1.0), cand(1, 2.0)];
        let mut first = [0u32; 3];
        for _ in 0..3000 {
            let o = order_with(&mut rng, Balance::LeastLatency, &cands);
            assert_ne!(o[0], 0, "the worst is never first");
            assert!(is_permutation_of(&o, &[0, 1, 2]));
            assert!(cands[o[1]].score <= cands[o[2]].score, "{o:?}");
            first[o[0]] += 1;
        }
        // The best wins two pairs of three, the middle one one.
        let best = f64::from(first[1]) / 3000.0;
        assert!((best - 2.0 / 3.0).abs() < 0.03, "{best}");
    }

    #[test]
    fn p2c_spreads_ties_and_tries_the_unobserved() {
        let mut rng = StdRng::seed_from_u64(5);
        let cands = [cand(1, 0.0), cand(1, 0.0), cand(1, 0.0), cand(1, 0.9)];
        let mut first = [0u32; 4];
        for _ in 0..3000 {
            let o = order_with(&mut rng, Balance::LeastLatency, &cands);
            first[o[0]] += 1;
            assert_eq!(o[3], 3, "the only observed one is tried last");
        }
        assert_eq!(first[3], 0);
        for (i, &n) in first.iter().enumerate().take(3) {
            assert!(n > 800, "candidate {i} first {n} times");
        }
        let single = [cand(1, 9.0)];
        assert_eq!(
            order_with(&mut rng, Balance::LeastLatency, &single),
            vec![0]
        );
    }

    // --- retries ---

    #[test]
    fn retry_budget_allows_a_share_of_requests_and_caps_the_balance() {
        let budget = RetryBudget::new(0.2, 0, 10);
        let t0 = Instant::now();
        assert!(!budget.try_withdraw_at(t0), "no deposits, no floor");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(!budget.try_withdraw_at(t0), "0.8 tokens is not a retry");
        budget.deposit();
        assert!(budget.try_withdraw_at(t0));
        assert!(!budget.try_withdraw_at(t0));
        for _ in 0..1000 {
            budget.deposit();
        }
        let allowed = (0..100).filter(|_| budget.try_withdraw_at(t0)).count();
        assert_eq!(allowed, 10, "the balance is capped at max_balance");
    }

    #[test]
    fn retry_budget_floor_refills_with_time() {
        let budget = RetryBudget::new(0.2, 2, 10);
        let t0 = Instant::now();
        assert!(budget.try_withdraw_at(t0));
        assert!(budget.try_withdraw_at(t0));
        assert!(!budget.try_withdraw_at(t0), "floor used up");
        assert!(!budget.try_withdraw_at(t0 + ms(499)));
        assert!(
            budget.try_withdraw_at(t0 + ms(500)),
            "2/s refills one in 500 ms"
        );
        assert!(!budget.try_withdraw_at(t0 + ms(500)));
        // Frequent polling does not lose the fractions: 100 ms steps add up to 500 ms.
        let mut t = t0 + ms(500);
        for _ in 0..4 {
            t += ms(100);
            assert!(!budget.try_withdraw_at(t));
        }
        assert!(budget.try_withdraw_at(t + ms(100)));
        // The floor banks at most one second's worth.
        let later = t + 60 * SEC;
        let allowed = (0..10).filter(|_| budget.try_withdraw_at(later)).count();
        assert_eq!(allowed, 2);
    }

    #[test]
    fn retry_budget_uses_deposits_before_the_floor() {
        let budget = RetryBudget::new(1.0, 1, 10);
        let t0 = Instant::now();
        budget.deposit();
        assert!(budget.try_withdraw_at(t0));
        assert!(budget.try_withdraw_at(t0), "the floor is still there");
        assert!(!budget.try_withdraw_at(t0));
    }

    #[test]
    fn backoff_is_full_jitter_capped_by_max() {
        let mut rng = StdRng::seed_from_u64(9);
        let base = ms(100);
        let max = 2 * SEC;
        for attempt in 0..40 {
            let cap = (base * 2u32.saturating_pow(attempt.min(20))).min(max);
            let mut longest = Duration::ZERO;
            for _ in 0..200 {
                let d = backoff(attempt, base, max, None, &mut rng).unwrap();
                assert!(d <= cap, "attempt {attempt}: {d:?} > {cap:?}");
                longest = longest.max(d);
            }
            // Jitter covers the range, not just its bottom.
            assert!(longest > cap / 2, "attempt {attempt}: {longest:?}");
        }
        assert_eq!(
            backoff(u32::MAX, base, max, None, &mut rng).map(|d| d <= max),
            Some(true)
        );
        assert_eq!(
            backoff(3, Duration::ZERO, max, None, &mut rng),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn backoff_honours_retry_after_up_to_max() {
        let mut rng = StdRng::seed_from_u64(2);
        let max = 10 * SEC;
        for _ in 0..200 {
            let d = backoff(0, ms(100), max, Some(3 * SEC), &mut rng).unwrap();
            assert_eq!(d, 3 * SEC, "jitter below 100 ms never beats the floor");
            let d = backoff(10, SEC, max, Some(3 * SEC), &mut rng).unwrap();
            assert!((3 * SEC..=max).contains(&d), "{d:?}");
        }
        assert_eq!(backoff(0, ms(100), max, Some(max), &mut rng), Some(max));
        assert_eq!(
            backoff(0, ms(100), max, Some(max + ms(1)), &mut rng),
            None,
            "too long to wait: move on to another deployment"
        );
    }
}
