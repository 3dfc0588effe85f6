//! The agent runtime under crashes, black-box: one API process and several worker processes of
//! the real binary on one PostgreSQL store and one work queue (Redis Streams, NATS JetStream or
//! the store's own), the mock LLM as a separate `agentd mock-llm` process, and an HTTP tool
//! served by the test that counts its calls per `Idempotency-Key`.
//!
//! - `*_kill_loop_*`: 200 runs (LLM → tool → LLM) while a random worker is SIGKILLed and
//!   restarted every 2 s, 20 times. Every run must end `success` once, with one journaled step
//!   per step, clean event streams, and repeats of side effects (tool calls, billed model calls)
//!   only where a run was taken over.
//! - `a_paused_worker_is_fenced_*`: the worker of a slow run is SIGSTOPped past its lease, the
//!   other worker takes the run over, then the first one is resumed: it must write nothing.
//!
//! They need `AGENTD_TEST_POSTGRES_URL`, `AGENTD_TEST_REDIS_URL` and `AGENTD_TEST_NATS_URL`
//! (skipped, saying so, when unset; a failure under CI).
#![cfg(all(feature = "redis", feature = "postgres", feature = "nats"))]

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------- processes

/// A child process of the real binary that can be killed, restarted with the same arguments,
/// stopped and continued; killed when dropped. Its stderr (every incarnation) is kept.
struct Proc {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    ready: &'static str,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    starts: usize,
    /// The port it listens on, the same after a restart.
    port: u16,
}

impl Proc {
    fn start(
        name: &str,
        port: u16,
        args: Vec<String>,
        env: Vec<(String, String)>,
        ready: &'static str,
    ) -> Proc {
        let mut p = Proc {
            name: name.to_owned(),
            args,
            env,
            ready,
            child: None,
            logs: Arc::default(),
            starts: 0,
            port,
        };
        p.spawn();
        p
    }

    /// Starts (again) and waits for the ready line on stderr.
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut cmd = base_command(&args);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start agentd");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = self.logs.clone();
        let ready = self.ready;
        let gen = self.starts;
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(ready) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                sink.lock().unwrap().push(format!("[{gen}] {line}"));
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not start; log:\n{}", self.name, self.logs());
        }
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and wait until it is gone.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.name);
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL also ends a SIGSTOPped process.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `agentd mock-llm` on a port of its own.
fn start_mock() -> (Proc, String) {
    let port = free_port();
    let mock = Proc::start(
        "mock-llm",
        port,
        vec![
            "mock-llm".into(),
            "--addr".into(),
            format!("127.0.0.1:{port}"),
        ],
        Vec::new(),
        "Mock LLM provider listening",
    );
    (mock, format!("http://127.0.0.1:{port}"))
}

/// `agentd serve --role ROLE` with `config` on a fixed port (so a restart keeps it).
fn start_agentd(name: &str, role: &str, config: &std::path::Path, dir: &std::path::Path) -> Proc {
    let port = free_port();
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    Proc::start(
        name,
        port,
        vec![
            "serve".into(),
            "-c".into(),
            config.to_str().unwrap().into(),
            "--data-dir".into(),
            data.to_str().unwrap().into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--role".into(),
            role.into(),
        ],
        vec![
            ("AGENTD_ADMIN_KEY".into(), ADMIN_KEY.into()),
            // The lease owner is `<HOSTNAME>-<pid>-<random>`.
            ("HOSTNAME".into(), name.into()),
        ],
        "agentd listening",
    )
}

// ------------------------------------------------------------------------ backing services

/// A PostgreSQL schema, a Redis key prefix and NATS streams of this test only, removed when
/// dropped (after the processes, which are declared later and so dropped first).
struct Backends {
    pg_base: String,
    schema: String,
    pool: sqlx::PgPool,
    redis: Option<String>,
    nats: Option<String>,
    prefix: String,
}

