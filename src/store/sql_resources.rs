//! Resources in the SQL stores: the statements (built from fixed fragments
//! per kind, never from input) and [`sql_resources!`], which writes the
//! stores' resource methods inside [`sql_key_store!`](super::sql::sql_key_store).
//!
//! Tables (schema version 10): `organizations`, `clouds`, `folders`,
//! `service_accounts` (with its folder's `cloud_id`, so that a name is
//! unique in the whole cloud) and `resource_operations`. Every read selects
//! the same columns from each table — `id`, `parent`, `created_at`, `name`,
//! `title`, `description`, `labels`, `status`, `last_used` — so one decoder
//! reads them all.

use crate::resource::{ResourceKind, ResourceListing, ResourceOrder};

/// The table of a kind.
pub(super) fn table(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Organization => "organizations",
        ResourceKind::Cloud => "clouds",
        ResourceKind::Folder => "folders",
        ResourceKind::ServiceAccount => "service_accounts",
    }
}

/// The column naming a kind's parent (`''` for organizations).
fn parent_column(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Organization => "''",
        ResourceKind::Cloud => "r.organization_id",
        ResourceKind::Folder => "r.cloud_id",
        ResourceKind::ServiceAccount => "r.folder_id",
    }
}

/// The columns every read selects, from table alias `r`.
fn columns(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Organization => {
            "r.id, '' AS parent, r.created_at, r.name, r.title, r.description, r.labels, \
             'ACTIVE' AS status, CAST(NULL AS BIGINT) AS last_used"
        }
        ResourceKind::Cloud => {
            "r.id, r.organization_id AS parent, r.created_at, r.name, '' AS title, r.description, r.labels, \
             'ACTIVE' AS status, CAST(NULL AS BIGINT) AS last_used"
        }
        ResourceKind::Folder => {
            "r.id, r.cloud_id AS parent, r.created_at, r.name, '' AS title, r.description, r.labels, \
             r.status, CAST(NULL AS BIGINT) AS last_used"
        }
        ResourceKind::ServiceAccount => {
            "r.id, r.folder_id AS parent, r.created_at, r.name, '' AS title, r.description, r.labels, \
             'ACTIVE' AS status, \
             (SELECT MAX(k.last_used_at) FROM api_keys k WHERE k.service_account_id = r.id) AS last_used"
        }
    }
}

/// `SELECT … FROM <table> r `.
fn select(kind: ResourceKind) -> String {
    format!("SELECT {} FROM {} r ", columns(kind), table(kind))
}

/// One resource by id (`$1`).
pub(super) fn by_id(kind: ResourceKind) -> String {
    format!("{}WHERE r.id = $1", select(kind))
}

/// The column a listing filters on (bound as `$1`; `''` for organizations).
fn listing_column(listing: &ResourceListing) -> &'static str {
    match listing {
        ResourceListing::ServiceAccountsOfCloud(_) => "r.cloud_id",
        other => parent_column(other.kind()),
    }
}

/// The value a listing's `$1` is bound to.
pub(super) fn listing_parent(listing: &ResourceListing) -> String {
    listing.parent().map(|p| p.id().to_owned()).unwrap_or_default()
}

/// A page of a listing: `$1` the parent, then (after a cursor) `$2` the
/// name and `$3` the id (name order) or `$2` the id (id order), then the
/// row limit.
pub(super) fn page(listing: &ResourceListing, order: ResourceOrder, after: bool) -> String {
    let (cursor, sort, limit) = match (order, after) {
        (ResourceOrder::Id, false) => ("", "r.id", "$2"),
        (ResourceOrder::Id, true) => (" AND r.id > $2", "r.id", "$3"),
        (_, false) => ("", "r.name, r.id", "$2"),
        (_, true) => (" AND (r.name > $2 OR (r.name = $2 AND r.id > $3))", "r.name, r.id", "$4"),
    };
    format!("{}WHERE {} = $1{cursor} ORDER BY {sort} LIMIT {limit}", select(listing.kind()), listing_column(listing))
}

/// A listing's member named `$2` (`$1` the parent).
pub(super) fn find(listing: &ResourceListing) -> String {
    format!("{}WHERE {} = $1 AND r.name = $2", select(listing.kind()), listing_column(listing))
}

/// Whether an id exists (`$1`).
pub(super) fn exists(kind: ResourceKind) -> String {
    format!("SELECT 1 FROM {} WHERE id = $1", table(kind))
}

/// Whether a name (`$2`) is taken where names of `kind` are unique (`$1`
/// the scope's id: organization, cloud; ignored for organizations).
pub(super) fn name_taken(kind: ResourceKind) -> String {
    let scope = match kind {
        ResourceKind::Organization => "'' = $1",
        ResourceKind::Cloud => "organization_id = $1",
        ResourceKind::Folder | ResourceKind::ServiceAccount => "cloud_id = $1",
    };
    format!("SELECT 1 FROM {} WHERE {scope} AND name = $2", table(kind))
}

