//! The HTTP server that executes [`Plan`]s, plus the control endpoints tests use
//! (`/_mock/requests`, `/_mock/faults`).
//!
//! [`serve`] runs its own accept loop on hyper instead of `axum::serve` for one reason: a
//! `reset` must close the connection without writing a response, and only a connection-level
//! service error makes hyper do that. [`router`] alone can do everything else.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::Stream;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

use crate::directive::Directives;
use crate::wire::{self, Shape, WireError};
use crate::{openai, plan, Api, MockOptions, Plan};

/// How many requests `/_mock/requests` remembers.
const RECORDED_REQUESTS: usize = 100;
/// Bodies larger than this are refused; real APIs accept large base64 images.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

const OPENAI_NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.";

/// A request as `/_mock/requests` reports it. Auth headers are kept on purpose: tests use them
/// to prove which key the gateway forwarded. Stored raw and rendered on read, so the hot path
/// pays for a header copy, not for a second JSON parse of the body.
#[derive(Debug, Clone)]
struct RecordedRequest {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl RecordedRequest {
    fn to_json(&self) -> Value {
        let mut headers: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in &self.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str())
                .and_modify(|existing| {
                    existing.push_str(", ");
                    existing.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        // The parsed JSON body; a string if it is not JSON, null if empty.
        let body = if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&self.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&self.body).into_owned()))
        };
        json!({
            "method": self.method.as_str(),
            "path": self.uri.path(),
            "query": self.uri.query(),
            "headers": headers,
            "body": body,
        })
    }
}

/// `POST /_mock/faults` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    status: Option<u16>,
    count: Option<u32>,
    retry_after_s: Option<u64>,
    latency_ms: Option<u64>,
    #[serde(default)]
    reset: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultAction {
    Status(StatusCode),
    Reset,
    /// Only `latency_ms`: slow, then answer normally.
    Delay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fault {
    action: FaultAction,
    remaining: u32,
    latency: Duration,
    retry_after: Option<Duration>,
}

/// Why a `POST /_mock/faults` body was refused.
#[derive(Debug, thiserror::Error)]
enum FaultError {
    #[error("invalid fault: {0}")]
    Json(#[from] serde_json::Error),
    #[error("set either `status` or `reset`, not both")]
    StatusAndReset,
    #[error("`status` must be 400-599, got {0}")]
    Status(u16),
    #[error("a fault needs `status`, `reset` or `latency_ms`")]
    Empty,
    #[error("`count` must be at least 1 (DELETE /_mock/faults clears)")]
    ZeroCount,
}

impl Fault {
    fn from_spec(spec: FaultSpec) -> Result<Self, FaultError> {
        let action = match (spec.reset, spec.status) {
            (true, Some(_)) => return Err(FaultError::StatusAndReset),
            (true, None) => FaultAction::Reset,
            (false, Some(code)) => FaultAction::Status(
                StatusCode::from_u16(code)
                    .ok()
                    .filter(|status| status.is_client_error() || status.is_server_error())
                    .ok_or(FaultError::Status(code))?,
            ),
            (false, None) if spec.latency_ms.is_some() => FaultAction::Delay,
            (false, None) => return Err(FaultError::Empty),
        };
        let remaining = spec.count.unwrap_or(1);
        if remaining == 0 {
            return Err(FaultError::ZeroCount);
        }
        Ok(Self {
            action,
            remaining,
            latency: Duration::from_millis(spec.latency_ms.unwrap_or(0)),
            retry_after: spec.retry_after_s.map(Duration::from_secs),
        })
    }

    fn to_json(&self) -> Value {
        let (status, reset) = match self.action {
            FaultAction::Status(status) => (Some(status.as_u16()), false),
            FaultAction::Reset => (None, true),
            FaultAction::Delay => (None, false),
        };
        json!({
            "status": status,
            "reset": reset,
            "count": self.remaining,
            "latency_ms": u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
            "retry_after_s": self.retry_after.map(|after| after.as_secs()),
        })
    }
}

/// Per-server state. Locks are only ever held for a copy or a push, never across an await.
#[derive(Debug)]
struct Shared {
    opts: MockOptions,
    requests: Mutex<VecDeque<RecordedRequest>>,
    fault: Mutex<Option<Fault>>,
}

/// A poisoned lock only means a panic elsewhere mid-update of test bookkeeping; the data is
/// still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn record(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) {
        let request = RecordedRequest {
            method: method.clone(),
            uri: uri.clone(),
            headers: headers.clone(),
            body: body.clone(),
        };
        let mut requests = lock(&self.requests);
        if requests.len() == RECORDED_REQUESTS {
            requests.pop_front();
        }
        requests.push_back(request);
    }

    /// Consumes one use of the active fault, if any.
    fn take_fault(&self) -> Option<Fault> {
        let mut slot = lock(&self.fault);
        let fault = slot.as_mut()?;
        let taken = fault.clone();
        fault.remaining -= 1;
        if fault.remaining == 0 {
            *slot = None;
        }
        Some(taken)
    }
}

