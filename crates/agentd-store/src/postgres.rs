//! The shared backend: PostgreSQL, for deployments where several processes (gateway and worker
//! roles, several regions) use one database.
//!
//! Timestamps are `TIMESTAMPTZ`, written truncated to milliseconds. Parallel to `sqlite.rs`:
//! same methods, same order.

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
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use std::str::FromStr;
use std::time::Duration;

/// How long to wait for a connection, when opening and on every query. Failing fast turns a
/// dead database into a quick 503 (and a failed `/readyz`) instead of requests piling up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pool size for [`PgStore::open`] with a schema, which only tests use.
pub(crate) const SCHEMA_POOL_SIZE: u32 = 5;

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
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    // An older replica must keep starting after a newer one migrated (migrations are additive).
    migrator.set_ignore_missing(true);
    migrator
}

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// `host:port/database`, never the password: safe for logs and errors.
    target: String,
}

impl PgStore {
    /// The connection pool, for components that keep their own tables in the same database
    /// (the embedded work queue).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl PgStore {
    /// Connects and migrates. With `schema`, every pooled connection gets it as `search_path`
    /// (created if missing), so all tables, the migration table included, live there.
    pub(crate) async fn open(
        url: &str,
        max_connections: u32,
        schema: Option<&str>,
    ) -> Result<PgStore, StoreError> {
        Self::connect(url, max_connections, schema, true).await
    }

    /// Connects, migrating only when `migrate` (a read replica cannot be migrated: it follows
    /// its primary's schema).
    pub(crate) async fn connect(
        url: &str,
        max_connections: u32,
        schema: Option<&str>,
        migrate: bool,
    ) -> Result<PgStore, StoreError> {
        let redactor = Redactor::new(url);
        let mut options = PgConnectOptions::from_str(url).map_err(|err| {
            StoreError::Unavailable(redactor.scrub(format!("invalid PostgreSQL URL: {err}")))
        })?;
        options = options.application_name("agentd");
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        if let Some(schema) = schema {
            check_schema_name(schema)?;
            // A search_path naming a schema that does not exist yet is accepted by Postgres and
            // takes effect as soon as the schema is created below.
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| connect_error(&target, err, &redactor))?;
        if let Some(schema) = schema {
            create_schema(&pool, schema)
                .await
                .map_err(|err| connect_error(&target, err, &redactor))?;
        }
        // sqlx holds a Postgres advisory lock while migrating, so replicas starting together
        // apply each migration once.
        if migrate {
            migrator().run(&pool).await.map_err(|err| match err {
                MigrateError::Execute(err) => connect_error(&target, err, &redactor),
                other => StoreError::Backend(
                    redactor.scrub(format!("cannot migrate PostgreSQL at {target}: {other}")),
                ),
            })?;
        }
        tracing::info!(backend = "postgres", target = %target, schema = schema.unwrap_or_default(), "Opened store");
        Ok(PgStore { pool, target })
    }

