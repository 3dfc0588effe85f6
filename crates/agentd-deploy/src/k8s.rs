//! Kubernetes: a kustomize base shared by one overlay per region (`k8s/overlays/<code>`), the
//! unit the user applies with `kubectl apply -k` (kubectl's built-in kustomize: `patches` with
//! targets, no deprecated fields). The base sets no namespace: applied alone it would land in
//! the current context's namespace, so the README sends everyone to an overlay.
//!
//! On PostgreSQL the roles are split: an api Deployment (Service, PDB, HPA on CPU and on
//! in-flight requests, two replicas at least in every region) and one worker Deployment per
//! pool scaled by KEDA from the pool's schedule and queue ([`keda`]). Every region runs
//! workers: a region's store and queue (its secrets) hold the runs of the tenants whose home
//! region it is — with strict residency they may not run anywhere else — and the primary's
//! hold the others'. On SQLite one process must own the file: a single Deployment with a
//! volume, `Recreate` on update, nothing to autoscale.
//!
//! Requests reach another region through `routing = "forward"` ([`refuse_fly_replay`]: only
//! Fly.io's proxy follows `fly-replay`).
//!
//! Secrets are referenced by name only: the user creates `<app>-secrets` with the rendered
//! `create-secret.sh`, which reads the values from the environment; a variable the config reads
//! is required both there and in the Deployments ([`config_requires`]).

mod keda;
mod names;
mod workload;

use std::fmt::Write as _;

use crate::yaml::{self, list, map, v, Node};
use crate::{Ctx, File, RenderError};
use names::{Names, COMPONENT_LABEL, CONTAINER, NAME_LABEL, REGION_LABEL};
use workload::Kind;

use keda::replica_bounds;

/// Fewest api replicas, in every region: with the PodDisruptionBudget (one pod at a time) a
/// node drain or upgrade always leaves one serving. With one replica a drain would be an outage
/// of the region, since its clients cannot be sent to another region's api by Kubernetes.
const API_MIN: u32 = 2;
const API_MAX: u32 = 10;
/// Scale out on CPU before the pods are saturated.
const API_CPU_TARGET: u32 = 70;
/// In-flight requests per api pod when `server.max_concurrent_requests` is unlimited.
const API_IN_FLIGHT_TARGET: usize = 512;

