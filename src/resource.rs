//! Resources that hold service accounts: organizations, clouds, folders and
//! the service accounts themselves, in the cloud's shape.
//!
//! The hierarchy is organization → cloud → folder → service account. Every
//! resource has a [`ResourceId`] (20 characters of `[a-z0-9]`), a
//! [`ResourceName`] (`[a-z]([-a-z0-9]{0,61}[a-z0-9])?`), a description and
//! [`Labels`]. A fresh store holds one default organization, cloud and
//! folder ([`DEFAULT_ORGANIZATION_ID`], [`DEFAULT_CLOUD_ID`],
//! [`DEFAULT_FOLDER_ID`], each named `default`), so an application can put
//! service accounts somewhere without any set-up.
//!
//! Names are unique among siblings where the cloud makes them so: a cloud's
//! name within its organization, a folder's and a service account's within
//! their cloud. A service account's id is a [`ServiceAccountId`], the same
//! type keys name their owner with; one created here gets a generated
//! 20-character id, and accounts that existed only as ids on keys keep
//! theirs (see [`ResourceName::for_legacy_account`]).
//!
//! # Keys do not require a service account
//!
//! The store does not check that a key's `service_account_id` names a
//! service account that exists: an application that only wants keys for its
//! own principals keeps passing plain ids to
//! [`KeyManager`](crate::KeyManager) and never creates a folder. A product
//! that manages service accounts as resources checks the account before it
//! creates a key. Deleting a service account through
//! [`KeyStore::commit_resource`](crate::KeyStore::commit_resource) deletes
//! every key naming it, in the same transaction.
//!
//! ```
//! use api_keys::resource::{
//!     Labels, Resource, ResourceChange, ResourceId, ResourceListing, ResourceLogEntry, ResourceName,
//!     ServiceAccount,
//! };
//! use api_keys::{Actor, Description, KeyStore, MemoryStore, OperationId, Timestamp};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! // A service account `my-robot` in the default folder.
//! let robot = ServiceAccount::new(
//!     ResourceId::generate()?.into(),
//!     ResourceId::default_folder(),
//!     Timestamp::now(),
//!     ResourceName::new("my-robot")?,
//! )
//! .with_description(Description::new("deploys the site")?)
//! .with_labels("team=web,env=prod".parse::<Labels>()?);
//! let log = ResourceLogEntry::new(OperationId::generate()?, Actor::new("ops")?, Timestamp::now());
//! store.commit_resource(ResourceChange::Create(Resource::ServiceAccount(robot)), &log).await?;
//!
//! // Found by name in its cloud (names are unique there).
//! let in_cloud = ResourceListing::ServiceAccountsOfCloud(ResourceId::default_cloud());
//! let found = store.find_resource(&in_cloud, &ResourceName::new("my-robot")?).await?;
//! let robot = found.and_then(Resource::into_service_account).ok_or("no such service account")?;
//! // Its keys name it by `robot.id`; a bad name never gets this far.
//! assert_eq!(robot.description.as_str(), "deploys the site");
//! assert!(ResourceName::new("My_Robot").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::access_binding::{AccessBindingDelta, AccessBindingError};
use crate::access_policy::{AccessPolicyBinding, AccessPolicyError};
use crate::clock::Timestamp;
use crate::random::{RandomError, random_chars};
use crate::record::{Description, ServiceAccountId};

/// Characters of generated ids and names.
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// Length of a [`ResourceId`].
const ID_LEN: usize = 20;
/// Longest [`ResourceName`], in characters.
const MAX_NAME: usize = 63;
/// Most labels on one resource.
const MAX_LABELS: usize = 64;
/// Longest label key or value, in characters.
const MAX_LABEL_LEN: usize = 63;

/// The id of the organization every fresh store holds.
pub const DEFAULT_ORGANIZATION_ID: &str = "defaultorganization0";
/// The id of the cloud every fresh store holds, in the default organization.
pub const DEFAULT_CLOUD_ID: &str = "defaultcloud00000000";
/// The id of the folder every fresh store holds, in the default cloud.
pub const DEFAULT_FOLDER_ID: &str = "defaultfolder0000000";
/// The name of the default organization, cloud and folder.
pub const DEFAULT_NAME: &str = "default";

/// What kind of resource something is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ResourceKind {
    /// An [`Organization`].
    Organization,
    /// A [`Cloud`].
    Cloud,
    /// A [`Folder`].
    Folder,
    /// A [`ServiceAccount`].
    ServiceAccount,
}

impl ResourceKind {
    /// The stored name of the kind.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Cloud => "cloud",
            Self::Folder => "folder",
            Self::ServiceAccount => "serviceAccount",
        }
    }

    /// The kind stored as `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Organization, Self::Cloud, Self::Folder, Self::ServiceAccount].into_iter().find(|k| k.as_str() == s)
    }

    /// The kind of this kind's parent (`None` for an organization).
    #[must_use]
    pub fn parent(self) -> Option<Self> {
        match self {
            Self::Organization => None,
            Self::Cloud => Some(Self::Organization),
            Self::Folder => Some(Self::Cloud),
            Self::ServiceAccount => Some(Self::Folder),
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Organization => "organization",
            Self::Cloud => "cloud",
            Self::Folder => "folder",
            Self::ServiceAccount => "service account",
        })
    }
}

