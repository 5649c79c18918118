-- citybrain hub schema on PostgreSQL, version 1: the SQLite schema's
-- tables, plus what lets several servers share the database.
CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
-- Every entity change takes the next number of this sequence: a server's
-- in-memory copy of a tenant catches up by reading the rows numbered above
-- the last it saw. Writers of one tenant take a transaction lock first, so
-- numbers commit in order and a reader never skips one.
CREATE SEQUENCE entity_seq;
-- Deleted entities stay as tombstones (deleted, doc NULL), so other
-- servers learn of the deletion from the same catch-up query.
CREATE TABLE entities (
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    version BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT false,
    doc     TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX entities_by_change ON entities (tenant, seq);
-- Attribute history; times in Unix milliseconds, as on SQLite.
CREATE TABLE history (
    tenant      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    attr        TEXT NOT NULL,
    observed_at BIGINT NOT NULL,
    instance_id TEXT NOT NULL,
    dataset_id  TEXT,
    created_at  BIGINT NOT NULL,
    modified_at BIGINT NOT NULL,
    deleted_at  BIGINT,
    doc         TEXT NOT NULL,
    PRIMARY KEY (tenant, entity_id, attr, observed_at, instance_id)
);
CREATE TABLE subscriptions (
    tenant TEXT NOT NULL,
    id     TEXT NOT NULL,
    doc    TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE outbox (
    seq             BIGSERIAL PRIMARY KEY,
    tenant          TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_by_subscription ON outbox (tenant, subscription_id);
CREATE TABLE contexts (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    url        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE api_tokens (
    id  TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
-- The hash-chained audit log: append only.
CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    doc       TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_subjects (
    subject TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (subject, seq)
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
INSERT INTO tenants(name, created_at) VALUES ('', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
