//! The agent runtime's own guarantees, black-box: the real binary on SQLite with the in-process
//! mock provider, driven over raw HTTP (the LangGraph SDK surface is `tests/agents`' job). What
//! is checked here is what only the runtime can promise: tool failures go back to the model
//! instead of crashing the run (SSRF refusals, schema violations), child agents are billed to
//! their parent, run limits stop a run before the call that would break them, deadlines and
//! cancels settle the model call in flight, priorities, fair share and concurrency caps hold, a
//! run survives its server being killed or stopped (repeating only the step in flight, with the
//! same idempotency key), bad input is refused with the field named, and the sweeper and the
//! metrics do their part. Tests marked `#[ignore = "bug: …"]` assert the right behaviour of a
//! known runtime bug.
//!
//! Timing: every wait is a bounded poll; slow models are made slow enough (seconds) that the
//! assertions about "before the model would have finished" have a wide margin.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The in-process mock as model `mock`, a static tool, and whatever the test adds.
fn config(extra: &str) -> String {
    format!(
        r#"
[server]
shutdown_grace_ms = 1000

[providers.local]
kind = "mock"

[models.mock]
provider = "local"

[tools.lookup]
kind = "static"
description = "Look up a fact."
result = "lookup result: 42"
{extra}
"#
    )
}

/// A running agentd and an API key of tenant `acme`.
struct Rt {
    server: Server,
    key: String,
}

const TERMINAL: [&str; 4] = ["success", "error", "timeout", "interrupted"];

impl Rt {
    async fn start(extra: &str) -> Rt {
        Rt::with_server(Server::start(Some(&config(extra)))).await
    }

    async fn with_server(server: Server) -> Rt {
        let key = new_key(&server, "acme").await;
        Rt { server, key }
    }

