//! `RunStore` on SQLite. Parallel to `postgres_runs.rs`: same methods, same order.
//!
//! Every write that reads before it writes (a lease check, the last event seq, the thread's
//! active runs) runs in a `BEGIN IMMEDIATE` transaction: it takes SQLite's one write lock
//! up front, so nothing can change between the read and the write, and two such transactions
//! never fail upgrading a read lock. `claim_run`, `renew_lease`, `reap` and `advance_cron` are
//! single statements, atomic by themselves.

use crate::runs::{
    after, before, cancel, check_cron, check_events, check_run, check_terminal, check_thread,
    cron_columns, event_columns, from_json, merge_metadata, metadata_matches, now, page, priority,
    run_columns, run_status, step_columns, strategy, thread_columns, thread_status,
    thread_status_after, to_json, ttl_expiry, ACTIVE, IDS_PER_STATEMENT, SEARCH_BATCH, TERMINAL,
};
use crate::sqlite::{from_millis, read_error, store_error, to_millis};
use crate::{ceil_to_millis, check_text, SqliteStore};
use agentd_core::{
    CancelAction, CreateRun, Cron, CronQuery, MultitaskStrategy, NewEvent, Run, RunEvent,
    RunStatus, RunStore, Step, StoreError, Swept, TenantId, Thread, ThreadQuery, ThreadStatus,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use std::time::Duration;

/// A write transaction that holds the write lock from its first statement.
async fn begin(
    pool: &SqlitePool,
    context: &str,
) -> Result<Transaction<'static, Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|err| store_error(context, err))
}

