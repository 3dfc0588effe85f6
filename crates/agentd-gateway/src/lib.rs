//! The gateway role: the OpenAI- and Anthropic-compatible HTTP API in front of the providers,
//! the admin API, and the operational endpoints (`/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`).
//!
//! The one decision to know: handlers are thin. They read and validate the body, pick a
//! deployment from [`models::Models`] and hand the call to an `agentd_providers::Provider`, which
//! answers in the client's API format whatever the upstream speaks. Cross-cutting concerns
//! (request ids, access log, metrics, load shedding, request timeout, auth) are middleware in
//! `middleware.rs`, applied in the order STYLE.md gives; connection-level limits (slow headers
//! and bodies, idle connections, connection count) are in `server.rs`, our accept loop.
//!
//! Authentication is deny-by-default: one layer over the whole router requires an API key for
//! every path except `middleware::PUBLIC_PATHS` (and the admin key under `/admin`), so a route
//! added without thought is protected, and an unknown path answers 401 to a caller without a key.

pub(crate) mod admission;
pub(crate) mod alerts;
pub(crate) mod body;
pub(crate) mod cache;
pub(crate) mod call;
pub(crate) mod dispatch;
pub(crate) mod error;
pub mod keys;
pub(crate) mod ledger;
pub(crate) mod metrics;
pub(crate) mod middleware;
pub mod model_call;
pub(crate) mod models;
pub(crate) mod openapi;
pub(crate) mod region;
pub(crate) mod resilience;
pub mod routes;
pub(crate) mod server;
pub(crate) mod stream;

use agentd_config::Config;
use agentd_store::Store;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::info;

/// Everything a request handler may need, built once at start-up.
pub struct AppState {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<Store>,
    pub(crate) models: models::Models,
    pub(crate) keys: keys::KeyCache,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) http_metrics: metrics::HttpMetrics,
    pub(crate) in_flight: ::metrics::Gauge,
    /// Set when SIGTERM arrived: `/readyz` fails so load balancers stop sending work.
    pub(crate) draining: AtomicBool,
    /// Budgets and rate limits; `None` when neither is configured (nothing to check).
    pub(crate) gate: Option<Arc<admission::Gatekeeper>>,
    /// The response cache; `None` when disabled.
    pub(crate) cache: Option<Arc<cache::Cache>>,
    pub(crate) ledger: Arc<ledger::Ledger>,
    pub(crate) alerts: Arc<alerts::Alerts>,
    /// Slots for requests in flight (`server.max_concurrent_requests`); `None`: no limit.
    pub(crate) concurrency: Option<Arc<Semaphore>>,
    /// The served `/openapi.json` when routes were added ([`AppState::set_extra_openapi`]).
    pub(crate) openapi: std::sync::OnceLock<bytes::Bytes>,
    /// Where API keys and tenant home regions are read: `store.replica_url` when set, else
    /// the store.
    pub(crate) directory: Arc<Store>,
    /// Routing between regions; `None` in a one-region deployment.
    pub(crate) regions: Option<region::Regions>,
    /// `agentd-region` on every response, when the region is known.
    pub(crate) region_header: Option<axum::http::HeaderValue>,
}

