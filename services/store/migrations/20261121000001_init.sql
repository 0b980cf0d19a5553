-- Portable DDL: this one migration runs on both SQLite and PostgreSQL through
-- sqlx's Any driver, so only types both understand are used (TEXT, BIGINT).
-- Timestamps are Unix milliseconds; metadata is a JSON object stored as text.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    tier        TEXT NOT NULL CHECK (tier IN ('standard', 'premium')),
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE documents (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    id            TEXT NOT NULL,
    collection    TEXT NOT NULL,
    revision      TEXT NOT NULL,
    text          TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    chunk_count   BIGINT NOT NULL,
    byte_size     BIGINT NOT NULL,
    vector_bytes  BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX documents_by_collection ON documents (tenant_id, collection);

CREATE TABLE usage_counters (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    metric     TEXT NOT NULL,
    value      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, metric)
);
