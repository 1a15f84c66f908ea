//! Changes to keys and their operations log.
//!
//! Every change the [`KeyManager`](crate::KeyManager) makes — create,
//! update, revoke, delete, reissue, import — reaches the store as one
//! [`Change`] together with the [`LogEntry`]s that record it, in one call
//! ([`KeyStore::commit`](crate::KeyStore::commit)); stores write both or
//! neither, each entry as an [`Operation`] that also names the key's service
//! account (which the store reads in the same step, so a revoke or delete
//! needs no read before it). An entry names the actor, the time and what changed
//! ([`OperationChanges`]: the new values of the fields that changed), never a
//! secret or digest.
//!
//! The log outlives the key: deleting a key writes a last
//! [`OperationKind::Delete`] entry and keeps every entry, so
//! [`KeyStore::operations`](crate::KeyStore::operations) still lists a
//! deleted key's history (each entry carries the key's service account, which
//! lets a caller authorize reading it after the key is gone). Nothing expires
//! entries; an application that needs retention prunes the log table (SQL) or
//! the `ops:` sorted sets (Redis) itself.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Timestamp;
use crate::controls::{ControlsPatch, Credits, ExternalId, IpAllowList, Metadata, RateLimits};
use crate::random::RandomError;
use crate::record::{Description, KeyInfo, KeyRecord, KeyStatus, ServiceAccountId};
use crate::scope::ScopeSet;
use crate::setters::setters;
use crate::store::idempotency::IdempotencyClaim;
use crate::store::{OldKeyFate, StoreError};
use crate::token::{KeyId, KeyIdError};

/// Longest actor name, in characters.
const MAX_ACTOR_CHARS: usize = 128;

/// Who made a change: a short printable name chosen by the caller (an admin
/// token's name, `apiKey:<id>` for a key acting as admin, a tool's name).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Actor(Arc<str>);

/// Why a text is not an [`Actor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("actor must be 1 to {MAX_ACTOR_CHARS} characters without control characters")]
#[non_exhaustive]
pub struct ActorError;

impl Actor {
    /// Longest actor name, in characters.
    pub const MAX_CHARS: usize = MAX_ACTOR_CHARS;

    /// Validates an actor name.
    ///
    /// # Errors
    /// [`ActorError`] when empty, too long or holding control characters.
    pub fn new(name: &str) -> Result<Self, ActorError> {
        let n = name.chars().count();
        if n == 0 || n > MAX_ACTOR_CHARS || name.chars().any(char::is_control) {
            return Err(ActorError);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The actor of changes made without one named: `system`.
    #[must_use]
    pub fn system() -> Self {
        Self(Arc::from("system"))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Actor({})", &*self.0)
    }
}

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// An operation's public id: 20 characters of `[a-z0-9]`, like a key id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationId(KeyId);

impl OperationId {
    /// A fresh random id.
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator fails.
    pub fn generate() -> Result<Self, RandomError> {
        KeyId::generate().map(Self)
    }

    /// Validates an id.
    ///
    /// # Errors
    /// [`KeyIdError`] when the length or alphabet is wrong.
    pub fn parse(text: &str) -> Result<Self, KeyIdError> {
        KeyId::parse(text).map(Self)
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id of the leak entry for `key` found at `leak`'s place (its URL,
    /// else its source): the same for the same key and place, so a second
    /// report of the same leak is refused by the store as
    /// [`StoreError::DuplicateOperation`] and logged once. Twenty characters
    /// of a SHA-256 over a fixed label, the key id and the place.
    #[must_use]
    pub fn of_leak(key: &KeyId, leak: &LeakDetails) -> Self {
        use sha2::Digest as _;
        const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let (tag, place) = match (&leak.url, &leak.source) {
            (Some(url), _) => (b"url\0", url.as_str()),
            (None, Some(source)) => (b"src\0", source.as_str()),
            (None, None) => (b"nil\0", ""),
        };
        let mut h = sha2::Sha256::new();
        h.update(b"api-keys leak entry v1\0");
        h.update(key.as_str().as_bytes());
        h.update(b"\0");
        h.update(tag);
        h.update(place.as_bytes());
        let digest = h.finalize();
        // 32 bytes folded to 20 characters of 36 (about 103 bits).
        let text: String = digest[..KeyId::LEN].iter().map(|b| char::from(ALPHABET[usize::from(*b) % 36])).collect();
        // Twenty characters of the id alphabet always parse.
        Self(KeyId::parse(&text).unwrap_or(*key))
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperationId({})", self.as_str())
    }
}

/// What kind of change an operation recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OperationKind {
    /// A key was created.
    Create,
    /// A key's description, scopes, expiry, enabled flag or controls changed.
    Update,
    /// A key was revoked.
    Revoke,
    /// A key was deleted.
    Delete,
    /// A key was reissued (on the old key) or made by a reissue (on the new).
    Reissue,
    /// An existing secret was imported as a key.
    Import,
    /// The key was found leaked (a secret-scanning report, a local scan);
    /// [`OperationChanges::leak`] says where.
    Leak,
}

impl OperationKind {
    /// The stored name (`create`, `update`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Revoke => "revoke",
            Self::Delete => "delete",
            Self::Reissue => "reissue",
            Self::Import => "import",
            Self::Leak => "leak",
        }
    }

