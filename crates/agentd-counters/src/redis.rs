//! The Redis backends: counters and the response cache shared by every gateway replica.
//!
//! Atomicity across processes comes from Redis running each Lua script to completion before
//! any other command: every [`Counters`] operation is one script, and every script checks
//! everything before its first write, so a refusal or an error changes nothing (apart from
//! dropping expired holds, which no longer count anyway). Scripts are sent with EVALSHA and
//! loaded on a NOSCRIPT reply, so a restarted or flushed Redis needs no setup. Time comes from
//! Redis's own `TIME` inside the scripts, so replicas with skewed clocks agree. Needs Redis 5
//! or later (scripts replicated by their effects, which `TIME` requires).
//!
//! Key layout, for a counter or bucket `key` under the configured prefix `P`:
//! - `P:key`, a budget counter: a HASH with `spent`, `held` and one `h:<hold id>` field per
//!   live hold (its amount). The HASH existing is what "the counter exists" means; only `init`
//!   creates it, with its ttl, which nothing extends.
//! - `{P:key}:x`, that counter's holds: a ZSET of hold ids scored by expiry (Unix ms). It is
//!   given the counter's remaining ttl when created, and `init` deletes a leftover one first.
//!   The braces keep both keys in one cluster slot, and no `P:…` key can start with `{`.
//! - `P:key`, a rate bucket: a HASH with `tok` (tokens × `per`), `ts` (Unix ms it was refilled
//!   to) and `per` (the period in ms). Its ttl is the time until it is full again plus one
//!   period; a full bucket is deleted (a missing bucket is full).
//! - `P:key`, a `once` key: a string set with `SET NX PX`.
//!
//! Limits of the design, all harmless for micro-dollar budgets and request counts:
//! - Lua numbers are doubles, so the *comparisons* (`spent + held + amount <= limit`, tokens
//!   against a charge) are exact only below 2^53 (about nine billion dollars in
//!   micro-dollars; for buckets, `capacity × period in ms` below 2^53, e.g. 1.5e11 tokens per
//!   minute or 1e8 per day). Budget values are stored as Redis integers, changed with
//!   `HINCRBY` from the decimal strings Rust sent, so they stay exact.
//! - A call that times out may still have been applied by Redis. For `admit` that errs on the
//!   safe side (a hold that expires, never an overspend); the caller sees `Unavailable`.
//! - Holds need both keys: an eviction policy that may evict one key and not the other
//!   (`allkeys-*`) can pin holds until the counter's window ends. Use `noeviction` or
//!   `volatile-*` for the counters' Redis.
//!
//! The connection is a [`ConnectionManager`]: one multiplexed connection per instance that
//! reconnects by itself, cheap to clone per call.

use agentd_core::{
    Admission, Admit, BudgetState, CounterError, Counters, RateCharge, ResponseCache,
};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    ErrorKind, FromRedisValue, RedisError, RedisResult, RetryMethod, Script, ScriptInvocation,
    Value,
};
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
/// and anything longer is "forever" in practice. The bucket script repeats the number.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;
/// Cache errors are logged at most this often, so a Redis outage does not flood the log.
const CACHE_WARN_INTERVAL_MS: u64 = 5_000;

/// The first element of an `admit` reply (the script writes them as literals).
const ADMITTED: i64 = 1;
const RATE_LIMITED: i64 = 2;
const OVER_BUDGET: i64 = 3;
const MISSING: i64 = 4;

/// The start of every script that needs the clock or touches holds.
///
/// `now` is the server's time in ms. `int` formats a computed number for Redis: it would
/// otherwise be sent in exponent notation once large, which integer arguments reject. `neg`
/// negates a decimal string exactly at any size (Rust sends canonical ones: no `-0`). `purge`
/// drops counter `k`'s holds that expired by `now` (an expiry equal to `now` has passed).
const PRELUDE_LUA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function int(x)
  if x == 0 then return '0' end
  return string.format('%.0f', x)
