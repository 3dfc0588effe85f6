//! Google Cloud Run: Knative-style service manifests for `gcloud run services replace`, one
//! `cloudrun/service-<region>.yaml` per region (the api, or the whole of agentd on SQLite) and,
//! on PostgreSQL, one `cloudrun/worker-<pool>.yaml` per pool in the primary region; then
//! `cloudrun/deploy.sh` (image, secrets, services, the schedules, a global load balancer across
//! regions), `cloudrun/README.md` and the config itself.
//!
//! The decision to know: **Cloud Run scales on requests and CPU, never on a queue.** The api
//! suits it (request timeout at the 60-minute maximum for streams, session affinity for
//! reconnecting clients, CPU always allocated so runs keep going between requests). Workers
//! get no requests, so their instance counts come from the pools' schedules alone: service-level
//! minimum and maximum instances for the hours outside business hours, and Cloud Scheduler jobs
//! that move them at the start and end of business hours. Nothing ever starts an instance for
//! queued work, so the minimum is what runs: a pool without business hours gets at least one
//! instance (its `min_workers = 0` would otherwise never run anything), and a business-hours window
//! at least one too; only outside a pool's business hours may it sit at zero, its runs waiting for
//! the next start. Fly.io and Kubernetes (which follow agentd's desired count) scale on the queue.
//!
//! Cloud Run gives an instance about 10 s between SIGTERM and SIGKILL (the container contract),
//! whatever `server.shutdown_grace` says; the manifests and README say so. There is no setting
//! to change it.

use std::fmt::Write as _;

use agentd_config::{PoolConfig, RegionRouting};
use serde_json::json;

use crate::docker::{self, CONFIG_PATH, DATA_DIR};
use crate::fly::{describe_schedule, is_gpu_pool, request_limits};
use crate::yaml::{self, list, map, v, Node};
use crate::{Ctx, File, RenderError};

const DIR: &str = "cloudrun";
/// Cloud Run's longest request: streams and `runs.wait` may take that long.
const REQUEST_TIMEOUT_SECONDS: u32 = 3600;
/// Cloud Run's largest `containerConcurrency`.
const MAX_CONCURRENCY: usize = 1000;
/// Api instances per region at most.
const API_MAX_INSTANCES: u32 = 10;
/// The replacement `deploy.sh` makes in the manifests (project ids are not in the config).
const PROJECT_PLACEHOLDER: &str = "PROJECT_ID";
/// Cloud Run service names: at most 49 characters.
const MAX_SERVICE_NAME: usize = 49;
/// Seconds Cloud Run waits after SIGTERM before SIGKILL (container runtime contract).
const SIGTERM_GRACE_SECONDS: u64 = 10;
/// Cloud Run GPUs need at least this much CPU and memory per instance.
const GPU_CPU: &str = "4";
const GPU_MEMORY: &str = "16Gi";
const GPU_KIND: &str = "nvidia-l4";

struct Worker<'a> {
    service: String,
    pool: &'a PoolConfig,
}

pub(crate) fn render(ctx: &Ctx<'_>) -> Result<Vec<File>, RenderError> {
    if !ctx.split_roles && ctx.regions.len() > 1 {
        return Err(RenderError::Invalid(format!(
            "store.kind = \"sqlite\" keeps every run in one instance's memory on Cloud Run, so it runs one instance in one region, but {} regions are listed ({}); use store.kind = \"postgres\" to run in several regions, or list one",
            ctx.regions.len(),
            ctx.regions.iter().map(|r| r.code).collect::<Vec<_>>().join(",")
        )));
    }
    check_name(&ctx.app)?;
    for (i, a) in ctx.regions.iter().enumerate() {
        if let Some(b) = ctx.regions[..i].iter().find(|b| b.gcp == a.gcp) {
            return Err(RenderError::Invalid(format!(
                "regions \"{}\" and \"{}\" are both served by the Google Cloud region {}, where one Cloud Run service \"{}\" can run; list one of them",
                b.code, a.code, a.gcp, ctx.app
            )));
        }
    }
    let workers = if ctx.split_roles {
        workers(ctx)?
    } else {
        Vec::new()
    };
    let mut files = Vec::new();
    for region in &ctx.regions {
        files.push(File::new(
            format!("{DIR}/service-{}.yaml", region.code),
            api_service(ctx, region),
        ));
    }
    for worker in &workers {
        files.push(File::new(
            format!("{DIR}/worker-{}.yaml", worker.service_suffix()),
            worker_service(ctx, worker),
        ));
    }
    files.push(docker::config_file(DIR, ctx));
    files.push(File::script(
        format!("{DIR}/deploy.sh"),
        deploy_script(ctx, &workers),
    ));
    files.push(File::new(format!("{DIR}/README.md"), readme(ctx, &workers)));
    Ok(files)
}

impl Worker<'_> {
    fn service_suffix(&self) -> &str {
        self.service.rsplit_once("-worker-").map_or("", |(_, s)| s)
    }
}

fn check_name(name: &str) -> Result<(), RenderError> {
    if name.len() > MAX_SERVICE_NAME {
        return Err(RenderError::Invalid(format!(
            "the Cloud Run service name \"{name}\" is longer than {MAX_SERVICE_NAME} characters; shorten [deploy] app or the pool's name"
        )));
    }
    Ok(())
}

fn workers<'a>(ctx: &Ctx<'a>) -> Result<Vec<Worker<'a>>, RenderError> {
    let mut out: Vec<Worker<'a>> = Vec::new();
    for pool in ctx.pools() {
        let service = format!(
            "{}-worker-{}",
            ctx.app,
            pool.name.to_ascii_lowercase().replace('_', "-")
        );
        check_name(&service)?;
        if let Some(other) = out.iter().find(|w| w.service == service) {
            return Err(RenderError::Invalid(format!(
                "pools \"{}\" and \"{}\" both become the Cloud Run service \"{service}\"; rename one",
                other.pool.name, pool.name
            )));
        }
        out.push(Worker { service, pool });
    }
    Ok(out)
}