    /// Parses [`OperationKind::as_str`] output.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => Self::Create,
            "update" => Self::Update,
            "revoke" => Self::Revoke,
            "delete" => Self::Delete,
            "reissue" => Self::Reissue,
            "import" => Self::Import,
            "leak" => Self::Leak,
            _ => return None,
        })
    }
}

/// What an operation changed: the new value of each field that changed
/// (absent fields did not change). Never holds a secret or digest. Serialised
/// in camelCase with absent fields left out, so entries written before a
/// field existed still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct OperationChanges {
    /// The new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    /// The new scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<ScopeSet>,
    /// The new expiry: `Some(None)` (JSON `null`) when it was removed.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub expires_at: Option<Option<Timestamp>>,
    /// The new status (revoke; reissue without grace period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<KeyStatus>,
    /// The key that replaced this one (reissue, on the old key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<KeyId>,
    /// The key this one replaced (reissue, on the new key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued_from: Option<KeyId>,
    /// The new enabled flag (disable, enable; `false` on a new key created
    /// disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The new controls: each control set, or `null` when it was removed
    /// (new credits with their count, refill and last refill as set).
    #[serde(flatten)]
    pub controls: ControlsPatch,
    /// Where the key was found leaked (a leak entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak: Option<LeakDetails>,
}

/// Longest [`LeakDetails::url`] kept, in characters.
const MAX_LEAK_URL_CHARS: usize = 2048;
/// Longest [`LeakDetails::source`] kept, in characters.
const MAX_LEAK_SOURCE_CHARS: usize = 1024;

/// Where a leaked key was found, as its leak entry records it: the report's
/// URL and source (GitHub: the file's URL and `content`, `commit`, …), or
/// the `path:line:column` of a local scan as the source. Never the secret:
/// [`LeakDetails::new`] masks the reported token wherever it appears.
/// Serialised in camelCase with absent fields left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeakDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl LeakDetails {
    /// Longest URL kept, in characters (longer ones are cut).
    pub const MAX_URL_CHARS: usize = MAX_LEAK_URL_CHARS;
    /// Longest source kept, in characters (longer ones are cut).
    pub const MAX_SOURCE_CHARS: usize = MAX_LEAK_SOURCE_CHARS;

    /// The details of a leak of `secret` (the whole token as found) seen at
    /// `source` and `url`: control characters become `\u{FFFD}`, text past
    /// [`Self::MAX_URL_CHARS`] / [`Self::MAX_SOURCE_CHARS`] is cut, and any
    /// copy of `secret` is replaced by `****` (a report's URL could quote
    /// the token). Empty texts are absent.
    #[must_use]
    pub fn new(source: Option<&str>, url: Option<&str>, secret: &str) -> Self {
        Self {
            source: source.and_then(|s| clean(s, secret, MAX_LEAK_SOURCE_CHARS)),
            url: url.and_then(|u| clean(u, secret, MAX_LEAK_URL_CHARS)),
        }
    }

    /// Where the key was found: what the reporter scanned (GitHub's
    /// `source`), or `path:line:column` for a local scan.
    #[must_use]
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The reported URL of the leak.
    #[must_use]
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

/// `text` without `secret`, without control characters and cut to `max`
/// characters; `None` if nothing is left.
fn clean(text: &str, secret: &str, max: usize) -> Option<String> {
    let masked = if secret.is_empty() { text.to_owned() } else { text.replace(secret, "****") };
    let out: String = masked.chars().take(max).map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect();
    (!out.is_empty()).then_some(out)
}

