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
use bytes::{Bytes, BytesMut};
use futures::Stream;
use std::convert::Infallible;
use std::future::Future;
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
        Ok(ChatResponse::Stream(stream)) => Ok(sse_response(MeteredStream::new(
            stream, format, labels, started,
        ))),
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

/// How many scheduler turns in a row may bring nothing before the gathered events are written.
/// Measured: hyper's client connection task delivers the next chunk only on the second turn
/// (the first wake-up reaches this task before the connection task has run), so one empty turn
/// is normal and two mean the upstream has nothing more for now.
const MAX_EMPTY_YIELDS: u8 = 2;

/// Most bytes gathered into one write.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// The provider's stream on its way to the client: times the first event, turns a failure
/// midway into the API's error event, and records usage when the stream ends — also when the
/// client goes away first (drop).
///
/// It also batches writes. hyper's client hands over an upstream body one chunk per wake-up of
/// its connection task, so events that arrived together in one read would leave as one
/// `writev` each (a syscall and a TCP segment per event: half of the gateway's CPU on a fast
/// stream). After the first event — sent at once, for time to first byte — the stream yields
/// to the scheduler while the upstream keeps delivering, and writes what it gathered in one go
/// once [`MAX_EMPTY_YIELDS`] turns brought nothing new. An event that arrives alone waits that
/// many scheduler turns (microseconds).
struct MeteredStream {
    inner: ChatStream,
    format: ApiFormat,
    labels: Arc<CallMetrics>,
    started: Instant,
    first_sent: bool,
    /// The inner stream is over (or failed); what is in `batch` is the last of it.
    ended: bool,
    outcome: &'static str,
    batch: BytesMut,
    /// Frames arrived since the last yield, so more may be coming.
    fresh: bool,
    empty_yields: u8,
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl MeteredStream {
    fn new(
        inner: ChatStream,
        format: ApiFormat,
        labels: Arc<CallMetrics>,
        started: Instant,
    ) -> Self {
        MeteredStream {
            inner,
            format,
            labels,
            started,
            first_sent: false,
            ended: false,
            outcome: "ok",
            batch: BytesMut::new(),
            fresh: false,
            empty_yields: 0,
            yielding: None,
        }
    }

    fn take_batch(&mut self) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.empty_yields = 0;
        Poll::Ready(Some(Ok(self.batch.split().freeze())))
    }
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return if this.batch.is_empty() {
                    Poll::Ready(None)
                } else {
                    this.take_batch()
                };
            }
            if let Some(yielding) = this.yielding.as_mut() {
                if yielding.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.yielding = None;
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if !this.first_sent {
                        this.first_sent = true;
                        this.labels.first_token(this.started.elapsed());
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.batch.extend_from_slice(&frame);
                    this.fresh = true;
                    if this.batch.len() >= MAX_BATCH_BYTES {
                        return this.take_batch();
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    this.ended = true;
                    this.outcome = outcome_of(&err);
                    let api = err.to_api_error(&this.labels.provider);
                    tracing::warn!(provider = %this.labels.provider, model = %this.labels.model, error = %err, "Stream failed midway; sent an error event");
                    metrics::counter!(m::ERRORS, "kind" => api.kind.as_str(), "fault" => api.kind.fault().as_str())
                        .increment(1);
                    this.batch
                        .extend_from_slice(&error_frame(this.format, &api));
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending if this.batch.is_empty() => return Poll::Pending,
                Poll::Pending if this.fresh || this.empty_yields < MAX_EMPTY_YIELDS => {
                    this.empty_yields = if this.fresh { 0 } else { this.empty_yields + 1 };
                    this.fresh = false;
                    this.yielding = Some(Box::pin(tokio::task::yield_now()));
                }
                Poll::Pending => return this.take_batch(),
            }
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        let outcome = if self.ended {
            self.outcome
        } else {
            "client_disconnected"
        };
        self.labels.outcome(outcome, self.started.elapsed());
        self.labels.tokens(self.inner.usage());
    }
}
