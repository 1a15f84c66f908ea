-- api-keys PostgreSQL schema, version 9: the change feed. Applied once, in a
-- transaction, by PostgresStore::migrate.
--
-- One row per key a commit changes, written in the same transaction as the
-- change. Sequence numbers are handed out before commit, so `seq` alone is
-- not commit order: each row also records its transaction id (`xid`), and
-- readers take only rows of transactions older than every running one
-- (`pg_snapshot_xmin`), in (xid, seq) order.
CREATE TABLE api_key_changes (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    xid        BIGINT  NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    key_id     TEXT COLLATE "C" NOT NULL,
    gone       BOOLEAN NOT NULL,                      -- deleted
    created_at BIGINT  NOT NULL,                      -- unix nanoseconds
    CONSTRAINT api_key_changes_pkey PRIMARY KEY (seq)
);

-- The reader's order, and the bounded pruning of old rows.
CREATE INDEX api_key_changes_order ON api_key_changes (xid, seq);
CREATE INDEX api_key_changes_created ON api_key_changes (created_at);

-- One row: the store's random epoch (a reader's position from another
-- database or schema is refused) and how far pruning went (a reader behind
-- it must reload).
CREATE TABLE api_key_feed (
    one        BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    epoch      BIGINT  NOT NULL,
    pruned_xid BIGINT  NOT NULL DEFAULT 0
);
INSERT INTO api_key_feed (epoch) VALUES ((random() * 9007199254740991)::bigint);
