//! The runtime object: agents, the store, the queue, the hub; creating runs (shared by the API
//! and the cron scheduler) and placing them on a stream (the task router).

use crate::hub::Hub;
use crate::tools::{Tool, ToolSpec, Tools};
use agentd_config::{AgentConfig, Config, ToolKind};
use agentd_core::{
    CreateRun, Micros, MultitaskStrategy, NewEvent, Priority, Run, RunStatus, RunStore, StoreError,
    TenantId, Thread, ThreadStatus, Ticket, WorkQueue,
};
use agentd_gateway::AppState;
use agentd_store::Store;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Which parts of the runtime this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// API and workers in one process (the default).
    All,
    /// The HTTP API only: runs are executed by worker processes.
    Api,
    /// Workers only (and the operational endpoints).
    Worker,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "all" => Role::All,
            "api" => Role::Api,
            "worker" => Role::Worker,
            _ => return None,
        })
    }

    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    pub fn runs_workers(self) -> bool {
        match self {
            Role::All | Role::Worker => true,
            Role::Api => false,
        }
    }

    pub fn serves_api(self) -> bool {
        match self {
            Role::All | Role::Api => true,
            Role::Worker => false,
        }
    }
}

/// The LangGraph namespace for per-graph "system" assistant ids.
const ASSISTANT_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6ba7b821_9dad_11d1_80b4_00c04fd430c8);

/// An agent as the runtime uses it.
pub struct Agent {
    pub config: AgentConfig,
    /// `uuid5(6ba7b821-…, name)`: the id LangGraph gives a graph's system assistant.
    pub assistant_id: String,
    pub tools: Vec<Arc<Tool>>,
}

impl Agent {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn tool(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tools.iter().find(|t| t.name == name)
    }
}

pub fn assistant_id(name: &str) -> String {
    uuid::Uuid::new_v5(&ASSISTANT_NAMESPACE, name.as_bytes()).to_string()
}

/// Settings from `[queue]` and `[runtime]`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub lease: Duration,
    pub reap_interval: Duration,
    pub max_deliveries: u32,
    pub event_retention: Duration,
    pub run_retention: Duration,
    pub thread_ttl: Option<Duration>,
    pub sweep_interval: Duration,
    pub keepalive: Duration,
    pub ws_send_buffer: usize,
    pub max_stream_clients: usize,
}

pub struct Runtime {
    pub(crate) gw: Arc<AppState>,
    pub(crate) store: Arc<Store>,
    pub(crate) queue: Arc<dyn WorkQueue>,
    pub(crate) agents: Vec<Arc<Agent>>,
    pub(crate) tools: Tools,
    pub(crate) hub: Hub,
    pub(crate) settings: Settings,
    pub(crate) config: Arc<Config>,
    /// This process's name as a lease owner and queue consumer.
    pub(crate) owner: String,
    pub(crate) role: Role,
    /// Cancelled at shutdown: workers stop claiming.
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) stream_clients: std::sync::atomic::AtomicUsize,
    /// The pools this process works for (`--pools`); `None`: all of them.
    pub(crate) worker_pools: Option<Vec<String>>,
    /// When each pool last had queued or running work (for the idle shutdown).
    pub(crate) pool_activity:
        std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// Why a run could not be created.
#[derive(Debug)]
pub enum CreateError {
    /// `multitask_strategy = reject` and the thread is busy.
    Busy,
    NoThread,
    Store(StoreError),
    Queue(String),
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> Self {
        CreateError::Store(e)
    }
}

/// Where a new run goes.
pub enum ThreadChoice {
    /// An existing thread (`if_not_exists = create`: made when absent).
    Thread { id: String, create: bool },
    /// A stateless run: a temporary thread, swept after it ends.
    Stateless,
}

/// A run to create, validated by the caller.
pub struct NewRun {
    pub tenant: TenantId,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub agent: Arc<Agent>,
    pub thread: ThreadChoice,
    /// Input messages, already in LangChain shape with ids.
    pub input: Vec<Value>,
    /// What the client asked for (stream modes, config, webhook, …), kept on the run.
    pub kwargs: Value,
    pub metadata: Value,
    pub strategy: MultitaskStrategy,
    pub after: Duration,
    /// For the task router.
    pub tag: Option<String>,
    pub tier: Option<String>,
    pub input_bytes: usize,
    pub parent_run_id: Option<String>,
}

