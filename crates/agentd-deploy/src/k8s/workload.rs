//! Deployments: the api role, one worker Deployment per pool (PostgreSQL store), or one
//! all-in-one Deployment with a volume (SQLite store, which one process must own).
//!
//! Resources come from the benchmarks in the README: idle RSS is about 30 MiB, 10,000 open
//! streams peak at 167 MiB, 1,024 concurrent proxied requests at about 104 MiB. The api asks
//! for 256 MiB (every benchmark fits with room for the allocator) and may burst to 512 MiB;
//! workers hold run state and tool outputs, so they may burst to 1 GiB (2 GiB on GPU pools).
//! CPU: a limit of [`CPU_LIMIT`] cores on every container, 8× the api's request — a ceiling
//! against a runaway process, not a tight limit (a throttled gateway adds latency to every
//! stream it carries). The README says the same, from the same figures ([`API_FIGURES`], …).

use agentd_config::PoolConfig;
use serde_json::json;

use super::names::{
    dns_label, is_gpu_pool, Names, COMPONENT_LABEL, CONTAINER, NAME_LABEL, POOL_LABEL,
};
use crate::yaml::{list, map, v, Node};
use crate::Ctx;

use crate::docker::{CONFIG_PATH, DATA_DIR, RUN_AS};

/// Where the ConfigMap (key `agentd.toml`) is mounted: the directory of the image's
/// `AGENTD_CONFIG`.
pub(crate) const CONFIG_DIR: &str = "/etc/agentd";
/// Seconds the api keeps serving after Kubernetes marks it terminating, so every endpoint
/// list and load balancer has dropped it before the drain starts.
pub(crate) const PRE_STOP_SECONDS: u64 = 5;
/// Seconds after the drain before SIGKILL: time for the process to exit.
pub(crate) const EXIT_MARGIN_SECONDS: u64 = 5;

/// What differs between the three kinds of Deployment.
pub(crate) enum Kind<'a> {
    /// `--role api`, behind the Service.
    Api,
    /// `--role worker --pools <pool>`.
    Worker(&'a PoolConfig),
    /// `--role all` on SQLite: one replica with a PersistentVolumeClaim.
    All,
}

impl Kind<'_> {
    fn component(&self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Worker(_) => "worker",
            Kind::All => "all",
        }
    }

    fn role(&self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Worker(_) => "worker",
            Kind::All => "all",
        }
    }

    fn gpu(&self) -> bool {
        matches!(self, Kind::Worker(pool) if is_gpu_pool(&pool.name))
    }

    /// Whether requests reach it through the Service (and so it must leave endpoints first).
    fn serves_traffic(&self) -> bool {
        match self {
            Kind::Api | Kind::All => true,
            Kind::Worker(_) => false,
        }
    }
}

/// The PersistentVolumeClaim of the SQLite deployment.
pub(crate) fn data_claim(names: &Names) -> Node {
    map([
        ("apiVersion", v("v1")),
        ("kind", v("PersistentVolumeClaim")),
        (
            "metadata",
            map([
                ("name", v(format!("{}-data", names.app))),
                ("labels", labels(names, "all", None)),
            ]),
        ),
        (
            "spec",
            map([
                ("accessModes", list([v("ReadWriteOnce")])),
                (
                    "resources",
                    map([("requests", map([("storage", v("10Gi"))]))]),
                ),
            ]),
        ),
    ])
}

/// The labels of a component (and pool); the selector uses the same.
pub(crate) fn labels(names: &Names, component: &str, pool: Option<&str>) -> Node {
    let mut pairs = vec![
        (NAME_LABEL.to_owned(), v(names.app.clone())),
        (COMPONENT_LABEL.to_owned(), v(component.to_owned())),
    ];
    if let Some(pool) = pool {
        pairs.push((POOL_LABEL.to_owned(), v(dns_label(pool))));
    }
    map(pairs)
}

