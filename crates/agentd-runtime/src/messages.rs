//! Messages between the two shapes the runtime speaks: LangChain's dicts in thread state and
//! on the agent API (`{"type":"human"|"ai"|"tool"|"system", "content", "id", …}`), and OpenAI
//! chat messages towards the gateway.

use serde_json::{json, Map, Value};

/// Why an input message was refused, with the field at fault (`input.messages[2].role`).
#[derive(Debug, PartialEq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: String, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// A message id as LangChain makes them.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Reads one input message (`{"role":"user","content":..}` or `{"type":"human",..}`, or a bare
/// string) into LangChain shape, with an id.
pub fn from_input(value: &Value, field: &str) -> Result<Value, Invalid> {
    let obj = match value {
        Value::String(s) => return Ok(human(s)),
        Value::Object(o) => o,
        _ => {
            return Err(invalid(
                field.to_owned(),
                "must be an object with role (or type) and content",
            ))
        }
    };
    let kind = obj
        .get("type")
        .or_else(|| obj.get("role"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            invalid(
                format!("{field}.role"),
                "is required (user, assistant, system or tool; or type human, ai, system, tool)",
            )
        })?;
    let kind = match kind {
        "human" | "user" => "human",
        "ai" | "assistant" => "ai",
        "system" | "developer" => "system",
        "tool" => "tool",
        other => {
            return Err(invalid(
                format!("{field}.role"),
                format!(
                    "unknown role {}: use user, assistant, system or tool",
                    agentd_core::echo(other)
                ),
            ))
        }
    };
    let content = match obj.get("content") {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(c @ (Value::String(_) | Value::Array(_))) => c.clone(),
        Some(_) => {
            return Err(invalid(
                format!("{field}.content"),
                "must be a string or a list of content parts",
            ))
        }
    };
    let mut out = Map::new();
    out.insert("type".into(), Value::String(kind.into()));
    out.insert("content".into(), content);
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    out.insert("id".into(), Value::String(id));
    for key in ["name", "tool_call_id", "tool_calls", "additional_kwargs"] {
        if let Some(v) = obj.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if kind == "tool" && !out.contains_key("tool_call_id") {
        return Err(invalid(
            format!("{field}.tool_call_id"),
            "is required for a tool message",
        ));
    }
    if kind == "ai" {
        out.entry("tool_calls").or_insert_with(|| json!([]));
    }
    Ok(Value::Object(out))
}

pub fn human(text: &str) -> Value {
    json!({"type": "human", "content": text, "id": new_id(), "additional_kwargs": {}, "response_metadata": {}})
}

pub fn system(text: &str) -> Value {
    json!({"type": "system", "content": text, "id": new_id()})
}

/// An AI message in LangChain shape from the gateway's OpenAI assistant message.
pub fn ai_from_openai(message: &Value, model: &str, usage: &agentd_core::Usage) -> Value {
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let tool_calls: Vec<Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|tc| {
                    let f = &tc["function"];
                    let raw = f["arguments"].as_str().unwrap_or("{}");
                    let args = serde_json::from_str::<Value>(raw)
                        .unwrap_or_else(|_| Value::String(raw.to_owned()));
                    json!({
                        "name": f["name"].as_str().unwrap_or_default(),
                        "args": args,
                        "id": tc["id"].as_str().unwrap_or_default(),
                        "type": "tool_call",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "type": "ai",
        "content": content,
        "id": format!("run--{}", new_id()),
        "tool_calls": tool_calls,
        "invalid_tool_calls": [],
        "additional_kwargs": {},
        "response_metadata": {"model_name": model, "finish_reason": if tool_calls.is_empty() { "stop" } else { "tool_calls" }},
        "usage_metadata": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total(),
        },
    })
}

pub fn tool_result(call_id: &str, name: &str, content: &str, is_error: bool) -> Value {
    json!({
        "type": "tool",
        "content": content,
        "tool_call_id": call_id,
        "name": name,
        "id": new_id(),
        "status": if is_error { "error" } else { "success" },
        "additional_kwargs": {},
        "response_metadata": {},
    })
}

/// The OpenAI chat message for a LangChain message.
pub fn to_openai(message: &Value) -> Value {
    let kind = message["type"].as_str().unwrap_or("human");
    let content = match &message["content"] {
        Value::Null => Value::String(String::new()),
        c => c.clone(),
    };
    match kind {
        "ai" => {
            let mut m = json!({"role": "assistant", "content": content});
            if let Some(calls) = message["tool_calls"].as_array().filter(|c| !c.is_empty()) {
                m["tool_calls"] = Value::Array(
                    calls
                        .iter()
                        .map(|tc| {
                            let args = match &tc["args"] {
                                Value::String(s) => s.clone(),
                                v => v.to_string(),
                            };
                            json!({"id": tc["id"], "type": "function", "function": {"name": tc["name"], "arguments": args}})
                        })
                        .collect(),
                );
            }
            m
        }
        "tool" => {
            json!({"role": "tool", "content": content, "tool_call_id": message["tool_call_id"]})
        }
        "system" => json!({"role": "system", "content": content}),
        _ => json!({"role": "user", "content": content}),
    }
}

/// A streamed token as the `messages` (messages-tuple) event's chunk.
pub fn ai_chunk(id: &str, text: &str) -> Value {
    json!({
        "content": text,
        "type": "AIMessageChunk",
        "id": id,
        "tool_calls": [],
        "tool_call_chunks": [],
        "invalid_tool_calls": [],
        "additional_kwargs": {},
        "response_metadata": {},
        "usage_metadata": null,
    })
}

/// The tool calls of an AI message that no later tool message answers.
pub fn unanswered_tool_calls(messages: &[Value]) -> Vec<Value> {
    let Some(pos) = messages.iter().rposition(|m| m["type"] == "ai") else {
        return Vec::new();
    };
    let calls = messages[pos]["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    calls
        .into_iter()
        .filter(|tc| {
            !messages[pos + 1..]
                .iter()
                .any(|m| m["type"] == "tool" && m["tool_call_id"] == tc["id"])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_messages_in_both_shapes() {
        let a = from_input(&json!({"role": "user", "content": "hi"}), "m").unwrap();
        assert_eq!(a["type"], "human");
        assert!(a["id"].is_string());
        let b = from_input(&json!({"type": "ai", "content": "x", "id": "1"}), "m").unwrap();
        assert_eq!(b["id"], "1");
        assert_eq!(b["tool_calls"], json!([]));
        let e = from_input(&json!({"role": "bogus"}), "input.messages[0]").unwrap_err();
        assert_eq!(e.field, "input.messages[0].role");
        let e = from_input(&json!(3), "input.messages[1]").unwrap_err();
        assert_eq!(e.field, "input.messages[1]");
    }

    #[test]
    fn tool_calls_round_trip_and_unanswered() {
        let openai = json!({"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup","arguments":"{\"query\":\"x\"}"}}]});
        let ai = ai_from_openai(&openai, "mock", &agentd_core::Usage::default());
        assert_eq!(ai["tool_calls"][0]["args"]["query"], "x");
        let back = to_openai(&ai);
        assert_eq!(
            back["tool_calls"][0]["function"]["arguments"],
            "{\"query\":\"x\"}"
        );
        let msgs = vec![human("q"), ai.clone()];
        assert_eq!(unanswered_tool_calls(&msgs).len(), 1);
        let msgs = vec![human("q"), ai, tool_result("c1", "lookup", "42", false)];
        assert!(unanswered_tool_calls(&msgs).is_empty());
    }
}