/// What is wrong with a resource or a change to one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// Not a resource id: 20 characters of `[a-z0-9]`.
    #[error("a resource id is 20 characters of [a-z0-9]")]
    InvalidId,
    /// Not a resource name.
    #[error("a name is 1 to 63 characters of [-a-z0-9], starting with a letter and not ending with '-'")]
    InvalidName,
    /// A label key breaks the cloud's rules.
    #[error("label key {0:?} is not 1 to 63 characters of [-_./\\@0-9a-z] starting with a letter")]
    InvalidLabelKey(String),
    /// A label value breaks the cloud's rules.
    #[error("the value of label {0:?} is not at most 63 characters of [-_./\\@0-9a-z]")]
    InvalidLabelValue(String),
    /// A label list entry without `=`.
    #[error("label {0:?} is not key=value")]
    LabelSyntax(String),
    /// The same label key twice.
    #[error("label {0:?} is given twice")]
    DuplicateLabel(String),
    /// More than 64 labels.
    #[error("at most 64 labels are allowed, {0} were given")]
    TooManyLabels(usize),
    /// No such resource.
    #[error("{kind} {id} not found")]
    NotFound {
        /// The kind looked for.
        kind: ResourceKind,
        /// The id looked for.
        id: String,
    },
    /// The parent a resource names does not exist.
    #[error("{kind} {id}, named as the parent, does not exist")]
    ParentNotFound {
        /// The parent's kind.
        kind: ResourceKind,
        /// The parent's id.
        id: String,
    },
    /// A resource with this id exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// The kind.
        kind: ResourceKind,
        /// The id.
        id: String,
    },
    /// The name is taken where it must be unique.
    #[error("the name {name} is already used by another {kind}{}", in_scope(*.scope))]
    NameTaken {
        /// The kind named.
        kind: ResourceKind,
        /// The name.
        name: String,
        /// The kind of resource within which names of this kind are unique
        /// (`None`: among all organizations).
        scope: Option<ResourceKind>,
    },
    /// A resource that still holds others cannot be deleted.
    #[error("{kind} {id} is not empty: delete the {child}s in it first")]
    HasChildren {
        /// The kind.
        kind: ResourceKind,
        /// Its id.
        id: String,
        /// The kind of what it still holds.
        child: ResourceKind,
    },
    /// A change that does not apply to the resource (a title on anything but
    /// an organization).
    #[error("this change does not apply to this {kind}: {reason}")]
    InvalidChange {
        /// The kind changed.
        kind: ResourceKind,
        /// Why.
        reason: &'static str,
    },
    /// An access policy binding is invalid or bound where policies are not.
    #[error(transparent)]
    AccessPolicy(#[from] AccessPolicyError),
    /// An access binding is invalid, or a change of bindings is refused.
    #[error(transparent)]
    AccessBinding(#[from] AccessBindingError),
    /// No access policy of this template is bound on the resource.
    #[error("no access policy {template} is bound on {kind} {id}")]
    PolicyNotBound {
        /// The template's id (cut to 64 characters).
        template: String,
        /// The resource's kind.
        kind: ResourceKind,
        /// Its id.
        id: String,
    },
    /// The OS random generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// A resource's id: 20 characters of `[a-z0-9]`, as the cloud's ids are.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId([u8; ID_LEN]);

impl ResourceId {
    /// Validates an id.
    ///
    /// # Errors
    /// [`ResourceError::InvalidId`].
    pub fn new(text: &str) -> Result<Self, ResourceError> {
        let bytes: [u8; ID_LEN] = text.as_bytes().try_into().map_err(|_| ResourceError::InvalidId)?;
        if bytes.iter().all(|b| ALPHABET.contains(b)) { Ok(Self(bytes)) } else { Err(ResourceError::InvalidId) }
    }

    /// A fresh random id.
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator fails.
    pub fn generate() -> Result<Self, RandomError> {
        let mut id = [0u8; ID_LEN];
        random_chars(&mut id, ALPHABET)?;
        Ok(Self(id))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The default organization's id.
    #[must_use]
    pub fn default_organization() -> Self {
        Self::fixed(DEFAULT_ORGANIZATION_ID)
    }

    /// The default cloud's id.
    #[must_use]
    pub fn default_cloud() -> Self {
        Self::fixed(DEFAULT_CLOUD_ID)
    }

    /// The default folder's id.
    #[must_use]
    pub fn default_folder() -> Self {
        Self::fixed(DEFAULT_FOLDER_ID)
    }

    /// One of the constant ids above (all valid, checked by a test).
    fn fixed(id: &str) -> Self {
        let mut out = [b'0'; ID_LEN];
        for (o, b) in out.iter_mut().zip(id.bytes()) {
            *o = b;
        }
        Self(out)
    }
}

impl From<ResourceId> for ServiceAccountId {
    /// A generated resource id is a valid service account id.
    fn from(id: ResourceId) -> Self {
        // 20 characters of [a-z0-9] always are.
        ServiceAccountId::from_valid(id.as_str())
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", self.as_str())
    }
}

impl std::str::FromStr for ResourceId {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A resource's name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`, the cloud's
/// pattern (1 to 63 characters, a lowercase letter first, no `-` last).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceName(Arc<str>);

impl ResourceName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`ResourceError::InvalidName`].
    pub fn new(text: &str) -> Result<Self, ResourceError> {
        if is_name(text) { Ok(Self(Arc::from(text))) } else { Err(ResourceError::InvalidName) }
    }

    /// The name for an account that existed only as an id on keys: the id
    /// itself if it is a valid name, otherwise a generated one
    /// (`sa-` and 17 random characters). A generated name is unique with
    /// overwhelming likelihood; a caller that finds it taken asks again.
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator fails.
    pub fn for_legacy_account(id: &ServiceAccountId) -> Result<Self, RandomError> {
        if is_name(id.as_str()) {
            return Ok(Self(Arc::from(id.as_str())));
        }
        Self::generate("sa-")
    }

    /// `prefix` (a valid start of a name) and random characters, 20 in all.
    fn generate(prefix: &str) -> Result<Self, RandomError> {
        let mut tail = [0u8; ID_LEN];
        let n = ID_LEN.saturating_sub(prefix.len());
        random_chars(&mut tail[..n], ALPHABET)?;
        let tail = std::str::from_utf8(&tail[..n]).map_err(|_| RandomError)?;
        Ok(Self(Arc::from(format!("{prefix}{tail}"))))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` matches `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else { return false };
    b.len() <= MAX_NAME
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceName({})", &*self.0)
    }
}

impl std::str::FromStr for ResourceName {
    type Err = ResourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ResourceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A resource's labels: at most 64, each key 1 to 63 characters of
/// `[-_./\@0-9a-z]` starting with a letter, each value at most 63 of the
/// same characters (the cloud's limits). Ordered by key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Most labels on one resource.
    pub const MAX: usize = MAX_LABELS;

    /// No labels.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates labels given as pairs.
    ///
    /// # Errors
    /// A [`ResourceError`] naming the first bad key or value, a key given
    /// twice, or more than 64 labels.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ResourceError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            if !is_label_key(k) {
                return Err(ResourceError::InvalidLabelKey(shorten(k)));
            }
            if !is_label_value(v) {
                return Err(ResourceError::InvalidLabelValue(shorten(k)));
            }
            if map.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(ResourceError::DuplicateLabel(k.to_owned()));
            }
            if map.len() > MAX_LABELS {
                return Err(ResourceError::TooManyLabels(map.len()));
            }
        }
        Ok(Self(map))
    }

    /// The value of label `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The labels, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many labels there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A bad key, cut to a printable length for an error.
