//! The in-process backends: counters in one mutex-guarded state, the response cache in a
//! size-bounded `moka` cache.
//!
//! For a single gateway process (the default deployment). Atomicity of every
//! [`Counters`] operation comes from doing the whole check-then-apply under one
//! `std::sync::Mutex`; the lock is never held across an `.await`, so a plain mutex is both
//! correct and cheaper than an async one. Nothing is shared with other processes: replicas
//! need the Redis backend.
//!
//! The semantics are the Redis backend's, with one difference of resolution: time here is a
//! `tokio::time::Instant` (nanoseconds, and paused time in tests), in Redis whole
//! milliseconds of the server's clock.

use crate::MAX_PERIOD;
use agentd_core::{
    Admission, Admit, BudgetState, CounterError, Counters, RateCharge, ResponseCache,
};
use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// A sweep of expired entries runs at most this often (in operations), so small maps are not
/// rescanned on every call.
const MIN_OPS_BETWEEN_SWEEPS: usize = 1024;
/// Hold ttls are capped here (about a century), so an absurd one cannot overflow the clock.
const MAX_HOLD_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Budget and rate-limit counters for one process.
///
/// Expiry uses `tokio::time::Instant`, so tests can drive windows, holds and refills with
/// paused time.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    budgets: HashMap<String, Budget>,
    /// Only buckets that are not full: a missing bucket is a full one.
    buckets: HashMap<String, Bucket>,
    /// `once` keys and when each expires (`None`: never).
    once: HashMap<String, Option<Instant>>,
    /// Operations since the last sweep of expired entries.
    ops_since_sweep: usize,
    /// Entries (counters, holds, buckets, once keys) left after the last sweep: the next sweep
    /// waits for at least that many operations, so sweeping costs O(1) amortised per operation
    /// while expired entries can never outnumber live ones by more than a constant factor.
    live_after_sweep: usize,
}

#[derive(Debug)]
struct Budget {
    spent: i64,
    /// The sum of `holds`' amounts.
    held: i64,
    holds: HashMap<String, Held>,
    /// The same holds by expiry, earliest first, so dropping the expired ones costs only them.
    by_expiry: BTreeSet<(Instant, String)>,
    /// `None`: lives until the process ends. A counter whose instant has passed is missing
    /// everywhere, whether or not a sweep has removed it yet.
    expires: Option<Instant>,
}

#[derive(Debug)]
struct Held {
    amount: i64,
    expires: Instant,
}

impl Budget {
    fn new(spent: i64, expires: Option<Instant>) -> Budget {
        Budget {
            spent,
            held: 0,
            holds: HashMap::new(),
            by_expiry: BTreeSet::new(),
            expires,
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }

    /// Drops the holds whose expiry has come (an expiry equal to `now` has come, as in Redis).
    fn purge(&mut self, now: Instant) {
        while self.by_expiry.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, id)) = self.by_expiry.pop_first() {
                self.release(&id);
            }
        }
    }

    /// Removes hold `id` if present. Amounts are never negative, so `held` stays the sum of
    /// the remaining ones.
    fn release(&mut self, id: &str) {
        if let Some(hold) = self.holds.remove(id) {
            self.by_expiry.remove(&(hold.expires, id.to_owned()));
            self.held = self.held.saturating_sub(hold.amount);
        }
    }

    /// Adds `amount` to hold `id` (created if needed: the same hold placed twice on a counter
    /// holds both amounts) and moves its expiry to `expires`. The caller checked that `held`
    /// cannot overflow.
    fn place(&mut self, id: &str, amount: i64, expires: Instant) {
        let hold = self
            .holds
            .entry(id.to_owned())
            .or_insert(Held { amount: 0, expires });
        self.by_expiry.remove(&(hold.expires, id.to_owned()));
        hold.amount = hold.amount.saturating_add(amount);
        hold.expires = expires;
        self.by_expiry.insert((expires, id.to_owned()));
        self.held = self.held.saturating_add(amount);
    }

    /// `spent + held` for reports. Saturates instead of failing: only a value beyond ±9.2e18
    /// (far past any budget) would be inexact, and every check uses checked arithmetic.
    fn value(&self) -> i64 {
        self.spent.saturating_add(self.held)
    }
}

