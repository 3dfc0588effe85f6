//! The raw serde mirror of `agentd.toml`.
//!
//! Every struct denies unknown keys, and every field is optional so that *we* report a missing
//! or out-of-range value (with a fix) and can keep going to find the next error, instead of
//! serde stopping at the first one. Integers are `i64` so a negative timeout reaches validation
//! and gets a precise message rather than a type error. Validation (`validate.rs`) turns this
//! into [`Config`](crate::Config).
//!
//! The field doc comments below are the source of `docs/configuration.md`; a test checks that
//! every key here has a row there and vice versa.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml_edit::{ImDocument, Item, Table};

use crate::error::{explain_serde, unknown_key_fix, KeyPath};
use crate::validate::Sink;

/// The top-level tables, in the order the reference documents them.
pub const SECTIONS: &[&str] = &[
    "server",
    "store",
    "auth",
    "providers",
    "models",
    "routers",
    "routing",
    "prices",
    "budgets",
    "rate_limits",
    "counters",
    "cache",
    "ledger",
    "agents",
    "tools",
    "pools",
    "task_routes",
    "queue",
    "runtime",
    "regions",
    "deploy",
];

/// The whole file. Not deserialized in one go: each section (and each provider and model) is
/// deserialized on its own so that an error in one does not hide the errors in the others.
#[derive(Debug, Default)]
pub struct RawConfig {
    /// `[server]`.
    pub server: RawServer,
    /// `[store]`.
    pub store: RawStore,
    /// `[auth]`.
    pub auth: RawAuth,
    /// `[providers.<name>]`, in file order.
    pub providers: Vec<(String, RawProvider)>,
    /// `[models.<name>]`, in file order.
    pub models: Vec<(String, RawModel)>,
    /// `[routers.<name>]`, in file order.
    pub routers: Vec<(String, RawRouter)>,
    /// `[routing]`.
    pub routing: RawRouting,
    /// `[prices.<upstream model>]`, in file order.
    pub prices: Vec<(String, RawPrice)>,
    /// `[budgets]`.
    pub budgets: RawBudgets,
    /// `[rate_limits]`.
    pub rate_limits: RawRateLimits,
    /// `[counters]`.
    pub counters: RawCounters,
    /// `[cache]`.
    pub cache: RawCache,
    /// `[ledger]`.
    pub ledger: RawLedger,
    /// `[agents.<name>]`, in file order.
    pub agents: Vec<(String, RawAgent)>,
    /// `[tools.<name>]`, in file order.
    pub tools: Vec<(String, RawTool)>,
    /// `[pools.<name>]`, in file order.
    pub pools: Vec<(String, RawPool)>,
    /// `[[task_routes]]`, in file order, with their index (a route that failed to deserialize
    /// leaves a gap, so later routes keep their own index in error messages).
    pub task_routes: Vec<(usize, RawTaskRoute)>,
    /// `[queue]`.
    pub queue: RawQueue,
    /// `[runtime]`.
    pub runtime: RawRuntime,
    /// `[regions]`.
    pub regions: RawRegions,
    /// `[deploy]`.
    pub deploy: RawDeploy,
}

/// `[server]`: the HTTP listener and process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address to listen on, `ip:port` (a socket address, not a host name). Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Largest accepted request body in bytes; larger requests get 413. Default 4194304 (4 MiB).
    pub max_body_bytes: Option<i64>,
    /// Limit for a whole non-streaming request, and for a stream until its response head, in milliseconds; then 504. Default 600000 (10 min).
    pub request_timeout_ms: Option<i64>,
    /// How long in-flight requests and runs may drain after SIGTERM, in milliseconds. Default 30000.
    pub shutdown_grace_ms: Option<i64>,
    /// Region this instance runs in (e.g. `cdg`), reported in `/info`, logs and metrics; empty means unset. The `AGENTD_REGION` variable overrides it; default the `FLY_REGION` variable, else none.
    pub region: Option<String>,
    /// Log output: `json` (default) or `text`.
    pub log_format: Option<String>,
    /// Directory for embedded state (SQLite database, queues). Relative to the working directory. Default `./data`.
    pub data_dir: Option<String>,
    /// Time a client has to send a whole request head (request line and headers), in milliseconds, counted from the connection or from its first byte on a kept-alive connection; the connection is closed after it. Default 10000.
    pub header_read_timeout_ms: Option<i64>,
    /// Time a client has to send a whole request body, in milliseconds, counted from the end of the headers; slower bodies get 408. Default 30000.
    pub body_read_timeout_ms: Option<i64>,
    /// How long an idle kept-alive connection (no request in progress) stays open, in milliseconds. Default 60000.
    pub keep_alive_timeout_ms: Option<i64>,
    /// Largest request head (request line and headers) in bytes, at least 8192; larger heads get 431. Default 65536 (64 KiB).
    pub max_header_bytes: Option<i64>,
    /// Most client connections open at once; further connections wait in the listen backlog until one closes. Default 4096.
    pub max_connections: Option<i64>,
    /// Most requests served at once; more are refused at once with 503 `overloaded` and `Retry-After: 1`. `/healthz`, `/readyz` and `/metrics` do not count. 0 means no limit. Default 1024.
    pub max_concurrent_requests: Option<i64>,
}