fn shorten(k: &str) -> String {
    k.chars().take(MAX_LABEL_LEN + 1).collect()
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b'/' | b'\\' | b'@')
}

fn is_label_key(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty() && b.len() <= MAX_LABEL_LEN && b[0].is_ascii_lowercase() && b.iter().copied().all(is_label_char)
}

fn is_label_value(v: &str) -> bool {
    v.len() <= MAX_LABEL_LEN && v.bytes().all(is_label_char)
}

impl std::str::FromStr for Labels {
    type Err = ResourceError;

    /// Parses `key=value,key=value` (the empty text is no labels; spaces
    /// around entries are ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(Self::new());
        }
        let pairs = s
            .split(',')
            .map(|entry| {
                let entry = entry.trim();
                entry.split_once('=').ok_or_else(|| ResourceError::LabelSyntax(shorten(entry)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_pairs(pairs)
    }
}

impl fmt::Display for Labels {
    /// `key=value,…`, as [`Labels`] parses it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        Self::from_pairs(map).map_err(serde::de::Error::custom)
    }
}

/// An organization: the top of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Organization {
    /// Its id.
    pub id: ResourceId,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its name, unique among organizations.
    pub name: ResourceName,
    /// Its display title.
    #[serde(default)]
    pub title: Description,
    /// Its description.
    #[serde(default)]
    pub description: Description,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A cloud, in an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Cloud {
    /// Its id.
    pub id: ResourceId,
    /// The organization holding it.
    pub organization_id: ResourceId,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its name, unique within its organization.
    pub name: ResourceName,
    /// Its description.
    #[serde(default)]
    pub description: Description,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
}

/// A folder's state, as the cloud reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum FolderStatus {
    /// In use (every folder here is).
    #[default]
    Active,
    /// Being deleted.
    Deleting,
    /// Waiting to be deleted.
    PendingDeletion,
}

impl FolderStatus {
    /// The stored name of the status.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Deleting => "DELETING",
            Self::PendingDeletion => "PENDING_DELETION",
        }
    }

    /// The status stored as `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Deleting, Self::PendingDeletion].into_iter().find(|k| k.as_str() == s)
    }
}

/// A folder, in a cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Folder {
    /// Its id.
    pub id: ResourceId,
    /// The cloud holding it.
    pub cloud_id: ResourceId,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its name, unique within its cloud.
    pub name: ResourceName,
    /// Its description.
    #[serde(default)]
    pub description: Description,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
    /// Its state.
    #[serde(default)]
    pub status: FolderStatus,
}

/// A service account, in a folder: the owner of keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServiceAccount {
    /// Its id, the one its keys name.
    pub id: ServiceAccountId,
    /// The folder holding it.
    pub folder_id: ResourceId,
    /// When it was created.
    pub created_at: Timestamp,
    /// Its name, unique within its cloud.
    pub name: ResourceName,
    /// Its description.
    #[serde(default)]
    pub description: Description,
    /// Its labels.
    #[serde(default)]
    pub labels: Labels,
    /// The latest use of any of its keys, computed when read (never
    /// written per request); ignored when the account is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_authenticated_at: Option<Timestamp>,
}

impl Organization {
    /// An organization with no title, description or labels.
    #[must_use]
    pub fn new(id: ResourceId, created_at: Timestamp, name: ResourceName) -> Self {
        Self {
            id,
            created_at,
            name,
            title: Description::default(),
            description: Description::default(),
            labels: Labels::new(),
        }
    }

