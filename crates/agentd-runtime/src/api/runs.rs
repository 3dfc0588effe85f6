//! Runs: create (background), stream, wait, join, join stream, cancel, get, list, delete; on a
//! thread and stateless.

use super::sse::{self, DisconnectGuard, Filter};
use super::{body_object, opt_object, opt_str, read_body, AgentError, Res};
use crate::messages;
use crate::runtime::{CreateError, NewRun, Runtime, ThreadChoice};
use agentd_core::{CancelAction, MultitaskStrategy, Run, RunStatus, RunStore};
use agentd_gateway::keys::Principal;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

const MODES: &[&str] = &[
    "values",
    "updates",
    "messages-tuple",
    "messages",
    "events",
    "debug",
    "custom",
    "tasks",
    "checkpoints",
];

pub(crate) fn to_json(r: &Run) -> Value {
    let mut kwargs = r.kwargs.clone();
    if let Some(k) = kwargs.as_object_mut() {
        k.remove("key_id");
        k.remove("tier");
    }
    json!({
        "run_id": r.run_id,
        "thread_id": r.thread_id,
        "assistant_id": r.assistant_id,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "status": r.status.as_str(),
        "metadata": r.metadata,
        "kwargs": kwargs,
        "multitask_strategy": r.multitask_strategy.as_str(),
        "error": r.error,
        "attempt": r.attempt,
    })
}

fn location(r: &Run, stateless: bool) -> String {
    if stateless {
        format!("/runs/{}", r.run_id)
    } else {
        format!("/threads/{}/runs/{}", r.thread_id, r.run_id)
    }
}

fn with_content_location(mut resp: Response, r: &Run, stateless: bool) -> Response {
    if let Ok(v) = HeaderValue::from_str(&location(r, stateless)) {
        resp.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    resp
}

/// Parses stream modes (a string or a list), 422 naming `stream_mode` otherwise.
fn stream_modes(v: Option<&Value>, default: &str) -> Res<Vec<String>> {
    let list: Vec<String> = match v {
        None | Some(Value::Null) => vec![default.to_owned()],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| m.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                AgentError::invalid("stream_mode", "must be a string or a list of strings")
            })?,
        Some(_) => {
            return Err(AgentError::invalid(
                "stream_mode",
                "must be a string or a list of strings",
            ))
        }
    };
    for m in &list {
        if !MODES.contains(&m.as_str()) {
            return Err(AgentError::invalid(
                "stream_mode",
                format!(
                    "unknown stream mode {}: use one of {}",
                    agentd_core::echo(m),
                    MODES.join(", ")
                ),
            ));
        }
    }
    Ok(list)
}

/// What a run request asks for, validated.
struct Request {
    new: NewRun,
    on_disconnect_cancel: bool,
}

