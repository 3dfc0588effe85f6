//! The embedded backend: one SQLite file in WAL mode.
//!
//! Timestamps are stored as integer UTC unix milliseconds. Parallel to `postgres.rs`: same
//! methods, same order.

use crate::{
    ceil_to_millis, check_new_key, check_query, check_scope, check_text, classify,
    truncate_to_millis, SpendRow, TotalColumns,
};
use agentd_core::{
    ApiKey, KeyId, KeyStore, Micros, NewKey, SpendGroup, SpendQuery, SpendRecord, SpendScope,
    SpendStore, SpendTotal, StoreError, TenantId, UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// One connection: SQLite has one writer at a time, and with several connections the waiting
/// writers poll for the lock in its busy handler (sleeps of up to 100 ms, no fairness), so
/// under the runtime's many small writes some waited seconds (measured: runs stalled 5 s and
/// failed with "database is locked"). One connection queues every statement in order, in
/// process; reads are fast enough to share it. It also proves that no code path needs two
/// connections at once (the runtime's whole SDK suite and benchmark run on it).
const MAX_CONNECTIONS: u32 = 1;
/// Pause between attempts to switch a fresh database to WAL (that switch cannot use the busy
/// handler, see [`enable_wal`]).
const WAL_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Every column of `api_keys`, in the order [`key_from_row`] reads them.
macro_rules! key_columns {
    () => {
        "id, name, tenant, user_id, prefix, hash, tier, created_at, revoked_at"
    };
}

/// Every column of `spend`, in the order `record_spend` binds them.
macro_rules! spend_columns {
    () => {
        concat!(
            "id, request_id, at, key_id, tenant, user_id, session, model, provider, deployment, ",
            "input_tokens, output_tokens, cached_input_tokens, usage_estimated, cost, ",
            "latency_ms, cache_hit, status"
        )
    };
}

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    // An older replica must keep starting after a newer one migrated (migrations are additive).
    migrator.set_ignore_missing(true);
    migrator
}

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// The connection pool, for components that keep their own tables in the same database
    /// (the embedded work queue).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|err| {
                StoreError::Unavailable(format!(
                    "cannot create directory {} for the SQLite database: {err}",
                    parent.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(BUSY_TIMEOUT)
            // WAL + NORMAL: a commit is in the WAL (the OS has it) when it returns, so a killed
            // process loses nothing; only a power cut may lose the last commits. FULL (sqlx's
            // default) fsyncs every commit: ~1 ms each on a VM disk, and a run makes ~10.
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .foreign_keys(true);
        prepare(&options, path).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|err| open_error(path, err))?;
        tracing::info!(backend = "sqlite", path = %path.display(), "Opened store");
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
        })
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|err| store_error("ping", err))?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Switches the file to WAL and applies migrations, on one connection, before the pool opens.
///
/// Two processes may open a fresh file at the same moment. The migrations run inside one
/// `BEGIN IMMEDIATE` transaction, which takes the write lock up front (waiting through the busy
/// timeout), so the second process only reads the migration table once the first committed and
/// finds nothing left to do. sqlx nests each migration's own transaction as a savepoint.
async fn prepare(options: &SqliteConnectOptions, path: &Path) -> Result<(), StoreError> {
    let mut conn = options
        .connect()
        .await
        .map_err(|err| open_error(path, err))?;
    enable_wal(&mut conn, path).await?;
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|err| open_error(path, err))?;
    // `run_direct` rather than `run`: with `run(&mut *tx)` the future is not provably `Send`
    // ("implementation of `Acquire` is not general enough"), so `open` could not be spawned.
    // sqlx exposes `run_direct` for exactly this.
    migrator()
        .run_direct(&mut *tx)
        .await
        .map_err(|err| migrate_error(path, err))?;
    tx.commit().await.map_err(|err| open_error(path, err))?;
    conn.close().await.map_err(|err| open_error(path, err))?;
    Ok(())
}

