-- Documents whose vectors' copy of the metadata may differ from the row:
-- marked before a metadata replacement writes the copy, unmarked by the
-- transaction that commits it; the sweep writes the row's metadata to the
-- copy of any left marked (store/src/metadata.rs has the protocol).
CREATE TABLE metadata_syncs (
    tenant_id    TEXT NOT NULL,
    document_id  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, document_id)
);
CREATE INDEX metadata_syncs_by_age ON metadata_syncs (created_at);
