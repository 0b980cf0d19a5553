-- A tenant's collections, explicit since they can be created empty and
-- deleted. Every tenant has `default`; the others are those its documents
-- are in (an ingest into a new name creates it).
CREATE TABLE collections (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
INSERT INTO collections (tenant_id, name, created_at)
    SELECT id, 'default', created_at FROM tenants;
INSERT INTO collections (tenant_id, name, created_at)
    SELECT tenant_id, collection, MIN(created_at) FROM documents
    WHERE collection <> 'default' GROUP BY tenant_id, collection;
