//! The in-process backends: counters in one mutex-guarded map, the response cache in a
//! size-bounded `moka` cache.
//!
//! For a single gateway process (the default deployment). Atomicity of
//! [`Counters::reserve`] comes from doing the whole check-then-apply under one
//! `std::sync::Mutex`; the lock is never held across an `.await`, so a plain mutex is both
//! correct and cheaper than an async one. Nothing is shared with other processes: replicas
//! need the Redis backend.

use agentd_core::{Charge, CounterError, Counters, Reserve, ResponseCache};
use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// A sweep of expired entries runs at most this often (in operations), so small maps are not
/// rescanned on every call.
const MIN_OPS_BETWEEN_SWEEPS: usize = 1024;

/// Budget and rate-limit counters for one process.
///
/// Expiry uses `tokio::time::Instant`, so tests can drive windows with paused time.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Operations since the last sweep of expired entries.
    ops_since_sweep: usize,
    /// Entries left after the last sweep: the next sweep waits for at least that many
    /// operations, so sweeping costs O(1) amortised per operation while expired entries can
    /// never outnumber live ones by more than a constant factor.
    live_after_sweep: usize,
}

#[derive(Debug)]
struct Entry {
    value: i64,
    /// `None`: lives until removed. An entry whose instant has passed is treated as absent
    /// everywhere, whether or not a sweep has removed it yet.
    expires: Option<Instant>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

impl State {
    /// Counts one operation and sweeps expired entries when due.
    fn tick(&mut self, now: Instant) {
        self.ops_since_sweep += 1;
        if self.ops_since_sweep >= MIN_OPS_BETWEEN_SWEEPS.max(self.live_after_sweep) {
            self.entries.retain(|_, entry| !entry.is_expired(now));
            self.ops_since_sweep = 0;
            self.live_after_sweep = self.entries.len();
        }
    }

    fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|entry| !entry.is_expired(now))
    }

    fn value(&self, key: &str, now: Instant) -> i64 {
        self.live(key, now).map_or(0, |entry| entry.value)
    }

    /// Writes `value` to `key`, creating it (or replacing an expired one) if needed. A `ttl`
    /// starts the clock only on an entry that has none, so a window's length counts from its
    /// creation and later writes never extend it.
    fn store(&mut self, key: &str, value: i64, ttl: Option<Duration>, now: Instant) {
        match self.entries.get_mut(key) {
            Some(entry) if !entry.is_expired(now) => {
                entry.value = value;
                if entry.expires.is_none() {
                    entry.expires = deadline(now, ttl);
                }
            }
            Some(_) | None => {
                let expires = deadline(now, ttl);
                self.entries
                    .insert(key.to_owned(), Entry { value, expires });
            }
        }
    }

    /// Inserts only when `key` is absent or expired; returns whether it did.
    fn insert_if_absent(
        &mut self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
        now: Instant,
    ) -> bool {
        if self.live(key, now).is_some() {
            return false;
        }
        let expires = deadline(now, ttl);
        self.entries
            .insert(key.to_owned(), Entry { value, expires });
        true
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

    /// No critical section can leave the map half-updated (every check happens before the
    /// first write, and the writes cannot panic), so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries stored, live or expired-but-not-yet-swept (tests of the sweep).
    #[cfg(test)]
    fn stored_entries(&self) -> usize {
        self.lock().entries.len()
    }
}

#[async_trait]
impl Counters for MemoryCounters {
    /// A key that appears twice in `charges` is checked against its value including the
    /// earlier charges of the same call, so one reservation cannot overshoot a limit by
    /// naming a counter twice (the Redis script does the same).
    async fn reserve(&self, charges: &[Charge]) -> Result<Reserve, CounterError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tick(now);

