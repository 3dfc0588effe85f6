//! What can go wrong when calling a provider, and how each failure is shown to the client.
//!
//! [`ProviderError`] keeps the upstream facts (status, message, `Retry-After`) so the retry layer
//! can decide; [`ProviderError::to_api_error`] turns them into the [`ApiError`] the client sees.
//! The mapping protects the client's view: a provider refusing *our* key must never look like
//! the client's key being wrong, and no message ever carries a key or a provider URL.

use agentd_core::{ApiError, ErrorKind};
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

use crate::ApiFormat;

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// The TCP/TLS connection was not established within `connect_timeout_ms`.
    Connect,
    /// No response headers and first body bytes (first stream event) within `first_token_timeout_ms`.
    FirstToken,
    /// The whole response (or whole stream) took longer than `timeout_ms`.
    Total,
}

impl TimeoutPhase {
    /// The provider config key that sets this timeout.
    pub fn config_key(self) -> &'static str {
        match self {
            TimeoutPhase::Connect => "connect_timeout_ms",
            TimeoutPhase::FirstToken => "first_token_timeout_ms",
            TimeoutPhase::Total => "timeout_ms",
        }
    }
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::FirstToken => "first token",
            TimeoutPhase::Total => "total",
        })
    }
}

/// A failed provider call. Messages never contain API keys, auth headers or provider URLs.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No connection (refused, DNS, TLS, reset before any answer).
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    #[error("the provider timed out ({phase} timeout)")]
    Timeout { phase: TimeoutPhase },
    /// The provider answered with a non-success HTTP status (or an error event before any content).
    #[error("the provider answered HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The provider answered something we cannot parse.
    #[error("the provider sent a malformed answer: {0}")]
    Malformed(String),
    /// The response body or stream ended before it was complete.
    #[error("the provider's response was cut: {0}")]
    StreamCut(String),
    /// This provider cannot do what was asked (e.g. embeddings on Anthropic).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The client's request cannot be expressed for this provider (translation rejected it).
    #[error("invalid request: {0}")]
    InvalidRequest(ApiError),
    /// The provider's configuration cannot be used (e.g. a header value that is not valid HTTP).
    #[error("provider configuration: {0}")]
    Config(String),
}

/// Upstream messages are shown to clients; keep them short.
const MAX_MESSAGE_CHARS: usize = 500;

impl ProviderError {
    /// The error the client sees when a call to provider `provider` failed.
    pub fn to_api_error(&self, provider: &str) -> ApiError {
        match self {
            ProviderError::Connect(detail) => ApiError::new(
                ErrorKind::Upstream,
                "provider_unreachable",
                format!("cannot reach provider {provider}: {detail}"),
            ),
            ProviderError::Timeout { phase } => {
                let what = match phase {
                    TimeoutPhase::Connect => "did not accept a connection",
                    TimeoutPhase::FirstToken => "did not start answering",
                    TimeoutPhase::Total => "did not finish answering",
                };
                ApiError::new(
                    ErrorKind::UpstreamTimeout,
                    "provider_timeout",
                    format!(
                        "provider {provider} {what} in time (providers.{provider}.{})",
                        phase.config_key()
                    ),
                )
            }
            ProviderError::Status {
                status,
                message,
                retry_after,
            } => status_to_api_error(provider, *status, message, *retry_after),
            ProviderError::Malformed(detail) => ApiError::new(
                ErrorKind::Upstream,
                "provider_malformed_response",
                format!("provider {provider} sent an answer we cannot read: {detail}"),
            ),
            ProviderError::StreamCut(detail) => ApiError::new(
                ErrorKind::Upstream,
                "provider_stream_cut",
                format!("the response from provider {provider} was cut off: {detail}"),
            ),
            ProviderError::Unsupported(detail) => ApiError::new(
                ErrorKind::InvalidRequest,
                "unsupported_operation",
                detail.clone(),
            ),
            ProviderError::InvalidRequest(err) => err.clone(),
            ProviderError::Config(detail) => ApiError::new(
                ErrorKind::Internal,
                "provider_misconfigured",
                format!("provider {provider} is misconfigured: {detail}"),
            ),
        }
    }