end

local function neg(s)
  if s == '0' then return s end
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end

local function purge(k, z)
  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', int(now))
  if #ids == 0 then return end
  for _, id in ipairs(ids) do
    local field = 'h:' .. id
    local amount = redis.call('HGET', k, field)
    if amount then
      redis.call('HINCRBY', k, 'held', neg(amount))
      redis.call('HDEL', k, field)
    end
  end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', int(now))
end

local function overflows(x)
  return x >= 2^63 or x <= -2^63
end
";

/// Token buckets, for the scripts that draw on them. `bucket` loads a bucket once per script
/// into `buckets` (so a key named twice sees its earlier charges) and refills it to `now` for
/// a charge's `cap` and `per`: tokens are kept as tokens × `per`, so a refill of `e` ms is
/// exactly `e × cap`, never rounded. A changed period keeps whole tokens only (rounding down);
/// a clock that went back refills nothing. `save` writes it back, or deletes it when full.
const BUCKETS_LUA: &str = r"
local buckets = {}

local function bucket(key, cap, per)
  local b = buckets[key]
  if b == nil then
    local raw = redis.call('HMGET', key, 'tok', 'ts', 'per')
    if raw[1] then
      b = {tok = tonumber(raw[1]), ts = tonumber(raw[2]), per = tonumber(raw[3])}
    else
      b = {tok = cap * per, ts = now, per = per}
    end
    buckets[key] = b
  end
  if b.per ~= per then
    b.tok = math.floor(b.tok / b.per) * per
    b.per = per
  end
  if now > b.ts then
    b.tok = b.tok + (now - b.ts) * cap
    b.ts = now
  end
  if b.tok > cap * per then b.tok = cap * per end
  b.cap = cap
  return b
end

local function save(key, b)
  local full = b.cap * b.per
  if b.tok >= full then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'tok', int(b.tok), 'ts', int(b.ts), 'per', int(b.per))
  local ttl = b.per
  if b.cap > 0 then ttl = ttl + math.ceil((full - b.tok) / b.cap) end
  redis.call('PEXPIRE', key, int(math.min(ttl, 3153600000000)))
end
";

/// KEYS: per budget charge its counter and holds keys, then the buckets.
/// ARGV: budget count, hold id, hold ttl ms, `amount, limit` per budget charge, then
/// `amount, capacity, period_ms` per rate charge.
/// Returns `{MISSING, index...}`, `{RATE_LIMITED, index, retry_ms}`,
/// `{OVER_BUDGET, index, current}` or `{ADMITTED, spent, held, ...}` (per budget charge, its
/// counter after it and the earlier charges).
///
/// In the trait's order: missing counters, then buckets, then budgets; all checked before the
/// first write. A charge above its bucket's capacity waits one period (it never fits); no wait
/// is longer than `MAX_TTL_MS`.
const ADMIT_LUA: &str = r"
local nb = tonumber(ARGV[1])
local id = ARGV[2]
local hold_ms = tonumber(ARGV[3])

