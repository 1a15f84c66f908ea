//! The JSON bodies, in camelCase with RFC 3339 times. Requests refuse
//! unknown fields; every request and response type is `#[non_exhaustive]`
//! with optional fields defaulting, so fields can be added later without
//! breaking callers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::Timestamp;
use crate::operation::{Operation, OperationChanges, OperationKind};
use crate::record::{KeyInfo, KeyStatus};

/// A key as the API shows it: the listing's fields, never a digest or
/// secret (`maskedSecret` is `****` and the secret's last six characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApiKey {
    /// Key id.
    #[schema(example = "ajeuo7ng2p6u00000000")]
    pub id: String,
    /// Owner.
    pub service_account_id: String,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Free text (empty when none).
    pub description: String,
    /// Last successful verification (coalesced); absent if never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Expiry; absent if the key never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// `****` and the last six characters of the secret.
    #[schema(example = "****rCG02w")]
    pub masked_secret: String,
    /// `ACTIVE` or `REVOKED` (expiry is separate: see `expiresAt`).
    pub status: ApiKeyStatus,
    /// The key that replaced this one, if it was reissued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The key this one replaced, if it is a reissue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued_from: Option<String>,
}

/// Whether a key may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ApiKeyStatus {
    /// Usable until its expiry.
    Active,
    /// Never accepted again.
    Revoked,
}

impl From<&KeyInfo> for ApiKey {
    fn from(k: &KeyInfo) -> Self {
        Self {
            id: k.id.as_str().to_owned(),
            service_account_id: k.service_account_id.as_str().to_owned(),
            created_at: k.created_at,
            description: k.description.as_str().to_owned(),
            last_used_at: k.last_used_at,
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            expires_at: k.expires_at,
            masked_secret: k.masked_key.to_string(),
            status: match k.status {
                KeyStatus::Active => ApiKeyStatus::Active,
                KeyStatus::Revoked => ApiKeyStatus::Revoked,
            },
            replaced_by: k.links.replaced_by.map(|id| id.as_str().to_owned()),
            reissued_from: k.links.reissued_from.map(|id| id.as_str().to_owned()),
        }
    }
}

/// `POST /apiKeys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct CreateApiKeyRequest {
    /// Owner.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub service_account_id: String,
    /// Free text, at most 256 characters.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub description: Option<String>,
    /// Scopes from `GET /apiKeyScopes`; omitted: the catalog's defaults.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Expiry, in the future (RFC 3339, e.g. `2030-01-01T00:00:00Z`).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// A new key and its secret (`POST /apiKeys`, `:reissue`). The secret
/// appears only here, once; a replay of the same request under the same
/// `Idempotency-Key` returns `apiKey` without `secret` (it is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreateApiKeyResponse {
    /// The key.
    pub api_key: ApiKey,
    /// The secret to send as `Authorization: Api-Key <secret>`; absent on
    /// an idempotent replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `PATCH /apiKeys/{apiKeyId}`. `updateMask` names the fields to change
/// (comma-separated: `description`, `scopes`, `expiresAt`); a field named
/// but absent (or `null`) is reset (empty description, the catalog's default
/// scopes, no expiry); a field present but not named is refused. Without a
/// mask all three are replaced, so absent ones are reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UpdateApiKeyRequest {
    /// The fields to change.
    #[serde(default)]
    #[schema(example = "description,scopes")]
    pub update_mask: Option<String>,
    /// The new description.
    #[serde(default)]
    pub description: Option<String>,
    /// The new scopes.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The new expiry (RFC 3339, in the future).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// `POST /apiKeys/{apiKeyId}:reissue`; the body may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct ReissueApiKeyRequest {
    /// How long the old key stays valid, as seconds with an `s` suffix
    /// (`3600s`); absent or `0s`: the old key is revoked at once.
    #[serde(default)]
    #[schema(example = "3600s")]
    pub grace_period: Option<String>,
}

/// `POST /apiKeys/{apiKeyId}:revoke`; the body may be empty or `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RevokeApiKeyRequest {}

/// `GET /apiKeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListApiKeysResponse {
    /// One page of keys, by id.
    pub api_keys: Vec<ApiKey>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// The `metadata` of an [`OperationView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OperationMetadata {
    /// The key changed.
    pub api_key_id: String,
    /// Its owner.
    pub service_account_id: String,
    /// `create`, `update`, `revoke`, `delete`, `reissue`, `import` or
    /// `leak`.
    pub kind: String,
    /// What changed: the new values of the fields that changed (never a
    /// secret).
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

/// An operation: a change to a key as recorded in its log (every
/// operation of this API is done when it answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OperationView {
    /// The log entry's id.
    pub id: String,
    /// What was done, in words.
    pub description: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Who (the actor the admin authentication named).
    pub created_by: String,
    /// When it last changed (equal to `createdAt`: operations finish at once).
    #[schema(value_type = String, format = DateTime)]
    pub modified_at: Timestamp,
    /// Always `true`.
    pub done: bool,
    /// The key and what changed.
    pub metadata: OperationMetadata,
    /// The key after an update or revoke; `{}` after a delete; absent in
    /// listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub response: Option<serde_json::Value>,
}

impl OperationView {
    /// The view of a log entry with an optional `response`.
    #[must_use]
    pub fn new(op: &Operation, response: Option<serde_json::Value>) -> Self {
        Self {
            id: op.id.as_str().to_owned(),
            description: describe(op.kind).to_owned(),
            created_at: op.created_at,
            created_by: op.actor.as_str().to_owned(),
            modified_at: op.created_at,
            done: true,
            metadata: OperationMetadata {
                api_key_id: op.key_id.as_str().to_owned(),
                service_account_id: op.service_account_id.as_str().to_owned(),
                kind: op.kind.as_str().to_owned(),
                changes: changes_json(&op.changes),
            },
            response,
        }
    }
}

fn changes_json(c: &OperationChanges) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()))
}

fn describe(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Create => "Create API key",
        OperationKind::Update => "Update API key",
        OperationKind::Revoke => "Revoke API key",
        OperationKind::Delete => "Delete API key",
        OperationKind::Reissue => "Reissue API key",
        OperationKind::Import => "Import API key",
        OperationKind::Leak => "Record API key leak",
    }
}

/// `GET /apiKeys/{apiKeyId}/operations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListOperationsResponse {
    /// One page of the key's log, newest first.
    pub operations: Vec<OperationView>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// One scope a key can have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApiKeyScope {
    /// The scope's name.
    pub id: String,
    /// What it allows.
    pub description: String,
    /// Whether keys created without scopes get it.
    pub default: bool,
}

/// `GET /apiKeyScopes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListScopesResponse {
    /// Every scope, in catalog order.
    pub scopes: Vec<ApiKeyScope>,
}

/// The error body: a `google.rpc.Status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct Status {
    /// The `google.rpc.Code`.
    pub code: i32,
    /// What went wrong, in words (never a secret).
    pub message: String,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<serde_json::Value>,
}
