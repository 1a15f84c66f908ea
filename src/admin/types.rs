//! The JSON bodies, in camelCase with RFC 3339 times. Requests refuse
//! unknown fields; every request and response type is `#[non_exhaustive]`
//! with optional fields defaulting, so fields can be added later without
//! breaking callers. Fields documented "`view=FULL` only" are the
//! project's extensions: answers carry them only when asked for (see
//! [`View`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::view::{API_KEY_CHANGES, EMPTY, View, any, metadata_type};
use crate::clock::Timestamp;
use crate::controls::{ControlError, Credits, KeyControls, Refill, RefillPeriod};
use crate::operation::{Operation, OperationChanges, OperationKind};
use crate::record::{KeyInfo, KeyStatus};

/// A key as the API shows it: the cloud's `ApiKey` (never a digest or
/// secret: `maskedSecret` is `****` and the secret's last six characters),
/// and with `view=FULL` the project's extension fields.
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
    /// `ACTIVE` or `REVOKED` (expiry is separate: see `expiresAt`);
    /// `view=FULL` only.
    #[schema(required = false)]
    pub status: ApiKeyStatus,
    /// The key that replaced this one, if it was reissued; `view=FULL` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The key this one replaced, if it is a reissue; `view=FULL` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued_from: Option<String>,
    /// Whether the key may be used; a disabled key is refused (as an
    /// invalid key) until enabled again; `view=FULL` only.
    #[serde(default = "enabled_by_default")]
    #[schema(required = false)]
    pub enabled: bool,
    /// Owner metadata: a JSON object of at most 4096 bytes, nested at most
    /// 8 levels; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The application's own owner (customer, tenant) id; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_.:@-]{1,128}$")]
    pub external_id: Option<String>,
    /// CIDR ranges the key may be used from; absent: any address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["10.0.0.0/8", "2001:db8::/32"]))]
    pub allowed_ips: Option<Vec<String>>,
    /// Usage credits; absent: unlimited use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<ApiCredits>,
    /// Named rate limits `NAME=COUNT/PERIOD[:burst=N]` (enforced per node);
    /// absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["api=100/1s:burst=20"]))]
    pub rate_limits: Option<Vec<String>>,
}

/// Serde default of `enabled`.
fn enabled_by_default() -> bool {
    true
}

/// Usage credits: each successful verification spends some; at zero the
/// key is refused (HTTP 429) until a refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiCredits {
    /// Credits left.
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub remaining: u64,
    /// Refill, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<ApiRefill>,
}

/// A refill: at each refill time the remaining count is set to `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiRefill {
    /// The count after a refill.
    #[schema(maximum = 9_223_372_036_854_775_807_u64)]
    pub amount: u64,
    /// Every day, or on the first day of every month.
    pub period: ApiRefillPeriod,
    /// Time of day of the refill, in seconds after midnight UTC, a whole
    /// minute (0 to 86340); absent: midnight.
    #[serde(default)]
    #[schema(maximum = 86340, multiple_of = 60)]
    pub at_second: u32,
}

/// How often credits refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ApiRefillPeriod {
    /// Every day.
    Daily,
    /// On the first day of every month.
    Monthly,
}

impl From<&Credits> for ApiCredits {
    fn from(c: &Credits) -> Self {
        Self {
            remaining: c.remaining,
            refill: c.refill.map(|r| ApiRefill {
                amount: r.amount,
                period: match r.period {
                    RefillPeriod::Monthly => ApiRefillPeriod::Monthly,
                    _ => ApiRefillPeriod::Daily,
                },
                at_second: r.at_second,
            }),
        }
    }
}

impl ApiCredits {
    /// The library's credits, set at `now` (the first refill is the first
    /// refill time after it).
    ///
    /// # Errors
    /// [`ControlError::Credits`] for a count above 2^63 − 1 or a refill
    /// time that is not a whole minute within the day.
    pub fn to_credits(&self, now: Timestamp) -> Result<Credits, ControlError> {
        let credits = Credits::new(self.remaining)?;
        let Some(r) = self.refill else { return Ok(credits) };
        let period = match r.period {
            ApiRefillPeriod::Daily => RefillPeriod::Daily,
            ApiRefillPeriod::Monthly => RefillPeriod::Monthly,
        };
        if !r.at_second.is_multiple_of(60) || r.at_second >= 86_400 {
            return Err(ControlError::Credits("refill atSecond must be a whole minute within the day (0 to 86340)"));
        }
        let hour = u8::try_from(r.at_second / 3600).map_err(|_| ControlError::Credits("refill time"))?;
        let minute = u8::try_from(r.at_second / 60 % 60).map_err(|_| ControlError::Credits("refill time"))?;
        let refill = Refill::new(r.amount, period)?.at(hour, minute)?;
        Ok(credits.refill(refill, now))
    }
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
            enabled: k.enabled,
            ..Self::controls_of(k.controls.as_deref())
        }
    }
}

