//! Admin API for cost control and resilience: spend totals from the ledger, the circuit
//! breakers, and the configured budgets with their current counters.

use super::extract::ApiQuery;
use crate::error::ErrorResponse;
use crate::openapi::responses::{AdminBadRequest, AdminErrors};
#[allow(unused_imports)] // read by the #[utoipa::path] annotations
use crate::openapi::schemas::{BreakerList, Budgets, SpendGroupBy, SpendReport};
use crate::AppState;
use agentd_core::{ApiError, Micros, SpendGroup, SpendQuery, SpendStore, TenantId};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpendParams {
    group_by: Option<String>,
    tenant: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `2026-11-23` (midnight UTC) or an RFC 3339 timestamp.
fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::invalid(
        "invalid_time",
        format!(
            "{name} must be a date (2026-11-23) or an RFC 3339 time (2026-11-23T10:00:00Z), got {}",
            agentd_core::echo(value)
        ),
    )
    .with_param(name))
}

/// `GET /admin/spend?group_by=key|user|tenant|model|day&tenant=T&since=D&until=D`.
#[utoipa::path(
    get,
    path = "/admin/spend",
    tag = "admin",
    operation_id = "getSpend",
    params(
        ("group_by" = Option<SpendGroupBy>, Query, description = "Default `tenant`"),
        ("tenant" = Option<String>, Query, description = "Only this tenant's spend"),
        ("since" = Option<String>, Query, description = "A date (`2026-11-23`, midnight UTC) or an RFC 3339 time; inclusive"),
        ("until" = Option<String>, Query, description = "A date or an RFC 3339 time; exclusive"),
    ),
    responses(
        (status = 200, description = "Spend totals from the ledger", body = SpendReport),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub(crate) async fn spend(
    State(state): State<Arc<AppState>>,
    ApiQuery(p): ApiQuery<SpendParams>,
) -> Response {
    let result = async {
        let group = p.group_by.as_deref().unwrap_or("tenant");
        let group_by = SpendGroup::parse(group).ok_or_else(|| {
            ApiError::invalid(
                "invalid_group_by",
                format!(
                    "group_by must be one of key, user, tenant, model, day (got {})",
                    agentd_core::echo(group)
                ),
            )
            .with_param("group_by")
        })?;
        if let Some(t) = &p.tenant {
            super::admin::check_text("tenant", t)?;
        }
        let query = SpendQuery {
            group_by,
            tenant: p.tenant.as_deref().map(TenantId::from),
            since: p
                .since
                .as_deref()
                .map(|v| parse_time("since", v))
                .transpose()?,
            until: p
                .until
                .as_deref()
                .map(|v| parse_time("until", v))
                .transpose()?,
        };
        let totals = state
            .store
            .spend_totals(&query)
            .await
            .map_err(crate::keys::store_error)?;
        let data: Vec<Value> = totals
            .iter()
            .map(|t| {
                json!({
                    "group": t.group,
                    "requests": t.requests,
                    "input_tokens": t.input_tokens,
                    "output_tokens": t.output_tokens,
                    "cost_usd": t.cost.to_string(),
                    "cost_micros": t.cost.0,
                    "cache_hits": t.cache_hits,
                })
            })
            .collect();
        Ok::<_, ApiError>(
            axum::Json(json!({"object": "list", "group_by": group_by.as_str(), "data": data}))
                .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(|e| ErrorResponse::openai(e).into_response())
}

/// `GET /admin/breakers`: every deployment's breaker.
#[utoipa::path(
    get,
    path = "/admin/breakers",
    tag = "admin",
    operation_id = "listBreakers",
    responses(
        (status = 200, description = "Every deployment's circuit breaker", body = BreakerList),
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub(crate) async fn breakers(State(state): State<Arc<AppState>>) -> Response {
    let mut data = Vec::new();
    for route in &state.models.ordered {
        for d in &route.deployments {
            data.push(json!({
                "model": route.name,
                "deployment": d.label(),
                "provider": d.provider.name(),
                "upstream_model": d.model,
                "state": d.breaker.state().as_str(),
                "breaker": d.breaker.snapshot(),
                "latency_ewma_ms": d.latency.ewma().map(|l| l.as_secs_f64() * 1000.0),
                "in_flight": d.latency.in_flight(),
            }));
        }
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /admin/budgets`: the configured budgets, and each live counter of this window: spent
/// (settled), reserved (held by calls in flight) and remaining, per scope value. Counters are
/// listed for the scope values the ledger has seen this window (`?tenant=` narrows it).
#[utoipa::path(
    get,
    path = "/admin/budgets",
    tag = "admin",
    operation_id = "getBudgets",
    params(
        ("tenant" = Option<String>, Query, description = "Only this tenant's counters (and its tenant-scoped counter even before it spent anything)"),
    ),
    responses(
        (status = 200, description = "The configured budgets with their live counters", body = Budgets),
        AdminBadRequest,
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub(crate) async fn budgets(
    State(state): State<Arc<AppState>>,
    ApiQuery(p): ApiQuery<BudgetParams>,
) -> Response {
    let result = async {
        if let Some(t) = &p.tenant {
            super::admin::check_text("tenant", t)?;
        }
        let b = &state.config.budgets;
        let counters = match state.gate.as_ref() {
            Some(gate) => gate
                .live_counters(p.tenant.as_deref().map(TenantId::from))
                .await?,
            None => Vec::new(),
        };
        let limits: Vec<Value> = b
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let live: Vec<Value> = counters
                    .iter()
                    .filter(|c| c.budget == i)
                    .map(|c| {
                        json!({
                            "scope_id": c.scope_id,
                            "window": c.window,
                            "exists": c.state.is_some(),
                            "spent_usd": c.state.map(|s| Micros(s.spent).to_string()),
                            "reserved_usd": c.state.map(|s| Micros(s.held).to_string()),
                            "remaining_usd": c.state.map(|s| Micros((l.limit.0 - s.spent - s.held).max(0)).to_string()),
                            "spent_micros": c.state.map(|s| s.spent),
                            "reserved_micros": c.state.map(|s| s.held),
                        })
                    })
                    .collect();
                json!({
                    "name": l.name,
                    "scope": l.scope.as_str(),
                    "window": l.window.as_str(),
                    "limit_usd": l.limit.to_string(),
                    "match": l.match_id,
                    "counters": live,
                })
            })
            .collect();
        Ok::<_, ApiError>(
            axum::Json(json!({
                "object": "budgets",
                "max_request_usd": b.max_request.map(|m| m.to_string()),
                "counters": state.gate.as_ref().map(|c| c.counters().backend()),
                "limits": limits,
            }))
            .into_response(),
        )
    }
    .await;
    result.unwrap_or_else(|e| ErrorResponse::openai(e).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetParams {
    tenant: Option<String>,
}