impl AppState {
    /// Builds the state, connecting to the counter and cache backends (Redis) when configured.
    pub async fn new(config: Arc<Config>, store: Arc<Store>) -> anyhow::Result<Arc<AppState>> {
        use agentd_config::{CacheBackend, CountersConfig};
        // The recorder first: the models table resolves its metric handles against it.
        let metrics = metrics::handle();
        let models = models::Models::from_config(&config)
            .map_err(|e| anyhow::anyhow!("cannot set up providers: {e}"))?;
        let alerts = Arc::new(alerts::Alerts::new(config.budgets.alert_webhook.clone()));
        let needs_counters = !config.budgets.limits.is_empty()
            || config.budgets.max_request.is_some()
            || config.rate_limits.any();
        let gate = if needs_counters {
            let counters: Arc<dyn agentd_core::Counters> = match &config.counters {
                CountersConfig::Memory => Arc::new(agentd_counters::MemoryCounters::new()),
                #[cfg(feature = "redis")]
                CountersConfig::Redis { url, prefix } => Arc::new(
                    agentd_counters::RedisCounters::connect(url.expose(), prefix)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "cannot connect to the counters' Redis (counters.url): {e}"
                            )
                        })?,
                ),
                #[cfg(not(feature = "redis"))]
                CountersConfig::Redis { .. } => anyhow::bail!(
                    "this agentd was built without Redis support (cargo feature `redis`); use counters.kind = \"memory\" or rebuild with it"
                ),
            };
            Some(admission::Gatekeeper::new(
                counters,
                &config.budgets,
                config.rate_limits,
                store.clone(),
                alerts.clone(),
            ))
        } else {
            None
        };
        let cache = match &config.cache.backend {
            None => None,
            Some(backend) => {
                let store: Arc<dyn agentd_core::ResponseCache> = match backend {
                    CacheBackend::Memory { max_bytes } => {
                        Arc::new(agentd_counters::MemoryCache::new(*max_bytes))
                    }
                    #[cfg(feature = "redis")]
                    CacheBackend::Redis { url, prefix } => Arc::new(
                        agentd_counters::RedisCache::connect(url.expose(), prefix)
                            .await
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    "cannot connect to the cache's Redis (cache.url): {e}"
                                )
                            })?,
                    ),
                    #[cfg(not(feature = "redis"))]
                    CacheBackend::Redis { .. } => anyhow::bail!(
                        "this agentd was built without Redis support (cargo feature `redis`); use cache.kind = \"memory\" or rebuild with it"
                    ),
                };
                Some(Arc::new(cache::Cache {
                    store,
                    max_entry_bytes: config.cache.max_entry_bytes,
                    chat_ttl: config.cache.chat_ttl,
                    embeddings_ttl: config.cache.embeddings_ttl,
                }))
            }
        };
        let ledger = ledger::Ledger::start(store.clone(), &config.ledger);
        let directory = match &config.store_replica {
            None => store.clone(),
            #[cfg(feature = "postgres")]
            Some(url) => {
                let max = match &config.store {
                    agentd_config::StoreConfig::Postgres { max_connections, .. } => *max_connections,
                    agentd_config::StoreConfig::Sqlite { .. } => 4,
                };
                Arc::new(
                    Store::open_postgres_replica(url.expose(), max)
                        .await
                        .map_err(|e| anyhow::anyhow!("cannot connect to the read replica (store.replica_url): {e}"))?,
                )
            }
            #[cfg(not(feature = "postgres"))]
            Some(_) => anyhow::bail!(
                "this agentd was built without PostgreSQL support (cargo feature `postgres`); remove store.replica_url"
            ),
        };
        let region_label = config
            .server
            .region
            .clone()
            .unwrap_or_else(|| "-".to_owned());
        ::metrics::gauge!(
            metrics::INSTANCE_INFO,
            "region" => region_label,
            "primary_region" => config.regions.primary.clone().unwrap_or_else(|| "-".to_owned()),
            "version" => env!("CARGO_PKG_VERSION")
        )
        .set(1.0);
        Ok(Arc::new(AppState {
            directory,
            regions: region::Regions::from_config(&config),
            region_header: config
                .server
                .region
                .as_deref()
                .and_then(|r| axum::http::HeaderValue::from_str(r).ok()),
            keys: keys::KeyCache::new(config.auth.key_cache_ttl),
            models,
            metrics,
            http_metrics: metrics::HttpMetrics::default(),
            in_flight: ::metrics::gauge!(metrics::HTTP_INFLIGHT),
            draining: AtomicBool::new(false),
            gate,
            cache,
            ledger,
            alerts,
            concurrency: config
                .server
                .max_concurrent_requests
                .map(|n| Arc::new(Semaphore::new(n))),
            openapi: std::sync::OnceLock::new(),
            config,
            store,
        }))
    }
}

