//! The provider clients against the real mock server over HTTP (and the in-process mock):
//! both clients × both inbound formats × plain/stream/tools, usage, every fault directive,
//! timeouts, auth headers and embeddings.

use std::path::Path;
use std::time::{Duration, Instant};

use agentd_config::{Config, Overrides, ProviderConfig};
use agentd_core::{ErrorKind, Usage};
use agentd_mock::{Api, MockOptions, MockServer, Plan};
use agentd_providers::{
    count_tokens, ApiFormat, ChatRequest, ChatResponse, ChatStream, JsonResponse, Provider,
    ProviderError, TimeoutPhase,
};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use serde_json::{json, Value};

const PUBLIC_MODEL: &str = "public-model";
const UPSTREAM_MODEL: &str = "upstream-model";
const PROMPT: &str = "What is the weather in Paris today?";

// ---- setup -----------------------------------------------------------------------------------

/// A validated provider config, built the way the gateway gets one: from TOML.
fn provider_config(name: &str, body: &str) -> ProviderConfig {
    let text = format!("[providers.{name}]\n{body}\n\n[models.m]\nprovider = \"{name}\"\n");
    let env = |_: &str| None;
    let config = Config::from_str(&text, Path::new("test.toml"), &env, &Overrides::default())
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n{text}"));
    config.provider(name).expect("provider exists").clone()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    OpenAi,
    Anthropic,
}

fn http_provider(kind: Kind, mock: &MockServer, extra: &str) -> Provider {
    let body = match kind {
        Kind::OpenAi => format!(
            "kind = \"openai\"\nbase_url = \"{}/v1\"\napi_key = \"sk-test-openai\"\n{extra}",
            mock.url()
        ),
        Kind::Anthropic => format!(
            "kind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"sk-ant-test\"\n{extra}",
            mock.url()
        ),
    };
    let name = match kind {
        Kind::OpenAi => "oai",
        Kind::Anthropic => "claude",
    };
    Provider::from_config(&provider_config(name, &body)).expect("provider builds")
}

fn mock_provider(extra: &str) -> Provider {
    Provider::from_config(&provider_config(
        "local",
        &format!("kind = \"mock\"\n{extra}"),
    ))
    .unwrap()
}

async fn mock_server() -> MockServer {
    agentd_mock::spawn(MockOptions::default())
        .await
        .expect("mock starts")
}

// ---- requests --------------------------------------------------------------------------------

fn openai_body(text: &str, stream: bool, tools: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": PUBLIC_MODEL,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": text}
        ],
        "stream": stream,
    });
    if stream && include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    if tools {
        body["tools"] = json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city", "days"]
                }
            }
        }]);
    }
    body
}

fn anthropic_body(text: &str, stream: bool, tools: bool) -> Value {
    let mut body = json!({
        "model": PUBLIC_MODEL,
        "max_tokens": 256,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    });
    if tools {
        body["tools"] = json!([{
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"]
            }
        }]);
    }
    body
}

fn request(
    format: ApiFormat,
    text: &str,
    stream: bool,
    tools: bool,
    include_usage: bool,
) -> ChatRequest {
    let body = match format {
        ApiFormat::OpenAi => openai_body(text, stream, tools, include_usage),
        ApiFormat::Anthropic => anthropic_body(text, stream, tools),
    };
    ChatRequest {
        format,
        body: body.into(),
        stream,
        include_usage: include_usage && format == ApiFormat::OpenAi,
        public_model: PUBLIC_MODEL.to_owned(),
        upstream_model: UPSTREAM_MODEL.to_owned(),
    }
}

// ---- answers, format-neutral -----------------------------------------------------------------

/// What a client can read from an answer, whatever its format.
#[derive(Clone, Debug, Default, PartialEq)]
struct Answer {
    model: String,
    text: String,
    /// (name, parsed arguments)
    tool_calls: Vec<(String, Value)>,
    /// Normalised to OpenAI's words.
    finish: String,
}

fn finish_from_anthropic(stop: &str) -> String {
    match stop {
        "end_turn" | "stop_sequence" => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" => "length",
        other => panic!("unexpected stop_reason {other}"),
    }
    .to_owned()
}

