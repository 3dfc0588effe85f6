//! Regions and data residency: which region serves a request, and getting it there.
//!
//! The rules, for an instance in region `me` of a deployment whose primary database is in
//! `primary` (`[regions]`):
//! - A tenant pinned to a home region `H ≠ me` is sent to `H`: with `fly-replay: region=H`
//!   (Fly.io's proxy replays the request there) or by proxying it to `H`'s URL. It is never
//!   served here — except a *preferred* pin whose home cannot be reached. A strict one gets 503.
//! - Tenants without a home: the LLM gateway (`/v1/…`) is served in every region (its answers
//!   are the latency that matters); the agent API and `/admin` live in the primary's database,
//!   so outside the primary region they are sent to the primary, and so is every request of a
//!   caller that wrote through the primary in the last `read_your_writes_ms` (the write's
//!   answer carries `agentd-primary-until`, as a header and a cookie).
//! - A request that was already sent once (`agentd-forwarded-from`, or Fly's `fly-replay-src`)
//!   and still is not where it belongs is refused with 421 rather than sent again: no loops.
//! - Outside the primary region, a key the local replica does not know yet is checked by the
//!   primary (the key may be seconds old).

use crate::error::ErrorResponse;
use agentd_config::{RegionRouting, RegionsConfig};
use agentd_core::{ApiError, ErrorKind, StoreError, TenantId, TenantPin, TenantStore};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Set on a request this instance sends to another region (the sender's region).
pub(crate) const FORWARDED_FROM: &str = "agentd-forwarded-from";
/// Set by Fly.io's proxy on a replayed request.
pub(crate) const FLY_REPLAY_SRC: &str = "fly-replay-src";
/// The answer to a write: until this time (Unix ms) the caller's requests go to the primary.
pub(crate) const PRIMARY_UNTIL: &str = "agentd-primary-until";
/// Every response: the region that served it.
pub(crate) const SERVED_BY: &str = "agentd-region";

/// How long connecting to another region may take before it counts as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Unknown-key checks in flight to the primary at once; beyond, an unknown key is refused here.
const MAX_KEY_CHECKS: usize = 8;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Serve it here.
    Local,
    /// Send it to `region`; if that region cannot be reached, serve it here only when
    /// `fallback_local` (a preferred pin), else answer 503.
    Send {
        region: String,
        fallback_local: bool,
    },
    /// Refuse it (already forwarded, still misdirected).
    Misdirected { belongs_to: String },
    /// The request came from its home region, which did not know the key yet (replication
    /// lag): ask the client to retry there shortly.
    Lagging { region: String },
}

/// What is known about the request, for [`Regions::decide`].
pub(crate) struct RequestFacts<'a> {
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
}

impl RequestFacts<'_> {
    fn was_forwarded(&self) -> bool {
        self.headers.contains_key(FORWARDED_FROM) || self.headers.contains_key(FLY_REPLAY_SRC)
    }

    /// The region that sent this request here: `agentd-forwarded-from`, or the `region=` of
    /// Fly's `fly-replay-src` (`instance=…;region=nrt;t=…`).
    fn forwarded_from(&self) -> Option<&str> {
        if let Some(v) = self.headers.get(FORWARDED_FROM) {
            return v.to_str().ok();
        }
        self.headers
            .get(FLY_REPLAY_SRC)
            .and_then(|v| v.to_str().ok())?
            .split(';')
            .find_map(|kv| kv.trim().strip_prefix("region="))
    }

    fn is_gateway(&self) -> bool {
        is_gateway_path(self.path)
    }

    /// The caller wrote through the primary recently (header or cookie still in the future).
    fn wants_primary(&self, now_ms: i64) -> bool {
        let from_header = self
            .headers
            .get(PRIMARY_UNTIL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok());
        let from_cookie = self
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == PRIMARY_UNTIL)
            .and_then(|(_, v)| v.trim().parse::<i64>().ok());
        from_header
            .or(from_cookie)
            .is_some_and(|until| until > now_ms)
    }
}

