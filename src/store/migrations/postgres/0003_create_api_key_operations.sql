-- api-keys PostgreSQL schema, version 3: the operations log. Applied once, in
-- a transaction, by PostgresStore::migrate (tracked in _api_keys_migrations).
--
-- No foreign key to api_keys: the log outlives a deleted key. `seq` orders a
-- key's entries (newest first = highest seq) and is the paging cursor.
CREATE TABLE api_key_operations (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY,
    id                 TEXT COLLATE "C" NOT NULL,     -- operation id
    key_id             TEXT COLLATE "C" NOT NULL,
    service_account_id TEXT COLLATE "C" NOT NULL,
    kind               TEXT   NOT NULL,
    actor              TEXT   NOT NULL,
    created_at         BIGINT NOT NULL,               -- unix nanoseconds
    changes            TEXT   NOT NULL,               -- JSON object, never a secret
    CONSTRAINT api_key_operations_pkey PRIMARY KEY (seq),
    CONSTRAINT api_key_operations_id UNIQUE (id),
    CONSTRAINT api_key_operations_kind
        CHECK (kind IN ('create', 'update', 'revoke', 'delete', 'reissue', 'import'))
);

-- One key's log, newest first.
CREATE INDEX api_key_operations_key_seq ON api_key_operations (key_id, seq);