    /// The same API as tenant `tenant`.
    async fn as_tenant(&self, tenant: &str) -> Tenant<'_> {
        Tenant {
            rt: self,
            key: new_key(&self.server, tenant).await,
        }
    }

    /// Sends a request with the API key; the body as JSON (or as text when it is not JSON).
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(&self.key).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(client().post(self.server.url(path)).json(body))
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(client().get(self.server.url(path))).await
    }

    async fn thread(&self) -> String {
        let (status, body) = self.post("/threads", &json!({})).await;
        assert_eq!(status, 200, "{body}");
        body["thread_id"].as_str().unwrap().to_owned()
    }

    /// Starts a background run of `agent` on `thread` with one user message; its run id.
    async fn run(&self, thread: &str, agent: &str, text: &str) -> String {
        self.run_with(thread, agent, text, json!({})).await
    }

    async fn run_with(&self, thread: &str, agent: &str, text: &str, extra: Value) -> String {
        let mut body = json!({
            "assistant_id": agent,
            "input": {"messages": [{"role": "user", "content": text}]},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, run) = self.post(&format!("/threads/{thread}/runs"), &body).await;
        assert_eq!(status, 200, "{run}");
        run["run_id"].as_str().unwrap().to_owned()
    }

    async fn get_run(&self, thread: &str, run: &str) -> Value {
        let (status, body) = self.get(&format!("/threads/{thread}/runs/{run}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn status(&self, thread: &str, run: &str) -> String {
        self.get_run(thread, run).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Polls the run until it ended; the run.
    async fn finished(&self, thread: &str, run: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self.get_run(thread, run).await;
            if TERMINAL.contains(&r["status"].as_str().unwrap_or_default()) {
                return r;
            }
            if Instant::now() > deadline {
                panic!(
                    "run {run} did not end within {within:?}: {r}\nlog:\n{}",
                    quiet_logs(&self.server)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The thread's messages (its `values`).
    async fn messages(&self, thread: &str) -> Vec<Value> {
        let (status, t) = self.get(&format!("/threads/{thread}")).await;
        assert_eq!(status, 200, "{t}");
        t["values"]["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The one tool message of the thread.
    async fn tool_message(&self, thread: &str) -> Value {
        let tools: Vec<Value> = self
            .messages(thread)
            .await
            .into_iter()
            .filter(|m| m["type"] == "tool")
            .collect();
        assert_eq!(tools.len(), 1, "one tool message: {tools:?}");
        tools[0].clone()
    }

    /// Every event of an ended run, replayed from the start: (id, event, data).
    async fn events(&self, thread: &str, run: &str) -> Vec<(i64, String, String)> {
        let resp = client()
            .get(
                self.server
                    .url(&format!("/threads/{thread}/runs/{run}/stream")),
            )
            .bearer_auth(&self.key)
            .header("Last-Event-ID", "-1")
            .send();
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .expect("the stream of an ended run answers")
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
            .await
            .expect("the stream of an ended run ends")
            .unwrap();
        parse_sse(&text)
    }

    async fn metrics(&self) -> String {
        client()
            .get(self.server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The server's log without the per-request lines.
fn quiet_logs(server: &Server) -> String {
    server
        .logs()
        .lines()
        .filter(|l| !l.contains("Request served"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn new_key(server: &Server, tenant: &str) -> String {
    let resp = client()
        .post(server.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": format!("runtime-tests-{tenant}"), "tenant": tenant}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `Rt` with another tenant's key (same server).
struct Tenant<'a> {
    rt: &'a Rt,
    key: String,
}

impl Tenant<'_> {
    /// A fresh thread and a background run of `agent` on it: (thread, run).
    async fn start(&self, agent: &str, text: &str) -> (String, String) {
        let post = |path: String, body: Value| {
            client()
                .post(self.rt.server.url(&path))
                .bearer_auth(&self.key)
                .json(&body)
                .send()
        };
        let resp = post("/threads".into(), json!({})).await.unwrap();
        assert_eq!(resp.status(), 200);
        let t = resp.json::<Value>().await.unwrap()["thread_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let resp = post(
            format!("/threads/{t}/runs"),
            json!({"assistant_id": agent, "input": {"messages": [{"role": "user", "content": text}]}}),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        let run = resp.json::<Value>().await.unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_owned();
        (t, run)
    }

    /// Polls until the run ended; its status.
    async fn finished(&self, thread: &str, run: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let r: Value = client()
                .get(self.rt.server.url(&format!("/threads/{thread}/runs/{run}")))
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let status = r["status"].as_str().unwrap_or_default().to_owned();
            if TERMINAL.contains(&status.as_str()) {
                return status;
            }
            assert!(Instant::now() < deadline, "run {run} did not end: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn parse_sse(text: &str) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    for frame in text.split("\n\n") {
        let (mut id, mut event, mut data) = (None, None, String::new());
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.trim().parse::<i64>().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        if let (Some(id), Some(event)) = (id, event) {
            out.push((id, event, data));
        }
    }
    out
}

async fn sqlite(server: &Server) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(server.data_dir().join("agentd.db"))
        .read_only(true);
    sqlx::SqlitePool::connect_with(opts).await.unwrap()
}

/// Ledger rows whose request id belongs to `run`: (request id, status), by request id.
async fn ledger(server: &Server, run: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    let pool = sqlite(server).await;
    let rows = sqlx::query(
        "SELECT request_id, status FROM spend WHERE request_id LIKE ?1 ORDER BY request_id",
    )
    .bind(format!("{run}:%"))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
}

/// The journal of `run`: (step, kind, started_at ms, finished_at ms).
async fn steps(server: &Server, run: &str) -> Vec<(i64, String, i64, Option<i64>)> {
    use sqlx::Row;
    let pool = sqlite(server).await;
    let rows = sqlx::query(
        "SELECT step, kind, started_at, finished_at FROM run_steps WHERE run_id = ?1 ORDER BY step",
    )
    .bind(run)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// (first step started, last step finished) of an ended run, server clock, ms.
async fn span(server: &Server, run: &str) -> (i64, i64) {
    let s = steps(server, run).await;
    assert!(!s.is_empty(), "run {run} has steps");
    let start = s.iter().map(|x| x.2).min().unwrap();
    let end = s
        .iter()
        .map(|x| x.3.expect("every step of an ended run finished"))
        .max()
        .unwrap();
    (start, end)
}

/// Waits until `check` is true (polling every 50 ms), or panics with `what` after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An HTTP server on loopback that records each request's path and headers.
type Hits = Arc<Mutex<Vec<(String, axum::http::HeaderMap)>>>;

async fn recorder() -> (String, Hits) {
    recorder_slow_first(Duration::ZERO).await
}

/// As [`recorder`], but the first request is answered only after `delay`.
async fn recorder_slow_first(delay: Duration) -> (String, Hits) {
    let hits: Hits = Arc::default();
    let sink = hits.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let sink = sink.clone();
            async move {
                let first = {
                    let mut hits = sink.lock().unwrap();
                    hits.push((uri.path().to_owned(), headers));
                    hits.len() == 1
                };
                if first {
                    tokio::time::sleep(delay).await;
                }
                "pong from the test server"
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

// --- 1. tools fail into the conversation, not the run ---

#[tokio::test(flavor = "multi_thread")]
async fn an_http_tool_refused_by_the_ssrf_guard_tells_the_model_and_the_run_goes_on() {
    let (url, hits) = recorder().await;
    let rt = Rt::start(&format!(
        r#"
[tools.fetch_guarded]
kind = "http"
url = "{url}/guarded"

[tools.fetch_private]
kind = "http"
url = "{url}/private"
allow_private = true

[agents.guarded]
model = "mock"
tools = ["fetch_guarded"]

[agents.private]
model = "mock"
tools = ["fetch_private"]
"#
    ))
    .await;

    // Loopback without allow_private: refused before any connection.
    let t = rt.thread().await;
    let run = rt.run(&t, "guarded", "fetch it").await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "success", "{r}");
    let tool = rt.tool_message(&t).await;
    assert_eq!(tool["status"], "error", "{tool}");
    let content = tool["content"].as_str().unwrap();
    assert!(content.contains("refused"), "{content}");
    let last = rt.messages(&t).await.last().cloned().unwrap();
    assert_eq!(last["type"], "ai", "the model answered the refusal: {last}");
    assert!(
        hits.lock().unwrap().is_empty(),
        "the guarded tool reached the server"
    );

    // The same destination with allow_private: one call, keyed by the tool step.
    let t = rt.thread().await;
    let run = rt.run(&t, "private", "fetch it").await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "success", "{r}");
    let tool = rt.tool_message(&t).await;
    assert_eq!(tool["status"], "success", "{tool}");
    assert_eq!(tool["content"], "pong from the test server");
    let hits = hits.lock().unwrap().clone();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].0, "/private");
    assert_eq!(
        hits[0]
            .1
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok()),
        Some(format!("{run}:1").as_str()),
        "step 0 is the model call, step 1 the tool call"
    );
}

// --- 2. arguments that break the tool's schema ---

#[tokio::test(flavor = "multi_thread")]
async fn tool_arguments_that_break_the_schema_become_an_error_tool_message() {
    // The mock fills required properties with the simplest valid-looking value (`n = 1`),
    // which the schema's minimum refuses.
    let rt = Rt::start(
        r#"
[tools.count]
kind = "static"
parameters = { type = "object", properties = { n = { type = "integer", minimum = 5 } }, required = ["n"] }
result = "counted"

[agents.counter]
model = "mock"
tools = ["count"]
"#,
    )
    .await;
    let t = rt.thread().await;
    let run = rt.run(&t, "counter", "count something").await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "success", "{r}");
    let tool = rt.tool_message(&t).await;
    assert_eq!(tool["status"], "error", "{tool}");
    let content = tool["content"].as_str().unwrap();
    assert!(content.starts_with("invalid arguments"), "{content}");
    assert!(content.contains("/n"), "names the argument: {content}");
    assert!(
        !content.contains("counted"),
        "the tool did not run: {content}"
    );
}

// --- 3. agent tools ---

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_tool_runs_the_child_on_the_parents_bill() {
    let rt = Rt::start(
        r#"
[agents.helper]
model = "mock"
instructions = "You help."

[tools.ask]
kind = "agent"
agent = "helper"
parameters = { type = "object", properties = { task = { type = "string" } }, required = ["task"] }

[agents.boss]
model = "mock"
tools = ["ask"]
"#,
    )
    .await;
    let t = rt.thread().await;
    let run = rt.run(&t, "boss", "delegate this").await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "success", "{r}");
    let tool = rt.tool_message(&t).await;
    assert_eq!(tool["status"], "success", "{tool}");
    assert!(
        tool["content"].as_str().unwrap().starts_with("Mock reply"),
        "the helper's answer: {tool}"
    );
    // Three model calls, all under the parent run's ids: the boss's first call (step 0), the
    // helper's only call (inside tool step 1), the boss's answer (step 2).
    let want = vec![format!("{run}:0"), format!("{run}:1.0"), format!("{run}:2")];
    eventually(Duration::from_secs(5), "three ledger rows", || async {
        ledger(&rt.server, &run).await.len() >= 3
    })
    .await;
    let rows = ledger(&rt.server, &run).await;
    let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(ids, want, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "ok"), "{rows:?}");
    // Attributed to the parent's tenant and thread (the budget `session`).
    let attributed: Vec<(String, Option<String>)> = {
        use sqlx::Row;
        let pool = sqlite(&rt.server).await;
        let rows = sqlx::query("SELECT tenant, session FROM spend WHERE request_id LIKE ?1")
            .bind(format!("{run}:%"))
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    assert_eq!(
        attributed,
        vec![("acme".to_owned(), Some(t.clone())); 3],
        "{attributed:?}"
    );
    // And the spend report counts them for the parent's tenant.
    let resp = client()
        .get(rt.server.url("/admin/spend?group_by=tenant"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let spend: Value = resp.json().await.unwrap();
    let acme = spend["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "acme")
        .unwrap_or_else(|| panic!("acme in {spend}"))
        .clone();
    assert_eq!(acme["requests"], 3, "{spend}");
}

/// A boss whose `ask` tool hands the helper a task the mock answers slowly (the schema's
/// `const` is what the mock puts in the arguments): 20 tokens 300 ms apart, 6 s.
const SLOW_CHILD: &str = r#"
[agents.helper]
model = "mock"

[tools.ask]
kind = "agent"
agent = "helper"
parameters = { type = "object", properties = { task = { type = "string", const = "help slowly mock:token_delay_ms=300" } }, required = ["task"] }

[agents.boss]
model = "mock"
tools = ["ask"]

[agents.hasty]
model = "mock"
tools = ["ask"]
timeout_ms = 1500
"#;

/// Waits until the run's tool step (the child agent) has started, and a little more.
async fn in_child(rt: &Rt, run: &str) {
    eventually(Duration::from_secs(5), "the agent tool step", || async {
        steps(&rt.server, run)
            .await
            .iter()
            .any(|s| s.0 == 1 && s.1 == "tool")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_run_inside_an_agent_tool_interrupts_it_at_once() {
    let rt = Rt::start(SLOW_CHILD).await;
    let t = rt.thread().await;
    let run = rt.run(&t, "boss", "delegate").await;
    in_child(&rt, &run).await;
    let resp = client()
        .post(
            rt.server
                .url(&format!("/threads/{t}/runs/{run}/cancel?action=interrupt")),
        )
        .bearer_auth(&rt.key)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    // The helper would answer after ~6 s; the cancel must not wait for it (nor for a reaper).
    let r = rt.finished(&t, &run, Duration::from_secs(4)).await;
    assert_eq!(r["status"], "interrupted", "{r}");
    let events = rt.events(&t, &run).await;
    assert_eq!(
        events.last().map(|e| e.1.as_str()),
        Some("end"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_inside_an_agent_tool_ends_the_run_timeout() {
    let rt = Rt::start(SLOW_CHILD).await;
    let t = rt.thread().await;
    let run = rt.run(&t, "hasty", "delegate").await;
    let r = rt.finished(&t, &run, Duration::from_secs(5)).await;
    assert_eq!(r["status"], "timeout", "{r}");
    assert_eq!(r["attempt"], 1, "{r}");
    let events = rt.events(&t, &run).await;
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["error", "end"], "{events:?}");
}

// --- 4. run limits ---

#[tokio::test(flavor = "multi_thread")]
async fn run_limits_stop_a_run_before_the_call_that_would_break_them() {
    let rt = Rt::start(
        r#"
# $1000 per million tokens: a call's worst case (4096 output tokens) is about $4.
[models.priced]
provider = "local"
model = "mock"
price = { input = 1000, output = 1000 }

[agents.short]
model = "mock"
tools = ["lookup"]
max_steps = 1

[agents.poor]
model = "priced"
max_run_usd = "0.0001"

[agents.frugal]
model = "mock"
tools = ["lookup"]
max_run_tokens = 1
"#,
    )
    .await;

    // max_steps = 1: the model call is the one step; the tool call it asked for is not made.
    let t = rt.thread().await;
    let short = rt.run(&t, "short", "look it up").await;
    let r = rt.finished(&t, &short, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("max_steps"),
        "{}",
        r["error"]
    );
    assert!(
        rt.messages(&t).await.iter().all(|m| m["type"] != "tool"),
        "no tool step after max_steps"
    );

    // max_run_tokens = 1: the first call is admitted (nothing used yet), the second is not.
    let t = rt.thread().await;
    let frugal = rt.run(&t, "frugal", "look it up").await;
    let r = rt.finished(&t, &frugal, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("max_run_tokens"),
        "{}",
        r["error"]
    );

    // max_run_usd below the first call's worst case: no model call at all.
    let t = rt.thread().await;
    let poor = rt.run(&t, "poor", "hello").await;
    let r = rt.finished(&t, &poor, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "error", "{r}");
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("max_run_usd"), "{error}");
    let events = rt.events(&t, &poor).await;
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["error", "end"], "{events:?}");

    // The ledger: one call for `short` and `frugal` each, none for `poor`.
    eventually(Duration::from_secs(5), "the ledger rows", || async {
        ledger(&rt.server, &short).await.len() == 1 && ledger(&rt.server, &frugal).await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ledger(&rt.server, &short).await,
        vec![(format!("{short}:0"), "ok".to_owned())]
    );
    assert_eq!(
        ledger(&rt.server, &frugal).await,
        vec![(format!("{frugal}:0"), "ok".to_owned())]
    );
    assert_eq!(ledger(&rt.server, &poor).await, vec![]);
}

// --- 5. deadlines ---

#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_timeout_ends_timeout_with_error_then_end() {
    let rt = Rt::start(
        r#"
[agents.slowpoke]
model = "mock"
timeout_ms = 500
"#,
    )
    .await;
    let t = rt.thread().await;
    let started = Instant::now();
    // 20 tokens 400 ms apart: 8 s, far past the 0.5 s deadline.
    let run = rt
        .run(&t, "slowpoke", "take your time mock:token_delay_ms=400")
        .await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "timeout", "{r}");
    // (The end waits for the cut call's settlement, which counts its tokens: the tokenizer's
    // one-time build takes a second or more in a debug build.)
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended at the deadline, not after the model: {:?}",
        started.elapsed()
    );
    assert!(
        r["error"].as_str().unwrap().contains("timeout_ms"),
        "{}",
        r["error"]
    );
    let events = rt.events(&t, &run).await;
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names.last(), Some(&"end"), "{events:?}");
    assert_eq!(names[names.len() - 2], "error", "{events:?}");
    assert_eq!(names.iter().filter(|n| **n == "end").count(), 1);
    let error: Value = serde_json::from_str(&events[events.len() - 2].2).unwrap();
    assert_eq!(error["error"], "TimeoutError", "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_past_its_timeout_in_a_slow_http_tool_ends_timeout() {
    let (url, hits) = recorder_slow_first(Duration::from_secs(30)).await;
    let rt = Rt::start(&format!(
        r#"
[tools.hang]
kind = "http"
url = "{url}/hang"
allow_private = true
timeout_ms = 30000

[agents.waiter]
model = "mock"
tools = ["hang"]
timeout_ms = 1000
"#
    ))
    .await;
    let t = rt.thread().await;
    let started = Instant::now();
    let run = rt.run(&t, "waiter", "call it").await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "timeout", "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ended at the deadline, not after the tool: {:?}",
        started.elapsed()
    );
    assert_eq!(hits.lock().unwrap().len(), 1);
    let events = rt.events(&t, &run).await;
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["error", "end"], "{events:?}");
}

// --- 6. cancel while the model streams ---

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_streaming_run_stops_it_at_once_and_settles_the_call() {
    let rt = Rt::start(
        r#"
[agents.slow]
model = "mock"
"#,
    )
    .await;
    let t = rt.thread().await;
    // 20 tokens 400 ms apart: 8 s.
    let run = rt
        .run_with(
            &t,
            "slow",
            "talk slowly mock:token_delay_ms=400",
            json!({"stream_mode": ["messages-tuple"]}),
        )
        .await;
    // Streaming: its first tokens are in the run's events.
    eventually(Duration::from_secs(5), "the first token event", || async {
        use sqlx::Row;
        let pool = sqlite(&rt.server).await;
        let n: i64 =
            sqlx::query("SELECT COUNT(*) FROM run_events WHERE run_id = ?1 AND event = 'messages'")
                .bind(&run)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get(0);
        pool.close().await;
        n > 0
    })
    .await;
    let started = Instant::now();
    let resp = client()
        .post(rt.server.url(&format!(
            "/threads/{t}/runs/{run}/cancel?action=interrupt&wait=1"
        )))
        .bearer_auth(&rt.key)
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(resp.status().is_success(), "{}", resp.status());
    // Well before the model's 8 s (the cut call's settlement, which may build the tokenizer,
    // is on the way).
    assert!(
        took < Duration::from_secs(5),
        "cancel with wait=1 took {took:?}"
    );
    assert_eq!(rt.status(&t, &run).await, "interrupted");
    let events = rt.events(&t, &run).await;
    assert_eq!(
        events.last().map(|e| e.1.as_str()),
        Some("end"),
        "{events:?}"
    );
    // The aborted call is in the ledger, settled as client_closed.
    eventually(
        Duration::from_secs(5),
        "the cancelled call's ledger row",
        || async { !ledger(&rt.server, &run).await.is_empty() },
    )
    .await;
    assert_eq!(
        ledger(&rt.server, &run).await,
        vec![(format!("{run}:0"), "client_closed".to_owned())]
    );
    let metrics = rt.metrics().await;
    let closed = metrics
        .lines()
        .find(|l| l.starts_with("agentd_calls_client_closed_total"))
        .unwrap_or_else(|| panic!("no agentd_calls_client_closed_total in\n{metrics}"));
    let n: f64 = closed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{closed}");
}

// --- 7. delayed runs ---

#[tokio::test(flavor = "multi_thread")]
async fn delayed_runs_wait_for_their_time_and_cancel_at_once() {
    let rt = Rt::start(
        r#"
[agents.echo]
model = "mock"
"#,
    )
    .await;
    // A run due in 30 s, cancelled: ended by the cancel itself.
    let t = rt.thread().await;
    let later = rt
        .run_with(&t, "echo", "later", json!({"after_seconds": 30}))
        .await;
    assert_eq!(rt.status(&t, &later).await, "pending");
    let started = Instant::now();
    let resp = client()
        .post(rt.server.url(&format!(
            "/threads/{t}/runs/{later}/cancel?action=interrupt&wait=1"
        )))
        .bearer_auth(&rt.key)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(rt.status(&t, &later).await, "interrupted");

    // A run due in 1 s: pending until then, then done.
    let t = rt.thread().await;
    let sent = Instant::now();
    let soon = rt
        .run_with(&t, "echo", "soon", json!({"after_seconds": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = rt.status(&t, &soon).await;
    if sent.elapsed() < Duration::from_millis(900) {
        assert_eq!(status, "pending");
    }
    let r = rt.finished(&t, &soon, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "success", "{r}");
    assert!(sent.elapsed() >= Duration::from_secs(1));
    // On the server's clock: its first step started a second after it was created.
    let created: i64 = {
        use sqlx::Row;
        let pool = sqlite(&rt.server).await;
        let v = sqlx::query("SELECT created_at FROM runs WHERE run_id = ?1")
            .bind(&soon)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        pool.close().await;
        v
    };
    let (start, _) = span(&rt.server, &soon).await;
    assert!(
        start - created >= 1000,
        "started {} ms after creation",
        start - created
    );
}

// --- 8. priorities and concurrency caps ---

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_run_overtakes_queued_low_ones_in_a_busy_pool() {
    let rt = Rt::start(
        r#"
[pools.single]
concurrency = 1

[agents.low]
model = "mock"
pool = "single"
priority = "low"

[agents.crit]
model = "mock"
pool = "single"
priority = "critical"
"#,
    )
    .await;
    // Each run: 5 tokens 60 ms apart, ~0.3 s; the pool runs one at a time.
    let text = "work mock:tokens=5 mock:token_delay_ms=60";
    let mut lows = Vec::new();
    for _ in 0..6 {
        let t = rt.thread().await;
        let run = rt.run(&t, "low", text).await;
        lows.push((t, run));
    }
    let ct = rt.thread().await;
    let crit = rt.run(&ct, "crit", text).await;
    for (t, run) in lows.iter().chain([(ct.clone(), crit.clone())].iter()) {
        let r = rt.finished(t, run, Duration::from_secs(9)).await;
        assert_eq!(r["status"], "success", "{r}");
    }
    let (_, crit_end) = span(&rt.server, &crit).await;
    let mut after = 0;
    for (_, run) in &lows {
        let (_, end) = span(&rt.server, run).await;
        if end > crit_end {
            after += 1;
        }
    }
    assert!(
        after >= 4,
        "the critical run finished before only {after} of the 6 low ones queued ahead of it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_burst_does_not_hold_every_slot_of_a_pool_while_another_waits() {
    // Two slots, at most half of them per tenant while another tenant is active.
    let rt = Rt::start(
        r#"
[pools.shared]
concurrency = 2
max_tenant_share = 0.5

[agents.worker]
model = "mock"
pool = "shared"
"#,
    )
    .await;
    let (a, b) = (
        rt.as_tenant("tenant-a").await,
        rt.as_tenant("tenant-b").await,
    );
    // Tenant B is active: one quick run.
    let (t, run) = b.start("worker", "hello").await;
    assert_eq!(
        b.finished(&t, &run, Duration::from_secs(8)).await,
        "success"
    );
    // Tenant A bursts six ~0.4 s runs, then B asks for one more.
    let text = "work mock:tokens=5 mock:token_delay_ms=80";
    let mut burst = Vec::new();
    for _ in 0..6 {
        burst.push(a.start("worker", text).await);
    }
    let (bt, brun) = b.start("worker", text).await;
    assert_eq!(
        b.finished(&bt, &brun, Duration::from_secs(9)).await,
        "success"
    );
    for (t, run) in &burst {
        assert_eq!(a.finished(t, run, Duration::from_secs(9)).await, "success");
    }
    let (_, b_end) = span(&rt.server, &brun).await;
    let mut after = 0;
    for (_, run) in &burst {
        if span(&rt.server, run).await.1 > b_end {
            after += 1;
        }
    }
    // Without the cap, A's six runs take both slots for three rounds and B's comes last.
    assert!(
        after >= 3,
        "tenant B's run finished before only {after} of tenant A's six"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_runs_keeps_an_agents_runs_apart() {
    let rt = Rt::start(
        r#"
[agents.solo]
model = "mock"
tools = ["lookup"]
max_concurrent_runs = 1
"#,
    )
    .await;
    // Two model calls each, ~0.3 s apiece.
    let text = "work mock:tokens=5 mock:token_delay_ms=60";
    let (t1, t2) = (rt.thread().await, rt.thread().await);
    let (r1, r2) = tokio::join!(rt.run(&t1, "solo", text), rt.run(&t2, "solo", text));
    let mut both_running = false;
    let deadline = Instant::now() + Duration::from_secs(9);
    loop {
        let (s1, s2) = tokio::join!(rt.status(&t1, &r1), rt.status(&t2, &r2));
        both_running |= s1 == "running" && s2 == "running";
        if TERMINAL.contains(&s1.as_str()) && TERMINAL.contains(&s2.as_str()) {
            assert_eq!((s1.as_str(), s2.as_str()), ("success", "success"));
            break;
        }
        assert!(Instant::now() < deadline, "the runs did not end: {s1} {s2}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!both_running, "both runs were running at once");
    let (a, b) = (span(&rt.server, &r1).await, span(&rt.server, &r2).await);
    assert!(
        a.1 <= b.0 || b.1 <= a.0,
        "the runs' steps overlap: {a:?} {b:?}"
    );
}

// --- 9. a worker killed mid-run ---

#[tokio::test(flavor = "multi_thread")]
async fn a_run_survives_its_server_being_killed_and_finishes_after_restart() {
    let cfg = config(
        r#"
[queue]
lease_ms = 1000
reap_interval_ms = 500

[agents.react]
model = "mock"
tools = ["lookup"]
"#,
    );
    let rt = Rt::with_server(Server::start(Some(&cfg))).await;
    let t = rt.thread().await;
    // Each model call: 10 tokens 80 ms apart, 0.8 s.
    let run = rt
        .run(
            &t,
            "react",
            "look it up mock:tokens=10 mock:token_delay_ms=80",
        )
        .await;
    // Kill it in its second model call (step 2), after the tool step was journaled.
    eventually(Duration::from_secs(5), "the second model call", || async {
        steps(&rt.server, &run).await.iter().any(|s| s.0 == 2)
    })
    .await;
    let Rt {
        server: mut killed,
        key,
    } = rt;
    let mut child = killed.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let rt = Rt {
        server: Server::start_with(Options {
            config: Some(&cfg),
            data_dir: Some(killed.data_dir()),
            ..Options::default()
        }),
        key,
    };
    let r = rt.finished(&t, &run, Duration::from_secs(9)).await;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["attempt"], 2, "{r}");
    // Nothing repeated but the step in flight: one tool call, one answer.
    let kinds: Vec<String> = rt
        .messages(&t)
        .await
        .iter()
        .map(|m| m["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["human", "ai", "tool", "ai"], "{kinds:?}");
    let events = rt.events(&t, &run).await;
    let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
    let want: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(ids, want, "consecutive event ids: {events:?}");
    let ends = events.iter().filter(|e| e.1 == "end").count();
    assert_eq!(ends, 1, "{events:?}");
    assert_eq!(events.last().unwrap().1, "end");
    drop(killed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_longer_than_its_lease_keeps_it_and_runs_once() {
    let rt = Rt::start(
        r#"
[queue]
lease_ms = 1000
reap_interval_ms = 200

[agents.slow]
model = "mock"
"#,
    )
    .await;
    let t = rt.thread().await;
    // 3 s in one model call: three leases, renewed by the heartbeat.
    let run = rt.run(&t, "slow", "talk mock:token_delay_ms=150").await;
    let r = rt.finished(&t, &run, Duration::from_secs(9)).await;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["attempt"], 1, "never taken over: {r}");
    eventually(Duration::from_secs(5), "the ledger row", || async {
        !ledger(&rt.server, &run).await.is_empty()
    })
    .await;
    assert_eq!(
        ledger(&rt.server, &run).await,
        vec![(format!("{run}:0"), "ok".to_owned())],
        "one model call"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_worker_dies_more_than_max_deliveries_times_ends_error() {
    let cfg = config(
        r#"
[queue]
lease_ms = 1000
reap_interval_ms = 500
max_deliveries = 1

[agents.slow]
model = "mock"
"#,
    );
    let rt = Rt::with_server(Server::start(Some(&cfg))).await;
    let t = rt.thread().await;
    let run = rt.run(&t, "slow", "talk mock:token_delay_ms=150").await;
    eventually(Duration::from_secs(5), "the model call", || async {
        !steps(&rt.server, &run).await.is_empty()
    })
    .await;
    let Rt {
        server: mut killed,
        key,
    } = rt;
    let mut child = killed.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let rt = Rt {
        server: Server::start_with(Options {
            config: Some(&cfg),
            data_dir: Some(killed.data_dir()),
            ..Options::default()
        }),
        key,
    };
    let r = rt.finished(&t, &run, Duration::from_secs(9)).await;
    assert_eq!(r["status"], "error", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("max_deliveries"),
        "{}",
        r["error"]
    );
    let events = rt.events(&t, &run).await;
    let names: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["error", "end"], "{events:?}");
    drop(killed);
}

const SHUTDOWN_CFG: &str = r#"
[queue]
lease_ms = 1000
reap_interval_ms = 500

[agents.slow]
model = "mock"
"#;

/// Starts a slow run, then SIGTERMs the server in its model call (the first call this process
/// cuts) and waits for the exit: (the stopped server, the key, thread, run).
async fn stop_mid_call(cfg: &str) -> (Server, String, String, String) {
    let rt = Rt::with_server(Server::start(Some(cfg))).await;
    let t = rt.thread().await;
    // 20 tokens 150 ms apart: 3 s, longer than the 1 s drain grace.
    let run = rt.run(&t, "slow", "talk mock:token_delay_ms=150").await;
    eventually(Duration::from_secs(5), "the model call", || async {
        !steps(&rt.server, &run).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Rt {
        server: mut stopped,
        key,
    } = rt;
    stopped.sigterm();
    let status = stopped.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", quiet_logs(&stopped));
    stopped.child = None;
    (stopped, key, t, run)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_by_a_graceful_shutdown_resumes_after_restart() {
    let cfg = config(SHUTDOWN_CFG);
    let (stopped, key, t, run) = stop_mid_call(&cfg).await;
    let rt = Rt {
        server: Server::start_with(Options {
            config: Some(&cfg),
            data_dir: Some(stopped.data_dir()),
            ..Options::default()
        }),
        key,
    };
    let r = rt.finished(&t, &run, Duration::from_secs(9)).await;
    assert_eq!(r["status"], "success", "{r}");
    let kinds: Vec<String> = rt
        .messages(&t)
        .await
        .iter()
        .map(|m| m["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["human", "ai"], "{kinds:?}");
    let events = rt.events(&t, &run).await;
    let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
    let want: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(ids, want, "consecutive event ids: {events:?}");
    assert_eq!(events.iter().filter(|e| e.1 == "end").count(), 1);
    drop(stopped);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_cut_by_a_graceful_shutdown_is_in_the_ledger() {
    let (stopped, _key, _t, run) = stop_mid_call(&config(SHUTDOWN_CFG)).await;
    assert_eq!(
        ledger(&stopped, &run).await,
        vec![(format!("{run}:0"), "client_closed".to_owned())],
        "the cut call is in the ledger; log:\n{}",
        quiet_logs(&stopped)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_call_cut_by_a_crash_is_repeated_with_the_same_idempotency_key() {
    // The first call hangs; the server is killed while it waits.
    let (url, hits) = recorder_slow_first(Duration::from_secs(30)).await;
    let cfg = config(&format!(
        r#"
[queue]
lease_ms = 1000
reap_interval_ms = 500

[tools.fetch]
kind = "http"
url = "{url}/side-effect"
allow_private = true
timeout_ms = 30000

[agents.caller]
model = "mock"
tools = ["fetch"]
"#
    ));
    let rt = Rt::with_server(Server::start(Some(&cfg))).await;
    let t = rt.thread().await;
    let run = rt.run(&t, "caller", "call it").await;
    eventually(Duration::from_secs(5), "the tool call", || async {
        !hits.lock().unwrap().is_empty()
    })
    .await;
    let Rt {
        server: mut killed,
        key,
    } = rt;
    let mut child = killed.child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let rt = Rt {
        server: Server::start_with(Options {
            config: Some(&cfg),
            data_dir: Some(killed.data_dir()),
            ..Options::default()
        }),
        key,
    };
    let r = rt.finished(&t, &run, Duration::from_secs(9)).await;
    assert_eq!(r["status"], "success", "{r}");
    let hits = hits.lock().unwrap().clone();
    let keys: Vec<Option<&str>> = hits
        .iter()
        .map(|h| h.1.get("idempotency-key").and_then(|v| v.to_str().ok()))
        .collect();
    let want = format!("{run}:1");
    assert_eq!(
        keys,
        [Some(want.as_str()), Some(want.as_str())],
        "the interrupted call and its repetition carry the same key"
    );
    let tool = rt.tool_message(&t).await;
    assert_eq!(tool["content"], "pong from the test server");
    drop(killed);
}

// --- 10. bad input ---

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_naming_what_is_wrong() {
    let rt = Rt::start(
        r#"
[agents.echo]
model = "mock"
"#,
    )
    .await;
    let t = rt.thread().await;
    // Malformed JSON.
    let (status, body) = rt
        .send(
            client()
                .post(rt.server.url(&format!("/threads/{t}/runs")))
                .header("content-type", "application/json")
                .body("{\"assistant_id\": \"echo\", "),
        )
        .await;
    assert!(status == 422 || status == 400, "{status} {body}");
    assert!(body["detail"].is_string(), "{body}");
    // An unknown thread.
    let (status, body) = rt
        .post(
            "/threads/no-such-thread/runs",
            &json!({"assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]}}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    // A cron schedule with minute 61: refused, and nothing created.
    let (status, body) = rt
        .post(
            "/runs/crons",
            &json!({"assistant_id": "echo", "schedule": "61 * * * *"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("schedule"),
        "{body}"
    );
    let (status, body) = rt.post("/runs/crons/search", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([]), "no cron was created");
}

#[test]
fn check_config_refuses_unknown_tools_and_agent_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agents.toml");
    std::fs::write(
        &path,
        r#"[providers.local]
kind = "mock"

[models.mock]
provider = "local"

[agents.a]
model = "mock"
tools = ["ask_b", "nope"]

[agents.b]
model = "mock"
tools = ["ask_a"]

[tools.ask_a]
kind = "agent"
agent = "a"

[tools.ask_b]
kind = "agent"
agent = "b"
"#,
    )
    .unwrap();
    let out = base_command(&["check-config", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    // The unknown tool: file, line and key.
    assert!(err.contains("agents.toml:9:"), "{err}");
    assert!(err.contains("agents.a.tools[1]"), "{err}");
    assert!(err.contains("unknown tool \"nope\""), "{err}");
    // The cycle, spelled out.
    assert!(
        err.contains("agents.a → tools.ask_b → agents.b → tools.ask_a → agents.a"),
        "{err}"
    );
}

// --- 11. the sweeper and the metrics ---

#[tokio::test(flavor = "multi_thread")]
async fn expired_threads_are_swept_and_runs_show_in_the_metrics() {
    let rt = Rt::start(
        r#"
[agents.echo]
model = "mock"

[runtime]
sweep_interval_s = 1
"#,
    )
    .await;
    let t = rt.thread().await;
    let run = rt.run(&t, "echo", "hi").await;
    let r = rt.finished(&t, &run, Duration::from_secs(8)).await;
    assert_eq!(r["status"], "success", "{r}");
    eventually(
        Duration::from_secs(5),
        "agentd_runs_finished_total{agent=\"echo\",status=\"success\"}",
        || async {
            rt.metrics().await.lines().any(|l| {
                l.starts_with("agentd_runs_finished_total{")
                    && l.contains("agent=\"echo\"")
                    && l.contains("status=\"success\"")
                    && l.ends_with(" 1")
            })
        },
    )
    .await;
    let metrics = rt.metrics().await;
    let pools: BTreeSet<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("agentd_queue_depth{"))
        .filter_map(|l| l.split("pool=\"").nth(1)?.split('"').next())
        .collect();
    assert!(pools.contains("cpu"), "queue depth gauges: {pools:?}");

    // A thread with a 0.6 s TTL is gone within a few sweeps; one without stays.
    let (status, body) = rt
        .post(
            "/threads",
            &json!({"ttl": {"ttl": 0.01, "strategy": "delete"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let short = body["thread_id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(6),
        "the expired thread swept",
        || async { rt.get(&format!("/threads/{short}")).await.0 == 404 },
    )
    .await;
    assert_eq!(rt.get(&format!("/threads/{t}")).await.0, 200);
}

/// Pool schedules: `GET /admin/pools` and `agentd_pool_desired_workers` agree on the worker
/// count each pool wants — the business-hours minimum, a persistent pool's maximum, and enough
/// workers for queued work (capped) — and `--pools` (here `AGENTD_POOLS`) keeps this process's
/// workers off the other pools, so their runs wait for a worker of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_schedules_give_the_desired_worker_count_and_pools_limit_workers() {
    let server = Server::start_with(Options {
        config: Some(&config(
            r#"
[agents.queued]
model = "mock"
pool = "slow"

[pools.slow]
concurrency = 2
max_workers = 3

[pools.always]
persistent = true
max_workers = 5

[pools.biz]
max_workers = 1
[pools.biz.business_hours]
timezone = "UTC"
days = "mon-sun"
start = "00:00"
end = "24:00"
min_workers = 2
max_workers = 6
"#,
        )),
        env: vec![
            ("AGENTD_ADMIN_KEY", ADMIN_KEY.to_string()),
            ("AGENTD_POOLS", "cpu".to_string()),
        ],
        data_dir: None,
    });
    let rt = Rt::with_server(server).await;
    let pools = || async {
        let resp = client()
            .get(rt.server.url("/admin/pools"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["pool"].as_str().unwrap().to_owned(), p.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let before = pools().await;
    assert_eq!(before["biz"]["business_hours"], true);
    assert_eq!(before["biz"]["desired_workers"], 2, "{}", before["biz"]);
    assert_eq!(before["biz"]["max_workers"], 6);
    assert_eq!(before["always"]["desired_workers"], 5);
    assert_eq!(before["slow"]["desired_workers"], 0);
    assert_eq!(before["cpu"]["desired_workers"], 0);
    assert_eq!(before["biz"]["schedule"]["timezone"], "UTC");

    // Seven runs on `slow`, which this process does not work for: they wait, and the pool
    // wants ceil(7 / 2) = 4 workers, capped at its maximum of 3.
    let thread_ids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..7 {
            let t = rt.thread().await;
            rt.run(&t, "queued", "hello").await;
            v.push(t);
        }
        v
    };
    let after = pools().await;
    assert_eq!(after["slow"]["work"], 7, "{}", after["slow"]);
    assert_eq!(after["slow"]["desired_workers"], 3);
    eventually(
        Duration::from_secs(12),
        "agentd_pool_desired_workers{pool=\"slow\"} 3",
        || async {
            rt.metrics().await.lines().any(|l| {
                l.starts_with("agentd_pool_desired_workers{")
                    && l.contains("pool=\"slow\"")
                    && l.ends_with(" 3")
            })
        },
    )
    .await;
    let metrics = rt.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agentd_pool_desired_workers{")
                && l.contains("pool=\"always\"")
                && l.ends_with(" 5")),
        "{metrics}"
    );
    // Nothing ran them.
    for t in &thread_ids {
        let (_, runs) = rt.get(&format!("/threads/{t}/runs")).await;
        assert_eq!(runs[0]["status"], "pending", "{runs}");
    }
}