local missing = {}
for i = 1, nb do
  if redis.call('EXISTS', KEYS[2 * i - 1]) == 0 then missing[#missing + 1] = i - 1 end
end
if #missing > 0 then
  table.insert(missing, 1, 4)
  return missing
end

local r0 = 3 + 2 * nb
for j = 1, #KEYS - 2 * nb do
  local amount = tonumber(ARGV[r0 + 3 * j - 2])
  local cap = tonumber(ARGV[r0 + 3 * j - 1])
  local per = tonumber(ARGV[r0 + 3 * j])
  local b = bucket(KEYS[2 * nb + j], cap, per)
  local need = amount * per
  if b.tok < need then
    local wait = per
    if amount <= cap and cap > 0 then
      wait = math.max(1, math.ceil((need - b.tok) / cap))
    end
    return {2, j - 1, int(math.min(wait, 3153600000000))}
  end
  b.tok = b.tok - need
end

local counters = {}
for i = 1, nb do
  local k = KEYS[2 * i - 1]
  local c = counters[k]
  if c == nil then
    purge(k, KEYS[2 * i])
    local v = redis.call('HMGET', k, 'spent', 'held')
    c = {value = tonumber(v[1]) + tonumber(v[2]), held = tonumber(v[2])}
    counters[k] = c
  end
  local amount = tonumber(ARGV[2 + 2 * i])
  if c.value + amount > tonumber(ARGV[3 + 2 * i]) then
    return {3, i - 1, int(c.value)}
  end
  c.value = c.value + amount
  c.held = c.held + amount
  if overflows(c.held) then
    return redis.error_reply('counter ' .. k .. ' would overflow')
  end
end

for key, b in pairs(buckets) do save(key, b) end
local out = {1}
local expiry = int(now + hold_ms)
for i = 1, nb do
  local k = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local amount = ARGV[2 + 2 * i]
  redis.call('HINCRBY', k, 'h:' .. id, amount)
  redis.call('HINCRBY', k, 'held', amount)
  redis.call('ZADD', z, expiry, id)
  if redis.call('PTTL', z) == -1 then
    local left = redis.call('PTTL', k)
    if left > 0 then redis.call('PEXPIRE', z, int(left)) end
  end
  local v = redis.call('HMGET', k, 'spent', 'held')
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
end
return out
";

/// KEYS: per counter its counter and holds keys. ARGV: hold id, actual cost.
/// Returns `spent, held` per counter, both nil for a missing one (left missing).
const SETTLE_LUA: &str = r"
local id = ARGV[1]
local actual = ARGV[2]
local spent = {}
for i = 1, #KEYS / 2 do
  local k = KEYS[2 * i - 1]
  if spent[k] == nil and redis.call('EXISTS', k) == 1 then
    purge(k, KEYS[2 * i])
    spent[k] = tonumber(redis.call('HGET', k, 'spent'))
  end
  if spent[k] ~= nil then
    spent[k] = spent[k] + tonumber(actual)
    if overflows(spent[k]) then
      return redis.error_reply('counter ' .. k .. ' would overflow adding ' .. actual)
    end
  end
end

local out = {}
local field = 'h:' .. id
for i = 1, #KEYS / 2 do
  local k = KEYS[2 * i - 1]
  if spent[k] ~= nil then
    local amount = redis.call('HGET', k, field)
    if amount then
      redis.call('HINCRBY', k, 'held', neg(amount))
      redis.call('HDEL', k, field)
      redis.call('ZREM', KEYS[2 * i], id)
    end
    redis.call('HINCRBY', k, 'spent', actual)
    local v = redis.call('HMGET', k, 'spent', 'held')
    out[2 * i - 1] = v[1]
    out[2 * i] = v[2]
  else
    out[2 * i - 1] = false
    out[2 * i] = false
  end
end
return out
";

/// KEYS: the buckets. ARGV: `amount, capacity, period_ms` per bucket. Unconditional: tokens
/// may go below zero, never above the capacity.
const CORRECT_LUA: &str = r"
for j = 1, #KEYS do
  local amount = tonumber(ARGV[3 * j - 2])
  local cap = tonumber(ARGV[3 * j - 1])
  local per = tonumber(ARGV[3 * j])
  local b = bucket(KEYS[j], cap, per)
  b.tok = math.min(b.tok - amount * per, cap * per)
end
for key, b in pairs(buckets) do save(key, b) end
return 1
";

/// KEYS: per counter its counter and holds keys. Returns `spent, held` per counter (live
/// holds only), both nil for a missing one.
const STATE_LUA: &str = r"
local out = {}
for i = 1, #KEYS / 2 do
  local k = KEYS[2 * i - 1]
  if redis.call('EXISTS', k) == 1 then
    purge(k, KEYS[2 * i])
    local v = redis.call('HMGET', k, 'spent', 'held')
    out[2 * i - 1] = v[1]
    out[2 * i] = v[2]
  else
    out[2 * i - 1] = false
    out[2 * i] = false
  end
end
return out
";

/// KEYS: the counter, its holds. ARGV: spent, ttl ms (0 = none). Returns 1 when it created
/// the counter. Holds left over from a lost counter (its HASH evicted or deleted) go first.
const INIT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'held', '0')
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// Budget and rate-limit counters in Redis, shared by every process using the same server
/// and prefix.
#[derive(Clone)]
pub struct RedisCounters {
    conn: ConnectionManager,
    prefix: String,
    admit: Script,
    settle: Script,
    correct: Script,
    state: Script,
    init: Script,
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
    /// Connects to `url` (`redis://[:password@]host:port[/db]`); keys are stored under
    /// `prefix` as the module doc lays out. Fails with `Unavailable` when the server cannot be
    /// reached and with `Backend` when the URL is invalid.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisCounters, CounterError> {
        let conn = connect(url, COUNTER_CALL_TIMEOUT).await?;
        Ok(RedisCounters {
            conn,
            prefix: prefix.to_owned(),
            admit: Script::new(&format!("{PRELUDE_LUA}{BUCKETS_LUA}{ADMIT_LUA}")),
            settle: Script::new(&format!("{PRELUDE_LUA}{SETTLE_LUA}")),
            correct: Script::new(&format!("{PRELUDE_LUA}{BUCKETS_LUA}{CORRECT_LUA}")),
            state: Script::new(&format!("{PRELUDE_LUA}{STATE_LUA}")),
            init: Script::new(INIT_LUA),
        })
    }

    /// A bucket's or `once` key's name, and a counter's HASH.
    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }

    /// A counter's holds ZSET.
    fn holds_key(&self, key: &str) -> String {
        format!("{{{}:{key}}}:x", self.prefix)
    }

    /// Adds a counter's two keys.
    fn counter_keys(&self, invocation: &mut ScriptInvocation<'_>, key: &str) {
        invocation.key(self.key(key)).key(self.holds_key(key));
    }

    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, CounterError> {
        // `invoke_async` loads a script Redis does not know and runs it again; a SCRIPT FLUSH
        // (or a failover to a replica without it) landing between the load and the run still
        // answers NOSCRIPT. Scripts change nothing before they run, so trying again is safe.
        let mut attempt = 0;
        loop {
            let result = bounded(
                COUNTER_CALL_TIMEOUT,
                invocation.invoke_async(&mut self.conn.clone()),
            )
            .await;
            match result {
                Err(err) if err.kind() == redis::ErrorKind::NoScriptError && attempt < 3 => {
                    attempt += 1;
                }
                other => return other.map_err(counter_error),
            }
        }
    }
}

