//! Redis Streams as the work queue: one stream and one consumer group per queue stream, so a
//! stream's backlog is what KEDA's `redis-streams` scaler reads (group [`GROUP`]).
//!
//! Key layout for queue stream `s` under the configured prefix `P` (the second part names the
//! family, so no stream name can make two keys collide):
//! - `P:q:s`, the Redis stream. An entry has fields `t` (the ticket as JSON) and `d` (deliveries
//!   before this entry existed: a nacked message comes back as a new entry).
//! - `P:qd:s`, delayed messages: a ZSET scored by the unix ms they are due, members
//!   `"<old entry id> <deliveries> <ticket>"`. Every claim first moves the due ones back onto the
//!   stream (a script, so atomically).
//! - `P:qx:s`, dead letters: a HASH from dead-letter id (the entry id it had) to JSON;
//!   `P:qxi:s`, their order: a ZSET of the same ids scored by when they died.
//!
//! Claiming (one script per stream, in the order given) moves due delayed messages, recreates
//! the group if Redis lost it (restart without persistence, FLUSHALL), takes entries whose
//! lease ran out with `XAUTOCLAIM` (idle longer than the claimer's lease), then new ones with
//! `XREADGROUP`. With nothing ready, a `XREADGROUP … BLOCK` over all the streams waits on a
//! connection of its own (a blocked command would stall the shared one), at most
//! [`BLOCK_SLICE`] at a time so expired leases and due delays are seen; entries it got beyond
//! `max` (one per stream at most) are handed back at once: idle time set huge and the delivery
//! count to zero, so the next claim's `XAUTOCLAIM` takes them first and counts them right.
//!
//! The token is `"<entry id>/<times delivered>/<consumer>"`; ack, nack, extend and dead letter
//! are scripts that act only while the pending entry still names that consumer and count, so a
//! stale holder changes nothing. `extend` is `XCLAIM` to the holder itself (resetting the idle
//! time): the lease is the one the claimer passes to `XAUTOCLAIM`, not the one given to
//! `extend`. Ack deletes the entry (`XACK` + `XDEL`: Redis 7.0 has no `XACKDEL`), so the stream
//! holds only messages waiting or in flight and its length is the backlog.
//!
//! Limits: `XAUTOCLAIM` scans the pending list from its start, so a claim costs more the more
//! messages are in flight; the keys of one stream use no hash tag, so Redis Cluster is not
//! supported; stats count a message whose lease ran out as in flight until it is reclaimed.

use crate::{check_stream, decode_ticket, encode_ticket, invalid_token, millis};
use agentd_core::{DeadLetter, Delivery, QueueError, QueueStats, Ticket, WorkQueue};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisError, RetryMethod, Script, Value};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The consumer group of every stream.
pub const GROUP: &str = "agentd";
/// How long one attempt to (re)connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command or script may take to answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest single `XREADGROUP … BLOCK`: between two, expired leases are reclaimed and due
/// delayed messages moved, so this bounds how late those are seen by a waiting claimer.
const BLOCK_SLICE: Duration = Duration::from_millis(500);
/// Idle blocking connections kept for later claims.
const MAX_IDLE_BLOCKING: usize = 16;

/// Shared by the scripts: the field of an entry's flat field list, and Redis's clock in ms.
const PRELUDE_LUA: &str = r#"
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The pending entry ARGV[3] still held by consumer ARGV[2] with delivery count ARGV[4]?
local function held(stream)
  local p = redis.pcall('XPENDING', stream, ARGV[1], ARGV[3], ARGV[3], 1)
  if type(p) ~= 'table' or p.err or #p == 0 then return false end
  return p[1][2] == ARGV[2] and tostring(p[1][4]) == ARGV[4]
end
"#;

/// KEYS: stream, delayed. ARGV: group, consumer, count, lease ms.
/// Returns {{id, ticket, prior deliveries, times delivered}...}, next delayed due ms or -1, now.
const CLAIM_LUA: &str = r#"
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local prior, ticket = string.match(member, '^%S+ (%d+) (.*)$')
  if prior then
    redis.call('XADD', KEYS[1], '*', 't', ticket, 'd', prior)
  end
  redis.call('ZREM', KEYS[2], member)
end
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
local want = tonumber(ARGV[3])
local out = {}
local cursor = '0-0'
repeat
  local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], cursor,
    'COUNT', want - #out)
  cursor = claimed[1]
  for _, entry in ipairs(claimed[2]) do
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
    local fields = entry[2]
    table.insert(out, {entry[1], field(fields, 't') or '', tonumber(field(fields, 'd') or '0'),
      p[1][4]})
  end
