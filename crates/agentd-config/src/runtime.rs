//! The agent runtime's validated settings: agents, their tools, worker pools, the task router,
//! the run queue and retention/streaming limits. Raw → validated for these sections lives here,
//! next to the types, so `validate.rs` keeps the gateway basics.
//!
//! Cross-references are checked against every *name* in the file (also entries that failed to
//! deserialize), so one broken table gives one error, not one per reference to it. Agents that
//! can reach themselves through `kind = "agent"` tools are an error: such a run could recurse
//! until its budget or step limit, and no configuration needs it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use agentd_core::{Micros, Priority};

use crate::defaults;
use crate::error::{closest, KeyPath};
use crate::raw::{ParsedFile, RawAgent, RawPool, RawQueue, RawRuntime, RawTaskRoute, RawTool};
use crate::routing_and_cost::amount;
use crate::secret::Secret;
use crate::validate::{headers, positive_ms, Env, Sink};

/// `[agents.<name>]`: an agent the runtime runs.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The table name (LangGraph's `graph_id`), `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// A public model or router name of the gateway (checked at load).
    pub model: String,
    /// The system prompt (`instructions`, or the contents of `instructions_file`).
    pub instructions: Option<String>,
    /// Names of tools in [`Config::tools`](crate::Config::tools), in the order written.
    pub tools: Vec<String>,
    /// Most steps per run (model calls plus tool calls), 1 to 1000.
    pub max_steps: u32,
    /// Most a run may spend (greater than zero).
    pub max_run: Option<Micros>,
    /// Most tokens a run may use.
    pub max_run_tokens: Option<u64>,
    /// Limit for a whole run.
    pub timeout: Duration,
    /// The pool its runs execute in unless a task route says otherwise (exists in
    /// [`Config::pools`](crate::Config::pools)).
    pub pool: String,
    /// Queue priority of its runs unless a task route overrides it.
    pub priority: Priority,
    /// Most runs of this agent executing at once; `None` means no limit.
    pub max_concurrent_runs: Option<u32>,
    /// Shown in the assistants API.
    pub description: Option<String>,
}

/// `[tools.<name>]`: a tool agents can call.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// The table name, which the model sees, `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// What the tool does, shown to the model.
    pub description: Option<String>,
    /// JSON Schema of the arguments: an object with `"type": "object"`, `properties` an object
    /// of objects and `required` naming properties (checked at load).
    pub parameters: Value,
    /// What calling it does.
    pub kind: ToolKind,
}

/// What calling a tool does.
#[derive(Debug, Clone)]
pub enum ToolKind {
    /// Returns a fixed value.
    Static {
        /// The answer (a string stays a JSON string).
        result: Value,
    },
    /// Calls a URL.
    Http {
        /// `http(s)://` URL template; each `{name}` (see [`url_placeholders`]) is replaced by
        /// the percent-encoded argument of that name, which `parameters` declares. Placeholders
        /// only occur in the path and query, never in the scheme or host. Not `${VAR}`-expanded:
        /// secrets belong in `headers`.
        url: String,
        /// The HTTP method.
        method: HttpMethod,
        /// Headers sent with every call, in file order (values already `${VAR}`-expanded).
        headers: Vec<(String, Secret)>,
        /// Limit for the whole call.
        timeout: Duration,
        /// Largest response body read; longer answers are cut.
        max_response_bytes: usize,
        /// Whether private, loopback and link-local addresses may be called.
        allow_private: bool,
    },
    /// Runs another agent with the arguments as its input.
    Agent {
        /// Name of an agent in [`Config::agents`](crate::Config::agents); agents never reach
        /// themselves through agent tools (checked at load).
        agent: String,
    },
}

impl ToolKind {
    /// The config spelling of the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            ToolKind::Static { .. } => "static",
            ToolKind::Http { .. } => "http",
            ToolKind::Agent { .. } => "agent",
        }
    }
}

/// The method of an HTTP tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// Arguments not in the URL go in the query string.
    Get,
    /// Arguments not in the URL go in a JSON body.
    Post,
    /// Arguments not in the URL go in a JSON body.
    Put,
    /// Arguments not in the URL go in a JSON body.
    Patch,
    /// Arguments not in the URL go in the query string.
    Delete,
}

impl HttpMethod {
    const NAMES: &'static str = "GET, POST, PUT, PATCH, DELETE";

    /// The method's name on the wire (`GET`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether the remaining arguments are sent as a JSON body (else as query parameters).
    pub fn has_body(self) -> bool {
        match self {
            HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch => true,
            HttpMethod::Get | HttpMethod::Delete => false,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Put,
            HttpMethod::Patch,
            HttpMethod::Delete,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
}

/// `[pools.<name>]`: a class of workers.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The table name; `cpu` and `gpu` always exist.
    pub name: String,
    /// Runs one worker of this pool executes at once (at least 1).
    pub concurrency: u32,
    /// The largest share of a worker's slots one tenant may hold while others wait, in (0, 1].
    pub max_tenant_share: f64,
    /// How many workers the pool wants, by hour and idleness.
    pub schedule: crate::deploy::PoolSchedule,
}

impl PoolConfig {
    /// The most slots one tenant may hold on a worker while others wait: `concurrency ×
    /// max_tenant_share` rounded down, but at least 1.
    pub fn max_tenant_slots(&self) -> u32 {
        ((f64::from(self.concurrency) * self.max_tenant_share).floor() as u32).max(1)
    }
}

/// One `[[task_routes]]` rule; `None` conditions always hold. The first matching rule picks the
/// run's pool (and maybe its priority); without a match the agent's own settings apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRoute {
    /// Condition: the run's agent (exists in [`Config::agents`](crate::Config::agents)).
    pub agent: Option<String>,
    /// Condition: the tag the caller sent (run metadata `tag`).
    pub tag: Option<String>,
    /// Condition: the caller's tier.
    pub tier: Option<String>,
    /// Condition: estimated prompt tokens at least this.
    pub min_estimated_tokens: Option<u64>,
    /// Condition: input size in bytes at least this.
    pub min_input_bytes: Option<u64>,
    /// Where matching runs go (exists in [`Config::pools`](crate::Config::pools)).
    pub pool: String,
    /// Overrides the agent's priority.
    pub priority: Option<Priority>,
}

