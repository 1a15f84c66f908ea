//! Every access binding of a store, indexed for one question: what may
//! this subject do on this resource, given the resource's path?

use std::collections::HashMap;

use super::{AccessBinding, Permissions, Subject};
use crate::resource::ResourceRef;

/// The access bindings of a store, by resource and subject: a snapshot a
/// node keeps and answers from without the store.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    by_resource: HashMap<ResourceRef, Vec<AccessBinding>>,
}

impl Grants {
    /// The bindings of `bindings` (as [`KeyStore::access_bindings`](crate::KeyStore::access_bindings)
    /// lists them).
    #[must_use]
    pub fn from_bindings(bindings: impl IntoIterator<Item = (ResourceRef, AccessBinding)>) -> Self {
        let mut by_resource: HashMap<ResourceRef, Vec<AccessBinding>> = HashMap::new();
        for (on, binding) in bindings {
            by_resource.entry(on).or_default().push(binding);
        }
        Self { by_resource }
    }

    /// What `subject` may do on the last resource of `path`, a resource's
    /// path from its organization down to it: the union of the roles bound
    /// to it on every resource of the path, each judged for the kind of
    /// the last.
    #[must_use]
    pub fn on_path(&self, subject: &Subject, path: &[ResourceRef]) -> Permissions {
        let Some(target) = path.last() else { return Permissions::NONE };
        let kind = target.kind();
        path.iter()
            .filter_map(|on| self.by_resource.get(on))
            .flatten()
            .filter(|b| b.subject == *subject)
            .fold(Permissions::NONE, |p, b| p.union(b.role.permissions_on(kind)))
    }

    /// How many bindings there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_resource.values().map(Vec::len).sum()
    }

    /// Whether there is no binding.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_resource.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceAccountId;
    use crate::access_binding::{Permission, Role};
    use crate::resource::ResourceId;

    #[test]
    fn roles_are_inherited_down_the_path_and_judged_for_the_target() {
        let org = ResourceRef::Organization(ResourceId::default_organization());
        let cloud = ResourceRef::Cloud(ResourceId::default_cloud());
        let folder = ResourceRef::Folder(ResourceId::default_folder());
        let robot = ServiceAccountId::new("ajerobot000000000000").unwrap();
        let account = ResourceRef::ServiceAccount(robot.clone());
        let me = Subject::service_account(robot);
        let other = Subject::service_account(ServiceAccountId::new("ajeother000000000000").unwrap());
        let grants = Grants::from_bindings([
            (folder.clone(), AccessBinding::new(Role::Viewer, me.clone())),
            (account.clone(), AccessBinding::new(Role::ServiceAccountsAdmin, me.clone())),
            (org.clone(), AccessBinding::new(Role::Admin, other.clone())),
        ]);
        let on_account = grants.on_path(&me, &[org.clone(), cloud.clone(), folder.clone(), account.clone()]);
        assert!(on_account.has(Permission::ManageKeys) && on_account.has(Permission::ManageAccess));
        let on_folder = grants.on_path(&me, &[org.clone(), cloud.clone(), folder.clone()]);
        assert!(on_folder.has(Permission::ReadKeys) && !on_folder.has(Permission::ManageKeys));
        assert!(grants.on_path(&me, &[org.clone(), cloud.clone()]).is_empty(), "nothing above the binding");
        assert!(grants.on_path(&other, &[org, cloud, folder, account]).has(Permission::ManageAccess));
        assert!(grants.on_path(&me, &[]).is_empty());
        assert_eq!(grants.len(), 3);
    }
}
