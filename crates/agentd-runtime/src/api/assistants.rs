//! Assistants: one per agent declared in the config (`graph_id` = the agent's name, the id
//! LangGraph gives a graph's system assistant). They are read-only: `POST /assistants` with
//! `if_exists = do_nothing` answers the existing one, anything else is refused.

use super::{body_object, limit_offset, read_body, AgentError, Res};
use crate::runtime::{Agent, Runtime};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// A fixed creation time: assistants are born with the config.
const EPOCH: &str = "2026-01-01T00:00:00+00:00";

pub(crate) fn to_json(a: &Agent) -> Value {
    json!({
        "assistant_id": a.assistant_id,
        "graph_id": a.name(),
        "name": a.name(),
        "description": a.config.description,
        "config": {"configurable": {}},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": EPOCH,
        "updated_at": EPOCH,
    })
}

fn find<'a>(rt: &'a Runtime, id: &str) -> Res<&'a Arc<Agent>> {
    rt.agent(id)
        .ok_or_else(|| AgentError::not_found("assistant", id))
}

fn matches(a: &Agent, filter: &serde_json::Map<String, Value>) -> bool {
    let graph_ok = filter
        .get("graph_id")
        .and_then(Value::as_str)
        .is_none_or(|g| g == a.name());
    let name_ok = filter
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(|n| a.name().contains(n));
    let meta_ok = filter
        .get("metadata")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| k == "created_by" && v == "system"));
    graph_ok && name_ok && meta_ok
}

pub(crate) async fn search(State(rt): State<Arc<Runtime>>, body: Body) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let (limit, offset) = limit_offset(&o)?;
    let list: Vec<Value> = rt
        .agents()
        .iter()
        .filter(|a| matches(a, &o))
        .skip(offset as usize)
        .take(limit as usize)
        .map(|a| to_json(a))
        .collect();
    Ok(Json(Value::Array(list)))
}

pub(crate) async fn count(State(rt): State<Arc<Runtime>>, body: Body) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    Ok(Json(json!(rt
        .agents()
        .iter()
        .filter(|a| matches(a, &o))
        .count())))
}

pub(crate) async fn get(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Res<Json<Value>> {
    Ok(Json(to_json(find(&rt, &id)?)))
}

pub(crate) async fn graph(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Res<Json<Value>> {
    let a = find(&rt, &id)?;
    let mut nodes = vec![
        json!({"id": "__start__", "type": "schema", "data": "__start__"}),
        json!({"id": "agent", "type": "runnable", "data": {"name": a.name()}}),
    ];
    let mut edges = vec![json!({"source": "__start__", "target": "agent"})];
    if !a.tools.is_empty() {
        nodes.push(json!({"id": "tools", "type": "runnable", "data": {"name": "tools"}}));
        edges.push(json!({"source": "agent", "target": "tools", "conditional": true}));
        edges.push(json!({"source": "tools", "target": "agent"}));
    }
    nodes.push(json!({"id": "__end__", "type": "schema", "data": "__end__"}));
    edges.push(json!({"source": "agent", "target": "__end__", "conditional": !a.tools.is_empty()}));
    Ok(Json(json!({"nodes": nodes, "edges": edges})))
}

pub(crate) async fn schemas(
    State(rt): State<Arc<Runtime>>,
    Path(id): Path<String>,
) -> Res<Json<Value>> {
    let a = find(&rt, &id)?;
    let messages = json!({"type": "object", "properties": {"messages": {"type": "array", "items": {"type": "object"}}}});
    Ok(Json(json!({
        "graph_id": a.name(),
        "input_schema": messages,
        "output_schema": messages,
        "state_schema": messages,
        "config_schema": {"type": "object"},
        "context_schema": {"type": "object"},
    })))
}

pub(crate) async fn create(State(rt): State<Arc<Runtime>>, body: Body) -> Res<Json<Value>> {
    let o = body_object(&read_body(&rt, body).await?)?;
    let graph = o
        .get("graph_id")
        .and_then(Value::as_str)
        .ok_or_else(|| AgentError::invalid("graph_id", "is required"))?;
    let agent = rt
        .agent(graph)
        .ok_or_else(|| AgentError::not_found("graph", graph))?;
    match o.get("if_exists").and_then(Value::as_str) {
        Some("do_nothing") => Ok(Json(to_json(agent))),
        _ => Err(AgentError {
            status: StatusCode::CONFLICT,
            code: "assistant_exists",
            message: format!(
                "agents are declared in the config: the assistant for {} already exists (send if_exists=do_nothing to get it)",
                agent.name()
            ),
            field: None,
        }),
    }
}
