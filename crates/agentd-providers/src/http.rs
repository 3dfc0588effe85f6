//! The HTTP plumbing shared by the OpenAI and Anthropic clients: one pooled `reqwest::Client`
//! per provider, the three timeouts, error-status handling, and the chat call flow (send →
//! non-stream body or [`ChatStream`]) that only differs per provider in its wire format.

use std::future::Future;
use std::time::Duration;

use agentd_config::ProviderConfig;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Response, Url};
use tokio::time::Instant;

use crate::error::{describe, retry_after, upstream_message};
use crate::stream::{self, ChatStream, Output, Source, Upstream};
use crate::{ApiFormat, ChatRequest, ChatResponse, ProviderError, TimeoutPhase};

/// Error bodies are read only this far: we need the message, not a megabyte of HTML.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
    client: reqwest::Client,
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
        let mut headers = HeaderMap::new();
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
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            .use_rustls_tls()
            .build()
            .map_err(|e| {
                ProviderError::Config(format!("cannot build the HTTP client: {}", describe(e)))
            })?;
        Ok(Self {
            name: cfg.name.clone(),
            client,
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
        url: &Url,
        body: Vec<u8>,
        deadlines: &Deadlines,
    ) -> Result<Response, ProviderError> {
        let (deadline, phase) = deadlines.before_first_byte();
        let send = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .send();
        let resp = within(deadline, phase, send).await?.map_err(send_error)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after =
            retry_after(|name| resp.headers().get(name).and_then(|v| v.to_str().ok()));
        // The body only improves the message: if it cannot be read, the status still stands.
        let body = read_capped(resp, deadlines).await.unwrap_or_default();
        Err(ProviderError::Status {
            status: status.as_u16(),
            message: upstream_message(status.as_u16(), &body, self.api_key.as_deref()),
            retry_after,
        })
    }

    /// A chat call for a provider speaking `upstream`: `body` is already in that format.
    pub(crate) async fn chat(
        &self,
        url: &Url,
        upstream: ApiFormat,
        req: &ChatRequest,
        body: Vec<u8>,
        deadlines: Deadlines,
    ) -> Result<ChatResponse, ProviderError> {
        let request_len = body.len();
        let resp = self.post(url, body, &deadlines).await?;
        if !req.stream {
            let body = read_body(resp, &deadlines).await?;
            return stream::complete(upstream, req, body, request_len).map(ChatResponse::Complete);
        }
        if let Some(ct) = resp.headers().get(CONTENT_TYPE) {
            if ct.as_bytes().starts_with(b"application/json") {
                return Err(ProviderError::Malformed(
                    "asked for an event stream but got a JSON body".to_owned(),
                ));
            }
        }
        let source = Source::Http(Box::pin(resp.bytes_stream()));
        let stream = ChatStream::new(
            source,
            Upstream::new(upstream),
            Output::new(upstream, req),
            &deadlines,
            request_len,
        );
        stream.prefetch().await.map(ChatResponse::Stream)
    }

    /// POST + whole JSON body, for non-chat endpoints (embeddings).
    pub(crate) async fn post_json(&self, url: &Url, body: Vec<u8>) -> Result<Bytes, ProviderError> {
        let deadlines = self.deadlines();
        let resp = self.post(url, body, &deadlines).await?;
        read_body(resp, &deadlines).await
    }
}

/// A failure before any response: the only reqwest timeout we configure is the connect one.
fn send_error(err: reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout {
            phase: TimeoutPhase::Connect,
        }
    } else {
        ProviderError::Connect(describe(err))
    }
}

pub(crate) fn body_error(err: reqwest::Error) -> ProviderError {
    ProviderError::StreamCut(format!(
        "the connection failed before the whole response arrived: {}",
        describe(err)
    ))
}

/// Reads a whole body: the first bytes under the first-token deadline, the rest under the total one.
pub(crate) async fn read_body(
    mut resp: Response,
    deadlines: &Deadlines,
) -> Result<Bytes, ProviderError> {
    let (deadline, phase) = deadlines.before_first_byte();
    let Some(first) = within(deadline, phase, resp.chunk())
        .await?
        .map_err(body_error)?
    else {
        return Ok(Bytes::new());
    };
    let total = TimeoutPhase::Total;
    let Some(second) = within(deadlines.total, total, resp.chunk())
        .await?
        .map_err(body_error)?
    else {
        // The common case: the body arrived in one piece, no copy.
        return Ok(first);
    };
    let hint = resp.content_length().unwrap_or(0) as usize;
    let mut buf = Vec::with_capacity(hint.max(first.len() + second.len()));
    buf.extend_from_slice(&first);
    buf.extend_from_slice(&second);
    while let Some(chunk) = within(deadlines.total, total, resp.chunk())
        .await?
        .map_err(body_error)?
    {
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error body.
async fn read_capped(mut resp: Response, deadlines: &Deadlines) -> Result<Vec<u8>, ProviderError> {
    let mut buf = Vec::new();
    while let Some(chunk) = within(deadlines.total, TimeoutPhase::Total, resp.chunk())
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

pub(crate) fn parse_url(cfg: &ProviderConfig, path: &str) -> Result<Url, ProviderError> {
    let url = format!("{}{path}", cfg.base_url.trim_end_matches('/'));
    Url::parse(&url).map_err(|e| {
        ProviderError::Config(format!(
            "providers.{}.base_url is not a valid URL: {e}",
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
