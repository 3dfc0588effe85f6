//! Tenant home regions (data residency): which region a tenant's requests and data belong to.
//! Part of the directory (with API keys): kept in the primary region's database and read
//! everywhere, through a replica where there is one.

use crate::ids::TenantId;
use crate::keys::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How firmly a tenant belongs to its home region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Residency {
    /// Data residency: served and stored only in the home region; refused when it is down.
    Strict,
    /// Latency: sent to the home region, but served elsewhere when it cannot be reached.
    Preferred,
}

impl Residency {
    /// The API and CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Residency::Strict => "strict",
            Residency::Preferred => "preferred",
        }
    }

    /// Parses the API and CLI spelling.
    pub fn parse(s: &str) -> Option<Residency> {
        match s {
            "strict" => Some(Residency::Strict),
            "preferred" => Some(Residency::Preferred),
            _ => None,
        }
    }
}

/// A tenant's home region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TenantPin {
    pub tenant: TenantId,
    /// A region code of `[regions] list`.
    pub home_region: String,
    pub residency: Residency,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// The tenant's home region, if it has one.
    async fn tenant_pin(&self, tenant: &TenantId) -> Result<Option<TenantPin>, StoreError>;
    /// Sets (or replaces) the tenant's home region.
    async fn set_tenant_pin(&self, pin: &TenantPin) -> Result<(), StoreError>;
    /// Removes the home region; `Ok(false)` if it had none.
    async fn delete_tenant_pin(&self, tenant: &TenantId) -> Result<bool, StoreError>;
    /// Every pinned tenant, by name.
    async fn list_tenant_pins(&self) -> Result<Vec<TenantPin>, StoreError>;
}