async fn commit(tx: Transaction<'static, Sqlite>, context: &str) -> Result<(), StoreError> {
    tx.commit().await.map_err(|err| store_error(context, err))
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_thread(&self, thread: &Thread) -> Result<Option<Thread>, StoreError> {
        check_thread(thread)?;
        let row = sqlx::query(concat!(
            "INSERT INTO threads (",
            thread_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (thread_id) DO NOTHING ",
            "RETURNING ",
            thread_columns!()
        ))
        .bind(&thread.thread_id)
        .bind(thread.tenant.as_str())
        .bind(to_millis(thread.created_at))
        .bind(to_millis(thread.updated_at))
        .bind(to_json(&thread.metadata))
        .bind(thread.status.as_str())
        .bind(thread.values.as_ref().map(to_json))
        .bind(thread.expires_at.map(to_millis))
        .bind(thread.ttl_minutes)
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("create thread", err))?;
        row.as_ref().map(thread_from_row).transpose()
    }

    async fn get_thread(&self, tenant: &TenantId, id: &str) -> Result<Option<Thread>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("thread id", id)?;
        sqlx::query(concat!(
            "SELECT ",
            thread_columns!(),
            " FROM threads WHERE thread_id = ?1 AND tenant = ?2"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("get thread", err))?
        .as_ref()
        .map(thread_from_row)
        .transpose()
    }

    async fn update_thread_metadata(
        &self,
        tenant: &TenantId,
        id: &str,
        metadata: &Map<String, Value>,
    ) -> Result<Option<Thread>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("thread id", id)?;
        const CONTEXT: &str = "update thread metadata";
        let mut tx = begin(self.pool(), CONTEXT).await?;
        let Some(current) = sqlx::query_scalar::<_, String>(
            "SELECT metadata FROM threads WHERE thread_id = ?1 AND tenant = ?2",
        )
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?
        else {
            return Ok(None);
        };
        let merged = merge_metadata(from_json("thread metadata", &current)?, metadata);
        let row = sqlx::query(concat!(
            "UPDATE threads SET metadata = ?1, updated_at = ?2 WHERE thread_id = ?3 RETURNING ",
            thread_columns!()
        ))
        .bind(to_json(&merged))
        .bind(to_millis(now()))
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        let thread = thread_from_row(&row)?;
        commit(tx, CONTEXT).await?;
        Ok(Some(thread))
    }

    async fn search_threads(
        &self,
        tenant: &TenantId,
        query: &ThreadQuery,
    ) -> Result<Vec<Thread>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        for id in query.ids.iter().flatten() {
            check_text("thread id", id)?;
        }
        let (limit, offset) = page(query.limit, query.offset);
        if limit == 0 || query.ids.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let Some(filter) = query.metadata.as_ref().filter(|filter| !filter.is_empty()) else {
            return self.thread_page(tenant, query, limit, offset).await;
        };
        // The metadata filter is applied here, on batches in the query's order: JSON equality
        // in SQL differs between the backends (types, key order), serde_json's does not.
        let mut out = Vec::new();
        let mut skip = offset;
        let mut at = 0;
        loop {
            let batch = self.thread_page(tenant, query, SEARCH_BATCH, at).await?;
            let done = (batch.len() as i64) < SEARCH_BATCH;
            at += batch.len() as i64;
            for thread in batch {
                if !metadata_matches(&thread.metadata, filter) {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                out.push(thread);
                if out.len() as i64 == limit {
                    return Ok(out);
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    async fn delete_thread(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("thread id", id)?;
        let result = sqlx::query("DELETE FROM threads WHERE thread_id = ?1 AND tenant = ?2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(self.pool())
            .await
            .map_err(|err| store_error("delete thread", err))?;
        Ok(result.rows_affected() > 0)
    }

    async fn create_run(
        &self,
        run: &Run,
        first_events: &[NewEvent],
    ) -> Result<CreateRun, StoreError> {
        check_run(run)?;
        check_events(first_events)?;
        const CONTEXT: &str = "create run";
        let now = now();
        let mut tx = begin(self.pool(), CONTEXT).await?;
        let thread = sqlx::query("SELECT tenant, ttl_minutes FROM threads WHERE thread_id = ?1")
            .bind(&run.thread_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| store_error(CONTEXT, err))?;
        let Some(thread) = thread else {
            return Ok(CreateRun::NoThread);
        };
        let thread_tenant: String = thread.try_get("tenant").map_err(read_error)?;
        let ttl_minutes: Option<i64> = thread.try_get("ttl_minutes").map_err(read_error)?;
        if thread_tenant != run.tenant.as_str() {
            return Ok(CreateRun::NoThread);
        }
        let active: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT run_id, status FROM runs WHERE thread_id = ?1 AND status IN {ACTIVE} \
             ORDER BY created_at, run_id"
        ))
        .bind(&run.thread_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        let action = match run.multitask_strategy {
            MultitaskStrategy::Reject if !active.is_empty() => return Ok(CreateRun::Busy),
            MultitaskStrategy::Reject | MultitaskStrategy::Enqueue => None,
            MultitaskStrategy::Interrupt => Some(CancelAction::Interrupt),
            MultitaskStrategy::Rollback => Some(CancelAction::Rollback),
        };
        let mut cancelled = Vec::new();
        if let Some(action) = action {
            for (run_id, status) in active {
                stop_run(&mut tx, &run_id, run_status(&status)?, action, now).await?;
                cancelled.push(run_id);
            }
        }
        sqlx::query(concat!(
            "INSERT INTO runs (",
            run_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ",
            "?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
        ))
        .bind(&run.run_id)
        .bind(&run.thread_id)
        .bind(run.tenant.as_str())
        .bind(&run.assistant_id)
        .bind(&run.agent)
        .bind(to_millis(run.created_at))
        .bind(to_millis(run.updated_at))
        .bind(to_json(&run.metadata))
        .bind(to_json(&run.kwargs))
        .bind(run.multitask_strategy.as_str())
        .bind(run.priority.as_str())
        .bind(&run.stream)
        .bind(to_millis(run.not_before))
        .bind(run.lease_owner.as_deref())
        .bind(run.lease_epoch)
        .bind(run.lease_expires_at.map(to_millis))
        .bind(run.attempt)
        .bind(run.error.as_deref())
        .bind(run.cancel.map(CancelAction::as_str))
        .bind(run.key_id.as_deref())
        .bind(run.user_id.as_deref())
        .bind(run.parent_run_id.as_deref())
        .bind(run.ephemeral_thread)
        .bind(to_millis(run.enqueued_at))
        .execute(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        insert_events(&mut tx, &run.run_id, first_events, now).await?;
        sqlx::query(
            "UPDATE threads SET status = 'busy', updated_at = ?1, \
             expires_at = COALESCE(?2, expires_at) WHERE thread_id = ?3",
        )
        .bind(to_millis(now))
        .bind(ttl_minutes.map(|ttl| to_millis(ttl_expiry(now, ttl))))
        .bind(&run.thread_id)
        .execute(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        commit(tx, CONTEXT).await?;
        Ok(CreateRun::Created { cancelled })
    }

    async fn get_run(&self, tenant: &TenantId, id: &str) -> Result<Option<Run>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("run id", id)?;
        sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE run_id = ?1 AND tenant = ?2"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("get run", err))?
        .as_ref()
        .map(run_from_row)
        .transpose()
    }

    async fn run_by_id(&self, id: &str) -> Result<Option<Run>, StoreError> {
        check_text("run id", id)?;
        read_run(self.pool(), id, "get run").await
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        thread_id: &str,
        status: Option<RunStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Run>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("thread id", thread_id)?;
        let (limit, offset) = page(limit, offset);
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE thread_id = ?1 AND tenant = ?2 AND (?3 IS NULL OR status = ?3) ",
            "ORDER BY created_at DESC, run_id DESC LIMIT ?4 OFFSET ?5"
        ))
        .bind(thread_id)
        .bind(tenant.as_str())
        .bind(status.map(RunStatus::as_str))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await
        .map_err(|err| store_error("list runs", err))?;
        rows.iter().map(run_from_row).collect()
    }

    async fn delete_run(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("run id", id)?;
        let result = sqlx::query("DELETE FROM runs WHERE run_id = ?1 AND tenant = ?2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(self.pool())
            .await
            .map_err(|err| store_error("delete run", err))?;
        Ok(result.rows_affected() > 0)
    }

    async fn claim_run(
        &self,
        run_id: &str,
        owner: &str,
        lease: Duration,
        agent_cap: Option<u32>,
    ) -> Result<Option<Run>, StoreError> {
        check_text("run id", run_id)?;
        check_text("lease owner", owner)?;
        let now = now();
        // One statement: SQLite runs it under the write lock, so the checks and the update are
        // one atomic step however many workers claim at once.
        sqlx::query(&format!(
            "UPDATE runs SET status = 'running', lease_owner = ?2, lease_epoch = lease_epoch + 1, \
             lease_expires_at = ?4, attempt = attempt + 1, updated_at = ?3 \
             WHERE run_id = ?1 AND {CLAIMABLE} RETURNING {}",
            run_columns!()
        ))
        .bind(run_id)
        .bind(owner)
        .bind(to_millis(now))
        .bind(to_millis(after(now, lease)))
        .bind(agent_cap.map(i64::from))
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("claim run", err))?
        .as_ref()
        .map(run_from_row)
        .transpose()
    }

    async fn renew_lease(
        &self,
        run_id: &str,
        epoch: i64,
        lease: Duration,
    ) -> Result<Option<Option<CancelAction>>, StoreError> {
        check_text("run id", run_id)?;
        let row = sqlx::query(
            "UPDATE runs SET lease_expires_at = ?1 \
             WHERE run_id = ?2 AND lease_epoch = ?3 AND status = 'running' RETURNING cancel",
        )
        .bind(to_millis(after(now(), lease)))
        .bind(run_id)
        .bind(epoch)
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("renew lease", err))?;
        row.map(|row| {
            let action: Option<String> = row.try_get("cancel").map_err(read_error)?;
            cancel(action.as_deref())
        })
        .transpose()
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &str,
        action: CancelAction,
    ) -> Result<Option<Run>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("run id", id)?;
        const CONTEXT: &str = "cancel run";
        let now = now();
        let mut tx = begin(self.pool(), CONTEXT).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE run_id = ?1 AND tenant = ?2"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        let Some(run) = row.as_ref().map(run_from_row).transpose()? else {
            return Ok(None);
        };
        if run.status.is_terminal() {
            return Ok(Some(run));
        }
        stop_run(&mut tx, id, run.status, action, now).await?;
        if run.status == RunStatus::Pending {
            settle_thread(&mut tx, &run.thread_id, RunStatus::Interrupted, None, now).await?;
        }
        let run = read_run(&mut *tx, id, CONTEXT).await?;
        commit(tx, CONTEXT).await?;
        Ok(run)
    }

    async fn cancel_requests(
        &self,
        run_ids: &[String],
    ) -> Result<Vec<(String, CancelAction)>, StoreError> {
        for id in run_ids {
            check_text("run id", id)?;
        }
        let mut out = Vec::new();
        for chunk in run_ids.chunks(IDS_PER_STATEMENT) {
            let mut sql = QueryBuilder::<Sqlite>::new(
                "SELECT run_id, cancel FROM runs \
                 WHERE cancel IS NOT NULL AND status = 'running' AND run_id IN (",
            );
            let mut ids = sql.separated(", ");
            for id in chunk {
                ids.push_bind(id.as_str());
            }
            sql.push(") ORDER BY run_id");
            let rows: Vec<(String, String)> = sql
                .build_query_as()
                .fetch_all(self.pool())
                .await
                .map_err(|err| store_error("read cancel requests", err))?;
            for (run_id, action) in rows {
                if let Some(action) = cancel(Some(&action))? {
                    out.push((run_id, action));
                }
            }
        }
        Ok(out)
    }

    async fn finish_run(
        &self,
        run_id: &str,
        epoch: i64,
        status: RunStatus,
        error: Option<&str>,
        thread_values: Option<&Value>,
        last_events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        check_text("run id", run_id)?;
        check_terminal(status)?;
        if let Some(error) = error {
            check_text("error", error)?;
        }
        check_events(last_events)?;
        const CONTEXT: &str = "finish run";
        let now = now();
        let mut tx = begin(self.pool(), CONTEXT).await?;
        let Some(row) = sqlx::query(
            "SELECT thread_id, cancel, ephemeral_thread FROM runs \
             WHERE run_id = ?1 AND lease_epoch = ?2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(epoch)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?
        else {
            return Ok(false);
        };
        let thread_id: String = row.try_get("thread_id").map_err(read_error)?;
        let action: Option<String> = row.try_get("cancel").map_err(read_error)?;
        let ephemeral: bool = row.try_get("ephemeral_thread").map_err(read_error)?;
        if ephemeral {
            // The thread goes, and with it this run and its steps and events.
            sqlx::query("DELETE FROM threads WHERE thread_id = ?1")
                .bind(&thread_id)
                .execute(&mut *tx)
                .await
                .map_err(|err| store_error(CONTEXT, err))?;
        } else if cancel(action.as_deref())? == Some(CancelAction::Rollback) {
            sqlx::query("DELETE FROM runs WHERE run_id = ?1")
                .bind(run_id)
                .execute(&mut *tx)
                .await
                .map_err(|err| store_error(CONTEXT, err))?;
            settle_thread(&mut tx, &thread_id, RunStatus::Interrupted, None, now).await?;
        } else {
            sqlx::query(
                "UPDATE runs SET status = ?1, error = ?2, lease_owner = NULL, \
                 lease_expires_at = NULL, cancel = NULL, updated_at = ?3 WHERE run_id = ?4",
            )
            .bind(status.as_str())
            .bind(error)
            .bind(to_millis(now))
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(|err| store_error(CONTEXT, err))?;
            insert_events(&mut tx, run_id, last_events, now).await?;
            settle_thread(&mut tx, &thread_id, status, thread_values, now).await?;
        }
        commit(tx, CONTEXT).await?;
        Ok(true)
    }

    async fn reap(&self, stale: Duration, limit: i64) -> Result<Vec<Run>, StoreError> {
        let now = now();
        let (limit, _) = page(limit, 0);
        // Look before writing: the UPDATE would take the write lock every reaper pass.
        let any: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 FROM runs WHERE {REAPABLE} LIMIT 1"))
                .bind(to_millis(now))
                .bind(to_millis(before(now, stale)))
                .fetch_optional(self.pool())
                .await
                .map_err(|err| store_error("reap runs", err))?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "UPDATE runs SET enqueued_at = ?1 WHERE run_id IN (\
             SELECT run_id FROM runs WHERE {REAPABLE} ORDER BY enqueued_at, run_id LIMIT ?3) \
             RETURNING {}",
            run_columns!()
        ))
        .bind(to_millis(now))
        .bind(to_millis(before(now, stale)))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(|err| store_error("reap runs", err))?;
        let mut runs = rows
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort_by(|a, b| (a.created_at, &a.run_id).cmp(&(b.created_at, &b.run_id)));
        Ok(runs)
    }

    async fn next_pending_on_thread(&self, thread_id: &str) -> Result<Option<Run>, StoreError> {
        check_text("thread id", thread_id)?;
        sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE thread_id = ?1 AND status = 'pending' ",
            "ORDER BY created_at, run_id LIMIT 1"
        ))
        .bind(thread_id)
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("next pending run", err))?
        .as_ref()
        .map(run_from_row)
        .transpose()
    }

    async fn start_step(
        &self,
        run_id: &str,
        epoch: i64,
        step: i32,
        kind: &str,
    ) -> Result<bool, StoreError> {
        check_text("run id", run_id)?;
        check_text("step kind", kind)?;
        const CONTEXT: &str = "start step";
        let mut tx = begin(self.pool(), CONTEXT).await?;
        if !holds_lease(&mut tx, run_id, epoch, CONTEXT).await? {
            return Ok(false);
        }
        // A finished step is never overwritten: its output is what the run goes on from.
        let result = sqlx::query(concat!(
            "INSERT INTO run_steps (",
            step_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, NULL, 0, 0, ?5, NULL) ON CONFLICT (run_id, step) ",
            "DO UPDATE SET epoch = excluded.epoch, kind = excluded.kind, ",
            "started_at = excluded.started_at WHERE run_steps.finished_at IS NULL"
        ))
        .bind(run_id)
        .bind(step)
        .bind(epoch)
        .bind(kind)
        .bind(to_millis(now()))
        .execute(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        commit(tx, CONTEXT).await?;
        Ok(result.rows_affected() > 0)
    }

    async fn finish_step(
        &self,
        run_id: &str,
        epoch: i64,
        step: i32,
        output: &Value,
        cost_micros: i64,
        tokens: i64,
        events: &[NewEvent],
    ) -> Result<bool, StoreError> {
        check_text("run id", run_id)?;
        check_events(events)?;
        const CONTEXT: &str = "finish step";
        let now = now();
        let mut tx = begin(self.pool(), CONTEXT).await?;
        if !holds_lease(&mut tx, run_id, epoch, CONTEXT).await? {
            return Ok(false);
        }
        let result = sqlx::query(
            "UPDATE run_steps SET output = ?1, cost_micros = ?2, tokens = ?3, finished_at = ?4 \
             WHERE run_id = ?5 AND step = ?6 AND epoch = ?7 AND finished_at IS NULL",
        )
        .bind(to_json(output))
        .bind(cost_micros)
        .bind(tokens)
        .bind(to_millis(now))
        .bind(run_id)
        .bind(step)
        .bind(epoch)
        .execute(&mut *tx)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
        if result.rows_affected() == 0 {
            // Not started under this epoch, or already finished: nothing is written.
            return Ok(false);
        }
        insert_events(&mut tx, run_id, events, now).await?;
        commit(tx, CONTEXT).await?;
        Ok(true)
    }

    async fn steps(&self, run_id: &str) -> Result<Vec<Step>, StoreError> {
        check_text("run id", run_id)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_columns!(),
            " FROM run_steps WHERE run_id = ?1 ORDER BY step"
        ))
        .bind(run_id)
        .fetch_all(self.pool())
        .await
        .map_err(|err| store_error("read steps", err))?;
        rows.iter().map(step_from_row).collect()
    }

    async fn append_events(
        &self,
        run_id: &str,
        epoch: i64,
        events: &[NewEvent],
    ) -> Result<Option<i64>, StoreError> {
        check_text("run id", run_id)?;
        check_events(events)?;
        const CONTEXT: &str = "append events";
        let mut tx = begin(self.pool(), CONTEXT).await?;
        if !holds_lease(&mut tx, run_id, epoch, CONTEXT).await? {
            return Ok(None);
        }
        let last = insert_events(&mut tx, run_id, events, now()).await?;
        commit(tx, CONTEXT).await?;
        Ok(Some(last))
    }

    async fn events_after(
        &self,
        run_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RunEvent>, StoreError> {
        check_text("run id", run_id)?;
        let (limit, _) = page(limit, 0);
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ))
        .bind(run_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(|err| store_error("read events", err))?;
        rows.iter().map(event_from_row).collect()
    }

    async fn create_cron(&self, cron: &Cron) -> Result<(), StoreError> {
        check_cron(cron)?;
        sqlx::query(concat!(
            "INSERT INTO crons (",
            cron_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
        ))
        .bind(&cron.cron_id)
        .bind(cron.tenant.as_str())
        .bind(&cron.assistant_id)
        .bind(&cron.agent)
        .bind(cron.thread_id.as_deref())
        .bind(&cron.schedule)
        .bind(&cron.timezone)
        .bind(to_json(&cron.payload))
        .bind(to_json(&cron.metadata))
        .bind(cron.enabled)
        .bind(cron.end_time.map(to_millis))
        .bind(cron.next_run_date.map(to_millis))
        .bind(cron.on_run_completed.as_deref())
        .bind(cron.user_id.as_deref())
        .bind(to_millis(cron.created_at))
        .bind(to_millis(cron.updated_at))
        .execute(self.pool())
        .await
        .map_err(|err| store_error("create cron", err))?;
        Ok(())
    }

    async fn get_cron(&self, tenant: &TenantId, id: &str) -> Result<Option<Cron>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("cron id", id)?;
        sqlx::query(concat!(
            "SELECT ",
            cron_columns!(),
            " FROM crons WHERE cron_id = ?1 AND tenant = ?2"
        ))
        .bind(id)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(|err| store_error("get cron", err))?
        .as_ref()
        .map(cron_from_row)
        .transpose()
    }

    async fn search_crons(
        &self,
        tenant: &TenantId,
        query: &CronQuery,
    ) -> Result<Vec<Cron>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        if let Some(id) = &query.assistant_id {
            check_text("assistant id", id)?;
        }
        if let Some(id) = &query.thread_id {
            check_text("thread id", id)?;
        }
        let (limit, offset) = page(query.limit, query.offset);
        let rows = sqlx::query(concat!(
            "SELECT ",
            cron_columns!(),
            " FROM crons WHERE tenant = ?1 AND (?2 IS NULL OR assistant_id = ?2) ",
            "AND (?3 IS NULL OR thread_id = ?3) AND (?4 IS NULL OR enabled = ?4) ",
            "ORDER BY created_at, cron_id LIMIT ?5 OFFSET ?6"
        ))
        .bind(tenant.as_str())
        .bind(query.assistant_id.as_deref())
        .bind(query.thread_id.as_deref())
        .bind(query.enabled)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await
        .map_err(|err| store_error("search crons", err))?;
        rows.iter().map(cron_from_row).collect()
    }

    async fn delete_cron(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        check_text("tenant", tenant.as_str())?;
        check_text("cron id", id)?;
        let result = sqlx::query("DELETE FROM crons WHERE cron_id = ?1 AND tenant = ?2")
            .bind(id)
            .bind(tenant.as_str())
            .execute(self.pool())
            .await
            .map_err(|err| store_error("delete cron", err))?;
        Ok(result.rows_affected() > 0)
    }

    async fn due_crons(&self, limit: i64) -> Result<Vec<Cron>, StoreError> {
        let (limit, _) = page(limit, 0);
        let rows = sqlx::query(concat!(
            "SELECT ",
            cron_columns!(),
            " FROM crons WHERE enabled = 1 AND next_run_date <= ?1 ",
            "ORDER BY next_run_date, cron_id LIMIT ?2"
        ))
        .bind(to_millis(now()))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(|err| store_error("due crons", err))?;
        rows.iter().map(cron_from_row).collect()
    }

    async fn advance_cron(
        &self,
        cron_id: &str,
        expected: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        check_text("cron id", cron_id)?;
        let result = sqlx::query(
            "UPDATE crons SET next_run_date = ?1, enabled = CASE WHEN ?1 IS NULL THEN 0 \
             ELSE enabled END, updated_at = ?2 WHERE cron_id = ?3 AND next_run_date = ?4",
        )
        .bind(next.map(to_millis))
        .bind(to_millis(now()))
        .bind(cron_id)
        .bind(to_millis(expected))
        .execute(self.pool())
        .await
        .map_err(|err| store_error("advance cron", err))?;
        Ok(result.rows_affected() > 0)
    }

    async fn sweep(
        &self,
        events_before: DateTime<Utc>,
        runs_before: DateTime<Utc>,
    ) -> Result<Swept, StoreError> {
        let now = now();
        let threads = sqlx::query(&format!(
            "DELETE FROM threads WHERE expires_at IS NOT NULL AND expires_at < ?1 \
             AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.thread_id = threads.thread_id \
             AND runs.status IN {ACTIVE})"
        ))
        .bind(to_millis(now))
        .execute(self.pool())
        .await
        .map_err(|err| store_error("sweep threads", err))?
        .rows_affected();
        let events = sqlx::query(&format!(
            "DELETE FROM run_events WHERE run_id IN (SELECT run_id FROM runs \
             WHERE status IN {TERMINAL} AND updated_at < ?1)"
        ))
        .bind(ceil_to_millis(events_before).timestamp_millis())
        .execute(self.pool())
        .await
        .map_err(|err| store_error("sweep events", err))?
        .rows_affected();
        let runs = sqlx::query(&format!(
            "DELETE FROM runs WHERE status IN {TERMINAL} AND updated_at < ?1"
        ))
        .bind(ceil_to_millis(runs_before).timestamp_millis())
        .execute(self.pool())
        .await
        .map_err(|err| store_error("sweep runs", err))?
        .rows_affected();
        Ok(Swept {
            threads,
            runs,
            events,
        })
    }
}

