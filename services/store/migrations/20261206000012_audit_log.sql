-- Every admin action: when, who (the admin token's subject), what, on
-- which tenant and object, in which request, with what outcome. No
-- secret is ever written here. Kept when its tenant is deleted.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    tenant_id   TEXT,
    target      TEXT,
    request_id  TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at, id);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, at, id);
