//! Anthropic's Messages API: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version`.
//!
//! Anthropic-format requests pass through with only `model` rewritten; OpenAI-format requests,
//! their answers and their streams are translated. Anthropic has no embeddings API.

use std::borrow::Cow;

use ::http::Uri;
use agentd_config::ProviderConfig;
use agentd_core::Usage;
use serde::Deserialize;
use serde_json::Value;

use crate::error::status_for_error_type;
use crate::http::{self, HttpClient};
use crate::sse::SseEvent;
use crate::stream::{Observed, Text};
use crate::tokens::Generated;
use crate::{translate, ApiFormat, ChatRequest, ChatResponse, ProviderError};

/// A client for one Anthropic provider.
#[derive(Debug)]
pub struct AnthropicClient {
    http: HttpClient,
    messages_url: Uri,
}

impl AnthropicClient {
    pub fn new(cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        let mut auth = Vec::new();
        if let Some(key) = &cfg.api_key {
            auth.push(http::header(
                "x-api-key",
                key.expose(),
                &format!("providers.{}.api_key", cfg.name),
            )?);
        }
        auth.push(http::header(
            "anthropic-version",
            &cfg.anthropic_version,
            &format!("providers.{}.anthropic_version", cfg.name),
        )?);
        Ok(Self {
            http: HttpClient::new(cfg, auth)?,
            messages_url: http::endpoint(cfg, "/v1/messages")?,
        })
    }

    pub fn name(&self) -> &str {
        &self.http.name
    }

    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let deadlines = self.http.deadlines();
        let bytes = match req.format {
            ApiFormat::Anthropic => request_bytes(&req.body, &req.upstream_model, req.stream)?,
            ApiFormat::OpenAi => {
                let body = translate::openai_to_anthropic_request(&req.body, &req.upstream_model)
                    .map_err(ProviderError::InvalidRequest)?;
                request_bytes(&body, &req.upstream_model, req.stream)?
            }
        };
        self.http
            .chat(
                &self.messages_url,
                ApiFormat::Anthropic,
                &req,
                bytes,
                deadlines,
            )
            .await
    }
}

/// The body sent upstream: the client's with `model` rewritten; a stream is asked for exactly
/// when the client asked for one.
pub(crate) fn request_bytes(
    body: &Value,
    upstream_model: &str,
    stream: bool,
) -> Result<Vec<u8>, ProviderError> {
    let model = Some(Value::String(upstream_model.to_owned()));
    let asked = body
        .get("stream")
        .is_some_and(|s| s.as_bool() == Some(true));
    let stream_member = match (stream, asked) {
        (true, _) => Some(("stream", Some(Value::Bool(true)))),
        (false, true) => Some(("stream", None)),
        (false, false) => None,
    };
    let mut patch = vec![("model", model)];
    patch.extend(stream_member);
    crate::encode_patched(body, &patch)
}

/// Rewrites `model`; a stream is asked for exactly when the client asked for one.
#[cfg(test)]
pub(crate) fn prepare_request(body: &mut Value, upstream_model: &str, stream: bool) {
    crate::set_model(body, upstream_model);
    if let Some(obj) = body.as_object_mut() {
        if stream {
            obj.insert("stream".to_owned(), Value::Bool(true));
        } else if obj.get("stream").is_some_and(|s| s.as_bool() == Some(true)) {
            obj.remove("stream");
        }
    }
}

// ---- wire types: only what accounting needs -------------------------------------------------

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// Anthropic counts cache reads and writes apart from `input_tokens`; our input includes them.
fn to_usage(u: &WireUsage) -> Usage {
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    Usage {
        input_tokens: u.input_tokens.unwrap_or(0)
            + cache_read
            + u.cache_creation_input_tokens.unwrap_or(0),
        output_tokens: u.output_tokens.unwrap_or(0),
        cached_input_tokens: cache_read,
    }
}

