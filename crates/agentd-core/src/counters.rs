//! Shared counters (budgets, rate limits) and the response cache: the traits the in-process
//! and Redis backends implement (`agentd-counters`).
//!
//! The one decision to know: admission is a single atomic [`Counters::reserve`] over every
//! counter a request touches (its budgets and its rate-limit windows). Either all of them have
//! room and all are incremented, or none is touched. A check-then-increment in two steps is
//! exactly the race that lets concurrent requests overshoot a budget, so no caller may build
//! one from [`Counters::get`] and [`Counters::adjust`].

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// One counter a request draws on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The counter's key, e.g. `budget:tenant-daily:acme:20261123`. Backends may prefix it.
    pub key: String,
    /// What to add.
    pub amount: i64,
    /// The counter may not go above this (`current + amount <= limit`).
    pub limit: i64,
    /// How long the counter lives after it is created (a window's length plus a margin);
    /// `None` keeps it forever.
    pub ttl: Option<Duration>,
}

/// The answer to a reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// Every counter had room and was incremented; the values after, in `charges` order.
    Admitted(Vec<i64>),
    /// Nothing was changed. `index` is the first charge that had no room; `current` its value.
    Refused { index: usize, current: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("counter backend unavailable: {0}")]
    Unavailable(String),
    #[error("counter backend error: {0}")]
    Backend(String),
}

#[async_trait]
pub trait Counters: Send + Sync {
    /// Atomically (also across processes sharing the backend): if every charge has room,
    /// adds every amount and returns the new values; otherwise changes nothing.
    async fn reserve(&self, charges: &[Charge]) -> Result<Reserve, CounterError>;
    /// Adds `delta` (may be negative) to each key unconditionally — settling a reservation to
    /// the real amount, or releasing it. Returns the values after, in order. A key that does not
    /// exist (expired) is created with `ttl`.
    async fn adjust(
        &self,
        keys: &[(String, Option<Duration>)],
        delta: i64,
    ) -> Result<Vec<i64>, CounterError>;
    /// The current values (0 for missing keys).
    async fn get(&self, keys: &[String]) -> Result<Vec<i64>, CounterError>;
    /// Sets `key` to `value` only if it does not exist (rebuilding a counter from the ledger
    /// after a restart). Returns whether it was set.
    async fn init(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, CounterError>;
    /// True for the first caller only, per `key`, for `ttl` (one alert per threshold crossing,
    /// also across replicas).
    async fn once(&self, key: &str, ttl: Duration) -> Result<bool, CounterError>;
    /// `"memory"` or `"redis"`.
    fn backend(&self) -> &'static str;
}

/// The exact-match response cache. Failures are misses: a cache problem never fails a request.
#[async_trait]
pub trait ResponseCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<Bytes>;
    async fn put(&self, key: &str, value: Bytes, ttl: Duration);
    fn backend(&self) -> &'static str;
}