fn parse_complete(format: ApiFormat, body: &[u8]) -> (Answer, Usage) {
    let v: Value = serde_json::from_slice(body).expect("complete body is JSON");
    match format {
        ApiFormat::OpenAi => {
            assert_eq!(v["object"], "chat.completion", "{v}");
            let message = &v["choices"][0]["message"];
            assert_eq!(message["role"], "assistant");
            let tool_calls = message["tool_calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .map(|c| {
                            assert_eq!(c["type"], "function");
                            assert!(c["id"].as_str().is_some_and(|id| !id.is_empty()));
                            let args = c["function"]["arguments"]
                                .as_str()
                                .expect("arguments string");
                            (
                                c["function"]["name"].as_str().unwrap().to_owned(),
                                serde_json::from_str(args).expect("arguments are JSON"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let usage = &v["usage"];
            assert_eq!(
                usage["total_tokens"].as_u64().unwrap(),
                usage["prompt_tokens"].as_u64().unwrap()
                    + usage["completion_tokens"].as_u64().unwrap()
            );
            (
                Answer {
                    model: v["model"].as_str().unwrap().to_owned(),
                    text: message["content"].as_str().unwrap_or("").to_owned(),
                    tool_calls,
                    finish: v["choices"][0]["finish_reason"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                },
                Usage {
                    input_tokens: usage["prompt_tokens"].as_u64().unwrap(),
                    output_tokens: usage["completion_tokens"].as_u64().unwrap(),
                    cached_input_tokens: usage["prompt_tokens_details"]["cached_tokens"]
                        .as_u64()
                        .unwrap_or(0),
                },
            )
        }
        ApiFormat::Anthropic => {
            assert_eq!(v["type"], "message", "{v}");
            assert_eq!(v["role"], "assistant");
            let mut answer = Answer {
                model: v["model"].as_str().unwrap().to_owned(),
                finish: finish_from_anthropic(v["stop_reason"].as_str().unwrap()),
                ..Answer::default()
            };
            for block in v["content"].as_array().unwrap() {
                match block["type"].as_str().unwrap() {
                    "text" => answer.text.push_str(block["text"].as_str().unwrap()),
                    "tool_use" => {
                        assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()));
                        answer.tool_calls.push((
                            block["name"].as_str().unwrap().to_owned(),
                            block["input"].clone(),
                        ))
                    }
                    other => panic!("unexpected block {other}"),
                }
            }
            let usage = &v["usage"];
            let cache_read = usage["cache_read_input_tokens"].as_u64().unwrap_or(0);
            (
                answer,
                Usage {
                    input_tokens: usage["input_tokens"].as_u64().unwrap()
                        + cache_read
                        + usage["cache_creation_input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: usage["output_tokens"].as_u64().unwrap(),
                    cached_input_tokens: cache_read,
                },
            )
        }
    }
}

/// Splits one SSE frame into (event name, data), checking the framing is exact.
fn split_frame(frame: &Bytes) -> (Option<String>, String) {
    let text = std::str::from_utf8(frame).expect("frames are UTF-8");
    let body = text
        .strip_suffix("\n\n")
        .unwrap_or_else(|| panic!("frame not terminated: {text:?}"));
    let mut event = None;
    let mut data = None;
    for line in body.split('\n') {
        if let Some(name) = line.strip_prefix("event: ") {
            event = Some(name.to_owned());
        } else if let Some(d) = line.strip_prefix("data: ") {
            assert!(data.is_none(), "one data line per frame: {text:?}");
            data = Some(d.to_owned());
        } else {
            panic!("unexpected line {line:?} in {text:?}");
        }
    }
    (event, data.expect("frame has data"))
}

/// Parsed stream: the answer, and the usage chunk / message_delta usage if the stream had one.
struct Streamed {
    answer: Answer,
    /// OpenAI: the usage-only chunk, if present.
    usage_chunk: Option<Usage>,
    /// Anthropic: `message_delta`'s `usage.output_tokens`, if present.
    delta_output_tokens: Option<u64>,
    frames: usize,
}

fn parse_stream(format: ApiFormat, frames: &[Bytes]) -> Streamed {
    let mut answer = Answer::default();
    let mut usage_chunk = None;
    let mut delta_output_tokens = None;
    let mut ended = false;
    match format {
        ApiFormat::OpenAi => {
            let mut calls: Vec<(String, String)> = Vec::new();
            for (i, frame) in frames.iter().enumerate() {
                assert!(!ended, "frames after [DONE]");
                let (event, data) = split_frame(frame);
                assert_eq!(event, None, "OpenAI frames have no event name");
                if data == "[DONE]" {
                    assert_eq!(i, frames.len() - 1, "[DONE] is last");
                    ended = true;
                    continue;
                }
                let chunk: Value = serde_json::from_str(&data).unwrap();
                assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
                answer.model = chunk["model"].as_str().unwrap().to_owned();
                let choices = chunk["choices"].as_array().unwrap();
                if choices.is_empty() {
                    let u = &chunk["usage"];
                    usage_chunk = Some(Usage {
                        input_tokens: u["prompt_tokens"].as_u64().unwrap(),
                        output_tokens: u["completion_tokens"].as_u64().unwrap(),
                        cached_input_tokens: u["prompt_tokens_details"]["cached_tokens"]
                            .as_u64()
                            .unwrap_or(0),
                    });
                    continue;
                }
                let delta = &choices[0]["delta"];
                if let Some(text) = delta["content"].as_str() {
                    answer.text.push_str(text);
                }
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let index = call["index"].as_u64().unwrap() as usize;
                    if index == calls.len() {
                        assert!(
                            call["id"].as_str().is_some(),
                            "first delta of a call has its id"
                        );
                        calls.push((
                            call["function"]["name"].as_str().unwrap().to_owned(),
                            String::new(),
                        ));
                    }
                    if let Some(args) = call["function"]["arguments"].as_str() {
                        calls[index].1.push_str(args);
                    }
                }
                if let Some(finish) = choices[0]["finish_reason"].as_str() {
                    answer.finish = finish.to_owned();
                }
            }
            answer.tool_calls = calls
                .into_iter()
                .map(|(name, args)| {
                    (
                        name,
                        serde_json::from_str(&args).expect("streamed arguments are JSON"),
                    )
                })
                .collect();
        }
        ApiFormat::Anthropic => {
            let mut blocks: Vec<(String, String, String)> = Vec::new(); // (type, name, text or json)
            for (i, frame) in frames.iter().enumerate() {
                assert!(!ended, "frames after message_stop");
                let (event, data) = split_frame(frame);
                let v: Value = serde_json::from_str(&data).unwrap();
                let kind = v["type"].as_str().unwrap();
                assert_eq!(event.as_deref(), Some(kind), "event name matches data type");
                match kind {
                    "message_start" => {
                        assert_eq!(i, 0, "message_start first");
                        answer.model = v["message"]["model"].as_str().unwrap().to_owned();
                    }
                    "content_block_start" => {
                        let block = &v["content_block"];
                        let t = block["type"].as_str().unwrap().to_owned();
                        let name = block["name"].as_str().unwrap_or("").to_owned();
                        assert_eq!(v["index"].as_u64().unwrap() as usize, blocks.len());
                        blocks.push((t, name, String::new()));
                    }
                    "content_block_delta" => {
                        let index = v["index"].as_u64().unwrap() as usize;
                        let delta = &v["delta"];
                        match delta["type"].as_str().unwrap() {
                            "text_delta" => {
                                blocks[index].2.push_str(delta["text"].as_str().unwrap())
                            }
                            "input_json_delta" => blocks[index]
                                .2
                                .push_str(delta["partial_json"].as_str().unwrap()),
                            other => panic!("unexpected delta {other}"),
                        }
                    }
                    "content_block_stop" | "ping" => {}
                    "message_delta" => {
                        answer.finish =
                            finish_from_anthropic(v["delta"]["stop_reason"].as_str().unwrap());
                        delta_output_tokens = v["usage"]["output_tokens"].as_u64();
                    }
                    "message_stop" => {
                        assert_eq!(i, frames.len() - 1, "message_stop is last");
                        ended = true;
                    }
                    other => panic!("unexpected event {other}"),
                }
            }
            for (t, name, content) in blocks {
                match t.as_str() {
                    "text" => answer.text.push_str(&content),
                    "tool_use" => answer.tool_calls.push((
                        name,
                        if content.is_empty() {
                            json!({})
                        } else {
                            serde_json::from_str(&content).unwrap()
                        },
                    )),
                    other => panic!("unexpected block {other}"),
                }
            }
        }
    }
    assert!(ended, "stream ended with its terminal frame");
    Streamed {
        answer,
        usage_chunk,
        delta_output_tokens,
        frames: frames.len(),
    }
}

async fn complete(provider: &Provider, req: ChatRequest) -> JsonResponse {
    match provider.chat(req).await {
        Ok(ChatResponse::Complete(r)) => r,
        Ok(ChatResponse::Stream(_)) => panic!("asked for a complete answer, got a stream"),
        Err(e) => panic!("chat failed: {e}"),
    }
}

async fn stream(provider: &Provider, req: ChatRequest) -> ChatStream {
    match provider.chat(req).await {
        Ok(ChatResponse::Stream(s)) => s,
        Ok(ChatResponse::Complete(_)) => panic!("asked for a stream, got a complete answer"),
        Err(e) => panic!("chat failed: {e}"),
    }
}

/// Drains a stream: the frames, and the error it ended with (if any). Checks it ends after one error.
async fn drain(s: ChatStream) -> (Vec<Bytes>, Option<ProviderError>, Usage) {
    let (frames, error, s) = drain_keeping(s).await;
    (frames, error, s.usage())
}

/// [`drain`], handing back the ended stream itself (for `usage_estimated`).
async fn drain_keeping(mut s: ChatStream) -> (Vec<Bytes>, Option<ProviderError>, ChatStream) {
    let mut frames = Vec::new();
    let mut error = None;
    while let Some(item) = s.next().await {
        assert!(error.is_none(), "nothing after an error");
        match item {
            Ok(frame) => frames.push(frame),
            Err(e) => error = Some(e),
        }
    }
    assert!(s.next().await.is_none(), "stays ended");
    (frames, error, s)
}

// ---- what the mock itself says ---------------------------------------------------------------

async fn recorded(mock: &MockServer) -> Vec<Value> {
    let body = reqwest::get(format!("{}/_mock/requests", mock.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn clear_recorded(mock: &MockServer) {
    reqwest::Client::new()
        .delete(format!("{}/_mock/requests", mock.url()))
        .send()
        .await
        .unwrap();
}

/// The usage the mock computes for a request body it received, asked for without streaming
/// (token counts do not depend on streaming).
fn mock_usage(api: Api, upstream_body: &Value) -> Usage {
    let mut body = upstream_body.clone();
    body["stream"] = json!(false);
    body.as_object_mut().unwrap().remove("stream_options");
    let Plan::Json { body, status, .. } = agentd_mock::plan(
        api,
        body.to_string().as_bytes(),
        None,
        &MockOptions::default(),
    ) else {
        panic!("a plain request gets a JSON plan")
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, usage) = parse_complete(
        match api {
            Api::OpenAiChat => ApiFormat::OpenAi,
            Api::AnthropicMessages => ApiFormat::Anthropic,
            Api::OpenAiEmbeddings => unreachable!("chat only"),
        },
        body.to_string().as_bytes(),
    );
    usage
}

fn upstream_api(kind: Kind) -> Api {
    match kind {
        Kind::OpenAi => Api::OpenAiChat,
        Kind::Anthropic => Api::AnthropicMessages,
    }
}

fn native_format(kind: Kind) -> ApiFormat {
    match kind {
        Kind::OpenAi => ApiFormat::OpenAi,
        Kind::Anthropic => ApiFormat::Anthropic,
    }
}

// ---- the matrix: both clients × both formats × plain/stream × tools ------------------------------

async fn matrix(kind: Kind, format: ApiFormat) {
    let mock = mock_server().await;
    let provider = http_provider(kind, &mock, "");
    let translated = native_format(kind) != format;
    let expected_model = if translated {
        PUBLIC_MODEL
    } else {
        UPSTREAM_MODEL
    };

    for tools in [false, true] {
        clear_recorded(&mock).await;
        let done = complete(&provider, request(format, PROMPT, false, tools, false)).await;
        let sent = recorded(&mock).await;
        assert_eq!(sent.len(), 1);
        let upstream_body = &sent[0]["body"];
        assert_eq!(
            upstream_body["model"], UPSTREAM_MODEL,
            "the deployment's model goes upstream"
        );
        let expected_usage = mock_usage(upstream_api(kind), upstream_body);
        let (answer, body_usage) = parse_complete(format, &done.body);
        assert_eq!(done.usage, expected_usage, "usage of the complete answer");
        assert_eq!(
            body_usage, expected_usage,
            "usage in the body the client sees"
        );
        assert!(expected_usage.input_tokens > 0 && expected_usage.output_tokens > 0);
        assert_eq!(answer.model, expected_model);
        if tools {
            assert_eq!(
                answer.tool_calls,
                vec![("get_weather".to_owned(), json!({"city": "mock", "days": 1}))]
            );
            assert_eq!(answer.finish, "tool_calls");
        } else {
            assert!(
                answer
                    .text
                    .starts_with("Mock reply to: What is the weather in Paris today?"),
                "{answer:?}"
            );
            assert!(answer.tool_calls.is_empty());
            assert_eq!(answer.finish, "stop");
        }

        clear_recorded(&mock).await;
        let s = stream(&provider, request(format, PROMPT, true, tools, true)).await;
        let (frames, error, usage) = drain(s).await;
        assert!(error.is_none(), "{error:?}");
        let streamed = parse_stream(format, &frames);
        assert_eq!(
            streamed.answer, answer,
            "the stream says what the complete answer says"
        );
        assert_eq!(usage, expected_usage, "usage of the stream");
        match format {
            ApiFormat::OpenAi => assert_eq!(
                streamed.usage_chunk,
                Some(expected_usage),
                "include_usage chunk"
            ),
            ApiFormat::Anthropic => assert_eq!(
                streamed.delta_output_tokens,
                Some(expected_usage.output_tokens),
                "message_delta usage"
            ),
        }
        let sent = recorded(&mock).await;
        assert_eq!(sent[0]["body"]["stream"], true);
    }
}

#[tokio::test]
async fn openai_client_with_openai_requests() {
    matrix(Kind::OpenAi, ApiFormat::OpenAi).await;
}

#[tokio::test]
async fn openai_client_with_anthropic_requests() {
    matrix(Kind::OpenAi, ApiFormat::Anthropic).await;
}

#[tokio::test]
async fn anthropic_client_with_anthropic_requests() {
    matrix(Kind::Anthropic, ApiFormat::Anthropic).await;
}

#[tokio::test]
async fn anthropic_client_with_openai_requests() {
    matrix(Kind::Anthropic, ApiFormat::OpenAi).await;
}

#[tokio::test]
async fn passthrough_forwards_the_upstream_bytes_untouched() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        let format = native_format(kind);
        let done = complete(&provider, request(format, PROMPT, false, false, false)).await;
        // Same JSON as the mock's own answer for this body, key order and all (ids aside).
        let v: Value = serde_json::from_slice(&done.body).unwrap();
        let reencoded = serde_json::to_vec(&v).unwrap();
        assert_eq!(
            done.body.len(),
            reencoded.len(),
            "compact upstream bytes, not re-pretty-printed"
        );
    }
}

// ---- include_usage ----------------------------------------------------------------------------

#[tokio::test]
async fn usage_chunk_only_when_the_client_asked_but_always_accounted() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        for include_usage in [false, true] {
            clear_recorded(&mock).await;
            let s = stream(
                &provider,
                request(ApiFormat::OpenAi, PROMPT, true, false, include_usage),
            )
            .await;
            let (frames, error, usage) = drain(s).await;
            assert!(error.is_none());
            let streamed = parse_stream(ApiFormat::OpenAi, &frames);
            let sent = recorded(&mock).await;
            let expected = mock_usage(upstream_api(kind), &sent[0]["body"]);
            assert_eq!(usage, expected, "{kind:?} include_usage={include_usage}");
            if include_usage {
                assert_eq!(streamed.usage_chunk, Some(expected));
                // OpenAI puts `"usage": null` on every other chunk when usage was asked for.
                for frame in &frames[..frames.len() - 2] {
                    let (_, data) = split_frame(frame);
                    let v: Value = serde_json::from_str(&data).unwrap();
                    assert!(v.get("usage").is_some_and(Value::is_null), "{v}");
                }
            } else {
                assert_eq!(
                    streamed.usage_chunk, None,
                    "{kind:?}: no usage chunk unless asked"
                );
            }
            if kind == Kind::OpenAi {
                assert_eq!(
                    sent[0]["body"]["stream_options"]["include_usage"], true,
                    "the upstream is always asked for usage"
                );
            }
        }
    }
}

// ---- faults -----------------------------------------------------------------------------------

async fn chat_err(provider: &Provider, req: ChatRequest) -> ProviderError {
    match provider.chat(req).await {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn status_directives_map_to_provider_errors() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        let name = provider.name().to_owned();
        for stream in [false, true] {
            let cases: [(u16, StatusCode, bool); 7] = [
                (503, StatusCode::BAD_GATEWAY, true),
                (500, StatusCode::BAD_GATEWAY, true),
                (401, StatusCode::BAD_GATEWAY, false),
                (403, StatusCode::BAD_GATEWAY, false),
                (400, StatusCode::BAD_REQUEST, false),
                (404, StatusCode::BAD_GATEWAY, false),
                (413, StatusCode::PAYLOAD_TOO_LARGE, false),
            ];
            for (code, client_status, retryable) in cases {
                let text = format!("hello mock:status={code}");
                let err = chat_err(
                    &provider,
                    request(native_format(kind), &text, stream, false, false),
                )
                .await;
                let ProviderError::Status {
                    status,
                    message,
                    retry_after,
                } = &err
                else {
                    panic!("{kind:?} {code}: {err:?}")
                };
                assert_eq!(*status, code);
                assert!(
                    !message.is_empty() && !message.starts_with('{'),
                    "message extracted: {message}"
                );
                assert_eq!(*retry_after, None);
                assert_eq!(err.is_retryable(), retryable, "{code}");
                let api = err.to_api_error(&name);
                assert_eq!(api.status(), client_status, "{kind:?} {code}");
                assert!(
                    api.message.contains(&name),
                    "names the provider: {}",
                    api.message
                );
                assert!(
                    !api.message.contains("127.0.0.1"),
                    "never the URL: {}",
                    api.message
                );
                if code == 401 || code == 403 {
                    assert!(api
                        .message
                        .contains(&format!("check providers.{name}.api_key")));
                }
                if code == 400 {
                    assert!(
                        api.message.contains(message.as_str()),
                        "carries the upstream message"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        let err = chat_err(
            &provider,
            request(
                native_format(kind),
                "hi mock:status=429 mock:retry_after=7",
                true,
                false,
                false,
            ),
        )
        .await;
        let ProviderError::Status {
            status: 429,
            retry_after,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(7)));
        assert!(err.is_retryable());
        let api = err.to_api_error("p");
        assert_eq!(api.kind, ErrorKind::RateLimited);
        assert_eq!(api.retry_after, Some(Duration::from_secs(7)));
    }
}

#[tokio::test]
async fn reset_is_a_connect_error() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        for stream in [false, true] {
            let err = chat_err(
                &provider,
                request(native_format(kind), "hi mock:reset", stream, false, false),
            )
            .await;
            assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");
            assert!(err.is_retryable());
            assert_eq!(err.to_api_error("p").status(), StatusCode::BAD_GATEWAY);
        }
    }
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let cfg = provider_config(
        "gone",
        &format!("kind = \"openai\"\nbase_url = \"http://{addr}/v1\"\nconnect_timeout_ms = 2000"),
    );
    let provider = Provider::from_config(&cfg).unwrap();
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, "hi", false, false, false),
    )
    .await;
    let ProviderError::Connect(detail) = &err else {
        panic!("{err:?}")
    };
    assert!(
        !detail.contains(&addr.to_string()),
        "no URL in the message: {detail}"
    );
    let api = err.to_api_error("gone");
    assert_eq!(api.status(), StatusCode::BAD_GATEWAY);
    assert!(
        api.message.contains("cannot reach provider gone"),
        "{}",
        api.message
    );
}

