//! Shared wire plumbing: error bodies in each API's shape, SSE framing and the directive-driven
//! front part of every plan.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use crate::directive::{DirectiveError, Directives};
use crate::Plan;

/// Whose error format (and auth headers) a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    OpenAi,
    Anthropic,
}

/// An error answer, rendered in either API's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `param`: the offending field.
    pub param: Option<String>,
    /// OpenAI's `code`.
    pub code: Option<&'static str>,
}

impl WireError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The error a `status=` directive or a fault produces: the message real providers send
    /// for that status, so client-side handling is exercised with realistic bodies.
    pub(crate) fn injected(status: StatusCode) -> Self {
        let (message, code) = match status.as_u16() {
            401 => ("Incorrect API key provided.", Some("invalid_api_key")),
            403 => ("You are not allowed to access this resource.", None),
            404 => (
                "The model does not exist or you do not have access to it.",
                Some("model_not_found"),
            ),
            408 => ("Request timed out.", None),
            413 => ("Request too large.", None),
            429 => (
                "Rate limit reached for requests. Please try again later.",
                Some("rate_limit_exceeded"),
            ),
            500 => (
                "The server had an error while processing your request. Sorry about that!",
                None,
            ),
            502 => ("Bad gateway.", None),
            503 | 529 => ("The server is overloaded or not ready yet.", None),
            504 => ("Gateway timeout.", None),
            _ => ("Injected error (mock status directive).", None),
        };
        Self {
            status,
            message: message.to_owned(),
            param: None,
            code,
        }
    }

    pub(crate) fn body(&self, shape: Shape) -> Value {
        let status = self.status.as_u16();
        match shape {
            Shape::OpenAi => {
                let kind = match status {
                    429 => "requests",
                    400..=499 => "invalid_request_error",
                    _ => "server_error",
                };
                json!({"error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": self.code,
                }})
            }
            Shape::Anthropic => {
                let kind = match status {
                    401 => "authentication_error",
                    402 => "billing_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    503 | 529 => "overloaded_error",
                    400..=499 => "invalid_request_error",
                    _ => "api_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": self.message}})
            }
        }
    }

    pub(crate) fn plan(
        &self,
        shape: Shape,
        delay: Duration,
        retry_after: Option<Duration>,
    ) -> Plan {
        let headers = retry_after
            .map(|after| vec![("retry-after".to_owned(), after.as_secs().to_string())])
            .unwrap_or_default();
        Plan::Json {
            delay,
            status: self.status,
            headers,
            body: self.body(shape),
        }
    }
}

impl From<DirectiveError> for WireError {
    fn from(err: DirectiveError) -> Self {
        WireError::invalid(err.to_string()).code("invalid_mock_directive")
    }
}

/// The OpenAI wording for an unparsable body, which clients sometimes match on.
pub(crate) const OPENAI_BAD_JSON: &str = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)";

/// A `data:`-only SSE frame (OpenAI).
pub(crate) fn data_frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// A named SSE frame (Anthropic).
pub(crate) fn event_frame(event: &str, value: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {value}\n\n"))
}

/// What every plan starts with: the request's directives, or the answer that pre-empts the
/// normal one (a bad directive, `reset`, `status=`, an unparsable body).
pub(crate) struct Front {
    pub directives: Directives,
    pub body: Value,
    pub delay: Duration,
}

/// Directives come from the header and from the last user message's text, which
/// `user_text` extracts from the (not yet validated) body. Fault directives pre-empt
/// validation, as a rate limiter in front of a real API would.
pub(crate) fn front(
    shape: Shape,
    body: &[u8],
    header: Option<&str>,
    user_text: impl Fn(&Value) -> Option<String>,
) -> Result<Front, Plan> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    let message_text = parsed.as_ref().ok().and_then(&user_text);
    let directives = (|| {
        let mut directives = match &message_text {
            Some(text) => Directives::from_message(text)?,
            None => Directives::default(),
        };
        if let Some(header) = header {
            directives.overlay_header(header)?;
        }
        Ok::<_, DirectiveError>(directives)
    })()
    .map_err(|err| WireError::from(err).plan(shape, Duration::ZERO, None))?;

    let delay = directives.latency.unwrap_or(Duration::ZERO);
    if let Some(plan) = preempt(shape, &directives) {
        return Err(plan);
    }
    let body = match (parsed, shape) {
        (Ok(body @ Value::Object(_)), _) => body,
        (Ok(_), Shape::OpenAi) => {
            return Err(
                WireError::invalid("The request body must be a JSON object.")
                    .plan(shape, delay, None),
            )
        }
        (Ok(_), Shape::Anthropic) => {
            return Err(
                WireError::invalid("Input should be a valid dictionary or object")
                    .plan(shape, delay, None),
            )
        }
        (Err(_), Shape::OpenAi) => {
            return Err(WireError::invalid(OPENAI_BAD_JSON).plan(shape, delay, None))
        }
        (Err(err), Shape::Anthropic) => {
            return Err(WireError::invalid(format!(
                "There was an issue with your request body: invalid JSON ({err})"
            ))
            .plan(shape, delay, None))
        }
    };
    Ok(Front {
        directives,
        body,
        delay,
    })
}

