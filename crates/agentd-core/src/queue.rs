//! The work queue: how a run reaches a worker of the right pool.
//!
//! The one decision to know: the queue only *wakes up and places*; it is not the truth. A
//! message carries a run id; the worker that receives it takes the run with a compare-and-swap
//! on the run row (`RunStore::claim_run`), keeps the message un-acked while it works (extending
//! it with [`WorkQueue::extend`]), and acks it when the run ended. A message for a run that
//! cannot start yet is nacked with a delay; one for a run that ended is acked and dropped. A
//! lost message is re-sent by the reaper from the run table, so a queue that forgets (a Redis
//! without persistence) loses no run. Duplicates are harmless for the same reason.
//!
//! Backends: the store itself (SQLite; PostgreSQL with `SKIP LOCKED` + `LISTEN/NOTIFY`), Redis
//! Streams (a consumer group per stream, `XAUTOCLAIM`), NATS JetStream (a work-queue stream, a
//! durable pull consumer per stream, `ack_wait`, progress, `nak` with delay). One conformance
//! suite runs against every backend.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The message: which run, and what the worker needs to place it before reading the row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub run_id: String,
    pub tenant: String,
    pub agent: String,
}

/// A message handed to a consumer, not yet acked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The stream it came from.
    pub stream: String,
    pub ticket: Ticket,
    /// The backend's handle for ack/nack/extend (row id, stream entry id, NATS reply subject).
    pub token: String,
    /// How many times this message was delivered (1 the first time).
    pub deliveries: u32,
}

/// A message that failed too often and was set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub stream: String,
    /// The backend's id of the dead letter (for retry/drop).
    pub id: String,
    pub ticket: Ticket,
    pub reason: String,
    pub deliveries: u32,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A stream's backlog, for metrics and autoscalers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Messages waiting, not delivered to anyone (including delayed ones).
    pub depth: u64,
    /// Delivered and not yet acked.
    pub in_flight: u64,
    /// Age in milliseconds of the oldest waiting message (0 when none).
    pub oldest_age_ms: u64,
    pub dead: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    #[error("queue error: {0}")]
    Backend(String),
}

#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// `"store"`, `"redis"`, `"nats"`.
    fn backend(&self) -> &'static str;
    /// Creates what a stream needs (consumer group, JetStream consumer); idempotent. Producers
    /// and consumers call it before first use.
    async fn ensure_stream(&self, stream: &str) -> Result<(), QueueError>;
    async fn enqueue(&self, stream: &str, ticket: &Ticket) -> Result<(), QueueError>;
    /// Up to `max` messages for `consumer`, taken from `streams` in the order given (the first
    /// stream is drained first). Waits up to `wait` when none is ready. A delivered message
    /// not acked nor extended within `lease` is delivered again (to any consumer).
    async fn claim(
        &self,
        streams: &[String],
        consumer: &str,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;
    /// Keeps the message for another `lease`.
    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<(), QueueError>;
    /// Done: the message is gone for good.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Not now: delivered again (to any consumer) after `delay`.
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;
    /// Sets the message aside with a reason (acks it on the live stream).
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
    async fn dead_letters(&self, stream: &str, limit: usize)
        -> Result<Vec<DeadLetter>, QueueError>;
    /// Puts a dead letter back on its stream; `false` if no such dead letter.
    async fn retry_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError>;
    /// Deletes a dead letter; `false` if no such dead letter.
    async fn drop_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError>;
    async fn stats(&self, stream: &str) -> Result<QueueStats, QueueError>;
}
