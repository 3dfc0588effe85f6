//! The Redis backends: counters and the response cache shared by every gateway replica.
//!
//! Atomicity across processes comes from Redis running each Lua script to completion before
//! any other command: [`Counters::reserve`] is one script that checks every charge and only
//! then increments them all. Scripts are sent with EVALSHA and loaded on a NOSCRIPT reply, so a
//! restarted or flushed Redis needs no setup.
//!
//! Two limits of the design, both harmless for micro-dollar budgets and request counts:
//! - Lua numbers are doubles, so the *comparison* `current + amount <= limit` is exact only
//!   for magnitudes below 2^53 (about nine billion dollars in micro-dollars). The stored values
//!   themselves are Redis integers and always exact.
//! - A call that times out may still have been applied by Redis. For `reserve` that errs on the
//!   safe side (budget held, never overspent); the caller sees `Unavailable` either way.
//!
//! The connection is a [`ConnectionManager`]: one multiplexed connection per instance that
//! reconnects by itself, cheap to clone per call.

use agentd_core::{Charge, CounterError, Counters, Reserve, ResponseCache};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, RedisResult, RetryMethod, Script, Value};
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one attempt to (re)connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection attempts after a failure, about a second apart. Few on purpose: calls made
/// meanwhile wait for the reconnection, and every call after a failed one starts a new
/// attempt anyway.
const RECONNECT_RETRIES: usize = 1;
/// The longest pause between reconnection attempts, in ms.
const RECONNECT_MAX_DELAY_MS: u64 = 1_000;
/// How long a counter call may take in all, reconnecting included: admission waits on it, so
/// a stuck Redis must fail the request (closed or open is the caller's policy), not hang it.
const COUNTER_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The same for the cache, shorter: a lookup only saves work, and a miss is cheaper than
/// waiting.
const CACHE_CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// TTLs are capped here (about a century): Redis rejects expiry times that overflow its clock,
/// and anything longer is "forever" in practice.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Cache errors are logged at most this often, so a Redis outage does not flood the log.
const CACHE_WARN_INTERVAL_MS: u64 = 5_000;

/// KEYS: the counters. ARGV: `amount, limit, ttl_ms` per key (ttl 0 = none).
/// Returns `{1, value...}` or `{0, index (0-based), current}`.
///
/// Checks first, writes after, so a refusal (or a non-integer value) changes nothing. A key
/// named twice is checked against its value including the earlier charges of this call. Expiry
/// is set on any key left without one (always the case for a key just created), so a window
/// counts from its creation and is never extended.
const RESERVE_LUA: &str = r"
local pending = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local current = pending[key]
  if current == nil then
    local raw = redis.call('GET', key)
    if raw == false then
      current = 0
    elseif string.match(raw, '^-?%d+$') then
      current = tonumber(raw)
    else
      return redis.error_reply('counter ' .. key .. ' does not hold an integer')
    end
  end
  local amount = tonumber(ARGV[3 * i - 2])
  local limit = tonumber(ARGV[3 * i - 1])
  if current + amount > limit then
    return {0, i - 1, current}
  end
  pending[key] = current + amount
end
local out = {1}
for i = 1, #KEYS do
  local key = KEYS[i]
  out[i + 1] = redis.call('INCRBY', key, ARGV[3 * i - 2])
  local ttl = tonumber(ARGV[3 * i])
  if ttl > 0 and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ttl)
  end
end
return out
";

/// KEYS: the counters. ARGV[1]: the delta; ARGV[1 + i]: key i's ttl in ms (0 = none).
/// Returns the values after, in order. Every value is validated before the first write so a
/// non-integer key fails the call without a partial update.
const ADJUST_LUA: &str = r"
for i = 1, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  if raw ~= false and not string.match(raw, '^-?%d+$') then
    return redis.error_reply('counter ' .. KEYS[i] .. ' does not hold an integer')
  end
end
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  out[i] = redis.call('INCRBY', key, ARGV[1])
  local ttl = tonumber(ARGV[i + 1])
  if ttl > 0 and redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, ttl)
  end
end
return out
";

/// Budget and rate-limit counters in Redis, shared by every process using the same server
/// and prefix.
#[derive(Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
    reserve: Script,
    adjust: Script,
}

