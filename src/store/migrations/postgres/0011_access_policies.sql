-- api-keys schema, version 11: access policies bound on organizations,
-- clouds and folders. Applied once, in a transaction, by the store's
-- migrate. One row per binding: a template bound at most once per
-- resource; `parameters` is a JSON object of strings (checked by the
-- library before writing). A resource's bindings go when it is deleted.
CREATE TABLE access_policy_bindings (
    resource_kind TEXT NOT NULL CHECK (resource_kind IN ('organization', 'cloud', 'folder')),
    resource_id   TEXT NOT NULL,
    template_id   TEXT NOT NULL,
    parameters    TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (resource_kind, resource_id, template_id)
);
