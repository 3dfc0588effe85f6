//! Request bodies: OpenAI chat completions ⇄ Anthropic Messages.
//!
//! The input has passed `validate`, but these functions still check what they rely on and
//! answer 400 (never panic) so they are safe on any JSON.

use super::{anthropic_tool_id, copy_field, parse_data_url};
use agentd_core::ApiError;
use serde_json::{json, Map, Value};

/// Anthropic requires `max_tokens`; OpenAI clients usually leave it out.
const DEFAULT_MAX_TOKENS: u64 = 4096;

type Res<T> = Result<T, ApiError>;

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_value", message).with_param(param)
}

fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid("unsupported_value", message).with_param(param)
}

fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn str_at<'a>(obj: &'a Map<String, Value>, key: &str, param: &str) -> Res<&'a str> {
    get(obj, key).and_then(Value::as_str).ok_or_else(|| {
        bad(
            &format!("{param}.{key}"),
            format!("'{param}.{key}' must be a string."),
        )
    })
}

fn object<'a>(v: &'a Value, param: &str) -> Res<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        let what = if param.is_empty() {
            "The request body"
        } else {
            param
        };
        bad(param, format!("{what} must be a JSON object."))
    })
}

fn messages_of(obj: &Map<String, Value>) -> Res<&Vec<Value>> {
    get(obj, "messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("messages", "'messages' must be an array of messages."))
}

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic

/// Translate an OpenAI chat completions request into an Anthropic Messages request for
/// `upstream_model`.
///
/// Dropped because Anthropic has no equivalent: `n` = 1, `presence_penalty`,
/// `frequency_penalty`, `logit_bias`, `logprobs`, `seed`, `response_format`, `store`,
/// `metadata`, `service_tier`, `stream_options` (Anthropic streams always carry usage).
/// `n` > 1, audio input and uploaded-file references are refused with a 400 instead, since
/// dropping them would silently change the answer's shape.
pub fn openai_to_anthropic_request(body: &Value, upstream_model: &str) -> Result<Value, ApiError> {
    let obj = object(body, "")?;
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));

    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    // Consecutive tool results go into one user message, as Anthropic requires: true while the
    // last message pushed holds tool results.
    let mut merging_results = false;
    // Legacy `function_call`s have no id; we invent one and pair it with the next `function`
    // message of the same name.
    let mut legacy_calls: Vec<(String, String)> = Vec::new();

    for (i, m) in messages_of(obj)?.iter().enumerate() {
        let p = format!("messages[{i}]");
        let msg = object(m, &p)?;
        let role = str_at(msg, "role", &p)?;
        let content = get(msg, "content");
        let cp = format!("{p}.content");
        let mut is_result = false;
        match role {
            "system" | "developer" => system.extend(text_blocks(content, &cp)?),
            "user" => {
                let content = user_content_to_anthropic(content, &cp)?;
                // Text after tool results belongs in the same user turn, after the results.
                match messages.last_mut().and_then(|m| m.get_mut("content")) {
                    Some(Value::Array(blocks)) if merging_results => match content {
                        Value::Array(more) => blocks.extend(more),
                        // The only other shape `user_content_to_anthropic` returns: a string.
                        other => push_text(blocks, other.as_str().unwrap_or_default()),
                    },
                    _ => messages.push(json!({"role": "user", "content": content})),
                }
            }
            "assistant" => {
                let mut blocks = Vec::new();
                match content {
                    None => {}
                    Some(Value::String(s)) => push_text(&mut blocks, s),
                    Some(Value::Array(parts)) => {
                        for (j, part) in parts.iter().enumerate() {
                            let pp = format!("{cp}[{j}]");
                            let part = object(part, &pp)?;
                            match str_at(part, "type", &pp)? {
                                "text" => push_text(&mut blocks, str_at(part, "text", &pp)?),
                                "refusal" => push_text(&mut blocks, str_at(part, "refusal", &pp)?),
                                other => {
                                    return Err(unsupported(
                                        &format!("{pp}.type"),
                                        format!("Assistant content parts of type '{other}' cannot be sent to this model."),
                                    ))
                                }
                            }
                        }
                    }
                    Some(_) => {
                        return Err(bad(
                            &cp,
                            format!("'{cp}' must be a string or an array of content parts."),
                        ))
                    }
                }
                if let Some(calls) = get(msg, "tool_calls") {
                    let tp = format!("{p}.tool_calls");
                    let calls = calls
                        .as_array()
                        .ok_or_else(|| bad(&tp, format!("'{tp}' must be an array.")))?;
                    for (j, call) in calls.iter().enumerate() {
                        let cp = format!("{tp}[{j}]");
                        let call = object(call, &cp)?;
                        let id = str_at(call, "id", &cp)?;
                        let fp = format!("{cp}.function");
                        let f = object(get(call, "function").unwrap_or(&Value::Null), &fp)?;
                        blocks.push(json!({
                            "type": "tool_use",
                            "id": anthropic_tool_id(id),
                            "name": str_at(f, "name", &fp)?,
                            "input": parse_arguments(get(f, "arguments"), &format!("{fp}.arguments"))?,
                        }));
                    }
                }
                if let Some(fc) = get(msg, "function_call") {
                    let fp = format!("{p}.function_call");
                    let fc = object(fc, &fp)?;
                    let name = str_at(fc, "name", &fp)?;
                    let id = format!("toolu_legacy_{i}");
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": id,
                        "name": name,
                        "input": parse_arguments(get(fc, "arguments"), &format!("{fp}.arguments"))?,
                    }));
                    legacy_calls.push((name.to_owned(), id));
                }
                // Anthropic rejects empty assistant turns; an empty one carries nothing anyway.
                if !blocks.is_empty() {
                    messages.push(json!({"role": "assistant", "content": blocks}));
                }
            }
            "tool" | "function" => {
                let tool_use_id = if role == "tool" {
                    anthropic_tool_id(str_at(msg, "tool_call_id", &p)?)
                } else {
                    let name = str_at(msg, "name", &p)?;
                    let pos = legacy_calls.iter().rposition(|(n, _)| n == name).ok_or_else(|| {
                        bad(&format!("{p}.name"), format!("No earlier assistant 'function_call' to '{name}' for this function message."))
                    })?;
                    legacy_calls.remove(pos).1
                };
                let mut block = Map::new();
                block.insert("type".into(), json!("tool_result"));
                block.insert("tool_use_id".into(), json!(tool_use_id));
                match content {
                    None => {}
                    Some(Value::String(s)) => {
                        block.insert("content".into(), json!(s));
                    }
                    Some(c @ Value::Array(_)) => {
                        block.insert("content".into(), Value::Array(text_blocks(Some(c), &cp)?));
                    }
                    Some(_) => {
                        return Err(bad(
                            &cp,
                            format!("'{cp}' must be a string or an array of text parts."),
                        ))
                    }
                }
                let block = Value::Object(block);
                match messages.last_mut().and_then(|m| m.get_mut("content")) {
                    Some(Value::Array(blocks)) if merging_results => blocks.push(block),
                    _ => messages.push(json!({"role": "user", "content": [block]})),
                }
                is_result = true;
            }
            other => {
                return Err(bad(
                    &format!("{p}.role"),
                    format!("Unknown role '{other}' in '{p}.role'."),
                ))
            }
        }
        merging_results = is_result;
    }

    if messages.is_empty() {
        return Err(bad(
            "messages",
            "'messages' needs at least one user or assistant message besides system messages.",
        ));
    }
    match system.len() {
        0 => {}
        1 => {
            out.insert("system".into(), system[0]["text"].clone());
        }
        _ => {
            out.insert("system".into(), Value::Array(system));
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    let max_tokens = get(obj, "max_completion_tokens")
        .or_else(|| get(obj, "max_tokens"))
        .map(|v| {
            v.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("max_tokens", "'max_tokens' must be a positive integer."))
        })
        .transpose()?
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));

    if let Some(n) = get(obj, "n").and_then(Value::as_u64) {
        if n > 1 {
            return Err(unsupported(
                "n",
                "This model can only generate one choice per request: set 'n' to 1.",
            ));
        }
    }
    if let Some(t) = get(obj, "temperature") {
        // OpenAI's range is 0..=2, Anthropic's 0..=1: the top of both means "most random".
        let t = match t.as_f64() {
            Some(x) if x > 1.0 => json!(1.0),
            _ => t.clone(),
        };
        out.insert("temperature".into(), t);
    }
    copy_field(obj, &mut out, "top_p", "top_p");
    match get(obj, "stop") {
        None => {}
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.is_empty() => {}
        Some(a @ Value::Array(_)) => {
            out.insert("stop_sequences".into(), a.clone());
        }
        Some(_) => {
            return Err(bad(
                "stop",
                "'stop' must be a string or an array of strings.",
            ))
        }
    }
    if let Some(user) = get(obj, "user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(stream) = get(obj, "stream").and_then(Value::as_bool) {
        out.insert("stream".into(), json!(stream));
    }

    let mut tools = Vec::new();
    if let Some(Value::Array(defs)) = get(obj, "tools") {
        for (i, t) in defs.iter().enumerate() {
            let p = format!("tools[{i}]");
            let t = object(t, &p)?;
            match str_at(t, "type", &p)? {
                "function" => {
                    let fp = format!("{p}.function");
                    tools.push(function_to_anthropic_tool(get(t, "function").unwrap_or(&Value::Null), &fp)?);
                }
                other => {
                    return Err(unsupported(
                        &format!("{p}.type"),
                        format!("Tools of type '{other}' cannot be sent to this model; use 'function' tools."),
                    ))
                }
            }
        }
    }
    if let Some(Value::Array(defs)) = get(obj, "functions") {
        for (i, f) in defs.iter().enumerate() {
            tools.push(function_to_anthropic_tool(f, &format!("functions[{i}]"))?);
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        // Anthropic rejects tool_choice without tools, so it is only sent alongside them.
        let choice = match (get(obj, "tool_choice"), get(obj, "function_call")) {
            (Some(c), _) => Some(tool_choice_to_anthropic(c, "tool_choice")?),
            (None, Some(c)) => Some(tool_choice_to_anthropic(c, "function_call")?),
            (None, None) => None,
        };
        let no_parallel = get(obj, "parallel_tool_calls").and_then(Value::as_bool) == Some(false);
        let choice = match choice {
            Some(mut c) if no_parallel && c["type"] != "none" => {
                c["disable_parallel_tool_use"] = json!(true);
                Some(c)
            }
            None if no_parallel => Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
            other => other,
        };
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
    }
    Ok(Value::Object(out))
}

