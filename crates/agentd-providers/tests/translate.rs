//! Wire-format translation checked against JSON fixtures (`tests/fixtures/`), plus round-trip
//! properties and the error cases a client can trigger.

use agentd_core::{ErrorKind, Usage};
use agentd_providers::sse::{frame, SseEvent, SseParser};
use agentd_providers::translate::{
    anthropic_error, anthropic_to_openai_request, anthropic_to_openai_response, openai_error,
    openai_to_anthropic_request, openai_to_anthropic_response, AnthropicToOpenAiStream,
    OpenAiToAnthropicStream, TranslateError,
};
use bytes::Bytes;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// All fixtures in `dir`, by file name. Fails when there are fewer than `min`, so a moved
/// directory cannot make the tests pass vacuously.
fn fixtures(dir: &str, min: usize) -> Vec<(String, Value)> {
    let path = fixtures_dir().join(dir);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .map(|entry| {
            let p = entry.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= min,
        "expected at least {min} fixtures in {dir}, found {}",
        out.len()
    );
    out
}

fn fixture(path: &str) -> Value {
    let p = fixtures_dir().join(path);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Remove `created` (the translation time) after checking it is a plausible timestamp.
fn strip_created(v: &mut Value) {
    let created = v
        .as_object_mut()
        .and_then(|o| o.remove("created"))
        .unwrap_or_else(|| panic!("no 'created' in {v}"));
    assert!(
        created.as_u64().is_some_and(|c| c > 1_700_000_000),
        "{created}"
    );
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Requests

#[test]
fn openai_requests_translate_to_anthropic() {
    for (name, f) in fixtures("requests/openai_to_anthropic", 6) {
        let got = openai_to_anthropic_request(&f["input"], f["upstream_model"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, f["output"], "{name}: got\n{}", pretty(&got));
    }
}

#[test]
fn anthropic_requests_translate_to_openai() {
    for (name, f) in fixtures("requests/anthropic_to_openai", 5) {
        let got = anthropic_to_openai_request(&f["input"], f["upstream_model"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, f["output"], "{name}: got\n{}", pretty(&got));
    }
}

/// Rewrite equivalent spellings to one form so round trips compare meaning: string content
/// is a single text part, tool call arguments are compared as JSON.
fn normalize_openai_messages(messages: &Value) -> Value {
    let mut messages = messages.clone();
    for m in messages.as_array_mut().unwrap() {
        if let Some(Value::String(s)) = m.get("content") {
            if m["role"] != "assistant" {
                m["content"] = json!([{"type": "text", "text": s}]);
            }
        }
        if let Some(Value::Array(calls)) = m.get_mut("tool_calls") {
            for c in calls {
                let args: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
                c["function"]["arguments"] = args;
            }
        }
    }
    messages
}

fn normalize_anthropic_messages(messages: &Value) -> Value {
    let mut messages = messages.clone();
    for m in messages.as_array_mut().unwrap() {
        if let Some(Value::String(s)) = m.get("content") {
            m["content"] = json!([{"type": "text", "text": s}]);
        }
    }
    messages
}

#[test]
fn openai_to_anthropic_to_openai_keeps_messages_tools_and_tool_calls() {
    let original = json!({
        "model": "smart",
        "messages": [
            {"role": "system", "content": "You can look up the weather."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/p.jpg"}}
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"unit\":\"c\",\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "09:00"}, {"type": "text", "text": "CET"}]},
            {"role": "user", "content": "Thanks. And tomorrow?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"day\":\"tomorrow\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_3", "content": "20C"},
            {"role": "assistant", "content": "18C now, 20C tomorrow."}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.8,
        "max_completion_tokens": 300,
        "user": "u-1"
    });
    let anthropic = openai_to_anthropic_request(&original, "claude").unwrap();
    let back = anthropic_to_openai_request(&anthropic, "gpt").unwrap();
    assert_eq!(
        normalize_openai_messages(&back["messages"]),
        normalize_openai_messages(&original["messages"]),
        "anthropic form:\n{}",
        pretty(&anthropic)
    );
    for key in [
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stop",
        "temperature",
        "top_p",
        "max_completion_tokens",
        "user",
    ] {
        assert_eq!(back[key], original[key], "{key}");
    }
}

#[test]
fn anthropic_to_openai_to_anthropic_keeps_messages_tools_and_tool_use() {
    let original = json!({
        "model": "claude",
        "max_tokens": 1000,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/p.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris", "days": [1, 2]}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": [{"type": "text", "text": "09:00"}, {"type": "text", "text": "CET"}]},
                {"type": "text", "text": "And tomorrow?"}
            ]},
            {"role": "assistant", "content": "20C."}
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.8,
        "metadata": {"user_id": "u-1"},
        "stream": true
    });
    let openai = anthropic_to_openai_request(&original, "gpt").unwrap();
    let back = openai_to_anthropic_request(&openai, "claude").unwrap();
    assert_eq!(
        normalize_anthropic_messages(&back["messages"]),
        normalize_anthropic_messages(&original["messages"]),
        "openai form:\n{}",
        pretty(&openai)
    );
    for key in [
        "model",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "stop_sequences",
        "temperature",
        "top_p",
        "metadata",
        "stream",
    ] {
        assert_eq!(back[key], original[key], "{key}");
    }
}

#[test]
fn client_mistakes_the_other_api_cannot_express_are_400s_with_param() {
    let user = json!({"role": "user", "content": "hi"});
    let cases = [
        (
            json!({"messages": [user, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": "}}]}]}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": [user, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}]}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (json!({"messages": [user], "n": 2}), "n"),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}),
            "messages[0].content[0].type",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}]}),
            "messages[0].content[0].file.file_id",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!({"messages": [user], "tools": [{"type": "custom", "custom": {"name": "grep"}}]}),
            "tools[0].type",
        ),
        (
            json!({"messages": [{"role": "system", "content": "only a system prompt"}]}),
            "messages",
        ),
        (
            json!({"messages": [user, {"role": "function", "name": "f", "content": "r"}]}),
            "messages[1].name",
        ),
    ];
    for (body, param) in cases {
        let e = openai_to_anthropic_request(&body, "claude").expect_err(&body.to_string());
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{body}");
        assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
    }
    let e = openai_to_anthropic_request(&cases_arguments_body(), "claude").unwrap_err();
    assert!(e.message.contains("not valid JSON"), "{}", e.message);

    let base = |extra: Value| {
        let mut b = json!({"model": "c", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (
            base(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})),
            "tools[0].type",
        ),
        (
            base(
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}),
            ),
            "messages[0].content[0].source.type",
        ),
        (
            base(
                json!({"messages": [{"role": "user", "content": [{"type": "search_result", "source": "x"}]}]}),
            ),
            "messages[0].content[0].type",
        ),
    ];
    for (body, param) in cases {
        let e = anthropic_to_openai_request(&body, "gpt").expect_err(&body.to_string());
        assert_eq!(e.kind, ErrorKind::InvalidRequest, "{body}");
        assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
    }
}

