//! `agentd deploy render`: everything a platform needs to run the user's config, written from
//! the validated [`Config`]: a Dockerfile for every target, then `fly.toml` (Fly.io), Kubernetes
//! manifests with KEDA and one overlay per region, a Compose stack with PostgreSQL, Redis, NATS,
//! Prometheus and Grafana, a Cloud Run service, or a systemd unit.
//!
//! [`render`] is pure (config in, files out); [`write_atomically`] puts the files in place only
//! once every one of them rendered, through a temporary directory.

use std::path::{Path, PathBuf};

use agentd_config::{Config, PoolConfig, QueueBackend, RegionsConfig, StoreConfig};

mod cloudrun;
mod compose;
mod docker;
mod fly;
mod k8s;
pub mod render_env;
mod systemd;
pub mod yaml;

pub use render_env::render_env;

/// Where the manifests are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Fly,
    K8s,
    Compose,
    CloudRun,
    Systemd,
}

impl Target {
    /// Every target, in the order the CLI lists them.
    pub const ALL: [Target; 5] = [
        Target::Fly,
        Target::K8s,
        Target::Compose,
        Target::CloudRun,
        Target::Systemd,
    ];

    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Fly => "fly",
            Target::K8s => "k8s",
            Target::Compose => "compose",
            Target::CloudRun => "cloudrun",
            Target::Systemd => "systemd",
        }
    }

    /// Parses the CLI spelling.
    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One output file, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub contents: String,
    /// Unix permissions (0o644, or 0o755 for scripts).
    pub mode: u32,
}

impl File {
    /// A regular file (0644).
    pub fn new(path: impl Into<PathBuf>, contents: impl Into<String>) -> File {
        File {
            path: path.into(),
            contents: contents.into(),
            mode: 0o644,
        }
    }

    /// An executable script (0755).
    pub fn script(path: impl Into<PathBuf>, contents: impl Into<String>) -> File {
        File {
            mode: 0o755,
            ..File::new(path, contents)
        }
    }
}

/// Why nothing was rendered. Each names the offending value.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unknown region code \"{0}\" ({hint})", hint = agentd_config::deploy::region_codes_hint())]
    UnknownRegion(String),
    #[error("the region list {list} does not include the primary region \"{primary}\"; add it or set [regions] primary to one of them")]
    PrimaryMissing { list: String, primary: String },
    #[error("region \"{0}\" is listed twice")]
    DuplicateRegion(String),
    #[error("{0}")]
    Invalid(String),
}

/// What the user asked for beyond the config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--regions`: overrides `[regions] list`; empty means the config's list (or one region:
    /// `server.region`, else `cdg`).
    pub regions: Vec<String>,
    /// The config file's text, shipped as-is (ConfigMap, Fly file, Compose config); `None` when
    /// running on the built-in defaults.
    pub config_text: Option<String>,
}

/// Everything a target renderer needs, worked out once.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub config: &'a Config,
    /// Application name (`[deploy] app`).
    pub app: String,
    /// The image the manifests run.
    pub image: String,
    /// Regions to deploy, primary first.
    pub regions: Vec<&'static agentd_config::Region>,
    /// The primary region (first of `regions`).
    pub primary: &'static agentd_config::Region,
    /// The config file's text shipped with the deployment (a default one when none was given).
    pub config_text: String,
    /// Environment variables the config reads (`${VAR}`), plus `AGENTD_ADMIN_KEY` and
    /// `AGENTD_DATABASE_URL` when they matter: the manifests reference them as secrets, never
    /// their values.
    pub secret_vars: Vec<String>,
    /// Whether api and worker roles run as separate processes: yes when the state is shared
    /// (PostgreSQL store), no on embedded SQLite (one process must hold it).
    pub split_roles: bool,
    /// The port agentd listens on inside the container.
    pub port: u16,
    /// `server.shutdown_grace` in whole seconds (the drain timeout).
    pub drain_seconds: u64,
}

impl<'a> Ctx<'a> {
    /// The worker pools runs can reach — named by an agent or a task route (`cpu` when there
    /// are no agents) — with their schedules. The built-in `gpu` pool gets no workers (and no
    /// GPU machine) unless something sends runs to it.
    pub fn pools(&self) -> Vec<&'a PoolConfig> {
        let config = self.config;
        let used = |name: &str| {
            config.agents.iter().any(|a| a.pool == name)
                || config.task_routes.iter().any(|r| r.pool == name)
                || (config.agents.is_empty() && name == "cpu")
        };
        config.pools.iter().filter(|p| used(&p.name)).collect()
    }

    /// `[regions]` of the config.
    pub fn regions_config(&self) -> &'a RegionsConfig {
        &self.config.regions
    }

    /// The queue backend.
    pub fn queue(&self) -> &'a QueueBackend {
        &self.config.queue.backend
    }

    /// Whether the store is PostgreSQL.
    pub fn postgres(&self) -> bool {
        matches!(self.config.store, StoreConfig::Postgres { .. })
    }
}