/// `[store]`: where durable state (keys, threads, runs, spend) lives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite` (default, embedded) or `postgres`.
    pub kind: Option<String>,
    /// SQLite only: database file, relative to `server.data_dir` unless absolute. Default `agentd.db`.
    pub path: Option<String>,
    /// Postgres only (required there): connection URL `postgres://user:pass@host:port/db`; may use `${VAR}`.
    pub url: Option<String>,
    /// Connection pool size (used by Postgres). Default 8.
    pub max_connections: Option<i64>,
    /// Postgres only: a read replica of the primary region's database, `postgres://…`; may use `${VAR}`. API keys and tenant pins (the directory every request reads) are read from it. Empty means unset.
    pub replica_url: Option<String>,
}

/// `[auth]`: API keys and the admin API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Enables the `/admin` API with this bearer key; at least 16 characters. Usually `${AGENTD_ADMIN_KEY}`. Empty means unset.
    pub admin_key: Option<String>,
    /// How long a validated API key is cached in memory, in milliseconds; 0 disables the cache. Default 2000.
    pub key_cache_ttl_ms: Option<i64>,
}

/// `[providers.<name>]`: an upstream LLM API. The table name is the provider's name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    /// Required: `openai` (any OpenAI-compatible API: OpenAI, vLLM, Ollama, …), `anthropic` or `mock`.
    pub kind: Option<String>,
    /// Base URL, `http://` or `https://`. Default `https://api.openai.com/v1` (openai) or `https://api.anthropic.com` (anthropic). Not allowed for mock.
    pub base_url: Option<String>,
    /// API key, usually `${VAR}`. Required for anthropic, optional for openai (local servers need none). Empty means none.
    pub api_key: Option<String>,
    /// Extra HTTP headers sent with every request, e.g. `{ "OpenAI-Organization" = "org-…" }`; values may use `${VAR}`.
    pub headers: Option<Entries<String>>,
    /// TCP + TLS connect timeout in milliseconds. Default 5000.
    pub connect_timeout_ms: Option<i64>,
    /// Time to the first byte of the response body (first stream event), in milliseconds. Default 60000.
    pub first_token_timeout_ms: Option<i64>,
    /// Limit for the whole response or the whole stream, in milliseconds. Default 600000.
    pub timeout_ms: Option<i64>,
    /// Anthropic only: the `anthropic-version` header. Default `2023-06-01`.
    pub anthropic_version: Option<String>,
    /// Mock only: delay before the first token, in milliseconds. Default 0.
    pub ttft_ms: Option<i64>,
    /// Mock only: delay between streamed tokens, in milliseconds. Default 0.
    pub token_delay_ms: Option<i64>,
}

/// `[models.<name>]`: a public model name and the deployments that serve it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// Provider serving this model (shorthand for a single deployment). Excludes `deployments`.
    pub provider: Option<String>,
    /// Upstream model name for the `provider` shorthand. Default: the public name.
    pub model: Option<String>,
    /// Several deployments to balance across, e.g. `[{ provider = "openai", weight = 3 }, { provider = "azure" }]`. Excludes `provider`/`model`.
    pub deployments: Option<Vec<RawDeployment>>,
    /// `owned_by` shown in `/v1/models`. Default: the first deployment's provider name.
    pub owned_by: Option<String>,
    /// How to pick among the deployments: `weighted` (default, random by weight) or `least_latency` (power of two choices on recent latency × requests in flight).
    pub balance: Option<String>,
    /// Other public models to try, in order, when every deployment of this one failed. Default none.
    pub fallbacks: Option<Vec<String>>,
    /// Which failures move a request on to the next deployment or fallback: any of `rate_limit`, `server_error`, `timeout`, `connect`, `context_window`. Default all five.
    pub fallback_on: Option<Vec<String>>,
    /// Retries on the same deployment (with backoff) before moving on, for the failures in `fallback_on`. Default 1.
    pub max_retries: Option<i64>,
    /// Output tokens assumed for budget reservations when a request sets no max tokens. Default 4096.
    pub max_output_tokens: Option<i64>,
    /// Price for every deployment of this model, `{ input = 2.5, output = 10, cached_input = 1.25 }` in US$ per million tokens. Default: `[prices]`, then the built-in table.
    pub price: Option<RawPrice>,
}

/// One element of `models.<name>.deployments`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// Required: a provider name from `[providers]`.
    pub provider: Option<String>,
    /// Upstream model name. Default: the public model name.
    pub model: Option<String>,
    /// Relative share of traffic, at least 1. Default 1.
    pub weight: Option<i64>,
    /// Overrides the provider's `connect_timeout_ms` for this deployment.
    pub connect_timeout_ms: Option<i64>,
    /// Overrides the provider's `first_token_timeout_ms` for this deployment.
    pub first_token_timeout_ms: Option<i64>,
    /// Overrides the provider's `timeout_ms` (whole response / whole stream) for this deployment.
    pub timeout_ms: Option<i64>,
    /// Price of this deployment, as in `models.<name>.price`.
    pub price: Option<RawPrice>,
}

