//! The router the HTTP tests serve: three routes shaped like the example
//! server's (`examples/axum_server`), one unguarded and two behind a
//! per-route scope guard, with an [`ApiKeyLayer`] around them.

#![allow(dead_code, clippy::unwrap_used, reason = "test helpers")]

use api_keys::http::{ApiKeyLayer, BearerValidator, Identity, require_scope};
use api_keys::{KeyStore, ScopeCatalog, ScopeError};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The scopes the two guarded routes require: `POST /v1/translate` and
/// `GET /v1/monitoring` (which `yc.monitoring.manage` implies).
pub(crate) const TRANSLATE_SCOPE: &str = "yc.ai.translate.execute";
pub(crate) const MONITORING_SCOPE: &str = "yc.monitoring.read";

/// `GET /v1/whoami` for any caller, the guarded routes behind
/// [`require_scope`]; not yet authenticated.
pub(crate) fn routes(catalog: &ScopeCatalog) -> Result<Router, ScopeError> {
    let guard = |scope| require_scope(catalog, scope);
    let translate = post(translate).route_layer(guard(TRANSLATE_SCOPE)?);
    let monitoring = get(monitoring).route_layer(guard(MONITORING_SCOPE)?);
    Ok(Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/translate", translate)
        .route("/v1/monitoring", monitoring))
}

/// [`routes`] behind `auth`.
pub(crate) fn router<S: KeyStore, V: BearerValidator>(
    auth: ApiKeyLayer<S, V>,
    catalog: &ScopeCatalog,
) -> Result<Router, ScopeError> {
    routes(catalog).map(|r| r.layer(auth))
}

/// The caller as the layer saw it.
async fn whoami(identity: Identity) -> Json<Value> {
    let mut body = match &identity {
        Identity::ApiKey(p) => {
            json!({ "scheme": "Api-Key", "key_id": p.key_id(), "service_account_id": p.service_account_id() })
        }
        Identity::Bearer(b) => json!({ "scheme": "Bearer", "subject": b.subject() }),
    };
    body["scopes"] = json!(identity.scopes());
    Json(body)
}

/// Translates the two words the tests send, so a guarded route visibly did
/// its work; any other word comes back unchanged.
async fn translate(Json(req): Json<Value>) -> Json<Value> {
    let words: Vec<&str> = req["text"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| match w {
            "hello" => "привет",
            "world" => "мир",
            other => other,
        })
        .collect();
    Json(json!({ "translations": [{ "text": words.join(" ") }] }))
}

/// The caller's scopes.
async fn monitoring(identity: Identity) -> Json<Value> {
    Json(json!({ "caller_scopes": identity.scopes() }))
}
