-- api-keys SQLite schema, version 4: the operations log records leaks
-- (kind 'leak': a secret-scanning report or `keyctl scan --revoke`, with
-- where the key was found in `changes`). Applied once, in a transaction, by
-- SqliteStore::migrate (tracked in _api_keys_migrations).
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- (https://www.sqlite.org/lang_altertable.html#otheralter): every row is
-- copied with its `seq`, the AUTOINCREMENT counter is carried over (so no
-- sequence number is ever given twice, even one whose row was pruned), and
-- the index is made again. Nothing refers to the table (no foreign keys,
-- views or triggers).
CREATE TABLE api_key_operations_v4 (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT    NOT NULL UNIQUE,       -- operation id
    key_id             TEXT    NOT NULL,
    service_account_id TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    actor              TEXT    NOT NULL,
    created_at         INTEGER NOT NULL,              -- unix nanoseconds
    changes            TEXT    NOT NULL,              -- JSON object, never a secret
    CONSTRAINT api_key_operations_kind
        CHECK (kind IN ('create', 'update', 'revoke', 'delete', 'reissue', 'import', 'leak'))
);

INSERT INTO api_key_operations_v4 (seq, id, key_id, service_account_id, kind, actor, created_at, changes)
    SELECT seq, id, key_id, service_account_id, kind, actor, created_at, changes FROM api_key_operations ORDER BY seq;

-- The AUTOINCREMENT counter carries over: the copy above recorded the
-- largest seq copied under the new name; the old table's counter can be
-- higher (entries pruned from the top), and no seq may be given twice.
UPDATE sqlite_sequence
    SET seq = MAX(seq, COALESCE((SELECT o.seq FROM sqlite_sequence AS o WHERE o.name = 'api_key_operations'), 0))
    WHERE name = 'api_key_operations_v4';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'api_key_operations_v4', o.seq FROM sqlite_sequence AS o
    WHERE o.name = 'api_key_operations'
      AND NOT EXISTS (SELECT 1 FROM sqlite_sequence AS n WHERE n.name = 'api_key_operations_v4');

DROP TABLE api_key_operations;
ALTER TABLE api_key_operations_v4 RENAME TO api_key_operations;

-- One key's log, newest first.
CREATE INDEX api_key_operations_key_seq ON api_key_operations (key_id, seq);