/// `[routers.<name>]`: a public model name that picks another public model per request
/// (model tiering), from the caller's declared tier and the request itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    /// Required: the model used when no rule matches.
    pub default: Option<String>,
    /// Rules tried in order; the first whose conditions all hold picks the model, e.g. `[{ tier = "quality", use = "smart" }, { tools = true, use = "smart" }, { min_prompt_tokens = 8000, use = "long" }]`.
    pub rules: Option<Vec<RawRule>>,
}

/// One element of `routers.<name>.rules`. Every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Required: the model to use when the rule matches.
    #[serde(rename = "use")]
    pub use_model: Option<String>,
    /// The caller's tier: the `x-agentd-tier` header, else the API key's default tier.
    pub tier: Option<String>,
    /// Whether the request declares tools.
    pub tools: Option<bool>,
    /// Estimated prompt tokens at least this.
    pub min_prompt_tokens: Option<i64>,
    /// Estimated prompt tokens at most this.
    pub max_prompt_tokens: Option<i64>,
}

/// `[routing]`: retries and circuit breakers, for every model.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// First retry delay in milliseconds; doubles per attempt, with full jitter. Default 100.
    pub retry_backoff_ms: Option<i64>,
    /// Largest retry delay in milliseconds; a provider's `Retry-After` longer than this moves on to the next deployment instead of waiting. Default 2000.
    pub retry_backoff_max_ms: Option<i64>,
    /// Retries allowed per deployment as a percentage of its requests (retry budget). Default 20.
    pub retry_budget_percent: Option<i64>,
    /// Retries per second per deployment always allowed, whatever the budget. Default 5.
    pub retry_min_per_sec: Option<i64>,
    /// `[routing.breaker]`: the circuit breaker of every deployment.
    pub breaker: Option<RawBreaker>,
}

/// `[routing.breaker]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Default true.
    pub enabled: Option<bool>,
    /// Consecutive failures that open the breaker. Default 5.
    pub consecutive_failures: Option<i64>,
    /// Error rate (percent) over `window_ms` that opens the breaker. Default 50.
    pub error_rate_percent: Option<i64>,
    /// Requests in the window before the error rate counts. Default 20.
    pub min_requests: Option<i64>,
    /// Sliding window for the error rate, in milliseconds. Default 30000.
    pub window_ms: Option<i64>,
    /// How long an open breaker refuses traffic before letting probes through, in milliseconds. Default 30000.
    pub open_ms: Option<i64>,
    /// A time to first token above this counts as a failure; 0 disables. Default 0.
    pub slow_ttft_ms: Option<i64>,
    /// Concurrent probe requests while half-open; that many successes close it. Default 1.
    pub half_open_probes: Option<i64>,
}

/// A price in US$ per million tokens (numbers or decimal strings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Required: US$ per million prompt tokens.
    pub input: Option<RawAmount>,
    /// Required: US$ per million output tokens.
    pub output: Option<RawAmount>,
    /// US$ per million prompt tokens served from the provider's cache. Default: `input`.
    pub cached_input: Option<RawAmount>,
}

/// A dollar amount: a TOML number (`2.5`) or a decimal string (`"2.50"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawAmount {
    /// `3`
    Int(i64),
    /// `2.5`
    Float(f64),
    /// `"2.50"`
    Text(String),
}

/// `[budgets]`: hard spending limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    /// Largest worst-case cost (US$) of a single request; more is refused. Default none.
    pub max_request_usd: Option<RawAmount>,
    /// URL that receives a JSON POST when a budget crosses 50 %, 80 % and 100 % (retried, never blocks requests). Default none.
    pub alert_webhook: Option<String>,
    /// `[[budgets.limits]]`: the budgets.
    pub limits: Option<Vec<RawBudgetLimit>>,
}

/// One `[[budgets.limits]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudgetLimit {
    /// Name shown in errors, alerts and metrics. Default `<scope>-<window>`.
    pub name: Option<String>,
    /// Required: what the budget is per: `global`, `tenant`, `user`, `key` or `session` (the `x-agentd-session` header).
    pub scope: Option<String>,
    /// `day` or `month` (UTC calendar windows) or `total`. Default `total` for session budgets, `month` otherwise.
    pub window: Option<String>,
    /// Required: the limit in US$.
    pub usd: Option<RawAmount>,
    /// Apply only to this tenant, user, key id or session (for `user`: `tenant/user`). Default: each one separately.
    #[serde(rename = "match")]
    pub match_id: Option<String>,
}

/// `[rate_limits]`: per-minute limits; 0 or absent means none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimits {
    /// Requests per minute per API key.
    pub key_rpm: Option<i64>,
    /// Tokens (prompt estimate + output) per minute per API key.
    pub key_tpm: Option<i64>,
    /// Requests per minute per tenant.
    pub tenant_rpm: Option<i64>,
    /// Tokens per minute per tenant.
    pub tenant_tpm: Option<i64>,
}