/// A token bucket that is not full.
///
/// Tokens are kept multiplied by the period in nanoseconds, so that a refill of `elapsed`
/// nanoseconds is exactly `elapsed × capacity` and nothing is ever rounded up. Saturating
/// i128 arithmetic: a capacity of `i64::MAX` over a century still fits.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens × `period`; negative when in debt (see [`Counters::correct`]).
    scaled: i128,
    /// The period the tokens are scaled by, in ns.
    period: i128,
    capacity: i64,
    /// Refilled up to this instant.
    at: Instant,
}

impl Bucket {
    fn full(capacity: i64, period: i128, at: Instant) -> Bucket {
        Bucket {
            scaled: i128::from(capacity).saturating_mul(period),
            period,
            capacity,
            at,
        }
    }

    fn full_scaled(&self) -> i128 {
        i128::from(self.capacity).saturating_mul(self.period)
    }

    fn is_full(&self) -> bool {
        self.scaled >= self.full_scaled()
    }

    /// The bucket at `now`, seen through a charge's `capacity` and `period`. A changed period
    /// (a config reload) keeps the whole tokens only, rounding down; a lowered capacity caps
    /// the tokens.
    fn refilled(mut self, capacity: i64, period: i128, now: Instant) -> Bucket {
        if self.period != period {
            self.scaled = self.scaled.div_euclid(self.period).saturating_mul(period);
            self.period = period;
        }
        self.capacity = capacity;
        if now > self.at {
            let elapsed = i128::try_from((now - self.at).as_nanos()).unwrap_or(i128::MAX);
            self.scaled = self
                .scaled
                .saturating_add(elapsed.saturating_mul(i128::from(capacity)));
            self.at = now;
        }
        self.scaled = self.scaled.min(self.full_scaled());
        self
    }

    /// How long until the bucket holds `amount` tokens (at least a millisecond, as in Redis);
    /// one period when it never will (`amount` above the capacity).
    fn wait_for(&self, amount: i64, period: Duration) -> Duration {
        if amount > self.capacity || self.capacity == 0 {
            return period.min(MAX_PERIOD);
        }
        let missing = i128::from(amount)
            .saturating_mul(self.period)
            .saturating_sub(self.scaled);
        let capacity = i128::from(self.capacity);
        // Ceiling division of a positive by a positive.
        let nanos = (missing + capacity - 1) / capacity;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            .clamp(Duration::from_millis(1), MAX_PERIOD)
    }
}

/// At most [`MAX_PERIOD`], so that `capacity × period` fits an i128 for any capacity.
fn period_ns(period: Duration) -> i128 {
    i128::try_from(period.min(MAX_PERIOD).as_nanos()).unwrap_or(i128::MAX)
}

impl State {
    /// Counts one operation and sweeps expired entries when due.
    fn tick(&mut self, now: Instant) {
        self.ops_since_sweep += 1;
        if self.ops_since_sweep >= MIN_OPS_BETWEEN_SWEEPS.max(self.live_after_sweep) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.budgets.retain(|_, budget| budget.is_live(now));
        for budget in self.budgets.values_mut() {
            budget.purge(now);
        }
        self.buckets.retain(|_, bucket| {
            !bucket
                .refilled(bucket.capacity, bucket.period, now)
                .is_full()
        });
        self.once
            .retain(|_, expires| expires.is_none_or(|at| at > now));
        let holds: usize = self.budgets.values().map(|budget| budget.holds.len()).sum();
        self.live_after_sweep = self.budgets.len() + holds + self.buckets.len() + self.once.len();
        self.ops_since_sweep = 0;
    }

    /// The live counter `key` with its expired holds dropped.
    fn budget(&mut self, key: &str, now: Instant) -> Option<&mut Budget> {
        let budget = self.budgets.get_mut(key).filter(|b| b.is_live(now))?;
        budget.purge(now);
        Some(budget)
    }

    /// Bucket `rate.key` at `now` as this call sees it: its earlier charges in `pending`
    /// first, then the stored bucket, else a full one.
    fn bucket(&self, pending: &HashMap<&str, Bucket>, rate: &RateCharge, now: Instant) -> Bucket {
        let period = period_ns(rate.period);
        match pending
            .get(rate.key.as_str())
            .or_else(|| self.buckets.get(&rate.key))
        {
            Some(bucket) => bucket.refilled(rate.capacity, period, now),
            None => Bucket::full(rate.capacity, period, now),
        }
    }

