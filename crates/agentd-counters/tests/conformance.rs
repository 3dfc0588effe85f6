//! The `Counters` and `ResponseCache` conformance suite: every case in `cases` runs against
//! the in-process backend and against Redis.
//!
//! Redis runs when `AGENTD_TEST_REDIS_URL` is set (e.g. `redis://127.0.0.1:6379`). Each test
//! uses its own random key prefix, so parallel tests and reruns never see each other's keys,
//! and deletes every key under it when it ends, even when it fails. Without the variable the
//! Redis tests print `skipped: …` and pass, unless `CI` is set: then they fail, so CI cannot
//! silently skip them.
//!
//! Expiry is tested with real ~300 ms ttls and polling, because Redis keeps its own clock.

use agentd_core::{Charge, CounterError, Counters, Reserve, ResponseCache};
use agentd_counters::{MemoryCache, MemoryCounters, RedisCache, RedisCounters};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REDIS_URL_VAR: &str = "AGENTD_TEST_REDIS_URL";
/// Long enough that a value written is still there when read back right away on a busy
/// machine, short enough that waiting for it to expire keeps the suite fast.
const SHORT_TTL: Duration = Duration::from_millis(300);
const LONG_TTL: Duration = Duration::from_secs(60);
/// How long `eventually` polls before failing: many times `SHORT_TTL`, far below `LONG_TTL`,
/// so a ttl that was wrongly extended fails the test instead of passing late.
const POLL_DEADLINE: Duration = Duration::from_secs(5);
/// Bytes the in-process cache may hold in the tests that do not test the bound.
const MEMORY_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// One backend under test. Redis handles are opened per call so a test can act as several
/// replicas; in-process handles all share one instance, as tasks of one process do.
enum Fixture {
    Memory {
        counters: Arc<MemoryCounters>,
        cache: MemoryCache,
    },
    Redis(RedisPrefix),
}

impl Fixture {
    fn memory() -> Fixture {
        Fixture::Memory {
            counters: Arc::new(MemoryCounters::new()),
            cache: MemoryCache::new(MEMORY_CACHE_BYTES),
        }
    }

    /// `None` (after saying so on stderr) when Redis is not configured and we are not in CI.
    fn redis() -> Option<Fixture> {
        redis_url().map(|url| {
            Fixture::Redis(RedisPrefix {
                url,
                prefix: format!("agentd-test:{}", uuid::Uuid::new_v4().simple()),
            })
        })
    }

    /// A handle on the counters: for Redis a new, independent connection (another replica).
    async fn counters(&self) -> Arc<dyn Counters> {
        match self {
            Fixture::Memory { counters, .. } => counters.clone(),
            Fixture::Redis(redis) => Arc::new(
                RedisCounters::connect(&redis.url, &redis.prefix)
                    .await
                    .expect("connect redis counters"),
            ),
        }
    }

    async fn cache(&self) -> Arc<dyn ResponseCache> {
        match self {
            Fixture::Memory { cache, .. } => Arc::new(cache.clone()),
            Fixture::Redis(redis) => Arc::new(
                RedisCache::connect(&redis.url, &redis.prefix)
                    .await
                    .expect("connect redis cache"),
            ),
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Fixture::Memory { .. } => "memory",
            Fixture::Redis(_) => "redis",
        }
    }
}

fn redis_url() -> Option<String> {
    match std::env::var(REDIS_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{REDIS_URL_VAR} must be set when CI is set: the Redis suite may not be skipped in CI")
        }
        _ => {
            eprintln!("skipped: {REDIS_URL_VAR} not set");
            None
        }
    }
}

/// A test's key prefix on the Redis server; its keys are deleted on drop (also on panic).
struct RedisPrefix {
    url: String,
    prefix: String,
}

impl RedisPrefix {
    /// A plain connection behind the backend's back, to plant or inspect raw keys.
    fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .expect("raw redis connection")
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        // A synchronous connection: `Drop` cannot await. The prefix is a uuid, so the pattern
        // matches this test's keys only.
        let cleaned = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query(&mut conn)?;
                if keys.is_empty() {
                    return Ok(());
                }
                redis::cmd("DEL")
                    .arg(keys)
                    .query::<i64>(&mut conn)
                    .map(drop)
            });
        if let Err(err) = cleaned {
            eprintln!("could not delete test keys under {}: {err}", self.prefix);
        }
    }
}