/// The mock's routes. State lives inside (one recorder and one fault slot per call).
///
/// Everything works with any hyper server except `reset`, which needs [`serve`]: elsewhere it
/// degrades to a 502 whose body says so.
pub fn router(opts: MockOptions) -> Router {
    let shared = Arc::new(Shared {
        opts,
        requests: Mutex::new(VecDeque::with_capacity(RECORDED_REQUESTS)),
        fault: Mutex::new(None),
    });
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/messages", post(messages))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/healthz", get(healthz))
        .route("/_mock/requests", get(list_requests).delete(clear_requests))
        .route(
            "/_mock/faults",
            get(show_fault).post(set_fault).delete(clear_fault),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

type SharedState = State<Arc<Shared>>;

async fn chat(State(s): SharedState, m: Method, u: Uri, h: HeaderMap, b: Bytes) -> Response {
    api(&s, Api::OpenAiChat, &m, &u, &h, &b).await
}

async fn embeddings(State(s): SharedState, m: Method, u: Uri, h: HeaderMap, b: Bytes) -> Response {
    api(&s, Api::OpenAiEmbeddings, &m, &u, &h, &b).await
}

async fn messages(State(s): SharedState, m: Method, u: Uri, h: HeaderMap, b: Bytes) -> Response {
    api(&s, Api::AnthropicMessages, &m, &u, &h, &b).await
}

fn shape_of(api: Api) -> Shape {
    match api {
        Api::OpenAiChat | Api::OpenAiEmbeddings => Shape::OpenAi,
        Api::AnthropicMessages => Shape::Anthropic,
    }
}

/// Routes shared by both APIs (`/v1/models`) answer in Anthropic's shape when the caller
/// sends Anthropic's version header, as only Anthropic clients do.
fn shape_of_caller(headers: &HeaderMap) -> Shape {
    if headers.contains_key("anthropic-version") {
        Shape::Anthropic
    } else {
        Shape::OpenAi
    }
}

fn x_mock(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-mock").and_then(|value| value.to_str().ok())
}

async fn api(
    shared: &Shared,
    api: Api,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if let Some(early) = admit(shared, shape_of(api), method, uri, headers, body).await {
        return execute(early).await;
    }
    execute(plan(api, body, x_mock(headers), &shared.opts)).await
}

/// Records the request, then applies an armed fault and authentication. Returns the answer
/// that replaces the normal one, if any.
async fn admit(
    shared: &Shared,
    shape: Shape,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Plan> {
    shared.record(method, uri, headers, body);
    if let Some(fault) = shared.take_fault() {
        match fault.action {
            FaultAction::Reset => {
                return Some(Plan::Reset {
                    delay: fault.latency,
                })
            }
            FaultAction::Status(status) => {
                return Some(WireError::injected(status).plan(
                    shape,
                    fault.latency,
                    fault.retry_after,
                ))
            }
            FaultAction::Delay => pause(fault.latency).await,
        }
    }
    check_auth(shape, headers, &shared.opts)
        .err()
        .map(|err| err.plan(shape, Duration::ZERO, None))
}

fn check_auth(shape: Shape, headers: &HeaderMap, opts: &MockOptions) -> Result<(), WireError> {
    let unauthorized = |message: String| WireError::new(StatusCode::UNAUTHORIZED, message);
    match shape {
        Shape::OpenAi => {
            let Some(key) = bearer_key(headers) else {
                return Err(unauthorized(OPENAI_NO_KEY.to_owned()));
            };
            match &opts.require_key {
                Some(required) if required != key => Err(unauthorized(format!(
                    "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                    mask(key)
                ))
                .code("invalid_api_key")),
                Some(_) | None => Ok(()),
            }
        }
        Shape::Anthropic => {
            // `x-api-key` is the documented header; recent official SDKs send the same key as
            // `Authorization: Bearer`, which the real API accepts too.
            let key = headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|key| !key.is_empty())
                .or_else(|| bearer_key(headers));
            let Some(key) = key else {
                return Err(unauthorized("x-api-key header is required".to_owned()));
            };
            if opts
                .require_key
                .as_deref()
                .is_some_and(|required| required != key)
            {
                return Err(unauthorized("invalid x-api-key".to_owned()));
            }
            if !headers.contains_key("anthropic-version") {
                return Err(WireError::invalid("anthropic-version: header is required"));
            }
            Ok(())
        }
    }
}

fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|key| !key.is_empty())
}