    fn store_buckets(&mut self, pending: HashMap<&str, Bucket>) {
        for (key, bucket) in pending {
            if bucket.is_full() {
                self.buckets.remove(key);
            } else {
                self.buckets.insert(key.to_owned(), bucket);
            }
        }
    }

    fn admit(&mut self, admission: &Admission<'_>, now: Instant) -> Admit {
        let missing: Vec<usize> = admission
            .budgets
            .iter()
            .enumerate()
            .filter(|(_, charge)| self.budget(&charge.key, now).is_none())
            .map(|(index, _)| index)
            .collect();
        if !missing.is_empty() {
            return Admit::Missing(missing);
        }

        // Check everything before the first write; `buckets` and `budgets` hold this call's
        // state so far, so a key named twice sees its earlier charges.
        let mut buckets: HashMap<&str, Bucket> = HashMap::new();
        for (index, rate) in admission.rates.iter().enumerate() {
            let mut bucket = self.bucket(&buckets, rate, now);
            let need = i128::from(rate.amount).saturating_mul(bucket.period);
            if bucket.scaled < need {
                let retry_after = bucket.wait_for(rate.amount, rate.period);
                return Admit::RateLimited { index, retry_after };
            }
            bucket.scaled -= need;
            buckets.insert(&rate.key, bucket);
        }
        // (value, held) per counter, including this call's earlier charges.
        let mut budgets: HashMap<&str, (i64, i64)> = HashMap::new();
        let mut after = Vec::with_capacity(admission.budgets.len());
        for (index, charge) in admission.budgets.iter().enumerate() {
            let (current, held) = match budgets.get(charge.key.as_str()) {
                Some(pending) => *pending,
                // Present: no counter was missing, and nothing expires within one `now`.
                None => self
                    .budgets
                    .get(&charge.key)
                    .map_or((0, 0), |budget| (budget.value(), budget.held)),
            };
            match (
                current.checked_add(charge.amount),
                held.checked_add(charge.amount),
            ) {
                (Some(next), Some(held)) if next <= charge.limit => {
                    budgets.insert(&charge.key, (next, held));
                    after.push(next);
                }
                // An overflow is far above any limit: refuse like any other.
                _ => return Admit::OverBudget { index, current },
            }
        }

        self.store_buckets(buckets);
        if let Some(hold) = admission.hold {
            let expires = now + hold.ttl.min(MAX_HOLD_TTL);
            for charge in admission.budgets {
                if let Some(budget) = self.budgets.get_mut(&charge.key) {
                    budget.place(&hold.id, charge.amount, expires);
                }
            }
        }
        Admit::Admitted(after)
    }

    fn settle(
        &mut self,
        hold_id: &str,
        keys: &[(String, Option<Duration>)],
        actual: i64,
        now: Instant,
    ) -> Result<Vec<Option<i64>>, CounterError> {
        // Every addition is checked before the first write, so an overflow changes nothing.
        let mut spent: HashMap<&str, i64> = HashMap::new();
        for (key, _) in keys {
            let current = match spent.get(key.as_str()) {
                Some(pending) => *pending,
                None => match self.budget(key, now) {
                    Some(budget) => budget.spent,
                    None => continue,
                },
            };
            let next = current.checked_add(actual).ok_or_else(|| {
                CounterError::Backend(format!("counter {key} would overflow adding {actual}"))
            })?;
            spent.insert(key, next);
        }
        Ok(keys
            .iter()
            .map(|(key, _)| {
                let budget = self.budgets.get_mut(key).filter(|b| b.is_live(now))?;
                budget.release(hold_id);
                budget.spent = budget.spent.saturating_add(actual);
                Some(budget.value())
            })
            .collect())
    }

    fn correct(&mut self, rates: &[RateCharge], now: Instant) {
        let mut buckets: HashMap<&str, Bucket> = HashMap::new();
        for rate in rates {
            let mut bucket = self.bucket(&buckets, rate, now);
            bucket.scaled = bucket
                .scaled
                .saturating_sub(i128::from(rate.amount).saturating_mul(bucket.period))
                .min(bucket.full_scaled());
            buckets.insert(&rate.key, bucket);
        }
        self.store_buckets(buckets);
    }
}