fn push_text(blocks: &mut Vec<Value>, text: &str) {
    // Anthropic rejects empty text blocks ("text content blocks must be non-empty").
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
}

/// System and tool-result content: a string or text parts → Anthropic text blocks.
fn text_blocks(content: Option<&Value>, param: &str) -> Res<Vec<Value>> {
    let mut blocks = Vec::new();
    match content {
        None => {}
        Some(Value::String(s)) => push_text(&mut blocks, s),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                let part = object(part, &pp)?;
                match str_at(part, "type", &pp)? {
                    "text" => push_text(&mut blocks, str_at(part, "text", &pp)?),
                    other => {
                        return Err(unsupported(
                            &format!("{pp}.type"),
                            format!("Only text parts are allowed here, not '{other}'."),
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(bad(
                param,
                format!("'{param}' must be a string or an array of text parts."),
            ))
        }
    }
    Ok(blocks)
}

fn user_content_to_anthropic(content: Option<&Value>, param: &str) -> Res<Value> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(json!(s)),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(bad(
                param,
                format!("'{param}' must be a string or an array of content parts."),
            ))
        }
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{param}[{j}]");
        let part = object(part, &pp)?;
        match str_at(part, "type", &pp)? {
            "text" => push_text(&mut blocks, str_at(part, "text", &pp)?),
            "image_url" => {
                let ip = format!("{pp}.image_url");
                let url = str_at(
                    object(get(part, "image_url").unwrap_or(&Value::Null), &ip)?,
                    "url",
                    &ip,
                )?;
                let source = if let Some((media_type, data)) = parse_data_url(url) {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                } else if url.starts_with("https://") || url.starts_with("http://") {
                    json!({"type": "url", "url": url})
                } else {
                    return Err(bad(
                        &format!("{ip}.url"),
                        "Image URLs must be http(s) URLs or base64 data URLs (data:image/png;base64,...).",
                    ));
                };
                blocks.push(json!({"type": "image", "source": source}));
            }
            "file" => {
                let fp = format!("{pp}.file");
                let file = object(get(part, "file").unwrap_or(&Value::Null), &fp)?;
                let Some(data_url) = get(file, "file_data").and_then(Value::as_str) else {
                    return Err(unsupported(
                        &format!("{fp}.file_id"),
                        "Uploaded file ids cannot be sent to this model; send the file inline as 'file_data'.",
                    ));
                };
                let (media_type, data) = parse_data_url(data_url).ok_or_else(|| {
                    bad(
                        &format!("{fp}.file_data"),
                        "'file_data' must be a base64 data URL (data:application/pdf;base64,...).",
                    )
                })?;
                blocks.push(json!({"type": "document", "source": {"type": "base64", "media_type": media_type, "data": data}}));
            }
            other => {
                return Err(unsupported(
                    &format!("{pp}.type"),
                    format!("Content parts of type '{other}' cannot be sent to this model."),
                ))
            }
        }
    }
    Ok(Value::Array(blocks))
}

