//! What both backends' `RunStore` share: input checks, JSON and enum columns, and the rules that
//! are not SQL (thread status after a run, metadata filters).

use crate::{check_text, truncate_to_millis};
use agentd_core::{
    CancelAction, Cron, MultitaskStrategy, NewEvent, Priority, Run, RunStatus, StoreError, Thread,
    ThreadStatus,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};
use std::time::Duration;

/// The statuses of a run that is not over, as an SQL list (both backends).
pub(crate) const ACTIVE: &str = "('pending', 'running')";
/// The statuses of a run that is over, as an SQL list (both backends).
pub(crate) const TERMINAL: &str = "('success', 'error', 'timeout', 'interrupted')";
/// How many threads a metadata-filtered search reads per round trip.
pub(crate) const SEARCH_BATCH: i64 = 500;
/// How many ids (an `IN (…)` list) or rows (a multi-row INSERT) one statement binds at most.
pub(crate) const IDS_PER_STATEMENT: usize = 500;

/// The store's clock: now, whole milliseconds (what both backends store).
pub(crate) fn now() -> DateTime<Utc> {
    truncate_to_millis(Utc::now())
}

/// `at + duration`, whole milliseconds; saturates at the end of time rather than fail.
pub(crate) fn after(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    let delta = TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX);
    truncate_to_millis(
        at.checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// `at - duration`, whole milliseconds; saturates at the start of time.
pub(crate) fn before(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    let delta = TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX);
    truncate_to_millis(
        at.checked_sub_signed(delta)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// When a thread with a TTL expires if used now.
pub(crate) fn ttl_expiry(now: DateTime<Utc>, ttl_minutes: i64) -> DateTime<Utc> {
    let delta = TimeDelta::try_minutes(ttl_minutes.max(0)).unwrap_or(TimeDelta::MAX);
    truncate_to_millis(
        now.checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// The thread's status once its last active run ended with `status`.
pub(crate) fn thread_status_after(status: RunStatus) -> ThreadStatus {
    match status {
        RunStatus::Success | RunStatus::Interrupted => ThreadStatus::Idle,
        RunStatus::Error | RunStatus::Timeout => ThreadStatus::Error,
        // Not reached (finish_run refuses them); a thread with an active run is busy.
        RunStatus::Pending | RunStatus::Running => ThreadStatus::Busy,
    }
}

/// Every key of `filter` is in `metadata` with an equal value.
pub(crate) fn metadata_matches(metadata: &Value, filter: &Map<String, Value>) -> bool {
    filter
        .iter()
        .all(|(key, want)| metadata.get(key) == Some(want))
}

/// `metadata` with the top-level keys of `patch` set.
pub(crate) fn merge_metadata(metadata: Value, patch: &Map<String, Value>) -> Value {
    let mut merged = match metadata {
        Value::Object(map) => map,
        // Not an object (never written by us): the patch replaces it.
        _ => Map::new(),
    };
    for (key, value) in patch {
        merged.insert(key.clone(), value.clone());
    }
    Value::Object(merged)
}

pub(crate) fn to_json(value: &Value) -> String {
    // serde_json escapes control characters, so the text never holds a NUL.
    value.to_string()
}

pub(crate) fn from_json(column: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|err| StoreError::Backend(format!("stored {column} is not JSON: {err}")))
}

fn unknown(column: &str, value: &str) -> StoreError {
    StoreError::Backend(format!("stored {column} {value:?} is not known"))
}

pub(crate) fn run_status(text: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(text).ok_or_else(|| unknown("run status", text))
}

pub(crate) fn thread_status(text: &str) -> Result<ThreadStatus, StoreError> {
    ThreadStatus::parse(text).ok_or_else(|| unknown("thread status", text))
}

pub(crate) fn strategy(text: &str) -> Result<MultitaskStrategy, StoreError> {
    MultitaskStrategy::parse(text).ok_or_else(|| unknown("multitask strategy", text))
}

pub(crate) fn priority(text: &str) -> Result<Priority, StoreError> {
    Priority::parse(text).ok_or_else(|| unknown("priority", text))
}

pub(crate) fn cancel(text: Option<&str>) -> Result<Option<CancelAction>, StoreError> {
    text.map(|text| CancelAction::parse(text).ok_or_else(|| unknown("cancel action", text)))
        .transpose()
}

fn check_optional(field: &str, value: Option<&str>) -> Result<(), StoreError> {
    value.map_or(Ok(()), |value| check_text(field, value))
}

pub(crate) fn check_thread(thread: &Thread) -> Result<(), StoreError> {
    check_text("thread id", &thread.thread_id)?;
    check_text("tenant", thread.tenant.as_str())
}

pub(crate) fn check_run(run: &Run) -> Result<(), StoreError> {
    check_text("run id", &run.run_id)?;
    check_text("thread id", &run.thread_id)?;
    check_text("tenant", run.tenant.as_str())?;
    check_text("assistant id", &run.assistant_id)?;
    check_text("agent", &run.agent)?;
    check_text("stream", &run.stream)?;
    check_optional("lease owner", run.lease_owner.as_deref())?;
    check_optional("error", run.error.as_deref())?;
    check_optional("key id", run.key_id.as_deref())?;
    check_optional("user", run.user_id.as_deref())?;
    check_optional("parent run id", run.parent_run_id.as_deref())
}

pub(crate) fn check_events(events: &[NewEvent]) -> Result<(), StoreError> {
    for event in events {
        check_text("event name", &event.event)?;
        check_text("event data", &event.data)?;
    }
    Ok(())
}

pub(crate) fn check_cron(cron: &Cron) -> Result<(), StoreError> {
    check_text("cron id", &cron.cron_id)?;
    check_text("tenant", cron.tenant.as_str())?;
    check_text("assistant id", &cron.assistant_id)?;
    check_text("agent", &cron.agent)?;
    check_optional("thread id", cron.thread_id.as_deref())?;
    check_text("schedule", &cron.schedule)?;
    check_text("timezone", &cron.timezone)?;
    check_optional("on_run_completed", cron.on_run_completed.as_deref())?;
    check_optional("user", cron.user_id.as_deref())
}

/// `finish_run` only ends runs.
pub(crate) fn check_terminal(status: RunStatus) -> Result<(), StoreError> {
    if status.is_terminal() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "a run cannot finish with status {}",
            status.as_str()
        )))
    }
}

