//! Tenant home regions (`tenant_regions`), for both backends. Small and rarely written: one
//! row per pinned tenant, upserted whole.

use crate::check_text;
use crate::Store;
use agentd_core::{Residency, StoreError, TenantId, TenantPin, TenantStore};
use async_trait::async_trait;
use sqlx::Row;

fn residency(s: &str) -> Result<Residency, StoreError> {
    Residency::parse(s).ok_or_else(|| StoreError::Backend(format!("unknown residency \"{s}\"")))
}

fn check_pin(pin: &TenantPin) -> Result<(), StoreError> {
    check_text("tenant", pin.tenant.as_str())?;
    check_text("home_region", &pin.home_region)
}

#[async_trait]
impl TenantStore for crate::SqliteStore {
    async fn tenant_pin(&self, tenant: &TenantId) -> Result<Option<TenantPin>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        let row = sqlx::query(
            "SELECT tenant, home_region, residency, updated_at FROM tenant_regions WHERE tenant = ?1",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| crate::sqlite::store_error("read tenant region", e))?;
        row.map(|r| sqlite_pin(&r)).transpose()
    }

    async fn set_tenant_pin(&self, pin: &TenantPin) -> Result<(), StoreError> {
        check_pin(pin)?;
        sqlx::query(
            "INSERT INTO tenant_regions (tenant, home_region, residency, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant) DO UPDATE SET home_region = excluded.home_region, \
             residency = excluded.residency, updated_at = excluded.updated_at",
        )
        .bind(pin.tenant.as_str())
        .bind(&pin.home_region)
        .bind(pin.residency.as_str())
        .bind(crate::sqlite::to_millis(pin.updated_at))
        .execute(self.pool())
        .await
        .map_err(|e| crate::sqlite::store_error("write tenant region", e))?;
        Ok(())
    }

    async fn delete_tenant_pin(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        check_text("tenant", tenant.as_str())?;
        let done = sqlx::query("DELETE FROM tenant_regions WHERE tenant = ?1")
            .bind(tenant.as_str())
            .execute(self.pool())
            .await
            .map_err(|e| crate::sqlite::store_error("delete tenant region", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_tenant_pins(&self) -> Result<Vec<TenantPin>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, home_region, residency, updated_at FROM tenant_regions ORDER BY tenant",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| crate::sqlite::store_error("list tenant regions", e))?;
        rows.iter().map(sqlite_pin).collect()
    }
}

fn sqlite_pin(r: &sqlx::sqlite::SqliteRow) -> Result<TenantPin, StoreError> {
    let read = crate::sqlite::read_error;
    Ok(TenantPin {
        tenant: TenantId::new(r.try_get::<String, _>("tenant").map_err(read)?),
        home_region: r.try_get("home_region").map_err(read)?,
        residency: residency(&r.try_get::<String, _>("residency").map_err(read)?)?,
        updated_at: crate::sqlite::from_millis(r.try_get("updated_at").map_err(read)?)?,
    })
}

#[cfg(feature = "postgres")]
#[async_trait]
impl TenantStore for crate::PgStore {
    async fn tenant_pin(&self, tenant: &TenantId) -> Result<Option<TenantPin>, StoreError> {
        check_text("tenant", tenant.as_str())?;
        let row = sqlx::query(
            "SELECT tenant, home_region, residency, updated_at FROM tenant_regions WHERE tenant = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| crate::postgres::store_error("read tenant region", e))?;
        row.map(|r| pg_pin(&r)).transpose()
    }

    async fn set_tenant_pin(&self, pin: &TenantPin) -> Result<(), StoreError> {
        check_pin(pin)?;
        sqlx::query(
            "INSERT INTO tenant_regions (tenant, home_region, residency, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant) DO UPDATE SET home_region = excluded.home_region, \
             residency = excluded.residency, updated_at = excluded.updated_at",
        )
        .bind(pin.tenant.as_str())
        .bind(&pin.home_region)
        .bind(pin.residency.as_str())
        .bind(crate::truncate_to_millis(pin.updated_at))
        .execute(self.pool())
        .await
        .map_err(|e| crate::postgres::store_error("write tenant region", e))?;
        Ok(())
    }

    async fn delete_tenant_pin(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        check_text("tenant", tenant.as_str())?;
        let done = sqlx::query("DELETE FROM tenant_regions WHERE tenant = $1")
            .bind(tenant.as_str())
            .execute(self.pool())
            .await
            .map_err(|e| crate::postgres::store_error("delete tenant region", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_tenant_pins(&self) -> Result<Vec<TenantPin>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, home_region, residency, updated_at FROM tenant_regions ORDER BY tenant",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| crate::postgres::store_error("list tenant regions", e))?;
        rows.iter().map(pg_pin).collect()
    }
}

#[cfg(feature = "postgres")]
fn pg_pin(r: &sqlx::postgres::PgRow) -> Result<TenantPin, StoreError> {
    let read = crate::postgres::read_error;
    Ok(TenantPin {
        tenant: TenantId::new(r.try_get::<String, _>("tenant").map_err(read)?),
        home_region: r.try_get("home_region").map_err(read)?,
        residency: residency(&r.try_get::<String, _>("residency").map_err(read)?)?,
        updated_at: r.try_get("updated_at").map_err(read)?,
    })
}

#[async_trait]
impl TenantStore for Store {
    async fn tenant_pin(&self, tenant: &TenantId) -> Result<Option<TenantPin>, StoreError> {
        match self {
            Store::Sqlite(s) => s.tenant_pin(tenant).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.tenant_pin(tenant).await,
        }
    }

    async fn set_tenant_pin(&self, pin: &TenantPin) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_tenant_pin(pin).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.set_tenant_pin(pin).await,
        }
    }

    async fn delete_tenant_pin(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.delete_tenant_pin(tenant).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.delete_tenant_pin(tenant).await,
        }
    }

    async fn list_tenant_pins(&self) -> Result<Vec<TenantPin>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_tenant_pins().await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.list_tenant_pins().await,
        }
    }
}
