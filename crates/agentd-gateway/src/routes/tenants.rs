//! The admin API's tenant home regions (data residency): `/admin/tenants`.
//!
//! In a multi-region deployment these requests are answered by the primary region (the
//! directory lives in its database); see `region.rs`.

use super::extract::ApiPath;
use crate::body::{parse_json, read_limited};
use crate::error::ErrorResponse;
use crate::keys::store_error;
use crate::openapi::responses::{AdminBadRequest, AdminErrors, TooLarge};
use crate::AppState;
use agentd_core::{ApiError, ErrorKind, Residency, TenantId, TenantPin, TenantStore};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// `PUT /admin/tenants/{tenant}`. Unknown fields are refused.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetTenantRegion {
    /// A region of `[regions] list`, such as `cdg`.
    #[schema(pattern = "^[a-z]{3}$")]
    pub home_region: String,
    /// `strict` (default: data residency, never served elsewhere) or `preferred` (latency:
    /// served elsewhere when the home region is down).
    #[schema(value_type = Option<String>, pattern = "^(strict|preferred)$")]
    pub residency: Option<String>,
}

/// A tenant's home region.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // the OpenAPI schema of an answer
pub(crate) struct TenantRegion {
    pub tenant: String,
    pub home_region: String,
    #[schema(pattern = "^(strict|preferred)$")]
    pub residency: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // the OpenAPI schema of an answer
pub(crate) struct TenantRegionList {
    #[schema(example = "list")]
    pub object: String,
    pub data: Vec<TenantRegion>,
}

#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // the OpenAPI schema of an answer
pub(crate) struct TenantRegionDeleted {
    pub tenant: String,
    pub deleted: bool,
}

fn reply(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        let unprocessable = e.code == "unknown_region";
        let mut resp = ErrorResponse::openai(e).into_response();
        if unprocessable {
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        }
        resp
    })
}

pub fn pin_json(pin: &TenantPin) -> Value {
    json!({
        "tenant": pin.tenant,
        "home_region": pin.home_region,
        "residency": pin.residency.as_str(),
        "updated_at": pin.updated_at.to_rfc3339(),
    })
}

fn check_tenant(tenant: &str) -> Result<TenantId, ApiError> {
    agentd_core::ids::validate_name("tenant", tenant)
        .map_err(|m| ApiError::invalid("invalid_tenant", m).with_param("tenant"))?;
    Ok(TenantId::new(tenant))
}

/// Checks that `region` is served by the deployment (`[regions] list`), the same rule for the
/// admin API and the CLI.
pub fn check_home_region(config: &agentd_config::Config, region: &str) -> Result<(), String> {
    let list = &config.regions.list;
    if list.is_empty() {
        return Err(format!(
            "cannot pin a tenant to region {}: this deployment lists no regions (set [regions] list, e.g. [\"cdg\", \"nrt\"])",
            agentd_core::echo(region)
        ));
    }
    if !list.iter().any(|r| r == region) {
        return Err(format!(
            "no instance serves region {}: [regions] list is {}",
            agentd_core::echo(region),
            list.join(", ")
        ));
    }
    Ok(())
}

/// Every tenant with a home region.
#[utoipa::path(
    get,
    path = "/admin/tenants",
    tag = "admin",
    operation_id = "listTenantRegions",
    responses(
        (status = 200, description = "The pinned tenants", body = TenantRegionList),
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    reply(
        async {
            let pins = state.store.list_tenant_pins().await.map_err(store_error)?;
            let data: Vec<Value> = pins.iter().map(pin_json).collect();
            Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
        }
        .await,
    )
}

fn not_pinned(tenant: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "tenant_not_pinned",
        format!("tenant {} has no home region", agentd_core::echo(tenant)),
    )
}

/// A tenant's home region.
#[utoipa::path(
    get,
    path = "/admin/tenants/{tenant}",
    tag = "admin",
    operation_id = "getTenantRegion",
    params(("tenant" = String, Path, description = "The tenant")),
    responses(
        (status = 200, description = "The tenant's home region", body = TenantRegion),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn get(State(state): State<Arc<AppState>>, ApiPath(tenant): ApiPath<String>) -> Response {
    reply(
        async {
            let id = check_tenant(&tenant)?;
            let pin = state.store.tenant_pin(&id).await.map_err(store_error)?;
            let pin = pin.ok_or_else(|| not_pinned(&tenant))?;
            Ok(axum::Json(pin_json(&pin)).into_response())
        }
        .await,
    )
}

/// Pins a tenant to a home region: its requests are served, and its data stored, only there
/// (`strict`), or preferably there (`preferred`). Takes effect within `auth.key_cache_ttl_ms`.
#[utoipa::path(
    put,
    path = "/admin/tenants/{tenant}",
    tag = "admin",
    operation_id = "setTenantRegion",
    params(("tenant" = String, Path, description = "The tenant")),
    request_body(content = SetTenantRegion, content_type = "application/json"),
    responses(
        (status = 200, description = "The tenant's home region", body = TenantRegion),
        (status = 422, description = "The region is not one of the deployment's", body = crate::openapi::schemas::OpenAiError),
        AdminBadRequest,
        TooLarge,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn set(
    State(state): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    reply(
        async {
            let id = check_tenant(&tenant)?;
            let bytes = read_limited(
                &headers,
                body,
                state.config.server.max_body_bytes,
                state.config.server.body_read_timeout,
            )
            .await?;
            let req: SetTenantRegion = serde_json::from_value(parse_json(&bytes)?).map_err(|e| {
                ApiError::invalid(
                    "invalid_tenant_region",
                    format!("{e}; expected {{\"home_region\": string, \"residency\"?: \"strict\" | \"preferred\"}}"),
                )
            })?;
            let region = req.home_region.trim().to_ascii_lowercase();
            check_home_region(&state.config, &region).map_err(|m| {
                ApiError::invalid("unknown_region", m).with_param("home_region")
            })?;
            let residency = match req.residency.as_deref() {
                None => Residency::Strict,
                Some(r) => Residency::parse(r).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_residency",
                        format!("residency must be \"strict\" or \"preferred\", not {}", agentd_core::echo(r)),
                    )
                    .with_param("residency")
                })?,
            };
            let pin = TenantPin {
                tenant: id.clone(),
                home_region: region,
                residency,
                updated_at: chrono::Utc::now(),
            };
            state.store.set_tenant_pin(&pin).await.map_err(store_error)?;
            if let Some(regions) = &state.regions {
                regions.forget_pin(&id).await;
            }
            Ok(axum::Json(pin_json(&pin)).into_response())
        }
        .await,
    )
}

/// Removes a tenant's home region: it is served in every region again.
#[utoipa::path(
    delete,
    path = "/admin/tenants/{tenant}",
    tag = "admin",
    operation_id = "deleteTenantRegion",
    params(("tenant" = String, Path, description = "The tenant")),
    responses(
        (status = 200, description = "Removed", body = TenantRegionDeleted),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    ApiPath(tenant): ApiPath<String>,
) -> Response {
    reply(
        async {
            let id = check_tenant(&tenant)?;
            if !state
                .store
                .delete_tenant_pin(&id)
                .await
                .map_err(store_error)?
            {
                return Err(not_pinned(&tenant));
            }
            if let Some(regions) = &state.regions {
                regions.forget_pin(&id).await;
            }
            Ok(axum::Json(json!({"tenant": tenant, "deleted": true})).into_response())
        }
        .await,
    )
}
