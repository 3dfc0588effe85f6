//! Raw → validated: defaults, `${VAR}` expansion, environment variables, CLI overrides, and
//! every check, collecting all errors in a [`Sink`] instead of stopping at the first.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::Table;

use crate::config::{
    AuthConfig, Config, DeploymentConfig, LogFormat, MockSettings, ModelConfig, Overrides,
    ProviderConfig, ProviderKind, ServerConfig, StoreConfig,
};
use crate::defaults;
use crate::deploy;
use crate::error::{closest, ConfigError, ConfigErrors, KeyPath, ENV_FILE};
use crate::expand::expand;
use crate::locate::{line_col, path_at, span_of};
use crate::raw::{Entries, ParsedFile, RawAuth, RawModel, RawProvider, RawServer, RawStore};
use crate::routing_and_cost;
use crate::runtime;
use crate::secret::Secret;
use agentd_core::Price;
use std::collections::HashMap;

pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

const LISTEN_FIX: &str =
    "use an IP address and port such as \"127.0.0.1:8080\" or \"0.0.0.0:8080\" (host names are not accepted)";

/// Collects errors, locating each in the document as it is added.
pub(crate) struct Sink<'a> {
    file: PathBuf,
    text: &'a str,
    root: Option<&'a Table>,
    errors: Vec<ConfigError>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(file: &Path, text: &'a str, root: Option<&'a Table>) -> Self {
        Sink {
            file: file.to_path_buf(),
            text,
            root,
            errors: Vec::new(),
        }
    }

    /// An error about `path`, located at its key (or nearest existing ancestor).
    pub(crate) fn error(
        &mut self,
        path: &KeyPath,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let span = self.root.and_then(|root| span_of(root, path));
        self.push(path.to_string(), span, message.into(), fix.into());
    }

    /// An error from serde while reading `section`; its span names the exact key when it has one.
    pub(crate) fn serde_error(
        &mut self,
        section: &KeyPath,
        span: Option<Range<usize>>,
        message: String,
        fix: String,
    ) {
        let path = span
            .as_ref()
            .and_then(|s| self.root.and_then(|root| path_at(root, s.start)))
            .unwrap_or_else(|| section.clone());
        let span = span.or_else(|| self.root.and_then(|root| span_of(root, section)));
        self.push(path.to_string(), span, message, fix);
    }

    /// An error about an environment variable.
    pub(crate) fn env_error(
        &mut self,
        var: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: PathBuf::from(ENV_FILE),
            line: None,
            column: None,
            key: var.to_owned(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn push(&mut self, key: String, span: Option<Range<usize>>, message: String, fix: String) {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = line_col(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key,
            message,
            fix,
        });
    }

    /// `${VAR}`-expands the string at `path`, reporting a failure there.
    pub(crate) fn expand(&mut self, path: &KeyPath, raw: &str, env: Env<'_>) -> Option<String> {
        match expand(raw, env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(path, e.to_string(), e.fix());
                None
            }
        }
    }

    /// All errors in file order (environment errors last), or `Ok` if there were none.
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| {
            (
                e.file == Path::new(ENV_FILE),
                e.line.unwrap_or(usize::MAX),
                e.column.unwrap_or(0),
            )
        });
        Err(ConfigErrors(self.errors))
    }
}

