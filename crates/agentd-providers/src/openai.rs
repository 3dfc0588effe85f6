//! Any OpenAI-compatible server (OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM, …):
//! `POST {base_url}/chat/completions` and `{base_url}/embeddings`.
//!
//! OpenAI-format requests pass through with only `model` rewritten; Anthropic-format requests
//! are translated. Streams always ask the upstream for the usage chunk so we can account tokens;
//! it is dropped again when the client did not ask for it.

use ::http::Uri;
use agentd_config::ProviderConfig;
use agentd_core::Usage;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::status_for_error_type;
use crate::http::{self, HttpClient};
use crate::sse::SseEvent;
use crate::stream::{Observed, Text};
use crate::tokens::Generated;
use crate::{
    set_model, translate, ApiFormat, ChatRequest, ChatResponse, JsonResponse, ProviderError,
};

/// A client for one OpenAI-compatible provider.
#[derive(Debug)]
pub struct OpenAiClient {
    http: HttpClient,
    chat_url: Uri,
    embeddings_url: Uri,
}

impl OpenAiClient {
    pub fn new(cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        let mut auth = Vec::new();
        if let Some(key) = &cfg.api_key {
            auth.push(http::header(
                "authorization",
                &format!("Bearer {}", key.expose()),
                &format!("providers.{}.api_key", cfg.name),
            )?);
        }
        Ok(Self {
            http: HttpClient::new(cfg, auth)?,
            chat_url: http::endpoint(cfg, "/chat/completions")?,
            embeddings_url: http::endpoint(cfg, "/embeddings")?,
        })
    }

    pub fn name(&self) -> &str {
        &self.http.name
    }

    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let deadlines = self.http.deadlines();
        let bytes = match req.format {
            ApiFormat::OpenAi => request_bytes(&req.body, &req.upstream_model, req.stream)?,
            ApiFormat::Anthropic => {
                let body = translate::anthropic_to_openai_request(&req.body, &req.upstream_model)
                    .map_err(ProviderError::InvalidRequest)?;
                request_bytes(&body, &req.upstream_model, req.stream)?
            }
        };
        self.http
            .chat(&self.chat_url, ApiFormat::OpenAi, &req, bytes, deadlines)
            .await
    }

    pub async fn embeddings(
        &self,
        upstream_model: &str,
        mut body: Value,
    ) -> Result<JsonResponse, ProviderError> {
        set_model(&mut body, upstream_model);
        let bytes = to_vec(&body)?;
        let request_len = bytes.len();
        let body = self.http.post_json(&self.embeddings_url, bytes).await?;
        let usage = embeddings_usage_from_slice(&body)
            .map_err(|e| {
                ProviderError::Malformed(format!("the response body is not valid JSON: {e}"))
            })?
            .unwrap_or_else(|| Usage {
                input_tokens: crate::stream::estimate_tokens(request_len),
                output_tokens: 0,
                cached_input_tokens: 0,
            });
        Ok(JsonResponse { body, usage })
    }
}

pub(crate) fn to_vec(body: &Value) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(body)
        .map_err(|e| ProviderError::Config(format!("cannot encode the request: {e}")))
}

/// The body sent upstream: the client's with `model` rewritten and, for streams, the usage chunk
/// asked for (`stream_options.include_usage`), other stream options kept.
pub(crate) fn request_bytes(
    body: &Value,
    upstream_model: &str,
    stream: bool,
) -> Result<Vec<u8>, ProviderError> {
    let model = Some(Value::String(upstream_model.to_owned()));
    if !stream {
        return crate::encode_patched(body, &[("model", model)]);
    }
    let mut options = match body.get("stream_options") {
        Some(Value::Object(o)) => o.clone(),
        _ => serde_json::Map::new(),
    };
    options.insert("include_usage".to_owned(), Value::Bool(true));
    crate::encode_patched(
        body,
        &[
            ("model", model),
            ("stream", Some(Value::Bool(true))),
            ("stream_options", Some(Value::Object(options))),
        ],
    )
}

/// Rewrites `model` and, for streams, asks for the usage chunk (`stream_options.include_usage`).
#[cfg(test)]
pub(crate) fn prepare_request(body: &mut Value, upstream_model: &str, stream: bool) {
    set_model(body, upstream_model);
    if !stream {
        return;
    }
    if let Some(obj) = body.as_object_mut() {
        obj.insert("stream".to_owned(), Value::Bool(true));
        let options = obj
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Default::default()));
        if !options.is_object() {
            *options = Value::Object(Default::default());
        }
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
}

// ---- wire types: only what accounting needs -------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            input_tokens: u.prompt_tokens.unwrap_or(0),
            output_tokens: u.completion_tokens.unwrap_or(0),
            cached_input_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        }
    }
}

