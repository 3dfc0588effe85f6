//! The gateway role: the OpenAI- and Anthropic-compatible HTTP API in front of the providers,
//! the admin API, and the operational endpoints (`/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`).
//!
//! The one decision to know: handlers are thin. They read and validate the body, pick a
//! deployment from [`models::Models`] and hand the call to an `agentd_providers::Provider`, which
//! answers in the client's API format whatever the upstream speaks. Cross-cutting concerns
//! (request ids, access log, metrics, auth) are middleware in `middleware.rs`, applied in the
//! order STYLE.md gives.

pub mod admission;
pub mod alerts;
pub mod body;
pub mod cache;
pub mod dispatch;
pub mod error;
pub mod health;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod middleware;
pub mod models;
pub mod openapi;
pub mod routes;

use agentd_config::Config;
use agentd_store::Store;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Everything a request handler may need, built once at start-up.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub models: models::Models,
    pub keys: keys::KeyCache,
    pub metrics: PrometheusHandle,
    pub http_metrics: metrics::HttpMetrics,
    pub in_flight: ::metrics::Gauge,
    /// Set when SIGTERM arrived: `/readyz` fails so load balancers stop sending work.
    pub draining: AtomicBool,
    /// Budgets and rate limits; `None` when neither is configured (nothing to check).
    pub controls: Option<Arc<admission::Controls>>,
    /// The response cache; `None` when disabled.
    pub cache: Option<Arc<cache::Cache>>,
    pub ledger: Arc<ledger::Ledger>,
    pub alerts: Arc<alerts::Alerts>,
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
        let controls = if needs_counters {
            let counters: Arc<dyn agentd_core::Counters> = match &config.counters {
                CountersConfig::Memory => Arc::new(agentd_counters::MemoryCounters::new()),
                CountersConfig::Redis { url, prefix } => Arc::new(
                    agentd_counters::RedisCounters::connect(url.expose(), prefix)
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "cannot connect to the counters' Redis (counters.url): {e}"
                            )
                        })?,
                ),
            };
            Some(admission::Controls::new(
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
                    CacheBackend::Redis { url, prefix } => Arc::new(
                        agentd_counters::RedisCache::connect(url.expose(), prefix)
                            .await
                            .map_err(|e| {
                                anyhow::anyhow!(
                                    "cannot connect to the cache's Redis (cache.url): {e}"
                                )
                            })?,
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
        Ok(Arc::new(AppState {
            keys: keys::KeyCache::new(config.auth.key_cache_ttl),
            models,
            metrics,
            http_metrics: metrics::HttpMetrics::default(),
            in_flight: ::metrics::gauge!(metrics::HTTP_INFLIGHT),
            draining: AtomicBool::new(false),
            controls,
            cache,
            ledger,
            alerts,
            config,
            store,
        }))
    }
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/v1/chat/completions",
            post(routes::openai::chat_completions),
        )
        .route("/v1/embeddings", post(routes::openai::embeddings))
        .route("/v1/models", get(routes::openai::list_models))
        .route("/v1/models/{*id}", get(routes::openai::get_model))
        .route("/v1/messages", post(routes::anthropic::messages))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_key,
        ));
    let admin = Router::new()
        .route(
            "/admin/keys",
            post(routes::admin::create_key).get(routes::admin::list_keys),
        )
        .route(
            "/admin/keys/{id}",
            get(routes::admin::get_key).delete(routes::admin::revoke_key),
        )
        .route("/admin/spend", get(routes::control::spend))
        .route("/admin/breakers", get(routes::control::breakers))
        .route("/admin/budgets", get(routes::control::budgets))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_admin,
        ));
    let ops = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .route("/openapi.json", get(routes::ops::openapi_json));
    Router::new()
        .merge(api)
        .merge(admin)
        .merge(ops)
        .fallback(routes::ops::not_found)
        .method_not_allowed_fallback(routes::ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::observe,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            middleware::panic_response,
        ))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains: stops accepting, lets in-flight requests and
/// streams finish for up to `server.shutdown_grace`, then returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let grace = state.config.server.shutdown_grace;
    let drain_started = Arc::new(tokio::sync::Notify::new());
    let notify = drain_started.clone();
    let draining_state = state.clone();
    let listener = listener.tap_io(|tcp| {
        // Nagle would hold back every small SSE event for up to 40 ms.
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        shutdown.await;
        draining_state.draining.store(true, Ordering::SeqCst);
        info!(
            grace_ms = grace.as_millis() as u64,
            "Draining: refusing new connections, finishing in-flight requests"
        );
        notify.notify_one();
    });
    let result = tokio::select! {
        r = server => r,
        _ = async { drain_started.notified().await; tokio::time::sleep(grace).await } => {
            warn!("Grace period over; closing the connections still open");
            Ok(())
        }
    };
    // Settlements and alerts first (they may queue ledger rows), then the ledger's last rows.
    state.alerts.wait().await;
    state.ledger.close().await;
    state.store.close().await;
    info!("Stopped");
    result
}