    /// The default organization of a fresh store.
    #[must_use]
    pub fn default_at(created_at: Timestamp) -> Self {
        Self::new(ResourceId::default_organization(), created_at, default_name())
    }

    /// With this title.
    #[must_use]
    pub fn with_title(mut self, title: Description) -> Self {
        self.title = title;
        self
    }
}

impl Cloud {
    /// A cloud with no description or labels.
    #[must_use]
    pub fn new(id: ResourceId, organization_id: ResourceId, created_at: Timestamp, name: ResourceName) -> Self {
        Self { id, organization_id, created_at, name, description: Description::default(), labels: Labels::new() }
    }

    /// The default cloud of a fresh store.
    #[must_use]
    pub fn default_at(created_at: Timestamp) -> Self {
        Self::new(ResourceId::default_cloud(), ResourceId::default_organization(), created_at, default_name())
    }
}

impl Folder {
    /// An active folder with no description or labels.
    #[must_use]
    pub fn new(id: ResourceId, cloud_id: ResourceId, created_at: Timestamp, name: ResourceName) -> Self {
        Self {
            id,
            cloud_id,
            created_at,
            name,
            description: Description::default(),
            labels: Labels::new(),
            status: FolderStatus::Active,
        }
    }

    /// The default folder of a fresh store.
    #[must_use]
    pub fn default_at(created_at: Timestamp) -> Self {
        Self::new(ResourceId::default_folder(), ResourceId::default_cloud(), created_at, default_name())
    }
}

impl ServiceAccount {
    /// A service account with no description or labels.
    #[must_use]
    pub fn new(id: ServiceAccountId, folder_id: ResourceId, created_at: Timestamp, name: ResourceName) -> Self {
        Self {
            id,
            folder_id,
            created_at,
            name,
            description: Description::default(),
            labels: Labels::new(),
            last_authenticated_at: None,
        }
    }
}

/// `default`, a valid name.
fn default_name() -> ResourceName {
    ResourceName(Arc::from(DEFAULT_NAME))
}

/// `with_description` and `with_labels` for each record.
macro_rules! with_common {
    ($($t:ty),*) => {$(
        impl $t {
            /// With this description.
            #[must_use]
            pub fn with_description(mut self, description: Description) -> Self {
                self.description = description;
                self
            }

            /// With these labels.
            #[must_use]
            pub fn with_labels(mut self, labels: Labels) -> Self {
                self.labels = labels;
                self
            }
        }
    )*};
}
with_common!(Organization, Cloud, Folder, ServiceAccount);

/// Which resource: its kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ResourceRef {
    /// An organization.
    Organization(ResourceId),
    /// A cloud.
    Cloud(ResourceId),
    /// A folder.
    Folder(ResourceId),
    /// A service account.
    ServiceAccount(ServiceAccountId),
}

impl ResourceRef {
    /// The kind referred to.
    #[must_use]
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Organization(_) => ResourceKind::Organization,
            Self::Cloud(_) => ResourceKind::Cloud,
            Self::Folder(_) => ResourceKind::Folder,
            Self::ServiceAccount(_) => ResourceKind::ServiceAccount,
        }
    }

    /// The id, as text.
    #[must_use]
    pub fn id(&self) -> &str {
        match self {
            Self::Organization(id) | Self::Cloud(id) | Self::Folder(id) => id.as_str(),
            Self::ServiceAccount(id) => id.as_str(),
        }
    }

    /// The reference of `kind` and stored id `id`.
    ///
    /// # Errors
    /// [`ResourceError::InvalidId`] if `id` is not an id of that kind.
    pub fn parse(kind: ResourceKind, id: &str) -> Result<Self, ResourceError> {
        Ok(match kind {
            ResourceKind::Organization => Self::Organization(ResourceId::new(id)?),
            ResourceKind::Cloud => Self::Cloud(ResourceId::new(id)?),
            ResourceKind::Folder => Self::Folder(ResourceId::new(id)?),
            ResourceKind::ServiceAccount => {
                Self::ServiceAccount(ServiceAccountId::new(id).map_err(|_| ResourceError::InvalidId)?)
            }
        })
    }

    /// The error telling this resource does not exist.
    #[must_use]
    pub fn not_found(&self) -> ResourceError {
        ResourceError::NotFound { kind: self.kind(), id: self.id().to_owned() }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

/// Any resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Resource {
    /// An organization.
    Organization(Organization),
    /// A cloud.
    Cloud(Cloud),
    /// A folder.
    Folder(Folder),
    /// A service account.
    ServiceAccount(ServiceAccount),
}

impl Resource {
    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> ResourceKind {
        self.reference().kind()
    }

    /// Its kind and id.
    #[must_use]
    pub fn reference(&self) -> ResourceRef {
        match self {
            Self::Organization(r) => ResourceRef::Organization(r.id),
            Self::Cloud(r) => ResourceRef::Cloud(r.id),
            Self::Folder(r) => ResourceRef::Folder(r.id),
            Self::ServiceAccount(r) => ResourceRef::ServiceAccount(r.id.clone()),
        }
    }

