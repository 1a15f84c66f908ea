//! [`LifetimeLimits`]: the maximum-lifetime policies as one node's verifier
//! applies them at use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::PolicyRule;
use crate::record::ServiceAccountId;
use crate::resource::{Resource, ResourceListing, ResourceOrder, ResourceRef};
use crate::store::{KeyStore, PageRequest, StoreError};

/// The maximum key lifetime of every service account below a
/// maximum-lifetime binding, mirrored from the store.
///
/// A [`Verifier`](crate::Verifier) given one
/// ([`VerifierBuilder::lifetime_limits`](crate::VerifierBuilder::lifetime_limits))
/// refuses, as expired, a key of such an account whose age reached the
/// limit, whenever it was created. Call [`LifetimeLimits::refresh`] often
/// (every 250 ms keeps a node within 1 s of a change): it reads one number,
/// the store's [`resource_head`](KeyStore::resource_head), and reads the
/// bindings and the accounts below them again only when a resource changed.
/// With no such binding the verifier's check is one atomic load.
#[derive(Debug, Default)]
pub struct LifetimeLimits {
    by_account: ArcSwap<HashMap<ServiceAccountId, Duration>>,
    /// Whether any limit is held (the verifier's fast path).
    any: AtomicBool,
    /// The resource head the limits were read at, plus one (0: never).
    read_at: AtomicU64,
}

impl LifetimeLimits {
    /// Limits not read yet (none applies until the first refresh).
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The limit of `account`, if one applies.
    #[inline]
    #[must_use]
    pub fn limit_for(&self, account: &ServiceAccountId) -> Option<Duration> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.by_account.load().get(account).copied()
    }

    /// How many service accounts have a limit.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_account.load().len()
    }

    /// Whether no service account has a limit.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// Reads the limits again if a resource changed since the last read;
    /// returns whether it read them. On an error the limits held stay.
    ///
    /// # Errors
    /// The store's error.
    pub async fn refresh<S: KeyStore>(&self, store: &S) -> Result<bool, StoreError> {
        let head = store.resource_head().await?;
        if self.read_at.load(Ordering::Acquire) == head.saturating_add(1) {
            return Ok(false);
        }
        let limits = read_limits(store).await?;
        let any = !limits.is_empty();
        self.by_account.store(Arc::new(limits));
        self.any.store(any, Ordering::Release);
        self.read_at.store(head.saturating_add(1), Ordering::Release);
        Ok(true)
    }
}

/// Every account below a maximum-lifetime binding, with the shortest limit
/// on its path.
async fn read_limits<S: KeyStore>(store: &S) -> Result<HashMap<ServiceAccountId, Duration>, StoreError> {
    let mut limits: HashMap<ServiceAccountId, Duration> = HashMap::new();
    for (on, binding) in store.access_policy_bindings(None).await? {
        let Ok(PolicyRule::MaxLifetime(max)) = binding.rule() else { continue };
        let listings = match &on {
            ResourceRef::Folder(f) => vec![ResourceListing::ServiceAccounts(*f)],
            ResourceRef::Cloud(c) => vec![ResourceListing::ServiceAccountsOfCloud(*c)],
            ResourceRef::Organization(o) => all(store, &ResourceListing::Clouds(*o))
                .await?
                .iter()
                .filter_map(|c| match c.reference() {
                    ResourceRef::Cloud(id) => Some(ResourceListing::ServiceAccountsOfCloud(id)),
                    _ => None,
                })
                .collect(),
            ResourceRef::ServiceAccount(_) => Vec::new(),
        };
        for listing in listings {
            for account in all(store, &listing).await? {
                if let Resource::ServiceAccount(sa) = account {
                    let limit = limits.entry(sa.id).or_insert(max);
                    *limit = (*limit).min(max);
                }
            }
        }
    }
    Ok(limits)
}

/// Every resource of `listing`, page by page.
async fn all<S: KeyStore>(store: &S, listing: &ResourceListing) -> Result<Vec<Resource>, StoreError> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_resources(listing, ResourceOrder::Id, PageRequest::starting(1000, after)).await?;
        found.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(found),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_policy::{AccessPolicyBinding, MAX_KEY_LIFETIME, MAX_LIFETIME};
    use crate::clock::Timestamp;
    use crate::operation::{Actor, OperationId};
    use crate::resource::{ResourceChange, ResourceId, ResourceLogEntry, ResourceName, ServiceAccount};
    use crate::store::memory::MemoryStore;

    fn log() -> ResourceLogEntry {
        ResourceLogEntry::new(OperationId::generate().unwrap(), Actor::new("t").unwrap(), Timestamp::now())
    }

    #[tokio::test]
    async fn limits_follow_bindings_and_accounts() {
        let store = MemoryStore::new();
        let limits = LifetimeLimits::new();
        let robot: ServiceAccountId = ResourceId::generate().unwrap().into();
        let sa = ServiceAccount::new(
            robot.clone(),
            ResourceId::default_folder(),
            Timestamp::now(),
            ResourceName::new("r").unwrap(),
        );
        store.commit_resource(ResourceChange::Create(Resource::ServiceAccount(sa)), &log()).await.unwrap();
        assert!(limits.refresh(&store).await.unwrap(), "the first refresh reads");
        assert!(!limits.refresh(&store).await.unwrap(), "nothing changed, nothing read");
        assert_eq!(limits.limit_for(&robot), None);
        let bind = |on: ResourceRef, d: &str| ResourceChange::BindAccessPolicy {
            target: on,
            binding: AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter(MAX_LIFETIME, d),
        };
        let org = ResourceRef::Organization(ResourceId::default_organization());
        store.commit_resource(bind(org.clone(), "30d"), &log()).await.unwrap();
        store.commit_resource(bind(ResourceRef::Folder(ResourceId::default_folder()), "2h"), &log()).await.unwrap();
        assert!(limits.refresh(&store).await.unwrap());
        assert_eq!(limits.limit_for(&robot), Some(Duration::from_secs(7200)), "the shortest on the path");
        assert_eq!(limits.len(), 1);
        let unbind = ResourceChange::UnbindAccessPolicy {
            target: ResourceRef::Folder(ResourceId::default_folder()),
            template_id: MAX_KEY_LIFETIME.to_owned(),
        };
        store.commit_resource(unbind, &log()).await.unwrap();
        limits.refresh(&store).await.unwrap();
        assert_eq!(limits.limit_for(&robot), Some(Duration::from_secs(30 * 86_400)), "the organization's");
        store
            .commit_resource(
                ResourceChange::UnbindAccessPolicy { target: org, template_id: MAX_KEY_LIFETIME.to_owned() },
                &log(),
            )
            .await
            .unwrap();
        limits.refresh(&store).await.unwrap();
        assert!(limits.is_empty() && limits.limit_for(&robot).is_none());
    }
}
