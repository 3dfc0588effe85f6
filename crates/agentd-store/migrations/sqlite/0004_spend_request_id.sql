-- The HTTP request id of each ledger row, apart from `id` (which is now the gateway's own random
-- call id, the row's identity). For correlation only: not unique, one request may cause several
-- model calls. Rows written before this migration read back as ''. A constant default makes
-- this a schema change only (existing rows are not rewritten), and an older replica that never
-- writes the column keeps working.
--
-- No index: nothing in agentd queries by request id, and an index would be one more to update
-- on every ledger insert (the ledger writer is the hot path) and would hold the write lock while
-- it is built on a large table. Add it with the query that needs it.
ALTER TABLE spend ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