#[derive(Deserialize)]
struct UsageEnvelope {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// `usage` of a chat completion or embeddings body; `Err` if the body is not valid JSON.
pub(crate) fn usage_from_slice(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    Ok(serde_json::from_slice::<UsageEnvelope>(body)?
        .usage
        .map(Usage::from))
}

fn embeddings_usage_from_slice(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    usage_from_slice(body)
}

pub(crate) fn usage_from_value(body: &Value) -> Option<Usage> {
    UsageEnvelope::deserialize(body)
        .ok()?
        .usage
        .map(Usage::from)
}

#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<WireChoice<'a>>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
}

/// The parts of a delta that are generated text. `reasoning_content` (vLLM, DeepSeek) and
/// `reasoning` (Ollama, OpenRouter) are billed as output too.
#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(default, borrow)]
    content: Text<'a>,
    #[serde(default, borrow)]
    reasoning_content: Text<'a>,
    #[serde(default, borrow)]
    reasoning: Text<'a>,
    #[serde(default, borrow)]
    refusal: Text<'a>,
    /// Read in a second pass (see [`WireToolCall`]): whatever its shape, the chunk stays valid.
    #[serde(default, borrow)]
    tool_calls: Option<&'a RawValue>,
    /// The pre-tools `function_call` delta.
    #[serde(default, borrow)]
    function_call: Option<WireFunction<'a>>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    #[serde(default, borrow)]
    function: Option<WireFunction<'a>>,
}

#[derive(Deserialize)]
struct WireFunction<'a> {
    #[serde(default, borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    arguments: Text<'a>,
}

impl WireFunction<'_> {
    fn record(&self, generated: &mut Generated) {
        generated.push(self.name.as_str());
        generated.push(self.arguments.as_str());
    }
}

#[derive(Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

impl WireError {
    fn status(&self) -> u16 {
        let code = self.code.as_ref().and_then(Value::as_str);
        match (self.kind.as_deref(), code) {
            (_, Some(code @ "rate_limit_exceeded")) => status_for_error_type(code),
            (Some(kind), _) => status_for_error_type(kind),
            (None, _) => 500,
        }
    }
}

/// Accounting for an OpenAI chunk stream: the usage chunk, and the generated text in case
/// there is none.
#[derive(Default)]
pub(crate) struct StreamTracker {
    usage: Option<Usage>,
    input_reported: bool,
    output_reported: bool,
    generated: Generated,
}