    /// The resource holding it (`None` for an organization).
    #[must_use]
    pub fn parent(&self) -> Option<ResourceRef> {
        match self {
            Self::Organization(_) => None,
            Self::Cloud(r) => Some(ResourceRef::Organization(r.organization_id)),
            Self::Folder(r) => Some(ResourceRef::Cloud(r.cloud_id)),
            Self::ServiceAccount(r) => Some(ResourceRef::Folder(r.folder_id)),
        }
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &ResourceName {
        match self {
            Self::Organization(r) => &r.name,
            Self::Cloud(r) => &r.name,
            Self::Folder(r) => &r.name,
            Self::ServiceAccount(r) => &r.name,
        }
    }

    /// When it was created.
    #[must_use]
    pub fn created_at(&self) -> Timestamp {
        match self {
            Self::Organization(r) => r.created_at,
            Self::Cloud(r) => r.created_at,
            Self::Folder(r) => r.created_at,
            Self::ServiceAccount(r) => r.created_at,
        }
    }

    /// The service account, if it is one.
    #[must_use]
    pub fn into_service_account(self) -> Option<ServiceAccount> {
        match self {
            Self::ServiceAccount(sa) => Some(sa),
            _ => None,
        }
    }

    /// The resource as a store writes it: without what is computed when
    /// it is read (a service account's `last_authenticated_at`).
    #[must_use]
    pub fn as_written(mut self) -> Self {
        if let Self::ServiceAccount(sa) = &mut self {
            sa.last_authenticated_at = None;
        }
        self
    }

    /// The folder, if it is one.
    #[must_use]
    pub fn into_folder(self) -> Option<Folder> {
        match self {
            Self::Folder(f) => Some(f),
            _ => None,
        }
    }

    /// The resource with `patch` applied.
    ///
    /// # Errors
    /// [`ResourceError::InvalidChange`] for a title on anything but an
    /// organization.
    pub fn patched(mut self, patch: &ResourcePatch) -> Result<Self, ResourceError> {
        let kind = self.kind();
        if patch.title.is_some() && kind != ResourceKind::Organization {
            return Err(ResourceError::InvalidChange { kind, reason: "only an organization has a title" });
        }
        let (name, description, labels) = match &mut self {
            Self::Organization(r) => {
                if let Some(t) = &patch.title {
                    r.title = t.clone();
                }
                (&mut r.name, &mut r.description, &mut r.labels)
            }
            Self::Cloud(r) => (&mut r.name, &mut r.description, &mut r.labels),
            Self::Folder(r) => (&mut r.name, &mut r.description, &mut r.labels),
            Self::ServiceAccount(r) => (&mut r.name, &mut r.description, &mut r.labels),
        };
        if let Some(n) = &patch.name {
            *name = n.clone();
        }
        if let Some(d) = &patch.description {
            *description = d.clone();
        }
        if let Some(l) = &patch.labels {
            *labels = l.clone();
        }
        Ok(self)
    }
}

/// A set of resources listed together: the children of one parent (or
/// every organization).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceListing {
    /// Every organization.
    Organizations,
    /// The clouds of an organization.
    Clouds(ResourceId),
    /// The folders of a cloud.
    Folders(ResourceId),
    /// The service accounts of a folder.
    ServiceAccounts(ResourceId),
    /// The service accounts of every folder of a cloud (their names are
    /// unique there).
    ServiceAccountsOfCloud(ResourceId),
}

impl ResourceListing {
    /// The kind listed.
    #[must_use]
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Organizations => ResourceKind::Organization,
            Self::Clouds(_) => ResourceKind::Cloud,
            Self::Folders(_) => ResourceKind::Folder,
            Self::ServiceAccounts(_) | Self::ServiceAccountsOfCloud(_) => ResourceKind::ServiceAccount,
        }
    }

    /// The resource whose children are listed (`None` for organizations).
    #[must_use]
    pub fn parent(&self) -> Option<ResourceRef> {
        match self {
            Self::Organizations => None,
            Self::Clouds(id) => Some(ResourceRef::Organization(*id)),
            Self::Folders(id) | Self::ServiceAccountsOfCloud(id) => Some(ResourceRef::Cloud(*id)),
            Self::ServiceAccounts(id) => Some(ResourceRef::Folder(*id)),
        }
    }
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ResourceOrder {
    /// By name (then id, where names repeat across folders).
    #[default]
    Name,
    /// By id.
    Id,
}

/// Where a page of a resource listing continues: after this resource
/// (compared by the listing's order). Take it from a page's `next`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceCursor {
    /// The name of the last resource seen.
    pub name: String,
    /// Its id.
    pub id: String,
}

impl ResourceCursor {
    /// The cursor after `resource`.
    #[must_use]
    pub fn after(resource: &Resource) -> Self {
        Self { name: resource.name().as_str().to_owned(), id: resource.reference().id().to_owned() }
    }

    /// Whether `resource` comes after this cursor in `order`.
    #[must_use]
    pub fn precedes(&self, resource: &Resource, order: ResourceOrder) -> bool {
        let id = resource.reference();
        match order {
            ResourceOrder::Id => id.id() > self.id.as_str(),
            ResourceOrder::Name => (resource.name().as_str(), id.id()) > (self.name.as_str(), self.id.as_str()),
        }
    }
}

/// A page of resources.
pub type ResourcePage = crate::Page<Resource, ResourceCursor>;

/// The fields an update sets (`None`: unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResourcePatch {
    /// A new name.
    pub name: Option<ResourceName>,
    /// A new description.
    pub description: Option<Description>,
    /// New labels (replacing all of them).
    pub labels: Option<Labels>,
    /// A new title (organizations only).
    pub title: Option<Description>,
}

impl ResourcePatch {
    /// A patch changing nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    crate::setters::setters! {
        /// Sets the name.
        fn name(name: ResourceName) => name = Some(name);
        /// Sets the description.
        fn description(description: Description) => description = Some(description);
        /// Replaces the labels.
        fn labels(labels: Labels) => labels = Some(labels);
        /// Sets the title (organizations only).
        fn title(title: Description) => title = Some(title);
    }
}

