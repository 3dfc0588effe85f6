//! The `WorkQueue` conformance suite: every case runs against the store queue on SQLite (a
//! temporary file), and, with their cargo features, the store queue on PostgreSQL (a schema of
//! its own per test), Redis and NATS JetStream (a random prefix per test).
//!
//! Servers come from `AGENTD_TEST_POSTGRES_URL`, `AGENTD_TEST_REDIS_URL` and
//! `AGENTD_TEST_NATS_URL`. Without one, that backend's tests print `skipped: …` and pass, unless
//! `CI` is set: then they fail, so CI cannot silently skip them. Every test removes what it
//! created (schema, keys, streams) when it ends, also when it fails.
//!
//! Each fixture has two handles on the same queue: `queue` and `other`, which for the servers
//! is a second connection (another replica). Leases are a second or so where they matter and
//! assertions only bound timings from one side (`< wait`), so a busy machine does not fail them.

use agentd_core::{Delivery, Ticket, WorkQueue};
use agentd_queue::StoreQueue;
use agentd_store::Store;
use futures::FutureExt;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A lease no test waits out.
const LONG: Duration = Duration::from_secs(30);
/// A lease tests do wait out.
const SHORT: Duration = Duration::from_secs(1);
const NO_WAIT: Duration = Duration::ZERO;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "redis")]
    Redis,
    #[cfg(feature = "nats")]
    Nats,
}

struct Fixture {
    kind: Kind,
    queue: Arc<dyn WorkQueue>,
    /// A second handle on the same queue (for the servers: another connection).
    other: Arc<dyn WorkQueue>,
    /// Keeps the SQLite file, and for PostgreSQL the store to drop the schema with.
    store: Option<Arc<Store>>,
    _dir: Option<tempfile::TempDir>,
    /// Server URL and prefix (or schema) for wiping and cleaning up (unused without the
    /// server backends' features).
    #[allow(dead_code)]
    url: String,
    #[allow(dead_code)]
    prefix: String,
}

/// The server URL in `var`; `None` (after saying so) when unset outside CI.
#[allow(dead_code)]
fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} must be set when CI is set: this backend may not be skipped in CI")
        }
        _ => {
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

#[allow(dead_code)]
fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Fixture {
    async fn open(kind: Kind) -> Option<Fixture> {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Arc::new(
                    Store::open_sqlite(&dir.path().join("agentd.db"))
                        .await
                        .expect("open sqlite"),
                );
                Some(Fixture {
                    kind,
                    queue: Arc::new(StoreQueue::new(store.clone())),
                    other: Arc::new(StoreQueue::new(store.clone())),
                    store: Some(store),
                    _dir: Some(dir),
                    url: String::new(),
                    prefix: String::new(),
                })
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let url = server_url("AGENTD_TEST_POSTGRES_URL")?;
                let schema = format!("queue_test_{}", unique());
                let store = Arc::new(
                    Store::open_postgres_in_schema(&url, &schema)
                        .await
                        .expect("open postgres"),
                );
                let second = Arc::new(
                    Store::open_postgres_in_schema(&url, &schema)
                        .await
                        .expect("open postgres again"),
                );
                Some(Fixture {
                    kind,
                    queue: Arc::new(StoreQueue::new(store.clone())),
                    other: Arc::new(StoreQueue::new(second)),
                    store: Some(store),
                    _dir: None,
                    url,
                    prefix: schema,
                })
            }
            #[cfg(feature = "redis")]
            Kind::Redis => {
                let url = server_url("AGENTD_TEST_REDIS_URL")?;
                let prefix = format!("agentd-test:{}", unique());
                let connect = || agentd_queue::RedisQueue::connect(&url, &prefix);
                Some(Fixture {
                    kind,
                    queue: Arc::new(connect().await.expect("connect redis")),
                    other: Arc::new(connect().await.expect("connect redis")),
                    store: None,
                    _dir: None,
                    url: url.clone(),
                    prefix: prefix.clone(),
                })
            }
            #[cfg(feature = "nats")]
            Kind::Nats => {
                let url = server_url("AGENTD_TEST_NATS_URL")?;
                let prefix = format!("agentdtest{}", &unique()[..12]);
                let connect = || agentd_queue::NatsQueue::connect(&url, &prefix);
                Some(Fixture {
                    kind,
                    queue: Arc::new(connect().await.expect("connect nats")),
                    other: Arc::new(connect().await.expect("connect nats")),
                    store: None,
                    _dir: None,
                    url: url.clone(),
                    prefix: prefix.clone(),
                })
            }
        }
    }

    /// Whether a stale token is fenced off also when the new delivery went to another handle
    /// (NATS fences only within one process).
    fn fences_across_handles(&self) -> bool {
        match self.kind {
            Kind::Sqlite => true,
            #[cfg(feature = "postgres")]
            Kind::Postgres => true,
            #[cfg(feature = "redis")]
            Kind::Redis => true,
            #[cfg(feature = "nats")]
            Kind::Nats => false,
        }
    }

    /// Loses every message as a server restarted without its data would.
    async fn wipe(&self) {
        match self.kind {
            Kind::Sqlite => {
                let Some(Store::Sqlite(store)) = self.store.as_deref() else {
                    unreachable!()
                };
                sqlx::query("DELETE FROM queue_messages")
                    .execute(store.pool())
                    .await
                    .unwrap();
                sqlx::query("DELETE FROM queue_dead_letters")
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let Some(Store::Postgres(store)) = self.store.as_deref() else {
                    unreachable!()
                };
                sqlx::query("DELETE FROM queue_messages")
                    .execute(store.pool())
                    .await
                    .unwrap();
                sqlx::query("DELETE FROM queue_dead_letters")
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
            #[cfg(feature = "redis")]
            Kind::Redis => redis_delete_prefix(&self.url, &self.prefix).await,
            #[cfg(feature = "nats")]
            Kind::Nats => nats_delete_streams(&self.url, &self.prefix).await,
        }
    }

    async fn cleanup(&self) {
        match self.kind {
            Kind::Sqlite => {}
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                if let Some(Store::Postgres(store)) = self.store.as_deref() {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.prefix))
                        .execute(store.pool())
                        .await;
                }
            }
            #[cfg(feature = "redis")]
            Kind::Redis => redis_delete_prefix(&self.url, &self.prefix).await,
            #[cfg(feature = "nats")]
            Kind::Nats => nats_delete_streams(&self.url, &self.prefix).await,
        }
    }
}