fn parse_run(
    rt: &Runtime,
    p: &Principal,
    o: &Map<String, Value>,
    thread: Option<String>,
    default_mode: &str,
    default_disconnect_cancel: bool,
) -> Res<Request> {
    let assistant = match o.get("assistant_id") {
        Some(Value::String(s)) => s.as_str(),
        None | Some(Value::Null) => return Err(AgentError::invalid("assistant_id", "is required")),
        Some(_) => return Err(AgentError::invalid("assistant_id", "must be a string")),
    };
    let agent = rt
        .agent(assistant)
        .cloned()
        .ok_or_else(|| AgentError::not_found("assistant", assistant))?;
    let mut input = Vec::new();
    let mut input_bytes = 0;
    match o.get("input") {
        None | Some(Value::Null) => {}
        Some(Value::Object(i)) => {
            input_bytes = serde_json::to_string(i).map(|s| s.len()).unwrap_or(0);
            match i.get("messages") {
                None | Some(Value::Null) => {}
                Some(Value::Array(list)) => {
                    for (n, m) in list.iter().enumerate() {
                        input.push(
                            messages::from_input(m, &format!("input.messages[{n}]"))
                                .map_err(|e| AgentError::invalid(e.field, e.message))?,
                        );
                    }
                }
                Some(_) => {
                    return Err(AgentError::invalid(
                        "input.messages",
                        "must be a list of messages",
                    ))
                }
            }
        }
        Some(_) => return Err(AgentError::invalid(
            "input",
            "must be an object such as {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
        )),
    }
    if o.get("command").is_some_and(|c| !c.is_null()) {
        return Err(AgentError::invalid(
            "command",
            "is not supported: agentd agents do not pause for human input",
        ));
    }
    let modes = stream_modes(o.get("stream_mode"), default_mode)?;
    let strategy = match opt_str(o, "multitask_strategy")? {
        None => MultitaskStrategy::Enqueue,
        Some(s) => MultitaskStrategy::parse(s).ok_or_else(|| {
            AgentError::invalid(
                "multitask_strategy",
                "must be reject, enqueue, interrupt or rollback",
            )
        })?,
    };
    let create = match opt_str(o, "if_not_exists")? {
        None | Some("reject") => false,
        Some("create") => true,
        Some(_) => {
            return Err(AgentError::invalid(
                "if_not_exists",
                "must be reject or create",
            ))
        }
    };
    let on_disconnect_cancel = match opt_str(o, "on_disconnect")? {
        None => default_disconnect_cancel,
        Some("cancel") => true,
        Some("continue") => false,
        Some(_) => {
            return Err(AgentError::invalid(
                "on_disconnect",
                "must be cancel or continue",
            ))
        }
    };
    let after = match o.get("after_seconds") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(v) => match v.as_f64() {
            Some(s) if (0.0..=30.0 * 86400.0).contains(&s) => Duration::from_secs_f64(s),
            _ => {
                return Err(AgentError::invalid(
                    "after_seconds",
                    "must be a number of seconds from 0 to 2592000",
                ))
            }
        },
    };
    let webhook = opt_str(o, "webhook")?;
    if let Some(w) = webhook {
        if !(w.starts_with("http://") || w.starts_with("https://")) || w.len() > 2048 {
            return Err(AgentError::invalid("webhook", "must be an http(s) URL"));
        }
    }
    let metadata = opt_object(o, "metadata")?;
    let config = opt_object(o, "config")?;
    let context = opt_object(o, "context")?;
    let tag = metadata
        .get("tag")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kwargs = json!({
        "stream_mode": modes,
        "config": config,
        "context": context,
        "webhook": webhook,
        "on_disconnect": if on_disconnect_cancel { "cancel" } else { "continue" },
        "tier": p.tier,
    });
    Ok(Request {
        new: NewRun {
            tenant: p.tenant.clone(),
            key_id: Some(p.key_id.to_string()),
            user_id: p.user.as_ref().map(|u| u.to_string()),
            agent,
            thread: match thread {
                Some(id) => ThreadChoice::Thread { id, create },
                None => ThreadChoice::Stateless,
            },
            input,
            kwargs,
            metadata,
            strategy,
            after,
            tag,
            tier: p.tier.clone(),
            input_bytes,
            parent_run_id: None,
        },
        on_disconnect_cancel,
    })
}

async fn create(rt: &Arc<Runtime>, req: NewRun) -> Res<Run> {
    let thread = match &req.thread {
        ThreadChoice::Thread { id, .. } => Some(id.clone()),
        ThreadChoice::Stateless => None,
    };
    match rt.create_run(req).await {
        Ok(r) => Ok(r),
        Err(CreateError::Busy) => Err(AgentError::conflict(
            "the thread has a run in progress and multitask_strategy is reject",
        )),
        Err(CreateError::NoThread) => Err(AgentError::not_found(
            "thread",
            thread.as_deref().unwrap_or(""),
        )),
        Err(CreateError::Store(e)) => Err(e.into()),
        Err(CreateError::Queue(e)) => {
            tracing::warn!(error = %e, "Cannot enqueue a run; the reaper will send it");
            Err(AgentError::unavailable(
                "the queue is unavailable; the run was saved and will start when it is back",
            ))
        }
    }
}

async fn parse_body(rt: &Runtime, body: Body) -> Res<Map<String, Value>> {
    body_object(&read_body(rt, body).await?)
}

// --- create (background) ---

pub(crate) async fn create_on_thread(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(thread_id): Path<String>,
    body: Body,
) -> Res<Response> {
    let o = parse_body(&rt, body).await?;
    let req = parse_run(&rt, &p, &o, Some(thread_id), "values", false)?;
    let run = create(&rt, req.new).await?;
    Ok(with_content_location(
        Json(to_json(&run)).into_response(),
        &run,
        false,
    ))
}