until cursor == '0-0' or #out >= want
if #out < want then
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want - #out,
    'STREAMS', KEYS[1], '>')
  if read then
    for _, entry in ipairs(read[1][2]) do
      local fields = entry[2]
      table.insert(out, {entry[1], field(fields, 't') or '', tonumber(field(fields, 'd') or '0'), 1})
    end
  end
end
local next_due = -1
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first > 0 then next_due = tonumber(first[2]) end
return {out, next_due, now}
"#;

/// KEYS: stream. ARGV: group, consumer, id, count.
const EXTEND_LUA: &str = r#"
if not held(KEYS[1]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"#;

/// KEYS: stream. ARGV: group, consumer, id, count.
const ACK_LUA: &str = r#"
if not held(KEYS[1]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"#;

/// KEYS: stream, delayed. ARGV: group, consumer, id, count, delay ms.
const NACK_LUA: &str = r#"
if not held(KEYS[1]) then return 0 end
local entries = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if #entries == 0 then return 0 end
local fields = entries[1][2]
local ticket = field(fields, 't') or ''
local deliveries = tonumber(field(fields, 'd') or '0') + tonumber(ARGV[4])
local delay = tonumber(ARGV[5])
if delay <= 0 then
  -- Straight back: a new entry also wakes claimers blocked on the stream.
  redis.call('XADD', KEYS[1], '*', 't', ticket, 'd', deliveries)
else
  redis.call('ZADD', KEYS[2], now_ms() + delay, ARGV[3] .. ' ' .. deliveries .. ' ' .. ticket)
end
return 1
"#;

/// KEYS: stream, dead, dead order. ARGV: group, consumer, id, count, reason.
const DEAD_LETTER_LUA: &str = r#"
if not held(KEYS[1]) then return 0 end
local entries = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if #entries == 0 then return 0 end
local fields = entries[1][2]
local now = now_ms()
local deliveries = tonumber(field(fields, 'd') or '0') + tonumber(ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode({t = field(fields, 't') or '', r = ARGV[5],
  d = deliveries, at = now}))
redis.call('ZADD', KEYS[3], now, ARGV[3])
return 1
"#;

/// KEYS: stream, dead, dead order. ARGV: dead letter id.
const RETRY_LUA: &str = r#"
local dead = redis.call('HGET', KEYS[2], ARGV[1])
if not dead then return 0 end
local letter = cjson.decode(dead)
redis.call('XADD', KEYS[1], '*', 't', letter.t, 'd', 0)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"#;

/// KEYS: dead, dead order. ARGV: dead letter id.
const DROP_LUA: &str = r#"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return removed
"#;

/// KEYS: stream, delayed, dead order. ARGV: group.
/// Returns {length, pending, delayed, dead, oldest waiting ms or -1, now}.
const STATS_LUA: &str = r#"
local now = now_ms()
local length = redis.call('XLEN', KEYS[1])
local pending = 0
local last = nil
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, group in ipairs(groups) do
    local name, p, l = nil, 0, nil
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1]
      elseif group[i] == 'pending' then p = group[i + 1]
      elseif group[i] == 'last-delivered-id' then l = group[i + 1] end
    end
    if name == ARGV[1] then pending = p; last = l end
  end
end
local oldest = -1
local start = '-'
if last then start = '(' .. last end
local first = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1)
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
local delayed = redis.call('ZCARD', KEYS[2])
local head = redis.call('ZRANGE', KEYS[2], 0, 0)
if #head > 0 then
  local at = tonumber(string.match(head[1], '^(%d+)'))
  if at and (oldest < 0 or at < oldest) then oldest = at end
end
return {length, pending, delayed, redis.call('ZCARD', KEYS[3]), oldest, now}
"#;

/// The work queue on Redis Streams.
pub struct RedisQueue {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    /// Idle connections for `XREADGROUP … BLOCK`, one per waiting claim.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    claim: Script,
    extend: Script,
    ack: Script,
    nack: Script,
    dead_letter: Script,
    retry: Script,
    drop: Script,
    stats: Script,
}

