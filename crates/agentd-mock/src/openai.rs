//! OpenAI wire format: Chat Completions (plain and streamed), Embeddings and Models.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::text::{
    self, argument_fragments, count_tool, new_id, respond, Conversation, Finish, Limits, Reply,
    Tail, ToolChoice, ToolSpec,
};
use crate::wire::{
    self, content_text, data_frame, json_plan, stream_plan, type_name, Shape, WireError,
};
use crate::{MockOptions, Plan};

/// Reported as `system_fingerprint` so clients that log it see a stable value.
const SYSTEM_FINGERPRINT: &str = "fp_6d6f636b";
/// Upper bound of `dimensions`, like the largest real embedding model.
const MAX_DIMENSIONS: u64 = 3072;
/// Upper bound of inputs per embeddings request, as documented by OpenAI.
const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The fixed models every mock lists.
pub(crate) const BUILTIN_MODELS: [&str; 2] = ["mock", "mock-embedding"];
/// A fixed `created` for listed models: listings must not change between calls.
const MODELS_CREATED: u64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// Validation helpers, worded like the real API's messages.

fn missing(param: &str) -> WireError {
    WireError::invalid(format!("Missing required parameter: '{param}'."))
        .param(param)
        .code("missing_required_parameter")
}

fn invalid_type(param: &str, expected: &str, got: &Value) -> WireError {
    WireError::invalid(format!(
        "Invalid type for '{param}': expected {expected}, but got {} instead.",
        type_name(got)
    ))
    .param(param)
    .code("invalid_type")
}

fn invalid_value(param: &str, value: &str, supported: &str) -> WireError {
    WireError::invalid(format!(
        "Invalid value: '{value}'. Supported values are: {supported}."
    ))
    .param(param)
    .code("invalid_value")
}

fn no_model() -> WireError {
    WireError::invalid("you must provide a model parameter")
}

fn model(body: &Value) -> Result<String, WireError> {
    match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => Ok(model.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(no_model()),
        Some(other) => Err(invalid_type("model", "a string", other)),
    }
}

fn opt_bool(body: &Value, param: &str) -> Result<bool, WireError> {
    match body.get(param) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid_type(param, "a boolean", other)),
    }
}

fn opt_int(body: &Value, param: &str, min: u64, max: u64) -> Result<Option<u64>, WireError> {
    let value = match body.get(param) {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let n = match value {
        Value::Number(n) if n.is_u64() => n.as_u64().unwrap_or_default(),
        Value::Number(n) if n.is_i64() => {
            return Err(below_min(param, min, &n.to_string()));
        }
        other => return Err(invalid_type(param, "an integer", other)),
    };
    if n < min {
        return Err(below_min(param, min, &n.to_string()));
    }
    if n > max {
        return Err(WireError::invalid(format!(
            "Invalid '{param}': integer above maximum value. Expected a value <= {max}, but got {n} instead."
        ))
        .param(param)
        .code("integer_above_max_value"));
    }
    Ok(Some(n))
}

fn below_min(param: &str, min: u64, got: &str) -> WireError {
    WireError::invalid(format!(
        "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {got} instead."
    ))
    .param(param)
    .code("integer_below_min_value")
}

// ---------------------------------------------------------------------------------------------
// Chat Completions

/// The last user message's text, read from an unvalidated body (for directives).
fn last_user_text(body: &Value) -> Option<String> {
    body.get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| m.get("content").map(content_text).unwrap_or_default())
}

#[derive(Debug)]
struct ChatRequest {
    model: String,
    stream: bool,
    include_usage: bool,
    n: u64,
    limits: Limits,
    tools: Vec<ToolSpec>,
    choice: ToolChoice,
    conv: Conversation,
}

