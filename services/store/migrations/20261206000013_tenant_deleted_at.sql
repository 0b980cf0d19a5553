-- Offboarding: a deleted tenant's row stays (its usage ledger is kept for
-- billing) with the time it was deleted; everything else of it is gone.
ALTER TABLE tenants ADD COLUMN deleted_at BIGINT;