fn charge(key: &str, amount: i64, limit: i64) -> Charge {
    Charge {
        key: key.to_owned(),
        amount,
        limit,
        ttl: None,
    }
}

fn charge_ttl(key: &str, amount: i64, limit: i64, ttl: Duration) -> Charge {
    Charge {
        ttl: Some(ttl),
        ..charge(key, amount, limit)
    }
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

async fn value(counters: &dyn Counters, key: &str) -> i64 {
    counters.get(&keys(&[key])).await.unwrap()[0]
}

/// Whether `key` does not exist at all (a counter at 0 still exists). Creates it, so call it
/// last for a key.
async fn absent(counters: &dyn Counters, key: &str) -> bool {
    counters.init(key, 0, Some(LONG_TTL)).await.unwrap()
}

/// Polls `check` until it holds; fails the test after [`POLL_DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            started.elapsed() < POLL_DEADLINE,
            "still not true after {POLL_DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn expires(counters: &dyn Counters, key: &str) {
    eventually(&format!("counter {key} expired"), || async {
        value(counters, key).await == 0
    })
    .await;
}

/// The cases, each `async fn(&Fixture)`; the macro below runs every one on every backend.
mod cases {
    use super::*;

    pub async fn backend_is_named(fx: &Fixture) {
        assert_eq!(fx.counters().await.backend(), fx.backend());
        assert_eq!(fx.cache().await.backend(), fx.backend());
    }

    pub async fn get_of_missing_keys_is_zero(fx: &Fixture) {
        let c = fx.counters().await;
        assert_eq!(c.get(&[]).await.unwrap(), Vec::<i64>::new());
        assert_eq!(c.get(&keys(&["nope", "nada"])).await.unwrap(), [0, 0]);
        c.adjust(&[("some".into(), None)], 3).await.unwrap();
        assert_eq!(
            c.get(&keys(&["nope", "some", "nada"])).await.unwrap(),
            [0, 3, 0]
        );
    }