impl TaskRoute {
    /// Whether every condition the rule gives holds for this run.
    pub fn matches(
        &self,
        agent: &str,
        tag: Option<&str>,
        tier: Option<&str>,
        estimated_tokens: u64,
        input_bytes: u64,
    ) -> bool {
        self.agent.as_deref().is_none_or(|a| a == agent)
            && self.tag.as_deref().is_none_or(|t| Some(t) == tag)
            && self.tier.as_deref().is_none_or(|t| Some(t) == tier)
            && self
                .min_estimated_tokens
                .is_none_or(|min| estimated_tokens >= min)
            && self.min_input_bytes.is_none_or(|min| input_bytes >= min)
    }
}

/// `[queue]`: where queued runs wait for a worker.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The backend.
    pub backend: QueueBackend,
    /// How long a worker holds a run before it must renew its lease (at least 1 s).
    pub lease: Duration,
    /// How often expired leases are looked for.
    pub reap_interval: Duration,
    /// Deliveries of one run before it is dead-lettered (at least 1).
    pub max_deliveries: u32,
}

/// The queue backend.
#[derive(Debug, Clone)]
pub enum QueueBackend {
    /// In the `[store]` database (SQLite or Postgres).
    Store,
    /// Redis.
    Redis {
        /// `redis://…` or `rediss://…`.
        url: Secret,
        /// Key prefix, `[A-Za-z0-9_-]{1,32}`.
        prefix: String,
    },
    /// NATS JetStream.
    Nats {
        /// `nats://…` or `tls://…`.
        url: Secret,
        /// Stream/subject prefix, `[A-Za-z0-9_-]{1,32}`.
        prefix: String,
    },
}

impl QueueBackend {
    /// The config spelling of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            QueueBackend::Store => "store",
            QueueBackend::Redis { .. } => "redis",
            QueueBackend::Nats { .. } => "nats",
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// How long a run's stream events are kept for replay.
    pub event_retention: Duration,
    /// How long finished runs are kept.
    pub run_retention: Duration,
    /// Default thread TTL; `None` means threads live until deleted unless the client asks.
    pub thread_ttl: Option<Duration>,
    /// How often expired threads, runs and events are deleted.
    pub sweep_interval: Duration,
    /// Keep-alive interval of SSE and WebSocket streams (at least 100 ms).
    pub keepalive: Duration,
    /// Events buffered per WebSocket client before it is disconnected.
    pub ws_send_buffer: usize,
    /// Most streams open at once.
    pub max_stream_clients: usize,
}

/// The `{name}` placeholders of an HTTP tool's URL template, in order (repeats included), or why
/// the template is malformed (an unmatched brace, or a name outside `[A-Za-z0-9_-]`).
pub fn url_placeholders(url: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = url;
    while let Some(i) = rest.find(['{', '}']) {
        if rest.as_bytes()[i] == b'}' {
            return Err("a \"}\" without a \"{\" before it".to_owned());
        }
        let after = &rest[i + 1..];
        let Some(end) = after
            .find(['{', '}'])
            .filter(|&e| after.as_bytes()[e] == b'}')
        else {
            return Err("a \"{\" without a matching \"}\"".to_owned());
        };
        let name = &after[..end];
        if !is_name(name) {
            return Err(format!(
                "placeholder {{{name}}} is not a parameter name (letters, digits, _ and -)"
            ));
        }
        names.push(name);
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// `[A-Za-z0-9_-]{1,64}`: agent, tool and pool names (also what OpenAI accepts as a function
/// name).
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The runtime sections of [`Config`](crate::Config), validated.
pub(crate) struct Runtime {
    pub(crate) agents: Vec<AgentConfig>,
    pub(crate) tools: Vec<ToolConfig>,
    pub(crate) pools: Vec<PoolConfig>,
    pub(crate) task_routes: Vec<TaskRoute>,
    pub(crate) queue: QueueConfig,
    pub(crate) runtime: RuntimeConfig,
}

/// Names other tables may refer to.
struct Known<'a> {
    /// Models and routers: what an agent's `model` may name.
    models: Vec<&'a str>,
    agents: Vec<&'a str>,
    tools: Vec<&'a str>,
    pools: Vec<&'a str>,
}

pub(crate) fn build(
    parsed: &ParsedFile,
    base_dir: &Path,
    env: Env<'_>,
    sink: &mut Sink<'_>,
) -> Runtime {
    let raw = &parsed.raw;
    let names = &parsed.names;
    let mut pools_known: Vec<&str> = vec!["cpu", "gpu"];
    pools_known.extend(
        names
            .pools
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "cpu" && *p != "gpu"),
    );
    let known = Known {
        models: names
            .models
            .iter()
            .chain(&names.routers)
            .map(String::as_str)
            .collect(),
        agents: names.agents.iter().map(String::as_str).collect(),
        tools: names.tools.iter().map(String::as_str).collect(),
        pools: pools_known,
    };
    let agents = raw
        .agents
        .iter()
        .filter_map(|(name, a)| agent(sink, name, a, &known, base_dir))
        .collect();
    let tools = raw
        .tools
        .iter()
        .filter_map(|(name, t)| tool(sink, name, t, &known, env))
        .collect();
    cycles(sink, &raw.agents, &raw.tools);
    Runtime {
        agents,
        tools,
        pools: pools(sink, &raw.pools),
        task_routes: raw
            .task_routes
            .iter()
            .filter_map(|(i, r)| task_route(sink, *i, r, &known))
            .collect(),
        queue: queue(sink, &raw.queue, env),
        runtime: runtime(sink, &raw.runtime),
    }
}