pub(crate) fn render(ctx: &Ctx<'_>) -> Result<Vec<File>, RenderError> {
    refuse_fly_replay(ctx, "Kubernetes")?;
    let names = Names::new(ctx)?;
    let mut files = Vec::new();
    let mut resources: Vec<String> = Vec::new();
    let mut add = |files: &mut Vec<File>, name: &str, header: &str, node: &Node| {
        files.push(yaml_file(&format!("k8s/base/{name}"), header, node));
        resources.push(name.to_owned());
    };

    add(
        &mut files,
        "serviceaccount.yaml",
        "agentd calls no Kubernetes API: no token is mounted.",
        &service_account(&names),
    );
    if ctx.split_roles {
        add(
            &mut files,
            "deployment-api.yaml",
            &format!(
                "The api role. Replicas are the HPA's (hpa-api.yaml). terminationGracePeriodSeconds = {}s preStop + {}s drain (server.shutdown_grace) + {}s to exit.",
                workload::PRE_STOP_SECONDS,
                ctx.drain_seconds,
                workload::EXIT_MARGIN_SECONDS
            ),
            &workload::deployment(ctx, &names, &Kind::Api),
        );
        for pool in ctx.pools() {
            add(
                &mut files,
                &format!("deployment-worker-{}.yaml", names::dns_label(&pool.name)),
                &format!(
                    "Workers of pool \"{}\" ({} runs at once each). Replicas are KEDA's (keda-{}.yaml). terminationGracePeriodSeconds = {}s drain + {}s to exit: runs still going then are redelivered.",
                    pool.name,
                    pool.concurrency,
                    names::dns_label(&pool.name),
                    ctx.drain_seconds,
                    workload::EXIT_MARGIN_SECONDS
                ),
                &workload::deployment(ctx, &names, &Kind::Worker(pool)),
            );
        }
    } else {
        add(
            &mut files,
            "pvc.yaml",
            "The SQLite database (store kind = \"sqlite\"): one volume, one process.",
            &workload::data_claim(&names),
        );
        add(
            &mut files,
            "deployment.yaml",
            "Every role in one process on SQLite: one replica, Recreate on update (two processes must never share the file). Switch [store] to PostgreSQL to split api and workers and autoscale them.",
            &workload::deployment(ctx, &names, &Kind::All),
        );
    }
    add(&mut files, "service.yaml", "", &service(ctx, &names));
    if ctx.split_roles {
        add(
            &mut files,
            "pdb.yaml",
            "Voluntary disruptions (node drains, upgrades) take at most one api pod at a time.",
            &pdb(&names),
        );
        add(
            &mut files,
            "hpa-api.yaml",
            "CPU needs metrics-server; agentd_http_requests_in_flight needs prometheus-adapter with ../prometheus-adapter.yaml (see ../README.md). Without the adapter the HPA still scales up on CPU but does not scale down.",
            &hpa(ctx, &names, API_MIN),
        );
        if let Some(auth) = keda::trigger_auth(ctx, &names) {
            add(
                &mut files,
                "keda-auth.yaml",
                &format!(
                    "How KEDA reaches the queue: keys of the Secret {} (see ../create-secret.sh); no value is written here.",
                    names.secret()
                ),
                &auth,
            );
        }
        for pool in ctx.pools() {
            add(
                &mut files,
                &format!("keda-{}.yaml", names::dns_label(&pool.name)),
                &keda_header(ctx, pool),
                &keda::scaled_object(ctx, &names, pool),
            );
        }
    }
    if let Some(domain) = &ctx.config.deploy.domain {
        add(
            &mut files,
            "ingress.yaml",
            &format!("[deploy] domain = \"{domain}\". TLS from the Secret {}-tls (cert-manager or your own certificate).\nNo ingressClassName: the cluster's default IngressClass serves it (add spec.ingressClassName to pick one).\nThe annotations are ingress-nginx's (buffering off for streams, {}s timeouts); other controllers ignore them and\ncut streams at their own timeout (GKE: 30 s, AWS ALB: 60 s idle): see ../README.md, \"Ingress\", for theirs.", names.app, INGRESS_TIMEOUT_SECONDS),
            &ingress(ctx, &names, domain),
        );
    }
    files.push(crate::docker::config_file("k8s/base", ctx));
    files.push(yaml_file(
        "k8s/base/kustomization.yaml",
        "Shared by every region's overlay. Apply an overlay (`kubectl apply -k k8s/overlays/<region>`), not this:\nthe base sets no namespace, so it would land in whatever namespace the current context has.",
        &base_kustomization(&names, &resources),
    ));
    for region in &ctx.regions {
        let primary = region.code == ctx.primary.code;
        files.push(yaml_file(
            &format!("k8s/overlays/{}/namespace.yaml", region.code),
            "",
            &namespace(&names, region.code),
        ));
        files.push(yaml_file(
            &format!("k8s/overlays/{}/kustomization.yaml", region.code),
            &format!(
                "{} ({}, {}){}.",
                region.code,
                region.city,
                region.country,
                if primary {
                    ": the PRIMARY region (primary database, queue and workers)"
                } else if ctx.split_roles {
                    ": api and workers for the tenants whose home region this is (their runs live in this region's store and queue)"
                } else {
                    ""
                }
            ),
            &overlay(&names, region, primary),
        ));
    }
    files.push(yaml_file(
        "k8s/prometheus-adapter.yaml",
        "Helm values for prometheus-community/prometheus-adapter: exposes agentd_http_requests_in_flight to the api's HPA as a per-pod custom metric.",
        &adapter_values(),
    ));
    files.push(File::script(
        "k8s/create-secret.sh",
        create_secret_script(ctx, &names),
    ));
    files.push(File::new("k8s/README.md", readme(ctx, &names)));
    Ok(files)
}

/// A YAML file with a `#` header (none when `header` is empty).
fn yaml_file(path: &str, header: &str, node: &Node) -> File {
    let mut text = String::new();
    for line in header.lines() {
        let _ = writeln!(text, "# {line}");
    }
    text.push_str(&yaml::to_string(node));
    File::new(path, text)
}

fn keda_header(ctx: &Ctx<'_>, pool: &agentd_config::PoolConfig) -> String {
    let s = &pool.schedule;
    let (min, max) = replica_bounds(pool);
    let composes = keda::composes_streams(ctx);
    let mut h = format!(
        "Pool \"{}\": {min} to {max} workers{}, scale to the minimum after {} s without work (idle_shutdown).",
        pool.name,
        if s.persistent { " (persistent: never below its off-hours maximum)" } else { "" },
        s.idle_shutdown.as_secs()
    );
    if let Some(b) = &s.business_hours {
        let _ = write!(
            h,
            "\nBusiness hours ({}): {} to {} workers; off hours: {} to {}.",
            b.timezone, b.min_workers, b.max_workers, s.min_workers, s.max_workers
        );
        if let Some(floor) = keda::business_floor(pool) {
            if composes {
                let _ = write!(
                    h,
                    " The cron trigger `{}` marks the hours (KEDA reports its desiredReplicas inside them, 0 outside: 1 before KEDA 2.18); the formula turns that into a floor of {floor} {}.",
                    keda::BUSINESS_HOURS_TRIGGER,
                    if floor == 1 { "worker" } else { "workers" }
                );
            } else {
                let _ = write!(
                    h,
                    " The cron trigger holds a floor of {floor} {} then.",
                    if floor == 1 { "worker" } else { "workers" }
                );
            }
        }
        if max > s.max_workers {
            if composes {
                let _ = write!(
                    h,
                    "\nKEDA has one maximum, {max}, at all hours: the off-hours maximum ({}) is only in agentd's desired count (agentd_pool_desired_workers{{pool=\"{}\"}}), which KEDA does not read on this queue, so off hours a backlog can take the pool to {max}.",
                    s.max_workers, pool.name
                );
            } else {
                let _ = write!(
                    h,
                    "\nKEDA has one maximum, {max}; the off-hours maximum ({}) is applied by agentd's desired count, the trigger KEDA follows here.",
                    s.max_workers
                );
            }
        }
    }
    match ctx.queue() {
        agentd_config::QueueBackend::Redis { .. } => h.push_str(
            "\nWork = the four priority streams' lengths ADDED (advanced.scalingModifiers: the HPA would take the largest of separate triggers, not their sum), one replica per `concurrency` runs (target). A stream's length counts waiting + running runs: agentd deletes acknowledged entries. The consumer group `agentd` is not named on purpose: with it KEDA reads the pending list or the lag instead, which miss waiting or running runs. Needs KEDA 2.12 or later (scalingModifiers).",
        ),
        agentd_config::QueueBackend::Nats { .. } => h.push_str(
            "\nWork = the four priority consumers' pending + ack-pending messages (waiting + running) ADDED (advanced.scalingModifiers: the HPA would take the largest of separate triggers, not their sum), one replica per `concurrency` runs (target). Needs KEDA 2.12 or later (scalingModifiers).",
        ),
        agentd_config::QueueBackend::Store => {
            let _ = write!(
                h,
                "\nThe store queue has no broker KEDA can ask: it reads agentd's own desired count from Prometheus at {} (change serverAddress to yours).",
                keda::PROMETHEUS_URL
            );
        }
    }
    h
}

