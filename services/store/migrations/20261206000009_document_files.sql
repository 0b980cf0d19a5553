-- What a document uploaded as a file came from: its name, its media type
-- (from its content), its size and, where the format has them, its pages.
-- NULL for documents ingested as JSON text.
ALTER TABLE documents ADD COLUMN file_name TEXT;
ALTER TABLE documents ADD COLUMN media_type TEXT;
ALTER TABLE documents ADD COLUMN file_bytes BIGINT;
ALTER TABLE documents ADD COLUMN pages BIGINT;
