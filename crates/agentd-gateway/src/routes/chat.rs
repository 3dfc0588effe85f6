//! The chat call path shared by `/v1/chat/completions` and `/v1/messages`:
//! read → validate → route → call the provider → answer (JSON or SSE) → record metrics.

use crate::admission::{Caller, Reservation, TokenTicket};
use crate::body::{parse_json, read_limited};
use crate::cache;
use crate::dispatch;
use crate::error::ErrorResponse;
use crate::keys::Principal;
use crate::metrics::{self as m, CallMetrics};
use crate::middleware::RequestId;
use crate::models::Deployment;
use crate::AppState;
use agentd_core::{ApiError, ErrorKind, Micros, Price, SpendRecord, Usage};
use agentd_providers::{
    error_frame, ApiFormat, ChatRequest, ChatResponse, ChatStream, ProviderError,
};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::Stream;
use serde_json::Value;
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
        format!(
            "the model {} does not exist; GET /v1/models lists the models this gateway serves",
            agentd_core::echo(model)
        ),
    )
    .with_param("model")
}

/// Who is calling and the request's identity, for admission and the ledger.
pub struct Ctx {
    pub principal: Principal,
    pub request_id: Arc<str>,
    pub session: Option<String>,
    pub tier: Option<String>,
    pub cache_wish: cache::Wish,
}

pub const SESSION_HEADER: &str = "x-agentd-session";
pub const TIER_HEADER: &str = "x-agentd-tier";

impl Ctx {
    pub fn from_parts(
        principal: Principal,
        request_id: Option<RequestId>,
        headers: &HeaderMap,
    ) -> Result<Ctx, ApiError> {
        let header = |name: &str| -> Result<Option<String>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => {
                    let v = v.to_str().unwrap_or("").trim();
                    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                        return Err(ApiError::invalid(
                            "invalid_header",
                            format!("the {name} header must be 1 to 128 visible ASCII characters"),
                        ));
                    }
                    Ok(Some(v.to_owned()))
                }
            }
        };
        let session = header(SESSION_HEADER)?;
        let tier = header(TIER_HEADER)?.or_else(|| principal.tier.clone());
        Ok(Ctx {
            request_id: request_id.map(|r| r.0).unwrap_or_else(|| Arc::from("")),
            session,
            tier,
            cache_wish: cache::wish(headers),
            principal,
        })
    }

    pub fn caller(&self) -> Caller<'_> {
        Caller {
            principal: &self.principal,
            session: self.session.as_deref(),
        }
    }

    /// The ledger row of a call, without the outcome fields.
    pub fn row(&self, model: &str, deployment: Option<&Deployment>) -> SpendRecord {
        SpendRecord {
            id: self.request_id.to_string(),
            at: chrono::Utc::now(),
            key_id: Some(self.principal.key_id.clone()),
            tenant: self.principal.tenant.clone(),
            user: self.principal.user.clone(),
            session: self.session.clone(),
            model: model.to_owned(),
            provider: deployment
                .map(|d| d.provider.name().to_owned())
                .unwrap_or_default(),
            deployment: deployment.map(|d| d.model.clone()).unwrap_or_default(),
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            usage_estimated: false,
            cost: Micros::ZERO,
            latency_ms: 0,
            cache_hit: false,
            status: String::new(),
        }
    }
}

/// What happens when a call ends, however it ends: settle the budget reservation and the
/// token-per-minute draw, write the ledger row, store the answer in the cache.
pub struct Finish {
    pub state: Arc<AppState>,
    pub row: SpendRecord,
    pub price: Option<Price>,
    pub reservation: Option<Reservation>,
    pub tokens: Option<TokenTicket>,
    pub started: Instant,
    pub cache: Option<(String, cache::Kind)>,
}