/// A non-empty environment variable (empty counts as unset, as with most CLIs).
fn env_var(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

pub(crate) fn build(
    parsed: &ParsedFile,
    source: Option<PathBuf>,
    env: Env<'_>,
    overrides: &Overrides,
    sink: &mut Sink<'_>,
) -> Config {
    let raw = &parsed.raw;
    let server = server(&raw.server, env, overrides, sink);
    let store = store(&raw.store, &server.data_dir, env, sink);
    let auth = auth(&raw.auth, env, sink);
    let providers = raw
        .providers
        .iter()
        .filter_map(|(name, p)| provider(name, p, env, sink))
        .collect();
    let mut prices = HashMap::new();
    for (name, p) in &raw.prices {
        let path = KeyPath::root().key("prices").key(name);
        if let Some(price) = routing_and_cost::price(sink, &path, p) {
            prices.insert(name.clone(), price);
        }
    }
    let model_names: Vec<String> = raw.models.iter().map(|(n, _)| n.clone()).collect();
    let models = raw
        .models
        .iter()
        .filter_map(|(name, m)| model(name, m, &parsed.provider_names, &model_names, &prices, sink))
        .collect();
    let routers = raw
        .routers
        .iter()
        .filter_map(|(name, r)| routing_and_cost::router(sink, name, r, &model_names))
        .collect();
    // Relative `instructions_file`s are read from the config file's directory.
    let base_dir = source
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let runtime = runtime::build(parsed, &base_dir, env, sink);
    let regions = deploy::regions(&raw.regions, server.region.as_deref(), env, sink);
    // A region with its own database (residency) uses it instead of store.url.
    let store = match server.region.as_deref().and_then(|r| regions.store_url(r)) {
        Some(url) => StoreConfig::Postgres {
            url: url.clone(),
            max_connections: match &store {
                StoreConfig::Postgres {
                    max_connections, ..
                } => *max_connections,
                StoreConfig::Sqlite { .. } => defaults::MAX_CONNECTIONS,
            },
        },
        None => store,
    };
    let store_replica = store_replica(&raw.store, &store, env, sink);
    Config {
        regions,
        deploy: deploy::deploy(&raw.deploy, sink),
        store_replica,
        source,
        server,
        store,
        auth,
        providers,
        models,
        routers,
        routing: routing_and_cost::routing(sink, &raw.routing),
        budgets: routing_and_cost::budgets(sink, &raw.budgets, env),
        rate_limits: routing_and_cost::rate_limits(sink, &raw.rate_limits),
        counters: routing_and_cost::counters(sink, &raw.counters, env),
        cache: routing_and_cost::cache(sink, &raw.cache, &raw.counters, env),
        ledger: routing_and_cost::ledger(sink, &raw.ledger),
        agents: runtime.agents,
        tools: runtime.tools,
        pools: runtime.pools,
        task_routes: runtime.task_routes,
        queue: runtime.queue,
        runtime: runtime.runtime,
    }
}

fn server(
    raw: &RawServer,
    env: Env<'_>,
    overrides: &Overrides,
    sink: &mut Sink<'_>,
) -> ServerConfig {
    let p = KeyPath::root().key("server");

    let mut listen: SocketAddr = defaults::LISTEN
        .parse()
        .expect("default listen address parses");
    if let Some(value) = &raw.listen {
        let path = p.key("listen");
        if let Some(value) = sink.expand(&path, value, env) {
            match value.parse() {
                Ok(addr) => listen = addr,
                Err(_) => sink.error(
                    &path,
                    format!("invalid listen address \"{value}\""),
                    LISTEN_FIX,
                ),
            }
        }
    }
    if let Some(value) = env_var(env, "AGENTD_LISTEN") {
        match value.parse() {
            Ok(addr) => listen = addr,
            Err(_) => sink.env_error(
                "AGENTD_LISTEN",
                format!("invalid listen address \"{value}\""),
                LISTEN_FIX,
            ),
        }
    }
    if let Some(addr) = overrides.listen {
        listen = addr;
    }

    let max_body_bytes = match raw.max_body_bytes {
        None => defaults::MAX_BODY_BYTES,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n > 0 => n,
            _ => {
                sink.error(
                    &p.key("max_body_bytes"),
                    format!("max_body_bytes must be greater than 0 (got {n})"),
                    format!("set a size in bytes, e.g. {}", defaults::MAX_BODY_BYTES),
                );
                defaults::MAX_BODY_BYTES
            }
        },
    };
    let request_timeout = positive_ms(
        sink,
        &p.key("request_timeout_ms"),
        raw.request_timeout_ms,
        defaults::REQUEST_TIMEOUT,
    );
    let shutdown_grace = non_negative_ms(
        sink,
        &p.key("shutdown_grace_ms"),
        raw.shutdown_grace_ms,
        defaults::SHUTDOWN_GRACE,
    );

    // An empty value (e.g. `"${REGION:-}"`) counts as unset, so FLY_REGION can fill in.
    // AGENTD_REGION overrides the file (like AGENTD_LISTEN); FLY_REGION only fills in.
    let region = env_var(env, "AGENTD_REGION")
        .or_else(|| {
            raw.region
                .as_ref()
                .and_then(|value| sink.expand(&p.key("region"), value, env))
                .filter(|value| !value.trim().is_empty())
        })
        .or_else(|| env_var(env, "FLY_REGION"))
        .map(|r| r.trim().to_ascii_lowercase());

    let mut log_format = LogFormat::Json;
    if let Some(value) = &raw.log_format {
        match LogFormat::parse(value) {
            Some(f) => log_format = f,
            None => sink.error(
                &p.key("log_format"),
                format!("invalid log_format \"{value}\""),
                "use one of: json, text",
            ),
        }
    }
    if let Some(value) = env_var(env, "AGENTD_LOG_FORMAT") {
        match LogFormat::parse(&value) {
            Some(f) => log_format = f,
            None => sink.env_error(
                "AGENTD_LOG_FORMAT",
                format!("invalid log format \"{value}\""),
                "use one of: json, text",
            ),
        }
    }

    let mut data_dir = PathBuf::from(defaults::DATA_DIR);
    if let Some(value) = &raw.data_dir {
        let path = p.key("data_dir");
        if let Some(value) = sink.expand(&path, value, env) {
            if value.is_empty() {
                sink.error(
                    &path,
                    "data_dir is empty",
                    "remove the key (default \"./data\") or name a directory",
                );
            } else {
                data_dir = PathBuf::from(value);
            }
        }
    }
    if let Some(value) = env_var(env, "AGENTD_DATA_DIR") {
        data_dir = PathBuf::from(value);
    }
    if let Some(dir) = &overrides.data_dir {
        data_dir = dir.clone();
    }

    let header_read_timeout = positive_ms(
        sink,
        &p.key("header_read_timeout_ms"),
        raw.header_read_timeout_ms,
        defaults::HEADER_READ_TIMEOUT,
    );
    let body_read_timeout = positive_ms(
        sink,
        &p.key("body_read_timeout_ms"),
        raw.body_read_timeout_ms,
        defaults::BODY_READ_TIMEOUT,
    );
    let keep_alive_timeout = positive_ms(
        sink,
        &p.key("keep_alive_timeout_ms"),
        raw.keep_alive_timeout_ms,
        defaults::KEEP_ALIVE_TIMEOUT,
    );
    let max_header_bytes = match raw.max_header_bytes {
        None => defaults::MAX_HEADER_BYTES,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n >= defaults::MIN_HEADER_BYTES && n <= u32::MAX as usize => n,
            _ => {
                sink.error(
                    &p.key("max_header_bytes"),
                    format!(
                        "max_header_bytes must be at least {} (got {n})",
                        defaults::MIN_HEADER_BYTES
                    ),
                    format!(
                        "set a size in bytes between {} and {}, e.g. {}",
                        defaults::MIN_HEADER_BYTES,
                        u32::MAX,
                        defaults::MAX_HEADER_BYTES
                    ),
                );
                defaults::MAX_HEADER_BYTES
            }
        },
    };
    let max_connections = crate::routing_and_cost::count(
        sink,
        &p.key("max_connections"),
        raw.max_connections,
        1,
        defaults::SERVER_MAX_CONNECTIONS,
    ) as usize;
    let max_concurrent_requests = match crate::routing_and_cost::count(
        sink,
        &p.key("max_concurrent_requests"),
        raw.max_concurrent_requests,
        0,
        defaults::MAX_CONCURRENT_REQUESTS,
    ) {
        0 => None,
        n => Some(n as usize),
    };

    ServerConfig {
        listen,
        max_body_bytes,
        request_timeout,
        shutdown_grace,
        region,
        log_format,
        data_dir,
        header_read_timeout,
        body_read_timeout,
        keep_alive_timeout,
        max_header_bytes,
        max_connections,
        max_concurrent_requests,
    }
}

