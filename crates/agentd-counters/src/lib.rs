//! Budget and rate-limit counters and the response cache, implementing the
//! [`agentd_core::Counters`] and [`agentd_core::ResponseCache`] traits in two backends:
//! in-process ([`MemoryCounters`], [`MemoryCache`]) for a single gateway, and Redis
//! ([`RedisCounters`], [`RedisCache`]) for replicas that must share budgets.
//!
//! The one decision to know: admission is one atomic `reserve` over every counter a request
//! touches — under one mutex in memory, as one Lua script in Redis — so concurrent requests,
//! also from different replicas, can never overshoot a limit. Both backends pass the same
//! conformance suite (`tests/conformance.rs`), including a race of hundreds of concurrent
//! reservations from two independent Redis connections.
//!
//! Shared semantics worth knowing before reading either backend:
//! - A counter's ttl starts when it is created (or when first given a ttl, if it had none);
//!   later reservations and adjustments never extend it, so a window ends on time.
//! - A key named twice in one `reserve` is checked including the earlier charges of that call.
//! - The response cache never fails a request: the Redis cache turns errors into misses.
//!
//! Redis is isolated here so the rest of agentd does not link a Redis client it does not use.

pub mod memory;
pub mod redis;

pub use crate::memory::{MemoryCache, MemoryCounters};
pub use crate::redis::{RedisCache, RedisCounters};
