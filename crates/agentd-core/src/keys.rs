//! API keys: what a key is, and the storage trait every store backend implements.
//!
//! Only the SHA-256 of a secret is stored. Secrets are 256-bit random values, so a fast hash
//! is the right tool here (a slow password hash would only add latency to every request).

use crate::ids::{KeyId, TenantId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A stored API key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    pub tenant: TenantId,
    pub user: Option<UserId>,
    /// The first characters of the secret (`sk-agentd-ab12…`), so operators can tell keys apart.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    #[serde(skip)]
    pub hash: String,
    /// The tier (`fast`, `quality`, …) the gateway picks a model from when a request through
    /// this key does not name one; `None` leaves the choice to the configured default.
    pub tier: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// What a caller supplies to create a key; the id, prefix and hash are computed by the caller
/// (the gateway's key module), so every backend stores exactly the same thing.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub id: KeyId,
    pub name: String,
    pub tenant: TenantId,
    pub user: Option<UserId>,
    pub prefix: String,
    pub hash: String,
    /// See [`ApiKey::tier`]; checked by the caller like tenant and user names.
    pub tier: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a key with this id or secret already exists")]
    Conflict,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The input cannot be stored (a NUL character, which PostgreSQL text rejects); the message
    /// names the field. Backends agree: SQLite refuses what PostgreSQL cannot store (ledger rows
    /// are the exception: `record_spend` replaces a NUL rather than lose the row).
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("store error: {0}")]
    Backend(String),
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError>;
    /// The key whose secret hashes to `hash`, revoked or not (the caller decides).
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError>;
    /// Keys of one tenant, or of all tenants when `tenant` is `None`; oldest first.
    async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError>;
    /// Marks the key revoked. `Ok(false)` if no such key; revoking twice keeps the first time.
    async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError>;
}