/// `None` for no ttl, and for a ttl so long the clock cannot represent its end.
fn deadline(now: Instant, ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|ttl| now.checked_add(ttl))
}

impl MemoryCounters {
    pub fn new() -> MemoryCounters {
        MemoryCounters::default()
    }

    /// No critical section can leave the state half-updated (every check happens before the
    /// first write, and the writes cannot panic), so a poisoned lock is still consistent.
    fn lock(&self, now: Instant) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tick(now);
        state
    }

    /// Entries stored, live or expired-but-not-yet-swept (tests of the sweep).
    #[cfg(test)]
    fn stored_entries(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let holds: usize = state
            .budgets
            .values()
            .map(|budget| budget.holds.len())
            .sum();
        state.budgets.len() + holds + state.buckets.len() + state.once.len()
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn admit(&self, admission: &Admission<'_>) -> Result<Admit, CounterError> {
        crate::validate_admission(admission)?;
        let now = Instant::now();
        Ok(self.lock(now).admit(admission, now))
    }

    async fn settle(
        &self,
        hold_id: &str,
        budgets: &[(String, Option<Duration>)],
        actual: i64,
    ) -> Result<Vec<Option<i64>>, CounterError> {
        let now = Instant::now();
        self.lock(now).settle(hold_id, budgets, actual, now)
    }

    async fn correct(&self, rates: &[RateCharge]) -> Result<(), CounterError> {
        crate::validate_buckets(rates)?;
        let now = Instant::now();
        self.lock(now).correct(rates, now);
        Ok(())
    }

    async fn init(
        &self,
        key: &str,
        spent: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, CounterError> {
        let now = Instant::now();
        let mut state = self.lock(now);
        if state.budget(key, now).is_some() {
            return Ok(false);
        }
        let budget = Budget::new(spent, deadline(now, ttl));
        state.budgets.insert(key.to_owned(), budget);
        Ok(true)
    }

    async fn budget_state(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<BudgetState>>, CounterError> {
        let now = Instant::now();
        let mut state = self.lock(now);
        Ok(keys
            .iter()
            .map(|key| {
                let budget = state.budget(key, now)?;
                Some(BudgetState {
                    spent: budget.spent,
                    held: budget.held,
                })
            })
            .collect())
    }

    async fn once(&self, key: &str, ttl: Duration) -> Result<bool, CounterError> {
        let now = Instant::now();
        let mut state = self.lock(now);
        let taken = state
            .once
            .get(key)
            .is_some_and(|expires| expires.is_none_or(|at| at > now));
        if !taken {
            state.once.insert(key.to_owned(), deadline(now, Some(ttl)));
        }
        Ok(!taken)
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// The response cache for one process, bounded by the bytes it holds (keys plus bodies).
///
/// Each entry lives for the ttl given to its `put`; a later `put` of the same key replaces
/// both the body and the ttl.
#[derive(Clone, Debug)]
pub struct MemoryCache {
    inner: moka::future::Cache<String, Cached>,
}

/// The ttl travels with the body because moka's [`Expiry`] only sees the key and the value.
#[derive(Clone, Debug)]
struct Cached {
    body: Bytes,
    ttl: Duration,
}

/// Expires every entry after the ttl it was stored with; reads do not extend it.
struct PerEntryTtl;

impl Expiry<String, Cached> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Cached,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl MemoryCache {
    /// A cache holding at most about `max_bytes` of keys and bodies. Moka evicts
    /// asynchronously, so the size may briefly exceed the bound between maintenance runs; a
    /// single entry larger than the bound is not kept at all.
    pub fn new(max_bytes: u64) -> MemoryCache {
        let inner = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, value: &Cached| {
                u32::try_from(key.len().saturating_add(value.body.len())).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryCache { inner }
    }

    /// Bytes currently held (keys plus bodies), as of the last maintenance run.
    pub fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Entries currently held, as of the last maintenance run.
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expirations) now instead of on a later
    /// call, so `weighted_size` is exact afterwards. Mostly for tests and metrics.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }
}

#[async_trait]
impl ResponseCache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.get(key).await.map(|cached| cached.body)
    }

    /// A zero ttl means "do not keep": it removes any earlier entry for the key.
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        if ttl.is_zero() {
            self.inner.invalidate(key).await;
            return;
        }
        let cached = Cached { body: value, ttl };
        self.inner.insert(key.to_owned(), cached).await;
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_core::{Charge, Hold};

    fn charge(key: &str, amount: i64, limit: i64) -> Charge {
        Charge {
            key: key.to_owned(),
            amount,
            limit,
            ttl: None,
        }
    }

    fn rate(key: &str, amount: i64, capacity: i64, period: Duration) -> RateCharge {
        RateCharge {
            key: key.to_owned(),
            amount,
            capacity,
            period,
        }
    }

    fn hold(id: &str, ttl: Duration) -> Hold {
        Hold {
            id: id.to_owned(),
            ttl,
        }
    }

    async fn admit(
        counters: &MemoryCounters,
        rates: &[RateCharge],
        hold: Option<&Hold>,
        budgets: &[Charge],
    ) -> Admit {
        let admission = Admission {
            rates,
            hold,
            budgets,
        };
        counters.admit(&admission).await.unwrap()
    }

    async fn held(counters: &MemoryCounters, key: &str) -> i64 {
        let state = counters.budget_state(&[key.to_owned()]).await.unwrap();
        state[0].expect("counter exists").held
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept_so_memory_stays_bounded() {
        let counters = MemoryCounters::new();
        let second = Some(Duration::from_secs(1));
        assert!(counters.init("forever", 0, None).await.unwrap());
        for i in 0..2000 {
            counters.init(&format!("old:{i}"), 1, second).await.unwrap();
            // Holds that are never settled (their owners died) on a counter that stays.
            let h = hold(&format!("call-{i}"), Duration::from_secs(1));
            let budgets = [charge("forever", 1, i64::MAX)];
            admit(&counters, &[], Some(&h), &budgets).await;
            let rates = [rate(&format!("rl:{i}"), 1, 10, Duration::from_secs(1))];
            admit(&counters, &rates, None, &[]).await;
        }
        assert_eq!(counters.stored_entries(), 1 + 3 * 2000);

        tokio::time::advance(Duration::from_secs(2)).await;
        // As many operations as there were entries at the last sweep are enough to trigger the
        // next one, which drops every expired counter and hold and every refilled bucket.
        for i in 0..7000 {
            counters
                .once(&format!("new:{i}"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(
            counters.stored_entries(),
            1 + 7000,
            "only live entries remain"
        );
        let state = counters
            .budget_state(&["forever".into(), "old:1".into()])
            .await;
        assert_eq!(
            state.unwrap(),
            [Some(BudgetState { spent: 0, held: 0 }), None]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_stops_counting_exactly_at_its_expiry() {
        let counters = MemoryCounters::new();
        counters.init("k", 0, None).await.unwrap();
        let h = hold("h", Duration::from_millis(100));
        let admitted = admit(&counters, &[], Some(&h), &[charge("k", 5, 10)]).await;
        assert_eq!(admitted, Admit::Admitted(vec![5]));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(held(&counters, "k").await, 5);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(held(&counters, "k").await, 0);
        // Settling it afterwards adds the cost only.
        let settled = counters
            .settle("h", &[("k".into(), None)], 3)
            .await
            .unwrap();
        assert_eq!(settled, [Some(3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_counter_is_missing_before_any_sweep() {
        let counters = MemoryCounters::new();
        let ttl = Some(Duration::from_millis(100));
        counters.init("k", 5, ttl).await.unwrap();
        tokio::time::advance(Duration::from_millis(100)).await;
        let h = hold("h", Duration::from_secs(1));
        let refused = admit(&counters, &[], Some(&h), &[charge("k", 1, 10)]).await;
        assert_eq!(refused, Admit::Missing(vec![0]));
        assert!(
            counters.init("k", 7, ttl).await.unwrap(),
            "rebuilt after expiry"
        );
        assert_eq!(held(&counters, "k").await, 0);
    }

    /// 7 tokens per second: the 8th waits exactly ceil(1 s / 7), not a nanosecond less.
    #[tokio::test(start_paused = true)]
    async fn refill_is_exact_and_never_rounds_up() {
        let counters = MemoryCounters::new();
        let second = Duration::from_secs(1);
        let one = [rate("r", 1, 7, second)];
        for _ in 0..7 {
            assert_eq!(
                admit(&counters, &one, None, &[]).await,
                Admit::Admitted(vec![])
            );
        }
        let refused = admit(&counters, &one, None, &[]).await;
        let per_token = Duration::from_nanos(142_857_143);
        assert_eq!(
            refused,
            Admit::RateLimited {
                index: 0,
                retry_after: per_token
            }
        );
        tokio::time::advance(per_token - Duration::from_nanos(1)).await;
        let refused = admit(&counters, &one, None, &[]).await;
        // Less than a millisecond away still says one millisecond, as Redis does.
        assert_eq!(
            refused,
            Admit::RateLimited {
                index: 0,
                retry_after: Duration::from_millis(1)
            }
        );
        tokio::time::advance(Duration::from_nanos(1)).await;
        assert_eq!(
            admit(&counters, &one, None, &[]).await,
            Admit::Admitted(vec![])
        );
    }

    /// Frequent calls must not lose the fractions of a token refilled between them.
    #[tokio::test(start_paused = true)]
    async fn frequent_calls_do_not_stall_the_refill() {
        let counters = MemoryCounters::new();
        let one = [rate("r", 1, 1, Duration::from_secs(1))];
        assert_eq!(
            admit(&counters, &one, None, &[]).await,
            Admit::Admitted(vec![])
        );
        for _ in 0..9_999 {
            tokio::time::advance(Duration::from_micros(100)).await;
            assert!(matches!(
                admit(&counters, &one, None, &[]).await,
                Admit::RateLimited { .. }
            ));
        }
        tokio::time::advance(Duration::from_micros(100)).await;
        assert_eq!(
            admit(&counters, &one, None, &[]).await,
            Admit::Admitted(vec![])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_period_keeps_whole_tokens_only() {
        let counters = MemoryCounters::new();
        let minute = Duration::from_secs(60);
        admit(&counters, &[rate("r", 8, 10, minute)], None, &[]).await;
        // 2 tokens left; the half token refilled over these 3 s is dropped with the change,
        // and the 3 s refill at the new rate instead (1/120 of a token).
        tokio::time::advance(Duration::from_secs(3)).await;
        let hour = Duration::from_secs(3600);
        let drained = admit(&counters, &[rate("r", 2, 10, hour)], None, &[]).await;
        assert_eq!(drained, Admit::Admitted(vec![]));
        let refused = admit(&counters, &[rate("r", 1, 10, hour)], None, &[]).await;
        assert_eq!(
            refused,
            Admit::RateLimited {
                index: 0,
                retry_after: Duration::from_secs(357)
            }
        );
    }

    #[tokio::test]
    async fn an_overflowing_settle_changes_nothing() {
        let counters = MemoryCounters::new();
        counters.init("small", 0, None).await.unwrap();
        counters.init("big", i64::MAX - 1, None).await.unwrap();
        let h = hold("h", Duration::from_secs(60));
        admit(&counters, &[], Some(&h), &[charge("small", 4, 10)]).await;
        let keys = [("small".to_owned(), None), ("big".to_owned(), None)];
        let err = counters.settle("h", &keys, 5).await.unwrap_err();
        assert!(
            matches!(err, CounterError::Backend(ref m) if m.contains("overflow")),
            "{err:?}"
        );
        let state = counters
            .budget_state(&["small".into(), "big".into()])
            .await
            .unwrap();
        assert_eq!(
            state,
            [
                Some(BudgetState { spent: 0, held: 4 }),
                Some(BudgetState {
                    spent: i64::MAX - 1,
                    held: 0
                })
            ]
        );
        // An admission that would overflow is refused like any other over-budget one.
        let refused = admit(&counters, &[], Some(&h), &[charge("big", 5, i64::MAX)]).await;
        assert_eq!(
            refused,
            Admit::OverBudget {
                index: 0,
                current: i64::MAX - 1
            }
        );
    }
}