/// Only the prefix: the URL may carry a password.
impl fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCounters")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`); every key is stored as
    /// `{prefix}:{key}`. Fails with `Unavailable` when the server cannot be reached and with
    /// `Backend` when the URL is invalid.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCounters, CounterError> {
        let conn = connect(url, COUNTER_CALL_TIMEOUT).await?;
        Ok(RedisCounters {
            conn,
            prefix: prefix.to_owned(),
            reserve: Script::new(RESERVE_LUA),
            adjust: Script::new(ADJUST_LUA),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn reserve(&self, charges: &[Charge]) -> Result<Reserve, CounterError> {
        if charges.is_empty() {
            return Ok(Reserve::Admitted(Vec::new()));
        }
        let mut invocation = self.reserve.prepare_invoke();
        for charge in charges {
            invocation
                .key(self.key(&charge.key))
                .arg(charge.amount)
                .arg(charge.limit)
                .arg(ttl_ms(charge.ttl));
        }
        let reply: Vec<i64> = bounded(
            COUNTER_CALL_TIMEOUT,
            invocation.invoke_async(&mut self.conn.clone()),
        )
        .await
        .map_err(counter_error)?;
        match reply.split_first() {
            Some((1, values)) if values.len() == charges.len() => {
                Ok(Reserve::Admitted(values.to_vec()))
            }
            Some((0, [index, current])) => match usize::try_from(*index) {
                Ok(index) if index < charges.len() => Ok(Reserve::Refused {
                    index,
                    current: *current,
                }),
                Ok(_) | Err(_) => Err(unexpected("reserve", &reply)),
            },
            Some(_) | None => Err(unexpected("reserve", &reply)),
        }
    }

    async fn adjust(
        &self,
        keys: &[(String, Option<Duration>)],
        delta: i64,
    ) -> Result<Vec<i64>, CounterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.adjust.prepare_invoke();
        invocation.arg(delta);
        for (key, ttl) in keys {
            invocation.key(self.key(key)).arg(ttl_ms(*ttl));
        }
        let values: Vec<i64> = bounded(
            COUNTER_CALL_TIMEOUT,
            invocation.invoke_async(&mut self.conn.clone()),
        )
        .await
        .map_err(counter_error)?;
        if values.len() != keys.len() {
            return Err(unexpected("adjust", &values));
        }
        Ok(values)
    }

    async fn get(&self, keys: &[String]) -> Result<Vec<i64>, CounterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        let values: Vec<Option<i64>> = bounded(
            COUNTER_CALL_TIMEOUT,
            cmd.query_async(&mut self.conn.clone()),
        )
        .await
        .map_err(counter_error)?;
        if values.len() != keys.len() {
            return Err(unexpected("MGET", &values));
        }
        Ok(values.into_iter().map(|value| value.unwrap_or(0)).collect())
    }

    async fn init(
        &self,
        key: &str,
        value: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, CounterError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("NX");
        if ttl.is_some() {
            cmd.arg("PX").arg(ttl_ms(ttl));
        }
        let reply: Value = bounded(
            COUNTER_CALL_TIMEOUT,
            cmd.query_async(&mut self.conn.clone()),
        )
        .await
        .map_err(counter_error)?;
        Ok(was_set(&reply))
    }

    async fn once(&self, key: &str, ttl: Duration) -> Result<bool, CounterError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(Some(ttl)));
        let reply: Value = bounded(
            COUNTER_CALL_TIMEOUT,
            cmd.query_async(&mut self.conn.clone()),
        )
        .await
        .map_err(counter_error)?;
        Ok(was_set(&reply))
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

/// The response cache in Redis (GET / SET PX), shared by every replica.
///
/// Never fails a request: an error is a miss (or a skipped store), logged as a warning at most
/// once per few seconds with the number of errors suppressed since the last warning.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    warnings: std::sync::Arc<WarnLimiter>,
}

