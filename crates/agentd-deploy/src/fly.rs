//! Fly.io: `fly/fly.toml` (one app: an always-on api process group plus one worker group per
//! pool on PostgreSQL, or a single machine with a volume on SQLite), `fly/autoscaler/` (the
//! fly-autoscaler app that starts and stops each pool's machines), `fly/setup.sh` (apps,
//! PostgreSQL with replicas, Upstash Redis, secrets by name, regions, deploy), `fly/README.md`
//! and the config itself, `fly/agentd.toml`.
//!
//! The decision to know: **the pool schedules stay in agentd.** Fly's proxy only starts and
//! stops machines that serve traffic, so workers are started and stopped by fly-autoscaler,
//! whose expression language (Expr 1.16: `now()` but no time-zone function) cannot say "09:00
//! in Los Angeles". agentd already works out, from the same `[pools.<name>]` keys, how many
//! workers each pool wants right now (`agentd_pool_desired_workers`: business hours, queue,
//! idle shutdown, persistence); the autoscaler runs exactly that many. One computation, so the
//! autoscaler, the KEDA triggers of the Kubernetes target and agentd's own `/admin/pools` agree.

use std::fmt::Write as _;

use agentd_config::{CacheBackend, CountersConfig, PoolConfig, QueueBackend, RegionRouting};

use crate::docker::{self, CONFIG_PATH, DATA_DIR, RUN_AS};
use crate::render_env::whole_reference;
use crate::{Ctx, File, RenderError};

const DIR: &str = "fly";
/// fly-autoscaler's image: 0.3.2 is the first release that scales one process group
/// (`process-group`), which the per-pool groups need.
pub(crate) const AUTOSCALER_IMAGE: &str = "flyio/fly-autoscaler:0.3.2";
/// Seconds between SIGTERM's drain deadline and Fly's SIGKILL.
const KILL_MARGIN_SECONDS: u64 = 10;
/// Fly's largest `kill_timeout`.
const KILL_TIMEOUT_MAX: u64 = 300;
/// In-flight requests per api machine when `server.max_concurrent_requests` is unlimited: the
/// benchmark's highest concurrency (c=1024, 104 MiB peak RSS).
const DEFAULT_HARD_LIMIT: usize = 1024;
const API_VM_SIZE: &str = "shared-cpu-1x";
const API_VM_MEMORY: &str = "512mb";
const WORKER_VM_MEMORY: &str = "1gb";
/// The GPU preset for pools whose name says `gpu` (only pools runs can reach: `Ctx::pools`).
const GPU_VM_SIZE: &str = "a100-40gb";
/// Where GPU process groups run. Fly.io has GPUs in a few regions only, and the `a100-40gb`
/// preset (like `a10` and `l40s`) only in `ord` (fly.io/docs/gpus, "Regions with GPUs": a10,
/// l40s and a100-40gb in ord; a100-80gb in iad, sjc, syd). Fly has also announced that its GPUs
/// are deprecated; the README says so.
const GPU_REGION: &str = "ord";
/// The SQLite volume.
const VOLUME: &str = "agentd_data";
/// How often the autoscaler reconciles.
const AUTOSCALER_INTERVAL: &str = "15s";

/// A worker process group and its pool.
struct Group<'a> {
    name: String,
    pool: &'a PoolConfig,
}

pub(crate) fn render(ctx: &Ctx<'_>) -> Result<Vec<File>, RenderError> {
    if !ctx.split_roles && ctx.regions.len() > 1 {
        return Err(RenderError::Invalid(format!(
            "store.kind = \"sqlite\" keeps every run on one machine's volume, so a Fly app on it runs one machine in one region, but {} regions are listed ({}); use store.kind = \"postgres\" to run in several regions, or list one",
            ctx.regions.len(),
            codes(ctx).join(",")
        )));
    }
    let groups = worker_groups(ctx)?;
    let mut files = vec![
        File::new(format!("{DIR}/fly.toml"), fly_toml(ctx, &groups)),
        docker::config_file(DIR, ctx),
        File::script(format!("{DIR}/setup.sh"), setup_script(ctx, &groups)),
        File::new(format!("{DIR}/README.md"), readme(ctx, &groups)),
    ];
    if ctx.split_roles {
        let mut configs = Vec::new();
        for group in &groups {
            let yaml = autoscaler_config(ctx, group);
            files.push(File::new(
                format!("{DIR}/autoscaler/{}.yml", group.name),
                yaml.clone(),
            ));
            configs.push((group.name.as_str(), yaml));
        }
        files.push(File::new(
            format!("{DIR}/autoscaler/fly.toml"),
            autoscaler_toml(ctx, &configs),
        ));
    }
    Ok(files)
}

fn codes(ctx: &Ctx<'_>) -> Vec<&'static str> {
    ctx.regions.iter().map(|r| r.code).collect()
}

/// `worker-<pool>` per pool (lower case, `_` as `-`: Fly's process group names).
fn worker_groups<'a>(ctx: &Ctx<'a>) -> Result<Vec<Group<'a>>, RenderError> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for pool in ctx.pools() {
        let name = format!(
            "worker-{}",
            pool.name.to_ascii_lowercase().replace('_', "-")
        );
        if let Some(other) = groups.iter().find(|g| g.name == name) {
            return Err(RenderError::Invalid(format!(
                "pools \"{}\" and \"{}\" both become the Fly process group \"{name}\"; rename one",
                other.pool.name, pool.name
            )));
        }
        groups.push(Group { name, pool });
    }
    Ok(groups)
}

/// The autoscaler app's name.
fn autoscaler_app(ctx: &Ctx<'_>) -> String {
    format!("{}-autoscaler", ctx.app)
}

/// `(soft_limit, hard_limit)` of the api's `[http_service.concurrency]`: the hard limit is
/// agentd's own `server.max_concurrent_requests`, so Fly moves traffic to another machine
/// before agentd would shed it with a 503.
pub(crate) fn request_limits(ctx: &Ctx<'_>) -> (usize, usize) {
    let hard = ctx
        .config
        .server
        .max_concurrent_requests
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_HARD_LIMIT);
    ((hard * 3 / 4).max(1), hard)
}

/// A TOML (and YAML) double-quoted string: JSON's escapes are valid in both.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn q_list<'s>(items: impl IntoIterator<Item = &'s str>) -> String {
    let items: Vec<String> = items.into_iter().map(q).collect();
    format!("[{}]", items.join(", "))
}

/// Standard base64 with padding (Fly's `[[files]] raw_value`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// "09:00" for 540 minutes.
fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// "mon-fri", "every day", "mon,wed,fri".
fn days_text(days: &[bool; 7]) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    if days.iter().all(|d| *d) {
        return "every day".to_owned();
    }
    let on: Vec<usize> = (0..7).filter(|i| days[*i]).collect();
    let contiguous = on.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && on.len() > 2 {
        format!("{}-{}", NAMES[on[0]], NAMES[on[on.len() - 1]])
    } else {
        on.iter().map(|i| NAMES[*i]).collect::<Vec<_>>().join(",")
    }
}