/// The claim's condition on the row `runs` (?1 run id, ?3 now, ?5 agent cap or NULL): claimable
/// by its own state; no other run of its thread ahead of it (running with a live lease, or
/// pending or running-but-expired and created earlier, ties broken by run id); and fewer than
/// the cap of its agent's runs running with a live lease.
const CLAIMABLE: &str = "\
    ((status = 'pending' AND not_before <= ?3) \
      OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at <= ?3))) \
    AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = runs.thread_id \
      AND o.status IN ('pending', 'running') AND o.run_id <> runs.run_id \
      AND ((o.status = 'running' AND o.lease_expires_at > ?3) \
        OR o.created_at < runs.created_at \
        OR (o.created_at = runs.created_at AND o.run_id < runs.run_id))) \
    AND (?5 IS NULL OR (SELECT COUNT(*) FROM runs a WHERE a.agent = runs.agent \
      AND a.status = 'running' AND a.lease_expires_at > ?3) < ?5)";

/// Runs the reaper re-sends (?1 now, ?2 stale bound): not re-sent since the bound, and either
/// running with an expired lease or pending and due.
const REAPABLE: &str = "enqueued_at < ?2 AND ((status = 'running' AND \
    (lease_expires_at IS NULL OR lease_expires_at <= ?1)) \
    OR (status = 'pending' AND not_before <= ?1))";