#[tokio::test]
async fn first_token_timeout() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "first_token_timeout_ms = 100");
        // Stream: headers come at once, the first event after 500 ms.
        let started = Instant::now();
        let err = chat_err(
            &provider,
            request(
                native_format(kind),
                "hi mock:ttft_ms=500",
                true,
                false,
                false,
            ),
        )
        .await;
        assert!(
            matches!(
                err,
                ProviderError::Timeout {
                    phase: TimeoutPhase::FirstToken
                }
            ),
            "{err:?}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(90) && took < Duration::from_millis(450),
            "{took:?}"
        );
        assert_eq!(err.to_api_error("p").status(), StatusCode::GATEWAY_TIMEOUT);
        // Non-stream: no headers for 500 ms.
        let err = chat_err(
            &provider,
            request(
                native_format(kind),
                "hi mock:latency_ms=500",
                false,
                false,
                false,
            ),
        )
        .await;
        assert!(
            matches!(
                err,
                ProviderError::Timeout {
                    phase: TimeoutPhase::FirstToken
                }
            ),
            "{err:?}"
        );
        // Under the limit: fine.
        complete(
            &provider,
            request(
                native_format(kind),
                "hi mock:latency_ms=20",
                false,
                false,
                false,
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn whole_stream_timeout_after_some_frames() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "timeout_ms = 300");
        let s = stream(
            &provider,
            request(
                native_format(kind),
                "hi mock:token_delay_ms=50",
                true,
                false,
                false,
            ),
        )
        .await;
        let (frames, error, _) = drain(s).await;
        assert!(frames.len() >= 2, "{}", frames.len());
        assert!(
            matches!(
                error,
                Some(ProviderError::Timeout {
                    phase: TimeoutPhase::Total
                })
            ),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn cut_stream_yields_frames_then_stream_cut() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        for format in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
            let s = stream(
                &provider,
                request(format, "hi mock:cut_after=3", true, false, false),
            )
            .await;
            let (frames, error, usage) = drain(s).await;
            assert!(!frames.is_empty(), "{kind:?} {format:?}");
            assert!(
                matches!(error, Some(ProviderError::StreamCut(_))),
                "{kind:?} {format:?}: {error:?}"
            );
            assert!(error.unwrap().is_retryable());
            if native_format(kind) == format {
                assert_eq!(frames.len(), 3, "exactly the frames sent before the cut");
            }
            // Anthropic's message_start carries the input tokens even when the stream is cut.
            if kind == Kind::Anthropic {
                assert!(usage.input_tokens > 0);
            }
        }
        let err = chat_err(
            &provider,
            request(
                native_format(kind),
                "hi mock:cut_after=3",
                false,
                false,
                false,
            ),
        )
        .await;
        assert!(matches!(err, ProviderError::StreamCut(_)), "{err:?}");
    }
}