/// `PRAGMA journal_mode = WAL` on a fresh file needs an exclusive lock, which SQLite may refuse
/// with `SQLITE_BUSY` without going through the busy handler (launchbadge/sqlx#1930) when another
/// process opens the file at the same moment; retry until the busy timeout.
/// Once the file is in WAL mode (it is persistent) the pragma takes no lock at all.
async fn enable_wal(conn: &mut SqliteConnection, path: &Path) -> Result<(), StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(StoreError::Backend(format!(
                    "SQLite database {} refused WAL mode (journal mode is {mode:?})",
                    path.display()
                )))
            }
            Err(err) if is_busy(&err) && Instant::now() < deadline => {
                tokio::time::sleep(WAL_RETRY_PAUSE).await;
            }
            Err(err) => return Err(open_error(path, err)),
        }
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError> {
        check_new_key(&key)?;
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (id, name, tenant, user_id, prefix, hash, tier, created_at) ",
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING ",
            key_columns!()
        ))
        .bind(key.id.as_str())
        .bind(&key.name)
        .bind(key.tenant.as_str())
        .bind(key.user.as_ref().map(UserId::as_str))
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(key.tier.as_deref())
        .bind(to_millis(key.created_at))
        .fetch_one(&self.pool)
        .await
        .map_err(|err| store_error("insert key", err))?;
        key_from_row(&row)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        check_text("key hash", hash)?;
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE hash = ?1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| store_error("look up key by hash", err))?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        check_text("key id", id.as_str())?;
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE id = ?1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| store_error("look up key by id", err))?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError> {
        if let Some(tenant) = tenant {
            check_text("tenant", tenant.as_str())?;
        }
        let rows = match tenant {
            Some(tenant) => {
                sqlx::query(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys WHERE tenant = ?1 ORDER BY created_at, id"
                ))
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(|err| store_error("list keys", err))?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        check_text("key id", id.as_str())?;
        // One statement, so two concurrent revokes cannot both set the time.
        let result =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2")
                .bind(to_millis(Utc::now()))
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(|err| store_error("revoke key", err))?;
        Ok(result.rows_affected() > 0)
    }
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKey, StoreError> {
    let created_at: i64 = row.try_get("created_at").map_err(read_error)?;
    let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(read_error)?;
    Ok(ApiKey {
        id: KeyId::new(row.try_get::<String, _>("id").map_err(read_error)?),
        name: row.try_get("name").map_err(read_error)?,
        tenant: TenantId::new(row.try_get::<String, _>("tenant").map_err(read_error)?),
        user: row
            .try_get::<Option<String>, _>("user_id")
            .map_err(read_error)?
            .map(UserId::new),
        prefix: row.try_get("prefix").map_err(read_error)?,
        hash: row.try_get("hash").map_err(read_error)?,
        tier: row.try_get("tier").map_err(read_error)?,
        created_at: from_millis(created_at)?,
        revoked_at: revoked_at.map(from_millis).transpose()?,
    })
}

#[async_trait]
impl SpendStore for SqliteStore {
    async fn record_spend(&self, rows: &[SpendRecord]) -> Result<(), StoreError> {
        // (The statement's rows come in a few fixed sizes; see `statement_chunks`.)
        if rows.is_empty() {
            return Ok(());
        }
        // One transaction of multi-row INSERTs: every statement is a round trip to sqlx's
        // SQLite worker thread, which cost more than the insert itself when done per row
        // (measured: a third of the ledger's CPU). 17 parameters a row, 100 rows a statement,
        // far below SQLite's parameter limit.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|err| store_error("record spend", err))?;
        for chunk in statement_chunks(rows) {
            let mut sql =
                QueryBuilder::<Sqlite>::new(concat!("INSERT INTO spend (", spend_columns!(), ") "));
            sql.push_values(chunk, |mut b, record| {
                let row = SpendRow::new(record);
                b.push_bind(row.id.into_owned())
                    .push_bind(row.request_id.into_owned())
                    .push_bind(row.at.timestamp_millis())
                    .push_bind(row.key_id.map(Cow::into_owned))
                    .push_bind(row.tenant.into_owned())
                    .push_bind(row.user.map(Cow::into_owned))
                    .push_bind(row.session.map(Cow::into_owned))
                    .push_bind(row.model.into_owned())
                    .push_bind(row.provider.into_owned())
                    .push_bind(row.deployment.into_owned())
                    .push_bind(row.input_tokens)
                    .push_bind(row.output_tokens)
                    .push_bind(row.cached_input_tokens)
                    .push_bind(row.record.usage_estimated)
                    .push_bind(row.record.cost.0)
                    .push_bind(row.latency_ms)
                    .push_bind(row.record.cache_hit)
                    .push_bind(row.status.into_owned());
            });
            sql.push(" ON CONFLICT (id) DO NOTHING");
            sql.build()
                .execute(&mut *tx)
                .await
                .map_err(|err| store_error("record spend", err))?;
        }
        tx.commit()
            .await
            .map_err(|err| store_error("record spend", err))
    }

    async fn spend_totals(&self, query: &SpendQuery) -> Result<Vec<SpendTotal>, StoreError> {
        check_query(query)?;
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT ");
        sql.push(group_expression(query.group_by));
        sql.push(concat!(
            " AS grp, COUNT(*) AS requests, SUM(input_tokens) AS input_tokens, ",
            "SUM(output_tokens) AS output_tokens, SUM(cost) AS cost, SUM(cache_hit) AS cache_hits ",
            "FROM spend"
        ));
        let mut filter = Filter::default();
        if let Some(tenant) = &query.tenant {
            filter.add(&mut sql, "tenant = ", tenant.as_str());
        }
        if let Some(since) = query.since {
            filter.add(&mut sql, "at >= ", ceil_to_millis(since).timestamp_millis());
        }
        if let Some(until) = query.until {
            filter.add(&mut sql, "at < ", ceil_to_millis(until).timestamp_millis());
        }
        // SQLite compares text with BINARY (bytes), as Postgres does with the "C" collation.
        sql.push(" GROUP BY grp ORDER BY grp");
        let rows = sql
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|err| store_error("spend totals", err))?;
        rows.iter()
            .map(|row| {
                TotalColumns {
                    group: row.try_get("grp").map_err(read_error)?,
                    requests: row.try_get("requests").map_err(read_error)?,
                    input_tokens: row.try_get("input_tokens").map_err(read_error)?,
                    output_tokens: row.try_get("output_tokens").map_err(read_error)?,
                    cost: row.try_get("cost").map_err(read_error)?,
                    cache_hits: row.try_get("cache_hits").map_err(read_error)?,
                }
                .into_total()
            })
            .collect()
    }

    async fn spend_sum(
        &self,
        scope: &SpendScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Micros, StoreError> {
        check_scope(scope)?;
        let mut sql = QueryBuilder::<Sqlite>::new("SELECT COALESCE(SUM(cost), 0) FROM spend");
        let mut filter = Filter::default();
        match scope {
            SpendScope::Global => {}
            SpendScope::Tenant(tenant) => {
                filter.add(&mut sql, "tenant = ", tenant.as_str());
            }
            SpendScope::User(tenant, user) => {
                filter.add(&mut sql, "tenant = ", tenant.as_str());
                filter.add(&mut sql, "user_id = ", user.as_str());
            }
            SpendScope::Key(key) => {
                filter.add(&mut sql, "key_id = ", key.as_str());
            }
            SpendScope::Session(tenant, session) => {
                filter.add(&mut sql, "tenant = ", tenant.as_str());
                filter.add(&mut sql, "session = ", session.as_str());
            }
        }
        if let Some(since) = since {
            filter.add(&mut sql, "at >= ", ceil_to_millis(since).timestamp_millis());
        }
        let sum: i64 = sql
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(|err| store_error("spend sum", err))?;
        Ok(Micros(sum))
    }
}

/// What totals are grouped by. Rows without a key or user fall in the `""` group; a user is
/// `tenant/user`, since users are scoped by tenant (as budgets scope them). A day is the
/// UTC date of `at`, floored to the day first so times before 1970 land on the right date
/// (integer division in SQLite truncates towards zero).
fn group_expression(group: SpendGroup) -> &'static str {
    match group {
        SpendGroup::Key => "COALESCE(key_id, '')",
        SpendGroup::User => "CASE WHEN user_id IS NULL THEN '' ELSE tenant || '/' || user_id END",
        SpendGroup::Tenant => "tenant",
        SpendGroup::Model => "model",
        SpendGroup::Day => {
            "date((at - ((at % 86400000) + 86400000) % 86400000) / 1000, 'unixepoch')"
        }
    }
}

