-- Listings page through a tenant's documents newest first, by
-- (created_at, id): this index serves the order and the cursor's position.
CREATE INDEX documents_by_age ON documents (tenant_id, created_at, id);