/// "did you mean …? " when a known name is close, else nothing.
fn guess(word: &str, names: &[&str]) -> String {
    closest(word, names)
        .map(|g| format!("did you mean \"{g}\"? "))
        .unwrap_or_default()
}

/// Reports an unknown reference: `unknown {what} "{name}"`, with the names that exist.
fn unknown(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    what: &str,
    name: &str,
    names: &[&str],
    where_: &str,
) {
    let fix = if names.is_empty() {
        format!("add a {where_} table named \"{name}\"")
    } else {
        format!(
            "{}use one of the names under {where_}: {}",
            guess(name, names),
            names.join(", ")
        )
    };
    sink.error(path, format!("unknown {what} \"{name}\""), fix);
}

fn check_name(sink: &mut Sink<'_>, path: &KeyPath, what: &str, name: &str) -> bool {
    if is_name(name) {
        return true;
    }
    sink.error(
        path,
        format!("invalid {what} name \"{name}\""),
        format!(
            "{what} names are 1 to 64 letters, digits, _ or -; rename the table, e.g. [{what}s.support]"
        ),
    );
    false
}

fn priority(sink: &mut Sink<'_>, path: &KeyPath, raw: &str) -> Option<Priority> {
    let parsed = Priority::parse(raw);
    if parsed.is_none() {
        sink.error(
            path,
            format!("invalid priority \"{raw}\""),
            "use one of: critical, high, normal, low",
        );
    }
    parsed
}

