//! The validated configuration that runtime code sees.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::ImDocument;

use agentd_core::Price;

use crate::deploy::{DeployConfig, RegionsConfig};
use crate::error::{ConfigError, ConfigErrors};
use crate::locate::line_col;
use crate::routing_and_cost::{
    Balance, BudgetsConfig, CacheConfig, CountersConfig, FallbackOn, LedgerConfig,
    RateLimitsConfig, RouterConfig, RoutingConfig,
};
use crate::runtime::{AgentConfig, PoolConfig, QueueConfig, RuntimeConfig, TaskRoute, ToolConfig};
use crate::secret::Secret;
use crate::validate::Sink;
use crate::{defaults, raw, validate};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; `None` when running on the built-in defaults.
    pub source: Option<PathBuf>,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[auth]`.
    pub auth: AuthConfig,
    /// `[providers.*]`, in file order.
    pub providers: Vec<ProviderConfig>,
    /// `[models.*]`, in file order (the order `/v1/models` lists them in).
    pub models: Vec<ModelConfig>,
    /// `[routers.*]`: tiering routers, listed after the models.
    pub routers: Vec<RouterConfig>,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// `[budgets]`.
    pub budgets: BudgetsConfig,
    /// `[rate_limits]`.
    pub rate_limits: RateLimitsConfig,
    /// `[counters]`.
    pub counters: CountersConfig,
    /// `[cache]`.
    pub cache: CacheConfig,
    /// `[ledger]`.
    pub ledger: LedgerConfig,
    /// `[agents.*]`, in file order.
    pub agents: Vec<AgentConfig>,
    /// `[tools.*]`, in file order.
    pub tools: Vec<ToolConfig>,
    /// `[pools.*]`: `cpu` and `gpu` first (they always exist), then the others in file order.
    pub pools: Vec<PoolConfig>,
    /// `[[task_routes]]`, in file order (the first match wins).
    pub task_routes: Vec<TaskRoute>,
    /// `[queue]`.
    pub queue: QueueConfig,
    /// `[runtime]`.
    pub runtime: RuntimeConfig,
    /// `[regions]`.
    pub regions: RegionsConfig,
    /// `[deploy]`.
    pub deploy: DeployConfig,
    /// `store.replica_url`: a read replica of the primary region's database (PostgreSQL).
    pub store_replica: Option<Secret>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Limit for a whole non-streaming request.
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight work.
    pub shutdown_grace: Duration,
    /// The region this instance runs in, if known.
    pub region: Option<String>,
    /// Log output format.
    pub log_format: LogFormat,
    /// Directory for embedded state, as configured (relative to the working directory).
    pub data_dir: PathBuf,
    /// Time a client has to send a whole request head.
    pub header_read_timeout: Duration,
    /// Time a client has to send a whole request body, from the end of its head.
    pub body_read_timeout: Duration,
    /// How long an idle kept-alive connection stays open.
    pub keep_alive_timeout: Duration,
    /// Largest request head, in bytes (at least 8192).
    pub max_header_bytes: usize,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Most requests served at once (operational endpoints aside); `None` means no limit.
    pub max_concurrent_requests: Option<usize>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines (for terminals).
    Text,
}

impl LogFormat {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(LogFormat::Json),
            "text" => Some(LogFormat::Text),
            _ => None,
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[store]`: where durable state lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Embedded SQLite.
    Sqlite {
        /// Database file, already joined with `server.data_dir` (or `:memory:`).
        path: PathBuf,
    },
    /// PostgreSQL.
    Postgres {
        /// Connection URL; a secret because it usually carries the password.
        url: Secret,
        /// Pool size.
        max_connections: u32,
    },
}

/// `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Bearer key for the `/admin` API; `None` disables the admin API.
    pub admin_key: Option<Secret>,
    /// How long a validated API key is cached in memory (zero: no cache).
    pub key_cache_ttl: Duration,
}

/// `[providers.<name>]`: an upstream LLM API.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The table name.
    pub name: String,
    /// Which wire protocol it speaks.
    pub kind: ProviderKind,
    /// Base URL without a trailing slash; empty for mock providers.
    pub base_url: String,
    /// API key, if any.
    pub api_key: Option<Secret>,
    /// Extra headers sent with every request, in file order.
    pub headers: Vec<(String, Secret)>,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time to the first byte of the body / first stream event.
    pub first_token_timeout: Duration,
    /// Limit for the whole response or stream.
    pub timeout: Duration,
    /// `anthropic-version` header (used by anthropic providers only).
    pub anthropic_version: String,
    /// Mock behaviour (used by mock providers only).
    pub mock: MockSettings,
}

/// Timing of a mock provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MockSettings {
    /// Delay before the first token.
    pub ttft: Duration,
    /// Delay between streamed tokens.
    pub token_delay: Duration,
}

