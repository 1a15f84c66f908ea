//! The resource side of a [`KeyDirectory`]: organizations, clouds, folders
//! and service accounts (created, renamed, deleted and listed under the
//! directory's actor, each change in its resource's operations log), the
//! access policies bound on them, and the check a directory that requires
//! service accounts makes before a key is created, reissued or re-dated.

use crate::access_policy::{AccessPolicyBinding, AccessPolicyTemplate, EffectivePolicy, KeyAction, TEMPLATES};
use crate::clock::Timestamp;
use crate::operation::{OperationCursor, OperationId};
use crate::record::{Description, ServiceAccountId};
use crate::resource::{
    Cloud, Folder, Labels, Organization, Resource, ResourceChange, ResourceError, ResourceId, ResourceKind,
    ResourceListing, ResourceLogEntry, ResourceName, ResourceOperation, ResourceOperationPage, ResourceOrder,
    ResourcePage, ResourcePatch, ResourceRef, ServiceAccount,
};
use crate::scope::ScopeSet;
use crate::store::{KeyStore, PageRequest, StoreError};

use super::{KeyDirectory, ManageError};

/// A resource to create: its kind, parent, name, description, labels and
/// (organizations only) title; the directory gives it an id and a time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewResource {
    /// The kind.
    pub kind: ResourceKind,
    /// The parent (`None` for an organization).
    pub parent: Option<ResourceId>,
    /// The name.
    pub name: ResourceName,
    /// The description.
    pub description: Description,
    /// The labels.
    pub labels: Labels,
    /// The title (organizations only).
    pub title: Description,
}

impl NewResource {
    fn new(kind: ResourceKind, parent: Option<ResourceId>, name: ResourceName) -> Self {
        Self {
            kind,
            parent,
            name,
            description: Description::default(),
            labels: Labels::new(),
            title: Description::default(),
        }
    }

    /// An organization.
    #[must_use]
    pub fn organization(name: ResourceName) -> Self {
        Self::new(ResourceKind::Organization, None, name)
    }

    /// A cloud in `organization`.
    #[must_use]
    pub fn cloud(organization: ResourceId, name: ResourceName) -> Self {
        Self::new(ResourceKind::Cloud, Some(organization), name)
    }

    /// A folder in `cloud`.
    #[must_use]
    pub fn folder(cloud: ResourceId, name: ResourceName) -> Self {
        Self::new(ResourceKind::Folder, Some(cloud), name)
    }

    /// A service account in `folder`.
    #[must_use]
    pub fn service_account(folder: ResourceId, name: ResourceName) -> Self {
        Self::new(ResourceKind::ServiceAccount, Some(folder), name)
    }

    crate::setters::setters! {
        /// Sets the description.
        fn description(description: Description) => description = description;
        /// Sets the labels.
        fn labels(labels: Labels) => labels = labels;
        /// Sets the title (organizations only).
        fn title(title: Description) => title = title;
    }

    /// The resource, with `id` and `created_at`.
    fn build(self, id: ResourceId, created_at: Timestamp) -> Result<Resource, ResourceError> {
        let parent = |kind: ResourceKind| {
            self.parent.ok_or(ResourceError::InvalidChange { kind, reason: "a parent is required" })
        };
        if !self.title.as_str().is_empty() && self.kind != ResourceKind::Organization {
            return Err(ResourceError::InvalidChange { kind: self.kind, reason: "only an organization has a title" });
        }
        Ok(match self.kind {
            ResourceKind::Organization => {
                let mut o = Organization::new(id, created_at, self.name).with_title(self.title);
                o.description = self.description;
                o.labels = self.labels;
                Resource::Organization(o)
            }
            ResourceKind::Cloud => Resource::Cloud(
                Cloud::new(id, parent(ResourceKind::Cloud)?, created_at, self.name)
                    .with_description(self.description)
                    .with_labels(self.labels),
            ),
            ResourceKind::Folder => Resource::Folder(
                Folder::new(id, parent(ResourceKind::Folder)?, created_at, self.name)
                    .with_description(self.description)
                    .with_labels(self.labels),
            ),
            ResourceKind::ServiceAccount => Resource::ServiceAccount(
                ServiceAccount::new(id.into(), parent(ResourceKind::ServiceAccount)?, created_at, self.name)
                    .with_description(self.description)
                    .with_labels(self.labels),
            ),
        })
    }
}

/// Whether `target` is one of the default organization, cloud and folder
/// (never deleted: a fresh store's one-command flows need them).
fn is_default(target: &ResourceRef) -> bool {
    match target {
        ResourceRef::Organization(id) => *id == ResourceId::default_organization(),
        ResourceRef::Cloud(id) => *id == ResourceId::default_cloud(),
        ResourceRef::Folder(id) => *id == ResourceId::default_folder(),
        ResourceRef::ServiceAccount(_) => false,
    }
}

