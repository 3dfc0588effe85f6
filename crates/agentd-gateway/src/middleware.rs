//! Request middleware: request ids + access log + metrics (`observe`), JSON shapes for the
//! errors axum answers itself (`shape_errors`), load shedding (`shed_load`), the request timeout
//! (`limit_time`), authentication of every route but a short allow list (`authenticate`), and
//! the answer to a panic.

use crate::error::{capped, closing, ErrorResponse, LoggedError};
use crate::keys::{constant_time_eq, store_error};
use crate::metrics as m;
use crate::region;
use crate::server::Guarded;
use crate::AppState;
use agentd_core::{ApiError, ErrorKind, Fault};
use agentd_providers::ApiFormat;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The id of the request being served, for handlers that log or forward it.
#[derive(Clone)]
pub(crate) struct RequestId(pub Arc<str>);

/// Which error shape a path's clients expect.
pub(crate) fn format_for(path: &str) -> ApiFormat {
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
    next_request_id()
}

/// 32 hex digits: a random per-process prefix and a counter. Unique across processes without a
/// random draw (a syscall) per request; request ids are not secrets.
fn next_request_id() -> Arc<str> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    crate::call::hex128((u128::from(prefix) << 64) | u128::from(n))
}

/// Outermost layer: gives the request an id, times it, counts it and writes one access-log
/// line, which is also where an error is logged (once).
pub(crate) async fn observe(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(req.headers());
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = match state.config.server.region.as_deref() {
        Some(region) => tracing::info_span!("request", request_id = %id, region = %region),
        None => tracing::info_span!("request", request_id = %id),
    };
    // A guard, so a request whose connection went away (its future dropped) is not counted
    // in flight forever.
    let in_flight = InFlight::new(&state.in_flight);
    let mut resp = next.run(req).instrument(span.clone()).await;
    drop(in_flight);
    let elapsed = started.elapsed();
    let status = resp.status();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    // A proxied answer keeps the serving region's own header.
    if let Some(region) = &state.region_header {
        if !resp.headers().contains_key(region::SERVED_BY) {
            resp.headers_mut().insert(region::SERVED_BY, region.clone());
        }
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

struct InFlight<'a>(&'a ::metrics::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a ::metrics::Gauge) -> Self {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The routes anyone may call without a key. Everything else needs one (`/admin/*` the admin
/// key): a route added later is protected unless it is added here on purpose.
pub(crate) const PUBLIC_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    // The agent API's health and server info (LangGraph clients probe them without a key).
    "/ok",
    "/info",
];

/// What a path requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Public,
    ApiKey,
    AdminKey,
}

/// Decided on the raw path, the same string the router matches, so no encoding or slash trick
/// can reach a route under a looser rule than its own (an unknown path needs a key, too).
pub(crate) fn access_for(path: &str) -> Access {
    if PUBLIC_PATHS.contains(&path) {
        Access::Public
    } else if path == "/admin" || path.starts_with("/admin/") {
        Access::AdminKey
    } else {
        Access::ApiKey
    }
}

/// The request's guards, in one layer (one boxed future and one clone of the router per
/// request instead of one per guard), outermost first: JSON error shapes → load shedding →
/// request timeout → authentication → the router.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let format = format_for(req.uri().path());
    let resp = shed_load(&state, req, next).await;
    shape_errors(format, resp).await
}

/// Over the whole router: deny by default.
async fn authenticate(state: &AppState, req: Request, next: Next) -> Response {
    match access_for(req.uri().path()) {
        Access::Public => next.run(req).await,
        Access::ApiKey => require_key(state, req, next).await,
        Access::AdminKey => require_admin(state, req, next).await,
    }
}

/// Whether a path is one of the operational endpoints, which load shedding never refuses (a
/// load balancer must still see the process alive and a scraper read its metrics).
fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// How much of a shed request's body is read (and how long for) before the 503 closes the
/// connection.
const SHED_DRAIN_BYTES: usize = 64 * 1024;
const SHED_DRAIN_TIME: Duration = Duration::from_millis(50);