/// A pool's schedule in words: `0-3 workers; 2-10 mon-fri 09:00-18:00 America/Los_Angeles;
/// idle shutdown 10 min`.
pub(crate) fn describe_schedule(pool: &PoolConfig) -> String {
    let s = &pool.schedule;
    let hours = |b: &agentd_config::BusinessHours| {
        format!(
            "{} {}-{} {}",
            days_text(&b.days),
            hhmm(b.start),
            hhmm(b.end),
            b.timezone
        )
    };
    if s.persistent {
        // A persistent pool always runs its maximum.
        let mut out = format!("always {} workers", s.max_workers);
        if let Some(b) = &s.business_hours {
            let _ = write!(out, "; {} {}", b.max_workers, hours(b));
        }
        out.push_str(" (persistent: never scales down)");
        return out;
    }
    let mut out = format!("{}-{} workers", s.min_workers, s.max_workers);
    if let Some(b) = &s.business_hours {
        let _ = write!(out, "; {}-{} {}", b.min_workers, b.max_workers, hours(b));
    }
    {
        let _ = write!(
            out,
            "; idle shutdown {} min",
            s.idle_shutdown.as_secs().div_ceil(60)
        );
    }
    out
}

/// The most workers a pool ever runs (at least 1).
pub(crate) fn peak_workers(pool: &PoolConfig) -> u32 {
    let s = &pool.schedule;
    let business = s.business_hours.as_ref().map_or(0, |b| b.max_workers);
    s.max_workers.max(business).max(1)
}

/// What to run when no agentd instance reports a desired count (metrics missing: agentd down,
/// a Prometheus outage): the off-hours count — a persistent pool its `max_workers`, others their
/// `min_workers`. Never the business-hours minimum: missing metrics must not keep GPU machines
/// running through the night.
fn fallback_workers(pool: &PoolConfig) -> u32 {
    let s = &pool.schedule;
    if s.persistent {
        s.max_workers
    } else {
        s.min_workers
    }
}

fn fly_toml(ctx: &Ctx<'_>, groups: &[Group<'_>]) -> String {
    let mut t = String::new();
    let drain = ctx.drain_seconds;
    let kill = (drain + KILL_MARGIN_SECONDS).min(KILL_TIMEOUT_MAX);
    let port = ctx.port;
    let (soft, hard) = request_limits(ctx);
    let _ = writeln!(
        t,
        "# fly.toml of agentd, written by `agentd deploy render --target fly` from agentd.toml (beside\n\
         # this file): edit the config and re-render rather than this file.\n\
         # First time: bash deploy/fly/setup.sh (apps, databases, secrets, regions); then, from the\n\
         # repository root (the Docker build context): fly deploy --config deploy/fly/fly.toml"
    );
    let _ = writeln!(t, "app = {}", q(&ctx.app));
    let _ = writeln!(t, "primary_region = {}", q(ctx.primary.code));
    let _ = writeln!(t, "kill_signal = \"SIGTERM\"");
    if drain + KILL_MARGIN_SECONDS > KILL_TIMEOUT_MAX {
        let _ = writeln!(
            t,
            "# WARNING: kill_timeout is clamped to Fly's maximum, {KILL_TIMEOUT_MAX} s: server.shutdown_grace ({drain} s) plus\n\
             # {KILL_MARGIN_SECONDS} s to exit would be {wanted} s. Runs still going at SIGKILL ({kill} s after SIGTERM) are cut and\n\
             # redelivered to another worker; set server.shutdown_grace_ms to at most {fits} to drain fully here.",
            wanted = drain + KILL_MARGIN_SECONDS,
            fits = (KILL_TIMEOUT_MAX - KILL_MARGIN_SECONDS) * 1000,
        );
    } else {
        let _ = writeln!(
            t,
            "# SIGTERM drains in-flight requests and runs for server.shutdown_grace ({drain} s), then {KILL_MARGIN_SECONDS} s to exit."
        );
    }
    let _ = writeln!(t, "kill_timeout = {kill}");

    let _ = writeln!(
        t,
        "\n[build]\n  # Relative to this file; the build context is the directory fly deploy runs in (the repository root).\n  dockerfile = \"../Dockerfile\"\n  ignorefile = \"../.dockerignore\""
    );
    let _ = writeln!(t, "\n[deploy]\n  strategy = \"rolling\"");

    let _ = writeln!(
        t,
        "\n# Not secrets. Secrets are set by name with `fly secrets` (setup.sh): {}.",
        ctx.secret_vars.join(", ")
    );
    let _ = writeln!(t, "[env]");
    let _ = writeln!(t, "  AGENTD_CONFIG = {}", q(CONFIG_PATH));
    let _ = writeln!(t, "  AGENTD_LISTEN = {}", q(&format!("0.0.0.0:{port}")));
    let _ = writeln!(t, "  AGENTD_DATA_DIR = {}", q(DATA_DIR));
    let _ = writeln!(t, "  AGENTD_LOG_FORMAT = \"json\"");

    let _ = writeln!(
        t,
        "\n# The config: agentd.toml beside this file, base64 (its ${{VAR}}s are read from the secrets at start).\n[[files]]\n  guest_path = {}\n  raw_value = {}",
        q(CONFIG_PATH),
        q(&base64(ctx.config_text.as_bytes()))
    );

    if ctx.split_roles {
        let _ = writeln!(
            t,
            "\n# One process group per role: the api serves HTTP; each pool's workers claim and run its runs."
        );
        let _ = writeln!(t, "[processes]\n  api = \"serve --role api\"");
        for g in groups {
            let _ = writeln!(
                t,
                "  {} = {}",
                g.name,
                q(&format!("serve --role worker --pools {}", g.pool.name))
            );
        }
    } else {
        let _ = writeln!(
            t,
            "\n# SQLite: one machine owns the database on its volume; all roles run in it (the image's `serve`).\n\
             # Never scale this app past one machine (fly scale count 1).\n\
             # Who owns the volume: the image runs as the non-root user {RUN_AS} (USER {RUN_AS}:{RUN_AS}, numeric on\n\
             # purpose), and Fly's init mounts a volume owned by the image's user: the machine's boot log reads\n\
             # \"Mounting /dev/vdX at {DATA_DIR} w/ uid: {RUN_AS}, gid: {RUN_AS} and chmod 0755\". So agentd can create\n\
             # the database there without running as root, and AGENTD_DATA_DIR is the mount itself (a\n\
             # subdirectory created in the image would be hidden by the mount). If that line ever shows uid: 0\n\
             # (an image whose USER is not {RUN_AS}), agentd cannot open the database (permission denied).\n\
             [mounts]\n  source = {}\n  destination = {}",
            q(VOLUME),
            q(DATA_DIR)
        );
    }

    let _ = writeln!(t, "\n[http_service]");
    if ctx.split_roles {
        let _ = writeln!(t, "  processes = [\"api\"]");
    }
    let _ = writeln!(
        t,
        "  internal_port = {port}\n  force_https = true\n  # Always on: the proxy never stops the api, and one machine always runs in the primary region.\n  auto_stop_machines = \"off\"\n  auto_start_machines = true\n  min_machines_running = 1"
    );
    let _ = writeln!(
        t,
        "\n  # Sized from the benchmarks (README, bench/results/): about 100 KiB per request in flight (1,024 at\n  # once peaked at 104 MiB RSS), 10,000 open streams in 167 MiB, 43 µs of CPU per JSON request and\n  # 148 µs per 20-event stream. So a {API_VM_MEMORY} machine holds the hard limit with room, and at this\n  # many requests it waits on the providers, not on its CPU. The hard limit is agentd's own\n  # server.max_concurrent_requests, so Fly moves traffic elsewhere before agentd would answer\n  # 503; past the soft limit (3/4) new requests prefer other machines."
    );
    let _ = writeln!(
        t,
        "  [http_service.concurrency]\n    type = \"requests\"\n    soft_limit = {soft}\n    hard_limit = {hard}"
    );
    let _ = writeln!(
        t,
        "\n  # Health: the process answers. Fly's proxy routes only to machines whose checks pass; it does\n  # not restart a machine whose checks fail (agentd exits on fatal errors and the machine restarts).\n  [[http_service.checks]]\n    grace_period = \"10s\"\n    interval = \"15s\"\n    timeout = \"2s\"\n    method = \"GET\"\n    path = \"/healthz\""
    );
    let _ = writeln!(
        t,
        "\n  # Readiness: the store (and queue) answer; until they do, the proxy sends this machine nothing.\n  [[http_service.checks]]\n    grace_period = \"10s\"\n    interval = \"10s\"\n    timeout = \"3s\"\n    method = \"GET\"\n    path = \"/readyz\""
    );

    if ctx.split_roles {
        let _ = writeln!(
            t,
            "\n# Workers serve no traffic, so the proxy neither starts nor stops them: the autoscaler app\n# (autoscaler/fly.toml) runs as many as each pool's schedule wants right now, down to zero:"
        );
        for g in groups {
            let _ = writeln!(
                t,
                "#   {} (pool \"{}\", {} runs at once each): {}",
                g.name,
                g.pool.name,
                g.pool.concurrency,
                describe_schedule(g.pool)
            );
        }
        let _ = writeln!(
            t,
            "# Machine checks of the workers: they report (fly checks list, fly status) and deploys wait for\n\
             # them to pass; Fly does not restart a machine whose check fails.\n[checks]"
        );
        for g in groups {
            let _ = writeln!(
                t,
                "  [checks.{}-healthz]\n    type = \"http\"\n    port = {port}\n    method = \"GET\"\n    path = \"/healthz\"\n    grace_period = \"10s\"\n    interval = \"15s\"\n    timeout = \"2s\"\n    processes = [{}]",
                g.name,
                q(&g.name)
            );
        }
    }

    let _ = writeln!(
        t,
        "\n# Fly's Prometheus scrapes every machine: queue depth, busy workers and each pool's desired count\n# (agentd_pool_desired_workers, what the autoscaler follows).\n[metrics]\n  port = {port}\n  path = \"/metrics\""
    );

    let _ = writeln!(
        t,
        "\n# The api (and, on SQLite, everything): ~30 MiB idle, 70 MiB at 32 concurrent runs.\n[[vm]]\n  size = {}\n  memory = {}",
        q(API_VM_SIZE),
        q(API_VM_MEMORY)
    );
    if ctx.split_roles {
        let cpu: Vec<&str> = groups
            .iter()
            .filter(|g| !is_gpu_pool(&g.pool.name))
            .map(|g| g.name.as_str())
            .collect();
        let gpu: Vec<&str> = groups
            .iter()
            .filter(|g| is_gpu_pool(&g.pool.name))
            .map(|g| g.name.as_str())
            .collect();
        if !cpu.is_empty() {
            let _ = writeln!(
                t,
                "\n# Workers hold run state and tool outputs: more room than the api.\n[[vm]]\n  size = {}\n  memory = {}\n  processes = {}",
                q(API_VM_SIZE),
                q(WORKER_VM_MEMORY),
                q_list(cpu)
            );
        }
        if !gpu.is_empty() {
            let _ = writeln!(
                t,
                "\n# GPU pools (runs reach them: an agent or a task route names the pool): a GPU machine for whatever\n\
                 # model server shares it with the worker. Fly has GPUs only in some regions — {GPU_VM_SIZE} only in\n\
                 # {GPU_REGION} — only for organizations with GPU access, and has announced that its GPUs are\n\
                 # deprecated. So these groups' machines live in {GPU_REGION}, not the primary region: setup.sh\n\
                 # deploys without them, then creates one there (fly scale count <group>=1 --region {GPU_REGION}),\n\
                 # and their autoscaler clones it there. A pool that only calls hosted APIs needs no GPU: use\n\
                 # size = \"{API_VM_SIZE}\" here.\n[[vm]]\n  size = {}\n  processes = {}",
                q(GPU_VM_SIZE),
                q_list(gpu)
            );
        }
    }
    t
}