    pub async fn reserve_admits_and_returns_values_in_order(fx: &Fixture) {
        let c = fx.counters().await;
        assert_eq!(c.reserve(&[]).await.unwrap(), Reserve::Admitted(vec![]));
        let charges = [charge("a", 3, 10), charge("b", 4, 10)];
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Admitted(vec![3, 4])
        );
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Admitted(vec![6, 8])
        );
        assert_eq!(c.get(&keys(&["b", "a"])).await.unwrap(), [8, 6]);
    }

    pub async fn reserve_is_all_or_nothing(fx: &Fixture) {
        let c = fx.counters().await;
        assert!(c.init("full", 48, None).await.unwrap());
        c.reserve(&[charge("used", 5, 100)]).await.unwrap();

        // The second charge has no room: the first is not applied, not even created.
        let charges = [charge("fresh", 10, 100), charge("full", 5, 50)];
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Refused {
                index: 1,
                current: 48
            }
        );
        // The first failing charge is reported, even with later ones failing too.
        let charges = [
            charge("used", 1, 100),
            charge("full", 3, 50),
            charge("full", 1, 10),
        ];
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Refused {
                index: 1,
                current: 48
            }
        );
        let charges = [charge("used", 96, 100), charge("fresh", 1, 100)];
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Refused {
                index: 0,
                current: 5
            }
        );
        assert_eq!(
            c.get(&keys(&["used", "full", "fresh"])).await.unwrap(),
            [5, 48, 0]
        );
        assert!(
            absent(&*c, "fresh").await,
            "a refused reserve created a key"
        );
    }

    pub async fn limit_is_exactly_reachable(fx: &Fixture) {
        let c = fx.counters().await;
        let admitted = c.reserve(&[charge("k", 4, 10)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![4]));
        let admitted = c.reserve(&[charge("k", 6, 10)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![10]));
        let refused = c.reserve(&[charge("k", 1, 10)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 10
            }
        );
        // Nothing more to add always fits while the counter is at its limit.
        let admitted = c.reserve(&[charge("k", 0, 10)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![10]));
        assert_eq!(value(&*c, "k").await, 10);
    }

    pub async fn limit_zero_and_amount_zero(fx: &Fixture) {
        let c = fx.counters().await;
        // 0 + 0 <= 0: admitted, and the counter exists at 0.
        let admitted = c.reserve(&[charge("z", 0, 0)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![0]));
        assert!(!c.init("z", 99, None).await.unwrap(), "z was not created");
        assert_eq!(value(&*c, "z").await, 0);
        // A limit of 0 admits nothing positive.
        let refused = c.reserve(&[charge("z", 1, 0)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 0
            }
        );
        let refused = c.reserve(&[charge("missing", 1, 0)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 0
            }
        );
        // A counter already over its limit (the limit was lowered) refuses even amount 0.
        c.init("over", 5, None).await.unwrap();
        let refused = c.reserve(&[charge("over", 0, 3)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 5
            }
        );
        // A negative amount (a refund through reserve) is checked like any other.
        let refused = c.reserve(&[charge("over", -1, 3)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 5
            }
        );
        let admitted = c.reserve(&[charge("over", -2, 3)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![3]));
        assert_eq!(
            c.get(&keys(&["z", "missing", "over"])).await.unwrap(),
            [0, 0, 3]
        );
    }

    pub async fn key_named_twice_counts_both_charges(fx: &Fixture) {
        let c = fx.counters().await;
        // Each charge fits alone, both together do not: refused at the second, nothing applied.
        let charges = [charge("dup", 6, 10), charge("dup", 6, 10)];
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Refused {
                index: 1,
                current: 6
            }
        );
        assert_eq!(value(&*c, "dup").await, 0);
        let charges = [charge("dup", 4, 10), charge("dup", 5, 10)];
        assert_eq!(
            c.reserve(&charges).await.unwrap(),
            Reserve::Admitted(vec![4, 9])
        );
        assert_eq!(value(&*c, "dup").await, 9);
    }

    pub async fn adjust_adds_subtracts_and_creates(fx: &Fixture) {
        let c = fx.counters().await;
        assert_eq!(c.adjust(&[], 5).await.unwrap(), Vec::<i64>::new());
        c.reserve(&[charge("held", 100, 1000)]).await.unwrap();
        // Settling a reservation to the real amount: down by 30.
        let both = [("held".to_owned(), None), ("missing".to_owned(), None)];
        assert_eq!(c.adjust(&both, -30).await.unwrap(), [70, -30]);
        assert_eq!(c.adjust(&both, 45).await.unwrap(), [115, 15]);
        // Unconditional: no limit applies, and a key named twice is adjusted twice.
        let twice = [("held".to_owned(), None), ("held".to_owned(), None)];
        assert_eq!(c.adjust(&twice, 1).await.unwrap(), [116, 117]);
        assert_eq!(c.get(&keys(&["held", "missing"])).await.unwrap(), [117, 15]);
        // Adjusted values are what the next reservation is checked against.
        let refused = c.reserve(&[charge("held", 1, 117)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 117
            }
        );
    }

    pub async fn counters_expire_after_their_ttl(fx: &Fixture) {
        let c = fx.counters().await;
        let admitted = c
            .reserve(&[
                charge_ttl("window", 5, 10, SHORT_TTL),
                charge("forever", 5, 10),
            ])
            .await
            .unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![5, 5]));
        let created = c
            .adjust(&[("adjusted".to_owned(), Some(SHORT_TTL))], 7)
            .await
            .unwrap();
        assert_eq!(created, [7]);
        assert!(c.init("rebuilt", 9, Some(SHORT_TTL)).await.unwrap());
        assert_eq!(
            c.get(&keys(&["window", "adjusted", "rebuilt"]))
                .await
                .unwrap(),
            [5, 7, 9]
        );

        expires(&*c, "window").await;
        expires(&*c, "adjusted").await;
        expires(&*c, "rebuilt").await;
        assert_eq!(
            value(&*c, "forever").await,
            5,
            "a counter without ttl expired"
        );
        // The next window starts from zero: the whole limit is available again.
        let admitted = c
            .reserve(&[charge_ttl("window", 10, 10, SHORT_TTL)])
            .await
            .unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![10]));
        assert!(
            c.init("rebuilt", 1, None).await.unwrap(),
            "init after expiry"
        );
    }

    pub async fn ttl_counts_from_creation_and_is_never_extended(fx: &Fixture) {
        let c = fx.counters().await;
        c.reserve(&[charge_ttl("w", 1, 100, SHORT_TTL)])
            .await
            .unwrap();
        // Later writes with a long ttl must not move the end of the window.
        c.reserve(&[charge_ttl("w", 1, 100, LONG_TTL)])
            .await
            .unwrap();
        let adjusted = c
            .adjust(&[("w".to_owned(), Some(LONG_TTL))], 1)
            .await
            .unwrap();
        assert_eq!(adjusted, [3]);
        expires(&*c, "w").await;
    }

    pub async fn ttl_is_given_to_a_counter_that_had_none(fx: &Fixture) {
        let c = fx.counters().await;
        for key in ["by-adjust", "by-reserve", "stays"] {
            assert!(c.init(key, 5, None).await.unwrap());
        }
        let adjusted = c
            .adjust(&[("by-adjust".to_owned(), Some(SHORT_TTL))], 1)
            .await
            .unwrap();
        assert_eq!(adjusted, [6]);
        let admitted = c
            .reserve(&[charge_ttl("by-reserve", 1, 100, SHORT_TTL)])
            .await
            .unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![6]));
        let adjusted = c.adjust(&[("stays".to_owned(), None)], 1).await.unwrap();
        assert_eq!(adjusted, [6]);

        expires(&*c, "by-adjust").await;
        expires(&*c, "by-reserve").await;
        assert_eq!(value(&*c, "stays").await, 6);
    }

    pub async fn init_sets_only_when_absent(fx: &Fixture) {
        let c = fx.counters().await;
        assert!(c.init("k", 42, None).await.unwrap());
        assert!(!c.init("k", 7, None).await.unwrap());
        assert_eq!(value(&*c, "k").await, 42);
        // A rebuilt counter is what reservations are checked against.
        let refused = c.reserve(&[charge("k", 10, 50)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: 42
            }
        );
        // A counter another replica already created by reserving is not overwritten.
        c.reserve(&[charge("live", 3, 10)]).await.unwrap();
        assert!(!c.init("live", 1000, None).await.unwrap());
        assert_eq!(value(&*c, "live").await, 3);
        assert!(c.init("negative", -12, None).await.unwrap());
        assert_eq!(value(&*c, "negative").await, -12);
    }

    pub async fn once_is_true_exactly_once(fx: &Fixture) {
        let c = fx.counters().await;
        assert!(c.once("alert:80", LONG_TTL).await.unwrap());
        assert!(!c.once("alert:80", LONG_TTL).await.unwrap());
        assert!(!c.once("alert:80", LONG_TTL).await.unwrap());
        assert!(c.once("alert:90", LONG_TTL).await.unwrap());

        // Racing callers on two replicas: exactly one wins.
        let replicas = [fx.counters().await, fx.counters().await];
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let c = replicas[i % 2].clone();
                tokio::spawn(async move { c.once("alert:100", LONG_TTL).await.unwrap() })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap());
        }
        assert_eq!(winners, 1);
    }

    pub async fn once_is_true_again_after_its_ttl(fx: &Fixture) {
        let c = fx.counters().await;
        assert!(c.once("alert", SHORT_TTL).await.unwrap());
        assert!(!c.once("alert", SHORT_TTL).await.unwrap());
        eventually("once() true again after its ttl", || async {
            c.once("alert", SHORT_TTL).await.unwrap()
        })
        .await;
        assert!(!c.once("alert", SHORT_TTL).await.unwrap());
    }

    /// The reason `reserve` is one atomic step: 400 concurrent requests of 7 against a limit of
    /// 1000, half through each of two replicas, admit exactly floor(1000 / 7) = 142.
    pub async fn concurrent_reserves_admit_exactly_what_fits(fx: &Fixture) {
        const REQUESTS: usize = 400;
        let replicas = [fx.counters().await, fx.counters().await];
        let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let c = replicas[i % 2].clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    c.reserve(&[charge("race", 7, 1000)]).await.unwrap()
                })
            })
            .collect();
        let mut admitted = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Reserve::Admitted(values) => admitted.extend(values),
                Reserve::Refused { index, current } => {
                    assert_eq!((index, current), (0, 994));
                }
            }
        }
        admitted.sort_unstable();
        let expected: Vec<i64> = (1..=142).map(|n| n * 7).collect();
        assert_eq!(
            admitted, expected,
            "each admitted request saw its own value"
        );
        assert_eq!(value(&*replicas[0], "race").await, 994);
        assert_eq!(value(&*replicas[1], "race").await, 994);
    }

    /// A refusal by one counter must leave the others untouched also under contention: the
    /// rate limit (100) binds before the budget (142 × 7), so the budget ends at exactly 700.
    pub async fn concurrent_reserves_never_apply_partially(fx: &Fixture) {
        const REQUESTS: usize = 400;
        let replicas = [fx.counters().await, fx.counters().await];
        let start = Arc::new(tokio::sync::Barrier::new(REQUESTS));
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|i| {
                let c = replicas[i % 2].clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    let charges = [
                        charge_ttl("budget", 7, 1000, LONG_TTL),
                        charge_ttl("rpm", 1, 100, LONG_TTL),
                    ];
                    c.reserve(&charges).await.unwrap()
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Reserve::Admitted(values) => {
                    assert_eq!(values[0], values[1] * 7, "{values:?}");
                    admitted += 1;
                }
                Reserve::Refused { index, current } => {
                    assert_eq!((index, current), (1, 100));
                }
            }
        }
        assert_eq!(admitted, 100);
        let values = replicas[1].get(&keys(&["budget", "rpm"])).await.unwrap();
        assert_eq!(values, [700, 100]);
    }

    /// Budgets in micro-dollars exceed 32 bits quickly; they must stay exact.
    pub async fn large_values_are_exact(fx: &Fixture) {
        let c = fx.counters().await;
        let limit = 10_000_000_000_000; // $10M in micro-dollars
        let admitted = c
            .reserve(&[charge("big", 5_000_000_000_001, limit)])
            .await
            .unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![5_000_000_000_001]));
        let admitted = c
            .reserve(&[charge("big", 4_999_999_999_999, limit)])
            .await
            .unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![limit]));
        let refused = c.reserve(&[charge("big", 1, limit)]).await.unwrap();
        assert_eq!(
            refused,
            Reserve::Refused {
                index: 0,
                current: limit
            }
        );
        let adjusted = c.adjust(&[("big".to_owned(), None)], -1).await.unwrap();
        assert_eq!(adjusted, [limit - 1]);
        // i64::MAX as "no limit" works.
        let admitted = c.reserve(&[charge("big", 1, i64::MAX)]).await.unwrap();
        assert_eq!(admitted, Reserve::Admitted(vec![limit]));
    }

    pub async fn cache_roundtrip_is_byte_identical(fx: &Fixture) {
        let cache = fx.cache().await;
        assert_eq!(cache.get("missing").await, None);
        // Every byte value, invalid UTF-8 included, and a body of some size.
        let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        cache.put("resp", Bytes::from(body.clone()), LONG_TTL).await;
        assert_eq!(cache.get("resp").await.as_deref(), Some(body.as_slice()));
        cache.put("empty", Bytes::new(), LONG_TTL).await;
        assert_eq!(cache.get("empty").await, Some(Bytes::new()));
        assert_eq!(cache.get("other").await, None);
    }

    pub async fn cache_put_replaces_value_and_ttl(fx: &Fixture) {
        let cache = fx.cache().await;
        cache.put("k", Bytes::from_static(b"first"), LONG_TTL).await;
        cache
            .put("k", Bytes::from_static(b"second"), SHORT_TTL)
            .await;
        assert_eq!(cache.get("k").await, Some(Bytes::from_static(b"second")));
        eventually("replaced cache entry expired with its new ttl", || async {
            cache.get("k").await.is_none()
        })
        .await;
        // A zero ttl means "do not keep", also over an existing entry.
        cache.put("z", Bytes::from_static(b"kept"), LONG_TTL).await;
        cache
            .put("z", Bytes::from_static(b"gone"), Duration::ZERO)
            .await;
        assert_eq!(cache.get("z").await, None);
    }

    pub async fn cache_entries_expire(fx: &Fixture) {
        let cache = fx.cache().await;
        cache
            .put("short", Bytes::from_static(b"a"), SHORT_TTL)
            .await;
        cache.put("long", Bytes::from_static(b"b"), LONG_TTL).await;
        assert_eq!(cache.get("short").await, Some(Bytes::from_static(b"a")));
        eventually("cache entry expired", || async {
            cache.get("short").await.is_none()
        })
        .await;
        assert_eq!(cache.get("long").await, Some(Bytes::from_static(b"b")));
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(&super::Fixture::memory()).await;
                }
            )*
        }

        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(fx) = super::Fixture::redis() else {
                        return;
                    };
                    super::cases::$case(&fx).await;
                }
            )*
        }
    };
}

