//! KEDA ScaledObjects: one per worker pool, built from the pool's schedule so that KEDA and
//! agentd's own `agentd_pool_desired_workers{pool}` agree where KEDA can express it.
//!
//! - `minReplicaCount` / `maxReplicaCount`: the off-hours minimum, and the larger of the two
//!   maxima. KEDA has ONE maximum at all hours: the off-hours maximum exists only in agentd's
//!   desired count, which KEDA follows only on the store queue (its trigger *is* that count);
//!   on Redis and NATS a backlog off hours can take the pool up to the business-hours maximum.
//!   A persistent pool never goes below its off-hours maximum.
//! - Work: the queue itself, one trigger per priority stream (`queue_critical`, `queue_high`,
//!   `queue_normal`, `queue_low`). agentd deletes a Redis entry when it is acknowledged, so a
//!   stream's length is its runs waiting *plus* running; the `redis-streams` scaler reads it
//!   (`streamLength`) when no consumer group is named. Naming the group (`agentd`) would switch
//!   KEDA to the pending list (running only: a pool at zero never wakes) or the group lag
//!   (waiting only, and unknown once a cancelled run was deleted), so it is left out on purpose.
//!   On NATS the scaler adds a consumer's pending and ack-pending counts: the same sum.
//! - The streams are ADDED: the HPA takes the maximum over a ScaledObject's metrics, so four
//!   separate triggers would size the pool for its busiest priority only (up to 4× too few
//!   workers when the backlog is spread). `advanced.scalingModifiers` (KEDA 2.12+) composes
//!   them into one metric, `formula` = the sum, `target` = the pool's `concurrency` with
//!   `metricType: AverageValue`: replicas = ceil(work / concurrency), the formula agentd uses.
//!   With scalingModifiers the HPA sees only that composite metric, and KEDA decides activity
//!   (scaling from and to zero) from it too: a trigger the formula does not name has no effect.
//! - Business hours: a `cron` trigger in the pool's time zone, inside the formula:
//!   `max(<sum>, business_hours > 1 ? <floor × concurrency> : 0)`, which holds the floor (the
//!   business-hours minimum; the maximum for a persistent pool) whatever the backlog. KEDA
//!   reports a cron trigger as its `desiredReplicas` inside the window and 0 outside (1 before
//!   KEDA 2.18), so `desiredReplicas` is at least 2 and the formula only tests "inside".
//!   The literals are floats: KEDA 2.12's expr needs both branches of `?:` to have one type.
//! - The store queue has no broker to ask: its one trigger is agentd's own desired count
//!   through Prometheus (a replica count, target 1), beside the cron floor; no formula is
//!   needed, the maximum of the two is what is wanted.
//! - Idle shutdown: `cooldownPeriod` (time without work before scaling to zero) and the HPA's
//!   scale-down stabilisation window.

use agentd_config::{PoolConfig, QueueBackend};

use super::names::{nats_consumer, nats_work_stream, queue_stream, redis_stream_key, Names};
use super::names::{NAME_LABEL, PRIORITIES};
use crate::yaml::{list, map, v, Node};
use crate::Ctx;

/// Where the store-queue trigger asks Prometheus (kube-prometheus-stack's service name);
/// the README says how to change it.
pub(crate) const PROMETHEUS_URL: &str = "http://prometheus-operated.monitoring.svc:9090";

/// Secret keys the TriggerAuthentication reads (created with the Secret, never rendered).
pub(crate) const REDIS_ADDRESS_KEY: &str = "KEDA_REDIS_ADDRESS";
pub(crate) const REDIS_PASSWORD_KEY: &str = "KEDA_REDIS_PASSWORD";
/// `enable` or `disable` (TLS, as with a `rediss://` URL).
pub(crate) const REDIS_TLS_KEY: &str = "KEDA_REDIS_TLS";
pub(crate) const NATS_MONITORING_KEY: &str = "KEDA_NATS_MONITORING_ENDPOINT";

/// The HPA caps stabilisation windows at one hour.
const MAX_STABILISATION_SECONDS: u64 = 3600;

/// Bounds KEDA enforces for a pool: `(min, max)`.
pub(crate) fn replica_bounds(pool: &PoolConfig) -> (u32, u32) {
    let s = &pool.schedule;
    let business_max = s.business_hours.as_ref().map_or(0, |b| b.max_workers);
    let max = s.max_workers.max(business_max).max(1);
    let min = if s.persistent {
        s.max_workers
    } else {
        s.min_workers
    };
    (min.min(max), max)
}

