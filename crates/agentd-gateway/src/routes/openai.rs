//! The OpenAI-compatible surface: chat completions, embeddings, models.

use super::chat::{self, model_not_found};
use super::extract::ApiPath;
use crate::body::{parse_json, read_limited};
use crate::cache;
use crate::call::{self, Call, Ctx, Work};
use crate::error::ErrorResponse;
use crate::keys::Principal;
use crate::middleware::RequestId;
use crate::models::ModelRoute;
use crate::openapi::responses::{KeyOnlyErrors, OpenAiCallErrors};
#[allow(unused_imports)] // read by the #[utoipa::path] annotations
use crate::openapi::schemas::{
    ChatCompletion, ChatCompletionRequest, ChatStreamEvent, EmbeddingsRequest, EmbeddingsResponse,
    Model, ModelList, OpenAiError,
};
use crate::AppState;
use agentd_core::ApiError;
use agentd_providers::ApiFormat;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};
use std::sync::Arc;

/// Chat completions, whole or streamed.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    operation_id = "createChatCompletion",
    params(
        ("x-agentd-session" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Groups calls into a session for budgets and the ledger (1 to 128 visible ASCII characters)"),
        ("x-agentd-tier" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "The tier a router picks a model from (1 to 128 visible ASCII characters); default the key's tier"),
        ("x-agentd-cache" = Option<String>, Header, description = "`on`/`true` or `off`/`false`: use the response cache or not; default the configured policy"),
    ),
    request_body(content = ChatCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer: JSON, or server-sent events (`data: {chat.completion.chunk}` lines ending with `data: [DONE]`) when `stream` is true",
            content(
                (ChatCompletion = "application/json"),
                (ChatStreamEvent = "text/event-stream"),
            ),
            headers(("x-agentd-cache" = String, description = "`hit`, `miss` or `skip`"))),
        OpenAiCallErrors,
    ),
    security(("bearer_api_key" = []), ("x_api_key" = [])),
)]
pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    chat::handle(
        state,
        ApiFormat::OpenAi,
        principal,
        request_id.map(|e| e.0),
        headers,
        body,
    )
    .await
}

/// Embeddings of one or more inputs.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    operation_id = "createEmbedding",
    params(
        ("x-agentd-session" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Groups calls into a session for budgets and the ledger (1 to 128 visible ASCII characters)"),
        ("x-agentd-tier" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "The tier a router picks a model from (1 to 128 visible ASCII characters); default the key's tier"),
        ("x-agentd-cache" = Option<String>, Header, description = "`on`/`true` or `off`/`false`: use the response cache or not; default the configured policy"),
    ),
    request_body(content = EmbeddingsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One vector per input", body = EmbeddingsResponse,
            headers(("x-agentd-cache" = String, description = "`hit`, `miss` or `skip`"))),
        OpenAiCallErrors,
    ),
    security(("bearer_api_key" = []), ("x_api_key" = [])),
)]
pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match embed(state, principal, request_id.map(|e| e.0), headers, body).await {
        Ok(resp) => resp,
        Err(e) => ErrorResponse::openai(e).into_response(),
    }
}

async fn embed(
    state: Arc<AppState>,
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
    let info = agentd_providers::validate::openai_embeddings(&json)?;
    let ctx = Ctx::from_parts(principal, request_id, &headers)?;
    let route = state
        .models
        .resolve(&info.model, ctx.tier.as_deref(), false, 0)
        .ok_or_else(|| model_not_found(&info.model))?;
    // Embeddings inputs are plain text: a third of their bytes bounds the token count.
    let prompt_tokens = (bytes.len() as u64).div_ceil(3);
    let cache_key = state
        .cache
        .as_ref()
        .and_then(|_| cache::key(cache::Kind::Embeddings, &json, ctx.cache_wish, &route.name));
    let call = Call {
        ctx,
        route,
        prompt_tokens,
        max_output_tokens: 0,
        cache_key,
        work: Work::Embeddings(json),
    };
    Ok(chat::respond(call::run(state, call).await?))
}

fn model_object(name: &str, owned_by: &str, created: i64) -> Value {
    json!({"id": name, "object": "model", "created": created, "owned_by": owned_by})
}

/// The models this gateway serves, routers included.
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    operation_id = "listModels",
    responses(
        (status = 200, description = "Every model", body = ModelList),
        KeyOnlyErrors,
    ),
    security(("bearer_api_key" = []), ("x_api_key" = [])),
)]
pub(crate) async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let created = state.models.created;
    let mut data: Vec<Value> = state
        .models
        .ordered
        .iter()
        .map(|r: &Arc<ModelRoute>| model_object(&r.name, &r.owned_by, created))
        .collect();
    data.extend(
        state
            .models
            .routers
            .iter()
            .map(|r| model_object(&r.name, "agentd", created)),
    );
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// One model. The id may contain `/` (`openai/gpt-4o`).
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "openai",
    operation_id = "retrieveModel",
    params(("id" = String, Path, min_length = 1, description = "The model's id", example = "mock")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "No such model (`code: model_not_found`)", body = OpenAiError),
        KeyOnlyErrors,
    ),
    security(("bearer_api_key" = []), ("x_api_key" = [])),
)]
pub(crate) async fn get_model(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Response {
    let created = state.models.created;
    if let Some(route) = state.models.get(&id) {
        return axum::Json(model_object(&route.name, &route.owned_by, created)).into_response();
    }
    if state.models.routers.iter().any(|r| r.name == id) {
        return axum::Json(model_object(&id, "agentd", created)).into_response();
    }
    ErrorResponse::openai(model_not_found(&id)).into_response()
}