/// The first child of a resource (`$1`), if any: its kind's table and the
/// statement.
pub(super) fn first_child(kind: ResourceKind) -> Option<(ResourceKind, String)> {
    let (child, column) = match kind {
        ResourceKind::Organization => (ResourceKind::Cloud, "organization_id"),
        ResourceKind::Cloud => (ResourceKind::Folder, "cloud_id"),
        ResourceKind::Folder => (ResourceKind::ServiceAccount, "folder_id"),
        ResourceKind::ServiceAccount => return None,
    };
    Some((child, format!("SELECT 1 FROM {} WHERE {column} = $1 LIMIT 1", table(child))))
}

/// Deletes a resource (`$1`).
pub(super) fn delete(kind: ResourceKind) -> String {
    format!("DELETE FROM {} WHERE id = $1", table(kind))
}

/// Updates the fields a patch may change (`$1` the id, `$2` name, `$3`
/// description, `$4` labels, `$5` title — organizations only).
pub(super) fn update(kind: ResourceKind) -> String {
    let title = if kind == ResourceKind::Organization { ", title = $5" } else { "" };
    format!("UPDATE {} SET name = $2, description = $3, labels = $4{title} WHERE id = $1", table(kind))
}

/// Inserts an organization: id, created_at, name, title, description, labels.
pub(super) const INSERT_ORGANIZATION: &str = "INSERT INTO organizations \
    (id, created_at, name, title, description, labels) VALUES ($1, $2, $3, $4, $5, $6)";
/// Inserts a cloud: id, organization_id, created_at, name, description, labels.
pub(super) const INSERT_CLOUD: &str = "INSERT INTO clouds \
    (id, organization_id, created_at, name, description, labels) VALUES ($1, $2, $3, $4, $5, $6)";
/// Inserts a folder: id, cloud_id, created_at, name, description, labels, status.
pub(super) const INSERT_FOLDER: &str = "INSERT INTO folders \
    (id, cloud_id, created_at, name, description, labels, status) VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// Inserts a service account: id, folder_id, cloud_id, created_at, name,
/// description, labels.
pub(super) const INSERT_SERVICE_ACCOUNT: &str = "INSERT INTO service_accounts \
    (id, folder_id, cloud_id, created_at, name, description, labels) VALUES ($1, $2, $3, $4, $5, $6, $7)";
/// A folder's cloud (`$1` the folder).
pub(super) const FOLDER_CLOUD: &str = "SELECT cloud_id FROM folders WHERE id = $1";
/// A service account's cloud (`$1` the account).
pub(super) const ACCOUNT_CLOUD: &str = "SELECT cloud_id FROM service_accounts WHERE id = $1";
/// Deletes a service account's keys (`$1`), returning their ids.
pub(super) const DELETE_ACCOUNT_KEYS: &str = "DELETE FROM api_keys WHERE service_account_id = $1 RETURNING id";
/// Appends a resource log entry; no row if the id is logged already.
pub(super) const LOG: &str = "INSERT INTO resource_operations \
    (id, resource_kind, resource_id, kind, actor, created_at, response) VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (id) DO NOTHING";
/// Binds a policy, replacing its template's parameters there (`$1` kind,
/// `$2` id, `$3` template, `$4` parameters).
pub(super) const BIND: &str = "INSERT INTO access_policy_bindings (resource_kind, resource_id, template_id, parameters) \
    VALUES ($1, $2, $3, $4) ON CONFLICT (resource_kind, resource_id, template_id) DO UPDATE SET parameters = $4";
/// Unbinds a template (`$1` kind, `$2` id, `$3` template).
pub(super) const UNBIND: &str =
    "DELETE FROM access_policy_bindings WHERE resource_kind = $1 AND resource_id = $2 AND template_id = $3";
/// Drops a deleted resource's bindings (`$1` kind, `$2` id).
pub(super) const UNBIND_ALL: &str = "DELETE FROM access_policy_bindings WHERE resource_kind = $1 AND resource_id = $2";
/// Every binding, in order.
pub(super) const BINDINGS: &str = "SELECT resource_kind, resource_id, template_id, parameters \
    FROM access_policy_bindings ORDER BY resource_kind, resource_id, template_id";
/// The bindings on one resource (`$1` kind, `$2` id), in order.
pub(super) const BINDINGS_ON: &str = "SELECT resource_kind, resource_id, template_id, parameters \
    FROM access_policy_bindings WHERE resource_kind = $1 AND resource_id = $2 ORDER BY template_id";