#[tokio::test]
async fn malformed_answers() {
    let mock = mock_server().await;
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        let provider = http_provider(kind, &mock, "");
        for format in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
            let err = chat_err(
                &provider,
                request(format, "hi mock:malformed", false, false, false),
            )
            .await;
            assert!(
                matches!(err, ProviderError::Malformed(_)),
                "{kind:?} {format:?}: {err:?}"
            );
            assert_eq!(err.to_api_error("p").status(), StatusCode::BAD_GATEWAY);

            let s = stream(
                &provider,
                request(format, "hi mock:malformed", true, false, false),
            )
            .await;
            let (frames, error, _) = drain(s).await;
            assert!(!frames.is_empty());
            assert!(
                matches!(error, Some(ProviderError::Malformed(_))),
                "{kind:?} {format:?}: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn translation_rejects_what_anthropic_cannot_express() {
    let mock = mock_server().await;
    let provider = http_provider(Kind::Anthropic, &mock, "");
    let mut req = request(ApiFormat::OpenAi, PROMPT, false, true, false);
    std::sync::Arc::make_mut(&mut req.body)["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    ]);
    let err = chat_err(&provider, req).await;
    let ProviderError::InvalidRequest(api) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.status(), StatusCode::BAD_REQUEST);
    assert!(!err.is_retryable());
}

// ---- credentials and headers -------------------------------------------------------------------

#[tokio::test]
async fn the_configured_key_and_headers_are_sent() {
    let options = MockOptions {
        require_key: Some("sk-the-right-one".to_owned()),
        ..MockOptions::default()
    };
    let mock = agentd_mock::spawn(options).await.unwrap();
    let url = mock.url();
    let cases = [
        (
            "openai",
            format!("kind = \"openai\"\nbase_url = \"{url}/v1\"\napi_key = \"KEY\"\nheaders = {{ \"x-team\" = \"blue\" }}"),
            ApiFormat::OpenAi,
        ),
        (
            "anthropic",
            format!("kind = \"anthropic\"\nbase_url = \"{url}\"\napi_key = \"KEY\"\nheaders = {{ \"x-team\" = \"blue\" }}\nanthropic_version = \"2023-06-01\""),
            ApiFormat::Anthropic,
        ),
    ];
    for (name, body, format) in cases {
        clear_recorded(&mock).await;
        let right = Provider::from_config(&provider_config(
            name,
            &body.replace("KEY", "sk-the-right-one"),
        ))
        .unwrap();
        complete(&right, request(format, PROMPT, false, false, false)).await;
        let sent = recorded(&mock).await;
        let headers = &sent[0]["headers"];
        assert_eq!(headers["x-team"], "blue", "{headers}");
        assert_eq!(headers["content-type"], "application/json");
        match format {
            ApiFormat::OpenAi => assert_eq!(headers["authorization"], "Bearer sk-the-right-one"),
            ApiFormat::Anthropic => {
                assert_eq!(headers["x-api-key"], "sk-the-right-one");
                assert_eq!(headers["anthropic-version"], "2023-06-01");
                assert!(headers.get("authorization").is_none());
            }
        }

        let wrong =
            Provider::from_config(&provider_config(name, &body.replace("KEY", "sk-wrong-key")))
                .unwrap();
        let err = chat_err(&wrong, request(format, PROMPT, false, false, false)).await;
        assert!(
            matches!(err, ProviderError::Status { status: 401, .. }),
            "{err:?}"
        );
        let api = err.to_api_error(name);
        assert_eq!(
            api.status(),
            StatusCode::BAD_GATEWAY,
            "not the client's 401"
        );
        assert_eq!(api.code, "provider_auth_failed");
        assert!(!api.message.contains("sk-wrong-key"));
        assert!(!format!("{err:?}").contains("sk-wrong-key"));
    }
}

// ---- embeddings ---------------------------------------------------------------------------------

#[tokio::test]
async fn embeddings_pass_through_float_and_base64() {
    let mock = mock_server().await;
    let provider = http_provider(Kind::OpenAi, &mock, "");
    let float = provider
        .embeddings(
            UPSTREAM_MODEL,
            json!({"model": PUBLIC_MODEL, "input": ["hello world", "bye"]}),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&float.body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], UPSTREAM_MODEL);
    let vectors: Vec<Vec<f32>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    assert_eq!(vectors.len(), 2);
    assert_eq!(vectors[0].len(), MockOptions::DEFAULT_EMBEDDING_DIMS);
    assert_eq!(
        float.usage.input_tokens,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert!(float.usage.input_tokens > 0);
    assert_eq!(float.usage.output_tokens, 0);

    let b64 = provider
        .embeddings(
            UPSTREAM_MODEL,
            json!({"model": PUBLIC_MODEL, "input": ["hello world", "bye"], "encoding_format": "base64"}),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&b64.body).unwrap();
    for (i, d) in v["data"].as_array().unwrap().iter().enumerate() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(d["embedding"].as_str().expect("base64 string"))
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, vectors[i], "base64 passes through byte for byte");
    }
    assert_eq!(b64.usage, float.usage);

    let anthropic = http_provider(Kind::Anthropic, &mock, "");
    let err = anthropic
        .embeddings(UPSTREAM_MODEL, json!({"model": "m", "input": "x"}))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unsupported(_)));
    assert_eq!(err.to_api_error("claude").status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn embeddings_errors_are_status_errors() {
    let mock = mock_server().await;
    let provider = http_provider(Kind::OpenAi, &mock, "");
    let err = provider
        .embeddings(UPSTREAM_MODEL, json!({"model": "m", "input": 5.5}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Status { status: 400, .. }),
        "{err:?}"
    );
}

// ---- the in-process mock ------------------------------------------------------------------------

fn without_ids(mut answer: Answer) -> Answer {
    answer.model.clear();
    answer
}

#[tokio::test]
async fn in_process_mock_answers_like_the_mock_server() {
    let server = mock_server().await;
    let local = mock_provider("");
    for (kind, format) in [
        (Kind::OpenAi, ApiFormat::OpenAi),
        (Kind::Anthropic, ApiFormat::Anthropic),
    ] {
        let remote = http_provider(kind, &server, "");
        for tools in [false, true] {
            let a = complete(&local, request(format, PROMPT, false, tools, false)).await;
            let b = complete(&remote, request(format, PROMPT, false, tools, false)).await;
            let (answer_a, usage_a) = parse_complete(format, &a.body);
            let (answer_b, _) = parse_complete(format, &b.body);
            assert_eq!(answer_a.model, UPSTREAM_MODEL);
            assert_eq!(without_ids(answer_a), without_ids(answer_b.clone()));
            assert_eq!(a.usage, b.usage);
            assert_eq!(a.usage, usage_a);

            for include_usage in [false, true] {
                let s = stream(&local, request(format, PROMPT, true, tools, include_usage)).await;
                let (frames, error, usage) = drain(s).await;
                assert!(error.is_none(), "{error:?}");
                let streamed = parse_stream(format, &frames);
                assert_eq!(without_ids(streamed.answer), without_ids(answer_b.clone()));
                assert_eq!(usage, b.usage, "stream usage is accounted");
                if format == ApiFormat::OpenAi {
                    assert_eq!(streamed.usage_chunk.is_some(), include_usage);
                }
                assert!(streamed.frames > 3);
            }
        }
    }
    let e = local
        .embeddings(
            "mock-embedding",
            json!({"model": "x", "input": "hello world"}),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&e.body).unwrap();
    assert_eq!(
        v["data"][0]["embedding"].as_array().unwrap().len(),
        MockOptions::DEFAULT_EMBEDDING_DIMS
    );
    assert_eq!(
        e.usage.input_tokens,
        v["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn in_process_mock_faults() {
    let local = mock_provider("");
    for format in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
        let err = chat_err(
            &local,
            request(
                format,
                "x mock:status=429 mock:retry_after=3",
                false,
                false,
                false,
            ),
        )
        .await;
        let ProviderError::Status {
            status: 429,
            retry_after,
            message,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(*retry_after, Some(Duration::from_secs(3)));
        assert!(message.contains("Rate limit"), "{message}");

        let err = chat_err(
            &local,
            request(format, "x mock:status=503", true, false, false),
        )
        .await;
        assert!(
            matches!(err, ProviderError::Status { status: 503, .. }),
            "{err:?}"
        );

        let err = chat_err(&local, request(format, "x mock:reset", true, false, false)).await;
        assert!(matches!(err, ProviderError::Connect(_)), "{err:?}");

        let err = chat_err(
            &local,
            request(format, "x mock:malformed", false, false, false),
        )
        .await;
        assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");
        let (frames, error, _) = drain(
            stream(
                &local,
                request(format, "x mock:malformed", true, false, false),
            )
            .await,
        )
        .await;
        assert!(!frames.is_empty());
        assert!(
            matches!(error, Some(ProviderError::Malformed(_))),
            "{error:?}"
        );

        let err = chat_err(
            &local,
            request(format, "x mock:cut_after=2", false, false, false),
        )
        .await;
        assert!(matches!(err, ProviderError::StreamCut(_)), "{err:?}");
        let (frames, error, _) = drain(
            stream(
                &local,
                request(format, "x mock:cut_after=2", true, false, false),
            )
            .await,
        )
        .await;
        assert_eq!(frames.len(), 2);
        assert!(
            matches!(error, Some(ProviderError::StreamCut(_))),
            "{error:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn in_process_mock_honours_delays_and_timeouts() {
    // 200 ms to the first token, 10 ms per token afterwards, as configured.
    let local = mock_provider(
        "ttft_ms = 200\ntoken_delay_ms = 10\nfirst_token_timeout_ms = 1000\ntimeout_ms = 5000",
    );
    let started = tokio::time::Instant::now();
    let s = stream(
        &local,
        request(ApiFormat::OpenAi, "hi mock:tokens=5", true, false, false),
    )
    .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(200),
        "returned at the first frame"
    );
    let (frames, error, usage) = drain(s).await;
    assert!(error.is_none());
    assert_eq!(usage.output_tokens, 5);
    let streamed = parse_stream(ApiFormat::OpenAi, &frames);
    assert_eq!(streamed.answer.finish, "stop");
    assert!(
        started.elapsed() >= Duration::from_millis(200 + 5 * 10),
        "{:?}",
        started.elapsed()
    );

    // A first token later than first_token_timeout.
    let started = tokio::time::Instant::now();
    let err = chat_err(
        &local,
        request(
            ApiFormat::Anthropic,
            "hi mock:ttft_ms=1500",
            true,
            false,
            false,
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::FirstToken
            }
        ),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_millis(1000));

    // Slow tokens: the whole-stream timeout fires between frames.
    let s = stream(
        &local,
        request(
            ApiFormat::OpenAi,
            "hi mock:token_delay_ms=1000 mock:tokens=20",
            true,
            false,
            false,
        ),
    )
    .await;
    let (frames, error, _) = drain(s).await;
    assert!(!frames.is_empty() && frames.len() < 10, "{}", frames.len());
    assert!(
        matches!(
            error,
            Some(ProviderError::Timeout {
                phase: TimeoutPhase::Total
            })
        ),
        "{error:?}"
    );

    // Non-stream answers take the whole generation time; too long is a first-token timeout.
    let err = chat_err(
        &local,
        request(
            ApiFormat::OpenAi,
            "hi mock:latency_ms=2000",
            false,
            false,
            false,
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::FirstToken
            }
        ),
        "{err:?}"
    );
}

// ---- a scripted upstream: exact bytes, for what the mock cannot say -----------------------------

/// One canned HTTP answer, its body sent in pieces with pauses.
#[derive(Clone)]
struct Script {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    chunks: Vec<(Duration, Bytes)>,
}

impl Script {
    fn ok(content_type: &'static str, body: &str) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type", content_type)],
            chunks: vec![(Duration::ZERO, Bytes::from(body.to_owned()))],
        }
    }

    /// The body in pieces of `size` bytes (splitting events, lines and UTF-8 characters).
    fn split(mut self, size: usize) -> Self {
        let all: Vec<u8> = self.chunks.iter().flat_map(|(_, c)| c.to_vec()).collect();
        self.chunks = all
            .chunks(size)
            .map(|c| (Duration::ZERO, Bytes::copy_from_slice(c)))
            .collect();
        self
    }
}

struct Scripted {
    url: String,
    /// Bodies received, in order.
    received: std::sync::Arc<std::sync::Mutex<Vec<Bytes>>>,
    /// TCP connections accepted.
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `script` on every POST path.
async fn scripted(script: Script) -> Scripted {
    use axum::response::IntoResponse;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = received.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let script = script.clone();
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(body);
            let chunks = futures::stream::iter(script.chunks).then(|(delay, chunk)| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::io::Error>(chunk)
            });
            let mut resp = axum::body::Body::from_stream(chunks).into_response();
            *resp.status_mut() = StatusCode::from_u16(script.status).unwrap();
            for (k, v) in script.headers {
                resp.headers_mut()
                    .insert(k, http::HeaderValue::from_static(v));
            }
            resp
        }
    });
    use axum::serve::ListenerExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = connections.clone();
    let listener = listener.tap_io(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Scripted {
        url,
        received,
        connections,
        task,
    }
}