/// `limit` and `offset` as SQL accepts them on both backends (PostgreSQL refuses negatives,
/// SQLite reads a negative limit as none).
pub(crate) fn page(limit: i64, offset: i64) -> (i64, i64) {
    (limit.max(0), offset.max(0))
}

/// Every column of `threads`, in the order the backends' `thread_from_row` read them.
macro_rules! thread_columns {
    () => {
        "thread_id, tenant, created_at, updated_at, metadata, status, state, expires_at, ttl_minutes"
    };
}

/// Every column of `runs`, in the order `create_run` binds them.
macro_rules! run_columns {
    () => {
        concat!(
            "run_id, thread_id, tenant, assistant_id, agent, status, created_at, updated_at, ",
            "metadata, kwargs, multitask_strategy, priority, stream, not_before, lease_owner, ",
            "lease_epoch, lease_expires_at, attempt, error, cancel, key_id, user_id, ",
            "parent_run_id, ephemeral_thread, enqueued_at"
        )
    };
}

/// Every column of `run_steps`.
macro_rules! step_columns {
    () => {
        "run_id, step, epoch, kind, output, cost_micros, tokens, started_at, finished_at"
    };
}

/// Every column of `run_events`.
macro_rules! event_columns {
    () => {
        "run_id, seq, event, data, at"
    };
}

/// Every column of `crons`, in the order `create_cron` binds them.
macro_rules! cron_columns {
    () => {
        concat!(
            "cron_id, tenant, assistant_id, agent, thread_id, schedule, timezone, payload, ",
            "metadata, enabled, end_time, next_run_date, on_run_completed, user_id, created_at, ",
            "updated_at"
        )
    };
}

pub(crate) use {cron_columns, event_columns, run_columns, step_columns, thread_columns};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_filter_needs_every_key_equal() {
        let metadata = json!({"a": 1, "b": {"c": [1, 2]}, "n": null});
        let filter = |v: Value| v.as_object().unwrap().clone();
        assert!(metadata_matches(&metadata, &filter(json!({}))));
        assert!(metadata_matches(&metadata, &filter(json!({"a": 1}))));
        assert!(metadata_matches(
            &metadata,
            &filter(json!({"a": 1, "b": {"c": [1, 2]}}))
        ));
        assert!(metadata_matches(&metadata, &filter(json!({"n": null}))));
        assert!(!metadata_matches(&metadata, &filter(json!({"a": "1"}))));
        assert!(!metadata_matches(
            &metadata,
            &filter(json!({"missing": null}))
        ));
    }

    #[test]
    fn merge_sets_top_level_keys() {
        let patch = json!({"b": 3, "c": {"d": 1}});
        let merged = merge_metadata(json!({"a": 1, "b": 2}), patch.as_object().unwrap());
        assert_eq!(merged, json!({"a": 1, "b": 3, "c": {"d": 1}}));
    }

    #[test]
    fn time_arithmetic_saturates() {
        let at = DateTime::from_timestamp_millis(1_714_566_896_789).unwrap();
        assert_eq!(
            after(DateTime::<Utc>::MAX_UTC, Duration::MAX).timestamp(),
            DateTime::<Utc>::MAX_UTC.timestamp()
        );
        assert_eq!(
            after(at, Duration::from_millis(1500)).timestamp_millis(),
            1_714_566_898_289
        );
        assert_eq!(
            before(at, Duration::from_millis(789)).timestamp_millis(),
            1_714_566_896_000
        );
        assert_eq!(
            ttl_expiry(at, 2).timestamp_millis(),
            1_714_566_896_789 + 120_000
        );
    }
}
