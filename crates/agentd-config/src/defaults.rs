//! Built-in defaults: the values used when a key is absent, and the configuration used when no
//! file is given at all.

use std::time::Duration;

pub(crate) const LISTEN: &str = "127.0.0.1:8080";
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's smallest read buffer: a smaller limit would make it panic.
pub(crate) const MIN_HEADER_BYTES: usize = 8192;
pub(crate) const SERVER_MAX_CONNECTIONS: u32 = 4096;
pub(crate) const MAX_CONCURRENT_REQUESTS: u32 = 1024;
pub(crate) const DATA_DIR: &str = "./data";
pub(crate) const SQLITE_FILE: &str = "agentd.db";
pub(crate) const MAX_CONNECTIONS: u32 = 8;
pub(crate) const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const FIRST_TOKEN_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const PROVIDER_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const ANTHROPIC_VERSION: &str = "2023-06-01";
pub(crate) const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub(crate) const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub(crate) const ADMIN_KEY_MIN_CHARS: usize = 16;
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
pub(crate) const RETRY_BUDGET_PERCENT: u32 = 20;
pub(crate) const RETRY_MIN_PER_SEC: u32 = 5;
pub(crate) const MAX_OUTPUT_TOKENS: u32 = 4096;
pub(crate) const CACHE_MAX_BYTES: u64 = 32 * 1024 * 1024;
pub(crate) const CACHE_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
pub(crate) const CACHE_CHAT_TTL: Duration = Duration::from_secs(3600);
pub(crate) const CACHE_EMBEDDINGS_TTL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const LEDGER_FLUSH: Duration = Duration::from_millis(100);
pub(crate) const AGENT_MAX_STEPS: u32 = 16;
pub(crate) const AGENT_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const AGENT_POOL: &str = "cpu";
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const TOOL_MAX_RESPONSE_BYTES: usize = 64 * 1024;
pub(crate) const POOL_MAX_TENANT_SHARE: f64 = 0.5;
pub(crate) const QUEUE_PREFIX: &str = "agentd";
pub(crate) const QUEUE_LEASE: Duration = Duration::from_secs(30);
pub(crate) const QUEUE_REAP_INTERVAL: Duration = Duration::from_secs(5);
pub(crate) const QUEUE_MAX_DELIVERIES: u32 = 20;
pub(crate) const EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);
pub(crate) const RUN_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const STREAM_KEEPALIVE: Duration = Duration::from_secs(5);
pub(crate) const WS_SEND_BUFFER: usize = 256;
pub(crate) const MAX_STREAM_CLIENTS: usize = 20_000;

/// Runs a worker of this pool executes at once when `[pools.<name>]` does not say.
pub(crate) fn pool_concurrency(pool: &str) -> u32 {
    match pool {
        "cpu" => 16,
        "gpu" => 2,
        _ => 8,
    }
}

pub(crate) fn breaker() -> crate::routing_and_cost::BreakerConfig {
    crate::routing_and_cost::BreakerConfig {
        enabled: true,
        consecutive_failures: 5,
        error_rate_percent: 50,
        min_requests: 20,
        window: Duration::from_secs(30),
        open_for: Duration::from_secs(30),
        slow_ttft: None,
        half_open_probes: 1,
    }
}

/// Models served by the built-in mock provider when no file is given.
pub const MOCK_MODELS: &[&str] = &["mock", "mock-embedding"];
/// Models added when no file is given and `OPENAI_API_KEY` is set.
pub const OPENAI_MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];
/// Models added when no file is given and `ANTHROPIC_API_KEY` is set.
pub const ANTHROPIC_MODELS: &[&str] = &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"];

/// The configuration used without a file, written as TOML so it goes through exactly the same
/// parsing, `${VAR}` expansion and validation as a user's file.
pub(crate) fn document(env: &dyn Fn(&str) -> Option<String>) -> String {
    let set = |var: &str| env(var).is_some_and(|v| !v.is_empty());
    let mut providers = String::from("[providers.mock]\nkind = \"mock\"\n\n");
    let mut models = String::new();
    push_models(&mut models, "mock", MOCK_MODELS);
    if set("OPENAI_API_KEY") {
        providers
            .push_str("[providers.openai]\nkind = \"openai\"\napi_key = \"${OPENAI_API_KEY}\"\n\n");
        push_models(&mut models, "openai", OPENAI_MODELS);
    }
    if set("ANTHROPIC_API_KEY") {
        providers.push_str(
            "[providers.anthropic]\nkind = \"anthropic\"\napi_key = \"${ANTHROPIC_API_KEY}\"\n\n",
        );
        push_models(&mut models, "anthropic", ANTHROPIC_MODELS);
    }
    providers + &models + EXAMPLE_AGENT
}

/// The example agent served without a file, so `agentd serve` runs an agent end to end on the
/// mock model. Named `agent` because that is LangGraph's default graph id.
const EXAMPLE_AGENT: &str = r#"[agents.agent]
model = "mock"
description = "Example agent on the mock model; calls the lookup tool when asked to."
instructions = "You are a helpful assistant."
tools = ["lookup"]

[tools.lookup]
kind = "static"
description = "Look up a fact."
parameters = { type = "object", properties = { query = { type = "string" } }, required = ["query"] }
result = "lookup result: the answer is 42"
"#;

fn push_models(out: &mut String, provider: &str, models: &[&str]) {
    for model in models {
        out.push_str(&format!(
            "[models.\"{model}\"]\nprovider = \"{provider}\"\n\n"
        ));
    }
}