#[derive(Deserialize)]
struct UsageEnvelope {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// `usage` of a Messages body; `Err` if the body is not valid JSON.
pub(crate) fn usage_from_slice(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    Ok(serde_json::from_slice::<UsageEnvelope>(body)?
        .usage
        .as_ref()
        .map(to_usage))
}

pub(crate) fn usage_from_value(body: &Value) -> Option<Usage> {
    UsageEnvelope::deserialize(body)
        .ok()?
        .usage
        .as_ref()
        .map(to_usage)
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    message: Option<UsageEnvelope>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
    /// `content_block_start`'s block: a tool call's name, or a text block's opening text.
    #[serde(default, borrow)]
    content_block: Option<WireBlock<'a>>,
    /// `content_block_delta`'s delta (`message_delta` has one too, with only stop fields).
    #[serde(default, borrow)]
    delta: Option<WireBlockDelta<'a>>,
}

#[derive(Deserialize)]
struct WireBlock<'a> {
    #[serde(default, borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    text: Text<'a>,
    #[serde(default, borrow)]
    thinking: Text<'a>,
}

/// Text, tool-input JSON and thinking deltas: everything billed as output. Signature deltas
/// are not text the model generated.
#[derive(Deserialize)]
struct WireBlockDelta<'a> {
    #[serde(default, borrow)]
    text: Text<'a>,
    #[serde(default, borrow)]
    partial_json: Text<'a>,
    #[serde(default, borrow)]
    thinking: Text<'a>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Accounting for an Anthropic event stream: `message_start` carries the input side (and an
/// opening output count of 1 or so), `message_delta` the final output count. The generated text
/// is kept for streams that lack either.
#[derive(Default)]
pub(crate) struct StreamTracker {
    usage: Option<WireUsage>,
    /// A `message_delta` reported the output count: it is final.
    output_reported: bool,
    generated: Generated,
}