/// One change to one resource, written with its log entry by
/// [`KeyStore::commit_resource`](crate::KeyStore::commit_resource).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceChange {
    /// Creates a resource. Its parent must exist; its id must be new; its
    /// name must be free where names are unique.
    Create(Resource),
    /// Updates a resource's name, description, labels or title.
    Update {
        /// The resource.
        target: ResourceRef,
        /// What to set.
        patch: ResourcePatch,
    },
    /// Deletes a resource: refused for an organization, cloud or folder
    /// that still holds resources; a service account's keys are deleted
    /// with it, a container's access policy bindings too.
    Delete(ResourceRef),
    /// Binds an access policy on an organization, cloud or folder,
    /// replacing the parameters of a binding of the same template there
    /// (logged as an update of the resource).
    BindAccessPolicy {
        /// The resource.
        target: ResourceRef,
        /// The policy (checked by [`AccessPolicyBinding::rule`] first).
        binding: AccessPolicyBinding,
    },
    /// Unbinds the access policy of a template from a resource (logged as
    /// an update of the resource).
    UnbindAccessPolicy {
        /// The resource.
        target: ResourceRef,
        /// The template's id.
        template_id: String,
    },
    /// Changes the access bindings on a resource (logged as an update of
    /// the resource): with `replace`, every binding is removed first (the
    /// cloud's `SetAccessBindings`, whose bindings come as `Add` deltas);
    /// the result is computed by [`crate::access_binding::apply`] in the store's
    /// transaction, and every subject added must exist.
    UpdateAccessBindings {
        /// The resource.
        target: ResourceRef,
        /// The changes, in order.
        deltas: Vec<AccessBindingDelta>,
        /// Whether the bindings are replaced.
        replace: bool,
    },
}

impl ResourceChange {
    /// The resource changed.
    #[must_use]
    pub fn target(&self) -> ResourceRef {
        match self {
            Self::Create(r) => r.reference(),
            Self::Update { target, .. }
            | Self::Delete(target)
            | Self::BindAccessPolicy { target, .. }
            | Self::UnbindAccessPolicy { target, .. }
            | Self::UpdateAccessBindings { target, .. } => target.clone(),
        }
    }

    /// The kind of operation it is.
    #[must_use]
    pub fn operation_kind(&self) -> ResourceOperationKind {
        match self {
            Self::Create(_) => ResourceOperationKind::Create,
            Self::Update { .. }
            | Self::BindAccessPolicy { .. }
            | Self::UnbindAccessPolicy { .. }
            | Self::UpdateAccessBindings { .. } => ResourceOperationKind::Update,
            Self::Delete(_) => ResourceOperationKind::Delete,
        }
    }
}

/// What a resource operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum ResourceOperationKind {
    /// Created the resource.
    Create,
    /// Updated it.
    Update,
    /// Deleted it.
    Delete,
}

impl ResourceOperationKind {
    /// The stored name of the kind.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    /// The kind stored as `s`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Create, Self::Update, Self::Delete].into_iter().find(|k| k.as_str() == s)
    }
}

/// The log entry of a resource change, as its author writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceLogEntry {
    /// The entry's id (unique in its store's resource log).
    pub id: crate::OperationId,
    /// Who made the change.
    pub actor: crate::Actor,
    /// When.
    pub created_at: Timestamp,
    /// The `Idempotency-Key` claim the store records with the change (in
    /// the same step), naming this entry.
    pub idempotency: Option<crate::store::idempotency::IdempotencyClaim>,
}

impl ResourceLogEntry {
    /// An entry by `actor` at `created_at`.
    #[must_use]
    pub fn new(id: crate::OperationId, actor: crate::Actor, created_at: Timestamp) -> Self {
        Self { id, actor, created_at, idempotency: None }
    }

    /// The entry carrying `claim`: the store records it with the change or
    /// refuses the change whole
    /// ([`StoreError::IdempotencyKeyTaken`](crate::StoreError::IdempotencyKeyTaken)).
    #[must_use]
    pub fn with_idempotency(mut self, claim: crate::store::idempotency::IdempotencyClaim) -> Self {
        self.idempotency = Some(claim);
        self
    }

    /// Its claim with its id, as stores record claims.
    pub(crate) fn claim(&self) -> Option<(&crate::store::idempotency::IdempotencyClaim, crate::OperationId)> {
        self.idempotency.as_ref().map(|c| (c, self.id))
    }

    /// The `delete` entries of `keys`, deleted with a service account by
    /// this entry's change: by its actor, at its time.
    ///
    /// # Errors
    /// [`ResourceError::Random`] if an entry id cannot be drawn.
    pub fn key_deletes(&self, keys: &[crate::KeyId]) -> Result<Vec<crate::LogEntry>, ResourceError> {
        keys.iter()
            .map(|k| {
                crate::LogEntry::new(
                    *k,
                    crate::OperationKind::Delete,
                    self.actor.clone(),
                    self.created_at,
                    crate::operation::OperationChanges::default(),
                )
                .map_err(ResourceError::from)
            })
            .collect()
    }
}

/// One entry of a resource's operations log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceOperation {
    /// The entry's id.
    pub id: crate::OperationId,
    /// The resource changed.
    pub resource: ResourceRef,
    /// What was done.
    pub kind: ResourceOperationKind,
    /// Who did it.
    pub actor: crate::Actor,
    /// When.
    pub created_at: Timestamp,
    /// The resource as the change left it (`None` for a delete).
    pub response: Option<Resource>,
}

