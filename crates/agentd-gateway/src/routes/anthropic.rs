//! The Anthropic-compatible surface: `POST /v1/messages`.

use super::chat;
use crate::keys::Principal;
use crate::middleware::RequestId;
use crate::openapi::responses::AnthropicCallErrors;
#[allow(unused_imports)] // read by the #[utoipa::path] annotation
use crate::openapi::schemas::{Message, MessageStreamEvent, MessagesRequest};
use crate::AppState;
use agentd_providers::ApiFormat;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use std::sync::Arc;

/// Anthropic Messages, whole or streamed.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "anthropic",
    operation_id = "createMessage",
    params(
        ("anthropic-version" = Option<String>, Header, description = "Accepted and ignored (the gateway speaks 2023-06-01)", example = "2023-06-01"),
        ("x-agentd-session" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Groups calls into a session for budgets and the ledger (1 to 128 visible ASCII characters)"),
        ("x-agentd-tier" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "The tier a router picks a model from (1 to 128 visible ASCII characters); default the key's tier"),
        ("x-agentd-cache" = Option<String>, Header, description = "`on`/`true` or `off`/`false`: use the response cache or not; default the configured policy"),
    ),
    request_body(content = MessagesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer: JSON, or server-sent events (`message_start` … `message_stop`) when `stream` is true",
            content(
                (Message = "application/json"),
                (MessageStreamEvent = "text/event-stream"),
            ),
            headers(("x-agentd-cache" = String, description = "`hit`, `miss` or `skip`"))),
        AnthropicCallErrors,
    ),
    security(("x_api_key" = []), ("bearer_api_key" = [])),
)]
pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat::handle(
        state,
        ApiFormat::Anthropic,
        principal,
        request_id.map(|e| e.0),
        headers,
        body,
    )
    .await
}