impl Finish {
    /// `usage` is what the call consumed (zero when it failed before any answer).
    pub fn done(mut self, usage: Usage, estimated: bool, status: &str, body: Option<&[u8]>) {
        let cost = self.price.map(|p| p.cost(&usage)).unwrap_or(Micros::ZERO);
        if let Some(controls) = self.state.controls.as_ref() {
            crate::admission::settle(
                controls,
                self.reservation.take(),
                self.tokens.take(),
                cost,
                usage.total(),
            );
        }
        if status == "ok" {
            if let (Some((key, kind)), Some(cache), Some(body)) =
                (self.cache.take(), self.state.cache.as_ref(), body)
            {
                cache.put(key, kind, usage, body);
            }
        }
        let mut row = self.row;
        row.at = chrono::Utc::now();
        row.input_tokens = usage.input_tokens;
        row.output_tokens = usage.output_tokens;
        row.cached_input_tokens = usage.cached_input_tokens;
        row.usage_estimated = estimated;
        row.cost = cost;
        row.latency_ms = self.started.elapsed().as_millis() as u64;
        row.status = status.to_owned();
        self.state.ledger.record(row);
    }
}

impl Finish {
    /// A call that failed: its ledger row when a provider was called (`outcome` says how it
    /// failed), and in any case the reservation and the token draw given back.
    pub fn failed(self, reached_provider: bool, outcome: &str) {
        if reached_provider {
            self.done(Usage::default(), false, outcome, None);
        } else if let Some(controls) = self.state.controls.as_ref() {
            crate::admission::settle(controls, self.reservation, self.tokens, Micros::ZERO, 0);
        }
    }
}

/// Looks `key` up in the cache. A hit is recorded (a free ledger row, the token draw settled)
/// and its usage and bytes returned; a miss hands the token draw back.
pub async fn from_cache(
    state: &Arc<AppState>,
    ctx: &Ctx,
    model: &str,
    key: Option<&String>,
    tokens: Option<TokenTicket>,
    started: Instant,
) -> Result<Bytes, Option<TokenTicket>> {
    let (Some(key), Some(cache)) = (key, state.cache.as_ref()) else {
        return Err(tokens);
    };
    let Some((usage, body)) = cache.get(key).await else {
        return Err(tokens);
    };
    let mut row = ctx.row(model, None);
    row.cache_hit = true;
    Finish {
        state: state.clone(),
        row,
        price: None,
        reservation: None,
        tokens,
        started,
        cache: None,
    }
    .done(usage, false, "ok", None);
    Ok(body)
}

/// Reserves `worst` against the caller's budgets when any are configured; a refusal also gives
/// the token draw back.
pub async fn reserve(
    state: &Arc<AppState>,
    ctx: &Ctx,
    worst: impl FnOnce() -> Micros,
    tokens: Option<TokenTicket>,
) -> Result<(Option<Reservation>, Option<TokenTicket>), ApiError> {
    let Some(controls) = state.controls.as_ref().filter(|c| c.has_budgets()) else {
        return Ok((None, tokens));
    };
    match controls.reserve(&ctx.caller(), worst()).await {
        Ok(reservation) => Ok((reservation, tokens)),
        Err(e) => {
            crate::admission::settle(controls, None, tokens, Micros::ZERO, 0);
            Err(e)
        }
    }
}

pub async fn handle(
    state: Arc<AppState>,
    format: ApiFormat,
    principal: Principal,
    request_id: Option<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match call(state, format, principal, request_id, headers, body).await {
        Ok(resp) => resp,
        Err(error) => ErrorResponse { format, error }.into_response(),
    }
}

