-- api-keys SQLite schema, version 3: the operations log. Applied once, in a
-- transaction, by SqliteStore::migrate (tracked in _api_keys_migrations).
--
-- No foreign key to api_keys: the log outlives a deleted key. `seq` orders a
-- key's entries (newest first = highest seq) and is the paging cursor.
CREATE TABLE api_key_operations (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT    NOT NULL UNIQUE,       -- operation id
    key_id             TEXT    NOT NULL,
    service_account_id TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    actor              TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,              -- unix nanoseconds
    changes            TEXT    NOT NULL,              -- JSON object, never a secret
    CONSTRAINT api_key_operations_kind
        CHECK (kind IN ('create', 'update', 'revoke', 'delete', 'reissue', 'import'))
);

-- One key's log, newest first.
CREATE INDEX api_key_operations_key_seq ON api_key_operations (key_id, seq);
