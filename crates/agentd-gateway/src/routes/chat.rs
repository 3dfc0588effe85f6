//! The chat call path shared by `/v1/chat/completions` and `/v1/messages`:
//! read → validate → route → call the provider → answer (JSON or SSE) → record metrics.

use crate::body::{parse_json, read_limited};
use crate::error::ErrorResponse;
use crate::metrics::{self as m, CallMetrics};
use crate::AppState;
use agentd_core::{ApiError, ErrorKind};
use agentd_providers::{
    error_frame, ApiFormat, ChatRequest, ChatResponse, ChatStream, ProviderError,
};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::Stream;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

pub fn model_not_found(model: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "model_not_found",
        format!("the model {model:?} does not exist; GET /v1/models lists the models this gateway serves"),
    )
    .with_param("model")
}

pub async fn handle(
    state: Arc<AppState>,
    format: ApiFormat,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match call(state, format, headers, body).await {
        Ok(resp) => resp,
        Err(error) => ErrorResponse { format, error }.into_response(),
    }
}

async fn call(
    state: Arc<AppState>,
    format: ApiFormat,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_limited(&headers, body, state.config.server.max_body_bytes).await?;
    let json = parse_json(&bytes)?;
    let info = match format {
        ApiFormat::OpenAi => agentd_providers::validate::openai_chat(&json)?,
        ApiFormat::Anthropic => agentd_providers::validate::anthropic_messages(&json)?,
    };
    let route = state
        .models
        .get(&info.model)
        .ok_or_else(|| model_not_found(&info.model))?;
    let deployment = route.pick();
    let labels = deployment.metrics.clone();
    let started = Instant::now();
    let result = deployment
        .provider
        .chat(ChatRequest {
            format,
            body: json,
            stream: info.stream,
            include_usage: info.include_usage,
            public_model: route.name.clone(),
            upstream_model: deployment.model.clone(),
        })
        .await;
    match result {
        Ok(ChatResponse::Complete(done)) => {
            labels.outcome("ok", started.elapsed());
            labels.tokens(done.usage);
            Ok(json_response(done.body))
        }
        Ok(ChatResponse::Stream(stream)) => Ok(sse_response(MeteredStream {
            inner: stream,
            format,
            labels,
            started,
            first_seen: false,
            finished: false,
            outcome: "ok",
        })),
        Err(err) => {
            labels.outcome(outcome_of(&err), started.elapsed());
            Err(err.to_api_error(deployment.provider.name()))
        }
    }
}

fn outcome_of(err: &ProviderError) -> &'static str {
    match err {
        ProviderError::Timeout { .. } => "timeout",
        ProviderError::Status { status: 429, .. } => "rate_limited",
        ProviderError::Status { .. } => "error_status",
        ProviderError::Connect(_) => "connect_error",
        ProviderError::StreamCut(_) => "stream_cut",
        ProviderError::Malformed(_) => "malformed",
        ProviderError::InvalidRequest(_)
        | ProviderError::Unsupported(_)
        | ProviderError::Config(_) => "rejected",
    }
}

pub fn json_response(body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn sse_response(stream: MeteredStream) -> Response {
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies in front of us not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// The provider's stream on its way to the client: times the first event, turns a failure
/// midway into the API's error event, and records usage when the stream ends — also when the
/// client goes away first (drop).
struct MeteredStream {
    inner: ChatStream,
    format: ApiFormat,
    labels: Arc<CallMetrics>,
    started: Instant,
    first_seen: bool,
    finished: bool,
    outcome: &'static str,
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if !self.first_seen {
                    self.first_seen = true;
                    self.labels.first_token(self.started.elapsed());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                self.finished = true;
                self.outcome = outcome_of(&err);
                let api = err.to_api_error(&self.labels.provider);
                tracing::warn!(provider = %self.labels.provider, model = %self.labels.model, error = %err, "Stream failed midway; sent an error event");
                metrics::counter!(m::ERRORS, "kind" => api.kind.as_str(), "fault" => api.kind.fault().as_str())
                    .increment(1);
                Poll::Ready(Some(Ok(error_frame(self.format, &api))))
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        let outcome = if self.finished {
            self.outcome
        } else {
            "client_disconnected"
        };
        self.labels.outcome(outcome, self.started.elapsed());
        self.labels.tokens(self.inner.usage());
    }
}