/// `[counters]`: where budget and rate-limit counters live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCounters {
    /// `memory` (default: this process only) or `redis` (shared by every replica).
    pub kind: Option<String>,
    /// Redis only (required there): `redis://host:6379`; may use `${VAR}`.
    pub url: Option<String>,
    /// Prefix of every Redis key. Default `agentd`.
    pub prefix: Option<String>,
}

/// `[cache]`: the exact-match response cache.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// Default true. Only deterministic requests (`temperature = 0`, embeddings) or requests with `x-agentd-cache: on` are cached.
    pub enabled: Option<bool>,
    /// `memory` (default) or `redis`.
    pub kind: Option<String>,
    /// Redis only: URL. Default: `counters.url`.
    pub url: Option<String>,
    /// Memory only: total size bound in bytes. Default 33554432 (32 MiB).
    pub max_bytes: Option<i64>,
    /// Largest answer stored, in bytes. Default 1048576.
    pub max_entry_bytes: Option<i64>,
    /// Lifetime of a cached chat answer, in milliseconds. Default 3600000 (1 h).
    pub chat_ttl_ms: Option<i64>,
    /// Lifetime of cached embeddings, in milliseconds. Default 86400000 (24 h).
    pub embeddings_ttl_ms: Option<i64>,
}

/// `[ledger]`: the spend ledger (one row per model call, in the store).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// Default true. Budgets still hold with the ledger off, but do not survive a restart.
    pub enabled: Option<bool>,
    /// Rows are written in batches at least this often, in milliseconds. Default 100.
    pub flush_ms: Option<i64>,
    /// Most rows per batch. Default 500.
    pub batch_rows: Option<i64>,
    /// Rows waiting to be written before new ones are dropped (and counted in `agentd_ledger_dropped_total`). Default 100000.
    pub queue_rows: Option<i64>,
}

/// `[agents.<name>]`: an agent the runtime runs. The table name is the agent's name
/// (LangGraph's `graph_id`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    /// Required: the model the agent calls, a `[models.<name>]` or `[routers.<name>]` name.
    pub model: Option<String>,
    /// System prompt. Excludes `instructions_file`. Default none.
    pub instructions: Option<String>,
    /// File holding the system prompt, relative to the config file's directory; read at load. Excludes `instructions`.
    pub instructions_file: Option<String>,
    /// Names of `[tools.<name>]` the agent may call. Default none.
    pub tools: Option<Vec<String>>,
    /// Most steps in one run (model calls plus tool calls), 1 to 1000. Default 16.
    pub max_steps: Option<i64>,
    /// Most a run may spend, in US$, greater than 0. Default no limit.
    pub max_run_usd: Option<RawAmount>,
    /// Most tokens (prompt plus output, all steps) a run may use, at least 1. Default no limit.
    pub max_run_tokens: Option<i64>,
    /// Limit for a whole run, in milliseconds. Default 600000 (10 min).
    pub timeout_ms: Option<i64>,
    /// The `[pools.<name>]` the agent's runs execute in (unless a task route says otherwise). Default `cpu`.
    pub pool: Option<String>,
    /// Queue priority of its runs: `critical`, `high`, `normal` (default) or `low`.
    pub priority: Option<String>,
    /// Most runs of this agent executing at once (others wait in the queue), at least 1. Default no limit.
    pub max_concurrent_runs: Option<i64>,
    /// Shown in the assistants API. Default none.
    pub description: Option<String>,
}

/// `[tools.<name>]`: a tool agents can call. The table name is the tool's name, as the model
/// sees it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    /// Required: `static` (a fixed answer), `http` (calls a URL) or `agent` (runs another agent).
    pub kind: Option<String>,
    /// What the tool does, shown to the model. Default none.
    pub description: Option<String>,
    /// JSON Schema of the arguments: a table with `type = "object"`, optional `properties` and `required`. Default `{ type = "object" }`.
    pub parameters: Option<serde_json::Value>,
    /// Static only (required there): the answer, any TOML value (a string stays a string).
    pub result: Option<serde_json::Value>,
    /// HTTP only (required there): `http://` or `https://` URL; `{name}` placeholders in its path and query are filled from the arguments of that name (which `parameters` must declare).
    pub url: Option<String>,
    /// HTTP only: `GET` (default), `POST`, `PUT`, `PATCH` or `DELETE`. Arguments not used in the URL go in the query for `GET`/`DELETE`, else in a JSON body.
    pub method: Option<String>,
    /// HTTP only: headers sent with every call, e.g. `{ Authorization = "Bearer ${WEATHER_KEY}" }`; values may use `${VAR}` and are kept secret.
    pub headers: Option<Entries<String>>,
    /// HTTP only: limit for the whole call, in milliseconds. Default 10000.
    pub timeout_ms: Option<i64>,
    /// HTTP only: largest response body read, in bytes; longer answers are cut. Default 65536.
    pub max_response_bytes: Option<i64>,
    /// HTTP only: allow private, loopback and link-local addresses. Default false.
    pub allow_private: Option<bool>,
    /// Agent only (required there): the `[agents.<name>]` the tool runs.
    pub agent: Option<String>,
}

