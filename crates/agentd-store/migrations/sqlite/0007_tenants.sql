-- Tenant home regions (data residency). Part of the directory, like api_keys.
CREATE TABLE tenant_regions (
    tenant      TEXT PRIMARY KEY NOT NULL,
    home_region TEXT NOT NULL,
    residency   TEXT NOT NULL CHECK (residency IN ('strict', 'preferred')),
    updated_at  INTEGER NOT NULL
);