/// Tool call arguments (a JSON string) → Anthropic `input` (an object).
fn parse_arguments(arguments: Option<&Value>, param: &str) -> Res<Value> {
    let s = match arguments {
        None => return Ok(json!({})),
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad(param, format!("'{param}' must be a string of JSON."))),
    };
    // Models calling a function without parameters sometimes send "" instead of "{}".
    if s.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(s) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(bad(
            param,
            format!("'{param}' must encode a JSON object, like {{\"city\": \"Paris\"}}."),
        )),
        Err(e) => Err(bad(
            param,
            format!("'{param}' is not valid JSON ({e}); it must encode a JSON object."),
        )),
    }
}

fn function_to_anthropic_tool(f: &Value, param: &str) -> Res<Value> {
    let f = object(f, param)?;
    let mut tool = Map::new();
    tool.insert("name".into(), json!(str_at(f, "name", param)?));
    copy_field(f, &mut tool, "description", "description");
    let schema = get(f, "parameters")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    tool.insert("input_schema".into(), schema);
    Ok(Value::Object(tool))
}

fn tool_choice_to_anthropic(c: &Value, param: &str) -> Res<Value> {
    match c {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "required" => Ok(json!({"type": "any"})),
            "none" => Ok(json!({"type": "none"})),
            other => Err(bad(param, format!("Unknown '{param}' value '{other}'."))),
        },
        Value::Object(o) => {
            // Legacy `function_call: {"name": …}` has the name at the top.
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| o.get("name"))
                .and_then(Value::as_str);
            match (o.get("type").and_then(Value::as_str), name) {
                (Some("function") | None, Some(name)) => Ok(json!({"type": "tool", "name": name})),
                (Some(other), _) => Err(unsupported(
                    &format!("{param}.type"),
                    format!("'{param}' of type '{other}' cannot be sent to this model."),
                )),
                (None, None) => Err(bad(param, format!("'{param}' needs a function name."))),
            }
        }
        _ => Err(bad(
            param,
            format!("'{param}' must be a string or an object."),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI

/// Translate an Anthropic Messages request into an OpenAI chat completions request for
/// `upstream_model`.
///
/// `max_tokens` becomes `max_completion_tokens` (OpenAI's reasoning models reject
/// `max_tokens`). Streams ask for `include_usage` because Anthropic clients always get usage.
/// Dropped: `top_k`, `thinking`, `cache_control`, `service_tier`, thinking blocks in history
/// (the other model cannot use another model's reasoning). Server tools are refused.
pub fn anthropic_to_openai_request(body: &Value, upstream_model: &str) -> Result<Value, ApiError> {
    let obj = object(body, "")?;
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    let mut messages = Vec::new();

    match get(obj, "system") {
        None => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                let bp = format!("system[{i}]");
                let text = str_at(object(b, &bp)?, "text", &bp)?;
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        Some(_) => {
            return Err(bad(
                "system",
                "'system' must be a string or an array of text blocks.",
            ))
        }
    }

    for (i, m) in messages_of(obj)?.iter().enumerate() {
        let p = format!("messages[{i}]");
        let msg = object(m, &p)?;
        let role = str_at(msg, "role", &p)?;
        let cp = format!("{p}.content");
        let blocks = match get(msg, "content") {
            Some(Value::String(s)) => {
                messages.push(json!({"role": role, "content": s}));
                continue;
            }
            Some(Value::Array(blocks)) => blocks,
            _ => {
                return Err(bad(
                    &cp,
                    format!("'{cp}' must be a string or an array of content blocks."),
                ))
            }
        };
        match role {
            "user" => user_blocks_to_openai(blocks, &cp, &mut messages)?,
            "assistant" => messages.push(assistant_blocks_to_openai(blocks, &cp)?),
            other => {
                return Err(bad(
                    &format!("{p}.role"),
                    format!("Unknown role '{other}' in '{p}.role'."),
                ))
            }
        }
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(max) = get(obj, "max_tokens") {
        out.insert("max_completion_tokens".into(), max.clone());
    }
    copy_field(obj, &mut out, "temperature", "temperature");
    copy_field(obj, &mut out, "top_p", "top_p");
    match get(obj, "stop_sequences") {
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = get(obj, "metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(user));
    }
    if get(obj, "stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }

    let mut tools = Vec::new();
    if let Some(Value::Array(defs)) = get(obj, "tools") {
        for (i, t) in defs.iter().enumerate() {
            let tp = format!("tools[{i}]");
            let t = object(t, &tp)?;
            match get(t, "type").and_then(Value::as_str) {
                None | Some("custom") => {}
                Some(other) => {
                    return Err(unsupported(
                        &format!("{tp}.type"),
                        format!("The Anthropic server tool '{other}' cannot be used with this model; define a custom tool instead."),
                    ))
                }
            }
            let mut f = Map::new();
            f.insert("name".into(), json!(str_at(t, "name", &tp)?));
            copy_field(t, &mut f, "description", "description");
            copy_field(t, &mut f, "input_schema", "parameters");
            tools.push(json!({"type": "function", "function": f}));
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(tc) = get(obj, "tool_choice") {
            let tc = object(tc, "tool_choice")?;
            let choice = match str_at(tc, "type", "tool_choice")? {
                "auto" => json!("auto"),
                "any" => json!("required"),
                "none" => json!("none"),
                "tool" => {
                    json!({"type": "function", "function": {"name": str_at(tc, "name", "tool_choice")?}})
                }
                other => {
                    return Err(bad(
                        "tool_choice.type",
                        format!("Unknown 'tool_choice.type' value '{other}'."),
                    ))
                }
            };
            out.insert("tool_choice".into(), choice);
            if let Some(disable) = get(tc, "disable_parallel_tool_use").and_then(Value::as_bool) {
                out.insert("parallel_tool_calls".into(), json!(!disable));
            }
        }
    }
    Ok(Value::Object(out))
}

/// One Anthropic user turn → OpenAI messages: a `tool` message per tool result (OpenAI wants
/// them right after the assistant's calls), then a user message with the rest, if any.
fn user_blocks_to_openai(blocks: &[Value], param: &str, out: &mut Vec<Value>) -> Res<()> {
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{param}[{j}]");
        let block = object(b, &bp)?;
        match str_at(block, "type", &bp)? {
            "tool_result" => {
                let id = str_at(block, "tool_use_id", &bp)?;
                let rp = format!("{bp}.content");
                let mut texts = Vec::new();
                match get(block, "content") {
                    None => {}
                    Some(Value::String(s)) => texts.push(json!({"type": "text", "text": s})),
                    Some(Value::Array(inner)) => {
                        for (k, ib) in inner.iter().enumerate() {
                            let ibp = format!("{rp}[{k}]");
                            let inner_block = object(ib, &ibp)?;
                            match str_at(inner_block, "type", &ibp)? {
                                "text" => texts.push(json!({"type": "text", "text": str_at(inner_block, "text", &ibp)?})),
                                // OpenAI tool messages are text only; the picture still reaches
                                // the model in the user message that follows the results.
                                _ => parts.push(media_block_to_openai(inner_block, &ibp)?),
                            }
                        }
                    }
                    Some(_) => {
                        return Err(bad(
                            &rp,
                            format!("'{rp}' must be a string or an array of content blocks."),
                        ))
                    }
                }
                let content = match texts.len() {
                    0 => json!(""),
                    1 => texts[0]["text"].clone(),
                    _ => Value::Array(texts),
                };
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            "text" => parts.push(json!({"type": "text", "text": str_at(block, "text", &bp)?})),
            _ => parts.push(media_block_to_openai(block, &bp)?),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// An Anthropic image or document block → an OpenAI content part.
fn media_block_to_openai(block: &Map<String, Value>, param: &str) -> Res<Value> {
    let ty = str_at(block, "type", param)?;
    if ty != "image" && ty != "document" {
        return Err(unsupported(
            &format!("{param}.type"),
            format!("Content blocks of type '{ty}' cannot be sent to this model."),
        ));
    }
    let sp = format!("{param}.source");
    let source = get(block, "source").map(|s| object(s, &sp)).transpose()?;
    match (ty, source) {
        ("image", Some(src)) => {
            let url = match str_at(src, "type", &sp)? {
                "base64" => format!("data:{};base64,{}", str_at(src, "media_type", &sp)?, str_at(src, "data", &sp)?),
                "url" => str_at(src, "url", &sp)?.to_owned(),
                other => {
                    return Err(unsupported(
                        &format!("{sp}.type"),
                        format!("Image sources of type '{other}' cannot be sent to this model; use base64 or url."),
                    ))
                }
            };
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        ("document", Some(src)) => match str_at(src, "type", &sp)? {
            "base64" => {
                let media_type = str_at(src, "media_type", &sp)?;
                let mut file = Map::new();
                if let Some(title) = get(block, "title").and_then(Value::as_str) {
                    file.insert("filename".into(), json!(title));
                }
                file.insert("file_data".into(), json!(format!("data:{media_type};base64,{}", str_at(src, "data", &sp)?)));
                Ok(json!({"type": "file", "file": file}))
            }
            "text" => Ok(json!({"type": "text", "text": str_at(src, "data", &sp)?})),
            other => Err(unsupported(
                &format!("{sp}.type"),
                format!("Document sources of type '{other}' cannot be sent to this model; use base64 or text."),
            )),
        },
        (_, None) => Err(bad(&sp, format!("'{sp}' is required."))),
        (other, Some(_)) => Err(unsupported(
            &format!("{param}.type"),
            format!("Content blocks of type '{other}' cannot be sent to this model."),
        )),
    }
}

fn assistant_blocks_to_openai(blocks: &[Value], param: &str) -> Res<Value> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{param}[{j}]");
        let block = object(b, &bp)?;
        match str_at(block, "type", &bp)? {
            "text" => text.push_str(str_at(block, "text", &bp)?),
            "tool_use" => {
                let input = get(block, "input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": str_at(block, "id", &bp)?,
                    "type": "function",
                    "function": {"name": str_at(block, "name", &bp)?, "arguments": input.to_string()},
                }));
            }
            // Reasoning and server-tool traces belong to the model that produced them.
            _ => {}
        }
    }
    let mut msg = Map::new();
    msg.insert("role".into(), json!("assistant"));
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    msg.insert("content".into(), content);
    if !calls.is_empty() {
        msg.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(Value::Object(msg))
}
