//! Golden-shape tests of the OpenAI surface over real HTTP.

mod common;

use agentd_mock::MockOptions;
use base64::Engine as _;
use common::{client, mock, mock_with, openai, parse_sse};
use serde_json::{json, Value};

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city", "unit"]
            }
        }
    }])
}

#[tokio::test]
async fn chat_completion_has_the_real_shape() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is the capital of France?"}
            ]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "content type"
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(body["system_fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("fp_"));
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    let choice = &choices[0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["refusal"], Value::Null);
    assert!(message.get("tool_calls").is_none());
    let content = message["content"].as_str().unwrap();
    assert!(
        content.starts_with("Mock reply to: What is the capital of France?"),
        "{content}"
    );
    assert_eq!(content.split_whitespace().count(), 20, "{content}");
    // "You are terse." (14) + "What is the capital of France?" (30) = 44 chars -> 11 tokens,
    // plus 3 per message.
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": 17,
            "completion_tokens": 20,
            "total_tokens": 37,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
            }
        })
    );
}

#[tokio::test]
async fn same_request_gives_same_content_and_a_new_id() {
    let server = mock().await;
    let request =
        json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a story"}]});
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let body: Value = openai(&server, "/v1/chat/completions")
            .json(&request)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        bodies.push(body);
    }
    assert_eq!(bodies[0]["choices"], bodies[1]["choices"]);
    assert_eq!(bodies[0]["usage"], bodies[1]["usage"]);
    assert_ne!(bodies[0]["id"], bodies[1]["id"]);
    let other: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Tell me a joke"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["choices"], bodies[0]["choices"]);
}

#[tokio::test]
async fn max_tokens_truncates_with_length() {
    let server = mock().await;
    for field in ["max_tokens", "max_completion_tokens"] {
        let body: Value = openai(&server, "/v1/chat/completions")
            .json(&json!({
                "model": "m",
                "messages": [{"role": "user", "content": "hello there"}],
                field: 5
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "length", "{field}");
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Mock reply to: hello there."
        );
        assert_eq!(body["usage"]["completion_tokens"], 5);
    }
}

#[tokio::test]
async fn stop_sequences_end_the_reply() {
    let server = mock().await;
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "messages": [{"role": "user", "content": "alpha beta gamma"}],
            "stop": ["gamma"]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Mock reply to: alpha beta "
    );
}

#[tokio::test]
async fn stream_sends_role_then_one_token_per_chunk_then_done() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "stream": true,
            "messages": [{"role": "user", "content": "Stream please"}],
            "mock_unrelated_field": true
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let frames = parse_sse(&response.text().await.unwrap());
    assert!(frames.iter().all(|frame| frame.event.is_none()));
    assert_eq!(frames.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| f.json())
        .collect();
    // role chunk + 20 tokens + finish chunk
    assert_eq!(chunks.len(), 22);
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["model"], "m");
        assert!(
            chunk.get("usage").is_none(),
            "no usage without include_usage"
        );
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let text: String = chunks[1..21]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            let token = c["choices"][0]["delta"]["content"].as_str().unwrap();
            assert_eq!(token.split_whitespace().count(), 1, "one word per chunk");
            token.to_owned()
        })
        .collect();
    assert!(text.starts_with("Mock reply to: Stream please."));
    assert_eq!(chunks[21]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[21]["choices"][0]["finish_reason"], "stop");

    // The streamed text is the non-streamed content.
    let plain: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Stream please"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["choices"][0]["message"]["content"], text);
}

#[tokio::test]
async fn stream_include_usage_adds_a_final_usage_chunk() {
    let server = mock().await;
    let text = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "count"}]
        }))
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
    let (last, earlier) = chunks.split_last().unwrap();
    for chunk in earlier {
        assert_eq!(
            chunk["usage"],
            Value::Null,
            "earlier chunks carry usage: null"
        );
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(
        earlier.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 3);
    // "count" = 5 chars -> 2 tokens + 3 for the message.
    assert_eq!(last["usage"]["prompt_tokens"], 5);
    assert_eq!(last["usage"]["total_tokens"], 8);
}

