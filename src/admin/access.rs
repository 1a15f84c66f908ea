//! Who may do what, for callers that act with roles
//! ([`AdminCaller::subject`]): every management call asks
//! [`AdminApi::require`] for a permission on the resource it touches.
//!
//! Each node keeps every access binding of the store ([`Grants`]) and the
//! parents of the resources it has judged; the bindings are read again
//! when the store's resource head moved, checked at most every
//! [`FRESH`], so a removed binding stops working on every node within
//! that (and a store read) — the check itself is a few map lookups.
//! Parents never change (resources do not move), so they are kept.
//!
//! A caller who may not see a resource at all is told it does not exist,
//! in the words a missing one gets: another tenant's ids reveal nothing.
//! One who sees it but lacks the permission gets `PERMISSION_DENIED`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::auth::{AdminAuth, AdminCaller};
use super::error::{ApiError, Code};
use crate::access_binding::{Grants, Permission, Permissions, Subject};
use crate::manager::{KeyManager, ManageError};
use crate::resource::{ResourceKind, ResourceRef};
use crate::store::KeyStore;

/// How long a node answers from its bindings before it asks the store
/// whether they changed.
pub(super) const FRESH: Duration = Duration::from_millis(250);

/// Most parents kept; past it the cache starts again.
const MAX_PARENTS: usize = 100_000;

/// A node's copy of the access bindings and of the resource tree.
#[derive(Debug)]
pub(super) struct AccessControl {
    grants: ArcSwap<(u64, Grants)>,
    checked: Mutex<Option<Instant>>,
    refresh: tokio::sync::Mutex<()>,
    parents: Mutex<HashMap<ResourceRef, Option<ResourceRef>>>,
}

impl Default for AccessControl {
    fn default() -> Self {
        Self {
            grants: ArcSwap::from_pointee((0, Grants::default())),
            checked: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            parents: Mutex::new(HashMap::new()),
        }
    }
}

impl AccessControl {
    /// The bindings, read again first if the last look is older than
    /// [`FRESH`] and the store's resource head moved since.
    async fn grants<S: KeyStore>(&self, manager: &KeyManager<S>) -> Result<Arc<(u64, Grants)>, ManageError> {
        let stale = |at: Option<Instant>| at.is_none_or(|t| t.elapsed() >= FRESH);
        if !stale(*self.checked.lock().unwrap_or_else(PoisonError::into_inner)) {
            return Ok(self.grants.load_full());
        }
        let _one = self.refresh.lock().await;
        if stale(*self.checked.lock().unwrap_or_else(PoisonError::into_inner)) {
            let store = manager.store();
            let head = store.resource_head().await?;
            let loaded = self.grants.load();
            if loaded.0 != head || loaded.1.is_empty() {
                let all = store.access_bindings(None).await?;
                self.grants.store(Arc::new((head, Grants::from_bindings(all))));
            }
            *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
        Ok(self.grants.load_full())
    }

    /// Makes the next check read the store's head (after a change made
    /// through this node, which its own callers see at once).
    pub(super) fn invalidate(&self) {
        *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// `target`'s path from its organization down to it.
    ///
    /// # Errors
    /// [`ManageError::Resource`] (not found) for a missing resource.
    async fn path<S: KeyStore>(
        &self,
        manager: &KeyManager<S>,
        target: &ResourceRef,
    ) -> Result<Vec<ResourceRef>, ManageError> {
        let mut path = vec![target.clone()];
        let mut at = target.clone();
        while at.kind() != ResourceKind::Organization {
            let known = self.parents.lock().unwrap_or_else(PoisonError::into_inner).get(&at).cloned();
            let parent = match known {
                Some(p) => p,
                None => {
                    let p = manager.get_resource(&at).await?.parent();
                    let mut parents = self.parents.lock().unwrap_or_else(PoisonError::into_inner);
                    if parents.len() >= MAX_PARENTS {
                        parents.clear();
                    }
                    parents.insert(at.clone(), p.clone());
                    p
                }
            };
            let Some(parent) = parent else { break };
            path.push(parent.clone());
            at = parent;
        }
        path.reverse();
        Ok(path)
    }

    /// What `subject` may do on `target` (which must exist).
    pub(super) async fn permissions<S: KeyStore>(
        &self,
        manager: &KeyManager<S>,
        subject: &Subject,
        target: &ResourceRef,
    ) -> Result<Permissions, ManageError> {
        let path = self.path(manager, target).await?;
        Ok(self.grants(manager).await?.1.on_path(subject, &path))
    }
}

/// What the caller sees when it may not see `target`: the missing
/// resource's answer.
fn hidden(target: &ResourceRef) -> ApiError {
    ApiError::from(ManageError::Resource(target.not_found()))
}

impl<S: KeyStore, A: AdminAuth> super::AdminApi<S, A> {
    /// Refuses a subject without `needed` on `target`: "not found" if it
    /// sees nothing there (as for a missing resource), `PERMISSION_DENIED`
    /// if it does. Callers without a subject pass.
    ///
    /// # Errors
    /// The refusal; a store failure.
    pub(super) async fn require(
        &self,
        caller: &AdminCaller,
        needed: Permission,
        target: &ResourceRef,
    ) -> Result<(), ApiError> {
        let Some(subject) = caller.as_subject() else { return Ok(()) };
        let granted = match self.access.permissions(&self.manager, subject, target).await {
            Ok(p) => p,
            Err(ManageError::Resource(_)) => return Err(hidden(target)),
            Err(e) => return Err(e.into()),
        };
        if granted.has(needed) {
            Ok(())
        } else if !granted.is_empty() {
            Err(ApiError::new(Code::PermissionDenied, format!("{subject} may not do this on {target}")))
        } else {
            Err(hidden(target))
        }
    }

    /// Whether a subject sees `target` with `needed` (a listing's filter);
    /// a caller without a subject sees everything.
    ///
    /// # Errors
    /// A store failure.
    pub(super) async fn sees(
        &self,
        caller: &AdminCaller,
        needed: Permission,
        target: &ResourceRef,
    ) -> Result<bool, ApiError> {
        match self.require(caller, needed, target).await {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.code(), Code::NotFound | Code::PermissionDenied) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
