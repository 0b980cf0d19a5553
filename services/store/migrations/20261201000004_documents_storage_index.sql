-- What a tenant stores (`storage_totals`: its quota check, twice per
-- ingest, and /v1/usage) is summed over its documents. Without this index
-- the sum read every row of the tenant's, its text included: on SQLite an
-- ingest at 1000 connections spent most of its time paging document text
-- through the page cache (perf: kernel copies, sqlite3VdbeExec, sumStep),
-- 148 ingests/s. The index covers the query, so the sum reads only it.
CREATE INDEX documents_storage ON documents (tenant_id, chunk_count, byte_size, vector_bytes);