/// The business-hours floor for the cron trigger: `None` when there are no business hours or
/// they would not raise the count (KEDA's cron scaler needs at least one replica).
pub(crate) fn business_floor(pool: &PoolConfig) -> Option<u32> {
    let s = &pool.schedule;
    let b = s.business_hours.as_ref()?;
    let (min, _) = replica_bounds(pool);
    let floor = if s.persistent {
        b.max_workers
    } else {
        b.min_workers
    };
    (floor > 0 && floor > min).then_some(floor)
}

/// Names of the triggers the formula adds (one per priority stream) and of the cron trigger.
/// They are expr identifiers: `-` would read as a minus.
pub(crate) fn queue_trigger_name(priority: &str) -> String {
    format!("queue_{priority}")
}
pub(crate) const BUSINESS_HOURS_TRIGGER: &str = "business_hours";

/// The cron trigger's `desiredReplicas` for `floor`: KEDA reports it inside the window and 0
/// outside (1 before KEDA 2.18), so at least 2 tells the two apart in every KEDA version.
fn cron_marker(floor: u32) -> u32 {
    floor.max(2)
}

/// `scalingModifiers.formula`: the priority streams added, and the business-hours floor in runs
/// (`floor × concurrency`: `floor` replicas at the `concurrency` target) while the cron trigger
/// reports the window.
pub(crate) fn work_formula(pool: &PoolConfig) -> String {
    let sum = PRIORITIES
        .iter()
        .map(|p| queue_trigger_name(p))
        .collect::<Vec<_>>()
        .join(" + ");
    match business_floor(pool) {
        Some(floor) => format!(
            "max({sum}, {BUSINESS_HOURS_TRIGGER} > 1 ? {}.0 : 0.0)",
            u64::from(floor) * u64::from(pool.concurrency.max(1))
        ),
        None => sum,
    }
}

/// The TriggerAuthentication of the Redis or NATS scalers; `None` on the store queue.
pub(crate) fn trigger_auth(ctx: &Ctx<'_>, names: &Names) -> Option<Node> {
    let params: Vec<(&str, &str)> = match ctx.queue() {
        QueueBackend::Store => return None,
        QueueBackend::Redis { .. } => vec![
            ("address", REDIS_ADDRESS_KEY),
            ("password", REDIS_PASSWORD_KEY),
            ("tls", REDIS_TLS_KEY),
        ],
        QueueBackend::Nats { .. } => vec![("natsServerMonitoringEndpoint", NATS_MONITORING_KEY)],
    };
    Some(map([
        ("apiVersion", v("keda.sh/v1alpha1")),
        ("kind", v("TriggerAuthentication")),
        (
            "metadata",
            map([
                ("name", v(names.queue_auth())),
                ("labels", map([(NAME_LABEL, v(names.app.clone()))])),
            ]),
        ),
        (
            "spec",
            map([(
                "secretTargetRef",
                list(params.into_iter().map(|(parameter, key)| {
                    map([
                        ("parameter", v(parameter)),
                        ("name", v(names.secret())),
                        ("key", v(key)),
                    ])
                })),
            )]),
        ),
    ]))
}

/// The ScaledObject of `pool`'s worker Deployment.
pub(crate) fn scaled_object(ctx: &Ctx<'_>, names: &Names, pool: &PoolConfig) -> Node {
    let (min, max) = replica_bounds(pool);
    let idle = pool.schedule.idle_shutdown.as_secs();
    let mut triggers = queue_triggers(ctx, names, pool);
    if let (Some(b), Some(floor)) = (&pool.schedule.business_hours, business_floor(pool)) {
        let (start, end) = b.cron_start_end();
        // With the formula (Redis, NATS) the formula turns "inside the window" into the floor;
        // on the store queue the HPA reads the cron trigger itself: desiredReplicas = floor.
        let desired = if composes_streams(ctx) {
            cron_marker(floor)
        } else {
            floor
        };
        triggers.push(map([
            ("type", v("cron")),
            ("name", v(BUSINESS_HOURS_TRIGGER)),
            (
                "metadata",
                map([
                    ("timezone", v(b.timezone.clone())),
                    ("start", v(start)),
                    ("end", v(end)),
                    ("desiredReplicas", v(desired.to_string())),
                ]),
            ),
        ]));
    }
    let mut advanced = vec![(
        "horizontalPodAutoscalerConfig",
        map([(
            "behavior",
            map([(
                "scaleDown",
                map([(
                    "stabilizationWindowSeconds",
                    v(idle.min(MAX_STABILISATION_SECONDS)),
                )]),
            )]),
        )]),
    )];
    if composes_streams(ctx) {
        advanced.push((
            "scalingModifiers",
            map([
                ("formula", v(work_formula(pool))),
                ("target", v(pool.concurrency.max(1).to_string())),
                ("activationTarget", v("0")),
                ("metricType", v("AverageValue")),
            ]),
        ));
    }
    let name = names.worker(&pool.name);
    map([
        ("apiVersion", v("keda.sh/v1alpha1")),
        ("kind", v("ScaledObject")),
        (
            "metadata",
            map([
                ("name", v(name.clone())),
                (
                    "labels",
                    super::workload::labels(names, "worker", Some(&pool.name)),
                ),
            ]),
        ),
        (
            "spec",
            map([
                (
                    "scaleTargetRef",
                    map([
                        ("apiVersion", v("apps/v1")),
                        ("kind", v("Deployment")),
                        ("name", v(name)),
                    ]),
                ),
                ("pollingInterval", v(15)),
                ("cooldownPeriod", v(idle)),
                ("minReplicaCount", v(min)),
                ("maxReplicaCount", v(max)),
                ("advanced", map(advanced)),
                ("triggers", list(triggers)),
            ]),
        ),
    ])
}

