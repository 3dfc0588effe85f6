//! `agentd serve`: load the config, open the store, serve until SIGTERM, drain.

use super::ConfigArgs;
use agentd_config::{Config, LogFormat};
use agentd_gateway::AppState;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{info, warn};

#[derive(Args)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on (default 127.0.0.1:8080; env AGENTD_LISTEN).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// What this process runs: `all` (API and workers, the default), `api` (the HTTP API
    /// only; runs are executed by worker processes) or `worker` (claims and executes runs).
    #[arg(long, value_name = "ROLE", default_value = "all", env = "AGENTD_ROLE", value_parser = ["all", "api", "worker"])]
    role: String,
    /// Worker pools this process works for, comma-separated (default: every pool). One
    /// deployment per pool lets each scale on its own queue.
    #[arg(
        long,
        value_name = "POOLS",
        env = "AGENTD_POOLS",
        value_delimiter = ','
    )]
    pools: Option<Vec<String>>,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn describe(config: &Config) {
    let models: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
    let providers: Vec<String> = config
        .providers
        .iter()
        .map(|p| format!("{} ({})", p.name, p.kind))
        .collect();
    info!(providers = %providers.join(", "), models = %models.join(", "), "Providers and models");
    let only_mock = config
        .providers
        .iter()
        .all(|p| p.kind == agentd_config::ProviderKind::Mock);
    if config.is_default() && only_mock {
        warn!("No provider key in the environment: serving only the built-in mock models (mock, mock-embedding). Set OPENAI_API_KEY and/or ANTHROPIC_API_KEY, or pass -c agentd.toml with [providers.*] and [models.*] (see README), to add real providers");
    }
    // A deployment without a price is free as far as budgets know: say so once, loudly, when
    // budgets are on (mock deployments are free by nature).
    if !config.budgets.limits.is_empty() || config.budgets.max_request.is_some() {
        for m in &config.models {
            for d in &m.deployments {
                let is_mock = config
                    .provider(&d.provider)
                    .is_some_and(|p| p.kind == agentd_config::ProviderKind::Mock);
                if d.price.is_none() && !is_mock {
                    warn!(model = %m.name, provider = %d.provider, upstream_model = %d.model, "No price known for this deployment: budgets count it as free. Add [prices.\"{}\"] input/output (US$ per million tokens)", d.model);
                }
            }
        }
    }
    info!(
        counters = match &config.counters {
            agentd_config::CountersConfig::Memory => "memory",
            agentd_config::CountersConfig::Redis { .. } => "redis",
        },
        budgets = config.budgets.limits.len(),
        rate_limits = config.rate_limits.any(),
        cache = match &config.cache.backend {
            None => "off",
            Some(agentd_config::CacheBackend::Memory { .. }) => "memory",
            Some(agentd_config::CacheBackend::Redis { .. }) => "redis",
        },
        ledger = config.ledger.enabled,
        "Cost control"
    );
    let regions = &config.regions;
    if regions.list.len() > 1 {
        info!(
            region = config.server.region.as_deref().unwrap_or("-"),
            primary = regions.primary.as_deref().unwrap_or("-"),
            regions = %regions.list.join(","),
            routing = regions.routing.as_str(),
            "Regions"
        );
        if config.server.region != regions.primary && config.store_replica.is_none() {
            warn!("This region is not the primary and store.replica_url is unset: API keys and tenant home regions are read from store.url, which must then be the primary's database (or a replica of it), else no key is found here");
        }
    }
    if config.auth.admin_key.is_none() {
        info!("Admin API disabled (set AGENTD_ADMIN_KEY to enable /admin); create keys with 'agentd keys create --name NAME'");
    }
}

pub(super) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = match args.config.load(args.listen) {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    init_tracing(config.server.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Arc::new(super::keys::open_store(&config).await?);
        match &config.store {
            agentd_config::StoreConfig::Sqlite { path } => info!(path = %path.display(), "Store: SQLite"),
            agentd_config::StoreConfig::Postgres { .. } => info!("Store: PostgreSQL"),
        }
        describe(&config);
        let state = AppState::new(config.clone(), store).await?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
        info!(addr = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), region = config.server.region.as_deref().unwrap_or("-"), "agentd listening");
        let role = agentd_runtime::Role::parse(&args.role).unwrap_or(agentd_runtime::Role::All);
        let pools = args
            .pools
            .map(|p| p.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<Vec<_>>())
            .filter(|p| !p.is_empty());
        let runtime = agentd_runtime::Runtime::start_with(state.clone(), role, pools).await?;
        info!(role = %args.role, agents = runtime.agents().len(), queue = %config.queue.backend.kind(), "Agent runtime");
        let mut api = agentd_runtime::api::admin_router(runtime.clone());
        if role.serves_api() {
            // /openapi.json describes the agent API only where it is served.
            state.set_extra_openapi(agentd_runtime::api::openapi());
            api = api.merge(agentd_runtime::api::router(runtime.clone()));
        }
        let rt = runtime.clone();
        let on_signal = runtime.clone();
        let shutdown = async move {
            shutdown_signal().await;
            on_signal.begin_stop();
        };
        agentd_gateway::serve_with(listener, state, api, shutdown, async move {
            rt.stop().await;
        })
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
