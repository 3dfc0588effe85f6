//! Request middleware: request ids + access log + metrics (`observe`), API-key auth
//! (`require_key`), admin auth (`require_admin`), and the answer to a panic.

use crate::error::{closing, ErrorResponse, LoggedError};
use crate::keys::{constant_time_eq, store_error};
use crate::metrics as m;
use crate::AppState;
use agentd_core::{ApiError, ErrorKind, Fault};
use agentd_providers::ApiFormat;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, for handlers that log or forward it.
#[derive(Clone)]
pub struct RequestId(pub Arc<str>);

/// Which error shape a path's clients expect.
pub fn format_for(path: &str) -> ApiFormat {
    if path.starts_with("/v1/messages") {
        ApiFormat::Anthropic
    } else {
        ApiFormat::OpenAi
    }
}

fn request_id(headers: &HeaderMap) -> Arc<str> {
    // Keep a caller's id when it is sane (lets clients correlate); otherwise make one.
    if let Some(v) = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) {
            return v.into();
        }
    }
    next_request_id().into()
}

/// 32 hex digits: a random per-process prefix and a counter. Unique across processes without a
/// random draw (a syscall) per request; request ids are not secrets.
fn next_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    format!(
        "{prefix:016x}{:016x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Outermost layer: gives the request an id, times it, counts it and writes one access-log
/// line, which is also where an error is logged (once).
pub async fn observe(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id);
    let in_flight = &state.in_flight;
    in_flight.increment(1.0);
    let mut resp = next.run(req).instrument(span.clone()).await;
    in_flight.decrement(1.0);
    let elapsed = started.elapsed();
    let status = resp.status();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    state.http_metrics.record(route, status.as_u16(), elapsed);
    let _enter = span.enter();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    match resp.extensions().get::<LoggedError>() {
        Some(LoggedError(err)) => {
            let fault = err.kind.fault();
            metrics::counter!(m::ERRORS, "kind" => err.kind.as_str(), "fault" => fault.as_str())
                .increment(1);
            match fault {
                Fault::Client => tracing::info!(
                    %method, route = %route, status = status.as_u16(), duration_ms,
                    error.code = %err.code, error = %err.message, "Request refused"
                ),
                Fault::Provider | Fault::Us => tracing::warn!(
                    %method, route = %route, status = status.as_u16(), duration_ms,
                    error.code = %err.code, error = %err.message, "Request failed"
                ),
            }
        }
        None => {
            tracing::info!(%method, route = %route, status = status.as_u16(), duration_ms, "Request served")
        }
    }
    resp
}

/// The secret a client sent: `Authorization: Bearer …` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs).
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        return Some(token.trim()).filter(|t| !t.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Every `/v1/*` route: a valid, unrevoked key, whose principal handlers find in the extensions.
pub async fn require_key(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let format = format_for(req.uri().path());
    let refused = |error| closing(ErrorResponse { format, error }.into_response());
    let Some(secret) = presented_key(req.headers()) else {
        return refused(missing_key());
    };
    match state.keys.check(state.store.as_ref(), secret).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => refused(invalid_key()),
        Err(e) => refused(store_error(e)),
    }
}

fn missing_key() -> ApiError {
    ApiError::new(
        ErrorKind::Authentication,
        "missing_api_key",
        "no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>' (create one with 'agentd keys create')",
    )
}

fn invalid_key() -> ApiError {
    ApiError::new(
        ErrorKind::Authentication,
        "invalid_api_key",
        "the API key is unknown or revoked",
    )
}

/// `/admin/*`: the admin key from the config (`auth.admin_key` / `AGENTD_ADMIN_KEY`).
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let refused = |error| closing(ErrorResponse::openai(error).into_response());
    let Some(admin) = state.config.auth.admin_key.as_ref() else {
        return refused(ApiError::new(
            ErrorKind::NotFound,
            "admin_api_disabled",
            "the admin API is disabled; set AGENTD_ADMIN_KEY (or auth.admin_key) to enable it",
        ));
    };
    match presented_key(req.headers()) {
        Some(k) if constant_time_eq(k.as_bytes(), admin.expose().as_bytes()) => next.run(req).await,
        Some(_) => refused(ApiError::new(
            ErrorKind::Authentication,
            "invalid_admin_key",
            "the admin key is wrong",
        )),
        None => refused(missing_key()),
    }
}

/// A handler panicked: answer 500 in OpenAI shape; the process keeps serving.
pub fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("A request handler panicked; this is a bug");
    ErrorResponse::openai(ApiError::internal(
        "internal error (a bug in agentd); the request id is in the x-request-id header",
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer sk-1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-1"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "sk-2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-2"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
    }

    #[test]
    fn request_ids_are_kept_or_made() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(&*request_id(&h), "abc-123");
        let (a, b) = (request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
