-- api-keys schema, version 12: access bindings, a role bound to a subject
-- on an organization, cloud, folder or service account. Applied once, in a
-- transaction, by the store's migrate. One row per binding; the library
-- checks role ids and that the subject exists before writing. A
-- resource's bindings, and a service account's bindings as a subject, go
-- when it is deleted; the subject index serves that delete.
CREATE TABLE access_bindings (
    resource_kind TEXT NOT NULL
        CHECK (resource_kind IN ('organization', 'cloud', 'folder', 'serviceAccount')),
    resource_id   TEXT NOT NULL,
    role_id       TEXT NOT NULL,
    subject_type  TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    PRIMARY KEY (resource_kind, resource_id, role_id, subject_type, subject_id)
);
CREATE INDEX access_bindings_subject ON access_bindings (subject_type, subject_id);
