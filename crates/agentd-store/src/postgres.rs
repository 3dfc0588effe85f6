//! The shared backend: PostgreSQL, for deployments where several processes (gateway and worker
//! roles, several regions) use one database.
//!
//! Timestamps are `TIMESTAMPTZ`, written truncated to milliseconds. Parallel to `sqlite.rs`:
//! same methods, same order.

use crate::{classify, truncate_to_millis};
use agentd_core::{ApiKey, KeyId, KeyStore, NewKey, StoreError, TenantId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
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
        "id, name, tenant, user_id, prefix, hash, created_at, revoked_at"
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
    /// Connects and migrates. With `schema`, every pooled connection gets it as `search_path`
    /// (created if missing), so all tables, the migration table included, live there.
    pub(crate) async fn open(
        url: &str,
        max_connections: u32,
        schema: Option<&str>,
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
        migrator().run(&pool).await.map_err(|err| match err {
            MigrateError::Execute(err) => connect_error(&target, err, &redactor),
            other => StoreError::Backend(
                redactor.scrub(format!("cannot migrate PostgreSQL at {target}: {other}")),
            ),
        })?;
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
            .map_err(store_error)?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError> {
        let row = sqlx::query(concat!(
            "INSERT INTO api_keys (id, name, tenant, user_id, prefix, hash, created_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            key_columns!()
        ))
        .bind(key.id.as_str())
        .bind(&key.name)
        .bind(key.tenant.as_str())
        .bind(key.user.as_ref().map(UserId::as_str))
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(truncate_to_millis(key.created_at))
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        key_from_row(&row)
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError> {
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
        .map_err(store_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        // One statement, so two concurrent revokes cannot both set the time.
        let result =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
                .bind(truncate_to_millis(Utc::now()))
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }
}

fn key_from_row(row: &PgRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: KeyId::new(row.try_get::<String, _>("id").map_err(store_error)?),
        name: row.try_get("name").map_err(store_error)?,
        tenant: TenantId::new(row.try_get::<String, _>("tenant").map_err(store_error)?),
        user: row
            .try_get::<Option<String>, _>("user_id")
            .map_err(store_error)?
            .map(UserId::new),
        prefix: row.try_get("prefix").map_err(store_error)?,
        hash: row.try_get("hash").map_err(store_error)?,
        created_at: row
            .try_get::<DateTime<Utc>, _>("created_at")
            .map_err(store_error)?,
        revoked_at: row
            .try_get::<Option<DateTime<Utc>>, _>("revoked_at")
            .map_err(store_error)?,
    })
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

fn store_error(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.code().is_some_and(|code| is_unavailable_code(&code)) {
            return StoreError::Unavailable(err.to_string());
        }
    }
    classify(err)
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
