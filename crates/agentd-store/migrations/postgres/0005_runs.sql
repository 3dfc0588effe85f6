-- The agent runtime's durable state (agentd_core::runs): threads, runs with their leases, the
-- step journal, run events and crons. Times are TIMESTAMPTZ written truncated to milliseconds,
-- as in 0001. JSON is TEXT, not JSONB, exactly as serde_json wrote it: both backends then read
-- back the same text, and JSONB would refuse a `\u0000` inside a string (user content in thread
-- values may hold one). Ids sort by bytes (COLLATE "C"), as in SQLite, so ties in created_at
-- are broken identically. Deleting a thread deletes its runs, and deleting a run its steps and
-- events (ON DELETE CASCADE).
CREATE TABLE threads (
    thread_id   TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    metadata    TEXT NOT NULL,
    status      TEXT NOT NULL,
    -- `values` is an SQL keyword.
    state       TEXT NULL,
    expires_at  TIMESTAMPTZ NULL,
    ttl_minutes BIGINT NULL
);

-- Thread search of one tenant, by creation time.
CREATE INDEX threads_tenant_created_idx ON threads (tenant, created_at, thread_id);
-- The sweeper's expired threads.
CREATE INDEX threads_expires_idx ON threads (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE runs (
    run_id             TEXT COLLATE "C" PRIMARY KEY,
    thread_id          TEXT COLLATE "C" NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
    tenant             TEXT NOT NULL,
    assistant_id       TEXT NOT NULL,
    agent              TEXT NOT NULL,
    status             TEXT NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    metadata           TEXT NOT NULL,
    kwargs             TEXT NOT NULL,
    multitask_strategy TEXT NOT NULL,
    priority           TEXT NOT NULL,
    stream             TEXT NOT NULL,
    not_before         TIMESTAMPTZ NOT NULL,
    lease_owner        TEXT NULL,
    lease_epoch        BIGINT NOT NULL,
    lease_expires_at   TIMESTAMPTZ NULL,
    attempt            INTEGER NOT NULL,
    error              TEXT NULL,
    cancel             TEXT NULL,
    key_id             TEXT NULL,
    user_id            TEXT NULL,
    parent_run_id      TEXT NULL,
    ephemeral_thread   BOOLEAN NOT NULL,
    enqueued_at        TIMESTAMPTZ NOT NULL
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
    run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    epoch       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    output      TEXT NULL,
    cost_micros BIGINT NOT NULL,
    tokens      BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NULL,
    PRIMARY KEY (run_id, step)
);

-- A run's event stream; `seq` is 1, 2, 3, … per run.
CREATE TABLE run_events (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    event  TEXT NOT NULL,
    data   TEXT NOT NULL,
    at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE crons (
    cron_id          TEXT COLLATE "C" PRIMARY KEY,
    tenant           TEXT NOT NULL,
    assistant_id     TEXT NOT NULL,
    agent            TEXT NOT NULL,
    thread_id        TEXT NULL,
    schedule         TEXT NOT NULL,
    timezone         TEXT NOT NULL,
    payload          TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    end_time         TIMESTAMPTZ NULL,
    next_run_date    TIMESTAMPTZ NULL,
    on_run_completed TEXT NULL,
    user_id          TEXT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);

-- Cron search of one tenant.
CREATE INDEX crons_tenant_created_idx ON crons (tenant, created_at, cron_id);
-- The scheduler's due crons.
CREATE INDEX crons_due_idx ON crons (next_run_date) WHERE enabled;
