-- citybrain hub schema, version 1. Every table is keyed by tenant ('' is the default).
CREATE TABLE tenants (
    name       TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
-- Entities as expanded JSON documents; version grows with every write.
-- Type and value lookups are answered by the in-memory cache (cache.rs),
-- loaded from this table, so no index tables are kept here.
CREATE TABLE entities (
    tenant  TEXT NOT NULL,
    id      TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- Attribute history; times in Unix milliseconds. observed_at falls back to
-- modified_at when the instance had no observedAt (the document keeps the
-- real member). doc holds the instance's members only.
CREATE TABLE history (
    tenant      TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    attr        TEXT NOT NULL,
    observed_at INTEGER NOT NULL,
    instance_id TEXT NOT NULL,
    dataset_id  TEXT,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    deleted_at  INTEGER,
    doc         TEXT NOT NULL,
    -- Clustered by what every temporal read asks for: one B-tree insert per row.
    PRIMARY KEY (tenant, entity_id, attr, observed_at, instance_id)
) WITHOUT ROWID;
CREATE TABLE subscriptions (
    tenant TEXT NOT NULL,
    id     TEXT NOT NULL,
    doc    TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
-- Notifications waiting for delivery (the durable queue).
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant          TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE contexts (
    tenant     TEXT NOT NULL,
    id         TEXT NOT NULL,
    url        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