    /// Whether the same request may succeed on a new attempt (same or another deployment).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect(_)
            | ProviderError::Timeout { .. }
            | ProviderError::Malformed(_)
            | ProviderError::StreamCut(_) => true,
            ProviderError::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || (*status >= 500 && *status != 501)
            }
            ProviderError::Unsupported(_)
            | ProviderError::InvalidRequest(_)
            | ProviderError::Config(_) => false,
        }
    }
}

fn status_to_api_error(
    provider: &str,
    status: u16,
    message: &str,
    retry_after: Option<Duration>,
) -> ApiError {
    match status {
        // The provider refused *our* credentials: a gateway problem, not the client's key.
        // The upstream message is dropped because it often echoes part of the key.
        401 | 403 => ApiError::new(
            ErrorKind::Upstream,
            "provider_auth_failed",
            format!(
                "provider {provider} rejected our credentials (HTTP {status}); check providers.{provider}.api_key"
            ),
        ),
        429 => {
            let err = ApiError::new(
                ErrorKind::RateLimited,
                "provider_rate_limited",
                format!("provider {provider} is rate limiting requests: {message}"),
            );
            match retry_after {
                Some(after) => err.with_retry_after(after),
                None => err,
            }
        }
        400 | 422 => ApiError::new(
            ErrorKind::InvalidRequest,
            "provider_rejected_request",
            format!("provider {provider} rejected the request: {message}"),
        ),
        404 => ApiError::new(
            ErrorKind::Upstream,
            "provider_model_not_found",
            format!(
                "provider {provider} answered 404 ({message}); the deployment's model is probably unknown there: check the model names configured for provider {provider}"
            ),
        ),
        413 => ApiError::new(
            ErrorKind::PayloadTooLarge,
            "provider_payload_too_large",
            format!("provider {provider} says the request is too large: {message}"),
        ),
        _ => ApiError::new(
            ErrorKind::Upstream,
            "provider_error",
            format!("provider {provider} failed with HTTP {status}: {message}"),
        ),
    }
}

/// The terminal SSE frame to send when a stream fails after bytes reached the client.
///
/// OpenAI: `data: {"error":{...}}\n\n`; Anthropic: `event: error\ndata: {"type":"error","error":{...}}\n\n`.
pub fn error_frame(format: ApiFormat, err: &ApiError) -> Bytes {
    let (prefix, body): (&[u8], _) = match format {
        ApiFormat::OpenAi => (b"data: ", err.openai_body()),
        ApiFormat::Anthropic => (b"event: error\ndata: ", err.anthropic_body()),
    };
    let mut out = Vec::with_capacity(prefix.len() + err.message.len() + 128);
    out.extend_from_slice(prefix);
    // A `Value` always serialises.
    serde_json::to_writer(&mut out, &body).expect("serialising a JSON value cannot fail");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The human message of an upstream error body: `error.message` (OpenAI and Anthropic shapes),
/// else a top-level `message`/`detail` (some OpenAI-compatible servers), else the body text.
/// `secret` (our API key) is masked if the provider echoes it.
pub(crate) fn upstream_message(status: u16, body: &[u8], secret: Option<&str>) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<ErrorField>,
        message: Option<String>,
        detail: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Object { message: Option<String> },
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    let parsed = serde_json::from_slice::<Body>(body).ok();
    let message = parsed.and_then(|b| match b.error {
        Some(ErrorField::Object { message: Some(m) }) | Some(ErrorField::Text(m)) => Some(m),
        Some(ErrorField::Object { message: None }) | Some(ErrorField::Other(_)) | None => {
            b.message.or(b.detail.map(|d| match d {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }))
        }
    });
    let message = match message {
        Some(m) if !m.trim().is_empty() => m,
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("no message")
                    .to_owned()
            } else {
                text.to_owned()
            }
        }
    };
    // Very short "keys" (local servers often take any) would mangle ordinary words.
    let message = match secret {
        Some(key) if key.len() >= 8 && message.contains(key) => message.replace(key, "***"),
        Some(_) | None => message,
    };
    truncate(message)
}