/// Reads a present field, `null` included, as `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl OperationChanges {
    /// The fields of a new record (create, import, the new key of a reissue).
    #[must_use]
    pub fn of_new(record: &KeyRecord) -> Self {
        Self {
            description: (!record.description.is_empty()).then(|| record.description.clone()),
            scopes: Some(record.scopes.clone()),
            expires_at: record.expires_at.map(Some),
            reissued_from: record.links.reissued_from,
            enabled: (!record.enabled).then_some(false),
            controls: ControlsPatch::setting(record.controls()),
            ..Self::default()
        }
    }

    /// The changes of a leak entry: where the key was found.
    #[must_use]
    pub fn of_leak(leak: LeakDetails) -> Self {
        Self { leak: Some(leak), ..Self::default() }
    }

    /// The fields an update sets.
    #[must_use]
    pub fn of_update(update: &KeyUpdate) -> Self {
        Self {
            description: update.description.clone(),
            scopes: update.scopes.clone(),
            expires_at: update.expires_at,
            enabled: update.enabled,
            controls: update.controls.clone(),
            ..Self::default()
        }
    }
}

/// One entry of a key's operations log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct Operation {
    /// The entry's id (unique in its store).
    pub id: OperationId,
    /// The key changed.
    pub key_id: KeyId,
    /// The key's owner (kept so a deleted key's log can be authorized).
    pub service_account_id: ServiceAccountId,
    /// What was done.
    pub kind: OperationKind,
    /// Who did it.
    pub actor: Actor,
    /// When.
    pub created_at: Timestamp,
    /// What changed.
    #[serde(default)]
    pub changes: OperationChanges,
    /// The key as the change left it (the operation's response), never a
    /// secret or digest; see [`LogEntry::response`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<KeyInfo>,
}

/// An operations log entry as a change's author writes it; the store
/// records it as an [`Operation`] with the key's service account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// The entry's id (unique in its store).
    pub id: OperationId,
    /// The key changed.
    pub key_id: KeyId,
    /// What was done.
    pub kind: OperationKind,
    /// Who did it.
    pub actor: Actor,
    /// When.
    pub created_at: Timestamp,
    /// What changed.
    pub changes: OperationChanges,
    /// The key as the change left it, kept with the entry so the operation
    /// can be answered again by id, on any node ([`KeyStore::operation`](crate::KeyStore::operation)):
    /// set by the manager for create, import, reissue (the new key) and
    /// update, and for a revoke carrying an idempotency claim (the key as
    /// revoked); `None` for the others (a delete's response is empty) and
    /// for entries written before it existed.
    pub response: Option<KeyInfo>,
    /// The `Idempotency-Key` this entry's change claims: the store records
    /// it with the change, or refuses the whole commit
    /// ([`StoreError::IdempotencyKeyTaken`]) if the key is claimed already
    /// (see [`crate::store::idempotency`]). Never part of the [`Operation`].
    pub idempotency: Option<IdempotencyClaim>,
}

impl LogEntry {
    /// An entry with a fresh id.
    ///
    /// # Errors
    /// [`RandomError`] if the OS generator fails.
    pub fn new(
        key_id: KeyId,
        kind: OperationKind,
        actor: Actor,
        created_at: Timestamp,
        changes: OperationChanges,
    ) -> Result<Self, RandomError> {
        Ok(Self {
            id: OperationId::generate()?,
            key_id,
            kind,
            actor,
            created_at,
            changes,
            response: None,
            idempotency: None,
        })
    }

    /// The entry carrying `claim`, recorded with its change.
    #[must_use]
    pub fn with_idempotency(mut self, claim: IdempotencyClaim) -> Self {
        self.idempotency = Some(claim);
        self
    }

    /// The entry with `key` as its response snapshot.
    #[must_use]
    pub fn with_response(mut self, key: KeyInfo) -> Self {
        self.response = Some(key);
        self
    }

    /// The entry as recorded for a key of `service_account_id`.
    #[must_use]
    pub fn recorded(&self, service_account_id: &ServiceAccountId) -> Operation {
        Operation {
            id: self.id,
            key_id: self.key_id,
            service_account_id: service_account_id.clone(),
            kind: self.kind,
            actor: self.actor.clone(),
            created_at: self.created_at,
            changes: self.changes.clone(),
            response: self.response.clone(),
        }
    }
}

/// Position in a key's operations log (the store's sequence number of an
/// entry), the cursor of [`KeyStore::operations`](crate::KeyStore::operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationCursor(u64);

impl OperationCursor {
    /// A cursor from its number (as given by [`OperationCursor::get`]).
    #[must_use]
    pub const fn new(seq: u64) -> Self {
        Self(seq)
    }

