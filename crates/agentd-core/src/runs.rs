//! The agent runtime's durable state: threads, runs, the step journal, run events and crons,
//! and the [`RunStore`] trait every store backend implements.
//!
//! The one decision to know: **the run row is the truth.** A queue message only wakes a worker
//! up; ownership of a run is the row's lease (`lease_owner`, `lease_epoch`, `lease_expires_at`),
//! taken with a compare-and-swap ([`RunStore::claim_run`]) that bumps the epoch. Every later
//! write of the worker (journal, events, finish) names that epoch and is refused (`Ok(false)` /
//! `Ok(None)`) once another worker took the run over, so a
//! worker paused past its lease (GC, `SIGSTOP`, a network partition) can write nothing.
//!
//! Ids are lowercase UUID strings made by the caller; times are UTC truncated to milliseconds
//! by the backends (both backends read back identical values); JSON columns are
//! `serde_json::Value` (objects unless said otherwise).

use crate::ids::TenantId;
use crate::keys::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// A run's status, as the LangGraph API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    Success,
    Error,
    Timeout,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Error => "error",
            RunStatus::Timeout => "timeout",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "pending" => RunStatus::Pending,
            "running" => RunStatus::Running,
            "success" => RunStatus::Success,
            "error" => RunStatus::Error,
            "timeout" => RunStatus::Timeout,
            "interrupted" => RunStatus::Interrupted,
            _ => return None,
        })
    }

    /// Success, error, timeout or interrupted: nothing more will happen to the run.
    pub fn is_terminal(self) -> bool {
        match self {
            RunStatus::Pending | RunStatus::Running => false,
            RunStatus::Success | RunStatus::Error | RunStatus::Timeout | RunStatus::Interrupted => {
                true
            }
        }
    }
}

/// A thread's status, derived from its runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadStatus {
    Idle,
    Busy,
    Interrupted,
    Error,
}

impl ThreadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Idle => "idle",
            ThreadStatus::Busy => "busy",
            ThreadStatus::Interrupted => "interrupted",
            ThreadStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<ThreadStatus> {
        Some(match s {
            "idle" => ThreadStatus::Idle,
            "busy" => ThreadStatus::Busy,
            "interrupted" => ThreadStatus::Interrupted,
            "error" => ThreadStatus::Error,
            _ => return None,
        })
    }
}

/// What a new run does when its thread already has a pending or running run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultitaskStrategy {
    Reject,
    Enqueue,
    Interrupt,
    Rollback,
}

impl MultitaskStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            MultitaskStrategy::Reject => "reject",
            MultitaskStrategy::Enqueue => "enqueue",
            MultitaskStrategy::Interrupt => "interrupt",
            MultitaskStrategy::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<MultitaskStrategy> {
        Some(match s {
            "reject" => MultitaskStrategy::Reject,
            "enqueue" => MultitaskStrategy::Enqueue,
            "interrupt" => MultitaskStrategy::Interrupt,
            "rollback" => MultitaskStrategy::Rollback,
            _ => return None,
        })
    }
}

/// How a cancel asks a run to stop: `interrupt` keeps the run (status `interrupted`),
/// `rollback` deletes it once stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelAction {
    Interrupt,
    Rollback,
}

impl CancelAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelAction::Interrupt => "interrupt",
            CancelAction::Rollback => "rollback",
        }
    }

    pub fn parse(s: &str) -> Option<CancelAction> {
        Some(match s {
            "interrupt" => CancelAction::Interrupt,
            "rollback" => CancelAction::Rollback,
            _ => return None,
        })
    }
}

/// Run priority: higher is served first, lower is never starved (the worker's weighted order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Critical,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "critical" => Priority::Critical,
            _ => return None,
        })
    }
}

/// A conversation: its state (`values`, `{"messages": [...]}` in LangChain message shape) is
/// what its last successful run left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    pub thread_id: String,
    pub tenant: TenantId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub metadata: Value,
    pub status: ThreadStatus,
    /// `None` until a run has written state.
    pub values: Option<Value>,
    /// When the sweeper deletes the thread (its TTL), if it has one.
    pub expires_at: Option<DateTime<Utc>>,
    /// The TTL in minutes as the client gave it (`ttl` of `POST /threads`), renewed on use.
    pub ttl_minutes: Option<i64>,
}

