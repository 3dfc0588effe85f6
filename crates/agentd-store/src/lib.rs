//! Persistent state for agentd: one [`Store`] that implements the `agentd-core` storage traits
//! on SQLite (embedded, the default: nothing to install) or PostgreSQL (shared by many processes).
//!
//! The one decision to know: the two backends are parallel files (`sqlite.rs`, `postgres.rs`)
//! with the same methods in the same order, each with its own numbered migrations
//! (`migrations/sqlite`, `migrations/postgres`), and both must pass the conformance suites in
//! `tests/conformance.rs` (keys, spend) and `tests/runs_conformance.rs` (`RunStore`; its
//! methods live in `sqlite_runs.rs` and `postgres_runs.rs`, parallel in the same way). They return *identical* values: timestamps are truncated to whole
//! milliseconds before they are written, so a key reads back the same from either backend.
//! Likewise text: PostgreSQL cannot store a NUL character, so both backends refuse one in keys
//! and query filters ([`StoreError::Invalid`], checked in this file before any SQL runs), and
//! replace it by U+FFFD in ledger rows (a row is never lost over one character).
//!
//! A new table (threads, runs, …) is a new `000N_*.sql` file in both migration directories plus
//! a method in both backend files. Migrations must stay additive: a binary
//! ignores migrations it does not know, so an older replica keeps running against a schema a
//! newer one has already migrated (rolling deploys).
//!
//! PostgreSQL (`postgres.rs`, `Store::Postgres`, the `open_postgres*` constructors) exists only
//! with the cargo feature `postgres`, so a build without it links no PostgreSQL driver.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
mod postgres_runs;
mod runs;
pub mod sqlite;
mod sqlite_runs;
mod tenants;

use agentd_core::{
    ApiKey, CancelAction, CreateRun, Cron, CronQuery, KeyId, KeyStore, Micros, NewEvent, NewKey,
    Run, RunEvent, RunStatus, RunStore, SpendQuery, SpendRecord, SpendScope, SpendStore,
    SpendTotal, Step, StoreError, Swept, TenantId, Thread, ThreadQuery,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The configured store backend. A closed enum rather than `Box<dyn …>` so every new backend
/// must answer every question (`backend`, `ping`, `close`, each trait method) at compile time.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and its parent directories,
    /// in WAL mode with a 5 s busy timeout and foreign keys on, and applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        SqliteStore::open(path).await.map(Store::Sqlite)
    }

    /// Connects to PostgreSQL with a pool of at most `max_connections` and applies pending
    /// migrations. Errors never contain the password of `url`.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        PgStore::open(url, max_connections, None)
            .await
            .map(Store::Postgres)
    }

    /// Connects to a read replica of the primary's PostgreSQL without migrating it (a replica
    /// follows its primary's schema). Only reads are sent to it.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres_replica(
        url: &str,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        PgStore::connect(url, max_connections, None, false)
            .await
            .map(Store::Postgres)
    }

    /// Like [`Store::open_postgres`], but every pooled connection uses `schema` (created if
    /// missing) as its `search_path`, so all tables, including the migrations table, live
    /// there. Tests use it to run in parallel on one database without seeing each other's rows.
    /// `schema` must match `[a-z_][a-z0-9_]{0,62}`.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres_in_schema(url: &str, schema: &str) -> Result<Store, StoreError> {
        PgStore::open(url, postgres::SCHEMA_POOL_SIZE, Some(schema))
            .await
            .map(Store::Postgres)
    }

    /// `"sqlite"` or `"postgres"`, for logs, metrics labels and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => "postgres",
        }
    }

    /// A cheap round trip (`SELECT 1`), for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.ping().await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.ping().await,
        }
    }

    /// Closes the pool, waiting for checked-out connections to be returned. Later calls fail
    /// with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.close().await,
        }
    }
}

#[async_trait]
impl KeyStore for Store {
    async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError> {
        match self {
            Store::Sqlite(store) => store.insert_key(key).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.insert_key(key).await,
        }
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        match self {
            Store::Sqlite(store) => store.key_by_hash(hash).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.key_by_hash(hash).await,
        }
    }

