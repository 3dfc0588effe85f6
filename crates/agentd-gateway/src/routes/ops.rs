//! Operational endpoints and the answers to unknown routes.

use crate::error::{closing, ErrorResponse};
use crate::middleware::format_for;
#[allow(unused_imports)] // read by the #[utoipa::path] annotations
use crate::openapi::schemas::{Health, Readiness};
use crate::AppState;
use agentd_core::{ApiError, ErrorKind};
use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "Up", body = Health)),
)]
pub(crate) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// The process can serve: not draining, and the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Draining, or the store does not answer", body = Readiness),
    ),
)]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let backend = state.store.backend();
    if state.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => axum::Json(json!({"status": "ready", "store": backend})).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "store": backend, "error": e.to_string()})),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "store": backend, "error": "store ping timed out after 2 s"})),
        )
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "The Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8")),
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object,
        content_type = "application/json")),
)]
pub(crate) async fn openapi_json(State(state): State<Arc<AppState>>) -> Response {
    let doc = match state.openapi.get() {
        Some(doc) => doc.clone(),
        None => crate::openapi::document(),
    };
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

pub(crate) async fn not_found(uri: Uri) -> Response {
    closing(
        ErrorResponse {
            format: format_for(uri.path()),
            error: ApiError::new(
                ErrorKind::NotFound,
                "unknown_route",
                format!(
                    "no route {}; the README lists the API routes",
                    agentd_core::echo(uri.path())
                ),
            ),
        }
        .into_response(),
    )
}

pub(crate) async fn method_not_allowed(uri: Uri) -> Response {
    let mut resp = ErrorResponse {
        format: format_for(uri.path()),
        error: ApiError::new(
            ErrorKind::InvalidRequest,
            "method_not_allowed",
            format!("method not allowed on {}", agentd_core::echo(uri.path())),
        ),
    }
    .into_response();
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    closing(resp)
}