impl<S: KeyStore> KeyDirectory<S> {
    /// Commits `change`, logged by this directory's actor now; returns the
    /// log entry as written.
    async fn commit_resource(&self, change: ResourceChange) -> Result<ResourceOperation, ManageError> {
        let mut log = ResourceLogEntry::new(OperationId::generate()?, self.actor.clone(), self.clock.now());
        if let Some(claim) = &self.claim {
            log = log.with_idempotency(claim.clone());
        }
        let (target, kind) = (change.target(), change.operation_kind());
        let commit = self.store.commit_resource(change, &log).await?;
        Ok(ResourceOperation {
            id: log.id,
            resource: target,
            kind,
            actor: log.actor,
            created_at: log.created_at,
            response: commit.resource,
        })
    }

    /// Creates a resource under a new id. Its parent must exist and its
    /// name be free where names are unique.
    ///
    /// # Errors
    /// [`ManageError::Resource`] for a missing parent, a taken name or a
    /// title on anything but an organization; a store failure.
    pub async fn create_resource(&self, new: NewResource) -> Result<ResourceOperation, ManageError> {
        let resource = new.build(ResourceId::generate()?, self.clock.now())?;
        self.commit_resource(ResourceChange::Create(resource)).await
    }

    /// Renames or re-describes a resource.
    ///
    /// # Errors
    /// [`ManageError::EmptyUpdate`] for a patch that sets nothing;
    /// [`ManageError::Resource`] for a missing resource or a taken name; a
    /// store failure.
    pub async fn update_resource(
        &self,
        target: &ResourceRef,
        patch: ResourcePatch,
    ) -> Result<ResourceOperation, ManageError> {
        if patch == ResourcePatch::new() {
            return Err(ManageError::EmptyUpdate);
        }
        self.commit_resource(ResourceChange::Update { target: target.clone(), patch }).await
    }

    /// Deletes a resource: an organization, cloud or folder only when
    /// empty (and never the defaults), a service account with all its keys
    /// (each with a log entry; a cache drops them on every node).
    ///
    /// # Errors
    /// [`ManageError::Resource`] for a missing or non-empty resource or a
    /// default one; a store failure.
    pub async fn delete_resource(&self, target: &ResourceRef) -> Result<ResourceOperation, ManageError> {
        if is_default(target) {
            let reason = "the default organization, cloud and folder are never deleted";
            return Err(ResourceError::InvalidChange { kind: target.kind(), reason }.into());
        }
        self.commit_resource(ResourceChange::Delete(target.clone())).await
    }

    /// One resource.
    ///
    /// # Errors
    /// [`ManageError::Resource`] ([`ResourceError::NotFound`]) if there is
    /// none; a store failure.
    pub async fn get_resource(&self, target: &ResourceRef) -> Result<Resource, ManageError> {
        self.store.resource(target).await?.ok_or_else(|| target.not_found().into())
    }

    /// A page of resources (see [`KeyStore::list_resources`]).
    ///
    /// # Errors
    /// A store failure.
    pub async fn list_resources(
        &self,
        listing: &ResourceListing,
        order: ResourceOrder,
        page: PageRequest<crate::resource::ResourceCursor>,
    ) -> Result<ResourcePage, ManageError> {
        Ok(self.store.list_resources(listing, order, page).await?)
    }

    /// The resource of `listing` named `name`, if any.
    ///
    /// # Errors
    /// A store failure.
    pub async fn find_resource(
        &self,
        listing: &ResourceListing,
        name: &ResourceName,
    ) -> Result<Option<Resource>, ManageError> {
        Ok(self.store.find_resource(listing, name).await?)
    }

    /// The service account named `name` in `folder`.
    ///
    /// # Errors
    /// [`ManageError::Resource`] ([`ResourceError::NotFound`], naming the
    /// account by name) if the folder holds none; a store failure.
    pub async fn service_account_named(
        &self,
        folder: ResourceId,
        name: &ResourceName,
    ) -> Result<ServiceAccount, ManageError> {
        let found = self.store.find_resource(&ResourceListing::ServiceAccounts(folder), name).await?;
        found.and_then(Resource::into_service_account).ok_or_else(|| {
            ResourceError::NotFound {
                kind: ResourceKind::ServiceAccount,
                id: format!("named {name} in folder {folder}"),
            }
            .into()
        })
    }

    /// A resource's operations log, newest first.
    ///
    /// # Errors
    /// A store failure.
    pub async fn resource_operations(
        &self,
        target: &ResourceRef,
        page: PageRequest<OperationCursor>,
    ) -> Result<ResourceOperationPage, ManageError> {
        Ok(self.store.resource_operations(target, page).await?)
    }

    /// One resource log entry by id, for as long as the log keeps it.
    ///
    /// # Errors
    /// A store failure.
    pub async fn resource_operation(&self, id: &OperationId) -> Result<Option<ResourceOperation>, ManageError> {
        Ok(self.store.resource_operation(id).await?)
    }