#[tokio::test]
async fn tools_produce_one_tool_call_with_schema_arguments() {
    let server = mock().await;
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": weather_tools()
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "mock", "unit": "celsius"}));

    // tool_choice "none" turns it off.
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": weather_tools(),
            "tool_choice": "none"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn tool_call_streams_like_openai() {
    let server = mock().await;
    let text = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "stream": true,
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": weather_tools(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }))
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
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    let start = &first["tool_calls"][0];
    assert_eq!(start["index"], 0);
    assert!(start["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(start["type"], "function");
    assert_eq!(
        start["function"],
        json!({"name": "get_weather", "arguments": ""})
    );
    let (last, middle) = chunks[1..].split_last().unwrap();
    assert!(middle.len() > 1, "arguments arrive in several fragments");
    let mut arguments = String::new();
    for chunk in middle {
        let call = &chunk["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert!(call.get("id").is_none() && call.get("type").is_none());
        assert!(call["function"].get("name").is_none());
        arguments.push_str(call["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "mock", "unit": "celsius"})
    );
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn tool_result_gets_a_text_reply_quoting_it() {
    let server = mock().await;
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({
            "model": "m",
            "tools": weather_tools(),
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
                }]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21C and sunny"}
            ]
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("21C and sunny"), "{content}");
}

#[tokio::test]
async fn n_gives_several_choices() {
    let server = mock().await;
    let body: Value = openai(&server, "/v1/chat/completions")
        .json(&json!({"model": "m", "n": 2, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(body["usage"]["completion_tokens"], 8);
}

async fn expect_400(body: Value, message_part: &str, param: Option<&str>) {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "{body}");
    let error: Value = response.json().await.unwrap();
    let error = &error["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"].as_str().unwrap().contains(message_part),
        "{error}"
    );
    assert_eq!(error["param"].as_str(), param, "{error}");
    assert!(error.get("code").is_some());
}

#[tokio::test]
async fn invalid_chat_requests_get_openai_errors() {
    let user = json!([{"role": "user", "content": "hi"}]);
    expect_400(
        json!({"messages": user}),
        "you must provide a model parameter",
        None,
    )
    .await;
    expect_400(
        json!({"model": "m"}),
        "Missing required parameter: 'messages'.",
        Some("messages"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": "hi"}),
        "Invalid type for 'messages': expected an array, but got a string instead.",
        Some("messages"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": []}),
        "empty array",
        Some("messages"),
    )
    .await;
    expect_400(
        json!({"model": 5, "messages": user}),
        "Invalid type for 'model'",
        Some("model"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
        "Invalid value: 'robot'",
        Some("messages[0].role"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": [{"role": "user"}]}),
        "Missing required parameter: 'messages[0].content'.",
        Some("messages[0].content"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}),
        "must be a response to a preceeding message with 'tool_calls'",
        Some("messages.[0].role"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": user, "max_tokens": "ten"}),
        "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        Some("max_tokens"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": user, "max_tokens": 0}),
        "integer below minimum value",
        Some("max_tokens"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": user, "stream": "yes"}),
        "Invalid type for 'stream'",
        Some("stream"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": user, "stream_options": {"include_usage": true}}),
        "only allowed when 'stream' is enabled",
        Some("stream_options"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": user, "tool_choice": "auto"}),
        "only allowed when 'tools' are specified",
        Some("tool_choice"),
    )
    .await;
    expect_400(
        json!({"model": "m", "messages": user, "tools": [{"type": "function"}]}),
        "Missing required parameter: 'tools[0].function'.",
        Some("tools[0].function"),
    )
    .await;
}

#[tokio::test]
async fn unparsable_json_is_a_400() {
    let server = mock().await;
    let response = openai(&server, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("We could not parse the JSON body of your request."));
}

#[tokio::test]
async fn embeddings_float_and_base64_agree() {
    let server = mock().await;
    let float: Value = openai(&server, "/v1/embeddings")
        .json(&json!({"model": "mock-embedding", "input": ["hello world", "second input"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(float["object"], "list");
    assert_eq!(float["model"], "mock-embedding");
    // 11 chars -> 3 tokens, 12 chars -> 3 tokens
    assert_eq!(
        float["usage"],
        json!({"prompt_tokens": 6, "total_tokens": 6})
    );
    let data = float["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let vectors: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            item["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    for vector in &vectors {
        assert_eq!(vector.len(), 16, "default dimensions");
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "unit length, got {norm}");
    }
    assert_ne!(vectors[0], vectors[1]);

    let b64: Value = openai(&server, "/v1/embeddings")
        .json(&json!({"model": "mock-embedding", "input": "hello world", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let encoded = b64["data"][0]["embedding"].as_str().unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(
        decoded, vectors[0],
        "same input -> same vector, in both encodings"
    );
}

#[tokio::test]
async fn embeddings_accept_tokens_and_dimensions() {
    let server = mock_with(MockOptions {
        embedding_dims: 8,
        ..MockOptions::default()
    })
    .await;
    let body: Value = openai(&server, "/v1/embeddings")
        .json(&json!({"model": "e", "input": [1, 2, 3]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    let body: Value = openai(&server, "/v1/embeddings")
        .json(&json!({"model": "e", "input": [[1, 2], [3]], "dimensions": 64}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["embedding"].as_array().unwrap().len(), 64);
    assert_eq!(body["usage"]["prompt_tokens"], 3);

    for (bad, message) in [
        (
            json!({"model": "e"}),
            "Missing required parameter: 'input'.",
        ),
        (json!({"model": "e", "input": ""}), "'$.input' is invalid"),
        (
            json!({"model": "e", "input": [true]}),
            "'$.input' is invalid",
        ),
        (
            json!({"model": "e", "input": "x", "dimensions": 0}),
            "below minimum",
        ),
        (
            json!({"model": "e", "input": "x", "encoding_format": "hex"}),
            "Invalid value: 'hex'",
        ),
        (json!({"input": "x"}), "you must provide a model parameter"),
    ] {
        let response = openai(&server, "/v1/embeddings")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{bad}: {error}"
        );
    }
}

#[tokio::test]
async fn models_lists_builtin_and_extra_models() {
    let server = mock_with(MockOptions {
        extra_models: vec!["gpt-4o".into()],
        ..MockOptions::default()
    })
    .await;
    let response = client()
        .get(format!("{}/v1/models", server.url()))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            assert_eq!(model["object"], "model");
            assert!(model["created"].is_u64());
            assert!(model["owned_by"].is_string());
            model["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, ["mock", "mock-embedding", "gpt-4o"]);

    let one: Value = client()
        .get(format!("{}/v1/models/gpt-4o", server.url()))
        .bearer_auth("k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "gpt-4o");
    let missing = client()
        .get(format!("{}/v1/models/nope", server.url()))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn missing_or_wrong_key_is_401_in_openai_shape() {
    let server = mock_with(MockOptions {
        require_key: Some("sk-right-key-123".into()),
        ..MockOptions::default()
    })
    .await;
    let url = format!("{}/v1/chat/completions", server.url());
    let request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});

    let response = client().post(&url).json(&request).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key."));

    let response = client()
        .post(&url)
        .bearer_auth("sk-wrong-key-456")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert!(!body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sk-wrong-key-456"));

    let response = client()
        .post(&url)
        .bearer_auth("sk-right-key-123")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let models = client()
        .get(format!("{}/v1/models", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
}

#[tokio::test]
async fn unknown_paths_and_health() {
    let server = mock().await;
    let response = openai(&server, "/v1/nope").send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Invalid URL (POST /v1/nope)");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let response = client()
        .get(format!("{}/v1/chat/completions", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string());

    let health = client()
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
