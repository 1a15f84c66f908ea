-- api-keys PostgreSQL schema, version 4: the operations log records leaks
-- (kind 'leak': a secret-scanning report or `keyctl scan --revoke`, with
-- where the key was found in `changes`). Applied once, in a transaction, by
-- PostgresStore::migrate (tracked in _api_keys_migrations). Every row stays.
ALTER TABLE api_key_operations DROP CONSTRAINT api_key_operations_kind;
ALTER TABLE api_key_operations ADD CONSTRAINT api_key_operations_kind
    CHECK (kind IN ('create', 'update', 'revoke', 'delete', 'reissue', 'import', 'leak'));
