-- api-keys SQLite schema, version 8: the key controls that no statement
-- queries (metadata, IP allow-list, rate limits, and every control added
-- later) move into one JSON column, `controls`, so a new control needs no
-- new column. Applied once, in a transaction, by SqliteStore::migrate.
-- (Version 7 is another change; versions are applied in order, and a gap is
-- allowed.) The external id (listings filter by it), the credits (a spend
-- changes them in one statement) and the enabled flag keep their columns.
--
-- `controls` holds a JSON object in the crate's serde shape: `metadata` (the
-- object, copied as stored), `allowedIps` and `rateLimits` (arrays of the
-- comma-joined entries, which contain neither `,` nor `"` nor `\`); absent
-- controls are left out and a row without any keeps NULL. Built as text, so
-- the metadata keeps its exact text (numbers, key order, nested nulls).
ALTER TABLE api_keys ADD COLUMN controls TEXT;

UPDATE api_keys SET controls = '{' || ltrim(
        coalesce(',"metadata":' || metadata, '')
        || coalesce(',"allowedIps":["' || replace(allowed_ips, ',', '","') || '"]', '')
        || coalesce(',"rateLimits":["' || replace(rate_limits, ',', '","') || '"]', ''),
        ',') || '}'
    WHERE metadata IS NOT NULL OR allowed_ips IS NOT NULL OR rate_limits IS NOT NULL;

-- The old columns carry no index or constraint, so SQLite drops them in place.
ALTER TABLE api_keys DROP COLUMN metadata;
ALTER TABLE api_keys DROP COLUMN allowed_ips;
ALTER TABLE api_keys DROP COLUMN rate_limits;
