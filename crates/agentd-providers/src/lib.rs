//! Clients for the upstream LLM providers (any OpenAI-compatible server, Anthropic, and the
//! in-process mock), plus validation of inbound requests and translation between the OpenAI and
//! Anthropic wire formats.
//!
//! The one decision to know: a call goes in and comes out in the *client's* format
//! ([`ApiFormat`]), whatever the provider speaks. When the formats match, the request's `model`
//! is the only thing we rewrite and the provider's bytes are forwarded untouched (we parse just
//! enough to account tokens): that path is the hot one and stays allocation-light. When they
//! differ, [`translate`] converts the request, the answer and every stream event.
//!
//! Failures are [`ProviderError`]s carrying the upstream facts; the gateway shows them to the
//! client through [`ProviderError::to_api_error`], and ends broken streams with [`error_frame`].
//!
//! Token counts come from the provider's own usage reports whenever it sends them. When it does
//! not (a server without usage support, a stream cut before its usage event), a stream's output
//! is counted with the o200k_base tokenizer over the text it generated and its input over the
//! prompt, and [`ChatStream::usage_estimated`] says so; before a call,
//! [`estimate_prompt_tokens`] gives a cheap upper bound for budget admission. [`tokens`] lists
//! which numbers are exact and which estimated.

pub mod anthropic;
pub mod error;
mod http;
pub mod mock;
pub mod openai;
pub mod sse;
pub mod stream;
pub mod tokens;
pub mod translate;
pub mod validate;

pub use error::{error_frame, ProviderError, TimeoutPhase};
pub use stream::ChatStream;
pub use tokens::{count_tokens, estimate_prompt_tokens, max_output_tokens};

use agentd_config::{ProviderConfig, ProviderKind};
use agentd_core::Usage;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

/// The wire format of a request and its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiFormat {
    /// OpenAI chat completions (`/v1/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

impl ApiFormat {
    /// Low-cardinality label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFormat::OpenAi => "openai",
            ApiFormat::Anthropic => "anthropic",
        }
    }
}

/// One configured upstream. A closed enum: the set of kinds is ours.
#[derive(Debug)]
pub enum Provider {
    OpenAi(openai::OpenAiClient),
    Anthropic(anthropic::AnthropicClient),
    Mock(mock::MockProvider),
}

/// One chat call.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// The format of `body` and of the answer.
    pub format: ApiFormat,
    /// The client's JSON, already validated (`validate::openai_chat` / `anthropic_messages`).
    /// Shared, never copied: every attempt (retries, fallbacks) encodes it for its deployment
    /// with [`encode_patched`], which replaces the few members a deployment changes.
    pub body: Arc<Value>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// OpenAI clients only: whether the client asked for the usage chunk
    /// (`stream_options.include_usage`). The upstream is always asked for it.
    pub include_usage: bool,
    /// The model name the client used, reported in translated answers.
    pub public_model: String,
    /// The deployment's model, sent upstream.
    pub upstream_model: String,
}

/// A complete JSON answer, in the request's format.
#[derive(Clone, Debug)]
pub struct JsonResponse {
    pub body: Bytes,
    pub usage: Usage,
}

/// The answer to a chat call.
// A stream is a few hundred bytes of parser and accounting state. It is moved once or twice
// per request; boxing it would cost an allocation on the hot path for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ChatResponse {
    Complete(JsonResponse),
    Stream(ChatStream),
}

impl Provider {
    /// Builds the client for one configured provider (each with its own connection pool).
    pub fn from_config(cfg: &ProviderConfig) -> Result<Provider, ProviderError> {
        Ok(match cfg.kind {
            ProviderKind::OpenAi => Provider::OpenAi(openai::OpenAiClient::new(cfg)?),
            ProviderKind::Anthropic => Provider::Anthropic(anthropic::AnthropicClient::new(cfg)?),
            ProviderKind::Mock => Provider::Mock(mock::MockProvider::new(cfg)),
        })
    }

    /// The provider's name (its table name in the config).
    pub fn name(&self) -> &str {
        match self {
            Provider::OpenAi(c) => c.name(),
            Provider::Anthropic(c) => c.name(),
            Provider::Mock(c) => c.name(),
        }
    }

    pub fn kind(&self) -> ProviderKind {
        match self {
            Provider::OpenAi(_) => ProviderKind::OpenAi,
            Provider::Anthropic(_) => ProviderKind::Anthropic,
            Provider::Mock(_) => ProviderKind::Mock,
        }
    }

    /// One chat call. `req.body` is in `req.format` and so is the answer, whatever the
    /// provider speaks. A stream is returned once its first frame is ready, so failures before
    /// any content (refused connection, HTTP errors, first-token timeout, an error event first)
    /// come back as `Err` and can still be retried.
    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        match self {
            Provider::OpenAi(c) => c.chat(req).await,
            Provider::Anthropic(c) => c.chat(req).await,
            Provider::Mock(c) => c.chat(req).await,
        }
    }

    /// An OpenAI-format embeddings request -> the OpenAI-format response, passed through.
    pub async fn embeddings(
        &self,
        upstream_model: &str,
        body: Value,
    ) -> Result<JsonResponse, ProviderError> {
        match self {
            Provider::OpenAi(c) => c.embeddings(upstream_model, body).await,
            Provider::Anthropic(c) => Err(ProviderError::Unsupported(format!(
                "provider {} is an Anthropic provider, which has no embeddings API; route this model to an OpenAI-compatible provider",
                c.name()
            ))),
            Provider::Mock(c) => c.embeddings(upstream_model, body).await,
        }
    }
}

/// Sets `model` to the deployment's model. The body was validated to be an object.
/// `body` (a JSON object) encoded with some top-level members replaced (`Some`), removed
/// (`None`) or added, without copying it: each attempt of a call re-encodes the client's body
/// for its deployment this way. A member replaced keeps its place; one added goes last. A body
/// that is not an object is encoded as it is.
pub(crate) fn encode_patched(
    body: &Value,
    patch: &[(&str, Option<Value>)],
) -> Result<Vec<u8>, ProviderError> {
    struct Patched<'a> {
        body: &'a serde_json::Map<String, Value>,
        patch: &'a [(&'a str, Option<Value>)],
    }
    impl serde::Serialize for Patched<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            for (k, v) in self.body {
                match self.patch.iter().find(|(name, _)| name == k) {
                    None => map.serialize_entry(k, v)?,
                    Some((_, Some(new))) => map.serialize_entry(k, new)?,
                    Some((_, None)) => {}
                }
            }
            for (name, new) in self.patch {
                if let (Some(new), false) = (new, self.body.contains_key(*name)) {
                    map.serialize_entry(name, new)?;
                }
            }
            map.end()
        }
    }
    let encoded = match body.as_object() {
        Some(obj) => serde_json::to_vec(&Patched { body: obj, patch }),
        None => serde_json::to_vec(body),
    };
    encoded.map_err(|e| ProviderError::Config(format!("cannot encode the request: {e}")))
}

pub(crate) fn set_model(body: &mut Value, upstream_model: &str) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
    }
}
