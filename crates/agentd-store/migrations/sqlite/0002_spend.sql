-- The spend ledger: one row per model call. `id` is the request id, so a batch that is written
-- again after a timeout is skipped row by row (INSERT … ON CONFLICT DO NOTHING).
-- `at` is UTC unix milliseconds, as in 0001. Token counts, cost (micro-dollars) and latency are
-- 64-bit integers; booleans are 0/1.
CREATE TABLE spend (
    id                  TEXT PRIMARY KEY NOT NULL,
    at                  INTEGER NOT NULL,
    key_id              TEXT NULL,
    tenant              TEXT NOT NULL,
    user_id             TEXT NULL,
    session             TEXT NULL,
    model               TEXT NOT NULL,
    provider            TEXT NOT NULL,
    deployment          TEXT NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    usage_estimated     INTEGER NOT NULL,
    cost                INTEGER NOT NULL,
    latency_ms          INTEGER NOT NULL,
    cache_hit           INTEGER NOT NULL,
    status              TEXT NOT NULL
);

-- Totals of one tenant over a time range, and the tenant budget's sum.
CREATE INDEX spend_tenant_at_idx ON spend (tenant, at);
-- Totals and the global budget's sum over a time range, across tenants.
CREATE INDEX spend_at_idx ON spend (at);
-- Budget sums per user, key and session since a time. Partial (most rows of a scope column may
-- be NULL) and ending in `cost`, so a sum reads the index alone.
CREATE INDEX spend_user_at_idx ON spend (tenant, user_id, at, cost) WHERE user_id IS NOT NULL;
CREATE INDEX spend_key_at_idx ON spend (key_id, at, cost) WHERE key_id IS NOT NULL;
CREATE INDEX spend_session_at_idx ON spend (tenant, session, at, cost) WHERE session IS NOT NULL;