impl ChatRequest {
    fn parse(body: &Value) -> Result<Self, WireError> {
        let model = model(body)?;
        let messages = match body.get("messages") {
            None | Some(Value::Null) => return Err(missing("messages")),
            Some(Value::Array(messages)) if messages.is_empty() => {
                return Err(WireError::invalid(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                )
                .param("messages")
                .code("empty_array"))
            }
            Some(Value::Array(messages)) => messages,
            Some(other) => return Err(invalid_type("messages", "an array", other)),
        };
        let stream = opt_bool(body, "stream")?;
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(options @ Value::Object(_)) => {
                if !stream {
                    return Err(WireError::invalid(
                        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    )
                    .param("stream_options"));
                }
                match options.get("include_usage") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(invalid_type(
                            "stream_options.include_usage",
                            "a boolean",
                            other,
                        ))
                    }
                }
            }
            Some(other) => return Err(invalid_type("stream_options", "an object", other)),
        };
        let n = opt_int(body, "n", 1, 128)?.unwrap_or(1);
        let max_tokens = match opt_int(body, "max_completion_tokens", 1, u64::MAX)? {
            Some(max) => Some(max),
            None => opt_int(body, "max_tokens", 1, u64::MAX)?,
        };
        let stop = match body.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(stop)) => vec![stop.clone()],
            Some(Value::Array(stops)) if stops.len() > 4 => {
                return Err(WireError::invalid(format!(
                    "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length {} instead.",
                    stops.len()
                ))
                .param("stop")
                .code("array_above_max_length"))
            }
            Some(Value::Array(stops)) => stops
                .iter()
                .enumerate()
                .map(|(i, stop)| match stop {
                    Value::String(stop) => Ok(stop.clone()),
                    other => Err(invalid_type(&format!("stop[{i}]"), "a string", other)),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(invalid_type("stop", "one of a string or array", other));
            }
        };
        match body.get("temperature") {
            None | Some(Value::Null) => {}
            Some(Value::Number(t)) => {
                let t = t.as_f64().unwrap_or_default();
                if !(0.0..=2.0).contains(&t) {
                    return Err(WireError::invalid(format!(
                        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {t} instead."
                    ))
                    .param("temperature")
                    .code("decimal_above_max_value"));
                }
            }
            Some(other) => return Err(invalid_type("temperature", "a number", other)),
        }

        let mut conv = Conversation::default();
        let tools = parse_tools(body, &mut conv)?;
        let choice = parse_tool_choice(body, &tools)?;
        read_messages(messages, &mut conv)?;
        Ok(Self {
            model,
            stream,
            include_usage,
            n,
            limits: Limits { max_tokens, stop },
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
        Some(other) => return Err(invalid_type("tools", "an array", other)),
    };
    let mut specs = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        if !tool.is_object() {
            return Err(invalid_type(&at, "an object", tool));
        }
        match tool.get("type") {
            Some(Value::String(ty)) if ty == "function" => {}
            None | Some(Value::Null) => return Err(missing(&format!("{at}.type"))),
            Some(Value::String(ty)) => {
                return Err(invalid_value(&format!("{at}.type"), ty, "'function'"))
            }
            Some(other) => return Err(invalid_type(&format!("{at}.type"), "a string", other)),
        }
        let function = match tool.get("function") {
            Some(function @ Value::Object(_)) => function,
            None | Some(Value::Null) => return Err(missing(&format!("{at}.function"))),
            Some(other) => return Err(invalid_type(&format!("{at}.function"), "an object", other)),
        };
        let name = match function.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(missing(&format!("{at}.function.name")))
            }
            Some(other) => {
                return Err(invalid_type(
                    &format!("{at}.function.name"),
                    "a string",
                    other,
                ))
            }
        };
        let schema = match function.get("parameters") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(other) => {
                return Err(invalid_type(
                    &format!("{at}.function.parameters"),
                    "an object",
                    other,
                ))
            }
        };
        let description = function
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
        Some(choice) => choice,
    };
    if tools.is_empty() {
        return Err(WireError::invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        )
        .param("tool_choice"));
    }
    match choice {
        Value::String(mode) => match mode.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid_value(
                "tool_choice",
                other,
                "'none', 'auto', and 'required'",
            )),
        },
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some("function") => match choice.pointer("/function/name") {
                Some(Value::String(name)) => Ok(ToolChoice::Named(name.clone())),
                Some(_) | None => Err(missing("tool_choice.function.name")),
            },
            Some("allowed_tools") => Ok(ToolChoice::Auto),
            Some(other) => Err(invalid_value(
                "tool_choice.type",
                other,
                "'function' and 'allowed_tools'",
            )),
            None => Err(missing("tool_choice.type")),
        },
        other => Err(invalid_type(
            "tool_choice",
            "one of a string or object",
            other,
        )),
    }
}

