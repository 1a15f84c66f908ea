//! Key records and their public views.
//!
//! [`KeyRecord`] is what a store keeps: the fields of a cloud IAM's key
//! listing (id, service account, description, created/last-used/expiry
//! times, scopes, masked key) plus the pepper version, the digest, the status
//! and reissue links. [`KeyInfo`] is the same without digest material, for
//! listings. [`CreatedKey`] is the one-time creation result and serialises to
//! the `api_key.yaml` shape:
//!
//! ```yaml
//! api_key:
//!   id: ajeuo7ng2p6u00000000
//!   service_account_id: ajegtlf2q28a00000000
//!   created_at: 2025-04-04T10:23:08.722440521Z
//!   scopes:
//!   - yc.monitoring.read
//!   expires_at: 2026-01-01T21:00:00Z
//! secret: ak_…
//! ```

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Timestamp;
use crate::controls::KeyControls;
use crate::digest::Digest;
use crate::scope::ScopeSet;
use crate::secret::{MaskedKey, Secret};
use crate::token::KeyId;

// Longest service account id, in bytes.
pub(crate) const MAX_SERVICE_ACCOUNT_LEN: usize = 64;
// Longest description, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 256;

/// Why a field value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// Service account id empty, too long, or outside `[A-Za-z0-9_.-]`.
    #[error("service account id must be 1 to {MAX_SERVICE_ACCOUNT_LEN} characters of A-Z a-z 0-9 _ . -")]
    ServiceAccountId,
    /// Description too long or containing control characters.
    #[error("description must be at most {MAX_DESCRIPTION_CHARS} characters without control characters")]
    Description,
}

/// The owner of a key: a service account id (`[A-Za-z0-9_.-]{1,64}`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccountId(Arc<str>);

impl ServiceAccountId {
    /// Longest service account id, in bytes.
    pub const MAX_LEN: usize = MAX_SERVICE_ACCOUNT_LEN;

    /// Validates an id.
    ///
    /// # Errors
    /// [`FieldError::ServiceAccountId`].
    pub fn new(id: &str) -> Result<Self, FieldError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_SERVICE_ACCOUNT_LEN
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok { Ok(Self(Arc::from(id))) } else { Err(FieldError::ServiceAccountId) }
    }

    /// An id the caller knows is valid (a generated resource id).
    pub(crate) fn from_valid(id: &str) -> Self {
        debug_assert!(Self::new(id).is_ok());
        Self(Arc::from(id))
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceAccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceAccountId({})", &*self.0)
    }
}

impl std::str::FromStr for ServiceAccountId {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for ServiceAccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceAccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A free-text key description: at most 256 characters, no control characters.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Description(Option<Arc<str>>);

impl Description {
    /// Longest description, in characters.
    pub const MAX_CHARS: usize = MAX_DESCRIPTION_CHARS;

    /// Validates a description; the empty string is allowed.
    ///
    /// # Errors
    /// [`FieldError::Description`].
    pub fn new(text: &str) -> Result<Self, FieldError> {
        if text.chars().count() > MAX_DESCRIPTION_CHARS || text.chars().any(char::is_control) {
            return Err(FieldError::Description);
        }
        Ok(Self(if text.is_empty() { None } else { Some(Arc::from(text)) }))
    }

    /// The text (empty when none).
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// Whether the description is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Description {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether a key may still be used (expiry is separate: see
/// [`KeyRecord::is_expired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Usable until its expiry.
    Active,
    /// Revoked: never accepted again.
    Revoked,
}

impl KeyStatus {
    /// `"active"` or `"revoked"`, as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    /// Parses [`KeyStatus::as_str`] output.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// How a key's secret was made, which decides how it is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Generated in this crate's token format; found by the id in the token.
    Native,
    /// An existing opaque secret from another system; found by its digest.
    Imported,
}

impl KeyKind {
    /// `"native"` or `"imported"`, as stored.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Imported => "imported",
        }
    }

    /// Parses [`KeyKind::as_str`] output.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "imported" => Some(Self::Imported),
            _ => None,
        }
    }
}

/// Links between a key and the key that reissued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub struct ReissueLinks {
    /// The newer key that replaced this one, if reissued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<KeyId>,
    /// The older key this one replaced, if it is a reissue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued_from: Option<KeyId>,
}

