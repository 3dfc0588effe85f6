//! Black-box tests of `agentd serve`: the real binary, an inline config, the mock provider as
//! the upstream.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn default_config_serves_the_mock_model_and_says_how_to_add_providers() {
    let server = Server::start(None);
    let key = server.create_key("default-test", None);
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("mock", "hello there"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len()
            > 5
    );
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let models: Value = client()
        .get(server.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"mock"), "{ids:?}");
    assert!(
        !ids.iter().any(|id| id.starts_with("gpt-")),
        "no OpenAI models without a key: {ids:?}"
    );
    let logs = server.logs();
    assert!(
        logs.contains("OPENAI_API_KEY"),
        "startup log says how to add providers:\n{logs}"
    );
    assert!(
        server.data_dir().join("agentd.db").exists(),
        "SQLite store lives in the data dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_keys_in_the_environment_add_their_models() {
    let server = Server::start_with(Options {
        config: None,
        env: vec![
            ("OPENAI_API_KEY", "sk-openai-env-secret-123456".into()),
            ("ANTHROPIC_API_KEY", "sk-ant-env-secret-123456".into()),
        ],
        data_dir: None,
    });
    let key = server.create_key("env-test", None);
    let models: Value = client()
        .get(server.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"mock"));
    assert!(ids.contains(&"gpt-4o-mini"), "{ids:?}");
    assert!(ids.contains(&"claude-sonnet-4-5"), "{ids:?}");
    let logs = server.logs();
    assert!(
        !logs.contains("sk-openai-env-secret-123456"),
        "provider secret leaked into logs"
    );
    assert!(
        !logs.contains("sk-ant-env-secret-123456"),
        "provider secret leaked into logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_v1_route_requires_a_valid_key_and_revocation_works() {
    let server = Server::start(Some(&config_with_upstream("http://127.0.0.1:9", "")));
    let c = client();
    for (method, path) in [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("GET", "/v1/models"),
        ("POST", "/v1/messages"),
    ] {
        let req = c.request(method.parse().unwrap(), server.url(path));
        let resp = req.json(&chat_body("mock", "x")).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path} without key");
        let body: Value = resp.json().await.unwrap();
        if path == "/v1/messages" {
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], "authentication_error");
        } else {
            assert_eq!(body["error"]["code"], "missing_api_key");
            assert_eq!(body["error"]["type"], "authentication_error");
        }
    }
    let resp = c
        .get(server.url("/v1/models"))
        .bearer_auth("sk-agentd-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    // CLI-created key works, then stops working once revoked with the CLI (cache TTL 100 ms).
    let key = server.create_key("to-revoke", Some("acme"));
    assert_eq!(
        c.get(server.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let list = server.cli(&["keys", "list", "--json"]);
    assert!(list.status.success());
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "to-revoke")
        .unwrap()
        .clone();
    assert_eq!(entry["tenant"], "acme");
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains(&key),
        "list never shows secrets"
    );
    let out = server.cli(&["keys", "revoke", entry["id"].as_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.get(server.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // x-api-key works as well (Anthropic SDKs).
    let key2 = server.create_key("xapi", None);
    assert_eq!(
        c.get(server.url("/v1/models"))
            .header("x-api-key", &key2)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_manages_keys() {
    let server = Server::start(None);
    let c = client();
    let resp = c
        .post(server.url("/admin/keys"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(server.url("/admin/keys"))
        .bearer_auth("not-the-admin-key-xxxxx")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(server.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "svc", "tenant": "t1", "user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let secret = created["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-agentd-"));
    assert_eq!(created["tenant"], "t1");
    assert_eq!(created["user"], "alice");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.get(server.url("/v1/models"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let bad = c
        .post(server.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "x", "tenant": "no spaces"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("tenant"));

    let listed: Value = c
        .get(server.url("/admin/keys?tenant=t1"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    let other: Value = c
        .get(server.url("/admin/keys?tenant=t2"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["data"].as_array().unwrap().len(), 0);

    let revoked = c
        .delete(server.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let revoked: Value = revoked.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());
    // Revocation through the admin API of this process takes effect at once.
    assert_eq!(
        c.get(server.url("/v1/models"))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let missing = c
        .delete(server.url("/admin/keys/key_nope"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        !server.logs().contains(ADMIN_KEY),
        "admin key leaked into logs"
    );
    assert!(
        !server.logs().contains(&secret),
        "client key leaked into logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let mock = agentd_mock::spawn(agentd_mock::MockOptions::default())
        .await
        .unwrap();
    // Each provider error below must reach the client as such, so no breaker may open on them
    // (the breaker has its own tests in resilience.rs).
    let server = Server::start(Some(&config_with_upstream(
        &mock.url(),
        "[routing.breaker]\nenabled = false\n",
    )));
    let key = server.create_key("bad-input", None);
    let c = client();
    let post = |path: &str, body: Vec<u8>| {
        c.post(server.url(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let check = |resp: reqwest::Response, status: u16| async move {
        assert_eq!(resp.status(), status);
        resp.json::<Value>().await.unwrap()
    };

    let body = check(
        post("/v1/chat/completions", b"{\"model\": \"mock\", ".to_vec())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["error"]["code"], "invalid_json");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let body = check(
        post(
            "/v1/chat/completions",
            br#"{"model":"mock","messages":"hi"}"#.to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["error"]["param"], "messages", "{body}");

    let body = check(
        post(
            "/v1/chat/completions",
            br#"{"model":42,"messages":[]}"#.to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    assert!(
        body["error"]["message"].as_str().unwrap().contains("model"),
        "{body}"
    );

    let body = check(
        post(
            "/v1/chat/completions",
            serde_json::to_vec(&chat_body("nope", "x")).unwrap(),
        )
        .await
        .unwrap(),
        404,
    )
    .await;
    assert_eq!(body["error"]["code"], "model_not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/models"));

    // Oversized (limit 65536 in this config).
    let big =
        json!({"model": "mock", "messages": [{"role": "user", "content": "x".repeat(70_000)}]});
    let body = check(
        post("/v1/chat/completions", serde_json::to_vec(&big).unwrap())
            .await
            .unwrap(),
        413,
    )
    .await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_body_bytes"));

    // Anthropic shape on /v1/messages.
    let body = check(
        post(
            "/v1/messages",
            br#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{body}"
    );

    // An upstream that answers garbage, or fails: 502 naming the provider, never its key.
    for directive in ["mock:malformed", "mock:status=500", "mock:reset"] {
        let body = check(
            post(
                "/v1/chat/completions",
                serde_json::to_vec(&chat_body("gpt-up", &format!("hi {directive}"))).unwrap(),
            )
            .await
            .unwrap(),
            502,
        )
        .await;
        assert_eq!(body["error"]["type"], "api_error", "{directive}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("up-openai"),
            "{directive}: {body}"
        );
        assert!(
            !body.to_string().contains("sk-upstream"),
            "secret in error body"
        );
    }
    // Provider 429 passes through as 429 with Retry-After.
    let resp = post(
        "/v1/chat/completions",
        serde_json::to_vec(&chat_body(
            "gpt-up",
            "hi mock:status=429 mock:retry_after=7",
        ))
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");

    // Unknown route and wrong method.
    assert_eq!(
        c.get(server.url("/v1/nope"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(server.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    // Still serving.
    let ok = post(
        "/v1/chat/completions",
        serde_json::to_vec(&chat_body("gpt-up", "still there?")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 200);
    let logs = server.logs();
    assert!(!logs.contains(&key), "client key leaked into logs");
    assert!(
        !logs.contains("sk-upstream-openai-secret-value"),
        "provider key leaked into logs"
    );
    assert!(
        !logs.contains("sk-ant-upstream-secret-value"),
        "provider key leaked into logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_configured_provider_key_is_forwarded_upstream() {
    let mock = agentd_mock::spawn(agentd_mock::MockOptions {
        require_key: Some("sk-upstream-openai-secret-value".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let server = Server::start(Some(&config_with_upstream(&mock.url(), "")));
    let key = server.create_key("fwd", None);
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("gpt-up", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // The anthropic provider's key is a different one: the mock refuses it, and the client must
    // see a gateway error, not an auth error of its own.
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("claude-up", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("api_key"),
        "{body}"
    );
}

async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_carry_usage_and_a_cut_stream_ends_with_an_error_event() {
    let mock = agentd_mock::spawn(agentd_mock::MockOptions::default())
        .await
        .unwrap();
    let server = Server::start(Some(&config_with_upstream(&mock.url(), "")));
    let key = server.create_key("stream", None);
    for model in ["mock", "gpt-up", "claude-up"] {
        let body = json!({"model": model, "stream": true, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "stream please"}]});
        let resp = client()
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let events = sse_events(resp).await;
        assert_eq!(events.last().unwrap(), "data: [DONE]", "{model}");
        let usage: Value =
            serde_json::from_str(events[events.len() - 2].trim_start_matches("data: ")).unwrap();
        assert!(
            usage["usage"]["completion_tokens"].as_u64().unwrap() > 0,
            "{model}: {usage}"
        );
        assert_eq!(usage["choices"], json!([]));
    }
    // Cut midway: some content, then an OpenAI-style error event, and no [DONE].
    let body = json!({"model": "gpt-up", "stream": true, "messages": [{"role": "user", "content": "go mock:cut_after=4"}]});
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    let last: Value =
        serde_json::from_str(events.last().unwrap().trim_start_matches("data: ")).unwrap();
    assert!(last["error"]["message"].is_string(), "{events:?}");
    assert!(events.len() >= 2, "content before the error: {events:?}");
    // The Anthropic API gets an Anthropic error event.
    let body = json!({"model": "gpt-up", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "go mock:cut_after=4"}]});
    let resp = client()
        .post(server.url("/v1/messages"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    assert!(
        events.last().unwrap().starts_with("event: error"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let server = Server::start(None);
    let key = server.create_key("metrics", None);
    let c = client();
    assert_eq!(
        c.get(server.url("/healthz")).send().await.unwrap().status(),
        200
    );
    let ready: Value = c
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["store"], "sqlite");
    c.post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("mock", "count me"))
        .send()
        .await
        .unwrap();
    let body = json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": "stream me"}]});
    c.post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    c.post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("nope", "x"))
        .send()
        .await
        .unwrap();
    let text = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "agentd_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}",
        "agentd_http_request_duration_seconds_bucket",
        "agentd_upstream_duration_seconds_bucket",
        "agentd_time_to_first_token_seconds_bucket",
        "agentd_tokens_total{provider=\"mock\",model=\"mock\",direction=\"output\"}",
        "agentd_errors_total{kind=\"not_found\",fault=\"client\"}",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Logs are JSON lines with the request id.
    let logs = server.logs();
    let served = logs
        .lines()
        .find(|l| l.contains("Request served"))
        .expect("access log line");
    let v: Value = serde_json::from_str(served).unwrap();
    assert!(
        v["span"]["request_id"].is_string() || v["request_id"].is_string(),
        "{served}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_streams_and_refuses_new_work() {
    let mock = agentd_mock::spawn(agentd_mock::MockOptions::default())
        .await
        .unwrap();
    let mut server = Server::start(Some(&config_with_upstream(&mock.url(), "")));
    let key = server.create_key("drain", None);
    // 20 tokens, 60 ms apart: ~1.2 s of streaming, well within the 3 s grace.
    let body = json!({"model": "gpt-up", "stream": true,
                      "messages": [{"role": "user", "content": "slow mock:token_delay_ms=60"}]});
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused while draining.
    let fresh = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(fresh.is_err(), "new connection accepted while draining");
    let events = sse_events(resp).await;
    assert_eq!(
        events.last().unwrap(),
        "data: [DONE]",
        "in-flight stream finished: {events:?}"
    );
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(server.logs().contains("Draining"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grace_period_bounds_the_drain() {
    let mock = agentd_mock::spawn(agentd_mock::MockOptions::default())
        .await
        .unwrap();
    let mut server = Server::start(Some(
        &config_with_upstream(&mock.url(), "")
            .replace("shutdown_grace_ms = 3000", "shutdown_grace_ms = 500"),
    ));
    let key = server.create_key("grace", None);
    // 20 tokens × 500 ms = 10 s: longer than the grace.
    let body = json!({"model": "gpt-up", "stream": true,
                      "messages": [{"role": "user", "content": "slow mock:token_delay_ms=500"}]});
    let resp = client()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(8));
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited after the grace, not after the stream"
    );
    drop(resp);
}

#[test]
fn check_config_names_file_line_and_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[providers.openai]\nkind = \"openai\"\n\n[models.gpt]\nprovider = \"opnai\"\n",
    )
    .unwrap();
    let out = base_command(&["check-config", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:5"), "{err}");
    assert!(err.contains("models.gpt.provider"), "{err}");
    assert!(
        err.contains("openai"),
        "the fix lists the known providers: {err}"
    );

    std::fs::write(
        &path,
        "[providers.local]\nkind = \"mock\"\n\n[models.m]\nprovider = \"local\"\n",
    )
    .unwrap();
    let out = base_command(&["check-config", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // serve refuses to start on a bad config, with the same exit code.
    std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let out = base_command(&["serve", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}

/// Regression: a request refused before its body was read (401, 404 route, 413) used to be
/// answered without `Connection: close`, then the connection was dropped, so a client reusing
/// it saw "server disconnected". Now such answers say they close the connection.
#[test]
fn refusals_before_reading_the_body_announce_connection_close() {
    use std::io::{Read, Write};
    let server = Server::start(None);
    let body = br#"{"model":"mock","messages":[{"role":"user","content":"hi"}]}"#;
    for (path, auth) in [
        ("/v1/chat/completions", ""),
        ("/v1/messages", "x-api-key: sk-agentd-wrong\r\n"),
        ("/v1/nope", ""),
        ("/admin/keys", ""),
    ] {
        let mut sock = std::net::TcpStream::connect(server.addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let _ = sock.write_all(body);
        let mut answer = Vec::new();
        let _ = sock.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 40"), "{path}: {text}");
        assert!(text.contains("connection: close"), "{path}: {text}");
    }
}