fn cases_arguments_body() -> Value {
    json!({"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}
    ]})
}

#[test]
fn tool_choice_is_only_sent_with_tools() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none", "parallel_tool_calls": false});
    let out = openai_to_anthropic_request(&body, "claude").unwrap();
    assert!(
        out.get("tool_choice").is_none() && out.get("tools").is_none(),
        "{out}"
    );
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "parallel_tool_calls": false,
        "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "none"});
    let out = openai_to_anthropic_request(&body, "claude").unwrap();
    // Anthropic's "none" choice has no parallel flag.
    assert_eq!(out["tool_choice"], json!({"type": "none"}));
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "parallel_tool_calls": false,
        "tools": [{"type": "function", "function": {"name": "f"}}]});
    let out = openai_to_anthropic_request(&body, "claude").unwrap();
    assert_eq!(
        out["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let body = json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "auto"}});
    let out = anthropic_to_openai_request(&body, "gpt").unwrap();
    assert!(
        out.get("tool_choice").is_none() && out.get("parallel_tool_calls").is_none(),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// Responses and errors

#[test]
fn anthropic_responses_translate_to_openai() {
    for (name, f) in fixtures("responses/anthropic_to_openai", 8) {
        let mut got = anthropic_to_openai_response(&f["input"], f["model"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        strip_created(&mut got);
        assert_eq!(got, f["output"], "{name}: got\n{}", pretty(&got));
    }
}

#[test]
fn openai_responses_translate_to_anthropic() {
    for (name, f) in fixtures("responses/openai_to_anthropic", 5) {
        let got = openai_to_anthropic_response(&f["input"], f["model"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, f["output"], "{name}: got\n{}", pretty(&got));
    }
}

#[test]
fn responses_round_trip() {
    for (name, f) in fixtures("responses/anthropic_to_openai", 8) {
        let original = &f["input"];
        let openai = anthropic_to_openai_response(original, "m").unwrap();
        let back = openai_to_anthropic_response(&openai, "m").unwrap();
        let kept: Vec<&Value> = original["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] != "thinking")
            .collect();
        let text: String = kept.iter().filter_map(|b| b["text"].as_str()).collect();
        let tools: Vec<Value> = kept
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| (*b).clone())
            .collect();
        let back_text: String = back["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect();
        let back_tools: Vec<Value> = back["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .cloned()
            .collect();
        assert_eq!(back_text, text, "{name}");
        assert_eq!(back_tools, tools, "{name}");
        let expected_stop = match original["stop_reason"].as_str().unwrap() {
            "stop_sequence" | "pause_turn" => "end_turn",
            "model_context_window_exceeded" => "max_tokens",
            other => other,
        };
        assert_eq!(back["stop_reason"], expected_stop, "{name}");
        assert_eq!(back["id"], original["id"], "{name}");
        let u = &original["usage"];
        let total_in = [
            "input_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ]
        .iter()
        .map(|k| u[k].as_u64().unwrap_or(0))
        .sum::<u64>();
        let bu = &back["usage"];
        assert_eq!(
            bu["input_tokens"].as_u64().unwrap() + bu["cache_read_input_tokens"].as_u64().unwrap(),
            total_in,
            "{name}"
        );
        assert_eq!(
            bu["cache_read_input_tokens"],
            u["cache_read_input_tokens"].as_u64().unwrap_or(0),
            "{name}"
        );
        assert_eq!(bu["output_tokens"], u["output_tokens"], "{name}");
    }
}

#[test]
fn anthropic_error_bodies_become_openai_errors() {
    let cases = fixture("errors/anthropic.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let e = anthropic_error(&case["input"]).expect("an error body");
        assert_eq!(
            u64::from(e.status().as_u16()),
            case["status"].as_u64().unwrap(),
            "{case}"
        );
        assert_eq!(e.openai_body(), case["openai"], "{case}");
        match anthropic_to_openai_response(&case["input"], "m") {
            Err(TranslateError::Upstream(inner)) => assert_eq!(inner, e),
            other => panic!("{case}: {other:?}"),
        }
    }
    assert!(anthropic_error(&json!({"type": "message", "content": []})).is_none());
}

#[test]
fn openai_error_bodies_become_anthropic_errors() {
    let cases = fixture("errors/openai.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let e = openai_error(&case["input"]).expect("an error body");
        assert_eq!(
            u64::from(e.status().as_u16()),
            case["status"].as_u64().unwrap(),
            "{case}"
        );
        assert_eq!(e.anthropic_body(), case["anthropic"], "{case}");
        match openai_to_anthropic_response(&case["input"], "m") {
            Err(TranslateError::Upstream(inner)) => assert_eq!(inner, e),
            other => panic!("{case}: {other:?}"),
        }
    }
    let e = openai_error(&json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})).unwrap();
    assert_eq!(
        (e.code.as_ref(), e.param.as_deref()),
        ("context_length_exceeded", Some("messages"))
    );
}

#[test]
fn malformed_upstream_responses_are_translate_errors() {
    let malformed =
        |r: Result<Value, TranslateError>| matches!(r, Err(TranslateError::Malformed(_)));
    assert!(malformed(anthropic_to_openai_response(&json!([]), "m")));
    assert!(malformed(anthropic_to_openai_response(
        &json!({"id": "msg", "type": "message"}),
        "m"
    )));
    assert!(malformed(anthropic_to_openai_response(
        &json!({"content": [{"type": "tool_use", "input": {}}]}),
        "m"
    )));
    assert!(malformed(openai_to_anthropic_response(
        &json!({"id": "x", "choices": []}),
        "m"
    )));
    assert!(malformed(openai_to_anthropic_response(
        &json!({"choices": [{"message": "hi"}]}),
        "m"
    )));
    let broken_args = json!({"choices": [{"message": {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1"}}
    ]}, "finish_reason": "tool_calls"}]});
    assert!(malformed(openai_to_anthropic_response(&broken_args, "m")));
}

#[test]
fn missing_upstream_ids_are_generated_and_unique() {
    let body = json!({"choices": [{"message": {"role": "assistant", "content": "x", "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"type": "function", "function": {"name": "g", "arguments": {"already": "an object"}}}
    ]}, "finish_reason": "tool_calls"}]});
    let out = openai_to_anthropic_response(&body, "m").unwrap();
    let id = out["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"), "{id}");
    let a = out["content"][1]["id"].as_str().unwrap();
    let b = out["content"][2]["id"].as_str().unwrap();
    assert!(
        a.starts_with("toolu_") && b.starts_with("toolu_") && a != b,
        "{a} {b}"
    );
    assert_eq!(out["content"][2]["input"], json!({"already": "an object"}));
    assert_eq!(out["usage"]["input_tokens"], 0);
}

// ---------------------------------------------------------------------------------------------
// Streams

fn event_of(v: &Value) -> SseEvent {
    SseEvent {
        event: v["event"].as_str().map(str::to_owned),
        data: match &v["data"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

/// Parse one translator output frame; it must be exactly one complete SSE event.
fn parse_frame(bytes: &Bytes) -> SseEvent {
    let mut p = SseParser::new();
    let events = p.push(bytes);
    assert_eq!(events.len(), 1, "{:?}", String::from_utf8_lossy(bytes));
    assert!(!p.has_partial());
    events.into_iter().next().unwrap()
}

/// A frame as fixture JSON: `{"event", "data"}` with `data` parsed unless it is `[DONE]`.
fn frame_json(e: &SseEvent) -> Value {
    let data = if e.data == "[DONE]" {
        json!("[DONE]")
    } else {
        serde_json::from_str(&e.data).unwrap()
    };
    json!({"event": e.event, "data": data})
}

fn usage_json(u: Usage) -> Value {
    json!({"input_tokens": u.input_tokens, "output_tokens": u.output_tokens, "cached_input_tokens": u.cached_input_tokens})
}

#[test]
fn anthropic_streams_translate_to_openai_chunks() {
    for (name, f) in fixtures("streams/anthropic_to_openai", 4) {
        let mut t = AnthropicToOpenAiStream::new(
            f["model"].as_str().unwrap(),
            f["include_usage"].as_bool().unwrap(),
        );
        let mut frames = Vec::new();
        for ev in f["events"].as_array().unwrap() {
            // Events after the end (the error fixture has one) must produce nothing.
            frames.extend(
                t.push(&event_of(ev))
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            );
        }
        assert!(t.is_done(), "{name}");
        let mut created = None;
        let got: Vec<Value> = frames
            .iter()
            .map(|b| {
                let mut v = frame_json(&parse_frame(b));
                if let Some(obj) = v["data"].as_object_mut() {
                    if let Some(c) = obj.remove("created") {
                        // Every chunk of one completion carries the same timestamp.
                        assert_eq!(*created.get_or_insert(c.clone()), c, "{name}");
                    }
                }
                v
            })
            .collect();
        assert_eq!(
            Value::Array(got.clone()),
            f["frames"],
            "{name}: got\n{}",
            pretty(&Value::Array(got))
        );
        assert_eq!(usage_json(t.usage()), f["usage"], "{name}");
    }
}

#[test]
fn openai_streams_translate_to_anthropic_events() {
    for (name, f) in fixtures("streams/openai_to_anthropic", 4) {
        let mut t = OpenAiToAnthropicStream::new(f["model"].as_str().unwrap());
        let mut frames = Vec::new();
        for ev in f["events"].as_array().unwrap() {
            frames.extend(
                t.push(&event_of(ev))
                    .unwrap_or_else(|e| panic!("{name}: {e}")),
            );
        }
        assert!(t.is_done(), "{name}");
        let got: Vec<Value> = frames.iter().map(|b| frame_json(&parse_frame(b))).collect();
        assert_eq!(
            Value::Array(got.clone()),
            f["frames"],
            "{name}: got\n{}",
            pretty(&Value::Array(got))
        );
        assert_eq!(usage_json(t.usage()), f["usage"], "{name}");
    }
}

/// The assistant message an Anthropic event stream describes: text and tool calls with their
/// inputs parsed, the stop reason.
fn assemble_anthropic(frames: &[SseEvent]) -> Value {
    let mut text = String::new();
    let mut tools: Vec<(String, String, String)> = Vec::new();
    let mut stop = Value::Null;
    for f in frames {
        let d: Value = serde_json::from_str(&f.data).unwrap();
        assert_eq!(f.event.as_deref(), d["type"].as_str(), "event name = type");
        match d["type"].as_str().unwrap() {
            "content_block_start" if d["content_block"]["type"] == "tool_use" => tools.push((
                d["content_block"]["id"].as_str().unwrap().to_owned(),
                d["content_block"]["name"].as_str().unwrap().to_owned(),
                String::new(),
            )),
            "content_block_delta" => match d["delta"]["type"].as_str().unwrap() {
                "text_delta" => text.push_str(d["delta"]["text"].as_str().unwrap()),
                "input_json_delta" => tools
                    .last_mut()
                    .unwrap()
                    .2
                    .push_str(d["delta"]["partial_json"].as_str().unwrap()),
                _ => {}
            },
            "message_delta" => stop = d["delta"]["stop_reason"].clone(),
            _ => {}
        }
    }
    let tools: Vec<Value> = tools
        .into_iter()
        .map(|(id, name, input)| json!({"id": id, "name": name, "input": serde_json::from_str::<Value>(&input).unwrap()}))
        .collect();
    json!({"text": text, "tools": tools, "stop_reason": stop})
}

#[test]
fn anthropic_stream_survives_a_round_trip_through_openai_chunks() {
    let f = fixture("streams/anthropic_to_openai/thinking_text_and_parallel_tools.json");
    let original: Vec<SseEvent> = f["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(event_of)
        .collect();
    let mut to_openai = AnthropicToOpenAiStream::new("m", true);
    let mut to_anthropic = OpenAiToAnthropicStream::new("m");
    let mut wire = Vec::new();
    for ev in &original {
        wire.extend(to_openai.push(ev).unwrap());
    }
    // Through real SSE bytes, as a client would receive them.
    let bytes: Vec<u8> = wire.iter().flat_map(|b| b.to_vec()).collect();
    let openai_events = SseParser::new().push(&bytes);
    let mut back = Vec::new();
    for ev in &openai_events {
        for b in to_anthropic.push(ev).unwrap() {
            back.push(parse_frame(&b));
        }
    }
    assert!(to_anthropic.is_done());
    assert_eq!(assemble_anthropic(&back), assemble_anthropic(&original));
    assert_eq!(to_anthropic.usage(), to_openai.usage());
    assert_eq!(to_openai.usage().output_tokens, 89);
}

#[test]
fn upstream_bytes_split_anywhere_give_the_same_translation() {
    let f = fixture("streams/anthropic_to_openai/thinking_text_and_parallel_tools.json");
    // Encode the recorded events as upstream bytes, mixing line endings as real servers do.
    let mut upstream = Vec::new();
    for (i, ev) in f["events"].as_array().unwrap().iter().enumerate() {
        let e = event_of(ev);
        let raw = frame(e.event.as_deref(), &e.data).to_vec();
        if i % 2 == 1 {
            upstream.extend(
                String::from_utf8(raw)
                    .unwrap()
                    .replace('\n', "\r\n")
                    .into_bytes(),
            );
        } else {
            upstream.extend(raw);
        }
        if i == 3 {
            upstream.extend(b": keep-alive\n\n");
        }
    }
    let run = |parts: &[&[u8]]| -> Vec<Bytes> {
        let mut parser = SseParser::new();
        let mut t = AnthropicToOpenAiStream::new("m", false);
        let mut out = Vec::new();
        for part in parts {
            for ev in parser.push(part) {
                out.extend(t.push(&ev).unwrap());
            }
        }
        assert!(t.is_done() && !parser.has_partial());
        out
    };
    let normalize = |frames: Vec<Bytes>| -> Vec<Value> {
        frames
            .iter()
            .map(|b| {
                let mut v = frame_json(&parse_frame(b));
                if let Some(o) = v["data"].as_object_mut() {
                    o.remove("created");
                }
                v
            })
            .collect()
    };
    let whole = normalize(run(&[&upstream]));
    assert_eq!(whole.len(), f["frames"].as_array().unwrap().len());
    for i in 0..=upstream.len() {
        assert_eq!(
            normalize(run(&[&upstream[..i], &upstream[i..]])),
            whole,
            "split at {i}"
        );
    }
}

#[test]
fn stream_cut_midway_is_visible_as_a_partial_event() {
    let mut parser = SseParser::new();
    let events = parser.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":3}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_b");
    assert_eq!(events.len(), 1);
    assert!(parser.has_partial());
    let mut t = AnthropicToOpenAiStream::new("m", true);
    assert_eq!(t.push(&events[0]).unwrap().len(), 1);
    assert!(!t.is_done());
}

#[test]
fn openai_servers_that_reuse_or_omit_tool_call_indexes_are_understood() {
    let chunk = |delta: Value| SseEvent {
        event: None,
        data: json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
            .to_string(),
    };
    let mut t = OpenAiToAnthropicStream::new("m");
    let mut frames = Vec::new();
    // Ollama: every parallel call has index 0, only the id differs; each call comes whole.
    frames.extend(t.push(&chunk(json!({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}))).unwrap());
    frames.extend(t.push(&chunk(json!({"tool_calls": [{"index": 0, "id": "call_b", "function": {"name": "g", "arguments": "{\"y\":2}"}}]}))).unwrap());
    // Gemini-style: no index at all.
    frames.extend(
        t.push(&chunk(
            json!({"tool_calls": [{"id": "call_c", "function": {"name": "h", "arguments": "{}"}}]}),
        ))
        .unwrap(),
    );
    frames.extend(
        t.push(&SseEvent {
            event: None,
            data: "[DONE]".into(),
        })
        .unwrap(),
    );
    let events: Vec<SseEvent> = frames.iter().map(parse_frame).collect();
    let msg = assemble_anthropic(&events);
    assert_eq!(
        msg["tools"],
        json!([
            {"id": "call_a", "name": "f", "input": {"x": 1}},
            {"id": "call_b", "name": "g", "input": {"y": 2}},
            {"id": "call_c", "name": "h", "input": {}}
        ])
    );
    // Without a finish_reason the turn still ends cleanly.
    assert_eq!(msg["stop_reason"], "end_turn");
    let starts = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_start"))
        .count();
    let stops = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_stop"))
        .count();
    assert_eq!((starts, stops), (3, 3));
}

#[test]
fn malformed_streams_are_translate_errors() {
    let ev = |event: Option<&str>, data: &str| SseEvent {
        event: event.map(str::to_owned),
        data: data.to_owned(),
    };
    let mut t = AnthropicToOpenAiStream::new("m", false);
    assert!(matches!(
        t.push(&ev(Some("message_start"), "{not json")),
        Err(TranslateError::Json(_))
    ));
    let mut t = AnthropicToOpenAiStream::new("m", false);
    let delta =
        r#"{"type":"content_block_delta","index":4,"delta":{"type":"text_delta","text":"x"}}"#;
    assert!(matches!(
        t.push(&ev(Some("content_block_delta"), delta)),
        Err(TranslateError::Malformed(_))
    ));

    let mut t = OpenAiToAnthropicStream::new("m");
    assert!(matches!(
        t.push(&ev(None, "{\"choices\": [")),
        Err(TranslateError::Json(_))
    ));
    let mut t = OpenAiToAnthropicStream::new("m");
    let call = |i: u64, args: &str, id: Option<&str>| {
        let mut c = json!({"index": i, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = json!(id);
            c["function"]["name"] = json!("f");
        }
        ev(
            None,
            &json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [c]}}]})
                .to_string(),
        )
    };
    t.push(&call(0, "{", Some("a"))).unwrap();
    t.push(&call(1, "{", Some("b"))).unwrap();
    // A late fragment of call 0 cannot be placed: its block is closed.
    assert!(matches!(
        t.push(&call(0, "}", None)),
        Err(TranslateError::Malformed(_))
    ));
    let mut t = OpenAiToAnthropicStream::new("m");
    // A call whose first fragment has no name.
    assert!(matches!(
        t.push(&call(0, "{", None)),
        Err(TranslateError::Malformed(_))
    ));
}

#[test]
fn anthropic_stream_without_message_delta_still_finishes() {
    let mut t = AnthropicToOpenAiStream::new("m", false);
    let events = [
        r#"{"type":"message_start","message":{"id":"msg_x","usage":{"input_tokens":1,"output_tokens":0}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}"#,
        r#"{"type":"message_stop"}"#,
    ];
    let mut frames = Vec::new();
    for e in events {
        // The event name is optional: the payload's type decides.
        frames.extend(
            t.push(&SseEvent {
                event: None,
                data: e.to_owned(),
            })
            .unwrap(),
        );
    }
    let last_chunk: Value =
        serde_json::from_str(&parse_frame(&frames[frames.len() - 2]).data).unwrap();
    assert_eq!(last_chunk["choices"][0]["finish_reason"], "stop");
    assert!(last_chunk.get("usage").is_none());
    assert_eq!(parse_frame(frames.last().unwrap()).data, "[DONE]");
    // Nothing more once done.
    assert!(t
        .push(&SseEvent {
            event: None,
            data: events[3].to_owned()
        })
        .unwrap()
        .is_empty());
}

#[test]
fn openai_to_anthropic_message_start_carries_the_prompt_estimate_not_zero() {
    let mut t = OpenAiToAnthropicStream::new("m").with_input_estimate(42);
    let first = SseEvent {
        event: None,
        data: r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}"#
            .to_owned(),
    };
    let frames = t.push(&first).unwrap();
    let start: serde_json::Value = serde_json::from_str(&parse_frame(&frames[0]).data).unwrap();
    assert_eq!(start["type"], "message_start", "{start}");
    assert_eq!(start["message"]["usage"]["input_tokens"], 42, "{start}");
}
