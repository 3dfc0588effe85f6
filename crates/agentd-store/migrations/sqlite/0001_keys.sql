-- API keys. Only the SHA-256 of the secret is stored.
-- Timestamps are UTC unix milliseconds (INTEGER): SQLite has no timestamp type, and integers
-- sort and compare correctly, unlike text in mixed formats.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    user_id    TEXT NULL,
    prefix     TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER NULL
);

-- Listing a tenant's keys, oldest first.
CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant, created_at, id);
