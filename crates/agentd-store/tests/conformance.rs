//! The `KeyStore` conformance suite: every case in `cases` runs against every backend.
//!
//! SQLite runs on a temporary file. PostgreSQL runs when `AGENTD_TEST_POSTGRES_URL` is set
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`), each test in its own fresh schema that is
//! dropped afterwards, even when the test fails. Without the variable the Postgres tests print
//! `skipped: …` and pass, unless `CI` is set: then they fail, so CI cannot silently skip them.

use agentd_core::{ApiKey, KeyId, KeyStore, NewKey, StoreError, TenantId, UserId};
use agentd_store::Store;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, PgConnection, SqliteConnection};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const POSTGRES_URL_VAR: &str = "AGENTD_TEST_POSTGRES_URL";

/// One backend under test, able to open the same data more than once (reopen, concurrent opens).
enum Fixture {
    Sqlite { _dir: TempDir, path: PathBuf },
    Postgres(PgSchema),
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("agentd.db");
        Fixture::Sqlite { _dir: dir, path }
    }

    /// `None` (after saying so on stderr) when Postgres is not configured and we are not in CI.
    fn postgres() -> Option<Fixture> {
        match postgres_url() {
            Some(url) => Some(Fixture::Postgres(PgSchema {
                url,
                schema: format!("agentd_test_{}", uuid::Uuid::new_v4().simple()),
            })),
            None => {
                eprintln!("skipped: {POSTGRES_URL_VAR} not set");
                None
            }
        }
    }

    async fn open(&self) -> Store {
        match self {
            Fixture::Sqlite { path, .. } => Store::open_sqlite(path).await.expect("open sqlite"),
            Fixture::Postgres(pg) => Store::open_postgres_in_schema(&pg.url, &pg.schema)
                .await
                .expect("open postgres"),
        }
    }

    /// Runs SQL on the store's database behind its back, as another binary version would.
    async fn execute_raw(&self, sql: &str) {
        match self {
            Fixture::Sqlite { path, .. } => {
                let mut conn =
                    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
                        .await
                        .expect("raw sqlite connection");
                conn.execute(sql).await.expect("raw sqlite statement");
            }
            Fixture::Postgres(pg) => {
                let options = PgConnectOptions::from_str(&pg.url)
                    .expect("postgres url")
                    .options([("search_path", pg.schema.as_str())]);
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .expect("raw postgres connection");
                conn.execute(sql).await.expect("raw postgres statement");
            }
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Fixture::Sqlite { .. } => "sqlite",
            Fixture::Postgres(_) => "postgres",
        }
    }
}

fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{POSTGRES_URL_VAR} must be set when CI is set: the Postgres suite may not be skipped in CI")
        }
        _ => None,
    }
}

/// A throwaway schema, dropped when the test ends (also on panic, hence `Drop`).
struct PgSchema {
    url: String,
    schema: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        // `Drop` cannot await and we may be inside the test's runtime: use a private runtime on
        // a separate thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&url).await?;
                conn.execute(sql.as_str()).await?;
                conn.close().await
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop test schema {}: {err}", self.schema),
            Err(_) => eprintln!(
                "could not drop test schema {}: cleanup panicked",
                self.schema
            ),
        }
    }
}

/// A fixed instant with sub-millisecond digits, so truncation is visible.
fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + ChronoDuration::nanoseconds(123_456_789)
}

fn millis_only(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap()
}

fn new_key(id: &str, tenant: &str, created_at: DateTime<Utc>) -> NewKey {
    NewKey {
        id: KeyId::new(id),
        name: format!("name of {id}"),
        tenant: TenantId::new(tenant),
        user: None,
        prefix: format!("sk-agentd-{}", &id[id.len().saturating_sub(4)..]),
        hash: format!(
            "{:0>64}",
            id.replace(|c: char| !c.is_ascii_alphanumeric(), "")
        ),
        created_at,
    }
}

fn ids(keys: &[ApiKey]) -> Vec<&str> {
    keys.iter().map(|key| key.id.as_str()).collect()
}

/// The cases, each `async fn(&Fixture)`; the macro below runs every one on every backend.
mod cases {
    use super::*;

    pub async fn insert_then_get_by_hash_and_id(fx: &Fixture) {
        let store = fx.open().await;
        let new = new_key("key_insert", "acme", base_time());
        let inserted = store.insert_key(new.clone()).await.unwrap();
        assert_eq!(inserted.id, new.id);
        assert_eq!(inserted.name, new.name);
        assert_eq!(inserted.tenant, new.tenant);
        assert_eq!(inserted.user, None);
        assert_eq!(inserted.prefix, new.prefix);
        assert_eq!(inserted.hash, new.hash);
        assert_eq!(inserted.created_at, millis_only(new.created_at));
        assert_eq!(inserted.revoked_at, None);
        assert!(inserted.is_active());

        let by_hash = store.key_by_hash(&new.hash).await.unwrap();
        assert_eq!(by_hash.as_ref(), Some(&inserted));
        let by_id = store.key_by_id(&new.id).await.unwrap();
        assert_eq!(by_id.as_ref(), Some(&inserted));

        assert_eq!(store.key_by_hash(&"f".repeat(64)).await.unwrap(), None);
        assert_eq!(
            store.key_by_id(&KeyId::new("key_missing")).await.unwrap(),
            None
        );
        // Lookups are exact: the hash in another case is another key.
        assert_eq!(
            store
                .key_by_hash(&new.hash.to_uppercase().replace('0', "O"))
                .await
                .unwrap(),
            None
        );
    }

    pub async fn list_is_oldest_first_and_isolates_tenants(fx: &Fixture) {
        let store = fx.open().await;
        assert!(store.list_keys(None).await.unwrap().is_empty());

        let t = base_time();
        // Inserted out of order; two acme keys share a timestamp, tie broken by id in byte
        // order ('B' < 'b'), identically on both backends.
        for (id, tenant, offset_ms) in [
            ("key_acme_3", "acme", 3_000),
            ("key_other_1", "other", 1_500),
            ("key_acme_1", "acme", 1_000),
            ("key_acme_b", "acme", 2_000),
            ("key_acme_B", "acme", 2_000),
            ("key_other_0", "other", 0),
        ] {
            store
                .insert_key(new_key(
                    id,
                    tenant,
                    t + ChronoDuration::milliseconds(offset_ms),
                ))
                .await
                .unwrap();
        }

        let all = store.list_keys(None).await.unwrap();
        assert_eq!(
            ids(&all),
            [
                "key_other_0",
                "key_acme_1",
                "key_other_1",
                "key_acme_B",
                "key_acme_b",
                "key_acme_3"
            ]
        );
        let acme = store.list_keys(Some(&TenantId::new("acme"))).await.unwrap();
        assert_eq!(
            ids(&acme),
            ["key_acme_1", "key_acme_B", "key_acme_b", "key_acme_3"]
        );
        assert!(acme.iter().all(|key| key.tenant.as_str() == "acme"));
        let other = store
            .list_keys(Some(&TenantId::new("other")))
            .await
            .unwrap();
        assert_eq!(ids(&other), ["key_other_0", "key_other_1"]);
        assert!(store
            .list_keys(Some(&TenantId::new("nobody")))
            .await
            .unwrap()
            .is_empty());
        // Listed keys are the same values the point lookups return.
        for key in &all {
            assert_eq!(store.key_by_id(&key.id).await.unwrap().as_ref(), Some(key));
        }
    }

    pub async fn revoke_sets_time_once_and_reports_unknown(fx: &Fixture) {
        let store = fx.open().await;
        let key = store
            .insert_key(new_key("key_revoke", "acme", base_time()))
            .await
            .unwrap();
        let bystander = store
            .insert_key(new_key("key_keep", "acme", base_time()))
            .await
            .unwrap();

        let before = millis_only(Utc::now());
        assert!(store.revoke_key(&key.id).await.unwrap());
        let after = Utc::now();

        let revoked = store.key_by_id(&key.id).await.unwrap().unwrap();
        let first = revoked.revoked_at.expect("revoked_at set");
        assert!(
            before <= first && first <= after,
            "{before} <= {first} <= {after}"
        );
        assert_eq!(
            first,
            millis_only(first),
            "revoked_at has millisecond precision"
        );
        assert!(!revoked.is_active());
        assert_eq!(
            revoked,
            ApiKey {
                revoked_at: Some(first),
                ..key.clone()
            }
        );
        assert_eq!(
            store.key_by_hash(&key.hash).await.unwrap(),
            Some(revoked.clone())
        );

        // Revoking again still reports the key exists, and keeps the first time.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(store.revoke_key(&key.id).await.unwrap());
        let again = store.key_by_id(&key.id).await.unwrap().unwrap();
        assert_eq!(again.revoked_at, Some(first));

        assert!(!store.revoke_key(&KeyId::new("key_unknown")).await.unwrap());
        assert_eq!(
            store.key_by_id(&KeyId::new("key_unknown")).await.unwrap(),
            None
        );
        assert_eq!(
            store.key_by_id(&bystander.id).await.unwrap(),
            Some(bystander)
        );
    }

    pub async fn concurrent_revokes_agree_on_one_time(fx: &Fixture) {
        let store = fx.open().await;
        let key = store
            .insert_key(new_key("key_race", "acme", base_time()))
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let store = store.clone();
            let id = key.id.clone();
            tasks.spawn(async move { store.revoke_key(&id).await });
        }
        while let Some(result) = tasks.join_next().await {
            assert!(result.unwrap().unwrap());
        }
        let first = store.key_by_id(&key.id).await.unwrap().unwrap().revoked_at;
        assert!(first.is_some());
        assert!(store.revoke_key(&key.id).await.unwrap());
        assert_eq!(
            store.key_by_id(&key.id).await.unwrap().unwrap().revoked_at,
            first
        );
    }

    pub async fn duplicate_hash_is_conflict(fx: &Fixture) {
        let store = fx.open().await;
        let original = store
            .insert_key(new_key("key_one", "acme", base_time()))
            .await
            .unwrap();
        let mut clash = new_key("key_two", "other", base_time());
        clash.hash = original.hash.clone();
        let err = store.insert_key(clash).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict), "got {err:?}");
        // Nothing of the rejected key landed; the original is untouched.
        assert_eq!(store.key_by_id(&KeyId::new("key_two")).await.unwrap(), None);
        assert_eq!(
            store.key_by_hash(&original.hash).await.unwrap(),
            Some(original)
        );
        assert_eq!(store.list_keys(None).await.unwrap().len(), 1);
    }

    pub async fn duplicate_id_is_conflict(fx: &Fixture) {
        let store = fx.open().await;
        let original = store
            .insert_key(new_key("key_same", "acme", base_time()))
            .await
            .unwrap();
        let mut clash = new_key("key_same", "other", base_time());
        clash.hash = "a".repeat(64);
        let err = store.insert_key(clash).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict), "got {err:?}");
        assert_eq!(store.key_by_hash(&"a".repeat(64)).await.unwrap(), None);
        assert_eq!(store.key_by_id(&original.id).await.unwrap(), Some(original));
    }

    pub async fn user_none_and_some_round_trip(fx: &Fixture) {
        let store = fx.open().await;
        let mut with_user = new_key("key_user", "acme", base_time());
        with_user.user = Some(UserId::new("alice.eu-1"));
        let without_user = new_key("key_nouser", "acme", base_time());

        let inserted = store.insert_key(with_user.clone()).await.unwrap();
        assert_eq!(inserted.user, Some(UserId::new("alice.eu-1")));
        let inserted = store.insert_key(without_user.clone()).await.unwrap();
        assert_eq!(inserted.user, None);

        let read = store.key_by_id(&with_user.id).await.unwrap().unwrap();
        assert_eq!(read.user, Some(UserId::new("alice.eu-1")));
        let read = store
            .key_by_hash(&without_user.hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.user, None);
        let listed = store.list_keys(Some(&TenantId::new("acme"))).await.unwrap();
        let users: Vec<_> = listed.iter().map(|key| key.user.clone()).collect();
        assert!(users.contains(&None) && users.contains(&Some(UserId::new("alice.eu-1"))));
    }

    pub async fn timestamps_round_trip_at_millisecond_precision(fx: &Fixture) {
        let store = fx.open().await;
        let cases = [
            ("key_ts_sub_ms", base_time()),
            (
                "key_ts_exact",
                Utc.timestamp_millis_opt(1_700_000_000_001).unwrap(),
            ),
            ("key_ts_epoch", DateTime::UNIX_EPOCH),
            // 999.9999 ms must floor, never round up into the next second.
            (
                "key_ts_floor",
                Utc.with_ymd_and_hms(2030, 12, 31, 23, 59, 59).unwrap()
                    + ChronoDuration::nanoseconds(999_999_999),
            ),
            ("key_ts_now", Utc::now()),
        ];
        for (id, at) in cases {
            let inserted = store.insert_key(new_key(id, "acme", at)).await.unwrap();
            let expected = millis_only(at);
            assert_eq!(inserted.created_at, expected, "{id} as returned by insert");
            let read = store.key_by_id(&KeyId::new(id)).await.unwrap().unwrap();
            assert_eq!(read.created_at, expected, "{id} as read back");
            assert_eq!(read.created_at.timestamp_subsec_nanos() % 1_000_000, 0);
        }
        let floor = store
            .key_by_id(&KeyId::new("key_ts_floor"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            floor.created_at.to_rfc3339(),
            "2030-12-31T23:59:59.999+00:00"
        );
    }

    pub async fn ping_and_close(fx: &Fixture) {
        let store = fx.open().await;
        assert_eq!(store.backend(), fx.backend());
        store.ping().await.unwrap();
        store.close().await;
        // What `/readyz` sees after shutdown began: unavailable, not a backend bug.
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
        let err = store.list_keys(None).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
    }

    pub async fn reopening_keeps_data(fx: &Fixture) {
        let store = fx.open().await;
        let mut with_user = new_key("key_persist", "acme", base_time());
        with_user.user = Some(UserId::new("bob"));
        store.insert_key(with_user).await.unwrap();
        store
            .insert_key(new_key("key_persist_2", "other", base_time()))
            .await
            .unwrap();
        assert!(store
            .revoke_key(&KeyId::new("key_persist_2"))
            .await
            .unwrap());
        let before = store.list_keys(None).await.unwrap();
        store.close().await;
        drop(store);

        // Reopening runs the migrations again: they must find nothing to do.
        let reopened = fx.open().await;
        assert_eq!(reopened.list_keys(None).await.unwrap(), before);
        assert_eq!(before.len(), 2);
        assert!(before[1].revoked_at.is_some());
        // And the reopened store is fully usable.
        reopened
            .insert_key(new_key("key_after", "acme", base_time()))
            .await
            .unwrap();
        assert_eq!(reopened.list_keys(None).await.unwrap().len(), 3);
    }

    pub async fn concurrent_opens_migrate_once(fx: &Fixture) {
        // Like several replicas starting at once on a fresh database.
        let (a, b, c) = tokio::join!(fx.open(), fx.open(), fx.open());
        a.insert_key(new_key("key_from_a", "acme", base_time()))
            .await
            .unwrap();
        for store in [&b, &c] {
            let seen = store.key_by_id(&KeyId::new("key_from_a")).await.unwrap();
            assert_eq!(seen.map(|key| key.id), Some(KeyId::new("key_from_a")));
        }
    }

    pub async fn newer_schema_still_opens(fx: &Fixture) {
        // A newer replica applied a migration this binary does not know (rolling deploy): this
        // binary must still start and serve, since migrations are additive.
        let store = fx.open().await;
        store
            .insert_key(new_key("key_old", "acme", base_time()))
            .await
            .unwrap();
        store.close().await;
        let checksum = match fx {
            Fixture::Sqlite { .. } => "X'00'",
            Fixture::Postgres(_) => "'\\x00'::bytea",
        };
        fx.execute_raw(&format!(
            "CREATE TABLE from_the_future (id TEXT PRIMARY KEY); \
             INSERT INTO _sqlx_migrations \
             (version, description, success, checksum, execution_time) \
             VALUES (99990101, 'from the future', TRUE, {checksum}, 1)"
        ))
        .await;
        let reopened = fx.open().await;
        assert_eq!(ids(&reopened.list_keys(None).await.unwrap()), ["key_old"]);
        reopened
            .insert_key(new_key("key_new", "acme", base_time()))
            .await
            .unwrap();
    }

    pub async fn concurrent_inserts_all_land(fx: &Fixture) {
        const TASKS: usize = 40;
        let store = fx.open().await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..TASKS {
            let store = store.clone();
            tasks.spawn(async move {
                let tenant = if i % 2 == 0 { "even" } else { "odd" };
                let at = base_time() + ChronoDuration::milliseconds(i as i64);
                store
                    .insert_key(new_key(&format!("key_c{i:03}"), tenant, at))
                    .await
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("insert");
        }
        let all = store.list_keys(None).await.unwrap();
        let expected: Vec<String> = (0..TASKS).map(|i| format!("key_c{i:03}")).collect();
        assert_eq!(
            ids(&all),
            expected.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(
            store
                .list_keys(Some(&TenantId::new("even")))
                .await
                .unwrap()
                .len(),
            TASKS / 2
        );
        for key in &all {
            assert_eq!(
                store.key_by_hash(&key.hash).await.unwrap().as_ref(),
                Some(key)
            );
        }
    }
}

/// Runs every case on SQLite and on PostgreSQL (when configured).
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let fx = super::Fixture::sqlite();
                    super::cases::$case(&fx).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(fx) = super::Fixture::postgres() else { return };
                    super::cases::$case(&fx).await;
                }
            )*
        }
    };
}

conformance!(
    insert_then_get_by_hash_and_id,
    list_is_oldest_first_and_isolates_tenants,
    revoke_sets_time_once_and_reports_unknown,
    concurrent_revokes_agree_on_one_time,
    duplicate_hash_is_conflict,
    duplicate_id_is_conflict,
    user_none_and_some_round_trip,
    timestamps_round_trip_at_millisecond_precision,
    ping_and_close,
    reopening_keeps_data,
    concurrent_opens_migrate_once,
    newer_schema_still_opens,
    concurrent_inserts_all_land,
);

// Backend-specific behaviour that has no counterpart on the other side.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_opens_of_fresh_files_all_succeed() {
    // The race is on a *fresh* file (WAL switch and first migration), so repeat it on new files.
    let dir = tempfile::tempdir().unwrap();
    for round in 0..8 {
        let path = dir.path().join(format!("race-{round}.db"));
        let opens = (0..4).map(|_| {
            let path = path.clone();
            async move { Store::open_sqlite(&path).await }
        });
        let stores: Vec<Store> = spawn_all(opens).await;
        stores[0]
            .insert_key(new_key("key_race", "acme", base_time()))
            .await
            .unwrap();
        for store in &stores {
            assert_eq!(
                store.list_keys(None).await.unwrap().len(),
                1,
                "round {round}"
            );
        }
        // Migration 1 is recorded exactly once.
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(applied, 1);
    }
}

/// Opens all concurrently on the runtime (spawned, so they really run in parallel).
async fn spawn_all(
    opens: impl Iterator<
        Item = impl std::future::Future<Output = Result<Store, StoreError>> + Send + 'static,
    >,
) -> Vec<Store> {
    let handles: Vec<_> = opens.map(tokio::spawn).collect();
    let mut stores = Vec::new();
    for handle in handles {
        stores.push(handle.await.expect("task").expect("concurrent open"));
    }
    stores
}

#[tokio::test]
async fn sqlite_creates_parent_dirs_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("agentd.db");
    let store = Store::open_sqlite(&path).await.unwrap();
    assert!(path.is_file());
    store.ping().await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_unopenable_path_is_unavailable_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"a file where a directory should be").unwrap();
    let path = blocker.join("agentd.db");
    let err = Store::open_sqlite(&path).await.unwrap_err();
    match err {
        StoreError::Unavailable(message) => {
            assert!(message.contains("not-a-dir"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // A file that is not a database.
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let err = Store::open_sqlite(&garbage).await.unwrap_err();
    match err {
        StoreError::Unavailable(message) => assert!(message.contains("garbage.db"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

const PASSWORD: &str = "hunter2-Sup3rSecret";

#[tokio::test]
async fn postgres_wrong_port_is_unavailable_quickly_without_password() {
    // Port 1: nothing listens there, connections are refused; sqlx retries until the timeout.
    let url = format!("postgres://agentd:{PASSWORD}@127.0.0.1:1/test");
    let started = Instant::now();
    // Spawned: also proves the open future is `Send`, as the binary needs.
    let err = tokio::spawn(async move { Store::open_postgres(&url, 2).await })
        .await
        .unwrap()
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    match err {
        StoreError::Unavailable(message) => {
            assert!(!message.contains(PASSWORD), "password leaked: {message}");
            assert!(message.contains("127.0.0.1:1/test"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_malformed_url_is_unavailable_without_password() {
    for url in [
        format!("postgres://agentd:{PASSWORD}@127.0.0.1:notaport/test"),
        format!("postgres://agentd:{PASSWORD}@127.0.0.1:5432/test?sslmode=bogus"),
    ] {
        let err = Store::open_postgres(&url, 2).await.unwrap_err();
        match err {
            StoreError::Unavailable(message) => {
                assert!(!message.contains(PASSWORD), "password leaked: {message}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

/// `url` pointed at `database`, carrying a password: its own if it has one (a server with
/// password auth needs it), else [`PASSWORD`] (trust auth ignores it). Returns the URL and the
/// password that must never show up in errors or debug output.
fn url_with_password(url: &str, database: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("URL with scheme");
    let (userinfo, host_and_db) = rest.rsplit_once('@').unwrap_or(("postgres", rest));
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) if !password.is_empty() => (user, password),
        Some((user, _)) => (user, PASSWORD),
        None => (userinfo, PASSWORD),
    };
    let host = host_and_db.split(['/', '?']).next().unwrap_or(host_and_db);
    (
        format!("{scheme}://{user}:{password}@{host}/{database}"),
        password.to_owned(),
    )
}

#[tokio::test]
async fn postgres_unknown_database_is_unavailable_without_password() {
    let Some(url) = postgres_url() else {
        eprintln!("skipped: {POSTGRES_URL_VAR} not set");
        return;
    };
    // The server answers this one itself (3D000), so its own message is what we pass on.
    let (bad, password) = url_with_password(&url, "agentd_no_such_database");
    let err = Store::open_postgres(&bad, 2).await.unwrap_err();
    match err {
        StoreError::Unavailable(message) => {
            assert!(!message.contains(&password), "password leaked: {message}");
            assert!(message.contains("agentd_no_such_database"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_debug_output_has_no_password() {
    let Some(Fixture::Postgres(pg)) = Fixture::postgres() else {
        return;
    };
    let database = pg
        .url
        .split(['?'])
        .next()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let (url, password) = url_with_password(&pg.url, database);
    let store = Store::open_postgres_in_schema(&url, &pg.schema)
        .await
        .unwrap();
    store.ping().await.unwrap();
    let debug = format!("{store:?}");
    assert!(debug.contains("Postgres"), "{debug}");
    assert!(!debug.contains(&password), "password leaked: {debug}");
}

#[tokio::test]
async fn postgres_rejects_unsafe_schema_names() {
    // Checked before any connection is made, so this needs no server.
    let err =
        Store::open_postgres_in_schema("postgres://u@127.0.0.1:1/test", "x\"; DROP TABLE y; --")
            .await
            .unwrap_err();
    assert!(
        matches!(err, StoreError::Backend(ref m) if m.contains("schema name")),
        "got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schemas_are_isolated() {
    let (Some(a), Some(b)) = (Fixture::postgres(), Fixture::postgres()) else {
        return;
    };
    let (store_a, store_b) = (a.open().await, b.open().await);
    store_a
        .insert_key(new_key("key_in_a", "acme", base_time()))
        .await
        .unwrap();
    // The same id and hash are free in another schema.
    store_b
        .insert_key(new_key("key_in_a", "acme", base_time()))
        .await
        .unwrap();
    store_b
        .insert_key(new_key("key_in_b", "acme", base_time()))
        .await
        .unwrap();
    assert_eq!(ids(&store_a.list_keys(None).await.unwrap()), ["key_in_a"]);
    assert_eq!(
        ids(&store_b.list_keys(None).await.unwrap()),
        ["key_in_a", "key_in_b"]
    );
}
