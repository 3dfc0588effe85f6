//! API key issuing and checking.
//!
//! A secret is `sk-agentd-` followed by 32 random bytes in hex. Only its SHA-256 is stored;
//! the request path keeps recently checked keys in memory for `auth.key_cache_ttl` so a
//! request costs one hash and one map lookup, not a store round trip. A revocation is therefore
//! seen by other processes within that TTL, and at once by the process that revoked.

use agentd_core::ids::validate_name;
use agentd_core::{
    ApiError, ApiKey, ErrorKind, KeyId, KeyStore, NewKey, StoreError, TenantId, UserId,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::time::Duration;

pub const SECRET_PREFIX: &str = "sk-agentd-";
/// How many characters of the secret are kept in clear, to tell keys apart in listings.
const SHOWN_PREFIX_LEN: usize = SECRET_PREFIX.len() + 6;
/// Longest secret cached under itself; longer ones (never ours) are cached under their hash.
const MAX_SECRET_AS_KEY: usize = 128;
/// Bound on cached lookups, so a flood of random bad keys cannot grow memory without limit.
const MAX_CACHED: u64 = 100_000;

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Errors from issuing a key: bad input (the caller's) or the store's.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IssueError> for ApiError {
    fn from(err: IssueError) -> Self {
        match err {
            IssueError::Invalid(msg) => ApiError::invalid("invalid_key_request", msg),
            IssueError::Store(e) => store_error(e),
        }
    }
}

pub fn store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Conflict => {
            ApiError::new(ErrorKind::InvalidRequest, "conflict", err.to_string())
        }
        StoreError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "Store unavailable");
            ApiError::new(
                ErrorKind::Unavailable,
                "store_unavailable",
                "the store is unavailable; try again",
            )
        }
        StoreError::Invalid(message) => ApiError::invalid("invalid_input", message),
        StoreError::Backend(cause) => {
            // Logged here with its cause: the answer only says to look at the log.
            tracing::error!(error = %cause, "Store operation failed");
            ApiError::internal("the store failed; see the gateway log")
        }
    }
}

/// Shortest secret accepted when importing one.
const MIN_IMPORTED_SECRET_LEN: usize = 20;

/// Creates a key and returns it with its secret, which is shown only this once. `tier` is the
/// key's default tier (see [`ApiKey::tier`]). `secret` imports an existing secret (migrating
/// clients from another gateway) instead of making one.
pub async fn issue(
    store: &dyn KeyStore,
    name: &str,
    tenant: Option<&str>,
    user: Option<&str>,
    tier: Option<&str>,
    secret: Option<&str>,
) -> Result<(ApiKey, String), IssueError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(IssueError::Invalid(
            "key name must be 1 to 200 characters long".into(),
        ));
    }
    let tenant = tenant.unwrap_or(TenantId::DEFAULT);
    validate_name("tenant", tenant).map_err(IssueError::Invalid)?;
    if let Some(user) = user {
        validate_name("user", user).map_err(IssueError::Invalid)?;
    }
    // Checked like a name, not against the configured tiers: a key outlives config changes, so
    // an unknown tier is the router's question at request time, not a reason to refuse the key.
    if let Some(tier) = tier {
        validate_name("tier", tier).map_err(IssueError::Invalid)?;
    }
    let secret = match secret {
        Some(s) => {
            if s.len() < MIN_IMPORTED_SECRET_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(IssueError::Invalid(format!(
                    "an imported secret must be at least {MIN_IMPORTED_SECRET_LEN} printable characters without spaces"
                )));
            }
            s.to_owned()
        }
        None => {
            let mut raw = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut raw);
            format!("{SECRET_PREFIX}{}", hex::encode(raw))
        }
    };
    // Never show more than a quarter of a secret.
    let shown = SHOWN_PREFIX_LEN.min(secret.len() / 4);
    let mut id_raw = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut id_raw);
    let key = store
        .insert_key(NewKey {
            id: KeyId::new(format!("key_{}", hex::encode(id_raw))),
            name: name.to_owned(),
            tenant: TenantId::new(tenant),
            user: user.map(UserId::new),
            prefix: format!("{}…", &secret[..shown]),
            hash: hash_secret(&secret),
            tier: tier.map(str::to_owned),
            created_at: chrono::Utc::now(),
        })
        .await?;
    Ok((key, secret))
}

/// The verified identity behind a request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: KeyId,
    pub tenant: TenantId,
    pub user: Option<UserId>,
    /// The key's default tier, used by routers when the request names none.
    pub tier: Option<String>,
}