impl AppState {
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Whether this instance may serve and store `tenant`'s work: always in a one-region
    /// deployment; else in its home region, or, without one, in the primary region.
    pub async fn serves_tenant_here(
        &self,
        tenant: &agentd_core::TenantId,
    ) -> Result<bool, agentd_core::StoreError> {
        let Some(regions) = &self.regions else {
            return Ok(true);
        };
        let pin = regions.pin(self.directory.as_ref(), tenant).await?;
        Ok(match pin {
            Some(pin) => regions.is_home(&pin.home_region),
            None => regions.is_primary(),
        })
    }

    /// SIGTERM arrived: stop taking new work.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The task tracker drain waits for (calls, alerts); the runtime's tasks join it.
    pub fn tracker(&self) -> &tokio_util::task::TaskTracker {
        self.alerts.tracker()
    }

    /// Adds the description of the routes given to [`router_with`] to `/openapi.json`. Call it
    /// once, before serving; a later call is ignored (the document is built once).
    pub fn set_extra_openapi(&self, doc: utoipa::openapi::OpenApi) {
        let _ = self.openapi.set(openapi::document_with(doc));
    }
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The HTTP application with more routes (the agent runtime's API), which get the same
/// middleware: request ids, access log, metrics, load shedding, timeouts and deny-by-default
/// authentication (handlers find the caller's `keys::Principal` in the request extensions).
pub fn router_with(state: Arc<AppState>, extra: Router) -> Router {
    let api = Router::new()
        .route(
            "/v1/chat/completions",
            post(routes::openai::chat_completions),
        )
        .route("/v1/embeddings", post(routes::openai::embeddings))
        .route("/v1/models", get(routes::openai::list_models))
        .route("/v1/models/{*id}", get(routes::openai::get_model))
        .route("/v1/messages", post(routes::anthropic::messages));
    let admin = Router::new()
        .route(
            "/admin/keys",
            post(routes::admin::create_key).get(routes::admin::list_keys),
        )
        .route(
            "/admin/keys/{id}",
            get(routes::admin::get_key).delete(routes::admin::revoke_key),
        )
        .route("/admin/tenants", get(routes::tenants::list))
        .route(
            "/admin/tenants/{tenant}",
            get(routes::tenants::get)
                .put(routes::tenants::set)
                .delete(routes::tenants::delete),
        )
        .route("/admin/spend", get(routes::reports::spend))
        .route("/admin/breakers", get(routes::reports::breakers))
        .route("/admin/budgets", get(routes::reports::budgets));
    let ops = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .route("/openapi.json", get(routes::ops::openapi_json));
    // Layers apply to every route and to the fallbacks; the last added runs first.
    Router::new()
        .merge(api)
        .merge(admin)
        .merge(ops)
        .with_state(state.clone())
        .merge(extra)
        .fallback(routes::ops::not_found)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
}

/// Serves until `shutdown` resolves, then drains: stops accepting, fails `/readyz`, lets
/// in-flight requests and streams finish for up to `server.shutdown_grace`, then returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), shutdown, async {}).await
}

/// [`serve`] with more routes (see [`router_with`]); `before_close` runs after the requests
/// drained and before the ledger and store close (the runtime stops its workers there).
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<AppState>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    before_close: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let server = &state.config.server;
    let grace = server.shutdown_grace;
    let limits = server::Limits::from_config(server);
    let draining = state.clone();
    server::run(
        listener,
        router_with(state.clone(), extra),
        limits,
        grace,
        shutdown,
        move || {
            draining.draining.store(true, Ordering::SeqCst);
            info!(
                grace_ms = grace.as_millis() as u64,
                "Draining: refusing new connections, finishing in-flight requests"
            );
        },
    )
    .await;
    before_close.await;
    // Settlements and alerts first (they may queue ledger rows), then the ledger's last rows.
    state.alerts.wait().await;
    state.ledger.close().await;
    state.store.close().await;
    info!("Stopped");
    Ok(())
}