/// Joins optional conditions: the first is preceded by `WHERE`, the others by `AND`.
#[derive(Default)]
struct Filter {
    started: bool,
}

impl Filter {
    /// Appends `condition` (such as `"tenant = "`) followed by `value` as a bound parameter.
    fn add<'q, T>(&mut self, sql: &mut QueryBuilder<'q, Sqlite>, condition: &str, value: T)
    where
        T: 'q + sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>,
    {
        let joiner = if std::mem::replace(&mut self.started, true) {
            " AND "
        } else {
            " WHERE "
        };
        sql.push(joiner).push(condition).push_bind(value);
    }
}

pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    truncate_to_millis(at).timestamp_millis()
}

pub(crate) fn from_millis(millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| StoreError::Backend(format!("stored timestamp {millis} ms is out of range")))
}

/// `SQLITE_BUSY` / `SQLITE_LOCKED` (any extended code): another connection held the lock past
/// the busy timeout. Transient, so callers see it as unavailable rather than as a bug.
fn is_busy(err: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
        _ => false,
    }
}

/// `context` names the operation; the message keeps SQLite's own (with its result code).
pub(crate) fn store_error(context: &str, err: sqlx::Error) -> StoreError {
    if is_busy(&err) {
        return StoreError::Unavailable(format!("{context}: {err}"));
    }
    classify(context, err)
}