/// Pools named like `gpu` get GPU machines (the same rule as the Kubernetes target).
pub(crate) fn is_gpu_pool(pool: &str) -> bool {
    pool.to_ascii_lowercase().contains("gpu")
}

/// fly-autoscaler's config for one worker group (its YAML is parsed with unknown keys
/// rejected, and `${VAR}`s expanded from the autoscaler's environment, where the tokens are).
fn autoscaler_config(ctx: &Ctx<'_>, group: &Group<'_>) -> String {
    let pool = group.pool;
    let peak = peak_workers(pool);
    let fallback = fallback_workers(pool);
    let query = format!(
        "max(agentd_pool_desired_workers{{app=\"{}\",pool=\"{}\"}}) or vector({fallback})",
        ctx.app, pool.name
    );
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# fly-autoscaler config of the process group \"{group}\" of the Fly app \"{app}\", written by\n\
         # `agentd deploy render --target fly`. Runs in the app {scaler} (fly.toml beside this file).\n\
         #\n\
         # Pool \"{pool}\" ({conc} runs at once per worker): {schedule}.\n\
         # agentd works out how many workers that schedule wants right now, from the same [pools.{pool}]\n\
         # keys, the pool's queued and running runs and its idle clock, and exports it as\n\
         # agentd_pool_desired_workers; the autoscaler runs exactly that many, so both agree. (Its\n\
         # expression language, Expr 1.16, has no time-zone function: the business hours stay in agentd.)\n\
         # When no agentd instance reports, the query falls back to {fallback}: the off-hours count, so\n\
         # missing metrics never keep machines up that the schedule would stop.",
        group = group.name,
        app = ctx.app,
        scaler = autoscaler_app(ctx),
        pool = pool.name,
        conc = pool.concurrency,
        schedule = describe_schedule(pool),
    );
    let _ = writeln!(t, "app-name: {}", q(&ctx.app));
    let _ = writeln!(t, "process-group: {}", q(&group.name));
    if is_gpu_pool(&pool.name) {
        let _ = writeln!(
            t,
            "# GPU machines exist only in some Fly regions ({GPU_VM_SIZE}: {GPU_REGION}), so this group's machines are\n\
             # created there (setup.sh makes the first one), not beside the primary database.\nregions: [{}]",
            q(GPU_REGION)
        );
    } else {
        let _ = writeln!(
            t,
            "# Workers run beside the primary database and the queue.\nregions: [{}]",
            q(ctx.primary.code)
        );
    }
    let _ = writeln!(t, "interval: {}", q(AUTOSCALER_INTERVAL));
    let _ = writeln!(
        t,
        "# Machines are cloned from the group's first one when the count needs them, up to the pool's\n# peak, and kept (stopped) afterwards: starting a stopped machine takes about a second.\nmin-created-machine-count: {}\nmax-created-machine-count: {}",
        q(&format!("max(min(desired, {peak}.0), 1.0)")),
        q(&peak.to_string())
    );
    let _ = writeln!(
        t,
        "# Started machines follow the schedule: 0 is scale to zero.\nstarted-machine-count: {}",
        q(&format!("min(desired, {peak}.0)"))
    );
    let _ = writeln!(
        t,
        "# A deploy token of {app} (a secret of this app: setup.sh sets it).\napi-token: \"${{FAS_API_TOKEN}}\"",
        app = ctx.app
    );
    let _ = writeln!(t, "metric-collectors:");
    let _ = writeln!(t, "  - type: \"prometheus\"");
    let _ = writeln!(t, "    metric-name: \"desired\"");
    let _ = writeln!(
        t,
        "    address: \"https://api.fly.io/prometheus/${{PROMETHEUS_ORG}}\""
    );
    let _ = writeln!(t, "    query: {}", q(&query));
    let _ = writeln!(t, "    token: \"${{FAS_PROMETHEUS_TOKEN}}\"");
    t
}