/// Whether the work is one trigger per priority stream (Redis, NATS), added by a formula.
pub(crate) fn composes_streams(ctx: &Ctx<'_>) -> bool {
    !matches!(ctx.queue(), QueueBackend::Store)
}

fn queue_triggers(ctx: &Ctx<'_>, names: &Names, pool: &PoolConfig) -> Vec<Node> {
    let per_replica = pool.concurrency.max(1).to_string();
    let auth = || map([("name", v(names.queue_auth()))]);
    match ctx.queue() {
        QueueBackend::Redis { url, prefix } => {
            // A `${VAR}` URL is a stand-in at render time: database 0 then (TLS and the
            // address come from the Secret either way).
            let db = redis_database(url.expose());
            PRIORITIES
                .iter()
                .map(|priority| {
                    let stream = redis_stream_key(prefix, &queue_stream(&pool.name, priority));
                    map([
                        ("type", v("redis-streams")),
                        ("name", v(queue_trigger_name(priority))),
                        (
                            "metadata",
                            map([
                                ("stream", v(stream)),
                                ("streamLength", v(per_replica.clone())),
                                ("activationLagCount", v("0")),
                                ("databaseIndex", v(db.to_string())),
                            ]),
                        ),
                        ("authenticationRef", auth()),
                    ])
                })
                .collect()
        }
        QueueBackend::Nats { prefix, .. } => {
            PRIORITIES
                .iter()
                .map(|priority| {
                    map([
                        ("type", v("nats-jetstream")),
                        ("name", v(queue_trigger_name(priority))),
                        (
                            "metadata",
                            map([
                                // The global account of a server without accounts.
                                ("account", v("$G")),
                                ("stream", v(nats_work_stream(prefix))),
                                (
                                    "consumer",
                                    v(nats_consumer(&queue_stream(&pool.name, priority))),
                                ),
                                ("lagThreshold", v(per_replica.clone())),
                                ("activationLagThreshold", v("0")),
                            ]),
                        ),
                        ("authenticationRef", auth()),
                    ])
                })
                .collect()
        }
        QueueBackend::Store => vec![map([
            ("type", v("prometheus")),
            ("name", v("desired_workers")),
            (
                "metadata",
                map([
                    ("serverAddress", v(PROMETHEUS_URL)),
                    ("query", v(desired_workers_query(&pool.name))),
                    // The metric is a replica count: one replica per unit.
                    ("threshold", v("1")),
                    ("activationThreshold", v("0")),
                ]),
            ),
        ])],
    }
}

/// agentd's desired worker count of `pool` as a PromQL query.
pub(crate) fn desired_workers_query(pool: &str) -> String {
    format!("max(agentd_pool_desired_workers{{pool=\"{pool}\"}})")
}

/// The database number in a `redis://host:port/N` URL (0 without one). Only the path is read.
fn redis_database(url: &str) -> u32 {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::redis_database;

    #[test]
    fn redis_database_comes_from_the_path() {
        assert_eq!(redis_database("redis://r:6379"), 0);
        assert_eq!(redis_database("redis://:pw@r:6379/3"), 3);
        assert_eq!(redis_database("rediss://r/2?timeout=1"), 2);
    }
}