#[derive(Clone, Copy)]
enum StoreKind {
    Sqlite,
    Postgres,
}

fn store(raw: &RawStore, data_dir: &Path, env: Env<'_>, sink: &mut Sink<'_>) -> StoreConfig {
    let p = KeyPath::root().key("store");
    let kind = match raw.kind.as_deref() {
        None | Some("sqlite") => StoreKind::Sqlite,
        Some("postgres") => StoreKind::Postgres,
        Some(other) => {
            sink.error(
                &p.key("kind"),
                format!("invalid store kind \"{other}\""),
                "use one of: sqlite, postgres",
            );
            StoreKind::Sqlite
        }
    };
    let max_connections = match raw.max_connections {
        None => defaults::MAX_CONNECTIONS,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n > 0 => n,
            _ => {
                sink.error(
                    &p.key("max_connections"),
                    format!(
                        "max_connections must be between 1 and {} (got {n})",
                        u32::MAX
                    ),
                    format!("set a pool size such as {}", defaults::MAX_CONNECTIONS),
                );
                defaults::MAX_CONNECTIONS
            }
        },
    };
    let path = raw
        .path
        .as_ref()
        .and_then(|v| sink.expand(&p.key("path"), v, env));
    let url = raw
        .url
        .as_ref()
        .and_then(|v| sink.expand(&p.key("url"), v, env));

    let env_url = env_var(env, "AGENTD_DATABASE_URL");
    if let Some(url) = &env_url {
        check_postgres_url(url, |m, f| sink.env_error("AGENTD_DATABASE_URL", m, f));
    }

    let file_store = match kind {
        StoreKind::Sqlite => {
            if raw.url.is_some() {
                sink.error(
                    &p.key("url"),
                    "url is set but the store kind is sqlite",
                    "set kind = \"postgres\" to use PostgreSQL, or remove url",
                );
            }
            let file = path.unwrap_or_else(|| defaults::SQLITE_FILE.to_owned());
            let path = if file == ":memory:" {
                PathBuf::from(file)
            } else {
                data_dir.join(file)
            };
            StoreConfig::Sqlite { path }
        }
        StoreKind::Postgres => {
            if raw.path.is_some() {
                sink.error(
                    &p.key("path"),
                    "path only applies to the sqlite store",
                    "remove path, or set kind = \"sqlite\"",
                );
            }
            if let Some(url) = &url {
                check_postgres_url(url, |m, f| sink.error(&p.key("url"), m, f));
            }
            match url.or_else(|| env_url.clone()) {
                Some(url) => StoreConfig::Postgres {
                    url: Secret::new(url),
                    max_connections,
                },
                None => {
                    // An unset `${VAR}` in url was already reported; don't pile on.
                    if raw.url.is_none() {
                        sink.error(
                            &p.key("url"),
                            "the postgres store needs a url",
                            "add url = \"postgres://user:password@host:5432/agentd\" (or \"${DATABASE_URL}\"), or set AGENTD_DATABASE_URL",
                        );
                    }
                    StoreConfig::Sqlite {
                        path: data_dir.join(defaults::SQLITE_FILE),
                    }
                }
            }
        }
    };
    match env_url {
        Some(url) => StoreConfig::Postgres {
            url: Secret::new(url),
            max_connections,
        },
        None => file_store,
    }
}