    async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        match self {
            Store::Sqlite(store) => store.key_by_id(id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.key_by_id(id).await,
        }
    }

    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError> {
        match self {
            Store::Sqlite(store) => store.list_keys(tenant).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.list_keys(tenant).await,
        }
    }

    async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.revoke_key(id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.revoke_key(id).await,
        }
    }
}

#[async_trait]
impl SpendStore for Store {
    async fn record_spend(&self, rows: &[SpendRecord]) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.record_spend(rows).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.record_spend(rows).await,
        }
    }

    async fn spend_totals(&self, query: &SpendQuery) -> Result<Vec<SpendTotal>, StoreError> {
        match self {
            Store::Sqlite(store) => store.spend_totals(query).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.spend_totals(query).await,
        }
    }

    async fn spend_sum(
        &self,
        scope: &SpendScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Micros, StoreError> {
        match self {
            Store::Sqlite(store) => store.spend_sum(scope, since).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.spend_sum(scope, since).await,
        }
    }
}

#[async_trait]
impl RunStore for Store {
    async fn create_thread(&self, thread: &Thread) -> Result<Option<Thread>, StoreError> {
        match self {
            Store::Sqlite(store) => store.create_thread(thread).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.create_thread(thread).await,
        }
    }

    async fn get_thread(&self, tenant: &TenantId, id: &str) -> Result<Option<Thread>, StoreError> {
        match self {
            Store::Sqlite(store) => store.get_thread(tenant, id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.get_thread(tenant, id).await,
        }
    }

    async fn update_thread_metadata(
        &self,
        tenant: &TenantId,
        id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<Option<Thread>, StoreError> {
        match self {
            Store::Sqlite(store) => store.update_thread_metadata(tenant, id, metadata).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.update_thread_metadata(tenant, id, metadata).await,
        }
    }

    async fn search_threads(
        &self,
        tenant: &TenantId,
        query: &ThreadQuery,
    ) -> Result<Vec<Thread>, StoreError> {
        match self {
            Store::Sqlite(store) => store.search_threads(tenant, query).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.search_threads(tenant, query).await,
        }
    }

    async fn delete_thread(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.delete_thread(tenant, id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.delete_thread(tenant, id).await,
        }
    }

    async fn create_run(
        &self,
        run: &Run,
        first_events: &[NewEvent],
    ) -> Result<CreateRun, StoreError> {
        match self {
            Store::Sqlite(store) => store.create_run(run, first_events).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.create_run(run, first_events).await,
        }
    }

    async fn get_run(&self, tenant: &TenantId, id: &str) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => store.get_run(tenant, id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.get_run(tenant, id).await,
        }
    }

    async fn run_by_id(&self, id: &str) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => store.run_by_id(id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.run_by_id(id).await,
        }
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        thread_id: &str,
        status: Option<RunStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => {
                store
                    .list_runs(tenant, thread_id, status, limit, offset)
                    .await
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => {
                store
                    .list_runs(tenant, thread_id, status, limit, offset)
                    .await
            }
        }
    }

