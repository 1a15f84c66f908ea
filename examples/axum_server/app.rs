//! The example server's routes.

use std::sync::OnceLock;
use std::time::Instant;

use api_keys::http::{ApiKeyLayer, BearerValidator, Identity, require_scope};
use api_keys::{KeyStore, ScopeCatalog, ScopeError};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// What `POST /v1/translate` requires.
pub(crate) const TRANSLATE_SCOPE: &str = "yc.ai.translate.execute";
/// What `GET /v1/monitoring` requires (`yc.monitoring.manage` implies it).
pub(crate) const MONITORING_SCOPE: &str = "yc.monitoring.read";

/// The routes with their per-route scope guards, not yet authenticated: put
/// an [`ApiKeyLayer`] around them (see [`router`]).
///
/// # Errors
/// A scope missing from `catalog` (a start-up error, not a 403 at run time).
pub(crate) fn routes(catalog: &ScopeCatalog) -> Result<Router, ScopeError> {
    Ok(Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/translate", post(translate).route_layer(require_scope(catalog, TRANSLATE_SCOPE)?))
        .route("/v1/monitoring", get(monitoring).route_layer(require_scope(catalog, MONITORING_SCOPE)?)))
}

/// The example's whole router: [`routes`] behind `auth`.
///
/// # Errors
/// See [`routes`].
pub(crate) fn router<S: KeyStore, V: BearerValidator>(
    auth: ApiKeyLayer<S, V>,
    catalog: &ScopeCatalog,
) -> Result<Router, ScopeError> {
    started();
    Ok(routes(catalog)?.layer(auth))
}

fn started() -> Instant {
    static STARTED: OnceLock<Instant> = OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Who is calling: any valid key (or accepted bearer token).
async fn whoami(identity: Identity) -> Json<Value> {
    Json(match identity {
        Identity::ApiKey(p) => json!({
            "scheme": "Api-Key",
            "key_id": p.key_id(),
            "service_account_id": p.service_account_id(),
            "scopes": p.scopes(),
        }),
        Identity::Bearer(b) => json!({
            "scheme": "Bearer",
            "subject": b.subject(),
            "scopes": b.scopes(),
        }),
    })
}

#[derive(Deserialize)]
struct TranslateRequest {
    text: String,
    target_language: String,
}

/// A toy English → Russian glossary: enough to show a scope-guarded route
/// doing real work without an external translation service.
const GLOSSARY: [(&str, &str); 8] = [
    ("hello", "привет"),
    ("world", "мир"),
    ("key", "ключ"),
    ("api", "API"),
    ("service", "сервис"),
    ("account", "аккаунт"),
    ("good", "хороший"),
    ("morning", "утро"),
];

/// Translates word by word with [`GLOSSARY`]; unknown words stay as they
/// are. Needs `yc.ai.translate.execute` (or an umbrella scope implying it).
async fn translate(Json(req): Json<TranslateRequest>) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    if req.target_language != "ru" {
        let body = json!({ "error": "only target_language \"ru\" is supported by this demo" });
        return Err((StatusCode::UNPROCESSABLE_ENTITY, Json(body)));
    }
    let words: Vec<&str> = req
        .text
        .split_whitespace()
        .map(|w| GLOSSARY.iter().find(|(en, _)| en.eq_ignore_ascii_case(w)).map_or(w, |(_, ru)| *ru))
        .collect();
    Ok(Json(json!({ "translations": [{ "text": words.join(" "), "detected_language_code": "en" }] })))
}

/// Server facts. Needs `yc.monitoring.read` (a key with
/// `yc.monitoring.manage` passes).
async fn monitoring(identity: Identity) -> Json<Value> {
    Json(json!({
        "uptime_seconds": started().elapsed().as_secs(),
        "caller_scopes": identity.scopes(),
    }))
}
