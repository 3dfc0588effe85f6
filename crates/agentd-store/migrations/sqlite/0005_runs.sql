-- The agent runtime's durable state (agentd_core::runs): threads, runs with their leases, the
-- step journal, run events and crons. Times are UTC unix milliseconds (INTEGER) as in 0001; JSON
-- is TEXT exactly as serde_json wrote it (so both backends read back the same text); booleans
-- are 0/1. Deleting a thread deletes its runs, and deleting a run its steps and events
-- (ON DELETE CASCADE; the store turns foreign keys on for every connection).
CREATE TABLE threads (
    thread_id   TEXT PRIMARY KEY NOT NULL,
    tenant      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    metadata    TEXT NOT NULL,
    status      TEXT NOT NULL,
    -- `values` is an SQL keyword.
    state       TEXT NULL,
    expires_at  INTEGER NULL,
    ttl_minutes INTEGER NULL
);

-- Thread search of one tenant, by creation time.
CREATE INDEX threads_tenant_created_idx ON threads (tenant, created_at, thread_id);
-- The sweeper's expired threads.
CREATE INDEX threads_expires_idx ON threads (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE runs (
    run_id             TEXT PRIMARY KEY NOT NULL,
    thread_id          TEXT NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    tenant             TEXT NOT NULL,
    assistant_id       TEXT NOT NULL,
    agent              TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    metadata           TEXT NOT NULL,
    kwargs             TEXT NOT NULL,
    multitask_strategy TEXT NOT NULL,
    priority           TEXT NOT NULL,
    stream             TEXT NOT NULL,
    not_before         INTEGER NOT NULL,
    lease_owner        TEXT NULL,
    lease_epoch        INTEGER NOT NULL,
    lease_expires_at   INTEGER NULL,
    attempt            INTEGER NOT NULL,
    error              TEXT NULL,
    cancel             TEXT NULL,
    key_id             TEXT NULL,
    user_id            TEXT NULL,
    parent_run_id      TEXT NULL,
    ephemeral_thread   INTEGER NOT NULL,
    enqueued_at        INTEGER NOT NULL
);

-- A thread's runs, newest first (list_runs, next_pending_on_thread).
CREATE INDEX runs_thread_created_idx ON runs (thread_id, created_at, run_id);
-- The claim's "no other run of the thread is ahead" check, and multitask strategies: only the
-- few pending/running rows of a thread, however long its history.
CREATE INDEX runs_thread_active_idx ON runs (thread_id, created_at, run_id)
    WHERE status IN ('pending', 'running');
-- The reaper: expired leases.
CREATE INDEX runs_status_lease_idx ON runs (status, lease_expires_at);
-- The reaper: stale queue messages.
CREATE INDEX runs_status_enqueued_idx ON runs (status, enqueued_at);
-- The claim's per-agent cap.
CREATE INDEX runs_agent_status_idx ON runs (agent, status);
-- The sweeper: runs that ended before a time.
CREATE INDEX runs_status_updated_idx ON runs (status, updated_at);

-- The step journal: one row per LLM or tool call of a run.
CREATE TABLE run_steps (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    epoch       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    output      TEXT NULL,
    cost_micros INTEGER NOT NULL,
    tokens      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NULL,
    PRIMARY KEY (run_id, step)
);

-- A run's event stream; `seq` is 1, 2, 3, … per run.
CREATE TABLE run_events (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    event  TEXT NOT NULL,
    data   TEXT NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE crons (
    cron_id          TEXT PRIMARY KEY NOT NULL,
    tenant           TEXT NOT NULL,
    assistant_id     TEXT NOT NULL,
    agent            TEXT NOT NULL,
    thread_id        TEXT NULL,
    schedule         TEXT NOT NULL,
    timezone         TEXT NOT NULL,
    payload          TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    end_time         INTEGER NULL,
    next_run_date    INTEGER NULL,
    on_run_completed TEXT NULL,
    user_id          TEXT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- Cron search of one tenant.
CREATE INDEX crons_tenant_created_idx ON crons (tenant, created_at, cron_id);
-- The scheduler's due crons (queries must say `enabled = 1` for SQLite to use it).
CREATE INDEX crons_due_idx ON crons (next_run_date) WHERE enabled = 1;