/// Only the prefix: the URL may carry a password.
impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url`; every key is stored as `{prefix}:{key}`. Unlike the cache's
    /// operations this does fail, so startup can report a wrong URL or a server that is down.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, CounterError> {
        let conn = connect(url, CACHE_CALL_TIMEOUT).await?;
        Ok(RedisCache {
            conn,
            prefix: prefix.to_owned(),
            warnings: std::sync::Arc::new(WarnLimiter::new(CACHE_WARN_INTERVAL_MS)),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn warn(&self, operation: &'static str, err: &RedisError) {
        if let Some(suppressed) = self.warnings.should_log() {
            tracing::warn!(
                operation,
                error = %err,
                suppressed,
                "Response cache unavailable, serving without it"
            );
        }
    }
}

#[async_trait]
impl ResponseCache for RedisCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        let reply: Result<Option<Vec<u8>>, RedisError> =
            bounded(CACHE_CALL_TIMEOUT, cmd.query_async(&mut self.conn.clone())).await;
        match reply {
            Ok(body) => body.map(Bytes::from),
            Err(err) => {
                self.warn("get", &err);
                None
            }
        }
    }

    /// A zero ttl means "do not keep": it deletes any earlier entry (Redis rejects `PX 0`).
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        let cmd = if ttl.is_zero() {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(key));
            cmd
        } else {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key))
                .arg(value.as_ref())
                .arg("PX")
                .arg(ttl_ms(Some(ttl)));
            cmd
        };
        let reply: Result<Value, RedisError> =
            bounded(CACHE_CALL_TIMEOUT, cmd.query_async(&mut self.conn.clone())).await;
        if let Err(err) = reply {
            self.warn("put", &err);
        }
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

/// Opens the self-reconnecting connection; `call_timeout` also bounds each reply.
async fn connect(url: &str, call_timeout: Duration) -> Result<ConnectionManager, CounterError> {
    // The parse error never echoes the URL, so it cannot leak a password.
    let client = redis::Client::open(url)
        .map_err(|err| CounterError::Backend(format!("invalid Redis URL: {err}")))?;
    // The delay between attempts is (at least one second) x factor^attempt, capped.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(call_timeout)
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_factor(2)
        .set_max_delay(RECONNECT_MAX_DELAY_MS);
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(counter_error)
}

/// Bounds a whole call. The connection's own response timeout does not cover waiting for a
/// reconnection in progress, which can take seconds while Redis is down.
async fn bounded<T>(limit: Duration, call: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_elapsed) => Err(RedisError::from(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no reply from Redis within {limit:?}"),
        ))),
    }
}

/// Connection trouble (I/O, timeouts, a server loading, failing over or refusing our
/// credentials) is `Unavailable`: retrying later or elsewhere may work. Everything else — a
/// script error, a key of the wrong type — is `Backend`.
fn counter_error(err: RedisError) -> CounterError {
    let unavailable = err.is_io_error()
        || matches!(err.kind(), ErrorKind::ReadOnly)
        || matches!(
            err.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::WaitAndRetry
        );
    if unavailable {
        CounterError::Unavailable(err.to_string())
    } else {
        CounterError::Backend(err.to_string())
    }
}

fn unexpected(what: &str, reply: &impl fmt::Debug) -> CounterError {
    CounterError::Backend(format!("unexpected reply to {what}: {reply:?}"))
}

/// `SET … NX` answers OK when it set the key and nil when the key existed.
fn was_set(reply: &Value) -> bool {
    !matches!(reply, Value::Nil)
}

/// Milliseconds for the scripts and PX: 0 for none; otherwise at least 1 (a sub-millisecond
/// ttl must not turn into "none", and Redis rejects PX 0) and at most [`MAX_TTL_MS`].
fn ttl_ms(ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) => u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_TTL_MS),
    }
}

/// Lets one warning through per interval and counts the ones it holds back.
#[derive(Debug)]
struct WarnLimiter {
    started: Instant,
    interval_ms: u64,
    /// Milliseconds since `started` before which no warning is logged.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl WarnLimiter {
    fn new(interval_ms: u64) -> WarnLimiter {
        WarnLimiter {
            started: Instant::now(),
            interval_ms,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last warning)` when a warning should be logged now.
    fn should_log(&self) -> Option<u64> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.should_log_at(now_ms)
    }

    fn should_log_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        let claimed = now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if claimed {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_to_one_per_interval_and_count_the_rest() {
        let limiter = WarnLimiter::new(5_000);
        assert_eq!(limiter.should_log_at(0), Some(0));
        assert_eq!(limiter.should_log_at(10), None);
        assert_eq!(limiter.should_log_at(4_999), None);
        assert_eq!(limiter.should_log_at(5_000), Some(2));
        assert_eq!(limiter.should_log_at(5_001), None);
        assert_eq!(limiter.should_log_at(20_000), Some(1));
    }

    #[test]
    fn ttl_ms_never_turns_a_ttl_into_none_and_caps_long_ones() {
        assert_eq!(ttl_ms(None), 0);
        assert_eq!(ttl_ms(Some(Duration::ZERO)), 1);
        assert_eq!(ttl_ms(Some(Duration::from_micros(300))), 1);
        assert_eq!(ttl_ms(Some(Duration::from_millis(200))), 200);
        assert_eq!(ttl_ms(Some(Duration::MAX)), MAX_TTL_MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_without_reply_times_out_as_unavailable() {
        let never = std::future::pending::<RedisResult<i64>>();
        let err = bounded(Duration::from_secs(2), never).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(matches!(counter_error(err), CounterError::Unavailable(_)));
    }

    #[test]
    fn connection_errors_are_unavailable_and_others_backend() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(counter_error(io), CounterError::Unavailable(_)));
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(matches!(
            counter_error(timeout),
            CounterError::Unavailable(_)
        ));
        let script = RedisError::from((ErrorKind::ResponseError, "script failed"));
        assert!(matches!(counter_error(script), CounterError::Backend(_)));
        let loading = RedisError::from((ErrorKind::BusyLoadingError, "loading"));
        assert!(matches!(
            counter_error(loading),
            CounterError::Unavailable(_)
        ));
    }
}