fn autoscaler_toml(ctx: &Ctx<'_>, configs: &[(&str, String)]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# The autoscaler of {app}'s worker pools, written by `agentd deploy render --target fly`: one\n\
         # fly-autoscaler process per pool, each starting and stopping the machines of one process group\n\
         # of {app} to the count agentd's schedule wants (see the .yml beside this file).\n\
         # Secrets (setup.sh sets them): FAS_API_TOKEN (fly tokens create deploy -a {app}),\n\
         # FAS_PROMETHEUS_TOKEN (fly tokens create readonly <org>), PROMETHEUS_ORG (your organization's slug).\n\
         # Deploy: fly deploy --config deploy/fly/autoscaler/fly.toml",
        app = ctx.app
    );
    let _ = writeln!(t, "app = {}", q(&autoscaler_app(ctx)));
    let _ = writeln!(t, "primary_region = {}", q(ctx.primary.code));
    let _ = writeln!(t, "\n[build]\n  image = {}", q(AUTOSCALER_IMAGE));
    let _ = writeln!(t, "\n[processes]");
    for (group, _) in configs {
        let _ = writeln!(
            t,
            "  {group} = {}",
            q(&format!("serve -config /etc/fly-autoscaler/{group}.yml"))
        );
    }
    for (group, yaml) in configs {
        let _ = writeln!(
            t,
            "\n# {group}.yml, base64.\n[[files]]\n  guest_path = {}\n  raw_value = {}\n  processes = [{}]",
            q(&format!("/etc/fly-autoscaler/{group}.yml")),
            q(&base64(yaml.as_bytes())),
            q(group)
        );
    }
    let _ = writeln!(
        t,
        "\n[metrics]\n  port = 9090\n  path = \"/metrics\"\n\n[[vm]]\n  size = \"shared-cpu-1x\"\n  memory = \"256mb\""
    );
    t
}

/// Variables a platform command fills in rather than the user.
struct Provided {
    /// `store.url`'s variable: `fly postgres attach` sets it.
    database: Option<String>,
    /// `store.replica_url`'s variable: derived from the database URL by hand.
    replica: Option<String>,
    /// The Redis URL variables (queue, counters, cache): from `fly redis status`.
    redis: Vec<String>,
}

fn provided(ctx: &Ctx<'_>) -> Provided {
    let text = &ctx.config_text;
    let database = ctx
        .postgres()
        .then(|| whole_reference(text, &["store", "url"]))
        .flatten();
    let replica = ctx
        .config
        .store_replica
        .as_ref()
        .and_then(|_| whole_reference(text, &["store", "replica_url"]));
    let mut redis = Vec::new();
    let mut add = |path: &[&str]| {
        if let Some(var) = whole_reference(text, path) {
            if !redis.contains(&var) {
                redis.push(var);
            }
        }
    };
    if matches!(ctx.queue(), QueueBackend::Redis { .. }) {
        add(&["queue", "url"]);
    }
    if matches!(ctx.config.counters, CountersConfig::Redis { .. }) {
        add(&["counters", "url"]);
    }
    if matches!(ctx.config.cache.backend, Some(CacheBackend::Redis { .. })) {
        add(&["cache", "url"]);
    }
    Provided {
        database,
        replica,
        redis,
    }
}

fn uses_redis(ctx: &Ctx<'_>) -> bool {
    matches!(ctx.queue(), QueueBackend::Redis { .. })
        || matches!(ctx.config.counters, CountersConfig::Redis { .. })
        || matches!(ctx.config.cache.backend, Some(CacheBackend::Redis { .. }))
}

/// The secrets the user exports before `setup.sh`: all but those it gets from what it creates.
fn user_secrets(ctx: &Ctx<'_>) -> Vec<String> {
    let provided = provided(ctx);
    ctx.secret_vars
        .iter()
        .filter(|v| {
            provided.database.as_ref() != Some(*v)
                && provided.replica.as_ref() != Some(*v)
                && !provided.redis.contains(*v)
        })
        .cloned()
        .collect()
}

fn user_exports(ctx: &Ctx<'_>) -> String {
    let vars = user_secrets(ctx);
    if vars.is_empty() {
        return "NOTHING=needed".to_owned();
    }
    vars.iter()
        .map(|v| format!("{v}=..."))
        .collect::<Vec<_>>()
        .join(" ")
}

