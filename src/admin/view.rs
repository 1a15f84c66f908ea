//! How much of the project's own data an answer carries.
//!
//! By default every answer has the cloud's shape exactly: a strict
//! proto3-JSON parser with the cloud's message types (`ApiKey`,
//! `ListApiKeysResponse`, `CreateApiKeyResponse`, `ListApiKeyScopesResponse`,
//! `Operation`) reads it without unknown fields. The project's extension
//! fields (`status`, `enabled`, `replacedBy`, `reissuedFrom`, the key
//! controls, an operation's `serviceAccountId`, `kind` and `changes`, the
//! scopes' descriptions and defaults) travel only when a request asks for
//! them with the query parameter `view=FULL` (any route); `view=BASIC` is the
//! default.
//!
//! Operations pack their `metadata` and `response` as `google.protobuf.Any`
//! in proto3 JSON, with `"@type"`: the cloud's type URLs for what the cloud
//! has ([`UPDATE_METADATA`], [`DELETE_METADATA`], [`API_KEY`], [`EMPTY`]),
//! and types of the project's package `apikeys.v1` for the rest (each a
//! message `{string api_key_id = 1;}`, except [`API_KEY_CHANGES`]).

use axum::http::request::Parts;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::operation::OperationKind;

/// `type.googleapis.com/yandex.cloud.iam.v1.ApiKey`.
pub const API_KEY: &str = "type.googleapis.com/yandex.cloud.iam.v1.ApiKey";
/// `type.googleapis.com/google.protobuf.Empty`.
pub const EMPTY: &str = "type.googleapis.com/google.protobuf.Empty";
/// `type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata`.
pub const UPDATE_METADATA: &str = "type.googleapis.com/yandex.cloud.iam.v1.UpdateApiKeyMetadata";
/// `type.googleapis.com/yandex.cloud.iam.v1.DeleteApiKeyMetadata`.
pub const DELETE_METADATA: &str = "type.googleapis.com/yandex.cloud.iam.v1.DeleteApiKeyMetadata";
/// `type.googleapis.com/apikeys.v1.CreateApiKeyMetadata`: a key was created.
pub const CREATE_METADATA: &str = "type.googleapis.com/apikeys.v1.CreateApiKeyMetadata";
/// `type.googleapis.com/apikeys.v1.RevokeApiKeyMetadata`: a key was revoked.
pub const REVOKE_METADATA: &str = "type.googleapis.com/apikeys.v1.RevokeApiKeyMetadata";
/// `type.googleapis.com/apikeys.v1.ReissueApiKeyMetadata`: a key was
/// reissued (on the old key) or made by a reissue (on the new one).
pub const REISSUE_METADATA: &str = "type.googleapis.com/apikeys.v1.ReissueApiKeyMetadata";
/// `type.googleapis.com/apikeys.v1.ImportApiKeyMetadata`: a secret was
/// imported as a key.
pub const IMPORT_METADATA: &str = "type.googleapis.com/apikeys.v1.ImportApiKeyMetadata";
/// `type.googleapis.com/apikeys.v1.LeakApiKeyMetadata`: a key was found
/// leaked.
pub const LEAK_METADATA: &str = "type.googleapis.com/apikeys.v1.LeakApiKeyMetadata";
/// `type.googleapis.com/apikeys.v1.ApiKeyChanges`: the `response` of a
/// listed operation other than a delete, the new values of the fields it
/// changed (`string description = 1; repeated string scopes = 2;
/// google.protobuf.Timestamp expires_at = 3;`; with `view=FULL` every
/// changed field). The operations log keeps changes, not whole keys.
pub const API_KEY_CHANGES: &str = "type.googleapis.com/apikeys.v1.ApiKeyChanges";

/// The fields of a key (and of its changes) that only `view=FULL` shows.
const KEY_EXTENSIONS: [&str; 10] = [
    "status",
    "replacedBy",
    "reissuedFrom",
    "enabled",
    "metadata",
    "externalId",
    "allowedIps",
    "credits",
    "rateLimits",
    "leak",
];

/// The view a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum View {
    /// The cloud's shape (the default).
    #[default]
    Basic,
    /// The cloud's shape and the project's extension fields.
    Full,
}

impl View {
    /// The view named by the request's `view` query parameter.
    ///
    /// # Errors
    /// Code 3 for another value, or the parameter given twice.
    pub fn of(parts: &Parts) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let mut found = None;
        for (name, value) in form_pairs(query) {
            if name == "view" {
                if found.is_some() {
                    return Err(ApiError::invalid("view must be given once"));
                }
                found = Some(match value.as_str() {
                    "BASIC" | "basic" => Self::Basic,
                    "FULL" | "full" => Self::Full,
                    _ => return Err(ApiError::invalid("view must be BASIC or FULL")),
                });
            }
        }
        Ok(found.unwrap_or_default())
    }

    /// A key's JSON in this view: with [`View::Basic`], without the
    /// extension fields.
    #[must_use]
    pub fn key(self, mut key: Value) -> Value {
        if self == Self::Basic
            && let Value::Object(fields) = &mut key
        {
            for f in KEY_EXTENSIONS {
                fields.remove(f);
            }
        }
        key
    }
}

/// The `name=value` pairs of a query string, percent-decoded.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

/// The type URL of the `metadata` of an operation of `kind`.
#[must_use]
pub fn metadata_type(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Update => UPDATE_METADATA,
        OperationKind::Delete => DELETE_METADATA,
        OperationKind::Revoke => REVOKE_METADATA,
        OperationKind::Reissue => REISSUE_METADATA,
        OperationKind::Import => IMPORT_METADATA,
        OperationKind::Leak => LEAK_METADATA,
        _ => CREATE_METADATA,
    }
}

/// `value` (a JSON object) packed as an `Any` of `type_url`.
#[must_use]
pub fn any(type_url: &str, value: Value) -> Value {
    let mut out = Map::new();
    out.insert("@type".to_owned(), Value::String(type_url.to_owned()));
    if let Value::Object(fields) = value {
        out.extend(fields);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str) -> Parts {
        axum::http::Request::builder().uri(uri).body(()).unwrap().into_parts().0
    }

    #[test]
    fn views_parse_and_strip() {
        assert_eq!(View::of(&parts("/apiKeys")).unwrap(), View::Basic);
        assert_eq!(View::of(&parts("/apiKeys?pageSize=1&view=FULL")).unwrap(), View::Full);
        assert!(View::of(&parts("/apiKeys?view=everything")).is_err());
        assert!(View::of(&parts("/apiKeys?view=FULL&view=FULL")).is_err());
        let key = serde_json::json!({"id": "x", "status": "ACTIVE", "enabled": true, "scopes": []});
        assert_eq!(View::Basic.key(key.clone()), serde_json::json!({"id": "x", "scopes": []}));
        assert_eq!(View::Full.key(key.clone()), key);
        assert_eq!(any(EMPTY, serde_json::json!({})), serde_json::json!({"@type": EMPTY}));
    }
}
