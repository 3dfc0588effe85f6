//! Anthropic wire format: the Messages API (version 2023-06-01), plain and streamed.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::openai::{omit_usage, saturating_u32};
use crate::text::{
    argument_fragments, count_tool, new_id, respond, Conversation, Finish, Limits, Reply, Tail,
    ToolChoice, ToolSpec,
};
use crate::wire::{self, content_text, event_frame, json_plan, stream_plan, Shape, WireError};
use crate::{MockOptions, Plan};

// ---------------------------------------------------------------------------------------------
// Validation helpers, worded like the real API's (pydantic-style) messages.

fn invalid(message: impl Into<String>) -> WireError {
    WireError::invalid(message)
}

fn required(field: &str) -> WireError {
    invalid(format!("{field}: Field required"))
}

fn not_a(field: &str, what: &str) -> WireError {
    invalid(format!("{field}: Input should be a valid {what}"))
}

/// The text of the last user message that has text of its own, from an unvalidated body.
fn last_user_text(body: &Value) -> Option<String> {
    body.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .find_map(|m| user_text(m.get("content")?))
}

/// Text of a user message's content; `None` when it carries only tool results or media.
fn user_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => None,
    }
}

#[derive(Debug)]
struct MessagesRequest {
    model: String,
    stream: bool,
    limits: Limits,
    tools: Vec<ToolSpec>,
    choice: ToolChoice,
    conv: Conversation,
}

impl MessagesRequest {
    fn parse(body: &Value) -> Result<Self, WireError> {
        let model = match body.get("model") {
            Some(Value::String(model)) if !model.is_empty() => model.clone(),
            None | Some(Value::Null) => return Err(required("model")),
            Some(Value::String(_)) => {
                return Err(invalid("model: String should have at least 1 character"))
            }
            Some(_) => return Err(not_a("model", "string")),
        };
        let max_tokens = match body.get("max_tokens") {
            None | Some(Value::Null) => return Err(required("max_tokens")),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => match n.as_u64() {
                Some(n) if n >= 1 => n,
                Some(_) | None => {
                    return Err(invalid(
                        "max_tokens: Input should be greater than or equal to 1",
                    ))
                }
            },
            Some(_) => return Err(not_a("max_tokens", "integer")),
        };
        let messages = match body.get("messages") {
            None | Some(Value::Null) => return Err(required("messages")),
            Some(Value::Array(messages)) if messages.is_empty() => {
                return Err(invalid("messages: at least one message is required"))
            }
            Some(Value::Array(messages)) => messages,
            Some(_) => return Err(not_a("messages", "list")),
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => *stream,
            Some(_) => return Err(not_a("stream", "boolean")),
        };
        let stop = match body.get("stop_sequences") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(stops)) => stops
                .iter()
                .enumerate()
                .map(|(i, stop)| {
                    stop.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| not_a(&format!("stop_sequences.{i}"), "string"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(not_a("stop_sequences", "list")),
        };
        match body.get("temperature") {
            None | Some(Value::Null) => {}
            Some(Value::Number(t)) if (0.0..=1.0).contains(&t.as_f64().unwrap_or(-1.0)) => {}
            Some(Value::Number(_)) => {
                return Err(invalid("temperature: range: 0..1"));
            }
            Some(_) => return Err(not_a("temperature", "number")),
        }

        let mut conv = Conversation::default();
        let tools = parse_tools(body, &mut conv)?;
        let choice = parse_tool_choice(body, &tools)?;
        match body.get("system") {
            None | Some(Value::Null) => {}
            Some(system @ (Value::String(_) | Value::Array(_))) => {
                if let Value::Array(blocks) = system {
                    for (i, block) in blocks.iter().enumerate() {
                        if block.get("type").and_then(Value::as_str) != Some("text")
                            || !block.get("text").is_some_and(Value::is_string)
                        {
                            return Err(invalid(format!(
                                "system.{i}: Input should be a valid text block"
                            )));
                        }
                    }
                }
                conv.message();
                match system {
                    Value::Array(blocks) => {
                        for block in blocks {
                            conv.read(block["text"].as_str().unwrap_or_default());
                        }
                    }
                    other => conv.read(&content_text(other)),
                }
            }
            Some(_) => return Err(not_a("system", "list")),
        }
        read_messages(messages, &mut conv)?;
        Ok(Self {
            model,
            stream,
            limits: Limits {
                max_tokens: Some(max_tokens),
                stop,
            },
            tools,
            choice,
            conv,
        })
    }
}

fn parse_tools(body: &Value, conv: &mut Conversation) -> Result<Vec<ToolSpec>, WireError> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(not_a("tools", "list")),
    };
    let mut specs = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let name = match tool.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(required(&format!("tools.{i}.name")))
            }
            Some(_) => return Err(not_a(&format!("tools.{i}.name"), "string")),
        };
        // Server tools (`type: "web_search_…"`) have no schema; custom tools must.
        let server_tool = tool
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|ty| ty != "custom");
        let schema = match tool.get("input_schema") {
            Some(schema @ Value::Object(_)) => schema.clone(),
            None | Some(Value::Null) if server_tool => Value::Object(Map::new()),
            None | Some(Value::Null) => return Err(required(&format!("tools.{i}.input_schema"))),
            Some(_) => return Err(not_a(&format!("tools.{i}.input_schema"), "dictionary")),
        };
        let description = tool
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        count_tool(conv, &name, description, &schema);
        specs.push(ToolSpec { name, schema });
    }
    Ok(specs)
}