    async fn delete_run(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.delete_run(tenant, id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.delete_run(tenant, id).await,
        }
    }

    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        lease: Duration,
        agent_cap: Option<u32>,
    ) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => store.claim_run(run_id, owner, lease, agent_cap).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.claim_run(run_id, owner, lease, agent_cap).await,
        }
    }

    async fn renew_lease(
        &self,
        run_id: &str,
        epoch: i64,
        lease: Duration,
    ) -> Result<Option<Option<CancelAction>>, StoreError> {
        match self {
            Store::Sqlite(store) => store.renew_lease(run_id, epoch, lease).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.renew_lease(run_id, epoch, lease).await,
        }
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &str,
        action: CancelAction,
    ) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => store.request_cancel(tenant, id, action).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.request_cancel(tenant, id, action).await,
        }
    }

    async fn cancel_requests(
        &self,
        run_ids: &[String],
    ) -> Result<Vec<(String, CancelAction)>, StoreError> {
        match self {
            Store::Sqlite(store) => store.cancel_requests(run_ids).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.cancel_requests(run_ids).await,
        }
    }

    async fn finish_run(
        &self,
        run_id: &str,
        epoch: i64,
        status: RunStatus,
        error: Option<&str>,
        thread_values: Option<&Value>,
        last_events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => {
                store
                    .finish_run(run_id, epoch, status, error, thread_values, last_events)
                    .await
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => {
                store
                    .finish_run(run_id, epoch, status, error, thread_values, last_events)
                    .await
            }
        }
    }

    async fn reap(&self, stale: Duration, limit: i64) -> Result<Vec<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => store.reap(stale, limit).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.reap(stale, limit).await,
        }
    }

    async fn next_pending_on_thread(&self, thread_id: &str) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Sqlite(store) => store.next_pending_on_thread(thread_id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.next_pending_on_thread(thread_id).await,
        }
    }

    async fn start_step(
        &self,
        run_id: &str,
        epoch: i64,
        step: i32,
        kind: &str,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.start_step(run_id, epoch, step, kind).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.start_step(run_id, epoch, step, kind).await,
        }
    }

    async fn finish_step(
        &self,
        run_id: &str,
        epoch: i64,
        step: i32,
        output: &Value,
        cost_micros: i64,
        tokens: i64,
        events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => {
                store
                    .finish_step(run_id, epoch, step, output, cost_micros, tokens, events)
                    .await
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => {
                store
                    .finish_step(run_id, epoch, step, output, cost_micros, tokens, events)
                    .await
            }
        }
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<Step>, StoreError> {
        match self {
            Store::Sqlite(store) => store.steps(run_id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.steps(run_id).await,
        }
    }

    async fn append_events(
        &self,
        run_id: &str,
        epoch: i64,
        events: &[NewEvent],
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(store) => store.append_events(run_id, epoch, events).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.append_events(run_id, epoch, events).await,
        }
    }

    async fn events_after(
        &self,
        run_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RunEvent>, StoreError> {
        match self {
            Store::Sqlite(store) => store.events_after(run_id, after, limit).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.events_after(run_id, after, limit).await,
        }
    }

    async fn create_cron(&self, cron: &Cron) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.create_cron(cron).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.create_cron(cron).await,
        }
    }

    async fn get_cron(&self, tenant: &TenantId, id: &str) -> Result<Option<Cron>, StoreError> {
        match self {
            Store::Sqlite(store) => store.get_cron(tenant, id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.get_cron(tenant, id).await,
        }
    }

    async fn search_crons(
        &self,
        tenant: &TenantId,
        query: &CronQuery,
    ) -> Result<Vec<Cron>, StoreError> {
        match self {
            Store::Sqlite(store) => store.search_crons(tenant, query).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.search_crons(tenant, query).await,
        }
    }

    async fn delete_cron(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.delete_cron(tenant, id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.delete_cron(tenant, id).await,
        }
    }

    async fn due_crons(&self, limit: i64) -> Result<Vec<Cron>, StoreError> {
        match self {
            Store::Sqlite(store) => store.due_crons(limit).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.due_crons(limit).await,
        }
    }

    async fn advance_cron(
        &self,
        cron_id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.advance_cron(cron_id, expected, next).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.advance_cron(cron_id, expected, next).await,
        }
    }

    async fn sweep(
        &self,
        events_before: DateTime<Utc>,
        runs_before: DateTime<Utc>,
    ) -> Result<Swept, StoreError> {
        match self {
            Store::Sqlite(store) => store.sweep(events_before, runs_before).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(store) => store.sweep(events_before, runs_before).await,
        }
    }
}

