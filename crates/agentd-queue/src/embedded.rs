//! The store itself as the work queue: table `queue_messages` (and `queue_dead_letters`) in the
//! store's SQLite or PostgreSQL database (migration `0006_queue.sql` of agentd-store).
//!
//! A message is a row; it is ready when `visible_at <= now`. Claiming is one statement that
//! pushes `visible_at` to the end of the lease, counts the delivery and names the consumer, for
//! the oldest ready rows of a stream (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent
//! claimers skip each other's rows instead of queueing; SQLite has one writer at a time). An
//! expired lease is simply a row that is ready again. The token is `"<row id>:<deliveries>"`,
//! and every later statement on the delivery matches both, so once the message was delivered
//! again the old token matches nothing.
//!
//! Waiting: a `tokio::sync::Notify` woken by this process's enqueues, nacks and retries (the
//! embedded case is one process); on PostgreSQL also `LISTEN agentd_queue`, which every enqueue
//! NOTIFYs, so other processes wake too; and a poll every [`POLL_INTERVAL`] for everything else
//! (expired leases, delays running out, SQLite writers in other processes).
//!
//! Times: SQLite uses this process's clock (one machine); PostgreSQL uses the database's clock
//! in every statement, so replicas with skewed clocks agree on leases.

use crate::{
    check_stream, count, decode_ticket, encode_ticket, invalid_token, millis, now_ms, POLL_INTERVAL,
};
use agentd_core::{DeadLetter, Delivery, QueueError, QueueStats, Ticket, WorkQueue};
use agentd_store::Store;
use async_trait::async_trait;
use sqlx::sqlite::SqlitePool;
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[cfg(feature = "postgres")]
use sqlx::postgres::PgPool;

/// The PostgreSQL channel enqueues NOTIFY and waiting claims LISTEN on. Shared by every schema
/// of a database: a wake-up for another schema only costs an extra look.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "agentd_queue";
/// Pause before listening again after the listener connection failed.
#[cfg(feature = "postgres")]
const RELISTEN_PAUSE: Duration = Duration::from_secs(1);

/// PostgreSQL's clock as unix milliseconds, in SQL.
#[cfg(feature = "postgres")]
macro_rules! pg_now {
    () => {
        "(floor(extract(epoch from clock_timestamp()) * 1000))::bigint"
    };
}

/// The work queue in the store's own database.
pub struct StoreQueue {
    db: Db,
    /// Woken by this process's enqueues, nacks and retries.
    notify: Arc<Notify>,
    /// The task forwarding PostgreSQL notifications to `notify`, started by the first claim
    /// (construction may happen outside a runtime) and stopped when the queue is dropped.
    #[cfg(feature = "postgres")]
    listener: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Keeps the store (and so its pool) open as long as the queue.
    _store: Arc<Store>,
}

enum Db {
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

impl StoreQueue {
    /// A queue in `store`'s database, whose migrations created the tables.
    pub fn new(store: Arc<Store>) -> StoreQueue {
        let db = match store.as_ref() {
            Store::Sqlite(sqlite) => Db::Sqlite(sqlite.pool().clone()),
            #[cfg(feature = "postgres")]
            Store::Postgres(pg) => Db::Postgres(pg.pool().clone()),
        };
        StoreQueue {
            db,
            notify: Arc::new(Notify::new()),
            #[cfg(feature = "postgres")]
            listener: std::sync::Mutex::new(None),
            _store: store,
        }
    }

    /// Starts the LISTEN task once (PostgreSQL only).
    fn start_listener(&self) {
        match &self.db {
            Db::Sqlite(_) => {}
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let mut slot = self
                    .listener
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if slot.is_none() {
                    *slot = Some(tokio::spawn(listen(pool.clone(), self.notify.clone())));
                }
            }
        }
    }

