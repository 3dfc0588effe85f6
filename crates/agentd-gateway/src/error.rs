//! Turning an [`ApiError`] into an HTTP answer in the shape of the API the client called.

use agentd_core::ApiError;
use agentd_providers::ApiFormat;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// An error on its way to a client of the given API.
pub struct ErrorResponse {
    pub format: ApiFormat,
    pub error: ApiError,
}

impl ErrorResponse {
    pub fn openai(error: ApiError) -> Self {
        Self {
            format: ApiFormat::OpenAi,
            error,
        }
    }

    pub fn anthropic(error: ApiError) -> Self {
        Self {
            format: ApiFormat::Anthropic,
            error,
        }
    }
}

/// At most `max_chars` characters of `text`, with `…` when cut: for texts that may repeat a
/// caller's input (see `agentd_core::echo` for quoting a single value).
pub(crate) fn capped(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Ends the connection after this answer. For refusals sent before the request body was read:
/// without it hyper drops the connection silently and a client reusing it sees a disconnect.
pub(crate) fn closing(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Marks a response as an error so the access-log middleware can log and count it once.
#[derive(Clone)]
pub(crate) struct LoggedError(pub ApiError);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        let body = match self.format {
            ApiFormat::OpenAi => self.error.openai_body(),
            ApiFormat::Anthropic => self.error.anthropic_body(),
        };
        let mut resp = (self.error.status(), axum::Json(body)).into_response();
        if let Some(after) = self.error.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // The rest of the body is still on its way: answer and close rather than read it.
        let unread_body = matches!(
            self.error.kind,
            agentd_core::ErrorKind::PayloadTooLarge | agentd_core::ErrorKind::RequestTimeout
        );
        resp.extensions_mut().insert(LoggedError(self.error));
        if unread_body {
            return closing(resp);
        }
        resp
    }
}