impl Backends {
    async fn new(
        pg_base: String,
        redis: Option<String>,
        nats: Option<String>,
        name: &str,
    ) -> Backends {
        let schema = unique(&format!("agentd_{name}"));
        // Creates the schema and runs the migrations once, before several processes race.
        let store = agentd_store::Store::open_postgres_in_schema(&pg_base, &schema)
            .await
            .unwrap();
        store.close().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&pg_base)
            .await
            .unwrap();
        // 1 to 32 of [A-Za-z0-9_-].
        let mut prefix = unique(name).replace('_', "-");
        prefix.truncate(32);
        Backends {
            pg_base,
            schema,
            pool,
            redis,
            nats,
            prefix,
        }
    }

    /// The store URL agentd gets: the test's schema first on the search path.
    fn store_url(&self) -> String {
        let sep = if self.pg_base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-csearch_path%3D{}",
            self.pg_base, self.schema
        )
    }

    fn t(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        let pg = self.pg_base.clone();
        let schema = self.schema.clone();
        let redis = self.redis.clone();
        let nats = self.nats.clone();
        let prefix = self.prefix.clone();
        // Drop runs inside the test's runtime: clean up on a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let redis_prefix = prefix.clone();
            rt.block_on(async move {
                let prefix = redis_prefix;
                if let Ok(pool) = sqlx::PgPool::connect(&pg).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
                if let Some(url) = redis {
                    if let Ok(client) = redis::Client::open(url.as_str()) {
                        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                            let keys: Vec<String> = redis::cmd("KEYS")
                                .arg(format!("{prefix}:*"))
                                .query_async(&mut conn)
                                .await
                                .unwrap_or_default();
                            for k in keys {
                                let _: Result<(), _> =
                                    redis::cmd("DEL").arg(k).query_async(&mut conn).await;
                            }
                        }
                    }
                }
            });
            if let Some(url) = nats {
                nats_delete_streams(&url, &[format!("{prefix}_work"), format!("{prefix}_dead")]);
            }
        })
        .join();
    }
}