/// A config file to ship when the user has none: the built-in defaults, spelled out.
const DEFAULT_CONFIG: &str = "# agentd.toml — written by `agentd deploy render` (no -c given): the built-in defaults.\n[server]\nlisten = \"0.0.0.0:8080\"\n";

/// The port the config listens on.
fn port_of(config: &Config) -> u16 {
    config.server.listen.port()
}

/// `${VAR}` names in `text`, in first-seen order, without `${VAR:-default}` ones that have a
/// default (those are optional).
pub fn env_vars_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find('}') else { break };
        let inner = &rest[..end];
        let name: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let has_default = inner[name.len()..].starts_with(":-");
        if !name.is_empty() && !has_default && !out.contains(&name) {
            out.push(name);
        }
        rest = &rest[end..];
    }
    out
}

/// Keys of `text` that hold a secret written out rather than referenced (`${VAR}`): provider
/// API keys, the admin key, HTTP tool headers, and URLs with a password. `deploy render` ships
/// the config file with the deployment (a ConfigMap, a file in fly.toml), so those must be
/// references to platform secrets.
pub fn literal_secrets(text: &str) -> Vec<String> {
    use toml_edit::{DocumentMut, Item};
    let Ok(doc) = text.parse::<DocumentMut>() else {
        return Vec::new();
    };
    let literal = |item: &Item| {
        item.as_str()
            .is_some_and(|v| !v.trim().is_empty() && !v.contains("${"))
    };
    let has_password = |item: &Item| {
        item.as_str().is_some_and(|v| {
            !v.contains("${")
                && v.split_once("://").is_some_and(|(_, rest)| {
                    rest.split('/')
                        .next()
                        .and_then(|auth| auth.rsplit_once('@'))
                        .and_then(|(user, _)| user.split_once(':'))
                        .is_some_and(|(_, password)| !password.is_empty())
                })
        })
    };
    let mut found = Vec::new();
    let table = |name: &str| doc.get(name).and_then(Item::as_table_like);
    if let Some(providers) = table("providers") {
        for (name, p) in providers.iter() {
            if p.get("api_key").is_some_and(literal) {
                found.push(format!("providers.{name}.api_key"));
            }
        }
    }
    if table("auth")
        .and_then(|a| a.get("admin_key"))
        .is_some_and(literal)
    {
        found.push("auth.admin_key".to_owned());
    }
    if let Some(tools) = table("tools") {
        for (name, t) in tools.iter() {
            if let Some(headers) = t.get("headers").and_then(Item::as_table_like) {
                for (h, v) in headers.iter() {
                    if literal(v) {
                        found.push(format!("tools.{name}.headers.{h}"));
                    }
                }
            }
        }
    }
    for (section, key) in [
        ("store", "url"),
        ("store", "replica_url"),
        ("queue", "url"),
        ("counters", "url"),
        ("cache", "url"),
    ] {
        if table(section)
            .and_then(|t| t.get(key))
            .is_some_and(has_password)
        {
            found.push(format!("{section}.{key}"));
        }
    }
    if let Some(urls) = table("regions")
        .and_then(|r| r.get("store_urls"))
        .and_then(Item::as_table_like)
    {
        for (code, v) in urls.iter() {
            if has_password(v) {
                found.push(format!("regions.store_urls.{code}"));
            }
        }
    }
    found
}

/// Works out the regions and names, then renders `target`.
pub fn render(
    config: &Config,
    target: Target,
    options: &Options,
) -> Result<Vec<File>, RenderError> {
    let ctx = context(config, options)?;
    let mut files = docker::render(&ctx);
    files.extend(match target {
        Target::Fly => fly::render(&ctx)?,
        Target::K8s => k8s::render(&ctx)?,
        Target::Compose => compose::render(&ctx)?,
        Target::CloudRun => cloudrun::render(&ctx)?,
        Target::Systemd => systemd::render(&ctx)?,
    });
    Ok(files)
}

