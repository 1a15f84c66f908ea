-- api-keys PostgreSQL schema, version 5: the enabled flag and the optional
-- key controls. Applied once, in a transaction, by PostgresStore::migrate.
-- (Version 4 is another change; versions are applied in order, and a gap is
-- allowed.)
--
-- Existing rows become enabled keys without controls: every new column is
-- NULL but `enabled`, whose default is TRUE. Absent controls are NULL; the
-- refill columns are all set or all NULL, and only with a remaining count.
ALTER TABLE api_keys
    ADD COLUMN enabled               BOOLEAN NOT NULL DEFAULT TRUE,
    ADD COLUMN metadata              TEXT,              -- JSON object, at most 4 KiB
    ADD COLUMN external_id           TEXT COLLATE "C",
    ADD COLUMN allowed_ips           TEXT,              -- CIDR ranges, comma-joined
    ADD COLUMN rate_limits           TEXT,              -- NAME=COUNT/PERIOD[:burst=N], comma-joined
    ADD COLUMN credits_remaining     BIGINT,
    ADD COLUMN credits_refill_amount BIGINT,
    ADD COLUMN credits_refill_period TEXT,
    ADD COLUMN credits_refill_at     INTEGER,           -- seconds after midnight UTC
    ADD COLUMN credits_refilled_at   BIGINT,            -- unix nanoseconds
    ADD CONSTRAINT api_keys_credits_remaining CHECK (credits_remaining >= 0),
    ADD CONSTRAINT api_keys_credits_refill_amount CHECK (credits_refill_amount >= 0),
    ADD CONSTRAINT api_keys_credits_refill_period CHECK (credits_refill_period IN ('daily', 'monthly')),
    ADD CONSTRAINT api_keys_credits_refill_at CHECK (credits_refill_at BETWEEN 0 AND 86399),
    ADD CONSTRAINT api_keys_credits_refill_whole CHECK (
        (credits_refill_amount IS NULL) = (credits_refill_period IS NULL)
        AND (credits_refill_amount IS NULL) = (credits_refill_at IS NULL)
        AND (credits_refill_amount IS NULL OR credits_remaining IS NOT NULL)
    );

-- Keyset pagination of one external owner's keys by id.
CREATE INDEX api_keys_external_id ON api_keys (external_id, id) WHERE external_id IS NOT NULL;

-- Keys expiring within a window.
CREATE INDEX api_keys_expires_at ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
