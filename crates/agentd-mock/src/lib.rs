//! A deterministic mock LLM provider that speaks the OpenAI (Chat Completions, Embeddings,
//! Models) and Anthropic (Messages, 2023-06-01) wire formats, with fault injection.
//!
//! It is the upstream of every black-box test of the gateway, the `agentd mock-llm` server
//! users run for their own offline tests, and the in-process provider kind `mock`.
//!
//! The one decision to know: *what* to answer is decided by [`plan`], a pure function from
//! `(api, body, x-mock header, options)` to a [`Plan`] — no I/O, no sleeping. The HTTP server
//! ([`router`], [`serve`], [`spawn`]) only executes plans: it sleeps, writes frames, cuts or
//! resets connections. So the gateway can run the mock in-process by executing plans itself,
//! and tests can check behaviour without sockets.
//!
//! Behaviour per request is chosen by directives (`mock:status=429`, `mock:cut_after=3`, …)
//! written in the last user message or in an `x-mock` header, so it works through a gateway
//! that only forwards bodies. Reply text, token counts and embeddings are derived from hashes
//! of the input: the same request always gets the same content. See the crate README for the
//! full list of endpoints, directives and options.

use std::time::Duration;

use bytes::Bytes;

mod anthropic;
mod directive;
mod openai;
mod server;
mod text;
mod wire;

pub use server::{router, serve, spawn, MockServer};

/// Server-wide defaults; directives override them per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockOptions {
    /// Delay before the first stream event (and added to non-stream replies, which model the
    /// whole generation time).
    pub ttft: Duration,
    /// Delay between stream events (and per output token for non-stream replies).
    pub token_delay: Duration,
    /// Reply length in tokens (words) when the request has no `mock:tokens=N`.
    pub default_tokens: usize,
    /// When set, only this exact API key is accepted (`Authorization: Bearer` for OpenAI
    /// routes, `x-api-key` for Anthropic); otherwise any non-empty key is.
    pub require_key: Option<String>,
    /// Models listed by `GET /v1/models` besides `mock` and `mock-embedding`.
    pub extra_models: Vec<String>,
    /// Embedding dimensions when the request has no `dimensions` (0 means the default, 16:
    /// small vectors keep load tests fast).
    pub embedding_dims: usize,
}

impl MockOptions {
    /// Default reply length, in tokens.
    pub const DEFAULT_TOKENS: usize = 20;
    /// Default embedding dimensions.
    pub const DEFAULT_EMBEDDING_DIMS: usize = 16;
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            ttft: Duration::ZERO,
            token_delay: Duration::ZERO,
            default_tokens: Self::DEFAULT_TOKENS,
            require_key: None,
            extra_models: Vec::new(),
            embedding_dims: Self::DEFAULT_EMBEDDING_DIMS,
        }
    }
}

/// Which API a request body is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/embeddings`
    OpenAiEmbeddings,
    /// `POST /v1/messages`
    AnthropicMessages,
}

/// What the mock will do for one request: pure and deterministic (no I/O, no sleeping).
///
/// Content is deterministic; response ids (`chatcmpl-…`, `msg_…`, `call_…`) and `created` are
/// fresh per plan, as in the real APIs, because callers may store responses by id.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// A complete JSON answer (success or error) after `delay`.
    Json {
        delay: Duration,
        status: http::StatusCode,
        headers: Vec<(String, String)>,
        body: serde_json::Value,
    },
    /// An SSE answer: `delay` before the response headers, then `frames`, each preceded by its
    /// own delay (the first one's is the time to first token). `cut` = abort the connection
    /// after the frames instead of ending the body normally.
    Stream {
        delay: Duration,
        frames: Vec<(Duration, Bytes)>,
        cut: bool,
    },
    /// These raw (deliberately broken) bytes; `cut` = abort the connection after them.
    Raw {
        delay: Duration,
        status: http::StatusCode,
        content_type: &'static str,
        body: Bytes,
        cut: bool,
    },
    /// Close the connection without answering.
    Reset { delay: Duration },
}

/// Decides the answer to one request. `directives` = the value of the `x-mock` header if any.
///
/// Authentication is not checked here (the body carries no key); the server does that.
pub fn plan(api: Api, body: &[u8], directives: Option<&str>, opts: &MockOptions) -> Plan {
    match api {
        Api::OpenAiChat => openai::plan_chat(body, directives, opts),
        Api::OpenAiEmbeddings => openai::plan_embeddings(body, directives, opts),
        Api::AnthropicMessages => anthropic::plan_messages(body, directives, opts),
    }
}
