//! GitHub's secret-scanning partner endpoint: GitHub finds our keys in public
//! code and tells us; we check each one and revoke the real ones.
//!
//! `POST /v1/secret-scanning/github` ([`PATH`]) reads like the verify path:
//!
//! 1. **body** — the raw bytes, capped ([`SecretScanning::max_body_bytes`];
//!    413 beyond);
//! 2. **signature** — `Github-Public-Key-Signature` (base64 DER ECDSA
//!    P-256/SHA-256 over the raw body) under the key that
//!    `Github-Public-Key-Identifier` names ([`KeyRing`]); anything wrong is
//!    401 and nothing is touched;
//! 3. **parse** — a JSON array of `{token, type, url, source}` (400 if not);
//! 4. **classify** — each distinct token: our format and checksum
//!    ([`Token::parse`](crate::Token::parse)), then
//!    [`KeyManager::leak_status`], which checks the secret against the
//!    stored digest — a look-alike with a real id is a false positive, never
//!    a revocation. Lookups run concurrently, at most
//!    [`SecretScanning::concurrency`] at once;
//! 5. **act** — for a key of ours not yet revoked, [`LeakAction::Revoke`]
//!    (the default) revokes it, [`LeakAction::Record`] does not; either way
//!    [`LeakHook::on_leak`] is told;
//! 6. **render** — GitHub's feedback array, one entry per reported token:
//!    `{token_hash (SHA-256 hex of the token), token_type, label}` with
//!    `label` `true_positive` (one of our keys, in any state) or
//!    `false_positive`.
//!
//! The same report twice is harmless: a revoked key stays revoked and is
//! still a true positive. A store failure answers 503 (GitHub retries);
//! revocations made before it stay made, which a retry finds done.
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::admin::github::{KeyRing, PublicKeys, SecretScanning};
//! use api_keys::{KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = KeyManager::builder(
//!     Arc::new(MemoryStore::new()),
//!     Peppers::single(Pepper::generate(1)?),
//!     ScopeCatalog::yandex_cloud(),
//! )
//! .build();
//! // In production: PublicKeys::from_json(&std::fs::read("github-keys.json")?)?
//! let keys = KeyRing::fixed(PublicKeys::from_keys([]));
//! let app: axum::Router = axum::Router::new().merge(SecretScanning::new(Arc::new(manager), keys).router());
//! # let _ = app;
//! # Ok(()) }
//! ```
//!
//! # The operations log
//!
//! When the management API's operations log exists (issue 13), a revocation
//! made here should be recorded with the report's URL and source in the same
//! store operation as the revocation. Until then [`LeakHook::on_leak`] is
//! the place to record it (its default does nothing; `tracing` logs every
//! leak at `warn` with the key id and URL).

mod keys;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt as _;
use sha2::Digest as _;

pub use keys::{
    FetchFuture, KeyFile, KeyRing, MAX_KEY_IDENTIFIER_LEN, MAX_SIGNATURE_LEN, PublicKeySource, PublicKeys,
    PublicKeysError, SignatureError,
};

use crate::manager::KeyManager;
use crate::scan::{LeakCheckError, Liveness};
use crate::store::KeyStore;
use crate::token::{KeyId, Token};

/// Where the router serves the endpoint.
pub const PATH: &str = "/v1/secret-scanning/github";
/// The header naming GitHub's signing key.
pub const KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// What to do with a reported key of ours that is not revoked yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LeakAction {
    /// Revoke it at once (GitHub: "treat every reported secret as
    /// compromised"). The default.
    #[default]
    Revoke,
    /// Only record it ([`LeakHook::on_leak`], the log); the key keeps working.
    Record,
}

/// A reported token that is one of our keys, as told to [`LeakHook`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leak {
    /// The key.
    pub key_id: KeyId,
    /// Its state when the report arrived.
    pub status: Liveness,
    /// Whether this report revoked it.
    pub revoked_now: bool,
    /// GitHub's token type (the partner pattern's name).
    pub token_type: String,
    /// Where GitHub found it, if given.
    pub url: Option<String>,
    /// What GitHub scanned (`content`, `commit`, …), if given.
    pub source: Option<String>,
}

/// Told about every reported key of ours, after the [`LeakAction`].
///
/// The hook for the operations log: when it exists (issue 13), an
/// implementation records the leak (URL, source) in the key's history. The
/// default does nothing.
pub trait LeakHook: Send + Sync + 'static {
    /// Called once per distinct reported token that is one of our keys.
    fn on_leak(&self, leak: &Leak) -> impl Future<Output = ()> + Send {
        let _ = leak;
        std::future::ready(())
    }
}