fn store_replica(
    raw: &RawStore,
    store: &StoreConfig,
    env: Env<'_>,
    sink: &mut Sink<'_>,
) -> Option<Secret> {
    let p = KeyPath::root().key("store").key("replica_url");
    let url = raw
        .replica_url
        .as_ref()
        .and_then(|v| sink.expand(&p, v, env))
        .filter(|v| !v.trim().is_empty())?;
    if matches!(store, StoreConfig::Sqlite { .. }) {
        sink.error(
            &p,
            "replica_url is set but the store is sqlite",
            "a read replica needs the postgres store: set kind = \"postgres\" and url",
        );
        return None;
    }
    let mut ok = true;
    check_postgres_url(&url, |m, f| {
        ok = false;
        sink.error(&p, m, f)
    });
    ok.then(|| Secret::new(url))
}

/// Checks the scheme without echoing the URL, which usually carries a password.
fn check_postgres_url(url: &str, mut report: impl FnMut(String, &str)) {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
        report(
            format!("database url must start with postgres:// or postgresql:// (scheme is \"{scheme}\")"),
            "use a URL like postgres://user:password@host:5432/agentd",
        );
    }
}

fn auth(raw: &RawAuth, env: Env<'_>, sink: &mut Sink<'_>) -> AuthConfig {
    let p = KeyPath::root().key("auth");
    let mut admin_key = None;
    if let Some(value) = &raw.admin_key {
        let path = p.key("admin_key");
        if let Some(value) = sink.expand(&path, value, env) {
            if !value.is_empty() {
                match admin_key_ok(&value) {
                    Ok(()) => admin_key = Some(Secret::new(value)),
                    Err((message, fix)) => sink.error(&path, message, fix),
                }
            }
        }
    }
    if admin_key.is_none() && raw.admin_key.is_none() {
        if let Some(value) = env_var(env, "AGENTD_ADMIN_KEY") {
            match admin_key_ok(&value) {
                Ok(()) => admin_key = Some(Secret::new(value)),
                Err((message, fix)) => sink.env_error("AGENTD_ADMIN_KEY", message, fix),
            }
        }
    }
    let key_cache_ttl = non_negative_ms(
        sink,
        &p.key("key_cache_ttl_ms"),
        raw.key_cache_ttl_ms,
        defaults::KEY_CACHE_TTL,
    );
    AuthConfig {
        admin_key,
        key_cache_ttl,
    }
}

