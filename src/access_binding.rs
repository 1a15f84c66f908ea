//! Access bindings: roles bound to subjects on organizations, clouds,
//! folders and service accounts, in the cloud's shape (an
//! [`AccessBinding`] is `{role_id, subject {id, type}}`), inherited
//! downward: a role on a folder holds on every service account in it and
//! on their keys.
//!
//! | role | permissions |
//! |---|---|
//! | `viewer` | read resources, keys, operations, access bindings and access policies |
//! | `editor` | `viewer`, and create, update and delete resources (folders, service accounts) and keys: create, update, revoke, reissue, delete |
//! | `admin` | `editor`, and set access bindings and bind access policies |
//! | `iam.serviceAccounts.user` | see service accounts (get, list) |
//! | `iam.serviceAccounts.admin` | see and manage service accounts and their keys, read their access bindings, and set the access bindings of a service account |
//!
//! A subject's [`Permissions`] on a resource are the union of its roles
//! bound there and on every resource above ([`Grants::on_path`]).
//! Subjects are service accounts (`serviceAccount`, authenticating with
//! their own API keys); operators' static tokens are the `system`
//! subject, which holds every permission and is never bound.
//!
//! ```
//! use api_keys::ServiceAccountId;
//! use api_keys::access_binding::{AccessBinding, Permission, Role, Subject};
//!
//! let robot = Subject::service_account(ServiceAccountId::new("aje0robot00000000000")?);
//! let binding = AccessBinding::new(Role::Editor, robot.clone());
//! assert!(binding.role.permissions_on(api_keys::resource::ResourceKind::Folder).has(Permission::ManageKeys));
//! assert!(!binding.role.permissions_on(api_keys::resource::ResourceKind::Folder).has(Permission::ManageAccess));
//! assert_eq!(Role::parse("iam.serviceAccounts.admin")?, Role::ServiceAccountsAdmin);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::record::ServiceAccountId;
use crate::resource::{ResourceKind, ResourceRef};

mod grants;
pub use grants::Grants;

/// Most bindings one resource may carry.
pub const MAX_BINDINGS_PER_RESOURCE: usize = 1000;

/// A role: a named set of permissions (ordered by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// `viewer`: reads everything below.
    Viewer,
    /// `editor`: `viewer`, and manages resources and keys below.
    Editor,
    /// `admin`: `editor`, and manages access below.
    Admin,
    /// `iam.serviceAccounts.user`: sees service accounts.
    ServiceAccountsUser,
    /// `iam.serviceAccounts.admin`: manages service accounts and their keys.
    ServiceAccountsAdmin,
}

/// Every role, in the order the catalog lists them.
pub const ROLES: [Role; 5] =
    [Role::Viewer, Role::Editor, Role::Admin, Role::ServiceAccountsUser, Role::ServiceAccountsAdmin];

impl Role {
    /// The role's id.
    #[must_use]
    pub const fn id(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Admin => "admin",
            Self::ServiceAccountsUser => "iam.serviceAccounts.user",
            Self::ServiceAccountsAdmin => "iam.serviceAccounts.admin",
        }
    }

    /// What the role lets its holder do.
    #[must_use]
    pub const fn description(self) -> &'static str {
        match self {
            Self::Viewer => "Reads resources, API keys, operations, access bindings and access policies.",
            Self::Editor => "viewer, and creates, updates and deletes folders, service accounts and API keys.",
            Self::Admin => "editor, and sets access bindings and binds access policies.",
            Self::ServiceAccountsUser => "Sees service accounts.",
            Self::ServiceAccountsAdmin => {
                "Manages service accounts and their API keys, and the access bindings of a service account."
            }
        }
    }

    /// The role with id `id`.
    ///
    /// # Errors
    /// [`AccessBindingError::UnknownRole`].
    pub fn parse(id: &str) -> Result<Self, AccessBindingError> {
        ROLES.into_iter().find(|r| r.id() == id).ok_or_else(|| AccessBindingError::UnknownRole(cut(id)))
    }

    /// The permissions the role grants when bound on (or above) a
    /// resource of kind `on`: `iam.serviceAccounts.admin` manages access
    /// only on a service account itself.
    #[must_use]
    pub const fn permissions_on(self, on: ResourceKind) -> Permissions {
        use Permission as P;
        let p = match self {
            Self::Viewer => Permissions::of(&[P::Read, P::SeeServiceAccounts]),
            Self::Editor => Permissions::of(&[
                P::Read,
                P::SeeServiceAccounts,
                P::ManageResources,
                P::ManageServiceAccounts,
                P::ManageKeys,
            ]),
            Self::Admin => Permissions::of(&[
                P::Read,
                P::SeeServiceAccounts,
                P::ManageResources,
                P::ManageServiceAccounts,
                P::ManageKeys,
                P::ManageAccess,
            ]),
            Self::ServiceAccountsUser => Permissions::of(&[P::SeeServiceAccounts]),
            Self::ServiceAccountsAdmin => {
                Permissions::of(&[P::SeeServiceAccounts, P::ManageServiceAccounts, P::ReadKeys, P::ManageKeys])
            }
        };
        match (self, on) {
            (Self::ServiceAccountsAdmin, ResourceKind::ServiceAccount) => p.with(P::ManageAccess).with(P::ReadAccess),
            _ => p,
        }
    }
}

impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id().cmp(other.id())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&id).map_err(serde::de::Error::custom)
    }
}

/// One thing a role lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum Permission {
    /// Read organizations, clouds and folders, and everything `ReadKeys`
    /// and `ReadAccess` read.
    Read = 1,
    /// Get and list service accounts.
    SeeServiceAccounts = 1 << 1,
    /// Get and list API keys and their operations.
    ReadKeys = 1 << 2,
    /// Read access bindings and access policy bindings.
    ReadAccess = 1 << 3,
    /// Create, update and delete clouds and folders.
    ManageResources = 1 << 4,
    /// Create, update and delete service accounts.
    ManageServiceAccounts = 1 << 5,
    /// Create, update, revoke, reissue and delete API keys.
    ManageKeys = 1 << 6,
    /// Set access bindings, bind and unbind access policies.
    ManageAccess = 1 << 7,
}

/// A set of [`Permission`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u16);

impl Permissions {
    /// No permission.
    pub const NONE: Self = Self(0);

    /// Exactly `these`.
    #[must_use]
    pub const fn of(these: &[Permission]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < these.len() {
            bits |= these[i] as u16;
            i += 1;
        }
        Self(bits)
    }

    /// These and `p`.
    #[must_use]
    pub const fn with(self, p: Permission) -> Self {
        Self(self.0 | p as u16)
    }

    /// These and `other`'s.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `p` is granted (`Read` grants `ReadKeys` and `ReadAccess`).
    #[must_use]
    pub const fn has(self, p: Permission) -> bool {
        let implied = match p {
            Permission::ReadKeys | Permission::ReadAccess => self.0 & Permission::Read as u16 != 0,
            _ => false,
        };
        self.0 & p as u16 != 0 || implied
    }

    /// Whether every permission of `other` is granted here.
    #[must_use]
    pub const fn covers(self, other: Self) -> bool {
        let mut mine = self.0;
        if mine & Permission::Read as u16 != 0 {
            mine |= Permission::ReadKeys as u16 | Permission::ReadAccess as u16;
        }
        other.0 & !mine == 0
    }

    /// Whether no permission is granted.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Who a binding grants a role to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// A service account, acting with its own API keys.
    ServiceAccount(ServiceAccountId),
}

impl Subject {
    /// The service account `id`.
    #[must_use]
    pub const fn service_account(id: ServiceAccountId) -> Self {
        Self::ServiceAccount(id)
    }

    /// The subject of type `kind` (`serviceAccount`) with id `id`.
    ///
    /// # Errors
    /// [`AccessBindingError::UnsupportedSubject`] for another type,
    /// [`AccessBindingError::InvalidSubjectId`] for a malformed id.
    pub fn parse(kind: &str, id: &str) -> Result<Self, AccessBindingError> {
        match kind {
            "serviceAccount" => ServiceAccountId::new(id)
                .map(Self::ServiceAccount)
                .map_err(|_| AccessBindingError::InvalidSubjectId { kind: "serviceAccount", id: cut(id) }),
            other => Err(AccessBindingError::UnsupportedSubject(cut(other))),
        }
    }

    /// The subject's type, as the wire names it.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::ServiceAccount(_) => "serviceAccount",
        }
    }

    /// The subject's id.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::ServiceAccount(id) => id.as_str(),
        }
    }

    /// The resource the subject is, whose existence a binding needs.
    #[must_use]
    pub fn resource(&self) -> ResourceRef {
        match self {
            Self::ServiceAccount(id) => ResourceRef::ServiceAccount(id.clone()),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

/// A role bound to a subject (on a resource the binding is stored with).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct AccessBinding {
    /// The role.
    pub role: Role,
    /// Who holds it.
    pub subject: Subject,
}

impl AccessBinding {
    /// `role` for `subject`.
    #[must_use]
    pub const fn new(role: Role, subject: Subject) -> Self {
        Self { role, subject }
    }
}

/// The stored shape of a binding (JSON in the Redis store).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredBinding {
    role_id: Role,
    subject_type: String,
    subject_id: String,
}