    /// One pass over `streams` in order, taking up to `max` ready messages in all.
    async fn try_claim(
        &self,
        streams: &[String],
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::new();
        for stream in streams {
            let want = max - out.len();
            if want == 0 {
                break;
            }
            let limit = i64::try_from(want).unwrap_or(i64::MAX);
            let mut rows: Vec<(i64, String, i64)> = match &self.db {
                Db::Sqlite(pool) => {
                    let now = now_ms();
                    // Look before writing: an UPDATE takes SQLite's one write lock even when it
                    // matches nothing, and idle claim loops would then fight every real writer
                    // for it (claims stalled up to the busy timeout, measured).
                    let ready: Option<i64> = sqlx::query_scalar(
                        "SELECT 1 FROM queue_messages WHERE stream = ?1 AND visible_at <= ?2 LIMIT 1",
                    )
                    .bind(stream)
                    .bind(now)
                    .fetch_optional(pool)
                    .await
                    .map_err(|err| db_error("claim", err))?;
                    if ready.is_none() {
                        continue;
                    }
                    sqlx::query(
                        "UPDATE queue_messages \
                         SET visible_at = ?1, deliveries = deliveries + 1, claimed_by = ?2 \
                         WHERE id IN (SELECT id FROM queue_messages \
                                      WHERE stream = ?3 AND visible_at <= ?4 \
                                      ORDER BY id LIMIT ?5) \
                         RETURNING id, ticket, deliveries",
                    )
                    .bind(now.saturating_add(millis(lease)))
                    .bind(consumer)
                    .bind(stream)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
                    .map_err(|err| db_error("claim", err))?
                    .into_iter()
                    .map(|row| (row.get(0), row.get(1), row.get(2)))
                    .collect()
                }
                #[cfg(feature = "postgres")]
                Db::Postgres(pool) => sqlx::query(concat!(
                    "WITH picked AS (SELECT id FROM queue_messages \
                                     WHERE stream = $1 AND visible_at <= ",
                    pg_now!(),
                    " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     UPDATE queue_messages q SET visible_at = ",
                    pg_now!(),
                    " + $3, deliveries = q.deliveries + 1, claimed_by = $4 \
                     FROM picked WHERE q.id = picked.id \
                     RETURNING q.id, q.ticket, q.deliveries",
                ))
                .bind(stream)
                .bind(limit)
                .bind(millis(lease))
                .bind(consumer)
                .fetch_all(pool)
                .await
                .map_err(|err| db_error("claim", err))?
                .into_iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect(),
            };
            // RETURNING has no order.
            rows.sort_unstable_by_key(|row| row.0);
            for (id, ticket, deliveries) in rows {
                out.push(Delivery {
                    stream: stream.clone(),
                    ticket: decode_ticket(&ticket)?,
                    token: format!("{id}:{deliveries}"),
                    deliveries: count(deliveries),
                });
            }
        }
        Ok(out)
    }

    async fn insert(&self, stream: &str, ticket: &str) -> Result<(), QueueError> {
        match &self.db {
            Db::Sqlite(pool) => {
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO queue_messages (stream, ticket, visible_at, enqueued_at) \
                     VALUES (?1, ?2, ?3, ?3)",
                )
                .bind(stream)
                .bind(ticket)
                .bind(now)
                .execute(pool)
                .await
                .map_err(|err| db_error("enqueue", err))?;
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                // One round trip; the notification goes out when the insert commits.
                sqlx::query(concat!(
                    "WITH inserted AS (INSERT INTO queue_messages \
                     (stream, ticket, visible_at, enqueued_at) VALUES ($1, $2, ",
                    pg_now!(),
                    ", ",
                    pg_now!(),
                    ") RETURNING id) SELECT pg_notify('agentd_queue', '') FROM inserted",
                ))
                .bind(stream)
                .bind(ticket)
                .execute(pool)
                .await
                .map_err(|err| db_error("enqueue", err))?;
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }
}

impl Drop for StoreQueue {
    fn drop(&mut self) {
        #[cfg(feature = "postgres")]
        if let Some(task) = self
            .listener
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// Forwards notifications on [`CHANNEL`] to `notify` until aborted. `PgListener` reconnects by
/// itself on the next `recv` after a failure; the pause keeps a dead database from spinning it.
#[cfg(feature = "postgres")]
async fn listen(pool: PgPool, notify: Arc<Notify>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "Cannot LISTEN for queue wake-ups; polling");
                tokio::time::sleep(RELISTEN_PAUSE).await;
                continue;
            }
        };
        if let Err(err) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %err, "Cannot LISTEN for queue wake-ups; polling");
            tokio::time::sleep(RELISTEN_PAUSE).await;
            continue;
        }
        loop {
            match listener.recv().await {
                Ok(_) => notify.notify_waiters(),
                Err(err) => {
                    tracing::warn!(error = %err, "Queue wake-up listener failed; polling");
                    // Wake everyone: a notification may have been lost meanwhile.
                    notify.notify_waiters();
                    tokio::time::sleep(RELISTEN_PAUSE).await;
                }
            }
        }
    }
}

