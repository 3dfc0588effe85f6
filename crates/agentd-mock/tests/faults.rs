//! Directives, server-wide faults and the control endpoints, over real HTTP.

mod common;

use std::time::{Duration, Instant};

use agentd_mock::MockOptions;
use common::{anthropic, client, mock, mock_with, openai, parse_sse, recorded};
use futures::StreamExt as _;
use serde_json::{json, Value};

fn chat(text: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": text}]})
}

fn chat_stream(text: &str) -> Value {
    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": text}]})
}

/// Reads a streamed body until it ends or fails: (bytes received, whether it failed).
async fn read_until_error(response: reqwest::Response) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut received = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => return (String::from_utf8(received).unwrap(), true),
        }
    }
    (String::from_utf8(received).unwrap(), false)
}

#[tokio::test]
async fn status_directive_returns_that_error_with_retry_after() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("please fail mock:status=429 mock:retry_after=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"].is_string());

    // Through the header, in Anthropic's shape; the header wins over the message.
    let response = anthropic(&server)
        .header("x-mock", "status=529")
        .json(&json!({"model": "m", "max_tokens": 5,
                      "messages": [{"role": "user", "content": "mock:status=500"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");

    // Fault directives pre-empt validation, like a rate limiter in front of the API.
    let response = openai(&server, "/v1/embeddings")
        .header("x-mock", "mock:status=503")
        .json(&json!({"input": "no model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn bad_directive_values_are_400() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("mock:tokens=many"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mock directive `tokens=many`"));
}

#[tokio::test]
async fn latency_delays_the_response() {
    let server = mock().await;
    let started = Instant::now();
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("slow mock:latency_ms=300"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let started = Instant::now();
    openai(&server, "/v1/chat/completions")
        .json(&chat("fast"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn ttft_and_token_delay_pace_the_stream() {
    let server = mock().await;
    let started = Instant::now();
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat_stream(
            "paced mock:ttft_ms=300 mock:token_delay_ms=20 mock:tokens=5",
        ))
        .send()
        .await
        .unwrap();
    // Headers come before the first token.
    assert!(started.elapsed() < Duration::from_millis(300));
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(first_at >= Duration::from_millis(300), "{first_at:?}");
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    // role + 5 tokens + finish + [DONE] = 8 frames, 7 gaps of 20 ms.
    assert!(started.elapsed() - first_at >= Duration::from_millis(140));

    // Server-wide defaults apply too, and non-stream replies include generation time.
    let server = mock_with(MockOptions {
        ttft: Duration::from_millis(100),
        token_delay: Duration::from_millis(10),
        ..MockOptions::default()
    })
    .await;
    let started = Instant::now();
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&chat("slow model"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 20);
    assert!(started.elapsed() >= Duration::from_millis(100 + 200));
}

#[tokio::test]
async fn reset_closes_the_connection_without_a_response() {
    let server = mock().await;
    let err = openai(&server, "/v1/chat/completions")
        .json(&chat("mock:reset"))
        .send()
        .await
        .expect_err("no response at all");
    assert!(err.status().is_none(), "{err:?}");
    assert!(err.is_request() || err.is_connect(), "{err:?}");

    let err = anthropic(&server)
        .header("x-mock", "reset latency_ms=50")
        .json(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .expect_err("no response at all");
    assert!(err.status().is_none(), "{err:?}");

    // The server keeps serving.
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn cut_after_aborts_a_stream_after_n_events() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat_stream("cut me mock:cut_after=3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (received, failed) = read_until_error(response).await;
    assert!(failed, "the body must end in an error, got {received:?}");
    let frames = parse_sse(&received);
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| f.data != "[DONE]"));
    for frame in &frames {
        frame.json();
    }

    let response = anthropic(&server)
        .header("x-mock", "cut_after=5")
        .json(&json!({"model": "m", "max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let (received, failed) = read_until_error(response).await;
    assert!(failed);
    let frames = parse_sse(&received);
    assert_eq!(frames.len(), 5);
    assert!(frames
        .iter()
        .all(|f| f.event.as_deref() != Some("message_stop")));

    // More events asked than exist: everything but the terminal event, then the cut.
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat_stream("mock:cut_after=1000 mock:tokens=2"))
        .send()
        .await
        .unwrap();
    let (received, failed) = read_until_error(response).await;
    assert!(failed);
    let frames = parse_sse(&received);
    assert_eq!(frames.len(), 4, "role, 2 tokens, finish; no [DONE]");
}

#[tokio::test]
async fn cut_after_aborts_a_plain_body_halfway() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("mock:cut_after=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (received, failed) = read_until_error(response).await;
    assert!(failed);
    assert!(received.starts_with('{'));
    assert!(serde_json::from_str::<Value>(&received).is_err());
}

#[tokio::test]
async fn malformed_sends_invalid_json() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("mock:malformed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    let text = openai(&server, "/v1/chat/completions")
        .json(&chat_stream("mock:malformed"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = parse_sse(&text);
    assert!(serde_json::from_str::<Value>(&frames[0].data).is_ok());
    assert!(serde_json::from_str::<Value>(&frames[1].data).is_err());
    assert_eq!(frames.last().unwrap().data, "[DONE]");

    let text = anthropic(&server)
        .header("x-mock", "malformed")
        .json(&json!({"model": "m", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = parse_sse(&text);
    assert_eq!(frames[1].event.as_deref(), Some("content_block_delta"));
    assert!(serde_json::from_str::<Value>(&frames[1].data).is_err());
}

#[tokio::test]
async fn tokens_echo_and_tool_directives() {
    let server = mock().await;
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&chat("short please mock:tokens=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Mock reply to:");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&chat("Repeat  exactly\nthis. mock:echo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Repeat  exactly\nthis. mock:echo"
    );

    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&chat("call it mock:tool=lookup"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        body["choices"][0]["message"]["tool_calls"][0]["function"],
        json!({"name": "lookup", "arguments": "{}"})
    );
}

#[tokio::test]
async fn requests_are_recorded_with_headers_and_body() {
    let server = mock().await;
    openai(&server, "/v1/chat/completions")
        .header("x-custom", "42")
        .json(&chat("record me"))
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/v1/models?limit=5", server.url()))
        .bearer_auth("sk-models")
        .send()
        .await
        .unwrap();
    let requests = recorded(&server).await;
    assert_eq!(requests.len(), 2, "control endpoints are not recorded");
    assert_eq!(requests[0]["method"], "POST");
    assert_eq!(requests[0]["path"], "/v1/chat/completions");
    assert_eq!(requests[0]["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(requests[0]["headers"]["x-custom"], "42");
    assert_eq!(requests[0]["body"], chat("record me"));
    assert_eq!(requests[1]["method"], "GET");
    assert_eq!(requests[1]["query"], "limit=5");
    assert_eq!(requests[1]["body"], Value::Null);

    // A request to a wrong path is recorded too, so tests can see where it went.
    let wrong = openai(&server, "/v1/chat/completion")
        .json(&chat("typo"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
    let requests = recorded(&server).await;
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2]["path"], "/v1/chat/completion");

    let cleared = client()
        .delete(format!("{}/_mock/requests", server.url()))
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success());
    assert!(recorded(&server).await.is_empty());

    // Only the last 100 are kept.
    for i in 0..105 {
        openai(&server, "/v1/chat/completions")
            .json(&chat(&format!("n{i}")))
            .send()
            .await
            .unwrap();
    }
    let requests = recorded(&server).await;
    assert_eq!(requests.len(), 100);
    assert_eq!(requests[0]["body"], chat("n5"));
    assert_eq!(requests[99]["body"], chat("n104"));
}

async fn arm(server: &agentd_mock::MockServer, fault: Value) -> reqwest::Response {
    client()
        .post(format!("{}/_mock/faults", server.url()))
        .json(&fault)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn faults_fail_exactly_the_next_n_requests() {
    let server = mock().await;
    let armed = arm(
        &server,
        json!({"status": 503, "count": 2, "retry_after_s": 4}),
    )
    .await;
    assert_eq!(armed.status(), 200);
    // Faults apply regardless of content: even without a key or a valid body.
    let first = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "4");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    let second = anthropic(&server)
        .json(
            &json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 503);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["type"], "error", "in the API's own shape");
    let third = openai(&server, "/v1/chat/completions")
        .json(&chat("ok now"))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    // Every attempt was recorded.
    assert_eq!(recorded(&server).await.len(), 3);
}

#[tokio::test]
async fn reset_and_latency_faults_and_clearing() {
    let server = mock().await;
    arm(&server, json!({"reset": true})).await;
    let err = openai(&server, "/v1/chat/completions")
        .json(&chat("x"))
        .send()
        .await
        .expect_err("reset");
    assert!(err.status().is_none());
    assert_eq!(
        openai(&server, "/v1/chat/completions")
            .json(&chat("x"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "count defaults to 1"
    );

    arm(&server, json!({"latency_ms": 250, "count": 1})).await;
    let started = Instant::now();
    let response = openai(&server, "/v1/chat/completions")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "latency alone only slows");
    assert!(started.elapsed() >= Duration::from_millis(250));

    arm(&server, json!({"status": 500, "count": 10})).await;
    let shown: Value = client()
        .get(format!("{}/_mock/faults", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["status"], 500);
    assert_eq!(shown["count"], 10);
    let cleared = client()
        .delete(format!("{}/_mock/faults", server.url()))
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success());
    assert_eq!(
        openai(&server, "/v1/chat/completions")
            .json(&chat("x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Control and health endpoints are never faulted.
    arm(&server, json!({"status": 500})).await;
    let health = client()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    for bad in [
        json!({"count": 1}),
        json!({"status": 200}),
        json!({"status": 500, "count": 0}),
        json!({"status": 500, "reset": true}),
        json!({"status": 500, "bogus": 1}),
    ] {
        let response = arm(&server, bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn no_usage_omits_usage_everywhere() {
    let server = mock().await;

    // OpenAI, plain: the answer is complete except for `usage`.
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&chat("count nothing mock:no_usage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("usage").is_none(), "{body}");
    assert!(body["choices"][0]["message"]["content"].is_string());

    // OpenAI, stream: no usage chunk even when asked for one, and no `usage: null` fields.
    let mut request = chat_stream("count nothing mock:no_usage mock:tokens=4");
    request["stream_options"] = json!({"include_usage": true});
    let text = openai(&server, "/v1/chat/completions")
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = parse_sse(&text);
    assert_eq!(frames.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| f.json())
        .collect();
    // role + 4 tokens + finish, and nothing else.
    assert_eq!(chunks.len(), 6);
    for chunk in &chunks {
        assert!(chunk.get("usage").is_none(), "{chunk}");
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    // Through the header too; without the directive the same request has its usage chunk.
    let text = openai(&server, "/v1/chat/completions")
        .header("x-mock", "no_usage")
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    request["messages"][0]["content"] = json!("count mock:tokens=4");
    let text = openai(&server, "/v1/chat/completions")
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"completion_tokens\":4"), "{text}");

    // Anthropic, plain and stream: no `usage` object anywhere.
    let messages = |stream: bool| {
        json!({"model": "m", "max_tokens": 50, "stream": stream,
               "messages": [{"role": "user", "content": "count nothing mock:no_usage"}]})
    };
    let body: Value = anthropic(&server)
        .json(&messages(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("usage").is_none(), "{body}");
    assert_eq!(body["stop_reason"], "end_turn");
    let text = anthropic(&server)
        .json(&messages(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = parse_sse(&text);
    let kinds: Vec<String> = frames.iter().map(|f| f.event.clone().unwrap()).collect();
    assert_eq!(kinds.first().unwrap(), "message_start");
    assert_eq!(kinds.last().unwrap(), "message_stop");
    assert!(kinds.iter().any(|k| k == "message_delta"));
    for frame in &frames {
        let event = frame.json();
        assert!(event.get("usage").is_none(), "{event}");
        assert!(event["message"].get("usage").is_none(), "{event}");
    }

    // Embeddings: vectors, no usage.
    let body: Value = openai(&server, "/v1/embeddings")
        .json(&json!({"model": "e", "input": "embed me mock:no_usage"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("usage").is_none(), "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
}