impl StreamTracker {
    pub(crate) fn observe(&mut self, event: &SseEvent) -> Result<Observed, ProviderError> {
        if event.data == "[DONE]" {
            return Ok(Observed::Done);
        }
        let chunk: WireChunk<'_> = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::Malformed(format!("a stream event is not valid JSON: {e}"))
        })?;
        if let Some(err) = chunk.error {
            let status = err.status();
            return Ok(Observed::Error {
                status,
                message: err
                    .message
                    .unwrap_or_else(|| "error event without a message".to_owned()),
            });
        }
        let has_usage = chunk.usage.is_some();
        if let Some(usage) = chunk.usage {
            self.input_reported |= usage.prompt_tokens.is_some();
            self.output_reported |= usage.completion_tokens.is_some();
            self.usage = Some(usage.into());
        }
        match chunk.choices {
            Some(choices) if !choices.is_empty() => {
                let mut content = false;
                for delta in choices.iter().filter_map(|c| c.delta.as_ref()) {
                    content |= self.record(delta);
                }
                Ok(if content {
                    Observed::Content
                } else {
                    Observed::Other
                })
            }
            Some(_) | None if has_usage => Ok(Observed::UsageOnly),
            Some(_) | None => Ok(Observed::Other),
        }
    }

    /// Keeps the delta's generated text; true if it had any (or a tool call).
    fn record(&mut self, delta: &WireDelta<'_>) -> bool {
        let mut content = false;
        for text in [
            &delta.content,
            &delta.reasoning_content,
            &delta.reasoning,
            &delta.refusal,
        ] {
            let text = text.as_str();
            if !text.is_empty() {
                self.generated.push(text);
                content = true;
            }
        }
        if let Some(raw) = delta.tool_calls {
            // A shape we cannot read still counts as a content event; its text is lost.
            if let Ok(calls) = serde_json::from_str::<Vec<WireToolCall<'_>>>(raw.get()) {
                for function in calls.iter().filter_map(|c| c.function.as_ref()) {
                    function.record(&mut self.generated);
                }
            }
            content = true;
        }
        if let Some(function) = &delta.function_call {
            function.record(&mut self.generated);
            content = true;
        }
        content
    }

    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub(crate) fn input_reported(&self) -> bool {
        self.input_reported
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

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn streams_always_ask_for_usage_and_keep_other_options() {
        let mut body = json!({"model":"public","messages":[],"stream":true,"stream_options":{"include_usage":false,"x":1}});
        prepare_request(&mut body, "gpt-4o-mini-2024", true);
        assert_eq!(body["model"], "gpt-4o-mini-2024");
        assert_eq!(body["stream_options"], json!({"include_usage":true,"x":1}));

        let mut body = json!({"model":"public","messages":[]});
        prepare_request(&mut body, "up", false);
        assert_eq!(body, json!({"model":"up","messages":[]}));
    }

    #[test]
    fn request_bytes_match_the_rewritten_body_without_copying_it() {
        for (body, stream) in [
            (
                json!({"model":"public","messages":[],"stream":true,"stream_options":{"include_usage":false,"x":1}}),
                true,
            ),
            (json!({"model":"public","messages":[],"stream":true}), true),
            (
                json!({"messages":[],"model":"public","temperature":0}),
                false,
            ),
            (json!({"messages":[]}), true),
        ] {
            let mut expected = body.clone();
            prepare_request(&mut expected, "up", stream);
            let bytes = request_bytes(&body, "up", stream).unwrap();
            let got: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(got, expected, "{body}");
        }
    }

    #[test]
    fn tracker_reads_usage_content_and_the_end() {
        let mut t = StreamTracker::default();
        let role = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#;
        assert_eq!(t.observe(&event(role)).unwrap(), Observed::Other);
        let text = r#"{"id":"c","choices":[{"index":0,"delta":{"content":" hi \"there\""},"finish_reason":null}],"usage":null}"#;
        assert_eq!(t.observe(&event(text)).unwrap(), Observed::Content);
        let tool = r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]}}]}"#;
        assert_eq!(t.observe(&event(tool)).unwrap(), Observed::Content);
        assert_eq!(t.usage(), None);
        let usage = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(t.observe(&event(usage)).unwrap(), Observed::UsageOnly);
        assert_eq!(t.observe(&event("[DONE]")).unwrap(), Observed::Done);
        assert_eq!(
            t.usage(),
            Some(Usage {
                input_tokens: 12,
                output_tokens: 5,
                cached_input_tokens: 4
            })
        );
        assert!(t.input_reported() && t.output_reported());
        assert_eq!(
            t.generated().tokens(),
            crate::count_tokens(" hi \"there\"{\"")
        );
    }

    #[test]
    fn tracker_keeps_every_kind_of_generated_text() {
        let mut t = StreamTracker::default();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"reasoning_content":"Think."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"reasoning":" More."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"function_call":{"name":"f","arguments":"{}"}}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"refusal":" No."}}]}"#,
        ] {
            assert_eq!(
                t.observe(&event(data)).unwrap(),
                Observed::Content,
                "{data}"
            );
        }
        // Unexpected shapes are content the client can read: never a stream failure.
        for data in [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":{"odd":true}}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"name":"g","arguments":{"a":1}}}]}}]}"#,
        ] {
            assert_eq!(
                t.observe(&event(data)).unwrap(),
                Observed::Content,
                "{data}"
            );
        }
        assert_eq!(
            t.observe(&event(r#"{"choices":[{"index":0,"delta":{"content":7}}]}"#))
                .unwrap(),
            Observed::Other
        );
        assert_eq!(t.usage(), None);
        assert!(!t.input_reported() && !t.output_reported());
        assert_eq!(
            t.generated().tokens(),
            crate::count_tokens("Think. More.get_weather{\"city\":\"Paris\"}f{} No.g")
        );
    }

    #[test]
    fn tracker_reports_error_events_and_bad_json() {
        let mut t = StreamTracker::default();
        let err = r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            t.observe(&event(err)).unwrap(),
            Observed::Error {
                status: 429,
                message: "Rate limit reached".into()
            }
        );
        let err = r#"{"error":{"message":"boom","type":"server_error","code":null}}"#;
        assert!(matches!(
            t.observe(&event(err)).unwrap(),
            Observed::Error { status: 500, .. }
        ));
        assert!(matches!(
            t.observe(&event("{\"choices\": [")),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn usage_is_read_without_touching_the_rest() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        assert_eq!(
            usage_from_slice(body).unwrap(),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 2,
                cached_input_tokens: 0
            })
        );
        assert_eq!(usage_from_slice(b"{}").unwrap(), None);
        assert!(usage_from_slice(b"{\"id\":").is_err());
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(usage_from_value(&v).unwrap().total(), 5);
    }
}
