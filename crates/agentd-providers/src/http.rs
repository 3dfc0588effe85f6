//! The HTTP plumbing shared by the OpenAI and Anthropic clients: one pooled hyper client per
//! provider, the three timeouts, error-status handling, and the chat call flow (send →
//! non-stream body or [`ChatStream`]) that only differs per provider in its wire format.
//!
//! Why hyper's own client and not reqwest: this is the gateway's hottest path, and reqwest's
//! layers (redirect policy re-parsing the URL, retry, header merging) cost about 15% of all
//! gateway CPU per request. Everything that does not change between requests (each endpoint's
//! [`Uri`], every header value) is computed once when the provider is built; a request is then a
//! `Uri` clone, a `HeaderMap` clone and the body's one [`Bytes`]. Redirects are not followed: an
//! LLM API that redirects a POST is misconfigured, and the answer says so.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use agentd_config::ProviderConfig;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::{describe, retry_after, upstream_message};
use crate::stream::{self, ChatStream, Output, Source, Upstream};
use crate::{ApiFormat, ChatRequest, ChatResponse, ProviderError, TimeoutPhase};

/// Error bodies are read only this far: we need the message, not a megabyte of HTML.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The largest complete (non-stream) answer we accept, so that a broken or hostile upstream
/// cannot exhaust the gateway's memory. Real chat and embeddings answers are far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Idle keep-alive connections kept per provider host, and how long they may stay idle.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// TCP keep-alive probes find upstreams that vanished during a long, quiet stream.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// When the first-token and whole-response timeouts of one call expire.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    first_token: Instant,
    pub(crate) total: Instant,
}

impl Deadlines {
    pub(crate) fn start(first_token: Duration, total: Duration) -> Self {
        let now = Instant::now();
        // A configured timeout of years would overflow `Instant`; treat it as "a very long time".
        let far = |d: Duration| {
            now.checked_add(d)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
        };
        Self {
            first_token: far(first_token),
            total: far(total),
        }
    }

    /// The deadline until the first body bytes, and which timeout it is.
    pub(crate) fn before_first_byte(&self) -> (Instant, TimeoutPhase) {
        if self.first_token < self.total {
            (self.first_token, TimeoutPhase::FirstToken)
        } else {
            (self.total, TimeoutPhase::Total)
        }
    }
}

pub(crate) async fn within<F: Future>(
    deadline: Instant,
    phase: TimeoutPhase,
    fut: F,
) -> Result<F::Output, ProviderError> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| ProviderError::Timeout { phase })
}

/// Sleeps `delay` unless a deadline comes first (the in-process mock's simulated latency).
pub(crate) async fn sleep_within(
    delay: Duration,
    deadlines: &Deadlines,
) -> Result<(), ProviderError> {
    if delay.is_zero() {
        return Ok(());
    }
    let (deadline, phase) = deadlines.before_first_byte();
    within(deadline, phase, tokio::time::sleep(delay)).await
}

/// One provider's HTTP client.
pub(crate) struct HttpClient {
    pub(crate) name: String,
    client: Client<Connector, Full<Bytes>>,
    /// Every request header, ready to clone: `host`, `accept`, auth, the configured extra
    /// headers and `content-type`. Secret values are marked sensitive.
    headers: HeaderMap,
    first_token_timeout: Duration,
    timeout: Duration,
    /// Our API key, only to mask it should a provider echo it in an error message.
    api_key: Option<String>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("name", &self.name)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// `auth` = the provider's own auth headers; the configured extra headers come after them
    /// so they can override (e.g. Azure's `api-key`).
    pub(crate) fn new(
        cfg: &ProviderConfig,
        auth: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, ProviderError> {
        let base = endpoint(cfg, "")?;
        let mut headers = HeaderMap::with_capacity(4 + auth.len() + cfg.headers.len());
        // Set here so hyper does not build it again for every request.
        headers.insert(HOST, host_header(&base, cfg)?);
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        for (name, mut value) in auth {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        for (name, value) in &cfg.headers {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ProviderError::Config(format!(
                    "providers.{}.headers: {name:?} is not a valid HTTP header name",
                    cfg.name
                ))
            })?;
            // Extra headers may carry secrets: the value is never put in a message.
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                ProviderError::Config(format!(
                    "providers.{}.headers.{name}: the value is not a valid HTTP header value",
                    cfg.name
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(header, value);
        }
        // Our body is always JSON, whatever the extra headers say.
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));

        let mut client = Client::builder(TokioExecutor::new());
        client
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        Ok(Self {
            name: cfg.name.clone(),
            client: client.build(Connector::new(cfg)?),
            headers,
            first_token_timeout: cfg.first_token_timeout,
            timeout: cfg.timeout,
            api_key: cfg.api_key.as_ref().map(|k| k.expose().to_owned()),
        })
    }

