-- A per-tenant counter bumped in the same transaction as every change to
-- the tenant's documents. Cache keys carry it, so a cached search result
-- can never outlive the data it was computed from.
ALTER TABLE tenants ADD COLUMN data_generation BIGINT NOT NULL DEFAULT 0;
