-- api-keys SQLite schema, version 9: the change feed. Applied once, in a
-- transaction, by SqliteStore::migrate.
--
-- One row per key a commit changes, written in the same transaction as the
-- change. `seq` (AUTOINCREMENT: never reused, even after pruning) is commit
-- order, SQLite having one writer at a time. Readers page by `seq`.
CREATE TABLE api_key_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT    NOT NULL,
    gone       INTEGER NOT NULL CHECK (gone IN (0, 1)),  -- 1: deleted
    created_at INTEGER NOT NULL                          -- unix nanoseconds
);

-- The bounded pruning of old rows.
CREATE INDEX api_key_changes_created ON api_key_changes (created_at);

-- One row: the store's random epoch (a reader's position from another
-- database is refused) and how far pruning went (a reader behind it must
-- reload).
CREATE TABLE api_key_feed (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    epoch      INTEGER NOT NULL,
    pruned_seq INTEGER NOT NULL DEFAULT 0
);
INSERT INTO api_key_feed (one, epoch) VALUES (1, abs(random()));