fn setup_script(ctx: &Ctx<'_>, groups: &[Group<'_>]) -> String {
    let app = &ctx.app;
    let primary = ctx.primary.code;
    let others: Vec<&str> = ctx.regions[1..].iter().map(|r| r.code).collect();
    let provided = provided(ctx);
    let secrets = user_secrets(ctx);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "#!/usr/bin/env bash\n\
         # First-time setup of agentd on Fly.io, written by `agentd deploy render --target fly`.\n\
         # Run it logged in (fly auth login), with the secrets exported in your shell: their values go\n\
         # to `fly secrets import` on stdin, never into a file or onto a command line.\n\
         #   export {exports}\n\
         #   FLY_ORG=<your organization> bash deploy/fly/setup.sh\n\
         # Every step is safe to run again: a first run may stop to ask for the URL of something it just\n\
         # created (Redis, the read replica); export it and run it again. The Docker build context is\n\
         # the repository this was rendered in (AGENTD_SOURCE=<dir> for another).\n\
         # Later releases: fly deploy <repository root> --config deploy/fly/fly.toml\n\
         set -euo pipefail\n\
         \n\
         HERE=\"$(cd \"$(dirname \"${{BASH_SOURCE[0]}}\")\" && pwd)\"\n\
         SOURCE=\"${{AGENTD_SOURCE:-$(cd \"$HERE/../..\" && pwd)}}\"\n\
         APP={app_q}\n\
         ORG=\"${{FLY_ORG:-personal}}\"\n\
         PRIMARY={primary_q}\n\
         MISSING=()\n\
         \n\
         step() {{ printf '\\n==> %s\\n' \"$*\"; }}\n\
         app_exists() {{ fly apps list 2>/dev/null | awk '{{print $1}}' | grep -qx \"$1\"; }}\n\
         # stage_secret NAME [optional]: NAME's value from the environment, applied by the next deploy.\n\
         stage_secret() {{\n\
         \x20 local name=\"$1\"\n\
         \x20 if [ -n \"${{!name:-}}\" ]; then\n\
         \x20   printf '%s=%s\\n' \"$name\" \"${{!name}}\" | fly secrets import --stage --app \"$APP\" >/dev/null\n\
         \x20   echo \"secret $name staged\"\n\
         \x20 elif [ \"${{2:-}}\" = optional ]; then\n\
         \x20   echo \"secret $name not set (optional): left as it is\"\n\
         \x20 else\n\
         \x20   MISSING+=(\"$name\")\n\
         \x20 fi\n\
         }}\n\
         \n\
         step \"App $APP in $ORG\"\n\
         app_exists \"$APP\" || fly apps create \"$APP\" --org \"$ORG\"",
        exports = user_exports(ctx),
        app_q = q(app),
        primary_q = q(primary),
    );

    if ctx.split_roles {
        if let Some(db_var) = &provided.database {
            let _ = writeln!(
                s,
                "\nstep \"PostgreSQL: the primary in $PRIMARY{replicas}\"\n\
                 app_exists \"$APP-db\" || fly postgres create --name \"$APP-db\" --org \"$ORG\" --region \"$PRIMARY\" \\\n\
                 \x20 --initial-cluster-size 1 --vm-size shared-cpu-1x --volume-size 10\n\
                 # Sets {db_var} (a secret of $APP) to the primary's URL: writes go to {primary}.\n\
                 fly postgres attach \"$APP-db\" --app \"$APP\" --variable-name {db_var} || echo \"(attached already)\"",
                replicas = if others.is_empty() {
                    String::new()
                } else {
                    format!(", read replicas in {}", others.join(" "))
                },
            );
            if !others.is_empty() {
                let _ = writeln!(
                    s,
                    "# A read replica per region: a clone of the primary's machine, which follows it.\n\
                     PG_MACHINE=\"$(fly machine list --app \"$APP-db\" --quiet | head -n 1)\"\n\
                     for region in {regions}; do\n\
                     \x20 if fly machine list --app \"$APP-db\" --json | grep -q \"\\\"region\\\": *\\\"$region\\\"\"; then\n\
                     \x20   echo \"(replica in $region exists)\"\n\
                     \x20 else\n\
                     \x20   fly machine clone \"$PG_MACHINE\" --region \"$region\" --app \"$APP-db\"\n\
                     \x20 fi\n\
                     done",
                    regions = others.join(" ")
                );
            }
            if let Some(replica) = &provided.replica {
                let _ = writeln!(
                    s,
                    "# {replica}: reads from the nearest replica. It is {db_var}'s URL with the host\n\
                     # top1.nearest.of.$APP-db.internal and port 5433 (the local, read-only port); export it, then\n\
                     # run this script again, or: fly secrets set {replica}=... --app $APP\n\
                     stage_secret {replica}"
                );
            }
        } else {
            let _ = writeln!(
                s,
                "\n# store.url is not a single ${{VAR}}: create the database yourself and set its variable."
            );
        }
    }

    if uses_redis(ctx) {
        // Without --no-replicas, `fly redis create` asks for replica regions.
        let replica_flag = if others.is_empty() {
            " --no-replicas".to_owned()
        } else {
            format!(" --replica-regions {}", others.join(","))
        };
        let _ = writeln!(
            s,
            "\nstep \"Redis (Upstash): the primary in $PRIMARY{replicas}\"\n\
             # One database: the queue's streams must be one set for every region; the replicas serve reads\n\
             # near each region, writes go to the primary.\n\
             fly redis status \"$APP-redis\" >/dev/null 2>&1 \\\n\
             \x20 || fly redis create --name \"$APP-redis\" --org \"$ORG\" --region \"$PRIMARY\"{replica_flag} --disable-eviction",
            replicas = if others.is_empty() {
                String::new()
            } else {
                format!(", replicas in {}", others.join(" "))
            },
        );
        for var in &provided.redis {
            let _ = writeln!(
                s,
                "# {var}: the \"Private URL\" of: fly redis status \"$APP-redis\"; export it and run this again.\nstage_secret {var}"
            );
        }
    }
    if matches!(ctx.queue(), QueueBackend::Nats { .. }) {
        let _ = writeln!(
            s,
            "\n# NATS: Fly.io has no managed NATS. Run a JetStream server as its own app in $PRIMARY (the\n\
             # nats image with -js and a volume) or use a hosted one, and export its URL below."
        );
    }

    if !secrets.is_empty() {
        let _ = writeln!(s, "\nstep \"Secrets, by name, from your environment\"");
        for var in &secrets {
            let optional = if crate::env_vars_in(&ctx.config_text).contains(var) {
                ""
            } else {
                " optional"
            };
            let _ = writeln!(s, "stage_secret {var}{optional}");
        }
    }

    let _ = writeln!(
        s,
        "\nif [ ${{#MISSING[@]}} -gt 0 ]; then\n\
         \x20 echo \"Not set in your environment: ${{MISSING[*]}}.\" >&2\n\
         \x20 echo \"Export them (or: fly secrets set NAME=... --app $APP) and run this script again.\" >&2\n\
         \x20 exit 1\n\
         fi"
    );

    if !ctx.split_roles {
        let _ = writeln!(
            s,
            "\nstep \"The SQLite volume in $PRIMARY\"\n\
             if ! fly volumes list --app \"$APP\" | grep -q {vol}; then\n\
             \x20 fly volumes create {vol} --app \"$APP\" --region \"$PRIMARY\" --size 1 --yes\n\
             fi",
            vol = VOLUME
        );
    }

    let gpu_groups: Vec<&str> = groups
        .iter()
        .filter(|g| ctx.split_roles && is_gpu_pool(&g.pool.name))
        .map(|g| g.name.as_str())
        .collect();
    if gpu_groups.is_empty() {
        let _ = writeln!(
            s,
            "\nstep \"Deploy (build context: the repository root)\"\n\
             fly deploy \"$SOURCE\" --config \"$HERE/fly.toml\" --app \"$APP\""
        );
    } else {
        // A deploy creates the first machine of every group that has none in primary_region, where
        // there are no GPUs: leave the GPU groups out until their machine exists in GPU_REGION.
        let others: Vec<&str> = std::iter::once("api")
            .chain(
                groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .filter(|n| !gpu_groups.contains(n)),
            )
            .collect();
        let _ = writeln!(
            s,
            "\nstep \"Deploy (build context: the repository root)\"\n\
             # group_has_machine GROUP: whether a machine of the process group exists.\n\
             group_has_machine() {{ fly machine list --app \"$APP\" --json 2>/dev/null | grep -q \"\\\"fly_process_group\\\": *\\\"$1\\\"\"; }}\n\
             # A GPU group ({gpu}) only once it has a machine: a deploy creates a group's first machine in\n\
             # $PRIMARY, which has no GPUs. Its first machine is made in {GPU_REGION} below; from then on deploys\n\
             # update it there.\n\
             DEPLOY_GROUPS={list}\n\
             {gpu_ifs}\
             fly deploy \"$SOURCE\" --config \"$HERE/fly.toml\" --app \"$APP\" --process-groups \"$DEPLOY_GROUPS\"",
            gpu = gpu_groups.join(", "),
            gpu_ifs = gpu_groups
                .iter()
                .map(|g| {
                    format!("if group_has_machine {g}; then DEPLOY_GROUPS=\"$DEPLOY_GROUPS,{g}\"; fi\n")
                })
                .collect::<String>(),
            list = others.join(","),
        );
    }

    if ctx.split_roles {
        let _ = writeln!(
            s,
            "\nstep \"The api in every region\"\n\
             # Two in the primary region (what the first deploy creates: one can restart while the other serves),\n\
             # one in each other region."
        );
        for (i, code) in codes(ctx).into_iter().enumerate() {
            let count = if i == 0 { 2 } else { 1 };
            let _ = writeln!(
                s,
                "fly scale count api={count} --region {code} --app \"$APP\" --yes"
            );
        }
        let routing_note = match ctx.regions_config().routing {
            RegionRouting::FlyReplay => "Requests that belong to another region are replayed there by Fly's proxy (fly-replay).",
            RegionRouting::Forward => "regions.routing is \"forward\": agentd proxies to [regions.urls] (on Fly, fly-replay needs none).",
        };
        let _ = writeln!(s, "# {routing_note}");
        if !gpu_groups.is_empty() {
            let _ = writeln!(
                s,
                "\nstep \"GPU workers in {GPU_REGION} ({gpu})\"\n\
                 # Fly has GPUs only in some regions ({GPU_VM_SIZE}: {GPU_REGION}), only for organizations with GPU\n\
                 # access, and has announced their deprecation. One machine per GPU group, created in {GPU_REGION}\n\
                 # if the group has none; the autoscaler (next) starts, stops and clones it there. If this fails\n\
                 # (no GPU access), send those agents to a CPU pool, or give the group a CPU size in fly.toml.",
                gpu = gpu_groups.join(", "),
            );
            for group in &gpu_groups {
                let _ = writeln!(
                    s,
                    "group_has_machine {group} || fly scale count {group}=1 --region {GPU_REGION} --app \"$APP\" --yes"
                );
            }
        }
        let _ = writeln!(
            s,
            "\nstep \"The autoscaler of the worker pools ({groups})\"\n\
             SCALER=\"$APP-autoscaler\"\n\
             app_exists \"$SCALER\" || fly apps create \"$SCALER\" --org \"$ORG\"\n\
             # Each token on its own line, so that a failure stops the script (set -e) instead of staging an\n\
             # empty secret. A deploy token of $APP, and a read-only token of the organization (positional:\n\
             # older flyctl has no --org on `tokens create readonly`) for its Prometheus.\n\
             FAS_API_TOKEN=\"$(fly tokens create deploy --app \"$APP\" --name \"$SCALER\")\"\n\
             FAS_PROMETHEUS_TOKEN=\"$(fly tokens create readonly \"$ORG\")\"\n\
             printf 'FAS_API_TOKEN=%s\\nFAS_PROMETHEUS_TOKEN=%s\\nPROMETHEUS_ORG=%s\\n' \\\n\
             \x20 \"$FAS_API_TOKEN\" \"$FAS_PROMETHEUS_TOKEN\" \"$ORG\" | fly secrets import --stage --app \"$SCALER\" >/dev/null\n\
             unset FAS_API_TOKEN FAS_PROMETHEUS_TOKEN\n\
             fly deploy --config \"$HERE/autoscaler/fly.toml\" --app \"$SCALER\"",
            groups = groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let _ = writeln!(
            s,
            "# SQLite: exactly one machine.\nfly scale count 1 --app \"$APP\" --yes"
        );
    }
    let _ = writeln!(s, "\nstep \"Done\"\nfly status --app \"$APP\"");
    s
}