impl RedisQueue {
    /// Connects to the Redis at `url`; every key starts with `prefix` followed by `:`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisQueue, QueueError> {
        // The parse error never echoes the URL, so it cannot leak a password.
        let client = redis::Client::open(url)
            .map_err(|err| QueueError::Backend(format!("invalid Redis URL: {err}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(1)
            .set_factor(2)
            .set_max_delay(1_000);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(redis_error)?;
        let script = |body: &str| Script::new(&format!("{PRELUDE_LUA}{body}"));
        Ok(RedisQueue {
            client,
            conn,
            prefix: prefix.to_owned(),
            blocking: Mutex::new(Vec::new()),
            claim: script(CLAIM_LUA),
            extend: script(EXTEND_LUA),
            ack: script(ACK_LUA),
            nack: script(NACK_LUA),
            dead_letter: script(DEAD_LETTER_LUA),
            retry: script(RETRY_LUA),
            drop: script(DROP_LUA),
            stats: script(STATS_LUA),
        })
    }

    /// The Redis stream key of queue stream `stream` (for KEDA's `redis-streams` scaler).
    pub fn stream_key(&self, stream: &str) -> String {
        format!("{}:q:{stream}", self.prefix)
    }

    fn delayed_key(&self, stream: &str) -> String {
        format!("{}:qd:{stream}", self.prefix)
    }

    fn dead_key(&self, stream: &str) -> String {
        format!("{}:qx:{stream}", self.prefix)
    }

    fn dead_order_key(&self, stream: &str) -> String {
        format!("{}:qxi:{stream}", self.prefix)
    }

    /// One claim script on `stream`: its deliveries, when its next delayed message is due and
    /// Redis's clock (both unix ms).
    async fn claim_stream(
        &self,
        stream: &str,
        consumer: &str,
        want: usize,
        lease: Duration,
    ) -> Result<(Vec<Delivery>, Option<i64>, i64), QueueError> {
        type Reply = (Vec<(String, String, i64, i64)>, i64, i64);
        let (entries, next_due, now): Reply = self
            .claim
            .key(self.stream_key(stream))
            .key(self.delayed_key(stream))
            .arg(GROUP)
            .arg(consumer)
            .arg(want)
            .arg(millis(lease).max(1))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        let mut out = Vec::with_capacity(entries.len());
        for (id, ticket, prior, times) in entries {
            if let Some(delivery) = self
                .delivery(stream, consumer, &id, &ticket, prior + times, times)
                .await?
            {
                out.push(delivery);
            }
        }
        Ok((out, (next_due >= 0).then_some(next_due), now))
    }

    /// The delivery of entry `id`; an entry whose ticket cannot be read (not written by us) is
    /// acked and dropped with a warning instead of blocking the stream forever.
    async fn delivery(
        &self,
        stream: &str,
        consumer: &str,
        id: &str,
        ticket: &str,
        deliveries: i64,
        times: i64,
    ) -> Result<Option<Delivery>, QueueError> {
        let delivery = Delivery {
            stream: stream.to_owned(),
            ticket: Ticket {
                run_id: String::new(),
                tenant: String::new(),
                agent: String::new(),
            },
            token: format!("{id}/{times}/{consumer}"),
            deliveries: crate::count(deliveries),
        };
        match decode_ticket(ticket) {
            Ok(ticket) => Ok(Some(Delivery { ticket, ..delivery })),
            Err(err) => {
                tracing::warn!(stream, entry = id, error = %err, "Dropping unreadable queue entry");
                self.ack(&delivery).await?;
                Ok(None)
            }
        }
    }

    async fn blocking_connection(&self) -> Result<MultiplexedConnection, QueueError> {
        let idle = self
            .blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(BLOCK_SLICE + RESPONSE_TIMEOUT);
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(redis_error)
            }
        }
    }

    fn return_connection(&self, conn: MultiplexedConnection) {
        let mut idle = self
            .blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_BLOCKING {
            idle.push(conn);
        }
    }

