//! Streams: Anthropic SSE events ⇄ OpenAI `chat.completion.chunk` SSE frames.
//!
//! Both translators are push-driven state machines: the caller parses upstream bytes with
//! [`crate::sse::SseParser`], pushes each event, and writes the returned frames to the client
//! as they come, so time-to-first-token is unchanged by translation.

use super::{
    anthropic_error, anthropic_tool_id, finish_reason_from_anthropic, fresh_id, now_unix,
    openai_error, openai_usage, stop_reason_from_openai, u64_at, usage_from_openai, TranslateError,
};
use crate::sse::{frame, SseEvent};
use agentd_core::{ApiError, ErrorKind, Usage};
use bytes::Bytes;
use serde_json::{json, Value};

fn parse(event: &SseEvent) -> Result<Value, TranslateError> {
    Ok(serde_json::from_str(&event.data)?)
}

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI

/// What an Anthropic content block became on the OpenAI side.
#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    /// A tool call with this OpenAI `tool_calls[].index`.
    Tool(u64),
    /// Thinking and server-tool blocks: OpenAI chunks have no place for them.
    Dropped,
}

/// Anthropic SSE events in -> OpenAI `chat.completion.chunk` frames out (complete SSE frames incl. the final
/// `data: [DONE]\n\n` on `message_stop`). If include_usage, emit the usage chunk (choices: []) before [DONE] and put
/// `"usage": null` on the others, as OpenAI does. An Anthropic `error` event becomes an OpenAI-style error frame
/// `data: {"error":{...}}\n\n` and ends the stream. `ping` is dropped.
#[derive(Debug)]
pub struct AnthropicToOpenAiStream {
    model: String,
    include_usage: bool,
    id: String,
    created: u64,
    /// Anthropic content block index → what it became.
    blocks: Vec<(u64, Block)>,
    next_tool_index: u64,
    input_tokens: u64,
    cache_read: u64,
    cache_creation: u64,
    output_tokens: u64,
    finish_sent: bool,
    done: bool,
}

impl AnthropicToOpenAiStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            model: model.to_owned(),
            include_usage,
            id: fresh_id("chatcmpl-"),
            created: now_unix(),
            blocks: Vec::new(),
            next_tool_index: 0,
            input_tokens: 0,
            cache_read: 0,
            cache_creation: 0,
            output_tokens: 0,
            finish_sent: false,
            done: false,
        }
    }

    pub fn push(&mut self, event: &SseEvent) -> Result<Vec<Bytes>, TranslateError> {
        if self.done {
            return Ok(Vec::new());
        }
        let data = parse(event)?;
        let ty = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or("");
        let mut out = Vec::new();
        match ty {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                if let Some(id) = message.get("id").and_then(Value::as_str) {
                    id.clone_into(&mut self.id);
                }
                self.read_usage(message.get("usage").unwrap_or(&Value::Null));
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            "content_block_start" => {
                let index = block_index(&data)?;
                let cb = data.get("content_block").unwrap_or(&Value::Null);
                let block = match cb.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = cb.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            out.push(self.chunk(json!({"content": text}), None));
                        }
                        Block::Text
                    }
                    Some("tool_use") => {
                        let id = cb.get("id").and_then(Value::as_str);
                        let name = cb.get("name").and_then(Value::as_str);
                        let (Some(id), Some(name)) = (id, name) else {
                            return Err(TranslateError::malformed(
                                "a tool_use block lacks its id or name",
                            ));
                        };
                        // Streams start with `input: {}` and send the JSON as deltas; a proxy
                        // that sends the whole input up front must not lose it.
                        let arguments = match cb.get("input") {
                            Some(Value::Object(o)) if !o.is_empty() => {
                                Value::Object(o.clone()).to_string()
                            }
                            _ => String::new(),
                        };
                        let tool_index = self.next_tool_index;
                        self.next_tool_index += 1;
                        out.push(self.chunk(
                            json!({"tool_calls": [{
                                "index": tool_index,
                                "id": id,
                                "type": "function",
                                "function": {"name": name, "arguments": arguments},
                            }]}),
                            None,
                        ));
                        Block::Tool(tool_index)
                    }
                    _ => Block::Dropped,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let index = block_index(&data)?;
                let block = self
                    .blocks
                    .iter()
                    .rev()
                    .find(|(i, _)| *i == index)
                    .map(|(_, b)| *b)
                    .ok_or_else(|| {
                        TranslateError::malformed(format!(
                            "delta for content block {index}, which was never started"
                        ))
                    })?;
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let delta_type = delta.get("type").and_then(Value::as_str);
                // Other delta types (thinking_delta, signature_delta, citations_delta) have no
                // place in an OpenAI chunk.
                match block {
                    Block::Text if delta_type == Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            out.push(self.chunk(json!({"content": text}), None));
                        }
                    }
                    Block::Tool(tool_index) if delta_type == Some("input_json_delta") => {
                        let partial = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        if !partial.is_empty() {
                            out.push(self.chunk(
                                json!({"tool_calls": [{"index": tool_index, "function": {"arguments": partial}}]}),
                                None,
                            ));
                        }
                    }
                    Block::Text | Block::Tool(_) | Block::Dropped => {}
                }
            }
            "message_delta" => {
                self.read_usage(data.get("usage").unwrap_or(&Value::Null));
                let stop = data
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str);
                if let Some(stop) = stop {
                    out.push(self.chunk(json!({}), Some(finish_reason_from_anthropic(stop))));
                    self.finish_sent = true;
                }
            }
            "message_stop" => {
                if !self.finish_sent {
                    out.push(self.chunk(json!({}), Some("stop")));
                }
                if self.include_usage {
                    let chunk = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": openai_usage(&self.usage()),
                    });
                    out.push(frame(None, &chunk.to_string()));
                }
                out.push(frame(None, "[DONE]"));
                self.done = true;
            }
            "error" => {
                let err = anthropic_error(&data).unwrap_or_else(|| {
                    ApiError::new(
                        ErrorKind::Upstream,
                        "upstream_error",
                        "The provider reported an error mid-stream.",
                    )
                });
                out.push(frame(None, &err.openai_body().to_string()));
                self.done = true;
            }
            // ping, content_block_stop, and event types added after this was written.
            _ => {}
        }
        Ok(out)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens + self.cache_read + self.cache_creation,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cache_read,
        }
    }

    /// `message_start` carries the input counts, `message_delta` the cumulative output (and,
    /// on newer API versions, cumulative input counts too): take whatever is present.
    fn read_usage(&mut self, u: &Value) {
        let set = |field: &mut u64, key: &str| {
            if let Some(n) = u.get(key).and_then(Value::as_u64) {
                *field = n;
            }
        };
        set(&mut self.input_tokens, "input_tokens");
        set(&mut self.cache_read, "cache_read_input_tokens");
        set(&mut self.cache_creation, "cache_creation_input_tokens");
        set(&mut self.output_tokens, "output_tokens");
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        frame(None, &chunk.to_string())
    }
}

