//! The one API error type. Every failure a client can see is an [`ApiError`]: a category
//! ([`ErrorKind`]) that fixes the HTTP status, the OpenAI `type`, the Anthropic `type` and
//! whether a retry may help, plus a stable machine-readable `code` and a message that says
//! what to fix. Bodies are rendered in the shape of the API the client called.

use http::StatusCode;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (bad JSON, wrong types, missing field): 400.
    InvalidRequest,
    /// The body is larger than the configured limit: 413.
    PayloadTooLarge,
    /// The client did not send its request body in time: 408.
    RequestTimeout,
    /// No or bad API key: 401.
    Authentication,
    /// The key is valid but may not do this: 403.
    PermissionDenied,
    /// Unknown model, agent, key or route: 404.
    NotFound,
    /// A budget is exhausted: 402.
    Budget,
    /// A rate limit (ours or the provider's) was hit: 429.
    RateLimited,
    /// The provider failed or answered garbage: 502.
    Upstream,
    /// The provider did not answer in time: 504.
    UpstreamTimeout,
    /// We cannot serve right now (draining, overloaded, store down): 503.
    Unavailable,
    /// A bug on our side: 500.
    Internal,
}

/// Who caused an error: used for metrics labels and for deciding what to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Client,
    Provider,
    Us,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Provider => "provider",
            Fault::Us => "gateway",
        }
    }
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Budget => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error.type` of an OpenAI error body.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::NotFound => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::Budget => "insufficient_quota",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Upstream | ErrorKind::UpstreamTimeout | ErrorKind::Internal => "api_error",
            ErrorKind::Unavailable => "service_unavailable",
        }
    }

    /// The `error.type` of an Anthropic error body.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::RequestTimeout | ErrorKind::Budget => {
                "invalid_request_error"
            }
            ErrorKind::PayloadTooLarge => "request_too_large",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Upstream | ErrorKind::UpstreamTimeout | ErrorKind::Internal => "api_error",
            ErrorKind::Unavailable => "overloaded_error",
        }
    }

    /// Whether the same request may succeed later without change.
    pub fn is_retryable(self) -> bool {
        match self {
            ErrorKind::RateLimited
            | ErrorKind::RequestTimeout
            | ErrorKind::Upstream
            | ErrorKind::UpstreamTimeout
            | ErrorKind::Unavailable => true,
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::Budget
            | ErrorKind::Internal => false,
        }
    }

    pub fn fault(self) -> Fault {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::PayloadTooLarge
            | ErrorKind::RequestTimeout
            | ErrorKind::Authentication
            | ErrorKind::PermissionDenied
            | ErrorKind::NotFound
            | ErrorKind::Budget
            | ErrorKind::RateLimited => Fault::Client,
            ErrorKind::Upstream | ErrorKind::UpstreamTimeout => Fault::Provider,
            ErrorKind::Unavailable | ErrorKind::Internal => Fault::Us,
        }
    }

    /// Low-cardinality label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::Authentication => "authentication",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Budget => "budget",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Upstream => "upstream",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Most characters of a caller's text (a model name, an id, a path) repeated in an error message:
/// the whole of it could be megabytes, in the body and in the log line.
pub const ECHO_MAX_CHARS: usize = 64;

/// A caller's text for an error message: quoted as a Rust string (control characters escaped),
/// cut after [`ECHO_MAX_CHARS`] characters with `…` after the closing quote.
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_MAX_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
    }
}

/// An error as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// Stable machine-readable code (`model_not_found`, `invalid_api_key`, …).
    pub code: Cow<'static, str>,
    /// What went wrong and how to fix it. Never contains secrets.
    pub message: String,
    /// The request field at fault, when there is one (`messages[0].role`).
    pub param: Option<String>,
    /// For 429/503: when to come back.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// `{"error":{"message","type","param","code"}}` as OpenAI sends it.
    pub fn openai_body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind.openai_type(),
                "param": self.param,
                "code": self.code,
            }
        })
    }

    /// `{"type":"error","error":{"type","message"}}` as Anthropic sends it.
    pub fn anthropic_body(&self) -> Value {
        json!({
            "type": "error",
            "error": {
                "type": self.kind.anthropic_type(),
                "message": self.message,
            }
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.kind.as_str(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_text_is_quoted_and_capped() {
        assert_eq!(echo("gpt-4o"), "\"gpt-4o\"");
        let long = "é".repeat(1000);
        let shown = echo(&long);
        assert_eq!(shown, format!("{:?}…", "é".repeat(ECHO_MAX_CHARS)));
        assert_eq!(
            echo(&"x".repeat(ECHO_MAX_CHARS)),
            format!("{:?}", "x".repeat(64))
        );
    }

    #[test]
    fn bodies_have_the_wire_shapes() {
        let e = ApiError::new(ErrorKind::NotFound, "model_not_found", "no model \"x\"")
            .with_param("model");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            e.openai_body(),
            json!({"error":{"message":"no model \"x\"","type":"invalid_request_error","param":"model","code":"model_not_found"}})
        );
        assert_eq!(
            e.anthropic_body(),
            json!({"type":"error","error":{"type":"not_found_error","message":"no model \"x\""}})
        );
        assert!(!e.is_retryable());
        assert_eq!(e.kind.fault(), Fault::Client);
    }

    #[test]
    fn upstream_errors_are_retryable_and_blamed_on_the_provider() {
        let e = ApiError::new(ErrorKind::Upstream, "upstream_error", "boom");
        assert!(e.is_retryable());
        assert_eq!(e.kind.fault(), Fault::Provider);
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    }
}
