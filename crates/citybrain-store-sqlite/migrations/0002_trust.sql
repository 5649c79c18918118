-- citybrain hub schema, version 2: API tokens and the audit log (not per tenant).
-- A token row holds the Argon2id hash of its secret, never the secret.
CREATE TABLE api_tokens (
    id  TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
-- The hash-chained audit log: append only (the triggers refuse UPDATE and
-- DELETE through SQL; the chain catches anyone who edits the file itself).
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    doc       TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
-- Whose records each access touched: a citizen's "who looked at my data".
CREATE TABLE audit_subjects (
    subject TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (subject, seq)
) WITHOUT ROWID;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