/// A Deployment of `kind`.
pub(crate) fn deployment(ctx: &Ctx<'_>, names: &Names, kind: &Kind<'_>) -> Node {
    let (name, pool) = match kind {
        Kind::Api => (names.api(), None),
        Kind::Worker(pool) => (names.worker(&pool.name), Some(pool.name.as_str())),
        Kind::All => (names.app.clone(), None),
    };
    let component = kind.component();
    let labels = labels(names, component, pool);
    let mut spec = vec![];
    match kind {
        // One process owns the SQLite file: never two at once, even during a rollout.
        Kind::All => {
            spec.push(("replicas", v(1)));
            spec.push(("strategy", map([("type", v("Recreate"))])));
        }
        // No `replicas`: the HPA (api) or KEDA (workers) own the count, and `kubectl apply`
        // must not reset it.
        Kind::Api => spec.push((
            "strategy",
            map([
                ("type", v("RollingUpdate")),
                (
                    "rollingUpdate",
                    map([("maxSurge", v("25%")), ("maxUnavailable", v(0))]),
                ),
            ]),
        )),
        Kind::Worker(_) => spec.push((
            "strategy",
            map([
                ("type", v("RollingUpdate")),
                (
                    "rollingUpdate",
                    map([("maxSurge", v("25%")), ("maxUnavailable", v("25%"))]),
                ),
            ]),
        )),
    }
    spec.push(("revisionHistoryLimit", v(5)));
    spec.push(("selector", map([("matchLabels", labels.clone())])));
    spec.push((
        "template",
        map([
            (
                "metadata",
                map([
                    ("labels", labels.clone()),
                    (
                        "annotations",
                        map([
                            ("prometheus.io/scrape", v("true")),
                            ("prometheus.io/port", v(ctx.port.to_string())),
                            ("prometheus.io/path", v("/metrics")),
                        ]),
                    ),
                ]),
            ),
            ("spec", pod_spec(ctx, names, kind, &labels)),
        ]),
    ));
    map([
        ("apiVersion", v("apps/v1")),
        ("kind", v("Deployment")),
        (
            "metadata",
            map([("name", v(name)), ("labels", labels.clone())]),
        ),
        ("spec", map(spec)),
    ])
}

fn pod_spec(ctx: &Ctx<'_>, names: &Names, kind: &Kind<'_>, labels: &Node) -> Node {
    let mut spec: Vec<(&str, Node)> = vec![
        ("serviceAccountName", v(names.app.clone())),
        ("automountServiceAccountToken", v(false)),
        ("enableServiceLinks", v(false)),
        ("terminationGracePeriodSeconds", v(grace_seconds(ctx, kind))),
        (
            "securityContext",
            map([
                ("runAsNonRoot", v(true)),
                ("runAsUser", v(RUN_AS)),
                ("runAsGroup", v(RUN_AS)),
                ("fsGroup", v(RUN_AS)),
                ("seccompProfile", map([("type", v("RuntimeDefault"))])),
            ]),
        ),
    ];
    if kind.gpu() {
        // The `nvidia.com/gpu` limit already restricts the pods to nodes that advertise GPUs
        // (no node label is common to every cluster, so no nodeSelector); GPU nodes are
        // usually tainted so that nothing else lands on them (GKE, EKS, NVIDIA's operator).
        spec.push((
            "tolerations",
            list([map([
                ("key", v("nvidia.com/gpu")),
                ("operator", v("Exists")),
                ("effect", v("NoSchedule")),
            ])]),
        ));
    }
    if !matches!(kind, Kind::All) {
        spec.push(("topologySpreadConstraints", spread(labels)));
    }
    spec.push(("containers", list([container(ctx, names, kind)])));
    spec.push(("volumes", volumes(names, kind)));
    map(spec)
}

/// The drain fits in the grace period: the api first waits out the preStop sleep, then
/// drains for `server.shutdown_grace`; a few seconds remain for the process to exit.
pub(crate) fn grace_seconds(ctx: &Ctx<'_>, kind: &Kind<'_>) -> u64 {
    let pre_stop = if kind.serves_traffic() {
        PRE_STOP_SECONDS
    } else {
        0
    };
    pre_stop + ctx.drain_seconds + EXIT_MARGIN_SECONDS
}