conformance!(
    backend_is_named,
    get_of_missing_keys_is_zero,
    reserve_admits_and_returns_values_in_order,
    reserve_is_all_or_nothing,
    limit_is_exactly_reachable,
    limit_zero_and_amount_zero,
    key_named_twice_counts_both_charges,
    adjust_adds_subtracts_and_creates,
    counters_expire_after_their_ttl,
    ttl_counts_from_creation_and_is_never_extended,
    ttl_is_given_to_a_counter_that_had_none,
    init_sets_only_when_absent,
    once_is_true_exactly_once,
    once_is_true_again_after_its_ttl,
    concurrent_reserves_admit_exactly_what_fits,
    concurrent_reserves_never_apply_partially,
    large_values_are_exact,
    cache_roundtrip_is_byte_identical,
    cache_put_replaces_value_and_ttl,
    cache_entries_expire,
);

// ---- In-process only ----

#[tokio::test]
async fn memory_cache_stays_within_its_byte_bound() {
    const MAX_BYTES: u64 = 64 * 1024;
    let cache = MemoryCache::new(MAX_BYTES);
    // 1 MiB of bodies, 16 times the bound.
    for i in 0..256 {
        let body = Bytes::from(vec![u8::try_from(i % 251).unwrap(); 4096]);
        cache.put(&format!("entry:{i:03}"), body, LONG_TTL).await;
    }
    cache.run_pending_tasks().await;
    let size = cache.weighted_size();
    assert!(size <= MAX_BYTES, "holds {size} bytes, bound {MAX_BYTES}");
    assert!(size > 0, "evicted everything");
    let mut hits = 0;
    for i in 0..256 {
        if let Some(body) = cache.get(&format!("entry:{i:03}")).await {
            assert_eq!(body.len(), 4096);
            assert!(body.iter().all(|b| usize::from(*b) == i % 251));
            hits += 1;
        }
    }
    // Each entry weighs 4096 + 9 bytes, so at most 15 fit.
    assert!((1..=15).contains(&hits), "{hits} entries kept");
    assert_eq!(cache.entry_count(), hits);

    // One body larger than the whole bound is not kept.
    cache
        .put("huge", Bytes::from(vec![0u8; 100_000]), LONG_TTL)
        .await;
    cache.run_pending_tasks().await;
    assert_eq!(cache.get("huge").await, None);
    assert!(cache.weighted_size() <= MAX_BYTES);
}