/// A stored key. Holds the digest of the secret, never the secret.
///
/// `Debug` redacts the digest. The fields the verify path reads (id, status,
/// pepper version, digest, expiry, last use, scopes) come first and the
/// layout is fixed (`repr(C)`), so a lookup touches as few cache lines as
/// possible — it matters when a store of millions of keys does not fit in
/// the CPU caches.
///
/// Built with [`KeyRecord::new`]; the optional parts (description, scopes,
/// expiry, last use, status, links) are then set field by field.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[repr(C)]
#[non_exhaustive]
pub struct KeyRecord {
    /// Public id.
    pub id: KeyId,
    /// Version of the pepper the digest was made with.
    pub pepper_version: u32,
    /// `HMAC-SHA256(pepper, secret)`.
    pub digest: Digest,
    /// Expiry; the key is expired when now ≥ `expires_at`.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Last successful verification, as flushed (coalesced; see the verifier).
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Whether the key may be used: a disabled key is refused until it is
    /// enabled again (unlike a revoked one). Defaults to `true`.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Native or imported.
    pub kind: KeyKind,
    /// Optional controls (metadata, external id, IP allow-list, credits,
    /// rate limits); `None` when none is set, which is what keeps the
    /// verify path of plain keys free of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<Arc<KeyControls>>,
    /// Last six characters of the secret.
    pub masked_key: MaskedKey,
    /// Reissue links.
    #[serde(default)]
    pub links: ReissueLinks,
    /// Owner.
    pub service_account_id: ServiceAccountId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Free text.
    #[serde(default)]
    pub description: Description,
}

impl KeyRecord {
    /// A record of an active key with what every key has: its id, owner,
    /// kind, the digest of its secret (with the pepper version it was made
    /// with and the secret's last characters) and its creation time. It has
    /// no description, scopes, expiry, last use or reissue links until those
    /// fields are set.
    ///
    /// `masked_key` is kept for native keys (it is their public checksum).
    /// An imported key's masked form is always six hex digits of its digest,
    /// whatever is passed: its last characters belong to the secret, and
    /// records written by earlier versions (which kept them) are read
    /// through here too.
    #[must_use]
    pub fn new(
        id: KeyId,
        service_account_id: ServiceAccountId,
        kind: KeyKind,
        pepper_version: u32,
        digest: Digest,
        masked_key: MaskedKey,
        created_at: Timestamp,
    ) -> Self {
        let masked_key = match kind {
            KeyKind::Native => masked_key,
            KeyKind::Imported => MaskedKey::of_digest(&digest),
        };
        Self {
            id,
            pepper_version,
            digest,
            expires_at: None,
            last_used_at: None,
            scopes: ScopeSet::default(),
            status: KeyStatus::Active,
            enabled: true,
            kind,
            controls: None,
            masked_key,
            links: ReissueLinks::default(),
            service_account_id,
            created_at,
            description: Description::default(),
        }
    }

    /// Whether the key is expired at `now` (now ≥ `expires_at`).
    #[must_use]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }

    /// Whether the key is revoked.
    #[must_use]
    pub fn is_revoked(&self) -> bool {
        self.status == KeyStatus::Revoked
    }

    /// The key's controls, empty when none is set.
    #[must_use]
    pub fn controls(&self) -> &KeyControls {
        self.controls.as_deref().unwrap_or(&NO_CONTROLS)
    }

    /// Sets the controls (stored as `None` when `controls` is empty).
    pub fn set_controls(&mut self, controls: KeyControls) {
        self.controls = controls.into_option();
    }

    /// The listing view, without digest material.
    #[must_use]
    pub fn info(&self) -> KeyInfo {
        KeyInfo {
            id: self.id,
            service_account_id: self.service_account_id.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            masked_key: self.masked_key,
            status: self.status,
            enabled: self.enabled,
            kind: self.kind,
            links: self.links,
            controls: self.controls.clone(),
        }
    }
}

/// A key as listed: every field of [`KeyRecord`] but the digest and pepper.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// Public id.
    pub id: KeyId,
    /// Owner.
    pub service_account_id: ServiceAccountId,
    /// Free text.
    #[serde(default)]
    pub description: Description,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last successful verification (coalesced).
    #[serde(default)]
    pub last_used_at: Option<Timestamp>,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Expiry, if any.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// `****` and the last six characters of the secret.
    pub masked_key: MaskedKey,
    /// Active or revoked.
    pub status: KeyStatus,
    /// Whether the key may be used (see [`KeyRecord::enabled`]).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Native or imported.
    pub kind: KeyKind,
    /// Reissue links.
    #[serde(default)]
    pub links: ReissueLinks,
    /// Optional controls; `None` when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<Arc<KeyControls>>,
}

