//! The Anthropic-compatible surface: `POST /v1/messages`.

use super::chat;
use crate::AppState;
use agentd_providers::ApiFormat;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use std::sync::Arc;

pub async fn messages(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat::handle(state, ApiFormat::Anthropic, headers, body).await
}