/// An integer in `min..=max`, or the default (reporting the error).
fn ranged(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    raw: Option<i64>,
    min: i64,
    max: i64,
    default: i64,
) -> i64 {
    match raw {
        None => default,
        Some(n) if (min..=max).contains(&n) => n,
        Some(n) => {
            let range = if max >= i64::from(u32::MAX) {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            sink.error(
                path,
                format!("must be {range} (got {n})"),
                format!("use a whole number such as {default}"),
            );
            default
        }
    }
}

/// An optional count of at least `min` (`None` when absent).
fn optional_count(
    sink: &mut Sink<'_>,
    path: &KeyPath,
    raw: Option<i64>,
    min: i64,
    max: i64,
    example: i64,
) -> Option<i64> {
    raw.map(|_| ranged(sink, path, raw, min, max, example))
}

fn secs(sink: &mut Sink<'_>, path: &KeyPath, raw: Option<i64>, default: Duration) -> Duration {
    match raw {
        None => default,
        Some(s) if s > 0 => Duration::from_secs(s.unsigned_abs()),
        Some(s) => {
            sink.error(
                path,
                format!("must be greater than 0 seconds (got {s})"),
                format!(
                    "set a positive number of seconds, e.g. {}",
                    default.as_secs()
                ),
            );
            default
        }
    }
}

fn agent(
    sink: &mut Sink<'_>,
    name: &str,
    raw: &RawAgent,
    known: &Known<'_>,
    base_dir: &Path,
) -> Option<AgentConfig> {
    let p = KeyPath::root().key("agents").key(name);
    check_name(sink, &p, "agent", name);

    let model = match &raw.model {
        Some(m) => {
            if !known.models.contains(&m.as_str()) {
                unknown(
                    sink,
                    &p.key("model"),
                    "model",
                    m,
                    &known.models,
                    "[models] or [routers]",
                );
            }
            m.clone()
        }
        None => {
            sink.error(
                &p.key("model"),
                "the agent has no model",
                "add model = \"<name>\" naming a [models] or [routers] table",
            );
            String::new()
        }
    };

    let instructions = match (&raw.instructions, &raw.instructions_file) {
        (Some(_), Some(_)) => {
            sink.error(
                &p.key("instructions_file"),
                "both instructions and instructions_file are set",
                "keep one: instructions = \"…\" inline, or instructions_file = \"prompts/<agent>.md\"",
            );
            None
        }
        (Some(text), None) => Some(text.clone()),
        (None, Some(file)) => {
            let path = p.key("instructions_file");
            let full = base_dir.join(file);
            if file.trim().is_empty() {
                sink.error(
                    &path,
                    "instructions_file is empty",
                    "name a file relative to the config file's directory, or remove the key",
                );
                None
            } else {
                match std::fs::read_to_string(&full) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        sink.error(
                            &path,
                            format!("cannot read instructions_file \"{}\": {e}", full.display()),
                            "check the path; it is relative to the directory of the config file",
                        );
                        None
                    }
                }
            }
        }
        (None, None) => None,
    };

    let mut tools: Vec<String> = Vec::new();
    for (i, t) in raw.tools.iter().flatten().enumerate() {
        let path = p.key("tools").index(i);
        if !known.tools.contains(&t.as_str()) {
            unknown(sink, &path, "tool", t, &known.tools, "[tools]");
        } else if tools.contains(t) {
            sink.error(
                &path,
                format!("tool \"{t}\" is listed twice"),
                "remove the second mention",
            );
        } else {
            tools.push(t.clone());
        }
    }

    let max_steps = ranged(
        sink,
        &p.key("max_steps"),
        raw.max_steps,
        1,
        1000,
        i64::from(defaults::AGENT_MAX_STEPS),
    ) as u32;

    let max_run = raw.max_run_usd.as_ref().and_then(|a| {
        let path = p.key("max_run_usd");
        let m = amount(sink, &path, a)?;
        if m <= Micros::ZERO {
            sink.error(
                &path,
                "max_run_usd must be greater than 0",
                "remove it for no limit, or set a positive amount such as 0.50",
            );
            return None;
        }
        Some(m)
    });
    let max_run_tokens = optional_count(
        sink,
        &p.key("max_run_tokens"),
        raw.max_run_tokens,
        1,
        i64::MAX,
        100_000,
    )
    .map(i64::unsigned_abs);
    let timeout = positive_ms(
        sink,
        &p.key("timeout_ms"),
        raw.timeout_ms,
        defaults::AGENT_TIMEOUT,
    );
    let pool = match &raw.pool {
        Some(pool) => {
            if !known.pools.contains(&pool.as_str()) {
                unknown(sink, &p.key("pool"), "pool", pool, &known.pools, "[pools]");
            }
            pool.clone()
        }
        None => defaults::AGENT_POOL.to_owned(),
    };
    let priority = raw
        .priority
        .as_ref()
        .and_then(|v| priority(sink, &p.key("priority"), v))
        .unwrap_or(Priority::Normal);
    let max_concurrent_runs = optional_count(
        sink,
        &p.key("max_concurrent_runs"),
        raw.max_concurrent_runs,
        1,
        i64::from(u32::MAX),
        8,
    )
    .map(|n| n as u32);

    Some(AgentConfig {
        name: name.to_owned(),
        model,
        instructions,
        tools,
        max_steps,
        max_run,
        max_run_tokens,
        timeout,
        pool,
        priority,
        max_concurrent_runs,
        description: raw.description.clone(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Static,
    Http,
    Agent,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Static => "static",
            Kind::Http => "http",
            Kind::Agent => "agent",
        }
    }
}

