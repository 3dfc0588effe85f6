//! KEDA ScaledObjects: one per worker pool, built from the pool's schedule so that KEDA and
//! agentd's own `agentd_pool_desired_workers{pool}` agree.
//!
//! - `minReplicaCount` / `maxReplicaCount`: the off-hours minimum, and the larger of the two
//!   maxima (KEDA has one maximum; agentd's metric applies the hour's own). A persistent pool
//!   never goes below its off-hours maximum.
//! - Business hours: a `cron` trigger holding the business-hours minimum (the maximum for a
//!   persistent pool) in the pool's time zone.
//! - Work: the queue itself. agentd deletes a Redis entry when it is acknowledged, so a
//!   stream's length is its runs waiting *plus* running; the `redis-streams` scaler reads it
//!   (`streamLength`) when no consumer group is named. Naming the group (`agentd`) would switch
//!   KEDA to the pending list (running only: a pool at zero never wakes) or the group lag
//!   (waiting only, and unknown once a cancelled run was deleted), so it is left out on purpose.
//!   On NATS the scaler adds a consumer's pending and ack-pending counts: the same sum. The
//!   target per replica is the pool's `concurrency`: replicas = ceil(work / concurrency),
//!   the formula agentd uses. On the store queue (no broker to ask) the trigger is agentd's own
//!   desired count through Prometheus.
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
        triggers.push(map([
            ("type", v("cron")),
            ("name", v("business-hours")),
            (
                "metadata",
                map([
                    ("timezone", v(b.timezone.clone())),
                    ("start", v(start)),
                    ("end", v(end)),
                    ("desiredReplicas", v(floor.to_string())),
                ]),
            ),
        ]));
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
                (
                    "advanced",
                    map([(
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
                    )]),
                ),
                ("triggers", list(triggers)),
            ]),
        ),
    ])
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
                        ("name", v(format!("queue-{priority}"))),
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
                        ("name", v(format!("queue-{priority}"))),
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
            ("name", v("desired-workers")),
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
