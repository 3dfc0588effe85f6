//! The `KeyStore` and `SpendStore` conformance suite: every case in `cases` runs against every
//! backend, and `spend_results_are_identical_across_backends` runs one ledger through both.
//!
//! SQLite runs on a temporary file. PostgreSQL runs when `AGENTD_TEST_POSTGRES_URL` is set
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`), each test in its own fresh schema that is
//! dropped afterwards, even when the test fails. Without the variable the Postgres tests print
//! `skipped: …` and pass, unless `CI` is set: then they fail, so CI cannot silently skip them.
//!
//! The PostgreSQL half compiles only with the cargo feature `postgres` (`cargo test -p
//! agentd-store --features postgres`; `cargo test --workspace` has it through the agentd
//! binary's defaults).

use agentd_core::{
    ApiKey, KeyId, KeyStore, Micros, NewKey, SpendGroup, SpendQuery, SpendRecord, SpendScope,
    SpendStore, SpendTotal, StoreError, TenantId, UserId,
};
use agentd_store::Store;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use sqlx::migrate::Migrator;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
#[cfg(feature = "postgres")]
use sqlx::PgConnection;
use sqlx::{Connection, Executor, SqliteConnection};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
#[cfg(feature = "postgres")]
use std::str::FromStr;
use std::time::Duration;
#[cfg(feature = "postgres")]
use std::time::Instant;
use tempfile::TempDir;

#[cfg(feature = "postgres")]
const POSTGRES_URL_VAR: &str = "AGENTD_TEST_POSTGRES_URL";

/// One backend under test, able to open the same data more than once (reopen, concurrent opens).
enum Fixture {
    Sqlite {
        _dir: TempDir,
        path: PathBuf,
    },
    #[cfg(feature = "postgres")]
    Postgres(PgSchema),
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("agentd.db");
        Fixture::Sqlite { _dir: dir, path }
    }

    /// `None` (after saying so on stderr) when Postgres is not configured and we are not in CI.
    #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
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

    /// The first column of every row `sql` returns, read behind the store's back.
    async fn query_strings(&self, sql: &str) -> Vec<String> {
        match self {
            Fixture::Sqlite { path, .. } => {
                let mut conn =
                    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
                        .await
                        .expect("raw sqlite connection");
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
            }
            #[cfg(feature = "postgres")]
            Fixture::Postgres(pg) => {
                let options = PgConnectOptions::from_str(&pg.url)
                    .expect("postgres url")
                    .options([("search_path", pg.schema.as_str())]);
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .expect("raw postgres connection");
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
            }
        }
    }

    /// Brings a fresh database to the schema of the first release (migration 0001 only), as an
    /// old binary left it before an upgrade.
    async fn migrate_first_release_only(&self) {
        self.migrate_through("0001").await;
    }

    /// Brings a fresh database to the schema of the migrations numbered up to `last` (`"0003"`),
    /// through sqlx like the store does, so they are recorded with their real checksums.
    async fn migrate_through(&self, last: &str) {
        let dir = tempfile::tempdir().expect("temp dir");
        let sources = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(self.backend());
        for entry in std::fs::read_dir(&sources).expect("migrations dir") {
            let name = entry.expect("migration file").file_name();
            let name = name.to_str().expect("UTF-8 file name");
            if name[..4] <= *last {
                std::fs::copy(sources.join(name), dir.path().join(name)).expect("copy migration");
            }
        }
        let migrator = Migrator::new(dir.path()).await.expect("migrator");
        match self {
            Fixture::Sqlite { path, .. } => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true);
                let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
                migrator
                    .run(&mut conn)
                    .await
                    .expect("migrate sqlite to an older release");
            }
            #[cfg(feature = "postgres")]
            Fixture::Postgres(pg) => {
                let mut conn = PgConnection::connect(&pg.url).await.unwrap();
                conn.execute(format!("CREATE SCHEMA \"{}\"", pg.schema).as_str())
                    .await
                    .unwrap();
                let options = PgConnectOptions::from_str(&pg.url)
                    .unwrap()
                    .options([("search_path", pg.schema.as_str())]);
                let mut conn = PgConnection::connect_with(&options).await.unwrap();
                migrator
                    .run(&mut conn)
                    .await
                    .expect("migrate postgres to an older release");
            }
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Fixture::Sqlite { .. } => "sqlite",
            #[cfg(feature = "postgres")]
            Fixture::Postgres(_) => "postgres",
        }
    }
}

#[cfg(feature = "postgres")]
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
#[cfg(feature = "postgres")]
struct PgSchema {
    url: String,
    schema: String,
}

#[cfg(feature = "postgres")]
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
        tier: None,
        created_at,
    }
}

fn ids(keys: &[ApiKey]) -> Vec<&str> {
    keys.iter().map(|key| key.id.as_str()).collect()
}

/// A UTC instant from its parts and a sub-second nanosecond count.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap() + ChronoDuration::nanoseconds(nanos)
}

/// A ledger row with the fields every case sets; the rest are plain defaults.
#[allow(clippy::too_many_arguments)]
fn spend(
    id: &str,
    at: DateTime<Utc>,
    tenant: &str,
    key: Option<&str>,
    user: Option<&str>,
    session: Option<&str>,
    model: &str,
    cost: i64,
) -> SpendRecord {
    SpendRecord {
        id: id.to_owned(),
        // Not the id: the two must never be mixed up.
        request_id: format!("http-{id}"),
        at,
        key_id: key.map(KeyId::new),
        tenant: TenantId::new(tenant),
        user: user.map(UserId::new),
        session: session.map(str::to_owned),
        model: model.to_owned(),
        provider: "mock".to_owned(),
        deployment: format!("{model}-2024"),
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 0,
        usage_estimated: false,
        cost: Micros(cost),
        latency_ms: 42,
        cache_hit: false,
        status: "ok".to_owned(),
    }
}