/// The default [`LeakHook`]: records nothing beyond the `tracing` log.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl LeakHook for NoHook {}

/// One entry of GitHub's report.
#[derive(serde::Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type")]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

impl fmt::Debug for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reported").field("type", &self.token_type).field("url", &self.url).finish_non_exhaustive()
    }
}

/// GitHub's label for a reported token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Label {
    TruePositive,
    FalsePositive,
}

/// One entry of the feedback array.
#[derive(serde::Serialize)]
struct Feedback<'a> {
    token_hash: String,
    token_type: &'a str,
    label: Label,
}

/// The endpoint's configuration and state; [`SecretScanning::router`]
/// makes the axum router.
pub struct SecretScanning<S, H = NoHook> {
    manager: Arc<KeyManager<S>>,
    keys: Arc<KeyRing>,
    hook: Arc<H>,
    action: LeakAction,
    max_body_bytes: usize,
    concurrency: usize,
}

impl<S, H> fmt::Debug for SecretScanning<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretScanning")
            .field("keys", &self.keys)
            .field("action", &self.action)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl<S, H> Clone for SecretScanning<S, H> {
    fn clone(&self) -> Self {
        Self {
            manager: Arc::clone(&self.manager),
            keys: Arc::clone(&self.keys),
            hook: Arc::clone(&self.hook),
            action: self.action,
            max_body_bytes: self.max_body_bytes,
            concurrency: self.concurrency,
        }
    }
}

impl<S: KeyStore> SecretScanning<S, NoHook> {
    /// The endpoint over `manager`'s store and peppers, checking signatures
    /// with `keys`; revokes reported keys, no hook, 4 MiB bodies, 32
    /// lookups at once.
    pub fn new(manager: Arc<KeyManager<S>>, keys: KeyRing) -> Self {
        Self {
            manager,
            keys: Arc::new(keys),
            hook: Arc::new(NoHook),
            action: LeakAction::default(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            concurrency: Self::DEFAULT_CONCURRENCY,
        }
    }
}

impl<S: KeyStore, H: LeakHook> SecretScanning<S, H> {
    /// Largest accepted body. Defaults to 4 MiB (about 25,000 reports).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    /// Store lookups in flight at once. Defaults to 32.
    pub const DEFAULT_CONCURRENCY: usize = 32;

    /// What to do with a reported key of ours. Defaults to
    /// [`LeakAction::Revoke`].
    #[must_use]
    pub fn action(mut self, action: LeakAction) -> Self {
        self.action = action;
        self
    }

    /// Largest accepted body in bytes; larger is 413. Defaults to
    /// [`Self::DEFAULT_MAX_BODY_BYTES`].
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Store lookups in flight at once (at least 1). Defaults to
    /// [`Self::DEFAULT_CONCURRENCY`].
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Replaces the hook told about every leak of ours.
    pub fn hook<H2: LeakHook>(self, hook: H2) -> SecretScanning<S, H2> {
        SecretScanning {
            manager: self.manager,
            keys: self.keys,
            hook: Arc::new(hook),
            action: self.action,
            max_body_bytes: self.max_body_bytes,
            concurrency: self.concurrency,
        }
    }

    /// The router: `POST` [`PATH`]. Merge it into an application
    /// (`app.merge(scanning.router())`).
    pub fn router(self) -> Router {
        let limit = self.max_body_bytes;
        Router::new().route(PATH, post(handle::<S, H>)).layer(DefaultBodyLimit::max(limit)).with_state(Arc::new(self))
    }