    /// The number.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A change of a key's description, scopes, expiry, enabled flag or
/// controls; fields left `None` stay as they are, and `Some(None)` clears an
/// optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUpdate {
    /// The new description.
    pub description: Option<Description>,
    /// The new scopes.
    pub scopes: Option<ScopeSet>,
    /// The new expiry (`Some(None)`: no expiry).
    pub expires_at: Option<Option<Timestamp>>,
    /// Enable (`Some(true)`) or disable (`Some(false)`) the key.
    pub enabled: Option<bool>,
    /// The control changes.
    pub controls: ControlsPatch,
}

impl KeyUpdate {
    /// An update that changes nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the description.
        fn description(d: Description) => description = Some(d);
        /// Sets the scopes.
        fn scopes(s: ScopeSet) => scopes = Some(s);
        /// Sets the expiry (`None`: never expires).
        fn expires_at(t: Option<Timestamp>) => expires_at = Some(t);
        /// Enables (`true`) or disables (`false`) the key.
        fn enabled(enabled: bool) => enabled = Some(enabled);
        /// Sets the metadata (`None`: removes it).
        fn metadata(m: Option<Metadata>) => controls.metadata = Some(m);
        /// Sets the external owner id (`None`: removes it).
        fn external_id(id: Option<ExternalId>) => controls.external_id = Some(id);
        /// Sets the IP allow-list (`None`: any address).
        fn allowed_ips(list: Option<IpAllowList>) => controls.allowed_ips = Some(list);
        /// Sets the rate limits (`None`: removes them).
        fn rate_limits(limits: Option<RateLimits>) => controls.rate_limits = Some(limits);
        /// Sets the usage credits (`None`: unlimited use).
        fn credits(credits: Option<Credits>) => controls.credits = Some(credits);
        /// Sets the control changes (replacing those set before).
        fn controls(patch: ControlsPatch) => controls = patch;
    }

    /// Whether the update changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.scopes.is_none()
            && self.expires_at.is_none()
            && self.enabled.is_none()
            && !self.changes_controls()
    }

    /// Whether the update sets or clears any control.
    #[must_use]
    pub fn changes_controls(&self) -> bool {
        !self.controls.is_empty()
    }
}

/// Applies `update` to a record (shared by backends that work on whole
/// records).
///
/// # Errors
/// [`StoreError::Conflict`] if the key is revoked, or if the update would
/// change the expiry of a reissued key (its expiry is the grace period the
/// reissue gave it, which an update must not extend).
pub fn apply_update(record: &mut KeyRecord, update: &KeyUpdate) -> Result<(), StoreError> {
    check_updatable(record, update)?;
    if let Some(d) = &update.description {
        record.description = d.clone();
    }
    if let Some(s) = &update.scopes {
        record.scopes = s.clone();
    }
    if let Some(e) = update.expires_at {
        record.expires_at = e;
    }
    if let Some(enabled) = update.enabled {
        record.enabled = enabled;
    }
    if update.changes_controls() {
        record.set_controls(update.controls.apply_to(record.controls()));
    }
    Ok(())
}

/// The rules of [`apply_update`] without the change.
///
/// # Errors
/// As [`apply_update`].
pub fn check_updatable(record: &KeyRecord, update: &KeyUpdate) -> Result<(), StoreError> {
    if record.is_revoked() {
        return Err(StoreError::Conflict { id: record.id, reason: "the key is revoked" });
    }
    if update.expires_at.is_some() && record.links.replaced_by.is_some() {
        return Err(StoreError::Conflict {
            id: record.id,
            reason: "the key was reissued: its expiry is its grace period",
        });
    }
    Ok(())
}

/// One change to a key, as [`KeyStore::commit`](crate::KeyStore::commit)
/// applies it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Change {
    /// Store a new record (create, import); as
    /// [`KeyStore::insert`](crate::KeyStore::insert).
    Insert(KeyRecord),
    /// Change description, scopes, expiry, enabled flag or controls, under
    /// the rules of
    /// [`apply_update`].
    Update {
        /// The key.
        id: KeyId,
        /// The change.
        update: KeyUpdate,
    },
    /// As [`KeyStore::revoke`](crate::KeyStore::revoke).
    Revoke(KeyId),
    /// As [`KeyStore::delete`](crate::KeyStore::delete).
    Delete(KeyId),
    /// As [`KeyStore::reissue`](crate::KeyStore::reissue).
    Reissue {
        /// The old key.
        old: KeyId,
        /// The new record.
        new: KeyRecord,
        /// What happens to the old key.
        fate: OldKeyFate,
    },
    /// Changes nothing: only appends the log entries (a leak report) for a
    /// key that exists; [`StoreError::NotFound`] otherwise, nothing written.
    Note(KeyId),
}

