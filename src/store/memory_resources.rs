//! The resources of a [`MemoryStore`](crate::MemoryStore): the hierarchy,
//! its name indexes and the resource operations log, kept under the
//! store's writer lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::access_binding::{self, AccessBinding, AccessBindingError, DeltaAction, Subject};
use crate::access_policy::AccessPolicyBinding;
use crate::clock::Timestamp;
use crate::operation::{OperationCursor, OperationId};
use crate::resource::{
    Cloud, Folder, Organization, Resource, ResourceChange, ResourceCursor, ResourceError, ResourceKind,
    ResourceListing, ResourceLogEntry, ResourceName, ResourceOperation, ResourceOperationPage, ResourceOrder,
    ResourcePage, ResourceRef, check_policy_change, name_taken, policy_not_bound,
};
use crate::store::key_store::{Page, PageRequest, StoreError};

/// Where a name must be unique: the scope resource (`None`: among all
/// organizations), the kind, the name.
type NameKey = (Option<ResourceRef>, ResourceKind, ResourceName);

/// Every resource, with the indexes the hierarchy's rules read.
pub(super) struct Resources {
    items: HashMap<ResourceRef, Resource>,
    /// Each resource's children.
    children: HashMap<ResourceRef, BTreeSet<ResourceRef>>,
    names: HashMap<NameKey, ResourceRef>,
    /// Each resource's log entries in sequence order (kept after a delete).
    log: HashMap<ResourceRef, Vec<(u64, ResourceOperation)>>,
    /// Each logged id and its resource.
    log_ids: HashMap<OperationId, ResourceRef>,
    seq: u64,
    /// The access policies bound on each resource, by template id.
    policies: BTreeMap<ResourceRef, BTreeMap<String, AccessPolicyBinding>>,
    /// The access bindings on each resource, sorted.
    access: BTreeMap<ResourceRef, Vec<AccessBinding>>,
}

impl Default for Resources {
    /// The default organization, cloud and folder.
    fn default() -> Self {
        let mut r = Self {
            items: HashMap::new(),
            children: HashMap::new(),
            names: HashMap::new(),
            log: HashMap::new(),
            log_ids: HashMap::new(),
            seq: 0,
            policies: BTreeMap::new(),
            access: BTreeMap::new(),
        };
        let now = Timestamp::now();
        for seed in [
            Resource::Organization(Organization::default_at(now)),
            Resource::Cloud(Cloud::default_at(now)),
            Resource::Folder(Folder::default_at(now)),
        ] {
            if let Ok(key) = r.name_key(&seed) {
                r.insert(seed, key);
            }
        }
        r
    }
}

/// What a checked change will do.
pub(super) enum Plan {
    /// Insert this resource under this name key.
    Insert(Resource, NameKey),
    /// Replace the resource; move its name key from the first to the second.
    Replace(Resource, NameKey, NameKey),
    /// Remove the resource and its name key.
    Remove(ResourceRef, NameKey),
    /// Bind a policy on the resource (replacing its template's binding).
    Bind(ResourceRef, AccessPolicyBinding),
    /// Unbind the policy of a template from the resource.
    Unbind(ResourceRef, String),
    /// Set the resource's access bindings to these.
    Access(ResourceRef, Vec<AccessBinding>),
}

impl Resources {
    /// The resource `target`, as stored.
    pub(super) fn get(&self, target: &ResourceRef) -> Option<&Resource> {
        self.items.get(target)
    }

    /// The name key of `resource` (its scope read from its parent).
    fn name_key(&self, resource: &Resource) -> Result<NameKey, ResourceError> {
        let scope = match resource {
            Resource::Organization(_) => None,
            Resource::Cloud(c) => Some(ResourceRef::Organization(c.organization_id)),
            Resource::Folder(f) => Some(ResourceRef::Cloud(f.cloud_id)),
            Resource::ServiceAccount(sa) => {
                let folder = ResourceRef::Folder(sa.folder_id);
                match self.items.get(&folder) {
                    Some(Resource::Folder(f)) => Some(ResourceRef::Cloud(f.cloud_id)),
                    _ => return Err(parent_missing(&folder)),
                }
            }
        };
        Ok((scope, resource.kind(), resource.name().clone()))
    }

    /// Refuses entries whose id is logged already.
    pub(super) fn check_log(&self, log: &ResourceLogEntry) -> Result<(), StoreError> {
        if self.log_ids.contains_key(&log.id) { Err(StoreError::DuplicateOperation(log.id)) } else { Ok(()) }
    }