    /// `host:port/database` this store is connected to (no credentials).
    pub fn target(&self) -> &str {
        &self.target
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

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError> {
        check_new_key(&key)?;
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (id, name, tenant, user_id, prefix, hash, tier, created_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING ",
            key_columns!()
        ))
        .bind(key.id.as_str())
        .bind(&key.name)
        .bind(key.tenant.as_str())
        .bind(key.user.as_ref().map(UserId::as_str))
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(key.tier.as_deref())
        .bind(truncate_to_millis(key.created_at))
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
            " FROM api_keys WHERE hash = $1"
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
            " FROM api_keys WHERE id = $1"
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
        // `id` is `COLLATE "C"` (see the migration): the tie-break sorts bytes, as SQLite does.
        let rows = match tenant {
            Some(tenant) => {
                sqlx::query(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM api_keys WHERE tenant = $1 ORDER BY created_at, id"
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
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(truncate_to_millis(Utc::now()))
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(|err| store_error("revoke key", err))?;
        Ok(result.rows_affected() > 0)
    }
}

fn key_from_row(row: &PgRow) -> Result<ApiKey, StoreError> {
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
        created_at: row
            .try_get::<DateTime<Utc>, _>("created_at")
            .map_err(read_error)?,
        revoked_at: row
            .try_get::<Option<DateTime<Utc>>, _>("revoked_at")
            .map_err(read_error)?,
    })
}

#[async_trait]
impl SpendStore for PgStore {
    async fn record_spend(&self, rows: &[SpendRecord]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<SpendRow<'_>> = rows.iter().map(SpendRow::new).collect();
        // One statement for the whole batch: each column is bound as one array and UNNEST turns
        // them back into rows, so the statement (and its cached plan) is the same for any batch
        // size, there is one round trip, and no limit on bind parameters to split around.
        // ON CONFLICT DO NOTHING also skips an id repeated within the batch.
        sqlx::query(concat!(
            "INSERT INTO spend (",
            spend_columns!(),
            ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], ",
            "$5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], ",
            "$11::int8[], $12::int8[], $13::int8[], $14::bool[], $15::int8[], $16::int8[], ",
            "$17::bool[], $18::text[]) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(each(&rows, |r| r.id.as_ref()))
        .bind(each(&rows, |r| r.request_id.as_ref()))
        .bind(each(&rows, |r| r.at))
        .bind(each(&rows, |r| r.key_id.as_deref()))
        .bind(each(&rows, |r| r.tenant.as_ref()))
        .bind(each(&rows, |r| r.user.as_deref()))
        .bind(each(&rows, |r| r.session.as_deref()))
        .bind(each(&rows, |r| r.model.as_ref()))
        .bind(each(&rows, |r| r.provider.as_ref()))
        .bind(each(&rows, |r| r.deployment.as_ref()))
        .bind(each(&rows, |r| r.input_tokens))
        .bind(each(&rows, |r| r.output_tokens))
        .bind(each(&rows, |r| r.cached_input_tokens))
        .bind(each(&rows, |r| r.record.usage_estimated))
        .bind(each(&rows, |r| r.record.cost.0))
        .bind(each(&rows, |r| r.latency_ms))
        .bind(each(&rows, |r| r.record.cache_hit))
        .bind(each(&rows, |r| r.status.as_ref()))
        .execute(&self.pool)
        .await
        .map_err(|err| store_error("record spend", err))?;
        Ok(())
    }

    async fn spend_totals(&self, query: &SpendQuery) -> Result<Vec<SpendTotal>, StoreError> {
        check_query(query)?;
        let mut sql = QueryBuilder::<Postgres>::new("SELECT ");
        sql.push(group_expression(query.group_by));
        // SUM of BIGINT is NUMERIC in Postgres: cast back, as SQLite's sums are integers.
        sql.push(concat!(
            " AS grp, COUNT(*) AS requests, SUM(input_tokens)::BIGINT AS input_tokens, ",
            "SUM(output_tokens)::BIGINT AS output_tokens, SUM(cost)::BIGINT AS cost, ",
            "COUNT(*) FILTER (WHERE cache_hit) AS cache_hits FROM spend"
        ));
        let mut filter = Filter::default();
        if let Some(tenant) = &query.tenant {
            filter.add(&mut sql, "tenant = ", tenant.as_str());
        }
        if let Some(since) = query.since {
            filter.add(&mut sql, "at >= ", ceil_to_millis(since));
        }
        if let Some(until) = query.until {
            filter.add(&mut sql, "at < ", ceil_to_millis(until));
        }
        // `grp` is COLLATE "C" (see `group_expression`): byte order, as in SQLite.
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
        let mut sql =
            QueryBuilder::<Postgres>::new("SELECT COALESCE(SUM(cost), 0)::BIGINT FROM spend");
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
            filter.add(&mut sql, "at >= ", ceil_to_millis(since));
        }
        let sum: i64 = sql
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(|err| store_error("spend sum", err))?;
        Ok(Micros(sum))
    }
}

/// One column of a batch, as the array `record_spend` binds for it.
fn each<'r, 'a, T>(rows: &'r [SpendRow<'a>], column: impl FnMut(&'r SpendRow<'a>) -> T) -> Vec<T> {
    rows.iter().map(column).collect()
}

/// What totals are grouped by. Rows without a key or user fall in the `""` group; a user is
/// `tenant/user`, since users are scoped by tenant (as budgets scope them). Every
/// expression is `COLLATE "C"` so groups sort by bytes, as SQLite sorts them, whatever the
/// database's locale.
fn group_expression(group: SpendGroup) -> &'static str {
    match group {
        SpendGroup::Key => r#"COALESCE(key_id, '') COLLATE "C""#,
        SpendGroup::User => {
            r#"(CASE WHEN user_id IS NULL THEN '' ELSE tenant || '/' || user_id END) COLLATE "C""#
        }
        SpendGroup::Tenant => r#"tenant COLLATE "C""#,
        SpendGroup::Model => r#"model COLLATE "C""#,
        SpendGroup::Day => r#"to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') COLLATE "C""#,
    }
}

/// Joins optional conditions: the first is preceded by `WHERE`, the others by `AND`.
#[derive(Default)]
struct Filter {
    started: bool,
}

impl Filter {
    /// Appends `condition` (such as `"tenant = "`) followed by `value` as a bound parameter.
    fn add<'q, T>(&mut self, sql: &mut QueryBuilder<'q, Postgres>, condition: &str, value: T)
    where
        T: 'q + sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres>,
    {
        let joiner = if std::mem::replace(&mut self.started, true) {
            " AND "
        } else {
            " WHERE "
        };
        sql.push(joiner).push(condition).push_bind(value);
    }
}

