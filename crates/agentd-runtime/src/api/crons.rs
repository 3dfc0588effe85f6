//! Crons: create (stateless and on a thread), search, delete.

use super::{body_object, limit_offset, opt_object, opt_str, read_body, AgentError, Res};
use crate::cron::Schedule;
use crate::runtime::{now_ms, Runtime};
use agentd_core::{Cron, CronQuery, RunStore};
use agentd_gateway::keys::Principal;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::sync::Arc;

fn to_json(c: &Cron) -> Value {
    json!({
        "cron_id": c.cron_id,
        "assistant_id": c.assistant_id,
        "thread_id": c.thread_id,
        "schedule": c.schedule,
        "timezone": c.timezone,
        "end_time": c.end_time,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
        "payload": c.payload,
        "user_id": c.user_id,
        "next_run_date": c.next_run_date,
        "metadata": c.metadata,
        "enabled": c.enabled,
        "on_run_completed": c.on_run_completed,
    })
}

async fn create_cron(
    rt: &Arc<Runtime>,
    p: &Principal,
    thread: Option<String>,
    body: Body,
) -> Res<Json<Value>> {
    let o: Map<String, Value> = body_object(&read_body(rt, body).await?)?;
    let assistant = opt_str(&o, "assistant_id")?
        .ok_or_else(|| AgentError::invalid("assistant_id", "is required"))?;
    let agent = rt
        .agent(assistant)
        .cloned()
        .ok_or_else(|| AgentError::not_found("assistant", assistant))?;
    let schedule =
        opt_str(&o, "schedule")?.ok_or_else(|| AgentError::invalid("schedule", "is required"))?;
    let timezone = opt_str(&o, "timezone")?.unwrap_or("UTC");
    let parsed = Schedule::parse(schedule, timezone).map_err(|(f, m)| AgentError::invalid(f, m))?;
    if let Some(t) = &thread {
        if rt.store.get_thread(&p.tenant, t).await?.is_none() {
            return Err(AgentError::not_found("thread", t));
        }
    }
    // The run each firing creates: validated now, so a bad input fails here, not at 3 am.
    let mut payload = Map::new();
    match o.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::Object(i)) => {
            let mut msgs = Vec::new();
            if let Some(list) = i.get("messages") {
                let Some(list) = list.as_array() else {
                    return Err(AgentError::invalid(
                        "input.messages",
                        "must be a list of messages",
                    ));
                };
                for (n, m) in list.iter().enumerate() {
                    msgs.push(
                        crate::messages::from_input(m, &format!("input.messages[{n}]"))
                            .map_err(|e| AgentError::invalid(e.field, e.message))?,
                    );
                }
            }
            payload.insert("input".into(), json!({"messages": msgs}));
        }
        Some(_) => return Err(AgentError::invalid("input", "must be an object")),
    }
    for key in ["config", "context"] {
        payload.insert(key.into(), opt_object(&o, key)?);
    }
    if let Some(m) = opt_str(&o, "multitask_strategy")? {
        if agentd_core::MultitaskStrategy::parse(m).is_none() {
            return Err(AgentError::invalid(
                "multitask_strategy",
                "must be reject, enqueue, interrupt or rollback",
            ));
        }
        payload.insert("multitask_strategy".into(), json!(m));
    }
    if let Some(w) = opt_str(&o, "webhook")? {
        payload.insert("webhook".into(), json!(w));
    }
    payload.insert("stream_mode".into(), json!(["values"]));
    payload.insert("key_id".into(), json!(p.key_id.to_string()));
    let end_time = match opt_str(&o, "end_time")? {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| AgentError::invalid("end_time", "must be an RFC 3339 time"))?
                .with_timezone(&chrono::Utc),
        ),
    };
    let enabled = match o.get("enabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AgentError::invalid("enabled", "must be true or false")),
    };
    let now = now_ms();
    let next = parsed
        .next_after(now)
        .filter(|n| end_time.is_none_or(|e| *n <= e));
    let cron = Cron {
        cron_id: uuid::Uuid::new_v4().to_string(),
        tenant: p.tenant.clone(),
        assistant_id: agent.assistant_id.clone(),
        agent: agent.name().to_owned(),
        thread_id: thread,
        schedule: schedule.to_owned(),
        timezone: timezone.to_owned(),
        payload: Value::Object(payload),
        metadata: opt_object(&o, "metadata")?,
        enabled,
        end_time,
        next_run_date: next
            .map(|n| chrono::DateTime::from_timestamp_millis(n.timestamp_millis()).unwrap_or(n)),
        on_run_completed: opt_str(&o, "on_run_completed")?.map(str::to_owned),
        user_id: p.user.as_ref().map(|u| u.to_string()),
        created_at: now,
        updated_at: now,
    };
    rt.store.create_cron(&cron).await?;
    Ok(Json(to_json(&cron)))
}

pub(crate) async fn create(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Json<Value>> {
    create_cron(&rt, &p, None, body).await
}

pub(crate) async fn create_for_thread(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(thread_id): Path<String>,
    body: Body,
) -> Res<Json<Value>> {
    create_cron(&rt, &p, Some(thread_id), body).await
}

pub(crate) async fn search(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let (limit, offset) = limit_offset(&o)?;
    let assistant_id = opt_str(&o, "assistant_id")?.map(|a| {
        rt.agent(a)
            .map(|ag| ag.assistant_id.clone())
            .unwrap_or_else(|| a.to_owned())
    });
    let enabled = match o.get("enabled") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(AgentError::invalid("enabled", "must be true or false")),
    };
    let q = CronQuery {
        assistant_id,
        thread_id: opt_str(&o, "thread_id")?.map(str::to_owned),
        enabled,
        limit,
        offset,
    };
    let crons = rt.store.search_crons(&p.tenant, &q).await?;
    Ok(Json(Value::Array(crons.iter().map(to_json).collect())))
}

pub(crate) async fn delete(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(cron_id): Path<String>,
) -> Res<StatusCode> {
    if rt.store.delete_cron(&p.tenant, &cron_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AgentError::not_found("cron", &cron_id))
    }
}