impl SqliteStore {
    /// One page of a thread search, without the metadata filter.
    async fn thread_page(
        &self,
        tenant: &TenantId,
        query: &ThreadQuery,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Thread>, StoreError> {
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            thread_columns!(),
            " FROM threads WHERE tenant = "
        ));
        sql.push_bind(tenant.as_str());
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(ids) = &query.ids {
            sql.push(" AND thread_id IN (");
            let mut list = sql.separated(", ");
            for id in ids {
                list.push_bind(id.as_str());
            }
            sql.push(")");
        }
        sql.push(if query.newest_first {
            " ORDER BY created_at DESC, thread_id DESC"
        } else {
            " ORDER BY created_at, thread_id"
        });
        sql.push(" LIMIT ").push_bind(limit);
        sql.push(" OFFSET ").push_bind(offset);
        let rows = sql
            .build()
            .fetch_all(self.pool())
            .await
            .map_err(|err| store_error("search threads", err))?;
        rows.iter().map(thread_from_row).collect()
    }
}

async fn read_run<'e, E>(executor: E, id: &str, context: &str) -> Result<Option<Run>, StoreError>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    sqlx::query(concat!(
        "SELECT ",
        run_columns!(),
        " FROM runs WHERE run_id = ?1"
    ))
    .bind(id)
    .fetch_optional(executor)
    .await
    .map_err(|err| store_error(context, err))?
    .as_ref()
    .map(run_from_row)
    .transpose()
}

