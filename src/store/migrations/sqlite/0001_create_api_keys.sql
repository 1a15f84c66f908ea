-- api-keys SQLite schema, version 1. Applied once, in a transaction, by
-- SqliteStore::migrate (tracked in _api_keys_migrations).
CREATE TABLE api_keys (
    id                 TEXT    NOT NULL PRIMARY KEY,
    service_account_id TEXT    NOT NULL,
    description        TEXT    NOT NULL DEFAULT '',
    created_at         INTEGER NOT NULL,              -- unix nanoseconds
    last_used_at       INTEGER,                       -- unix nanoseconds
    scopes             TEXT    NOT NULL,              -- scope names joined by ','
    expires_at         INTEGER,                       -- unix nanoseconds
    masked_key         TEXT    NOT NULL,              -- last six characters
    pepper_version     INTEGER NOT NULL,
    digest             BLOB    NOT NULL,              -- HMAC-SHA256, 32 bytes
    status             TEXT    NOT NULL,              -- 'active' | 'revoked'
    kind               TEXT    NOT NULL,              -- 'native' | 'imported'
    replaced_by        TEXT,
    reissued_from      TEXT
) STRICT;

-- Imported keys are found by digest; at most one imported key per digest.
CREATE UNIQUE INDEX api_keys_imported_digest ON api_keys (digest) WHERE kind = 'imported';

-- Keyset pagination of one service account's keys by id.
CREATE INDEX api_keys_account_id ON api_keys (service_account_id, id);