/// The admin key is a bearer credential with full power; short keys are guessable. The value
/// itself never appears in the message.
fn admin_key_ok(value: &str) -> Result<(), (String, String)> {
    let len = value.chars().count();
    if len < defaults::ADMIN_KEY_MIN_CHARS {
        return Err((
            format!(
                "admin_key is too short ({len} characters, at least {} required)",
                defaults::ADMIN_KEY_MIN_CHARS
            ),
            "use a long random value, e.g. the output of `openssl rand -hex 32`".to_owned(),
        ));
    }
    Ok(())
}

fn provider(
    name: &str,
    raw: &RawProvider,
    env: Env<'_>,
    sink: &mut Sink<'_>,
) -> Option<ProviderConfig> {
    let p = KeyPath::root().key("providers").key(name);
    if name.is_empty() {
        sink.error(
            &p,
            "provider name is empty",
            "name the table, e.g. [providers.openai]",
        );
    }
    let kind = match raw.kind.as_deref() {
        None => {
            sink.error(
                &p.key("kind"),
                "missing kind",
                "add kind = \"openai\", \"anthropic\" or \"mock\"",
            );
            None
        }
        Some(value) => {
            let kind = ProviderKind::parse(value);
            if kind.is_none() {
                sink.error(
                    &p.key("kind"),
                    format!("invalid provider kind \"{value}\""),
                    "use one of: openai (also any OpenAI-compatible server), anthropic, mock",
                );
            }
            kind
        }
    };

    let base_url = base_url(&p, raw, kind, env, sink);

    let api_key_path = p.key("api_key");
    let mut api_key_failed = false;
    let api_key = match &raw.api_key {
        None => None,
        Some(value) => match sink.expand(&api_key_path, value, env) {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(Secret::new(v)),
            None => {
                api_key_failed = true;
                None
            }
        },
    };
    if kind == Some(ProviderKind::Anthropic) && api_key.is_none() && !api_key_failed {
        sink.error(
            &api_key_path,
            "an anthropic provider needs an api_key",
            "add api_key = \"${ANTHROPIC_API_KEY}\" and export ANTHROPIC_API_KEY",
        );
    }

    let headers = headers(sink, &p.key("headers"), raw.headers.as_ref(), env);

    let connect_timeout = positive_ms(
        sink,
        &p.key("connect_timeout_ms"),
        raw.connect_timeout_ms,
        defaults::CONNECT_TIMEOUT,
    );
    let first_token_timeout = positive_ms(
        sink,
        &p.key("first_token_timeout_ms"),
        raw.first_token_timeout_ms,
        defaults::FIRST_TOKEN_TIMEOUT,
    );
    let timeout = positive_ms(
        sink,
        &p.key("timeout_ms"),
        raw.timeout_ms,
        defaults::PROVIDER_TIMEOUT,
    );

    let is_anthropic = kind == Some(ProviderKind::Anthropic);
    let mut anthropic_version = defaults::ANTHROPIC_VERSION.to_owned();
    if let Some(value) = &raw.anthropic_version {
        let path = p.key("anthropic_version");
        if kind.is_some() && !is_anthropic {
            sink.error(
                &path,
                "anthropic_version only applies to anthropic providers",
                "remove anthropic_version, or set kind = \"anthropic\"",
            );
        } else if value.trim().is_empty() {
            sink.error(
                &path,
                "anthropic_version is empty",
                "remove it to use \"2023-06-01\"",
            );
        } else {
            anthropic_version = value.clone();
        }
    }

    let is_mock = kind == Some(ProviderKind::Mock);
    let mut mock = MockSettings::default();
    for (key, value, slot) in [
        ("ttft_ms", raw.ttft_ms, &mut mock.ttft),
        ("token_delay_ms", raw.token_delay_ms, &mut mock.token_delay),
    ] {
        if value.is_none() {
            continue;
        }
        let path = p.key(key);
        if kind.is_some() && !is_mock {
            sink.error(
                &path,
                format!("{key} only applies to mock providers"),
                format!("remove {key}, or set kind = \"mock\""),
            );
        } else {
            *slot = non_negative_ms(sink, &path, value, Duration::ZERO);
        }
    }

    Some(ProviderConfig {
        name: name.to_owned(),
        kind: kind?,
        base_url: base_url?,
        api_key,
        headers,
        connect_timeout,
        first_token_timeout,
        timeout,
        anthropic_version,
        mock,
    })
}

