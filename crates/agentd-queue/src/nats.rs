//! NATS JetStream as the work queue (server 2.9 or later; no 2.10+ features are used).
//!
//! Layout under the configured prefix `P` (letters, digits, `-`, `_`):
//! - stream `P_work`, WorkQueue retention, subjects `P.work.>`; queue stream `s` publishes to
//!   `P.work.<s'>`, where `s'` is `s` with every byte other than ASCII letters, digits and `-`
//!   written `_xx` (hex), so any stream name makes a valid subject token and consumer name;
//! - one durable pull consumer per queue stream, named `q_<s'>`, filtered on its subject, with
//!   explicit acks and `ack_wait` = the lease;
//! - stream `P_dead`, subjects `P.dead.>`: dead letters as JSON, one subject per queue stream;
//!   a dead letter's id is its sequence there.
//!
//! The token is the delivery's ack subject (`$JS.ACK.…`), so any task (or process) can ack,
//! nack (`-NAK {"delay": ns}`), extend (`+WPI`) or terminate it with the core client. Acks are
//! sent as requests, so the server has applied them when the call returns.
//!
//! Approximations, all because JetStream keeps the lease per consumer, not per message:
//! - `ack_wait` is per consumer: a claim with another lease than the consumer's updates the
//!   consumer, and `extend` (`+WPI`) renews the consumer's `ack_wait` whatever lease it is
//!   given. Use one lease per stream.
//! - The server accepts an ack on a stale ack subject (2.9 does not compare delivery counts),
//!   so stale tokens are fenced only for deliveries this process received: a token older than
//!   the last delivery of the same message *to this process* is a no-op. Across processes a
//!   stale ack can ack a redelivered message; the run row's CAS and the reaper (see
//!   `agentd_core::queue`) make that harmless.
//! - Stats come from consumer info: `depth` is `num_pending` (never delivered), `in_flight` is
//!   `num_ack_pending`, which also counts nacked messages waiting out their delay and messages
//!   whose lease ran out until they are redelivered. `oldest_age_ms` is the age of the next
//!   undelivered message (0 when there is none).
//!
//! Waiting claims are woken by a core-NATS message on `P.wake` that every enqueue and retry
//! sends after publishing (one subscription per queue handle; not on the work subjects, whose
//! "no responders" must keep telling a publisher that the stream is gone); redeliveries and
//! nak delays are seen by polling every [`POLL_INTERVAL`].

use crate::{check_stream, count, decode_ticket, encode_ticket, invalid_token, POLL_INTERVAL};
use agentd_core::{DeadLetter, Delivery, QueueError, QueueStats, Ticket, WorkQueue};
use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The consumers' `ack_wait` until a claim says otherwise.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How long a fetch or an API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the server to confirm an ack. Shorter: an ack for a consumer that is
/// gone is never answered, and an unconfirmed ack costs at most a redelivery.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// Fence entries kept at most (one per message this process holds or held).
const MAX_FENCES: usize = 100_000;

/// The work queue on NATS JetStream.
pub struct NatsQueue {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    /// `ack_wait` of each consumer this process created or updated, by queue stream.
    consumers: Mutex<HashMap<String, Duration>>,
    /// The last delivery count this process saw per (consumer, stream sequence): the fence.
    fences: Mutex<HashMap<(String, u64), i64>>,
    notify: Arc<Notify>,
    waker: tokio::task::JoinHandle<()>,
}

#[derive(Serialize, Deserialize)]
struct StoredDead {
    ticket: Ticket,
    reason: String,
    deliveries: u32,
    at_ms: i64,
}

/// The parts of a `$JS.ACK` subject this backend uses.
struct AckInfo<'a> {
    consumer: &'a str,
    delivered: i64,
    stream_seq: u64,
}