/// `IF NOT EXISTS` is not atomic: two openers racing to create the schema can make one fail
/// with a duplicate; the schema then exists, which is all we wanted.
async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    match sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
        .execute(pool)
        .await
    {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db))
            if db.is_unique_violation() || db.code().as_deref() == Some("42P06") =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// The schema name is spliced into `CREATE SCHEMA` and `search_path`, so only plain lowercase
/// identifiers are accepted (they need no quoting in either place).
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let mut bytes = schema.bytes();
    let valid = schema.len() <= 63
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid PostgreSQL schema name {schema:?}: use 1 to 63 of [a-z0-9_], not starting with a digit"
        )))
    }
}

/// Errors the server reports while it cannot serve: connection exceptions (class 08), shutdown
/// or startup (57P01..57P03) and too many connections (53300).
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// `context` names the operation. sqlx shows only the server's message, so the SQLSTATE is
/// appended: many messages are ambiguous without it. The detail is left out on purpose (it can
/// quote row values, which do not belong in logs).
pub(crate) fn store_error(context: &str, err: sqlx::Error) -> StoreError {
    let code = match &err {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    };
    match code {
        Some(code) if is_unavailable_code(&code) => {
            StoreError::Unavailable(format!("{context}: {err} (SQLSTATE {code})"))
        }
        Some(code) => match classify(context, err) {
            StoreError::Backend(message) => {
                StoreError::Backend(format!("{message} (SQLSTATE {code})"))
            }
            StoreError::Unavailable(message) => {
                StoreError::Unavailable(format!("{message} (SQLSTATE {code})"))
            }
            // A unique violation: the variant says it all.
            StoreError::Conflict => StoreError::Conflict,
            StoreError::Invalid(message) => StoreError::Invalid(message),
        },
        None => classify(context, err),
    }
}

/// A stored row that does not decode (a column missing or of another type).
pub(crate) fn read_error(err: sqlx::Error) -> StoreError {
    store_error("read stored row", err)
}

/// Anything failing while connecting (refused, timed out, bad credentials, unknown database)
/// leaves the store unusable: `Unavailable`, naming the target but never the password.
fn connect_error(target: &str, err: sqlx::Error, redactor: &Redactor) -> StoreError {
    let message = match err {
        sqlx::Error::PoolTimedOut => format!(
            "cannot connect to PostgreSQL at {target}: no connection within {}s (is the server running and reachable?)",
            CONNECT_TIMEOUT.as_secs()
        ),
        err => format!("cannot connect to PostgreSQL at {target}: {err}"),
    };
    StoreError::Unavailable(redactor.scrub(message))
}

/// Removes the URL's password from error text. Our messages are built from the host, port and
/// database only, and sqlx's do not echo the URL; this is the second line of defence, because a
/// leaked database password in a log is expensive.
struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    fn new(url: &str) -> Redactor {
        let mut secrets = Vec::new();
        if let Some(password) = url_password(url) {
            let decoded = percent_decode(password);
            secrets.push(password.to_owned());
            if decoded != password {
                secrets.push(decoded);
            }
        }
        // Longest first, so a secret that contains another is removed whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Redactor { secrets }
    }

    fn scrub(&self, mut message: String) -> String {
        for secret in &self.secrets {
            if message.contains(secret.as_str()) {
                message = message.replace(secret.as_str(), "***");
            }
        }
        message
    }
}

/// The raw password of `scheme://user:password@host…`, if there is one.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    // The query may contain '@' (e.g. in `options=`), the userinfo may not contain '?'.
    let before_query = rest.split('?').next().unwrap_or(rest);
    let userinfo = &before_query[..before_query.rfind('@')?];
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_found_in_urls() {
        assert_eq!(
            url_password("postgres://agentd:s3cret@db:5432/agentd"),
            Some("s3cret")
        );
        assert_eq!(
            url_password("postgres://a:p%40ss@db/x?options=a@b"),
            Some("p%40ss")
        );
        assert_eq!(url_password("postgres://agentd@db/x"), None);
        assert_eq!(url_password("postgres://db/x"), None);
        assert_eq!(url_password("not a url"), None);
    }

    #[test]
    fn scrub_removes_raw_and_decoded_password() {
        let redactor = Redactor::new("postgres://u:p%40ssw0rd@h/d");
        assert_eq!(
            redactor.scrub("x p%40ssw0rd y p@ssw0rd z".to_owned()),
            "x *** y *** z"
        );
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("agentd_test_1a2b").is_ok());
        assert!(check_schema_name("_x").is_ok());
        for bad in ["", "1abc", "Abc", "a-b", "a\"b", "a;drop", &"a".repeat(64)] {
            assert!(
                matches!(check_schema_name(bad), Err(StoreError::Backend(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn connection_class_errors_are_unavailable() {
        assert!(is_unavailable_code("08006"));
        assert!(is_unavailable_code("57P01"));
        assert!(is_unavailable_code("53300"));
        assert!(!is_unavailable_code("23505"));
    }
}