/// The image the services run: `[deploy] image`, else the app's Artifact Registry repository
/// in the primary region (`deploy.sh` pushes there).
fn image(ctx: &Ctx<'_>) -> String {
    ctx.config.deploy.image.clone().unwrap_or_else(|| {
        format!(
            "{}-docker.pkg.dev/{PROJECT_PLACEHOLDER}/{app}/{app}:latest",
            ctx.primary.gcp,
            app = ctx.app
        )
    })
}

fn service_account(ctx: &Ctx<'_>) -> String {
    format!(
        "{}-run@{PROJECT_PLACEHOLDER}.iam.gserviceaccount.com",
        ctx.app
    )
}

/// The Secret Manager secret holding `var` (`OPENAI_API_KEY` → `agentd-openai-api-key`).
fn secret_name(ctx: &Ctx<'_>, var: &str) -> String {
    format!("{}-{}", ctx.app, var.to_ascii_lowercase().replace('_', "-"))
}

fn config_secret(ctx: &Ctx<'_>) -> String {
    format!("{}-config", ctx.app)
}

/// Whether the config text itself references `var` (the rest of `secret_vars` is optional).
fn referenced(ctx: &Ctx<'_>, var: &str) -> bool {
    crate::env_vars_in(&ctx.config_text)
        .iter()
        .any(|v| v == var)
}

fn env(ctx: &Ctx<'_>, region_code: &str) -> Node {
    let mut items = vec![
        map([
            ("name", v("AGENTD_LISTEN")),
            ("value", v(format!("0.0.0.0:{}", ctx.port))),
        ]),
        map([("name", v("AGENTD_LOG_FORMAT")), ("value", v("json"))]),
        // This instance's region (AGENTD_REGION overrides server.region; FLY_REGION is Fly's own).
        map([("name", v("AGENTD_REGION")), ("value", v(region_code))]),
    ];
    for var in &ctx.secret_vars {
        items.push(map([
            ("name", v(var.clone())),
            (
                "valueFrom",
                map([(
                    "secretKeyRef",
                    map([("name", v(secret_name(ctx, var))), ("key", v("latest"))]),
                )]),
            ),
        ]));
    }
    list(items)
}

fn probes(ctx: &Ctx<'_>) -> Vec<(&'static str, Node)> {
    vec![
        // Traffic starts once the store answers (/readyz): up to 2 s × 60 for the first start.
        (
            "startupProbe",
            map([
                (
                    "httpGet",
                    map([("path", v("/readyz")), ("port", v(ctx.port))]),
                ),
                ("periodSeconds", v(2)),
                ("timeoutSeconds", v(2)),
                ("failureThreshold", v(60)),
            ]),
        ),
        (
            "livenessProbe",
            map([
                (
                    "httpGet",
                    map([("path", v("/healthz")), ("port", v(ctx.port))]),
                ),
                ("periodSeconds", v(15)),
                ("timeoutSeconds", v(2)),
                ("failureThreshold", v(3)),
            ]),
        ),
    ]
}

fn config_volume(ctx: &Ctx<'_>) -> Node {
    map([
        ("name", v("config")),
        (
            "secret",
            map([
                ("secretName", v(config_secret(ctx))),
                (
                    "items",
                    list([map([("key", v("latest")), ("path", v("agentd.toml"))])]),
                ),
            ]),
        ),
    ])
}

fn config_mount() -> Node {
    let dir = CONFIG_PATH
        .rsplit_once('/')
        .map_or("/etc/agentd", |(d, _)| d);
    map([
        ("name", v("config")),
        ("mountPath", v(dir)),
        ("readOnly", v(true)),
    ])
}

fn container(
    ctx: &Ctx<'_>,
    region_code: &str,
    args: &[&str],
    resources: Node,
    data_volume: bool,
) -> Node {
    let mut mounts = vec![config_mount()];
    if data_volume {
        mounts.push(map([("name", v("data")), ("mountPath", v(DATA_DIR))]));
    }
    let mut pairs: Vec<(&str, Node)> = vec![
        ("name", v("agentd")),
        ("image", v(image(ctx))),
        ("args", v(json!(args))),
        (
            "ports",
            list([map([("name", v("http1")), ("containerPort", v(ctx.port))])]),
        ),
        ("env", env(ctx, region_code)),
        ("resources", resources),
    ];
    pairs.extend(probes(ctx));
    pairs.push(("volumeMounts", list(mounts)));
    map(pairs)
}

/// The header lines on stopping: Cloud Run's ~10 s between SIGTERM and SIGKILL against
/// `server.shutdown_grace`.
fn shutdown_lines(ctx: &Ctx<'_>) -> Vec<String> {
    let drain = ctx.drain_seconds;
    // A couple of seconds to close connections and exit after the drain.
    let fits = SIGTERM_GRACE_SECONDS - 2;
    let mut lines = vec![format!(
        "Stopping: Cloud Run sends SIGTERM, then SIGKILL about {SIGTERM_GRACE_SECONDS} s later (not configurable)."
    )];
    if drain > fits {
        lines.push(format!(
            "server.shutdown_grace is {drain} s, so a drain longer than {SIGTERM_GRACE_SECONDS} s is cut: streams end and runs still"
        ));
        lines.push(format!(
            "going are redelivered to another worker. Set server.shutdown_grace_ms = {} or less for Cloud Run.",
            fits * 1000
        ));
    } else {
        lines.push(format!(
            "server.shutdown_grace ({drain} s) fits in it: agentd drains and exits before SIGKILL."
        ));
    }
    lines
}

fn header(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
    out
}