impl NatsQueue {
    /// Connects to the NATS server at `url` and creates the two streams of `prefix` if they
    /// are missing. `prefix` must be letters, digits, `-` and `_`.
    pub async fn connect(url: &str, prefix: &str) -> Result<NatsQueue, QueueError> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(QueueError::Backend(format!(
                "invalid NATS queue prefix {prefix:?}: use letters, digits, - and _"
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(url)
            .await
            .map_err(|err| QueueError::Unavailable(format!("nats: cannot connect: {err}")))?;
        let js = jetstream::new(client.clone());
        let notify = Arc::new(Notify::new());
        let mut wake = client
            .subscribe(format!("{prefix}.wake"))
            .await
            .map_err(|err| QueueError::Unavailable(format!("nats: subscribe: {err}")))?;
        let waker = {
            let notify = notify.clone();
            tokio::spawn(async move {
                while wake.next().await.is_some() {
                    notify.notify_waiters();
                }
            })
        };
        let queue = NatsQueue {
            client,
            js,
            prefix: prefix.to_owned(),
            consumers: Mutex::new(HashMap::new()),
            fences: Mutex::new(HashMap::new()),
            notify,
            waker,
        };
        queue.ensure_streams().await?;
        Ok(queue)
    }

    fn work_stream(&self) -> String {
        format!("{}_work", self.prefix)
    }

    fn dead_stream(&self) -> String {
        format!("{}_dead", self.prefix)
    }

    fn work_subject(&self, stream: &str) -> String {
        format!("{}.work.{}", self.prefix, encode_name(stream))
    }

    fn dead_subject(&self, stream: &str) -> String {
        format!("{}.dead.{}", self.prefix, encode_name(stream))
    }

    async fn ensure_streams(&self) -> Result<(), QueueError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.work_stream(),
                subjects: vec![format!("{}.work.>", self.prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .map_err(|err| nats_error("create work stream", err))?;
        self.js
            .get_or_create_stream(stream::Config {
                name: self.dead_stream(),
                subjects: vec![format!("{}.dead.>", self.prefix)],
                ..Default::default()
            })
            .await
            .map_err(|err| nats_error("create dead-letter stream", err))?;
        Ok(())
    }

    /// Creates (or updates) the consumer of `stream` with `ack_wait` = `lease`.
    async fn ensure_consumer(&self, stream: &str, lease: Duration) -> Result<(), QueueError> {
        let config = consumer::pull::Config {
            durable_name: Some(consumer_name(stream)),
            filter_subject: self.work_subject(stream),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: lease,
            max_deliver: -1,
            max_ack_pending: -1,
            ..Default::default()
        };
        let created = self
            .js
            .create_consumer_on_stream(config.clone(), self.work_stream())
            .await;
        let created = match created {
            Ok(created) => Ok(created),
            // The stream is gone (server restarted without storage, or deleted): recreate.
            Err(_) => {
                self.ensure_streams().await?;
                self.js
                    .create_consumer_on_stream(config, self.work_stream())
                    .await
            }
        };
        created.map_err(|err| nats_error("create consumer", err))?;
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(stream.to_owned(), lease);
        Ok(())
    }

    fn forget_consumer(&self, stream: &str) {
        self.consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(stream);
    }

    /// Up to `want` messages of `stream` that are ready now.
    async fn fetch(
        &self,
        stream: &str,
        want: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let known = self
            .consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(stream)
            .copied();
        if known != Some(lease) {
            self.ensure_consumer(stream, lease).await?;
        }
        match self.fetch_once(stream, want).await {
            Ok(got) => Ok(got),
            Err(_) => {
                // The consumer (or the stream) may be gone: recreate and try once more.
                self.forget_consumer(stream);
                self.ensure_consumer(stream, lease).await?;
                self.fetch_once(stream, want).await
            }
        }
    }

    async fn fetch_once(&self, stream: &str, want: usize) -> Result<Vec<Delivery>, QueueError> {
        let consumer: consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(consumer_name(stream), self.work_stream())
            .await
            .map_err(|err| nats_error("get consumer", err))?;
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|err| nats_error("fetch", err))?;
        let mut out = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|err| nats_error("fetch", err))?;
            let Some(reply) = message.reply.as_ref().map(|reply| reply.to_string()) else {
                continue;
            };
            let info = parse_ack_subject(&reply).ok_or_else(|| invalid_token(&reply))?;
            self.fence(&info);
            let deliveries = count(info.delivered);
            let ticket = match std::str::from_utf8(&message.payload)
                .map_err(|err| QueueError::Backend(format!("ticket is not UTF-8: {err}")))
                .and_then(decode_ticket)
            {
                Ok(ticket) => ticket,
                Err(err) => {
                    tracing::warn!(stream, error = %err, "Dropping unreadable queue message");
                    self.reply(&reply, "+TERM").await?;
                    continue;
                }
            };
            out.push(Delivery {
                stream: stream.to_owned(),
                ticket,
                token: reply,
                deliveries,
            });
        }
        Ok(out)
    }

