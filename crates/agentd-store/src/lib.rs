//! Persistent state for agentd: one [`Store`] that implements the `agentd-core` storage traits
//! on SQLite (embedded, the default: nothing to install) or PostgreSQL (shared by many processes).
//!
//! The one decision to know: the two backends are parallel files (`sqlite.rs`, `postgres.rs`)
//! with the same methods in the same order, each with its own numbered migrations
//! (`migrations/sqlite`, `migrations/postgres`), and both must pass the one conformance suite in
//! `tests/conformance.rs`. They return *identical* values: timestamps are truncated to whole
//! milliseconds before they are written, so a key reads back the same from either backend.
//!
//! A new table (spend ledger, threads, runs, …) is a new `000N_*.sql` file in both migration
//! directories plus a method in both backend files. Migrations must stay additive: a binary
//! ignores migrations it does not know, so an older replica keeps running against a schema a
//! newer one has already migrated (rolling deploys).

pub mod postgres;
pub mod sqlite;

use agentd_core::{ApiKey, KeyId, KeyStore, NewKey, StoreError, TenantId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::path::Path;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// The configured store backend. A closed enum rather than `Box<dyn …>` so every new backend
/// must answer every question (`backend`, `ping`, `close`, each trait method) at compile time.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
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
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        PgStore::open(url, max_connections, None)
            .await
            .map(Store::Postgres)
    }

    /// Like [`Store::open_postgres`], but every pooled connection uses `schema` (created if
    /// missing) as its `search_path`, so all tables, including the migrations table, live
    /// there. Tests use it to run in parallel on one database without seeing each other's rows.
    /// `schema` must match `[a-z_][a-z0-9_]{0,62}`.
    pub async fn open_postgres_in_schema(url: &str, schema: &str) -> Result<Store, StoreError> {
        PgStore::open(url, postgres::SCHEMA_POOL_SIZE, Some(schema))
            .await
            .map(Store::Postgres)
    }

    /// `"sqlite"` or `"postgres"`, for logs, metrics labels and `/readyz`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A cheap round trip (`SELECT 1`), for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(store) => store.ping().await,
            Store::Postgres(store) => store.ping().await,
        }
    }

    /// Closes the pool, waiting for checked-out connections to be returned. Later calls fail
    /// with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store) => store.close().await,
        }
    }
}

#[async_trait]
impl KeyStore for Store {
    async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError> {
        match self {
            Store::Sqlite(store) => store.insert_key(key).await,
            Store::Postgres(store) => store.insert_key(key).await,
        }
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
        match self {
            Store::Sqlite(store) => store.key_by_hash(hash).await,
            Store::Postgres(store) => store.key_by_hash(hash).await,
        }
    }

    async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
        match self {
            Store::Sqlite(store) => store.key_by_id(id).await,
            Store::Postgres(store) => store.key_by_id(id).await,
        }
    }

    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError> {
        match self {
            Store::Sqlite(store) => store.list_keys(tenant).await,
            Store::Postgres(store) => store.list_keys(tenant).await,
        }
    }

    async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(store) => store.revoke_key(id).await,
            Store::Postgres(store) => store.revoke_key(id).await,
        }
    }
}

/// Drops sub-millisecond precision. Both backends store this, so what one returns the other
/// would too (Postgres keeps microseconds, SQLite stores integer milliseconds).
pub(crate) fn truncate_to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    // `timestamp_millis` floors, and a value that was a `DateTime` a moment ago is in range.
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// Maps the errors both backends share; each backend checks its own error codes first.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        // `sqlx::Error` is non-exhaustive and not ours: anything else is a backend failure.
        _ => StoreError::Backend(err.to_string()),
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
    fn pool_failures_are_unavailable_not_backend() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}
