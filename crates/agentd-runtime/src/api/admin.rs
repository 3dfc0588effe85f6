//! Operators' queue endpoints (under `/admin`, so the admin key guards them): every stream's
//! backlog, its dead letters, and retrying or dropping one.

use super::{AgentError, Res};
use crate::runtime::Runtime;
use agentd_core::Priority;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn known_stream(rt: &Runtime, stream: &str) -> Res<()> {
    let ok = rt.config.pools.iter().any(|p| {
        Priority::ALL
            .iter()
            .any(|pr| Runtime::stream_name(&p.name, *pr) == stream)
    });
    if ok {
        Ok(())
    } else {
        Err(AgentError::not_found("stream", stream))
    }
}

fn queue_error(e: agentd_core::QueueError) -> AgentError {
    tracing::warn!(error = %e, "Queue error in the admin API");
    AgentError::unavailable("the queue is unavailable; retry shortly")
}

/// `GET /admin/queues`: every pool's streams with depth, in flight, oldest age, dead letters.
pub(crate) async fn list(State(rt): State<Arc<Runtime>>) -> Res<Json<Value>> {
    let mut out = Vec::new();
    for pool in &rt.config.pools {
        for p in Priority::ALL {
            let stream = Runtime::stream_name(&pool.name, p);
            let s = rt.queue.stats(&stream).await.map_err(queue_error)?;
            out.push(json!({
                "stream": stream,
                "pool": pool.name,
                "priority": p.as_str(),
                "depth": s.depth,
                "in_flight": s.in_flight,
                "oldest_age_ms": s.oldest_age_ms,
                "dead": s.dead,
            }));
        }
    }
    Ok(Json(json!({"backend": rt.queue.backend(), "streams": out})))
}

/// `GET /admin/pools`: each pool's work (queued + running), schedule bounds of the hour and
/// desired worker count (the same figure as `agentd_pool_desired_workers`).
pub(crate) async fn pools(State(rt): State<Arc<Runtime>>) -> Res<Json<Value>> {
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for pool in &rt.config.pools {
        let mut work = 0;
        for p in Priority::ALL {
            let s = rt
                .queue
                .stats(&Runtime::stream_name(&pool.name, p))
                .await
                .map_err(queue_error)?;
            work += s.depth + s.in_flight;
        }
        let status = crate::worker::pool_status(&rt, pool, work, now);
        let schedule = &pool.schedule;
        out.push(json!({
            "pool": status.pool,
            "work": status.work,
            "concurrency": status.concurrency,
            "desired_workers": status.desired,
            "min_workers": status.min,
            "max_workers": status.max,
            "business_hours": status.business_hours,
            "persistent": status.persistent,
            "idle_seconds": status.idle_seconds,
            "idle_shutdown_seconds": schedule.idle_shutdown.as_secs(),
            "schedule": schedule.business_hours.as_ref().map(|b| json!({
                "timezone": b.timezone,
                "days": b.cron_days(),
                "start": format!("{:02}:{:02}", b.start / 60, b.start % 60),
                "end": format!("{:02}:{:02}", b.end / 60, b.end % 60),
                "min_workers": b.min_workers,
                "max_workers": b.max_workers,
            })),
        }));
    }
    Ok(Json(json!({"pools": out})))
}

/// `GET /admin/queues/{stream}/dead?limit=`
pub(crate) async fn dead(
    State(rt): State<Arc<Runtime>>,
    Path(stream): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res<Json<Value>> {
    known_stream(&rt, &stream)?;
    let limit = match q.get("limit").filter(|s| !s.is_empty()) {
        None => 100,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| AgentError::invalid("limit", "must be an integer from 1 to 1000"))?,
    };
    let list = rt
        .queue
        .dead_letters(&stream, limit)
        .await
        .map_err(queue_error)?;
    Ok(Json(json!({"stream": stream, "dead_letters": list})))
}

/// `POST /admin/queues/{stream}/dead/{id}/retry`
pub(crate) async fn retry(
    State(rt): State<Arc<Runtime>>,
    Path((stream, id)): Path<(String, String)>,
) -> Res<StatusCode> {
    known_stream(&rt, &stream)?;
    if rt
        .queue
        .retry_dead(&stream, &id)
        .await
        .map_err(queue_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AgentError::not_found("dead letter", &id))
    }
}

/// `DELETE /admin/queues/{stream}/dead/{id}`
pub(crate) async fn drop_dead(
    State(rt): State<Arc<Runtime>>,
    Path((stream, id)): Path<(String, String)>,
) -> Res<StatusCode> {
    known_stream(&rt, &stream)?;
    if rt
        .queue
        .drop_dead(&stream, &id)
        .await
        .map_err(queue_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AgentError::not_found("dead letter", &id))
    }
}