impl Serialize for AccessBinding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredBinding {
            role_id: self.role,
            subject_type: self.subject.kind().to_owned(),
            subject_id: self.subject.id().to_owned(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for AccessBinding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b = StoredBinding::deserialize(d)?;
        let subject = Subject::parse(&b.subject_type, &b.subject_id).map_err(serde::de::Error::custom)?;
        Ok(Self { role: b.role_id, subject })
    }
}

/// Whether a delta adds or removes its binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeltaAction {
    /// Adds the binding (a binding present already stays, once).
    Add,
    /// Removes the binding (refused if it is not there).
    Remove,
}

/// One change to a resource's bindings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AccessBindingDelta {
    /// Add or remove.
    pub action: DeltaAction,
    /// The binding.
    pub binding: AccessBinding,
}

impl AccessBindingDelta {
    /// Adds `binding`.
    #[must_use]
    pub const fn add(binding: AccessBinding) -> Self {
        Self { action: DeltaAction::Add, binding }
    }

    /// Removes `binding`.
    #[must_use]
    pub const fn remove(binding: AccessBinding) -> Self {
        Self { action: DeltaAction::Remove, binding }
    }
}

/// Why a binding or a change of bindings is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessBindingError {
    /// No such role.
    #[error("unknown role `{0}`; roles: viewer, editor, admin, iam.serviceAccounts.user, iam.serviceAccounts.admin")]
    UnknownRole(String),
    /// A subject type other than `serviceAccount`.
    #[error("subject type `{0}` is not supported: subjects are service accounts (type serviceAccount)")]
    UnsupportedSubject(String),
    /// A subject id that cannot be one.
    #[error("`{id}` is not a valid {kind} id")]
    InvalidSubjectId {
        /// The subject's type.
        kind: &'static str,
        /// The id given (cut to 64 characters).
        id: String,
    },
    /// The subject does not exist.
    #[error("subject {0} does not exist")]
    SubjectNotFound(String),
    /// A removal of a binding that is not there.
    #[error("role {role} is not bound to {subject} on {on}")]
    NotBound {
        /// The role.
        role: Role,
        /// The subject.
        subject: String,
        /// The resource.
        on: String,
    },
    /// The change would leave an organization that had an `admin` without
    /// one.
    #[error("the last admin binding of organization {0} cannot be removed: bind another admin first")]
    LastAdmin(String),
    /// Too many bindings on one resource, or too many deltas in one call.
    #[error("at most {MAX_BINDINGS_PER_RESOURCE} access bindings per resource and per call")]
    TooMany,
}