/// `[pools.<name>]`: a class of workers; `cpu` and `gpu` always exist.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Runs a worker of this pool executes at once, at least 1. Default 16 (`cpu`), 2 (`gpu`), 8 (other pools).
    pub concurrency: Option<i64>,
    /// The largest share of a worker's slots one tenant may hold while others wait, in (0, 1]. Default 0.5.
    pub max_tenant_share: Option<f64>,
    /// Fewest workers outside business hours (0 lets the pool scale to zero). Default 0.
    pub min_workers: Option<i64>,
    /// Most workers outside business hours, at least `min_workers` and 1. Default 10.
    pub max_workers: Option<i64>,
    /// After this long without queued or running work the desired count drops to the minimum, in milliseconds; until then one worker stays up. 0 means at once. Default 600000 (10 min).
    pub idle_shutdown_ms: Option<i64>,
    /// A persistent pool never scales down: its desired count is always its maximum. Default false.
    pub persistent: Option<bool>,
    /// `[pools.<name>.business_hours]`: other bounds during business hours. Default none.
    pub business_hours: Option<RawBusinessHours>,
}

/// `[pools.<name>.business_hours]`: when the pool needs more (or fewer) workers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBusinessHours {
    /// Required: IANA time zone of the hours below, e.g. `Europe/Paris`, `America/Los_Angeles`.
    pub timezone: Option<String>,
    /// Days the hours apply: `mon-fri` (default), `mon-sun`, or a list such as `mon,wed,fri`.
    pub days: Option<String>,
    /// Required: start of business hours, `HH:MM` (24 h).
    pub start: Option<String>,
    /// Required: end of business hours, `HH:MM`; earlier than `start` means it ends the next day.
    pub end: Option<String>,
    /// Fewest workers during business hours. Default the pool's `min_workers`.
    pub min_workers: Option<i64>,
    /// Most workers during business hours, at least `min_workers` and 1. Default the pool's `max_workers`.
    pub max_workers: Option<i64>,
}

/// `[regions]`: the regions this deployment runs in, and how requests reach the right one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegions {
    /// Every region an instance runs in, as region codes (`cdg`, `nrt`, `sjc`, `ewr`, …; `agentd deploy regions` lists them). Empty (default) means one region and no routing between regions.
    pub list: Option<Vec<String>>,
    /// The region of the primary database: writes of tenants without a home region go there. Must be in `list`. Default the first region of `list`.
    pub primary: Option<String>,
    /// How a request that belongs to another region gets there: `fly-replay` (answer with a `fly-replay` header; Fly.io's proxy replays the request there) or `forward` (agentd proxies it to that region's `urls` entry). Default `fly-replay` when `FLY_APP_NAME` is set, else `forward`.
    pub routing: Option<String>,
    /// Read-your-writes: for this long after a caller wrote through the primary, its requests that land in another region go to the primary too, in milliseconds. Default 5000.
    pub read_your_writes_ms: Option<i64>,
    /// `[regions.urls]`: region code → base URL of that region's agentd (`http://nrt.internal:8080`), used by `routing = "forward"`; may use `${VAR}`. Required for every region of `list` other than this instance's when routing is `forward`.
    pub urls: Option<std::collections::BTreeMap<String, String>>,
    /// `[regions.store_urls]`: region code → PostgreSQL URL of that region's own database, for data residency where one config serves every region (Fly.io's app-wide secrets): an instance uses its own region's entry instead of `store.url`. May use `${VAR}`.
    pub store_urls: Option<std::collections::BTreeMap<String, String>>,
}

/// `[deploy]`: names used by `agentd deploy render`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeploy {
    /// Application name (Fly app, Kubernetes objects, Compose project, systemd unit), `[a-z0-9-]`. Default `agentd`.
    pub app: Option<String>,
    /// Container image the manifests run. Default `<app>:latest` (`registry.fly.io/<app>:latest` on Fly.io).
    pub image: Option<String>,
    /// Public host name for the Kubernetes Ingress and Cloud Run domain mapping; empty means none. Default empty.
    pub domain: Option<String>,
}

/// One `[[task_routes]]` rule: the first whose conditions all hold picks the run's pool.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaskRoute {
    /// Condition: the run's agent.
    pub agent: Option<String>,
    /// Condition: a tag the caller sent (run metadata `tag`).
    pub tag: Option<String>,
    /// Condition: the caller's tier.
    pub tier: Option<String>,
    /// Condition: estimated prompt tokens at least this.
    pub min_estimated_tokens: Option<i64>,
    /// Condition: input size in bytes at least this.
    pub min_input_bytes: Option<i64>,
    /// Required: the `[pools.<name>]` matching runs go to.
    pub pool: Option<String>,
    /// Overrides the agent's priority for matching runs.
    pub priority: Option<String>,
}