/// Concurrency limit with load shedding: past `server.max_concurrent_requests` requests in
/// flight (a stream counts until its body ends), a request is refused at once with 503
/// `overloaded` and `Retry-After: 1`, never queued.
async fn shed_load(state: &AppState, req: Request, next: Next) -> Response {
    let Some(slots) = &state.concurrency else {
        return limit_time(state, req, next).await;
    };
    let path = req.uri().path();
    if is_operational(path) {
        return limit_time(state, req, next).await;
    }
    match slots.clone().try_acquire_owned() {
        Ok(permit) => Guarded::wrap(limit_time(state, req, next).await, permit),
        Err(_) => {
            ::metrics::counter!(m::LOAD_SHED).increment(1);
            let format = format_for(path);
            // Read what the client already sent of a small body (briefly) before answering and
            // closing: closing a socket with unread data makes the kernel send a reset, which
            // can destroy the 503 before the client reads it.
            let _ = tokio::time::timeout(
                SHED_DRAIN_TIME,
                axum::body::to_bytes(req.into_body(), SHED_DRAIN_BYTES),
            )
            .await;
            closing(
                ErrorResponse {
                    format,
                    error: ApiError::new(
                        ErrorKind::Unavailable,
                        "overloaded",
                        "the gateway is serving as many requests as it is configured for (server.max_concurrent_requests); retry shortly",
                    )
                    .with_retry_after(Duration::from_secs(1)),
                }
                .into_response(),
            )
        }
    }
}

/// `server.request_timeout`: bounds the time to the response head. A non-streaming answer is
/// whole when its head is ready, so this bounds the whole request; a stream's length is bounded
/// by the providers' own timeouts. The handler future is dropped at the deadline, so whatever it
/// holds must be released on drop (breaker probes and in-flight counts are guards).
async fn limit_time(state: &AppState, req: Request, next: Next) -> Response {
    let format = format_for(req.uri().path());
    let limit = state.config.server.request_timeout;
    match tokio::time::timeout(limit, authenticate(state, req, next)).await {
        Ok(resp) => resp,
        Err(_) => closing(
            ErrorResponse {
                format,
                error: ApiError::new(
                    ErrorKind::UpstreamTimeout,
                    "request_timeout",
                    format!(
                        "the request was not answered within {} ms (server.request_timeout_ms)",
                        limit.as_millis()
                    ),
                ),
            }
            .into_response(),
        ),
    }
}

/// Most bytes of an axum rejection's text kept for the error message.
const REJECTION_TEXT_MAX: usize = 4096;

/// Errors axum answers by itself (an undecodable path parameter, a bad query string, a wrong
/// content type…) come as `text/plain`; clients of a JSON API get JSON, in their API's shape,
/// from here. Our own errors (marked with [`LoggedError`]) and JSON answers pass untouched.
async fn shape_errors(format: ApiFormat, resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error())
        || is_json
        || resp.extensions().get::<LoggedError>().is_some()
    {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), REJECTION_TEXT_MAX)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let (kind, code) = match status {
        StatusCode::NOT_FOUND => (ErrorKind::NotFound, "unknown_route"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorKind::InvalidRequest, "method_not_allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorKind::PayloadTooLarge, "request_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ErrorKind::InvalidRequest, "unsupported_media_type"),
        StatusCode::UNAUTHORIZED => (ErrorKind::Authentication, "unauthorized"),
        StatusCode::FORBIDDEN => (ErrorKind::PermissionDenied, "forbidden"),
        s if s.is_client_error() => (ErrorKind::InvalidRequest, "invalid_request"),
        _ => (ErrorKind::Internal, "internal_error"),
    };
    // The rejection text may repeat the caller's input (a path segment): cap it.
    let message = capped(&text, 200);
    let mut shaped = ErrorResponse {
        format,
        error: ApiError::new(kind, code, message),
    }
    .into_response();
    *shaped.status_mut() = status;
    shaped
}

