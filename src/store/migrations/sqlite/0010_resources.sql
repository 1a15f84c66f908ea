-- api-keys SQLite schema, version 10: organizations, clouds, folders and
-- service accounts as resources, and their operations log. Applied once, in
-- a transaction, by SqliteStore::migrate.
--
-- Times are unix nanoseconds; labels are a JSON object; names follow
-- [a-z]([-a-z0-9]{0,61}[a-z0-9])? (checked by the library before writing).
-- Keys keep naming their service account by id only (no foreign key): an
-- application may use plain ids without creating accounts.
CREATE TABLE organizations (
    id          TEXT    NOT NULL PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    name        TEXT    NOT NULL UNIQUE,
    title       TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}'
);

CREATE TABLE clouds (
    id              TEXT    NOT NULL PRIMARY KEY,
    organization_id TEXT    NOT NULL REFERENCES organizations (id),
    created_at      INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    description     TEXT    NOT NULL DEFAULT '',
    labels          TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (organization_id, name)
);
CREATE INDEX clouds_by_id ON clouds (organization_id, id);

CREATE TABLE folders (
    id          TEXT    NOT NULL PRIMARY KEY,
    cloud_id    TEXT    NOT NULL REFERENCES clouds (id),
    created_at  INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}',
    status      TEXT    NOT NULL DEFAULT 'ACTIVE'
                CHECK (status IN ('ACTIVE', 'DELETING', 'PENDING_DELETION')),
    UNIQUE (cloud_id, name)
);
CREATE INDEX folders_by_id ON folders (cloud_id, id);

-- `cloud_id` is the folder's cloud, kept here so that a name is unique in
-- the whole cloud.
CREATE TABLE service_accounts (
    id          TEXT    NOT NULL PRIMARY KEY,
    folder_id   TEXT    NOT NULL REFERENCES folders (id),
    cloud_id    TEXT    NOT NULL REFERENCES clouds (id),
    created_at  INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    labels      TEXT    NOT NULL DEFAULT '{}',
    UNIQUE (cloud_id, name)
);
CREATE INDEX service_accounts_by_name ON service_accounts (folder_id, name, id);
CREATE INDEX service_accounts_by_id ON service_accounts (folder_id, id);
CREATE INDEX service_accounts_in_cloud_by_id ON service_accounts (cloud_id, id);

-- Each resource's log; kept after the resource is deleted.
CREATE TABLE resource_operations (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    resource_kind TEXT    NOT NULL
                  CHECK (resource_kind IN ('organization', 'cloud', 'folder', 'serviceAccount')),
    resource_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('create', 'update', 'delete')),
    actor         TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    response      TEXT                 -- the resource as left (JSON); NULL after a delete
);
CREATE INDEX resource_operations_by_resource ON resource_operations (resource_kind, resource_id, seq);

-- The defaults a fresh store holds.
INSERT INTO organizations (id, created_at, name)
    VALUES ('defaultorganization0', CAST(strftime('%s', 'now') AS INTEGER) * 1000000000, 'default');
INSERT INTO clouds (id, organization_id, created_at, name)
    SELECT 'defaultcloud00000000', id, created_at, 'default' FROM organizations;
INSERT INTO folders (id, cloud_id, created_at, name)
    SELECT 'defaultfolder0000000', id, created_at, 'default' FROM clouds;

-- Every service account the keys name becomes one in the default folder,
-- named by its id where the id is a valid name, `sa-` and 16 random hex
-- digits otherwise; created when its first key was.
INSERT INTO service_accounts (id, folder_id, cloud_id, created_at, name)
    SELECT service_account_id, 'defaultfolder0000000', 'defaultcloud00000000', MIN(created_at),
           CASE WHEN length(service_account_id) <= 63
                 AND service_account_id GLOB '[a-z]*'
                 AND service_account_id NOT GLOB '*[^-a-z0-9]*'
                 AND service_account_id NOT GLOB '*-'
                THEN service_account_id
                ELSE 'sa-' || lower(hex(randomblob(8)))
           END
    FROM api_keys
    GROUP BY service_account_id;
