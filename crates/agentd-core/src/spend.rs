//! The spend ledger: one row per model call (served or failed after reaching a provider, or
//! answered from the cache), and the queries the admin API and the budget rebuild run on it.

use crate::ids::{KeyId, TenantId, UserId};
use crate::keys::StoreError;
use crate::money::Micros;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One ledger row. `id` is the request id: writing the same row twice stores it once, so a
/// flush that is retried after a timeout cannot double-charge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpendRecord {
    pub id: String,
    /// When the call finished (whole milliseconds: both backends read back the same value).
    pub at: DateTime<Utc>,
    pub key_id: Option<KeyId>,
    pub tenant: TenantId,
    pub user: Option<UserId>,
    /// The session (thread) id the caller declared, if any.
    pub session: Option<String>,
    /// The public model (alias) the request was served under.
    pub model: String,
    /// The provider that served it (empty for cache hits that never reached one).
    pub provider: String,
    /// The deployment's upstream model name.
    pub deployment: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// True when the token counts were estimated (a stream without usage, a cut stream).
    pub usage_estimated: bool,
    pub cost: Micros,
    pub latency_ms: u64,
    pub cache_hit: bool,
    /// `ok`, or the outcome label of the failure (`stream_cut`, `error_status`, …).
    pub status: String,
}

/// What to group totals by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpendGroup {
    Key,
    User,
    Tenant,
    Model,
    /// UTC calendar day, `YYYY-MM-DD`.
    Day,
}

impl SpendGroup {
    pub fn parse(s: &str) -> Option<SpendGroup> {
        match s {
            "key" => Some(SpendGroup::Key),
            "user" => Some(SpendGroup::User),
            "tenant" => Some(SpendGroup::Tenant),
            "model" => Some(SpendGroup::Model),
            "day" => Some(SpendGroup::Day),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpendGroup::Key => "key",
            SpendGroup::User => "user",
            SpendGroup::Tenant => "tenant",
            SpendGroup::Model => "model",
            SpendGroup::Day => "day",
        }
    }
}

/// A totals query: rows with `since <= at < until`, optionally of one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendQuery {
    pub group_by: SpendGroup,
    pub tenant: Option<TenantId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One group's totals. `group` is the key id (empty for rows without a key), user id (empty for
/// rows without a user; the same user id in two tenants is one group unless the query names a
/// tenant), tenant, model or day. Groups sort by bytes (`"Zeta" < "claude"`) on every backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpendTotal {
    pub group: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost: Micros,
    pub cache_hits: u64,
}

/// Which rows a budget counts: used to rebuild budget counters from the ledger at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpendScope {
    /// Every row.
    Global,
    Tenant(TenantId),
    /// A user within a tenant.
    User(TenantId, UserId),
    Key(KeyId),
    /// A session within a tenant.
    Session(TenantId, String),
}

#[async_trait]
pub trait SpendStore: Send + Sync {
    /// Appends rows; a row whose `id` is already stored is skipped (idempotent retries).
    async fn record_spend(&self, rows: &[SpendRecord]) -> Result<(), StoreError>;
    /// Totals per group, ordered by group ascending.
    async fn spend_totals(&self, query: &SpendQuery) -> Result<Vec<SpendTotal>, StoreError>;
    /// The summed cost of the rows of `scope` with `at >= since` (all rows when `None`).
    async fn spend_sum(
        &self,
        scope: &SpendScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Micros, StoreError>;
}