/// Reads `spent, held` pairs (nil pairs for missing counters), `count` of them.
fn budget_pairs(
    what: &str,
    reply: &[Option<i64>],
    count: usize,
) -> Result<Vec<Option<BudgetState>>, CounterError> {
    if reply.len() != 2 * count {
        return Err(unexpected(what, &reply));
    }
    reply
        .chunks_exact(2)
        .map(|pair| match pair {
            [Some(spent), Some(held)] => Ok(Some(BudgetState {
                spent: *spent,
                held: *held,
            })),
            [None, None] => Ok(None),
            _ => Err(unexpected(what, &reply)),
        })
        .collect()
}

/// `spent + held` for reports; see `MemoryCounters` for why saturating is fine.
fn value(state: BudgetState) -> i64 {
    state.spent.saturating_add(state.held)
}

/// An index from a script reply, checked against the number of charges.
fn index(raw: i64, len: usize) -> Option<usize> {
    usize::try_from(raw).ok().filter(|index| *index < len)
}

#[async_trait]
impl Counters for RedisCounters {
    async fn admit(&self, admission: &Admission<'_>) -> Result<Admit, CounterError> {
        crate::validate_admission(admission)?;
        let (rates, budgets) = (admission.rates, admission.budgets);
        if rates.is_empty() && budgets.is_empty() {
            return Ok(Admit::Admitted(Vec::new()));
        }
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(budgets.len())
            .arg(admission.hold.map_or("", |hold| hold.id.as_str()))
            .arg(ttl_ms(admission.hold.map(|hold| hold.ttl)));
        for charge in budgets {
            self.counter_keys(&mut invocation, &charge.key);
            invocation.arg(charge.amount).arg(charge.limit);
        }
        for rate in rates {
            invocation
                .key(self.key(&rate.key))
                .arg(rate.amount)
                .arg(rate.capacity)
                .arg(ttl_ms(Some(rate.period)));
        }
        let reply: Vec<i64> = self.run(&invocation).await?;
        let admit = match reply.split_first() {
            Some((&ADMITTED, values)) if values.len() == 2 * budgets.len() => {
                Some(Admit::Admitted(
                    values
                        .chunks_exact(2)
                        .map(|pair| pair[0].saturating_add(pair[1]))
                        .collect(),
                ))
            }
            Some((&RATE_LIMITED, &[raw, retry_ms])) => {
                index(raw, rates.len()).map(|index| Admit::RateLimited {
                    index,
                    retry_after: Duration::from_millis(u64::try_from(retry_ms).unwrap_or(1)),
                })
            }
            Some((&OVER_BUDGET, &[raw, current])) => {
                index(raw, budgets.len()).map(|index| Admit::OverBudget { index, current })
            }
            Some((&MISSING, raw)) if !raw.is_empty() => raw
                .iter()
                .map(|raw| index(*raw, budgets.len()))
                .collect::<Option<Vec<usize>>>()
                .map(Admit::Missing),
            Some(_) | None => None,
        };
        admit.ok_or_else(|| unexpected("admit", &reply))
    }