/// Takes the write lock of a resource's row (`$1` its id): changes of its
/// access bindings, read then written, go one at a time.
pub(super) fn lock(kind: ResourceKind) -> String {
    format!("UPDATE {} SET id = id WHERE id = $1", table(kind))
}
/// Adds an access binding (`$1` kind, `$2` id, `$3` role, `$4` subject
/// type, `$5` subject id).
pub(super) const GRANT: &str = "INSERT INTO access_bindings \
    (resource_kind, resource_id, role_id, subject_type, subject_id) VALUES ($1, $2, $3, $4, $5)";
/// Drops every access binding on a resource (`$1` kind, `$2` id).
pub(super) const REVOKE_ALL: &str = "DELETE FROM access_bindings WHERE resource_kind = $1 AND resource_id = $2";
/// Drops every access binding of a subject (`$1` type, `$2` id).
pub(super) const REVOKE_SUBJECT: &str = "DELETE FROM access_bindings WHERE subject_type = $1 AND subject_id = $2";
/// Every access binding, in order.
pub(super) const GRANTS: &str = "SELECT resource_kind, resource_id, role_id, subject_type, subject_id \
    FROM access_bindings ORDER BY resource_kind, resource_id, role_id, subject_type, subject_id";
/// The access bindings on one resource (`$1` kind, `$2` id), in order.
pub(super) const GRANTS_ON: &str = "SELECT resource_kind, resource_id, role_id, subject_type, subject_id \
    FROM access_bindings WHERE resource_kind = $1 AND resource_id = $2 ORDER BY role_id, subject_type, subject_id";
/// One resource log entry by id (`$1`).
pub(super) const OPERATION: &str = "SELECT seq, id, kind, actor, created_at, response, resource_kind, resource_id \
    FROM resource_operations WHERE id = $1";
/// The newest resource log entry's sequence number.
pub(super) const HEAD: &str = "SELECT COALESCE(MAX(seq), 0) FROM resource_operations";
/// A page of one resource's log, newest first (`$1` kind, `$2` id, `$3`
/// before this seq, `$4` rows).
pub(super) const OPERATIONS: &str = "SELECT seq, id, kind, actor, created_at, response FROM resource_operations \
    WHERE resource_kind = $1 AND resource_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4";