impl Change {
    /// The key the change is about (the old key of a reissue).
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        match self {
            Self::Insert(r) => r.id,
            Self::Update { id, .. } | Self::Revoke(id) | Self::Delete(id) | Self::Note(id) => *id,
            Self::Reissue { old, .. } => *old,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_validated() {
        assert!(Actor::new("token:ops").is_ok());
        assert_eq!(Actor::new(""), Err(ActorError));
        assert_eq!(Actor::new("a\nb"), Err(ActorError));
        assert_eq!(Actor::new(&"x".repeat(129)), Err(ActorError));
    }

    #[test]
    fn changes_keep_a_removed_expiry_apart_from_an_unchanged_one() {
        let removed = OperationChanges { expires_at: Some(None), ..OperationChanges::default() };
        let json = serde_json::to_string(&removed).unwrap();
        assert_eq!(json, r#"{"expiresAt":null}"#);
        assert_eq!(serde_json::from_str::<OperationChanges>(&json).unwrap(), removed);
        let none: OperationChanges = serde_json::from_str("{}").unwrap();
        assert_eq!(none.expires_at, None);
        assert!(serde_json::from_str::<OperationChanges>(r#"{"secret":"x"}"#).is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for k in [
            OperationKind::Create,
            OperationKind::Update,
            OperationKind::Revoke,
            OperationKind::Delete,
            OperationKind::Reissue,
            OperationKind::Import,
            OperationKind::Leak,
        ] {
            assert_eq!(OperationKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(OperationKind::parse("drop"), None);
    }

    #[test]
    fn leak_details_mask_the_secret_and_are_bounded() {
        let secret = "ak_aaaaaaaaaaaaaaaaaaaa_bbbb";
        let d = LeakDetails::new(Some("content"), Some(&format!("https://x/?k={secret}&y\n")), secret);
        assert_eq!(d.url(), Some("https://x/?k=****&y\u{FFFD}"));
        assert_eq!(d.source(), Some("content"));
        let long = LeakDetails::new(Some(&"s".repeat(5000)), Some(&"u".repeat(5000)), secret);
        assert_eq!(long.source().map(str::len), Some(LeakDetails::MAX_SOURCE_CHARS));
        assert_eq!(long.url().map(str::len), Some(LeakDetails::MAX_URL_CHARS));
        assert_eq!(LeakDetails::new(Some(""), None, secret), LeakDetails { source: None, url: None });
    }

    #[test]
    fn leak_changes_are_camel_case_and_old_entries_still_read() {
        let d = LeakDetails::new(Some("src/a.rs:3:7"), None, "x");
        let json = serde_json::to_string(&OperationChanges::of_leak(d.clone())).unwrap();
        assert_eq!(json, r#"{"leak":{"source":"src/a.rs:3:7"}}"#);
        assert_eq!(serde_json::from_str::<OperationChanges>(&json).unwrap().leak, Some(d));
        let old: OperationChanges = serde_json::from_str(r#"{"status":"revoked"}"#).unwrap();
        assert_eq!(old.leak, None);
    }

    #[test]
    fn leak_entry_ids_depend_on_the_key_and_the_place() {
        let a = KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap();
        let b = KeyId::parse("bbbbbbbbbbbbbbbbbbbb").unwrap();
        let here = LeakDetails::new(Some("content"), Some("https://github.com/o/r/blob/1/x"), "");
        let there = LeakDetails::new(Some("content"), Some("https://github.com/o/r/blob/2/x"), "");
        let other_source = LeakDetails::new(Some("commit"), Some("https://github.com/o/r/blob/1/x"), "");
        assert_eq!(OperationId::of_leak(&a, &here), OperationId::of_leak(&a, &here));
        assert_eq!(OperationId::of_leak(&a, &here), OperationId::of_leak(&a, &other_source), "the URL decides");
        assert_ne!(OperationId::of_leak(&a, &here), OperationId::of_leak(&a, &there));
        assert_ne!(OperationId::of_leak(&a, &here), OperationId::of_leak(&b, &here));
        let local = LeakDetails::new(Some("a.env:1:5"), None, "");
        assert_ne!(OperationId::of_leak(&a, &local), OperationId::of_leak(&a, &LeakDetails::new(None, None, "")));
        assert!(OperationId::parse(OperationId::of_leak(&a, &local).as_str()).is_ok());
    }
}