/// `text`, cut to 64 characters for an error message.
fn cut(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The bindings `current` becomes after `deltas` (after removing every
/// binding first when `replace`): sorted, each once.
///
/// # Errors
/// [`AccessBindingError::NotBound`] for a removal of a binding that is not
/// there, [`AccessBindingError::LastAdmin`] when an organization that had
/// an `admin` binding would have none, [`AccessBindingError::TooMany`].
pub fn apply(
    on: &ResourceRef,
    current: &[AccessBinding],
    deltas: &[AccessBindingDelta],
    replace: bool,
) -> Result<Vec<AccessBinding>, AccessBindingError> {
    if deltas.len() > MAX_BINDINGS_PER_RESOURCE {
        return Err(AccessBindingError::TooMany);
    }
    let mut next: std::collections::BTreeSet<AccessBinding> =
        if replace { std::collections::BTreeSet::new() } else { current.iter().cloned().collect() };
    for delta in deltas {
        match delta.action {
            DeltaAction::Add => {
                next.insert(delta.binding.clone());
            }
            DeltaAction::Remove => {
                if !next.remove(&delta.binding) {
                    return Err(AccessBindingError::NotBound {
                        role: delta.binding.role,
                        subject: delta.binding.subject.to_string(),
                        on: on.to_string(),
                    });
                }
            }
        }
    }
    if next.len() > MAX_BINDINGS_PER_RESOURCE {
        return Err(AccessBindingError::TooMany);
    }
    let had_admin = current.iter().any(|b| b.role == Role::Admin);
    if matches!(on, ResourceRef::Organization(_)) && had_admin && !next.iter().any(|b| b.role == Role::Admin) {
        return Err(AccessBindingError::LastAdmin(on.id().to_owned()));
    }
    Ok(next.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceId;

    fn sa(n: u8) -> Subject {
        Subject::service_account(ServiceAccountId::new(&format!("aje{}", char::from(b'a' + n)).repeat(5)).unwrap())
    }

    #[test]
    fn roles_grant_their_documented_permissions() {
        use Permission as P;
        let folder = ResourceKind::Folder;
        let account = ResourceKind::ServiceAccount;
        assert!(Role::Viewer.permissions_on(folder).has(P::ReadKeys));
        assert!(!Role::Viewer.permissions_on(folder).has(P::ManageKeys));
        assert!(Role::Editor.permissions_on(folder).has(P::ManageKeys));
        assert!(!Role::Editor.permissions_on(folder).has(P::ManageAccess));
        assert!(Role::Admin.permissions_on(folder).has(P::ManageAccess));
        assert!(Role::ServiceAccountsUser.permissions_on(folder).has(P::SeeServiceAccounts));
        assert!(!Role::ServiceAccountsUser.permissions_on(folder).has(P::ReadKeys));
        assert!(!Role::ServiceAccountsAdmin.permissions_on(folder).has(P::ManageAccess));
        assert!(Role::ServiceAccountsAdmin.permissions_on(account).has(P::ManageAccess));
        assert!(Role::Admin.permissions_on(folder).covers(Role::Editor.permissions_on(folder)));
        assert!(!Role::Editor.permissions_on(folder).covers(Role::Admin.permissions_on(folder)));
        for role in ROLES {
            assert_eq!(Role::parse(role.id()), Ok(role));
        }
        assert!(matches!(Role::parse("owner"), Err(AccessBindingError::UnknownRole(_))));
    }

    #[test]
    fn subjects_parse_and_refuse_others() {
        let s = Subject::parse("serviceAccount", "ajeaaaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(s.to_string(), "serviceAccount:ajeaaaaaaaaaaaaaaaaa");
        assert!(matches!(Subject::parse("userAccount", "x"), Err(AccessBindingError::UnsupportedSubject(_))));
        assert!(matches!(Subject::parse("serviceAccount", "no way"), Err(AccessBindingError::InvalidSubjectId { .. })));
        let b = AccessBinding::new(Role::Editor, s);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, r#"{"roleId":"editor","subjectType":"serviceAccount","subjectId":"ajeaaaaaaaaaaaaaaaaa"}"#);
        assert_eq!(serde_json::from_str::<AccessBinding>(&json).unwrap(), b);
        assert!(serde_json::from_str::<AccessBinding>(&json.replace("editor", "owner")).is_err());
    }

    #[test]
    fn apply_adds_removes_and_keeps_an_organization_administered() {
        let org = ResourceRef::Organization(ResourceId::default_organization());
        let admin = AccessBinding::new(Role::Admin, sa(0));
        let viewer = AccessBinding::new(Role::Viewer, sa(1));
        let one = apply(&org, &[], &[AccessBindingDelta::add(admin.clone())], false).unwrap();
        let two = apply(
            &org,
            &one,
            &[AccessBindingDelta::add(viewer.clone()), AccessBindingDelta::add(viewer.clone())],
            false,
        )
        .unwrap();
        assert_eq!(two.len(), 2, "an added binding is there once");
        assert!(matches!(
            apply(&org, &two, &[AccessBindingDelta::remove(admin.clone())], false),
            Err(AccessBindingError::LastAdmin(_))
        ));
        assert!(matches!(
            apply(&org, &two, &[AccessBindingDelta::add(viewer.clone())], true),
            Err(AccessBindingError::LastAdmin(_))
        ));
        let other = AccessBinding::new(Role::Viewer, sa(2));
        assert!(matches!(
            apply(&org, &two, &[AccessBindingDelta::remove(other)], false),
            Err(AccessBindingError::NotBound { .. })
        ));
        // A folder may lose its last admin; an organization without one may stay so.
        let folder = ResourceRef::Folder(ResourceId::default_folder());
        assert!(apply(&folder, &one, &[AccessBindingDelta::remove(admin)], false).unwrap().is_empty());
        assert_eq!(
            apply(&org, std::slice::from_ref(&viewer), &[AccessBindingDelta::remove(viewer.clone())], false).unwrap(),
            vec![]
        );
    }
}
