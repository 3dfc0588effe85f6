//! Whole (non-streaming) responses and error bodies: Anthropic ⇄ OpenAI.

use super::{
    anthropic_tool_id, anthropic_usage, finish_reason_from_anthropic, fresh_id, now_unix,
    openai_usage, stop_reason_from_openai, usage_from_anthropic, usage_from_openai, TranslateError,
};
use agentd_core::{ApiError, ErrorKind};
use serde_json::{json, Map, Value};

/// An Anthropic error body (`{"type":"error","error":{"type","message"}}`) as an [`ApiError`];
/// `None` when `body` is not one. The code is Anthropic's error type (`overloaded_error`, …).
pub fn anthropic_error(body: &Value) -> Option<ApiError> {
    let err = body.get("error")?.as_object()?;
    let ty = err
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("api_error");
    let kind = match ty {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" => ErrorKind::PermissionDenied,
        "not_found_error" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::PayloadTooLarge,
        "rate_limit_error" => ErrorKind::RateLimited,
        "billing_error" => ErrorKind::Budget,
        "timeout_error" => ErrorKind::UpstreamTimeout,
        "overloaded_error" => ErrorKind::Unavailable,
        // api_error and types added later: the provider failed.
        _ => ErrorKind::Upstream,
    };
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error");
    Some(ApiError::new(kind, ty.to_owned(), message))
}

/// An OpenAI error body (`{"error":{"message","type","param","code"}}`) as an [`ApiError`];
/// `None` when `body` is not one. The code is OpenAI's `code`, else its `type`.
pub fn openai_error(body: &Value) -> Option<ApiError> {
    let err = body.get("error")?.as_object()?;
    let ty = err.get("type").and_then(Value::as_str).unwrap_or("");
    let code = err.get("code").and_then(Value::as_str);
    let kind = match (ty, code) {
        (_, Some("rate_limit_exceeded")) => ErrorKind::RateLimited,
        (_, Some("insufficient_quota")) | ("insufficient_quota", _) => ErrorKind::Budget,
        (_, Some("invalid_api_key")) | ("authentication_error", _) => ErrorKind::Authentication,
        (_, Some("model_not_found")) | ("not_found_error", _) => ErrorKind::NotFound,
        ("invalid_request_error", _) => ErrorKind::InvalidRequest,
        ("permission_error", _) => ErrorKind::PermissionDenied,
        ("rate_limit_error" | "requests" | "tokens", _) => ErrorKind::RateLimited,
        ("service_unavailable" | "overloaded_error", _) => ErrorKind::Unavailable,
        // server_error, api_error, and whatever else a compatible server invents.
        _ => ErrorKind::Upstream,
    };
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("upstream error");
    let code = code
        .or((!ty.is_empty()).then_some(ty))
        .unwrap_or("upstream_error");
    let mut e = ApiError::new(kind, code.to_owned(), message);
    if let Some(param) = err.get("param").and_then(Value::as_str) {
        e = e.with_param(param);
    }
    Some(e)
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, TranslateError> {
    v.as_object()
        .ok_or_else(|| TranslateError::malformed(format!("{what} is not a JSON object")))
}

/// An Anthropic Messages response → an OpenAI chat completion.
///
/// `model` = the name to report in the translated answer (the public model name the client asked for).
pub fn anthropic_to_openai_response(body: &Value, model: &str) -> Result<Value, TranslateError> {
    let obj = object(body, "the response")?;
    if obj.get("type").and_then(Value::as_str) == Some("error") {
        if let Some(e) = anthropic_error(body) {
            return Err(TranslateError::Upstream(e));
        }
    }
    let blocks = obj
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| TranslateError::malformed("the response has no 'content' array"))?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let id = block.get("id").and_then(Value::as_str);
                let name = block.get("name").and_then(Value::as_str);
                let (Some(id), Some(name)) = (id, name) else {
                    return Err(TranslateError::malformed(
                        "a tool_use block lacks its id or name",
                    ));
                };
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            // thinking, redacted_thinking and server-tool blocks have no OpenAI counterpart.
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    message.insert("content".into(), content);
    message.insert("refusal".into(), Value::Null);
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    let finish = obj
        .get("stop_reason")
        .and_then(Value::as_str)
        .map_or("stop", finish_reason_from_anthropic);
    let usage = usage_from_anthropic(obj.get("usage").unwrap_or(&Value::Null));
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(|| fresh_id("chatcmpl-"), str::to_owned);
    Ok(json!({
        "id": id,
        "object": "chat.completion",
        "created": now_unix(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": openai_usage(&usage),
    }))
}

/// An OpenAI chat completion → an Anthropic Messages response.
pub fn openai_to_anthropic_response(body: &Value, model: &str) -> Result<Value, TranslateError> {
    let obj = object(body, "the response")?;
    if let Some(e) = openai_error(body) {
        return Err(TranslateError::Upstream(e));
    }
    let choice = obj
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| TranslateError::malformed("the response has no choices"))?;
    let message = object(
        choice.get("message").unwrap_or(&Value::Null),
        "choices[0].message",
    )?;
    let mut blocks = Vec::new();
    let mut push_text = |t: &str| {
        if !t.is_empty() {
            blocks.push(json!({"type": "text", "text": t}));
        }
    };
    match message.get("content") {
        Some(Value::String(s)) => push_text(s),
        // Some compatible servers answer with content parts.
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(t) = part.get("text").and_then(Value::as_str) {
                    push_text(t);
                }
            }
        }
        _ => {}
    }
    let refusal = message.get("refusal").and_then(Value::as_str);
    if let Some(r) = refusal {
        push_text(r);
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let f = call.get("function").unwrap_or(&Value::Null);
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| TranslateError::malformed("a tool call lacks its function name"))?;
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| fresh_id("toolu_"), anthropic_tool_id);
            blocks.push(json!({
                "type": "tool_use",
                "id": id,
                "name": name,
                "input": arguments_object(f.get("arguments"))?,
            }));
        }
    }
    if let Some(fc) = message.get("function_call").filter(|v| !v.is_null()) {
        let name = fc
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| TranslateError::malformed("a function call lacks its name"))?;
        blocks.push(json!({
            "type": "tool_use",
            "id": fresh_id("toolu_"),
            "name": name,
            "input": arguments_object(fc.get("arguments"))?,
        }));
    }
    let stop_reason = if refusal.is_some() {
        "refusal"
    } else {
        choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map_or("end_turn", stop_reason_from_openai)
    };
    let usage = usage_from_openai(obj.get("usage").unwrap_or(&Value::Null));
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(|| fresh_id("msg_"), str::to_owned);
    Ok(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": anthropic_usage(&usage),
    }))
}

/// Tool call arguments from the model → an Anthropic `input` object. A model that wrote
/// broken JSON produced an answer Anthropic's format cannot carry.
fn arguments_object(arguments: Option<&Value>) -> Result<Value, TranslateError> {
    let s = match arguments {
        None | Some(Value::Null) => return Ok(json!({})),
        Some(Value::String(s)) => s,
        // Some compatible servers send the arguments as an object already.
        Some(v @ Value::Object(_)) => return Ok(v.clone()),
        Some(_) => {
            return Err(TranslateError::malformed(
                "tool call arguments are not a string",
            ))
        }
    };
    if s.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(TranslateError::malformed(
            "tool call arguments are not a JSON object",
        )),
        Err(e) => Err(TranslateError::malformed(format!(
            "tool call arguments are not valid JSON: {e}"
        ))),
    }
}