fn api_service(ctx: &Ctx<'_>, region: &agentd_config::Region) -> String {
    let (_, hard) = request_limits(ctx);
    let concurrency = hard.min(MAX_CONCURRENCY);
    let sqlite = !ctx.split_roles;
    let mut lines = vec![
        format!(
            "Cloud Run service \"{}\" in {} ({}, region {}), written by `agentd deploy render --target cloudrun`.",
            ctx.app, region.gcp, region.city, region.code
        ),
        format!(
            "Deploy with deploy.sh (it fills in {PROJECT_PLACEHOLDER}), or: gcloud run services replace service-{}.yaml --region {}",
            region.code, region.gcp
        ),
        String::new(),
    ];
    if sqlite {
        lines.push("SQLite: every role in one instance, its database in an in-memory volume: state is lost when".into());
        lines.push(
            "the instance is replaced (a deploy, a crash, a host move). For trying agentd out; use"
                .into(),
        );
        lines.push("store.kind = \"postgres\" for anything that must last.".into());
    } else {
        lines.push("The api role; workers run in worker-<pool>.yaml (primary region only).".into());
    }
    lines.push(format!(
        "containerConcurrency {concurrency}: server.max_concurrent_requests (Cloud Run allows {MAX_CONCURRENCY} at most), so"
    ));
    lines.push(
        "Cloud Run starts another instance before agentd would shed load. Requests may last".into(),
    );
    lines.push(format!(
        "{REQUEST_TIMEOUT_SECONDS} s (the maximum) for streams; CPU stays allocated between requests so runs keep going;"
    ));
    lines.push(
        "session affinity sends a reconnecting stream client back to the same instance.".into(),
    );
    lines.push(String::new());
    lines.extend(shutdown_lines(ctx));
    if ctx.regions_config().is_multi_region()
        && ctx.regions_config().routing == RegionRouting::FlyReplay
    {
        lines.push(String::new());
        lines.push("WARNING: regions.routing is \"fly-replay\", which only Fly.io's proxy follows; on Cloud Run use".into());
        lines.push("routing = \"forward\" with [regions.urls] (each region's service URL).".into());
    }

    let min = 1;
    let max = if sqlite { 1 } else { API_MAX_INSTANCES };
    let resources = map([(
        "limits",
        map([
            ("cpu", v("1")),
            // SQLite's in-memory volume counts against the instance's memory.
            ("memory", v(if sqlite { "1Gi" } else { "512Mi" })),
        ]),
    )]);
    let args: &[&str] = if sqlite {
        &["serve"]
    } else {
        &["serve", "--role", "api"]
    };
    let mut volumes = vec![config_volume(ctx)];
    if sqlite {
        volumes.push(map([
            ("name", v("data")),
            (
                "emptyDir",
                map([("medium", v("Memory")), ("sizeLimit", v("512Mi"))]),
            ),
        ]));
    }
    let doc = map([
        ("apiVersion", v("serving.knative.dev/v1")),
        ("kind", v("Service")),
        (
            "metadata",
            map([
                ("name", v(ctx.app.clone())),
                (
                    "labels",
                    map([
                        ("app", v(ctx.app.clone())),
                        ("role", v(if sqlite { "all" } else { "api" })),
                    ]),
                ),
                (
                    "annotations",
                    map([("run.googleapis.com/ingress", v("all"))]),
                ),
            ]),
        ),
        (
            "spec",
            map([(
                "template",
                map([
                    (
                        "metadata",
                        map([
                            (
                                "labels",
                                map([("app", v(ctx.app.clone())), ("region", v(region.code))]),
                            ),
                            (
                                "annotations",
                                map([
                                    ("autoscaling.knative.dev/minScale", v(min.to_string())),
                                    ("autoscaling.knative.dev/maxScale", v(max.to_string())),
                                    ("run.googleapis.com/cpu-throttling", v("false")),
                                    ("run.googleapis.com/execution-environment", v("gen2")),
                                    ("run.googleapis.com/sessionAffinity", v("true")),
                                    ("run.googleapis.com/startup-cpu-boost", v("true")),
                                ]),
                            ),
                        ]),
                    ),
                    (
                        "spec",
                        map([
                            ("containerConcurrency", v(concurrency)),
                            ("timeoutSeconds", v(REQUEST_TIMEOUT_SECONDS)),
                            ("serviceAccountName", v(service_account(ctx))),
                            (
                                "containers",
                                list([container(ctx, region.code, args, resources, sqlite)]),
                            ),
                            ("volumes", list(volumes)),
                        ]),
                    ),
                ]),
            )]),
        ),
    ]);
    format!("{}{}", header(&lines), yaml::to_string(&doc))
}

/// `(min, max)` instances of a worker service outside and during business hours.
///
/// Nothing starts a worker instance when runs are queued (no requests reach it), so the minimum
/// is the count that runs. A pool without business hours is never started by a Scheduler job
/// either: its minimum is at least 1, or its runs would never execute. A business-hours window
/// gets at least 1 for the same reason. Only outside a pool's business hours may the minimum be
/// 0: its runs then wait for the next start job.
fn worker_bounds(pool: &PoolConfig) -> ((u32, u32), Option<(u32, u32)>) {
    let s = &pool.schedule;
    let off = if s.persistent {
        (s.max_workers.max(1), s.max_workers.max(1))
    } else if s.business_hours.is_none() {
        (s.min_workers.max(1), s.max_workers.max(1))
    } else {
        (s.min_workers, s.max_workers.max(1))
    };
    let business = s.business_hours.as_ref().map(|b| {
        if s.persistent {
            (b.max_workers.max(1), b.max_workers.max(1))
        } else {
            (b.min_workers.max(1), b.max_workers.max(1))
        }
    });
    (off, business)
}