/// A page of a resource's operations log, newest first.
pub type ResourceOperationPage = crate::Page<ResourceOperation, crate::OperationCursor>;

/// What [`KeyStore::commit_resource`](crate::KeyStore::commit_resource) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceCommit {
    /// The resource as created or updated, as written (`None` after a
    /// delete; a service account's `last_authenticated_at` is left out).
    pub resource: Option<Resource>,
    /// The keys deleted with a service account, in id order (a cache
    /// drops and announces them as it does a key's delete).
    pub deleted_keys: Vec<crate::KeyId>,
}

impl ResourceCommit {
    /// A commit that left `resource` and deleted `deleted_keys`.
    #[must_use]
    pub fn new(resource: Option<Resource>, deleted_keys: Vec<crate::KeyId>) -> Self {
        Self { resource, deleted_keys }
    }
}

/// The kind of resource within which names of `kind` are unique: a cloud's
/// in its organization, a folder's and a service account's in their cloud
/// (`None` for organizations: among all of them).
#[must_use]
pub fn unique_scope(kind: ResourceKind) -> Option<ResourceKind> {
    match kind {
        ResourceKind::Organization => None,
        ResourceKind::Cloud => Some(ResourceKind::Organization),
        ResourceKind::Folder | ResourceKind::ServiceAccount => Some(ResourceKind::Cloud),
    }
}

/// Checks a policy change before a store applies it: the binding is valid
/// and the target an organization, cloud or folder.
///
/// # Errors
/// [`ResourceError::AccessPolicy`].
pub fn check_policy_change(target: &ResourceRef, binding: Option<&AccessPolicyBinding>) -> Result<(), ResourceError> {
    if target.kind() == ResourceKind::ServiceAccount {
        return Err(AccessPolicyError::NotBindable(target.kind()).into());
    }
    if let Some(b) = binding {
        b.rule()?;
    }
    Ok(())
}

/// The error telling no policy of `template` is bound on `target`.
#[must_use]
pub fn policy_not_bound(target: &ResourceRef, template: &str) -> ResourceError {
    ResourceError::PolicyNotBound {
        template: template.chars().take(64).collect(),
        kind: target.kind(),
        id: target.id().to_owned(),
    }
}

/// The error telling `name` is taken for `kind`.
#[must_use]
pub fn name_taken(kind: ResourceKind, name: &ResourceName) -> ResourceError {
    ResourceError::NameTaken { kind, name: name.as_str().to_owned(), scope: unique_scope(kind) }
}

