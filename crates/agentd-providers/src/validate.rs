//! Validation of inbound request bodies, done the way OpenAI and Anthropic do it.
//!
//! We check before forwarding so a client gets a precise 400 (`param` = the JSON path at
//! fault, a message that says what to fix) instead of an upstream error that may name fields
//! of the *other* API after translation, and so no provider call is paid for a doomed request.
//! Unknown top-level fields are allowed: both APIs grow new ones faster than we ship.

use agentd_core::ApiError;
use serde_json::{Map, Value};

/// What the gateway needs to know about a validated chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatInfo {
    pub model: String,
    pub stream: bool,
    /// The client wants usage in the stream. OpenAI: `stream_options.include_usage`.
    /// Anthropic streams always carry usage, so there it equals `stream`.
    pub include_usage: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    pub has_tools: bool,
}

/// What the gateway needs to know about a validated embeddings request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingsInfo {
    pub model: String,
    /// How many inputs will be embedded (one vector each).
    pub inputs: usize,
}

const OPENAI_ROLES: &[&str] = &[
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];
const ANTHROPIC_ROLES: &[&str] = &["user", "assistant"];

type Res<T> = Result<T, ApiError>;

fn err(code: &'static str, param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(code, message).with_param(param)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(param: &str, expected: &str, got: &Value) -> ApiError {
    err(
        "invalid_type",
        param,
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
    )
}

fn missing(param: &str) -> ApiError {
    err(
        "missing_required_parameter",
        param,
        format!("Missing required parameter: '{param}'."),
    )
}

/// A field that is present and not null (both APIs treat an explicit null as "not given").
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn as_object<'a>(v: &'a Value, param: &str) -> Res<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        if param.is_empty() {
            ApiError::invalid(
                "invalid_type",
                format!(
                    "The request body must be a JSON object, but got {}.",
                    type_name(v)
                ),
            )
        } else {
            wrong_type(param, "an object", v)
        }
    })
}

fn req_string<'a>(obj: &'a Map<String, Value>, parent: &str, key: &str) -> Res<&'a str> {
    // The parameter's path is only built for an error: this runs for every message field.
    let v = field(obj, key).ok_or_else(|| missing(&join(parent, key)))?;
    v.as_str()
        .ok_or_else(|| wrong_type(&join(parent, key), "a string", v))
}

fn opt_string<'a>(obj: &'a Map<String, Value>, parent: &str, key: &str) -> Res<Option<&'a str>> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| wrong_type(&join(parent, key), "a string", v)),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str) -> Res<Option<bool>> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type(key, "a boolean", v)),
    }
}

fn opt_object<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Res<Option<&'a Map<String, Value>>> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => as_object(v, &join(parent, key)).map(Some),
    }
}

/// An integer ≥ `min`.
fn opt_int(obj: &Map<String, Value>, param: &str, key: &str, min: u64) -> Res<Option<u64>> {
    let Some(v) = field(obj, key) else {
        return Ok(None);
    };
    let param = join(param, key);
    let Some(n) = v
        .as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
    else {
        return Err(wrong_type(&param, "an integer", v));
    };
    if n < i128::from(min) {
        return Err(err(
            "integer_below_min_value",
            &param,
            format!("Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {n} instead."),
        ));
    }
    // n >= min >= 0, and it came from an i64 or u64.
    Ok(Some(u64::try_from(n).unwrap_or(u64::MAX)))
}

/// A number within `min..=max`.
fn opt_number(obj: &Map<String, Value>, key: &str, min: f64, max: f64) -> Res<Option<f64>> {
    let Some(v) = field(obj, key) else {
        return Ok(None);
    };
    let n = v.as_f64().ok_or_else(|| wrong_type(key, "a number", v))?;
    if n < min {
        return Err(err(
            "decimal_below_min_value",
            key,
            format!("Invalid '{key}': decimal below minimum value. Expected a value >= {min}, but got {n} instead."),
        ));
    }
    if n > max {
        return Err(err(
            "decimal_above_max_value",
            key,
            format!("Invalid '{key}': decimal above maximum value. Expected a value <= {max}, but got {n} instead."),
        ));
    }
    Ok(Some(n))
}

fn model(obj: &Map<String, Value>) -> Res<String> {
    let m = req_string(obj, "", "model")?;
    if m.trim().is_empty() {
        return Err(err(
            "invalid_value",
            "model",
            "Invalid 'model': must be a non-empty model name.",
        ));
    }
    Ok(m.to_owned())
}

fn non_empty_array<'a>(obj: &'a Map<String, Value>, key: &str) -> Res<&'a Vec<Value>> {
    let v = field(obj, key).ok_or_else(|| missing(key))?;
    let arr = v.as_array().ok_or_else(|| wrong_type(key, "an array", v))?;
    if arr.is_empty() {
        return Err(err(
            "empty_array",
            key,
            format!("Invalid '{key}': empty array. Expected an array with minimum length 1, but got an empty array instead."),
        ));
    }
    Ok(arr)
}

