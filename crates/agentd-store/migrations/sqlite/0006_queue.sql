-- The store's own work queue (agentd-queue's `StoreQueue`). One row per message; times are UTC
-- unix milliseconds. A message is ready when `visible_at <= now`: claiming pushes `visible_at`
-- to the end of the lease and counts the delivery, so an expired lease makes it ready again.
-- `claimed_by` is the consumer of the last delivery (NULL when never delivered or nacked).
CREATE TABLE queue_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    visible_at  INTEGER NOT NULL,
    deliveries  INTEGER NOT NULL DEFAULT 0,
    claimed_by  TEXT NULL,
    enqueued_at INTEGER NOT NULL
);

-- Claim: the oldest ready rows of a stream.
CREATE INDEX queue_messages_ready_idx ON queue_messages (stream, visible_at, id);

-- Messages set aside by `dead_letter`, until retried (moved back) or dropped.
CREATE TABLE queue_dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    deliveries  INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    dead_at     INTEGER NOT NULL
);

CREATE INDEX queue_dead_letters_stream_idx ON queue_dead_letters (stream, id);