/// Spread replicas over zones, then nodes, without blocking scheduling where it cannot.
fn spread(labels: &Node) -> Node {
    let constraint = |key: &str| {
        map([
            ("maxSkew", v(1)),
            ("topologyKey", v(key.to_owned())),
            ("whenUnsatisfiable", v("ScheduleAnyway")),
            ("labelSelector", map([("matchLabels", labels.clone())])),
            ("matchLabelKeys", list([v("pod-template-hash")])),
        ])
    };
    list([
        constraint("topology.kubernetes.io/zone"),
        constraint("kubernetes.io/hostname"),
    ])
}

fn container(ctx: &Ctx<'_>, names: &Names, kind: &Kind<'_>) -> Node {
    let mut c: Vec<(&str, Node)> = vec![
        ("name", v(CONTAINER)),
        ("image", v(ctx.image.clone())),
        ("imagePullPolicy", v(pull_policy(&ctx.image))),
        (
            "ports",
            list([map([
                ("name", v("http")),
                ("containerPort", v(ctx.port)),
                ("protocol", v("TCP")),
            ])]),
        ),
        ("env", env(ctx, names, kind)),
        ("resources", resources(kind)),
        (
            "startupProbe",
            probe("/healthz", 2, 60), // up to 2 minutes for migrations on first start
        ),
        ("livenessProbe", probe("/healthz", 10, 3)),
        ("readinessProbe", probe("/readyz", 5, 2)),
    ];
    if kind.serves_traffic() {
        // Needs Kubernetes 1.30+ (the image has no shell to run `sleep`).
        c.push((
            "lifecycle",
            map([(
                "preStop",
                map([("sleep", map([("seconds", v(PRE_STOP_SECONDS))]))]),
            )]),
        ));
    }
    c.push((
        "securityContext",
        map([
            ("allowPrivilegeEscalation", v(false)),
            ("readOnlyRootFilesystem", v(true)),
            ("capabilities", map([("drop", list([v("ALL")]))])),
        ]),
    ));
    c.push((
        "volumeMounts",
        list([
            map([
                ("name", v("config")),
                ("mountPath", v(CONFIG_DIR)),
                ("readOnly", v(true)),
            ]),
            map([("name", v("data")), ("mountPath", v(DATA_DIR))]),
            map([("name", v("tmp")), ("mountPath", v("/tmp"))]),
        ]),
    ));
    map(c)
}

fn probe(path: &str, period: u32, failures: u32) -> Node {
    map([
        (
            "httpGet",
            map([("path", v(path.to_owned())), ("port", v("http"))]),
        ),
        ("periodSeconds", v(period)),
        ("timeoutSeconds", v(2)),
        ("failureThreshold", v(failures)),
    ])
}

/// Fixed settings, then the config's secrets by name from the Secret the user created.
fn env(ctx: &Ctx<'_>, names: &Names, kind: &Kind<'_>) -> Node {
    let mut fixed: Vec<(String, String)> = vec![
        ("AGENTD_CONFIG".into(), CONFIG_PATH.into()),
        ("AGENTD_LISTEN".into(), format!("0.0.0.0:{}", ctx.port)),
        ("AGENTD_DATA_DIR".into(), DATA_DIR.into()),
        ("AGENTD_LOG_FORMAT".into(), "json".into()),
        ("AGENTD_ROLE".into(), kind.role().into()),
    ];
    if let Kind::Worker(pool) = kind {
        fixed.push(("AGENTD_POOLS".into(), pool.name.clone()));
    }
    // The base runs in the primary region; each overlay patches its own.
    fixed.push(("AGENTD_REGION".into(), ctx.primary.code.into()));
    let mut out: Vec<Node> = fixed
        .iter()
        .map(|(name, value)| map([("name", v(name.clone())), ("value", v(value.clone()))]))
        .collect();
    for var in &ctx.secret_vars {
        if fixed.iter().any(|(name, _)| name == var) {
            continue;
        }
        out.push(map([
            ("name", v(var.clone())),
            (
                "valueFrom",
                map([(
                    "secretKeyRef",
                    map([
                        ("name", v(names.secret())),
                        ("key", v(var.clone())),
                        // A variable the config reads (`${VAR}` without a default) is
                        // required: the config does not load without it, so a missing key
                        // must stop the pod from starting, not crash-loop it. Only one the
                        // config does not read (AGENTD_ADMIN_KEY, which agentd reads itself
                        // to turn the admin API on) is optional.
                        ("optional", v(!super::config_requires(ctx, var))),
                    ]),
                )]),
            ),
        ]));
    }
    list(out)
}

