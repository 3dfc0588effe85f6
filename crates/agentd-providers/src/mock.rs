//! The in-process mock provider (kind `mock`, the default model): runs `agentd_mock::plan`
//! and plays the plan back with tokio timers, without any sockets.
//!
//! It goes through the same accounting and timeout machinery as the HTTP clients (only the
//! byte source differs), so what works against `mock` works against a real provider. The mock
//! speaks both formats natively: nothing is ever translated here.

use std::time::Duration;

use agentd_config::ProviderConfig;
use agentd_core::Usage;
use agentd_mock::{Api, MockOptions, Plan};
use bytes::Bytes;
use serde_json::Value;

use crate::error::{retry_after, upstream_message};
use crate::http::{sleep_within, Deadlines};
use crate::openai::to_vec;
use crate::stream::{self, estimate_tokens, ChatStream, MockFrames, Output, Source, Upstream};
use crate::{
    anthropic, openai, set_model, ApiFormat, ChatRequest, ChatResponse, JsonResponse, ProviderError,
};

/// The in-process mock.
#[derive(Debug)]
pub struct MockProvider {
    name: String,
    opts: MockOptions,
    first_token_timeout: Duration,
    timeout: Duration,
}

impl MockProvider {
    pub fn new(cfg: &ProviderConfig) -> Self {
        Self {
            name: cfg.name.clone(),
            opts: MockOptions {
                ttft: cfg.mock.ttft,
                token_delay: cfg.mock.token_delay,
                ..MockOptions::default()
            },
            first_token_timeout: cfg.first_token_timeout,
            timeout: cfg.timeout,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let deadlines = Deadlines::start(self.first_token_timeout, self.timeout);
        let (api, bytes) = match req.format {
            // Like the HTTP client: always ask for usage, drop the chunk if not wanted.
            ApiFormat::OpenAi => (
                Api::OpenAiChat,
                openai::request_bytes(&req.body, &req.upstream_model, req.stream)?,
            ),
            ApiFormat::Anthropic => (
                Api::AnthropicMessages,
                anthropic::request_bytes(&req.body, &req.upstream_model, req.stream)?,
            ),
        };
        let bytes = Bytes::from(bytes);
        let request_len = bytes.len();
        let plan = agentd_mock::plan(api, &bytes, None, &self.opts);
        // Only a stream needs the request later (to count its prompt if it reports no usage).
        let request = if req.stream { bytes } else { Bytes::new() };
        match self.play(plan, req.format, req.stream, &deadlines).await? {
            Played::Json { body, usage } => Ok(ChatResponse::Complete(JsonResponse {
                body,
                usage: usage.unwrap_or_else(|| Usage {
                    input_tokens: estimate_tokens(request_len),
                    ..Usage::default()
                }),
            })),
            Played::Bytes(body) => {
                stream::complete(req.format, &req, body, request_len).map(ChatResponse::Complete)
            }
            Played::Stream { frames, cut } => {
                let stream = ChatStream::new(
                    Source::Mock(MockFrames::new(frames, cut)),
                    Upstream::new(req.format),
                    Output::new(req.format, &req),
                    &deadlines,
                    request,
                );
                stream.prefetch().await.map(ChatResponse::Stream)
            }
        }
    }

    pub async fn embeddings(
        &self,
        upstream_model: &str,
        mut body: Value,
    ) -> Result<JsonResponse, ProviderError> {
        let deadlines = Deadlines::start(self.first_token_timeout, self.timeout);
        set_model(&mut body, upstream_model);
        let bytes = to_vec(&body)?;
        let request_len = bytes.len();
        let plan = agentd_mock::plan(Api::OpenAiEmbeddings, &bytes, None, &self.opts);
        let estimate = || Usage {
            input_tokens: estimate_tokens(request_len),
            ..Usage::default()
        };
        match self
            .play(plan, ApiFormat::OpenAi, false, &deadlines)
            .await?
        {
            Played::Json { body, usage } => Ok(JsonResponse {
                body,
                usage: usage.unwrap_or_else(estimate),
            }),
            Played::Bytes(body) => {
                let usage = openai::usage_from_slice(&body)
                    .map_err(|e| {
                        ProviderError::Malformed(format!(
                            "the response body is not valid JSON: {e}"
                        ))
                    })?
                    .unwrap_or_else(estimate);
                Ok(JsonResponse { body, usage })
            }
            Played::Stream { .. } => Err(ProviderError::Malformed(
                "asked for embeddings but got an event stream".to_owned(),
            )),
        }
    }

    /// Waits out the plan's delays and turns it into what an HTTP client would have received.
    async fn play(
        &self,
        plan: Plan,
        format: ApiFormat,
        stream: bool,
        deadlines: &Deadlines,
    ) -> Result<Played, ProviderError> {
        match plan {
            Plan::Reset { delay } => {
                sleep_within(delay, deadlines).await?;
                Err(ProviderError::Connect(
                    "connection reset (mock reset directive)".to_owned(),
                ))
            }
            Plan::Json {
                delay,
                status,
                headers,
                body,
            } => {
                sleep_within(delay, deadlines).await?;
                if !status.is_success() {
                    let raw = serde_json::to_vec(&body).unwrap_or_default();
                    return Err(ProviderError::Status {
                        status: status.as_u16(),
                        message: upstream_message(status.as_u16(), &raw, None),
                        retry_after: retry_after(|name| {
                            headers
                                .iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v.as_str())
                        }),
                    });
                }
                if stream {
                    return Err(ProviderError::Malformed(
                        "asked for an event stream but got a JSON body".to_owned(),
                    ));
                }
                let usage = match format {
                    ApiFormat::OpenAi => openai::usage_from_value(&body),
                    ApiFormat::Anthropic => anthropic::usage_from_value(&body),
                };
                let body = to_vec(&body)?;
                Ok(Played::Json {
                    body: Bytes::from(body),
                    usage,
                })
            }
            Plan::Stream { delay, frames, cut } => {
                sleep_within(delay, deadlines).await?;
                if !stream {
                    return Err(ProviderError::Malformed(
                        "asked for a JSON body but got an event stream".to_owned(),
                    ));
                }
                Ok(Played::Stream { frames, cut })
            }
            Plan::Raw {
                delay,
                status,
                content_type,
                body,
                cut,
            } => {
                sleep_within(delay, deadlines).await?;
                if !status.is_success() {
                    return Err(ProviderError::Status {
                        status: status.as_u16(),
                        message: upstream_message(status.as_u16(), &body, None),
                        retry_after: None,
                    });
                }
                if stream {
                    if content_type.starts_with("application/json") {
                        return Err(ProviderError::Malformed(
                            "asked for an event stream but got a JSON body".to_owned(),
                        ));
                    }
                    return Ok(Played::Stream {
                        frames: vec![(Duration::ZERO, body)],
                        cut,
                    });
                }
                if cut {
                    return Err(ProviderError::StreamCut(
                        "the connection was reset before the whole response arrived".to_owned(),
                    ));
                }
                Ok(Played::Bytes(body))
            }
        }
    }
}

/// A plan after its delays: what the client-side code has to work with.
enum Played {
    /// A success body we built from a value (usage read from the value, no re-parse).
    Json { body: Bytes, usage: Option<Usage> },
    /// Raw success bytes, to be checked like an HTTP body.
    Bytes(Bytes),
    /// SSE frames with their delays.
    Stream {
        frames: Vec<(Duration, Bytes)>,
        cut: bool,
    },
}
