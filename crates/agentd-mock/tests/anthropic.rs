//! Golden-shape tests of the Anthropic Messages surface over real HTTP.

mod common;

use agentd_mock::MockOptions;
use common::{anthropic, client, mock, mock_with, openai, parse_sse};
use serde_json::{json, Value};

fn weather_tools() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"]
        }
    }])
}

#[tokio::test]
async fn message_has_the_real_shape() {
    let server = mock().await;
    let response = anthropic(&server)
        .json(&json!({
            "model": "claude-sonnet-4",
            "max_tokens": 1024,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "What is the capital of France?"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-sonnet-4");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    let content = body["content"].as_array().unwrap();
    assert_eq!(content.len(), 1);
    assert_eq!(content[0]["type"], "text");
    let text = content[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Mock reply to: What is the capital of France?"),
        "{text}"
    );
    // Same counting as the OpenAI test with the same text: 11 + 2 * 3.
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 17, "output_tokens": 20,
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    );
}

#[tokio::test]
async fn same_prompt_gets_the_same_reply_through_both_apis() {
    let server = mock().await;
    let anthropic_body: Value = anthropic(&server)
        .json(&json!({
            "model": "m",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be nice."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hi there"},
                                             {"type": "image", "source": {"type": "base64",
                                              "media_type": "image/png", "data": "AAAA"}}]},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Tell me more"}
            ]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let openai_body: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": [{"type": "text", "text": "Hi there"},
                                             {"type": "image_url", "image_url": {"url": "data:,"}}]},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Tell me more"}
            ]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        anthropic_body["content"][0]["text"],
        openai_body["choices"][0]["message"]["content"]
    );
    assert_eq!(
        anthropic_body["usage"]["input_tokens"],
        openai_body["usage"]["prompt_tokens"]
    );
}