/// ` in its <scope>` for a [`ResourceError::NameTaken`] message.
fn in_scope(scope: Option<ResourceKind>) -> String {
    scope.map(|s| format!(" in its {s}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twenty_lowercase_alphanumerics() {
        let id = ResourceId::generate().unwrap();
        assert_eq!(id.as_str().len(), 20);
        assert_eq!(ResourceId::new(id.as_str()).unwrap(), id);
        assert_ne!(ResourceId::generate().unwrap(), id);
        for bad in ["", "short", "ABCDEFGHIJKLMNOPQRST", "abcdefghijklmnopqrs_", "abcdefghijklmnopqrstu", "абвгд"]
        {
            assert_eq!(ResourceId::new(bad), Err(ResourceError::InvalidId), "{bad}");
        }
        for (fixed, text) in [
            (ResourceId::default_organization(), DEFAULT_ORGANIZATION_ID),
            (ResourceId::default_cloud(), DEFAULT_CLOUD_ID),
            (ResourceId::default_folder(), DEFAULT_FOLDER_ID),
        ] {
            assert_eq!(ResourceId::new(text).unwrap(), fixed);
        }
        let sa: ServiceAccountId = id.into();
        assert_eq!(sa.as_str(), id.as_str());
    }

    #[test]
    fn names_follow_the_pattern() {
        let longest = format!("a{}", "b".repeat(62));
        for good in ["a", "my-robot", "a1", "robot-2", "x-y-z", longest.as_str(), DEFAULT_NAME] {
            assert_eq!(ResourceName::new(good).unwrap().as_str(), good);
        }
        let too_long = format!("a{}", "b".repeat(63));
        for bad in ["", "1abc", "-abc", "abc-", "My-robot", "my_robot", "my robot", "my.robot", too_long.as_str(), "é"]
        {
            assert_eq!(ResourceName::new(bad), Err(ResourceError::InvalidName), "{bad}");
        }
    }

    #[test]
    fn legacy_accounts_keep_fitting_ids_as_names() {
        let fits = ServiceAccountId::new("ci-robot").unwrap();
        assert_eq!(ResourceName::for_legacy_account(&fits).unwrap().as_str(), "ci-robot");
        for odd in ["CI_Robot", "1robot", "robot-", "svc.deploy"] {
            let name = ResourceName::for_legacy_account(&ServiceAccountId::new(odd).unwrap()).unwrap();
            assert!(name.as_str().starts_with("sa-") && name.as_str().len() == 20, "{name}");
            assert!(ResourceName::new(name.as_str()).is_ok(), "{name}");
        }
    }

    #[test]
    fn labels_parse_and_check_the_limits() {
        let l: Labels = "team=web, env=prod,empty=".parse().unwrap();
        assert_eq!((l.len(), l.get("team"), l.get("empty")), (3, Some("web"), Some("")));
        assert_eq!(l.to_string(), "empty=,env=prod,team=web");
        assert_eq!(l.to_string().parse::<Labels>().unwrap(), l);
        assert!("".parse::<Labels>().unwrap().is_empty());
        assert!(matches!("team".parse::<Labels>(), Err(ResourceError::LabelSyntax(_))));
        assert!(matches!("Team=web".parse::<Labels>(), Err(ResourceError::InvalidLabelKey(_))));
        assert!(matches!("1team=web".parse::<Labels>(), Err(ResourceError::InvalidLabelKey(_))));
        assert!(matches!("=web".parse::<Labels>(), Err(ResourceError::InvalidLabelKey(_))));
        assert!(matches!("team=Web".parse::<Labels>(), Err(ResourceError::InvalidLabelValue(_))));
        assert!(matches!("a=1,a=2".parse::<Labels>(), Err(ResourceError::DuplicateLabel(_))));
        let long = "v".repeat(64);
        assert!(matches!(format!("k={long}").parse::<Labels>(), Err(ResourceError::InvalidLabelValue(_))));
        assert!(matches!(format!("{long}=v").parse::<Labels>(), Err(ResourceError::InvalidLabelKey(_))));
        assert!(Labels::from_pairs([("k.a/b\\c@d_e-f", "v.a/b\\c@d_e-f")]).is_ok());
        let many = |n: usize| Labels::from_pairs((0..n).map(|i| (format!("k{i}"), "v")));
        assert_eq!(many(64).unwrap().len(), 64);
        assert_eq!(many(65), Err(ResourceError::TooManyLabels(65)));
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), l);
        assert!(serde_json::from_str::<Labels>(r#"{"Bad":"x"}"#).is_err());
    }

    #[test]
    fn patches_apply_and_refuse_titles_off_organizations() {
        let t = Timestamp::now();
        let folder = Resource::Folder(Folder::default_at(t));
        let renamed = folder
            .clone()
            .patched(&ResourcePatch::new().name(ResourceName::new("prod").unwrap()).labels("a=b".parse().unwrap()))
            .unwrap();
        assert_eq!(renamed.name().as_str(), "prod");
        assert_eq!(renamed.reference(), folder.reference());
        let title = ResourcePatch::new().title(Description::new("Acme").unwrap());
        assert!(matches!(folder.patched(&title), Err(ResourceError::InvalidChange { .. })));
        let org = Resource::Organization(Organization::default_at(t)).patched(&title).unwrap();
        assert!(matches!(org, Resource::Organization(o) if o.title.as_str() == "Acme"));
    }

    #[test]
    fn records_round_trip_through_json() {
        let sa = Resource::ServiceAccount(
            ServiceAccount::new(
                ResourceId::generate().unwrap().into(),
                ResourceId::default_folder(),
                Timestamp::now(),
                ResourceName::new("my-robot").unwrap(),
            )
            .with_labels("a=b".parse().unwrap()),
        );
        let json = serde_json::to_string(&sa).unwrap();
        assert_eq!(serde_json::from_str::<Resource>(&json).unwrap(), sa);
        assert!(
            serde_json::from_str::<Folder>(
                r#"{"id":"x","cloudId":"defaultcloud00000000","createdAt":"2026-01-01T00:00:00Z","name":"a"}"#
            )
            .is_err()
        );
        assert_eq!(ResourceKind::parse("serviceAccount"), Some(ResourceKind::ServiceAccount));
        assert_eq!(FolderStatus::parse("PENDING_DELETION"), Some(FolderStatus::PendingDeletion));
        assert_eq!(ResourceOperationKind::parse("delete"), Some(ResourceOperationKind::Delete));
        assert!(ResourceRef::parse(ResourceKind::Folder, "bad").is_err());
    }

    #[test]
    fn errors_explain_themselves() {
        let n = ResourceName::new("my-robot").unwrap();
        assert_eq!(
            name_taken(ResourceKind::ServiceAccount, &n).to_string(),
            "the name my-robot is already used by another service account in its cloud"
        );
        assert_eq!(
            name_taken(ResourceKind::Organization, &n).to_string(),
            "the name my-robot is already used by another organization"
        );
        let full = ResourceError::HasChildren {
            kind: ResourceKind::Folder,
            id: DEFAULT_FOLDER_ID.to_owned(),
            child: ResourceKind::ServiceAccount,
        };
        assert_eq!(
            full.to_string(),
            "folder defaultfolder0000000 is not empty: delete the service accounts in it first"
        );
        let missing = ResourceRef::Folder(ResourceId::default_folder()).not_found();
        assert_eq!(missing.to_string(), "folder defaultfolder0000000 not found");
        let long = "K".repeat(1000);
        let e = format!("{long}=v").parse::<Labels>().unwrap_err().to_string();
        assert!(e.len() < 200, "a bad label is cut short in the message: {e}");
    }

    #[test]
    fn cursors_order_by_name_then_id() {
        let t = Timestamp::now();
        let f = |name: &str, id: &str| {
            Resource::Folder(Folder::new(
                ResourceId::new(id).unwrap(),
                ResourceId::default_cloud(),
                t,
                ResourceName::new(name).unwrap(),
            ))
        };
        let a = f("alpha", "zzzzzzzzzzzzzzzzzzzz");
        let b = f("beta", "aaaaaaaaaaaaaaaaaaaa");
        let c = ResourceCursor::after(&a);
        assert!(c.precedes(&b, ResourceOrder::Name));
        assert!(!c.precedes(&b, ResourceOrder::Id));
        assert!(!c.precedes(&a, ResourceOrder::Name));
    }
}