fn readme(ctx: &Ctx<'_>, groups: &[Group<'_>]) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "# agentd on Fly.io\n\n\
         Written by `agentd deploy render --target fly` from `agentd.toml` (shipped beside these files and\n\
         into every machine at `{CONFIG_PATH}`). Edit the config and render again; do not edit these files.\n\n\
         | file | what |\n|---|---|\n\
         | `fly.toml` | the app `{app}`: {layout} |\n\
         | `agentd.toml` | the config, as written (secrets are `${{VAR}}` references) |\n\
         | `setup.sh` | first-time setup: apps, {data}secrets from your environment, regions, deploy |\n\
         | `../Dockerfile` | the image (built by `fly deploy` from the repository root) |",
        app = ctx.app,
        layout = if ctx.split_roles {
            format!(
                "an always-on `api` process group in {} and one worker group per pool ({})",
                codes(ctx).join(", "),
                groups
                    .iter()
                    .map(|g| format!("`{}`", g.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            "one machine with a volume (SQLite), all roles".to_owned()
        },
        data = if ctx.split_roles {
            "PostgreSQL with replicas, Redis, "
        } else {
            "the volume, "
        },
    );
    if ctx.split_roles {
        let _ = writeln!(
            r,
            "| `autoscaler/` | the app `{}`: fly-autoscaler ({AUTOSCALER_IMAGE}), one process per pool |",
            autoscaler_app(ctx)
        );
    }
    let _ = writeln!(
        r,
        "\n## Deploy\n\n\
         ```sh\n\
         export {}\n\
         FLY_ORG=<organization> bash deploy/fly/setup.sh     # once\n\
         fly deploy --config deploy/fly/fly.toml              # every release, from the repository root\n\
         ```\n\n\
         `setup.sh` sets the database URL itself (`fly postgres attach`); the URLs of what it creates\n\
         (Redis, the read replica) it asks for when they exist.\n",
        user_exports(ctx)
    );
    if ctx.split_roles {
        let _ = writeln!(
            r,
            "## Scaling\n\n\
             - The api never stops (`auto_stop_machines = \"off\"`, at least one machine in {primary}); the\n\
             \x20 proxy balances on in-flight requests (`[http_service.concurrency]`, sized from the benchmarks).\n\
             - Workers: the proxy cannot start or stop machines that serve no traffic, so fly-autoscaler does.\n\
             \x20 Its expression language has no time zones, so the schedule stays in agentd: every agentd\n\
             \x20 exports `agentd_pool_desired_workers{{pool}}` (the pool's business hours, queue, idle shutdown\n\
             \x20 and persistence applied to the same config), and each pool's autoscaler process starts or\n\
             \x20 stops machines to that count — the same number the Kubernetes target's KEDA triggers use.\n",
            primary = ctx.primary.code
        );
        for g in groups {
            let _ = writeln!(r, "  - `{}`: {}", g.name, describe_schedule(g.pool));
        }
        let _ = writeln!(
            r,
            "\n  When the autoscaler gets no count from agentd (agentd down, metrics missing), it runs each\n\
             \x20 pool's off-hours count (`min_workers`; `max_workers` for a persistent pool), never the\n\
             \x20 business-hours one.\n\
             - Health checks report; they do not restart anything: Fly's proxy stops routing to an api machine\n\
             \x20 whose checks fail, and a crashed agentd process restarts with its machine."
        );
        let gpu: Vec<&str> = groups
            .iter()
            .filter(|g| is_gpu_pool(&g.pool.name))
            .map(|g| g.name.as_str())
            .collect();
        if !gpu.is_empty() {
            let _ = writeln!(
                r,
                "\n## GPU workers\n\n\
                 The GPU process groups ({groups}: pools whose name says `gpu`, and that agents or task routes\n\
                 use) run on `{GPU_VM_SIZE}` machines. Fly.io has GPUs only in a few regions — `{GPU_VM_SIZE}` only in `{GPU_REGION}` (Fly's GPU\n\
                 docs, \"Regions with GPUs\") — only for organizations with GPU access, and **has announced that its\n\
                 GPUs are deprecated**. So these machines run in `{GPU_REGION}`, away from the primary database in\n\
                 `{primary}`: `setup.sh` deploys without them (`--process-groups`), then creates one machine per GPU\n\
                 group with `fly scale count <group>=1 --region {GPU_REGION}`, and the autoscaler clones it there.\n\
                 Once that machine exists a plain `fly deploy` updates it in place; if a GPU group ever has no\n\
                 machine, `fly deploy` would create one in `{primary}` (no GPUs) and fail: run the `fly scale count`\n\
                 line above first. A pool that only calls hosted model APIs needs no GPU: route its agents to\n\
                 another pool, or give the group `size = \"{API_VM_SIZE}\"` in `fly.toml`.",
                groups = gpu
                    .iter()
                    .map(|g| format!("`{g}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                primary = ctx.primary.code,
            );
        }
        let _ = writeln!(r);
    } else {
        let _ = writeln!(
            r,
            "## The volume\n\n\
             SQLite lives on the volume `{VOLUME}` at `{DATA_DIR}`, on one machine in {primary}. The image runs as the\n\
             non-root user {RUN_AS}, and Fly's init mounts the volume owned by the image's user (the boot log says\n\
             `Mounting ... at {DATA_DIR} w/ uid: {RUN_AS}, gid: {RUN_AS}`), so agentd writes there without root.\n",
            primary = ctx.primary.code,
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::test_support::{assert_no_secret, ctx_with, file, load_for, LEAK};
    use crate::Target;

    const GLOBAL: &str = r#"
[server]
shutdown_grace_ms = 30000
max_concurrent_requests = 800

[store]
kind = "postgres"
url = "${DATABASE_URL}"
replica_url = "${REPLICA_URL}"

[queue]
kind = "redis"
url = "${REDIS_URL}"

[providers.openai]
kind = "openai"
api_key = "${OPENAI_API_KEY}"

[models.gpt-4o-mini]
provider = "openai"

# Runs reach the pools through agents: triage on cpu (the default), support on gpu, report on
# batch_jobs. A pool no agent or task route names gets no process group.
[agents.triage]
model = "gpt-4o-mini"

[agents.support]
model = "gpt-4o-mini"
pool = "gpu"

[agents.report]
model = "gpt-4o-mini"
pool = "batch_jobs"

[pools.gpu]
min_workers = 0
max_workers = 3
idle_shutdown_ms = 600000
[pools.gpu.business_hours]
timezone = "America/Los_Angeles"
days = "mon-fri"
start = "09:00"
end = "18:00"
min_workers = 2
max_workers = 10

[pools.batch_jobs]
persistent = true
max_workers = 4

[regions]
list = ["cdg", "nrt", "sjc", "ewr"]
primary = "cdg"
routing = "fly-replay"
"#;

    fn render_global() -> Vec<File> {
        let config = load_for(GLOBAL, Target::Fly);
        let ctx = ctx_with(&config, GLOBAL, &[]);
        render(&ctx).expect("render")
    }

    fn parse(text: &str) -> toml_edit::DocumentMut {
        text.parse()
            .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
    }

    #[test]
    fn split_roles_get_an_api_and_one_worker_group_per_pool() {
        let files = render_global();
        let doc = parse(file(&files, "fly/fly.toml"));
        assert_eq!(doc["app"].as_str(), Some("agentd"));
        assert_eq!(doc["primary_region"].as_str(), Some("cdg"));
        assert_eq!(doc["kill_signal"].as_str(), Some("SIGTERM"));
        assert_eq!(doc["kill_timeout"].as_integer(), Some(40));
        let processes = doc["processes"].as_table().expect("processes");
        let names: Vec<&str> = processes.iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            ["api", "worker-cpu", "worker-gpu", "worker-batch-jobs"]
        );
        assert_eq!(
            processes["worker-batch-jobs"].as_str(),
            Some("serve --role worker --pools batch_jobs")
        );
        let http = &doc["http_service"];
        assert_eq!(http["processes"].as_array().unwrap().len(), 1);
        assert_eq!(http["auto_stop_machines"].as_str(), Some("off"));
        assert_eq!(http["min_machines_running"].as_integer(), Some(1));
        assert_eq!(http["concurrency"]["type"].as_str(), Some("requests"));
        assert_eq!(http["concurrency"]["hard_limit"].as_integer(), Some(800));
        assert_eq!(http["concurrency"]["soft_limit"].as_integer(), Some(600));
        let checks = http["checks"].as_array_of_tables().expect("checks");
        let paths: Vec<&str> = checks.iter().map(|c| c["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/healthz", "/readyz"]);
        // Workers: a machine check each, no service; checks report, they restart nothing.
        let worker_checks = doc["checks"].as_table().unwrap();
        assert_eq!(worker_checks.len(), 3);
        let text = file(&files, "fly/fly.toml");
        assert!(
            !text.contains("Liveness"),
            "Fly checks do not restart machines"
        );
        assert!(text.contains("does not restart a machine whose check"));
        assert_eq!(doc["metrics"]["path"].as_str(), Some("/metrics"));
        // VMs: the api default, CPU workers, a GPU size for the gpu pool only.
        let vms = doc["vm"].as_array_of_tables().unwrap();
        assert_eq!(vms.len(), 3);
        assert_eq!(vms.get(2).unwrap()["size"].as_str(), Some(GPU_VM_SIZE));
        // GPUs exist in a few Fly regions only, and are deprecated: fly.toml says where they run.
        assert!(text.contains(&format!("{GPU_VM_SIZE} only in\n# {GPU_REGION}")));
        assert!(text.contains("announced that its GPUs are\n# deprecated"));
        let gpu_procs = vms.get(2).unwrap()["processes"].as_array().unwrap();
        assert_eq!(
            gpu_procs
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>(),
            ["worker-gpu"]
        );
        // No volume on PostgreSQL.
        assert!(doc.get("mounts").is_none());
        // The config rides along in [[files]].
        let files_table = doc["files"].as_array_of_tables().unwrap();
        assert_eq!(
            files_table.get(0).unwrap()["guest_path"].as_str(),
            Some(CONFIG_PATH)
        );
        assert_eq!(
            files_table.get(0).unwrap()["raw_value"].as_str(),
            Some(base64(GLOBAL.as_bytes()).as_str())
        );
        // Env: no secrets.
        let env = doc["env"].as_table().unwrap();
        assert!(env.iter().all(|(k, _)| k.starts_with("AGENTD_")));
        assert!(env.get("AGENTD_ADMIN_KEY").is_none());
    }

    #[test]
    fn schedules_become_autoscaler_processes_that_follow_agentds_count() {
        let files = render_global();
        let gpu = file(&files, "fly/autoscaler/worker-gpu.yml");
        assert!(gpu.contains("process-group: \"worker-gpu\""));
        assert!(gpu.contains("started-machine-count: \"min(desired, 10.0)\""));
        assert!(gpu.contains("max-created-machine-count: \"10\""));
        // The off-hours minimum (0), not the business-hours one (2), is the fallback when no agentd
        // reports: missing metrics must not keep GPU machines up.
        assert!(gpu.contains(
            r#"query: "max(agentd_pool_desired_workers{app=\"agentd\",pool=\"gpu\"}) or vector(0)""#
        ));
        // GPU machines are created in the GPU region; the others beside the primary database.
        assert!(gpu.contains(&format!("\nregions: [\"{GPU_REGION}\"]\n")));
        assert!(file(&files, "fly/autoscaler/worker-cpu.yml").contains("\nregions: [\"cdg\"]\n"));
        assert!(gpu.contains(
            "0-3 workers; 2-10 mon-fri 09:00-18:00 America/Los_Angeles; idle shutdown 10 min"
        ));
        // A persistent pool falls back to its peak.
        let batch = file(&files, "fly/autoscaler/worker-batch-jobs.yml");
        assert!(batch.contains("or vector(4)"));
        assert!(batch.contains("always 4 workers (persistent: never scales down)"));
        let scaler = parse(file(&files, "fly/autoscaler/fly.toml"));
        assert_eq!(scaler["app"].as_str(), Some("agentd-autoscaler"));
        assert_eq!(scaler["build"]["image"].as_str(), Some(AUTOSCALER_IMAGE));
        assert_eq!(scaler["processes"].as_table().unwrap().len(), 3);
        let raw = scaler["files"]
            .as_array_of_tables()
            .unwrap()
            .get(1)
            .unwrap()["raw_value"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(raw, base64(gpu.as_bytes()));
    }

    #[test]
    fn setup_creates_databases_sets_secrets_by_name_and_adds_regions() {
        let files = render_global();
        let setup = files
            .iter()
            .find(|f| f.path.to_str() == Some("fly/setup.sh"))
            .unwrap();
        assert_eq!(setup.mode, 0o755);
        let s = &setup.contents;
        assert!(s.contains("fly postgres create --name \"$APP-db\""));
        assert!(s.contains("--variable-name DATABASE_URL"));
        assert!(s.contains("for region in nrt sjc ewr; do"));
        assert!(s.contains("--replica-regions nrt,sjc,ewr"));
        assert!(s.contains("stage_secret OPENAI_API_KEY"));
        assert!(s.contains("stage_secret REDIS_URL"));
        assert!(s.contains("stage_secret REPLICA_URL"));
        assert!(!s.contains("stage_secret DATABASE_URL"));
        // Two api machines in the primary region (the first deploy's pair), one elsewhere.
        assert!(s.contains("fly scale count api=2 --region cdg "));
        assert!(!s.contains("fly scale count api=1 --region cdg "));
        for code in ["nrt", "sjc", "ewr"] {
            assert!(s.contains(&format!("fly scale count api=1 --region {code} ")));
        }
        // Tokens: the org is positional for `readonly`; each is captured on its own line so that
        // set -e stops the script when one cannot be created.
        assert!(!s.contains("readonly --org"));
        assert!(s.contains(
            "\nFAS_API_TOKEN=\"$(fly tokens create deploy --app \"$APP\" --name \"$SCALER\")\"\n"
        ));
        assert!(s.contains("\nFAS_PROMETHEUS_TOKEN=\"$(fly tokens create readonly \"$ORG\")\"\n"));
        assert!(!s.contains("printf 'FAS_API_TOKEN=%s\\n' \"$("));
        // The first deploy leaves the GPU group out (its first machine would land in cdg, which has
        // no GPUs); its machine is then created in the GPU region.
        assert!(s.contains("\nDEPLOY_GROUPS=api,worker-cpu,worker-batch-jobs\nif group_has_machine worker-gpu; then DEPLOY_GROUPS=\"$DEPLOY_GROUPS,worker-gpu\"; fi\n"));
        assert!(s.contains("--process-groups \"$DEPLOY_GROUPS\"\n"));
        assert!(s.contains(&format!(
            "\ngroup_has_machine worker-gpu || fly scale count worker-gpu=1 --region {GPU_REGION} --app \"$APP\" --yes\n"
        )));
        // ... before the autoscaler, which clones that machine.
        assert!(s.find("fly scale count worker-gpu=1").unwrap() < s.find("SCALER=").unwrap());
        // Several regions: replicas, not the prompt for them.
        assert!(!s.contains("--no-replicas"));
        assert_no_secret(&files);
        assert!(!files.iter().any(|f| f.contents.contains(LEAK)));
    }

    #[test]
    fn sqlite_is_one_machine_with_a_volume_in_one_region() {
        let text = "[server]\nlisten = \"127.0.0.1:8080\"\n";
        let config = load_for(text, Target::Fly);
        let ctx = ctx_with(&config, text, &[]);
        let files = render(&ctx).unwrap();
        let doc = parse(file(&files, "fly/fly.toml"));
        assert!(doc.get("processes").is_none());
        assert_eq!(doc["mounts"]["destination"].as_str(), Some("/data"));
        assert!(doc["http_service"].get("processes").is_none());
        assert!(doc.get("checks").is_none());
        assert!(!files.iter().any(|f| f.path.starts_with("fly/autoscaler")));
        let setup = file(&files, "fly/setup.sh");
        assert!(setup.contains("fly volumes create agentd_data"));
        assert!(!setup.contains("--process-groups"));
        // The volume is mounted owned by the image's (numeric, non-root) user: the comment says so
        // and the Dockerfile's USER is that uid.
        let toml = file(&files, "fly/fly.toml");
        assert!(toml.contains(&format!("w/ uid: {RUN_AS}, gid: {RUN_AS}")));
        assert!(file(&docker::render(&ctx), "Dockerfile")
            .contains(&format!("\nUSER {RUN_AS}:{RUN_AS}\n")));
        assert_eq!(doc["env"]["AGENTD_DATA_DIR"].as_str(), Some(DATA_DIR));
        // Several regions cannot share one SQLite file.
        let ctx = ctx_with(&config, text, &["cdg", "nrt"]);
        let err = render(&ctx).unwrap_err().to_string();
        assert!(err.contains("(cdg,nrt)"), "{err}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar\n"), "Zm9vYmFyCg==");
    }

    #[test]
    fn long_drains_are_capped_at_flys_limit() {
        let text = "[server]\nshutdown_grace_ms = 600000\n";
        let config = load_for(text, Target::Fly);
        let ctx = ctx_with(&config, text, &[]);
        let text = file(&render(&ctx).unwrap(), "fly/fly.toml").to_owned();
        let doc = parse(&text);
        assert_eq!(doc["kill_timeout"].as_integer(), Some(300));
        // Not silently: fly.toml warns and says what fits.
        assert!(text.contains("# WARNING: kill_timeout is clamped to Fly's maximum, 300 s"));
        assert!(text.contains("server.shutdown_grace_ms to at most 290000"));
        // A drain that fits gets no warning.
        let text = "[server]\nshutdown_grace_ms = 290000\n";
        let config = load_for(text, Target::Fly);
        let ctx = ctx_with(&config, text, &[]);
        let toml = file(&render(&ctx).unwrap(), "fly/fly.toml").to_owned();
        assert!(!toml.contains("WARNING"));
        assert_eq!(parse(&toml)["kill_timeout"].as_integer(), Some(300));
    }

    #[test]
    fn an_unused_gpu_pool_gets_no_gpu_machine() {
        // The built-in gpu pool exists in every config; nothing sends runs to it here.
        let text = "[store]\nkind = \"postgres\"\nurl = \"${DATABASE_URL}\"\n[queue]\nkind = \"redis\"\nurl = \"${REDIS_URL}\"\n";
        let config = load_for(text, Target::Fly);
        let ctx = ctx_with(&config, text, &[]);
        let files = render(&ctx).unwrap();
        let doc = parse(file(&files, "fly/fly.toml"));
        let names: Vec<&str> = doc["processes"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names, ["api", "worker-cpu"]);
        assert!(!file(&files, "fly/fly.toml").contains(GPU_VM_SIZE));
        let setup = file(&files, "fly/setup.sh");
        assert!(!setup.contains("--process-groups"));
        assert!(!setup.contains(GPU_REGION));
        assert!(!file(&files, "fly/README.md").contains("## GPU workers"));
        // One region: `fly redis create` is told there are no replicas (it would ask otherwise).
        assert!(setup.contains("--region \"$PRIMARY\" --no-replicas --disable-eviction"));
    }
}
