-- API keys. Only the SHA-256 of the secret is stored.
-- Timestamps are TIMESTAMPTZ, written truncated to milliseconds so both backends return
-- identical values. `id` sorts by bytes (COLLATE "C"), as in SQLite, whatever the database's
-- locale, so listings break created_at ties in the same order on both backends.
CREATE TABLE api_keys (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    user_id    TEXT NULL,
    prefix     TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ NULL
);

-- Listing a tenant's keys, oldest first.
CREATE INDEX api_keys_tenant_created_idx ON api_keys (tenant, created_at, id);