fn tool(
    sink: &mut Sink<'_>,
    name: &str,
    raw: &RawTool,
    known: &Known<'_>,
    env: Env<'_>,
) -> Option<ToolConfig> {
    let p = KeyPath::root().key("tools").key(name);
    check_name(sink, &p, "tool", name);
    let parameters = match &raw.parameters {
        Some(schema) => {
            check_schema(sink, &p.key("parameters"), schema);
            schema.clone()
        }
        None => serde_json::json!({ "type": "object" }),
    };
    let kind = match raw.kind.as_deref() {
        Some("static") => Some(Kind::Static),
        Some("http") => Some(Kind::Http),
        Some("agent") => Some(Kind::Agent),
        Some(other) => {
            sink.error(
                &p.key("kind"),
                format!("invalid tool kind \"{other}\""),
                "use one of: static, http, agent",
            );
            None
        }
        None => {
            sink.error(
                &p.key("kind"),
                "the tool has no kind",
                "add kind = \"static\", \"http\" or \"agent\"",
            );
            None
        }
    };
    let kind = kind?;

    // Keys that belong to one kind only: naming them on another is a mistake worth reporting,
    // not something to ignore silently.
    let owned: [(&str, bool, Kind); 8] = [
        ("result", raw.result.is_some(), Kind::Static),
        ("url", raw.url.is_some(), Kind::Http),
        ("method", raw.method.is_some(), Kind::Http),
        ("headers", raw.headers.is_some(), Kind::Http),
        ("timeout_ms", raw.timeout_ms.is_some(), Kind::Http),
        (
            "max_response_bytes",
            raw.max_response_bytes.is_some(),
            Kind::Http,
        ),
        ("allow_private", raw.allow_private.is_some(), Kind::Http),
        ("agent", raw.agent.is_some(), Kind::Agent),
    ];
    for (key, given, owner) in owned {
        if given && owner != kind {
            sink.error(
                &p.key(key),
                format!("{key} only applies to {} tools", owner.as_str()),
                format!(
                    "remove {key} (this tool is kind = \"{}\"), or set kind = \"{}\"",
                    kind.as_str(),
                    owner.as_str()
                ),
            );
        }
    }

    let tool_kind = match kind {
        Kind::Static => match &raw.result {
            Some(result) => ToolKind::Static {
                result: result.clone(),
            },
            None => {
                sink.error(
                    &p.key("result"),
                    "a static tool needs a result",
                    "add result = \"…\" (any TOML value; the model gets it as the tool's answer)",
                );
                return None;
            }
        },
        Kind::Http => {
            let url = match &raw.url {
                Some(url) => {
                    check_url(sink, &p.key("url"), url, &parameters);
                    url.clone()
                }
                None => {
                    sink.error(
                        &p.key("url"),
                        "an http tool needs a url",
                        "add url = \"https://…\"; {name} placeholders are filled from the arguments",
                    );
                    return None;
                }
            };
            let method = match &raw.method {
                None => HttpMethod::Get,
                Some(m) => match HttpMethod::parse(m) {
                    Some(m) => m,
                    None => {
                        sink.error(
                            &p.key("method"),
                            format!("invalid method \"{m}\""),
                            format!("use one of: {}", HttpMethod::NAMES),
                        );
                        HttpMethod::Get
                    }
                },
            };
            ToolKind::Http {
                url,
                method,
                headers: headers(sink, &p.key("headers"), raw.headers.as_ref(), env),
                timeout: positive_ms(
                    sink,
                    &p.key("timeout_ms"),
                    raw.timeout_ms,
                    defaults::TOOL_TIMEOUT,
                ),
                max_response_bytes: ranged(
                    sink,
                    &p.key("max_response_bytes"),
                    raw.max_response_bytes,
                    1,
                    i64::from(u32::MAX),
                    defaults::TOOL_MAX_RESPONSE_BYTES as i64,
                ) as usize,
                allow_private: raw.allow_private.unwrap_or(false),
            }
        }
        Kind::Agent => match &raw.agent {
            Some(agent) => {
                if !known.agents.contains(&agent.as_str()) {
                    unknown(
                        sink,
                        &p.key("agent"),
                        "agent",
                        agent,
                        &known.agents,
                        "[agents]",
                    );
                }
                ToolKind::Agent {
                    agent: agent.clone(),
                }
            }
            None => {
                sink.error(
                    &p.key("agent"),
                    "an agent tool needs an agent",
                    "add agent = \"<name>\" naming an [agents] table",
                );
                return None;
            }
        },
    };
    Some(ToolConfig {
        name: name.to_owned(),
        description: raw.description.clone(),
        parameters,
        kind: tool_kind,
    })
}

const JSON_TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "object", "array", "null",
];

/// A structural check of a tool's argument schema: what providers need to accept it and what
/// the URL placeholders rely on. Not a full JSON Schema validator.
fn check_schema(sink: &mut Sink<'_>, p: &KeyPath, schema: &Value) {
    const FIX: &str = "write parameters = { type = \"object\", properties = { query = { type = \"string\" } }, required = [\"query\"] }";
    let Some(obj) = schema.as_object() else {
        sink.error(p, "parameters must be a table (a JSON Schema object)", FIX);
        return;
    };
    match obj.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => sink.error(
            &p.key("type"),
            format!("the arguments' schema must have type \"object\" (got {other})"),
            "set type = \"object\"; tools take named arguments",
        ),
        None => sink.error(
            p,
            "parameters has no type",
            "add type = \"object\"; tools take named arguments",
        ),
    }
    let mut property_names: Vec<&str> = Vec::new();
    match obj.get("properties") {
        None => {}
        Some(Value::Object(props)) => {
            for (name, prop) in props {
                let pp = p.key("properties").key(name);
                property_names.push(name);
                let Some(prop) = prop.as_object() else {
                    sink.error(
                        &pp,
                        format!("property \"{name}\" must be a table (its JSON Schema)"),
                        format!("write {name} = {{ type = \"string\" }}"),
                    );
                    continue;
                };
                let bad_type = match prop.get("type") {
                    None => false,
                    Some(Value::String(t)) => !JSON_TYPES.contains(&t.as_str()),
                    Some(Value::Array(ts)) => ts
                        .iter()
                        .any(|t| !t.as_str().is_some_and(|t| JSON_TYPES.contains(&t))),
                    Some(_) => true,
                };
                if bad_type {
                    sink.error(
                        &pp.key("type"),
                        format!("property \"{name}\" has an invalid type"),
                        format!("use one of: {}", JSON_TYPES.join(", ")),
                    );
                }
            }
        }
        Some(_) => sink.error(
            &p.key("properties"),
            "properties must be a table of property schemas",
            FIX,
        ),
    }
    match obj.get("required") {
        None => {}
        Some(Value::Array(required)) => {
            for (i, r) in required.iter().enumerate() {
                let rp = p.key("required").index(i);
                match r.as_str() {
                    Some(r) if property_names.contains(&r) => {}
                    Some(r) => sink.error(
                        &rp,
                        format!("required names \"{r}\", which is not under properties"),
                        format!(
                            "{}add {r} to properties, or remove it from required",
                            guess(r, &property_names)
                        ),
                    ),
                    None => sink.error(
                        &rp,
                        "required must list property names as strings",
                        "write required = [\"query\"]",
                    ),
                }
            }
        }
        Some(_) => sink.error(
            &p.key("required"),
            "required must be an array of property names",
            "write required = [\"query\"]",
        ),
    }
}

