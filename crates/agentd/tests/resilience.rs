//! Resilience and cost control, black-box: the real binary against mock provider servers that
//! inject faults, and (for the multi-replica tests) the real Redis and PostgreSQL named by
//! `AGENTD_TEST_REDIS_URL` / `AGENTD_TEST_POSTGRES_URL` (skipped, saying so, when unset; a
//! failure under CI).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn arm(mock: &agentd_mock::MockServer, fault: Value) {
    let resp = client()
        .post(format!("{}/_mock/faults", mock.url()))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "arming {fault}");
}

async fn mock_requests(mock: &agentd_mock::MockServer) -> Vec<Value> {
    let v: Value = client()
        .get(format!("{}/_mock/requests", mock.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v.as_array()
        .cloned()
        .or_else(|| v["data"].as_array().cloned())
        .unwrap_or_default()
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20})
}

async fn post_chat(server: &Server, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn admin_get(server: &Server, path: &str) -> Value {
    let resp = client()
        .get(server.url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

fn breaker_state(breakers: &Value, deployment: &str) -> String {
    breakers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["deployment"] == deployment)
        .unwrap_or_else(|| panic!("no breaker for {deployment}: {breakers}"))["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn two_upstreams(primary: &str, backup: &str, extra: &str) -> String {
    format!(
        r#"
[providers.primary]
kind = "openai"
base_url = "{primary}/v1"
api_key = "sk-primary"

[providers.backup]
kind = "openai"
base_url = "{backup}/v1"
api_key = "sk-backup"

[models.smart]
deployments = [{{ provider = "primary", model = "mock" }}]
fallbacks = ["spare"]
max_retries = 0

[models.spare]
provider = "backup"
model = "mock"

[routing]
retry_backoff_ms = 1

[routing.breaker]
consecutive_failures = 3
open_ms = 1500
half_open_probes = 1
{extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn breaker_opens_traffic_falls_back_and_the_breaker_closes_on_recovery() {
    let primary = agentd_mock::spawn(Default::default()).await.unwrap();
    let backup = agentd_mock::spawn(Default::default()).await.unwrap();
    let server = Server::start(Some(&two_upstreams(&primary.url(), &backup.url(), "")));
    let key = server.create_key("breaker", None);

    // A burst of 503s from the primary: exactly enough to open its breaker.
    arm(&primary, json!({"status": 503, "count": 3})).await;
    for i in 0..8 {
        let resp = post_chat(&server, &key, &chat("smart", &format!("hello {i}"))).await;
        assert_eq!(
            resp.status(),
            200,
            "request {i} failed although the fallback is healthy"
        );
        let body: Value = resp.json().await.unwrap();
        assert!(body["choices"][0]["message"]["content"].is_string());
    }
    // The primary saw the three failing requests and nothing after its breaker opened.
    assert_eq!(mock_requests(&primary).await.len(), 3);
    assert_eq!(mock_requests(&backup).await.len(), 8);
    let breakers = admin_get(&server, "/admin/breakers").await;
    assert_eq!(
        breaker_state(&breakers, "primary/mock"),
        "open",
        "{breakers}"
    );
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agentd_breaker_state{")
                && l.contains("primary/mock")
                && l.ends_with(" 1")),
        "breaker state gauge: {metrics}"
    );

    // The primary has recovered (its fault was for three requests). After open_ms the next
    // request is the half-open probe; it succeeds and closes the breaker.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let resp = post_chat(&server, &key, &chat("smart", "probe")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock_requests(&primary).await.len(),
        4,
        "the probe went to the primary"
    );
    let breakers = admin_get(&server, "/admin/breakers").await;
    assert_eq!(
        breaker_state(&breakers, "primary/mock"),
        "closed",
        "{breakers}"
    );
    for i in 0..3 {
        let resp = post_chat(&server, &key, &chat("smart", &format!("after {i}"))).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        mock_requests(&primary).await.len(),
        7,
        "traffic is back on the primary"
    );
    assert!(server.logs().contains("Circuit breaker changed state"));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_retries_and_fallbacks_happen_before_the_first_byte_only() {
    let primary = agentd_mock::spawn(Default::default()).await.unwrap();
    let backup = agentd_mock::spawn(Default::default()).await.unwrap();
    // The primary deployment has its own, short, whole-response timeout.
    let config = two_upstreams(&primary.url(), &backup.url(), "")
        .replace(
            r#"deployments = [{ provider = "primary", model = "mock" }]"#,
            r#"deployments = [{ provider = "primary", model = "mock", timeout_ms = 300 }]"#,
        )
        .replace("max_retries = 0", "max_retries = 1")
        // Three failures in a row happen below; this test is about retries, not the breaker.
        .replace("consecutive_failures = 3", "consecutive_failures = 10");
    let server = Server::start(Some(&config));
    let key = server.create_key("timeouts", None);

    // Slow primary: times out (twice: one retry), then the fallback answers.
    arm(&primary, json!({"latency_ms": 2000, "count": 2})).await;
    let started = std::time::Instant::now();
    let resp = post_chat(&server, &key, &chat("smart", "slow")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "the deployment timeout applied"
    );
    assert_eq!(mock_requests(&backup).await.len(), 1);

    // A 429 with a short Retry-After is retried on the same deployment after waiting for it.
    arm(
        &primary,
        json!({"status": 429, "count": 1, "retry_after_s": 1}),
    )
    .await;
    let primary_before = mock_requests(&primary).await.len();
    let started = std::time::Instant::now();
    let resp = post_chat(&server, &key, &chat("smart", "throttled")).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was honoured"
    );
    assert_eq!(mock_requests(&primary).await.len(), primary_before + 2);
    assert_eq!(mock_requests(&backup).await.len(), 1, "no fallback needed");

    // A client error is not retried and does not fall back.
    let resp = post_chat(&server, &key, &chat("smart", "bad mock:status=400")).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(mock_requests(&backup).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_midway_ends_with_an_error_event_and_its_partial_usage_is_settled() {
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    let config = config_with_upstream(
        &upstream.url(),
        r#"
[prices.mock]
input = 1000
output = 1000

[[budgets.limits]]
scope = "tenant"
window = "day"
usd = 100
"#,
    );
    let server = Server::start(Some(&config));
    let key = server.create_key("cut", Some("cut-tenant"));
    let body = json!({
        "model": "gpt-up",
        "stream": true,
        "messages": [{"role": "user", "content": "tell me mock:cut_after=5"}],
    });
    let resp = post_chat(&server, &key, &body).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    let last = events.last().unwrap();
    assert!(last.starts_with("data: {\"error\""), "last event: {last}");
    let err: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(err["error"]["code"], "provider_stream_cut", "{err}");
    assert!(!text.contains("[DONE]"));

    // The ledger row carries the tokens streamed before the cut, at the model's price.
    let mut row = Value::Null;
    for _ in 0..50 {
        let spend = admin_get(&server, "/admin/spend?group_by=tenant&tenant=cut-tenant").await;
        if let Some(r) = spend["data"].as_array().and_then(|d| d.first()) {
            row = r.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(row["requests"], 1, "{row}");
    let output = row["output_tokens"].as_u64().unwrap();
    assert!((1..20).contains(&output), "partial output tokens: {row}");
    let cost = row["cost_micros"].as_i64().unwrap();
    let tokens = row["input_tokens"].as_i64().unwrap() + output as i64;
    assert_eq!(
        cost,
        tokens * 1000,
        "$1000/M tokens is 1000 micro-dollars per token: {row}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_hits_are_byte_identical_and_free_in_the_ledger() {
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    let server = Server::start(Some(&config_with_upstream(
        &upstream.url(),
        "[prices.mock]\ninput = 1\noutput = 1\n",
    )));
    let key = server.create_key("cache", Some("cache-tenant"));
    let mut body = chat("gpt-up", "cache me");
    body["temperature"] = json!(0);
    let send = |b: Value| {
        let (url, key) = (server.url("/v1/chat/completions"), key.clone());
        async move {
            let resp = client()
                .post(url)
                .bearer_auth(key)
                .json(&b)
                .send()
                .await
                .unwrap();
            let state = resp.headers()["x-agentd-cache"]
                .to_str()
                .unwrap()
                .to_owned();
            (state, resp.bytes().await.unwrap())
        }
    };
    let (s1, b1) = send(body.clone()).await;
    let (s2, b2) = send(body.clone()).await;
    assert_eq!((s1.as_str(), s2.as_str()), ("miss", "hit"));
    assert_eq!(b1, b2, "a hit returns the same bytes");
    // Streams are cached as streams.
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let (s3, b3) = send(stream.clone()).await;
    // The stream's cache entry is written when it ends; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (s4, b4) = send(stream.clone()).await;
    assert_eq!((s3.as_str(), s4.as_str()), ("miss", "hit"));
    assert_eq!(b3, b4);
    assert!(String::from_utf8_lossy(&b4).contains("data: [DONE]"));
    // Sampled requests are not cached unless asked; `x-agentd-cache: off` bypasses.
    let (s5, _) = send(chat("gpt-up", "random")).await;
    assert_eq!(s5, "skip");
    assert_eq!(
        mock_requests(&upstream).await.len(),
        3,
        "two hits never reached the provider"
    );

    let mut spend = Value::Null;
    for _ in 0..50 {
        spend = admin_get(&server, "/admin/spend?group_by=tenant&tenant=cache-tenant").await;
        if spend["data"][0]["requests"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(spend["data"][0]["requests"], 5, "{spend}");
    assert_eq!(spend["data"][0]["cache_hits"], 2, "{spend}");
}

#[tokio::test(flavor = "multi_thread")]
async fn routers_pick_the_model_from_tier_tools_and_prompt_size() {
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    let url = upstream.url();
    let config = format!(
        r#"
[providers.up]
kind = "openai"
base_url = "{url}/v1"
api_key = "sk-up"

[models.fast]
provider = "up"
model = "mock-fast"

[models.smart]
provider = "up"
model = "mock-smart"

[models.long]
provider = "up"
model = "mock-long"

[routers.auto]
default = "fast"
rules = [
  {{ tier = "quality", use = "smart" }},
  {{ tools = true, use = "smart" }},
  {{ min_prompt_tokens = 2000, use = "long" }},
]
"#
    );
    let server = Server::start(Some(&config));
    let plain = server.create_key("plain", None);
    let out = server.cli(&["keys", "create", "--name", "vip", "--tier", "quality"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vip = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let upstream_model = |n: usize| {
        let upstream = &upstream;
        async move {
            mock_requests(upstream).await[n]["body"]["model"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let ok = |resp: reqwest::Response| async move {
        let status = resp.status();
        assert_eq!(status, 200, "{}", resp.text().await.unwrap());
    };
    ok(post_chat(&server, &plain, &chat("auto", "hi")).await).await;
    assert_eq!(upstream_model(0).await, "mock-fast");
    ok(post_chat(&server, &vip, &chat("auto", "hi")).await).await;
    assert_eq!(
        upstream_model(1).await,
        "mock-smart",
        "the key's default tier"
    );
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&plain)
        .header("x-agentd-tier", "quality")
        .json(&chat("auto", "hi"))
        .send()
        .await
        .unwrap();
    ok(resp).await;
    assert_eq!(upstream_model(2).await, "mock-smart", "the tier header");
    let mut tools = chat("auto", "hi");
    tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    ok(post_chat(&server, &plain, &tools).await).await;
    assert_eq!(upstream_model(3).await, "mock-smart", "tools");
    ok(post_chat(&server, &plain, &chat("auto", &"word ".repeat(3000))).await).await;
    assert_eq!(upstream_model(4).await, "mock-long", "a long prompt");
    let models: Value = client()
        .get(server.url("/v1/models"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "auto"));
}

/// A tiny HTTP server that records the bodies POSTed to it (the alert webhook).
async fn webhook_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            sink.lock()
                                .unwrap()
                                .push(serde_json::from_str(&body[..len]).unwrap());
                            let _ = sock
                                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_refuse_with_402_alert_and_survive_a_restart() {
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    let (hook, alerts) = webhook_sink().await;
    // $1000 per million tokens = 1000 micro-dollars per token. A "hi" request is about 10
    // prompt + 20 output tokens (~$0.03); it reserves up to ~$0.035 (prompt estimate + 20).
    let extra = format!(
        r#"
[prices.mock]
input = 1000
output = 1000

[budgets]
alert_webhook = "{hook}"
max_request_usd = 1

[[budgets.limits]]
name = "acme-total"
scope = "tenant"
window = "total"
usd = "0.1"
"#
    );
    let config = config_with_upstream(&upstream.url(), &extra);
    let mut server = Server::start(Some(&config));
    let key = server.create_key("budget", Some("acme"));
    let mut spent = 0;
    for i in 0..2 {
        let resp = post_chat(&server, &key, &chat("gpt-up", "hi")).await;
        assert_eq!(resp.status(), 200, "request {i}");
        let body: Value = resp.json().await.unwrap();
        spent += body["usage"]["total_tokens"].as_i64().unwrap() * 1000;
    }
    // A request whose worst case exceeds max_request_usd is refused before any provider call.
    let mut huge = chat("gpt-up", "hi");
    huge["max_tokens"] = json!(5000);
    let resp = post_chat(&server, &key, &huge).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "request_budget_exceeded", "{err}");

    // Let the ledger flush, then restart: the budget is rebuilt from the ledger.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    let data_dir = server.data_dir();
    let restarted = Server::start_with(Options {
        config: Some(&config),
        data_dir: Some(data_dir),
        ..Options::default()
    });
    // `server` owns the data directory: it lives until the end of the test.
    // A "hi" costs 24 tokens (4 prompt + 20 output) = $0.024 and reserves 25 tokens = $0.025.
    // Spent 0.048 of 0.1 before the restart: two more fit (0.072, 0.096), the third cannot.
    // Without the rebuild from the ledger, all three would pass.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let resp = restarted_post(&restarted, &key).await;
        statuses.push(resp.0);
        if resp.0 == 200 {
            spent += resp.1;
        } else {
            assert_eq!(resp.0, 402, "{}\n{}", resp.2, restarted.logs());
            assert_eq!(resp.2["error"]["code"], "budget_exceeded", "{}", resp.2);
            assert!(resp.2["error"]["message"]
                .as_str()
                .unwrap()
                .contains("acme-total"));
        }
    }
    assert_eq!(
        statuses,
        vec![200, 200, 402],
        "the restarted gateway remembered the spend"
    );
    assert!(spent <= 100_000);
    // Alerts at 50 % and 80 % (and 100 % on refusal) reached the webhook, each once.
    let mut thresholds: Vec<i64> = Vec::new();
    for _ in 0..50 {
        thresholds = alerts
            .lock()
            .unwrap()
            .iter()
            .map(|a| a["threshold_percent"].as_i64().unwrap())
            .collect();
        if thresholds.contains(&100) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    thresholds.sort();
    assert!(
        thresholds.contains(&50) && thresholds.contains(&80) && thresholds.contains(&100),
        "{thresholds:?}"
    );
    assert!(alerts
        .lock()
        .unwrap()
        .iter()
        .all(|a| a["budget"] == "acme-total"));
}

async fn restarted_post(server: &Server, key: &str) -> (u16, i64, Value) {
    let resp = post_chat(server, key, &chat("gpt-up", "hi")).await;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let cost = body["usage"]["total_tokens"].as_i64().unwrap_or(0) * 1000;
    (status, cost, body)
}

/// Three gateway replicas sharing one Redis (counters) and one PostgreSQL (store, ledger).
struct Replicas {
    servers: Vec<Server>,
    prefix: String,
    redis: String,
    tenant: String,
}

async fn replicas(extra: &str) -> Option<(Replicas, agentd_mock::MockServer)> {
    let redis = env_url("AGENTD_TEST_REDIS_URL")?;
    let pg = env_url("AGENTD_TEST_POSTGRES_URL")?;
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    let schema = unique("agentd_rs");
    let store = agentd_store::Store::open_postgres_in_schema(&pg, &schema)
        .await
        .unwrap();
    store.close().await;
    let sep = if pg.contains('?') { '&' } else { '?' };
    let pg_url = format!("{pg}{sep}options=-csearch_path%3D{schema}");
    let prefix = unique("agentd-test");
    let config = config_with_upstream(
        &upstream.url(),
        &format!(
            r#"
[store]
kind = "postgres"
url = "{pg_url}"

[counters]
kind = "redis"
url = "{redis}"
prefix = "{prefix}"

[cache]
kind = "redis"

[prices.mock]
input = 10
output = 10
{extra}
"#
        ),
    );
    let servers: Vec<Server> = (0..3).map(|_| Server::start(Some(&config))).collect();
    Some((
        Replicas {
            servers,
            prefix,
            redis,
            tenant: unique("t"),
        },
        upstream,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_through_three_replicas_never_overspends_a_shared_budget() {
    let Some((r, _upstream)) = replicas(
        r#"
[[budgets.limits]]
name = "race"
scope = "tenant"
window = "total"
usd = "0.05"
"#,
    )
    .await
    else {
        return;
    };
    let key = r.servers[0].create_key("race", Some(&r.tenant));
    // $10 per million tokens = 10 micro-dollars per token: a request costs ~300 and reserves
    // ~350 of the 50,000 budget, so a few hundred requests exhaust it many times over.
    let mut tasks = Vec::new();
    for i in 0..300 {
        let url = r.servers[i % 3].url("/v1/chat/completions");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let resp = client()
                .post(url)
                .bearer_auth(key)
                .json(&chat("gpt-up", &format!("race {i}")))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }));
    }
    let mut cost_of_answers = 0i64;
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                cost_of_answers += body["usage"]["total_tokens"].as_i64().unwrap() * 10;
            }
            402 => {
                refused += 1;
                assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(
        cost_of_answers <= 50_000,
        "spent {cost_of_answers} of 50,000 micro-dollars"
    );

    // The ledger (shared store) holds exactly the served requests' costs.
    let mut total = Value::Null;
    for _ in 0..60 {
        let spend = admin_get(
            &r.servers[1],
            &format!("/admin/spend?group_by=tenant&tenant={}", r.tenant),
        )
        .await;
        total = spend["data"][0].clone();
        if total["requests"] == ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(total["requests"], ok, "{total}");
    assert_eq!(total["cost_micros"], cost_of_answers, "{total}");

    // Every reservation was settled: the shared counter equals what was spent.
    let counters = agentd_counters::RedisCounters::connect(&r.redis, &r.prefix)
        .await
        .unwrap();
    use agentd_core::Counters;
    let mut value = None;
    for _ in 0..50 {
        value = counters
            .budget_state(&[format!("budget:race:{}:all", r.tenant)])
            .await
            .unwrap()[0];
        if value.is_some_and(|v| v.spent == cost_of_answers && v.held == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let value = value.expect("the counter exists");
    assert_eq!((value.spent, value.held), (cost_of_answers, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_the_cache_hold_across_replicas() {
    let Some((r, upstream)) = replicas("[rate_limits]\nkey_rpm = 10\n").await else {
        return;
    };
    let key = r.servers[0].create_key("rl", Some(&r.tenant));
    // Stay inside one minute window.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if secs > 45 {
        tokio::time::sleep(Duration::from_secs(61 - secs)).await;
    }
    let mut statuses = Vec::new();
    for i in 0..15 {
        let resp = post_chat(&r.servers[i % 3], &key, &chat("gpt-up", &format!("n {i}"))).await;
        let status = resp.status().as_u16();
        if status == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );

    // A second key (fresh limit): the Redis cache is shared, so replica 2 answers replica 1's
    // request from the cache, byte for byte.
    let key2 = r.servers[0].create_key("cache", Some(&r.tenant));
    let mut body = chat("gpt-up", "shared cache");
    body["temperature"] = json!(0);
    let before = mock_requests(&upstream).await.len();
    let a = post_chat(&r.servers[1], &key2, &body).await;
    assert_eq!(a.headers()["x-agentd-cache"], "miss");
    let a = a.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = post_chat(&r.servers[2], &key2, &body).await;
    assert_eq!(b.headers()["x-agentd-cache"], "hit");
    assert_eq!(a, b.bytes().await.unwrap());
    assert_eq!(mock_requests(&upstream).await.len(), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_and_user_budgets_are_separate_per_session_and_user() {
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    // "hi" costs $0.024 and reserves $0.025 at $1000 per million tokens (see above).
    let config = config_with_upstream(
        &upstream.url(),
        r#"
[prices.mock]
input = 1000
output = 1000

[[budgets.limits]]
scope = "session"
usd = "0.05"

[[budgets.limits]]
scope = "user"
window = "day"
usd = "0.1"
"#,
    );
    let server = Server::start(Some(&config));
    let out = server.cli(&["keys", "create", "--name", "alice", "--user", "alice"]);
    assert!(out.status.success());
    let alice = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let send = |session: Option<&'static str>| {
        let (url, key) = (server.url("/v1/chat/completions"), alice.clone());
        async move {
            let mut req = client()
                .post(url)
                .bearer_auth(key)
                .json(&chat("gpt-up", "hi"));
            if let Some(s) = session {
                req = req.header("x-agentd-session", s);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        }
    };
    // Session s1: two requests fit in $0.05, the third is refused naming the session budget.
    assert_eq!(send(Some("s1")).await.0, 200);
    assert_eq!(send(Some("s1")).await.0, 200);
    let (status, body) = send(Some("s1")).await;
    assert_eq!(status, 402, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session-total"),
        "{body}"
    );
    // Another session has its own budget; alice's day budget ($0.1) is now at $0.072.
    assert_eq!(send(Some("s2")).await.0, 200);
    // Without a session only the user budget applies: $0.096 after this one, and the next
    // request's reserve would pass her $0.1 day budget.
    assert_eq!(send(None).await.0, 200);
    let (status, body) = send(None).await;
    assert_eq!(status, 402, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user-day"),
        "{body}"
    );
    // A bad session header is a 400, not a new budget.
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&alice)
        .header("x-agentd-session", "x".repeat(200))
        .json(&chat("gpt-up", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_that_die_midway_open_the_breaker_and_traffic_moves_to_the_fallback() {
    let primary = agentd_mock::spawn(Default::default()).await.unwrap();
    let backup = agentd_mock::spawn(Default::default()).await.unwrap();
    let server = Server::start(Some(&two_upstreams(&primary.url(), &backup.url(), "")));
    let key = server.create_key("midway", None);
    // Each stream starts fine (its first events reach the client), then the primary cuts it.
    for i in 0..3 {
        let body = json!({
            "model": "smart",
            "stream": true,
            "messages": [{"role": "user", "content": format!("cut {i} mock:cut_after=3")}],
        });
        let resp = post_chat(&server, &key, &body).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(text.contains("provider_stream_cut"), "{text}");
    }
    // Three failures in a row (consecutive_failures = 3): a stream that died midway counts as
    // one, although its first event had arrived.
    let breakers = admin_get(&server, "/admin/breakers").await;
    assert_eq!(
        breaker_state(&breakers, "primary/mock"),
        "open",
        "{breakers}"
    );
    let resp = post_chat(&server, &key, &chat("smart", "after")).await;
    assert_eq!(resp.status(), 200);
    let seen = mock_requests(&backup).await;
    assert!(
        seen.iter().any(|r| r.to_string().contains("after")),
        "the fallback served the next request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_hits_draw_no_tokens_per_minute() {
    let upstream = agentd_mock::spawn(Default::default()).await.unwrap();
    let config = config_with_upstream(
        &upstream.url(),
        r#"
[rate_limits]
key_tpm = 120

[cache]
enabled = true
"#,
    );
    let server = Server::start(Some(&config));
    let key = server.create_key("tpm", None);
    let mut body = chat("gpt-up", "the same question");
    body["temperature"] = json!(0);
    // The first call reaches the provider and draws its tokens (~30 of 120).
    let resp = post_chat(&server, &key, &body).await;
    assert_eq!(resp.status(), 200);
    // Cache hits are free: a dozen of them would be ~360 tokens if they were counted.
    for i in 0..12 {
        let resp = post_chat(&server, &key, &body).await;
        assert_eq!(resp.status(), 200, "hit {i}");
        assert_eq!(resp.headers()["x-agentd-cache"], "hit");
    }
}