/// Serde default of `enabled`: records written before the field existed
/// are enabled.
fn enabled_by_default() -> bool {
    true
}

/// What [`KeyRecord::controls`] lends for a record without controls.
static NO_CONTROLS: KeyControls = KeyControls::NONE;

/// The `api_key` part of a creation result, exactly the documented fields.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiKeySummary {
    /// Public id.
    pub id: KeyId,
    /// Owner.
    pub service_account_id: ServiceAccountId,
    /// Creation time.
    pub created_at: Timestamp,
    /// Granted scopes.
    pub scopes: ScopeSet,
    /// Expiry, omitted when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl From<&KeyRecord> for ApiKeySummary {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id,
            service_account_id: r.service_account_id.clone(),
            created_at: r.created_at,
            scopes: r.scopes.clone(),
            expires_at: r.expires_at,
        }
    }
}

/// The one-time result of creating or reissuing a key: serialises to the
/// `api_key.yaml` shape `{api_key: {id, service_account_id, created_at,
/// scopes, expires_at}, secret}`. This is the only type that writes a secret
/// out; its `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct CreatedKey {
    /// The key's public fields.
    pub api_key: ApiKeySummary,
    /// The secret to hand to the owner. It cannot be retrieved again.
    pub secret: Secret,
    /// The whole key as made (description, enabled flag, controls, reissue
    /// link: what [`KeyDirectory::get`](crate::KeyDirectory::get) would show).
    /// Not serialised: the documented shape is `api_key` and `secret`.
    pub key: KeyInfo,
}

impl CreatedKey {
    /// The result of making `record`, whose secret is `secret`.
    #[must_use]
    pub fn new(record: &KeyRecord, secret: Secret) -> Self {
        Self { api_key: ApiKeySummary::from(record), secret, key: record.info() }
    }
}