/// A small ledger with every edge the queries must agree on: a row one millisecond (and a few
/// nanoseconds) before midnight, one exactly at midnight, one before 1970, rows without key,
/// user or session, the same user and session ids in two tenants, and model names whose byte
/// order differs from a locale's ('Zeta' < 'claude').
fn ledger() -> Vec<SpendRecord> {
    let mut rows = vec![
        // Stored as 23:59:59.999: truncation must never round it into the next day.
        spend(
            "req_1",
            utc(2024, 4, 30, 23, 59, 59, 999_999_999),
            "acme",
            Some("key_a"),
            Some("alice"),
            Some("s1"),
            "gpt",
            100,
        ),
        spend(
            "req_2",
            utc(2024, 5, 1, 0, 0, 0, 0),
            "acme",
            Some("key_a"),
            Some("alice"),
            Some("s1"),
            "gpt",
            200,
        ),
        spend(
            "req_3",
            utc(2024, 5, 1, 12, 0, 0, 123_456_789),
            "acme",
            Some("key_b"),
            None,
            None,
            "claude",
            300,
        ),
        spend(
            "req_4",
            utc(2024, 5, 1, 12, 0, 0, 124_000_000),
            "other",
            Some("key_c"),
            Some("alice"),
            Some("s1"),
            "gpt",
            400,
        ),
        spend(
            "req_5",
            utc(2024, 5, 2, 8, 0, 0, 0),
            "acme",
            None,
            Some("bob"),
            Some("s2"),
            "claude",
            500,
        ),
        spend(
            "req_6",
            utc(1969, 12, 31, 23, 59, 59, 999_000_000),
            "other",
            Some("key_c"),
            None,
            None,
            "Zeta",
            1,
        ),
    ];
    rows[1].cache_hit = true;
    rows[1].input_tokens = 20;
    rows[1].output_tokens = 10;
    rows[4].cache_hit = true;
    rows[4].provider = String::new();
    rows[4].usage_estimated = true;
    rows[2].input_tokens = 1_000_000_000_000;
    rows[2].cached_input_tokens = 7;
    rows
}

/// `n` varied rows over three days, from a fixed seed so every backend gets the same ones.
fn generated_ledger(n: usize) -> Vec<SpendRecord> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let start = utc(2024, 5, 1, 0, 0, 0, 0);
    (0..n)
        .map(|i| {
            let tenant = ["acme", "other", "t3"][(next() % 3) as usize];
            let key = ["key_a", "key_b", "key_c", "key_d"].get((next() % 5) as usize);
            let user = ["alice", "bob", "Carol"].get((next() % 4) as usize);
            let session = ["s1", "s2"].get((next() % 3) as usize);
            let model = ["gpt", "claude", "Zeta", "mistral"][(next() % 4) as usize];
            let at = start
                + ChronoDuration::milliseconds((next() % (3 * 86_400_000)) as i64)
                + ChronoDuration::nanoseconds((next() % 1_000_000) as i64);
            let mut row = spend(
                &format!("req_gen_{i:04}"),
                at,
                tenant,
                key.copied(),
                user.copied(),
                session.copied(),
                model,
                (next() % 5_000) as i64,
            );
            row.input_tokens = next() % 10_000;
            row.output_tokens = next() % 2_000;
            row.cache_hit = next() % 4 == 0;
            row
        })
        .collect()
}

/// What `spend_totals` must return, computed from the rows (first row of an id wins).
fn expected_totals(rows: &[SpendRecord], query: &SpendQuery) -> Vec<SpendTotal> {
    let mut seen = HashSet::new();
    let mut groups: BTreeMap<String, SpendTotal> = BTreeMap::new();
    for row in rows.iter().filter(|row| seen.insert(row.id.clone())) {
        let at = millis_only(row.at);
        if query.tenant.as_ref().is_some_and(|t| t != &row.tenant)
            || query.since.is_some_and(|since| at < since)
            || query.until.is_some_and(|until| at >= until)
        {
            continue;
        }
        let group = match query.group_by {
            SpendGroup::Key => row.key_id.as_ref().map_or("", KeyId::as_str).to_owned(),
            SpendGroup::User => row
                .user
                .as_ref()
                .map_or(String::new(), |user| format!("{}/{user}", row.tenant)),
            SpendGroup::Tenant => row.tenant.to_string(),
            SpendGroup::Model => row.model.clone(),
            SpendGroup::Day => at.format("%Y-%m-%d").to_string(),
        };
        let total = groups.entry(group.clone()).or_insert(SpendTotal {
            group,
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost: Micros::ZERO,
            cache_hits: 0,
        });
        total.requests += 1;
        total.input_tokens += row.input_tokens;
        total.output_tokens += row.output_tokens;
        total.cost += row.cost;
        total.cache_hits += u64::from(row.cache_hit);
    }
    // A BTreeMap of Strings iterates in byte order: the order both backends must use.
    groups.into_values().collect()
}

/// What `spend_sum` must return, computed from the rows (first row of an id wins).
fn expected_sum(rows: &[SpendRecord], scope: &SpendScope, since: Option<DateTime<Utc>>) -> Micros {
    let mut seen = HashSet::new();
    rows.iter()
        .filter(|row| seen.insert(row.id.clone()))
        .filter(|row| since.is_none_or(|since| millis_only(row.at) >= since))
        .filter(|row| match scope {
            SpendScope::Global => true,
            SpendScope::Tenant(tenant) => &row.tenant == tenant,
            SpendScope::User(tenant, user) => {
                &row.tenant == tenant && row.user.as_ref() == Some(user)
            }
            SpendScope::Key(key) => row.key_id.as_ref() == Some(key),
            SpendScope::Session(tenant, session) => {
                &row.tenant == tenant && row.session.as_ref() == Some(session)
            }
        })
        .fold(Micros::ZERO, |sum, row| sum + row.cost)
}

const ALL_GROUPS: [SpendGroup; 5] = [
    SpendGroup::Key,
    SpendGroup::User,
    SpendGroup::Tenant,
    SpendGroup::Model,
    SpendGroup::Day,
];

/// Range bounds worth probing: none, midnight exactly, a stored row's exact time, half a
/// millisecond and one nanosecond after it, before every row and after every row.
fn bounds() -> Vec<Option<DateTime<Utc>>> {
    vec![
        None,
        Some(utc(2024, 5, 1, 0, 0, 0, 0)),
        Some(utc(2024, 5, 1, 12, 0, 0, 123_000_000)),
        Some(utc(2024, 5, 1, 12, 0, 0, 123_000_001)),
        Some(utc(2024, 5, 1, 12, 0, 0, 123_500_000)),
        Some(utc(2024, 5, 2, 0, 0, 0, 0)),
        Some(utc(1900, 1, 1, 0, 0, 0, 0)),
        Some(utc(2100, 1, 1, 0, 0, 0, 0)),
    ]
}