/// A ledger row converted to what both backends store: counters as signed 64-bit integers (the
/// only integer type both have), the time truncated to milliseconds, text without NUL.
///
/// A counter above `i64::MAX` (9.2e18 tokens: only a broken or hostile upstream reports that)
/// is stored as `i64::MAX` rather than refused. Refusing would fail the whole batch on every
/// retry and lose every other row of it; the request did happen and its cost is in the row.
/// A NUL character in a text field (PostgreSQL text cannot hold one) is replaced by U+FFFD for
/// the same reason: the row is stored, on both backends, with that one character changed.
pub(crate) struct SpendRow<'a> {
    pub(crate) record: &'a SpendRecord,
    pub(crate) id: Cow<'a, str>,
    pub(crate) request_id: Cow<'a, str>,
    pub(crate) at: DateTime<Utc>,
    pub(crate) key_id: Option<Cow<'a, str>>,
    pub(crate) tenant: Cow<'a, str>,
    pub(crate) user: Option<Cow<'a, str>>,
    pub(crate) session: Option<Cow<'a, str>>,
    pub(crate) model: Cow<'a, str>,
    pub(crate) provider: Cow<'a, str>,
    pub(crate) deployment: Cow<'a, str>,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cached_input_tokens: i64,
    pub(crate) latency_ms: i64,
    pub(crate) status: Cow<'a, str>,
}

impl<'a> SpendRow<'a> {
    pub(crate) fn new(record: &'a SpendRecord) -> SpendRow<'a> {
        let column = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        SpendRow {
            record,
            id: without_nul(&record.id),
            request_id: without_nul(&record.request_id),
            at: truncate_to_millis(record.at),
            key_id: record.key_id.as_ref().map(|key| without_nul(key.as_str())),
            tenant: without_nul(record.tenant.as_str()),
            user: record.user.as_ref().map(|user| without_nul(user.as_str())),
            session: record.session.as_deref().map(without_nul),
            model: without_nul(&record.model),
            provider: without_nul(&record.provider),
            deployment: without_nul(&record.deployment),
            input_tokens: column(record.input_tokens),
            output_tokens: column(record.output_tokens),
            cached_input_tokens: column(record.cached_input_tokens),
            latency_ms: column(record.latency_ms),
            status: without_nul(&record.status),
        }
    }
}

/// `text` with every NUL replaced by U+FFFD; borrowed (no copy) in the usual case of none.
fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Refuses text PostgreSQL cannot store (a NUL character), before it reaches either backend, so
/// both answer [`StoreError::Invalid`] naming `field` (SQLite would accept it, PostgreSQL would
/// fail with an opaque encoding error).
pub(crate) fn check_text(field: &str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "{field} must not contain a NUL character"
        )));
    }
    Ok(())
}

/// [`check_text`] on every text field of a key to insert.
pub(crate) fn check_new_key(key: &NewKey) -> Result<(), StoreError> {
    check_text("key id", key.id.as_str())?;
    check_text("key name", &key.name)?;
    check_text("tenant", key.tenant.as_str())?;
    if let Some(user) = &key.user {
        check_text("user", user.as_str())?;
    }
    check_text("key prefix", &key.prefix)?;
    check_text("key hash", &key.hash)?;
    if let Some(tier) = &key.tier {
        check_text("tier", tier)?;
    }
    Ok(())
}

/// [`check_text`] on the text a totals query filters by.
pub(crate) fn check_query(query: &SpendQuery) -> Result<(), StoreError> {
    if let Some(tenant) = &query.tenant {
        check_text("tenant", tenant.as_str())?;
    }
    Ok(())
}

/// [`check_text`] on the text a budget scope filters by.
pub(crate) fn check_scope(scope: &SpendScope) -> Result<(), StoreError> {
    match scope {
        SpendScope::Global => Ok(()),
        SpendScope::Tenant(tenant) => check_text("tenant", tenant.as_str()),
        SpendScope::User(tenant, user) => {
            check_text("tenant", tenant.as_str())?;
            check_text("user", user.as_str())
        }
        SpendScope::Key(key) => check_text("key id", key.as_str()),
        SpendScope::Session(tenant, session) => {
            check_text("tenant", tenant.as_str())?;
            check_text("session", session)
        }
    }
}