fn block_index(data: &Value) -> Result<u64, TranslateError> {
    data.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| TranslateError::malformed("a content block event lacks its index"))
}

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic

/// The Anthropic content block being streamed.
#[derive(Debug)]
enum Open {
    Text {
        block: u64,
    },
    Tool {
        block: u64,
        openai_index: u64,
        id: Option<String>,
    },
}

/// OpenAI chunks in (the upstream always has include_usage on) -> Anthropic events out (message_start, content_block_start/
/// delta/stop for text and for each tool call — a new tool call index closes the previous block —, message_delta with
/// stop_reason and usage.output_tokens, message_stop). message_start is emitted on the first chunk; input token count
/// is only known at the end from OpenAI, so message_start carries the gateway's estimate of the prompt (see
/// [`OpenAiToAnthropicStream::with_input_estimate`]; an upper bound, never 0 for a real prompt) and the final count goes
/// into message_delta.usage.input_tokens (Anthropic's SDK reads it there and it replaces the estimate). `[DONE]` ends it. An upstream `{"error":…}` data
/// becomes an Anthropic `event: error` frame.
#[derive(Debug)]
pub struct OpenAiToAnthropicStream {
    model: String,
    started: bool,
    open: Option<Open>,
    next_block: u64,
    /// OpenAI tool call indices whose blocks were closed: a fragment for one of them cannot be
    /// placed any more.
    closed_tools: Vec<u64>,
    finish_reason: Option<String>,
    refused: bool,
    usage: Usage,
    done: bool,
    /// Reported as message_start's input_tokens (the real count comes at the end).
    input_estimate: u64,
}