#[cfg(feature = "redis")]
async fn redis_delete_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[cfg(feature = "nats")]
async fn nats_delete_streams(url: &str, prefix: &str) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for name in [format!("{prefix}_work"), format!("{prefix}_dead")] {
        let _ = js.delete_stream(&name).await;
    }
}

async fn run<F, Fut>(kind: Kind, case: F)
where
    F: FnOnce(Arc<Fixture>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(fixture) = Fixture::open(kind).await else {
        return;
    };
    let fixture = Arc::new(fixture);
    let result = AssertUnwindSafe(case(fixture.clone())).catch_unwind().await;
    fixture.cleanup().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn ticket(n: usize) -> Ticket {
    Ticket {
        run_id: format!("run-{n}"),
        tenant: "acme".into(),
        agent: "agent".into(),
    }
}

fn streams(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn run_ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.ticket.run_id.clone()).collect()
}

async fn enqueue_all(queue: &dyn WorkQueue, stream: &str, range: std::ops::Range<usize>) {
    queue.ensure_stream(stream).await.unwrap();
    for n in range {
        queue.enqueue(stream, &ticket(n)).await.unwrap();
    }
}

// ---- cases ---------------------------------------------------------------------------------

async fn enqueue_claim_ack(fx: Arc<Fixture>) {
    let q = &fx.queue;
    enqueue_all(q.as_ref(), "cpu", 0..1).await;
    let got = q
        .claim(&streams(&["cpu"]), "w1", 10, LONG, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].ticket, ticket(0));
    assert_eq!(got[0].stream, "cpu");
    assert_eq!(got[0].deliveries, 1);
    q.ack(&got[0]).await.unwrap();
    let again = q
        .claim(&streams(&["cpu"]), "w1", 10, LONG, NO_WAIT)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let stats = q.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.dead), (0, 0, 0));
}

async fn fifo_within_a_stream(fx: Arc<Fixture>) {
    let q = &fx.queue;
    enqueue_all(q.as_ref(), "cpu", 0..5).await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let got = q
            .claim(&streams(&["cpu"]), "w1", 2, LONG, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(!got.is_empty());
        seen.extend(run_ids(&got));
    }
    assert_eq!(seen, run_ids_of(0..5));
}

fn run_ids_of(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| ticket(n).run_id).collect()
}

async fn streams_are_drained_in_the_order_given(fx: Arc<Fixture>) {
    let q = &fx.queue;
    enqueue_all(q.as_ref(), "low", 0..2).await;
    enqueue_all(q.as_ref(), "high", 10..12).await;
    let order = streams(&["high", "low"]);
    let first = q.claim(&order, "w1", 1, LONG, NO_WAIT).await.unwrap();
    assert_eq!(run_ids(&first), run_ids_of(10..11));
    assert_eq!(first[0].stream, "high");
    let rest = q.claim(&order, "w1", 3, LONG, NO_WAIT).await.unwrap();
    assert_eq!(
        run_ids(&rest),
        vec!["run-11".to_owned(), "run-0".into(), "run-1".into()]
    );
    assert_eq!(rest[1].stream, "low");
}