/// Every totals query the suite compares: each group, each tenant filter, each range.
fn all_queries() -> Vec<SpendQuery> {
    let mut queries = Vec::new();
    for group_by in ALL_GROUPS {
        for tenant in [None, Some("acme"), Some("other"), Some("nobody")] {
            for since in bounds() {
                for until in bounds() {
                    queries.push(SpendQuery {
                        group_by,
                        tenant: tenant.map(TenantId::new),
                        since,
                        until,
                    });
                }
            }
        }
    }
    queries
}

/// Every scope the suite sums, including ids that exist only in another tenant and unknown ones.
fn all_scopes() -> Vec<SpendScope> {
    let mut scopes = vec![SpendScope::Global];
    for tenant in ["acme", "other", "t3", "nobody"] {
        let t = TenantId::new(tenant);
        scopes.push(SpendScope::Tenant(t.clone()));
        for user in ["alice", "bob", "Carol", "nobody"] {
            scopes.push(SpendScope::User(t.clone(), UserId::new(user)));
        }
        for session in ["s1", "s2", "nope"] {
            scopes.push(SpendScope::Session(t.clone(), session.to_owned()));
        }
    }
    for key in ["key_a", "key_b", "key_c", "key_d", "key_none"] {
        scopes.push(SpendScope::Key(KeyId::new(key)));
    }
    scopes
}

/// Every totals query and every scope sum of `store`, in a fixed order.
#[cfg(feature = "postgres")]
async fn every_answer(store: &Store) -> (Vec<Vec<SpendTotal>>, Vec<Micros>) {
    let mut totals = Vec::new();
    for query in all_queries() {
        totals.push(store.spend_totals(&query).await.unwrap());
    }
    let mut sums = Vec::new();
    for scope in all_scopes() {
        for since in bounds() {
            sums.push(store.spend_sum(&scope, since).await.unwrap());
        }
    }
    (totals, sums)
}

fn total(group: &str, requests: u64, cost: i64) -> (String, u64, Micros) {
    (group.to_owned(), requests, Micros(cost))
}

/// The parts of totals that the hand-written expectations spell out.
fn brief(totals: &[SpendTotal]) -> Vec<(String, u64, Micros)> {
    totals
        .iter()
        .map(|t| (t.group.clone(), t.requests, t.cost))
        .collect()
}

/// The cases, each `async fn(&Fixture)`; the macro below runs every one on every backend.
mod cases {
    use super::*;

    pub(crate) async fn tenant_pins_upsert_list_and_delete(fx: &Fixture) {
        use agentd_core::{Residency, TenantPin, TenantStore};
        let store = fx.open().await;
        let acme = agentd_core::TenantId::new("acme");
        assert_eq!(store.tenant_pin(&acme).await.unwrap(), None);
        let pin = TenantPin {
            tenant: acme.clone(),
            home_region: "nrt".into(),
            residency: Residency::Strict,
            updated_at: base_time(),
        };
        store.set_tenant_pin(&pin).await.unwrap();
        let read = store.tenant_pin(&acme).await.unwrap().unwrap();
        assert_eq!(read.home_region, "nrt");
        assert_eq!(read.residency, Residency::Strict);
        assert_eq!(read.updated_at, millis_only(base_time()));
        // Upsert replaces the whole pin.
        let moved = TenantPin {
            home_region: "cdg".into(),
            residency: Residency::Preferred,
            ..pin.clone()
        };
        store.set_tenant_pin(&moved).await.unwrap();
        store
            .set_tenant_pin(&TenantPin {
                tenant: agentd_core::TenantId::new("beta"),
                ..pin.clone()
            })
            .await
            .unwrap();
        let all = store.list_tenant_pins().await.unwrap();
        assert_eq!(
            all.iter()
                .map(|p| (p.tenant.as_str(), p.home_region.as_str(), p.residency))
                .collect::<Vec<_>>(),
            vec![
                ("acme", "cdg", Residency::Preferred),
                ("beta", "nrt", Residency::Strict)
            ]
        );
        assert!(store.delete_tenant_pin(&acme).await.unwrap());
        assert!(!store.delete_tenant_pin(&acme).await.unwrap());
        assert_eq!(store.tenant_pin(&acme).await.unwrap(), None);
        // NUL is refused by both backends before writing.
        let bad = TenantPin {
            tenant: agentd_core::TenantId::new("a\0b"),
            ..pin
        };
        assert!(matches!(
            store.set_tenant_pin(&bad).await,
            Err(agentd_core::StoreError::Invalid(_))
        ));
    }

