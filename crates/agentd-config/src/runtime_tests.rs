//! The runtime sections (`[agents]`, `[tools]`, `[pools]`, `[[task_routes]]`, `[queue]`,
//! `[runtime]`): parsing, defaults, and every validation error with its file, line and key.

use std::path::Path;
use std::time::Duration;

use agentd_core::{Micros, Priority};
use serde_json::json;

use crate::tests::{env_of, errors, load, load_with, one_error, MOCK};
use crate::{Config, HttpMethod, Overrides, QueueBackend, ToolKind};

/// A provider and a model for agents to use (lines 1–5).
fn base() -> String {
    format!("{MOCK}\n[models.mock]\nprovider = \"mock\"\n")
}

/// `base()` plus `rest`, which starts on line 6.
fn with(rest: &str) -> String {
    let text = format!("{}{rest}", base());
    assert_eq!(base().lines().count(), 5);
    text
}

const LOOKUP: &str = "[tools.lookup]\nkind = \"static\"\nresult = \"42\"\n";

// ---------------------------------------------------------------- parsing and defaults

#[test]
fn every_runtime_section_parses_into_typed_values() {
    let text = with(
        r#"
[routers.tiered]
default = "mock"

[agents.support]
model = "mock"
instructions = "You are support."
tools = ["lookup", "weather", "research"]
max_steps = 32
max_run_usd = 0.50
max_run_tokens = 100000
timeout_ms = 300000
pool = "big"
priority = "high"
max_concurrent_runs = 8
description = "Answers customers."

[agents.researcher]
model = "tiered"

[tools.lookup]
kind = "static"
description = "Look up a fact."
parameters = { type = "object", properties = { query = { type = "string" } }, required = ["query"] }
result = { answer = 42, sources = ["a"] }

[tools.weather]
kind = "http"
url = "https://api.example.com/weather?city={city}"
method = "post"
headers = { Authorization = "Bearer ${WEATHER_KEY}" }
timeout_ms = 2000
max_response_bytes = 1024
allow_private = true
parameters = { type = "object", properties = { city = { type = "string" }, days = { type = ["integer", "null"] } } }

[tools.research]
kind = "agent"
agent = "researcher"

[pools.cpu]
concurrency = 32

[pools.big]
concurrency = 4
max_tenant_share = 1

[[task_routes]]
agent = "support"
tag = "batch"
tier = "quality"
min_estimated_tokens = 8000
min_input_bytes = 100000
pool = "gpu"
priority = "low"

[[task_routes]]
pool = "big"

[queue]
kind = "redis"
url = "redis://:${REDIS_PASSWORD}@127.0.0.1:6379"
prefix = "prod_1"
lease_ms = 10000
reap_interval_ms = 1000
max_deliveries = 3

[runtime]
event_retention_s = 3600
run_retention_s = 86400
thread_ttl_minutes = 90
sweep_interval_s = 30
keepalive_ms = 1000
ws_send_buffer = 64
max_stream_clients = 100
"#,
    );
    let env = env_of(&[
        ("WEATHER_KEY", "wk-secret"),
        ("REDIS_PASSWORD", "rp-secret"),
    ]);
    let c = match load_with(&text, &env) {
        Ok(c) => c,
        Err(e) => panic!("{}", crate::ConfigErrors(e)),
    };

    let names: Vec<&str> = c.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["support", "researcher"], "file order");
    let support = c.agent("support").unwrap();
    assert_eq!(support.model, "mock");
    assert_eq!(support.instructions.as_deref(), Some("You are support."));
    assert_eq!(support.tools, ["lookup", "weather", "research"]);
    assert_eq!(support.max_steps, 32);
    assert_eq!(support.max_run, Some(Micros(500_000)));
    assert_eq!(support.max_run_tokens, Some(100_000));
    assert_eq!(support.timeout, Duration::from_secs(300));
    assert_eq!(support.pool, "big");
    assert_eq!(support.priority, Priority::High);
    assert_eq!(support.max_concurrent_runs, Some(8));
    assert_eq!(support.description.as_deref(), Some("Answers customers."));
    let researcher = c.agent("researcher").unwrap();
    assert_eq!(researcher.model, "tiered", "a router is a valid model");
    assert_eq!(researcher.max_steps, 16);
    assert_eq!(researcher.timeout, Duration::from_secs(600));
    assert_eq!(researcher.pool, "cpu");
    assert_eq!(researcher.priority, Priority::Normal);
    assert_eq!(researcher.max_run, None);
    assert_eq!(researcher.max_run_tokens, None);
    assert_eq!(researcher.max_concurrent_runs, None);
    assert!(researcher.tools.is_empty());
    assert!(researcher.instructions.is_none());

    let names: Vec<&str> = c.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["lookup", "weather", "research"]);
    let lookup = c.tool("lookup").unwrap();
    assert_eq!(lookup.description.as_deref(), Some("Look up a fact."));
    assert_eq!(
        lookup.parameters,
        json!({ "type": "object", "properties": { "query": { "type": "string" } }, "required": ["query"] })
    );
    match &lookup.kind {
        ToolKind::Static { result } => {
            assert_eq!(result, &json!({ "answer": 42, "sources": ["a"] }))
        }
        other => panic!("{other:?}"),
    }
    match &c.tool("weather").unwrap().kind {
        ToolKind::Http {
            url,
            method,
            headers,
            timeout,
            max_response_bytes,
            allow_private,
        } => {
            assert_eq!(url, "https://api.example.com/weather?city={city}");
            assert_eq!(*method, HttpMethod::Post);
            assert_eq!(headers.len(), 1);
            assert_eq!(headers[0].0, "Authorization");
            assert_eq!(headers[0].1.expose(), "Bearer wk-secret");
            assert_eq!(*timeout, Duration::from_secs(2));
            assert_eq!(*max_response_bytes, 1024);
            assert!(*allow_private);
        }
        other => panic!("{other:?}"),
    }
    assert!(c.tool("weather").unwrap().description.is_none());
    match &c.tool("research").unwrap().kind {
        ToolKind::Agent { agent } => assert_eq!(agent, "researcher"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.tool("research").unwrap().parameters,
        json!({ "type": "object" }),
        "default schema"
    );

    let pools: Vec<(&str, u32, f64)> = c
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.concurrency, p.max_tenant_share))
        .collect();
    assert_eq!(pools, [("cpu", 32, 0.5), ("gpu", 2, 0.5), ("big", 4, 1.0)]);
    assert_eq!(c.pool("big").unwrap().concurrency, 4);
    assert!(c.pool("nope").is_none());

    assert_eq!(c.task_routes.len(), 2);
    let r = &c.task_routes[0];
    assert_eq!(r.agent.as_deref(), Some("support"));
    assert_eq!(r.tag.as_deref(), Some("batch"));
    assert_eq!(r.tier.as_deref(), Some("quality"));
    assert_eq!(r.min_estimated_tokens, Some(8000));
    assert_eq!(r.min_input_bytes, Some(100_000));
    assert_eq!(r.pool, "gpu");
    assert_eq!(r.priority, Some(Priority::Low));
    let catch_all = &c.task_routes[1];
    assert_eq!(catch_all.pool, "big");
    assert_eq!(catch_all.agent, None);
    assert_eq!(catch_all.priority, None);
    assert!(catch_all.matches("anything", None, None, 0, 0));

    match &c.queue.backend {
        QueueBackend::Redis { url, prefix } => {
            assert_eq!(url.expose(), "redis://:rp-secret@127.0.0.1:6379");
            assert_eq!(prefix, "prod_1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.queue.backend.kind(), "redis");
    assert_eq!(c.queue.lease, Duration::from_secs(10));
    assert_eq!(c.queue.reap_interval, Duration::from_secs(1));
    assert_eq!(c.queue.max_deliveries, 3);

    let rt = &c.runtime;
    assert_eq!(rt.event_retention, Duration::from_secs(3600));
    assert_eq!(rt.run_retention, Duration::from_secs(86400));
    assert_eq!(rt.thread_ttl, Some(Duration::from_secs(90 * 60)));
    assert_eq!(rt.sweep_interval, Duration::from_secs(30));
    assert_eq!(rt.keepalive, Duration::from_secs(1));
    assert_eq!(rt.ws_send_buffer, 64);
    assert_eq!(rt.max_stream_clients, 100);

    // Secrets stay secret in debug output.
    let debug = format!("{c:?}");
    assert!(!debug.contains("wk-secret"), "{debug}");
    assert!(!debug.contains("rp-secret"), "{debug}");
}

#[test]
fn runtime_sections_have_defaults() {
    let c = load(&base());
    assert!(c.agents.is_empty());
    assert!(c.tools.is_empty());
    assert!(c.task_routes.is_empty());
    let pools: Vec<(&str, u32, f64)> = c
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.concurrency, p.max_tenant_share))
        .collect();
    assert_eq!(pools, [("cpu", 16, 0.5), ("gpu", 2, 0.5)]);
    assert!(matches!(c.queue.backend, QueueBackend::Store));
    assert_eq!(c.queue.lease, Duration::from_secs(30));
    assert_eq!(c.queue.reap_interval, Duration::from_secs(5));
    assert_eq!(c.queue.max_deliveries, 20);
    let rt = &c.runtime;
    assert_eq!(rt.event_retention, Duration::from_secs(24 * 3600));
    assert_eq!(rt.run_retention, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(rt.thread_ttl, None);
    assert_eq!(rt.sweep_interval, Duration::from_secs(60));
    assert_eq!(rt.keepalive, Duration::from_secs(5));
    assert_eq!(rt.ws_send_buffer, 256);
    assert_eq!(rt.max_stream_clients, 20_000);

    // A pool named in the file but not cpu/gpu defaults to 8; a written cpu keeps its place.
    let c = load(&with("[pools.io]\n[pools.cpu]\nmax_tenant_share = 0.25\n"));
    let pools: Vec<(&str, u32, f64)> = c
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.concurrency, p.max_tenant_share))
        .collect();
    assert_eq!(pools, [("cpu", 16, 0.25), ("gpu", 2, 0.5), ("io", 8, 0.5)]);

    // NATS and a prefix.
    let c = load(&with(
        "[queue]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n",
    ));
    match &c.queue.backend {
        QueueBackend::Nats { url, prefix } => {
            assert_eq!(url.expose(), "nats://127.0.0.1:4222");
            assert_eq!(prefix, "agentd");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_default_document_has_the_example_agent() {
    let c = Config::load(None, &|_| None, &Overrides::default()).expect("defaults load");
    assert_eq!(c.agents.len(), 1);
    let agent = c
        .agent("agent")
        .expect("the example agent is named `agent`");
    assert_eq!(agent.model, "mock");
    assert!(c.model("mock").is_some());
    assert_eq!(
        agent.instructions.as_deref(),
        Some("You are a helpful assistant.")
    );
    assert!(agent.description.is_some());
    assert_eq!(agent.tools, ["lookup"]);
    let lookup = c.tool("lookup").expect("the lookup tool");
    assert_eq!(
        lookup.parameters,
        json!({ "type": "object", "properties": { "query": { "type": "string" } }, "required": ["query"] })
    );
    match &lookup.kind {
        ToolKind::Static { result } => {
            assert_eq!(result, &json!("lookup result: the answer is 42"))
        }
        other => panic!("{other:?}"),
    }
    // Also with the OpenAI/Anthropic providers added.
    let env = env_of(&[("OPENAI_API_KEY", "sk-x"), ("ANTHROPIC_API_KEY", "sk-y")]);
    let c = Config::load(None, &env, &Overrides::default()).expect("defaults load");
    assert!(c.agent("agent").is_some());
}

#[test]
fn instructions_file_is_read_relative_to_the_config_file() {
    let dir = std::env::temp_dir().join(format!("agentd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    std::fs::write(dir.join("prompts/support.md"), "Be kind.\n").unwrap();
    let config = dir.join("agentd.toml");
    std::fs::write(
        &config,
        with("[agents.support]\nmodel = \"mock\"\ninstructions_file = \"prompts/support.md\"\n"),
    )
    .unwrap();
    let loaded = Config::load(Some(&config), &|_| None, &Overrides::default());
    std::fs::remove_dir_all(&dir).unwrap();
    let c = loaded.expect("loads");
    assert_eq!(
        c.agent("support").unwrap().instructions.as_deref(),
        Some("Be kind.\n")
    );
}

// ---------------------------------------------------------------- agent errors

#[test]
fn agent_model_must_exist() {
    let e = one_error(
        &with("[agents.a]\nmodel = \"mokc\"\n"),
        7,
        "agents.a.model",
        "unknown model \"mokc\"",
    );
    assert_eq!(
        e.fix,
        "did you mean \"mock\"? use one of the names under [models] or [routers]: mock"
    );
    assert_eq!(
        e.to_string(),
        "agentd.toml:7:1: agents.a.model: unknown model \"mokc\"; fix: did you mean \"mock\"? use one of the names under [models] or [routers]: mock"
    );
    one_error(
        &with("[agents.a]\ndescription = \"x\"\n"),
        6,
        "agents.a.model",
        "the agent has no model",
    );
}

#[test]
fn agent_tools_and_pool_must_exist() {
    let e = one_error(
        &with(&format!(
            "{LOOKUP}[agents.a]\nmodel = \"mock\"\ntools = [\"lookup\", \"lookpu\"]\n"
        )),
        11,
        "agents.a.tools[1]",
        "unknown tool \"lookpu\"",
    );
    assert!(e.fix.contains("did you mean \"lookup\""), "{}", e.fix);
    one_error(
        &with(&format!(
            "{LOOKUP}[agents.a]\nmodel = \"mock\"\ntools = [\"lookup\", \"lookup\"]\n"
        )),
        11,
        "agents.a.tools[1]",
        "listed twice",
    );
    let e = one_error(
        &with("[agents.a]\nmodel = \"mock\"\npool = \"gpus\"\n"),
        8,
        "agents.a.pool",
        "unknown pool \"gpus\"",
    );
    assert_eq!(
        e.fix,
        "did you mean \"gpu\"? use one of the names under [pools]: cpu, gpu"
    );
}

#[test]
fn agent_numbers_and_priority_are_checked() {
    for (line, key, message) in [
        (
            "max_steps = 0",
            "max_steps",
            "must be between 1 and 1000 (got 0)",
        ),
        (
            "max_steps = 1001",
            "max_steps",
            "must be between 1 and 1000 (got 1001)",
        ),
        (
            "max_run_usd = 0",
            "max_run_usd",
            "max_run_usd must be greater than 0",
        ),
        ("max_run_usd = -1.5", "max_run_usd", "invalid amount of US$"),
        (
            "max_run_tokens = 0",
            "max_run_tokens",
            "must be at least 1 (got 0)",
        ),
        (
            "timeout_ms = 0",
            "timeout_ms",
            "must be greater than 0 milliseconds",
        ),
        (
            "max_concurrent_runs = 0",
            "max_concurrent_runs",
            "must be at least 1 (got 0)",
        ),
        (
            "priority = \"urgent\"",
            "priority",
            "invalid priority \"urgent\"",
        ),
    ] {
        one_error(
            &with(&format!("[agents.a]\nmodel = \"mock\"\n{line}\n")),
            8,
            &format!("agents.a.{key}"),
            message,
        );
    }
    let e = one_error(
        &with("[agents.a]\nmodel = \"mock\"\npriority = \"urgent\"\n"),
        8,
        "agents.a.priority",
        "invalid priority",
    );
    assert_eq!(e.fix, "use one of: critical, high, normal, low");
    // Decimal strings work for the budget, as everywhere else.
    let c = load(&with(
        "[agents.a]\nmodel = \"mock\"\nmax_run_usd = \"1.25\"\n",
    ));
    assert_eq!(c.agent("a").unwrap().max_run, Some(Micros(1_250_000)));
}

#[test]
fn instructions_and_instructions_file_are_exclusive_and_files_must_exist() {
    one_error(
        &with("[agents.a]\nmodel = \"mock\"\ninstructions = \"x\"\ninstructions_file = \"p.md\"\n"),
        9,
        "agents.a.instructions_file",
        "both instructions and instructions_file are set",
    );
    let e = one_error(
        &with("[agents.a]\nmodel = \"mock\"\ninstructions_file = \"missing/prompt.md\"\n"),
        8,
        "agents.a.instructions_file",
        "cannot read instructions_file \"missing/prompt.md\"",
    );
    assert!(e
        .fix
        .contains("relative to the directory of the config file"));
}

#[test]
fn agent_names_are_restricted() {
    one_error(
        &with("[agents.\"a b\"]\nmodel = \"mock\"\n"),
        6,
        "agents.\"a b\"",
        "invalid agent name \"a b\"",
    );
    let long = "x".repeat(65);
    one_error(
        &with(&format!("[tools.{long}]\nkind = \"static\"\nresult = 1\n")),
        6,
        &format!("tools.{long}"),
        "invalid tool name",
    );
}

#[test]
fn unknown_keys_in_runtime_tables_are_serde_errors_with_suggestions() {
    let e = one_error(
        &with("[agents.a]\nmodle = \"mock\"\n"),
        7,
        "agents.a.modle",
        "unknown key \"modle\"",
    );
    assert!(e.fix.contains("did you mean \"model\""), "{}", e.fix);
    let e = one_error(
        &with("[queue]\nleas_ms = 1000\n"),
        7,
        "queue.leas_ms",
        "unknown key \"leas_ms\"",
    );
    assert!(e.fix.contains("did you mean \"lease_ms\""), "{}", e.fix);
    // The second route's error keeps its index.
    one_error(
        &with("[[task_routes]]\npool = \"gpu\"\n\n[[task_routes]]\npol = \"gpu\"\n"),
        10,
        "task_routes[1].pol",
        "unknown key \"pol\"",
    );
    let e = one_error(&with("[agent.a]\n"), 6, "agent", "unknown top-level key");
    assert!(e.fix.contains("did you mean \"agents\""), "{}", e.fix);
}

// ---------------------------------------------------------------- tool errors

#[test]
fn tools_need_a_valid_kind() {
    one_error(
        &with("[tools.t]\nresult = 1\n"),
        6,
        "tools.t.kind",
        "the tool has no kind",
    );
    let e = one_error(
        &with("[tools.t]\nkind = \"python\"\n"),
        7,
        "tools.t.kind",
        "invalid tool kind \"python\"",
    );
    assert_eq!(e.fix, "use one of: static, http, agent");
}

#[test]
fn each_kind_needs_its_keys() {
    one_error(
        &with("[tools.t]\nkind = \"static\"\n"),
        6,
        "tools.t.result",
        "a static tool needs a result",
    );
    one_error(
        &with("[tools.t]\nkind = \"http\"\n"),
        6,
        "tools.t.url",
        "an http tool needs a url",
    );
    one_error(
        &with("[tools.t]\nkind = \"agent\"\n"),
        6,
        "tools.t.agent",
        "an agent tool needs an agent",
    );
    let e = one_error(
        &with("[tools.t]\nkind = \"agent\"\nagent = \"nobody\"\n"),
        8,
        "tools.t.agent",
        "unknown agent \"nobody\"",
    );
    assert_eq!(e.fix, "add a [agents] table named \"nobody\"");
}

#[test]
fn keys_of_another_kind_are_errors() {
    let e = one_error(
        &with("[tools.t]\nkind = \"http\"\nurl = \"https://x.test/\"\nresult = \"no\"\n"),
        9,
        "tools.t.result",
        "result only applies to static tools",
    );
    assert_eq!(
        e.fix,
        "remove result (this tool is kind = \"http\"), or set kind = \"static\""
    );
    let errs = errors(&with(
        "[tools.t]\nkind = \"static\"\nresult = 1\nmethod = \"GET\"\nallow_private = true\nagent = \"x\"\n",
    ));
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["tools.t.method", "tools.t.allow_private", "tools.t.agent"],
        "{}",
        crate::ConfigErrors(errs.clone())
    );
    assert!(errs[0].message.contains("only applies to http tools"));
    assert!(errs[2].message.contains("only applies to agent tools"));
}

#[test]
fn http_tool_urls_are_checked() {
    let tool = |url: &str| {
        with(&format!(
            "[tools.t]\nkind = \"http\"\nurl = \"{url}\"\nparameters = {{ type = \"object\", properties = {{ city = {{ type = \"string\" }} }} }}\n"
        ))
    };
    load(&tool("http://x.test/w/{city}?units=metric"));
    one_error(
        &tool("ftp://x.test/"),
        8,
        "tools.t.url",
        "is not an http:// or https:// URL",
    );
    one_error(&tool("https:///path"), 8, "tools.t.url", "has no host");
    let e = one_error(
        &tool("https://x.test/?q={cty}"),
        8,
        "tools.t.url",
        "url placeholder {cty} is not a property of parameters",
    );
    assert!(e.fix.contains("did you mean \"city\""), "{}", e.fix);
    one_error(
        &tool("https://{city}.x.test/"),
        8,
        "tools.t.url",
        "placeholder in its host",
    );
    one_error(
        &tool("https://x.test/{city"),
        8,
        "tools.t.url",
        "malformed url template",
    );
    let e = one_error(
        &tool("https://x.test/?key=${KEY}"),
        8,
        "tools.t.url",
        "url does not expand ${VAR}",
    );
    assert!(e.fix.contains("headers"), "{}", e.fix);
    // Without parameters, any placeholder is unknown.
    one_error(
        &with("[tools.t]\nkind = \"http\"\nurl = \"https://x.test/{id}\"\n"),
        8,
        "tools.t.url",
        "url placeholder {id} is not a property of parameters",
    );
}

#[test]
fn http_tool_options_are_checked() {
    let tool = |line: &str| {
        with(&format!(
            "[tools.t]\nkind = \"http\"\nurl = \"https://x.test/\"\n{line}\n"
        ))
    };
    let e = one_error(
        &tool("method = \"HEAD\""),
        9,
        "tools.t.method",
        "invalid method \"HEAD\"",
    );
    assert_eq!(e.fix, "use one of: GET, POST, PUT, PATCH, DELETE");
    one_error(
        &tool("timeout_ms = -1"),
        9,
        "tools.t.timeout_ms",
        "must be greater than 0",
    );
    one_error(
        &tool("max_response_bytes = 0"),
        9,
        "tools.t.max_response_bytes",
        "must be at least 1",
    );
    one_error(
        &tool("headers = { \"Bad Header\" = \"x\" }"),
        9,
        "tools.t.headers.\"Bad Header\"",
        "invalid header name",
    );
    let e = one_error(
        &tool("headers = { Authorization = \"Bearer ${WEATHER_KEY}\" }"),
        9,
        "tools.t.headers.Authorization",
        "environment variable WEATHER_KEY is not set",
    );
    assert!(e.fix.contains("export WEATHER_KEY"));
    let c = load(&tool(""));
    match &c.tool("t").unwrap().kind {
        ToolKind::Http {
            method,
            headers,
            timeout,
            max_response_bytes,
            allow_private,
            ..
        } => {
            assert_eq!(*method, HttpMethod::Get);
            assert!(headers.is_empty());
            assert_eq!(*timeout, Duration::from_secs(10));
            assert_eq!(*max_response_bytes, 65536);
            assert!(!*allow_private);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parameter_schemas_are_checked_structurally() {
    let tool = |params: &str| {
        with(&format!(
            "[tools.t]\nkind = \"static\"\nresult = 1\nparameters = {params}\n"
        ))
    };
    one_error(
        &tool("\"object\""),
        9,
        "tools.t.parameters",
        "parameters must be a table",
    );
    one_error(
        &tool("{ type = \"array\" }"),
        9,
        "tools.t.parameters.type",
        "must have type \"object\"",
    );
    one_error(
        &tool("{ properties = {} }"),
        9,
        "tools.t.parameters",
        "parameters has no type",
    );
    one_error(
        &tool("{ type = \"object\", properties = [\"q\"] }"),
        9,
        "tools.t.parameters.properties",
        "properties must be a table",
    );
    one_error(
        &tool("{ type = \"object\", properties = { q = \"string\" } }"),
        9,
        "tools.t.parameters.properties.q",
        "property \"q\" must be a table",
    );
    one_error(
        &tool("{ type = \"object\", properties = { q = { type = \"text\" } } }"),
        9,
        "tools.t.parameters.properties.q.type",
        "property \"q\" has an invalid type",
    );
    let e = one_error(
        &tool("{ type = \"object\", properties = { query = { type = \"string\" } }, required = [\"qeury\"] }"),
        9,
        "tools.t.parameters.required[0]",
        "required names \"qeury\", which is not under properties",
    );
    assert!(e.fix.contains("did you mean \"query\""), "{}", e.fix);
    one_error(
        &tool("{ type = \"object\", required = \"q\" }"),
        9,
        "tools.t.parameters.required",
        "required must be an array",
    );
    // A schema written as sub-tables is the same schema.
    let c = load(&with(
        "[tools.t]\nkind = \"static\"\nresult = 1\n[tools.t.parameters]\ntype = \"object\"\n[tools.t.parameters.properties.q]\ntype = \"string\"\n",
    ));
    assert_eq!(
        c.tool("t").unwrap().parameters,
        json!({ "type": "object", "properties": { "q": { "type": "string" } } })
    );
}

// ---------------------------------------------------------------- cycles

#[test]
fn agents_calling_each_other_in_a_cycle_are_reported_with_the_path() {
    let text = with(
        "[agents.a]\nmodel = \"mock\"\ntools = [\"ask_b\"]\n\n\
[agents.b]\nmodel = \"mock\"\ntools = [\"ask_a\"]\n\n\
[tools.ask_b]\nkind = \"agent\"\nagent = \"b\"\n\n\
[tools.ask_a]\nkind = \"agent\"\nagent = \"a\"\n",
    );
    let e = one_error(
        &text,
        8,
        "agents.a.tools[0]",
        "agents call each other in a cycle: agents.a → tools.ask_b → agents.b → tools.ask_a → agents.a",
    );
    assert!(
        e.fix.contains("remove one of these agent tools"),
        "{}",
        e.fix
    );
}

#[test]
fn an_agent_calling_itself_is_a_cycle_and_a_tree_is_not() {
    let text = with(&format!(
        "[agents.a]\nmodel = \"mock\"\ntools = [\"lookup\", \"me\"]\n\n\
[tools.me]\nkind = \"agent\"\nagent = \"a\"\n{LOOKUP}"
    ));
    one_error(
        &text,
        8,
        "agents.a.tools[1]",
        "agents call each other in a cycle: agents.a → tools.me → agents.a",
    );
    // a → b, a → c, b → c: shared callees, no cycle.
    load(&with(
        "[agents.a]\nmodel = \"mock\"\ntools = [\"ask_b\", \"ask_c\"]\n\
[agents.b]\nmodel = \"mock\"\ntools = [\"ask_c\"]\n\
[agents.c]\nmodel = \"mock\"\n\
[tools.ask_b]\nkind = \"agent\"\nagent = \"b\"\n\
[tools.ask_c]\nkind = \"agent\"\nagent = \"c\"\n",
    ));
}

#[test]
fn a_longer_cycle_starts_where_it_is_entered() {
    // entry → x → y → z → x: the cycle is x → y → z → x, reported on x.
    let text = with(
        "[agents.entry]\nmodel = \"mock\"\ntools = [\"ask_x\"]\n\
[agents.x]\nmodel = \"mock\"\ntools = [\"ask_y\"]\n\
[agents.y]\nmodel = \"mock\"\ntools = [\"ask_z\"]\n\
[agents.z]\nmodel = \"mock\"\ntools = [\"ask_x\"]\n\
[tools.ask_x]\nkind = \"agent\"\nagent = \"x\"\n\
[tools.ask_y]\nkind = \"agent\"\nagent = \"y\"\n\
[tools.ask_z]\nkind = \"agent\"\nagent = \"z\"\n",
    );
    one_error(
        &text,
        11,
        "agents.x.tools[0]",
        "agents.x → tools.ask_y → agents.y → tools.ask_z → agents.z → tools.ask_x → agents.x",
    );
}

// ---------------------------------------------------------------- pools, routes, queue, runtime

#[test]
fn pool_settings_are_checked() {
    one_error(
        &with("[pools.cpu]\nconcurrency = 0\n"),
        7,
        "pools.cpu.concurrency",
        "must be at least 1 (got 0)",
    );
    for share in ["0", "1.5", "-0.5"] {
        one_error(
            &with(&format!("[pools.gpu]\nmax_tenant_share = {share}\n")),
            7,
            "pools.gpu.max_tenant_share",
            "max_tenant_share must be greater than 0 and at most 1",
        );
    }
    one_error(
        &with("[pools.\"gpu.large\"]\n"),
        6,
        "pools.\"gpu.large\"",
        "invalid pool name",
    );
}

#[test]
fn task_routes_are_checked() {
    let e = one_error(
        &with("[[task_routes]]\nagent = \"a\"\n"),
        6,
        "task_routes[0].pool",
        "the task route has no pool",
    );
    assert_eq!(e.fix, "add pool = \"<name>\" with one of: cpu, gpu");
    one_error(
        &with("[[task_routes]]\npool = \"cpu\"\n\n[[task_routes]]\npool = \"tpu\"\n"),
        10,
        "task_routes[1].pool",
        "unknown pool \"tpu\"",
    );
    one_error(
        &with("[[task_routes]]\nagent = \"summariser\"\npool = \"gpu\"\n"),
        7,
        "task_routes[0].agent",
        "unknown agent \"summariser\"",
    );
    one_error(
        &with("[[task_routes]]\npool = \"gpu\"\npriority = \"asap\"\n"),
        8,
        "task_routes[0].priority",
        "invalid priority \"asap\"",
    );
    one_error(
        &with("[[task_routes]]\npool = \"gpu\"\nmin_input_bytes = -1\n"),
        8,
        "task_routes[0].min_input_bytes",
        "must be at least 0 (got -1)",
    );
    one_error(
        &with("[[task_routes]]\npool = \"gpu\"\ntier = \"a b\"\n"),
        8,
        "task_routes[0].tier",
        "tier",
    );
    one_error(
        &with("[[task_routes]]\npool = \"gpu\"\ntag = \"\"\n"),
        8,
        "task_routes[0].tag",
        "tag is empty",
    );
    // Inline arrays work too (a top-level key, so before the first table); a route may
    // target a pool defined in the file.
    let c = load(&format!(
        "task_routes = [{{ pool = \"io\", tag = \"fetch\" }}]\n{}[pools.io]\nconcurrency = 64\n",
        base()
    ));
    assert_eq!(c.task_routes[0].pool, "io");
    assert_eq!(c.task_routes[0].tag.as_deref(), Some("fetch"));
    one_error(
        &format!("task_routes = 5\n{}", base()),
        1,
        "task_routes",
        "must be an array of tables",
    );
}

#[test]
fn queue_settings_are_checked() {
    let e = one_error(
        &with("[queue]\nkind = \"redis\"\n"),
        6,
        "queue.url",
        "a redis queue needs a url",
    );
    assert_eq!(e.fix, "add url = \"redis://127.0.0.1:6379\"");
    one_error(
        &with("[queue]\nkind = \"nats\"\nurl = \"redis://x:6379\"\n"),
        8,
        "queue.url",
        "the url must start with nats:// or tls://",
    );
    one_error(
        &with("[queue]\nurl = \"redis://x:6379\"\n"),
        7,
        "queue.url",
        "url is set but the queue kind is store",
    );
    let e = one_error(
        &with("[queue]\nkind = \"kafka\"\n"),
        7,
        "queue.kind",
        "invalid queue kind \"kafka\"",
    );
    assert_eq!(e.fix, "use one of: store, redis, nats");
    one_error(
        &with("[queue]\nprefix = \"a:b\"\n"),
        7,
        "queue.prefix",
        "invalid prefix \"a:b\"",
    );
    one_error(
        &with(&format!("[queue]\nprefix = \"{}\"\n", "p".repeat(33))),
        7,
        "queue.prefix",
        "invalid prefix",
    );
    one_error(
        &with("[queue]\nlease_ms = 999\n"),
        7,
        "queue.lease_ms",
        "lease_ms must be at least 1000 (got 999)",
    );
    one_error(
        &with("[queue]\nreap_interval_ms = 0\n"),
        7,
        "queue.reap_interval_ms",
        "must be greater than 0",
    );
    one_error(
        &with("[queue]\nmax_deliveries = 0\n"),
        7,
        "queue.max_deliveries",
        "must be at least 1 (got 0)",
    );
    // A password in the url is never echoed.
    let errs = errors(&with(
        "[queue]\nkind = \"redis\"\nurl = \"http://:hunter2@x\"\n",
    ));
    assert!(!crate::ConfigErrors(errs).to_string().contains("hunter2"));
}

#[test]
fn runtime_settings_are_checked() {
    for (line, key, message) in [
        (
            "event_retention_s = 0",
            "event_retention_s",
            "must be greater than 0 seconds (got 0)",
        ),
        (
            "run_retention_s = -5",
            "run_retention_s",
            "must be greater than 0 seconds (got -5)",
        ),
        (
            "thread_ttl_minutes = -1",
            "thread_ttl_minutes",
            "must not be negative (got -1)",
        ),
        (
            "sweep_interval_s = 0",
            "sweep_interval_s",
            "must be greater than 0 seconds",
        ),
        (
            "keepalive_ms = 99",
            "keepalive_ms",
            "keepalive_ms must be at least 100 (got 99)",
        ),
        (
            "ws_send_buffer = 0",
            "ws_send_buffer",
            "must be at least 1 (got 0)",
        ),
        (
            "max_stream_clients = 0",
            "max_stream_clients",
            "must be at least 1 (got 0)",
        ),
    ] {
        one_error(
            &with(&format!("[runtime]\n{line}\n")),
            7,
            &format!("runtime.{key}"),
            message,
        );
    }
}

#[test]
fn runtime_errors_are_collected_with_the_rest() {
    let text = with(
        "[agents.a]\nmodel = \"nope\"\ntools = [\"missing\"]\npool = \"tpu\"\n\
[tools.t]\nkind = \"static\"\n\
[queue]\nlease_ms = 1\n\
[runtime]\nkeepalive_ms = 1\n",
    );
    let errs = errors(&text);
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(7), "agents.a.model"),
            (Some(8), "agents.a.tools[0]"),
            (Some(9), "agents.a.pool"),
            (Some(10), "tools.t.result"),
            (Some(13), "queue.lease_ms"),
            (Some(15), "runtime.keepalive_ms"),
        ],
        "{}",
        crate::ConfigErrors(errs.clone())
    );
    assert!(errs.iter().all(|e| e.file == Path::new("agentd.toml")));
}

// ---------------------------------------------------------------- regions, deploy, schedules

#[test]
fn regions_deploy_and_schedules_parse() {
    let c = load_with(
        r#"
[server]
region = "NRT"

[store]
kind = "postgres"
url = "postgres://u@db/agentd"
replica_url = "${REPLICA_URL}"

[regions]
list = ["cdg", "nrt", "sjc", "ewr"]
primary = "cdg"
routing = "forward"
read_your_writes_ms = 2000

[regions.urls]
cdg = "http://cdg.internal:8080/"
sjc = "http://sjc.internal:8080"
ewr = "${EWR_URL}"

[deploy]
app = "acme-agents"
image = "ghcr.io/acme/agentd:1.2"
domain = "agents.acme.dev"

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

[pools.vllm]
persistent = true
min_workers = 1
max_workers = 5
"#,
        &env_of(&[
            ("REPLICA_URL", "postgres://u@replica/agentd"),
            ("EWR_URL", "http://ewr.internal:8080"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{}", crate::ConfigErrors(e)));
    assert_eq!(c.server.region.as_deref(), Some("nrt"));
    assert_eq!(c.regions.list, ["cdg", "nrt", "sjc", "ewr"]);
    assert_eq!(c.regions.primary.as_deref(), Some("cdg"));
    assert_eq!(c.regions.routing, crate::RegionRouting::Forward);
    assert_eq!(c.regions.read_your_writes, Duration::from_secs(2));
    assert_eq!(c.regions.url("cdg"), Some("http://cdg.internal:8080"));
    assert_eq!(c.regions.url("ewr"), Some("http://ewr.internal:8080"));
    assert_eq!(
        c.store_replica.as_ref().map(|s| s.expose()),
        Some("postgres://u@replica/agentd")
    );
    assert_eq!(c.deploy.app, "acme-agents");
    assert_eq!(c.deploy.domain.as_deref(), Some("agents.acme.dev"));
    let gpu = c.pools.iter().find(|p| p.name == "gpu").unwrap();
    let b = gpu.schedule.business_hours.as_ref().unwrap();
    assert_eq!(
        (b.start, b.end, b.min_workers, b.max_workers),
        (540, 1080, 2, 10)
    );
    assert_eq!((gpu.schedule.min_workers, gpu.schedule.max_workers), (0, 3));
    let vllm = c.pools.iter().find(|p| p.name == "vllm").unwrap();
    assert!(vllm.schedule.persistent);
    // AGENTD_REGION overrides the file, FLY_REGION only fills in; routing defaults to fly-replay on Fly.
    let text = "[server]\nregion = \"cdg\"\n[regions]\nlist = [\"cdg\", \"nrt\"]\n";
    let c = load_with(
        text,
        &env_of(&[("AGENTD_REGION", "nrt"), ("FLY_APP_NAME", "a")]),
    )
    .unwrap();
    assert_eq!(c.server.region.as_deref(), Some("nrt"));
    assert_eq!(c.regions.routing, crate::RegionRouting::FlyReplay);
    assert_eq!(c.regions.primary.as_deref(), Some("cdg"));
}

#[test]
fn region_errors_name_the_value_and_key() {
    let e = one_error(
        "[server]\nregion = \"cdg\"\n[regions]\nlist = [\"cdg\", \"xyz\"]\n",
        4,
        "regions.list[1]",
        "unknown region code \"xyz\"",
    );
    assert!(e.fix.contains("cdg") && e.fix.contains("nrt"), "{}", e.fix);
    one_error(
        "[server]\nregion = \"nrt\"\n[regions]\nlist = [\"nrt\", \"sjc\"]\nprimary = \"cdg\"\nrouting = \"fly-replay\"\n",
        5,
        "regions.primary",
        "the primary region \"cdg\" is not in regions.list",
    );
    one_error(
        "[server]\nregion = \"syd\"\n[regions]\nlist = [\"cdg\", \"nrt\"]\nrouting = \"fly-replay\"\n",
        2,
        "server.region",
        "this instance's region \"syd\" is not in regions.list",
    );
    one_error(
        "[server]\nregion = \"cdg\"\n[regions]\nlist = [\"cdg\", \"nrt\"]\nrouting = \"forward\"\n",
        3,
        "regions.urls",
        "routing is \"forward\" but these regions have no URL: nrt",
    );
    one_error(
        "[regions]\nlist = [\"cdg\", \"nrt\"]\nrouting = \"fly-replay\"\n",
        2,
        "regions.list",
        "several regions are listed but this instance's region is unknown",
    );
    one_error(
        "[store]\nreplica_url = \"postgres://r/db\"\n",
        2,
        "store.replica_url",
        "replica_url is set but the store is sqlite",
    );
    one_error(
        "[deploy]\napp = \"Agent D\"\n",
        2,
        "deploy.app",
        "invalid app name \"Agent D\"",
    );
}

#[test]
fn schedule_errors_name_the_value_and_key() {
    let pool =
        |rest: &str| format!("[pools.gpu]\nmax_workers = 3\n[pools.gpu.business_hours]\n{rest}");
    one_error(
        &pool("timezone = \"Mars/Olympus\"\nstart = \"09:00\"\nend = \"18:00\"\n"),
        4,
        "pools.gpu.business_hours.timezone",
        "unknown time zone \"Mars/Olympus\"",
    );
    one_error(
        &pool("timezone = \"Europe/Paris\"\nstart = \"9h\"\nend = \"18:00\"\n"),
        5,
        "pools.gpu.business_hours.start",
        "invalid time \"9h\"",
    );
    one_error(
        &pool("timezone = \"Europe/Paris\"\ndays = \"mon-funday\"\nstart = \"09:00\"\nend = \"18:00\"\n"),
        5,
        "pools.gpu.business_hours.days",
        "unknown day \"funday\" in days \"mon-funday\"",
    );
    one_error(
        &pool("timezone = \"Europe/Paris\"\nstart = \"09:00\"\n"),
        3,
        "pools.gpu.business_hours.end",
        "business_hours needs end",
    );
    one_error(
        "[pools.gpu]\nmin_workers = 4\nmax_workers = 2\n",
        2,
        "pools.gpu.min_workers",
        "min_workers (4) is greater than max_workers (2)",
    );
}

#[test]
fn a_region_with_its_own_database_uses_it_instead_of_store_url() {
    let text = r#"
[store]
kind = "postgres"
url = "postgres://u@primary/agentd"
max_connections = 6

[regions]
list = ["cdg", "nrt"]
primary = "cdg"
routing = "fly-replay"

[regions.store_urls]
nrt = "${NRT_DATABASE_URL}"
"#;
    let env = env_of(&[
        ("FLY_REGION", "nrt"),
        ("NRT_DATABASE_URL", "postgres://u@nrt-db/agentd"),
    ]);
    let c = load_with(text, &env).unwrap_or_else(|e| panic!("{}", crate::ConfigErrors(e)));
    match &c.store {
        crate::StoreConfig::Postgres {
            url,
            max_connections,
        } => {
            assert_eq!(url.expose(), "postgres://u@nrt-db/agentd");
            assert_eq!(*max_connections, 6);
        }
        other => panic!("{other:?}"),
    }
    // The primary region keeps store.url.
    let env = env_of(&[
        ("FLY_REGION", "cdg"),
        ("NRT_DATABASE_URL", "postgres://u@nrt-db/agentd"),
    ]);
    let c = load_with(text, &env).unwrap();
    assert!(
        matches!(&c.store, crate::StoreConfig::Postgres { url, .. } if url.expose() == "postgres://u@primary/agentd")
    );
    // Not PostgreSQL, or not a listed region: named errors.
    let errs = crate::tests::errors(
        "[server]\nregion = \"cdg\"\n[regions]\nlist = [\"cdg\", \"nrt\"]\nrouting = \"fly-replay\"\n[regions.store_urls]\nnrt = \"redis://x\"\nsyd = \"postgres://x/y\"\n",
    );
    let text: Vec<String> = errs
        .iter()
        .map(|e| format!("{} {}", e.key, e.message))
        .collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("regions.store_urls.nrt") && t.contains("must be PostgreSQL")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("regions.store_urls.syd") && t.contains("not in regions.list")),
        "{text:?}"
    );
}