pub(crate) async fn create_stateless(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Response> {
    let o = parse_body(&rt, body).await?;
    let req = parse_run(&rt, &p, &o, None, "values", false)?;
    let run = create(&rt, req.new).await?;
    Ok(with_content_location(
        Json(to_json(&run)).into_response(),
        &run,
        true,
    ))
}

// --- stream ---

async fn stream(
    rt: Arc<Runtime>,
    p: Principal,
    thread: Option<String>,
    body: Body,
) -> Res<Response> {
    let stateless = thread.is_none();
    let o = parse_body(&rt, body).await?;
    let req = parse_run(&rt, &p, &o, thread, "values", true)?;
    let cancel = req.on_disconnect_cancel;
    let run = create(&rt, req.new).await?;
    let guard = DisconnectGuard {
        rt: rt.clone(),
        tenant: p.tenant.clone(),
        run_id: run.run_id.clone(),
        armed: cancel,
    };
    let loc = format!("/threads/{}/runs/{}/stream", run.thread_id, run.run_id);
    Ok(sse::response(
        rt,
        p.tenant,
        run.run_id.clone(),
        0,
        None,
        Some(guard),
        Some(loc),
        Some(location(&run, stateless)),
    ))
}

pub(crate) async fn stream_on_thread(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(thread_id): Path<String>,
    body: Body,
) -> Res<Response> {
    stream(rt, p, Some(thread_id), body).await
}

pub(crate) async fn stream_stateless(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Response> {
    stream(rt, p, None, body).await
}

// --- wait / join ---

/// Waits until the run ended; returns it (`None` if it was deleted: rollback).
async fn wait_end(rt: &Arc<Runtime>, p: &Principal, run_id: &str) -> Res<Option<Run>> {
    let mut rx = rt.hub.subscribe(run_id);
    loop {
        rx.borrow_and_update();
        let run = rt.store.get_run(&p.tenant, run_id).await?;
        match run {
            None => return Ok(None),
            Some(r) if r.status.is_terminal() => return Ok(Some(r)),
            Some(_) => {}
        }
        let poll = rt.hub.poll().unwrap_or(Duration::from_secs(2));
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    rx = rt.hub.subscribe(run_id);
                }
            }
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// The body `wait` and `join` answer: the thread's values, or `__error__` for a failed run.
async fn final_values(rt: &Arc<Runtime>, p: &Principal, run: &Run) -> Res<Value> {
    if matches!(run.status, RunStatus::Error | RunStatus::Timeout) {
        return Ok(json!({"__error__": {
            "error": if run.status == RunStatus::Timeout { "TimeoutError" } else { "RunError" },
            "message": run.error.clone().unwrap_or_default(),
        }}));
    }
    let thread = rt.store.get_thread(&p.tenant, &run.thread_id).await?;
    Ok(thread.and_then(|t| t.values).unwrap_or_else(|| json!({})))
}

async fn wait(rt: Arc<Runtime>, p: Principal, thread: Option<String>, body: Body) -> Res<Response> {
    let stateless = thread.is_none();
    let o = parse_body(&rt, body).await?;
    let req = parse_run(&rt, &p, &o, thread, "values", true)?;
    let cancel = req.on_disconnect_cancel;
    let run = create(&rt, req.new).await?;
    let mut guard = DisconnectGuard {
        rt: rt.clone(),
        tenant: p.tenant.clone(),
        run_id: run.run_id.clone(),
        armed: cancel,
    };
    let ended = wait_end(&rt, &p, &run.run_id).await?;
    guard.armed = false;
    let body = match ended {
        Some(r) => final_values(&rt, &p, &r).await?,
        None => json!({}),
    };
    let mut resp = with_content_location(Json(body).into_response(), &run, stateless);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "/threads/{}/runs/{}/join",
        run.thread_id, run.run_id
    )) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

pub(crate) async fn wait_on_thread(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(thread_id): Path<String>,
    body: Body,
) -> Res<Response> {
    wait(rt, p, Some(thread_id), body).await
}

pub(crate) async fn wait_stateless(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    body: Body,
) -> Res<Response> {
    wait(rt, p, None, body).await
}

async fn run_of(rt: &Runtime, p: &Principal, thread_id: &str, run_id: &str) -> Res<Run> {
    match rt.store.get_run(&p.tenant, run_id).await? {
        Some(r) if r.thread_id == thread_id => Ok(r),
        _ => Err(AgentError::not_found("run", run_id)),
    }
}

pub(crate) async fn join(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Res<Json<Value>> {
    run_of(&rt, &p, &thread_id, &run_id).await?;
    let ended = wait_end(&rt, &p, &run_id).await?;
    Ok(Json(match ended {
        Some(r) => final_values(&rt, &p, &r).await?,
        None => json!({}),
    }))
}

pub(crate) async fn join_stream(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path((thread_id, run_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Res<Response> {
    let run = run_of(&rt, &p, &thread_id, &run_id).await?;
    let filter: Filter = match q.get("stream_mode").filter(|s| !s.is_empty()) {
        None => None,
        Some(m) => {
            let modes = stream_modes(Some(&Value::String(m.clone())), "values")?;
            Some(
                modes
                    .iter()
                    .flat_map(|m| sse::event_names(m).iter().map(|s| (*s).to_owned()))
                    .collect::<BTreeSet<String>>(),
            )
        }
    };
    let cancel = matches!(
        q.get("cancel_on_disconnect").map(String::as_str),
        Some("true" | "1")
    );
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let cursor = match last {
        Some("-1") => 0,
        Some(s) => s.parse::<i64>().map_err(|_| AgentError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_request",
            message: "Last-Event-ID must be an event id (an integer) or -1".into(),
            field: Some("Last-Event-ID".into()),
        })?,
        None => {
            // Only new events: start after the last one stored.
            let mut cur = 0;
            loop {
                let page = rt.store.events_after(&run_id, cur, 1000).await?;
                match page.last() {
                    Some(e) => cur = e.seq,
                    None => break,
                }
                if page.iter().any(|e| e.event == "end") {
                    // Ended: send the end again.
                    cur -= 1;
                    break;
                }
            }
            cur
        }
    };
    let guard = cancel.then(|| DisconnectGuard {
        rt: rt.clone(),
        tenant: p.tenant.clone(),
        run_id: run_id.clone(),
        armed: true,
    });
    let _ = run;
    Ok(sse::response(
        rt, p.tenant, run_id, cursor, filter, guard, None, None,
    ))
}

// --- cancel, get, list, delete ---

pub(crate) async fn cancel(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path((thread_id, run_id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Res<Response> {
    run_of(&rt, &p, &thread_id, &run_id).await?;
    let action = match q.get("action").map(String::as_str) {
        None | Some("") | Some("interrupt") => CancelAction::Interrupt,
        Some("rollback") => CancelAction::Rollback,
        Some(_) => {
            return Err(AgentError::invalid(
                "action",
                "must be interrupt or rollback",
            ))
        }
    };
    let wait = matches!(q.get("wait").map(String::as_str), Some("1" | "true"));
    rt.cancel_run(&p.tenant, &run_id, action).await?;
    if wait {
        let waited =
            tokio::time::timeout(Duration::from_secs(30), wait_end(&rt, &p, &run_id)).await;
        if let Ok(r) = waited {
            r?;
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(crate) async fn get(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Res<Json<Value>> {
    Ok(Json(to_json(&run_of(&rt, &p, &thread_id, &run_id).await?)))
}

pub(crate) async fn list(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path(thread_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Res<Json<Value>> {
    let num = |k: &str, d: i64| -> Res<i64> {
        match q.get(k).filter(|s| !s.is_empty()) {
            None => Ok(d),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| AgentError::invalid(k, "must be a non-negative integer")),
        }
    };
    let (limit, offset) = (num("limit", 10)?.min(1000), num("offset", 0)?);
    let status = match q.get("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            RunStatus::parse(s)
                .ok_or_else(|| AgentError::invalid("status", "is not a run status"))?,
        ),
    };
    if rt.store.get_thread(&p.tenant, &thread_id).await?.is_none() {
        return Err(AgentError::not_found("thread", &thread_id));
    }
    let runs = rt
        .store
        .list_runs(&p.tenant, &thread_id, status, limit, offset)
        .await?;
    Ok(Json(Value::Array(runs.iter().map(to_json).collect())))
}

pub(crate) async fn delete(
    State(rt): State<Arc<Runtime>>,
    Extension(p): Extension<Principal>,
    Path((thread_id, run_id)): Path<(String, String)>,
) -> Res<StatusCode> {
    let run = run_of(&rt, &p, &thread_id, &run_id).await?;
    if !run.status.is_terminal() {
        return Err(AgentError::conflict(
            "the run is still pending or running: cancel it first (action=rollback deletes it)",
        ));
    }
    rt.store.delete_run(&p.tenant, &run_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