/// `[queue]`: where queued runs wait for a worker.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// `store` (default: the `[store]` database), `redis` or `nats`.
    pub kind: Option<String>,
    /// Redis and NATS only (required there): `redis://…` / `rediss://…` or `nats://…` / `tls://…`; may use `${VAR}`.
    pub url: Option<String>,
    /// Prefix of every Redis key or NATS subject, `[A-Za-z0-9_-]`, 1 to 32 characters. Default `agentd`.
    pub prefix: Option<String>,
    /// How long a worker holds a run before it must renew its lease, in milliseconds, at least 1000. Default 30000.
    pub lease_ms: Option<i64>,
    /// How often expired leases are looked for, in milliseconds. Default 5000.
    pub reap_interval_ms: Option<i64>,
    /// Deliveries of one run (first plus redeliveries after lost leases) before it is dead-lettered, at least 1. Default 20.
    pub max_deliveries: Option<i64>,
}

/// `[runtime]`: retention, sweeping and streaming.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    /// How long a run's stream events are kept for replay, in seconds. Default 86400 (24 h).
    pub event_retention_s: Option<i64>,
    /// How long finished runs are kept, in seconds. Default 604800 (7 days).
    pub run_retention_s: Option<i64>,
    /// Default thread TTL in minutes; 0 means threads live until deleted unless the client asks for a TTL. Default 0.
    pub thread_ttl_minutes: Option<i64>,
    /// How often expired threads, runs and events are deleted, in seconds. Default 60.
    pub sweep_interval_s: Option<i64>,
    /// Keep-alive interval of SSE and WebSocket streams, in milliseconds, at least 100. Default 5000.
    pub keepalive_ms: Option<i64>,
    /// Events buffered per WebSocket client; a client that falls further behind is disconnected. Default 256.
    pub ws_send_buffer: Option<i64>,
    /// Most SSE and WebSocket streams open at once; more get 503. Default 20000.
    pub max_stream_clients: Option<i64>,
}

/// A TOML table read as `(key, value)` pairs in file order (serde maps would sort or hash them,
/// and header order / model order is user-visible).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// The result of reading a document: what deserialized, plus the names of providers that exist
/// but failed to deserialize (so models naming them don't also get "unknown provider").
pub(crate) struct ParsedFile {
    pub(crate) raw: RawConfig,
    pub(crate) provider_names: Vec<String>,
    /// Every name under `[models]`, `[routers]`, `[agents]`, `[tools]` and `[pools]`, including
    /// entries that failed to deserialize (so references to them get no second error).
    pub(crate) names: Names,
}

/// The table names of the named sections, in file order.
#[derive(Debug, Default)]
pub(crate) struct Names {
    pub(crate) models: Vec<String>,
    pub(crate) routers: Vec<String>,
    pub(crate) agents: Vec<String>,
    pub(crate) tools: Vec<String>,
    pub(crate) pools: Vec<String>,
}

