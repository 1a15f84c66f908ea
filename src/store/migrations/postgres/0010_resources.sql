-- api-keys PostgreSQL schema, version 10: organizations, clouds, folders
-- and service accounts as resources, and their operations log. Applied
-- once, in a transaction, by PostgresStore::migrate.
--
-- Times are unix nanoseconds; labels are a JSON object; names follow
-- [a-z]([-a-z0-9]{0,61}[a-z0-9])? (checked by the library before writing).
-- Ids and names compare byte-wise (COLLATE "C") so listing order and the
-- pagination cursor agree with every other store. Keys keep naming their
-- service account by id only (no foreign key): an application may use
-- plain ids without creating accounts.
CREATE TABLE organizations (
    id          TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    title       TEXT   NOT NULL DEFAULT '',
    description TEXT   NOT NULL DEFAULT '',
    labels      TEXT   NOT NULL DEFAULT '{}',
    CONSTRAINT organizations_pkey PRIMARY KEY (id),
    CONSTRAINT organizations_name UNIQUE (name)
);

CREATE TABLE clouds (
    id              TEXT COLLATE "C" NOT NULL,
    organization_id TEXT COLLATE "C" NOT NULL REFERENCES organizations (id),
    created_at      BIGINT NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    description     TEXT   NOT NULL DEFAULT '',
    labels          TEXT   NOT NULL DEFAULT '{}',
    CONSTRAINT clouds_pkey PRIMARY KEY (id),
    CONSTRAINT clouds_name UNIQUE (organization_id, name)
);
CREATE INDEX clouds_by_id ON clouds (organization_id, id);

CREATE TABLE folders (
    id          TEXT COLLATE "C" NOT NULL,
    cloud_id    TEXT COLLATE "C" NOT NULL REFERENCES clouds (id),
    created_at  BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    labels      TEXT   NOT NULL DEFAULT '{}',
    status      TEXT   NOT NULL DEFAULT 'ACTIVE',
    CONSTRAINT folders_pkey PRIMARY KEY (id),
    CONSTRAINT folders_name UNIQUE (cloud_id, name),
    CONSTRAINT folders_status CHECK (status IN ('ACTIVE', 'DELETING', 'PENDING_DELETION'))
);
CREATE INDEX folders_by_id ON folders (cloud_id, id);

-- `cloud_id` is the folder's cloud, kept here so that a name is unique in
-- the whole cloud.
CREATE TABLE service_accounts (
    id          TEXT COLLATE "C" NOT NULL,
    folder_id   TEXT COLLATE "C" NOT NULL REFERENCES folders (id),
    cloud_id    TEXT COLLATE "C" NOT NULL REFERENCES clouds (id),
    created_at  BIGINT NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    labels      TEXT   NOT NULL DEFAULT '{}',
    CONSTRAINT service_accounts_pkey PRIMARY KEY (id),
    CONSTRAINT service_accounts_name UNIQUE (cloud_id, name)
);
CREATE INDEX service_accounts_by_name ON service_accounts (folder_id, name, id);
CREATE INDEX service_accounts_by_id ON service_accounts (folder_id, id);
CREATE INDEX service_accounts_in_cloud_by_id ON service_accounts (cloud_id, id);

-- Each resource's log; kept after the resource is deleted.
CREATE TABLE resource_operations (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY,
    id            TEXT COLLATE "C" NOT NULL,
    resource_kind TEXT   NOT NULL,
    resource_id   TEXT COLLATE "C" NOT NULL,
    kind          TEXT   NOT NULL,
    actor         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    response      TEXT,                -- the resource as left (JSON); NULL after a delete
    CONSTRAINT resource_operations_pkey PRIMARY KEY (seq),
    CONSTRAINT resource_operations_id UNIQUE (id),
    CONSTRAINT resource_operations_resource_kind
        CHECK (resource_kind IN ('organization', 'cloud', 'folder', 'serviceAccount')),
    CONSTRAINT resource_operations_kind CHECK (kind IN ('create', 'update', 'delete'))
);
CREATE INDEX resource_operations_by_resource ON resource_operations (resource_kind, resource_id, seq);

-- The defaults a fresh store holds.
INSERT INTO organizations (id, created_at, name)
    VALUES ('defaultorganization0', (EXTRACT(EPOCH FROM now()) * 1000000)::BIGINT * 1000, 'default');
INSERT INTO clouds (id, organization_id, created_at, name)
    SELECT 'defaultcloud00000000', id, created_at, 'default' FROM organizations;
INSERT INTO folders (id, cloud_id, created_at, name)
    SELECT 'defaultfolder0000000', id, created_at, 'default' FROM clouds;

-- Every service account the keys name becomes one in the default folder,
-- named by its id where the id is a valid name, `sa-` and 17 characters of
-- the id's MD5 otherwise; created when its first key was.
INSERT INTO service_accounts (id, folder_id, cloud_id, created_at, name)
    SELECT service_account_id, 'defaultfolder0000000', 'defaultcloud00000000', MIN(created_at),
           CASE WHEN service_account_id ~ '^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$'
                THEN service_account_id
                ELSE 'sa-' || substr(md5(service_account_id), 1, 17)
           END
    FROM api_keys
    GROUP BY service_account_id;