    async fn settle(
        &self,
        hold_id: &str,
        budgets: &[(String, Option<Duration>)],
        actual: i64,
    ) -> Result<Vec<Option<i64>>, CounterError> {
        if budgets.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(hold_id).arg(actual);
        for (key, _) in budgets {
            self.counter_keys(&mut invocation, key);
        }
        let reply: Vec<Option<i64>> = self.run(&invocation).await?;
        let states = budget_pairs("settle", &reply, budgets.len())?;
        Ok(states.into_iter().map(|state| state.map(value)).collect())
    }

    async fn correct(&self, rates: &[RateCharge]) -> Result<(), CounterError> {
        crate::validate_buckets(rates)?;
        if rates.is_empty() {
            return Ok(());
        }
        let mut invocation = self.correct.prepare_invoke();
        for rate in rates {
            invocation
                .key(self.key(&rate.key))
                .arg(rate.amount)
                .arg(rate.capacity)
                .arg(ttl_ms(Some(rate.period)));
        }
        let _: i64 = self.run(&invocation).await?;
        Ok(())
    }

    async fn init(
        &self,
        key: &str,
        spent: i64,
        ttl: Option<Duration>,
    ) -> Result<bool, CounterError> {
        let mut invocation = self.init.prepare_invoke();
        self.counter_keys(&mut invocation, key);
        invocation.arg(spent).arg(ttl_ms(ttl));
        let created: i64 = self.run(&invocation).await?;
        Ok(created == 1)
    }

    async fn budget_state(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<BudgetState>>, CounterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.state.prepare_invoke();
        for key in keys {
            self.counter_keys(&mut invocation, key);
        }
        let reply: Vec<Option<i64>> = self.run(&invocation).await?;
        budget_pairs("budget_state", &reply, keys.len())
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