#[tokio::test]
async fn stream_sends_the_documented_event_sequence() {
    let server = mock().await;
    let response = anthropic(&server)
        .json(&json!({
            "model": "m",
            "max_tokens": 1024,
            "stream": true,
            "messages": [{"role": "user", "content": "Stream please"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let frames = parse_sse(&response.text().await.unwrap());
    let events: Vec<&str> = frames
        .iter()
        .map(|frame| {
            let event = frame.event.as_deref().expect("every frame is named");
            assert_eq!(
                frame.json()["type"],
                event,
                "data.type matches the event name"
            );
            event
        })
        .collect();
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 20));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(events, expected);

    let start = frames[0].json();
    let message = &start["message"];
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["content"], json!([]));
    assert_eq!(message["stop_reason"], Value::Null);
    assert_eq!(message["usage"]["output_tokens"], 1);
    assert_eq!(message["usage"]["input_tokens"], 7);
    assert_eq!(
        frames[1].json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = frames[3..23]
        .iter()
        .map(|frame| {
            let data = frame.json();
            assert_eq!(data["index"], 0);
            assert_eq!(data["delta"]["type"], "text_delta");
            data["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(text.starts_with("Mock reply to: Stream please."), "{text}");
    let delta = frames[24].json();
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(delta["usage"]["output_tokens"], 20);
}

#[tokio::test]
async fn tool_use_plain_and_streamed() {
    let server = mock().await;
    let body: Value = anthropic(&server)
        .json(&json!({
            "model": "m",
            "max_tokens": 100,
            "tools": weather_tools(),
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [{"role": "user", "content": "Weather in Paris?"}]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "mock", "days": 1}));

    let text = anthropic(&server)
        .json(&json!({
            "model": "m",
            "max_tokens": 100,
            "stream": true,
            "tools": weather_tools(),
            "messages": [{"role": "user", "content": "Weather in Paris?"}]
        }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = parse_sse(&text);
    let start = frames[1].json();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "get_weather");
    assert_eq!(start["content_block"]["input"], json!({}));
    let deltas: Vec<Value> = frames
        .iter()
        .filter(|f| f.event.as_deref() == Some("content_block_delta"))
        .map(|f| f.json())
        .collect();
    assert_eq!(
        deltas[0]["delta"],
        json!({"type": "input_json_delta", "partial_json": ""})
    );
    let json_text: String = deltas
        .iter()
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"city": "mock", "days": 1})
    );
    let message_delta = frames
        .iter()
        .find(|f| f.event.as_deref() == Some("message_delta"))
        .unwrap()
        .json();
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn tool_result_gets_a_text_reply() {
    let server = mock().await;
    let body: Value = anthropic(&server)
        .json(&json!({
            "model": "m",
            "max_tokens": 100,
            "tools": weather_tools(),
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                  "name": "get_weather", "input": {"city": "Paris", "days": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                  "content": [{"type": "text", "text": "21C and sunny"}]}]}
            ]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "end_turn");
    let text = body["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("21C and sunny"), "{text}");
}

#[tokio::test]
async fn max_tokens_and_stop_sequences() {
    let server = mock().await;
    let body: Value = anthropic(&server)
        .json(&json!({"model": "m", "max_tokens": 4,
                      "messages": [{"role": "user", "content": "one two"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "max_tokens");
    assert_eq!(body["content"][0]["text"], "Mock reply to: one");
    assert_eq!(body["usage"]["output_tokens"], 4);

    let body: Value = anthropic(&server)
        .json(
            &json!({"model": "m", "max_tokens": 50, "stop_sequences": ["two"],
                      "messages": [{"role": "user", "content": "one two"}]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "stop_sequence");
    assert_eq!(body["stop_sequence"], "two");
    assert_eq!(body["content"][0]["text"], "Mock reply to: one ");
}

#[tokio::test]
async fn invalid_requests_get_anthropic_errors() {
    let server = mock().await;
    let user = json!([{"role": "user", "content": "hi"}]);
    for (body, message) in [
        (
            json!({"model": "m", "messages": user}),
            "max_tokens: Field required",
        ),
        (
            json!({"max_tokens": 5, "messages": user}),
            "model: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": 5}),
            "messages: Field required",
        ),
        (
            json!({"model": "m", "max_tokens": "5", "messages": user}),
            "max_tokens: Input should be a valid integer",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": []}),
            "at least one message",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({"model": "m", "max_tokens": 5, "messages": user, "system": 3}),
            "system",
        ),
    ] {
        let response = anthropic(&server).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{body}: {error}"
        );
    }
    let response = anthropic(&server).body("not json").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn auth_needs_a_key_and_a_version() {
    let server = mock_with(MockOptions {
        require_key: Some("sk-ant-right".into()),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/v1/messages", server.url());
    let request =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});

    let response = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(
        error,
        json!({"type": "error", "error": {"type": "authentication_error",
                                          "message": "x-api-key header is required"}})
    );

    let response = client()
        .post(&url)
        .header("x-api-key", "sk-ant-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let response = client()
        .post(&url)
        .header("x-api-key", "sk-ant-right")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "anthropic-version is required");

    let response = client()
        .post(&url)
        .header("x-api-key", "sk-ant-right")
        .header("anthropic-version", "2023-06-01")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Recent official SDKs send the API key as a bearer token.
    let response = client()
        .post(&url)
        .bearer_auth("sk-ant-right")
        .header("anthropic-version", "2023-06-01")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = client()
        .post(&url)
        .bearer_auth("sk-ant-wrong")
        .header("anthropic-version", "2023-06-01")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn models_answer_in_anthropic_shape_for_anthropic_clients() {
    let server = mock().await;
    let body: Value = client()
        .get(format!("{}/v1/models", server.url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["has_more"], false);
    assert_eq!(body["first_id"], "mock");
    assert_eq!(body["data"][0]["type"], "model");
    assert_eq!(body["data"][0]["id"], "mock");
}
