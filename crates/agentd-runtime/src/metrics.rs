//! The runtime's Prometheus metrics (names stable: dashboards and autoscalers read them).
//! Labels stay low-cardinality: agent names and pool/stream names come from the config.

use agentd_core::RunStatus;
use std::time::Duration;

pub(crate) const RUNS_CREATED: &str = "agentd_runs_created_total";
pub(crate) const RUNS_FINISHED: &str = "agentd_runs_finished_total";
pub(crate) const RUN_SECONDS: &str = "agentd_run_duration_seconds";
pub(crate) const STEPS: &str = "agentd_run_steps_total";
pub(crate) const MODEL_CALL_SECONDS: &str = "agentd_run_step_duration_seconds";
pub(crate) const CANCELS: &str = "agentd_run_cancel_requests_total";
pub(crate) const QUEUE_DEPTH: &str = "agentd_queue_depth";
pub(crate) const QUEUE_IN_FLIGHT: &str = "agentd_queue_in_flight";
pub(crate) const QUEUE_OLDEST: &str = "agentd_queue_oldest_age_seconds";
pub(crate) const QUEUE_DEAD: &str = "agentd_queue_dead_letters";
pub(crate) const WORKERS_BUSY: &str = "agentd_workers_busy";
pub(crate) const WORKERS_IDLE: &str = "agentd_workers_idle";
pub(crate) const REAPED: &str = "agentd_runs_reaped_total";
pub(crate) const STREAM_CLIENTS: &str = "agentd_stream_clients";
/// The worker count a pool's schedule wants now (what KEDA / the Fly autoscaler should run).
pub(crate) const POOL_DESIRED: &str = "agentd_pool_desired_workers";
pub(crate) const POOL_MIN: &str = "agentd_pool_min_workers";
pub(crate) const POOL_MAX: &str = "agentd_pool_max_workers";

pub(crate) fn run_created(agent: &str) {
    metrics::counter!(RUNS_CREATED, "agent" => agent.to_owned()).increment(1);
}

pub(crate) fn run_finished(agent: &str, status: RunStatus, took: Duration) {
    if status == RunStatus::Running {
        return;
    }
    metrics::counter!(RUNS_FINISHED, "agent" => agent.to_owned(), "status" => status.as_str())
        .increment(1);
    metrics::histogram!(RUN_SECONDS, "agent" => agent.to_owned()).record(took.as_secs_f64());
}

pub(crate) fn step_done(kind: &'static str) {
    metrics::counter!(STEPS, "kind" => kind).increment(1);
}

pub(crate) fn model_call(took: Duration) {
    metrics::histogram!(MODEL_CALL_SECONDS, "kind" => "llm").record(took.as_secs_f64());
}

pub(crate) fn cancel_requested() {
    metrics::counter!(CANCELS).increment(1);
}

pub(crate) fn queue(stream: &str, pool: &str, s: &agentd_core::QueueStats) {
    let labels = [("stream", stream.to_owned()), ("pool", pool.to_owned())];
    metrics::gauge!(QUEUE_DEPTH, &labels).set(s.depth as f64);
    metrics::gauge!(QUEUE_IN_FLIGHT, &labels).set(s.in_flight as f64);
    metrics::gauge!(QUEUE_OLDEST, &labels).set(s.oldest_age_ms as f64 / 1000.0);
    metrics::gauge!(QUEUE_DEAD, &labels).set(s.dead as f64);
}

pub(crate) fn pool_desired(pool: &str, desired: u32, min: u32, max: u32) {
    metrics::gauge!(POOL_DESIRED, "pool" => pool.to_owned()).set(f64::from(desired));
    metrics::gauge!(POOL_MIN, "pool" => pool.to_owned()).set(f64::from(min));
    metrics::gauge!(POOL_MAX, "pool" => pool.to_owned()).set(f64::from(max));
}

pub(crate) fn workers(pool: &str, busy: usize, idle: usize) {
    metrics::gauge!(WORKERS_BUSY, "pool" => pool.to_owned()).set(busy as f64);
    metrics::gauge!(WORKERS_IDLE, "pool" => pool.to_owned()).set(idle as f64);
}

pub(crate) fn reaped(n: usize) {
    metrics::counter!(REAPED).increment(n as u64);
}

pub(crate) fn stream_clients(n: usize) {
    metrics::gauge!(STREAM_CLIENTS).set(n as f64);
}
