//! Shared by the k8s and compose tests: the global config of the issue and helpers.

use std::path::Path;

use serde_json::Value;

use crate::yaml::Node;
use crate::Options;

/// The global deployment: PostgreSQL, Redis Streams queue, four regions with Paris primary,
/// a GPU pool with Los Angeles business hours and a persistent pool, each reached by an agent
/// (`Ctx::pools` leaves out pools no agent or task route names), plus the default `cpu` pool.
pub(crate) const GLOBAL: &str = r#"
[server]
listen = "0.0.0.0:8080"
shutdown_grace_ms = 45000
region = "cdg"

[store]
kind = "postgres"
url = "${DATABASE_URL}"

[queue]
kind = "redis"
url = "${REDIS_URL}"
prefix = "acme"

[providers.openai]
kind = "openai"
api_key = "${OPENAI_API_KEY}"

[models.gpt-4o-mini]
provider = "openai"

[agents.support]
model = "gpt-4o-mini"
pool = "gpu"

[agents.triage]
model = "gpt-4o-mini"

[agents.nightly]
model = "gpt-4o-mini"
pool = "batch"

[pools.gpu]
concurrency = 2
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

[pools.batch]
concurrency = 4
min_workers = 1
max_workers = 4
persistent = true

[regions]
list = ["cdg", "nrt", "sjc", "ewr"]
primary = "cdg"
routing = "forward"

[regions.urls]
nrt = "http://agentd-api.agentd-nrt.svc"
sjc = "http://agentd-api.agentd-sjc.svc"
ewr = "http://agentd-api.agentd-ewr.svc"

[deploy]
app = "agentd"
image = "ghcr.io/acme/agentd:1.2.3"
domain = "agents.example.com"
"#;

pub(crate) fn env(name: &str) -> Option<String> {
    match name {
        "DATABASE_URL" => Some("postgres://agentd:pw-env-value@db:5432/agentd".into()),
        "REDIS_URL" => Some("redis://:redis-env-pw@redis.internal:6379/0".into()),
        "OPENAI_API_KEY" => Some("sk-env-value-leak-check".into()),
        "AGENTD_ADMIN_KEY" => Some("admin-env-value-leak-check".into()),
        "DB" => Some("postgres://agentd@db:5432/agentd".into()),
        _ => None,
    }
}

pub(crate) fn config(text: &str) -> agentd_config::Config {
    agentd_config::Config::from_str(text, Path::new("t.toml"), &env, &Default::default())
        .unwrap_or_else(|e| panic!("test config: {e:?}"))
}

pub(crate) fn options(text: &str) -> Options {
    Options {
        regions: vec![],
        config_text: Some(text.to_owned()),
    }
}

/// A Node as JSON, for pointer lookups.
pub(crate) fn json(node: &Node) -> Value {
    match node {
        Node::Value(v) => v.clone(),
        Node::List(items) => Value::Array(items.iter().map(json).collect()),
        Node::Map(m) => Value::Object(m.0.iter().map(|(k, v)| (k.clone(), json(v))).collect()),
    }
}