fn role<'a>(msg: &'a Map<String, Value>, param: &str, allowed: &[&str]) -> Res<&'a str> {
    let role = req_string(msg, param, "role")?;
    if !allowed.contains(&role) {
        let p = join(param, "role");
        return Err(err(
            "invalid_value",
            &p,
            format!(
                "Invalid value for '{p}': '{role}'. Supported values are: {}.",
                quoted_list(allowed)
            ),
        ));
    }
    Ok(role)
}

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn invalid_value(param: &str, got: &str, allowed: &[&str]) -> ApiError {
    err(
        "invalid_value",
        param,
        format!(
            "Invalid value for '{param}': '{got}'. Supported values are: {}.",
            quoted_list(allowed)
        ),
    )
}

/// Function and tool names as both APIs accept them: `^[a-zA-Z0-9_-]{1,64}$`.
fn tool_name(obj: &Map<String, Value>, parent: &str) -> Res<()> {
    let name = req_string(obj, parent, "name")?;
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        let p = join(parent, "name");
        return Err(err(
            "invalid_value",
            &p,
            format!("Invalid '{p}': '{name}' must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes."),
        ));
    }
    Ok(())
}

/// `stop` / `stop_sequences`: a string (OpenAI only) or an array of strings.
fn stop(obj: &Map<String, Value>, key: &str, allow_string: bool) -> Res<()> {
    match field(obj, key) {
        None => Ok(()),
        Some(Value::String(_)) if allow_string => Ok(()),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    return Err(wrong_type(&format!("{key}[{i}]"), "a string", item));
                }
            }
            Ok(())
        }
        Some(v) => Err(wrong_type(
            key,
            if allow_string {
                "a string or an array of strings"
            } else {
                "an array of strings"
            },
            v,
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI chat completions

pub fn openai_chat(body: &Value) -> Result<ChatInfo, ApiError> {
    let obj = as_object(body, "")?;
    let model = model(obj)?;
    let messages = non_empty_array(obj, "messages")?;
    for (i, m) in messages.iter().enumerate() {
        openai_message(m, &format!("messages[{i}]"))?;
    }
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    let mut include_usage = false;
    if let Some(so) = opt_object(obj, "", "stream_options")? {
        if !stream {
            return Err(err(
                "invalid_value",
                "stream_options",
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            ));
        }
        if let Some(v) = field(so, "include_usage") {
            include_usage = v
                .as_bool()
                .ok_or_else(|| wrong_type("stream_options.include_usage", "a boolean", v))?;
        }
    }
    let max_tokens = opt_int(obj, "", "max_tokens", 1)?;
    let max_completion_tokens = opt_int(obj, "", "max_completion_tokens", 1)?;
    opt_number(obj, "temperature", 0.0, 2.0)?;
    opt_number(obj, "top_p", 0.0, 1.0)?;
    opt_number(obj, "presence_penalty", -2.0, 2.0)?;
    opt_number(obj, "frequency_penalty", -2.0, 2.0)?;
    opt_int(obj, "", "n", 1)?;
    stop(obj, "stop", true)?;
    opt_string(obj, "", "user")?;
    opt_bool(obj, "parallel_tool_calls")?;

    let mut has_tools = false;
    if let Some(v) = field(obj, "tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| wrong_type("tools", "an array", v))?;
        for (i, t) in tools.iter().enumerate() {
            openai_tool(t, &format!("tools[{i}]"))?;
        }
        has_tools = !tools.is_empty();
    }
    if let Some(v) = field(obj, "functions") {
        let fns = v
            .as_array()
            .ok_or_else(|| wrong_type("functions", "an array", v))?;
        for (i, f) in fns.iter().enumerate() {
            openai_function_def(f, &format!("functions[{i}]"))?;
        }
        has_tools |= !fns.is_empty();
    }
    if let Some(tc) = field(obj, "tool_choice") {
        openai_tool_choice(tc)?;
    }
    Ok(ChatInfo {
        model,
        stream,
        include_usage,
        max_tokens: max_completion_tokens.or(max_tokens),
        has_tools,
    })
}

fn openai_message(m: &Value, param: &str) -> Res<()> {
    let msg = as_object(m, param)?;
    let role = role(msg, param, OPENAI_ROLES)?;
    let cparam = join(param, "content");
    let content = field(msg, "content");
    match role {
        "system" | "developer" => {
            let c = content.ok_or_else(|| missing(&cparam))?;
            openai_content(c, &cparam, &["text"])
        }
        "user" => {
            let c = content.ok_or_else(|| missing(&cparam))?;
            openai_content(c, &cparam, &["text", "image_url", "input_audio", "file"])
        }
        "assistant" => {
            let mut has_calls = false;
            if let Some(v) = field(msg, "tool_calls") {
                let tp = join(param, "tool_calls");
                let calls = v.as_array().ok_or_else(|| wrong_type(&tp, "an array", v))?;
                for (j, call) in calls.iter().enumerate() {
                    openai_tool_call(call, &format!("{tp}[{j}]"))?;
                }
                has_calls = !calls.is_empty();
            }
            if let Some(fc) = opt_object(msg, param, "function_call")? {
                let fp = join(param, "function_call");
                req_string(fc, &fp, "name")?;
                req_string(fc, &fp, "arguments")?;
                has_calls = true;
            }
            match content {
                Some(c) => openai_content(c, &cparam, &["text", "refusal"]),
                None if has_calls => Ok(()),
                None => Err(err(
                    "missing_required_parameter",
                    &cparam,
                    format!("Missing required parameter: '{cparam}'. An assistant message needs content unless it has 'tool_calls'."),
                )),
            }
        }
        "tool" => {
            req_string(msg, param, "tool_call_id")?;
            let c = content.ok_or_else(|| missing(&cparam))?;
            openai_content(c, &cparam, &["text"])
        }
        "function" => {
            req_string(msg, param, "name")?;
            match content {
                None | Some(Value::String(_)) => Ok(()),
                Some(v) => Err(wrong_type(&cparam, "a string", v)),
            }
        }
        other => Err(invalid_value(&join(param, "role"), other, OPENAI_ROLES)),
    }
}

/// Message content: a string, or an array of typed parts from `allowed`.
fn openai_content(c: &Value, param: &str, allowed: &[&str]) -> Res<()> {
    let parts = match c {
        Value::String(_) => return Ok(()),
        Value::Array(parts) => parts,
        other => {
            return Err(wrong_type(
                param,
                "a string or an array of content parts",
                other,
            ))
        }
    };
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{param}[{j}]");
        let p = as_object(part, &pp)?;
        let ty = req_string(p, &pp, "type")?;
        if !allowed.contains(&ty) {
            return Err(invalid_value(&join(&pp, "type"), ty, allowed));
        }
        match ty {
            "text" => {
                req_string(p, &pp, "text")?;
            }
            "refusal" => {
                req_string(p, &pp, "refusal")?;
            }
            "image_url" => {
                let ip = join(&pp, "image_url");
                let img = field(p, "image_url").ok_or_else(|| missing(&ip))?;
                let img = as_object(img, &ip)?;
                req_string(img, &ip, "url")?;
                if let Some(d) = opt_string(img, &ip, "detail")? {
                    let details = ["auto", "low", "high"];
                    if !details.contains(&d) {
                        return Err(invalid_value(&join(&ip, "detail"), d, &details));
                    }
                }
            }
            "input_audio" => {
                let ap = join(&pp, "input_audio");
                let a = field(p, "input_audio").ok_or_else(|| missing(&ap))?;
                let a = as_object(a, &ap)?;
                req_string(a, &ap, "data")?;
                req_string(a, &ap, "format")?;
            }
            "file" => {
                let fp = join(&pp, "file");
                let f = field(p, "file").ok_or_else(|| missing(&fp))?;
                let f = as_object(f, &fp)?;
                let data = opt_string(f, &fp, "file_data")?;
                let id = opt_string(f, &fp, "file_id")?;
                if data.is_none() && id.is_none() {
                    return Err(err(
                        "missing_required_parameter",
                        &fp,
                        format!("Invalid '{fp}': give either 'file_data' or 'file_id'."),
                    ));
                }
            }
            other => return Err(invalid_value(&join(&pp, "type"), other, allowed)),
        }
    }
    Ok(())
}

fn openai_tool_call(call: &Value, param: &str) -> Res<()> {
    let c = as_object(call, param)?;
    req_string(c, param, "id")?;
    let ty = req_string(c, param, "type")?;
    if ty != "function" {
        return Err(invalid_value(&join(param, "type"), ty, &["function"]));
    }
    let fp = join(param, "function");
    let f = field(c, "function").ok_or_else(|| missing(&fp))?;
    let f = as_object(f, &fp)?;
    req_string(f, &fp, "name")?;
    req_string(f, &fp, "arguments")?;
    Ok(())
}

fn openai_function_def(f: &Value, param: &str) -> Res<()> {
    let f = as_object(f, param)?;
    tool_name(f, param)?;
    opt_string(f, param, "description")?;
    opt_object(f, param, "parameters")?;
    if let Some(v) = field(f, "strict") {
        if !v.is_boolean() {
            return Err(wrong_type(&join(param, "strict"), "a boolean", v));
        }
    }
    Ok(())
}

fn openai_tool(t: &Value, param: &str) -> Res<()> {
    let t = as_object(t, param)?;
    let ty = req_string(t, param, "type")?;
    match ty {
        "function" => {
            let fp = join(param, "function");
            let f = field(t, "function").ok_or_else(|| missing(&fp))?;
            openai_function_def(f, &fp)
        }
        // GPT-5 free-form tools: only forwarded to OpenAI, so only the name is ours to check.
        "custom" => {
            let cp = join(param, "custom");
            let c = field(t, "custom").ok_or_else(|| missing(&cp))?;
            tool_name(as_object(c, &cp)?, &cp)
        }
        other => Err(invalid_value(
            &join(param, "type"),
            other,
            &["function", "custom"],
        )),
    }
}

fn openai_tool_choice(tc: &Value) -> Res<()> {
    const MODES: &[&str] = &["none", "auto", "required"];
    match tc {
        Value::String(s) if MODES.contains(&s.as_str()) => Ok(()),
        Value::String(s) => Err(invalid_value("tool_choice", s, MODES)),
        Value::Object(o) => {
            let ty = req_string(o, "tool_choice", "type")?;
            if ty == "function" {
                let f = field(o, "function").ok_or_else(|| missing("tool_choice.function"))?;
                req_string(
                    as_object(f, "tool_choice.function")?,
                    "tool_choice.function",
                    "name",
                )?;
            }
            Ok(())
        }
        other => Err(wrong_type("tool_choice", "a string or an object", other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Anthropic messages

pub fn anthropic_messages(body: &Value) -> Result<ChatInfo, ApiError> {
    let obj = as_object(body, "")?;
    let model = model(obj)?;
    let messages = non_empty_array(obj, "messages")?;
    for (i, m) in messages.iter().enumerate() {
        anthropic_message(m, &format!("messages[{i}]"))?;
    }
    let max_tokens = opt_int(obj, "", "max_tokens", 1)?.ok_or_else(|| missing("max_tokens"))?;
    let stream = opt_bool(obj, "stream")?.unwrap_or(false);
    opt_number(obj, "temperature", 0.0, 1.0)?;
    opt_number(obj, "top_p", 0.0, 1.0)?;
    opt_int(obj, "", "top_k", 0)?;
    stop(obj, "stop_sequences", false)?;
    match field(obj, "system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                let bp = format!("system[{i}]");
                let bo = as_object(b, &bp)?;
                let ty = req_string(bo, &bp, "type")?;
                if ty != "text" {
                    return Err(invalid_value(&join(&bp, "type"), ty, &["text"]));
                }
                req_string(bo, &bp, "text")?;
            }
        }
        Some(v) => {
            return Err(wrong_type(
                "system",
                "a string or an array of text blocks",
                v,
            ))
        }
    }
    if let Some(md) = opt_object(obj, "", "metadata")? {
        opt_string(md, "metadata", "user_id")?;
    }
    let mut has_tools = false;
    if let Some(v) = field(obj, "tools") {
        let tools = v
            .as_array()
            .ok_or_else(|| wrong_type("tools", "an array", v))?;
        for (i, t) in tools.iter().enumerate() {
            anthropic_tool(t, &format!("tools[{i}]"))?;
        }
        has_tools = !tools.is_empty();
    }
    if let Some(tc) = field(obj, "tool_choice") {
        anthropic_tool_choice(tc)?;
    }
    Ok(ChatInfo {
        model,
        stream,
        include_usage: stream,
        max_tokens: Some(max_tokens),
        has_tools,
    })
}

fn anthropic_message(m: &Value, param: &str) -> Res<()> {
    let msg = as_object(m, param)?;
    let role = role(msg, param, ANTHROPIC_ROLES)?;
    let cparam = join(param, "content");
    let content = field(msg, "content").ok_or_else(|| missing(&cparam))?;
    let blocks = match content {
        Value::String(_) => return Ok(()),
        Value::Array(blocks) => blocks,
        other => {
            return Err(wrong_type(
                &cparam,
                "a string or an array of content blocks",
                other,
            ))
        }
    };
    for (j, b) in blocks.iter().enumerate() {
        let bp = format!("{cparam}[{j}]");
        let bo = as_object(b, &bp)?;
        let ty = req_string(bo, &bp, "type")?;
        match ty {
            "text" => {
                req_string(bo, &bp, "text")?;
            }
            "image" | "document" => anthropic_source(bo, &bp)?,
            "tool_use" => {
                if role != "assistant" {
                    return Err(err(
                        "invalid_value",
                        &join(&bp, "type"),
                        format!("Invalid '{bp}': 'tool_use' blocks may only appear in assistant messages."),
                    ));
                }
                req_string(bo, &bp, "id")?;
                req_string(bo, &bp, "name")?;
                let ip = join(&bp, "input");
                let input = field(bo, "input").ok_or_else(|| missing(&ip))?;
                as_object(input, &ip)?;
            }
            "tool_result" => {
                if role != "user" {
                    return Err(err(
                        "invalid_value",
                        &join(&bp, "type"),
                        format!("Invalid '{bp}': 'tool_result' blocks may only appear in user messages."),
                    ));
                }
                req_string(bo, &bp, "tool_use_id")?;
                match field(bo, "content") {
                    None | Some(Value::String(_)) => {}
                    Some(Value::Array(inner)) => {
                        for (k, ib) in inner.iter().enumerate() {
                            let ibp = format!("{bp}.content[{k}]");
                            let ibo = as_object(ib, &ibp)?;
                            match req_string(ibo, &ibp, "type")? {
                                "text" => {
                                    req_string(ibo, &ibp, "text")?;
                                }
                                "image" | "document" => anthropic_source(ibo, &ibp)?,
                                other => {
                                    return Err(invalid_value(
                                        &join(&ibp, "type"),
                                        other,
                                        &["text", "image", "document"],
                                    ))
                                }
                            }
                        }
                    }
                    Some(v) => {
                        return Err(wrong_type(
                            &join(&bp, "content"),
                            "a string or an array of content blocks",
                            v,
                        ))
                    }
                }
                if let Some(v) = field(bo, "is_error") {
                    if !v.is_boolean() {
                        return Err(wrong_type(&join(&bp, "is_error"), "a boolean", v));
                    }
                }
            }
            // Thinking, server-tool and future block types are passed through unchecked.
            _ => {}
        }
    }
    Ok(())
}

fn anthropic_source(block: &Map<String, Value>, param: &str) -> Res<()> {
    let sp = join(param, "source");
    let src = field(block, "source").ok_or_else(|| missing(&sp))?;
    let src = as_object(src, &sp)?;
    match req_string(src, &sp, "type")? {
        "base64" => {
            req_string(src, &sp, "media_type")?;
            req_string(src, &sp, "data")?;
        }
        "url" => {
            req_string(src, &sp, "url")?;
        }
        "text" => {
            req_string(src, &sp, "data")?;
        }
        // `file` (Files API) and `content` (document made of blocks).
        "file" => {
            req_string(src, &sp, "file_id")?;
        }
        "content" => {}
        other => {
            return Err(invalid_value(
                &join(&sp, "type"),
                other,
                &["base64", "url", "text", "file", "content"],
            ))
        }
    }
    Ok(())
}

fn anthropic_tool(t: &Value, param: &str) -> Res<()> {
    let t = as_object(t, param)?;
    match opt_string(t, param, "type")? {
        None | Some("custom") => {
            tool_name(t, param)?;
            opt_string(t, param, "description")?;
            let ip = join(param, "input_schema");
            let schema = field(t, "input_schema").ok_or_else(|| missing(&ip))?;
            let schema = as_object(schema, &ip)?;
            if let Some(ty) = field(schema, "type") {
                if ty.as_str() != Some("object") {
                    return Err(err(
                        "invalid_value",
                        &join(&ip, "type"),
                        format!(
                            "Invalid '{ip}.type': a tool's input schema must have type 'object'."
                        ),
                    ));
                }
            }
            Ok(())
        }
        // Server tools (`web_search_20250305`, `bash_20250124`, …) are defined by Anthropic.
        Some(_) => req_string(t, param, "name").map(drop),
    }
}

fn anthropic_tool_choice(tc: &Value) -> Res<()> {
    const TYPES: &[&str] = &["auto", "any", "tool", "none"];
    let o = as_object(tc, "tool_choice")?;
    let ty = req_string(o, "tool_choice", "type")?;
    if !TYPES.contains(&ty) {
        return Err(invalid_value("tool_choice.type", ty, TYPES));
    }
    if ty == "tool" {
        req_string(o, "tool_choice", "name")?;
    }
    if let Some(v) = field(o, "disable_parallel_tool_use") {
        if !v.is_boolean() {
            return Err(wrong_type(
                "tool_choice.disable_parallel_tool_use",
                "a boolean",
                v,
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// OpenAI embeddings

pub fn openai_embeddings(body: &Value) -> Result<EmbeddingsInfo, ApiError> {
    let obj = as_object(body, "")?;
    let model = model(obj)?;
    let input = field(obj, "input").ok_or_else(|| missing("input"))?;
    const EXPECTED: &str =
        "a string, an array of strings, an array of token ids or an array of token id arrays";
    let inputs = match input {
        Value::String(s) => {
            if s.is_empty() {
                return Err(err("invalid_value", "input", "Invalid 'input': the string to embed must not be empty."));
            }
            1
        }
        Value::Array(items) if items.is_empty() => {
            return Err(err(
                "empty_array",
                "input",
                "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            ))
        }
        Value::Array(items) => match &items[0] {
            Value::String(_) => {
                for (i, it) in items.iter().enumerate() {
                    match it {
                        Value::String(s) if s.is_empty() => {
                            return Err(err(
                                "invalid_value",
                                &format!("input[{i}]"),
                                format!("Invalid 'input[{i}]': the string to embed must not be empty."),
                            ))
                        }
                        Value::String(_) => {}
                        other => return Err(wrong_type(&format!("input[{i}]"), "a string", other)),
                    }
                }
                items.len()
            }
            Value::Number(_) => {
                for (i, it) in items.iter().enumerate() {
                    if it.as_u64().is_none() {
                        return Err(wrong_type(&format!("input[{i}]"), "a non-negative integer token id", it));
                    }
                }
                1
            }
            Value::Array(_) => {
                for (i, it) in items.iter().enumerate() {
                    let ip = format!("input[{i}]");
                    let toks = it.as_array().ok_or_else(|| wrong_type(&ip, "an array of token ids", it))?;
                    if toks.is_empty() {
                        return Err(err("empty_array", &ip, format!("Invalid '{ip}': empty array of token ids.")));
                    }
                    for (j, t) in toks.iter().enumerate() {
                        if t.as_u64().is_none() {
                            return Err(wrong_type(&format!("{ip}[{j}]"), "a non-negative integer token id", t));
                        }
                    }
                }
                items.len()
            }
            other => return Err(wrong_type("input[0]", EXPECTED, other)),
        },
        other => return Err(wrong_type("input", EXPECTED, other)),
    };
    if let Some(f) = opt_string(obj, "", "encoding_format")? {
        if f != "float" && f != "base64" {
            return Err(invalid_value("encoding_format", f, &["float", "base64"]));
        }
    }
    opt_int(obj, "", "dimensions", 1)?;
    opt_string(obj, "", "user")?;
    Ok(EmbeddingsInfo { model, inputs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_core::ErrorKind;
    use serde_json::json;

    /// Validate `body`, expect an error, return (code, param, message).
    fn fail(f: fn(&Value) -> Res<ChatInfo>, body: Value) -> (String, Option<String>, String) {
        let e = f(&body).expect_err("should be rejected");
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        (e.code.into_owned(), e.param, e.message)
    }

    fn oa_param(body: Value) -> Option<String> {
        fail(openai_chat, body).1
    }

    fn an_param(body: Value) -> Option<String> {
        fail(anthropic_messages, body).1
    }

    fn oa(extra: Value) -> Value {
        let mut base = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn an(extra: Value) -> Value {
        let mut base = json!({"model": "claude", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    #[test]
    fn openai_accepts_a_full_request_and_reports_what_the_gateway_needs() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "really"}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "assistant", "content": "A cat."},
                {"role": "function", "name": "legacy", "content": null}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 2,
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "some_future_field": {"x": 1}
        });
        assert_eq!(
            openai_chat(&body).unwrap(),
            ChatInfo {
                model: "gpt-4o".into(),
                stream: true,
                include_usage: true,
                max_tokens: Some(20),
                has_tools: true
            }
        );
        let plain = openai_chat(&oa(json!({"max_tokens": 5, "stream": null}))).unwrap();
        assert_eq!(
            plain,
            ChatInfo {
                model: "gpt-4o".into(),
                stream: false,
                include_usage: false,
                max_tokens: Some(5),
                has_tools: false
            }
        );
    }

    #[test]
    fn openai_body_model_and_messages() {
        let (code, param, msg) = fail(openai_chat, json!([1]));
        assert_eq!((code.as_str(), param), ("invalid_type", None));
        assert!(msg.contains("JSON object"), "{msg}");
        let (code, param, _) = fail(openai_chat, json!({"messages": []}));
        assert_eq!(
            (code.as_str(), param.as_deref()),
            ("missing_required_parameter", Some("model"))
        );
        assert_eq!(oa_param(oa(json!({"model": 4}))).as_deref(), Some("model"));
        assert_eq!(
            oa_param(oa(json!({"model": " "}))).as_deref(),
            Some("model")
        );
        let (code, param, _) = fail(openai_chat, oa(json!({"messages": []})));
        assert_eq!(
            (code.as_str(), param.as_deref()),
            ("empty_array", Some("messages"))
        );
        assert_eq!(oa_param(json!({"model": "m"})).as_deref(), Some("messages"));
        assert_eq!(
            oa_param(oa(json!({"messages": {"role": "user"}}))).as_deref(),
            Some("messages")
        );
        assert_eq!(
            oa_param(oa(json!({"messages": ["hi"]}))).as_deref(),
            Some("messages[0]")
        );
    }

    #[test]
    fn openai_roles_and_content() {
        let ok = json!({"role": "user", "content": "x"});
        let cases = [
            (json!({"content": "x"}), "messages[1].role"),
            (json!({"role": "robot", "content": "x"}), "messages[1].role"),
            (json!({"role": "user"}), "messages[1].content"),
            (json!({"role": "user", "content": 5}), "messages[1].content"),
            (
                json!({"role": "user", "content": [{"type": "video"}]}),
                "messages[1].content[0].type",
            ),
            (
                json!({"role": "user", "content": [{"text": "x"}]}),
                "messages[1].content[0].type",
            ),
            (
                json!({"role": "user", "content": [{"type": "text"}]}),
                "messages[1].content[0].text",
            ),
            (
                json!({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}),
                "messages[1].content[0].image_url.url",
            ),
            (
                json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]}),
                "messages[1].content[0].image_url.detail",
            ),
            (
                json!({"role": "user", "content": [{"type": "file", "file": {}}]}),
                "messages[1].content[0].file",
            ),
            (
                json!({"role": "system", "content": null}),
                "messages[1].content",
            ),
            (
                json!({"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}),
                "messages[1].content[0].type",
            ),
            (json!({"role": "assistant"}), "messages[1].content"),
            (
                json!({"role": "assistant", "content": null, "tool_calls": []}),
                "messages[1].content",
            ),
            (
                json!({"role": "assistant", "content": [{"type": "refusal"}]}),
                "messages[1].content[0].refusal",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}]}),
                "messages[1].tool_calls[0].function.arguments",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "fn", "function": {"name": "f", "arguments": "{}"}}]}),
                "messages[1].tool_calls[0].type",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}),
                "messages[1].tool_calls[0].id",
            ),
            (
                json!({"role": "tool", "content": "r"}),
                "messages[1].tool_call_id",
            ),
            (
                json!({"role": "tool", "tool_call_id": 3, "content": "r"}),
                "messages[1].tool_call_id",
            ),
            (
                json!({"role": "tool", "tool_call_id": "c"}),
                "messages[1].content",
            ),
            (
                json!({"role": "function", "content": "r"}),
                "messages[1].name",
            ),
        ];
        for (bad, param) in cases {
            let body = oa(json!({"messages": [ok.clone(), bad.clone()]}));
            assert_eq!(oa_param(body).as_deref(), Some(param), "{bad}");
        }
        let (code, _, msg) = fail(
            openai_chat,
            oa(json!({"messages": [{"role": "robot", "content": "x"}]})),
        );
        assert_eq!(code, "invalid_value");
        assert!(
            msg.contains("'robot'") && msg.contains("'developer'"),
            "{msg}"
        );
        let (_, _, msg) = fail(
            openai_chat,
            oa(json!({"messages": [{"role": "user", "content": 5}]})),
        );
        assert_eq!(
            msg,
            "Invalid type for 'messages[0].content': expected a string or an array of content parts, but got a number instead."
        );
    }

    #[test]
    fn openai_scalar_parameters() {
        let cases = [
            (json!({"stream": "yes"}), "stream", "invalid_type"),
            (
                json!({"stream_options": {"include_usage": true}}),
                "stream_options",
                "invalid_value",
            ),
            (
                json!({"stream": false, "stream_options": {"include_usage": true}}),
                "stream_options",
                "invalid_value",
            ),
            (
                json!({"stream": true, "stream_options": {"include_usage": 1}}),
                "stream_options.include_usage",
                "invalid_type",
            ),
            (
                json!({"stream": true, "stream_options": "x"}),
                "stream_options",
                "invalid_type",
            ),
            (
                json!({"max_tokens": 0}),
                "max_tokens",
                "integer_below_min_value",
            ),
            (
                json!({"max_tokens": -3}),
                "max_tokens",
                "integer_below_min_value",
            ),
            (json!({"max_tokens": 1.5}), "max_tokens", "invalid_type"),
            (
                json!({"max_completion_tokens": "10"}),
                "max_completion_tokens",
                "invalid_type",
            ),
            (
                json!({"temperature": 2.01}),
                "temperature",
                "decimal_above_max_value",
            ),
            (
                json!({"temperature": -0.1}),
                "temperature",
                "decimal_below_min_value",
            ),
            (json!({"temperature": "hot"}), "temperature", "invalid_type"),
            (json!({"top_p": 1.5}), "top_p", "decimal_above_max_value"),
            (json!({"n": 0}), "n", "integer_below_min_value"),
            (json!({"stop": 1}), "stop", "invalid_type"),
            (json!({"stop": ["a", 1]}), "stop[1]", "invalid_type"),
            (json!({"user": 7}), "user", "invalid_type"),
            (
                json!({"parallel_tool_calls": "no"}),
                "parallel_tool_calls",
                "invalid_type",
            ),
        ];
        for (extra, param, code) in cases {
            let (c, p, _) = fail(openai_chat, oa(extra.clone()));
            assert_eq!((c.as_str(), p.as_deref()), (code, Some(param)), "{extra}");
        }
        let (_, _, msg) = fail(openai_chat, oa(json!({"stream_options": {}})));
        assert_eq!(
            msg,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        );
        assert!(openai_chat(&oa(
            json!({"stop": "END", "temperature": 0, "max_tokens": null})
        ))
        .is_ok());
    }

    #[test]
    fn openai_tools() {
        let cases = [
            (json!({"tools": {}}), "tools"),
            (
                json!({"tools": [{"function": {"name": "f"}}]}),
                "tools[0].type",
            ),
            (json!({"tools": [{"type": "retrieval"}]}), "tools[0].type"),
            (
                json!({"tools": [{"type": "function"}]}),
                "tools[0].function",
            ),
            (
                json!({"tools": [{"type": "function", "function": {}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "has space"}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
                "tools[0].function.parameters",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]}),
                "tools[0].function.strict",
            ),
            (
                json!({"tools": [{"type": "custom", "custom": {}}]}),
                "tools[0].custom.name",
            ),
            (json!({"functions": [{"name": ""}]}), "functions[0].name"),
            (json!({"tool_choice": "sometimes"}), "tool_choice"),
            (json!({"tool_choice": 1}), "tool_choice"),
            (
                json!({"tool_choice": {"type": "function"}}),
                "tool_choice.function",
            ),
            (
                json!({"tool_choice": {"type": "function", "function": {}}}),
                "tool_choice.function.name",
            ),
        ];
        for (extra, param) in cases {
            assert_eq!(
                oa_param(oa(extra.clone())).as_deref(),
                Some(param),
                "{extra}"
            );
        }
        let info = openai_chat(&oa(json!({"tools": [], "tool_choice": "none"}))).unwrap();
        assert!(!info.has_tools);
        let info = openai_chat(&oa(json!({"functions": [{"name": "f"}]}))).unwrap();
        assert!(info.has_tools);
    }

    #[test]
    fn anthropic_accepts_a_full_request() {
        let body = json!({
            "model": "claude-sonnet-4",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "cat"}], "is_error": false}
                ]}
            ],
            "stream": true,
            "temperature": 1,
            "top_k": 5,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u1"},
            "tools": [
                {"name": "look", "input_schema": {"type": "object", "properties": {}}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        });
        assert_eq!(
            anthropic_messages(&body).unwrap(),
            ChatInfo {
                model: "claude-sonnet-4".into(),
                stream: true,
                include_usage: true,
                max_tokens: Some(1024),
                has_tools: true
            }
        );
    }

    #[test]
    fn anthropic_rules() {
        let cases = [
            (
                json!({"max_tokens": null}),
                "max_tokens",
                "missing_required_parameter",
            ),
            (
                json!({"max_tokens": 0}),
                "max_tokens",
                "integer_below_min_value",
            ),
            (json!({"model": ""}), "model", "invalid_value"),
            (json!({"messages": []}), "messages", "empty_array"),
            (
                json!({"messages": [{"role": "system", "content": "x"}]}),
                "messages[0].role",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": {"type": "text"}}]}),
                "messages[0].content",
                "invalid_type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]}),
                "messages[0].content[0].text",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "path"}}]}]}),
                "messages[0].content[0].source.type",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]}),
                "messages[0].content[0].source.media_type",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
                "messages[0].content[0].type",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]}),
                "messages[0].content[0].input",
                "invalid_type",
            ),
            (
                json!({"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]}),
                "messages[0].content[0].type",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
                "messages[0].content[0].tool_use_id",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "tool_use"}]}]}]}),
                "messages[0].content[0].content[0].type",
                "invalid_value",
            ),
            (
                json!({"temperature": 1.5}),
                "temperature",
                "decimal_above_max_value",
            ),
            (json!({"top_k": -1}), "top_k", "integer_below_min_value"),
            (json!({"stream": 1}), "stream", "invalid_type"),
            (
                json!({"stop_sequences": "END"}),
                "stop_sequences",
                "invalid_type",
            ),
            (json!({"system": 3}), "system", "invalid_type"),
            (
                json!({"system": [{"type": "image"}]}),
                "system[0].type",
                "invalid_value",
            ),
            (
                json!({"system": [{"type": "text"}]}),
                "system[0].text",
                "missing_required_parameter",
            ),
            (
                json!({"metadata": {"user_id": 1}}),
                "metadata.user_id",
                "invalid_type",
            ),
            (
                json!({"tools": [{"name": "f"}]}),
                "tools[0].input_schema",
                "missing_required_parameter",
            ),
            (
                json!({"tools": [{"name": "f", "input_schema": {"type": "array"}}]}),
                "tools[0].input_schema.type",
                "invalid_value",
            ),
            (
                json!({"tools": [{"name": "f.g", "input_schema": {}}]}),
                "tools[0].name",
                "invalid_value",
            ),
            (
                json!({"tools": [{"type": "bash_20250124"}]}),
                "tools[0].name",
                "missing_required_parameter",
            ),
            (
                json!({"tool_choice": "auto"}),
                "tool_choice",
                "invalid_type",
            ),
            (
                json!({"tool_choice": {"type": "required"}}),
                "tool_choice.type",
                "invalid_value",
            ),
            (
                json!({"tool_choice": {"type": "tool"}}),
                "tool_choice.name",
                "missing_required_parameter",
            ),
        ];
        for (extra, param, code) in cases {
            let (c, p, _) = fail(anthropic_messages, an(extra.clone()));
            assert_eq!((c.as_str(), p.as_deref()), (code, Some(param)), "{extra}");
        }
        assert_eq!(
            an_param(json!({"model": "m", "max_tokens": 1})).as_deref(),
            Some("messages")
        );
        let (_, _, msg) = fail(anthropic_messages, an(json!({"max_tokens": null})));
        assert_eq!(msg, "Missing required parameter: 'max_tokens'.");
        let info = anthropic_messages(&an(json!({"system": "s"}))).unwrap();
        assert_eq!(
            (info.stream, info.include_usage, info.max_tokens),
            (false, false, Some(100))
        );
    }

    #[test]
    fn embeddings() {
        let ok = |input: Value| {
            openai_embeddings(&json!({"model": "e", "input": input})).map(|i| i.inputs)
        };
        assert_eq!(ok(json!("hello")).unwrap(), 1);
        assert_eq!(ok(json!(["a", "b", "c"])).unwrap(), 3);
        assert_eq!(ok(json!([1, 2, 3])).unwrap(), 1);
        assert_eq!(ok(json!([[1, 2], [3]])).unwrap(), 2);
        let param = |body: Value| {
            let e = openai_embeddings(&body).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidRequest);
            (e.code.into_owned(), e.param.unwrap_or_default())
        };
        let p = |c: &str, p: &str| (c.to_owned(), p.to_owned());
        assert_eq!(
            param(json!({"input": "x"})),
            p("missing_required_parameter", "model")
        );
        assert_eq!(
            param(json!({"model": "e"})),
            p("missing_required_parameter", "input")
        );
        assert_eq!(
            param(json!({"model": "e", "input": ""})),
            p("invalid_value", "input")
        );
        assert_eq!(
            param(json!({"model": "e", "input": []})),
            p("empty_array", "input")
        );
        assert_eq!(
            param(json!({"model": "e", "input": ["a", 1]})),
            p("invalid_type", "input[1]")
        );
        assert_eq!(
            param(json!({"model": "e", "input": ["a", ""]})),
            p("invalid_value", "input[1]")
        );
        assert_eq!(
            param(json!({"model": "e", "input": [1, -2]})),
            p("invalid_type", "input[1]")
        );
        assert_eq!(
            param(json!({"model": "e", "input": [[1], []]})),
            p("empty_array", "input[1]")
        );
        assert_eq!(
            param(json!({"model": "e", "input": [[1], [1.5]]})),
            p("invalid_type", "input[1][0]")
        );
        assert_eq!(
            param(json!({"model": "e", "input": [{}]})),
            p("invalid_type", "input[0]")
        );
        assert_eq!(
            param(json!({"model": "e", "input": 5})),
            p("invalid_type", "input")
        );
        assert_eq!(
            param(json!({"model": "e", "input": "x", "encoding_format": "int8"})),
            p("invalid_value", "encoding_format")
        );
        assert_eq!(
            param(json!({"model": "e", "input": "x", "dimensions": 0})),
            p("integer_below_min_value", "dimensions")
        );
    }
}