/// The aggregate columns of a totals row, as both backends return them (`BIGINT`/`INTEGER`).
pub(crate) struct TotalColumns {
    pub(crate) group: String,
    pub(crate) requests: i64,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) cost: i64,
    pub(crate) cache_hits: i64,
}

impl TotalColumns {
    pub(crate) fn into_total(self) -> Result<SpendTotal, StoreError> {
        let group = &self.group;
        let count = |name: &str, value: i64| {
            u64::try_from(value).map_err(|_| {
                StoreError::Backend(format!(
                    "spend total of {group:?}: {name} is negative ({value})"
                ))
            })
        };
        Ok(SpendTotal {
            requests: count("requests", self.requests)?,
            input_tokens: count("input_tokens", self.input_tokens)?,
            output_tokens: count("output_tokens", self.output_tokens)?,
            cost: Micros(self.cost),
            cache_hits: count("cache_hits", self.cache_hits)?,
            group: self.group,
        })
    }
}

/// The first whole millisecond at or after `at`: the bound of a range over stored times, which
/// are all whole milliseconds. `at >= t` and `at < t` then select the same rows as with the
/// exact bound, on both backends (flooring instead would let a row 0.5 ms before `since` in).
pub(crate) fn ceil_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = truncate_to_millis(at);
    if floor == at {
        return at;
    }
    // Out of range only within a millisecond of the end of time: keep the exact bound there.
    floor
        .checked_add_signed(chrono::TimeDelta::milliseconds(1))
        .unwrap_or(at)
}