fn metadata(name: String, labels: Node) -> Node {
    map([("name", v(name)), ("labels", labels)])
}

fn app_labels(names: &Names) -> Node {
    map([(NAME_LABEL, v(names.app.clone()))])
}

fn service_account(names: &Names) -> Node {
    map([
        ("apiVersion", v("v1")),
        ("kind", v("ServiceAccount")),
        ("metadata", metadata(names.app.clone(), app_labels(names))),
        ("automountServiceAccountToken", v(false)),
    ])
}

fn serving_component(ctx: &Ctx<'_>) -> &'static str {
    if ctx.split_roles {
        "api"
    } else {
        "all"
    }
}

fn service(ctx: &Ctx<'_>, names: &Names) -> Node {
    map([
        ("apiVersion", v("v1")),
        ("kind", v("Service")),
        ("metadata", metadata(names.service(), app_labels(names))),
        (
            "spec",
            map([
                ("type", v("ClusterIP")),
                (
                    "selector",
                    map([
                        (NAME_LABEL, v(names.app.clone())),
                        (COMPONENT_LABEL, v(serving_component(ctx))),
                    ]),
                ),
                (
                    "ports",
                    list([map([
                        ("name", v("http")),
                        ("port", v(80)),
                        ("targetPort", v("http")),
                        ("protocol", v("TCP")),
                    ])]),
                ),
            ]),
        ),
    ])
}

fn api_selector(names: &Names) -> Node {
    map([(
        "matchLabels",
        map([
            (NAME_LABEL, v(names.app.clone())),
            (COMPONENT_LABEL, v("api")),
        ]),
    )])
}

fn pdb(names: &Names) -> Node {
    map([
        ("apiVersion", v("policy/v1")),
        ("kind", v("PodDisruptionBudget")),
        ("metadata", metadata(names.api(), app_labels(names))),
        (
            "spec",
            map([
                // One pod at a time; the HPA keeps at least API_MIN (2) in every region, so a
                // drain always leaves one serving. Not minAvailable: while the HPA is at its
                // minimum that would block every drain.
                ("maxUnavailable", v(1)),
                ("selector", api_selector(names)),
            ]),
        ),
    ])
}

/// Scale out at half the load-shedding limit, before requests are refused.
fn in_flight_target(ctx: &Ctx<'_>) -> usize {
    ctx.config
        .server
        .max_concurrent_requests
        .map_or(API_IN_FLIGHT_TARGET, |n| (n / 2).max(1))
}

fn hpa(ctx: &Ctx<'_>, names: &Names, min: u32) -> Node {
    map([
        ("apiVersion", v("autoscaling/v2")),
        ("kind", v("HorizontalPodAutoscaler")),
        ("metadata", metadata(names.api(), app_labels(names))),
        (
            "spec",
            map([
                (
                    "scaleTargetRef",
                    map([
                        ("apiVersion", v("apps/v1")),
                        ("kind", v("Deployment")),
                        ("name", v(names.api())),
                    ]),
                ),
                ("minReplicas", v(min)),
                ("maxReplicas", v(API_MAX)),
                (
                    "metrics",
                    list([
                        map([
                            ("type", v("Resource")),
                            (
                                "resource",
                                map([
                                    ("name", v("cpu")),
                                    (
                                        "target",
                                        map([
                                            ("type", v("Utilization")),
                                            ("averageUtilization", v(API_CPU_TARGET)),
                                        ]),
                                    ),
                                ]),
                            ),
                        ]),
                        map([
                            ("type", v("Pods")),
                            (
                                "pods",
                                map([
                                    (
                                        "metric",
                                        map([("name", v("agentd_http_requests_in_flight"))]),
                                    ),
                                    (
                                        "target",
                                        map([
                                            ("type", v("AverageValue")),
                                            ("averageValue", v(in_flight_target(ctx).to_string())),
                                        ]),
                                    ),
                                ]),
                            ),
                        ]),
                    ]),
                ),
                (
                    "behavior",
                    map([("scaleDown", map([("stabilizationWindowSeconds", v(300))]))]),
                ),
            ]),
        ),
    ])
}

/// How long a request may stream (SSE, WebSockets) through the Ingress.
const INGRESS_TIMEOUT_SECONDS: u32 = 3600;

fn ingress(ctx: &Ctx<'_>, names: &Names, domain: &str) -> Node {
    let timeout = INGRESS_TIMEOUT_SECONDS.to_string();
    map([
        ("apiVersion", v("networking.k8s.io/v1")),
        ("kind", v("Ingress")),
        (
            "metadata",
            map([
                ("name", v(names.service())),
                ("labels", app_labels(names)),
                (
                    "annotations",
                    map([
                        ("nginx.ingress.kubernetes.io/proxy-buffering", v("off")),
                        (
                            "nginx.ingress.kubernetes.io/proxy-read-timeout",
                            v(timeout.clone()),
                        ),
                        ("nginx.ingress.kubernetes.io/proxy-send-timeout", v(timeout)),
                        (
                            "nginx.ingress.kubernetes.io/proxy-body-size",
                            v(ctx.config.server.max_body_bytes.to_string()),
                        ),
                    ]),
                ),
            ]),
        ),
        (
            "spec",
            map([
                (
                    "tls",
                    list([map([
                        ("hosts", list([v(domain.to_owned())])),
                        ("secretName", v(format!("{}-tls", names.app))),
                    ])]),
                ),
                (
                    "rules",
                    list([map([
                        ("host", v(domain.to_owned())),
                        (
                            "http",
                            map([(
                                "paths",
                                list([map([
                                    ("path", v("/")),
                                    ("pathType", v("Prefix")),
                                    (
                                        "backend",
                                        map([(
                                            "service",
                                            map([
                                                ("name", v(names.service())),
                                                ("port", map([("name", v("http"))])),
                                            ]),
                                        )]),
                                    ),
                                ])]),
                            )]),
                        ),
                    ])]),
                ),
            ]),
        ),
    ])
}

fn base_kustomization(names: &Names, resources: &[String]) -> Node {
    map([
        ("apiVersion", v("kustomize.config.k8s.io/v1beta1")),
        ("kind", v("Kustomization")),
        ("resources", list(resources.iter().map(|r| v(r.clone())))),
        (
            // A content hash in the name: a config change rolls every Deployment.
            "configMapGenerator",
            list([map([
                ("name", v(names.config())),
                ("files", list([v("agentd.toml")])),
            ])]),
        ),
    ])
}

fn namespace(names: &Names, region: &str) -> Node {
    map([
        ("apiVersion", v("v1")),
        ("kind", v("Namespace")),
        (
            "metadata",
            metadata(
                names.namespace(region),
                map([
                    (NAME_LABEL, v(names.app.clone())),
                    (REGION_LABEL, v(region.to_owned())),
                ]),
            ),
        ),
    ])
}

fn overlay(names: &Names, region: &agentd_config::Region, primary: bool) -> Node {
    // Every Deployment: this region's code, and a preference for nodes of the cloud region
    // (GKE and EKS label nodes with it; elsewhere the preference is ignored).
    let deployment_patch = map([
        ("apiVersion", v("apps/v1")),
        ("kind", v("Deployment")),
        ("metadata", map([("name", v("any"))])),
        (
            "spec",
            map([(
                "template",
                map([(
                    "spec",
                    map([
                        (
                            "affinity",
                            map([(
                                "nodeAffinity",
                                map([(
                                    "preferredDuringSchedulingIgnoredDuringExecution",
                                    list([map([
                                        ("weight", v(100)),
                                        (
                                            "preference",
                                            map([(
                                                "matchExpressions",
                                                list([map([
                                                    ("key", v("topology.kubernetes.io/region")),
                                                    ("operator", v("In")),
                                                    (
                                                        "values",
                                                        list(
                                                            cloud_regions(region)
                                                                .into_iter()
                                                                .map(v),
                                                        ),
                                                    ),
                                                ])]),
                                            )]),
                                        ),
                                    ])]),
                                )]),
                            )]),
                        ),
                        (
                            "containers",
                            list([map([
                                ("name", v(CONTAINER)),
                                (
                                    "env",
                                    list([map([
                                        ("name", v("AGENTD_REGION")),
                                        ("value", v(region.code)),
                                    ])]),
                                ),
                            ])]),
                        ),
                    ]),
                )]),
            )]),
        ),
    ]);
    let patches = vec![map([
        (
            "target",
            map([
                ("kind", v("Deployment")),
                ("labelSelector", v(format!("{NAME_LABEL}={}", names.app))),
            ]),
        ),
        ("patch", v(yaml::to_string(&deployment_patch))),
    ])];
    map([
        ("apiVersion", v("kustomize.config.k8s.io/v1beta1")),
        ("kind", v("Kustomization")),
        ("namespace", v(names.namespace(region.code))),
        ("resources", list([v("namespace.yaml"), v("../../base")])),
        (
            "labels",
            list([map([
                (
                    "pairs",
                    map([
                        (REGION_LABEL, v(region.code)),
                        ("agentd/primary", v(primary.to_string())),
                    ]),
                ),
                ("includeSelectors", v(false)),
                ("includeTemplates", v(true)),
            ])]),
        ),
        ("patches", list(patches)),
    ])
}

/// The cloud regions (GCP, AWS) nearest the region, deduplicated.
fn cloud_regions(region: &agentd_config::Region) -> Vec<&'static str> {
    let mut out = vec![region.gcp];
    if region.aws != region.gcp {
        out.push(region.aws);
    }
    out
}