fn worker_service(ctx: &Ctx<'_>, worker: &Worker<'_>) -> String {
    let pool = worker.pool;
    let region = ctx.primary;
    let ((min, max), business) = worker_bounds(pool);
    let gpu = is_gpu_pool(&pool.name);
    let mut lines = vec![
        format!(
            "Cloud Run service \"{}\" in {} ({}, the primary region): the workers of pool \"{}\",",
            worker.service, region.gcp, region.code, pool.name
        ),
        format!(
            "{} runs at once each; written by `agentd deploy render --target cloudrun`.",
            pool.concurrency
        ),
        String::new(),
        format!("Schedule: {}.", describe_schedule(pool)),
        "Cloud Run cannot see the queue and no requests reach a worker, so nothing starts an instance"
            .into(),
        "for queued runs: the minimum is the count that runs (more only on CPU load, up to the maximum)."
            .into(),
        format!("The service-level minScale/maxScale below ({min}-{max}) hold outside business hours."),
    ];
    if pool.schedule.business_hours.is_none()
        && !pool.schedule.persistent
        && pool.schedule.min_workers == 0
    {
        lines.push("min_workers is 0, but with no business hours no job would ever start a worker, so minScale".into());
        lines.push(
            "is 1: one instance always runs (on Fly.io and Kubernetes the pool scales to zero)."
                .into(),
        );
    }
    if let (Some((bmin, bmax)), Some(b)) = (business, pool.schedule.business_hours.as_ref()) {
        let (start, end) = b.cron_start_end();
        lines.push(format!(
            "deploy.sh's Cloud Scheduler jobs set {bmin}-{bmax} at \"{start}\" and {min}-{max} at \"{end}\" ({}).",
            b.timezone
        ));
    }
    if min == 0 {
        lines.push("Outside business hours 0 instances run: nothing claims this pool's runs until the next start job.".into());
    }
    lines.push("No public traffic (ingress internal); CPU always allocated, so the workers run without requests.".into());
    lines.push(String::new());
    lines.extend(shutdown_lines(ctx));
    if gpu {
        lines.push(String::new());
        lines.push(format!(
            "GPU pool: one {GPU_KIND} per instance ({GPU_CPU} CPUs and {GPU_MEMORY} are Cloud Run's minimum with a GPU). Cloud"
        ));
        lines.push("Run has GPUs only in some regions and with quota; a pool that only calls hosted APIs needs".into());
        lines.push("none: remove nvidia.com/gpu and the nodeSelector.".into());
    }

    let resources = if gpu {
        map([(
            "limits",
            map([
                ("cpu", v(GPU_CPU)),
                ("memory", v(GPU_MEMORY)),
                ("nvidia.com/gpu", v("1")),
            ]),
        )])
    } else {
        map([("limits", map([("cpu", v("1")), ("memory", v("1Gi"))]))])
    };
    let mut template_annotations = vec![
        ("run.googleapis.com/cpu-throttling", v("false")),
        ("run.googleapis.com/execution-environment", v("gen2")),
    ];
    if gpu {
        template_annotations.push((
            "run.googleapis.com/gpu-zonal-redundancy-disabled",
            v("true"),
        ));
    }
    let args = ["serve", "--role", "worker", "--pools", pool.name.as_str()];
    let mut spec = vec![
        ("containerConcurrency", v(pool.concurrency)),
        ("timeoutSeconds", v(REQUEST_TIMEOUT_SECONDS)),
        ("serviceAccountName", v(service_account(ctx))),
    ];
    if gpu {
        spec.push((
            "nodeSelector",
            map([("run.googleapis.com/accelerator", v(GPU_KIND))]),
        ));
    }
    spec.push((
        "containers",
        list([container(ctx, region.code, &args, resources, false)]),
    ));
    spec.push(("volumes", list([config_volume(ctx)])));
    let doc = map([
        ("apiVersion", v("serving.knative.dev/v1")),
        ("kind", v("Service")),
        (
            "metadata",
            map([
                ("name", v(worker.service.clone())),
                (
                    "labels",
                    map([
                        ("app", v(ctx.app.clone())),
                        ("role", v("worker")),
                        ("pool", v(pool.name.to_ascii_lowercase())),
                    ]),
                ),
                (
                    "annotations",
                    map([
                        ("run.googleapis.com/ingress", v("internal")),
                        ("run.googleapis.com/minScale", v(min.to_string())),
                        ("run.googleapis.com/maxScale", v(max.to_string())),
                    ]),
                ),
            ]),
        ),
        (
            "spec",
            map([(
                "template",
                map([
                    (
                        "metadata",
                        map([
                            (
                                "labels",
                                map([("app", v(ctx.app.clone())), ("region", v(region.code))]),
                            ),
                            ("annotations", map(template_annotations)),
                        ]),
                    ),
                    ("spec", map(spec)),
                ]),
            )]),
        ),
    ]);
    format!("{}{}", header(&lines), yaml::to_string(&doc))
}