/// Whether `epoch` holds the run's lease, read inside the caller's write transaction.
async fn holds_lease(
    conn: &mut SqliteConnection,
    run_id: &str,
    epoch: i64,
    context: &str,
) -> Result<bool, StoreError> {
    let held = sqlx::query_scalar::<_, i64>(
        "SELECT 1 FROM runs WHERE run_id = ?1 AND lease_epoch = ?2 AND status = 'running'",
    )
    .bind(run_id)
    .bind(epoch)
    .fetch_optional(conn)
    .await
    .map_err(|err| store_error(context, err))?;
    Ok(held.is_some())
}

/// Appends `events` after the run's last seq; returns the last seq now stored. Inside the
/// caller's write transaction, so no other writer can take the same numbers.
async fn insert_events(
    conn: &mut SqliteConnection,
    run_id: &str,
    events: &[NewEvent],
    at: DateTime<Utc>,
) -> Result<i64, StoreError> {
    const CONTEXT: &str = "append events";
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM run_events WHERE run_id = ?1")
            .bind(run_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(|err| store_error(CONTEXT, err))?;
    let mut seq = last;
    for chunk in events.chunks(IDS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<Sqlite>::new(concat!(
            "INSERT INTO run_events (",
            event_columns!(),
            ") "
        ));
        sql.push_values(chunk, |mut row, event| {
            seq += 1;
            row.push_bind(run_id)
                .push_bind(seq)
                .push_bind(event.event.as_str())
                .push_bind(event.data.as_str())
                .push_bind(to_millis(at));
        });
        sql.build()
            .execute(&mut *conn)
            .await
            .map_err(|err| store_error(CONTEXT, err))?;
    }
    Ok(seq)
}

/// Ends or flags an active run for a cancel: a pending one ends now (interrupted, or deleted
/// for rollback), a running one gets `cancel` for its worker.
async fn stop_run(
    conn: &mut SqliteConnection,
    run_id: &str,
    status: RunStatus,
    action: CancelAction,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "cancel run";
    let query = match (status, action) {
        (RunStatus::Pending, CancelAction::Rollback) => {
            sqlx::query("DELETE FROM runs WHERE run_id = ?1").bind(run_id)
        }
        (RunStatus::Pending, CancelAction::Interrupt) => sqlx::query(
            "UPDATE runs SET status = 'interrupted', cancel = NULL, updated_at = ?2 \
             WHERE run_id = ?1",
        )
        .bind(run_id)
        .bind(to_millis(now)),
        _ => sqlx::query("UPDATE runs SET cancel = ?2, updated_at = ?3 WHERE run_id = ?1")
            .bind(run_id)
            .bind(action.as_str())
            .bind(to_millis(now)),
    };
    query
        .execute(conn)
        .await
        .map_err(|err| store_error(CONTEXT, err))?;
    Ok(())
}

/// Sets the thread's status after one of its runs ended with `ended` (busy while another run
/// of it is pending or running) and its state when `values` is given.
async fn settle_thread(
    conn: &mut SqliteConnection,
    thread_id: &str,
    ended: RunStatus,
    values: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "update thread status";
    let active: bool = sqlx::query_scalar(&format!(
        "SELECT EXISTS (SELECT 1 FROM runs WHERE thread_id = ?1 AND status IN {ACTIVE})"
    ))
    .bind(thread_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(|err| store_error(CONTEXT, err))?;
    let status = if active {
        ThreadStatus::Busy
    } else {
        thread_status_after(ended)
    };
    sqlx::query(
        "UPDATE threads SET status = ?1, state = COALESCE(?2, state), updated_at = ?3 \
         WHERE thread_id = ?4",
    )
    .bind(status.as_str())
    .bind(values.map(to_json))
    .bind(to_millis(now))
    .bind(thread_id)
    .execute(conn)
    .await
    .map_err(|err| store_error(CONTEXT, err))?;
    Ok(())
}

fn thread_from_row(row: &SqliteRow) -> Result<Thread, StoreError> {
    let state: Option<String> = row.try_get("state").map_err(read_error)?;
    let expires_at: Option<i64> = row.try_get("expires_at").map_err(read_error)?;
    Ok(Thread {
        thread_id: row.try_get("thread_id").map_err(read_error)?,
        tenant: TenantId::new(row.try_get::<String, _>("tenant").map_err(read_error)?),
        created_at: from_millis(row.try_get("created_at").map_err(read_error)?)?,
        updated_at: from_millis(row.try_get("updated_at").map_err(read_error)?)?,
        metadata: from_json(
            "thread metadata",
            &row.try_get::<String, _>("metadata").map_err(read_error)?,
        )?,
        status: thread_status(&row.try_get::<String, _>("status").map_err(read_error)?)?,
        values: state
            .map(|text| from_json("thread values", &text))
            .transpose()?,
        expires_at: expires_at.map(from_millis).transpose()?,
        ttl_minutes: row.try_get("ttl_minutes").map_err(read_error)?,
    })
}

fn run_from_row(row: &SqliteRow) -> Result<Run, StoreError> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(read_error);
    let time = |column: &str| from_millis(row.try_get(column).map_err(read_error)?);
    let lease_expires_at: Option<i64> = row.try_get("lease_expires_at").map_err(read_error)?;
    let action: Option<String> = row.try_get("cancel").map_err(read_error)?;
    Ok(Run {
        run_id: text("run_id")?,
        thread_id: text("thread_id")?,
        tenant: TenantId::new(text("tenant")?),
        assistant_id: text("assistant_id")?,
        agent: text("agent")?,
        status: run_status(&text("status")?)?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        metadata: from_json("run metadata", &text("metadata")?)?,
        kwargs: from_json("run kwargs", &text("kwargs")?)?,
        multitask_strategy: strategy(&text("multitask_strategy")?)?,
        priority: priority(&text("priority")?)?,
        stream: text("stream")?,
        not_before: time("not_before")?,
        lease_owner: row.try_get("lease_owner").map_err(read_error)?,
        lease_epoch: row.try_get("lease_epoch").map_err(read_error)?,
        lease_expires_at: lease_expires_at.map(from_millis).transpose()?,
        attempt: row.try_get("attempt").map_err(read_error)?,
        error: row.try_get("error").map_err(read_error)?,
        cancel: cancel(action.as_deref())?,
        key_id: row.try_get("key_id").map_err(read_error)?,
        user_id: row.try_get("user_id").map_err(read_error)?,
        parent_run_id: row.try_get("parent_run_id").map_err(read_error)?,
        ephemeral_thread: row.try_get("ephemeral_thread").map_err(read_error)?,
        enqueued_at: time("enqueued_at")?,
    })
}

fn step_from_row(row: &SqliteRow) -> Result<Step, StoreError> {
    let output: Option<String> = row.try_get("output").map_err(read_error)?;
    let finished_at: Option<i64> = row.try_get("finished_at").map_err(read_error)?;
    Ok(Step {
        run_id: row.try_get("run_id").map_err(read_error)?,
        step: row.try_get("step").map_err(read_error)?,
        epoch: row.try_get("epoch").map_err(read_error)?,
        kind: row.try_get("kind").map_err(read_error)?,
        output: output
            .map(|text| from_json("step output", &text))
            .transpose()?,
        cost_micros: row.try_get("cost_micros").map_err(read_error)?,
        tokens: row.try_get("tokens").map_err(read_error)?,
        started_at: from_millis(row.try_get("started_at").map_err(read_error)?)?,
        finished_at: finished_at.map(from_millis).transpose()?,
    })
}

fn event_from_row(row: &SqliteRow) -> Result<RunEvent, StoreError> {
    Ok(RunEvent {
        run_id: row.try_get("run_id").map_err(read_error)?,
        seq: row.try_get("seq").map_err(read_error)?,
        event: row.try_get("event").map_err(read_error)?,
        data: row.try_get("data").map_err(read_error)?,
        at: from_millis(row.try_get("at").map_err(read_error)?)?,
    })
}

fn cron_from_row(row: &SqliteRow) -> Result<Cron, StoreError> {
    let end_time: Option<i64> = row.try_get("end_time").map_err(read_error)?;
    let next_run_date: Option<i64> = row.try_get("next_run_date").map_err(read_error)?;
    Ok(Cron {
        cron_id: row.try_get("cron_id").map_err(read_error)?,
        tenant: TenantId::new(row.try_get::<String, _>("tenant").map_err(read_error)?),
        assistant_id: row.try_get("assistant_id").map_err(read_error)?,
        agent: row.try_get("agent").map_err(read_error)?,
        thread_id: row.try_get("thread_id").map_err(read_error)?,
        schedule: row.try_get("schedule").map_err(read_error)?,
        timezone: row.try_get("timezone").map_err(read_error)?,
        payload: from_json(
            "cron payload",
            &row.try_get::<String, _>("payload").map_err(read_error)?,
        )?,
        metadata: from_json(
            "cron metadata",
            &row.try_get::<String, _>("metadata").map_err(read_error)?,
        )?,
        enabled: row.try_get("enabled").map_err(read_error)?,
        end_time: end_time.map(from_millis).transpose()?,
        next_run_date: next_run_date.map(from_millis).transpose()?,
        on_run_completed: row.try_get("on_run_completed").map_err(read_error)?,
        user_id: row.try_get("user_id").map_err(read_error)?,
        created_at: from_millis(row.try_get("created_at").map_err(read_error)?)?,
        updated_at: from_millis(row.try_get("updated_at").map_err(read_error)?)?,
    })
}