/// The region layer of one instance; `None` in [`AppState`] for a one-region deployment.
pub(crate) struct Regions {
    me: String,
    primary: String,
    routing: RegionRouting,
    read_your_writes: Duration,
    urls: Vec<(String, String)>,
    /// Home regions by tenant (`None`: not pinned), cached like keys.
    pins: moka::future::Cache<TenantId, Option<TenantPin>>,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    /// Bounds the unknown-key checks sent to the primary (a flood of bogus keys must not turn
    /// into as many forwarded requests).
    key_checks: std::sync::Arc<tokio::sync::Semaphore>,
    /// Keys unknown to the local replica are checked by the primary.
    has_replica: bool,
}

impl Regions {
    /// The region layer, when the config lists several regions (config validation ensured
    /// `server.region` is one of them).
    pub(crate) fn from_config(config: &agentd_config::Config) -> Option<Regions> {
        let RegionsConfig {
            list,
            primary,
            routing,
            read_your_writes,
            urls,
            ..
        } = &config.regions;
        if list.len() < 2 {
            return None;
        }
        let me = config.server.region.clone()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        // The HTTPS connector handles both schemes: `https://` region URLs must get past this one.
        connector.enforce_http(false);
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .ok()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Some(Regions {
            primary: primary.clone().unwrap_or_else(|| list[0].clone()),
            me,
            routing: *routing,
            read_your_writes: *read_your_writes,
            urls: urls
                .iter()
                .map(|(r, u)| (r.clone(), u.expose().to_owned()))
                .collect(),
            pins: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.auth.key_cache_ttl.max(Duration::from_millis(1)))
                .build(),
            client,
            max_body_bytes: config.server.max_body_bytes,
            body_read_timeout: config.server.body_read_timeout,
            key_checks: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_KEY_CHECKS)),
            has_replica: config.store_replica.is_some(),
        })
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.me == self.primary
    }

    pub(crate) fn is_home(&self, region: &str) -> bool {
        self.me == region
    }

    /// The tenant's home region, through the cache.
    pub(crate) async fn pin(
        &self,
        directory: &dyn TenantStore,
        tenant: &TenantId,
    ) -> Result<Option<TenantPin>, StoreError> {
        self.pins
            .try_get_with(tenant.clone(), async { directory.tenant_pin(tenant).await })
            .await
            .map_err(|e| match &*e {
                StoreError::Conflict => StoreError::Conflict,
                StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
                StoreError::Backend(m) => StoreError::Backend(m.clone()),
            })
    }

    /// This process changed a pin: forget the cached one at once.
    pub(crate) async fn forget_pin(&self, tenant: &TenantId) {
        self.pins.invalidate(tenant).await;
    }

    /// Where a request of a known tenant goes.
    pub(crate) fn decide(&self, pin: Option<&TenantPin>, facts: &RequestFacts<'_>) -> Decision {
        let (target, fallback_local) = match pin {
            Some(pin) => (
                pin.home_region.as_str(),
                pin.residency == agentd_core::Residency::Preferred,
            ),
            None => {
                let to_primary =
                    !self.is_primary() && (!facts.is_gateway() || facts.wants_primary(now_ms()));
                if !to_primary {
                    return Decision::Local;
                }
                (self.primary.as_str(), false)
            }
        };
        if target == self.me {
            return Decision::Local;
        }
        if facts.was_forwarded() {
            if fallback_local {
                return Decision::Local;
            }
            // Its home region sent it here because the key was not there yet.
            if facts.forwarded_from() == Some(target) {
                return Decision::Lagging {
                    region: target.to_owned(),
                };
            }
            return Decision::Misdirected {
                belongs_to: target.to_owned(),
            };
        }
        Decision::Send {
            region: target.to_owned(),
            fallback_local,
        }
    }

    /// `/admin` requests: the directory (keys, tenants) and reports live in the primary's
    /// database; this region's own queues and pools are answered here.
    pub(crate) fn decide_admin(&self, facts: &RequestFacts<'_>) -> Decision {
        // This region's own queues, pools, ledger, budgets and breakers are answered here.
        let local = facts.path.starts_with("/admin/queues")
            || matches!(
                facts.path,
                "/admin/pools" | "/admin/spend" | "/admin/budgets" | "/admin/breakers"
            );
        if self.is_primary() || local {
            return Decision::Local;
        }
        if facts.was_forwarded() {
            return Decision::Misdirected {
                belongs_to: self.primary.clone(),
            };
        }
        Decision::Send {
            region: self.primary.clone(),
            fallback_local: false,
        }
    }

    /// A key the local replica does not know: the primary may (replication lag). At most
    /// [`MAX_KEY_CHECKS`] at once (a flood of bogus keys is refused here, not forwarded); the
    /// permit is held until the primary answered.
    pub(crate) fn unknown_key_check(
        &self,
        facts: &RequestFacts<'_>,
    ) -> Option<(String, tokio::sync::OwnedSemaphorePermit)> {
        if !self.has_replica || self.is_primary() || facts.was_forwarded() {
            return None;
        }
        let permit = self.key_checks.clone().try_acquire_owned().ok()?;
        Some((self.primary.clone(), permit))
    }

    /// Marks the answer to a write served by the primary, for read-your-writes.
    pub(crate) fn mark_write(&self, path: &str, method: &Method, resp: &mut Response) {
        if !self.is_primary() || !is_state_write(path, method) || self.read_your_writes.is_zero() {
            return;
        }
        if !resp.status().is_success() {
            return;
        }
        let until = now_ms() + self.read_your_writes.as_millis() as i64;
        let seconds = self.read_your_writes.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&until.to_string()) {
            resp.headers_mut()
                .insert(HeaderName::from_static(PRIMARY_UNTIL), v);
        }
        let cookie =
            format!("{PRIMARY_UNTIL}={until}; Max-Age={seconds}; Path=/; HttpOnly; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }

    /// Carries out a [`Decision::Send`]: a `fly-replay` answer, or the request proxied to the
    /// region's URL. `Err(req)` gives the request back when the region cannot be reached and
    /// the caller may serve it here instead.
    pub(crate) async fn send(
        &self,
        req: Request,
        region: &str,
        fallback_local: bool,
    ) -> Result<Response, Box<Request>> {
        let format = crate::middleware::format_for(req.uri().path());
        if self.routing == RegionRouting::FlyReplay {
            ::metrics::counter!(crate::metrics::REGION_SENT, "to" => region.to_owned(), "how" => "fly-replay").increment(1);
            let mut resp = ErrorResponse {
                format,
                error: ApiError::new(
                    ErrorKind::InvalidRequest,
                    "fly_replay",
                    format!("this request is served in region {region}; Fly.io's proxy replays it there"),
                ),
            }
            .into_response();
            *resp.status_mut() = StatusCode::CONFLICT;
            if let Ok(v) = HeaderValue::from_str(&format!("region={region}")) {
                resp.headers_mut()
                    .insert(HeaderName::from_static("fly-replay"), v);
            }
            return Ok(resp);
        }
        let Some(base) = self
            .urls
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, u)| u.clone())
        else {
            if fallback_local {
                return Err(Box::new(req));
            }
            return Ok(unavailable(
                format,
                region,
                "no URL is configured for it ([regions.urls])",
            ));
        };
        let websocket = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if websocket {
            // A WebSocket cannot be proxied here: tell the client where to connect.
            return Ok(misdirected(format, region));
        }
        let path = match req.uri().path_and_query() {
            Some(p) if p.as_str().starts_with('/') => p.as_str().to_owned(),
            // `OPTIONS *` and authority-form targets name no resource of another region.
            _ => return Ok(misdirected(format, region)),
        };
        let (parts, body) = req.into_parts();
        // Buffered (bounded by server.max_body_bytes and server.body_read_timeout_ms), so a
        // preferred pin can still be served here when its home region is down.
        let bytes = match tokio::time::timeout(
            self.body_read_timeout,
            axum::body::to_bytes(body, self.max_body_bytes),
        )
        .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return Ok(ErrorResponse {
                    format,
                    error: ApiError::new(
                        ErrorKind::PayloadTooLarge,
                        "request_too_large",
                        "the request body is larger than server.max_body_bytes, or the connection was cut while sending it",
                    ),
                }
                .into_response())
            }
            Err(_) => {
                return Ok(ErrorResponse {
                    format,
                    error: ApiError::new(
                        ErrorKind::RequestTimeout,
                        "body_timeout",
                        format!(
                            "the request body did not arrive within {} ms (server.body_read_timeout_ms)",
                            self.body_read_timeout.as_millis()
                        ),
                    ),
                }
                .into_response())
            }
        };
        let uri: Uri = match format!("{base}{path}").parse() {
            Ok(u) => u,
            Err(_) => return Ok(misdirected(format, region)),
        };
        let mut out = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .body(Body::from(bytes.clone()))
            .expect("a request from valid parts");
        let listed = connection_listed(&parts.headers);
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name)
                && name != header::HOST
                && name != header::EXPECT
                && !listed.contains(name)
            {
                out.headers_mut().append(name.clone(), value.clone());
            }
        }
        // The home region logs the request under the id the client sees.
        if let Some(crate::middleware::RequestId(id)) = parts.extensions.get() {
            if let Ok(v) = HeaderValue::from_str(id) {
                out.headers_mut()
                    .insert(HeaderName::from_static(crate::middleware::REQUEST_ID), v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.me) {
            out.headers_mut()
                .insert(HeaderName::from_static(FORWARDED_FROM), v);
        }
        match self.client.request(out).await {
            Ok(resp) => {
                ::metrics::counter!(crate::metrics::REGION_SENT, "to" => region.to_owned(), "how" => "forward").increment(1);
                let (mut parts, body) = resp.into_parts();
                for name in connection_listed(&parts.headers) {
                    parts.headers.remove(name);
                }
                parts.headers.retain_hop_by_hop();
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            Err(e) => {
                // No answer head came back (refused, reset, closed, timed out connecting): the
                // region counts as down. A preferred pin is served here instead.
                tracing::warn!(region, error = %e, connect = e.is_connect(), "Cannot reach the region");
                ::metrics::counter!(crate::metrics::REGION_SENT, "to" => region.to_owned(), "how" => "failed").increment(1);
                if fallback_local {
                    let req = Request::from_parts(parts, Body::from(bytes));
                    return Err(Box::new(req));
                }
                Ok(unavailable(format, region, "it cannot be reached"))
            }
        }
    }
}

trait RetainHopByHop {
    fn retain_hop_by_hop(&mut self);
}

impl RetainHopByHop for HeaderMap {
    /// Drops the hop-by-hop headers of a proxied answer (hyper frames the body itself).
    fn retain_hop_by_hop(&mut self) {
        let names: Vec<HeaderName> = self.keys().filter(|n| is_hop_by_hop(n)).cloned().collect();
        for n in names {
            self.remove(n);
        }
    }
}

/// The LLM gateway's paths (`/v1/…`), served in every region.
fn is_gateway_path(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1"
}

/// A write of the primary's state (agent API, admin), not an LLM call (which every region
/// serves).
fn is_state_write(path: &str, method: &Method) -> bool {
    !is_gateway_path(path) && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The headers a `Connection` header names: hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// 503: the region a request belongs to cannot be reached; it is not served elsewhere.
fn unavailable(format: agentd_providers::ApiFormat, region: &str, why: &str) -> Response {
    ErrorResponse {
        format,
        error: ApiError::new(
            ErrorKind::Unavailable,
            "region_unavailable",
            format!("this request belongs to region {region}, but {why}; it is not served in another region"),
        )
        .with_retry_after(Duration::from_secs(5)),
    }
    .into_response()
}

/// 421: the request belongs to another region and was already sent once.
pub(crate) fn misdirected(format: agentd_providers::ApiFormat, region: &str) -> Response {
    let mut resp = ErrorResponse {
        format,
        error: ApiError::new(
            ErrorKind::InvalidRequest,
            "wrong_region",
            format!("this request belongs to region {region} and is not served here; send it to {region}"),
        ),
    }
    .into_response();
    *resp.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    resp
}

/// Applies a decision: serve with `local`, or send the request away.
pub(crate) async fn dispatch<F, Fut>(
    regions: &Regions,
    decision: Decision,
    req: Request,
    local: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    match decision {
        Decision::Local => local(req).await,
        Decision::Misdirected { belongs_to } => {
            misdirected(crate::middleware::format_for(req.uri().path()), &belongs_to)
        }
        Decision::Lagging { region } => ErrorResponse {
            format: crate::middleware::format_for(req.uri().path()),
            error: ApiError::new(
                ErrorKind::Unavailable,
                "key_not_replicated",
                format!("this API key is new and region {region} does not know it yet (replication lag); retry in a moment"),
            )
            .with_retry_after(Duration::from_secs(1)),
        }
        .into_response(),
        Decision::Send {
            region,
            fallback_local,
        } => match regions.send(req, &region, fallback_local).await {
            Ok(resp) => resp,
            Err(req) => local(*req).await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentd_core::Residency;

    fn regions(me: &str) -> Regions {
        Regions {
            me: me.into(),
            primary: "cdg".into(),
            routing: RegionRouting::Forward,
            read_your_writes: Duration::from_secs(5),
            urls: vec![],
            pins: moka::future::Cache::builder().build(),
            client: Client::builder(TokioExecutor::new()).build(
                HttpsConnectorBuilder::new()
                    .with_provider_and_webpki_roots(std::sync::Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .unwrap()
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(HttpConnector::new()),
            ),
            max_body_bytes: 1024,
            body_read_timeout: Duration::from_secs(1),
            key_checks: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
            has_replica: true,
        }
    }

    fn pin(home: &str, residency: Residency) -> TenantPin {
        TenantPin {
            tenant: TenantId::new("t"),
            home_region: home.into(),
            residency,
            updated_at: chrono::Utc::now(),
        }
    }

    fn decide(
        r: &Regions,
        pin: Option<&TenantPin>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Decision {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        {
            let _ = method;
            r.decide(
                pin,
                &RequestFacts {
                    path,
                    headers: &map,
                },
            )
        }
    }

    fn send(region: &str, fallback_local: bool) -> Decision {
        Decision::Send {
            region: region.into(),
            fallback_local,
        }
    }

    #[test]
    fn pinned_tenants_go_home_and_are_never_served_elsewhere() {
        let nrt = pin("nrt", Residency::Strict);
        let cdg = regions("cdg");
        assert_eq!(
            decide(&cdg, Some(&nrt), Method::POST, "/v1/chat/completions", &[]),
            send("nrt", false)
        );
        assert_eq!(
            decide(&cdg, Some(&nrt), Method::GET, "/threads/x", &[]),
            send("nrt", false)
        );
        // Already forwarded once and still here: refused, not sent again (no loops).
        assert_eq!(
            decide(
                &cdg,
                Some(&nrt),
                Method::POST,
                "/v1/chat/completions",
                &[(FORWARDED_FROM, "sjc")]
            ),
            Decision::Misdirected {
                belongs_to: "nrt".into()
            }
        );
        assert_eq!(
            decide(
                &cdg,
                Some(&nrt),
                Method::POST,
                "/v1/chat/completions",
                &[(FLY_REPLAY_SRC, "region=sjc")]
            ),
            Decision::Misdirected {
                belongs_to: "nrt".into()
            }
        );
        assert_eq!(
            decide(
                &cdg,
                Some(&nrt),
                Method::GET,
                "/v1/models",
                &[(FLY_REPLAY_SRC, "instance=abc;region=nrt;t=1")]
            ),
            Decision::Lagging {
                region: "nrt".into()
            }
        );
        // Sent by its home region (a key it did not know yet): retry there, not 421.
        assert_eq!(
            decide(
                &cdg,
                Some(&nrt),
                Method::GET,
                "/v1/models",
                &[(FORWARDED_FROM, "nrt")]
            ),
            Decision::Lagging {
                region: "nrt".into()
            }
        );
        // At home: served.
        assert_eq!(
            decide(&regions("nrt"), Some(&nrt), Method::POST, "/threads", &[]),
            Decision::Local
        );
        // Preferred: sent home, served here if it was already sent.
        let pref = pin("sjc", Residency::Preferred);
        assert_eq!(
            decide(&cdg, Some(&pref), Method::POST, "/v1/messages", &[]),
            send("sjc", true)
        );
        assert_eq!(
            decide(
                &cdg,
                Some(&pref),
                Method::POST,
                "/v1/messages",
                &[(FORWARDED_FROM, "nrt")]
            ),
            Decision::Local
        );
    }

    #[test]
    fn unpinned_tenants_use_the_gateway_locally_and_the_primary_for_state() {
        let nrt = regions("nrt");
        assert_eq!(
            decide(&nrt, None, Method::POST, "/v1/chat/completions", &[]),
            Decision::Local
        );
        assert_eq!(
            decide(&nrt, None, Method::GET, "/v1/models", &[]),
            Decision::Local
        );
        assert_eq!(
            decide(&nrt, None, Method::POST, "/threads", &[]),
            send("cdg", false)
        );
        assert_eq!(
            decide(&nrt, None, Method::GET, "/threads/abc", &[]),
            send("cdg", false)
        );
        // Read-your-writes: a recent write sends even gateway calls to the primary.
        let later = (now_ms() + 3_000).to_string();
        let earlier = (now_ms() - 1).to_string();
        assert_eq!(
            decide(
                &nrt,
                None,
                Method::GET,
                "/v1/models",
                &[(PRIMARY_UNTIL, &later)]
            ),
            send("cdg", false)
        );
        assert_eq!(
            decide(
                &nrt,
                None,
                Method::GET,
                "/v1/models",
                &[(PRIMARY_UNTIL, &earlier)]
            ),
            Decision::Local
        );
        let cookie = format!("a=b; {PRIMARY_UNTIL}={later}");
        assert_eq!(
            decide(
                &nrt,
                None,
                Method::GET,
                "/v1/models",
                &[("cookie", &cookie)]
            ),
            send("cdg", false)
        );
        // The primary serves everything of unpinned tenants.
        assert_eq!(
            decide(&regions("cdg"), None, Method::POST, "/threads", &[]),
            Decision::Local
        );
    }

    #[test]
    fn only_state_writes_on_the_primary_open_the_read_your_writes_window() {
        let marked = |r: &Regions, path: &str, method: Method| {
            let mut resp = Response::new(Body::empty());
            r.mark_write(path, &method, &mut resp);
            resp.headers().contains_key(PRIMARY_UNTIL)
        };
        let cdg = regions("cdg");
        assert!(marked(&cdg, "/threads", Method::POST));
        assert!(marked(&cdg, "/admin/tenants/acme", Method::PUT));
        assert!(!marked(&cdg, "/threads", Method::GET));
        // LLM calls are served in every region: they must not pin a client to the primary.
        assert!(!marked(&cdg, "/v1/chat/completions", Method::POST));
        assert!(!marked(&regions("nrt"), "/threads", Method::POST));
    }

    #[test]
    fn admin_goes_to_the_primary_but_local_queues_stay() {
        let nrt = regions("nrt");
        let facts = |path| (path, Method::GET, HeaderMap::new());
        for (path, want) in [
            ("/admin/keys", send("cdg", false)),
            ("/admin/tenants/acme", send("cdg", false)),
            ("/admin/queues", Decision::Local),
            ("/admin/pools", Decision::Local),
            ("/admin/spend", Decision::Local),
            ("/admin/breakers", Decision::Local),
        ] {
            let (p, m, h) = facts(path);
            let _ = m;
            assert_eq!(
                nrt.decide_admin(&RequestFacts {
                    path: p,
                    headers: &h
                }),
                want,
                "{path}"
            );
        }
    }
}
