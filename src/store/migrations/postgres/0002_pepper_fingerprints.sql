-- api-keys PostgreSQL schema, version 2. Applied once, in a transaction, by
-- PostgresStore::migrate (tracked in _api_keys_migrations).

-- One fingerprint per pepper version, HMAC-SHA256(pepper, a fixed label):
-- a process holding a different pepper under a known version is refused at
-- start instead of answering "wrong secret" to every key.
CREATE TABLE api_key_peppers (
    version     BIGINT NOT NULL,
    fingerprint BYTEA  NOT NULL,
    CONSTRAINT api_key_peppers_pkey PRIMARY KEY (version),
    CONSTRAINT api_key_peppers_version CHECK (version BETWEEN 0 AND 4294967295),
    CONSTRAINT api_key_peppers_len CHECK (octet_length(fingerprint) = 32)
);

-- Imported keys' masked form was the secret's last six characters; it is
-- six hex digits of the digest from now on (what KeyRecord::new shows for
-- them). Nothing of the secret is kept.
UPDATE api_keys SET masked_key = encode(substring(digest FROM 1 FOR 3), 'hex') WHERE kind = 'imported';