/// Checks secrets against the store, with a short-lived in-memory cache.
///
/// The cache is bounded and admits by frequency (moka's TinyLFU): a flood of random bad keys —
/// each seen once — cannot evict the good keys that every request uses, so the store is not
/// hit once per request under such a flood. Concurrent misses for one secret are coalesced
/// into one store lookup. Unknown secrets are cached too (as "no key"), for the same TTL.
pub struct KeyCache {
    entries: moka::future::Cache<String, Option<Principal>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, MAX_CACHED)
    }

    fn with_capacity(ttl: Duration, capacity: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl.max(Duration::from_millis(1)))
                .support_invalidation_closures()
                .build(),
        }
    }

    /// The principal of an active key, `None` for an unknown or revoked one.
    pub async fn check(
        &self,
        store: &dyn KeyStore,
        secret: &str,
    ) -> Result<Option<Principal>, StoreError> {
        // Keyed by the secret itself (a hit then costs no SHA-256), tagged so that no secret can
        // pose as another's hash; an over-long secret by its hash, so entries stay small.
        let key = if secret.len() <= MAX_SECRET_AS_KEY {
            format!("s:{secret}")
        } else {
            format!("h:{}", hash_secret(secret))
        };
        self.entries
            .try_get_with(key, async {
                let hash = hash_secret(secret);
                Ok::<_, StoreError>(
                    store
                        .key_by_hash(&hash)
                        .await?
                        .filter(ApiKey::is_active)
                        .map(|k| Principal {
                            key_id: k.id,
                            tenant: k.tenant,
                            user: k.user,
                            tier: k.tier,
                        }),
                )
            })
            .await
            .map_err(|e| match &*e {
                StoreError::Conflict => StoreError::Conflict,
                StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
                StoreError::Backend(m) => StoreError::Backend(m.clone()),
            })
    }

    /// Forget a key at once (this process revoked it).
    pub fn forget(&self, id: &KeyId) {
        let id = id.clone();
        // Only fails when closures are not supported, which the builder enables.
        let _ = self
            .entries
            .invalidate_entries_if(move |_, p| p.as_ref().is_some_and(|p| p.key_id == id));
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_stable_hex_sha256() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// A directory under the system temp dir, removed when dropped (also when a test fails).
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            let mut nonce = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut nonce);
            TempDir(std::env::temp_dir().join(format!("agentd-{label}-{}", hex::encode(nonce))))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn issue_stores_the_tier_and_rejects_bad_ones_before_writing() {
        let dir = TempDir::new("issue-tier");
        let store = agentd_store::Store::open_sqlite(&dir.0.join("keys.db"))
            .await
            .unwrap();
        let (fast, _) = issue(&store, "bot", Some("acme"), None, Some("fast"), None)
            .await
            .unwrap();
        assert_eq!(fast.tier.as_deref(), Some("fast"));
        let (plain, _) = issue(&store, "plain", None, None, None, None)
            .await
            .unwrap();
        assert_eq!(plain.tier, None);
        let read = store.key_by_id(&fast.id).await.unwrap().unwrap();
        assert_eq!(read.tier.as_deref(), Some("fast"));

        for bad in ["", "two words", "fast/quality", &"t".repeat(65)] {
            match issue(&store, "bot", None, None, Some(bad), None).await {
                Err(IssueError::Invalid(message)) => {
                    assert!(message.contains("tier"), "{message}")
                }
                other => panic!("tier {bad:?}: expected Invalid, got {other:?}"),
            }
        }
        assert_eq!(
            store.list_keys(None).await.unwrap().len(),
            2,
            "nothing written"
        );
        store.close().await;
    }

    /// A store that counts lookups by hash and answers slowly, over a real SQLite store.
    struct Counting {
        inner: agentd_store::Store,
        lookups: std::sync::atomic::AtomicUsize,
        /// Lookups take 20 ms while set (so concurrent misses overlap).
        slow: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl KeyStore for Counting {
        async fn insert_key(&self, key: NewKey) -> Result<ApiKey, StoreError> {
            self.inner.insert_key(key).await
        }
        async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, StoreError> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.slow.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.inner.key_by_hash(hash).await
        }
        async fn key_by_id(&self, id: &KeyId) -> Result<Option<ApiKey>, StoreError> {
            self.inner.key_by_id(id).await
        }
        async fn list_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKey>, StoreError> {
            self.inner.list_keys(tenant).await
        }
        async fn revoke_key(&self, id: &KeyId) -> Result<bool, StoreError> {
            self.inner.revoke_key(id).await
        }
    }

    #[tokio::test]
    async fn a_flood_of_bad_keys_does_not_evict_good_ones_and_misses_coalesce() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = TempDir::new("key-cache");
        let store = Counting {
            inner: agentd_store::Store::open_sqlite(&dir.0.join("keys.db"))
                .await
                .unwrap(),
            lookups: Default::default(),
            slow: std::sync::atomic::AtomicBool::new(true),
        };
        let (_, secret) = issue(&store, "good", None, None, None, None).await.unwrap();
        let cache = KeyCache::with_capacity(Duration::from_secs(60), 200);

        // 50 concurrent first requests with the good key: one store lookup.
        let checks = (0..50).map(|_| cache.check(&store, &secret));
        for found in futures::future::join_all(checks).await {
            assert!(found.unwrap().is_some());
        }
        assert_eq!(store.lookups.load(SeqCst), 1, "concurrent misses coalesce");
        store.slow.store(false, SeqCst);
        // A flood of 2000 random bad keys, each sent once, while the good key keeps being used
        // (one request in ten): the good key keeps being answered from the cache.
        let mut good_checks = 0;
        for i in 0..2000 {
            let bad = format!("sk-agentd-bad-{i}");
            assert!(cache.check(&store, &bad).await.unwrap().is_none());
            if i % 10 == 0 {
                assert!(cache.check(&store, &secret).await.unwrap().is_some());
                good_checks += 1;
            }
        }
        cache.entries.run_pending_tasks().await;
        let good_lookups = store.lookups.load(SeqCst) - 1 - 2000;
        assert!(
            good_lookups <= 2,
            "the good key went to the store {good_lookups} times in {good_checks} requests"
        );
        assert!(
            cache.entries.entry_count() <= 200,
            "the cache stays bounded"
        );
        store.inner.close().await;
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret-value", b"secret-value"));
        assert!(!constant_time_eq(b"secret-value", b"secret-valuf"));
        assert!(!constant_time_eq(b"short", b"longer"));
    }
}
