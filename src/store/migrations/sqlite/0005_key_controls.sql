-- api-keys SQLite schema, version 5: the enabled flag and the optional key
-- controls. Applied once, in a transaction, by SqliteStore::migrate.
-- (Version 4 is another change; versions are applied in order, and a gap is
-- allowed.)
--
-- Existing rows become enabled keys without controls: every new column is
-- NULL but `enabled`, whose default is 1. Absent controls are NULL. (SQLite
-- cannot add a table constraint to an existing table, so that the refill
-- columns are all set or all NULL is checked when a row is read.)
ALTER TABLE api_keys ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1));
ALTER TABLE api_keys ADD COLUMN metadata TEXT;              -- JSON object, at most 4 KiB
ALTER TABLE api_keys ADD COLUMN external_id TEXT;
ALTER TABLE api_keys ADD COLUMN allowed_ips TEXT;           -- CIDR ranges, comma-joined
ALTER TABLE api_keys ADD COLUMN rate_limits TEXT;           -- NAME=COUNT/PERIOD[:burst=N], comma-joined
ALTER TABLE api_keys ADD COLUMN credits_remaining INTEGER CHECK (credits_remaining >= 0);
ALTER TABLE api_keys ADD COLUMN credits_refill_amount INTEGER CHECK (credits_refill_amount >= 0);
ALTER TABLE api_keys ADD COLUMN credits_refill_period TEXT CHECK (credits_refill_period IN ('daily', 'monthly'));
ALTER TABLE api_keys ADD COLUMN credits_refill_at INTEGER CHECK (credits_refill_at BETWEEN 0 AND 86399);
ALTER TABLE api_keys ADD COLUMN credits_refilled_at INTEGER; -- unix nanoseconds

-- Keyset pagination of one external owner's keys by id.
CREATE INDEX api_keys_external_id ON api_keys (external_id, id) WHERE external_id IS NOT NULL;

-- Keys expiring within a window.
CREATE INDEX api_keys_expires_at ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