fn parse_tool_choice(body: &Value, tools: &[ToolSpec]) -> Result<ToolChoice, WireError> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => return Ok(ToolChoice::Auto),
        Some(choice @ Value::Object(_)) => choice,
        Some(_) => return Err(not_a("tool_choice", "dictionary")),
    };
    if tools.is_empty() {
        return Err(invalid(
            "tool_choice: tool_choice may only be specified while providing tools.",
        ));
    }
    match choice.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(ToolChoice::Auto),
        Some("any") => Ok(ToolChoice::Required),
        Some("none") => Ok(ToolChoice::None),
        Some("tool") => match choice.get("name") {
            Some(Value::String(name)) => Ok(ToolChoice::Named(name.clone())),
            Some(_) | None => Err(required("tool_choice.tool.name")),
        },
        Some(other) => Err(invalid(format!(
            "tool_choice: Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
        ))),
        None => Err(required("tool_choice.type")),
    }
}

fn read_messages(messages: &[Value], conv: &mut Conversation) -> Result<(), WireError> {
    for (i, message) in messages.iter().enumerate() {
        if !message.is_object() {
            return Err(not_a(&format!("messages.{i}"), "dictionary"));
        }
        let role = match message.get("role") {
            Some(Value::String(role)) if role == "user" || role == "assistant" => role.as_str(),
            None | Some(Value::Null) => return Err(required(&format!("messages.{i}.role"))),
            Some(_) => {
                return Err(invalid(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )))
            }
        };
        let content = match message.get("content") {
            Some(content @ (Value::String(_) | Value::Array(_))) => content,
            None | Some(Value::Null) => return Err(required(&format!("messages.{i}.content"))),
            Some(_) => return Err(not_a(&format!("messages.{i}.content"), "list")),
        };
        conv.message();
        let mut tool_results: Vec<String> = Vec::new();
        match content {
            Value::String(text) => conv.read(text),
            Value::Array(blocks) => {
                for (j, block) in blocks.iter().enumerate() {
                    let at = format!("messages.{i}.content.{j}");
                    let ty = match block.get("type") {
                        Some(Value::String(ty)) => ty.as_str(),
                        Some(_) | None => return Err(required(&format!("{at}.type"))),
                    };
                    match ty {
                        "text" => match block.get("text") {
                            Some(Value::String(text)) => conv.read(text),
                            Some(_) | None => return Err(required(&format!("{at}.text"))),
                        },
                        "tool_use" => {
                            let name = block.get("name").and_then(Value::as_str);
                            let Some(name) = name else {
                                return Err(required(&format!("{at}.name")));
                            };
                            if block.get("id").and_then(Value::as_str).is_none() {
                                return Err(required(&format!("{at}.id")));
                            }
                            conv.read(name);
                            conv.read(&block.get("input").unwrap_or(&Value::Null).to_string());
                        }
                        "tool_result" => {
                            if role != "user" {
                                return Err(invalid(format!(
                                    "{at}: tool_result blocks are only allowed in user messages"
                                )));
                            }
                            if block.get("tool_use_id").and_then(Value::as_str).is_none() {
                                return Err(required(&format!("{at}.tool_use_id")));
                            }
                            let result = block.get("content").map(content_text).unwrap_or_default();
                            conv.read(&result);
                            tool_results.push(result);
                        }
                        "thinking" => {
                            conv.read(
                                block
                                    .get("thinking")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default(),
                            );
                        }
                        // Images, documents and newer block kinds carry no text the mock reads.
                        _ => {}
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => {}
        }
        if role == "user" {
            if let Some(text) = user_text(content) {
                conv.last_user_text = text;
            }
            conv.tail = if tool_results.is_empty() {
                Tail::User
            } else {
                Tail::ToolResult(tool_results.join(" "))
            };
        } else {
            conv.tail = Tail::Assistant;
        }
    }
    Ok(())
}

fn stop_reason(reply: &Reply) -> (&'static str, Option<&str>) {
    match reply {
        Reply::Text {
            finish: Finish::Stop,
            ..
        } => ("end_turn", None),
        Reply::Text {
            finish: Finish::Length,
            ..
        } => ("max_tokens", None),
        Reply::Text {
            finish: Finish::StopSequence(stop),
            ..
        } => ("stop_sequence", Some(stop.as_str())),
        Reply::ToolCall(_) => ("tool_use", None),
    }
}

pub(crate) fn plan_messages(body: &[u8], header: Option<&str>, opts: &MockOptions) -> Plan {
    let front = match wire::front(Shape::Anthropic, body, header, last_user_text) {
        Ok(front) => front,
        Err(plan) => return plan,
    };
    let request = match MessagesRequest::parse(&front.body) {
        Ok(request) => request,
        Err(err) => return err.plan(Shape::Anthropic, front.delay, None),
    };
    let d = &front.directives;
    let reply = respond(
        &request.conv,
        &request.tools,
        &request.choice,
        &request.limits,
        d,
        opts,
    );
    let input_tokens = request.conv.prompt_tokens();
    let output_tokens = reply.output_tokens();
    let ttft = d.ttft.unwrap_or(opts.ttft);
    let token_delay = d.token_delay.unwrap_or(opts.token_delay);
    let id = new_id("msg_01");
    let tool_id = new_id("toolu_01");
    let (stop_reason, stop_sequence) = stop_reason(&reply);

    if !request.stream {
        let content = match &reply {
            Reply::Text { tokens, .. } => json!([{"type": "text", "text": tokens.concat()}]),
            Reply::ToolCall(call) => json!([{
                "type": "tool_use",
                "id": tool_id,
                "name": call.name,
                "input": call.input
            }]),
        };
        let mut body = json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0
            }
        });
        if d.no_usage {
            omit_usage(&mut body);
        }
        let generation = ttft + token_delay.saturating_mul(saturating_u32(output_tokens));
        let headers = vec![("request-id".to_owned(), new_id("req_01"))];
        return json_plan(body, headers, d, front.delay + generation);
    }

    let mut message_start = json!({
        "type": "message_start",
        "message": {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0
            }
        }
    });
    let mut message_delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"output_tokens": output_tokens}
    });
    if d.no_usage {
        // A server without usage support: neither event carries a `usage` object.
        omit_usage(&mut message_start["message"]);
        omit_usage(&mut message_delta);
    }
    let mut frames = vec![event_frame("message_start", &message_start)];
    let block = match &reply {
        Reply::Text { .. } => json!({"type": "text", "text": ""}),
        Reply::ToolCall(call) => {
            json!({"type": "tool_use", "id": tool_id, "name": call.name, "input": {}})
        }
    };
    frames.push(event_frame(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
    ));
    frames.push(event_frame("ping", &json!({"type": "ping"})));
    let delta = |delta: Value| {
        event_frame(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        )
    };
    match &reply {
        Reply::Text { tokens, .. } => {
            for token in tokens {
                frames.push(delta(json!({"type": "text_delta", "text": token})));
            }
        }
        Reply::ToolCall(call) => {
            // The real API opens every tool input with an empty fragment.
            frames.push(delta(
                json!({"type": "input_json_delta", "partial_json": ""}),
            ));
            for fragment in argument_fragments(&call.arguments) {
                frames.push(delta(
                    json!({"type": "input_json_delta", "partial_json": fragment}),
                ));
            }
        }
    }
    frames.push(event_frame(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(event_frame("message_delta", &message_delta));
    frames.push(event_frame(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    let broken = Bytes::from_static(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":<<malformed>>\n\n",
    );
    stream_plan(frames, d, front.delay, ttft, token_delay, broken)
}
