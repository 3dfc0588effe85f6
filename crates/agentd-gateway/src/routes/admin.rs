//! The admin API (Bearer `AGENTD_ADMIN_KEY`): API keys.

use super::extract::{ApiPath, ApiQuery};
use crate::body::{parse_json, read_limited};
use crate::error::ErrorResponse;
use crate::keys::{issue, store_error};
use crate::openapi::responses::{AdminBadRequest, AdminErrors, TooLarge};
#[allow(unused_imports)] // read by the #[utoipa::path] annotations
use crate::openapi::schemas::{ApiKey as ApiKeyBody, CreateKeyRequest, CreatedApiKey, KeyList};
use crate::AppState;
use agentd_core::{ApiError, ApiKey, ErrorKind, KeyId, KeyStore, TenantId};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Refuses text with control characters (NUL among them: PostgreSQL cannot store it), naming
/// the field.
pub fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_input",
            format!("{field} must not contain control characters (such as NUL)"),
        )
        .with_param(field));
    }
    Ok(())
}

fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| ErrorResponse::openai(e).into_response())
}

pub fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "tenant": key.tenant,
        "user": key.user,
        "prefix": key.prefix,
        "tier": key.tier,
        "created_at": key.created_at.to_rfc3339(),
        "revoked_at": key.revoked_at.map(|t| t.to_rfc3339()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    tenant: Option<String>,
    user: Option<String>,
    /// The key's default tier; see `ApiKey::tier`.
    tier: Option<String>,
}

/// Creates an API key; the answer holds its secret, shown only this once.
#[utoipa::path(
    post,
    path = "/admin/keys",
    tag = "admin",
    operation_id = "createKey",
    request_body(content = CreateKeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The key and its secret", body = CreatedApiKey),
        AdminBadRequest,
        TooLarge,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    reply(async {
        let bytes = read_limited(
        &headers,
        body,
        state.config.server.max_body_bytes,
        state.config.server.body_read_timeout,
    )
    .await?;
        let value = parse_json(&bytes)?;
        let req: CreateKey = serde_json::from_value(value).map_err(|e| {
            ApiError::invalid("invalid_key_request", format!("{e}; expected {{\"name\": string, \"tenant\"?: string, \"user\"?: string, \"tier\"?: string}}"))
        })?;
        check_text("name", &req.name)?;
        for (field, value) in [("tenant", &req.tenant), ("user", &req.user), ("tier", &req.tier)] {
            if let Some(v) = value {
                check_text(field, v)?;
            }
        }
        let (key, secret) = issue(state.store.as_ref(), &req.name, req.tenant.as_deref(), req.user.as_deref(), req.tier.as_deref(), None).await?;
        let mut body = key_json(&key);
        body["key"] = Value::String(secret);
        Ok((StatusCode::CREATED, axum::Json(body)).into_response())
    }
    .await)
}

#[derive(Deserialize)]
pub struct ListQuery {
    tenant: Option<String>,
}

/// Lists keys (never their secrets), revoked ones included.
#[utoipa::path(
    get,
    path = "/admin/keys",
    tag = "admin",
    operation_id = "listKeys",
    params(("tenant" = Option<String>, Query, description = "Only this tenant's keys")),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Response {
    reply(
        async {
            if let Some(t) = &q.tenant {
                check_text("tenant", t)?;
            }
            let tenant = q.tenant.map(TenantId::new);
            let keys = state
                .store
                .list_keys(tenant.as_ref())
                .await
                .map_err(store_error)?;
            let data: Vec<Value> = keys.iter().map(key_json).collect();
            Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
        }
        .await,
    )
}

fn no_such_key(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "key_not_found",
        format!("no API key with id {}", agentd_core::echo(id)),
    )
}

/// One key.
#[utoipa::path(
    get,
    path = "/admin/keys/{id}",
    tag = "admin",
    operation_id = "getKey",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 200, description = "The key", body = ApiKeyBody),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn get_key(State(state): State<Arc<AppState>>, ApiPath(id): ApiPath<String>) -> Response {
    reply(
        async {
            check_text("id", &id)?;
            let key = state
                .store
                .key_by_id(&KeyId::new(&id))
                .await
                .map_err(store_error)?;
            let key = key.ok_or_else(|| no_such_key(&id))?;
            Ok(axum::Json(key_json(&key)).into_response())
        }
        .await,
    )
}

/// Revokes a key; it stops working within `auth.key_cache_ttl_ms`. Revoking twice is fine.
#[utoipa::path(
    delete,
    path = "/admin/keys/{id}",
    tag = "admin",
    operation_id = "revokeKey",
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 200, description = "The revoked key", body = ApiKeyBody),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Response {
    reply(
        async {
            check_text("id", &id)?;
            let key_id = KeyId::new(&id);
            if !state.store.revoke_key(&key_id).await.map_err(store_error)? {
                return Err(no_such_key(&id));
            }
            state.keys.forget(&key_id);
            let key = state.store.key_by_id(&key_id).await.map_err(store_error)?;
            let key = key.ok_or_else(|| no_such_key(&id))?;
            Ok(axum::Json(key_json(&key)).into_response())
        }
        .await,
    )
}