async fn claim_respects_max(fx: Arc<Fixture>) {
    let q = &fx.queue;
    enqueue_all(q.as_ref(), "cpu", 0..5).await;
    let two = q
        .claim(&streams(&["cpu"]), "w1", 2, LONG, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(two.len(), 2);
    let rest = q
        .claim(&streams(&["cpu"]), "w1", 10, LONG, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(rest.len(), 3);
    let none = q
        .claim(&streams(&["cpu"]), "w1", 0, LONG, NO_WAIT)
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn unacked_message_is_redelivered_after_the_lease(fx: Arc<Fixture>) {
    enqueue_all(fx.queue.as_ref(), "cpu", 0..1).await;
    let cpu = streams(&["cpu"]);
    let first = fx.queue.claim(&cpu, "w1", 1, SHORT, NO_WAIT).await.unwrap();
    assert_eq!(first.len(), 1);
    let meanwhile = fx.other.claim(&cpu, "w2", 1, SHORT, NO_WAIT).await.unwrap();
    assert!(meanwhile.is_empty(), "delivered twice within the lease");
    let started = Instant::now();
    let again = fx
        .other
        .claim(&cpu, "w2", 1, SHORT, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(run_ids(&again), run_ids_of(0..1));
    assert_eq!(again[0].deliveries, 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    fx.other.ack(&again[0]).await.unwrap();
    let stats = fx.queue.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

async fn extend_keeps_the_message(fx: Arc<Fixture>) {
    enqueue_all(fx.queue.as_ref(), "cpu", 0..1).await;
    let cpu = streams(&["cpu"]);
    let held = fx.queue.claim(&cpu, "w1", 1, SHORT, NO_WAIT).await.unwrap();
    assert_eq!(held.len(), 1);
    for _ in 0..5 {
        tokio::time::sleep(SHORT / 2).await;
        fx.queue.extend(&held[0], SHORT).await.unwrap();
        let stolen = fx.other.claim(&cpu, "w2", 1, SHORT, NO_WAIT).await.unwrap();
        assert!(
            stolen.is_empty(),
            "redelivered although extended: {stolen:?}"
        );
    }
    fx.queue.ack(&held[0]).await.unwrap();
    tokio::time::sleep(SHORT + SHORT / 2).await;
    let after = fx.other.claim(&cpu, "w2", 1, SHORT, NO_WAIT).await.unwrap();
    assert!(after.is_empty(), "{after:?}");
}

async fn nack_delays_redelivery(fx: Arc<Fixture>) {
    enqueue_all(fx.queue.as_ref(), "cpu", 0..1).await;
    let cpu = streams(&["cpu"]);
    let got = fx.queue.claim(&cpu, "w1", 1, LONG, NO_WAIT).await.unwrap();
    let nacked_at = Instant::now();
    let delay = Duration::from_millis(1500);
    fx.queue.nack(&got[0], delay).await.unwrap();
    let early = fx
        .other
        .claim(&cpu, "w2", 1, LONG, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(early.is_empty(), "delivered before the delay: {early:?}");
    let later = fx
        .other
        .claim(&cpu, "w2", 1, LONG, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(run_ids(&later), run_ids_of(0..1));
    // The server's clock decides; allow it to be a little ahead of ours.
    assert!(nacked_at.elapsed() >= delay - Duration::from_millis(100));
    assert_eq!(later[0].deliveries, 2);
    fx.other.ack(&later[0]).await.unwrap();
}

async fn nack_without_delay_is_ready_again(fx: Arc<Fixture>) {
    enqueue_all(fx.queue.as_ref(), "cpu", 0..1).await;
    let cpu = streams(&["cpu"]);
    let got = fx.queue.claim(&cpu, "w1", 1, LONG, NO_WAIT).await.unwrap();
    fx.queue.nack(&got[0], Duration::ZERO).await.unwrap();
    let again = fx
        .other
        .claim(&cpu, "w2", 1, LONG, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(run_ids(&again), run_ids_of(0..1));
    assert_eq!(again[0].deliveries, 2);
}

async fn stale_token_cannot_touch_the_new_delivery(fx: Arc<Fixture>) {
    // Both claims use the same lease: Redis and NATS keep one lease per stream.
    let lease = Duration::from_secs(2);
    enqueue_all(fx.queue.as_ref(), "cpu", 0..1).await;
    let cpu = streams(&["cpu"]);
    let stale = fx.queue.claim(&cpu, "w1", 1, lease, NO_WAIT).await.unwrap();
    let holder = if fx.fences_across_handles() {
        &fx.other
    } else {
        &fx.queue
    };
    let fresh = holder
        .claim(&cpu, "w2", 1, lease, Duration::from_secs(8))
        .await
        .unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].deliveries, 2);
    assert_ne!(stale[0].token, fresh[0].token);
    // The old holder wakes up and acts on its delivery: nothing happens.
    fx.queue.extend(&stale[0], lease).await.unwrap();
    fx.queue.ack(&stale[0]).await.unwrap();
    fx.queue.nack(&stale[0], Duration::ZERO).await.unwrap();
    fx.queue.dead_letter(&stale[0], "stale").await.unwrap();
    holder.extend(&fresh[0], lease).await.unwrap();
    let stats = fx.queue.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.dead), (0, 1, 0));
    let nothing = fx.queue.claim(&cpu, "w3", 1, lease, NO_WAIT).await.unwrap();
    assert!(nothing.is_empty(), "{nothing:?}");
    holder.ack(&fresh[0]).await.unwrap();
    let stats = fx.queue.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

async fn concurrent_claimers_get_each_message_once(fx: Arc<Fixture>) {
    const PRODUCERS: usize = 4;
    const EACH: usize = 50;
    const TOTAL: usize = PRODUCERS * EACH;
    fx.queue.ensure_stream("cpu").await.unwrap();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let queue = if p % 2 == 0 {
            fx.queue.clone()
        } else {
            fx.other.clone()
        };
        producers.push(tokio::spawn(async move {
            for n in p * EACH..(p + 1) * EACH {
                queue.enqueue("cpu", &ticket(n)).await.unwrap();
            }
        }));
    }
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut consumers = Vec::new();
    for c in 0..4 {
        let queue = if c % 2 == 0 {
            fx.queue.clone()
        } else {
            fx.other.clone()
        };
        let seen = seen.clone();
        consumers.push(tokio::spawn(async move {
            let cpu = streams(&["cpu"]);
            let consumer = format!("w{c}");
            loop {
                let total: usize = seen.lock().unwrap().values().sum();
                if total >= TOTAL || Instant::now() > deadline {
                    break;
                }
                let got = queue
                    .claim(&cpu, &consumer, 5, LONG, Duration::from_millis(300))
                    .await
                    .unwrap();
                for delivery in got {
                    assert_eq!(delivery.deliveries, 1, "{delivery:?}");
                    *seen
                        .lock()
                        .unwrap()
                        .entry(delivery.ticket.run_id.clone())
                        .or_default() += 1;
                    queue.ack(&delivery).await.unwrap();
                }
            }
        }));
    }
    for task in producers.into_iter().chain(consumers) {
        task.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), TOTAL, "some messages were never delivered");
    assert!(
        seen.values().all(|&n| n == 1),
        "duplicates: {:?}",
        seen.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
}

async fn waiting_claim_returns_when_a_message_arrives(fx: Arc<Fixture>) {
    fx.queue.ensure_stream("cpu").await.unwrap();
    let wait = Duration::from_secs(8);
    let queue = fx.queue.clone();
    let started = Instant::now();
    let claimer = tokio::spawn(async move {
        queue
            .claim(&streams(&["gpu", "cpu"]), "w1", 1, LONG, wait)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // From the other handle: a wake-up must cross connections (processes).
    fx.other.enqueue("cpu", &ticket(7)).await.unwrap();
    let got = claimer.await.unwrap();
    assert_eq!(run_ids(&got), run_ids_of(7..8));
    assert!(started.elapsed() < wait, "took {:?}", started.elapsed());
    // And with nothing coming, it returns empty after about `wait`.
    let short = Duration::from_millis(300);
    let started = Instant::now();
    let none = fx
        .queue
        .claim(&streams(&["cpu"]), "w1", 1, LONG, short)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(started.elapsed() >= short - Duration::from_millis(50));
}

async fn dead_letters_can_be_listed_retried_and_dropped(fx: Arc<Fixture>) {
    let q = &fx.queue;
    let cpu = streams(&["cpu"]);
    enqueue_all(q.as_ref(), "cpu", 0..2).await;
    let got = q.claim(&cpu, "w1", 2, LONG, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 2);
    let before = agentd_queue_now_ms();
    q.dead_letter(&got[0], "tool exploded").await.unwrap();
    q.dead_letter(&got[1], "again").await.unwrap();
    let dead = q.dead_letters("cpu", 10).await.unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].ticket, ticket(0));
    assert_eq!(dead[0].reason, "tool exploded");
    assert_eq!(dead[0].deliveries, 1);
    assert_eq!(dead[0].stream, "cpu");
    assert!(
        dead[0].at_ms >= before - 1_000,
        "{} < {before}",
        dead[0].at_ms
    );
    assert_eq!(q.dead_letters("cpu", 1).await.unwrap().len(), 1);
    assert!(q.dead_letters("gpu", 10).await.unwrap().is_empty());
    let stats = q.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.dead), (0, 0, 2));
    // Retry puts it back, as new.
    assert!(!q.retry_dead("gpu", &dead[0].id).await.unwrap());
    assert!(q.retry_dead("cpu", &dead[0].id).await.unwrap());
    assert!(!q.retry_dead("cpu", &dead[0].id).await.unwrap());
    let back = q
        .claim(&cpu, "w1", 1, LONG, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(run_ids(&back), run_ids_of(0..1));
    assert_eq!(back[0].deliveries, 1);
    q.ack(&back[0]).await.unwrap();
    // Drop removes it.
    assert!(q.drop_dead("cpu", &dead[1].id).await.unwrap());
    assert!(!q.drop_dead("cpu", &dead[1].id).await.unwrap());
    assert!(!q.drop_dead("cpu", "no-such-id").await.unwrap());
    assert!(q.dead_letters("cpu", 10).await.unwrap().is_empty());
    assert_eq!(q.stats("cpu").await.unwrap().dead, 0);
}

fn agentd_queue_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn stats_count_waiting_and_in_flight(fx: Arc<Fixture>) {
    let q = &fx.queue;
    enqueue_all(q.as_ref(), "cpu", 0..3).await;
    let empty = q.stats("idle").await.unwrap();
    assert_eq!(empty, Default::default());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = q
        .claim(&streams(&["cpu"]), "w1", 1, LONG, NO_WAIT)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let stats = q.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.dead), (2, 1, 0));
    assert!(
        (100..60_000).contains(&stats.oldest_age_ms),
        "{}",
        stats.oldest_age_ms
    );
    q.ack(&got[0]).await.unwrap();
    let stats = q.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (2, 0));
}

async fn survives_its_data_being_wiped(fx: Arc<Fixture>) {
    let cpu = streams(&["cpu"]);
    enqueue_all(fx.queue.as_ref(), "cpu", 0..2).await;
    let held = fx.queue.claim(&cpu, "w1", 1, LONG, NO_WAIT).await.unwrap();
    assert_eq!(held.len(), 1);
    fx.wipe().await;
    // The lost delivery's holder finishing must not fail.
    fx.queue.ack(&held[0]).await.unwrap();
    fx.queue.enqueue("cpu", &ticket(5)).await.unwrap();
    let got = fx
        .queue
        .claim(&cpu, "w1", 5, LONG, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(run_ids(&got), run_ids_of(5..6));
    fx.queue.ack(&got[0]).await.unwrap();
    // Also when the wipe happens while nothing is held, and through the other handle.
    fx.wipe().await;
    fx.other.enqueue("cpu", &ticket(6)).await.unwrap();
    let got = fx
        .other
        .claim(&cpu, "w2", 5, LONG, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(run_ids(&got), run_ids_of(6..7));
    fx.other.ack(&got[0]).await.unwrap();
    let stats = fx.queue.stats("cpu").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}

// ---- one test per case and backend ---------------------------------------------------------

macro_rules! backend {
    ($module:ident, $kind:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    run($kind, super::$case).await;
                }
            )*
        }
    };
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        backend!(sqlite, Kind::Sqlite, [$($case),*]);
        #[cfg(feature = "postgres")]
        backend!(postgres, Kind::Postgres, [$($case),*]);
        #[cfg(feature = "redis")]
        backend!(redis_streams, Kind::Redis, [$($case),*]);
        #[cfg(feature = "nats")]
        backend!(nats_jetstream, Kind::Nats, [$($case),*]);
    };
}

suite!(
    enqueue_claim_ack,
    fifo_within_a_stream,
    streams_are_drained_in_the_order_given,
    claim_respects_max,
    unacked_message_is_redelivered_after_the_lease,
    extend_keeps_the_message,
    nack_delays_redelivery,
    nack_without_delay_is_ready_again,
    stale_token_cannot_touch_the_new_delivery,
    concurrent_claimers_get_each_message_once,
    waiting_claim_returns_when_a_message_arrives,
    dead_letters_can_be_listed_retried_and_dropped,
    stats_count_waiting_and_in_flight,
    survives_its_data_being_wiped,
);