    pub(crate) async fn insert_then_get_by_hash_and_id(fx: &Fixture) {
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

    pub(crate) async fn list_is_oldest_first_and_isolates_tenants(fx: &Fixture) {
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

    pub(crate) async fn revoke_sets_time_once_and_reports_unknown(fx: &Fixture) {
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

    pub(crate) async fn concurrent_revokes_agree_on_one_time(fx: &Fixture) {
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

    pub(crate) async fn duplicate_hash_is_conflict(fx: &Fixture) {
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

    pub(crate) async fn duplicate_id_is_conflict(fx: &Fixture) {
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

    pub(crate) async fn user_none_and_some_round_trip(fx: &Fixture) {
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

    pub(crate) async fn timestamps_round_trip_at_millisecond_precision(fx: &Fixture) {
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

    pub(crate) async fn ping_and_close(fx: &Fixture) {
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

    pub(crate) async fn reopening_keeps_data(fx: &Fixture) {
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

    pub(crate) async fn concurrent_opens_migrate_once(fx: &Fixture) {
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

    pub(crate) async fn newer_schema_still_opens(fx: &Fixture) {
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
            #[cfg(feature = "postgres")]
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

    pub(crate) async fn concurrent_inserts_all_land(fx: &Fixture) {
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

    pub(crate) async fn tier_none_and_some_round_trip(fx: &Fixture) {
        let store = fx.open().await;
        let mut fast = new_key("key_fast", "acme", base_time());
        fast.tier = Some("fast".to_owned());
        let plain = new_key("key_plain", "acme", base_time());

        let inserted = store.insert_key(fast.clone()).await.unwrap();
        assert_eq!(inserted.tier.as_deref(), Some("fast"));
        assert_eq!(store.insert_key(plain.clone()).await.unwrap().tier, None);
        assert_eq!(
            store.key_by_id(&fast.id).await.unwrap(),
            Some(inserted.clone())
        );
        assert_eq!(
            store.key_by_hash(&fast.hash).await.unwrap(),
            Some(inserted.clone())
        );
        let listed: Vec<_> = store
            .list_keys(Some(&TenantId::new("acme")))
            .await
            .unwrap()
            .into_iter()
            .map(|key| (key.id.to_string(), key.tier))
            .collect();
        assert_eq!(
            listed,
            [
                ("key_fast".to_owned(), Some("fast".to_owned())),
                ("key_plain".to_owned(), None)
            ]
        );

        // Revoking touches only `revoked_at`, and the tier survives a reopen.
        assert!(store.revoke_key(&fast.id).await.unwrap());
        store.close().await;
        let reopened = fx.open().await;
        let read = reopened.key_by_id(&fast.id).await.unwrap().unwrap();
        assert_eq!(read.tier.as_deref(), Some("fast"));
        assert!(read.revoked_at.is_some());
        let read = reopened.key_by_hash(&plain.hash).await.unwrap().unwrap();
        assert_eq!(read.tier, None);
    }

    pub(crate) async fn first_release_database_upgrades_in_place(fx: &Fixture) {
        // A database an older binary created and wrote a key to, before the ledger and tiers.
        fx.migrate_first_release_only().await;
        let created_at = match fx {
            Fixture::Sqlite { .. } => "1714564800000",
            #[cfg(feature = "postgres")]
            Fixture::Postgres(_) => "'2024-05-01T12:00:00Z'",
        };
        fx.execute_raw(&format!(
            "INSERT INTO api_keys (id, name, tenant, user_id, prefix, hash, created_at) \
             VALUES ('key_old', 'old', 'acme', 'alice', 'sk-agentd-old', '{}', {created_at})",
            "c".repeat(64)
        ))
        .await;

        let store = fx.open().await;
        let old = store
            .key_by_id(&KeyId::new("key_old"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.tier, None);
        assert_eq!(old.user, Some(UserId::new("alice")));
        assert_eq!(old.created_at, utc(2024, 5, 1, 12, 0, 0, 0));
        let mut tiered = new_key("key_new", "acme", base_time());
        tiered.tier = Some("quality".to_owned());
        assert_eq!(
            store.insert_key(tiered).await.unwrap().tier.as_deref(),
            Some("quality")
        );
        store.record_spend(&ledger()).await.unwrap();
        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            Micros(1501)
        );
        store.close().await;

        // Every migration file is recorded once: the upgrade applied exactly the new ones.
        let files = std::fs::read_dir(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(fx.backend()),
        )
        .unwrap()
        .count();
        let versions = fx
            .query_strings("SELECT CAST(version AS TEXT) FROM _sqlx_migrations ORDER BY version")
            .await;
        assert_eq!(versions.len(), files, "{versions:?}");
        assert_eq!(versions[..3], ["1", "2", "3"]);
    }

    pub(crate) async fn spend_record_is_idempotent(fx: &Fixture) {
        let store = fx.open().await;
        store.record_spend(&[]).await.unwrap();
        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            Micros::ZERO
        );
        assert!(store
            .spend_totals(&SpendQuery {
                group_by: SpendGroup::Tenant,
                tenant: None,
                since: None,
                until: None,
            })
            .await
            .unwrap()
            .is_empty());

        let rows = ledger();
        store.record_spend(&rows[..2]).await.unwrap();
        // A flush retried after a timeout: the rows that landed are sent again, one of them
        // even with another cost. The stored row is kept, not overwritten or added.
        let mut retry = rows.clone();
        retry[0].cost = Micros(999_999);
        store.record_spend(&retry).await.unwrap();
        store.record_spend(&retry).await.unwrap();
        // The same id twice within one batch is stored once.
        let dup = spend("req_dup", base_time(), "dup", None, None, None, "gpt", 7);
        store.record_spend(&[dup.clone(), dup]).await.unwrap();

        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            Micros(1501 + 7)
        );
        let by_tenant = store
            .spend_totals(&SpendQuery {
                group_by: SpendGroup::Tenant,
                tenant: None,
                since: None,
                until: None,
            })
            .await
            .unwrap();
        assert_eq!(
            brief(&by_tenant),
            [
                total("acme", 4, 1100),
                total("dup", 1, 7),
                total("other", 2, 401)
            ]
        );

        // Concurrent writers of overlapping batches (a retry racing the original flush).
        let batch = generated_ledger(100);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..8 {
            let store = store.clone();
            let part = batch[i * 10..].to_vec();
            tasks.spawn(async move { store.record_spend(&part).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("record");
        }
        let mut all = ledger();
        all.push(spend(
            "req_dup",
            base_time(),
            "dup",
            None,
            None,
            None,
            "gpt",
            7,
        ));
        all.extend(batch);
        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            expected_sum(&all, &SpendScope::Global, None)
        );
        let requests: u64 = store
            .spend_totals(&SpendQuery {
                group_by: SpendGroup::Key,
                tenant: None,
                since: None,
                until: None,
            })
            .await
            .unwrap()
            .iter()
            .map(|t| t.requests)
            .sum();
        assert_eq!(requests, 6 + 1 + 100);
    }

    pub(crate) async fn spend_totals_per_group_with_filters(fx: &Fixture) {
        let store = fx.open().await;
        let rows = ledger();
        store.record_spend(&rows).await.unwrap();
        let query = |group_by, tenant: Option<&str>, since, until| SpendQuery {
            group_by,
            tenant: tenant.map(TenantId::new),
            since,
            until,
        };
        let totals = |q: SpendQuery| {
            let store = store.clone();
            async move { store.spend_totals(&q).await.unwrap() }
        };

        let by_tenant = totals(query(SpendGroup::Tenant, None, None, None)).await;
        assert_eq!(
            by_tenant,
            [
                SpendTotal {
                    group: "acme".into(),
                    requests: 4,
                    input_tokens: 1_000_000_000_040,
                    output_tokens: 25,
                    cost: Micros(1100),
                    cache_hits: 2,
                },
                SpendTotal {
                    group: "other".into(),
                    requests: 2,
                    input_tokens: 20,
                    output_tokens: 10,
                    cost: Micros(401),
                    cache_hits: 0,
                },
            ]
        );
        assert_eq!(
            brief(&totals(query(SpendGroup::Key, None, None, None)).await),
            [
                total("", 1, 500),
                total("key_a", 2, 300),
                total("key_b", 1, 300),
                total("key_c", 2, 401)
            ]
        );
        assert_eq!(
            brief(&totals(query(SpendGroup::User, None, None, None)).await),
            [
                total("", 2, 301),
                total("acme/alice", 2, 300),
                total("acme/bob", 1, 500),
                total("other/alice", 1, 400)
            ]
        );
        // Byte order: 'Z' sorts before 'c' on both backends, whatever the database locale.
        assert_eq!(
            brief(&totals(query(SpendGroup::Model, None, None, None)).await),
            [
                total("Zeta", 1, 1),
                total("claude", 2, 800),
                total("gpt", 3, 700)
            ]
        );
        // UTC days; 23:59:59.999999999 stays on its day, and a row before 1970 too.
        assert_eq!(
            brief(&totals(query(SpendGroup::Day, None, None, None)).await),
            [
                total("1969-12-31", 1, 1),
                total("2024-04-30", 1, 100),
                total("2024-05-01", 3, 900),
                total("2024-05-02", 1, 500)
            ]
        );

        let midnight = Some(utc(2024, 5, 1, 0, 0, 0, 0));
        let req_3_stored = Some(utc(2024, 5, 1, 12, 0, 0, 123_000_000));
        let just_after_req_3 = Some(utc(2024, 5, 1, 12, 0, 0, 123_000_001));
        // `since` is inclusive, `until` exclusive.
        assert_eq!(
            brief(&totals(query(SpendGroup::Day, Some("acme"), midnight, req_3_stored)).await),
            [total("2024-05-01", 1, 200)]
        );
        assert_eq!(
            brief(&totals(query(SpendGroup::Model, Some("acme"), req_3_stored, None)).await),
            [total("claude", 2, 800)]
        );
        // Bounds inside a millisecond compare with the stored (whole-millisecond) time exactly.
        assert_eq!(
            brief(
                &totals(query(
                    SpendGroup::Model,
                    Some("acme"),
                    just_after_req_3,
                    None
                ))
                .await
            ),
            [total("claude", 1, 500)]
        );
        assert_eq!(
            brief(
                &totals(query(
                    SpendGroup::Key,
                    Some("acme"),
                    midnight,
                    just_after_req_3
                ))
                .await
            ),
            [total("key_a", 1, 200), total("key_b", 1, 300)]
        );
        assert_eq!(
            brief(&totals(query(SpendGroup::User, Some("other"), None, None)).await),
            [total("", 1, 1), total("other/alice", 1, 400)]
        );
        assert!(
            totals(query(SpendGroup::Tenant, Some("nobody"), None, None))
                .await
                .is_empty()
        );
        assert!(
            totals(query(SpendGroup::Tenant, None, just_after_req_3, midnight))
                .await
                .is_empty(),
            "since after until"
        );

        // And every combination of group, tenant and range, against the reference.
        for q in all_queries() {
            assert_eq!(
                store.spend_totals(&q).await.unwrap(),
                expected_totals(&rows, &q),
                "{q:?}"
            );
        }
    }

    pub(crate) async fn spend_sum_per_scope_since(fx: &Fixture) {
        let store = fx.open().await;
        let rows = ledger();
        store.record_spend(&rows).await.unwrap();
        let acme = || TenantId::new("acme");
        let other = || TenantId::new("other");
        let midnight = Some(utc(2024, 5, 1, 0, 0, 0, 0));
        let req_3_stored = Some(utc(2024, 5, 1, 12, 0, 0, 123_000_000));
        let just_after_req_3 = Some(utc(2024, 5, 1, 12, 0, 0, 123_000_001));
        let cases = [
            (SpendScope::Global, None, 1501),
            (SpendScope::Global, midnight, 1400),
            (SpendScope::Global, Some(utc(2100, 1, 1, 0, 0, 0, 0)), 0),
            (SpendScope::Tenant(acme()), None, 1100),
            (SpendScope::Tenant(acme()), midnight, 1000),
            (SpendScope::Tenant(acme()), req_3_stored, 800),
            (SpendScope::Tenant(acme()), just_after_req_3, 500),
            (SpendScope::Tenant(TenantId::new("nobody")), None, 0),
            // The same user id in two tenants is two users.
            (SpendScope::User(acme(), UserId::new("alice")), None, 300),
            (SpendScope::User(other(), UserId::new("alice")), None, 400),
            (
                SpendScope::User(acme(), UserId::new("alice")),
                midnight,
                200,
            ),
            (SpendScope::User(acme(), UserId::new("bob")), None, 500),
            (SpendScope::User(acme(), UserId::new("nobody")), None, 0),
            (SpendScope::Key(KeyId::new("key_a")), None, 300),
            (SpendScope::Key(KeyId::new("key_c")), None, 401),
            (
                SpendScope::Key(KeyId::new("key_c")),
                Some(DateTime::UNIX_EPOCH),
                400,
            ),
            (SpendScope::Key(KeyId::new("key_none")), None, 0),
            // Sessions, like users, are per tenant.
            (SpendScope::Session(acme(), "s1".into()), None, 300),
            (SpendScope::Session(other(), "s1".into()), None, 400),
            (SpendScope::Session(acme(), "s2".into()), None, 500),
            (SpendScope::Session(other(), "s2".into()), None, 0),
            (SpendScope::Session(acme(), "s1".into()), midnight, 200),
        ];
        for (scope, since, cost) in cases {
            assert_eq!(
                store.spend_sum(&scope, since).await.unwrap(),
                Micros(cost),
                "{scope:?} since {since:?}"
            );
        }
        for scope in all_scopes() {
            for since in bounds() {
                assert_eq!(
                    store.spend_sum(&scope, since).await.unwrap(),
                    expected_sum(&rows, &scope, since),
                    "{scope:?} since {since:?}"
                );
            }
        }
    }

    pub(crate) async fn spend_batch_of_500_in_one_call(fx: &Fixture) {
        let store = fx.open().await;
        let rows = generated_ledger(750);
        let (first, second) = (&rows[..500], &rows[250..]);
        store.record_spend(first).await.unwrap();
        let by_day = SpendQuery {
            group_by: SpendGroup::Day,
            tenant: None,
            since: None,
            until: None,
        };
        let landed = store.spend_totals(&by_day).await.unwrap();
        assert_eq!(landed, expected_totals(first, &by_day));
        assert_eq!(landed.iter().map(|t| t.requests).sum::<u64>(), 500);
        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            expected_sum(first, &SpendScope::Global, None)
        );

        // The next batch of 500 overlaps the first by half: only the new 250 are added.
        store.record_spend(second).await.unwrap();
        let landed = store.spend_totals(&by_day).await.unwrap();
        assert_eq!(landed, expected_totals(&rows, &by_day));
        assert_eq!(landed.iter().map(|t| t.requests).sum::<u64>(), 750);
        for scope in all_scopes() {
            assert_eq!(
                store.spend_sum(&scope, None).await.unwrap(),
                expected_sum(&rows, &scope, None),
                "{scope:?}"
            );
        }
    }

    pub(crate) async fn spend_rows_sharing_a_request_id_are_all_counted(fx: &Fixture) {
        let store = fx.open().await;
        // One HTTP request that made two model calls (a fallback, an agent step): two ledger
        // rows, two call ids, one request id.
        let mut first = spend(
            "call_a1",
            base_time(),
            "acme",
            Some("key_a"),
            Some("alice"),
            None,
            "gpt",
            100,
        );
        first.request_id = "req-shared".to_owned();
        let mut second = spend(
            "call_a2",
            base_time() + ChronoDuration::milliseconds(5),
            "acme",
            Some("key_a"),
            Some("alice"),
            None,
            "claude",
            250,
        );
        second.request_id = "req-shared".to_owned();
        // And a third call elsewhere with the same (caller-chosen) request id.
        let mut third = spend("call_b1", base_time(), "other", None, None, None, "gpt", 7);
        third.request_id = "req-shared".to_owned();
        let lone = spend("call_c1", base_time(), "acme", None, None, None, "gpt", 1);
        store
            .record_spend(&[first.clone(), second.clone(), third, lone])
            .await
            .unwrap();

        // A retry of the same call ids, one even with another request id and cost: skipped.
        let mut retried = first.clone();
        retried.request_id = "req-other".to_owned();
        retried.cost = Micros(999_999);
        store
            .record_spend(&[retried, second.clone()])
            .await
            .unwrap();

        assert_eq!(
            fx.query_strings("SELECT id || ' ' || request_id FROM spend ORDER BY id")
                .await,
            [
                "call_a1 req-shared",
                "call_a2 req-shared",
                "call_b1 req-shared",
                "call_c1 http-call_c1"
            ]
        );
        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            Micros(100 + 250 + 7 + 1)
        );
        assert_eq!(
            store
                .spend_sum(&SpendScope::Key(KeyId::new("key_a")), None)
                .await
                .unwrap(),
            Micros(350)
        );
        assert_eq!(
            store
                .spend_sum(
                    &SpendScope::User(TenantId::new("acme"), UserId::new("alice")),
                    None
                )
                .await
                .unwrap(),
            Micros(350)
        );
        let by_tenant = store
            .spend_totals(&SpendQuery {
                group_by: SpendGroup::Tenant,
                tenant: None,
                since: None,
                until: None,
            })
            .await
            .unwrap();
        assert_eq!(
            brief(&by_tenant),
            [total("acme", 3, 351), total("other", 1, 7)]
        );
        let by_model = store
            .spend_totals(&SpendQuery {
                group_by: SpendGroup::Model,
                tenant: Some(TenantId::new("acme")),
                since: None,
                until: None,
            })
            .await
            .unwrap();
        assert_eq!(
            brief(&by_model),
            [total("claude", 1, 250), total("gpt", 2, 101)]
        );
    }

    pub(crate) async fn spend_rows_from_before_request_ids_read_back_empty(fx: &Fixture) {
        // A ledger an older binary wrote (schema through 0003, no request_id column).
        fx.migrate_through("0003").await;
        let at = match fx {
            Fixture::Sqlite { .. } => "1714564800000",
            #[cfg(feature = "postgres")]
            Fixture::Postgres(_) => "'2024-05-01T12:00:00Z'",
        };
        fx.execute_raw(&format!(
            "INSERT INTO spend (id, at, key_id, tenant, user_id, session, model, provider, \
             deployment, input_tokens, output_tokens, cached_input_tokens, usage_estimated, \
             cost, latency_ms, cache_hit, status) VALUES ('req_old', {at}, NULL, 'acme', \
             'alice', NULL, 'gpt', 'mock', 'gpt-2024', 1, 2, 0, FALSE, 40, 5, FALSE, 'ok')"
        ))
        .await;

        let store = fx.open().await;
        store
            .record_spend(&[spend(
                "call_new",
                base_time(),
                "acme",
                None,
                Some("alice"),
                None,
                "gpt",
                2,
            )])
            .await
            .unwrap();
        assert_eq!(
            fx.query_strings("SELECT id || '=' || request_id FROM spend ORDER BY id")
                .await,
            ["call_new=http-call_new", "req_old="]
        );
        assert_eq!(
            store
                .spend_sum(
                    &SpendScope::User(TenantId::new("acme"), UserId::new("alice")),
                    None
                )
                .await
                .unwrap(),
            Micros(42)
        );
    }

    pub(crate) async fn spend_totals_group_users_per_tenant(fx: &Fixture) {
        let store = fx.open().await;
        let row = |id: &str, tenant: &str, user: Option<&str>, cost: i64| {
            spend(id, base_time(), tenant, None, user, None, "gpt", cost)
        };
        store
            .record_spend(&[
                row("call_1", "acme", Some("alice"), 1),
                row("call_2", "beta", Some("alice"), 10),
                row("call_3", "acme", Some("alice"), 100),
                row("call_4", "acme", None, 1_000),
                row("call_5", "beta", None, 10_000),
                // '-' sorts before '/': "acme-eu/…" comes before "acme/…", by bytes.
                row("call_6", "acme-eu", Some("alice"), 100_000),
                row("call_7", "acme", Some("Bob"), 1_000_000),
            ])
            .await
            .unwrap();
        let by_user = |tenant: Option<&str>| SpendQuery {
            group_by: SpendGroup::User,
            tenant: tenant.map(TenantId::new),
            since: None,
            until: None,
        };
        assert_eq!(
            brief(&store.spend_totals(&by_user(None)).await.unwrap()),
            [
                total("", 2, 11_000),
                total("acme-eu/alice", 1, 100_000),
                total("acme/Bob", 1, 1_000_000),
                total("acme/alice", 2, 101),
                total("beta/alice", 1, 10),
            ]
        );
        assert_eq!(
            brief(&store.spend_totals(&by_user(Some("beta"))).await.unwrap()),
            [total("", 1, 10_000), total("beta/alice", 1, 10)]
        );
        // The budget sums agree with the groups.
        for (tenant, cost) in [("acme", 101), ("beta", 10), ("acme-eu", 100_000)] {
            assert_eq!(
                store
                    .spend_sum(
                        &SpendScope::User(TenantId::new(tenant), UserId::new("alice")),
                        None
                    )
                    .await
                    .unwrap(),
                Micros(cost),
                "{tenant}"
            );
        }
    }

    /// `Invalid("<field> must not contain a NUL character")`, or a panic naming what was tried.
    fn assert_nul_refused<T: std::fmt::Debug>(result: Result<T, StoreError>, field: &str) {
        match result {
            Err(StoreError::Invalid(message)) => {
                assert_eq!(message, format!("{field} must not contain a NUL character"))
            }
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }

    pub(crate) async fn nul_in_key_text_is_invalid(fx: &Fixture) {
        let store = fx.open().await;
        let good = new_key("key_good", "acme", base_time());
        type Edit = fn(&mut NewKey);
        let edits: [(&str, Edit); 7] = [
            ("key id", |k| k.id = KeyId::new("key_\0x")),
            ("key name", |k| k.name = "na\0me".into()),
            ("tenant", |k| k.tenant = TenantId::new("ac\0me")),
            ("user", |k| k.user = Some(UserId::new("\0"))),
            ("key prefix", |k| k.prefix = "sk-agentd-\0".into()),
            ("key hash", |k| k.hash = format!("{:0>64}", "\0")),
            ("tier", |k| k.tier = Some("fast\0".into())),
        ];
        for (field, edit) in edits {
            let mut key = good.clone();
            edit(&mut key);
            assert_nul_refused(store.insert_key(key).await, field);
        }
        assert!(store.list_keys(None).await.unwrap().is_empty());

        // Lookups refuse it too, rather than answer "no such key" on one backend and fail
        // opaquely on the other.
        store.insert_key(good.clone()).await.unwrap();
        assert_nul_refused(
            store.key_by_hash(&format!("{}\0", good.hash)).await,
            "key hash",
        );
        assert_nul_refused(store.key_by_id(&KeyId::new("key_good\0")).await, "key id");
        assert_nul_refused(
            store.list_keys(Some(&TenantId::new("acme\0"))).await,
            "tenant",
        );
        assert_nul_refused(store.revoke_key(&KeyId::new("key_good\0")).await, "key id");
        // Nothing was revoked, and the clean key is still there.
        let read = store.key_by_id(&good.id).await.unwrap().unwrap();
        assert!(read.is_active());
        assert_eq!(ids(&store.list_keys(None).await.unwrap()), ["key_good"]);
    }

    pub(crate) async fn nul_in_spend_filters_is_invalid(fx: &Fixture) {
        let store = fx.open().await;
        store.record_spend(&ledger()).await.unwrap();
        for group_by in ALL_GROUPS {
            assert_nul_refused(
                store
                    .spend_totals(&SpendQuery {
                        group_by,
                        tenant: Some(TenantId::new("acme\0")),
                        since: None,
                        until: None,
                    })
                    .await,
                "tenant",
            );
        }
        let acme = || TenantId::new("acme");
        let cases = [
            (SpendScope::Tenant(TenantId::new("\0acme")), "tenant"),
            (
                SpendScope::User(TenantId::new("ac\0me"), UserId::new("alice")),
                "tenant",
            ),
            (SpendScope::User(acme(), UserId::new("alice\0")), "user"),
            (SpendScope::Key(KeyId::new("key_a\0")), "key id"),
            (
                SpendScope::Session(TenantId::new("acme\0"), "s1".into()),
                "tenant",
            ),
            (SpendScope::Session(acme(), "s1\0".into()), "session"),
        ];
        for (scope, field) in cases {
            assert_nul_refused(store.spend_sum(&scope, None).await, field);
        }
        // The clean queries still answer.
        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            Micros(1501)
        );
    }

    pub(crate) async fn nul_in_spend_rows_is_replaced_not_lost(fx: &Fixture) {
        let store = fx.open().await;
        let mut dirty = spend(
            "call_\0nul",
            base_time(),
            "ac\0me",
            Some("key_\0a"),
            Some("ali\0ce"),
            Some("s\0"),
            "gp\0t",
            30,
        );
        dirty.request_id = "req-\0".to_owned();
        dirty.provider = "mo\0ck".to_owned();
        dirty.deployment = "\0dep".to_owned();
        dirty.status = "ok\0".to_owned();
        let clean = spend(
            "call_clean",
            base_time(),
            "acme",
            None,
            None,
            None,
            "gpt",
            12,
        );
        // One bad row does not fail the batch: both land.
        store
            .record_spend(&[dirty.clone(), clean.clone()])
            .await
            .unwrap();
        // Written again (a retried flush): the replaced id is stable, so it is skipped.
        store.record_spend(&[dirty, clean]).await.unwrap();

        let columns = [
            "id",
            "request_id",
            "COALESCE(key_id, '-')",
            "tenant",
            "COALESCE(user_id, '-')",
            "COALESCE(session, '-')",
            "model",
            "provider",
            "deployment",
            "status",
        ];
        let mut fields = Vec::new();
        for column in columns {
            fields.push(
                fx.query_strings(&format!("SELECT {column} FROM spend ORDER BY id"))
                    .await,
            );
        }
        let r = '\u{FFFD}';
        // Byte order: 'c' (0x63) sorts before U+FFFD (0xEF 0xBF 0xBD) on both backends.
        let expected = [
            ["call_clean".into(), format!("call_{r}nul")],
            ["http-call_clean".into(), format!("req-{r}")],
            ["-".into(), format!("key_{r}a")],
            ["acme".into(), format!("ac{r}me")],
            ["-".into(), format!("ali{r}ce")],
            ["-".into(), format!("s{r}")],
            ["gpt".into(), format!("gp{r}t")],
            ["mock".into(), format!("mo{r}ck")],
            ["gpt-2024".into(), format!("{r}dep")],
            ["ok".into(), format!("ok{r}")],
        ];
        assert_eq!(fields, expected.map(Vec::from));

        assert_eq!(
            store.spend_sum(&SpendScope::Global, None).await.unwrap(),
            Micros(42)
        );
        // The stored (replaced) values are what the queries group and filter by.
        let by_user = store
            .spend_totals(&SpendQuery {
                group_by: SpendGroup::User,
                tenant: None,
                since: None,
                until: None,
            })
            .await
            .unwrap();
        assert_eq!(
            brief(&by_user),
            [total("", 1, 12), total(&format!("ac{r}me/ali{r}ce"), 1, 30)]
        );
        assert_eq!(
            store
                .spend_sum(
                    &SpendScope::Session(TenantId::new(format!("ac{r}me")), format!("s{r}")),
                    None
                )
                .await
                .unwrap(),
            Micros(30)
        );
    }

    pub(crate) async fn store_errors_name_the_operation_and_keep_the_database_message(
        fx: &Fixture,
    ) {
        let store = fx.open().await;
        store.close().await;
        // Tables gone behind the store's back (an operator's mistake, a bad restore): the store
        // still opens (its migrations are recorded as applied), and every failure says what
        // was being done and what the database answered.
        fx.execute_raw("DROP TABLE spend; DROP TABLE api_keys")
            .await;
        let store = fx.open().await;
        let missing = |table: &str| match fx {
            Fixture::Sqlite { .. } => format!("no such table: {table}"),
            #[cfg(feature = "postgres")]
            Fixture::Postgres(_) => format!("relation \"{table}\" does not exist (SQLSTATE 42P01)"),
        };
        let check = |result: Result<(), StoreError>, operation: &str, table: &str| match result {
            Err(StoreError::Backend(message)) => {
                assert!(
                    message.starts_with(&format!("{operation}: ")),
                    "{operation}: {message}"
                );
                assert!(message.contains(&missing(table)), "{operation}: {message}");
            }
            other => panic!("{operation}: expected Backend, got {other:?}"),
        };
        check(
            store
                .insert_key(new_key("key_x", "acme", base_time()))
                .await
                .map(drop),
            "insert key",
            "api_keys",
        );
        check(
            store.key_by_hash(&"a".repeat(64)).await.map(drop),
            "look up key by hash",
            "api_keys",
        );
        check(
            store.key_by_id(&KeyId::new("key_x")).await.map(drop),
            "look up key by id",
            "api_keys",
        );
        check(
            store.list_keys(None).await.map(drop),
            "list keys",
            "api_keys",
        );
        check(
            store.revoke_key(&KeyId::new("key_x")).await.map(drop),
            "revoke key",
            "api_keys",
        );
        check(store.record_spend(&ledger()).await, "record spend", "spend");
        check(
            store
                .spend_totals(&SpendQuery {
                    group_by: SpendGroup::Day,
                    tenant: None,
                    since: None,
                    until: None,
                })
                .await
                .map(drop),
            "spend totals",
            "spend",
        );
        check(
            store.spend_sum(&SpendScope::Global, None).await.map(drop),
            "spend sum",
            "spend",
        );
        // The full text, as the gateway will log it.
        let err = store.list_keys(None).await.unwrap_err().to_string();
        assert!(
            err.starts_with("store error: list keys: ") && err.contains("api_keys"),
            "{err}"
        );
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

        #[cfg(feature = "postgres")]
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
    tenant_pins_upsert_list_and_delete,
    tier_none_and_some_round_trip,
    first_release_database_upgrades_in_place,
    spend_record_is_idempotent,
    spend_totals_per_group_with_filters,
    spend_sum_per_scope_since,
    spend_batch_of_500_in_one_call,
    spend_rows_sharing_a_request_id_are_all_counted,
    spend_rows_from_before_request_ids_read_back_empty,
    spend_totals_group_users_per_tenant,
    nul_in_key_text_is_invalid,
    nul_in_spend_filters_is_invalid,
    nul_in_spend_rows_is_replaced_not_lost,
    store_errors_name_the_operation_and_keep_the_database_message,
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

/// Without the feature the PostgreSQL half is not compiled: say so, and fail under CI as an
/// unset `AGENTD_TEST_POSTGRES_URL` does, so CI cannot skip it silently.
#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_suite_is_compiled_out() {
    assert!(
        std::env::var_os("CI").is_none(),
        "the Postgres suite may not be skipped in CI: run with --features postgres"
    );
    eprintln!("skipped: the Postgres suite needs the cargo feature `postgres`");
}

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
        // Every migration is recorded exactly once.
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let (applied, distinct): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
            .unwrap()
            .count();
        assert_eq!((applied, distinct), (files as i64, files as i64));
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

#[cfg(feature = "postgres")]
const PASSWORD: &str = "hunter2-Sup3rSecret";

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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
#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spend_results_are_identical_across_backends() {
    let Some(pg) = Fixture::postgres() else {
        return;
    };
    let sqlite = Fixture::sqlite();
    let mut rows = ledger();
    rows.extend(generated_ledger(500));
    let (sqlite_store, pg_store) = (sqlite.open().await, pg.open().await);
    let (a, b) = tokio::join!(
        sqlite_store.record_spend(&rows),
        pg_store.record_spend(&rows)
    );
    a.unwrap();
    b.unwrap();

    let (sqlite_totals, sqlite_sums) = every_answer(&sqlite_store).await;
    let (pg_totals, pg_sums) = every_answer(&pg_store).await;
    let queries = all_queries();
    assert_eq!(sqlite_totals.len(), queries.len());
    assert_eq!(pg_totals.len(), queries.len());
    for ((query, from_sqlite), from_pg) in queries.iter().zip(&sqlite_totals).zip(&pg_totals) {
        assert_eq!(from_sqlite, from_pg, "{query:?}");
        assert_eq!(from_sqlite, &expected_totals(&rows, query), "{query:?}");
    }
    assert_eq!(sqlite_sums, pg_sums);
    // Not vacuous: many answers have rows in them (the rest are empty ranges or an unknown
    // tenant, on purpose).
    let non_empty = sqlite_totals.iter().filter(|t| !t.is_empty()).count();
    assert!(
        non_empty > queries.len() / 4,
        "{non_empty} of {}",
        queries.len()
    );
    assert!(sqlite_sums.iter().filter(|s| **s != Micros::ZERO).count() > sqlite_sums.len() / 2);
}