    /// Waits up to `block` for a new entry on any of `streams`; takes at most `max` of what
    /// arrives (earlier streams first) and hands the rest back.
    async fn block(
        &self,
        streams: &[String],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut conn = self.blocking_connection().await?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(block).max(1))
            .arg("STREAMS");
        for stream in streams {
            cmd.arg(self.stream_key(stream));
        }
        for _ in streams {
            cmd.arg(">");
        }
        let reply: Value = match cmd.query_async(&mut conn).await {
            Ok(reply) => {
                self.return_connection(conn);
                reply
            }
            // The group is gone (Redis lost its data): the next claim script recreates it.
            Err(err) if err.code() == Some("NOGROUP") => {
                self.return_connection(conn);
                return Ok(Vec::new());
            }
            Err(err) => return Err(redis_error(err)),
        };
        let mut got: Vec<(usize, String, String, i64)> = Vec::new();
        for (key, entries) in parse_read_reply(reply)? {
            let Some(index) = streams.iter().position(|s| self.stream_key(s) == key) else {
                continue;
            };
            for (id, fields) in entries {
                let ticket = field(&fields, "t").unwrap_or_default();
                let prior = field(&fields, "d")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                got.push((index, id, ticket, prior));
            }
        }
        // Stream order first; within a stream the reply is already oldest first.
        got.sort_by_key(|entry| entry.0);
        let mut out = Vec::new();
        for (index, id, ticket, prior) in got {
            let stream = &streams[index];
            if out.len() >= max {
                self.hand_back(stream, &id).await?;
                continue;
            }
            if let Some(delivery) = self
                .delivery(stream, consumer, &id, &ticket, prior + 1, 1)
                .await?
            {
                out.push(delivery);
            }
        }
        Ok(out)
    }

    /// Makes a delivered entry the first one the next claim's `XAUTOCLAIM` takes, as if it had
    /// never been delivered.
    async fn hand_back(&self, stream: &str, id: &str) -> Result<(), QueueError> {
        redis::cmd("XCLAIM")
            .arg(self.stream_key(stream))
            .arg(GROUP)
            .arg("handed-back")
            .arg(0)
            .arg(id)
            .arg("IDLE")
            .arg(i64::from(i32::MAX))
            .arg("RETRYCOUNT")
            .arg(0)
            .arg("JUSTID")
            .query_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    /// Runs a token-checked script (ack, extend, nack, dead letter) on `delivery`.
    async fn held_script(
        &self,
        script: &Script,
        delivery: &Delivery,
        keys: &[String],
        extra: Option<&str>,
    ) -> Result<(), QueueError> {
        let (id, times, consumer) = parse_token(&delivery.token)?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(GROUP).arg(consumer).arg(id).arg(times);
        if let Some(extra) = extra {
            invocation.arg(extra);
        }
        invocation
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}

/// `"<entry id>/<times>/<consumer>"` → its parts (the consumer may contain `/`).
fn parse_token(token: &str) -> Result<(&str, &str, &str), QueueError> {
    let mut parts = token.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(times), Some(consumer))
            if !id.is_empty() && times.parse::<u64>().is_ok() =>
        {
            Ok((id, times, consumer))
        }
        _ => Err(invalid_token(token)),
    }
}

type ReadReply = Vec<(String, Vec<(String, Vec<(String, String)>)>)>;

/// An `XREADGROUP` reply: per stream key, its entries with their fields. Nil when nothing came.
fn parse_read_reply(reply: Value) -> Result<ReadReply, QueueError> {
    let unexpected =
        |what: &Value| QueueError::Backend(format!("unexpected XREADGROUP reply: {what:?}"));
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        // RESP3 answers with a map of key → entries.
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(key, entries)| Value::Array(vec![key, entries]))
            .collect(),
        other => return Err(unexpected(&other)),
    };
    let mut out = Vec::new();
    for stream in streams {
        let parsed: (String, Vec<(String, Value)>) =
            redis::from_redis_value(&stream).map_err(|_| unexpected(&stream))?;
        let (key, entries) = parsed;
        let mut list = Vec::new();
        for (id, fields) in entries {
            let fields: Vec<(String, String)> = match &fields {
                Value::Nil => Vec::new(),
                _ => redis::from_redis_value::<Vec<String>>(&fields)
                    .map_err(|_| unexpected(&fields))?
                    .chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
            };
            list.push((id, fields));
        }
        out.push((key, list));
    }
    Ok(out)
}

fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
}

/// Connection trouble is `Unavailable` (retrying later may work); the rest is `Backend`.
fn redis_error(err: RedisError) -> QueueError {
    let unavailable = err.is_io_error()
        || err.is_timeout()
        || matches!(
            err.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::WaitAndRetry
        );
    if unavailable {
        QueueError::Unavailable(format!("redis: {err}"))
    } else {
        QueueError::Backend(format!("redis: {err}"))
    }
}