fn check_url(sink: &mut Sink<'_>, path: &KeyPath, url: &str, parameters: &Value) {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        sink.error(
            path,
            format!("url \"{url}\" is not an http:// or https:// URL"),
            "use a full URL such as \"https://api.example.com/weather?city={city}\"",
        );
        return;
    };
    if url.contains("${") {
        sink.error(
            path,
            "url does not expand ${VAR} (it may end up in logs)",
            "send secrets in headers = { Authorization = \"Bearer ${VAR}\" }, which are expanded and kept secret",
        );
        return;
    }
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        sink.error(
            path,
            format!("url \"{url}\" has no host"),
            "use a full URL such as \"https://api.example.com/weather?city={city}\"",
        );
        return;
    }
    if authority.contains(['{', '}']) {
        sink.error(
            path,
            "url has a placeholder in its host",
            "placeholders may only appear in the path and query; the host is fixed so an argument cannot redirect the call",
        );
        return;
    }
    let placeholders = match url_placeholders(url) {
        Ok(p) => p,
        Err(e) => {
            sink.error(
                path,
                format!("malformed url template: {e}"),
                "write placeholders as {name}, naming a property of parameters",
            );
            return;
        }
    };
    let properties: Vec<&str> = parameters
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for name in placeholders {
        if !properties.contains(&name) {
            sink.error(
                path,
                format!("url placeholder {{{name}}} is not a property of parameters"),
                format!(
                    "{}add {name} = {{ type = \"string\" }} under parameters.properties, or remove the placeholder",
                    guess(name, &properties)
                ),
            );
        }
    }
}