    pub(crate) fn deadlines(&self) -> Deadlines {
        Deadlines::start(self.first_token_timeout, self.timeout)
    }

    /// POSTs a JSON body; returns the response once its headers arrived with a 2xx status.
    /// Any other status becomes [`ProviderError::Status`] with the upstream message.
    pub(crate) async fn post(
        &self,
        uri: &Uri,
        body: Bytes,
        deadlines: &Deadlines,
    ) -> Result<Response<Incoming>, ProviderError> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        *req.headers_mut() = self.headers.clone();
        let (deadline, phase) = deadlines.before_first_byte();
        let resp = within(deadline, phase, self.client.request(req))
            .await?
            .map_err(send_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after =
            retry_after(|name| resp.headers().get(name).and_then(|v| v.to_str().ok()));
        let message = if status.is_redirection() {
            // The target (`location`) is a URL, which never goes into a message.
            format!(
                "the provider redirected the request, and redirects are not followed; check providers.{}.base_url",
                self.name
            )
        } else {
            // The body only improves the message: if it cannot be read, the status still stands.
            let body = read_capped(resp.into_body(), deadlines)
                .await
                .unwrap_or_default();
            upstream_message(status.as_u16(), &body, self.api_key.as_deref())
        };
        Err(ProviderError::Status {
            status: status.as_u16(),
            message,
            retry_after,
        })
    }

    /// A chat call for a provider speaking `upstream`: `body` is already in that format.
    pub(crate) async fn chat(
        &self,
        uri: &Uri,
        upstream: ApiFormat,
        req: &ChatRequest,
        body: Vec<u8>,
        deadlines: Deadlines,
    ) -> Result<ChatResponse, ProviderError> {
        let body = Bytes::from(body);
        let request_len = body.len();
        // A stream keeps the request (the same bytes, no copy) to count its prompt in case the
        // provider reports no usage.
        let request = if req.stream {
            body.clone()
        } else {
            Bytes::new()
        };
        let resp = self.post(uri, body, &deadlines).await?;
        if !req.stream {
            let body = read_body(resp.into_body(), &deadlines).await?;
            return stream::complete(upstream, req, body, request_len).map(ChatResponse::Complete);
        }
        if let Some(ct) = resp.headers().get(CONTENT_TYPE) {
            if ct.as_bytes().starts_with(b"application/json") {
                return Err(ProviderError::Malformed(
                    "asked for an event stream but got a JSON body".to_owned(),
                ));
            }
        }
        let stream = ChatStream::new(
            Source::Http(resp.into_body()),
            Upstream::new(upstream),
            Output::new(upstream, req),
            &deadlines,
            request,
        );
        stream.prefetch().await.map(ChatResponse::Stream)
    }

    /// POST + whole JSON body, for non-chat endpoints (embeddings).
    pub(crate) async fn post_json(&self, uri: &Uri, body: Vec<u8>) -> Result<Bytes, ProviderError> {
        let deadlines = self.deadlines();
        let resp = self.post(uri, Bytes::from(body), &deadlines).await?;
        read_body(resp.into_body(), &deadlines).await
    }
}

/// The connector: TCP (HTTP) or TCP + rustls (HTTPS), the whole of it under the connect
/// timeout. hyper's `HttpConnector` bounds only the TCP part; a server that accepts the
/// connection and then stalls the TLS handshake must be a connect timeout too.
#[derive(Clone)]
struct Connector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The connect timeout fired (found again in the error chain by [`send_error`]).
#[derive(Debug, thiserror::Error)]
#[error("the connection was not established in time")]
struct ConnectTimedOut;

impl Connector {
    fn new(cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(cfg.connect_timeout));
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE));
        tcp.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        // The HTTPS connector handles both schemes; `https://` must get past this one.
        tcp.enforce_http(false);
        // The provider is explicit: rustls would panic at the first connection if another
        // crate ever enabled a second crypto backend and none was installed process-wide.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| ProviderError::Config(format!("cannot set up TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        Ok(Self {
            inner,
            timeout: cfg.connect_timeout,
        })
    }
}

impl tower::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    // Called once per new connection, not per request: the box is not on the hot path.
    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut) as BoxError),
            }
        })
    }
}

/// A failure before any response.
fn send_error(err: hyper_util::client::legacy::Error) -> ProviderError {
    if err.is_connect() && connect_timed_out(&err) {
        return ProviderError::Timeout {
            phase: TimeoutPhase::Connect,
        };
    }
    // "client error (Connect)" says nothing the causes do not; start from them.
    ProviderError::Connect(describe(err.source().unwrap_or(&err)))
}