/// A run as stored. `kwargs` keeps what the client asked for (input, config, stream modes,
/// webhook, …) as JSON; the columns the runtime queries on are fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub run_id: String,
    pub thread_id: String,
    pub tenant: TenantId,
    /// The assistant's UUID.
    pub assistant_id: String,
    /// The agent's name (= the assistant's `graph_id`).
    pub agent: String,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub metadata: Value,
    pub kwargs: Value,
    pub multitask_strategy: MultitaskStrategy,
    pub priority: Priority,
    /// The queue stream the task router placed the run on (`<pool>` or a named stream).
    pub stream: String,
    /// Not claimable before (`after_seconds`).
    pub not_before: DateTime<Utc>,
    pub lease_owner: Option<String>,
    /// Bumped by every successful claim; every write names it (fencing).
    pub lease_epoch: i64,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// How many times the run was claimed.
    pub attempt: i32,
    /// Why it failed (error / timeout / interrupted by whom).
    pub error: Option<String>,
    /// A cancel asked for and not yet carried out by the worker.
    pub cancel: Option<CancelAction>,
    /// Who created it, for the gateway's attribution and budgets.
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    /// The run that handed this one a task (`kind = "agent"` tools).
    pub parent_run_id: Option<String>,
    /// The run's temporary thread is deleted when it ends (stateless runs, `on_completion=delete`).
    pub ephemeral_thread: bool,
    /// Last time a queue message was sent for it (the reaper re-sends stale ones).
    pub enqueued_at: DateTime<Utc>,
}

/// What [`RunStore::create_run`] does with the thread's runs already pending or running.
#[derive(Clone, Debug, PartialEq)]
pub enum CreateRun {
    /// Created; these earlier runs were asked to stop (`interrupt` / `rollback` strategies).
    Created { cancelled: Vec<String> },
    /// `reject`: the thread has a pending or running run.
    Busy,
    /// The thread does not exist (or belongs to another tenant).
    NoThread,
}

/// A journaled step of a run: an LLM call or a tool call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub run_id: String,
    /// 0, 1, 2, … in execution order.
    pub step: i32,
    /// The lease epoch under which it was last started.
    pub epoch: i64,
    /// `llm` or `tool` (or anything the runtime names).
    pub kind: String,
    /// `None` while started and not finished.
    pub output: Option<Value>,
    pub cost_micros: i64,
    pub tokens: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One event of a run's stream. `seq` starts at 1 and increases by exactly 1 per run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub run_id: String,
    pub seq: i64,
    /// The SSE event name (`metadata`, `values`, `messages`, `updates`, `error`, `end`, …).
    pub event: String,
    /// One JSON value, as text.
    pub data: String,
    pub at: DateTime<Utc>,
}

/// An event before it is stored: the store gives it its `seq`.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub event: String,
    pub data: String,
}

/// A cron: a run created on a five-field schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cron {
    pub cron_id: String,
    pub tenant: TenantId,
    pub assistant_id: String,
    pub agent: String,
    pub thread_id: Option<String>,
    pub schedule: String,
    pub timezone: String,
    /// The run body to create each time (input, config, metadata, …).
    pub payload: Value,
    pub metadata: Value,
    pub enabled: bool,
    pub end_time: Option<DateTime<Utc>>,
    pub next_run_date: Option<DateTime<Utc>>,
    pub on_run_completed: Option<String>,
    pub user_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Filters of thread search.
#[derive(Clone, Debug, Default)]
pub struct ThreadQuery {
    /// Every key must be present with an equal JSON value.
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub status: Option<ThreadStatus>,
    pub ids: Option<Vec<String>>,
    pub limit: i64,
    pub offset: i64,
    /// Newest first by `created_at` unless false.
    pub newest_first: bool,
}