fn base_url(
    p: &KeyPath,
    raw: &RawProvider,
    kind: Option<ProviderKind>,
    env: Env<'_>,
    sink: &mut Sink<'_>,
) -> Option<String> {
    let path = p.key("base_url");
    let default = match kind? {
        ProviderKind::OpenAi => defaults::OPENAI_BASE_URL,
        ProviderKind::Anthropic => defaults::ANTHROPIC_BASE_URL,
        ProviderKind::Mock => {
            if raw.base_url.is_some() {
                sink.error(
                    &path,
                    "base_url is not allowed for a mock provider",
                    "remove base_url (the mock provider runs inside agentd), or set kind = \"openai\" to call a server",
                );
            }
            return Some(String::new());
        }
    };
    let Some(value) = &raw.base_url else {
        return Some(default.to_owned());
    };
    let value = sink.expand(&path, value, env)?;
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !rest.contains(char::is_whitespace) =>
        {
            Some(value.trim_end_matches('/').to_owned())
        }
        _ => {
            sink.error(
                &path,
                format!("base_url \"{value}\" is not an http:// or https:// URL"),
                format!("use a full URL such as \"{default}\" or \"http://localhost:8000/v1\""),
            );
            None
        }
    }
}

/// Header names checked, values `${VAR}`-expanded into secrets; empty values are dropped so a
/// file can carry optional headers (`"${OPENAI_ORG_ID:-}"` sends nothing when unset).
pub(crate) fn headers(
    sink: &mut Sink<'_>,
    p: &KeyPath,
    raw: Option<&Entries<String>>,
    env: Env<'_>,
) -> Vec<(String, Secret)> {
    let mut headers = Vec::new();
    for (header, value) in raw.iter().flat_map(|h| h.0.iter()) {
        let path = p.key(header);
        if header.is_empty() || !header.bytes().all(is_token_byte) {
            sink.error(
                &path,
                format!("invalid header name \"{header}\""),
                "header names use letters, digits and !#$%&'*+-.^_`|~ only",
            );
            continue;
        }
        if let Some(value) = sink.expand(&path, value, env) {
            if value.is_empty() {
                continue;
            }
            if value.contains(['\r', '\n', '\0']) {
                sink.error(
                    &path,
                    "header value contains a line break or NUL",
                    "remove control characters from the value (check the variable it comes from)",
                );
            } else {
                headers.push((header.clone(), Secret::new(value)));
            }
        }
    }
    headers
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn model(
    name: &str,
    raw: &RawModel,
    providers: &[String],
    models: &[String],
    prices: &HashMap<String, Price>,
    sink: &mut Sink<'_>,
) -> Option<ModelConfig> {
    let p = KeyPath::root().key("models").key(name);
    if name.is_empty() {
        sink.error(
            &p,
            "model name is empty",
            "name the table after the model clients will request, e.g. [models.gpt-4o-mini]",
        );
        return None;
    }
    let shorthand = raw.provider.is_some() || raw.model.is_some();
    let mut ok = true;
    let mut deployments = Vec::new();
    match (&raw.deployments, shorthand) {
        (Some(_), true) => {
            sink.error(
                &p.key("deployments"),
                "both provider/model and deployments are set",
                "use either provider (and model) for a single deployment, or deployments = [...] for several, not both",
            );
            return None;
        }
        (None, true) => match &raw.provider {
            Some(provider) => {
                let upstream = upstream_model(sink, &p.key("model"), raw.model.as_deref(), name);
                ok &= upstream.is_some();
                ok &= check_provider(sink, &p.key("provider"), provider, providers);
                deployments.push(DeploymentConfig {
                    provider: provider.clone(),
                    model: upstream.unwrap_or_default(),
                    weight: 1,
                    connect_timeout: None,
                    first_token_timeout: None,
                    timeout: None,
                    price: None,
                });
            }
            None => {
                sink.error(
                    &p.key("provider"),
                    "model is set but provider is missing",
                    format!("add provider = \"<name>\"{}", provider_hint(providers)),
                );
                return None;
            }
        },
        (None, false) => {
            sink.error(
                &p,
                "no provider: set either provider or deployments",
                format!(
                    "add provider = \"<name>\" (one deployment) or deployments = [{{ provider = \"<name>\" }}, ...]{}",
                    provider_hint(providers)
                ),
            );
            return None;
        }
        (Some(list), false) => {
            if list.is_empty() {
                sink.error(
                    &p.key("deployments"),
                    "deployments is empty",
                    "add at least one deployment, e.g. deployments = [{ provider = \"openai\" }]",
                );
                return None;
            }
            for (i, d) in list.iter().enumerate() {
                let dp = p.key("deployments").index(i);
                let provider = match &d.provider {
                    Some(provider) => {
                        ok &= check_provider(sink, &dp.key("provider"), provider, providers);
                        provider.clone()
                    }
                    None => {
                        sink.error(
                            &dp.key("provider"),
                            "deployment has no provider",
                            format!("add provider = \"<name>\"{}", provider_hint(providers)),
                        );
                        ok = false;
                        String::new()
                    }
                };
                let upstream = upstream_model(sink, &dp.key("model"), d.model.as_deref(), name);
                ok &= upstream.is_some();
                let weight = match d.weight {
                    None => 1,
                    Some(w) => match u32::try_from(w) {
                        Ok(w) if w >= 1 => w,
                        _ => {
                            sink.error(
                                &dp.key("weight"),
                                format!("weight must be at least 1 (got {w})"),
                                "set a positive integer; weights are relative shares of traffic (remove the deployment to stop using it)",
                            );
                            ok = false;
                            1
                        }
                    },
                };
                let ms = |sink: &mut Sink<'_>, key: &str, v: Option<i64>| {
                    v.map(|_| positive_ms(sink, &dp.key(key), v, Duration::from_secs(1)))
                };
                let connect_timeout = ms(sink, "connect_timeout_ms", d.connect_timeout_ms);
                let first_token_timeout =
                    ms(sink, "first_token_timeout_ms", d.first_token_timeout_ms);
                let timeout = ms(sink, "timeout_ms", d.timeout_ms);
                let price = match &d.price {
                    Some(p) => {
                        let price = routing_and_cost::price(sink, &dp.key("price"), p);
                        ok &= price.is_some();
                        price
                    }
                    None => None,
                };
                deployments.push(DeploymentConfig {
                    provider,
                    model: upstream.unwrap_or_default(),
                    weight,
                    connect_timeout,
                    first_token_timeout,
                    timeout,
                    price,
                });
            }
        }
    }

    let owned_by = match &raw.owned_by {
        Some(o) if o.trim().is_empty() => {
            sink.error(
                &p.key("owned_by"),
                "owned_by is empty",
                "remove it to show the provider name",
            );
            ok = false;
            String::new()
        }
        Some(o) => o.clone(),
        None => deployments[0].provider.clone(),
    };
    let model_price = match &raw.price {
        Some(raw_price) => {
            let price = routing_and_cost::price(sink, &p.key("price"), raw_price);
            ok &= price.is_some();
            price
        }
        None => None,
    };
    // Price resolution: deployment → model → [prices.<upstream>] → built-in table → none.
    for d in &mut deployments {
        if d.price.is_none() {
            d.price = model_price
                .or_else(|| prices.get(&d.model).copied())
                .or_else(|| routing_and_cost::default_price(&d.model));
        }
    }
    let balance = routing_and_cost::balance(sink, &p.key("balance"), raw.balance.as_deref());
    let fallback_on =
        routing_and_cost::fallback_on(sink, &p.key("fallback_on"), raw.fallback_on.as_ref());
    let mut fallbacks = Vec::new();
    for (i, f) in raw.fallbacks.iter().flatten().enumerate() {
        let fp = p.key("fallbacks").index(i);
        if f == name {
            sink.error(
                &fp,
                "a model cannot fall back to itself",
                "remove it from fallbacks",
            );
            ok = false;
        } else if !models.iter().any(|m| m == f) {
            let names: Vec<&str> = models.iter().map(String::as_str).collect();
            let guess = closest(f, &names)
                .map(|g| format!("did you mean \"{g}\"? "))
                .unwrap_or_default();
            sink.error(
                &fp,
                format!("unknown model \"{f}\""),
                format!("{guess}fallbacks name other [models] tables"),
            );
            ok = false;
        } else {
            fallbacks.push(f.clone());
        }
    }
    let max_retries = routing_and_cost::count(sink, &p.key("max_retries"), raw.max_retries, 0, 1);
    let max_output_tokens = routing_and_cost::count(
        sink,
        &p.key("max_output_tokens"),
        raw.max_output_tokens,
        1,
        defaults::MAX_OUTPUT_TOKENS,
    );
    ok.then(|| ModelConfig {
        name: name.to_owned(),
        owned_by,
        deployments,
        balance,
        fallbacks,
        fallback_on,
        max_retries,
        max_output_tokens: u64::from(max_output_tokens),
    })
}