    /// Records the latest delivery of a message seen by this process.
    fn fence(&self, info: &AckInfo<'_>) {
        let mut fences = self
            .fences
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if fences.len() >= MAX_FENCES {
            fences.clear();
        }
        fences.insert((info.consumer.to_owned(), info.stream_seq), info.delivered);
    }

    /// The token's delivery info, or `None` when this process has seen a later delivery of
    /// the same message (a stale token). With `settle`, the fence is dropped (ack, nak, term).
    fn current<'a>(&self, token: &'a str, settle: bool) -> Result<Option<AckInfo<'a>>, QueueError> {
        let info = parse_ack_subject(token).ok_or_else(|| invalid_token(token))?;
        let mut fences = self
            .fences
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (info.consumer.to_owned(), info.stream_seq);
        match fences.get(&key) {
            Some(&latest) if latest != info.delivered => return Ok(None),
            Some(_) if settle => {
                fences.remove(&key);
            }
            _ => {}
        }
        Ok(Some(info))
    }

    /// Sends an ack payload to a delivery's ack subject and waits for the server to confirm.
    async fn reply(&self, token: &str, payload: &str) -> Result<(), QueueError> {
        let request = async_nats::Request::new()
            .payload(payload.to_owned().into())
            .timeout(Some(ACK_TIMEOUT));
        match self.client.send_request(token.to_owned(), request).await {
            Ok(_) => Ok(()),
            // Nobody answers an ack for a message the consumer no longer has (or a consumer
            // that is gone): it is settled either way.
            Err(err)
                if matches!(
                    err.kind(),
                    async_nats::RequestErrorKind::NoResponders
                        | async_nats::RequestErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(nats_error("ack", err)),
        }
    }

    /// Tells waiting claims (in every process) to look now. Best effort: they poll anyway.
    async fn wake(&self) {
        if let Err(err) = self
            .client
            .publish(format!("{}.wake", self.prefix), "".into())
            .await
        {
            tracing::debug!(error = %err, "Cannot publish a queue wake-up");
        }
    }

    async fn publish(&self, subject: String, payload: String) -> Result<u64, QueueError> {
        let attempt = |subject: String, payload: String| async move {
            let ack = self.js.publish(subject, payload.into()).await?;
            ack.await
        };
        match attempt(subject.clone(), payload.clone()).await {
            Ok(ack) => Ok(ack.sequence),
            Err(_) => {
                // The stream may be gone: recreate it and try once more.
                self.ensure_streams().await?;
                attempt(subject, payload)
                    .await
                    .map(|ack| ack.sequence)
                    .map_err(|err| nats_error("publish", err))
            }
        }
    }

    /// The dead letter at `sequence` if it belongs to `stream`.
    async fn dead_at(
        &self,
        stream: &str,
        id: &str,
    ) -> Result<Option<(u64, StoredDead)>, QueueError> {
        let Ok(sequence) = id.parse::<u64>() else {
            return Ok(None);
        };
        let dead = self
            .js
            .get_stream_no_info(self.dead_stream())
            .await
            .map_err(|err| nats_error("dead-letter stream", err))?;
        let message = match dead.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(nats_error("get dead letter", err)),
        };
        if message.subject.as_str() != self.dead_subject(stream) {
            return Ok(None);
        }
        let stored = serde_json::from_slice(&message.payload)
            .map_err(|err| QueueError::Backend(format!("unreadable dead letter {id}: {err}")))?;
        Ok(Some((sequence, stored)))
    }
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        self.waker.abort();
    }
}