fn scripted_provider(kind: Kind, upstream: &Scripted, extra: &str) -> Provider {
    let body = match kind {
        Kind::OpenAi => format!(
            "kind = \"openai\"\nbase_url = \"{}/v1\"\n{extra}",
            upstream.url
        ),
        Kind::Anthropic => format!(
            "kind = \"anthropic\"\nbase_url = \"{}\"\napi_key = \"k\"\n{extra}",
            upstream.url
        ),
    };
    Provider::from_config(&provider_config("up", &body)).unwrap()
}

#[tokio::test]
async fn same_format_answers_are_forwarded_byte_for_byte() {
    // Odd spacing, key order and unknown fields must survive: we never re-serialise.
    let openai = r#"{"id":"chatcmpl-1",  "object":"chat.completion","created":1,"model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"h\u00e9llo"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}},"service_tier":"default" }"#;
    let upstream = scripted(Script::ok("application/json", openai)).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let done = complete(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    assert_eq!(done.body, openai.as_bytes());
    assert_eq!(
        done.usage,
        Usage {
            input_tokens: 11,
            output_tokens: 4,
            cached_input_tokens: 8
        }
    );
    let sent: Value = serde_json::from_slice(&upstream.received.lock().unwrap()[0]).unwrap();
    let mut expected = openai_body(PROMPT, false, false, false);
    expected["model"] = json!(UPSTREAM_MODEL);
    assert_eq!(sent, expected, "only the model is rewritten");

    let anthropic = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":2,"cache_creation_input_tokens":1,"cache_read_input_tokens":3}}"#;
    let upstream = scripted(Script::ok("application/json", anthropic)).await;
    let provider = scripted_provider(Kind::Anthropic, &upstream, "");
    let done = complete(
        &provider,
        request(ApiFormat::Anthropic, PROMPT, false, false, false),
    )
    .await;
    assert_eq!(done.body, anthropic.as_bytes());
    assert_eq!(
        done.usage,
        Usage {
            input_tokens: 9,
            output_tokens: 2,
            cached_input_tokens: 3
        }
    );
}

const OPENAI_STREAM: &str = concat!(
    ": keep-alive comment\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\r\n\r\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Gr\u{fc}\u{df}e\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" aus\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" Paris\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: [DONE]\n\n",
);

#[tokio::test]
async fn streams_split_anywhere_are_reassembled_into_the_same_frames() {
    for size in [1, 3, 7, 64, 4096] {
        let upstream = scripted(Script::ok("text/event-stream", OPENAI_STREAM).split(size)).await;
        let provider = scripted_provider(Kind::OpenAi, &upstream, "");
        let (frames, error, _) = drain(
            stream(
                &provider,
                request(ApiFormat::OpenAi, PROMPT, true, false, false),
            )
            .await,
        )
        .await;
        assert!(error.is_none(), "{size}: {error:?}");
        let streamed = parse_stream(ApiFormat::OpenAi, &frames);
        assert_eq!(streamed.answer.text, "Grüße aus Paris", "split at {size}");
        assert_eq!(frames.len(), 6, "the comment is dropped, every event kept");
    }
}

#[tokio::test]
async fn streams_without_usage_are_counted_with_the_tokenizer() {
    let upstream = scripted(Script::ok("text/event-stream", OPENAI_STREAM)).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let s = stream(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, true, false, false),
    )
    .await;
    let (_, error, s) = drain_keeping(s).await;
    assert!(error.is_none());
    assert!(s.usage_estimated());
    assert_eq!(
        s.usage(),
        Usage {
            input_tokens: prompt_count(PROMPT),
            output_tokens: count_tokens("Grüße aus Paris"),
            cached_input_tokens: 0
        },
        "input: the prompt's o200k tokens + chat overhead; output: the streamed text's"
    );
}

