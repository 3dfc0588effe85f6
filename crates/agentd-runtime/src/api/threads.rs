//! Threads: create, get, search, update, delete, state and history.

use super::{body_object, limit_offset, opt_object, opt_str, read_body, tenant, AgentError, Res};
use crate::runtime::{now_ms, Runtime};
use agentd_core::{RunStore, Thread, ThreadQuery, ThreadStatus};
use agentd_gateway::keys::Principal;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn to_json(t: &Thread) -> Value {
    json!({
        "thread_id": t.thread_id,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "metadata": t.metadata,
        "status": t.status.as_str(),
        "values": t.values,
        "interrupts": {},
        "config": {},
        "ttl": t.ttl_minutes.map(|m| json!({"ttl": m, "strategy": "delete"})),
    })
}

/// Whether a thread is the temporary one of a stateless run (hidden from search).
fn is_stateless(t: &Thread) -> bool {
    t.metadata.get("stateless") == Some(&Value::Bool(true))
}

pub(crate) fn state_json(t: &Thread) -> Value {
    let checkpoint = json!({
        "thread_id": t.thread_id,
        "checkpoint_ns": "",
        "checkpoint_id": format!("{:016x}", t.updated_at.timestamp_millis()),
        "checkpoint_map": null,
    });
    json!({
        "values": t.values.clone().unwrap_or_else(|| json!({})),
        "next": [],
        "tasks": [],
        "interrupts": [],
        "checkpoint": checkpoint,
        "metadata": t.metadata,
        "created_at": t.updated_at,
        "parent_checkpoint": null,
    })
}

fn check_id(field: &str, id: &str) -> Res<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AgentError::invalid(
            field,
            "must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(())
}

pub(crate) async fn create(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let mut metadata = opt_object(&o, "metadata")?;
    if let Some(g) = opt_str(&o, "graph_id")? {
        metadata["graph_id"] = json!(g);
    }
    let id = match opt_str(&o, "thread_id")? {
        Some(id) => {
            check_id("thread_id", id)?;
            id.to_owned()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let if_exists = opt_str(&o, "if_exists")?.unwrap_or("raise");
    if !matches!(if_exists, "raise" | "do_nothing") {
        return Err(AgentError::invalid(
            "if_exists",
            "must be raise or do_nothing",
        ));
    }
    let ttl_minutes: Option<f64> = match o.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::Object(t)) => {
            match t.get("strategy").and_then(Value::as_str) {
                None | Some("delete") => {}
                Some(_) => return Err(AgentError::invalid("ttl.strategy", "must be delete")),
            }
            Some(
                t.get("ttl")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| AgentError::invalid("ttl.ttl", "must be a number of minutes"))?,
            )
        }
        Some(_) => {
            return Err(AgentError::invalid(
                "ttl",
                "must be {\"ttl\": minutes, \"strategy\": \"delete\"}",
            ))
        }
    };
    if ttl_minutes.is_some_and(|m| !(m > 0.0 && m < 1e7)) {
        return Err(AgentError::invalid(
            "ttl.ttl",
            "must be a positive number of minutes",
        ));
    }
    let mut thread = rt.new_thread(tenant(&p), id.clone(), metadata, None);
    if let Some(m) = ttl_minutes {
        let now = now_ms();
        thread.ttl_minutes = Some(m.ceil() as i64);
        thread.expires_at = Some(now + chrono::Duration::milliseconds((m * 60_000.0) as i64));
    }
    match rt.store.create_thread(&thread).await? {
        Some(t) => Ok(Json(to_json(&t))),
        None => {
            let existing = rt.store.get_thread(tenant(&p), &id).await?;
            match (if_exists, existing) {
                ("do_nothing", Some(t)) => Ok(Json(to_json(&t))),
                _ => Err(AgentError::conflict(format!(
                    "thread {} already exists",
                    agentd_core::echo(&id)
                ))),
            }
        }
    }
}

pub(crate) async fn get(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Res<Json<Value>> {
    let t = rt
        .store
        .get_thread(tenant(&p), &id)
        .await?
        .ok_or_else(|| AgentError::not_found("thread", &id))?;
    Ok(Json(to_json(&t)))
}

pub(crate) async fn update(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Body,
) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let metadata = opt_object(&o, "metadata")?;
    let map = metadata.as_object().cloned().unwrap_or_default();
    let t = rt
        .store
        .update_thread_metadata(tenant(&p), &id, &map)
        .await?
        .ok_or_else(|| AgentError::not_found("thread", &id))?;
    Ok(Json(to_json(&t)))
}

pub(crate) async fn delete(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Res<axum::http::StatusCode> {
    // Stop what runs on it first, so no worker writes into a deleted thread.
    for run in rt
        .store
        .list_runs(tenant(&p), &id, None, 1000, 0)
        .await?
        .into_iter()
        .filter(|r| !r.status.is_terminal())
    {
        let _ = rt
            .cancel_run(
                tenant(&p),
                &run.run_id,
                agentd_core::CancelAction::Interrupt,
            )
            .await;
    }
    if rt.store.delete_thread(tenant(&p), &id).await? {
        Ok(axum::http::StatusCode::NO_CONTENT)
    } else {
        Err(AgentError::not_found("thread", &id))
    }
}

pub(crate) async fn search(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let (limit, offset) = limit_offset(&o)?;
    let metadata = match o.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(AgentError::invalid("metadata", "must be an object")),
    };
    let status = match opt_str(&o, "status")? {
        None => None,
        Some(s) => Some(ThreadStatus::parse(s).ok_or_else(|| {
            AgentError::invalid("status", "must be idle, busy, interrupted or error")
        })?),
    };
    let ids = match o.get("ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| AgentError::invalid("ids", "must be a list of strings"))?,
        ),
        Some(_) => return Err(AgentError::invalid("ids", "must be a list of strings")),
    };
    let newest_first = !matches!(opt_str(&o, "sort_order")?, Some("asc"));
    let query = ThreadQuery {
        metadata,
        status,
        ids,
        limit: limit + 64,
        offset,
        newest_first,
    };
    let threads = rt.store.search_threads(tenant(&p), &query).await?;
    Ok(Json(Value::Array(
        threads
            .iter()
            .filter(|t| !is_stateless(t))
            .take(limit as usize)
            .map(to_json)
            .collect(),
    )))
}

pub(crate) async fn state(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Res<Json<Value>> {
    let t = rt
        .store
        .get_thread(tenant(&p), &id)
        .await?
        .ok_or_else(|| AgentError::not_found("thread", &id))?;
    Ok(Json(state_json(&t)))
}

pub(crate) async fn history(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: Body,
) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let (limit, _) = limit_offset(&o)?;
    history_of(&rt, &p, &id, limit).await
}

pub(crate) async fn history_get(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Res<Json<Value>> {
    history_of(&rt, &p, &id, 10).await
}

async fn history_of(rt: &Runtime, p: &Principal, id: &str, limit: i64) -> Res<Json<Value>> {
    let t = rt
        .store
        .get_thread(tenant(p), id)
        .await?
        .ok_or_else(|| AgentError::not_found("thread", id))?;
    // One checkpoint per thread: the state its last run left.
    let list = if limit == 0 {
        Vec::new()
    } else {
        vec![state_json(&t)]
    };
    Ok(Json(Value::Array(list)))
}
