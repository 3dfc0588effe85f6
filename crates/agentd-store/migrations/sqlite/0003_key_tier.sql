-- A key's default tier (`fast`, `quality`, …): the gateway picks a model from it when a request
-- names none. Nullable and additive, so an older replica that never writes it keeps working.
ALTER TABLE api_keys ADD COLUMN tier TEXT NULL;