/// `"<id>:<deliveries>"` → its parts.
fn parse_token(token: &str) -> Result<(i64, i64), QueueError> {
    let (id, deliveries) = token.split_once(':').ok_or_else(|| invalid_token(token))?;
    match (id.parse(), deliveries.parse()) {
        (Ok(id), Ok(deliveries)) => Ok((id, deliveries)),
        _ => Err(invalid_token(token)),
    }
}

fn db_error(context: &str, err: sqlx::Error) -> QueueError {
    match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => QueueError::Unavailable(format!("{context}: {err}")),
        // `sqlx::Error` is non-exhaustive and not ours.
        _ => QueueError::Backend(format!("{context}: {err}")),
    }
}

#[async_trait]
impl WorkQueue for StoreQueue {
    fn backend(&self) -> &'static str {
        "store"
    }

    async fn ensure_stream(&self, stream: &str) -> Result<(), QueueError> {
        // Streams are a column: nothing to create.
        check_stream(stream)
    }

    async fn enqueue(&self, stream: &str, ticket: &Ticket) -> Result<(), QueueError> {
        check_stream(stream)?;
        self.insert(stream, &encode_ticket(ticket)?).await
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
        self.start_listener();
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a wake-up between the look and the sleep counts.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claimed = self.try_claim(streams, consumer, max, lease).await?;
            let now = Instant::now();
            if !claimed.is_empty() || now >= deadline {
                return Ok(claimed);
            }
            let nap = (deadline - now).min(POLL_INTERVAL);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    async fn extend(&self, delivery: &Delivery, lease: Duration) -> Result<(), QueueError> {
        let (id, deliveries) = parse_token(&delivery.token)?;
        match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE queue_messages SET visible_at = ?1 WHERE id = ?2 AND deliveries = ?3",
                )
                .bind(now_ms().saturating_add(millis(lease)))
                .bind(id)
                .bind(deliveries)
                .execute(pool)
                .await
                .map_err(|err| db_error("extend", err))?;
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query(concat!(
                    "UPDATE queue_messages SET visible_at = ",
                    pg_now!(),
                    " + $1 WHERE id = $2 AND deliveries = $3"
                ))
                .bind(millis(lease))
                .bind(id)
                .bind(deliveries)
                .execute(pool)
                .await
                .map_err(|err| db_error("extend", err))?;
            }
        }
        Ok(())
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let (id, deliveries) = parse_token(&delivery.token)?;
        let query = match &self.db {
            Db::Sqlite(_) => "DELETE FROM queue_messages WHERE id = ?1 AND deliveries = ?2",
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => "DELETE FROM queue_messages WHERE id = $1 AND deliveries = $2",
        };
        match &self.db {
            Db::Sqlite(pool) => sqlx::query(query)
                .bind(id)
                .bind(deliveries)
                .execute(pool)
                .await
                .map(drop),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query(query)
                .bind(id)
                .bind(deliveries)
                .execute(pool)
                .await
                .map(drop),
        }
        .map_err(|err| db_error("ack", err))
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let (id, deliveries) = parse_token(&delivery.token)?;
        match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE queue_messages SET visible_at = ?1, claimed_by = NULL \
                     WHERE id = ?2 AND deliveries = ?3",
                )
                .bind(now_ms().saturating_add(millis(delay)))
                .bind(id)
                .bind(deliveries)
                .execute(pool)
                .await
                .map_err(|err| db_error("nack", err))?;
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query(concat!(
                    "WITH nacked AS (UPDATE queue_messages SET visible_at = ",
                    pg_now!(),
                    " + $1, claimed_by = NULL WHERE id = $2 AND deliveries = $3 RETURNING id) \
                     SELECT pg_notify('agentd_queue', '') FROM nacked"
                ))
                .bind(millis(delay))
                .bind(id)
                .bind(deliveries)
                .execute(pool)
                .await
                .map_err(|err| db_error("nack", err))?;
            }
        }
        self.notify.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let (id, deliveries) = parse_token(&delivery.token)?;
        let reason = reason.replace('\0', "\u{FFFD}");
        // The row leaves the live table and lands in the dead one atomically.
        match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool
                    .begin()
                    .await
                    .map_err(|err| db_error("dead letter", err))?;
                let moved = sqlx::query(
                    "DELETE FROM queue_messages WHERE id = ?1 AND deliveries = ?2 \
                     RETURNING stream, ticket, deliveries, enqueued_at",
                )
                .bind(id)
                .bind(deliveries)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| db_error("dead letter", err))?;
                if let Some(row) = moved {
                    sqlx::query(
                        "INSERT INTO queue_dead_letters \
                         (stream, ticket, reason, deliveries, enqueued_at, dead_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .bind(row.get::<String, _>(0))
                    .bind(row.get::<String, _>(1))
                    .bind(&reason)
                    .bind(row.get::<i64, _>(2))
                    .bind(row.get::<i64, _>(3))
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| db_error("dead letter", err))?;
                }
                tx.commit()
                    .await
                    .map_err(|err| db_error("dead letter", err))?;
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query(concat!(
                    "WITH moved AS (DELETE FROM queue_messages WHERE id = $1 AND deliveries = $2 \
                     RETURNING stream, ticket, deliveries, enqueued_at) \
                     INSERT INTO queue_dead_letters \
                     (stream, ticket, reason, deliveries, enqueued_at, dead_at) \
                     SELECT stream, ticket, $3, deliveries, enqueued_at, ",
                    pg_now!(),
                    " FROM moved"
                ))
                .bind(id)
                .bind(deliveries)
                .bind(&reason)
                .execute(pool)
                .await
                .map_err(|err| db_error("dead letter", err))?;
            }
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        check_stream(stream)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, String, String, i64, i64)> = match &self.db {
            Db::Sqlite(pool) => sqlx::query(
                "SELECT id, ticket, reason, deliveries, dead_at FROM queue_dead_letters \
                 WHERE stream = ?1 ORDER BY id LIMIT ?2",
            )
            .bind(stream)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(|err| db_error("list dead letters", err))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
            .collect(),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query(
                "SELECT id, ticket, reason, deliveries, dead_at FROM queue_dead_letters \
                 WHERE stream = $1 ORDER BY id LIMIT $2",
            )
            .bind(stream)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(|err| db_error("list dead letters", err))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
            .collect(),
        };
        rows.into_iter()
            .map(|(id, ticket, reason, deliveries, at_ms)| {
                Ok(DeadLetter {
                    stream: stream.to_owned(),
                    id: id.to_string(),
                    ticket: decode_ticket(&ticket)?,
                    reason,
                    deliveries: count(deliveries),
                    at_ms,
                })
            })
            .collect()
    }

    async fn retry_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let Ok(id) = id.parse::<i64>() else {
            return Ok(false);
        };
        let moved = match &self.db {
            Db::Sqlite(pool) => {
                let now = now_ms();
                let mut tx = pool.begin().await.map_err(|err| db_error("retry", err))?;
                let ticket: Option<String> = sqlx::query_scalar(
                    "DELETE FROM queue_dead_letters WHERE id = ?1 AND stream = ?2 RETURNING ticket",
                )
                .bind(id)
                .bind(stream)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| db_error("retry", err))?;
                if let Some(ticket) = &ticket {
                    sqlx::query(
                        "INSERT INTO queue_messages (stream, ticket, visible_at, enqueued_at) \
                         VALUES (?1, ?2, ?3, ?3)",
                    )
                    .bind(stream)
                    .bind(ticket)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| db_error("retry", err))?;
                }
                tx.commit().await.map_err(|err| db_error("retry", err))?;
                ticket.is_some()
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let moved: Option<i32> = sqlx::query_scalar(concat!(
                    "WITH dead AS (DELETE FROM queue_dead_letters WHERE id = $1 AND stream = $2 \
                     RETURNING stream, ticket), \
                     inserted AS (INSERT INTO queue_messages \
                     (stream, ticket, visible_at, enqueued_at) SELECT stream, ticket, ",
                    pg_now!(),
                    ", ",
                    pg_now!(),
                    " FROM dead RETURNING id) \
                     SELECT 1 FROM inserted, pg_notify('agentd_queue', '')"
                ))
                .bind(id)
                .bind(stream)
                .fetch_optional(pool)
                .await
                .map_err(|err| db_error("retry", err))?;
                moved.is_some()
            }
        };
        if moved {
            self.notify.notify_waiters();
        }
        Ok(moved)
    }

    async fn drop_dead(&self, stream: &str, id: &str) -> Result<bool, QueueError> {
        check_stream(stream)?;
        let Ok(id) = id.parse::<i64>() else {
            return Ok(false);
        };
        let deleted = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query("DELETE FROM queue_dead_letters WHERE id = ?1 AND stream = ?2")
                    .bind(id)
                    .bind(stream)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                sqlx::query("DELETE FROM queue_dead_letters WHERE id = $1 AND stream = $2")
                    .bind(id)
                    .bind(stream)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
        }
        .map_err(|err| db_error("drop dead letter", err))?;
        Ok(deleted > 0)
    }

    async fn stats(&self, stream: &str) -> Result<QueueStats, QueueError> {
        check_stream(stream)?;
        // A row is in flight while claimed and its lease runs; every other row waits
        // (including nacked rows waiting out their delay and rows whose lease expired).
        let (total, in_flight, oldest, now, dead): (i64, i64, Option<i64>, i64, i64) = match &self
            .db
        {
            Db::Sqlite(pool) => {
                let now = now_ms();
                let row = sqlx::query(
                    "SELECT COUNT(*), \
                         COALESCE(SUM(CASE WHEN claimed_by IS NOT NULL AND visible_at > ?2 \
                                  THEN 1 ELSE 0 END), 0), \
                         MIN(CASE WHEN claimed_by IS NOT NULL AND visible_at > ?2 \
                             THEN NULL ELSE enqueued_at END), \
                         (SELECT COUNT(*) FROM queue_dead_letters WHERE stream = ?1) \
                         FROM queue_messages WHERE stream = ?1",
                )
                .bind(stream)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|err| db_error("stats", err))?;
                (row.get(0), row.get(1), row.get(2), now, row.get(3))
            }
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => {
                let row = sqlx::query(concat!(
                        "WITH now AS (SELECT ",
                        pg_now!(),
                        " AS ms) \
                         SELECT COUNT(q.id), \
                         COUNT(q.id) FILTER (WHERE claimed_by IS NOT NULL AND visible_at > now.ms), \
                         MIN(enqueued_at) FILTER \
                             (WHERE NOT (claimed_by IS NOT NULL AND visible_at > now.ms)), \
                         now.ms, \
                         (SELECT COUNT(*) FROM queue_dead_letters WHERE stream = $1) \
                         FROM now LEFT JOIN queue_messages q ON q.stream = $1 GROUP BY now.ms"
                    ))
                    .bind(stream)
                    .fetch_one(pool)
                    .await
                    .map_err(|err| db_error("stats", err))?;
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
            }
        };
        let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(QueueStats {
            depth: unsigned(total - in_flight),
            in_flight: unsigned(in_flight),
            oldest_age_ms: oldest.map_or(0, |at| unsigned(now - at)),
            dead: unsigned(dead),
        })
    }
}