/// A shell word in single quotes.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn deploy_script(ctx: &Ctx<'_>, workers: &[Worker<'_>]) -> String {
    let app = &ctx.app;
    let primary = ctx.primary;
    let configured_image = ctx.config.deploy.image.is_some();
    let image_in_yaml = image(ctx);
    let mut s = String::new();
    let exports: Vec<String> = ctx.secret_vars.iter().map(|v| format!("{v}=...")).collect();
    let _ = writeln!(
        s,
        "#!/usr/bin/env bash\n\
         # Deploys agentd to Cloud Run, written by `agentd deploy render --target cloudrun`. Needs gcloud\n\
         # (logged in) and docker with BuildKit (Docker 23+; only the client and a builder: the image is\n\
         # built from the repository root). Secrets come from your environment and go to Secret Manager on\n\
         # stdin: never into a file or onto a command line.\n\
         #   export PROJECT_ID=<project> {exports}\n\
         #   bash deploy/cloudrun/deploy.sh          # TAG=<tag> to name the image; default: a timestamp\n\
         # Safe to run again: it updates what exists.\n\
         set -euo pipefail\n\
         \n\
         HERE=\"$(cd \"$(dirname \"${{BASH_SOURCE[0]}}\")\" && pwd)\"\n\
         # The Docker build context: the repository this was rendered in (deploy/cloudrun/ under it).\n\
         SOURCE=\"${{AGENTD_SOURCE:-$(cd \"$HERE/../..\" && pwd)}}\"\n\
         : \"${{PROJECT_ID:?export PROJECT_ID=<your Google Cloud project>}}\"\n\
         APP={app_q}\n\
         PRIMARY_REGION={region_q}\n\
         SA=\"$APP-run@$PROJECT_ID.iam.gserviceaccount.com\"\n\
         TAG=\"${{TAG:-$(date -u +%Y%m%d-%H%M%S)}}\"\n\
         MISSING=()\n\
         \n\
         step() {{ printf '\\n==> %s\\n' \"$*\"; }}\n\
         gc() {{ gcloud --project \"$PROJECT_ID\" --quiet \"$@\"; }}\n\
         # put_secret NAME < value: a new version of the secret, readable by the service account.\n\
         put_secret() {{\n\
         \x20 if gc secrets describe \"$1\" >/dev/null 2>&1; then\n\
         \x20   gc secrets versions add \"$1\" --data-file=- >/dev/null\n\
         \x20 else\n\
         \x20   gc secrets create \"$1\" --replication-policy automatic --data-file=- >/dev/null\n\
         \x20 fi\n\
         \x20 gc secrets add-iam-policy-binding \"$1\" --member \"serviceAccount:$SA\" \\\n\
         \x20   --role roles/secretmanager.secretAccessor >/dev/null\n\
         }}\n\
         # env_secret VAR SECRET [optional]: VAR's value from your environment into SECRET.\n\
         env_secret() {{\n\
         \x20 if [ -n \"${{!1:-}}\" ]; then\n\
         \x20   printf '%s' \"${{!1}}\" | put_secret \"$2\"; echo \"secret $2 <- \\${{$1}}\"\n\
         \x20 elif gc secrets describe \"$2\" >/dev/null 2>&1; then\n\
         \x20   echo \"secret $2 kept (\\${{$1}} not set)\"\n\
         \x20 elif [ \"${{3:-}}\" = optional ]; then\n\
         \x20   head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' | put_secret \"$2\"\n\
         \x20   echo \"secret $2 generated: gcloud secrets versions access latest --secret $2\"\n\
         \x20 else\n\
         \x20   MISSING+=(\"$1\")\n\
         \x20 fi\n\
         }}\n\
         \n\
         step \"APIs\"\n\
         gc services enable run.googleapis.com artifactregistry.googleapis.com secretmanager.googleapis.com \\\n\
         \x20 cloudscheduler.googleapis.com iam.googleapis.com{compute}",
        exports = exports.join(" "),
        app_q = sh(app),
        region_q = sh(primary.gcp),
        compute = if ctx.regions.len() > 1 {
            " compute.googleapis.com"
        } else {
            ""
        },
    );

    // The image.
    if configured_image {
        let _ = writeln!(
            s,
            "\nstep \"Image ([deploy] image)\"\n\
             IMAGE={img}\n\
             docker build -f \"$HERE/../Dockerfile\" -t \"$IMAGE\" \"$SOURCE\"\n\
             docker push \"$IMAGE\"\n\
             # The pushed digest, when docker knows it: the services then name this very build, so a\n\
             # rebuild under the same tag still rolls out (a spec that names the same tag makes no revision).\n\
             PUSHED=\"$(docker inspect --format '{{{{range .RepoDigests}}}}{{{{println .}}}}{{{{end}}}}' \"$IMAGE\" | grep -m 1 -F \"${{IMAGE%:*}}@\" || true)\"\n\
             IMAGE=\"${{PUSHED:-$IMAGE}}\"",
            img = sh(&image_in_yaml)
        );
    } else {
        let _ = writeln!(
            s,
            "\nstep \"Image: Artifact Registry in $PRIMARY_REGION\"\n\
             REPO=\"$PRIMARY_REGION-docker.pkg.dev/$PROJECT_ID/$APP/$APP\"\n\
             # A new tag per run: the services name it, so every run of this script rolls out its build.\n\
             IMAGE=\"$REPO:$TAG\"\n\
             gc artifacts repositories describe \"$APP\" --location \"$PRIMARY_REGION\" >/dev/null 2>&1 \\\n\
             \x20 || gc artifacts repositories create \"$APP\" --repository-format docker --location \"$PRIMARY_REGION\"\n\
             gcloud auth configure-docker \"$PRIMARY_REGION-docker.pkg.dev\" --quiet\n\
             docker build -f \"$HERE/../Dockerfile\" -t \"$IMAGE\" -t \"$REPO:latest\" \"$SOURCE\"\n\
             docker push \"$IMAGE\"\n\
             docker push \"$REPO:latest\""
        );
    }

    let _ = writeln!(
        s,
        "\nstep \"Service account $SA\"\n\
         gc iam service-accounts describe \"$SA\" >/dev/null 2>&1 \\\n\
         \x20 || gc iam service-accounts create \"$APP-run\" --display-name \"agentd on Cloud Run\"\n\
         \n\
         step \"Config and secrets (Secret Manager)\"\n\
         put_secret {config} < \"$HERE/agentd.toml\"",
        config = sh(&config_secret(ctx))
    );
    for var in &ctx.secret_vars {
        let optional = if referenced(ctx, var) {
            ""
        } else {
            " optional"
        };
        let _ = writeln!(
            s,
            "env_secret {var} {}{optional}",
            sh(&secret_name(ctx, var))
        );
    }
    let _ = writeln!(
        s,
        "if [ ${{#MISSING[@]}} -gt 0 ]; then\n\
         \x20 echo \"Not set in your environment: ${{MISSING[*]}}. Export them and run this again.\" >&2\n\
         \x20 exit 1\n\
         fi\n\
         \n\
         # manifest FILE: the manifest with this project and this run's image. The placeholder\n\
         # {PROJECT_PLACEHOLDER} is replaced everywhere (service account, registry path), and the container's\n\
         # image line is set to $IMAGE whatever the file names, so every run rolls out what it built.\n\
         manifest() {{\n\
         \x20 sed -e \"s#{PROJECT_PLACEHOLDER}#$PROJECT_ID#g\" -e \"s#^\\([[:space:]]*image:\\).*#\\1 $IMAGE#\" \"$HERE/$1\"\n\
         }}\n\
         # replace FILE REGION: the manifest, applied.\n\
         replace() {{\n\
         \x20 local tmp\n\
         \x20 tmp=\"$(mktemp)\"\n\
         \x20 manifest \"$1\" > \"$tmp\"\n\
         \x20 gc run services replace \"$tmp\" --region \"$2\"\n\
         \x20 rm -f \"$tmp\"\n\
         }}"
    );

    let _ = writeln!(s, "\nstep \"Services\"");
    for region in &ctx.regions {
        let _ = writeln!(
            s,
            "replace service-{code}.yaml {gcp}\n\
             # Public: agentd checks its own API keys.\n\
             gc run services add-iam-policy-binding \"$APP\" --region {gcp} --member allUsers --role roles/run.invoker \\\n\
             \x20 >/dev/null || echo \"could not open $APP in {gcp} to allUsers (an organization policy?): grant run.invoker yourself\" >&2",
            code = region.code,
            gcp = region.gcp
        );
    }
    for worker in workers {
        let _ = writeln!(
            s,
            "replace worker-{}.yaml \"$PRIMARY_REGION\"",
            worker.service_suffix()
        );
    }

    let scheduled: Vec<&Worker<'_>> = workers
        .iter()
        .filter(|w| w.pool.schedule.business_hours.is_some())
        .collect();
    if !scheduled.is_empty() {
        let _ = writeln!(
            s,
            "\nstep \"Business hours: Cloud Scheduler moves the workers' instance bounds\"\n\
             # The service account updates the worker services (and acts as itself to do so).\n\
             gc iam service-accounts add-iam-policy-binding \"$SA\" --member \"serviceAccount:$SA\" \\\n\
             \x20 --role roles/iam.serviceAccountUser >/dev/null\n\
             # schedule JOB SERVICE CRON TIMEZONE MIN MAX\n\
             schedule() {{\n\
             \x20 gc run services add-iam-policy-binding \"$2\" --region \"$PRIMARY_REGION\" --member \"serviceAccount:$SA\" \\\n\
             \x20   --role roles/run.developer >/dev/null\n\
             \x20 gc scheduler jobs delete \"$1\" --location \"$PRIMARY_REGION\" >/dev/null 2>&1 || true\n\
             \x20 gc scheduler jobs create http \"$1\" --location \"$PRIMARY_REGION\" --schedule \"$3\" --time-zone \"$4\" \\\n\
             \x20   --http-method PATCH --headers Content-Type=application/json \\\n\
             \x20   --uri \"https://run.googleapis.com/v2/projects/$PROJECT_ID/locations/$PRIMARY_REGION/services/$2?updateMask=scaling.minInstanceCount,scaling.maxInstanceCount\" \\\n\
             \x20   --message-body \"{{\\\"scaling\\\":{{\\\"minInstanceCount\\\":$5,\\\"maxInstanceCount\\\":$6}}}}\" \\\n\
             \x20   --oauth-service-account-email \"$SA\" >/dev/null\n\
             \x20 echo \"job $1: $2 to $5-$6 at '$3' ($4)\"\n\
             }}\n\
             # (Running this script inside business hours resets the bounds to the off-hours ones until the\n\
             # next job: run the start job by hand then, gcloud scheduler jobs run <service>-start.)"
        );
        for worker in scheduled {
            let ((min, max), business) = worker_bounds(worker.pool);
            let Some(b) = worker.pool.schedule.business_hours.as_ref() else {
                continue;
            };
            let (bmin, bmax) = business.unwrap_or((min, max));
            let (start, end) = b.cron_start_end();
            let _ = writeln!(
                s,
                "schedule \"{svc}-start\" \"{svc}\" {start} {tz} {bmin} {bmax}\n\
                 schedule \"{svc}-end\" \"{svc}\" {end} {tz} {min} {max}",
                svc = worker.service,
                start = sh(&start),
                end = sh(&end),
                tz = sh(&b.timezone),
            );
        }
    }

    if ctx.regions.len() > 1 {
        let _ = writeln!(
            s,
            "\nstep \"Global load balancer: each user reaches the nearest region\"\n\
             gc compute addresses describe \"$APP-ip\" --global >/dev/null 2>&1 || gc compute addresses create \"$APP-ip\" --global\n\
             gc compute backend-services describe \"$APP-backend\" --global >/dev/null 2>&1 \\\n\
             \x20 || gc compute backend-services create \"$APP-backend\" --global --load-balancing-scheme EXTERNAL_MANAGED"
        );
        for region in &ctx.regions {
            let _ = writeln!(
                s,
                "if ! gc compute network-endpoint-groups describe \"$APP-{code}\" --region {gcp} >/dev/null 2>&1; then\n\
                 \x20 gc compute network-endpoint-groups create \"$APP-{code}\" --region {gcp} --network-endpoint-type serverless \\\n\
                 \x20   --cloud-run-service \"$APP\"\n\
                 \x20 gc compute backend-services add-backend \"$APP-backend\" --global \\\n\
                 \x20   --network-endpoint-group \"$APP-{code}\" --network-endpoint-group-region {gcp}\n\
                 fi",
                code = region.code,
                gcp = region.gcp
            );
        }
        let _ = writeln!(
            s,
            "gc compute url-maps describe \"$APP-urls\" >/dev/null 2>&1 || gc compute url-maps create \"$APP-urls\" --default-service \"$APP-backend\""
        );
        match &ctx.config.deploy.domain {
            Some(domain) => {
                let _ = writeln!(
                    s,
                    "gc compute ssl-certificates describe \"$APP-cert\" --global >/dev/null 2>&1 \\\n\
                     \x20 || gc compute ssl-certificates create \"$APP-cert\" --domains {d} --global\n\
                     gc compute target-https-proxies describe \"$APP-https\" >/dev/null 2>&1 \\\n\
                     \x20 || gc compute target-https-proxies create \"$APP-https\" --url-map \"$APP-urls\" --ssl-certificates \"$APP-cert\"\n\
                     gc compute forwarding-rules describe \"$APP-https\" --global >/dev/null 2>&1 \\\n\
                     \x20 || gc compute forwarding-rules create \"$APP-https\" --global --load-balancing-scheme EXTERNAL_MANAGED \\\n\
                     \x20   --address \"$APP-ip\" --target-https-proxy \"$APP-https\" --ports 443\n\
                     echo \"Point {domain} (A record) at $(gc compute addresses describe \"$APP-ip\" --global --format 'value(address)')\"",
                    d = sh(domain)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "# No [deploy] domain: the managed certificate needs one. Set it and run this again for the\n\
                     # HTTPS proxy and forwarding rule; until then each region's own run.app URL serves."
                );
            }
        }
    }

    let _ = writeln!(s, "\nstep \"Done\"");
    for region in &ctx.regions {
        let _ = writeln!(
            s,
            "gc run services describe \"$APP\" --region {} --format 'value(status.url)'",
            region.gcp
        );
    }
    s
}