/// A key as OpenAI echoes it in errors: enough to recognise, not enough to reuse.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

async fn models(State(shared): SharedState, m: Method, u: Uri, headers: HeaderMap) -> Response {
    let shape = shape_of_caller(&headers);
    models_answer(&shared, shape, &m, &u, &headers, |opts| {
        Ok(openai::models_body(opts, shape))
    })
    .await
}

async fn model(
    State(shared): SharedState,
    Path(id): Path<String>,
    m: Method,
    u: Uri,
    headers: HeaderMap,
) -> Response {
    let shape = shape_of_caller(&headers);
    models_answer(&shared, shape, &m, &u, &headers, |opts| {
        openai::model_body(opts, shape, &id)
    })
    .await
}

/// Model listings have no body, so only the `x-mock` header can carry directives.
async fn models_answer(
    shared: &Shared,
    shape: Shape,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    answer: impl FnOnce(&MockOptions) -> Result<Value, WireError>,
) -> Response {
    if let Some(early) = admit(shared, shape, method, uri, headers, &Bytes::new()).await {
        return execute(early).await;
    }
    let mut directives = Directives::default();
    if let Some(header) = x_mock(headers) {
        if let Err(err) = directives.overlay_header(header) {
            return execute(WireError::from(err).plan(shape, Duration::ZERO, None)).await;
        }
    }
    if let Some(early) = wire::preempt(shape, &directives) {
        return execute(early).await;
    }
    let delay = directives.latency.unwrap_or(Duration::ZERO);
    let plan = match answer(&shared.opts) {
        Ok(body) => Plan::Json {
            delay,
            status: StatusCode::OK,
            headers: Vec::new(),
            body,
        },
        Err(err) => err.plan(shape, delay, None),
    };
    execute(plan).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn list_requests(State(shared): SharedState) -> Response {
    let requests: Vec<RecordedRequest> = lock(&shared.requests).iter().cloned().collect();
    let requests: Vec<Value> = requests.iter().map(RecordedRequest::to_json).collect();
    axum::Json(requests).into_response()
}

async fn clear_requests(State(shared): SharedState) -> StatusCode {
    lock(&shared.requests).clear();
    StatusCode::NO_CONTENT
}

async fn show_fault(State(shared): SharedState) -> Response {
    let fault = lock(&shared.fault).as_ref().map(Fault::to_json);
    axum::Json(fault.unwrap_or(Value::Null)).into_response()
}

async fn set_fault(State(shared): SharedState, body: Bytes) -> Response {
    let fault = serde_json::from_slice::<FaultSpec>(&body)
        .map_err(FaultError::from)
        .and_then(Fault::from_spec);
    match fault {
        Ok(fault) => {
            let shown = fault.to_json();
            *lock(&shared.fault) = Some(fault);
            axum::Json(shown).into_response()
        }
        Err(err) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": err.to_string() })),
        )
            .into_response(),
    }
}

async fn clear_fault(State(shared): SharedState) -> StatusCode {
    *lock(&shared.fault) = None;
    StatusCode::NO_CONTENT
}

/// Unknown paths and methods are recorded too: a test then sees where a misconfigured
/// gateway sent its request.
async fn not_found(
    State(shared): SharedState,
    m: Method,
    u: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    shared.record(&m, &u, &h, &b);
    let shape = shape_of_caller(&h);
    let message = match shape {
        Shape::OpenAi => format!("Invalid URL ({m} {})", u.path()),
        Shape::Anthropic => "Not Found".to_owned(),
    };
    let err = WireError::new(StatusCode::NOT_FOUND, message);
    (StatusCode::NOT_FOUND, axum::Json(err.body(shape))).into_response()
}