/// `stream` as a subject token and consumer-name part: ASCII letters, digits and `-` stay,
/// every other byte becomes `_xx` (lowercase hex). Injective, since `_` itself is escaped.
fn encode_name(stream: &str) -> String {
    let mut out = String::with_capacity(stream.len());
    for byte in stream.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

fn consumer_name(stream: &str) -> String {
    format!("q_{}", encode_name(stream))
}

/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.…` (9 tokens), or the newer form with
/// domain and account hash before the stream (11 or more).
fn parse_ack_subject(subject: &str) -> Option<AckInfo<'_>> {
    let tokens: Vec<&str> = subject.strip_prefix("$JS.ACK.")?.split('.').collect();
    let rest = match tokens.len() {
        7 => &tokens[1..],
        n if n >= 9 => &tokens[3..],
        _ => return None,
    };
    Some(AckInfo {
        consumer: rest.first()?,
        delivered: rest.get(1)?.parse().ok()?,
        stream_seq: rest.get(2)?.parse().ok()?,
    })
}

/// A raw-message error that means "no such message".
fn is_not_found(err: &stream::RawMessageError) -> bool {
    matches!(err.kind(), stream::RawMessageErrorKind::NoMessageFound)
}

fn nats_error(context: &str, err: impl std::fmt::Display) -> QueueError {
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("timed out")
        || lower.contains("no responders")
        || lower.contains("disconnect")
        || lower.contains("broken pipe")
        || lower.contains("connection")
    {
        QueueError::Unavailable(format!("nats: {context}: {text}"))
    } else {
        QueueError::Backend(format!("nats: {context}: {text}"))
    }
}

fn now_ms() -> i64 {
    crate::now_ms()
}

#[async_trait]
impl WorkQueue for NatsQueue {
    fn backend(&self) -> &'static str {
        "nats"
    }

    async fn ensure_stream(&self, stream: &str) -> Result<(), QueueError> {
        check_stream(stream)?;
        let known = self
            .consumers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(stream)
            .copied();
        match known {
            Some(_) => Ok(()),
            None => self.ensure_consumer(stream, DEFAULT_LEASE).await,
        }
    }

    async fn enqueue(&self, stream: &str, ticket: &Ticket) -> Result<(), QueueError> {
        check_stream(stream)?;
        self.publish(self.work_subject(stream), encode_ticket(ticket)?)
            .await?;
        self.wake().await;
        Ok(())
    }

    async fn claim(
        &self,
        streams: &[String],
        _consumer: &str,
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
        // Whole seconds or not, the server keeps nanoseconds; a zero ack_wait means its default.
        let lease = lease.max(Duration::from_millis(1));
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = Vec::new();
            for stream in streams {
                if out.len() >= max {
                    break;
                }
                out.extend(self.fetch(stream, max - out.len(), lease).await?);
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            let nap = (deadline - now).min(POLL_INTERVAL);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn extend(&self, delivery: &Delivery, _lease: Duration) -> Result<(), QueueError> {
        match self.current(&delivery.token, false)? {
            Some(_) => self.reply(&delivery.token, "+WPI").await,
            None => Ok(()),
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        match self.current(&delivery.token, true)? {
            Some(_) => self.reply(&delivery.token, "+ACK").await,
            None => Ok(()),
        }
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        match self.current(&delivery.token, true)? {
            Some(_) => {
                let payload = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
                self.reply(&delivery.token, &payload).await?;
                if delay.is_zero() {
                    self.wake().await;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let Some(info) = self.current(&delivery.token, true)? else {
            return Ok(());
        };
        let stored = StoredDead {
            ticket: delivery.ticket.clone(),
            reason: reason.to_owned(),
            deliveries: count(info.delivered),
            at_ms: now_ms(),
        };
        let payload = serde_json::to_string(&stored)
            .map_err(|err| QueueError::Backend(format!("cannot encode dead letter: {err}")))?;
        // Stored first, then taken off the work stream: a crash between the two leaves a
        // redelivery (and a duplicate dead letter), never a lost message.
        self.publish(self.dead_subject(&delivery.stream), payload)
            .await?;
        self.reply(&delivery.token, "+TERM").await
    }

    async fn dead_letters(
        &self,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        check_stream(stream)?;
        let dead = self
            .js
            .get_stream_no_info(self.dead_stream())
            .await
            .map_err(|err| nats_error("dead-letter stream", err))?;
        let subject = self.dead_subject(stream);
        let mut out = Vec::new();
        let mut sequence = 1;
        while out.len() < limit {
            let message = match dead
                .raw_message_builder()
                .sequence(sequence)
                .next_by_subject(subject.clone())
                .send()
                .await
            {
                Ok(message) => message,
                Err(err) if is_not_found(&err) => break,
                Err(err) => return Err(nats_error("list dead letters", err)),
            };
            sequence = message.sequence + 1;
            let stored: StoredDead = serde_json::from_slice(&message.payload).map_err(|err| {
                QueueError::Backend(format!(
                    "unreadable dead letter {}: {err}",
                    message.sequence
                ))
            })?;
            out.push(DeadLetter {
                stream: stream.to_owned(),
                id: message.sequence.to_string(),
                ticket: stored.ticket,
                reason: stored.reason,
                deliveries: stored.deliveries,
                at_ms: stored.at_ms,
            });
        }
        Ok(out)
    }

    async fn retry_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let Some((sequence, stored)) = self.dead_at(stream, id).await? else {
            return Ok(false);
        };
        self.publish(self.work_subject(stream), encode_ticket(&stored.ticket)?)
            .await?;
        let dead = self
            .js
            .get_stream_no_info(self.dead_stream())
            .await
            .map_err(|err| nats_error("dead-letter stream", err))?;
        dead.delete_message(sequence)
            .await
            .map_err(|err| nats_error("delete dead letter", err))?;
        self.wake().await;
        Ok(true)
    }

    async fn drop_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let Some((sequence, _)) = self.dead_at(stream, id).await? else {
            return Ok(false);
        };
        let dead = self
            .js
            .get_stream_no_info(self.dead_stream())
            .await
            .map_err(|err| nats_error("dead-letter stream", err))?;
        let deleted = dead
            .delete_message(sequence)
            .await
            .map_err(|err| nats_error("delete dead letter", err))?;
        Ok(deleted)
    }

    async fn stats(&self, stream: &str) -> Result<QueueStats, QueueError> {
        check_stream(stream)?;
        let name = consumer_name(stream);
        let work = self
            .js
            .get_stream_no_info(self.work_stream())
            .await
            .map_err(|err| nats_error("work stream", err))?;
        let info = match work.consumer_info(&name).await {
            Ok(info) => info,
            Err(_) => {
                self.forget_consumer(stream);
                self.ensure_stream(stream).await?;
                work.consumer_info(&name)
                    .await
                    .map_err(|err| nats_error("consumer info", err))?
            }
        };
        let mut oldest_age_ms = 0;
        if info.num_pending > 0 {
            let next = work
                .raw_message_builder()
                .sequence(info.delivered.stream_sequence + 1)
                .next_by_subject(self.work_subject(stream))
                .send()
                .await;
            if let Ok(message) = next {
                let at_ms =
                    i64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                oldest_age_ms = u64::try_from(now_ms() - at_ms).unwrap_or(0);
            }
        }
        let dead = self
            .js
            .get_stream_no_info(self.dead_stream())
            .await
            .map_err(|err| nats_error("dead-letter stream", err))?;
        let subject = self.dead_subject(stream);
        let mut subjects = dead
            .info_with_subjects(subject.clone())
            .await
            .map_err(|err| nats_error("dead-letter stream info", err))?;
        let mut dead_count = 0;
        while let Some(entry) = subjects.next().await {
            let (name, n) = entry.map_err(|err| nats_error("dead-letter stream info", err))?;
            if name == subject {
                dead_count += n;
            }
        }
        Ok(QueueStats {
            depth: info.num_pending,
            in_flight: u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX),
            oldest_age_ms,
            dead: u64::try_from(dead_count).unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_valid_tokens_without_collisions() {
        assert_eq!(encode_name("gpu-high"), "gpu-high");
        assert_eq!(encode_name("a.b c"), "a_2eb_20c");
        assert_eq!(encode_name("a_2e"), "a_5f2e");
        assert_ne!(encode_name("a.b"), encode_name("a_2eb"));
    }

    #[test]
    fn ack_subjects_parse_in_both_forms() {
        let v1 = parse_ack_subject("$JS.ACK.S.q_a.3.100.7.1790230470084404000.42").unwrap();
        assert_eq!((v1.consumer, v1.delivered, v1.stream_seq), ("q_a", 3, 100));
        let v2 = parse_ack_subject("$JS.ACK._.HASH.S.q_a.2.9.7.1790230470084404000.0.tok").unwrap();
        assert_eq!((v2.consumer, v2.delivered, v2.stream_seq), ("q_a", 2, 9));
        assert!(parse_ack_subject("$JS.ACK.S.q_a").is_none());
        assert!(parse_ack_subject("inbox.1").is_none());
    }
}