    /// Binds an access policy on an organization, cloud or folder
    /// (replacing the parameters of a binding of the same template there).
    ///
    /// # Errors
    /// [`ManageError::Resource`] for an invalid binding, a service account
    /// or a missing resource; a store failure.
    pub async fn bind_access_policy(
        &self,
        target: &ResourceRef,
        binding: AccessPolicyBinding,
    ) -> Result<ResourceOperation, ManageError> {
        crate::resource::check_policy_change(target, Some(&binding))?;
        self.commit_resource(ResourceChange::BindAccessPolicy { target: target.clone(), binding }).await
    }

    /// Unbinds the access policy of `template_id` from a resource.
    ///
    /// # Errors
    /// [`ManageError::Resource`] if none is bound there; a store failure.
    pub async fn unbind_access_policy(
        &self,
        target: &ResourceRef,
        template_id: &str,
    ) -> Result<ResourceOperation, ManageError> {
        let change = ResourceChange::UnbindAccessPolicy { target: target.clone(), template_id: template_id.to_owned() };
        self.commit_resource(change).await
    }

    /// Changes the access bindings on a resource: `deltas` in order, after
    /// removing every binding first when `replace` (the cloud's
    /// `SetAccessBindings`).
    ///
    /// # Errors
    /// [`ManageError::Resource`] for a missing resource or subject, the
    /// removal of an absent binding, or the loss of an organization's last
    /// admin; a store failure.
    pub async fn update_access_bindings(
        &self,
        target: &ResourceRef,
        deltas: Vec<crate::access_binding::AccessBindingDelta>,
        replace: bool,
    ) -> Result<ResourceOperation, ManageError> {
        self.commit_resource(ResourceChange::UpdateAccessBindings { target: target.clone(), deltas, replace }).await
    }

    /// The access bindings on one resource (which must exist).
    ///
    /// # Errors
    /// [`ManageError::Resource`] for a missing resource; a store failure.
    pub async fn access_bindings(
        &self,
        target: &ResourceRef,
    ) -> Result<Vec<crate::access_binding::AccessBinding>, ManageError> {
        self.get_resource(target).await?;
        Ok(self.store.access_bindings(Some(target)).await?.into_iter().map(|(_, b)| b).collect())
    }

    /// The access policies bound on one resource.
    ///
    /// # Errors
    /// [`ManageError::Resource`] for a missing resource; a store failure.
    pub async fn access_policy_bindings(&self, target: &ResourceRef) -> Result<Vec<AccessPolicyBinding>, ManageError> {
        self.get_resource(target).await?;
        Ok(self.store.access_policy_bindings(Some(target)).await?.into_iter().map(|(_, b)| b).collect())
    }

    /// The access policy templates this library enforces.
    #[must_use]
    pub fn access_policy_templates(&self) -> &'static [AccessPolicyTemplate] {
        TEMPLATES
    }

    /// The path of a service account: its folder, cloud and organization.
    ///
    /// # Errors
    /// [`ManageError::Resource`] for a missing account (or a broken path);
    /// a store failure.
    pub async fn path_of(&self, account: &ServiceAccountId) -> Result<[ResourceRef; 3], ManageError> {
        let sa = self.get_resource(&ResourceRef::ServiceAccount(account.clone())).await?;
        let folder = sa.parent().ok_or_else(|| corrupt_path(account))?;
        let cloud = self.get_resource(&folder).await?.parent().ok_or_else(|| corrupt_path(account))?;
        let org = self.get_resource(&cloud).await?.parent().ok_or_else(|| corrupt_path(account))?;
        Ok([folder, cloud, org])
    }

    /// The policy of every binding on a service account's path.
    ///
    /// # Errors
    /// As [`KeyDirectory::path_of`]; a stored binding that is not valid is
    /// corrupt.
    pub async fn effective_policy(&self, account: &ServiceAccountId) -> Result<EffectivePolicy, ManageError> {
        let path = self.path_of(account).await?;
        let mut bindings = Vec::new();
        for on in path {
            for (r, b) in self.store.access_policy_bindings(Some(&on)).await? {
                bindings.push((r, b));
            }
        }
        EffectivePolicy::from_bindings(bindings)
            .map_err(|e| ManageError::Store(StoreError::Corrupt(format!("a stored access policy: {e}"))))
    }

    /// When this directory requires service accounts: the account must
    /// exist and the policies on its path allow `action` leaving a key
    /// with `scopes` and `expires_at`. Otherwise nothing is checked.
    pub(super) async fn check_access(
        &self,
        account: &ServiceAccountId,
        action: KeyAction,
        scopes: Option<&ScopeSet>,
        expires_at: Option<Timestamp>,
    ) -> Result<(), ManageError> {
        if !self.require_service_accounts {
            return Ok(());
        }
        let policy = self.effective_policy(account).await?;
        let names: Vec<&str> = scopes.map(|s| s.iter().map(|s| s.as_str()).collect()).unwrap_or_default();
        policy.check(action, &names, expires_at, self.clock.now())?;
        Ok(())
    }
}

fn corrupt_path(account: &ServiceAccountId) -> ManageError {
    ManageError::Store(StoreError::Corrupt(format!("service account {account} has no complete path")))
}