async fn method_not_allowed(
    State(shared): SharedState,
    m: Method,
    u: Uri,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    shared.record(&m, &u, &h, &b);
    let shape = shape_of_caller(&h);
    let err = WireError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {m} is not allowed for {}", u.path()),
    );
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(err.body(shape))).into_response()
}

// ---------------------------------------------------------------------------------------------
// Executing plans

/// Marks a response that [`serve`] must turn into a closed connection.
#[derive(Debug, Clone, Copy)]
struct ResetConnection;

/// The service error that makes hyper drop the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("mock reset: closing the connection without a response")]
struct ResetRequested;

async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

async fn execute(plan: Plan) -> Response {
    match plan {
        Plan::Json {
            delay,
            status,
            headers,
            body,
        } => {
            pause(delay).await;
            let mut response = (
                status,
                [(CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
            for (name, value) in headers {
                match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
                    (Ok(name), Ok(value)) => {
                        response.headers_mut().append(name, value);
                    }
                    (name, value) => {
                        tracing::debug!(?name, ?value, "Mock plan carried an invalid header");
                    }
                }
            }
            response
        }
        Plan::Stream { delay, frames, cut } => {
            pause(delay).await;
            (
                StatusCode::OK,
                [
                    (CONTENT_TYPE, "text/event-stream; charset=utf-8"),
                    (CACHE_CONTROL, "no-cache"),
                ],
                Body::from_stream(frame_stream(frames, cut)),
            )
                .into_response()
        }
        Plan::Raw {
            delay,
            status,
            content_type,
            body,
            cut,
        } => {
            pause(delay).await;
            let body = if cut {
                Body::from_stream(frame_stream(vec![(Duration::ZERO, body)], true))
            } else {
                Body::from(body)
            };
            (status, [(CONTENT_TYPE, content_type)], body).into_response()
        }
        Plan::Reset { delay } => {
            pause(delay).await;
            let mut response = (
                StatusCode::BAD_GATEWAY,
                "mock reset: this server cannot drop connections; use agentd_mock::serve\n",
            )
                .into_response();
            response.extensions_mut().insert(ResetConnection);
            response
        }
    }
}

/// The frames with their delays; with `cut`, an I/O error at the end, which makes hyper abort
/// the connection instead of terminating the body.
fn frame_stream(
    frames: Vec<(Duration, Bytes)>,
    cut: bool,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    futures::stream::unfold((frames.into_iter(), cut), |(mut frames, cut)| async move {
        match frames.next() {
            Some((delay, frame)) => {
                pause(delay).await;
                Some((Ok(frame), (frames, cut)))
            }
            None if cut => {
                // hyper drops its write buffer when the body fails: give it time to flush
                // the frames already produced so the client sees exactly those.
                tokio::time::sleep(Duration::from_millis(10)).await;
                let err = io::Error::new(io::ErrorKind::ConnectionAborted, "mock: cut");
                Some((Err(err), (frames, false)))
            }
            None => None,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Serving

/// Serves the mock on `listener` until the returned future is dropped (which also closes its
/// open connections). Sets `TCP_NODELAY`: streams are many tiny writes.
pub async fn serve(listener: TcpListener, opts: MockOptions) -> io::Result<()> {
    let app = router(opts);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(error = %err, "Mock server could not set TCP_NODELAY");
                    }
                    connections.spawn(serve_connection(stream, app.clone()));
                }
                Err(err) => {
                    // Per-connection failures (the peer went away) and resource exhaustion
                    // (EMFILE) are both transient for a server: back off briefly, keep going.
                    tracing::debug!(error = %err, "Mock server failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, app: Router) {
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let app = app.clone();
        async move {
            let response = match app.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<ResetConnection>().is_some() {
                return Err(ResetRequested);
            }
            Ok::<_, ResetRequested>(response)
        }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(err) = connection.await {
        tracing::debug!(error = %err, "Mock connection ended with an error");
    }
}

/// A mock server on a random local port, stopped when dropped.
#[derive(Debug)]
pub struct MockServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MockServer {
    /// The base URL, e.g. `http://127.0.0.1:40123` (append `/v1` for SDK base URLs).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a mock server on `127.0.0.1:0`.
pub async fn spawn(opts: MockOptions) -> io::Result<MockServer> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(err) = serve(listener, opts).await {
            tracing::error!(error = %err, "Mock server stopped");
        }
    });
    Ok(MockServer { addr, task })
}