    /// Checks `change` against the hierarchy and says what it will do;
    /// nothing is written.
    pub(super) fn plan(&self, change: ResourceChange) -> Result<Plan, ResourceError> {
        match change {
            ResourceChange::Create(resource) => {
                let resource = resource.as_written();
                let target = resource.reference();
                if self.items.contains_key(&target) {
                    return Err(ResourceError::AlreadyExists { kind: target.kind(), id: target.id().to_owned() });
                }
                if let Some(parent) = resource.parent()
                    && !self.items.contains_key(&parent)
                {
                    return Err(parent_missing(&parent));
                }
                let key = self.name_key(&resource)?;
                if self.names.contains_key(&key) {
                    return Err(name_taken(resource.kind(), resource.name()));
                }
                Ok(Plan::Insert(resource, key))
            }
            ResourceChange::Update { target, patch } => {
                let old = self.items.get(&target).ok_or_else(|| target.not_found())?;
                let new = old.clone().patched(&patch)?;
                let (old_key, new_key) = (self.name_key(old)?, self.name_key(&new)?);
                if new_key != old_key && self.names.contains_key(&new_key) {
                    return Err(name_taken(new.kind(), new.name()));
                }
                Ok(Plan::Replace(new, old_key, new_key))
            }
            ResourceChange::Delete(target) => {
                let old = self.items.get(&target).ok_or_else(|| target.not_found())?;
                if let Some(child) = self.children.get(&target).and_then(|c| c.iter().next()) {
                    return Err(ResourceError::HasChildren {
                        kind: target.kind(),
                        id: target.id().to_owned(),
                        child: child.kind(),
                    });
                }
                Ok(Plan::Remove(target, self.name_key(old)?))
            }
            ResourceChange::BindAccessPolicy { target, binding } => {
                check_policy_change(&target, Some(&binding))?;
                self.items.get(&target).ok_or_else(|| target.not_found())?;
                Ok(Plan::Bind(target, binding))
            }
            ResourceChange::UnbindAccessPolicy { target, template_id } => {
                check_policy_change(&target, None)?;
                self.items.get(&target).ok_or_else(|| target.not_found())?;
                if !self.policies.get(&target).is_some_and(|p| p.contains_key(&template_id)) {
                    return Err(policy_not_bound(&target, &template_id));
                }
                Ok(Plan::Unbind(target, template_id))
            }
            ResourceChange::UpdateAccessBindings { target, deltas, replace } => {
                self.items.get(&target).ok_or_else(|| target.not_found())?;
                for d in deltas.iter().filter(|d| d.action == DeltaAction::Add) {
                    if !self.items.contains_key(&d.binding.subject.resource()) {
                        return Err(AccessBindingError::SubjectNotFound(d.binding.subject.to_string()).into());
                    }
                }
                let current = self.access.get(&target).map_or(&[][..], Vec::as_slice);
                let next = access_binding::apply(&target, current, &deltas, replace)?;
                Ok(Plan::Access(target, next))
            }
        }
    }

    fn insert(&mut self, resource: Resource, key: NameKey) {
        let target = resource.reference();
        if let Some(parent) = resource.parent() {
            self.children.entry(parent).or_default().insert(target.clone());
        }
        self.names.insert(key, target.clone());
        self.items.insert(target, resource);
    }

    /// Carries out a checked plan and logs it; returns the resource as
    /// left.
    pub(super) fn apply(&mut self, plan: Plan, log: &ResourceLogEntry) -> Option<Resource> {
        let (target, kind, left) = match plan {
            Plan::Insert(resource, key) => {
                let target = resource.reference();
                self.insert(resource.clone(), key);
                (target, crate::resource::ResourceOperationKind::Create, Some(resource))
            }
            Plan::Replace(resource, old_key, new_key) => {
                let target = resource.reference();
                self.names.remove(&old_key);
                self.names.insert(new_key, target.clone());
                self.items.insert(target.clone(), resource.clone());
                (target, crate::resource::ResourceOperationKind::Update, Some(resource))
            }
            Plan::Remove(target, key) => {
                self.names.remove(&key);
                if let Some(parent) = self.items.remove(&target).and_then(|r| r.parent())
                    && let Some(set) = self.children.get_mut(&parent)
                {
                    set.remove(&target);
                    if set.is_empty() {
                        self.children.remove(&parent);
                    }
                }
                self.children.remove(&target);
                self.policies.remove(&target);
                self.access.remove(&target);
                if let ResourceRef::ServiceAccount(account) = &target {
                    let gone = Subject::service_account(account.clone());
                    self.access.retain(|_, bound| {
                        bound.retain(|b| b.subject != gone);
                        !bound.is_empty()
                    });
                }
                (target, crate::resource::ResourceOperationKind::Delete, None)
            }
            Plan::Bind(target, binding) => {
                let bound = self.policies.entry(target.clone()).or_default();
                bound.insert(binding.access_policy_template_id.clone(), binding);
                (target.clone(), crate::resource::ResourceOperationKind::Update, self.items.get(&target).cloned())
            }
            Plan::Unbind(target, template) => {
                if let Some(bound) = self.policies.get_mut(&target) {
                    bound.remove(&template);
                    if bound.is_empty() {
                        self.policies.remove(&target);
                    }
                }
                (target.clone(), crate::resource::ResourceOperationKind::Update, self.items.get(&target).cloned())
            }
            Plan::Access(target, bindings) => {
                if bindings.is_empty() {
                    self.access.remove(&target);
                } else {
                    self.access.insert(target.clone(), bindings);
                }
                (target.clone(), crate::resource::ResourceOperationKind::Update, self.items.get(&target).cloned())
            }
        };
        self.seq += 1;
        self.log_ids.insert(log.id, target.clone());
        let op = ResourceOperation {
            id: log.id,
            resource: target.clone(),
            kind,
            actor: log.actor.clone(),
            created_at: log.created_at,
            response: left.clone(),
        };
        self.log.entry(target).or_default().push((self.seq, op));
        left
    }