/// Deserializes every section of `doc`, reporting each failure to `sink`.
pub(crate) fn read(doc: &ImDocument<String>, sink: &mut Sink<'_>) -> ParsedFile {
    let mut raw = RawConfig::default();
    let mut provider_names = Vec::new();
    let mut names = Names::default();
    let root = doc.as_table();
    for (name, item) in root.iter() {
        let path = KeyPath::root().key(name);
        match name {
            "server" => raw.server = section(item, &path, sink).unwrap_or_default(),
            "store" => raw.store = section(item, &path, sink).unwrap_or_default(),
            "auth" => raw.auth = section(item, &path, sink).unwrap_or_default(),
            "providers" => {
                for (entry, item) in entries(item, &path, "[providers.<name>]", sink) {
                    provider_names.push(entry.to_owned());
                    if unquoted_dot(name, entry, item, &keys_of::<RawProvider>(), &path, sink) {
                        continue;
                    }
                    if let Some(p) = section(item, &path.key(entry), sink) {
                        raw.providers.push((entry.to_owned(), p));
                    }
                }
            }
            "models" => {
                for (entry, item) in entries(item, &path, "[models.<name>]", sink) {
                    names.models.push(entry.to_owned());
                    if unquoted_dot(name, entry, item, &keys_of::<RawModel>(), &path, sink) {
                        continue;
                    }
                    if let Some(m) = section(item, &path.key(entry), sink) {
                        raw.models.push((entry.to_owned(), m));
                    }
                }
            }
            "routing" => raw.routing = section(item, &path, sink).unwrap_or_default(),
            "budgets" => raw.budgets = section(item, &path, sink).unwrap_or_default(),
            "rate_limits" => raw.rate_limits = section(item, &path, sink).unwrap_or_default(),
            "counters" => raw.counters = section(item, &path, sink).unwrap_or_default(),
            "cache" => raw.cache = section(item, &path, sink).unwrap_or_default(),
            "ledger" => raw.ledger = section(item, &path, sink).unwrap_or_default(),
            "routers" => {
                for (entry, item) in entries(item, &path, "[routers.<name>]", sink) {
                    names.routers.push(entry.to_owned());
                    if unquoted_dot(name, entry, item, &keys_of::<RawRouter>(), &path, sink) {
                        continue;
                    }
                    if let Some(r) = section(item, &path.key(entry), sink) {
                        raw.routers.push((entry.to_owned(), r));
                    }
                }
            }
            "prices" => {
                for (entry, item) in entries(item, &path, "[prices.<model>]", sink) {
                    if unquoted_dot(name, entry, item, &keys_of::<RawPrice>(), &path, sink) {
                        continue;
                    }
                    if let Some(p) = section(item, &path.key(entry), sink) {
                        raw.prices.push((entry.to_owned(), p));
                    }
                }
            }
            "agents" => {
                for (entry, item) in entries(item, &path, "[agents.<name>]", sink) {
                    names.agents.push(entry.to_owned());
                    if unquoted_dot(name, entry, item, &keys_of::<RawAgent>(), &path, sink) {
                        continue;
                    }
                    if let Some(a) = section(item, &path.key(entry), sink) {
                        raw.agents.push((entry.to_owned(), a));
                    }
                }
            }
            "tools" => {
                for (entry, item) in entries(item, &path, "[tools.<name>]", sink) {
                    names.tools.push(entry.to_owned());
                    // `parameters` and `result` may be tables, but they are fields, so the
                    // dotted-name hint (table-valued keys that are not fields) skips them.
                    if unquoted_dot(name, entry, item, &keys_of::<RawTool>(), &path, sink) {
                        continue;
                    }
                    if let Some(t) = section(item, &path.key(entry), sink) {
                        raw.tools.push((entry.to_owned(), t));
                    }
                }
            }
            "pools" => {
                for (entry, item) in entries(item, &path, "[pools.<name>]", sink) {
                    names.pools.push(entry.to_owned());
                    if unquoted_dot(name, entry, item, &keys_of::<RawPool>(), &path, sink) {
                        continue;
                    }
                    if let Some(p) = section(item, &path.key(entry), sink) {
                        raw.pools.push((entry.to_owned(), p));
                    }
                }
            }
            "task_routes" => {
                for (i, item) in array_items(item, &path, "[[task_routes]]", sink)
                    .into_iter()
                    .enumerate()
                {
                    if let Some(r) = section(&item, &path.index(i), sink) {
                        raw.task_routes.push((i, r));
                    }
                }
            }
            "queue" => raw.queue = section(item, &path, sink).unwrap_or_default(),
            "runtime" => raw.runtime = section(item, &path, sink).unwrap_or_default(),
            "regions" => raw.regions = section(item, &path, sink).unwrap_or_default(),
            "deploy" => raw.deploy = section(item, &path, sink).unwrap_or_default(),
            other => sink.error(
                &path,
                format!("unknown top-level key \"{other}\""),
                unknown_key_fix(other, SECTIONS),
            ),
        }
    }
    ParsedFile {
        raw,
        provider_names,
        names,
    }
}

/// The elements of an array of tables (`[[x]]`) or of an inline array (`x = [{ … }]`), each
/// deserialized on its own so one bad element does not hide the others.
fn array_items(item: &Item, path: &KeyPath, shape: &str, sink: &mut Sink<'_>) -> Vec<Item> {
    if let Some(tables) = item.as_array_of_tables() {
        return tables.iter().map(|t| Item::Table(t.clone())).collect();
    }
    if let Some(array) = item.as_array() {
        return array.iter().map(|v| Item::Value(v.clone())).collect();
    }
    sink.error(
        path,
        format!("{path} must be an array of tables"),
        format!("write one {shape} table per entry"),
    );
    Vec::new()
}

/// `[models.gpt-4.1]` is the table `gpt-4` with a sub-table `1`: the most common mistake with
/// model names. Serde would only say "unknown key", so recognise the shape (an unknown key whose
/// value is a table) and say what to write instead.
fn unquoted_dot(
    section: &str,
    entry: &str,
    item: &Item,
    fields: &[String],
    path: &KeyPath,
    sink: &mut Sink<'_>,
) -> bool {
    let Some(table) = item.as_table() else {
        return false;
    };
    let Some((rest, _)) = table
        .iter()
        .find(|(k, v)| v.is_table() && !fields.iter().any(|f| f == k))
    else {
        return false;
    };
    let mut full = format!("{entry}.{rest}");
    let mut inner = &table[rest];
    while let Some((next, _)) = inner
        .as_table()
        .and_then(|t| t.iter().find(|(_, v)| v.is_table()))
    {
        full = format!("{full}.{next}");
        inner = &inner[next];
    }
    sink.error(
        &path.key(entry).key(rest),
        format!("unknown key \"{rest}\" (TOML splits names at dots)"),
        format!("quote names that contain dots: [{section}.\"{full}\"]"),
    );
    true
}

/// The entries of a `[providers]` / `[models]` table.
fn entries<'a>(
    item: &'a Item,
    path: &KeyPath,
    shape: &str,
    sink: &mut Sink<'_>,
) -> Vec<(&'a str, &'a Item)> {
    let table: Option<&Table> = item.as_table();
    if let Some(table) = table {
        return table.iter().collect();
    }
    if let Some(inline) = item.as_inline_table() {
        return inline
            .iter()
            .filter_map(|(k, _)| inline.get_key_value(k).map(|(key, item)| (key.get(), item)))
            .collect();
    }
    sink.error(
        path,
        format!("{path} must be a table"),
        format!("write one {shape} table per entry"),
    );
    Vec::new()
}

