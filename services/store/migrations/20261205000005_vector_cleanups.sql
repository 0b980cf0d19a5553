-- The vector writes made outside the documents transaction, recorded so
-- that a crash or a cancelled request at any moment leaves no vector the
-- database does not own (store/cleanups.rs has the protocol).
-- 'pending': an ingest is writing these vectors; the transaction that
-- stores the document deletes the entry, and does not commit if it is no
-- longer pending. 'remove': the vectors are to be removed (a replaced or
-- deleted revision, or a pending one given up on).
CREATE TABLE vector_cleanups (
    tenant_id    TEXT NOT NULL,
    document_id  TEXT NOT NULL,
    revision     TEXT NOT NULL,
    chunk_count  BIGINT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'remove')),
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, document_id, revision)
);
CREATE INDEX vector_cleanups_by_age ON vector_cleanups (created_at);
-- How many entries of the tenant's the journal holds, kept in the same
-- transactions as the entries: a search reads it with the tenant's data
-- generation to know whether its hits need a check. (Probing the table
-- instead walked the dead rows every ingest leaves: BENCHMARKS.md.)
ALTER TABLE tenants ADD COLUMN vector_journal BIGINT NOT NULL DEFAULT 0;