/// Reports every cycle of agents calling each other through agent tools, once per back edge
/// of a depth-first walk in file order, as `agents.a → tools.t → agents.b → … → agents.a`.
fn cycles(sink: &mut Sink<'_>, agents: &[(String, RawAgent)], tools: &[(String, RawTool)]) {
    /// `agents[from].tools[slot]` is the tool `tool`, which runs `agents[to]`.
    #[derive(Clone, Copy)]
    struct Edge<'a> {
        from: usize,
        slot: usize,
        tool: &'a str,
        to: usize,
    }
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        u: usize,
        edges: &[Vec<Edge<'a>>],
        marks: &mut [Mark],
        trail: &mut Vec<Edge<'a>>,
        found: &mut Vec<Vec<Edge<'a>>>,
    ) {
        marks[u] = Mark::OnPath;
        for e in &edges[u] {
            trail.push(*e);
            match marks[e.to] {
                Mark::New => visit(e.to, edges, marks, trail, found),
                Mark::OnPath => {
                    let start = trail
                        .iter()
                        .position(|t| t.from == e.to)
                        .expect("an agent on the path has an edge on the trail");
                    found.push(trail[start..].to_vec());
                }
                Mark::Done => {}
            }
            trail.pop();
        }
        marks[u] = Mark::Done;
    }

    let edges: Vec<Vec<Edge<'_>>> = agents
        .iter()
        .enumerate()
        .map(|(from, (_, a))| {
            a.tools
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(slot, t)| {
                    let (tool, raw) = tools.iter().find(|(n, _)| n == t)?;
                    if raw.kind.as_deref() != Some("agent") {
                        return None;
                    }
                    let target = raw.agent.as_deref()?;
                    let to = agents.iter().position(|(n, _)| n == target)?;
                    Some(Edge {
                        from,
                        slot,
                        tool,
                        to,
                    })
                })
                .collect()
        })
        .collect();
    let mut marks = vec![Mark::New; agents.len()];
    let mut found = Vec::new();
    for u in 0..agents.len() {
        if marks[u] == Mark::New {
            visit(u, &edges, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    let agent_path = |i: usize| KeyPath::root().key("agents").key(&agents[i].0);
    for cycle in found {
        let first = cycle[0];
        let mut text = agent_path(first.from).to_string();
        for e in &cycle {
            text.push_str(&format!(
                " → {} → {}",
                KeyPath::root().key("tools").key(e.tool),
                agent_path(e.to)
            ));
        }
        sink.error(
            &agent_path(first.from).key("tools").index(first.slot),
            format!("agents call each other in a cycle: {text}"),
            "a run could recurse until its limits; remove one of these agent tools from its agent's tools",
        );
    }
}

fn pools(sink: &mut Sink<'_>, raw: &[(String, RawPool)]) -> Vec<PoolConfig> {
    let mut out: Vec<PoolConfig> = ["cpu", "gpu"]
        .into_iter()
        .map(|name| PoolConfig {
            name: name.to_owned(),
            concurrency: defaults::pool_concurrency(name),
            max_tenant_share: defaults::POOL_MAX_TENANT_SHARE,
            schedule: crate::deploy::PoolSchedule::default(),
        })
        .collect();
    for (name, r) in raw {
        let p = KeyPath::root().key("pools").key(name);
        check_name(sink, &p, "pool", name);
        let concurrency = ranged(
            sink,
            &p.key("concurrency"),
            r.concurrency,
            1,
            i64::from(u32::MAX),
            i64::from(defaults::pool_concurrency(name)),
        ) as u32;
        let max_tenant_share = match r.max_tenant_share {
            None => defaults::POOL_MAX_TENANT_SHARE,
            Some(s) if s > 0.0 && s <= 1.0 => s,
            Some(s) => {
                sink.error(
                    &p.key("max_tenant_share"),
                    format!("max_tenant_share must be greater than 0 and at most 1 (got {s})"),
                    "use a fraction such as 0.5 (1 lets one tenant fill a worker)",
                );
                defaults::POOL_MAX_TENANT_SHARE
            }
        };
        let pool = PoolConfig {
            name: name.clone(),
            concurrency,
            max_tenant_share,
            schedule: crate::deploy::pool_schedule(sink, &p, r),
        };
        match out.iter_mut().find(|p| p.name == *name) {
            Some(slot) => *slot = pool,
            None => out.push(pool),
        }
    }
    out
}

fn task_route(
    sink: &mut Sink<'_>,
    index: usize,
    raw: &RawTaskRoute,
    known: &Known<'_>,
) -> Option<TaskRoute> {
    let p = KeyPath::root().key("task_routes").index(index);
    let pool = match &raw.pool {
        Some(pool) => {
            if !known.pools.contains(&pool.as_str()) {
                unknown(sink, &p.key("pool"), "pool", pool, &known.pools, "[pools]");
            }
            pool.clone()
        }
        None => {
            sink.error(
                &p.key("pool"),
                "the task route has no pool",
                format!(
                    "add pool = \"<name>\" with one of: {}",
                    known.pools.join(", ")
                ),
            );
            return None;
        }
    };
    if let Some(agent) = &raw.agent {
        if !known.agents.contains(&agent.as_str()) {
            unknown(
                sink,
                &p.key("agent"),
                "agent",
                agent,
                &known.agents,
                "[agents]",
            );
        }
    }
    if raw.tag.as_deref().is_some_and(|t| t.trim().is_empty()) {
        sink.error(
            &p.key("tag"),
            "tag is empty",
            "name the tag callers send in run metadata, or remove the condition",
        );
    }
    if let Some(tier) = &raw.tier {
        if let Err(e) = agentd_core::ids::validate_name("tier", tier) {
            sink.error(&p.key("tier"), e, "use a short name such as \"quality\"");
        }
    }
    let min = |sink: &mut Sink<'_>, key: &str, v: Option<i64>| {
        optional_count(sink, &p.key(key), v, 0, i64::MAX, 8000).map(i64::unsigned_abs)
    };
    let min_estimated_tokens = min(sink, "min_estimated_tokens", raw.min_estimated_tokens);
    let min_input_bytes = min(sink, "min_input_bytes", raw.min_input_bytes);
    let priority = raw
        .priority
        .as_ref()
        .and_then(|v| priority(sink, &p.key("priority"), v));
    Some(TaskRoute {
        agent: raw.agent.clone(),
        tag: raw.tag.clone(),
        tier: raw.tier.clone(),
        min_estimated_tokens,
        min_input_bytes,
        pool,
        priority,
    })
}

fn queue(sink: &mut Sink<'_>, raw: &RawQueue, env: Env<'_>) -> QueueConfig {
    let p = KeyPath::root().key("queue");
    let prefix = match &raw.prefix {
        None => defaults::QUEUE_PREFIX.to_owned(),
        Some(prefix)
            if (1..=32).contains(&prefix.len())
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            prefix.clone()
        }
        Some(prefix) => {
            sink.error(
                &p.key("prefix"),
                format!("invalid prefix \"{prefix}\""),
                "use 1 to 32 letters, digits, _ or -, e.g. \"agentd\"",
            );
            defaults::QUEUE_PREFIX.to_owned()
        }
    };
    let mut url = |kind: &str, schemes: &[&str], example: &str| -> Option<Secret> {
        let path = p.key("url");
        let Some(raw_url) = &raw.url else {
            sink.error(
                &path,
                format!("a {kind} queue needs a url"),
                format!("add url = \"{example}\""),
            );
            return None;
        };
        let url = sink.expand(&path, raw_url, env)?;
        if schemes.iter().any(|s| url.starts_with(s)) {
            Some(Secret::new(url))
        } else {
            // The value may carry a password: name the schemes, never echo it.
            sink.error(
                &path,
                format!("the url must start with {}", schemes.join(" or ")),
                format!("use a URL like {example}"),
            );
            None
        }
    };
    let backend = match raw.kind.as_deref() {
        None | Some("store") => {
            if raw.url.is_some() {
                sink.error(
                    &p.key("url"),
                    "url is set but the queue kind is store",
                    "set kind = \"redis\" or \"nats\" to use that server, or remove url (the store queue lives in the [store] database)",
                );
            }
            QueueBackend::Store
        }
        Some("redis") => match url(
            "redis",
            &["redis://", "rediss://"],
            "redis://127.0.0.1:6379",
        ) {
            Some(url) => QueueBackend::Redis { url, prefix },
            None => QueueBackend::Store,
        },
        Some("nats") => match url("nats", &["nats://", "tls://"], "nats://127.0.0.1:4222") {
            Some(url) => QueueBackend::Nats { url, prefix },
            None => QueueBackend::Store,
        },
        Some(other) => {
            sink.error(
                &p.key("kind"),
                format!("invalid queue kind \"{other}\""),
                "use one of: store, redis, nats",
            );
            QueueBackend::Store
        }
    };
    let lease = match raw.lease_ms {
        Some(ms) if ms < 1000 => {
            sink.error(
                &p.key("lease_ms"),
                format!("lease_ms must be at least 1000 (got {ms})"),
                format!(
                    "use a lease of a second or more, e.g. {}",
                    defaults::QUEUE_LEASE.as_millis()
                ),
            );
            defaults::QUEUE_LEASE
        }
        ms => positive_ms(sink, &p.key("lease_ms"), ms, defaults::QUEUE_LEASE),
    };
    QueueConfig {
        backend,
        lease,
        reap_interval: positive_ms(
            sink,
            &p.key("reap_interval_ms"),
            raw.reap_interval_ms,
            defaults::QUEUE_REAP_INTERVAL,
        ),
        max_deliveries: ranged(
            sink,
            &p.key("max_deliveries"),
            raw.max_deliveries,
            1,
            i64::from(u32::MAX),
            i64::from(defaults::QUEUE_MAX_DELIVERIES),
        ) as u32,
    }
}

