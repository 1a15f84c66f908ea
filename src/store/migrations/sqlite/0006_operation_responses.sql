-- api-keys SQLite schema, version 6: the response snapshot of an operations
-- log entry (the key as the change left it, JSON, never a secret or
-- digest), so an operation can be answered again by id on any node.
-- Applied once, in a transaction, by SqliteStore::migrate. NULL for the
-- entries of earlier versions and for kinds without one (delete, leak).
ALTER TABLE api_key_operations ADD COLUMN response TEXT;