#[tokio::test]
async fn an_error_event_before_any_content_is_an_error_result() {
    let body = "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n\n";
    let upstream = scripted(Script::ok("text/event-stream", body)).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, true, false, false),
    )
    .await;
    assert!(
        matches!(&err, ProviderError::Status { status: 429, message, .. } if message == "Rate limit reached"),
        "{err:?}"
    );

    // Anthropic sends message_start first; an error right after it still precedes any content.
    let body = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    );
    let upstream = scripted(Script::ok("text/event-stream", body)).await;
    let provider = scripted_provider(Kind::Anthropic, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::Anthropic, PROMPT, true, false, false),
    )
    .await;
    assert!(
        matches!(err, ProviderError::Status { status: 529, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn an_error_event_mid_stream_is_forwarded_in_the_clients_format() {
    let mut chunks = vec![(Duration::ZERO, Bytes::from(OPENAI_STREAM.split("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" aus").next().unwrap().to_owned()))];
    chunks.push((
        Duration::from_millis(20),
        Bytes::from_static(b"data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"code\":null}}\n\n"),
    ));
    let script = Script {
        status: 200,
        headers: vec![("content-type", "text/event-stream")],
        chunks,
    };

    // Same format: the upstream error frame as it came.
    let upstream = scripted(script.clone()).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let (frames, error, _) = drain(
        stream(
            &provider,
            request(ApiFormat::OpenAi, PROMPT, true, false, false),
        )
        .await,
    )
    .await;
    assert!(error.is_none(), "an error event is a clean end: {error:?}");
    let (_, last) = split_frame(frames.last().unwrap());
    let last: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(last["error"]["message"], "The server had an error");

    // Translated: an Anthropic error event.
    let (frames, error, _) = drain(
        stream(
            &provider,
            request(ApiFormat::Anthropic, PROMPT, true, false, false),
        )
        .await,
    )
    .await;
    assert!(error.is_none(), "{error:?}");
    let (event, data) = split_frame(frames.last().unwrap());
    assert_eq!(event.as_deref(), Some("error"));
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["type"], "error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("The server had an error"),
        "{data}"
    );
}

#[tokio::test]
async fn broken_streams_and_bodies() {
    // EOF inside an event.
    let partial = &OPENAI_STREAM[..OPENAI_STREAM.len() - 10];
    let upstream = scripted(Script::ok("text/event-stream", partial)).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let (frames, error, _) = drain(
        stream(
            &provider,
            request(ApiFormat::OpenAi, PROMPT, true, false, false),
        )
        .await,
    )
    .await;
    assert_eq!(frames.len(), 5);
    assert!(
        matches!(error, Some(ProviderError::StreamCut(_))),
        "{error:?}"
    );

    // A JSON answer to a stream request.
    let upstream = scripted(Script::ok("application/json", "{\"choices\":[]}")).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, true, false, false),
    )
    .await;
    assert!(matches!(err, ProviderError::Malformed(_)), "{err:?}");

    // An empty event stream.
    let upstream = scripted(Script::ok("text/event-stream", "")).await;
    let provider = scripted_provider(Kind::Anthropic, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::Anthropic, PROMPT, true, false, false),
    )
    .await;
    assert!(matches!(err, ProviderError::StreamCut(_)), "{err:?}");
}

#[tokio::test]
async fn error_statuses_with_odd_bodies_and_retry_headers() {
    let script = Script {
        status: 503,
        headers: vec![
            ("content-type", "text/html"),
            ("retry-after-ms", "1500"),
            ("retry-after", "2"),
        ],
        chunks: vec![(
            Duration::ZERO,
            Bytes::from_static(b"<html>upstream overloaded</html>"),
        )],
    };
    let upstream = scripted(script).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    let ProviderError::Status {
        status,
        message,
        retry_after,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (*status, message.as_str()),
        (503, "<html>upstream overloaded</html>")
    );
    assert_eq!(*retry_after, Some(Duration::from_millis(1500)));

    let script = Script {
        status: 429,
        headers: vec![("content-type", "application/json"), ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
        chunks: vec![(Duration::ZERO, Bytes::from_static(br#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#))],
    };
    let upstream = scripted(script).await;
    let provider = scripted_provider(Kind::Anthropic, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, true, false, false),
    )
    .await;
    let ProviderError::Status {
        status: 429,
        message,
        retry_after,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(message.starts_with("Number of request tokens"), "{message}");
    assert_eq!(*retry_after, Some(Duration::ZERO), "a past date means now");
}

#[tokio::test]
async fn slow_body_after_headers_is_a_first_token_timeout() {
    let script = Script {
        status: 200,
        headers: vec![("content-type", "application/json")],
        chunks: vec![(Duration::from_millis(400), Bytes::from_static(b"{}"))],
    };
    let upstream = scripted(script).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "first_token_timeout_ms = 100");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::FirstToken
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn connections_are_reused_after_complete_streams() {
    let upstream = scripted(Script::ok("text/event-stream", OPENAI_STREAM)).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    for _ in 0..3 {
        let (_, error, _) = drain(
            stream(
                &provider,
                request(ApiFormat::OpenAi, PROMPT, true, false, false),
            )
            .await,
        )
        .await;
        assert!(error.is_none());
    }
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one keep-alive connection for three streams"
    );
}

#[tokio::test]
async fn connections_are_reused_after_complete_answers() {
    let body = r#"{"id":"c","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    let upstream = scripted(Script::ok("application/json", body)).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    for _ in 0..3 {
        complete(
            &provider,
            request(ApiFormat::OpenAi, PROMPT, false, false, false),
        )
        .await;
    }
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one keep-alive connection for three answers"
    );
}

// ---- a raw TCP upstream: for answers no HTTP server library would send ------------------------

/// Accepts connections on 127.0.0.1, reads whatever comes, writes `reply` (if any) and keeps the
/// socket open until the test ends.
struct RawUpstream {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_upstream(reply: Option<Vec<u8>>) -> RawUpstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            if let Some(reply) = &reply {
                // The request head and body arrive in one or two reads on loopback.
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(reply).await;
            }
            open.push(socket);
        }
    });
    RawUpstream { addr, task }
}

fn raw_provider(base_url: &str, extra: &str) -> Provider {
    Provider::from_config(&provider_config(
        "raw",
        &format!("kind = \"openai\"\nbase_url = \"{base_url}\"\n{extra}"),
    ))
    .unwrap()
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_a_connect_timeout() {
    // The TCP connection is accepted at once; the server never answers the ClientHello.
    let upstream = raw_upstream(None).await;
    let provider = raw_provider(
        &format!("https://{}/v1", upstream.addr),
        "connect_timeout_ms = 200\nfirst_token_timeout_ms = 5000",
    );
    let started = Instant::now();
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                phase: TimeoutPhase::Connect
            }
        ),
        "{err:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_eq!(
        err.to_api_error("raw").status(),
        StatusCode::GATEWAY_TIMEOUT
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_connect_error_without_the_url() {
    let mock = mock_server().await;
    let https = mock.url().replace("http://", "https://");
    let provider = raw_provider(&format!("{https}/v1"), "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    let ProviderError::Connect(detail) = &err else {
        panic!("{err:?}")
    };
    assert!(!detail.contains("127.0.0.1"), "no URL: {detail}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn answers_larger_than_the_cap_are_refused() {
    // A declared length over 64 MiB is refused before reading anything.
    let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 68157440\r\n\r\n{\"id\":";
    let upstream = raw_upstream(Some(head.to_vec())).await;
    let provider = raw_provider(&format!("http://{}/v1", upstream.addr), "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    assert!(
        matches!(&err, ProviderError::Malformed(m) if m.contains("64 MiB")),
        "{err:?}"
    );

    // Without a length, the cap applies as the chunks arrive.
    let chunk = Bytes::from(vec![b' '; 1024 * 1024]);
    let script = Script {
        status: 200,
        headers: vec![("content-type", "application/json")],
        chunks: (0..65).map(|_| (Duration::ZERO, chunk.clone())).collect(),
    };
    let upstream = scripted(script).await;
    let provider = scripted_provider(Kind::OpenAi, &upstream, "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    assert!(
        matches!(&err, ProviderError::Malformed(m) if m.contains("64 MiB")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_cut_short_of_its_length_is_a_stream_cut() {
    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"id\":\"x\"";
    // Unlike `raw_upstream`, this one closes the socket after the partial body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut buf).await;
        socket.write_all(reply).await.unwrap();
        // Dropped: EOF after 9 of 100 bytes.
    });
    let provider = raw_provider(&format!("http://{addr}/v1"), "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    assert!(matches!(err, ProviderError::StreamCut(_)), "{err:?}");
    server.await.unwrap();
}

#[tokio::test]
async fn redirects_are_not_followed_and_the_target_is_not_shown() {
    let reply = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://elsewhere.example/v1/chat/completions?key=secret\r\ncontent-length: 0\r\n\r\n";
    let upstream = raw_upstream(Some(reply.to_vec())).await;
    let provider = raw_provider(&format!("http://{}/v1", upstream.addr), "");
    let err = chat_err(
        &provider,
        request(ApiFormat::OpenAi, PROMPT, false, false, false),
    )
    .await;
    let ProviderError::Status {
        status: 307,
        message,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(message.contains("providers.raw.base_url"), "{message}");
    let api = err.to_api_error("raw");
    assert_eq!(api.status(), StatusCode::BAD_GATEWAY);
    assert!(!api.message.contains("elsewhere"), "{}", api.message);
    assert!(!api.message.contains("secret"), "{}", api.message);
}

#[test]
fn base_urls_that_cannot_be_request_targets_are_config_errors() {
    for (base_url, expected) in [
        (
            "http://user:pw@localhost:8000/v1",
            "must not contain credentials",
        ),
        ("http://localhost:99999/v1", "is not a valid URL"),
    ] {
        let cfg = provider_config(
            "bad",
            &format!("kind = \"openai\"\nbase_url = \"{base_url}\""),
        );
        let err = Provider::from_config(&cfg).unwrap_err();
        let ProviderError::Config(message) = &err else {
            panic!("{base_url}: {err:?}")
        };
        assert!(message.contains("providers.bad.base_url"), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains("pw"), "{message}");
    }
}

// ---- token accounting when the provider reports no usage -----------------------------------------

/// The o200k count of the test prompt (system "You are terse." + one user message, no tools)
/// with the chat overhead: 3 per message, 3 to prime the reply.
fn prompt_count(user_text: &str) -> u64 {
    count_tokens(&format!("You are terse.\n{user_text}")) + 2 * 3 + 3
}

/// The text the model generated, as far as the client's frames show it (the stream may be
/// cut): content, tool names and argument fragments.
fn streamed_text(format: ApiFormat, frames: &[Bytes]) -> String {
    let mut text = String::new();
    for frame in frames {
        let (_, data) = split_frame(frame);
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            assert_eq!(data, "[DONE]");
            continue;
        };
        match format {
            ApiFormat::OpenAi => {
                for choice in v["choices"].as_array().into_iter().flatten() {
                    let delta = &choice["delta"];
                    text.push_str(delta["content"].as_str().unwrap_or_default());
                    for call in delta["tool_calls"].as_array().into_iter().flatten() {
                        text.push_str(call["function"]["name"].as_str().unwrap_or_default());
                        text.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
                    }
                }
            }
            ApiFormat::Anthropic => match v["type"].as_str().unwrap() {
                "content_block_start" => {
                    let block = &v["content_block"];
                    text.push_str(block["name"].as_str().unwrap_or_default());
                    text.push_str(block["text"].as_str().unwrap_or_default());
                }
                "content_block_delta" => {
                    let delta = &v["delta"];
                    text.push_str(delta["text"].as_str().unwrap_or_default());
                    text.push_str(delta["partial_json"].as_str().unwrap_or_default());
                }
                _ => {}
            },
        }
    }
    text
}

/// Every way a stream reaches us: both HTTP clients against the mock server, and the
/// in-process mock, each with both client formats. (label, provider, upstream format, format)
fn every_stream_path(server: &MockServer) -> Vec<(String, Provider, ApiFormat, ApiFormat)> {
    let mut paths = Vec::new();
    for kind in [Kind::OpenAi, Kind::Anthropic] {
        for format in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
            paths.push((
                format!("{kind:?} client, {format:?} request"),
                http_provider(kind, server, ""),
                native_format(kind),
                format,
            ));
        }
    }
    for format in [ApiFormat::OpenAi, ApiFormat::Anthropic] {
        paths.push((
            format!("in-process mock, {format:?} request"),
            mock_provider(""),
            format,
            format,
        ));
    }
    paths
}

#[tokio::test]
async fn streams_without_usage_count_the_streamed_text() {
    let server = mock_server().await;
    let text = "hi mock:no_usage";
    for (label, provider, upstream, format) in every_stream_path(&server) {
        for tools in [false, true] {
            let s = stream(&provider, request(format, text, true, tools, true)).await;
            let (frames, error, s) = drain_keeping(s).await;
            assert!(error.is_none(), "{label}: {error:?}");
            let streamed = parse_stream(format, &frames);
            if upstream == format {
                // Passed through: no usage chunk, since the upstream sent none.
                assert_eq!(streamed.usage_chunk, None, "{label}");
            }
            assert!(s.usage_estimated(), "{label}");
            let usage = s.usage();
            let generated = streamed_text(format, &frames);
            if tools {
                assert!(
                    generated.starts_with("get_weather{"),
                    "{label}: {generated}"
                );
            } else {
                assert!(
                    generated.starts_with("Mock reply to: hi."),
                    "{label}: {generated}"
                );
                assert_eq!(usage.input_tokens, prompt_count(text), "{label}");
            }
            assert_eq!(
                usage.output_tokens,
                count_tokens(&generated),
                "{label} tools={tools}: {generated:?}"
            );
            assert!(usage.output_tokens > 0 && usage.input_tokens > 0);
            assert_eq!(usage.cached_input_tokens, 0);
        }
    }
}

#[tokio::test]
async fn streams_with_usage_keep_the_providers_numbers() {
    let server = mock_server().await;
    for (label, provider, upstream, format) in every_stream_path(&server) {
        let req = request(format, PROMPT, true, false, false);
        // What the mock counts for this conversation, in the format it received it.
        let upstream_body = match (format, upstream) {
            (ApiFormat::OpenAi, ApiFormat::Anthropic) => {
                agentd_providers::translate::openai_to_anthropic_request(&req.body, UPSTREAM_MODEL)
                    .unwrap()
            }
            (ApiFormat::Anthropic, ApiFormat::OpenAi) => {
                agentd_providers::translate::anthropic_to_openai_request(&req.body, UPSTREAM_MODEL)
                    .unwrap()
            }
            (ApiFormat::OpenAi, ApiFormat::OpenAi)
            | (ApiFormat::Anthropic, ApiFormat::Anthropic) => (*req.body).clone(),
        };
        let api = match upstream {
            ApiFormat::OpenAi => Api::OpenAiChat,
            ApiFormat::Anthropic => Api::AnthropicMessages,
        };
        let expected = mock_usage(api, &upstream_body);
        let (frames, error, s) = drain_keeping(stream(&provider, req).await).await;
        assert!(error.is_none(), "{label}: {error:?}");
        assert!(!s.usage_estimated(), "{label}");
        assert_eq!(s.usage(), expected, "{label}");
        // The mock's own count, not the tokenizer's: they differ for this text.
        assert_ne!(
            expected.output_tokens,
            count_tokens(&streamed_text(format, &frames)),
            "{label}: the test must tell the two apart"
        );
    }
}

#[tokio::test]
async fn cut_streams_count_the_tokens_generated_so_far() {
    let server = mock_server().await;
    let text = "hi mock:cut_after=5";
    for (label, provider, upstream, format) in every_stream_path(&server) {
        let (frames, error, s) =
            drain_keeping(stream(&provider, request(format, text, true, false, false)).await).await;
        assert!(
            matches!(error, Some(ProviderError::StreamCut(_))),
            "{label}: {error:?}"
        );
        assert!(s.usage_estimated(), "{label}: the final counts never came");
        let usage = s.usage();
        let generated = streamed_text(format, &frames);
        // OpenAI: role chunk + 4 tokens; Anthropic: message_start, block start, ping + 2 tokens.
        let expected_text = match upstream {
            ApiFormat::OpenAi => "Mock reply to: hi.",
            ApiFormat::Anthropic => "Mock reply",
        };
        assert_eq!(generated, expected_text, "{label}");
        assert_eq!(usage.output_tokens, count_tokens(expected_text), "{label}");
        match upstream {
            // No usage at all: the prompt is counted.
            ApiFormat::OpenAi => assert_eq!(usage.input_tokens, prompt_count(text), "{label}"),
            // message_start reported the input side: the mock's count stands (asked here with
            // a text of the same length, without the directive: the mock counts characters).
            ApiFormat::Anthropic => {
                let same_length = "x".repeat(text.chars().count());
                let reported = mock_usage(
                    Api::AnthropicMessages,
                    &anthropic_body(&same_length, false, false),
                );
                assert_eq!(usage.input_tokens, reported.input_tokens, "{label}");
            }
        }
    }
}
