//! The OpenAI-compatible surface: chat completions, embeddings, models.

use super::chat::{self, json_response, model_not_found};
use crate::body::{parse_json, read_limited};
use crate::error::ErrorResponse;
use crate::models::ModelRoute;
use crate::AppState;
use agentd_core::ApiError;
use agentd_providers::ApiFormat;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat::handle(state, ApiFormat::OpenAi, headers, body).await
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match embed(state, headers, body).await {
        Ok(resp) => resp,
        Err(e) => ErrorResponse::openai(e).into_response(),
    }
}

async fn embed(state: Arc<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let bytes = read_limited(&headers, body, state.config.server.max_body_bytes).await?;
    let json = parse_json(&bytes)?;
    let info = agentd_providers::validate::openai_embeddings(&json)?;
    let route = state
        .models
        .get(&info.model)
        .ok_or_else(|| model_not_found(&info.model))?;
    let deployment = route.pick();
    let metrics = &deployment.metrics;
    let started = Instant::now();
    let result = deployment
        .provider
        .embeddings(&deployment.model, json)
        .await;
    metrics.outcome(
        if result.is_ok() { "ok" } else { "error" },
        started.elapsed(),
    );
    let done = result.map_err(|e| e.to_api_error(&metrics.provider))?;
    metrics.tokens(done.usage);
    Ok(json_response(done.body))
}

fn model_object(route: &ModelRoute, created: i64) -> Value {
    json!({"id": route.name, "object": "model", "created": created, "owned_by": route.owned_by})
}

pub async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<Value> = state
        .models
        .ordered
        .iter()
        .map(|r| model_object(r, state.models.created))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get_model(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.models.get(&id) {
        Some(route) => axum::Json(model_object(route, state.models.created)).into_response(),
        None => ErrorResponse::openai(model_not_found(&id)).into_response(),
    }
}