/// Drops sub-millisecond precision. Both backends store this, so what one returns the other
/// would too (Postgres keeps microseconds, SQLite stores integer milliseconds).
pub(crate) fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    // `timestamp_millis` floors, and a value that was a `DateTime` a moment ago is in range.
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// Maps the errors both backends share; each backend checks its own error codes first.
/// `context` names the operation (`"insert key"`), and the message keeps sqlx's, which carries
/// the database's own: the gateway logs it, and it is all an operator has to go on.
pub(crate) fn classify(context: &str, err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(format!("{context}: {err}")),
        // `sqlx::Error` is non-exhaustive and not ours: anything else is a backend failure.
        _ => StoreError::Backend(format!("{context}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn truncation_keeps_whole_milliseconds_and_floors() {
        let at = Utc.timestamp_opt(1_714_566_896, 789_999_999).unwrap();
        assert_eq!(
            truncate_to_millis(at).timestamp_nanos_opt(),
            Some(1_714_566_896_789_000_000)
        );
        let before_epoch = Utc.timestamp_opt(-1, 999_500_000).unwrap();
        assert_eq!(truncate_to_millis(before_epoch).timestamp_millis(), -1);
        assert_eq!(
            truncate_to_millis(before_epoch).timestamp_subsec_nanos(),
            999_000_000
        );
    }

    #[test]
    fn range_bounds_round_up_to_whole_milliseconds() {
        let exact = Utc.timestamp_opt(1_714_566_896, 789_000_000).unwrap();
        assert_eq!(ceil_to_millis(exact), exact);
        let inside = Utc.timestamp_opt(1_714_566_896, 789_000_001).unwrap();
        assert_eq!(
            ceil_to_millis(inside).timestamp_nanos_opt(),
            Some(1_714_566_896_790_000_000)
        );
        let before_epoch = Utc.timestamp_opt(-1, 999_500_000).unwrap();
        assert_eq!(ceil_to_millis(before_epoch).timestamp_millis(), 0);
        assert_eq!(
            ceil_to_millis(DateTime::<Utc>::MAX_UTC),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn spend_counters_beyond_i64_saturate() {
        let record = SpendRecord {
            id: "call_big".into(),
            request_id: "req_big".into(),
            at: Utc.timestamp_opt(1_714_566_896, 123_456_789).unwrap(),
            key_id: None,
            tenant: TenantId::new("acme"),
            user: None,
            session: None,
            model: "m".into(),
            provider: "p".into(),
            deployment: "d".into(),
            input_tokens: i64::MAX as u64,
            output_tokens: u64::MAX,
            cached_input_tokens: 7,
            usage_estimated: false,
            cost: Micros(1),
            latency_ms: i64::MAX as u64 + 1,
            cache_hit: false,
            status: "ok".into(),
        };
        let row = SpendRow::new(&record);
        assert_eq!(row.input_tokens, i64::MAX);
        assert_eq!(row.output_tokens, i64::MAX);
        assert_eq!(row.cached_input_tokens, 7);
        assert_eq!(row.latency_ms, i64::MAX);
        assert_eq!(row.at.timestamp_subsec_nanos(), 123_000_000);
    }

    #[test]
    fn negative_aggregates_are_backend_errors() {
        let columns = TotalColumns {
            group: "acme".into(),
            requests: 2,
            input_tokens: 10,
            output_tokens: -1,
            cost: -5,
            cache_hits: 0,
        };
        assert!(
            matches!(columns.into_total(), Err(StoreError::Backend(m)) if m.contains("output_tokens"))
        );
        let total = TotalColumns {
            group: "acme".into(),
            requests: 2,
            input_tokens: 10,
            output_tokens: 3,
            // Money is signed, so a negative sum is passed through; counts cannot be negative.
            cost: -5,
            cache_hits: 1,
        }
        .into_total()
        .unwrap();
        assert_eq!(total.cost, Micros(-5));
        assert_eq!(total.requests, 2);
    }

    #[test]
    fn pool_failures_are_unavailable_not_backend() {
        assert!(matches!(
            classify("ping", sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(m) if m.starts_with("ping: ") && m.contains("timed out")
        ));
        assert!(matches!(
            classify("ping", sqlx::Error::PoolClosed),
            StoreError::Unavailable(m) if m.contains("closed pool")
        ));
        assert!(matches!(
            classify("read key", sqlx::Error::RowNotFound),
            StoreError::Backend(m) if m.starts_with("read key: no rows returned")
        ));
    }

    #[test]
    fn nul_in_text_is_invalid_and_names_the_field() {
        assert!(check_text("tenant", "acme").is_ok());
        assert!(check_text("tenant", "").is_ok());
        assert!(matches!(
            check_text("tenant", "ac\0me"),
            Err(StoreError::Invalid(m)) if m == "tenant must not contain a NUL character"
        ));
        let scope = SpendScope::Session(TenantId::new("acme"), "s\0".into());
        assert!(matches!(
            check_scope(&scope),
            Err(StoreError::Invalid(m)) if m == "session must not contain a NUL character"
        ));
    }

    #[test]
    fn nul_in_spend_rows_becomes_replacement_character() {
        assert!(matches!(without_nul("plain"), Cow::Borrowed("plain")));
        assert_eq!(without_nul("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        let record = SpendRecord {
            id: "call\0".into(),
            request_id: "req\0".into(),
            at: Utc.timestamp_opt(1_714_566_896, 0).unwrap(),
            key_id: Some(KeyId::new("key\0")),
            tenant: TenantId::new("acme\0"),
            user: Some(agentd_core::UserId::new("alice\0")),
            session: Some("s\0".into()),
            model: "m\0".into(),
            provider: "p\0".into(),
            deployment: "d\0".into(),
            input_tokens: 1,
            output_tokens: 1,
            cached_input_tokens: 0,
            usage_estimated: false,
            cost: Micros(1),
            latency_ms: 1,
            cache_hit: false,
            status: "ok\0".into(),
        };
        let row = SpendRow::new(&record);
        let texts = [
            &row.id,
            &row.request_id,
            row.key_id.as_ref().unwrap(),
            &row.tenant,
            row.user.as_ref().unwrap(),
            row.session.as_ref().unwrap(),
            &row.model,
            &row.provider,
            &row.deployment,
            &row.status,
        ];
        for text in texts {
            assert!(
                text.ends_with('\u{FFFD}') && !text.contains('\0'),
                "{text:?}"
            );
        }
    }
}
