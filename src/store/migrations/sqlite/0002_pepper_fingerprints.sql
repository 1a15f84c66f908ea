-- api-keys SQLite schema, version 2. Applied once, in a transaction, by
-- SqliteStore::migrate (tracked in _api_keys_migrations).

-- One fingerprint per pepper version, HMAC-SHA256(pepper, a fixed label):
-- a process holding a different pepper under a known version is refused at
-- start instead of answering "wrong secret" to every key.
CREATE TABLE api_key_peppers (
    version     INTEGER NOT NULL PRIMARY KEY,
    fingerprint BLOB    NOT NULL              -- 32 bytes
) STRICT;

-- Imported keys' masked form was the secret's last six characters; it is
-- six hex digits of the digest from now on (what KeyRecord::new shows for
-- them). Nothing of the secret is kept.
UPDATE api_keys SET masked_key = lower(hex(substr(digest, 1, 3))) WHERE kind = 'imported';
