//! The chat handlers' shared path (`/v1/chat/completions`, `/v1/messages`): read → validate →
//! route → hand the call to the pipeline (`call.rs`) → answer (JSON or SSE).

use crate::body::{parse_json, read_limited};
use crate::cache;
use crate::call::{self, Answer, Call, Ctx, Work};
use crate::error::ErrorResponse;
use crate::keys::Principal;
use crate::middleware::RequestId;
use crate::AppState;
use agentd_core::{ApiError, ErrorKind};
use agentd_providers::{ApiFormat, ChatRequest};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

pub(crate) fn model_not_found(model: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "model_not_found",
        format!(
            "the model {} does not exist; GET /v1/models lists the models this gateway serves",
            agentd_core::echo(model)
        ),
    )
    .with_param("model")
}

pub(crate) async fn handle(
    state: Arc<AppState>,
    format: ApiFormat,
    principal: Principal,
    request_id: Option<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match chat(state, format, principal, request_id, headers, body).await {
        Ok(resp) => resp,
        Err(error) => ErrorResponse { format, error }.into_response(),
    }
}

async fn chat(
    state: Arc<AppState>,
    format: ApiFormat,
    principal: Principal,
    request_id: Option<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_limited(
        &headers,
        body,
        state.config.server.max_body_bytes,
        state.config.server.body_read_timeout,
    )
    .await?;
    let json = parse_json(&bytes)?;
    let info = match format {
        ApiFormat::OpenAi => agentd_providers::validate::openai_chat(&json)?,
        ApiFormat::Anthropic => agentd_providers::validate::anthropic_messages(&json)?,
    };
    let ctx = Ctx::from_parts(principal, request_id, &headers)?;
    let prompt_tokens = agentd_providers::tokens::estimate_prompt_tokens(format, &json);
    let has_tools = json
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let route = state
        .models
        .resolve(&info.model, ctx.tier.as_deref(), has_tools, prompt_tokens)
        .ok_or_else(|| model_not_found(&info.model))?;
    let max_output_tokens = agentd_providers::tokens::max_output_tokens(format, &json)
        .unwrap_or(route.max_output_tokens);
    let cache_key = state.cache.as_ref().and_then(|_| {
        cache::key(
            cache::Kind::Chat(format),
            &json,
            ctx.cache_wish,
            &route.name,
        )
    });
    let call = Call {
        ctx,
        prompt_tokens,
        max_output_tokens,
        cache_key,
        work: Work::Chat(ChatRequest {
            format,
            body: Arc::new(json),
            stream: info.stream,
            include_usage: info.include_usage,
            public_model: route.name.clone(),
            upstream_model: String::new(),
        }),
        route,
    };
    Ok(respond(call::run(state, call).await?))
}

/// The HTTP response for a call's answer.
pub(crate) fn respond(answer: Answer) -> Response {
    match answer {
        Answer::Complete { body, sse, cache } => {
            let resp = if sse {
                sse_response(Body::from(body))
            } else {
                json_response(body)
            };
            with_cache_header(resp, cache)
        }
        Answer::Stream { stream, cache } => {
            with_cache_header(sse_response(Body::from_stream(*stream)), cache)
        }
    }
}

pub(crate) fn with_cache_header(mut resp: Response, state: &'static str) -> Response {
    resp.headers_mut()
        .insert(cache::CACHE_HEADER, HeaderValue::from_static(state));
    resp
}

pub(crate) fn json_response(body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell nginx-style proxies in front of us not to buffer the stream.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}
