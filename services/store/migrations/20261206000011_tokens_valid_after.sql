-- Signing a tenant out everywhere: its tokens issued (`iat`) before this
-- time, in Unix seconds, are refused. 0: none is.
ALTER TABLE tenants ADD COLUMN tokens_valid_after BIGINT NOT NULL DEFAULT 0;
