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
//!    [`KeyManager::leak_statuses`], which checks each secret against the
//!    stored digest — a look-alike with a real id is a false positive, never
//!    a revocation. Tokens are looked up in batches of
//!    [`SecretScanning::batch_size`] (one [`KeyStore::get_many`] each: one
//!    statement on SQL, one pipeline on Redis), at most
//!    [`SecretScanning::concurrency`] batches at once;
//! 5. **act** — for each key of ours, one
//!    [`KeyDirectory::record_leak`](crate::KeyDirectory::record_leak): a [`OperationKind::Leak`](crate::OperationKind::Leak)
//!    entry in the key's operations log with the report's `url` and `source`
//!    ([`LeakDetails`]; never the token), and for a key not yet revoked
//!    under [`LeakAction::Revoke`] (the default) the revocation in the same
//!    commit; [`LeakAction::Record`] only writes the entry. Then
//!    [`LeakHook::on_leak`] is told. At most
//!    [`SecretScanning::write_concurrency`] keys at once;
//! 6. **render** — GitHub's feedback array, one entry per reported token:
//!    `{token_hash (SHA-256 hex of the token), token_type, label}` with
//!    `label` `true_positive` (one of our keys, in any state) or
//!    `false_positive`.
//!
//! The same report twice is harmless: a revoked key stays revoked and is
//! still a true positive, and its leak entry is not written again (the
//! entry's id is derived from the key and the URL,
//! [`OperationId::of_leak`](crate::OperationId::of_leak), so the store
//! refuses the copy): the second report writes nothing at all. Under
//! [`LeakAction::Revoke`], a key that an earlier report only recorded is
//! revoked now, with no second leak entry. A store failure answers 503
//! (GitHub retries); keys handled before it stay handled, which a retry
//! finds done.
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::scan::github::{KeyRing, PublicKeys, SecretScanning};
//! use api_keys::{KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = KeyManager::builder(
//!     Arc::new(MemoryStore::new()),
//!     Peppers::single(Pepper::generate(1)?),
//!     ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?,
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
//! Entries are written by the actor [`SecretScanning::DEFAULT_ACTOR`]
//! (`github-secret-scanning`; [`SecretScanning::actor`] changes it) and read
//! like any other: `GET /iam/v1/apiKeys/{id}/operations`,
//! [`KeyDirectory::operations`](crate::KeyDirectory::operations). `tracing` also logs
//! every leak at `warn` with the key id and URL; [`LeakHook::on_leak`] is
//! told about each (its default does nothing).

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

use super::{LeakCheckError, Liveness};
use crate::manager::{KeyManager, ManageError};
use crate::operation::{Actor, LeakDetails};
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
    /// Only record it (the operations log, [`LeakHook::on_leak`]); the key
    /// keeps working.
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
    /// Whether this report wrote its leak entry (`false` when the key's log
    /// already held it: the same report again).
    pub recorded: bool,
    /// GitHub's token type (the partner pattern's name).
    pub token_type: String,
    /// Where GitHub found it, if given.
    pub url: Option<String>,
    /// What GitHub scanned (`content`, `commit`, …), if given.
    pub source: Option<String>,
}

/// Told about every reported key of ours, after the [`LeakAction`] and the
/// operations log entry (alerting, a ticket, a message to the key's owner).
/// The default does nothing.
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
    write_concurrency: usize,
    batch_size: usize,
}

impl<S, H> fmt::Debug for SecretScanning<S, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretScanning")
            .field("keys", &self.keys)
            .field("action", &self.action)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("concurrency", &self.concurrency)
            .field("write_concurrency", &self.write_concurrency)
            .field("batch_size", &self.batch_size)
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
            write_concurrency: self.write_concurrency,
            batch_size: self.batch_size,
        }
    }
}

impl<S: KeyStore> SecretScanning<S, NoHook> {
    /// The endpoint over `manager`'s store and peppers, checking signatures
    /// with `keys`; revokes reported keys, logs as
    /// [`SecretScanning::DEFAULT_ACTOR`], no hook, 4 MiB bodies, batches of
    /// 500 tokens, 32 lookups and 16 writes at once.
    pub fn new(manager: Arc<KeyManager<S>>, keys: KeyRing) -> Self {
        let actor = Actor::new(Self::DEFAULT_ACTOR).unwrap_or_else(|_| Actor::system());
        Self {
            manager: Arc::new(manager.with_actor(actor)),
            keys: Arc::new(keys),
            hook: Arc::new(NoHook),
            action: LeakAction::default(),
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            concurrency: Self::DEFAULT_CONCURRENCY,
            write_concurrency: Self::DEFAULT_WRITE_CONCURRENCY,
            batch_size: Self::DEFAULT_BATCH_SIZE,
        }
    }
}

impl<S: KeyStore, H: LeakHook> SecretScanning<S, H> {
    /// Largest accepted body. Defaults to 4 MiB (about 25,000 reports).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    /// Batched lookups in flight at once. Defaults to 32.
    pub const DEFAULT_CONCURRENCY: usize = 32;
    /// Writes (leak entries, revocations) in flight at once. Defaults to 16.
    pub const DEFAULT_WRITE_CONCURRENCY: usize = 16;
    /// Tokens per batched lookup. Defaults to 500.
    pub const DEFAULT_BATCH_SIZE: usize = 500;
    /// The actor of the operations log entries written here.
    pub const DEFAULT_ACTOR: &'static str = "github-secret-scanning";