impl ApiKey {
    /// The control fields of a key with `controls` (every other field empty).
    fn controls_of(controls: Option<&KeyControls>) -> Self {
        let c = controls.unwrap_or(&KeyControls::NONE);
        Self {
            id: String::new(),
            service_account_id: String::new(),
            created_at: Timestamp::UNIX_EPOCH,
            description: String::new(),
            last_used_at: None,
            scopes: Vec::new(),
            expires_at: None,
            masked_secret: String::new(),
            status: ApiKeyStatus::Active,
            replaced_by: None,
            reissued_from: None,
            enabled: true,
            metadata: c.metadata.as_ref().map(|m| serde_json::Value::Object(m.as_map().clone())),
            external_id: c.external_id.as_ref().map(|id| id.as_str().to_owned()),
            allowed_ips: c.allowed_ips.as_ref().map(|l| l.ranges().iter().map(ToString::to_string).collect()),
            credits: c.credits.as_ref().map(ApiCredits::from),
            rate_limits: c.rate_limits.as_ref().map(|l| l.as_slice().iter().map(ToString::to_string).collect()),
        }
    }
}

/// The request bodies of create and update, whose fields after their
/// first are the same: `pub struct Name { first fields }` followed by
/// `description`, `scopes`, `expires_at` and `enabled` (optional, each with
/// the docs and attributes written before its name) and the optional key
/// controls (`metadata`, `externalId`, `allowedIps`, `credits`,
/// `rateLimits`), documented and annotated (serde, OpenAPI) alike.
macro_rules! key_request {
    (
        $(#[$attr:meta])*
        pub struct $name:ident { $($first:tt)* }
        $(#[$description:meta])* description,
        $(#[$scopes:meta])* scopes,
        $(#[$expires_at:meta])* expires_at,
        $(#[$enabled:meta])* enabled,
    ) => {
        $(#[$attr])*
        pub struct $name {
            $($first)*
            $(#[$description])*
            #[serde(default)]
            pub description: Option<String>,
            $(#[$scopes])*
            #[serde(default)]
            pub scopes: Option<Vec<String>>,
            $(#[$expires_at])*
            #[serde(default)]
            #[schema(format = DateTime)]
            pub expires_at: Option<String>,
            $(#[$enabled])*
            #[serde(default)]
            pub enabled: Option<bool>,
            /// Owner metadata: a JSON object of at most 4096 bytes, nested at most 8 levels.
            #[serde(default)]
            #[schema(value_type = Option<Object>)]
            pub metadata: Option<serde_json::Value>,
            /// The application's own owner (customer, tenant) id: 1 to 128 of `A-Z a-z 0-9 _ . : @ -`.
            #[serde(default)]
            pub external_id: Option<String>,
            /// CIDR ranges or addresses (IPv4, IPv6) the key may be used from; at most 64.
            #[serde(default)]
            pub allowed_ips: Option<Vec<String>>,
            /// Usage credits.
            #[serde(default)]
            pub credits: Option<ApiCredits>,
            /// Named rate limits `NAME=COUNT/PERIOD[:burst=N]` (e.g. `api=100/1s:burst=20`), distinct names.
            #[serde(default)]
            pub rate_limits: Option<Vec<String>>,
        }
    };
}

key_request! {
    /// `POST /apiKeys`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[non_exhaustive]
    pub struct CreateApiKeyRequest {
        /// Owner; omitted or empty: the caller's own service account, for a
        /// caller limited to exactly one (others must name it).
        #[serde(default)]
        #[schema(pattern = "^[A-Za-z0-9_.-]{0,50}$")]
        pub service_account_id: Option<String>,
        /// Deprecated: one scope (the cloud's `scope`); give `scopes` instead.
        #[serde(default)]
        #[schema(max_length = 256, deprecated)]
        pub scope: Option<String>,
        /// An OpenPGP public key (ASCII-armored, or the base64 of the binary
        /// key as `gpg --export KEYID | base64`): the answer then carries
        /// `encryptedSecret`, the secret encrypted to it, and no `secret`.
        /// A malformed, expired, revoked or signing-only key is refused
        /// (code 3) before any key is made. Needs the server's `pgp` feature.
        #[serde(default)]
        pub pgp_key: Option<String>,
    }
    /// Free text, at most 256 characters.
    #[schema(max_length = 256)]
    description,
    /// Scopes from `GET /apiKeyScopes`, 1 to 100 distinct names of at most
    /// 256 characters; omitted: the catalog's defaults.
    scopes,
    /// Expiry, in the future and at most `2105-12-31T23:59:59.999999999Z`
    /// (RFC 3339, e.g. `2030-01-01T00:00:00Z`).
    expires_at,
    /// `false` creates the key disabled; absent: enabled.
    enabled,
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
    /// an idempotent replay, and when the request gave `pgpKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// With `pgpKey` in the request: the secret encrypted to that key, an
    /// ASCII-armored OpenPGP message (`gpg --decrypt` opens it); absent on
    /// an idempotent replay (it is not kept either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_secret: Option<String>,
}

key_request! {
    /// `PATCH /apiKeys/{apiKeyId}`. `updateMask` names the fields to change
    /// (comma-separated, lowerCamel or snake_case: `description`, `scopes`,
    /// `expiresAt`, `enabled`, `metadata`, `externalId`, `allowedIps`,
    /// `credits`, `rateLimits`); fields present but not named are left
    /// untouched. Without a mask (or with an empty one) the mask is the
    /// fields present. A named field that is absent (or `null`) is cleared:
    /// an empty description, no expiry, no such control; named `scopes`
    /// must hold 1 to 100 scopes and a named `enabled` must be given, so no
    /// update widens a key without saying so.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[non_exhaustive]
    pub struct UpdateApiKeyRequest {
        /// The fields to change.
        #[serde(default)]
        #[schema(example = "description,scopes")]
        pub update_mask: Option<String>,
    }
    /// The new description.
    description,
    /// The new scopes: 1 to 100 distinct names.
    scopes,
    /// The new expiry (RFC 3339, in the future, at most 2105-12-31T23:59:59.999999999Z).
    expires_at,
    /// `false` disables the key (refused until enabled again), `true` enables it.
    enabled,
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
    /// An OpenPGP public key to encrypt the new secret to, as in
    /// [`CreateApiKeyRequest::pgp_key`]: the answer then carries
    /// `encryptedSecret` and no `secret`. A bad key is refused (code 3)
    /// before anything changes.
    #[serde(default)]
    pub pgp_key: Option<String>,
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

/// The `metadata` of an [`OperationView`], a `google.protobuf.Any`:
/// `UpdateApiKeyMetadata` / `DeleteApiKeyMetadata` of the cloud, or a
/// project type (`apikeys.v1.CreateApiKeyMetadata`, …) for the kinds the
/// cloud lacks; `{"@type", "apiKeyId"}`, and with `view=FULL` also the
/// key's owner, the kind and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OperationMetadata {
    /// The message type, e.g.
    /// `type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata`.
    #[serde(rename = "@type")]
    pub type_url: String,
    /// The key changed.
    pub api_key_id: String,
    /// Its owner; `view=FULL` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_id: Option<String>,
    /// `create`, `update`, `revoke`, `delete`, `reissue`, `import` or
    /// `leak`; `view=FULL` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// What changed: the new values of the fields that changed (never a
    /// secret); `view=FULL` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub changes: Option<serde_json::Value>,
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
    /// A `google.protobuf.Any`: the key after an update or revoke
    /// (`yandex.cloud.iam.v1.ApiKey`), `google.protobuf.Empty` after a
    /// delete; in listings, `Empty` for a delete and otherwise
    /// `apikeys.v1.ApiKeyChanges` (the log keeps changes, not keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub response: Option<serde_json::Value>,
}

impl OperationView {
    /// The view of a log entry with a `response` (already packed with its
    /// `"@type"`), or with `None` the listing's: `Empty` for a delete, the
    /// entry's changes otherwise.
    #[must_use]
    pub fn new(op: &Operation, response: Option<serde_json::Value>, view: View) -> Self {
        let full = view == View::Full;
        let response = response.unwrap_or_else(|| match op.kind {
            OperationKind::Delete => any(EMPTY, serde_json::json!({})),
            _ => any(API_KEY_CHANGES, view.key(changes_json(&op.changes))),
        });
        Self {
            id: op.id.as_str().to_owned(),
            description: describe(op.kind).to_owned(),
            created_at: op.created_at,
            created_by: op.actor.as_str().to_owned(),
            modified_at: op.created_at,
            done: true,
            metadata: OperationMetadata {
                type_url: metadata_type(op.kind).to_owned(),
                api_key_id: op.key_id.as_str().to_owned(),
                service_account_id: full.then(|| op.service_account_id.as_str().to_owned()),
                kind: full.then(|| op.kind.as_str().to_owned()),
                changes: full.then(|| changes_json(&op.changes)),
            },
            response: Some(response),
        }
    }
}

fn changes_json(c: &OperationChanges) -> serde_json::Value {
    serde_json::to_value(c).unwrap_or_else(|_| serde_json::Value::Object(serde_json::Map::new()))
}

pub(super) fn describe(kind: OperationKind) -> &'static str {
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

/// `GET /apiKeyScopes`: the cloud's `ListApiKeyScopesResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListScopesResponse {
    /// One page of scope names, in catalog order.
    pub scopes: Vec<String>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// `GET /apiKeyScopes?view=FULL`: the scopes with their descriptions and
/// whether keys get them by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ListScopesFullResponse {
    /// One page of scopes, in catalog order.
    pub scopes: Vec<ApiKeyScope>,
    /// Opaque token for the next page; empty on the last page.
    pub next_page_token: String,
}

/// The answer of `GET /apiKeyScopes`, by view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ScopesAnswer {
    /// `view=BASIC` (the default).
    Basic(ListScopesResponse),
    /// `view=FULL`.
    Full(ListScopesFullResponse),
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