/// The upstream model name: explicit, or the public name.
fn upstream_model(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    model: Option<&str>,
    name: &str,
) -> Option<String> {
    match model {
        None => Some(name.to_owned()),
        Some(m) if m.trim().is_empty() => {
            sink.error(
                path,
                "model is empty",
                "remove it to use the public model name, or name the upstream model",
            );
            None
        }
        Some(m) => Some(m.to_owned()),
    }
}

fn check_provider(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    provider: &str,
    providers: &[String],
) -> bool {
    if providers.iter().any(|p| p == provider) {
        return true;
    }
    let fix = if providers.is_empty() {
        format!(
            "add a [providers.{provider}] table with its kind, or reference an existing provider"
        )
    } else {
        let names: Vec<&str> = providers.iter().map(String::as_str).collect();
        let guess = closest(provider, &names)
            .map(|g| format!("did you mean \"{g}\"? "))
            .unwrap_or_default();
        format!(
            "{guess}use one of the names under [providers]: {}",
            names.join(", ")
        )
    };
    sink.error(path, format!("unknown provider \"{provider}\""), fix);
    false
}

fn provider_hint(providers: &[String]) -> String {
    if providers.is_empty() {
        String::new()
    } else {
        format!(" with one of: {}", providers.join(", "))
    }
}

pub(crate) fn positive_ms(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    value: Option<i64>,
    default: Duration,
) -> Duration {
    match value {
        None => default,
        Some(ms) if ms > 0 => Duration::from_millis(ms.unsigned_abs()),
        Some(ms) => {
            sink.error(
                path,
                format!("must be greater than 0 milliseconds (got {ms})"),
                format!(
                    "set a positive number of milliseconds, e.g. {}",
                    default.as_millis()
                ),
            );
            default
        }
    }
}

pub(crate) fn non_negative_ms(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    value: Option<i64>,
    default: Duration,
) -> Duration {
    match value {
        None => default,
        Some(ms) if ms >= 0 => Duration::from_millis(ms.unsigned_abs()),
        Some(ms) => {
            sink.error(
                path,
                format!("must not be negative (got {ms})"),
                format!(
                    "use 0 or a positive number of milliseconds (default {})",
                    default.as_millis()
                ),
            );
            default
        }
    }
}