fn read_messages(messages: &[Value], conv: &mut Conversation) -> Result<(), WireError> {
    // True right after an assistant message with tool calls, and while its results follow.
    let mut awaiting_results = false;
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        if !message.is_object() {
            return Err(invalid_type(&at, "an object", message));
        }
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            None | Some(Value::Null) => return Err(missing(&format!("{at}.role"))),
            Some(other) => return Err(invalid_type(&format!("{at}.role"), "a string", other)),
        };
        let content = message.get("content").unwrap_or(&Value::Null);
        let content_required = || -> Result<String, WireError> {
            match content {
                Value::Null => Err(missing(&format!("{at}.content"))),
                Value::String(_) | Value::Array(_) => Ok(content_text(content)),
                other => Err(invalid_type(
                    &format!("{at}.content"),
                    "one of a string or array of objects",
                    other,
                )),
            }
        };
        conv.message();
        match role {
            "system" | "developer" => {
                content_required()?;
                read_parts(conv, content);
                awaiting_results = false;
            }
            "user" => {
                conv.last_user_text = content_required()?;
                read_parts(conv, content);
                conv.tail = Tail::User;
                awaiting_results = false;
            }
            "assistant" => {
                match content {
                    Value::Null | Value::String(_) | Value::Array(_) => read_parts(conv, content),
                    other => {
                        return Err(invalid_type(
                            &format!("{at}.content"),
                            "one of a string or array of objects",
                            other,
                        ))
                    }
                }
                let calls = match message.get("tool_calls") {
                    None | Some(Value::Null) => &[][..],
                    Some(Value::Array(calls)) => calls.as_slice(),
                    Some(other) => {
                        return Err(invalid_type(&format!("{at}.tool_calls"), "an array", other))
                    }
                };
                for (j, call) in calls.iter().enumerate() {
                    let name = call.pointer("/function/name").and_then(Value::as_str);
                    let Some(name) = name else {
                        return Err(missing(&format!("{at}.tool_calls[{j}].function.name")));
                    };
                    conv.read(name);
                    conv.read(
                        call.pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                }
                conv.tail = Tail::Assistant;
                awaiting_results = !calls.is_empty();
            }
            "tool" | "function" => {
                if role == "tool" {
                    match message.get("tool_call_id") {
                        Some(Value::String(_)) => {}
                        None | Some(Value::Null) => {
                            return Err(missing(&format!("{at}.tool_call_id")))
                        }
                        Some(other) => {
                            return Err(invalid_type(
                                &format!("{at}.tool_call_id"),
                                "a string",
                                other,
                            ))
                        }
                    }
                    if !awaiting_results {
                        return Err(WireError::invalid(
                            "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        )
                        .param(format!("messages.[{i}].role")));
                    }
                }
                let text = content_required()?;
                read_parts(conv, content);
                conv.tail = match std::mem::replace(&mut conv.tail, Tail::Assistant) {
                    Tail::ToolResult(earlier) => Tail::ToolResult(format!("{earlier} {text}")),
                    Tail::User | Tail::Assistant => Tail::ToolResult(text),
                };
            }
            other => {
                return Err(invalid_value(
                    &format!("{at}.role"),
                    other,
                    "'system', 'assistant', 'user', 'function', 'tool', and 'developer'",
                ))
            }
        }
    }
    Ok(())
}

