//! The LangGraph-compatible agent API (assistants, threads, runs, crons), as the official
//! `langgraph-sdk` client calls it (`shared/reference/agent-api.md`).
//!
//! The one decision to know: handlers never execute runs. They validate, write the run row
//! and its first event, enqueue it, and then (for `wait`, `join`, `stream`) read the run's
//! durable events from the store, woken by the in-process hub or, for runs executing on
//! another replica, by a short poll. So any replica can serve any run's stream, and a client
//! that reconnects with `Last-Event-ID` gets exactly the rest.

mod admin;
mod assistants;
mod crons;
mod openapi;
mod runs;
mod sse;
mod threads;
mod ws;

use crate::runtime::Runtime;
use agentd_core::{ApiError, ErrorKind};
use agentd_gateway::keys::Principal;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub use openapi::openapi;

/// An agent-API error: the status LangGraph clients expect and a body every client can read
/// (`detail` and `message` for the LangGraph SDKs, `error` in OpenAI's shape for the rest).
#[derive(Debug)]
pub(crate) struct AgentError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl AgentError {
    pub(crate) fn not_found(what: &str, id: &str) -> AgentError {
        AgentError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("{what} {} not found", agentd_core::echo(id)),
            field: None,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> AgentError {
        let field = field.into();
        AgentError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_request",
            message: format!("{field}: {}", message.into()),
            field: Some(field),
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> AgentError {
        AgentError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> AgentError {
        AgentError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> AgentError {
        AgentError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            field: None,
        }
    }
}

impl From<agentd_core::StoreError> for AgentError {
    fn from(e: agentd_core::StoreError) -> Self {
        match e {
            agentd_core::StoreError::Invalid(m) => AgentError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_request",
                message: m,
                field: None,
            },
            agentd_core::StoreError::Conflict => AgentError::conflict("already exists"),
            agentd_core::StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "Store unavailable");
                AgentError::unavailable("the store is unavailable; retry shortly")
            }
            agentd_core::StoreError::Backend(m) => {
                tracing::error!(error = %m, "Store error in the agent API");
                AgentError::internal("store error; see the server log")
            }
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let kind = match self.status.as_u16() {
            404 => ErrorKind::NotFound,
            500 => ErrorKind::Internal,
            503 => ErrorKind::Unavailable,
            _ => ErrorKind::InvalidRequest,
        };
        let api = ApiError {
            kind,
            code: self.code.into(),
            message: self.message.clone(),
            param: self.field.clone(),
            retry_after: None,
        };
        let mut body = api.openai_body();
        body["detail"] = Value::String(self.message.clone());
        body["message"] = Value::String(self.message);
        (self.status, Json(body)).into_response()
    }
}

pub(crate) type Res<T> = Result<T, AgentError>;

/// The JSON body of a request: an object (empty when absent), or 422.
pub(crate) fn body_object(bytes: &[u8]) -> Res<serde_json::Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(Value::Null) => Ok(serde_json::Map::new()),
        Ok(_) => Err(AgentError::invalid("body", "must be a JSON object")),
        Err(e) => Err(AgentError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_json",
            message: format!("the body is not valid JSON: {e}"),
            field: None,
        }),
    }
}

/// Reads a request body up to the server's limit.
pub(crate) async fn read_body(rt: &Runtime, body: axum::body::Body) -> Res<bytes::Bytes> {
    let limit = rt.config.server.max_body_bytes;
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(_) => Err(AgentError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            message: format!(
                "the request body is larger than {limit} bytes (server.max_body_bytes)"
            ),
            field: None,
        }),
    }
}

pub(crate) fn tenant(p: &Principal) -> &agentd_core::TenantId {
    &p.tenant
}

/// Optional string field; 422 naming it when of another type.
pub(crate) fn opt_str<'a>(
    o: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Res<Option<&'a str>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AgentError::invalid(key, "must be a string")),
    }
}

/// Optional object field (`metadata`, `config`, …); 422 when of another type.
pub(crate) fn opt_object(o: &serde_json::Map<String, Value>, key: &str) -> Res<Value> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(AgentError::invalid(key, "must be an object")),
    }
}