/// The shared facts every renderer uses.
pub fn context<'a>(config: &'a Config, options: &Options) -> Result<Ctx<'a>, RenderError> {
    let mut codes: Vec<String> = if !options.regions.is_empty() {
        options
            .regions
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .collect()
    } else if !config.regions.list.is_empty() {
        config.regions.list.clone()
    } else {
        vec![config
            .server
            .region
            .clone()
            .unwrap_or_else(|| "cdg".to_owned())]
    };
    let mut regions = Vec::new();
    for code in &codes {
        let region = agentd_config::region_by_code(code)
            .ok_or_else(|| RenderError::UnknownRegion(code.clone()))?;
        if regions
            .iter()
            .any(|r: &&agentd_config::Region| r.code == region.code)
        {
            return Err(RenderError::DuplicateRegion(code.clone()));
        }
        regions.push(region);
    }
    if let Some(primary) = &config.regions.primary {
        if !codes.contains(primary) {
            return Err(RenderError::PrimaryMissing {
                list: codes.join(","),
                primary: primary.clone(),
            });
        }
        // Primary first.
        let at = codes.iter().position(|c| c == primary).unwrap_or(0);
        let p = regions.remove(at);
        regions.insert(0, p);
        let c = codes.remove(at);
        codes.insert(0, c);
    }
    let primary = regions[0];
    let app = config.deploy.app.clone();
    let image = config
        .deploy
        .image
        .clone()
        .unwrap_or_else(|| format!("{app}:latest"));
    let config_text = options
        .config_text
        .clone()
        .unwrap_or_else(|| DEFAULT_CONFIG.to_owned());
    let literal = literal_secrets(&config_text);
    if !literal.is_empty() {
        return Err(RenderError::Invalid(format!(
            "{} {} a secret written out in the config, which the deployment ships as is (a ConfigMap, a file in fly.toml): write it as a reference such as \"${{OPENAI_API_KEY}}\" and set the value as a platform secret",
            literal.join(", "),
            if literal.len() == 1 { "holds" } else { "hold" }
        )));
    }
    let mut secret_vars = env_vars_in(&config_text);
    for var in ["AGENTD_ADMIN_KEY"] {
        if !secret_vars.iter().any(|v| v == var) {
            secret_vars.push(var.to_owned());
        }
    }
    Ok(Ctx {
        config,
        app,
        image,
        regions,
        primary,
        config_text,
        secret_vars,
        split_roles: matches!(config.store, StoreConfig::Postgres { .. }),
        port: port_of(config),
        drain_seconds: config.server.shutdown_grace.as_secs().max(1),
    })
}

/// Writes `files` under `out`: first into a temporary directory beside it, then moved into
/// place, so an error leaves nothing half-written. Existing files of the same names are
/// replaced; other files in `out` are left alone.
pub fn write_atomically(out: &Path, files: &[File]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile_dir(&parent)?;
    let result = (|| {
        for file in files {
            let path = staging.join(&file.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::File::create(&path)?;
            f.write_all(file.contents.as_bytes())?;
            f.sync_all()?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
        }
        if !out.exists() {
            return std::fs::rename(&staging, out);
        }
        for file in files {
            let dest = out.join(&file.path);
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::rename(staging.join(&file.path), dest)?;
        }
        std::fs::remove_dir_all(&staging)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    let pid = std::process::id();
    for n in 0..1000u32 {
        let dir = parent.join(format!(".agentd-render-{pid}-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a staging directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_found_and_references_pass() {
        let text = r#"
[auth]
admin_key = "plain-admin-key-0123456789"
[providers.openai]
kind = "openai"
api_key = "sk-live-123"
[providers.local]
kind = "mock"
[providers.anthropic]
kind = "anthropic"
api_key = "${ANTHROPIC_API_KEY}"
[tools.weather.headers]
Authorization = "Bearer abc"
X-Trace = "${TRACE}"
[store]
url = "postgres://agentd:hunter2@db/agentd"
replica_url = "postgres://agentd:${PW}@replica/agentd"
[queue]
url = "redis://cache:6379"
"#;
        assert_eq!(
            literal_secrets(text),
            vec![
                "providers.openai.api_key",
                "auth.admin_key",
                "tools.weather.headers.Authorization",
                "store.url"
            ]
        );
        assert!(literal_secrets("[store]\nurl = \"${DATABASE_URL}\"\n").is_empty());
    }

    #[test]
    fn env_vars_skip_defaults_and_repeat() {
        assert_eq!(
            env_vars_in(
                "a = \"${OPENAI_API_KEY}\"\nb = \"${X:-1}\"\nc = \"${OPENAI_API_KEY}\" ${DB_URL}"
            ),
            vec!["OPENAI_API_KEY", "DB_URL"]
        );
    }
}