    /// The actor recorded in the operations log for the entries (and
    /// revocations) this endpoint writes. Defaults to
    /// [`Self::DEFAULT_ACTOR`].
    #[must_use]
    pub fn actor(mut self, actor: Actor) -> Self {
        self.manager = Arc::new(self.manager.with_actor(actor));
        self
    }

    /// Tokens per batched store lookup (at least 1). Defaults to
    /// [`Self::DEFAULT_BATCH_SIZE`].
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

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

    /// Batched lookups in flight at once (at least 1). Defaults to
    /// [`Self::DEFAULT_CONCURRENCY`].
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Writes in flight at once (at least 1): one commit per reported key
    /// of ours (its leak entry, and its revocation). Defaults to
    /// [`Self::DEFAULT_WRITE_CONCURRENCY`]: writers to one database queue
    /// on its locks (SQLite has a single writer), and too many at once only
    /// wait out the store timeout.
    #[must_use]
    pub fn write_concurrency(mut self, n: usize) -> Self {
        self.write_concurrency = n.max(1);
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
            write_concurrency: self.write_concurrency,
            batch_size: self.batch_size,
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

    /// Steps 4 and 5 for every distinct token: lookups in batches, then the
    /// action for each key of ours.
    async fn classify_all<'r>(&self, reports: &'r [Reported]) -> Result<HashMap<&'r str, Label>, ReportError> {
        let mut verdicts: HashMap<&str, Label> = HashMap::new();
        // The first report of each distinct token in our format.
        let mut candidates = Vec::new();
        for (i, r) in reports.iter().enumerate() {
            if verdicts.insert(r.token.as_str(), Label::FalsePositive).is_none()
                && Token::parse(r.token.as_bytes(), self.manager.token_format()).is_ok()
            {
                candidates.push(i);
            }
        }
        // Indices, not references, go through the streams: a closure taking
        // `&Reported` would have to be general over every lifetime.
        let batches: Vec<Result<Vec<Found>, ReportError>> =
            futures_util::stream::iter(candidates.chunks(self.batch_size).map(<[usize]>::to_vec))
                .map(|batch| async move { self.look_up(reports, &batch).await })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut ours = Vec::new();
        for batch in batches {
            ours.extend(batch?.into_iter().filter(|f| f.status.is_ours()));
        }
        let acted: Vec<Result<usize, ReportError>> = futures_util::stream::iter(ours)
            .map(|found| async move { self.act(&reports[found.index], found).await.map(|()| found.index) })
            .buffer_unordered(self.write_concurrency)
            .collect()
            .await;
        for index in acted {
            verdicts.insert(reports[index?].token.as_str(), Label::TruePositive);
        }
        Ok(verdicts)
    }

    /// Step 4 for one batch of report indices (tokens in our format): one
    /// batched lookup, each secret checked against its record.
    async fn look_up(&self, reports: &[Reported], batch: &[usize]) -> Result<Vec<Found>, ReportError> {
        let format = self.manager.token_format();
        let parsed: Vec<(usize, Token<'_>)> = batch
            .iter()
            .filter_map(|&i| Token::parse(reports[i].token.as_bytes(), format).ok().map(|t| (i, t)))
            .collect();
        let tokens: Vec<Token<'_>> = parsed.iter().map(|(_, t)| *t).collect();
        let statuses = self.manager.leak_statuses(&tokens).await.map_err(ReportError::Check)?;
        Ok(parsed
            .iter()
            .zip(statuses)
            .map(|((index, t), status)| Found { index: *index, id: *t.id(), status })
            .collect())
    }

    /// Step 5 for one key of ours: the leak entry (and, if the action says
    /// so and the key is not revoked yet, the revocation in the same
    /// commit), then the hook. A key deleted since the lookup has no log to
    /// write to and is left alone.
    async fn act(&self, report: &Reported, found: Found) -> Result<(), ReportError> {
        let revoke = self.action == LeakAction::Revoke && found.status != Liveness::Revoked;
        let place = LeakDetails::new(report.source.as_deref(), report.url.as_deref(), &report.token);
        let (revoked_now, recorded) = match self.manager.record_leak(&found.id, &[place], revoke).await {
            Ok(done) => (done.revoked, !done.entries.is_empty()),
            Err(ManageError::NotFound(_)) => (false, false),
            Err(e) => return Err(ReportError::Revoke(found.id, e)),
        };
        let leak = Leak {
            key_id: found.id,
            status: found.status,
            revoked_now,
            recorded,
            token_type: report.token_type.clone(),
            url: report.url.clone(),
            source: report.source.clone(),
        };
        tracing::warn!(key_id = %leak.key_id, status = %leak.status, revoked_now, recorded, url = leak.url.as_deref().unwrap_or(""), "secret scanning: GitHub reported a leaked key");
        self.hook.on_leak(&leak).await;
        Ok(())
    }
}

/// A reported token in our format, as the store classified it.
#[derive(Debug, Clone, Copy)]
struct Found {
    /// Its first report.
    index: usize,
    id: KeyId,
    status: Liveness,
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
    /// Recording (or revoking) a reported key failed: 503.
    #[error("cannot record or revoke reported key {0}")]
    Revoke(KeyId, #[source] ManageError),
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