/// Deletes JetStream streams with the core protocol (no NATS client among the dev-dependencies):
/// a request on `$JS.API.STREAM.DELETE.<name>` per stream. Best effort.
fn nats_delete_streams(url: &str, streams: &[String]) {
    let host = url
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned();
    let Ok(mut conn) = std::net::TcpStream::connect(&host) else {
        return;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut out =
        String::from("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.killtest 1\r\n");
    for s in streams {
        out.push_str(&format!(
            "PUB $JS.API.STREAM.DELETE.{s} _INBOX.killtest 0\r\n\r\n"
        ));
    }
    out.push_str("PING\r\n");
    let _ = conn.write_all(out.as_bytes());
    // Read the replies (or time out): the server has handled the requests by then.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && seen.matches("MSG ").count() < streams.len() {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
}

// ------------------------------------------------------------------------ the tool server

/// Calls of the `count` tool by idempotency key.
type Counts = Arc<Mutex<HashMap<String, u32>>>;

/// An HTTP tool that counts calls per `Idempotency-Key`; answers after `delay` (so a kill can
/// land while a tool call is in flight).
async fn spawn_count_server(delay: Duration) -> (SocketAddr, Counts) {
    use axum::extract::State;
    use axum::http::HeaderMap;
    let counts: Counts = Arc::default();
    async fn count(
        State((counts, delay)): State<(Counts, Duration)>,
        headers: HeaderMap,
    ) -> axum::Json<Value> {
        let key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let n = {
            let mut c = counts.lock().unwrap();
            let n = c.entry(key.clone()).or_default();
            *n += 1;
            *n
        };
        tokio::time::sleep(delay).await;
        axum::Json(json!({"key": key, "call": n}))
    }
    let app = axum::Router::new()
        .route("/count", axum::routing::post(count))
        .with_state((counts.clone(), delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, counts)
}

// ------------------------------------------------------------------------------ the config

fn config(mock_url: &str, tool_addr: SocketAddr, store_url: &str, queue: &str) -> String {
    format!(
        r#"
[server]
shutdown_grace_ms = 1000
log_format = "json"

[auth]
key_cache_ttl_ms = 2000

[store]
kind = "postgres"
url = "{store_url}"
max_connections = 12

[providers.up]
kind = "openai"
base_url = "{mock_url}/v1"
api_key = "sk-mock-upstream"

[models.mock]
provider = "up"
model = "mock"

[prices.mock]
input = 1
output = 1

[agents.loop]
model = "mock"
tools = ["count"]

[tools.count]
kind = "http"
description = "Counts."
url = "http://{tool_addr}/count"
method = "POST"
allow_private = true

[pools.cpu]
concurrency = 16

{queue}
"#
    )
}

// ----------------------------------------------------------------------------- API helpers

async fn create_key(api: &str) -> String {
    let resp = client()
        .post(format!("{api}/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "kill", "tenant": "kill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Makes a thread and starts a background run on it: (thread id, run id).
async fn start_run(http: &reqwest::Client, api: &str, key: &str, text: &str) -> (String, String) {
    let resp = http
        .post(format!("{api}/threads"))
        .header("x-api-key", key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "POST /threads");
    let thread: Value = resp.json().await.unwrap();
    let thread_id = thread["thread_id"].as_str().unwrap().to_owned();
    let resp = http
        .post(format!("{api}/threads/{thread_id}/runs"))
        .header("x-api-key", key)
        .json(&json!({
            "assistant_id": "loop",
            "input": {"messages": [{"role": "user", "content": text}]},
        }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let run: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "POST /threads/{thread_id}/runs: {run}");
    (thread_id, run["run_id"].as_str().unwrap().to_owned())
}

async fn get_json(http: &reqwest::Client, url: &str, key: &str) -> Value {
    let resp = http.get(url).header("x-api-key", key).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

/// One SSE frame: (event, data, id).
#[derive(Debug, Clone)]
struct Frame {
    event: String,
    data: String,
    id: Option<i64>,
}

/// The whole event stream of a run (`Last-Event-ID: -1`), read until the server closes it.
async fn replay(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    thread: &str,
    run: &str,
) -> Vec<Frame> {
    let resp = http
        .get(format!("{api}/threads/{thread}/runs/{run}/stream"))
        .header("x-api-key", key)
        .header("Last-Event-ID", "-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "stream of {run}");
    let text = tokio::time::timeout(Duration::from_secs(30), resp.text())
        .await
        .expect("the stream of an ended run closes")
        .unwrap();
    parse_sse(&text)
}

fn parse_sse(text: &str) -> Vec<Frame> {
    let mut frames = Vec::new();
    let (mut event, mut data, mut id) = (String::new(), Vec::<String>::new(), None);
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !event.is_empty() || !data.is_empty() || id.is_some() {
                frames.push(Frame {
                    event: std::mem::take(&mut event),
                    data: std::mem::take(&mut data).join("\n"),
                    id: id.take(),
                });
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "data" => data.push(value.to_owned()),
            "id" => id = value.parse().ok(),
            _ => {}
        }
    }
    frames
}

/// Event ids 1..n, consecutive and unique; `metadata` first; exactly one `end`, last.
fn check_stream(frames: &[Frame]) -> Result<(), String> {
    let ids: Vec<Option<i64>> = frames.iter().map(|f| f.id).collect();
    let want: Vec<Option<i64>> = (1..=frames.len() as i64).map(Some).collect();
    if ids != want {
        return Err(format!("event ids {ids:?} are not 1..{}", frames.len()));
    }
    if frames.first().map(|f| f.event.as_str()) != Some("metadata") {
        return Err(format!("first event is not metadata: {:?}", frames.first()));
    }
    if let Some(bad) = frames
        .iter()
        .find(|f| serde_json::from_str::<Value>(&f.data).is_err())
    {
        return Err(format!("event data is not JSON: {bad:?}"));
    }
    let ends = frames.iter().filter(|f| f.event == "end").count();
    if ends != 1 || frames.last().map(|f| f.event.as_str()) != Some("end") {
        return Err(format!(
            "{ends} end events, last {:?}",
            frames.last().map(|f| &f.event)
        ));
    }
    Ok(())
}

/// Final thread values: [human, ai with one tool call, one tool result, final ai].
fn check_values(thread: &Value) -> Result<(), String> {
    let messages = thread["values"]["messages"]
        .as_array()
        .ok_or_else(|| format!("no values.messages: {thread}"))?;
    let types: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?"))
        .collect();
    if types != ["human", "ai", "tool", "ai"] {
        return Err(format!("message types {types:?}"));
    }
    let calls = messages[1]["tool_calls"].as_array().map_or(0, Vec::len);
    if calls != 1 {
        return Err(format!("the first ai message has {calls} tool calls"));
    }
    if messages[3]["tool_calls"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
    {
        return Err("the final ai message calls tools".into());
    }
    if messages[2]["tool_call_id"] != messages[1]["tool_calls"][0]["id"] {
        return Err("the tool result does not answer the tool call".into());
    }
    Ok(())
}

// --------------------------------------------------------------------------- store readers

#[derive(Debug, Clone)]
struct RunRow {
    status: String,
    attempt: i32,
    epoch: i64,
    owner: Option<String>,
}

async fn run_rows(b: &Backends) -> HashMap<String, RunRow> {
    use sqlx::Row;
    sqlx::query(&format!(
        "SELECT run_id, status, attempt, lease_epoch, lease_owner FROM {}",
        b.t("runs")
    ))
    .fetch_all(&b.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get::<String, _>(0),
            RunRow {
                status: r.get(1),
                attempt: r.get(2),
                epoch: r.get(3),
                owner: r.get(4),
            },
        )
    })
    .collect()
}

/// run id → [(step, epoch, kind, finished)].
async fn step_rows(b: &Backends) -> HashMap<String, Vec<(i32, i64, String, bool)>> {
    use sqlx::Row;
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for r in sqlx::query(&format!(
        "SELECT run_id, step, epoch, kind, finished_at IS NOT NULL FROM {} ORDER BY run_id, step",
        b.t("run_steps")
    ))
    .fetch_all(&b.pool)
    .await
    .unwrap()
    {
        out.entry(r.get::<String, _>(0)).or_default().push((
            r.get::<i32, _>(1),
            r.get::<i64, _>(2),
            r.get::<String, _>(3),
            r.get::<bool, _>(4),
        ));
    }
    out
}

/// Ledger rows per request id.
async fn spend_rows(b: &Backends) -> HashMap<String, i64> {
    use sqlx::Row;
    sqlx::query(&format!(
        "SELECT request_id, COUNT(*) FROM {} GROUP BY request_id",
        b.t("spend")
    ))
    .fetch_all(&b.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
    .collect()
}

/// (seq, event) of a run, in order.
async fn event_rows(b: &Backends, run_id: &str) -> Vec<(i64, String)> {
    use sqlx::Row;
    sqlx::query(&format!(
        "SELECT seq, event FROM {} WHERE run_id = $1 ORDER BY seq",
        b.t("run_events")
    ))
    .bind(run_id)
    .fetch_all(&b.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
    .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// When a step finished (unix seconds; 0 when it did not).
async fn step_finished_at(b: &Backends, run_id: &str, step: i32) -> f64 {
    sqlx::query_scalar::<_, Option<f64>>(&format!(
        "SELECT EXTRACT(EPOCH FROM finished_at)::float8 FROM {} WHERE run_id = $1 AND step = $2",
        b.t("run_steps")
    ))
    .bind(run_id)
    .bind(step)
    .fetch_optional(&b.pool)
    .await
    .unwrap()
    .flatten()
    .unwrap_or(0.0)
}

/// A small xorshift generator: which worker dies next (no `rand` among the dev-dependencies).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(nanos | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ------------------------------------------------------------------------------- kill loop

const RUNS: usize = 200;
const KILLS: usize = 20;
const WORKERS: usize = 3;
const CONCURRENCY: usize = 16;

async fn kill_loop(queue_kind: &str, url_var: &str) {
    let Some(pg) = env_url("AGENTD_TEST_POSTGRES_URL") else {
        return;
    };
    let Some(queue_url) = env_url(url_var) else {
        return;
    };
    let started = Instant::now();
    let (redis, nats) = match queue_kind {
        "redis" => (Some(queue_url.clone()), None),
        _ => (None, Some(queue_url.clone())),
    };
    let b = Backends::new(pg, redis, nats, &format!("kill_{queue_kind}")).await;
    let (tool_addr, counts) = spawn_count_server(Duration::from_millis(150)).await;
    let (_mock, mock_url) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let queue = format!(
        "[queue]\nkind = \"{queue_kind}\"\nurl = \"{queue_url}\"\nprefix = \"{}\"\nlease_ms = 2000\nreap_interval_ms = 1000\n",
        b.prefix
    );
    let cfg_path = dir.path().join("agentd.toml");
    std::fs::write(
        &cfg_path,
        config(&mock_url, tool_addr, &b.store_url(), &queue),
    )
    .unwrap();
    let api = start_agentd("kill-api", "api", &cfg_path, dir.path());
    let api_url = format!("http://127.0.0.1:{}", api.port);
    let mut workers: Vec<Proc> = (0..WORKERS)
        .map(|i| start_agentd(&format!("kill-w{i}"), "worker", &cfg_path, dir.path()))
        .collect();
    let key = create_key(&api_url).await;
    let http = client();

    // The runs are created over the kill window (one every 180 ms, each in the background), so
    // every kill lands among runs in flight; the LLM calls take ~0.4 s each
    // (`mock:token_delay_ms=20`), the tool call 150 ms.
    let creator = {
        let (http, api_url, key) = (http.clone(), api_url.clone(), key.clone());
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            let t0 = tokio::time::Instant::now();
            for i in 0..RUNS {
                tokio::time::sleep_until(t0 + Duration::from_millis(180 * i as u64)).await;
                let (http, api_url, key) = (http.clone(), api_url.clone(), key.clone());
                tasks.push(tokio::spawn(async move {
                    start_run(
                        &http,
                        &api_url,
                        &key,
                        &format!("count {i} mock:token_delay_ms=20"),
                    )
                    .await
                }));
            }
            let mut runs = Vec::new();
            for t in tasks {
                runs.push(t.await.unwrap());
            }
            runs
        })
    };

    // Every ~2 s one random worker dies (SIGKILL) and comes back on its port and config.
    let mut rng = Rng::seeded();
    let mut kills_by_worker = vec![0usize; WORKERS];
    // When each kill happened (unix seconds) and to whom, to explain what it cut short.
    let mut kill_times: Vec<(f64, usize)> = Vec::new();
    let mut next = Instant::now() + Duration::from_secs(2);
    for _ in 0..KILLS {
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
        next += Duration::from_secs(2);
        let i = rng.below(WORKERS);
        kills_by_worker[i] += 1;
        kill_times.push((unix_now(), i));
        let w = &mut workers[i];
        assert!(w.alive(), "{} died by itself:\n{}", w.name, w.logs());
        w.kill9();
        tokio::task::block_in_place(|| w.spawn());
    }
    let runs = creator.await.unwrap();
    let created_at = started.elapsed();

    // Every run ends (bounded: 3 minutes).
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let rows = run_rows(&b).await;
        let open: Vec<_> = rows
            .iter()
            .filter(|(_, r)| r.status == "pending" || r.status == "running")
            .collect();
        if rows.len() == RUNS && open.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let sample: Vec<_> = open.iter().take(5).collect();
            panic!(
                "{} of {} runs still open after 3 minutes, e.g. {sample:?}\n--- worker 0 log tail ---\n{}",
                open.len(),
                rows.len(),
                tail(&workers[0].logs(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_at = started.elapsed();
    // Let the surviving workers' ledgers flush (every 100 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    for w in &mut workers {
        assert!(
            w.alive(),
            "{} died by itself:\n{}",
            w.name,
            tail(&w.logs(), 40)
        );
    }

    let rows = run_rows(&b).await;
    let steps = step_rows(&b).await;
    let spend = spend_rows(&b).await;
    let counts = counts.lock().unwrap().clone();
    let mut failures: Vec<String> = Vec::new();
    let mut tool_repeats = 0u32;
    let mut ledger_extra = 0i64;
    let mut ledger_missing: Vec<String> = Vec::new();
    let mut takeovers = 0i32;
    let mut extra_events: Vec<String> = Vec::new();
    let run_ids: std::collections::HashSet<&str> = runs.iter().map(|(_, r)| r.as_str()).collect();

    // Calls of the tool: only by the runs' tool steps (step 1).
    for k in counts.keys() {
        match k.rsplit_once(':') {
            Some((run, "1")) if run_ids.contains(run) => {}
            _ => failures.push(format!("the tool was called with an unknown key {k:?}")),
        }
    }

    // Checks on every run through the API, 16 at a time.
    let checks = join_limited(runs.iter().cloned().map(|(thread, run)| {
        let (http, api_url, key) = (http.clone(), api_url.clone(), key.clone());
        async move {
            let mut errs = Vec::new();
            let r = get_json(
                &http,
                &format!("{api_url}/threads/{thread}/runs/{run}"),
                &key,
            )
            .await;
            if r["status"] != "success" {
                errs.push(format!(
                    "run {run}: status {} error {}",
                    r["status"], r["error"]
                ));
            }
            let t = get_json(&http, &format!("{api_url}/threads/{thread}"), &key).await;
            if let Err(e) = check_values(&t) {
                errs.push(format!("run {run}: thread values: {e}"));
            }
            let frames = replay(&http, &api_url, &key, &thread, &run).await;
            if let Err(e) = check_stream(&frames) {
                errs.push(format!("run {run}: stream: {e}"));
            }
            let names: Vec<String> = frames.into_iter().map(|f| f.event).collect();
            (run, errs, names)
        }
    }))
    .await;
    for (run, errs, names) in checks {
        failures.extend(errs);
        // metadata, values (input), one values per step, end.
        if names.len() > 6 {
            extra_events.push(format!(
                "{run} (attempts {:?}): {names:?}",
                rows.get(&run).map(|r| r.attempt)
            ));
        }
        let Some(row) = rows.get(&run) else {
            failures.push(format!("run {run}: no row"));
            continue;
        };
        if row.status != "success" {
            failures.push(format!("run {run}: store status {}", row.status));
        }
        let attempts = row.attempt.max(1);
        takeovers += attempts - 1;
        // The journal: steps 0 (llm), 1 (tool), 2 (llm), each once and finished.
        let journal = steps.get(&run).cloned().unwrap_or_default();
        let shape: Vec<(i32, &str, bool)> = journal
            .iter()
            .map(|(s, _, k, done)| (*s, k.as_str(), *done))
            .collect();
        if shape != [(0, "llm", true), (1, "tool", true), (2, "llm", true)] {
            failures.push(format!("run {run}: journal {journal:?}"));
        }
        if journal.iter().any(|(_, epoch, _, _)| *epoch > row.epoch) {
            failures.push(format!(
                "run {run}: a step of an epoch after the run's {}",
                row.epoch
            ));
        }
        // The tool: called at least once, and at most once per attempt of the run (a step in
        // flight when its worker died is repeated, with the same key, by the next attempt).
        let calls = counts.get(&format!("{run}:1")).copied().unwrap_or(0);
        if calls == 0 || calls as i32 > attempts {
            failures.push(format!(
                "run {run}: the tool was called {calls} times in {attempts} attempts"
            ));
        }
        tool_repeats += calls.saturating_sub(1);
        // The ledger: each model call (`<run>:<step>`) billed at most once per attempt.
        for step in [0, 2] {
            let n = spend.get(&format!("{run}:{step}")).copied().unwrap_or(0);
            if n == 0 {
                let finished = step_finished_at(&b, &run, step).await;
                let next_kill = kill_times
                    .iter()
                    .filter(|(t, _)| *t >= finished)
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(t, w)| {
                        format!(
                            "{:.0} ms before worker {w} was killed",
                            (t - finished) * 1e3
                        )
                    })
                    .unwrap_or_else(|| "after the last kill".into());
                ledger_missing.push(format!(
                    "{run}:{step} (attempts {attempts}, step finished {next_kill})"
                ));
            }
            if n > attempts as i64 {
                failures.push(format!(
                    "run {run}: model call {step} billed {n} times in {attempts} attempts"
                ));
            }
            ledger_extra += (n - 1).max(0);
        }
    }
    // No ledger row for a request id that is not a model step of one of the runs.
    for id in spend.keys() {
        let known = id
            .rsplit_once(':')
            .is_some_and(|(run, s)| run_ids.contains(run) && (s == "0" || s == "2"));
        if !known {
            failures.push(format!("a ledger row with request id {id:?}"));
        }
    }
    // Repeats only come from kills: each kill can cut at most CONCURRENCY runs short.
    let bound = (KILLS * CONCURRENCY) as u32;
    if tool_repeats > bound {
        failures.push(format!(
            "{tool_repeats} repeated tool calls for {KILLS} kills"
        ));
    }
    if ledger_extra > bound as i64 {
        failures.push(format!(
            "{ledger_extra} repeated model calls for {KILLS} kills"
        ));
    }
    if takeovers as u32 > bound {
        failures.push(format!("{takeovers} takeovers for {KILLS} kills"));
    }
    eprintln!(
        "kill loop [{queue_kind}]: runs={RUNS} kills={KILLS} (by worker {kills_by_worker:?}) \
         takeovers={takeovers} tool_repeats={tool_repeats} ledger_repeats={ledger_extra} \
         ledger_missing={} runs_with_extra_events={} \
         created_in={created_at:?} all_ended_at={settled_at:?} total={:?}",
        ledger_missing.len(),
        extra_events.len(),
        started.elapsed()
    );
    for e in extra_events.iter().take(10) {
        eprintln!("  run with extra events: {e}");
    }
    // A model call the journal recorded as done (with its cost) is never repeated, so its
    // ledger row is the only record of what the provider billed: it must exist.
    for m in &ledger_missing {
        failures.push(format!(
            "journaled model call {m} has no ledger row (the provider billed it)"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Kills that cut a run short were seen: the test exercised what it claims to.
    assert!(
        takeovers > 0,
        "no run was ever taken over: the kills missed"
    );
}

/// Runs the futures 16 at a time; results in order.
async fn join_limited<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let handles: Vec<_> = futs
        .map(|f| {
            let sem = sem.clone();
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                f.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_survive_a_kill_loop_of_workers_on_redis_streams_and_postgres() {
    kill_loop("redis", "AGENTD_TEST_REDIS_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_survive_a_kill_loop_of_workers_on_nats_jetstream_and_postgres() {
    kill_loop("nats", "AGENTD_TEST_NATS_URL").await;
}

// -------------------------------------------------------------------------------- fencing

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_worker_is_fenced_once_another_took_its_run_over() {
    let Some(pg) = env_url("AGENTD_TEST_POSTGRES_URL") else {
        return;
    };
    let b = Backends::new(pg, None, None, "fence").await;
    let (tool_addr, counts) = spawn_count_server(Duration::ZERO).await;
    let (_mock, mock_url) = start_mock();
    let dir = tempfile::tempdir().unwrap();
    let queue = "[queue]\nkind = \"store\"\nlease_ms = 1500\nreap_interval_ms = 500\n";
    let cfg_path = dir.path().join("agentd.toml");
    std::fs::write(
        &cfg_path,
        config(&mock_url, tool_addr, &b.store_url(), queue),
    )
    .unwrap();
    let api = start_agentd("fence-api", "api", &cfg_path, dir.path());
    let api_url = format!("http://127.0.0.1:{}", api.port);
    let mut workers: Vec<Proc> = (0..2)
        .map(|i| start_agentd(&format!("fence-w{i}"), "worker", &cfg_path, dir.path()))
        .collect();
    let key = create_key(&api_url).await;
    let http = client();
    let started = Instant::now();

    // Each model call of this run streams 20 tokens 300 ms apart: ~6 s.
    let (thread, run) = start_run(&http, &api_url, &key, "slow mock:token_delay_ms=300").await;

    // Its first model call is in flight (step 0 started under epoch 1) on some worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first_owner = loop {
        let row = run_rows(&b).await.get(&run).cloned();
        let steps = step_rows(&b).await.get(&run).cloned().unwrap_or_default();
        if let Some(row) = row {
            if row.status == "running" && row.epoch == 1 && !steps.is_empty() {
                assert_eq!(steps[0].1, 1);
                break row.owner.expect("a running run has a lease owner");
            }
        }
        assert!(Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held = workers
        .iter()
        .position(|w| first_owner.starts_with(&format!("{}-{}-", w.name, w.pid())))
        .unwrap_or_else(|| panic!("no worker owns {first_owner}"));
    let other = 1 - held;

    // Pause its worker past the lease, until the other worker has taken the run over.
    workers[held].signal("STOP");
    let stopped_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        let row = run_rows(&b).await.get(&run).cloned().unwrap();
        if row.attempt >= 2 {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "nobody took the run over: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Stay stopped at least 5 s (more than three leases).
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(stopped_at.elapsed())).await;
    assert_eq!(second.attempt, 2, "{second:?}");
    assert_eq!(second.epoch, 2, "{second:?}");
    let second_owner = second.owner.clone().unwrap();
    assert!(
        second_owner.starts_with(&format!(
            "{}-{}-",
            workers[other].name,
            workers[other].pid()
        )),
        "the run was taken over by {second_owner}, not the other worker"
    );
    let resumed_at = started.elapsed();
    workers[held].signal("CONT");

    // The run ends, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let end = loop {
        let row = run_rows(&b).await.get(&run).cloned().unwrap();
        if row.status != "running" && row.status != "pending" {
            break row;
        }
        assert!(Instant::now() < deadline, "the run never ended: {row:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(end.status, "success", "{end:?}");
    assert_eq!(end.epoch, 2, "{end:?}");
    let ended_at = started.elapsed();

    // Give the resumed worker every chance to write something: its own model call of step 0
    // has long returned (or was cut off) by now, and its ledger row (if any) is written.
    let deadline = Instant::now() + Duration::from_secs(10);
    while spend_rows(&b)
        .await
        .get(&format!("{run}:0"))
        .copied()
        .unwrap_or(0)
        < 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        workers[held].alive(),
        "the paused worker died:\n{}",
        workers[held].logs()
    );

    // The journal: every step finished under the new epoch; the first attempt's step 0 never
    // finished under epoch 1.
    let steps = step_rows(&b).await.get(&run).cloned().unwrap_or_default();
    assert_eq!(
        steps,
        vec![
            (0, 2, "llm".to_owned(), true),
            (1, 2, "tool".to_owned(), true),
            (2, 2, "llm".to_owned(), true),
        ],
        "the journal"
    );
    // Events: consecutive unique ids, one end, nothing from the paused worker after it resumed
    // (values mode: metadata, the input, one values per step, end).
    let events = event_rows(&b, &run).await;
    let names: Vec<&str> = events.iter().map(|(_, e)| e.as_str()).collect();
    let seqs: Vec<i64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(
        names,
        ["metadata", "values", "values", "values", "values", "end"],
        "{events:?}"
    );
    let frames = replay(&http, &api_url, &key, &thread, &run).await;
    check_stream(&frames).unwrap();
    assert_eq!(frames.len(), events.len());
    let t = get_json(&http, &format!("{api_url}/threads/{thread}"), &key).await;
    check_values(&t).unwrap();
    let r = get_json(
        &http,
        &format!("{api_url}/threads/{thread}/runs/{run}"),
        &key,
    )
    .await;
    assert_eq!(r["status"], "success");
    assert_eq!(r["attempt"], 2);
    // Side effects: the tool ran once (the paused worker never got past step 0); the model call
    // of step 0 was billed at most twice (once per attempt), step 2 once.
    let counts = counts.lock().unwrap().clone();
    assert_eq!(
        counts.get(&format!("{run}:1")).copied(),
        Some(1),
        "{counts:?}"
    );
    assert_eq!(counts.len(), 1, "{counts:?}");
    let spend = spend_rows(&b).await;
    let billed0 = spend.get(&format!("{run}:0")).copied().unwrap_or(0);
    let billed2 = spend.get(&format!("{run}:2")).copied().unwrap_or(0);
    assert!((1..=2).contains(&billed0), "{spend:?}");
    assert_eq!(billed2, 1, "{spend:?}");
    let paused_log = workers[held].logs();
    let fenced_logged = paused_log
        .lines()
        .any(|l| l.contains(&run) && (l.contains("taken over") || l.contains("enced")));
    eprintln!(
        "fencing: run {run} held by {first_owner}, taken over by {second_owner} \
         (resumed at {resumed_at:?}, ended at {ended_at:?}); step-0 billed {billed0}x; \
         paused worker logged the fencing: {fenced_logged}; total {:?}",
        started.elapsed()
    );
}
