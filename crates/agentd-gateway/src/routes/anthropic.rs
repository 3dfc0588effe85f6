//! The Anthropic-compatible surface: `POST /v1/messages`.

use super::chat;
use crate::keys::Principal;
use crate::middleware::RequestId;
use crate::AppState;
use agentd_providers::ApiFormat;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use std::sync::Arc;

pub async fn messages(
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