        // Check every charge before touching anything: `after[i]` is charge i's value once
        // it and all earlier charges are applied.
        let mut after: Vec<i64> = Vec::with_capacity(charges.len());
        for (index, charge) in charges.iter().enumerate() {
            let current = charges[..index]
                .iter()
                .zip(&after)
                .rev()
                .find(|(earlier, _)| earlier.key == charge.key)
                .map_or_else(|| state.value(&charge.key, now), |(_, value)| *value);
            match current.checked_add(charge.amount) {
                Some(next) if next <= charge.limit => after.push(next),
                // An overflow is far above any limit: refuse like any other.
                Some(_) | None => return Ok(Reserve::Refused { index, current }),
            }
        }
        for (charge, value) in charges.iter().zip(&after) {
            state.store(&charge.key, *value, charge.ttl, now);
        }
        Ok(Reserve::Admitted(after))
    }

    async fn adjust(
        &self,
        keys: &[(String, Option<Duration>)],
        delta: i64,
    ) -> Result<Vec<i64>, CounterError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tick(now);

        // Computed in full first so an overflow changes nothing.
        let mut after: Vec<i64> = Vec::with_capacity(keys.len());
        for (index, (key, _)) in keys.iter().enumerate() {
            let current = keys[..index]
                .iter()
                .zip(&after)
                .rev()
                .find(|((earlier, _), _)| earlier == key)
                .map_or_else(|| state.value(key, now), |(_, value)| *value);
            let next = current.checked_add(delta).ok_or_else(|| {
                CounterError::Backend(format!("counter {key} would overflow adding {delta}"))
            })?;
            after.push(next);
        }
        for ((key, ttl), value) in keys.iter().zip(&after) {
            state.store(key, *value, *ttl, now);
        }
        Ok(after)
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<i64>, CounterError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tick(now);
        Ok(keys.iter().map(|key| state.value(key, now)).collect())
    }

    async fn init(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, CounterError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tick(now);
        Ok(state.insert_if_absent(key, value, ttl, now))
    }

    async fn once(&self, key: &str, ttl: Duration) -> Result<bool, CounterError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tick(now);
        Ok(state.insert_if_absent(key, 1, Some(ttl), now))
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

    fn charge(key: &str, amount: i64, limit: i64, ttl: Option<Duration>) -> Charge {
        Charge {
            key: key.to_owned(),
            amount,
            limit,
            ttl,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept_so_memory_stays_bounded() {
        let counters = MemoryCounters::new();
        let ttl = Some(Duration::from_secs(1));
        for i in 0..5000 {
            let charges = [charge(&format!("old:{i}"), 1, 10, ttl)];
            counters.reserve(&charges).await.unwrap();
        }
        assert_eq!(counters.stored_entries(), 5000);

        tokio::time::advance(Duration::from_secs(2)).await;
        // As many operations as there were live entries at the last sweep (4096) are enough
        // to trigger the next one, which drops every expired entry.
        for i in 0..5000 {
            counters
                .adjust(&[(format!("new:{i}"), None)], 1)
                .await
                .unwrap();
        }
        let stored = counters.stored_entries();
        assert_eq!(stored, 5000, "only the 5000 live entries remain");
        let olds: Vec<String> = (0..5000).map(|i| format!("old:{i}")).collect();
        assert!(counters.get(&olds).await.unwrap().iter().all(|v| *v == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entry_reads_as_absent_before_any_sweep() {
        let counters = MemoryCounters::new();
        let ttl = Some(Duration::from_millis(100));
        counters.reserve(&[charge("k", 5, 10, ttl)]).await.unwrap();
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(counters.get(&["k".into()]).await.unwrap(), [0]);
        // A new window starts from zero with a fresh ttl.
        let admitted = counters.reserve(&[charge("k", 10, 10, ttl)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![10]));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(counters.get(&["k".into()]).await.unwrap(), [10]);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(counters.get(&["k".into()]).await.unwrap(), [0]);
    }

    #[tokio::test]
    async fn overflow_refuses_reserve_and_fails_adjust_without_changes() {
        let counters = MemoryCounters::new();
        counters.init("big", i64::MAX - 1, None).await.unwrap();
        let refused = counters
            .reserve(&[
                charge("small", 1, 10, None),
                charge("big", 5, i64::MAX, None),
            ])
            .await
            .unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 1,
                current: i64::MAX - 1
            }
        );
        let keys = [("small".to_owned(), None), ("big".to_owned(), None)];
        let err = counters.adjust(&keys, 5).await.unwrap_err();
        assert!(
            matches!(err, CounterError::Backend(ref m) if m.contains("overflow")),
            "{err:?}"
        );
        let values = counters.get(&["small".into(), "big".into()]).await.unwrap();
        assert_eq!(values, [0, i64::MAX - 1]);
    }
}