fn truncate(mut s: String) -> String {
    if let Some((idx, _)) = s.char_indices().nth(MAX_MESSAGE_CHARS) {
        s.truncate(idx);
        s.push('…');
    }
    s
}

/// When to retry, from `retry-after-ms` (milliseconds, preferred: more precise) or `Retry-After`
/// (delta seconds or an HTTP date). `header` looks a header up by lower-case name.
pub(crate) fn retry_after<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<Duration> {
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let value = header("retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// An HTTP client error as text, including its underlying causes (`connection refused`, …)
/// that the outer error's Display omits. hyper's and rustls' errors never carry the URL.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Map a status carried by an upstream stream error event (`error.type`) to an HTTP status, so
/// an error that arrives before any content can be treated like the equivalent HTTP answer.
pub(crate) fn status_for_error_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" | "rate_limit_exceeded" | "tokens" | "requests" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use serde_json::{json, Value};

    fn status(status: u16, message: &str) -> ProviderError {
        ProviderError::Status {
            status,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    #[test]
    fn provider_auth_failures_are_ours_not_the_clients() {
        for code in [401, 403] {
            let e = status(code, "Incorrect API key provided: sk-abc***xyz").to_api_error("openai");
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(e.kind, ErrorKind::Upstream);
            assert_eq!(e.code, "provider_auth_failed");
            assert!(e
                .message
                .contains("provider openai rejected our credentials"));
            assert!(e.message.contains("check providers.openai.api_key"));
            assert!(!e.message.contains("sk-abc"), "{}", e.message);
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let e = ProviderError::Status {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(e.is_retryable());
        let api = e.to_api_error("anthropic");
        assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(api.retry_after, Some(Duration::from_secs(7)));
        assert!(api.message.contains("slow down"));
    }

    #[test]
    fn client_mistakes_keep_the_upstream_message() {
        for code in [400, 422] {
            let e = status(code, "messages[0].content is required");
            assert!(!e.is_retryable());
            let api = e.to_api_error("vllm");
            assert_eq!(api.status(), StatusCode::BAD_REQUEST);
            assert!(api.message.contains("messages[0].content is required"));
            assert!(api.message.contains("vllm"));
        }
    }

    #[test]
    fn unknown_upstream_model_is_a_gateway_problem() {
        let api = status(404, "model gpt-9 does not exist").to_api_error("openai");
        assert_eq!(api.status(), StatusCode::BAD_GATEWAY);
        assert!(api.message.contains("model gpt-9 does not exist"));
        assert!(api.message.contains("unknown"));
    }

    #[test]
    fn each_failure_maps_to_its_status() {
        let cases: Vec<(ProviderError, StatusCode, bool)> = vec![
            (status(413, "too big"), StatusCode::PAYLOAD_TOO_LARGE, false),
            (status(500, "boom"), StatusCode::BAD_GATEWAY, true),
            (status(503, "busy"), StatusCode::BAD_GATEWAY, true),
            (status(529, "overloaded"), StatusCode::BAD_GATEWAY, true),
            (status(501, "no"), StatusCode::BAD_GATEWAY, false),
            (
                ProviderError::Connect("refused".into()),
                StatusCode::BAD_GATEWAY,
                true,
            ),
            (
                ProviderError::Malformed("bad json".into()),
                StatusCode::BAD_GATEWAY,
                true,
            ),
            (
                ProviderError::StreamCut("eof".into()),
                StatusCode::BAD_GATEWAY,
                true,
            ),
            (
                ProviderError::Timeout {
                    phase: TimeoutPhase::Connect,
                },
                StatusCode::GATEWAY_TIMEOUT,
                true,
            ),
            (
                ProviderError::Timeout {
                    phase: TimeoutPhase::FirstToken,
                },
                StatusCode::GATEWAY_TIMEOUT,
                true,
            ),
            (
                ProviderError::Timeout {
                    phase: TimeoutPhase::Total,
                },
                StatusCode::GATEWAY_TIMEOUT,
                true,
            ),
            (
                ProviderError::Unsupported("no embeddings".into()),
                StatusCode::BAD_REQUEST,
                false,
            ),
            (
                ProviderError::InvalidRequest(ApiError::invalid("bad_tool_arguments", "x")),
                StatusCode::BAD_REQUEST,
                false,
            ),
            (
                ProviderError::Config("bad header".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
                false,
            ),
        ];
        for (err, expected, retryable) in cases {
            let api = err.to_api_error("p1");
            assert_eq!(api.status(), expected, "{err:?}");
            assert_eq!(err.is_retryable(), retryable, "{err:?}");
        }
    }

    #[test]
    fn timeouts_name_the_config_key() {
        let api = ProviderError::Timeout {
            phase: TimeoutPhase::FirstToken,
        }
        .to_api_error("openai");
        assert!(
            api.message
                .contains("providers.openai.first_token_timeout_ms"),
            "{}",
            api.message
        );
    }

    #[test]
    fn translation_errors_pass_through_unchanged() {
        let inner = ApiError::invalid("bad_tool_arguments", "arguments are not JSON")
            .with_param("messages[1].tool_calls[0].function.arguments");
        assert_eq!(
            ProviderError::InvalidRequest(inner.clone()).to_api_error("x"),
            inner
        );
    }

    #[test]
    fn error_frames_have_each_apis_shape() {
        let err = ApiError::new(ErrorKind::Upstream, "provider_stream_cut", "cut \"here\"");
        let openai = error_frame(ApiFormat::OpenAi, &err);
        let text = std::str::from_utf8(&openai).unwrap();
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "{text}"
        );
        assert_eq!(text.matches('\n').count(), 2, "one line of data: {text}");
        let v: Value = serde_json::from_str(&text["data: ".len()..]).unwrap();
        assert_eq!(
            v,
            json!({"error":{"message":"cut \"here\"","type":"api_error","param":null,"code":"provider_stream_cut"}})
        );

        let anthropic = error_frame(ApiFormat::Anthropic, &err);
        let text = std::str::from_utf8(&anthropic).unwrap();
        let data = text.strip_prefix("event: error\ndata: ").expect(text);
        let data = data.strip_suffix("\n\n").expect(text);
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","error":{"type":"api_error","message":"cut \"here\""}})
        );
    }

    #[test]
    fn upstream_messages_are_extracted_from_both_shapes() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(upstream_message(429, openai, None), "Rate limit reached");
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(upstream_message(529, anthropic, None), "Overloaded");
        assert_eq!(upstream_message(400, br#"{"detail":"bad"}"#, None), "bad");
        assert_eq!(
            upstream_message(502, b"<html>bad gateway</html>", None),
            "<html>bad gateway</html>"
        );
        assert_eq!(upstream_message(503, b"", None), "Service Unavailable");
        let long = "x".repeat(2000);
        assert_eq!(
            upstream_message(500, long.as_bytes(), None).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn upstream_messages_never_echo_our_key() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-secret-123"}}"#;
        let msg = upstream_message(400, body, Some("sk-secret-123"));
        assert_eq!(msg, "Incorrect API key provided: ***");
    }

    #[test]
    fn retry_after_accepts_seconds_milliseconds_and_dates() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        assert_eq!(
            retry_after(h(&[("retry-after", "12")])),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            retry_after(h(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(h(&[("retry-after", "12"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(h(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(h(&[])), None);
        // A date in the past means "now".
        assert_eq!(
            retry_after(h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let got =
            retry_after(|name: &str| (name == "retry-after").then_some(future.as_str())).unwrap();
        assert!(
            got > Duration::from_secs(110) && got <= Duration::from_secs(120),
            "{got:?}"
        );
    }
}