fn adapter_values() -> Node {
    map([(
        "rules",
        map([
            ("default", v(false)),
            (
                "custom",
                list([map([
                    (
                        "seriesQuery",
                        v("agentd_http_requests_in_flight{namespace!=\"\",pod!=\"\"}"),
                    ),
                    (
                        "resources",
                        map([(
                            "overrides",
                            map([
                                ("namespace", map([("resource", v("namespace"))])),
                                ("pod", map([("resource", v("pod"))])),
                            ]),
                        )]),
                    ),
                    (
                        "name",
                        map([
                            ("matches", v("^agentd_http_requests_in_flight$")),
                            ("as", v("agentd_http_requests_in_flight")),
                        ]),
                    ),
                    (
                        "metricsQuery",
                        v("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"),
                    ),
                ])]),
            ),
        ]),
    )])
}

/// `[regions] routing = "fly-replay"` across several regions works only behind Fly.io's
/// proxy, which replays a request answered with a `fly-replay` header in the region it names.
/// Anywhere else the client gets that empty answer: every request for another region fails.
pub(crate) fn refuse_fly_replay(ctx: &Ctx<'_>, platform: &str) -> Result<(), RenderError> {
    let regions = ctx.regions_config();
    if regions.is_multi_region() && regions.routing == agentd_config::RegionRouting::FlyReplay {
        return Err(RenderError::Invalid(format!(
            "[regions] routing = \"fly-replay\" does not work on {platform}: only Fly.io's proxy follows the fly-replay header, so every request that belongs to another region ({}) would fail; set routing = \"forward\" in [regions] and give each region's agentd address in [regions.urls] (such as nrt = \"https://nrt.example.com\")",
            regions.list.join(", ")
        )));
    }
    Ok(())
}