/// Whether our connect timeout or the TCP connector's (an `io::Error` of kind `TimedOut`) fired.
fn connect_timed_out(err: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<ConnectTimedOut>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

pub(crate) fn body_error(err: hyper::Error) -> ProviderError {
    ProviderError::StreamCut(format!(
        "the connection failed before the whole response arrived: {}",
        describe(&err)
    ))
}

fn too_large() -> ProviderError {
    ProviderError::Malformed(format!(
        "the response body is larger than {} MiB",
        MAX_BODY / (1024 * 1024)
    ))
}

/// The next data frame of a body (trailers are skipped); `None` at its end.
pub(crate) async fn next_data(body: &mut Incoming) -> Result<Option<Bytes>, hyper::Error> {
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// Reads a whole body of at most [`MAX_BODY`] bytes: the first bytes under the first-token
/// deadline, the rest under the total one.
pub(crate) async fn read_body(
    mut body: Incoming,
    deadlines: &Deadlines,
) -> Result<Bytes, ProviderError> {
    // `content-length`, when the upstream sent one.
    let declared = body.size_hint().lower();
    if declared > MAX_BODY as u64 {
        return Err(too_large());
    }
    let (deadline, phase) = deadlines.before_first_byte();
    let Some(first) = within(deadline, phase, next_data(&mut body))
        .await?
        .map_err(body_error)?
    else {
        return Ok(Bytes::new());
    };
    let total = TimeoutPhase::Total;
    let Some(second) = within(deadlines.total, total, next_data(&mut body))
        .await?
        .map_err(body_error)?
    else {
        // The common case: the body arrived in one piece, no copy.
        return if first.len() > MAX_BODY {
            Err(too_large())
        } else {
            Ok(first)
        };
    };
    let len = first.len() + second.len();
    if len > MAX_BODY {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity((declared as usize).max(len));
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    while let Some(chunk) = within(deadlines.total, total, next_data(&mut body))
        .await?
        .map_err(body_error)?
    {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error body.
async fn read_capped(mut body: Incoming, deadlines: &Deadlines) -> Result<Vec<u8>, ProviderError> {
    let mut buf = Vec::new();
    while let Some(chunk) = within(deadlines.total, TimeoutPhase::Total, next_data(&mut body))
        .await?
        .map_err(body_error)?
    {
        let room = MAX_ERROR_BODY - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Ok(buf)
}

/// `{base_url}{path}` as a request target: parsed once, when the provider is built.
pub(crate) fn endpoint(cfg: &ProviderConfig, path: &str) -> Result<Uri, ProviderError> {
    let invalid = |why: &dyn std::fmt::Display| {
        ProviderError::Config(format!(
            "providers.{}.base_url is not a valid URL: {why}",
            cfg.name
        ))
    };
    let text = format!("{}{path}", cfg.base_url.trim_end_matches('/'));
    let uri = Uri::try_from(text).map_err(|e| invalid(&e))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) | None => return Err(invalid(&"it must start with http:// or https://")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid(&"it has no host"));
    };
    // hyper would silently drop `user:password@`; credentials belong in api_key or headers.
    if authority.as_str().contains('@') {
        return Err(invalid(
            &"it must not contain credentials; use api_key or headers",
        ));
    }
    // `http::Uri` keeps a port it cannot parse (`:99999`) and reports none.
    if authority.port_u16().is_none() && authority.as_str() != authority.host() {
        return Err(invalid(&"the port is not a number from 0 to 65535"));
    }
    Ok(uri)
}

/// The `host` header for `uri`: the port only when it is not the scheme's default (as hyper
/// would write it).
fn host_header(uri: &Uri, cfg: &ProviderConfig) -> Result<HeaderValue, ProviderError> {
    let host = uri.host().unwrap_or_default();
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        Some(_) | None => 80,
    };
    let value = match uri.port_u16() {
        Some(port) if port != default_port => HeaderValue::try_from(format!("{host}:{port}")),
        Some(_) | None => HeaderValue::try_from(host),
    };
    value.map_err(|_| {
        ProviderError::Config(format!(
            "providers.{}.base_url: the host is not a valid HTTP header value",
            cfg.name
        ))
    })
}

pub(crate) fn header(
    name: &'static str,
    value: &str,
    what: &str,
) -> Result<(HeaderName, HeaderValue), ProviderError> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| ProviderError::Config(format!("{what} is not a valid HTTP header value")))?;
    Ok((HeaderName::from_static(name), value))
}