/// Reads each text part on its own, as the Anthropic side reads each text block, so that the
/// same conversation counts and hashes the same through both APIs.
fn read_parts(conv: &mut Conversation, content: &Value) {
    match content {
        Value::String(text) => conv.read(text),
        Value::Array(parts) => {
            for part in parts {
                if part.get("type").and_then(Value::as_str) == Some("text") {
                    conv.read(part.get("text").and_then(Value::as_str).unwrap_or_default());
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => {}
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn finish_reason(reply: &Reply) -> &'static str {
    match reply {
        Reply::Text {
            finish: Finish::Stop | Finish::StopSequence(_),
            ..
        } => "stop",
        Reply::Text {
            finish: Finish::Length,
            ..
        } => "length",
        Reply::ToolCall(_) => "tool_calls",
    }
}

pub(crate) fn plan_chat(body: &[u8], header: Option<&str>, opts: &MockOptions) -> Plan {
    let front = match wire::front(Shape::OpenAi, body, header, last_user_text) {
        Ok(front) => front,
        Err(plan) => return plan,
    };
    let request = match ChatRequest::parse(&front.body) {
        Ok(request) => request,
        Err(err) => return err.plan(Shape::OpenAi, front.delay, None),
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
    let prompt_tokens = request.conv.prompt_tokens();
    let completion_tokens = reply.output_tokens() * request.n;
    let ttft = d.ttft.unwrap_or(opts.ttft);
    let token_delay = d.token_delay.unwrap_or(opts.token_delay);
    let id = new_id("chatcmpl-");
    let created = text::unix_now();
    // One call id per choice, shared by the plain and streamed renderings.
    let call_ids: Vec<String> = (0..request.n).map(|_| new_id("call_")).collect();

    if !request.stream {
        let choices: Vec<Value> = call_ids
            .iter()
            .enumerate()
            .map(|(index, call_id)| {
                let message = match &reply {
                    Reply::Text { tokens, .. } => json!({
                        "role": "assistant",
                        "content": tokens.concat(),
                        "refusal": null,
                        "annotations": []
                    }),
                    Reply::ToolCall(call) => json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}
                        }],
                        "refusal": null,
                        "annotations": []
                    }),
                };
                json!({
                    "index": index,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": finish_reason(&reply)
                })
            })
            .collect();
        let mut body = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT
        });
        if d.no_usage {
            omit_usage(&mut body);
        }
        let generation = ttft + token_delay.saturating_mul(saturating_u32(reply.output_tokens()));
        let headers = vec![("x-request-id".to_owned(), new_id("req_"))];
        return json_plan(body, headers, d, front.delay + generation);
    }

    // `no_usage` plays a server without usage support: not even the `usage: null` field.
    let usage_chunk = request.include_usage && !d.no_usage;
    let chunk = |choices: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices
        });
        if usage_chunk {
            chunk["usage"] = Value::Null;
        }
        data_frame(&chunk)
    };
    let choice = |index: usize, delta: Value, finish: Option<&str>| {
        chunk(json!([{
            "index": index,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish
        }]))
    };
    let mut frames = Vec::new();
    for (index, call_id) in call_ids.iter().enumerate() {
        match &reply {
            Reply::Text { tokens, .. } => {
                frames.push(choice(
                    index,
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                ));
                for token in tokens {
                    frames.push(choice(index, json!({ "content": token }), None));
                }
            }
            Reply::ToolCall(call) => {
                frames.push(choice(
                    index,
                    json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""}
                        }],
                        "refusal": null
                    }),
                    None,
                ));
                for fragment in argument_fragments(&call.arguments) {
                    frames.push(choice(
                        index,
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                        None,
                    ));
                }
            }
        }
        frames.push(choice(index, json!({}), Some(finish_reason(&reply))));
    }
    if usage_chunk {
        let mut last = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [],
        });
        last["usage"] = usage(prompt_tokens, completion_tokens);
        frames.push(data_frame(&last));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let broken = Bytes::from(format!(
        "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":<<malformed>>\n\n"
    ));
    stream_plan(frames, d, front.delay, ttft, token_delay, broken)
}

/// Drops `usage` from an answer body (the `no_usage` directive).
pub(crate) fn omit_usage(body: &mut Value) {
    if let Some(body) = body.as_object_mut() {
        body.remove("usage");
    }
}

pub(crate) fn saturating_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Embeddings

#[derive(Debug, Clone, PartialEq)]
enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u64>),
}

impl EmbeddingInput {
    /// Stable bytes to hash: text and token inputs never collide.
    fn key(&self) -> Vec<u8> {
        match self {
            EmbeddingInput::Text(text) => [b"text\0".as_slice(), text.as_bytes()].concat(),
            EmbeddingInput::Tokens(tokens) => {
                let mut key = b"tokens\0".to_vec();
                for token in tokens {
                    key.extend_from_slice(&token.to_le_bytes());
                }
                key
            }
        }
    }

    fn prompt_tokens(&self) -> u64 {
        match self {
            EmbeddingInput::Text(text) => text::text_tokens(text),
            EmbeddingInput::Tokens(tokens) => tokens.len() as u64,
        }
    }
}

fn bad_input() -> WireError {
    WireError::invalid(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
    )
    .param("input")
}

fn token_list(values: &[Value]) -> Option<Vec<u64>> {
    if values.is_empty() {
        return None;
    }
    values.iter().map(Value::as_u64).collect()
}

fn parse_inputs(input: Option<&Value>) -> Result<Vec<EmbeddingInput>, WireError> {
    let inputs = match input {
        None | Some(Value::Null) => return Err(missing("input")),
        Some(Value::String(text)) if text.is_empty() => return Err(bad_input()),
        Some(Value::String(text)) => return Ok(vec![EmbeddingInput::Text(text.clone())]),
        Some(Value::Array(items)) if items.is_empty() => return Err(bad_input()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(invalid_type(
                "input",
                "one of a string or array of strings",
                other,
            ))
        }
    };
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(WireError::invalid(format!(
            "Invalid 'input': array too long. Expected an array with maximum length {MAX_EMBEDDING_INPUTS}, but got an array with length {} instead.",
            inputs.len()
        ))
        .param("input")
        .code("array_above_max_length"));
    }
    match &inputs[0] {
        Value::String(_) => inputs
            .iter()
            .map(|item| match item {
                Value::String(text) if !text.is_empty() => Ok(EmbeddingInput::Text(text.clone())),
                _ => Err(bad_input()),
            })
            .collect(),
        Value::Number(_) => token_list(inputs)
            .map(|tokens| vec![EmbeddingInput::Tokens(tokens)])
            .ok_or_else(bad_input),
        Value::Array(_) => inputs
            .iter()
            .map(|item| {
                item.as_array()
                    .and_then(|tokens| token_list(tokens))
                    .map(EmbeddingInput::Tokens)
                    .ok_or_else(bad_input)
            })
            .collect(),
        Value::Null | Value::Bool(_) | Value::Object(_) => Err(bad_input()),
    }
}