/// Whether the config itself reads `var` (`${VAR}` without a default): it does not load
/// without it, so the variable is required wherever the deployment sets it.
pub(crate) fn config_requires(ctx: &Ctx<'_>, var: &str) -> bool {
    crate::env_vars_in(&ctx.config_text)
        .iter()
        .any(|v| v == var)
}

/// How `create-secret.sh` treats a key of the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// The script stops when the variable is unset or empty.
    Required,
    /// Always in the Secret, with this value when the variable is unset.
    Default(&'static str),
    /// In the Secret only when set.
    Optional,
}

/// Keys of the Secret: the config's variables, plus what KEDA needs to reach the queue. A
/// variable the config reads is required (the Deployments do not mark it optional either);
/// only `AGENTD_ADMIN_KEY`, listed even when the config does not read it, may be left out.
fn secret_keys(ctx: &Ctx<'_>) -> Vec<(String, Need)> {
    let mut keys: Vec<(String, Need)> = ctx
        .secret_vars
        .iter()
        .map(|var| {
            let need = if config_requires(ctx, var) {
                Need::Required
            } else {
                Need::Optional
            };
            (var.clone(), need)
        })
        .collect();
    keys.extend(keda_secret_keys(ctx));
    keys
}

/// Keys KEDA's TriggerAuthentication reads (every region: each scales on its own queue).
fn keda_secret_keys(ctx: &Ctx<'_>) -> Vec<(String, Need)> {
    if !ctx.split_roles {
        return Vec::new();
    }
    match ctx.queue() {
        agentd_config::QueueBackend::Store => Vec::new(),
        agentd_config::QueueBackend::Redis { .. } => vec![
            (keda::REDIS_ADDRESS_KEY.to_owned(), Need::Required),
            (keda::REDIS_PASSWORD_KEY.to_owned(), Need::Default("")),
            (keda::REDIS_TLS_KEY.to_owned(), Need::Default("disable")),
        ],
        agentd_config::QueueBackend::Nats { .. } => {
            vec![(keda::NATS_MONITORING_KEY.to_owned(), Need::Required)]
        }
    }
}