#[async_trait]
impl WorkQueue for RedisQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ensure_stream(&self, stream: &str) -> Result<(), QueueError> {
        check_stream(stream)?;
        let created: Result<Value, RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream_key(stream))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn.clone())
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(redis_error(err)),
        }
    }

    async fn enqueue(&self, stream: &str, ticket: &Ticket) -> Result<(), QueueError> {
        check_stream(stream)?;
        redis::cmd("XADD")
            .arg(self.stream_key(stream))
            .arg("*")
            .arg("t")
            .arg(encode_ticket(ticket)?)
            .arg("d")
            .arg(0)
            .query_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn claim(
        &self,
        streams: &[String],
        consumer: &str,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 || streams.is_empty() {
            return Ok(Vec::new());
        }
        for stream in streams {
            check_stream(stream)?;
        }
        let deadline = Instant::now() + wait;
        loop {
            let mut out = Vec::new();
            let mut next_due: Option<Duration> = None;
            for stream in streams {
                if out.len() >= max {
                    break;
                }
                let (got, due, now) = self
                    .claim_stream(stream, consumer, max - out.len(), lease)
                    .await?;
                out.extend(got);
                if let Some(due) = due {
                    let until = Duration::from_millis(u64::try_from(due - now).unwrap_or(0));
                    next_due = Some(next_due.map_or(until, |next| next.min(until)));
                }
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            let mut block = (deadline - now).min(BLOCK_SLICE);
            if let Some(due) = next_due {
                block = block.min(due.max(Duration::from_millis(1)));
            }
            let got = self.block(streams, consumer, max, block).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
    }

    async fn extend(&self, delivery: &Delivery, _lease: Duration) -> Result<(), QueueError> {
        let keys = [self.stream_key(&delivery.stream)];
        self.held_script(&self.extend, delivery, &keys, None).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let keys = [self.stream_key(&delivery.stream)];
        self.held_script(&self.ack, delivery, &keys, None).await
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let keys = [
            self.stream_key(&delivery.stream),
            self.delayed_key(&delivery.stream),
        ];
        let delay = millis(delay).to_string();
        self.held_script(&self.nack, delivery, &keys, Some(&delay))
            .await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let keys = [
            self.stream_key(&delivery.stream),
            self.dead_key(&delivery.stream),
            self.dead_order_key(&delivery.stream),
        ];
        self.held_script(&self.dead_letter, delivery, &keys, Some(reason))
            .await
    }

    async fn dead_letters(
        &self,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        check_stream(stream)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.dead_order_key(stream))
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX) - 1)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let letters: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.dead_key(stream))
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        #[derive(serde::Deserialize)]
        struct Stored {
            t: String,
            r: String,
            d: i64,
            at: i64,
        }
        let mut out = Vec::new();
        for (id, letter) in ids.into_iter().zip(letters) {
            let Some(letter) = letter else { continue };
            let stored: Stored = serde_json::from_str(&letter).map_err(|err| {
                QueueError::Backend(format!("unreadable dead letter {id}: {err}"))
            })?;
            out.push(DeadLetter {
                stream: stream.to_owned(),
                id,
                ticket: decode_ticket(&stored.t)?,
                reason: stored.r,
                deliveries: crate::count(stored.d),
                at_ms: stored.at,
            });
        }
        Ok(out)
    }

    async fn retry_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let moved: i64 = self
            .retry
            .key(self.stream_key(stream))
            .key(self.dead_key(stream))
            .key(self.dead_order_key(stream))
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(moved > 0)
    }

    async fn drop_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let removed: i64 = self
            .drop
            .key(self.dead_key(stream))
            .key(self.dead_order_key(stream))
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        Ok(removed > 0)
    }

    async fn stats(&self, stream: &str) -> Result<QueueStats, QueueError> {
        check_stream(stream)?;
        let (length, pending, delayed, dead, oldest, now): (i64, i64, i64, i64, i64, i64) = self
            .stats
            .key(self.stream_key(stream))
            .key(self.delayed_key(stream))
            .key(self.dead_order_key(stream))
            .arg(GROUP)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(QueueStats {
            // Acked entries are deleted, so the stream holds the pending ones and the rest.
            depth: unsigned(length - pending) + unsigned(delayed),
            in_flight: unsigned(pending),
            oldest_age_ms: if oldest < 0 {
                0
            } else {
                unsigned(now - oldest)
            },
            dead: unsigned(dead),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_keep_slashes_in_the_consumer() {
        assert_eq!(
            parse_token("1700000000000-3/2/pool/a").unwrap(),
            ("1700000000000-3", "2", "pool/a")
        );
        assert!(parse_token("1-0/x/c").is_err());
        assert!(parse_token("1-0").is_err());
    }
}