/// String inputs, read from an unvalidated body (for directives).
fn embedding_text(body: &Value) -> Option<String> {
    match body.get("input")? {
        Value::String(text) => Some(text.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

pub(crate) fn plan_embeddings(body: &[u8], header: Option<&str>, opts: &MockOptions) -> Plan {
    let front = match wire::front(Shape::OpenAi, body, header, embedding_text) {
        Ok(front) => front,
        Err(plan) => return plan,
    };
    let parsed = (|| {
        let model = model(&front.body)?;
        let inputs = parse_inputs(front.body.get("input"))?;
        let default_dims = if opts.embedding_dims == 0 {
            MockOptions::DEFAULT_EMBEDDING_DIMS
        } else {
            opts.embedding_dims
        };
        let dims = opt_int(&front.body, "dimensions", 1, MAX_DIMENSIONS)?
            .map(|dims| dims as usize)
            .unwrap_or(default_dims);
        let encoding = match front.body.get("encoding_format") {
            None | Some(Value::Null) => Encoding::Float,
            Some(Value::String(format)) => match format.as_str() {
                "float" => Encoding::Float,
                "base64" => Encoding::Base64,
                other => {
                    return Err(invalid_value(
                        "encoding_format",
                        other,
                        "'float' and 'base64'",
                    ))
                }
            },
            Some(other) => return Err(invalid_type("encoding_format", "a string", other)),
        };
        Ok((model, inputs, dims, encoding))
    })();
    let (model, inputs, dims, encoding) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => return err.plan(Shape::OpenAi, front.delay, None),
    };
    let prompt_tokens: u64 = inputs.iter().map(EmbeddingInput::prompt_tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = text::embedding(&input.key(), dims);
            let embedding = match encoding {
                Encoding::Float => json!(vector),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut body = json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    });
    if front.directives.no_usage {
        omit_usage(&mut body);
    }
    let headers = vec![("x-request-id".to_owned(), new_id("req_"))];
    json_plan(body, headers, &front.directives, front.delay)
}

// ---------------------------------------------------------------------------------------------
// Models

fn model_names(opts: &MockOptions) -> impl Iterator<Item = &str> {
    BUILTIN_MODELS
        .into_iter()
        .chain(opts.extra_models.iter().map(String::as_str))
}

/// `GET /v1/models` in OpenAI's shape, or Anthropic's when the caller speaks Anthropic (both
/// APIs use the same path).
pub(crate) fn models_body(opts: &MockOptions, shape: Shape) -> Value {
    let names: Vec<&str> = model_names(opts).collect();
    match shape {
        Shape::OpenAi => json!({
            "object": "list",
            "data": names.iter().map(|name| model_object(name, shape)).collect::<Vec<_>>()
        }),
        Shape::Anthropic => json!({
            "data": names.iter().map(|name| model_object(name, shape)).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": names.first(),
            "last_id": names.last()
        }),
    }
}

fn model_object(name: &str, shape: Shape) -> Value {
    match shape {
        Shape::OpenAi => json!({
            "id": name,
            "object": "model",
            "created": MODELS_CREATED,
            "owned_by": "agentd-mock"
        }),
        Shape::Anthropic => json!({
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": "2023-11-14T22:13:20Z"
        }),
    }
}

/// `GET /v1/models/{id}`: the model, or a 404 in the caller's shape.
pub(crate) fn model_body(opts: &MockOptions, shape: Shape, id: &str) -> Result<Value, WireError> {
    if model_names(opts).any(|name| name == id) {
        return Ok(model_object(id, shape));
    }
    Err(WireError::new(
        http::StatusCode::NOT_FOUND,
        format!("The model '{id}' does not exist"),
    )
    .param("model")
    .code("model_not_found"))
}