impl StreamTracker {
    pub(crate) fn observe(&mut self, event: &SseEvent) -> Result<Observed, ProviderError> {
        let parsed: WireEvent<'_> = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::Malformed(format!("a stream event is not valid JSON: {e}"))
        })?;
        // The data's `type` is authoritative; the SSE event name repeats it.
        let kind = parsed
            .kind
            .as_deref()
            .or(event.event.as_deref())
            .unwrap_or("");
        Ok(match kind {
            "message_start" => {
                if let Some(usage) = parsed.message.and_then(|m| m.usage) {
                    self.usage = Some(usage);
                }
                Observed::Other
            }
            "message_delta" => {
                if let Some(delta) = parsed.usage {
                    self.output_reported |= delta.output_tokens.is_some();
                    let usage = self.usage.get_or_insert_with(WireUsage::default);
                    // Newer API versions repeat the input side here: the later value wins.
                    for (field, value) in [
                        (&mut usage.input_tokens, delta.input_tokens),
                        (&mut usage.output_tokens, delta.output_tokens),
                        (
                            &mut usage.cache_read_input_tokens,
                            delta.cache_read_input_tokens,
                        ),
                        (
                            &mut usage.cache_creation_input_tokens,
                            delta.cache_creation_input_tokens,
                        ),
                    ] {
                        if value.is_some() {
                            *field = value;
                        }
                    }
                }
                Observed::Other
            }
            "content_block_start" => {
                if let Some(block) = &parsed.content_block {
                    for text in [&block.name, &block.text, &block.thinking] {
                        self.generated.push(text.as_str());
                    }
                }
                Observed::Other
            }
            "content_block_delta" => {
                if let Some(delta) = &parsed.delta {
                    for text in [&delta.text, &delta.partial_json, &delta.thinking] {
                        self.generated.push(text.as_str());
                    }
                }
                Observed::Content
            }
            "message_stop" => Observed::Done,
            "error" => {
                let err = parsed.error.unwrap_or(WireError {
                    kind: None,
                    message: None,
                });
                Observed::Error {
                    status: status_for_error_type(err.kind.as_deref().unwrap_or("api_error")),
                    message: err
                        .message
                        .unwrap_or_else(|| "error event without a message".to_owned()),
                }
            }
            // ping, content_block_start/stop, and event types added later: forwarded as they are.
            _ => Observed::Other,
        })
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().map(to_usage)
    }

    pub(crate) fn input_reported(&self) -> bool {
        self.usage
            .as_ref()
            .is_some_and(|u| u.input_tokens.is_some())
    }

    pub(crate) fn output_reported(&self) -> bool {
        self.output_reported
    }

    pub(crate) fn generated(&self) -> &Generated {
        &self.generated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: Some(name.to_owned()),
            data: data.to_owned(),
        }
    }

    #[test]
    fn stream_flag_follows_the_request() {
        let mut body = json!({"model":"claude","max_tokens":10,"messages":[],"stream":true});
        prepare_request(&mut body, "claude-haiku-4-5-20251001", false);
        assert_eq!(
            body,
            json!({"model":"claude-haiku-4-5-20251001","max_tokens":10,"messages":[]})
        );
        prepare_request(&mut body, "m", true);
        assert_eq!(body["stream"], true);
        for (body, stream) in [
            (
                json!({"model":"c","max_tokens":10,"messages":[],"stream":true}),
                false,
            ),
            (
                json!({"model":"c","max_tokens":10,"messages":[],"stream":true}),
                true,
            ),
            (json!({"model":"c","max_tokens":10,"messages":[]}), true),
        ] {
            let mut expected = body.clone();
            prepare_request(&mut expected, "up", stream);
            let got: Value =
                serde_json::from_slice(&request_bytes(&body, "up", stream).unwrap()).unwrap();
            assert_eq!(got, expected, "{body}");
        }
    }

    #[test]
    fn tracker_adds_cache_tokens_to_input_and_takes_the_last_output_count() {
        let mut t = StreamTracker::default();
        let start = json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":1,"cache_creation_input_tokens":3,"cache_read_input_tokens":5}}});
        assert_eq!(
            t.observe(&event("message_start", &start.to_string()))
                .unwrap(),
            Observed::Other
        );
        assert_eq!(
            t.observe(&event("ping", r#"{"type": "ping"}"#)).unwrap(),
            Observed::Other
        );
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert_eq!(
            t.observe(&event("content_block_delta", delta)).unwrap(),
            Observed::Content
        );
        assert!(t.input_reported());
        assert!(
            !t.output_reported(),
            "message_start's output count is not final"
        );
        let md = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}"#;
        t.observe(&event("message_delta", md)).unwrap();
        assert_eq!(
            t.observe(&event("message_stop", r#"{"type":"message_stop"}"#))
                .unwrap(),
            Observed::Done
        );
        assert_eq!(
            t.usage(),
            Some(Usage {
                input_tokens: 18,
                output_tokens: 7,
                cached_input_tokens: 5
            })
        );
        assert!(t.output_reported());
        assert_eq!(t.generated().tokens(), 1, "Hi");
    }

    #[test]
    fn tracker_keeps_text_tool_input_and_thinking() {
        let mut t = StreamTracker::default();
        let events = [
            (
                "message_start",
                r#"{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"model":"x"}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Weather? "}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2lnbmF0dXJl"}}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Paris\"}"}}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ];
        for (name, data) in events {
            t.observe(&event(name, data)).unwrap();
        }
        assert_eq!(t.usage(), None);
        assert!(!t.input_reported() && !t.output_reported());
        assert_eq!(
            t.generated().tokens(),
            crate::count_tokens("Weather? get_weather{\"city\": \"Paris\"}")
        );
    }

    #[test]
    fn tracker_maps_error_events_to_statuses() {
        let mut t = StreamTracker::default();
        let err = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            t.observe(&event("error", err)).unwrap(),
            Observed::Error {
                status: 529,
                message: "Overloaded".into()
            }
        );
        assert!(matches!(
            t.observe(&event("content_block_delta", "{not json")),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn complete_usage_includes_cache_tokens() {
        let body = br#"{"id":"msg_1","content":[],"usage":{"input_tokens":4,"output_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":2}}"#;
        let usage = usage_from_slice(body).unwrap().unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens
            ),
            (6, 9, 2)
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(usage_from_value(&v), Some(usage));
    }
}