pub(crate) fn limit_offset(o: &serde_json::Map<String, Value>) -> Res<(i64, i64)> {
    let num = |key: &str, default: i64, max: i64| -> Res<i64> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match v.as_i64() {
                Some(n) if (0..=max).contains(&n) => Ok(n),
                _ => Err(AgentError::invalid(
                    key,
                    format!("must be an integer from 0 to {max}"),
                )),
            },
        }
    };
    Ok((num("limit", 10, 1000)?, num("offset", 0, i64::MAX)?))
}

async fn ok() -> Json<Value> {
    Json(json!({"ok": true}))
}

async fn info(axum::extract::State(rt): axum::extract::State<Arc<Runtime>>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "server": "agentd",
        "langgraph_py_version": null,
        "flags": {"assistants": true, "crons": true, "langsmith": false},
        "agents": rt.agents.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "queue": rt.queue.backend(),
        "store": rt.store.backend(),
        "region": rt.config.server.region,
        "primary_region": rt.config.regions.primary,
        "regions": rt.config.regions.list,
        "role": rt.role.as_str(),
    }))
}

/// The operators' queue routes (under `/admin`: the gateway requires the admin key). Served by
/// every role: workers hold the queue too.
pub fn admin_router(rt: Arc<Runtime>) -> Router {
    Router::new()
        .route("/admin/queues", get(admin::list))
        .route("/admin/pools", get(admin::pools))
        // Every role reports its region and role (the agent API adds the rest of its routes).
        .route("/info", get(info))
        .route("/admin/queues/{stream}/dead", get(admin::dead))
        .route("/admin/queues/{stream}/dead/{id}/retry", post(admin::retry))
        .route(
            "/admin/queues/{stream}/dead/{id}",
            axum::routing::delete(admin::drop_dead),
        )
        .with_state(rt)
}

/// The agent API's routes (the gateway adds its middleware: auth, limits, logs).
pub fn router(rt: Arc<Runtime>) -> Router {
    Router::new()
        .route("/ok", get(ok))
        .route("/assistants", post(assistants::create))
        .route("/assistants/search", post(assistants::search))
        .route("/assistants/count", post(assistants::count))
        .route("/assistants/{id}", get(assistants::get))
        .route("/assistants/{id}/graph", get(assistants::graph))
        .route("/assistants/{id}/schemas", get(assistants::schemas))
        .route("/threads", post(threads::create))
        .route("/threads/search", post(threads::search))
        .route(
            "/threads/{thread_id}",
            get(threads::get)
                .patch(threads::update)
                .delete(threads::delete),
        )
        .route("/threads/{thread_id}/state", get(threads::state))
        .route(
            "/threads/{thread_id}/history",
            post(threads::history).get(threads::history_get),
        )
        .route(
            "/threads/{thread_id}/runs",
            post(runs::create_on_thread).get(runs::list),
        )
        .route(
            "/threads/{thread_id}/runs/stream",
            post(runs::stream_on_thread),
        )
        .route("/threads/{thread_id}/runs/wait", post(runs::wait_on_thread))
        .route(
            "/threads/{thread_id}/runs/crons",
            post(crons::create_for_thread),
        )
        .route(
            "/threads/{thread_id}/runs/{run_id}",
            get(runs::get).delete(runs::delete),
        )
        .route("/threads/{thread_id}/runs/{run_id}/join", get(runs::join))
        .route(
            "/threads/{thread_id}/runs/{run_id}/stream",
            get(runs::join_stream),
        )
        .route(
            "/threads/{thread_id}/runs/{run_id}/cancel",
            post(runs::cancel),
        )
        .route("/runs", post(runs::create_stateless))
        .route("/runs/stream", post(runs::stream_stateless))
        .route("/runs/wait", post(runs::wait_stateless))
        .route("/runs/crons", post(crons::create))
        .route("/runs/crons/search", post(crons::search))
        .route(
            "/runs/crons/{cron_id}",
            axum::routing::delete(crons::delete),
        )
        .route("/threads/{thread_id}/runs/{run_id}/ws", get(ws::run_socket))
        .route("/threads/{thread_id}/ws", get(ws::thread_socket))
        .with_state(rt)
}