/// `create-secret.sh`: the values go from the environment into a temporary env file only the
/// user can read (umask 077), which `kubectl create secret --from-env-file` reads and a trap
/// removes; never onto a command line (`--from-literal=KEY=value` is visible to every user in
/// `ps` while kubectl runs). Written for bash 3.2 (macOS) too: no arrays, and `${1+"$@"}`
/// for the kubectl flags (3.2's `set -u` rejects a bare `"$@"` when there are none).
fn create_secret_script(ctx: &Ctx<'_>, names: &Names) -> String {
    let codes: Vec<&str> = ctx.regions.iter().map(|r| r.code).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#!/usr/bin/env bash\n\
# Creates or updates the Secret {secret} in a region's namespace from variables of YOUR\n\
# environment. Usage:\n\
#   export OPENAI_API_KEY=...   # every variable ../README.md lists\n\
#   ./create-secret.sh REGION [kubectl flags such as --context=...]\n\
# REGION is one of: {regions}. A required variable stops the script when unset or empty; an\n\
# optional one is left out of the Secret when unset.\n\
# No value reaches a command line (which `ps` shows to every user) or a file that outlives the\n\
# script: they go into a temporary env file only you can read, handed to kubectl\n\
# --from-env-file and removed on exit. An env file holds one line per key: a value cannot span\n\
# several lines. Runs with bash 3.2 (macOS) and later.",
        secret = names.secret(),
        regions = codes.join(", ")
    );
    s.push_str("set -euo pipefail\n\n");
    let _ = writeln!(
        s,
        "region=\"${{1:?usage: $0 REGION [kubectl flags] (REGION: {})}}\"\nshift\ncase \"$region\" in\n  {}) ;;\n  *) echo \"unknown region $region (use one of: {})\" >&2; exit 2 ;;\nesac\nnamespace=\"{}-$region\"\n",
        codes.join(", "),
        codes.join("|"),
        codes.join(", "),
        names.app
    );
    let _ = writeln!(
        s,
        "umask 077\nenv_file=\"$(mktemp \"${{TMPDIR:-/tmp}}/{app}-secrets.XXXXXX\")\"\ntrap 'rm -f \"$env_file\"' EXIT\ntrap 'exit 130' HUP INT TERM\n\n\
# put KEY VALUE: one line of the env file (printf is a shell builtin: no process shows VALUE).\n\
put() {{\n  case \"$2\" in\n    *$'\\n'*) echo \"$1 spans several lines, which an env file cannot hold: add it to the Secret by hand\" >&2; exit 1 ;;\n  esac\n  printf '%s=%s\\n' \"$1\" \"$2\" >>\"$env_file\"\n}}",
        app = names.app
    );
    for (key, need) in secret_keys(ctx) {
        let _ = match need {
            Need::Required => writeln!(s, "put {key} \"${{{key}:?set {key} in the environment}}\""),
            Need::Default(value) => writeln!(s, "put {key} \"${{{key}:-{value}}}\""),
            Need::Optional => writeln!(
                s,
                "if [ -n \"${{{key}:-}}\" ]; then put {key} \"${key}\"; fi"
            ),
        };
    }
    let _ = writeln!(
        s,
        "\n# ${{1+\"$@\"}}: the kubectl flags given after REGION, or nothing.\n\
kubectl ${{1+\"$@\"}} create namespace \"$namespace\" --dry-run=client -o yaml | kubectl ${{1+\"$@\"}} apply -f -\n\
kubectl ${{1+\"$@\"}} -n \"$namespace\" create secret generic {} --from-env-file=\"$env_file\" --dry-run=client -o yaml \\\n  | kubectl ${{1+\"$@\"}} apply -f -",
        names.secret()
    );
    s
}