/// The secret a client sent: `Authorization: Bearer …` (OpenAI SDKs) or `x-api-key` (Anthropic SDKs).
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
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

/// A valid, unrevoked key, whose principal handlers find in the extensions.
async fn require_key(state: &AppState, mut req: Request, next: Next) -> Response {
    let format = format_for(req.uri().path());
    let refused = |error| closing(ErrorResponse { format, error }.into_response());
    let Some(secret) = presented_key(req.headers()) else {
        return refused(missing_key());
    };
    let principal = match state.keys.check(state.directory.as_ref(), secret).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            // Outside the primary region the replica may not have a new key yet.
            if let Some(regions) = &state.regions {
                let facts = region::RequestFacts {
                    path: req.uri().path(),
                    headers: req.headers(),
                };
                if let Some((primary, permit)) = regions.unknown_key_check(&facts) {
                    // If the primary cannot be reached, the answer is this region's own: 401.
                    let decision = region::Decision::Send {
                        region: primary,
                        fallback_local: true,
                    };
                    let resp = region::dispatch(regions, decision, req, |_| async {
                        refused(invalid_key())
                    })
                    .await;
                    drop(permit);
                    return resp;
                }
            }
            return refused(invalid_key());
        }
        Err(e) => return refused(store_error(e)),
    };
    let Some(regions) = &state.regions else {
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    };
    let pin = match regions
        .pin(state.directory.as_ref(), &principal.tenant)
        .await
    {
        Ok(pin) => pin,
        Err(e) => return refused(store_error(e)),
    };
    let decision = regions.decide(
        pin.as_ref(),
        &region::RequestFacts {
            path: req.uri().path(),
            headers: req.headers(),
        },
    );
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    region::dispatch(regions, decision, req, |mut req| async move {
        req.extensions_mut().insert(principal);
        let mut resp = next.run(req).await;
        regions.mark_write(&path, &method, &mut resp);
        resp
    })
    .await
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
async fn require_admin(state: &AppState, req: Request, next: Next) -> Response {
    let refused = |error| closing(ErrorResponse::openai(error).into_response());
    let Some(admin) = state.config.auth.admin_key.as_ref() else {
        return refused(ApiError::new(
            ErrorKind::NotFound,
            "admin_api_disabled",
            "the admin API is disabled; set AGENTD_ADMIN_KEY (or auth.admin_key) to enable it",
        ));
    };
    match presented_key(req.headers()) {
        Some(k) if constant_time_eq(k.as_bytes(), admin.expose().as_bytes()) => {
            let Some(regions) = &state.regions else {
                return next.run(req).await;
            };
            let decision = regions.decide_admin(&region::RequestFacts {
                path: req.uri().path(),
                headers: req.headers(),
            });
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            region::dispatch(regions, decision, req, |req| async move {
                let mut resp = next.run(req).await;
                regions.mark_write(&path, &method, &mut resp);
                resp
            })
            .await
        }
        Some(_) => refused(ApiError::new(
            ErrorKind::Authentication,
            "invalid_admin_key",
            "the admin key is wrong",
        )),
        None => refused(missing_key()),
    }
}

/// A handler panicked: answer 500 in OpenAI shape; the process keeps serving.
pub(crate) fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
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
    fn every_path_needs_a_key_unless_allowed() {
        for public in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
            assert_eq!(access_for(public), Access::Public, "{public}");
        }
        for keyed in [
            "/v1/models",
            "/v1/new-route-nobody-thought-about",
            "/healthz/",
            "//healthz",
            "/%68ealthz",
            "/administrator",
            "/",
        ] {
            assert_eq!(access_for(keyed), Access::ApiKey, "{keyed}");
        }
        for admin in ["/admin", "/admin/", "/admin/keys", "/admin/../v1/models"] {
            assert_eq!(access_for(admin), Access::AdminKey, "{admin}");
        }
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
