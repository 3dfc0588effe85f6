//! The agent runtime: agents declared in config, threads and runs that survive crashes, the
//! agent loop (model → tools → journal → events), tools, workers and pools, the task router,
//! and the LangGraph-compatible HTTP API.
//!
//! The one decision to know: the run row in the store is the truth (see
//! `agentd_core::runs`); queues only wake workers up, and every write of a worker is fenced by
//! the lease epoch it claimed the run with.

pub mod child;
pub mod cron;
pub mod engine;
pub mod hub;
pub mod messages;
pub mod metrics;
pub mod runtime;
pub mod tools;
pub mod webhook;
pub mod worker;

pub mod api;

pub use runtime::{Role, Runtime};

use agentd_config::QueueBackend;
use agentd_core::WorkQueue;
use agentd_gateway::AppState;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

impl Runtime {
    /// Builds the runtime on the gateway's state (store, config) and connects its queue; then
    /// starts what `role` runs (workers, reaper, sweeper, crons).
    pub async fn start(gw: Arc<AppState>, role: Role) -> anyhow::Result<Arc<Runtime>> {
        Self::start_with(gw, role, None).await
    }

    /// [`Runtime::start`], with the worker loops limited to `pools` (`agentd serve --pools`):
    /// one deployment per pool, each scaled on its own queue.
    pub async fn start_with(
        gw: Arc<AppState>,
        role: Role,
        pools: Option<Vec<String>>,
    ) -> anyhow::Result<Arc<Runtime>> {
        let config = gw.config().clone();
        if let Some(pools) = &pools {
            for name in pools {
                if !config.pools.iter().any(|p| &p.name == name) {
                    let known: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
                    anyhow::bail!(
                        "--pools names an unknown pool \"{name}\" (the config has: {})",
                        known.join(", ")
                    );
                }
            }
        }
        let store = gw.store().clone();
        let queue: Arc<dyn WorkQueue> = match &config.queue.backend {
            QueueBackend::Store => Arc::new(agentd_queue::StoreQueue::new(store.clone())),
            #[cfg(feature = "redis")]
            QueueBackend::Redis { url, prefix } => Arc::new(
                agentd_queue::RedisQueue::connect(url.expose(), prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to the queue's Redis (queue.url): {e}"))?,
            ),
            #[cfg(not(feature = "redis"))]
            QueueBackend::Redis { .. } => anyhow::bail!(
                "this agentd was built without Redis support (cargo feature `redis`); use queue.kind = \"store\""
            ),
            #[cfg(feature = "nats")]
            QueueBackend::Nats { url, prefix } => Arc::new(
                agentd_queue::NatsQueue::connect(url.expose(), prefix)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to the queue's NATS (queue.url): {e}"))?,
            ),
            #[cfg(not(feature = "nats"))]
            QueueBackend::Nats { .. } => anyhow::bail!(
                "this agentd was built without NATS support (cargo feature `nats`); use queue.kind = \"store\""
            ),
        };
        // One process owns every run only with the embedded SQLite store: otherwise streams also
        // poll the store for runs executing on other replicas.
        let single = role == Role::All && store.backend() == "sqlite";
        let poll = (!single).then(|| std::time::Duration::from_millis(200));
        let settings = runtime::Settings {
            lease: config.queue.lease,
            reap_interval: config.queue.reap_interval,
            max_deliveries: config.queue.max_deliveries,
            event_retention: config.runtime.event_retention,
            run_retention: config.runtime.run_retention,
            thread_ttl: config.runtime.thread_ttl,
            sweep_interval: config.runtime.sweep_interval,
            keepalive: config.runtime.keepalive,
            ws_send_buffer: config.runtime.ws_send_buffer,
            max_stream_clients: config.runtime.max_stream_clients,
        };
        let owner = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "agentd".into()),
            std::process::id(),
            rand::random::<u32>()
        );
        let rt = Arc::new(Runtime {
            agents: runtime::build_agents(&config),
            tools: tools::Tools::new(),
            hub: hub::Hub::new(poll),
            settings,
            queue,
            store,
            owner,
            role,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            stream_clients: Default::default(),
            worker_pools: pools,
            pool_activity: Default::default(),
            config,
            gw,
        });
        worker::start(&rt);
        Ok(rt)
    }

    /// SIGTERM arrived: stop claiming new runs (runs in flight go on).
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Stops claiming work and waits (up to the drain grace) for runs in flight; runs still
    /// executing after that are left to their lease: another worker resumes them.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        let grace = self.config.server.shutdown_grace;
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}