fn readme(ctx: &Ctx<'_>, names: &Names) -> String {
    let mut r = String::new();
    let primary = ctx.primary.code;
    let _ = writeln!(
        r,
        "# {app} on Kubernetes\n\nWritten by `agentd deploy render --target k8s`; render again after changing the config.\n\n\
- `overlays/<region>/`: what you apply, one per region ({regions}; primary {primary}, {city}), each in namespace `{app}-<region>`, setting `AGENTD_REGION` and a preference for nodes of that cloud region.\n\
- `base/`: the resources every overlay shares. Do not apply it on its own: it sets no namespace, so `kubectl apply -k base` would land in whatever namespace your context has, without a region. Even with one region, apply `overlays/{primary}`.\n\
- `create-secret.sh`: creates the Secret `{secret}` from your environment (the manifests only reference it by name).\n\
- `prometheus-adapter.yaml`: Helm values exposing `agentd_http_requests_in_flight` to the api's HPA.\n",
        app = names.app,
        regions = ctx.regions.iter().map(|r| r.code).collect::<Vec<_>>().join(", "),
        city = ctx.primary.city,
        secret = names.secret(),
    );
    if ctx.split_roles {
        let _ = writeln!(
            r,
            "## Layout\n\nThe store is PostgreSQL, so the roles are split: `{api}` serves the API (Service `{svc}`, PodDisruptionBudget of one pod at a time, HPA on CPU and in-flight requests, {min} replicas minimum in every region so that a node drain, which the budget lets take one at a time, always leaves one serving, {max} at most); one worker Deployment per pool ({pools}) is scaled by a KEDA ScaledObject built from the pool's schedule. Every region runs workers on its own store and queue (the region's secrets): the runs of the tenants whose home region it is live there, and with strict residency may run nowhere else; the primary region's hold everyone else's. If all regions share one database and one queue instead, every region's workers serve it (claims are fenced) and each region's KEDA sees the whole backlog: lower the secondary overlays' maxReplicaCount, or delete their worker Deployments there.\n",
            api = names.api(),
            svc = names.service(),
            min = API_MIN,
            max = API_MAX,
            pools = ctx
                .pools()
                .iter()
                .map(|p| format!("`{}`", names.worker(&p.name)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        r.push_str("| pool | KEDA's bounds | business hours | outside business hours | idle shutdown | persistent |\n| --- | --- | --- | --- | --- | --- |\n");
        for pool in ctx.pools() {
            let s = &pool.schedule;
            let (min, max) = replica_bounds(pool);
            let hours = s.business_hours.as_ref().map_or("none".to_owned(), |b| {
                let (start, end) = b.cron_start_end();
                format!(
                    "`{start}` to `{end}` {} ({}..{} workers)",
                    b.timezone, b.min_workers, b.max_workers
                )
            });
            let _ = writeln!(
                r,
                "| {} | {min}..{max} | {hours} | {}..{} workers | {} s | {} |",
                pool.name,
                s.min_workers,
                s.max_workers,
                s.idle_shutdown.as_secs(),
                s.persistent
            );
        }
        r.push('\n');
        if keda::composes_streams(ctx) {
            r.push_str("KEDA sizes each pool from its queue: the four priority streams' backlogs **added** (`advanced.scalingModifiers`; separate triggers would give the HPA their maximum, not their sum), one replica per `concurrency` runs, and in business hours at least the business-hours minimum (the cron trigger inside the formula). KEDA has **one** maximum at all hours, the larger of the two: the off-hours maximum is only in agentd's own desired count (`agentd_pool_desired_workers`), which KEDA does not read with this queue, so off hours a backlog can take a pool up to its business-hours maximum.\n\n");
        } else {
            r.push_str("KEDA sizes each pool from agentd's own desired count (`agentd_pool_desired_workers`, through Prometheus), which applies the hour's minimum and maximum; the cron trigger also holds the business-hours minimum. KEDA itself has one maximum, the larger of the two.\n\n");
        }
    } else {
        r.push_str("## Layout\n\nThe store is SQLite: one Deployment runs every role with one replica and a PersistentVolumeClaim, replaced (not rolled) on update. Nothing autoscales; switch `[store]` to PostgreSQL to split the api and the workers and get the HPA and KEDA. Each region's overlay is an independent instance with its own database.\n\n");
    }
    let _ = writeln!(
        r,
        "## Prerequisites\n\n- Kubernetes 1.30 or later (the api's `preStop` uses the built-in `sleep` action: the image has no shell).\n- metrics-server (CPU for the HPA).\n- KEDA 2.12 or later, for the worker pools (`advanced.scalingModifiers`):\n\n      helm repo add kedacore https://kedacore.github.io/charts\n      helm install keda kedacore/keda --namespace keda --create-namespace\n\n- prometheus-adapter, for the in-flight metric of the api's HPA (a Prometheus that scrapes the pods: they carry `prometheus.io/*` annotations; with the Prometheus Operator add a PodMonitor for `{name_label}={app}`):\n\n      helm repo add prometheus-community https://prometheus-community.github.io/helm-charts\n      helm install prometheus-adapter prometheus-community/prometheus-adapter --namespace monitoring -f prometheus-adapter.yaml \\\n        --set prometheus.url=http://prometheus-operated.monitoring.svc --set prometheus.port=9090\n",
        name_label = NAME_LABEL,
        app = names.app,
    );
    if matches!(ctx.queue(), agentd_config::QueueBackend::Store) && ctx.split_roles {
        let _ = writeln!(
            r,
            "- The store queue has no broker KEDA can read, so the ScaledObjects ask Prometheus for `agentd_pool_desired_workers{{pool}}` at `{}`: change `serverAddress` in `base/keda-*.yaml` if yours lives elsewhere.\n",
            keda::PROMETHEUS_URL
        );
    }
    let keys = secret_keys(ctx);
    let listed = |need: fn(&Need) -> bool| {
        keys.iter()
            .filter(|(_, n)| need(n))
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let required = listed(|n| *n == Need::Required);
    let optional = listed(|n| *n != Need::Required);
    let _ = writeln!(
        r,
        "## Deploy\n\n1. Secrets, per region (values come from your environment, never from a file or a command line):\n\n       export {vars}\n       ./create-secret.sh {primary} --context=<{primary} cluster>\n\n   Required (the config reads them, or KEDA needs them; a pod without one would not start): {required}.{optional}\n",
        vars = keys
            .iter()
            .map(|(k, _)| format!("{k}=..."))
            .collect::<Vec<_>>()
            .join(" "),
        required = if required.is_empty() { "none".to_owned() } else { required },
        optional = if optional.is_empty() {
            String::new()
        } else {
            format!(" Optional (a default or left out when unset): {optional}.")
        },
    );
    if ctx.split_roles {
        match ctx.queue() {
            agentd_config::QueueBackend::Store => {}
            agentd_config::QueueBackend::Redis { .. } => r.push_str("   In every region KEDA reads that region's queue with keys of the same Secret: `KEDA_REDIS_ADDRESS` (`host:port`), `KEDA_REDIS_PASSWORD` (may be empty) and `KEDA_REDIS_TLS` (`enable`, or `disable`: the default).\n\n"),
            agentd_config::QueueBackend::Nats { .. } => r.push_str("   In every region KEDA reads that region's queue with a key of the same Secret: `KEDA_NATS_MONITORING_ENDPOINT` (`host:8222`, the NATS monitoring port).\n\n"),
        }
    }
    r.push_str("2. Apply, per region (primary first), always through its overlay:\n\n");
    for region in &ctx.regions {
        let _ = writeln!(
            r,
            "       kubectl --context=<{code} cluster> apply -k overlays/{code}{note}",
            code = region.code,
            note = if region.code == primary {
                "   # primary"
            } else {
                ""
            }
        );
    }
    let (api_cpu, api_mem, api_mem_limit) = workload::API_FIGURES;
    let (all_cpu, all_mem, all_mem_limit) = workload::ALL_FIGURES;
    let (w_cpu, w_mem, w_limit) = workload::WORKER_FIGURES;
    let (g_cpu, g_mem, g_limit) = workload::GPU_WORKER_FIGURES;
    let _ = writeln!(
        r,
        "\n3. Check:\n\n       kubectl -n {app}-{primary} rollout status deployment\n       kubectl -n {app}-{primary} get hpa,scaledobjects,pods\n\nPreview what an overlay applies with `kubectl kustomize overlays/{primary}`.\n\n\
## Draining\n\nOn SIGTERM agentd stops taking work and drains for `server.shutdown_grace` ({drain} s). The api first keeps serving for {pre} s (`preStop`) while endpoints drop it; `terminationGracePeriodSeconds` is {api_grace} s for the api and {worker_grace} s for workers (drain + {margin} s). Runs still going at the deadline are redelivered to another worker.\n\n\
## Resources\n\nFrom the benchmarks: idle RSS about 30 MiB, 10,000 streaming clients 167 MiB, 1,024 concurrent requests about 104 MiB. Requests and memory limits: the api {api_cpu} CPU and {api_mem} (limit {api_mem_limit}); workers {w_cpu} and {w_mem} (limit {w_limit}); GPU pools {g_cpu} and {g_mem} (limit {g_limit}) plus one `nvidia.com/gpu`, which only GPU nodes offer (they tolerate the `nvidia.com/gpu` taint); the single SQLite deployment {all_cpu} and {all_mem} (limit {all_mem_limit}).\n\n\
Every container has a CPU limit of {cpu_limit} cores: a ceiling against a runaway process, well above the requests, not a tight limit (throttling a gateway adds latency to every stream it carries). Raise it, or remove `limits.cpu`, if your pods show CPU throttling (`container_cpu_cfs_throttled_periods_total`) and your cluster's policies allow it.",
        app = names.app,
        drain = ctx.drain_seconds,
        pre = workload::PRE_STOP_SECONDS,
        api_grace = workload::PRE_STOP_SECONDS + ctx.drain_seconds + workload::EXIT_MARGIN_SECONDS,
        worker_grace = ctx.drain_seconds + workload::EXIT_MARGIN_SECONDS,
        margin = workload::EXIT_MARGIN_SECONDS,
        cpu_limit = workload::CPU_LIMIT,
    );
    if ctx.config.deploy.domain.is_some() {
        let _ = writeln!(
            r,
            "\n## Ingress\n\n`base/ingress.yaml` names no `ingressClassName`, so the cluster's default IngressClass serves it: add `spec.ingressClassName` (with a kustomize patch) to pick another. Its annotations are ingress-nginx's: response buffering off (streamed tokens reach the client as they come) and {timeout} s read and send timeouts (long SSE streams and WebSockets). Other controllers ignore them and keep their own timeouts, which cut streams short:\n\n\
- GKE (`gce` class): the backend service times out after 30 s. Create a BackendConfig (`cloud.google.com/v1`, a GKE resource, not rendered here: other clusters would reject it) named `{svc}` with `spec.timeoutSec: {timeout}`, and point the Service at it with the annotation `cloud.google.com/backend-config: '{{\"default\": \"{svc}\"}}'`.\n\
- AWS Load Balancer Controller (`alb` class): the idle timeout is 60 s. Add the annotation `alb.ingress.kubernetes.io/load-balancer-attributes: idle_timeout.timeout_seconds={timeout}`.\n\
- Any other controller: set its request (read) timeout to {timeout} s and turn response buffering off.",
            timeout = INGRESS_TIMEOUT_SECONDS,
            svc = names.service(),
        );
    }
    r
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