/// Deserializes one table. Standard tables are converted to inline tables first because only
/// values have a public deserializer; the conversion keeps every value's span, so errors still
/// point into the original text.
fn section<T: DeserializeOwned>(item: &Item, path: &KeyPath, sink: &mut Sink<'_>) -> Option<T> {
    let value = item.clone().into_value().ok()?;
    match T::deserialize(value.into_deserializer()) {
        Ok(t) => Some(t),
        Err(e) => {
            let (message, fix) = explain_serde(e.message());
            sink.serde_error(path, e.span(), message, fix);
            None
        }
    }
}

/// The keys a raw struct accepts, as serde sees them (after any renames): deserialize a table
/// with a key no struct has and read the list from the `deny_unknown_fields` error. This is
/// what the reference-doc test checks against, so the docs cannot drift from the parser.
pub(crate) fn keys_of<T: DeserializeOwned>() -> Vec<String> {
    let probe: toml_edit::Value = "{ \"?\" = 0 }".parse().expect("probe parses");
    match T::deserialize(probe.into_deserializer()) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let message = e.message();
            let tail = message.split_once(", expected ").map_or("", |(_, t)| t);
            let tail = tail.strip_prefix("one of ").unwrap_or(tail);
            tail.split(['`', ','])
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "or")
                .map(str::to_owned)
                .collect()
        }
    }
}

/// Every accepted key, grouped by the table it lives in (`server`, `providers.<name>`,
/// `models.<name>.deployments[]`, …), in the order the reference documents them.
pub fn reference_keys() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("server", keys_of::<RawServer>()),
        ("store", keys_of::<RawStore>()),
        ("auth", keys_of::<RawAuth>()),
        ("providers.<name>", keys_of::<RawProvider>()),
        ("models.<name>", keys_of::<RawModel>()),
        ("models.<name>.deployments[]", keys_of::<RawDeployment>()),
        ("routers.<name>", keys_of::<RawRouter>()),
        ("routers.<name>.rules[]", keys_of::<RawRule>()),
        ("routing", keys_of::<RawRouting>()),
        ("routing.breaker", keys_of::<RawBreaker>()),
        ("prices.<model>", keys_of::<RawPrice>()),
        ("budgets", keys_of::<RawBudgets>()),
        ("budgets.limits[]", keys_of::<RawBudgetLimit>()),
        ("rate_limits", keys_of::<RawRateLimits>()),
        ("counters", keys_of::<RawCounters>()),
        ("cache", keys_of::<RawCache>()),
        ("ledger", keys_of::<RawLedger>()),
        ("agents.<name>", keys_of::<RawAgent>()),
        ("tools.<name>", keys_of::<RawTool>()),
        ("pools.<name>", keys_of::<RawPool>()),
        ("pools.<name>.business_hours", keys_of::<RawBusinessHours>()),
        ("task_routes[]", keys_of::<RawTaskRoute>()),
        ("queue", keys_of::<RawQueue>()),
        ("runtime", keys_of::<RawRuntime>()),
        ("regions", keys_of::<RawRegions>()),
        ("deploy", keys_of::<RawDeploy>()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_lists_every_field_in_declaration_order() {
        assert_eq!(
            keys_of::<RawDeployment>(),
            vec![
                "provider",
                "model",
                "weight",
                "connect_timeout_ms",
                "first_token_timeout_ms",
                "timeout_ms",
                "price"
            ]
        );
        assert_eq!(
            keys_of::<RawRule>(),
            vec![
                "use",
                "tier",
                "tools",
                "min_prompt_tokens",
                "max_prompt_tokens"
            ]
        );
        assert_eq!(keys_of::<RawAuth>(), vec!["admin_key", "key_cache_ttl_ms"]);
        assert_eq!(keys_of::<RawProvider>().len(), 10);
    }

    /// The reference in docs/configuration.md documents exactly the keys the parser accepts:
    /// for each table, the first column of the table under the heading naming it (`[server]`,
    /// `[providers.<name>]`, …) must equal the serde field list.
    #[test]
    fn reference_doc_covers_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
        for (table, keys) in reference_keys() {
            let marker = format!("`[{table}]`");
            let start = doc
                .lines()
                .position(|l| l.starts_with('#') && l.contains(&marker))
                .unwrap_or_else(|| panic!("docs/configuration.md has no heading with {marker}"));
            let documented: Vec<String> = doc
                .lines()
                .skip(start + 1)
                .take_while(|l| !l.starts_with('#'))
                .filter_map(|l| l.strip_prefix("| `"))
                .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_owned()))
                .collect();
            assert_eq!(
                documented, keys,
                "the table under {marker} in docs/configuration.md must list exactly these keys, in this order"
            );
        }
        for section in SECTIONS {
            assert!(
                doc.contains(&format!("[{section}")),
                "{section} is documented"
            );
        }
    }
}
