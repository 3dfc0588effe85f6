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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn chat(text: &str, stream: bool) -> Vec<u8> {
        json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": text}]})
            .to_string()
            .into_bytes()
    }

    /// The body without the fields that are fresh per response.
    fn content(plan: &Plan) -> Value {
        let Plan::Json { body, .. } = plan else {
            panic!("expected a JSON plan, got {plan:?}")
        };
        let mut body = body.clone();
        let object = body.as_object_mut().unwrap();
        object.remove("id");
        object.remove("created");
        body
    }

    #[test]
    fn plans_are_deterministic_in_content() {
        let opts = MockOptions::default();
        for api in [Api::OpenAiChat, Api::AnthropicMessages] {
            let body = json!({"model": "m", "max_tokens": 50,
                              "messages": [{"role": "user", "content": "same"}]})
            .to_string();
            let a = plan(api, body.as_bytes(), None, &opts);
            let b = plan(api, body.as_bytes(), None, &opts);
            assert_eq!(content(&a), content(&b), "{api:?}");
        }
        let body = json!({"model": "e", "input": ["a", "b"]}).to_string();
        let a = plan(Api::OpenAiEmbeddings, body.as_bytes(), None, &opts);
        let b = plan(Api::OpenAiEmbeddings, body.as_bytes(), None, &opts);
        assert_eq!(content(&a), content(&b));
    }

    #[test]
    fn reset_and_status_directives_preempt_the_answer() {
        let opts = MockOptions::default();
        assert_eq!(
            plan(
                Api::OpenAiChat,
                &chat("x mock:reset mock:latency_ms=40", false),
                None,
                &opts
            ),
            Plan::Reset {
                delay: Duration::from_millis(40)
            }
        );
        let Plan::Json {
            status,
            headers,
            body,
            delay,
        } = plan(
            Api::AnthropicMessages,
            b"not even json",
            Some("status=429 retry_after=2"),
            &opts,
        )
        else {
            panic!("expected a JSON plan")
        };
        assert_eq!(status, http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers, vec![("retry-after".into(), "2".into())]);
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert_eq!(delay, Duration::ZERO);
    }

    #[test]
    fn stream_frames_carry_ttft_then_token_delay() {
        let opts = MockOptions {
            ttft: Duration::from_millis(100),
            token_delay: Duration::from_millis(5),
            ..MockOptions::default()
        };
        let Plan::Stream { delay, frames, cut } = plan(
            Api::OpenAiChat,
            &chat("hi mock:latency_ms=7 mock:tokens=3", true),
            Some("token_delay_ms=9"),
            &opts,
        ) else {
            panic!("expected a stream plan")
        };
        assert_eq!(delay, Duration::from_millis(7));
        assert!(!cut);
        // role, 3 tokens, finish, [DONE]
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0].0, Duration::from_millis(100));
        assert!(frames[1..]
            .iter()
            .all(|(d, _)| *d == Duration::from_millis(9)));
        assert!(frames
            .iter()
            .all(|(_, f)| f.starts_with(b"data: ") && f.ends_with(b"\n\n")));
        assert_eq!(&frames[5].1[..], b"data: [DONE]\n\n");

        // A non-stream reply takes the whole generation time.
        let Plan::Json { delay, .. } = plan(
            Api::AnthropicMessages,
            json!({"model": "m", "max_tokens": 4,
                   "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
            None,
            &opts,
        ) else {
            panic!("expected a JSON plan")
        };
        assert_eq!(delay, Duration::from_millis(100 + 4 * 5));
    }

    #[test]
    fn broken_bodies() {
        let opts = MockOptions::default();
        let Plan::Raw {
            status, body, cut, ..
        } = plan(Api::OpenAiChat, &chat("mock:malformed", false), None, &opts)
        else {
            panic!("expected a raw plan")
        };
        assert_eq!(status, http::StatusCode::OK);
        assert!(!cut);
        assert!(serde_json::from_slice::<Value>(&body).is_err());

        let Plan::Raw { body, cut, .. } = plan(
            Api::OpenAiEmbeddings,
            json!({"model": "e", "input": "cut mock:cut_after=0"})
                .to_string()
                .as_bytes(),
            None,
            &opts,
        ) else {
            panic!("expected a raw plan")
        };
        assert!(cut);
        assert!(body.starts_with(b"{"));
        assert!(serde_json::from_slice::<Value>(&body).is_err());

        let Plan::Stream { frames, cut, .. } = plan(
            Api::AnthropicMessages,
            json!({"model": "m", "max_tokens": 9, "stream": true,
                   "messages": [{"role": "user", "content": "x"}]})
            .to_string()
            .as_bytes(),
            Some("cut_after=2"),
            &opts,
        ) else {
            panic!("expected a stream plan")
        };
        assert!(cut);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].1.starts_with(b"event: message_start\ndata: {"));
    }

    #[test]
    fn default_options() {
        let opts = MockOptions::default();
        assert_eq!(opts.default_tokens, 20);
        assert_eq!(opts.embedding_dims, 16);
        assert_eq!(opts.ttft, Duration::ZERO);
        assert_eq!(opts.token_delay, Duration::ZERO);
        assert!(opts.require_key.is_none() && opts.extra_models.is_empty());
    }
}