/// Filters of cron search.
#[derive(Clone, Debug, Default)]
pub struct CronQuery {
    pub assistant_id: Option<String>,
    pub thread_id: Option<String>,
    pub enabled: Option<bool>,
    pub limit: i64,
    pub offset: i64,
}

/// What the retention sweeper deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub threads: u64,
    pub runs: u64,
    pub events: u64,
}

/// Durable state of the agent runtime. Every read and write of a tenant's object takes the
/// tenant: another tenant's id reads as absent.
#[async_trait]
#[allow(clippy::too_many_arguments)] // finish_step: the journal row and its events in one call
pub trait RunStore: Send + Sync {
    // --- threads ---
    /// `Ok(None)` if the id exists already (any tenant).
    async fn create_thread(&self, thread: &Thread) -> Result<Option<Thread>, StoreError>;
    async fn get_thread(&self, tenant: &TenantId, id: &str) -> Result<Option<Thread>, StoreError>;
    /// Merges `metadata` (top-level keys) into the thread's and sets `updated_at`; `None` if absent.
    async fn update_thread_metadata(
        &self,
        tenant: &TenantId,
        id: &str,
        metadata: &serde_json::Map<String, Value>,
    ) -> Result<Option<Thread>, StoreError>;
    async fn search_threads(
        &self,
        tenant: &TenantId,
        query: &ThreadQuery,
    ) -> Result<Vec<Thread>, StoreError>;
    /// Deletes the thread with its runs, steps and events. `false` if absent.
    async fn delete_thread(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    // --- runs ---
    /// Inserts `run` (status pending) and its first events (usually `metadata`) in one
    /// transaction, applying `run.multitask_strategy` to the thread's pending/running runs:
    /// `reject` → [`CreateRun::Busy`]; `interrupt`/`rollback` → those runs get
    /// `cancel = Some(Interrupt|Rollback)` (pending ones are ended at once: interrupted, or
    /// deleted for rollback) and are listed in `cancelled`; `enqueue` → nothing. The thread's
    /// status becomes `busy` and its TTL is renewed.
    async fn create_run(
        &self,
        run: &Run,
        first_events: &[NewEvent],
    ) -> Result<CreateRun, StoreError>;
    async fn get_run(&self, tenant: &TenantId, id: &str) -> Result<Option<Run>, StoreError>;
    /// A run by id whatever its tenant (workers, the reaper).
    async fn run_by_id(&self, id: &str) -> Result<Option<Run>, StoreError>;
    /// Runs of a thread, newest first.
    async fn list_runs(
        &self,
        tenant: &TenantId,
        thread_id: &str,
        status: Option<RunStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Run>, StoreError>;
    /// Deletes a run with its steps and events; `false` if absent. The caller makes sure it
    /// is not running.
    async fn delete_run(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Takes the lease: succeeds only if the run is `pending` with `not_before <= now`, or
    /// `running` with an expired lease; and no other run of the same thread is running with a
    /// live lease or pending with an earlier `created_at` (runs of a thread execute one at a
    /// time, in order); and, when `agent_cap` is given, fewer than that many runs of the same
    /// agent are running with a live lease. On success: status `running`, `lease_owner`,
    /// `lease_epoch + 1`, `lease_expires_at = now + lease`, `attempt + 1`; returns the new row.
    /// Atomic against concurrent claimers (PostgreSQL locks the thread row first).
    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        lease: Duration,
        agent_cap: Option<u32>,
    ) -> Result<Option<Run>, StoreError>;
    /// Extends the lease if `epoch` still holds it (status running). Returns `None` when
    /// fenced; else the run's pending cancel request, if any.
    async fn renew_lease(
        &self,
        run_id: &str,
        epoch: i64,
        lease: Duration,
    ) -> Result<Option<Option<CancelAction>>, StoreError>;
    /// Asks a run to stop. A pending run ends at once (interrupted, or deleted for rollback);
    /// a running one gets `cancel` set for its worker. Returns the run as it is now (`None`
    /// if absent or deleted).
    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &str,
        action: CancelAction,
    ) -> Result<Option<Run>, StoreError>;
    /// Of these run ids, the ones with a pending cancel request (one query for a worker's
    /// running runs).
    async fn cancel_requests(
        &self,
        run_ids: &[String],
    ) -> Result<Vec<(String, CancelAction)>, StoreError>;
    /// Ends a run if `epoch` still holds it: sets status and error, writes `thread_values`
    /// (when given) and the thread's status (`idle` on success, `error` on error/timeout,
    /// `idle` on interrupted), appends `last_events` (usually `end`), clears the lease. For
    /// `rollback` (the run's `cancel`) the run is deleted instead. If the run's
    /// `ephemeral_thread` is set, the thread is deleted too. `false` when fenced.
    async fn finish_run(
        &self,
        run_id: &str,
        epoch: i64,
        status: RunStatus,
        error: Option<&str>,
        thread_values: Option<&Value>,
        last_events: &[NewEvent],
    ) -> Result<bool, StoreError>;
    /// Runs whose queue message may be lost or whose worker died: `running` with an expired
    /// lease, or `pending` and claimable by time with `enqueued_at` older than `stale`. Sets
    /// their `enqueued_at` to now (so two reapers do not both re-send) and returns them.
    async fn reap(&self, stale: Duration, limit: i64) -> Result<Vec<Run>, StoreError>;
    /// The oldest pending run of a thread (to wake up after the running one ended).
    async fn next_pending_on_thread(&self, thread_id: &str) -> Result<Option<Run>, StoreError>;

    // --- the step journal (fenced by epoch) ---
    /// Records that step `step` starts under `epoch` (insert, or overwrite a started-but-not-
    /// finished row of an older epoch). `false` when fenced or when the step is already
    /// finished (then the caller must use the journaled output).
    async fn start_step(
        &self,
        run_id: &str,
        epoch: i64,
        step: i32,
        kind: &str,
    ) -> Result<bool, StoreError>;
    /// Records the step's output and appends `events` in the same transaction. `false` when
    /// fenced.
    async fn finish_step(
        &self,
        run_id: &str,
        epoch: i64,
        step: i32,
        output: &Value,
        cost_micros: i64,
        tokens: i64,
        events: &[NewEvent],
    ) -> Result<bool, StoreError>;
    /// The run's journal, by step.
    async fn steps(&self, run_id: &str) -> Result<Vec<Step>, StoreError>;

    // --- events ---
    /// Appends events with the next sequence numbers if `epoch` holds the run's lease.
    /// Returns the last seq written, `None` when fenced.
    async fn append_events(
        &self,
        run_id: &str,
        epoch: i64,
        events: &[NewEvent],
    ) -> Result<Option<i64>, StoreError>;
    /// Events with `seq > after`, in order, at most `limit`.
    async fn events_after(
        &self,
        run_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RunEvent>, StoreError>;

    // --- crons ---
    async fn create_cron(&self, cron: &Cron) -> Result<(), StoreError>;
    async fn get_cron(&self, tenant: &TenantId, id: &str) -> Result<Option<Cron>, StoreError>;
    async fn search_crons(
        &self,
        tenant: &TenantId,
        query: &CronQuery,
    ) -> Result<Vec<Cron>, StoreError>;
    async fn delete_cron(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;
    /// Enabled crons with `next_run_date <= now`, any tenant.
    async fn due_crons(&self, limit: i64) -> Result<Vec<Cron>, StoreError>;
    /// Moves `next_run_date` from `expected` to `next` (`None`: disable); `false` if another
    /// replica moved it first (so each firing happens once).
    async fn advance_cron(
        &self,
        cron_id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;

    // --- retention ---
    /// Deletes threads whose `expires_at` passed (with everything in them), events of runs
    /// that ended before `events_before`, and ended runs of before `runs_before` (with their
    /// steps).
    async fn sweep(
        &self,
        events_before: DateTime<Utc>,
        runs_before: DateTime<Utc>,
    ) -> Result<Swept, StoreError>;
}