fn runtime(sink: &mut Sink<'_>, raw: &RawRuntime) -> RuntimeConfig {
    let p = KeyPath::root().key("runtime");
    let thread_ttl = match raw.thread_ttl_minutes {
        None | Some(0) => None,
        Some(m) if m > 0 => Some(Duration::from_secs(m.unsigned_abs().saturating_mul(60))),
        Some(m) => {
            sink.error(
                &p.key("thread_ttl_minutes"),
                format!("must not be negative (got {m})"),
                "use 0 (no TTL unless the client asks for one) or a number of minutes",
            );
            None
        }
    };
    let keepalive = match raw.keepalive_ms {
        Some(ms) if ms < 100 => {
            sink.error(
                &p.key("keepalive_ms"),
                format!("keepalive_ms must be at least 100 (got {ms})"),
                format!(
                    "use an interval such as {}",
                    defaults::STREAM_KEEPALIVE.as_millis()
                ),
            );
            defaults::STREAM_KEEPALIVE
        }
        ms => positive_ms(sink, &p.key("keepalive_ms"), ms, defaults::STREAM_KEEPALIVE),
    };
    let max = i64::from(u32::MAX);
    RuntimeConfig {
        event_retention: secs(
            sink,
            &p.key("event_retention_s"),
            raw.event_retention_s,
            defaults::EVENT_RETENTION,
        ),
        run_retention: secs(
            sink,
            &p.key("run_retention_s"),
            raw.run_retention_s,
            defaults::RUN_RETENTION,
        ),
        thread_ttl,
        sweep_interval: secs(
            sink,
            &p.key("sweep_interval_s"),
            raw.sweep_interval_s,
            defaults::SWEEP_INTERVAL,
        ),
        keepalive,
        ws_send_buffer: ranged(
            sink,
            &p.key("ws_send_buffer"),
            raw.ws_send_buffer,
            1,
            max,
            defaults::WS_SEND_BUFFER as i64,
        ) as usize,
        max_stream_clients: ranged(
            sink,
            &p.key("max_stream_clients"),
            raw.max_stream_clients,
            1,
            max,
            defaults::MAX_STREAM_CLIENTS as i64,
        ) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_placeholders_are_listed_in_order() {
        assert_eq!(
            url_placeholders("https://x/{a}/b?c={c_d}&e={a}"),
            Ok(vec!["a", "c_d", "a"])
        );
        assert_eq!(url_placeholders("https://x/"), Ok(vec![]));
        assert!(url_placeholders("https://x/{a").is_err());
        assert!(url_placeholders("https://x/a}").is_err());
        assert!(url_placeholders("https://x/{}").is_err());
        assert!(url_placeholders("https://x/{a b}").is_err());
    }

    #[test]
    fn methods_parse_case_insensitively() {
        assert_eq!(HttpMethod::parse("post"), Some(HttpMethod::Post));
        assert_eq!(HttpMethod::parse("DELETE"), Some(HttpMethod::Delete));
        assert_eq!(HttpMethod::parse("HEAD"), None);
        assert!(HttpMethod::Patch.has_body());
        assert!(!HttpMethod::Get.has_body());
    }

    #[test]
    fn task_routes_match_when_every_given_condition_holds() {
        let route = TaskRoute {
            agent: Some("summariser".into()),
            tag: None,
            tier: None,
            min_estimated_tokens: Some(8000),
            min_input_bytes: None,
            pool: "gpu".into(),
            priority: None,
        };
        assert!(route.matches("summariser", None, None, 8000, 0));
        assert!(!route.matches("summariser", None, None, 7999, 0));
        assert!(!route.matches("other", None, None, 9000, 0));
        let tagged = TaskRoute {
            agent: None,
            tag: Some("batch".into()),
            min_estimated_tokens: None,
            ..route
        };
        assert!(tagged.matches("any", Some("batch"), Some("fast"), 0, 0));
        assert!(!tagged.matches("any", None, None, 0, 0));
    }

    #[test]
    fn tenant_slots_round_down_but_never_reach_zero() {
        let pool = |concurrency, max_tenant_share| PoolConfig {
            name: "p".into(),
            concurrency,
            max_tenant_share,
            schedule: Default::default(),
        };
        assert_eq!(pool(32, 0.5).max_tenant_slots(), 16);
        assert_eq!(pool(3, 0.5).max_tenant_slots(), 1);
        assert_eq!(pool(1, 0.1).max_tenant_slots(), 1);
        assert_eq!(pool(8, 1.0).max_tenant_slots(), 8);
    }
}