/// Writes, inside `sql_key_store!`'s scope (its `Db`, `Tx`, `log_in`,
/// `feed_in`), the helpers of the SQL stores' resource methods and an
/// inherent `impl` with `commit_resource_sql`, `resource_sql`,
/// `list_resources_sql`, `find_resource_sql` and
/// `resource_operations_sql`, which the `KeyStore` impl calls under its
/// timeout.
macro_rules! sql_resources {
    ($store:ident) => {
        use $crate::resource::{
            Cloud, Folder, FolderStatus, Labels, Organization, Resource, ResourceChange, ResourceCommit,
            ResourceCursor, ResourceError, ResourceId, ResourceKind, ResourceListing, ResourceLogEntry, ResourceName,
            ResourceOperation, ResourceOperationKind, ResourceOperationPage, ResourceOrder, ResourcePage, ResourceRef,
            ServiceAccount,
        };
        use $crate::store::sql_resources as rs;

        /// A query of a statement built from fixed fragments.
        fn built(statement: String) -> Query<'static> {
            sqlx::query(sqlx::AssertSqlSafe(statement))
        }

        fn corrupt(column: &str) -> StoreError {
            StoreError::Corrupt(format!("resource column `{column}` is invalid"))
        }

        /// A row of any resource table as a resource of `kind`.
        fn decode_resource(kind: ResourceKind, r: &<Db as sqlx::Database>::Row) -> Result<Resource, StoreError> {
            let text = |c: &str| -> Result<String, StoreError> { r.try_get::<String, _>(c).map_err(sqlx_error) };
            let id = text("id")?;
            let rid = || ResourceId::new(&id).map_err(|_| corrupt("id"));
            let parent = || ResourceId::new(&text("parent")?).map_err(|_| corrupt("parent"));
            let created_at = Timestamp::from_unix_nanos(r.try_get("created_at").map_err(sqlx_error)?);
            let name = ResourceName::new(&text("name")?).map_err(|_| corrupt("name"))?;
            let description = $crate::Description::new(&text("description")?).map_err(|_| corrupt("description"))?;
            let labels: Labels = serde_json::from_str(&text("labels")?).map_err(|_| corrupt("labels"))?;
            Ok(match kind {
                ResourceKind::Organization => {
                    let title = $crate::Description::new(&text("title")?).map_err(|_| corrupt("title"))?;
                    let mut o = Organization::new(rid()?, created_at, name).with_title(title);
                    o.description = description;
                    o.labels = labels;
                    Resource::Organization(o)
                }
                ResourceKind::Cloud => Resource::Cloud(
                    Cloud::new(rid()?, parent()?, created_at, name).with_description(description).with_labels(labels),
                ),
                ResourceKind::Folder => {
                    let mut f = Folder::new(rid()?, parent()?, created_at, name)
                        .with_description(description)
                        .with_labels(labels);
                    f.status = FolderStatus::parse(&text("status")?).ok_or_else(|| corrupt("status"))?;
                    Resource::Folder(f)
                }
                ResourceKind::ServiceAccount => {
                    let sa = ServiceAccountId::new(&id).map_err(|_| corrupt("id"))?;
                    let mut a = ServiceAccount::new(sa, parent()?, created_at, name)
                        .with_description(description)
                        .with_labels(labels);
                    let last: Option<i64> = r.try_get("last_used").map_err(sqlx_error)?;
                    a.last_authenticated_at = last.map(Timestamp::from_unix_nanos);
                    Resource::ServiceAccount(a)
                }
            })
        }

        fn labels_text(labels: &Labels) -> Result<String, StoreError> {
            serde_json::to_string(labels).map_err(|_| StoreError::Corrupt("labels do not serialise".to_owned()))
        }

        /// Whether the statement finds a row.
        async fn found(tx: &mut Tx, query: Query<'_>) -> Result<bool, StoreError> {
            Ok(query.fetch_optional(&mut **tx).await.map_err(sqlx_error)?.is_some())
        }

        /// The resource `target` inside `tx`.
        async fn resource_in(tx: &mut Tx, target: &ResourceRef) -> Result<Option<Resource>, StoreError> {
            let row = built(rs::by_id(target.kind()))
                .bind(target.id().to_owned())
                .fetch_optional(&mut **tx)
                .await
                .map_err(sqlx_error)?;
            row.map(|r| decode_resource(target.kind(), &r)).transpose()
        }

        /// The id of the scope in which `resource`'s name must be unique
        /// (`''` for an organization), read inside `tx`; a missing parent is
        /// refused.
        async fn scope_in(tx: &mut Tx, resource: &Resource) -> Result<String, StoreError> {
            let parent = resource.parent();
            if let Some(parent) = &parent
                && !found(tx, built(rs::exists(parent.kind())).bind(parent.id().to_owned())).await?
            {
                return Err(ResourceError::ParentNotFound { kind: parent.kind(), id: parent.id().to_owned() }.into());
            }
            Ok(match resource {
                Resource::Organization(_) => String::new(),
                Resource::Cloud(c) => c.organization_id.as_str().to_owned(),
                Resource::Folder(f) => f.cloud_id.as_str().to_owned(),
                Resource::ServiceAccount(sa) => sqlx::query_scalar::<_, String>(rs::FOLDER_CLOUD)
                    .bind(sa.folder_id.as_str())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(sqlx_error)?
                    .ok_or_else(|| ResourceError::ParentNotFound {
                        kind: ResourceKind::Folder,
                        id: sa.folder_id.as_str().to_owned(),
                    })?,
            })
        }

        /// Refuses `name` if taken in `scope` for `kind`.
        async fn check_name_in(
            tx: &mut Tx,
            kind: ResourceKind,
            scope: &str,
            name: &ResourceName,
        ) -> Result<(), StoreError> {
            let taken = built(rs::name_taken(kind)).bind(scope.to_owned()).bind(name.as_str().to_owned());
            if found(tx, taken).await? { Err($crate::resource::name_taken(kind, name).into()) } else { Ok(()) }
        }

        async fn create_resource_in(tx: &mut Tx, resource: &Resource) -> Result<(), StoreError> {
            let target = resource.reference();
            if found(tx, built(rs::exists(target.kind())).bind(target.id().to_owned())).await? {
                return Err(ResourceError::AlreadyExists { kind: target.kind(), id: target.id().to_owned() }.into());
            }
            let scope = scope_in(tx, resource).await?;
            check_name_in(tx, resource.kind(), &scope, resource.name()).await?;
            let query = match resource {
                Resource::Organization(o) => sqlx::query(rs::INSERT_ORGANIZATION)
                    .bind(o.id.as_str())
                    .bind(o.created_at.unix_nanos())
                    .bind(o.name.as_str())
                    .bind(o.title.as_str())
                    .bind(o.description.as_str())
                    .bind(labels_text(&o.labels)?),
                Resource::Cloud(c) => sqlx::query(rs::INSERT_CLOUD)
                    .bind(c.id.as_str())
                    .bind(c.organization_id.as_str())
                    .bind(c.created_at.unix_nanos())
                    .bind(c.name.as_str())
                    .bind(c.description.as_str())
                    .bind(labels_text(&c.labels)?),
                Resource::Folder(f) => sqlx::query(rs::INSERT_FOLDER)
                    .bind(f.id.as_str())
                    .bind(f.cloud_id.as_str())
                    .bind(f.created_at.unix_nanos())
                    .bind(f.name.as_str())
                    .bind(f.description.as_str())
                    .bind(labels_text(&f.labels)?)
                    .bind(f.status.as_str()),
                Resource::ServiceAccount(a) => sqlx::query(rs::INSERT_SERVICE_ACCOUNT)
                    .bind(a.id.as_str())
                    .bind(a.folder_id.as_str())
                    .bind(scope)
                    .bind(a.created_at.unix_nanos())
                    .bind(a.name.as_str())
                    .bind(a.description.as_str())
                    .bind(labels_text(&a.labels)?),
            };
            query.execute(&mut **tx).await.map_err(|e| named(e, resource))?;
            Ok(())
        }

        /// A write that lost a race with a concurrent one (PostgreSQL, whose
        /// constraints catch what the checks before it could not see): a
        /// unique violation (the name was taken meanwhile) as
        /// [`ResourceError::NameTaken`], a foreign key violation (the parent
        /// was deleted meanwhile) as [`ResourceError::ParentNotFound`];
        /// other errors as [`sqlx_error`].
        fn named(e: sqlx::Error, resource: &Resource) -> StoreError {
            if let sqlx::Error::Database(db) = &e {
                if db.is_unique_violation() {
                    return $crate::resource::name_taken(resource.kind(), resource.name()).into();
                }
                if db.is_foreign_key_violation()
                    && let Some(parent) = resource.parent()
                {
                    return ResourceError::ParentNotFound { kind: parent.kind(), id: parent.id().to_owned() }.into();
                }
            }
            sqlx_error(e)
        }

        async fn update_resource_in(
            tx: &mut Tx,
            target: &ResourceRef,
            patch: &$crate::resource::ResourcePatch,
        ) -> Result<Resource, StoreError> {
            let old = resource_in(tx, target).await?.ok_or_else(|| target.not_found())?.as_written();
            let new = old.clone().patched(patch)?;
            if new.name() != old.name() {
                let scope = match &new {
                    Resource::ServiceAccount(_) => sqlx::query_scalar::<_, String>(rs::ACCOUNT_CLOUD)
                        .bind(target.id().to_owned())
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(sqlx_error)?,
                    other => scope_in(tx, other).await?,
                };
                check_name_in(tx, new.kind(), &scope, new.name()).await?;
            }
            let (description, labels, title) = match &new {
                Resource::Organization(o) => (&o.description, &o.labels, o.title.as_str()),
                Resource::Cloud(c) => (&c.description, &c.labels, ""),
                Resource::Folder(f) => (&f.description, &f.labels, ""),
                Resource::ServiceAccount(a) => (&a.description, &a.labels, ""),
            };
            let mut query = built(rs::update(new.kind()))
                .bind(target.id().to_owned())
                .bind(new.name().as_str().to_owned())
                .bind(description.as_str().to_owned())
                .bind(labels_text(labels)?);
            if new.kind() == ResourceKind::Organization {
                query = query.bind(title.to_owned());
            }
            query.execute(&mut **tx).await.map_err(|e| named(e, &new))?;
            Ok(new)
        }

        /// Deletes `target` (refused while it holds resources); a service
        /// account's keys go with it, each with a log and a feed entry.
        /// Changes the access bindings on `target` in `tx` (its row locked
        /// first, so changes of one resource's bindings go one at a time);
        /// returns the resource.
        async fn access_in(
            tx: &mut Tx,
            target: &ResourceRef,
            deltas: &[$crate::access_binding::AccessBindingDelta],
            replace: bool,
        ) -> Result<Resource, StoreError> {
            built(rs::lock(target.kind())).bind(target.id().to_owned()).execute(&mut **tx).await.map_err(sqlx_error)?;
            let left = resource_in(tx, target).await?.ok_or_else(|| target.not_found())?;
            for d in deltas.iter().filter(|d| d.action == $crate::access_binding::DeltaAction::Add) {
                let subject = d.binding.subject.resource();
                if !found(tx, built(rs::exists(subject.kind())).bind(subject.id().to_owned())).await? {
                    return Err(ResourceError::from($crate::access_binding::AccessBindingError::SubjectNotFound(
                        d.binding.subject.to_string(),
                    ))
                    .into());
                }
            }
            let rows = sqlx::query(rs::GRANTS_ON)
                .bind(target.kind().as_str())
                .bind(target.id().to_owned())
                .fetch_all(&mut **tx)
                .await
                .map_err(sqlx_error)?;
            let current = rows.iter().map(|r| decode_grant(r).map(|(_, b)| b)).collect::<Result<Vec<_>, _>>()?;
            let next = $crate::access_binding::apply(target, &current, deltas, replace).map_err(ResourceError::from)?;
            sqlx::query(rs::REVOKE_ALL)
                .bind(target.kind().as_str())
                .bind(target.id().to_owned())
                .execute(&mut **tx)
                .await
                .map_err(sqlx_error)?;
            for b in &next {
                sqlx::query(rs::GRANT)
                    .bind(target.kind().as_str())
                    .bind(target.id().to_owned())
                    .bind(b.role.id())
                    .bind(b.subject.kind())
                    .bind(b.subject.id().to_owned())
                    .execute(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
            }
            Ok(left.as_written())
        }

        /// A stored access binding and the resource it is on.
        fn decode_grant(
            r: &<Db as sqlx::Database>::Row,
        ) -> Result<(ResourceRef, $crate::access_binding::AccessBinding), StoreError> {
            let text = |c: &str| r.try_get::<String, _>(c).map_err(sqlx_error);
            let kind = ResourceKind::parse(&text("resource_kind")?).ok_or_else(|| corrupt("resource_kind"))?;
            let on = ResourceRef::parse(kind, &text("resource_id")?).map_err(|_| corrupt("resource_id"))?;
            let role = $crate::access_binding::Role::parse(&text("role_id")?).map_err(|_| corrupt("role_id"))?;
            let subject = $crate::access_binding::Subject::parse(&text("subject_type")?, &text("subject_id")?)
                .map_err(|_| corrupt("subject"))?;
            Ok((on, $crate::access_binding::AccessBinding::new(role, subject)))
        }

        async fn delete_resource_in(
            tx: &mut Tx,
            target: &ResourceRef,
            log: &ResourceLogEntry,
        ) -> Result<Vec<KeyId>, StoreError> {
            if !found(tx, built(rs::exists(target.kind())).bind(target.id().to_owned())).await? {
                return Err(target.not_found().into());
            }
            if let Some((child, statement)) = rs::first_child(target.kind())
                && found(tx, built(statement).bind(target.id().to_owned())).await?
            {
                return Err(
                    ResourceError::HasChildren { kind: target.kind(), id: target.id().to_owned(), child }.into()
                );
            }
            let mut deleted = Vec::new();
            if let ResourceRef::ServiceAccount(account) = target {
                let ids: Vec<String> = sqlx::query_scalar(rs::DELETE_ACCOUNT_KEYS)
                    .bind(account.as_str())
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(sqlx_error)?;
                for id in &ids {
                    deleted
                        .push(KeyId::parse(id).map_err(|_| StoreError::Corrupt("a stored id is not a key id".into()))?);
                }
                deleted.sort();
                let fed: Vec<_> = deleted.iter().map(|k| $crate::store::feed::FeedChange::new(*k, true)).collect();
                feed_in(tx, &fed).await?;
                for entry in log.key_deletes(&deleted)? {
                    log_in(tx, &entry, account.as_str()).await?;
                }
            }
            let gone = built(rs::delete(target.kind())).bind(target.id().to_owned()).execute(&mut **tx).await;
            match (gone, rs::first_child(target.kind())) {
                // A child was created meanwhile (PostgreSQL's foreign keys).
                (Err(sqlx::Error::Database(db)), Some((child, _))) if db.is_foreign_key_violation() => {
                    Err(ResourceError::HasChildren { kind: target.kind(), id: target.id().to_owned(), child }.into())
                }
                (Err(e), _) => Err(sqlx_error(e)),
                (Ok(_), _) => Ok(deleted),
            }
        }

        /// Appends the resource log entry inside `tx`.
        async fn resource_log_in(
            tx: &mut Tx,
            log: &ResourceLogEntry,
            target: &ResourceRef,
            kind: ResourceOperationKind,
            left: Option<&Resource>,
        ) -> Result<(), StoreError> {
            let response = left
                .map(serde_json::to_string)
                .transpose()
                .map_err(|_| StoreError::Corrupt("a resource does not serialise".to_owned()))?;
            let done = sqlx::query(rs::LOG)
                .bind(log.id.as_str())
                .bind(target.kind().as_str())
                .bind(target.id().to_owned())
                .bind(kind.as_str())
                .bind(log.actor.as_str())
                .bind(log.created_at.unix_nanos())
                .bind(response)
                .execute(&mut **tx)
                .await
                .map_err(sqlx_error)?;
            if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::DuplicateOperation(log.id)) }
        }

        fn decode_resource_operation(
            target: &ResourceRef,
            r: &<Db as sqlx::Database>::Row,
        ) -> Result<(i64, ResourceOperation), StoreError> {
            let seq: i64 = r.try_get("seq").map_err(sqlx_error)?;
            let id: String = r.try_get("id").map_err(sqlx_error)?;
            let kind: String = r.try_get("kind").map_err(sqlx_error)?;
            let actor: String = r.try_get("actor").map_err(sqlx_error)?;
            let response: Option<String> = r.try_get("response").map_err(sqlx_error)?;
            let op = ResourceOperation {
                id: OperationId::parse(&id).map_err(|_| corrupt("id"))?,
                resource: target.clone(),
                kind: ResourceOperationKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
                actor: Actor::new(&actor).map_err(|_| corrupt("actor"))?,
                created_at: Timestamp::from_unix_nanos(r.try_get("created_at").map_err(sqlx_error)?),
                response: response.map(|t| serde_json::from_str(&t)).transpose().map_err(|_| corrupt("response"))?,
            };
            Ok((seq, op))
        }

        impl $store {
            async fn commit_resource_sql(
                &self,
                change: ResourceChange,
                log: &ResourceLogEntry,
            ) -> Result<ResourceCommit, StoreError> {
                let mut tx = self.pool.begin_with(D::BEGIN_WRITE).await.map_err(sqlx_error)?;
                // The claim first: a twin claiming the same key waits here.
                claim_in(&mut tx, log.claim()).await?;
                let target = change.target();
                let kind = change.operation_kind();
                let (left, deleted) = match change {
                    ResourceChange::Create(resource) => {
                        let resource = resource.as_written();
                        create_resource_in(&mut tx, &resource).await?;
                        (Some(resource), Vec::new())
                    }
                    ResourceChange::Update { target, patch } => {
                        (Some(update_resource_in(&mut tx, &target, &patch).await?), Vec::new())
                    }
                    ResourceChange::Delete(target) => {
                        let deleted = delete_resource_in(&mut tx, &target, log).await?;
                        for statement in [rs::UNBIND_ALL, rs::REVOKE_ALL] {
                            sqlx::query(statement)
                                .bind(target.kind().as_str())
                                .bind(target.id().to_owned())
                                .execute(&mut *tx)
                                .await
                                .map_err(sqlx_error)?;
                        }
                        if let ResourceRef::ServiceAccount(account) = &target {
                            sqlx::query(rs::REVOKE_SUBJECT)
                                .bind("serviceAccount")
                                .bind(account.as_str())
                                .execute(&mut *tx)
                                .await
                                .map_err(sqlx_error)?;
                        }
                        (None, deleted)
                    }
                    ResourceChange::UpdateAccessBindings { target, deltas, replace } => {
                        (Some(access_in(&mut tx, &target, &deltas, replace).await?), Vec::new())
                    }
                    ResourceChange::BindAccessPolicy { target, binding } => {
                        $crate::resource::check_policy_change(&target, Some(&binding))?;
                        let left = resource_in(&mut tx, &target).await?.ok_or_else(|| target.not_found())?;
                        let parameters = serde_json::to_string(&binding.parameters)
                            .map_err(|_| StoreError::Corrupt("parameters do not serialise".to_owned()))?;
                        sqlx::query(rs::BIND)
                            .bind(target.kind().as_str())
                            .bind(target.id().to_owned())
                            .bind(binding.access_policy_template_id.clone())
                            .bind(parameters)
                            .execute(&mut *tx)
                            .await
                            .map_err(sqlx_error)?;
                        (Some(left.as_written()), Vec::new())
                    }
                    ResourceChange::UnbindAccessPolicy { target, template_id } => {
                        $crate::resource::check_policy_change(&target, None)?;
                        let left = resource_in(&mut tx, &target).await?.ok_or_else(|| target.not_found())?;
                        let gone = sqlx::query(rs::UNBIND)
                            .bind(target.kind().as_str())
                            .bind(target.id().to_owned())
                            .bind(template_id.clone())
                            .execute(&mut *tx)
                            .await
                            .map_err(sqlx_error)?;
                        if gone.rows_affected() == 0 {
                            return Err($crate::resource::policy_not_bound(&target, &template_id).into());
                        }
                        (Some(left.as_written()), Vec::new())
                    }
                };
                resource_log_in(&mut tx, log, &target, kind, left.as_ref()).await?;
                tx.commit().await.map_err(sqlx_error)?;
                Ok(ResourceCommit::new(left, deleted))
            }

            async fn resource_sql(&self, target: &ResourceRef) -> Result<Option<Resource>, StoreError> {
                let row = built(rs::by_id(target.kind()))
                    .bind(target.id().to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sqlx_error)?;
                row.map(|r| decode_resource(target.kind(), &r)).transpose()
            }

            async fn list_resources_sql(
                &self,
                listing: &ResourceListing,
                order: ResourceOrder,
                page: PageRequest<ResourceCursor>,
            ) -> Result<ResourcePage, StoreError> {
                let limit = page.effective_limit();
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let mut query = built(rs::page(listing, order, page.after.is_some())).bind(rs::listing_parent(listing));
                if let Some(c) = &page.after {
                    query = match order {
                        ResourceOrder::Id => query.bind(c.id.clone()),
                        _ => query.bind(c.name.clone()).bind(c.id.clone()),
                    };
                }
                let rows = query.bind(fetch).fetch_all(&self.pool).await.map_err(sqlx_error)?;
                let mut items =
                    rows.iter().map(|r| decode_resource(listing.kind(), r)).collect::<Result<Vec<_>, _>>()?;
                let next =
                    $crate::store::key_store::next_after(&mut items, limit, |last| last.map(ResourceCursor::after));
                Ok(Page::new(items, next))
            }

            async fn find_resource_sql(
                &self,
                listing: &ResourceListing,
                name: &ResourceName,
            ) -> Result<Option<Resource>, StoreError> {
                let row = built(rs::find(listing))
                    .bind(rs::listing_parent(listing))
                    .bind(name.as_str().to_owned())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sqlx_error)?;
                row.map(|r| decode_resource(listing.kind(), &r)).transpose()
            }

            async fn resource_operations_sql(
                &self,
                target: &ResourceRef,
                page: PageRequest<OperationCursor>,
            ) -> Result<ResourceOperationPage, StoreError> {
                let limit = page.effective_limit();
                let before = page.after.map_or(i64::MAX, |c| i64::try_from(c.get()).unwrap_or(i64::MAX));
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let rows = sqlx::query(rs::OPERATIONS)
                    .bind(target.kind().as_str())
                    .bind(target.id().to_owned())
                    .bind(before)
                    .bind(fetch)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(sqlx_error)?;
                let mut items =
                    rows.iter().map(|r| decode_resource_operation(target, r)).collect::<Result<Vec<_>, _>>()?;
                let next = $crate::store::key_store::next_after(&mut items, limit, |last| {
                    last.and_then(|(seq, _)| u64::try_from(*seq).ok()).map(OperationCursor::new)
                });
                Ok(Page::new(items.into_iter().map(|(_, op)| op).collect(), next))
            }

            async fn access_policy_bindings_sql(
                &self,
                on: Option<&ResourceRef>,
            ) -> Result<Vec<(ResourceRef, $crate::access_policy::AccessPolicyBinding)>, StoreError> {
                let query = match on {
                    Some(r) => sqlx::query(rs::BINDINGS_ON).bind(r.kind().as_str()).bind(r.id().to_owned()),
                    None => sqlx::query(rs::BINDINGS),
                };
                let rows = query.fetch_all(&self.pool).await.map_err(sqlx_error)?;
                rows.iter()
                    .map(|r| {
                        let text = |c: &str| r.try_get::<String, _>(c).map_err(sqlx_error);
                        let kind =
                            ResourceKind::parse(&text("resource_kind")?).ok_or_else(|| corrupt("resource_kind"))?;
                        let on = ResourceRef::parse(kind, &text("resource_id")?).map_err(|_| corrupt("resource_id"))?;
                        let parameters =
                            serde_json::from_str(&text("parameters")?).map_err(|_| corrupt("parameters"))?;
                        let mut binding = $crate::access_policy::AccessPolicyBinding::new(text("template_id")?);
                        binding.parameters = parameters;
                        Ok((on, binding))
                    })
                    .collect()
            }

            async fn access_bindings_sql(
                &self,
                on: Option<&ResourceRef>,
            ) -> Result<Vec<(ResourceRef, $crate::access_binding::AccessBinding)>, StoreError> {
                let query = match on {
                    Some(r) => sqlx::query(rs::GRANTS_ON).bind(r.kind().as_str()).bind(r.id().to_owned()),
                    None => sqlx::query(rs::GRANTS),
                };
                let rows = query.fetch_all(&self.pool).await.map_err(sqlx_error)?;
                // In the library's order, whatever the database's collation.
                let mut all = rows.iter().map(|r| decode_grant(r)).collect::<Result<Vec<_>, _>>()?;
                all.sort();
                Ok(all)
            }

            async fn resource_operation_sql(&self, id: &OperationId) -> Result<Option<ResourceOperation>, StoreError> {
                let row = sqlx::query(rs::OPERATION)
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(sqlx_error)?;
                let Some(r) = row else { return Ok(None) };
                let text = |c: &str| r.try_get::<String, _>(c).map_err(sqlx_error);
                let kind = ResourceKind::parse(&text("resource_kind")?).ok_or_else(|| corrupt("resource_kind"))?;
                let target = ResourceRef::parse(kind, &text("resource_id")?).map_err(|_| corrupt("resource_id"))?;
                decode_resource_operation(&target, &r).map(|(_, op)| Some(op))
            }

            async fn resource_head_sql(&self) -> Result<u64, StoreError> {
                let head: i64 = sqlx::query_scalar(rs::HEAD).fetch_one(&self.pool).await.map_err(sqlx_error)?;
                u64::try_from(head).map_err(|_| corrupt("seq"))
            }
        }
    };
}
pub(super) use sql_resources;
