-- Usage by hour, for reports over a period (`analyzer usage report`,
-- `GET /v1/admin/usage`). Every write to usage_counters (lifetime totals,
-- shown in /v1/usage) adds the same value here in the same transaction.
CREATE TABLE usage_ledger (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    hour      BIGINT NOT NULL, -- hours since the Unix epoch, UTC
    metric    TEXT NOT NULL,
    value     BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour, metric)
);
CREATE INDEX usage_ledger_by_hour ON usage_ledger (hour);