/// How long the temporary thread of a stateless run is kept after it was made.
const STATELESS_THREAD_TTL_MINUTES: i64 = 10;

pub(crate) fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

impl Runtime {
    pub fn agent(&self, id_or_name: &str) -> Option<&Arc<Agent>> {
        self.agents
            .iter()
            .find(|a| a.config.name == id_or_name || a.assistant_id == id_or_name)
    }

    pub fn agents(&self) -> &[Arc<Agent>] {
        &self.agents
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The queue stream of a pool and priority.
    pub(crate) fn stream_name(pool: &str, priority: Priority) -> String {
        format!("{pool}.{}", priority.as_str())
    }

    /// The task router: the first `[[task_routes]]` rule that matches places the run;
    /// otherwise the agent's own pool and priority.
    pub(crate) fn place(&self, run: &NewRun, estimated_tokens: u64) -> (String, Priority) {
        for rule in &self.config.task_routes {
            if rule.matches(
                run.agent.name(),
                run.tag.as_deref(),
                run.tier.as_deref(),
                estimated_tokens,
                run.input_bytes as u64,
            ) {
                return (
                    rule.pool.clone(),
                    rule.priority.unwrap_or(run.agent.config.priority),
                );
            }
        }
        (run.agent.config.pool.clone(), run.agent.config.priority)
    }

    /// Creates a run (and a thread when asked), applies the multitask strategy, enqueues it.
    pub async fn create_run(&self, new: NewRun) -> Result<Run, CreateError> {
        let now = now_ms();
        let thread_id = match &new.thread {
            ThreadChoice::Thread { id, create } => {
                if *create && self.store.get_thread(&new.tenant, id).await?.is_none() {
                    let thread = self.new_thread(&new.tenant, id.clone(), json!({}), None);
                    // Made by a concurrent request meanwhile: fine, create_run checks tenancy.
                    self.store.create_thread(&thread).await?;
                }
                id.clone()
            }
            ThreadChoice::Stateless => {
                let id = uuid::Uuid::new_v4().to_string();
                let thread = self.new_thread(
                    &new.tenant,
                    id.clone(),
                    json!({"graph_id": new.agent.name(), "stateless": true}),
                    Some(STATELESS_THREAD_TTL_MINUTES),
                );
                self.store.create_thread(&thread).await?;
                id
            }
        };
        let estimated_tokens = (new.input_bytes / 4) as u64;
        let (pool, priority) = self.place(&new, estimated_tokens);
        let run_id = uuid::Uuid::new_v4().to_string();
        let run = Run {
            run_id: run_id.clone(),
            thread_id,
            tenant: new.tenant.clone(),
            assistant_id: new.agent.assistant_id.clone(),
            agent: new.agent.name().to_owned(),
            status: RunStatus::Pending,
            created_at: now,
            updated_at: now,
            metadata: new.metadata,
            kwargs: {
                let mut k = new.kwargs;
                k["input"] = json!({"messages": new.input});
                k
            },
            multitask_strategy: new.strategy,
            priority,
            stream: pool,
            not_before: now + chrono::Duration::from_std(new.after).unwrap_or_default(),
            lease_owner: None,
            lease_epoch: 0,
            lease_expires_at: None,
            attempt: 0,
            error: None,
            cancel: None,
            key_id: new.key_id,
            user_id: new.user_id,
            parent_run_id: new.parent_run_id,
            ephemeral_thread: false,
            enqueued_at: now,
        };
        let first = [NewEvent {
            event: "metadata".into(),
            data: json!({"run_id": run_id, "attempt": 1}).to_string(),
        }];
        match self.store.create_run(&run, &first).await? {
            CreateRun::Busy => return Err(CreateError::Busy),
            CreateRun::NoThread => return Err(CreateError::NoThread),
            CreateRun::Created { cancelled } => {
                for id in cancelled {
                    self.hub.cancel(&id);
                    crate::metrics::cancel_requested();
                }
            }
        }
        self.enqueue(&run).await?;
        crate::metrics::run_created(&run.agent);
        Ok(run)
    }

    pub(crate) fn new_thread(
        &self,
        tenant: &TenantId,
        id: String,
        metadata: Value,
        ttl_minutes: Option<i64>,
    ) -> Thread {
        let now = now_ms();
        let ttl_minutes = ttl_minutes.or_else(|| {
            self.settings
                .thread_ttl
                .map(|d| (d.as_secs() / 60).max(1) as i64)
        });
        Thread {
            thread_id: id,
            tenant: tenant.clone(),
            created_at: now,
            updated_at: now,
            metadata,
            status: ThreadStatus::Idle,
            values: None,
            expires_at: ttl_minutes.map(|m| now + chrono::Duration::minutes(m)),
            ttl_minutes,
        }
    }

    pub(crate) async fn enqueue(&self, run: &Run) -> Result<(), CreateError> {
        let stream = Self::stream_name(&run.stream, run.priority);
        self.queue
            .enqueue(
                &stream,
                &Ticket {
                    run_id: run.run_id.clone(),
                    tenant: run.tenant.to_string(),
                    agent: run.agent.clone(),
                },
            )
            .await
            .map_err(|e| CreateError::Queue(e.to_string()))
    }

    /// Asks a run to stop (`interrupt` or `rollback`); stops it at once when it executes
    /// here, otherwise its worker sees the request within a fraction of a second.
    pub async fn cancel_run(
        &self,
        tenant: &TenantId,
        run_id: &str,
        action: agentd_core::CancelAction,
    ) -> Result<Option<Run>, StoreError> {
        let run = self.store.request_cancel(tenant, run_id, action).await?;
        crate::metrics::cancel_requested();
        if !self.hub.cancel(run_id) {
            // Not executing here: a pending run was ended by the store; wake its waiters.
            if run.as_ref().is_none_or(|r| r.status.is_terminal()) {
                self.hub.ended(run_id);
            }
        }
        Ok(run)
    }
}

/// Builds the agents (with their tools) from the config.
pub(crate) fn build_agents(config: &Config) -> Vec<Arc<Agent>> {
    let mut tools: HashMap<&str, Arc<Tool>> = HashMap::new();
    for t in &config.tools {
        let spec = match &t.kind {
            ToolKind::Static { result } => ToolSpec::Static {
                result: result.clone(),
            },
            ToolKind::Http {
                url,
                method,
                headers,
                timeout,
                max_response_bytes,
                allow_private,
            } => ToolSpec::Http(crate::tools::HttpSpec {
                url: url.clone(),
                method: http::Method::from_bytes(method.as_str().as_bytes())
                    .unwrap_or(http::Method::GET),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect(),
                timeout: *timeout,
                max_response_bytes: *max_response_bytes,
                allow_private: *allow_private,
            }),
            ToolKind::Agent { agent } => ToolSpec::Agent {
                agent: agent.clone(),
            },
        };
        tools.insert(
            t.name.as_str(),
            Arc::new(Tool {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
                spec,
            }),
        );
    }
    config
        .agents
        .iter()
        .map(|a| {
            Arc::new(Agent {
                assistant_id: assistant_id(&a.name),
                tools: a
                    .tools
                    .iter()
                    .filter_map(|n| tools.get(n.as_str()).cloned())
                    .collect(),
                config: a.clone(),
            })
        })
        .collect()
}

/// Who a run's model calls are attributed to: the key, tenant, user and tier that created it.
pub(crate) fn principal_of(run: &Run) -> agentd_gateway::keys::Principal {
    agentd_gateway::keys::Principal {
        key_id: agentd_core::KeyId::new(run.key_id.clone().unwrap_or_default()),
        tenant: run.tenant.clone(),
        user: run.user_id.clone().map(agentd_core::UserId::new),
        tier: run.kwargs["tier"].as_str().map(str::to_owned),
    }
}

/// Micro-dollars as a `$0.000123` string for messages.
pub(crate) fn usd(m: Micros) -> String {
    format!("${:.6}", m.0 as f64 / 1e6)
}
