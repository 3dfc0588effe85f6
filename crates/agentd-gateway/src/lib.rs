//! The gateway role: the OpenAI- and Anthropic-compatible HTTP API in front of the providers,
//! the admin API, and the operational endpoints (`/healthz`, `/readyz`, `/metrics`).
//!
//! The one decision to know: handlers are thin. They read and validate the body, pick a
//! deployment from [`models::Models`] and hand the call to an `agentd_providers::Provider`, which
//! answers in the client's API format whatever the upstream speaks. Cross-cutting concerns
//! (request ids, access log, metrics, auth) are middleware in `middleware.rs`, applied in the
//! order STYLE.md gives.

pub mod body;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod models;
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
}

impl AppState {
    pub fn new(config: Arc<Config>, store: Arc<Store>) -> anyhow::Result<Arc<AppState>> {
        // The recorder first: the models table resolves its metric handles against it.
        let metrics = metrics::handle();
        let models = models::Models::from_config(&config)
            .map_err(|e| anyhow::anyhow!("cannot set up providers: {e}"))?;
        Ok(Arc::new(AppState {
            keys: keys::KeyCache::new(config.auth.key_cache_ttl),
            models,
            metrics,
            http_metrics: metrics::HttpMetrics::default(),
            in_flight: ::metrics::gauge!(metrics::HTTP_INFLIGHT),
            draining: AtomicBool::new(false),
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::require_admin,
        ));
    let ops = Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics));
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
    state.store.close().await;
    info!("Stopped");
    result
}