    /// Handles a report: signature, parse, classify and act, render. The
    /// router calls this; it is public so other transports can too.
    ///
    /// # Errors
    /// [`ReportError`], which renders as its status.
    pub async fn handle_report(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, ReportError> {
        self.check_signature(headers, body).await?;
        let reports = parse_reports(body)?;
        let verdicts = self.classify_all(&reports).await?;
        Ok(render(&reports, &verdicts))
    }

    /// Step 2: the signature over the raw body.
    async fn check_signature(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ReportError> {
        let header = |name: &str, max: usize| {
            headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= max)
        };
        let identifier = header(KEY_IDENTIFIER_HEADER, MAX_KEY_IDENTIFIER_LEN);
        let signature = header(SIGNATURE_HEADER, MAX_SIGNATURE_LEN);
        let (Some(identifier), Some(signature)) = (identifier, signature) else {
            return Err(ReportError::Signature(SignatureError::MissingHeaders));
        };
        self.keys.verify(identifier, signature, body).await.map_err(ReportError::Signature)
    }

    /// Step 4 and 5 for every distinct token, at most `concurrency` at once.
    async fn classify_all<'r>(&self, reports: &'r [Reported]) -> Result<HashMap<&'r str, Label>, ReportError> {
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, r) in reports.iter().enumerate() {
            first.entry(r.token.as_str()).or_insert(i);
        }
        // Indices, not references, go through the stream: a closure taking
        // `&Reported` would have to be general over every lifetime.
        let results: Vec<(usize, Result<Label, ReportError>)> = futures_util::stream::iter(first.into_values())
            .map(|i| async move { (i, self.classify(&reports[i]).await) })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut verdicts = HashMap::with_capacity(results.len());
        for (i, label) in results {
            verdicts.insert(reports[i].token.as_str(), label?);
        }
        Ok(verdicts)
    }

    /// One token: format and checksum, store and digest, then the action.
    async fn classify(&self, report: &Reported) -> Result<Label, ReportError> {
        let Ok(token) = Token::parse(report.token.as_bytes(), self.manager.token_format()) else {
            return Ok(Label::FalsePositive);
        };
        let status = self.manager.leak_status(&token).await.map_err(ReportError::Check)?;
        if !status.is_ours() {
            return Ok(Label::FalsePositive);
        }
        let revoke = self.action == LeakAction::Revoke && status != Liveness::Revoked;
        if revoke {
            self.manager.revoke(token.id()).await.map_err(|e| ReportError::Revoke(*token.id(), e))?;
        }
        let leak = Leak {
            key_id: *token.id(),
            status,
            revoked_now: revoke,
            token_type: report.token_type.clone(),
            url: report.url.clone(),
            source: report.source.clone(),
        };
        tracing::warn!(key_id = %leak.key_id, status = %status, revoked_now = revoke, url = leak.url.as_deref().unwrap_or(""), "secret scanning: GitHub reported a leaked key");
        self.hook.on_leak(&leak).await;
        Ok(Label::TruePositive)
    }
}

/// Step 3: the JSON array. serde's message is not passed on (it can quote
/// input); only the position is.
fn parse_reports(body: &[u8]) -> Result<Vec<Reported>, ReportError> {
    serde_json::from_slice(body).map_err(|e| ReportError::Malformed { line: e.line(), column: e.column() })
}

/// Step 6: one feedback entry per reported token, in order.
fn render(reports: &[Reported], verdicts: &HashMap<&str, Label>) -> Response {
    let feedback: Vec<Feedback<'_>> = reports
        .iter()
        .map(|r| Feedback {
            token_hash: token_hash(&r.token),
            token_type: &r.token_type,
            label: verdicts.get(r.token.as_str()).copied().unwrap_or(Label::FalsePositive),
        })
        .collect();
    json_response(StatusCode::OK, &feedback)
}

/// `value` as a JSON response.
fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// SHA-256 of the token, lower-case hex (GitHub's `token_hash`).
#[must_use]
pub fn token_hash(token: &str) -> String {
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Why a report was refused. Never contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The signature headers are missing or the signature does not verify:
    /// 401.
    #[error("report signature not accepted: {0}")]
    Signature(SignatureError),
    /// The body is not a JSON array of reports: 400.
    #[error("malformed report at line {line}, column {column}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A token could not be classified (store down, unknown pepper): 503.
    #[error("cannot check a reported key")]
    Check(#[source] LeakCheckError),
    /// Revoking a reported key failed: 503.
    #[error("cannot revoke reported key {0}")]
    Revoke(KeyId, #[source] crate::manager::ManageError),
}

impl ReportError {
    /// The HTTP status this error answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
            Self::Check(_) | Self::Revoke(..) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ReportError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %error_chain(&self), "secret scanning: report not processed");
        }
        json_response(status, &serde_json::json!({ "error": self.to_string() }))
    }
}

/// An error and its sources, `: `-separated (for the log).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

async fn handle<S: KeyStore, H: LeakHook>(
    State(endpoint): State<Arc<SecretScanning<S, H>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match endpoint.handle_report(&headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn malformed_bodies_do_not_echo_input() {
        let secret_like = "\"ak_aaaaaaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbcccccc\"";
        for body in [secret_like.to_owned(), format!("[{{\"token\": 5, \"type\": {secret_like}}}]"), "[{]".to_owned()] {
            let e = parse_reports(body.as_bytes()).unwrap_err();
            assert!(!e.to_string().contains("ak_a"), "{e}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
        assert!(parse_reports(b"[]").unwrap().is_empty());
        let r = parse_reports(br#"[{"token":"x","type":"t","extra":1}]"#).unwrap();
        assert_eq!((r[0].url.as_deref(), r[0].source.as_deref()), (None, None));
    }
}