// ---- Redis only ----

#[tokio::test]
async fn redis_unreachable_server_is_unavailable() {
    // Nothing listens on port 1, so this needs no server.
    let err = RedisCounters::connect("redis://127.0.0.1:1", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, CounterError::Unavailable(_)), "{err:?}");
    let err = RedisCache::connect("redis://127.0.0.1:1", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, CounterError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn redis_invalid_url_is_a_backend_error_without_the_url() {
    let err = RedisCounters::connect("http://user:s3cret@127.0.0.1:6379", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, CounterError::Backend(_)), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[tokio::test]
async fn redis_keys_are_prefixed_and_prefixes_isolate() {
    let (Some(Fixture::Redis(a)), Some(Fixture::Redis(b))) = (Fixture::redis(), Fixture::redis())
    else {
        return;
    };
    let in_a = RedisCounters::connect(&a.url, &a.prefix).await.unwrap();
    let in_b = RedisCounters::connect(&b.url, &b.prefix).await.unwrap();
    in_a.reserve(&[charge("shared-name", 5, 10)]).await.unwrap();
    assert_eq!(value(&in_b, "shared-name").await, 0);
    let admitted = in_b
        .reserve(&[charge("shared-name", 10, 10)])
        .await
        .unwrap();
    assert_eq!(admitted, Reserve::Admitted(vec![10]));

    let raw: Option<i64> = redis::cmd("GET")
        .arg(format!("{}:shared-name", a.prefix))
        .query(&mut a.raw())
        .unwrap();
    assert_eq!(raw, Some(5));
    let cache = RedisCache::connect(&a.url, &a.prefix).await.unwrap();
    cache.put("c", Bytes::from_static(b"body"), LONG_TTL).await;
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{}:c", a.prefix))
        .query(&mut a.raw())
        .unwrap();
    assert_eq!(raw.as_deref(), Some(&b"body"[..]));
}

#[tokio::test]
async fn redis_reserve_and_adjust_sets_ttl_in_redis_only_on_creation() {
    let Some(Fixture::Redis(fx)) = Fixture::redis() else {
        return;
    };
    let c = RedisCounters::connect(&fx.url, &fx.prefix).await.unwrap();
    c.reserve(&[charge_ttl("w", 1, 10, Duration::from_secs(30))])
        .await
        .unwrap();
    c.reserve(&[charge_ttl("w", 1, 10, Duration::from_secs(3000))])
        .await
        .unwrap();
    c.adjust(&[("w".to_owned(), Some(Duration::from_secs(3000)))], 1)
        .await
        .unwrap();
    c.reserve(&[charge("no-ttl", 1, 10)]).await.unwrap();
    let pttl = |key: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(format!("{}:{key}", fx.prefix))
            .query(&mut fx.raw())
            .unwrap()
    };
    let window = pttl("w");
    assert!((29_000..=30_000).contains(&window), "pttl {window}");
    assert_eq!(pttl("no-ttl"), -1);
}

#[tokio::test]
async fn redis_non_integer_counter_fails_without_partial_update() {
    let Some(Fixture::Redis(fx)) = Fixture::redis() else {
        return;
    };
    let c = RedisCounters::connect(&fx.url, &fx.prefix).await.unwrap();
    redis::cmd("SET")
        .arg(format!("{}:garbage", fx.prefix))
        .arg("12abc")
        .query::<()>(&mut fx.raw())
        .unwrap();
    let err = c
        .reserve(&[charge("ok", 1, 10), charge("garbage", 1, 100)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, CounterError::Backend(ref m) if m.contains("integer")),
        "{err:?}"
    );
    let keys_ = [("ok".to_owned(), None), ("garbage".to_owned(), None)];
    let err = c.adjust(&keys_, 1).await.unwrap_err();
    assert!(matches!(err, CounterError::Backend(_)), "{err:?}");
    let err = c.get(&keys(&["ok", "garbage"])).await.unwrap_err();
    assert!(matches!(err, CounterError::Backend(_)), "{err:?}");
    assert_eq!(value(&c, "ok").await, 0);
    assert!(absent(&c, "ok").await, "a failed call created a key");
}

#[tokio::test]
async fn redis_scripts_are_reloaded_after_script_flush() {
    let Some(Fixture::Redis(fx)) = Fixture::redis() else {
        return;
    };
    let c = RedisCounters::connect(&fx.url, &fx.prefix).await.unwrap();
    c.reserve(&[charge("k", 1, 10)]).await.unwrap();
    // As after a Redis restart. Other tests running now reload their scripts the same way.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query::<()>(&mut fx.raw())
        .unwrap();
    assert_eq!(
        c.reserve(&[charge("k", 1, 10)]).await.unwrap(),
        Reserve::Admitted(vec![2])
    );
    assert_eq!(c.adjust(&[("k".to_owned(), None)], 1).await.unwrap(), [3]);
}

#[tokio::test]
async fn redis_cache_errors_are_misses() {
    let Some(Fixture::Redis(fx)) = Fixture::redis() else {
        return;
    };
    let cache = RedisCache::connect(&fx.url, &fx.prefix).await.unwrap();
    // A key of the wrong type makes GET fail with WRONGTYPE: a miss, not an error or panic.
    redis::cmd("HSET")
        .arg(format!("{}:wrong", fx.prefix))
        .arg("field")
        .arg("value")
        .query::<()>(&mut fx.raw())
        .unwrap();
    assert_eq!(cache.get("wrong").await, None);
    assert_eq!(cache.get("wrong").await, None);
    // The cache keeps working for other keys after errors.
    cache.put("fine", Bytes::from_static(b"ok"), LONG_TTL).await;
    assert_eq!(cache.get("fine").await, Some(Bytes::from_static(b"ok")));
}