fn readme(ctx: &Ctx<'_>, workers: &[Worker<'_>]) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# agentd on Google Cloud Run\n\n\
         Written by `agentd deploy render --target cloudrun` from `agentd.toml` (shipped beside these\n\
         files; `deploy.sh` stores it in Secret Manager as `{config}`, mounted at `{CONFIG_PATH}`). Edit the\n\
         config and render again; do not edit these files.\n\n\
         | file | what |\n|---|---|",
        config = config_secret(ctx)
    );
    for region in &ctx.regions {
        let _ = writeln!(
            r,
            "| `service-{}.yaml` | the {} in {} ({}) |",
            region.code,
            if ctx.split_roles {
                "api"
            } else {
                "whole of agentd (SQLite, in memory)"
            },
            region.gcp,
            region.city
        );
    }
    for w in workers {
        let _ = writeln!(
            r,
            "| `worker-{}.yaml` | pool `{}` in {}: {} |",
            w.service_suffix(),
            w.pool.name,
            ctx.primary.gcp,
            describe_schedule(w.pool)
        );
    }
    let _ = writeln!(
        r,
        "| `deploy.sh` | image, service account, secrets, services, schedules{} |\n\
         | `../Dockerfile` | the image, built from the repository root |\n\n\
         ## Deploy\n\n\
         ```sh\n\
         export PROJECT_ID=<project> {}\n\
         bash deploy/cloudrun/deploy.sh\n\
         ```\n\n\
         Secrets are referenced by name (`secretKeyRef`, Secret Manager `{}-<variable>`); their values come\n\
         from your environment when `deploy.sh` runs. `AGENTD_ADMIN_KEY`, when the config does not use it, is\n\
         generated if unset.\n\n\
         ## Scaling\n\n\
         - The api: at least one instance per region, up to {API_MAX_INSTANCES}; `containerConcurrency` is\n\
         \x20 `server.max_concurrent_requests` (at most {MAX_CONCURRENCY}), requests may last {REQUEST_TIMEOUT_SECONDS} s (streams), session\n\
         \x20 affinity, CPU always allocated.\n\
         - **Workers: Cloud Run cannot scale them on the queue.** It scales on requests and CPU, and no\n\
         \x20 request ever reaches a worker, so nothing starts one when runs are queued: each pool runs a\n\
         \x20 fixed count per its schedule — its minimum (`min_workers`, or the business-hours\n\
         \x20 `min_workers` while Cloud Scheduler's jobs have moved the bounds), more only on CPU load.\n\
         \x20 A pool without business hours runs at least one worker at all times (its `min_workers = 0`\n\
         \x20 would never run anything), and a business-hours window at least one; outside business hours\n\
         \x20 a pool may sit at zero, its runs waiting for the next start job. For capacity, raise the\n\
         \x20 minimums. Fly.io and Kubernetes follow agentd's desired count (`agentd_pool_desired_workers`:\n\
         \x20 queue, idle shutdown, business hours) instead.\n\
         - Stopping: Cloud Run sends SIGTERM and, about {SIGTERM_GRACE_SECONDS} s later, SIGKILL; no setting changes that.\n\
         \x20 agentd drains for `server.shutdown_grace` ({drain} s here): {drain_note}\n\
         - PostgreSQL, Redis or NATS are yours to provide (Cloud SQL, Memorystore through a VPC connector,\n\
         \x20 …); their URLs are secrets like the others.",
        if ctx.regions.len() > 1 {
            ", a global load balancer"
        } else {
            ""
        },
        ctx.secret_vars
            .iter()
            .map(|v| format!("{v}=..."))
            .collect::<Vec<_>>()
            .join(" "),
        ctx.app,
        drain = ctx.drain_seconds,
        drain_note = if ctx.drain_seconds > SIGTERM_GRACE_SECONDS - 2 {
            "longer than Cloud Run allows, so\n  \
             streams still open and runs still going at SIGKILL are cut (the runs are redelivered to another\n  \
             worker). Set `server.shutdown_grace_ms = 8000` or less for Cloud Run."
        } else {
            "it fits."
        },
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::test_support::{assert_no_secret, ctx_with, file, load_for};
    use crate::Target;

    const GLOBAL: &str = r#"
[store]
kind = "postgres"
url = "${DATABASE_URL}"

[queue]
kind = "redis"
url = "${REDIS_URL}"

[providers.openai]
kind = "openai"
api_key = "${OPENAI_API_KEY}"

[models.gpt-4o-mini]
provider = "openai"

# Runs reach cpu (triage's default pool) and gpu (support's).
[agents.triage]
model = "gpt-4o-mini"

[agents.support]
model = "gpt-4o-mini"
pool = "gpu"

[pools.gpu]
max_workers = 3
[pools.gpu.business_hours]
timezone = "America/Los_Angeles"
start = "09:00"
end = "18:00"
min_workers = 2
max_workers = 10

[regions]
list = ["cdg", "nrt"]
primary = "cdg"
routing = "fly-replay"

[deploy]
domain = "agents.example.com"
"#;

    fn render_global() -> Vec<File> {
        let config = load_for(GLOBAL, Target::CloudRun);
        let ctx = ctx_with(&config, GLOBAL, &[]);
        render(&ctx).expect("render")
    }

    #[test]
    fn one_api_service_per_region_and_workers_in_the_primary() {
        let files = render_global();
        let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        for expected in [
            "cloudrun/service-cdg.yaml",
            "cloudrun/service-nrt.yaml",
            "cloudrun/worker-cpu.yaml",
            "cloudrun/worker-gpu.yaml",
            "cloudrun/deploy.sh",
            "cloudrun/agentd.toml",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        let cdg = file(&files, "cloudrun/service-cdg.yaml");
        assert!(cdg.contains("apiVersion: serving.knative.dev/v1\nkind: Service\n"));
        assert!(cdg.contains("timeoutSeconds: 3600"));
        assert!(cdg.contains("containerConcurrency: 1000"));
        assert!(cdg.contains("autoscaling.knative.dev/minScale: \"1\""));
        assert!(cdg.contains("run.googleapis.com/cpu-throttling: \"false\""));
        assert!(cdg.contains("run.googleapis.com/sessionAffinity: \"true\""));
        assert!(cdg.contains("run.googleapis.com/execution-environment: gen2"));
        assert!(cdg.contains("- \"--role\"\n        - api\n"));
        assert!(cdg.contains("path: /readyz"));
        assert!(cdg.contains("path: /healthz"));
        assert!(cdg.contains("name: agentd-openai-api-key\n              key: latest"));
        assert!(cdg.contains("secretName: agentd-config"));
        assert!(cdg.contains("- name: AGENTD_REGION\n          value: cdg\n"));
        assert!(!cdg.contains("FLY_REGION"));
        // The default drain (30 s) does not fit Cloud Run's ~10 s after SIGTERM: the file says so.
        assert!(cdg.contains("# Stopping: Cloud Run sends SIGTERM, then SIGKILL about 10 s later"));
        assert!(cdg.contains("Set server.shutdown_grace_ms = 8000 or less for Cloud Run."));
        assert!(cdg.contains("WARNING: regions.routing is \"fly-replay\""));
        assert!(file(&files, "cloudrun/service-nrt.yaml")
            .contains("- name: AGENTD_REGION\n          value: nrt\n"));
        let gpu = file(&files, "cloudrun/worker-gpu.yaml");
        assert!(gpu.contains("run.googleapis.com/ingress: internal"));
        assert!(gpu.contains("run.googleapis.com/minScale: \"0\""));
        assert!(gpu.contains("run.googleapis.com/maxScale: \"3\""));
        assert!(gpu.contains("nvidia.com/gpu: \"1\""));
        assert!(gpu.contains("- \"--pools\"\n        - gpu\n"));
        assert!(gpu.contains("# Stopping: Cloud Run sends SIGTERM"));
        // cpu: min_workers 0 and no business hours. No request and no job would ever start a
        // worker, so one always runs, and the file says why.
        let cpu = file(&files, "cloudrun/worker-cpu.yaml");
        assert!(cpu.contains("run.googleapis.com/minScale: \"1\""), "{cpu}");
        assert!(cpu.contains(
            "# min_workers is 0, but with no business hours no job would ever start a worker"
        ));
        assert!(!cpu.contains("nvidia.com/gpu"));
        assert_no_secret(&files);
    }

    #[test]
    fn worker_minimums_never_leave_a_pool_without_a_start() {
        let text = r#"
[store]
kind = "postgres"
url = "${DATABASE_URL}"
[pools.cpu]
min_workers = 0
max_workers = 4
[pools.nights]
min_workers = 0
max_workers = 2
[pools.nights.business_hours]
timezone = "Europe/Paris"
start = "09:00"
end = "18:00"
min_workers = 0
max_workers = 3
[pools.steady]
persistent = true
max_workers = 2
"#;
        let config = load_for(text, Target::CloudRun);
        let pool = |name: &str| config.pools.iter().find(|p| p.name == name).unwrap();
        // No schedule: at least one, always.
        assert_eq!(worker_bounds(pool("cpu")), ((1, 4), None));
        // Business hours: 0 outside them is allowed (the start job wakes it), at least 1 inside.
        assert_eq!(worker_bounds(pool("nights")), ((0, 2), Some((1, 3))));
        // Persistent: its maximum.
        assert_eq!(worker_bounds(pool("steady")), ((2, 2), None));
    }

    #[test]
    fn business_hours_become_scheduler_jobs_and_secrets_come_from_the_environment() {
        let files = render_global();
        let script = file(&files, "cloudrun/deploy.sh");
        assert!(script.contains(
            "schedule \"agentd-worker-gpu-start\" \"agentd-worker-gpu\" '0 9 * * 1-5' 'America/Los_Angeles' 2 10"
        ));
        assert!(script.contains(
            "schedule \"agentd-worker-gpu-end\" \"agentd-worker-gpu\" '0 18 * * 1-5' 'America/Los_Angeles' 0 3"
        ));
        assert!(script.contains("env_secret OPENAI_API_KEY 'agentd-openai-api-key'\n"));
        assert!(script.contains("env_secret AGENTD_ADMIN_KEY 'agentd-agentd-admin-key' optional"));
        assert!(script.contains("replace service-nrt.yaml asia-northeast1"));
        // The substitution: the placeholder first, then the container's image line set to this
        // run's image, whatever the file names (the old pattern never matched the placeholder).
        assert!(script.contains(
            "  sed -e \"s#PROJECT_ID#$PROJECT_ID#g\" -e \"s#^\\([[:space:]]*image:\\).*#\\1 $IMAGE#\" \"$HERE/$1\"\n"
        ));
        assert!(!script.contains("IMAGE_IN_YAML"));
        assert!(script.contains("IMAGE=\"$REPO:$TAG\"\n"));
        // The README says workers are not scaled on the queue, and how long Cloud Run waits.
        let readme = file(&files, "cloudrun/README.md");
        assert!(readme.contains("Cloud Run cannot scale them on the queue"));
        assert!(readme.contains("about 10 s later, SIGKILL"));
        assert!(script.contains("--domains 'agents.example.com'"));
    }

    #[test]
    fn sqlite_runs_one_instance_with_an_in_memory_volume() {
        let text = "[server]\nmax_concurrent_requests = 100\n";
        let config = load_for(text, Target::CloudRun);
        let ctx = ctx_with(&config, text, &[]);
        let files = render(&ctx).unwrap();
        let svc = file(&files, "cloudrun/service-cdg.yaml");
        assert!(svc.contains("autoscaling.knative.dev/maxScale: \"1\""));
        assert!(svc.contains("medium: Memory"));
        assert!(svc.contains("containerConcurrency: 100"));
        assert!(svc.contains("args:\n        - serve\n        ports:"));
        assert!(!files
            .iter()
            .any(|f| f.path.to_string_lossy().contains("worker-")));
        assert!(render(&ctx_with(&config, text, &["cdg", "sjc"])).is_err());
        // Two Fly regions in one Google Cloud region cannot both get the service.
        let pg = "[store]\nkind = \"postgres\"\nurl = \"${DATABASE_URL}\"\n";
        let config = load_for(pg, Target::CloudRun);
        let err = render(&ctx_with(&config, pg, &["ewr", "iad"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"ewr\" and \"iad\"") && err.contains("us-east4"),
            "{err}"
        );
    }
}
