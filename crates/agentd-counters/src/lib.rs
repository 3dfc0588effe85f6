//! Budget and rate-limit counters and the response cache, implementing the
//! [`agentd_core::Counters`] and [`agentd_core::ResponseCache`] traits in two backends:
//! in-process ([`MemoryCounters`], [`MemoryCache`]) for a single gateway, and Redis
//! ([`RedisCounters`], [`RedisCache`]) for replicas that must share budgets.
//!
//! The one decision to know: every operation on the counters is one atomic step — under one
//! mutex in memory, as one Lua script in Redis — so concurrent requests, also from different
//! replicas, can never overshoot a limit, and a refusal changes nothing. Both backends pass the
//! same conformance suite (`tests/conformance.rs`), including a race of hundreds of concurrent
//! admissions from two independent Redis connections.
//!
//! Shared semantics worth knowing before reading either backend:
//! - A budget counter is `spent + held`, where `held` is the sum of live holds, each with an
//!   owner (the hold id) and an expiry. Every operation on a counter first drops its expired
//!   holds. A counter exists only once [`Counters::init`](agentd_core::Counters::init) created
//!   it: a missing counter is reported, never read as zero, and only `init` creates one.
//! - A counter's ttl is set when `init` creates it and never extended, so a window ends on
//!   time; the `ttl`s passed to `admit` and `settle` are not used (they cannot create a
//!   counter).
//! - A rate bucket holds up to `capacity` tokens and refills at exactly `capacity` per
//!   `period`: arithmetic is on integers scaled by the period (tokens × period), so refills
//!   are exact and never round up. A bucket that is full is not stored (missing = full).
//! - A rate charge larger than its bucket's capacity can never be admitted: it is refused
//!   with a `retry_after` of one full period (callers should not send it at all).
//! - A key named twice in one call is checked including the earlier charges of that call,
//!   for budgets and buckets alike; the values an admission returns are each charge's value
//!   once it and the earlier charges are applied.
//! - Invalid input is a `Backend` error before anything is touched: budgets without a hold,
//!   negative amounts in an admission, a negative capacity, a period under a millisecond.
//! - The response cache never fails a request: the Redis cache turns errors into misses.
//!
//! Redis is isolated here so the rest of agentd does not link a Redis client it does not use:
//! the Redis backends exist only with the cargo feature `redis`.

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

pub use crate::memory::{MemoryCache, MemoryCounters};
#[cfg(feature = "redis")]
pub use crate::redis::{RedisCache, RedisCounters};

use agentd_core::{Admission, CounterError, RateCharge};
use std::time::Duration;

/// The shortest rate period: Redis keeps bucket time in whole milliseconds.
const MIN_PERIOD: Duration = Duration::from_millis(1);
/// Longer periods are treated as this one (about a century, Redis's ttl cap), and no
/// `retry_after` is longer: the bucket arithmetic stays within range, alike in both backends.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What both backends refuse before touching anything, so they answer alike.
pub(crate) fn validate_admission(admission: &Admission<'_>) -> Result<(), CounterError> {
    if !admission.budgets.is_empty() && admission.hold.is_none() {
        return Err(CounterError::Backend(
            "an admission with budget charges needs a hold".to_owned(),
        ));
    }
    if let Some(charge) = admission.budgets.iter().find(|charge| charge.amount < 0) {
        return Err(CounterError::Backend(format!(
            "budget charge on {} has a negative amount ({})",
            charge.key, charge.amount
        )));
    }
    if let Some(rate) = admission.rates.iter().find(|rate| rate.amount < 0) {
        return Err(CounterError::Backend(format!(
            "rate charge on {} has a negative amount ({}); use correct() to give tokens back",
            rate.key, rate.amount
        )));
    }
    validate_buckets(admission.rates)
}

/// A bucket's shape must make sense; amounts are checked by the caller (`correct` may give
/// tokens back with a negative one).
pub(crate) fn validate_buckets(rates: &[RateCharge]) -> Result<(), CounterError> {
    for rate in rates {
        if rate.capacity < 0 {
            return Err(CounterError::Backend(format!(
                "rate bucket {} has a negative capacity ({})",
                rate.key, rate.capacity
            )));
        }
        if rate.period < MIN_PERIOD {
            return Err(CounterError::Backend(format!(
                "rate bucket {} has a period under {MIN_PERIOD:?} ({:?})",
                rate.key, rate.period
            )));
        }
    }
    Ok(())
}