impl OpenAiToAnthropicStream {
    /// The prompt's estimated tokens, for message_start (which OpenAI streams cannot fill).
    #[must_use]
    pub fn with_input_estimate(mut self, tokens: u64) -> Self {
        self.input_estimate = tokens;
        self
    }

    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: None,
            next_block: 0,
            closed_tools: Vec::new(),
            finish_reason: None,
            refused: false,
            usage: Usage::default(),
            done: false,
            input_estimate: 0,
        }
    }

    pub fn push(&mut self, event: &SseEvent) -> Result<Vec<Bytes>, TranslateError> {
        let mut out = Vec::new();
        if self.done {
            return Ok(out);
        }
        if event.data.trim() == "[DONE]" {
            self.start(None, &mut out);
            self.close(&mut out);
            let stop_reason = if self.refused {
                "refusal"
            } else {
                self.finish_reason
                    .as_deref()
                    .map_or("end_turn", stop_reason_from_openai)
            };
            let u = &self.usage;
            out.push(anthropic_frame(json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {
                    "input_tokens": u.input_tokens.saturating_sub(u.cached_input_tokens),
                    "cache_read_input_tokens": u.cached_input_tokens,
                    "output_tokens": u.output_tokens,
                },
            })));
            out.push(anthropic_frame(json!({"type": "message_stop"})));
            self.done = true;
            return Ok(out);
        }
        let data = parse(event)?;
        if let Some(err) = openai_error(&data) {
            out.push(anthropic_frame(err.anthropic_body()));
            self.done = true;
            return Ok(out);
        }
        self.start(data.get("id").and_then(Value::as_str), &mut out);
        if let Some(u) = data.get("usage").filter(|u| u.is_object()) {
            self.usage = usage_from_openai(u);
        }
        let Some(choice) = data
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find(|c| u64_at(c, "index") == 0))
        else {
            return Ok(out); // the usage chunk has no choices
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        for key in ["content", "refusal"] {
            if let Some(text) = delta
                .get(key)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.refused |= key == "refusal";
                self.text(text, &mut out);
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                self.tool_fragment(call, &mut out)?;
            }
        }
        // Legacy function calling streams one unnamed call.
        if let Some(fc) = delta.get("function_call").filter(|v| v.is_object()) {
            self.tool_fragment(&json!({"index": 0, "function": fc}), &mut out)?;
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.close(&mut out);
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(out)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = upstream_id.map_or_else(|| fresh_id("msg_"), str::to_owned);
        out.push(anthropic_frame(json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
            },
        })));
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let block = match self.open.take() {
            None => return,
            Some(Open::Text { block }) => block,
            Some(Open::Tool {
                block,
                openai_index,
                ..
            }) => {
                self.closed_tools.push(openai_index);
                block
            }
        };
        out.push(anthropic_frame(
            json!({"type": "content_block_stop", "index": block}),
        ));
    }

    fn open_block(
        &mut self,
        content_block: Value,
        open: impl FnOnce(u64) -> Open,
        out: &mut Vec<Bytes>,
    ) -> u64 {
        self.close(out);
        let block = self.next_block;
        self.next_block += 1;
        out.push(anthropic_frame(json!({
            "type": "content_block_start",
            "index": block,
            "content_block": content_block,
        })));
        self.open = Some(open(block));
        block
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        let block = match self.open {
            Some(Open::Text { block }) => block,
            None | Some(Open::Tool { .. }) => self.open_block(
                json!({"type": "text", "text": ""}),
                |block| Open::Text { block },
                out,
            ),
        };
        out.push(anthropic_frame(json!({
            "type": "content_block_delta",
            "index": block,
            "delta": {"type": "text_delta", "text": text},
        })));
    }

    fn tool_fragment(&mut self, call: &Value, out: &mut Vec<Bytes>) -> Result<(), TranslateError> {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let f = call.get("function").unwrap_or(&Value::Null);
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let arguments = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        let current = match &self.open {
            Some(Open::Tool {
                block,
                openai_index,
                id: open_id,
            }) => Some((*block, *openai_index, open_id.as_deref())),
            None | Some(Open::Text { .. }) => None,
        };
        // Servers that leave out `index` send each call whole; a missing index with a new id
        // therefore means the next call.
        let index = match (call.get("index").and_then(Value::as_u64), current, id) {
            (Some(i), _, _) => i,
            (None, Some((_, i, open_id)), Some(id)) if open_id != Some(id) => i + 1,
            (None, Some((_, i, _)), _) => i,
            (None, None, _) => self.closed_tools.last().map_or(0, |i| i + 1),
        };
        // Some servers (Ollama) reuse index 0 for every parallel call and tell them apart by
        // id only, so a different id also starts a new call.
        let continues = matches!(current, Some((_, i, open_id)) if i == index && (id.is_none() || open_id.is_none() || id == open_id));
        let block = if let (true, Some((block, _, _))) = (continues, current) {
            block
        } else {
            if id.is_none() && self.closed_tools.contains(&index) {
                return Err(TranslateError::malformed(format!(
                    "a fragment for tool call {index} arrived after that call was closed"
                )));
            }
            let name = name.ok_or_else(|| {
                TranslateError::malformed(format!(
                    "tool call {index} starts without a function name"
                ))
            })?;
            let tool_id = id.map_or_else(|| fresh_id("toolu_"), anthropic_tool_id);
            let open_id = id.map(str::to_owned);
            self.open_block(
                json!({"type": "tool_use", "id": tool_id, "name": name, "input": {}}),
                |block| Open::Tool {
                    block,
                    openai_index: index,
                    id: open_id,
                },
                out,
            )
        };
        if !arguments.is_empty() {
            out.push(anthropic_frame(json!({
                "type": "content_block_delta",
                "index": block,
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            })));
        }
        Ok(())
    }
}

/// An Anthropic event frame: the SSE event name is the payload's `type`.
fn anthropic_frame(data: Value) -> Bytes {
    let name = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_owned();
    frame(Some(&name), &data.to_string())
}
