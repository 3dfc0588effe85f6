-- The spend ledger: one row per model call. `id` is the request id, so a batch that is written
-- again after a timeout is skipped row by row (INSERT … ON CONFLICT DO NOTHING).
-- `at` is TIMESTAMPTZ written truncated to milliseconds, as in 0001. Token counts, cost
-- (micro-dollars) and latency are BIGINT. Text that totals are grouped by sorts by bytes
-- (COLLATE "C"), as in SQLite, so both backends order groups identically.
CREATE TABLE spend (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    at                  TIMESTAMPTZ NOT NULL,
    key_id              TEXT COLLATE "C" NULL,
    tenant              TEXT COLLATE "C" NOT NULL,
    user_id             TEXT COLLATE "C" NULL,
    session             TEXT COLLATE "C" NULL,
    model               TEXT COLLATE "C" NOT NULL,
    provider            TEXT NOT NULL,
    deployment          TEXT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    usage_estimated     BOOLEAN NOT NULL,
    cost                BIGINT NOT NULL,
    latency_ms          BIGINT NOT NULL,
    cache_hit           BOOLEAN NOT NULL,
    status              TEXT NOT NULL
);

-- Totals of one tenant over a time range, and the tenant budget's sum.
CREATE INDEX spend_tenant_at_idx ON spend (tenant, at);
-- Totals and the global budget's sum over a time range, across tenants.
CREATE INDEX spend_at_idx ON spend (at);
-- Budget sums per user, key and session since a time. Partial (most rows of a scope column may
-- be NULL) and carrying `cost`, so a sum can be an index-only scan.
CREATE INDEX spend_user_at_idx ON spend (tenant, user_id, at) INCLUDE (cost) WHERE user_id IS NOT NULL;
CREATE INDEX spend_key_at_idx ON spend (key_id, at) INCLUDE (cost) WHERE key_id IS NOT NULL;
CREATE INDEX spend_session_at_idx ON spend (tenant, session, at) INCLUDE (cost) WHERE session IS NOT NULL;
