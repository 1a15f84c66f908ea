-- api-keys PostgreSQL schema, version 7: idempotency records. Applied once,
-- in a transaction, by PostgresStore::migrate.
--
-- One row per (actor, key): the change an `Idempotency-Key` made, written in
-- the same transaction as the change and its operations log entry. The key
-- is stored as a SHA-256 of the client's text; the answer is not stored (it
-- is rebuilt from the log entry `operation_id` names). A row whose
-- `expires_at` has passed is ignored on read, replaced when the key is
-- claimed again, and purged a few at a time by later claiming writes.
CREATE TABLE api_key_idempotency (
    actor        TEXT   NOT NULL,
    key_hash     BYTEA  NOT NULL,                 -- SHA-256 of the client's key
    fingerprint  BYTEA  NOT NULL,                 -- SHA-256 of the request
    operation_id TEXT   NOT NULL,                 -- the log entry of the change
    created_at   BIGINT NOT NULL,                 -- unix nanoseconds
    expires_at   BIGINT NOT NULL,                 -- unix nanoseconds
    PRIMARY KEY (actor, key_hash)
);

-- The bounded purge of expired rows.
CREATE INDEX api_key_idempotency_expires ON api_key_idempotency (expires_at);