/// The answer that replaces the normal one when a directive asks for a reset or an error.
pub(crate) fn preempt(shape: Shape, directives: &Directives) -> Option<Plan> {
    let delay = directives.latency.unwrap_or(Duration::ZERO);
    if directives.reset {
        return Some(Plan::Reset { delay });
    }
    directives
        .status
        .map(|status| WireError::injected(status).plan(shape, delay, directives.retry_after))
}

/// Human names of JSON types, as OpenAI's validation messages word them.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a content value that is a string or an array of `{"type":"text","text":…}`
/// parts; other parts (images, audio, files) carry no text the mock reads.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|part| part.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => String::new(),
    }
}

/// Frames for a plan built from a stream: applies `malformed` (the second frame is replaced by
/// broken JSON) and `cut_after` (stop after N frames and abort; the terminal frame is never
/// sent).
pub(crate) fn stream_plan(
    mut frames: Vec<Bytes>,
    directives: &Directives,
    delay: Duration,
    ttft: Duration,
    token_delay: Duration,
    broken_frame: Bytes,
) -> Plan {
    if directives.malformed {
        let at = 1.min(frames.len());
        frames.insert(at, broken_frame);
    }
    let cut = match directives.cut_after {
        Some(n) => {
            frames.truncate(n.min(frames.len().saturating_sub(1)));
            true
        }
        None => false,
    };
    let frames = frames
        .into_iter()
        .enumerate()
        .map(|(i, frame)| (if i == 0 { ttft } else { token_delay }, frame))
        .collect();
    Plan::Stream { delay, frames, cut }
}

/// A non-streaming success body, or its broken variants (`malformed`, `cut_after`).
pub(crate) fn json_plan(
    body: Value,
    headers: Vec<(String, String)>,
    directives: &Directives,
    delay: Duration,
) -> Plan {
    if directives.malformed {
        let text = body.to_string();
        let mut broken = text[..text.len() / 2].to_owned();
        broken.push_str("<<not json>>");
        return Plan::Raw {
            delay,
            status: StatusCode::OK,
            content_type: "application/json",
            body: Bytes::from(broken),
            cut: false,
        };
    }
    if directives.cut_after.is_some() {
        let text = body.to_string();
        return Plan::Raw {
            delay,
            status: StatusCode::OK,
            content_type: "application/json",
            body: Bytes::from(text.as_bytes()[..text.len() / 2].to_vec()),
            cut: true,
        };
    }
    Plan::Json {
        delay,
        status: StatusCode::OK,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        let err = WireError::invalid("Missing required parameter: 'messages'.")
            .param("messages")
            .code("missing_required_parameter");
        assert_eq!(
            err.body(Shape::OpenAi),
            json!({"error": {"message": "Missing required parameter: 'messages'.",
                             "type": "invalid_request_error", "param": "messages",
                             "code": "missing_required_parameter"}})
        );
        assert_eq!(
            WireError::injected(StatusCode::TOO_MANY_REQUESTS).body(Shape::Anthropic)["error"]
                ["type"],
            "rate_limit_error"
        );
        assert_eq!(
            WireError::injected(StatusCode::from_u16(529).unwrap()).body(Shape::Anthropic)["error"]
                ["type"],
            "overloaded_error"
        );
        assert_eq!(
            WireError::injected(StatusCode::BAD_GATEWAY).body(Shape::Anthropic)["error"]["type"],
            "api_error"
        );
        assert_eq!(
            WireError::injected(StatusCode::BAD_GATEWAY).body(Shape::OpenAi)["error"]["type"],
            "server_error"
        );
    }

    #[test]
    fn retry_after_becomes_a_header() {
        let plan = WireError::injected(StatusCode::TOO_MANY_REQUESTS).plan(
            Shape::OpenAi,
            Duration::ZERO,
            Some(Duration::from_secs(7)),
        );
        let Plan::Json {
            headers, status, ..
        } = plan
        else {
            panic!("expected a JSON plan")
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers, vec![("retry-after".to_owned(), "7".to_owned())]);
    }

    #[test]
    fn cut_never_sends_the_terminal_frame() {
        let frames: Vec<Bytes> = ["a", "b", "c"].into_iter().map(Bytes::from).collect();
        let d = Directives {
            cut_after: Some(10),
            ..Directives::default()
        };
        let Plan::Stream {
            frames: out, cut, ..
        } = stream_plan(
            frames,
            &d,
            Duration::ZERO,
            Duration::from_millis(5),
            Duration::from_millis(1),
            Bytes::from("x"),
        )
        else {
            panic!("expected a stream plan")
        };
        assert!(cut);
        assert_eq!(
            out,
            vec![
                (Duration::from_millis(5), Bytes::from("a")),
                (Duration::from_millis(1), Bytes::from("b"))
            ]
        );
    }
}
