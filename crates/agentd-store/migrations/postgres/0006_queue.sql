-- The store's own work queue (agentd-queue's `StoreQueue`). One row per message; times are UTC
-- unix milliseconds (BIGINT, from the database's clock, so replicas with skewed clocks agree).
-- A message is ready when `visible_at <= now`: claiming pushes `visible_at` to the end of the
-- lease and counts the delivery, so an expired lease makes it ready again. `claimed_by` is the
-- consumer of the last delivery (NULL when never delivered or nacked). Claims take rows with
-- `FOR UPDATE SKIP LOCKED`; enqueue wakes waiting consumers with NOTIFY agentd_queue.
CREATE TABLE queue_messages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    visible_at  BIGINT NOT NULL,
    deliveries  BIGINT NOT NULL DEFAULT 0,
    claimed_by  TEXT NULL,
    enqueued_at BIGINT NOT NULL
);

-- Claim: the oldest ready rows of a stream.
CREATE INDEX queue_messages_ready_idx ON queue_messages (stream, visible_at, id);

-- Messages set aside by `dead_letter`, until retried (moved back) or dropped.
CREATE TABLE queue_dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    deliveries  BIGINT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    dead_at     BIGINT NOT NULL
);

CREATE INDEX queue_dead_letters_stream_idx ON queue_dead_letters (stream, id);