async fn call(
    state: Arc<AppState>,
    format: ApiFormat,
    principal: Principal,
    request_id: Option<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_limited(
        &headers,
        body,
        state.config.server.max_body_bytes,
        state.config.server.body_read_timeout,
    )
    .await?;
    let json = parse_json(&bytes)?;
    let info = match format {
        ApiFormat::OpenAi => agentd_providers::validate::openai_chat(&json)?,
        ApiFormat::Anthropic => agentd_providers::validate::anthropic_messages(&json)?,
    };
    let ctx = Ctx::from_parts(principal, request_id, &headers)?;
    let prompt_tokens = agentd_providers::tokens::estimate_prompt_tokens(format, &json);
    let has_tools = json
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let route = state
        .models
        .resolve(&info.model, ctx.tier.as_deref(), has_tools, prompt_tokens)
        .ok_or_else(|| model_not_found(&info.model))?;
    let started = Instant::now();

    let tokens = match &state.controls {
        Some(c) => c.rate_limit(&ctx.caller(), prompt_tokens).await?,
        None => None,
    };
    let kind = cache::Kind::Chat(format);
    let cache_key = state
        .cache
        .as_ref()
        .and_then(|_| cache::key(kind, &json, ctx.cache_wish, &route.name));
    let tokens = match from_cache(
        &state,
        &ctx,
        &route.name,
        cache_key.as_ref(),
        tokens,
        started,
    )
    .await
    {
        Ok(body) => {
            let resp = if info.stream {
                sse_response(Body::from(body))
            } else {
                json_response(body)
            };
            return Ok(with_cache_header(resp, "hit"));
        }
        Err(tokens) => tokens,
    };
    let (reservation, tokens) = reserve(
        &state,
        &ctx,
        || {
            let max_out = agentd_providers::tokens::max_output_tokens(format, &json)
                .unwrap_or(route.max_output_tokens);
            route.worst_price.worst_case(prompt_tokens, max_out)
        },
        tokens,
    )
    .await?;

    let request = ChatRequest {
        format,
        body: json,
        stream: info.stream,
        include_usage: info.include_usage,
        public_model: route.name.clone(),
        upstream_model: String::new(),
    };
    let result = dispatch::chat(&state, &route, request).await;
    let cache_state = if cache_key.is_some() { "miss" } else { "skip" };
    match result {
        Ok(served) => {
            let deployment = served.deployment;
            let finish = Finish {
                row: ctx.row(&route.name, Some(&deployment)),
                price: deployment.price,
                reservation,
                tokens,
                started,
                cache: cache_key.map(|k| (k, kind)),
                state: state.clone(),
            };
            match served.response {
                ChatResponse::Complete(done) => {
                    deployment.metrics.outcome("ok", served.started.elapsed());
                    deployment.metrics.tokens(done.usage);
                    finish.done(done.usage, false, "ok", Some(&done.body));
                    Ok(with_cache_header(json_response(done.body), cache_state))
                }
                ChatResponse::Stream(stream) => {
                    let capture = state
                        .cache
                        .as_ref()
                        .filter(|_| finish.cache.is_some())
                        .map(|c| c.max_entry_bytes);
                    let metered = MeteredStream::new(
                        stream,
                        format,
                        deployment.metrics.clone(),
                        served.started,
                        finish,
                        capture,
                    );
                    Ok(with_cache_header(
                        sse_response(Body::from_stream(metered)),
                        cache_state,
                    ))
                }
            }
        }
        Err(failed) => {
            let finish = Finish {
                row: ctx.row(&route.name, failed.deployment.as_deref()),
                price: None,
                reservation,
                tokens,
                started,
                cache: None,
                state: state.clone(),
            };
            finish.failed(failed.deployment.is_some(), failed.outcome);
            Err(failed.error)
        }
    }
}

pub fn with_cache_header(mut resp: Response, state: &'static str) -> Response {
    resp.headers_mut()
        .insert(cache::CACHE_HEADER, HeaderValue::from_static(state));
    resp
}

pub fn outcome_of(err: &ProviderError) -> &'static str {
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

fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
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
    /// Settles budgets and writes the ledger row when the stream ends (or is dropped).
    finish: Option<Finish>,
    /// A copy of every byte sent, for the cache; `None` when not caching or over the limit.
    capture: Option<BytesMut>,
    capture_limit: usize,
}

impl MeteredStream {
    fn new(
        inner: ChatStream,
        format: ApiFormat,
        labels: Arc<CallMetrics>,
        started: Instant,
        finish: Finish,
        capture_limit: Option<usize>,
    ) -> Self {
        MeteredStream {
            finish: Some(finish),
            capture: capture_limit.map(|_| BytesMut::new()),
            capture_limit: capture_limit.unwrap_or(0),
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
        let out = self.batch.split().freeze();
        self.captured(&out);
        Poll::Ready(Some(Ok(out)))
    }

    fn captured(&mut self, bytes: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            if c.len() + bytes.len() > self.capture_limit {
                self.capture = None;
            } else {
                c.extend_from_slice(bytes);
            }
        }
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
                        this.captured(&frame);
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
        let usage = self.inner.usage();
        self.labels.tokens(usage);
        if let Some(finish) = self.finish.take() {
            let body = self.capture.take();
            finish.done(
                usage,
                self.inner.usage_estimated(),
                outcome,
                body.as_deref(),
            );
        }
    }
}
