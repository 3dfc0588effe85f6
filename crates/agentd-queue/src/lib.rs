//! The [`agentd_core::WorkQueue`] backends: the store itself ([`StoreQueue`]: SQLite, or
//! PostgreSQL with the `postgres` feature), Redis Streams ([`RedisQueue`], feature `redis`) and
//! NATS JetStream ([`NatsQueue`], feature `nats`). Each is one file with the same shape, and all
//! pass one conformance suite (`tests/conformance.rs`).
//!
//! The one decision to know: a delivery's token *fences* it. A message that was delivered again
//! (its lease ran out) gets a new token, and the old holder's `ack`, `nack`, `extend` and
//! `dead_letter` become no-ops that return `Ok`, so a slow worker cannot take a message away
//! from the one now holding it. The queue is not the truth (see [`agentd_core::WorkQueue`]): the
//! run row's compare-and-swap is, so no-ops are enough; nothing reports the lost message to the
//! old holder. NATS fences only within one process (see `nats.rs`).
//!
//! Semantics shared by every backend:
//! - `claim` drains `streams` in the order given, oldest message first within a stream, and
//!   waits up to `wait` (returning early as soon as something is ready).
//! - A message's delivery count survives `nack`; `retry_dead` starts it again at zero.
//! - The lease is the one given to `claim`: Redis and NATS keep one lease per stream (the
//!   claimer's), and `extend` renews it for that long whatever `lease` it is passed (see the
//!   backend files).
//! - Dead letters are listed oldest first; their ids are backend strings for `retry_dead` and
//!   `drop_dead`.

pub mod embedded;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;

pub use crate::embedded::StoreQueue;
#[cfg(feature = "nats")]
pub use crate::nats::NatsQueue;
#[cfg(feature = "redis")]
pub use crate::redis::RedisQueue;

use agentd_core::{QueueError, Ticket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a waiting `claim` looks again when nothing woke it: the bound on how late a
/// redelivery, a delayed message or (across processes without a wake-up channel) a new message
/// is seen.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration as whole milliseconds, saturating (a lease of centuries is "forever").
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn encode_ticket(ticket: &Ticket) -> Result<String, QueueError> {
    serde_json::to_string(ticket)
        .map_err(|err| QueueError::Backend(format!("cannot encode ticket: {err}")))
}

pub(crate) fn decode_ticket(text: &str) -> Result<Ticket, QueueError> {
    serde_json::from_str(text)
        .map_err(|err| QueueError::Backend(format!("cannot decode ticket {text:?}: {err}")))
}

/// A delivery count as the trait reports it.
pub(crate) fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

pub(crate) fn invalid_token(token: &str) -> QueueError {
    QueueError::Backend(format!("invalid delivery token {token:?}"))
}

/// Refuses a stream name no backend can use: empty, or with a NUL (PostgreSQL text cannot hold
/// one). Checked by every backend so they answer alike.
pub(crate) fn check_stream(stream: &str) -> Result<(), QueueError> {
    if stream.is_empty() || stream.contains('\0') {
        return Err(QueueError::Backend(format!(
            "invalid stream name {stream:?}: must be non-empty and without NUL"
        )));
    }
    Ok(())
}