/// The wire protocol of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI or any OpenAI-compatible API (vLLM, Ollama, Azure-compatible gateways, …).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// The built-in mock provider.
    Mock,
}

impl ProviderKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Mock => "mock",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" => Some(ProviderKind::OpenAi),
            "anthropic" => Some(ProviderKind::Anthropic),
            "mock" => Some(ProviderKind::Mock),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[models.<name>]`: a public model name and where it is served.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The name clients put in `"model"`.
    pub name: String,
    /// Shown in `/v1/models`.
    pub owned_by: String,
    /// Never empty.
    pub deployments: Vec<DeploymentConfig>,
    /// How a deployment is picked.
    pub balance: Balance,
    /// Other models tried in order when every deployment failed.
    pub fallbacks: Vec<String>,
    /// Which failures retry / move on.
    pub fallback_on: FallbackOn,
    /// Retries on the same deployment before moving on.
    pub max_retries: u32,
    /// Output tokens assumed for reservations when the request sets no maximum.
    pub max_output_tokens: u64,
}

/// One place a model is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentConfig {
    /// Name of a provider in [`Config::providers`] (checked at load).
    pub provider: String,
    /// The upstream model name.
    pub model: String,
    /// Relative share of traffic, at least 1.
    pub weight: u32,
    /// Overrides the provider's connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Overrides the provider's first-token timeout.
    pub first_token_timeout: Option<Duration>,
    /// Overrides the provider's whole-response timeout.
    pub timeout: Option<Duration>,
    /// What its tokens cost; `None` when unknown (a warning at start-up: budgets count it as free).
    pub price: Option<Price>,
}

/// Command-line overrides, the last layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// The pseudo file name of the built-in defaults (appears only if the defaults themselves are
/// broken, which a test rules out).
const DEFAULTS_FILE: &str = "<defaults>";

impl Config {
    /// Load a file (if given) or the built-in defaults, then apply overrides. `env` looks up environment variables
    /// (injectable for tests; production passes `|k| std::env::var(k).ok()`).
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigErrors(vec![ConfigError {
                        file: path.to_path_buf(),
                        line: None,
                        column: None,
                        key: String::new(),
                        message: format!("cannot read the config file: {e}"),
                        fix: "check the path given with -c/--config".to_owned(),
                    }])
                })?;
                Config::from_str(&text, path, env, overrides)
            }
            None => {
                let text = defaults::document(env);
                load_text(&text, Path::new(DEFAULTS_FILE), None, env, overrides)
            }
        }
    }

    /// Parse and validate `text` as if read from `origin` (used in error messages and as
    /// [`Config::source`]), then apply the environment and `overrides`.
    pub fn from_str(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigErrors> {
        load_text(text, origin, Some(origin.to_path_buf()), env, overrides)
    }

    /// The model with this public name.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The agent with this name.
    pub fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.name == name)
    }

    /// The tool with this name.
    pub fn tool(&self, name: &str) -> Option<&ToolConfig> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// The pool with this name (`cpu` and `gpu` always exist).
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// True when no file was given and the built-in defaults are in use (mock provider, plus
    /// OpenAI/Anthropic when their key variables are set).
    pub fn is_default(&self) -> bool {
        self.source.is_none()
    }
}

fn load_text(
    text: &str,
    origin: &Path,
    source: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let doc = match ImDocument::parse(text.to_owned()) {
        Ok(doc) => doc,
        Err(e) => return Err(ConfigErrors(vec![syntax_error(text, origin, &e)])),
    };
    let mut sink = Sink::new(origin, text, Some(doc.as_table()));
    let parsed = raw::read(&doc, &mut sink);
    let config = validate::build(&parsed, source, env, overrides, &mut sink);
    sink.finish().map(|()| config)
}

/// A TOML syntax error. The parser gives a span but no key, so the key is recovered from the
/// text: the nearest `[table]` header above plus the `key =` on the error line, if any.
fn syntax_error(text: &str, origin: &Path, e: &toml_edit::TomlError) -> ConfigError {
    let offset = e.span().map_or(text.len(), |s| s.start);
    let (line, column) = line_col(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    // The header the error line belongs to, or is.
    let header = lines
        .iter()
        .take(line)
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        });
    let own_key = lines
        .get(line - 1)
        .map(|l| l.trim())
        .filter(|l| !l.starts_with('[') && !l.starts_with('#'))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().to_owned())
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    let key = match (header, own_key) {
        (Some(h), Some(k)) if !h.is_empty() => format!("{h}.{k}"),
        (Some(h), None) => h,
        (_, Some(k)) => k,
        (None, None) => String::new(),
    };
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError {
        file: origin.to_path_buf(),
        line: Some(line),
        column: Some(column),
        key,
        message: format!("TOML syntax error: {message}"),
        fix: "correct the TOML at this position (strings need quotes, tables are [name], see https://toml.io)".to_owned(),
    }
}
