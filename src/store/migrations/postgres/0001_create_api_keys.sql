-- api-keys PostgreSQL schema, version 1. Applied once, in a transaction, by
-- PostgresStore::migrate (tracked in _api_keys_migrations, in the schema
-- first on the search_path).
--
-- Ids compare byte-wise (COLLATE "C") so listing order and the pagination
-- cursor agree with every other store whatever the database's collation.
CREATE TABLE api_keys (
    id                 TEXT COLLATE "C" NOT NULL,
    service_account_id TEXT COLLATE "C" NOT NULL,
    description        TEXT    NOT NULL DEFAULT '',
    created_at         BIGINT  NOT NULL,              -- unix nanoseconds
    last_used_at       BIGINT,                        -- unix nanoseconds
    scopes             TEXT[]  NOT NULL,
    expires_at         BIGINT,                        -- unix nanoseconds
    masked_key         TEXT    NOT NULL,              -- last six characters
    pepper_version     BIGINT  NOT NULL,
    digest             BYTEA   NOT NULL,              -- HMAC-SHA256, 32 bytes
    status             TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    replaced_by        TEXT COLLATE "C",
    reissued_from      TEXT COLLATE "C",
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_status CHECK (status IN ('active', 'revoked')),
    CONSTRAINT api_keys_kind CHECK (kind IN ('native', 'imported')),
    CONSTRAINT api_keys_digest_len CHECK (octet_length(digest) = 32),
    CONSTRAINT api_keys_pepper_version CHECK (pepper_version BETWEEN 0 AND 4294967295)
);

-- Imported keys are found by digest; at most one imported key per digest.
CREATE UNIQUE INDEX api_keys_imported_digest ON api_keys (digest) WHERE kind = 'imported';

-- Keyset pagination of one service account's keys by id.
CREATE INDEX api_keys_account_id ON api_keys (service_account_id, id);