impl Serialize for CreatedKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CreatedKey", 2)?;
        st.serialize_field("api_key", &self.api_key)?;
        st.serialize_field("secret", self.secret.expose_secret())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for CreatedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            api_key: ApiKeySummary,
            secret: String,
        }
        let shape = Shape::deserialize(d)?;
        let secret = Secret::from(shape.secret);
        // The documented shape has no more: the rest reads as a new key's
        // defaults (no description, enabled, no controls).
        let a = &shape.api_key;
        let key = KeyInfo {
            id: a.id,
            service_account_id: a.service_account_id.clone(),
            description: Description::default(),
            created_at: a.created_at,
            last_used_at: None,
            scopes: a.scopes.clone(),
            expires_at: a.expires_at,
            masked_key: secret.tail6(),
            status: KeyStatus::Active,
            enabled: true,
            kind: KeyKind::Native,
            links: ReissueLinks::default(),
            controls: None,
        };
        Ok(Self { api_key: shape.api_key, secret, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> KeyRecord {
        let c = crate::testing::scope_catalog();
        KeyRecord {
            id: KeyId::parse("ajeuo7ng2p6u00000000").unwrap(),
            service_account_id: ServiceAccountId::new("ajegtlf2q28a00000000").unwrap(),
            description: Description::new("for my-robot").unwrap(),
            created_at: "2025-04-04T10:23:08.722440521Z".parse().unwrap(),
            last_used_at: None,
            scopes: c.resolve(Some(&["yc.monitoring.read", "yc.postbox.send"])).unwrap(),
            expires_at: Some("2026-01-01T21:00:00Z".parse().unwrap()),
            masked_key: MaskedKey::from_tail(b"rCG02w"),
            pepper_version: 1,
            digest: Digest::from_bytes([0x5a; 32]),
            status: KeyStatus::Active,
            enabled: true,
            kind: KeyKind::Native,
            controls: None,
            links: ReissueLinks::default(),
        }
    }

    /// Whatever a store hands back for an imported key
    /// (records written by earlier versions kept the secret's last six
    /// characters), the record shows six hex digits of the digest.
    #[test]
    fn an_imported_record_never_shows_part_of_its_secret() {
        let digest = Digest::from_bytes([0xAB; 32]);
        let secret_tail = MaskedKey::from_tail(b"legacySECRET");
        let id = KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap();
        let sa = ServiceAccountId::new("sa").unwrap();
        let t = Timestamp::UNIX_EPOCH;
        let imported = KeyRecord::new(id, sa.clone(), KeyKind::Imported, 1, digest, secret_tail, t);
        assert_eq!(imported.masked_key.to_string(), "****ababab");
        assert_eq!(imported.info().masked_key.to_string(), "****ababab");
        let native = KeyRecord::new(id, sa, KeyKind::Native, 1, digest, secret_tail, t);
        assert_eq!(native.masked_key.to_string(), "****SECRET", "a native key's tail is its public checksum");
    }

    #[test]
    fn field_validation() {
        assert!(ServiceAccountId::new("aje6o61dvog2").is_ok());
        assert!(ServiceAccountId::new("my-robot.v2_x").is_ok());
        assert_eq!(ServiceAccountId::new(""), Err(FieldError::ServiceAccountId));
        assert_eq!(ServiceAccountId::new("a b"), Err(FieldError::ServiceAccountId));
        assert_eq!(ServiceAccountId::new(&"a".repeat(65)), Err(FieldError::ServiceAccountId));
        assert!(Description::new("this API-key is for my-robot").is_ok());
        assert!(Description::new(&"é".repeat(256)).is_ok());
        assert_eq!(Description::new(&"é".repeat(257)), Err(FieldError::Description));
        assert_eq!(Description::new("a\nb"), Err(FieldError::Description));
        assert!(Description::new("").unwrap().is_empty());
    }

    #[test]
    fn record_json_round_trip_and_debug_redacts_digest() {
        let r = sample();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<KeyRecord>(&json).unwrap(), r);
        let dbg = format!("{r:?}");
        assert!(dbg.contains("Digest([REDACTED])"));
        assert!(!dbg.contains(&r.digest.to_base64()));
    }

    #[test]
    fn info_has_no_digest() {
        let json = serde_json::to_value(sample().info()).unwrap();
        assert!(json.get("digest").is_none());
        assert!(json.get("pepper_version").is_none());
        assert_eq!(json["masked_key"], "****rCG02w");
    }

    #[test]
    fn created_key_serialises_to_the_api_key_yaml_shape() {
        let r = sample();
        let created = CreatedKey::new(&r, Secret::from("ak_secretvalue".to_owned()));
        assert_eq!(created.key, r.info(), "the whole key, description included, beside the documented shape");
        let v = serde_json::to_value(&created).unwrap();
        let keys: Vec<_> = v["api_key"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["created_at", "expires_at", "id", "scopes", "service_account_id"]);
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(v["secret"], "ak_secretvalue");
        assert_eq!(v["api_key"]["expires_at"], "2026-01-01T21:00:00Z");
        let yaml = serde_norway::to_string(&created).unwrap();
        assert!(yaml.starts_with("api_key:\n  id: ajeuo7ng2p6u00000000\n"), "{yaml}");
        let back: CreatedKey = serde_norway::from_str(&yaml).unwrap();
        assert_eq!((&back.api_key, back.secret.expose_secret()), (&created.api_key, "ak_secretvalue"));
        assert_eq!(back.key.description.as_str(), "", "not in the documented shape: a new key's default");
        assert!(!format!("{created:?}").contains("secretvalue"));
    }

    #[test]
    fn no_expiry_is_omitted_and_unknown_fields_are_refused() {
        let mut r = sample();
        r.expires_at = None;
        let v = serde_json::to_value(ApiKeySummary::from(&r)).unwrap();
        assert!(v.get("expires_at").is_none());
        let bad = r#"{"api_key":{"id":"ajeuo7ng2p6u00000000","service_account_id":"x","created_at":"2025-01-01T00:00:00Z","scopes":[],"extra":1},"secret":"s"}"#;
        assert!(serde_json::from_str::<CreatedKey>(bad).is_err());
    }

    #[test]
    fn expiry_is_inclusive() {
        let r = sample();
        let e = r.expires_at.unwrap();
        assert!(!r.is_expired(e.saturating_sub(std::time::Duration::from_nanos(1))));
        assert!(r.is_expired(e));
    }
}