    /// The resources of `listing`, unordered.
    fn members(&self, listing: &ResourceListing) -> Vec<&Resource> {
        let of = |parent: &ResourceRef| -> Vec<&Resource> {
            self.children.get(parent).map_or_else(Vec::new, |c| c.iter().filter_map(|r| self.items.get(r)).collect())
        };
        match listing {
            ResourceListing::Organizations => {
                self.items.values().filter(|r| r.kind() == ResourceKind::Organization).collect()
            }
            ResourceListing::ServiceAccountsOfCloud(cloud) => {
                of(&ResourceRef::Cloud(*cloud)).into_iter().flat_map(|folder| of(&folder.reference())).collect()
            }
            other => other.parent().map_or_else(Vec::new, |p| of(&p)),
        }
    }

    /// A page of `listing` in `order`.
    pub(super) fn page(
        &self,
        listing: &ResourceListing,
        order: ResourceOrder,
        page: &PageRequest<ResourceCursor>,
    ) -> ResourcePage {
        let limit = page.effective_limit();
        let mut found: Vec<&Resource> = self
            .members(listing)
            .into_iter()
            .filter(|r| r.kind() == listing.kind())
            .filter(|r| page.after.as_ref().is_none_or(|c| c.precedes(r, order)))
            .collect();
        let key = |r: &&Resource| {
            let id = r.reference().id().to_owned();
            match order {
                ResourceOrder::Id => (String::new(), id),
                ResourceOrder::Name => (r.name().as_str().to_owned(), id),
            }
        };
        found.sort_by_cached_key(key);
        let mut items: Vec<Resource> = found.into_iter().take(limit + 1).cloned().collect();
        let next = crate::store::key_store::next_after(&mut items, limit, |last| last.map(ResourceCursor::after));
        Page { items, next }
    }

    /// The resource of `listing` named `name`.
    pub(super) fn find(&self, listing: &ResourceListing, name: &ResourceName) -> Option<Resource> {
        self.members(listing).into_iter().find(|r| r.kind() == listing.kind() && r.name() == name).cloned()
    }

    /// The policies bound on `on` (all of them for `None`).
    pub(super) fn bindings(&self, on: Option<&ResourceRef>) -> Vec<(ResourceRef, AccessPolicyBinding)> {
        self.policies
            .iter()
            .filter(|(r, _)| on.is_none_or(|o| o == *r))
            .flat_map(|(r, bound)| bound.values().map(move |b| (r.clone(), b.clone())))
            .collect()
    }

    /// The access bindings on `on` (all of them for `None`).
    pub(super) fn access_bindings(&self, on: Option<&ResourceRef>) -> Vec<(ResourceRef, AccessBinding)> {
        self.access
            .iter()
            .filter(|(r, _)| on.is_none_or(|o| o == *r))
            .flat_map(|(r, bound)| bound.iter().map(move |b| (r.clone(), b.clone())))
            .collect()
    }

    /// The log entry `id`, if logged.
    pub(super) fn operation(&self, id: &OperationId) -> Option<ResourceOperation> {
        let target = self.log_ids.get(id)?;
        self.log.get(target)?.iter().find(|(_, op)| op.id == *id).map(|(_, op)| op.clone())
    }

    /// The newest log entry's sequence number.
    pub(super) fn head(&self) -> u64 {
        self.seq
    }

    /// A page of one resource's log, newest first.
    pub(super) fn operations(
        &self,
        target: &ResourceRef,
        page: &PageRequest<OperationCursor>,
    ) -> ResourceOperationPage {
        let limit = page.effective_limit();
        let before = page.after.map_or(u64::MAX, OperationCursor::get);
        let entries = self.log.get(target).map_or(&[][..], Vec::as_slice);
        let mut items: Vec<_> = entries.iter().rev().filter(|(seq, _)| *seq < before).take(limit + 1).collect();
        let next = crate::store::key_store::next_after(&mut items, limit, |last| {
            last.map(|(seq, _)| OperationCursor::new(*seq))
        });
        Page { items: items.into_iter().map(|(_, op)| op.clone()).collect(), next }
    }
}

/// The error telling a named parent does not exist.
pub(super) fn parent_missing(parent: &ResourceRef) -> ResourceError {
    ResourceError::ParentNotFound { kind: parent.kind(), id: parent.id().to_owned() }
}