/// `Always` for a moving tag (`latest`, or none, which means `latest`): with `IfNotPresent` a
/// node that once pulled `app:latest` would run that copy forever. A fixed tag or a digest
/// never changes, so a node's copy is good.
pub(crate) fn pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    if digest {
        return "IfNotPresent";
    }
    // A tag is after the last ':' of the last path component (a registry's port is not one).
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" && !tag.is_empty() => "IfNotPresent",
        _ => "Always",
    }
}

/// The CPU limit of every container, in cores.
pub(crate) const CPU_LIMIT: &str = "2";

/// `(cpu request, memory request, memory limit)` of each kind of container.
pub(crate) type Figures = (&'static str, &'static str, &'static str);
pub(crate) const API_FIGURES: Figures = ("250m", "256Mi", "512Mi");
pub(crate) const WORKER_FIGURES: Figures = ("250m", "256Mi", "1Gi");
pub(crate) const GPU_WORKER_FIGURES: Figures = ("500m", "512Mi", "2Gi");
pub(crate) const ALL_FIGURES: Figures = ("500m", "512Mi", "1Gi");

fn figures(kind: &Kind<'_>) -> Figures {
    match kind {
        Kind::Api => API_FIGURES,
        Kind::Worker(_) if kind.gpu() => GPU_WORKER_FIGURES,
        Kind::Worker(_) => WORKER_FIGURES,
        Kind::All => ALL_FIGURES,
    }
}

fn resources(kind: &Kind<'_>) -> Node {
    let (cpu, memory, memory_limit) = figures(kind);
    let mut limits = vec![("cpu", v(CPU_LIMIT)), ("memory", v(memory_limit))];
    if kind.gpu() {
        // Extended resources: the request equals the limit.
        limits.push(("nvidia.com/gpu", v(1)));
    }
    map([
        ("requests", map([("cpu", v(cpu)), ("memory", v(memory))])),
        ("limits", map(limits)),
    ])
}

fn volumes(names: &Names, kind: &Kind<'_>) -> Node {
    let data = match kind {
        Kind::All => map([
            ("name", v("data")),
            (
                "persistentVolumeClaim",
                map([("claimName", v(format!("{}-data", names.app)))]),
            ),
        ]),
        // State lives in PostgreSQL; the data directory only holds scratch files.
        Kind::Api | Kind::Worker(_) => map([
            ("name", v("data")),
            ("emptyDir", map([("sizeLimit", v("1Gi"))])),
        ]),
    };
    list([
        map([
            ("name", v("config")),
            ("configMap", map([("name", v(names.config()))])),
        ]),
        data,
        map([
            ("name", v("tmp")),
            (
                "emptyDir",
                v(json!({"medium": "Memory", "sizeLimit": "64Mi"})),
            ),
        ]),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_is_mounted_where_the_image_reads_the_config() {
        assert_eq!(CONFIG_PATH, format!("{CONFIG_DIR}/agentd.toml"));
    }

    #[test]
    fn moving_tags_are_pulled_every_time() {
        for image in [
            "agents:latest",
            "agents",
            "ghcr.io/acme/agentd",
            "ghcr.io/acme/agentd:latest",
            "registry.local:5000/agentd",
            "registry.local:5000/agentd:latest",
        ] {
            assert_eq!(pull_policy(image), "Always", "{image}");
        }
        for image in [
            "ghcr.io/acme/agentd:1.2.3",
            "registry.local:5000/agentd:1.2.3",
            "agents@sha256:0123abcd",
            "ghcr.io/acme/agentd:latest@sha256:0123abcd",
        ] {
            assert_eq!(pull_policy(image), "IfNotPresent", "{image}");
        }
    }
}