/// A stored row that does not decode (a column missing or of another type).
pub(crate) fn read_error(err: sqlx::Error) -> StoreError {
    store_error("read stored row", err)
}

/// Whatever fails while opening (missing permissions, not a database, locked) leaves the store
/// unusable, so it is `Unavailable`; the message names the file so the operator knows what to fix.
fn open_error(path: &Path, err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!(
        "cannot open SQLite database {}: {err}",
        path.display()
    ))
}

fn migrate_error(path: &Path, err: MigrateError) -> StoreError {
    match err {
        MigrateError::Execute(err) => open_error(path, err),
        other => StoreError::Backend(format!(
            "cannot migrate SQLite database {}: {other}",
            path.display()
        )),
    }
}

/// Row counts of the multi-row INSERTs a batch is cut into. A statement is prepared once per
/// distinct SQL text and then reused from sqlx's per-connection cache; batches of any length
/// from 1 to 100 cut into these sizes need at most four distinct texts instead of a hundred
/// (preparing them was a tenth of the gateway's instructions with the ledger on).
const STATEMENT_ROWS: [usize; 4] = [64, 16, 4, 1];

fn statement_chunks(rows: &[SpendRecord]) -> Vec<&[SpendRecord]> {
    let mut out = Vec::new();
    let mut rest = rows;
    for size in STATEMENT_ROWS {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            out.push(chunk);
            rest = tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_are_cut_into_few_statement_sizes() {
        let row = |i: usize| SpendRecord {
            id: i.to_string(),
            request_id: String::new(),
            at: chrono::Utc::now(),
            key_id: None,
            tenant: agentd_core::TenantId::new("t"),
            user: None,
            session: None,
            model: String::new(),
            provider: String::new(),
            deployment: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            usage_estimated: false,
            cost: agentd_core::Micros::ZERO,
            latency_ms: 0,
            cache_hit: false,
            status: String::new(),
        };
        for n in 0..=200 {
            let rows: Vec<SpendRecord> = (0..n).map(row).collect();
            let chunks = statement_chunks(&rows);
            assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), n);
            assert!(chunks.iter().all(|c| STATEMENT_ROWS.contains(&c.len())));
            let ids: Vec<&str> = chunks
                .iter()
                .flat_map(|c| c.iter().map(|r| r.id.as_str()))
                .collect();
            let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            assert_eq!(ids, want, "order kept");
        }
    }

    use super::*;

    #[test]
    fn millisecond_round_trip() {
        let at = DateTime::from_timestamp_millis(1_714_566_896_789).unwrap();
        assert_eq!(from_millis(to_millis(at)).unwrap(), at);
        assert!(matches!(from_millis(i64::MAX), Err(StoreError::Backend(_))));
    }
}
