//! The router and its handlers.
//!
//! | method | path | body / query | returns |
//! |---|---|---|---|
//! | create | `POST /apiKeys` | [`CreateApiKeyRequest`] | [`CreateApiKeyResponse`](super::types::CreateApiKeyResponse) (the only time the secret appears) |
//! | get | `GET /apiKeys/{apiKeyId}` | | [`ApiKey`] |
//! | list | `GET /apiKeys?serviceAccountId=&pageSize=&pageToken=` | pageSize 0–1000 (0: 100); no `serviceAccountId`: the caller's own, for a caller limited to one | [`ListApiKeysResponse`](super::types::ListApiKeysResponse) |
//! | list by owner | `GET /apiKeys?externalId=&pageSize=&pageToken=` | across service accounts | [`ListApiKeysResponse`](super::types::ListApiKeysResponse) (the keys of the accounts the caller may list) |
//! | list expiring | `GET /apiKeys?expiringWithin=604800s&pageSize=&pageToken=` | active keys expiring within the window, across service accounts | [`ListApiKeysResponse`](super::types::ListApiKeysResponse) (as above) |
//! | update | `PATCH /apiKeys/{apiKeyId}` | [`UpdateApiKeyRequest`] | [`OperationView`] whose `response` is the updated key |
//! | delete | `DELETE /apiKeys/{apiKeyId}` | | [`OperationView`] (`response` `google.protobuf.Empty`) |
//! | reissue | `POST /apiKeys/{apiKeyId}:reissue` | [`ReissueApiKeyRequest`] | [`CreateApiKeyResponse`](super::types::CreateApiKeyResponse) of the new key |
//! | revoke | `POST /apiKeys/{apiKeyId}:revoke` | | [`OperationView`] whose `response` is the revoked key |
//! | operations | `GET /apiKeys/{apiKeyId}/operations?pageSize=&pageToken=` | | [`ListOperationsResponse`], newest first; also for a deleted key |
//! | scopes | `GET /apiKeyScopes?pageSize=&pageToken=` | | [`ListScopesResponse`]; with `view=FULL` [`ListScopesFullResponse`] |
//! | document | `GET /openapi.json` | | the OpenAPI 3.1 document |
//! | console | `GET /console` | | the web console (`super::console`, feature `console`) |
//!
//! Answers have the cloud's shape; `view=FULL` (any route) adds the
//! project's extension fields ([`super::view`]). Each handler reads like the
//! verifier: authenticate ([`AdminAuth`]) → parse → authorize on the key's
//! service account → one manager call (with the caller as the operations
//! log's actor) → render. A key the caller may not see is "not found"
//! (code 5), like a key that does not exist. Errors are [`ApiError`]s:
//! `{code, message, details}` with a `google.rpc.Code` and its HTTP status.
//! Bodies are capped ([`DEFAULT_BODY_LIMIT`]); bad JSON, wrong types,
//! unknown fields and oversized bodies are code 3 (HTTP 400). Mutating
//! calls accept `Idempotency-Key` ([`super::idempotency`]) and run to their
//! end even when the client goes away. Every answer says
//! `Cache-Control: no-store`. Failed authentications are logged (without
//! the credentials) and throttled per client address (code 8, HTTP 429).
//! Page tokens are opaque: sealed ([`AdminApi::page_token_secret`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::auth::{AdminAction, AdminAuth, AdminCaller, AdminRejection, client_address};
use super::error::{ApiError, Code};
use super::idempotency::{self, Begin, Idempotency, IdempotencyConfig};
use super::page_token::PageTokens;
use super::sealed::{self, Recipient};
use super::throttle::AuthThrottle;
use super::types::{
    ApiCredits, ApiKey, ApiKeyScope, CreateApiKeyRequest, ListOperationsResponse, ListScopesFullResponse,
    ListScopesResponse, OperationView, ReissueApiKeyRequest, RevokeApiKeyRequest, ScopesAnswer, UpdateApiKeyRequest,
};
use super::view::{self, View};
use crate::access_binding::Permission;
use crate::clock::Timestamp;
use crate::controls::{ControlError, Credits, ExternalId, IpAllowList, KeyControls, Metadata, RateLimit, RateLimits};
use crate::http::TrustedProxies;
use crate::manager::{CreateRequest, KeyManager, ManageError, UpdateRequest};
use crate::operation::{Operation, OperationCursor, OperationKind};
use crate::record::{CreatedKey, KeyInfo, KeyStatus, ServiceAccountId};
use crate::resource::ResourceRef;
use crate::scope::ScopeInfo;
use crate::store::idempotency::IdempotencyClaim;
use crate::store::{KeyStore, PageRequest};
use crate::token::KeyId;

/// The permission a key action needs on the key's service account.
fn key_permission(action: AdminAction) -> Permission {
    match action {
        AdminAction::Get | AdminAction::List | AdminAction::ListOperations => Permission::ReadKeys,
        _ => Permission::ManageKeys,
    }
}

/// The default cap on request bodies: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The page size when none (or 0) is asked for.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// The longest grace period a reissue accepts: 365 days.
const MAX_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest `expiringWithin` a listing accepts: 3650 days.
const MAX_EXPIRY_WINDOW: Duration = Duration::from_secs(3650 * 24 * 3600);
/// The longest service account id a request may name (the cloud's limit).
const MAX_SERVICE_ACCOUNT_ID: usize = 50;
/// The latest expiry a key may have: 2105-12-31T23:59:59.999999999Z (the
/// cloud's limit), in nanoseconds since the epoch.
const MAX_EXPIRY_NANOS: i64 = 4_291_747_199_999_999_999;
/// Page-token tags of the three listings.
const KEYS: u8 = b'k';
const OPERATIONS: u8 = b'o';
const SCOPES: u8 = b's';

/// The management API over a [`KeyManager`], authenticated by an
/// [`AdminAuth`]. [`AdminApi::router`] makes the axum router.
pub struct AdminApi<S, A> {
    pub(super) manager: KeyManager<S>,
    pub(super) auth: A,
    idempotency: Idempotency,
    pub(super) body_limit: usize,
    pub(super) tokens: PageTokens,
    throttle: AuthThrottle,
    trusted: Option<TrustedProxies>,
    pub(super) access: super::access::AccessControl,
}

impl<S, A> std::fmt::Debug for AdminApi<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi").field("body_limit", &self.body_limit).finish_non_exhaustive()
    }
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// The API over `manager`, authenticated by `auth`.
    #[must_use]
    pub fn new(manager: KeyManager<S>, auth: A) -> Self {
        // Without the OS random generator no page token can be sealed
        // anyway (each needs a fresh nonce), so the fallback key is unused.
        let tokens = PageTokens::random().unwrap_or_else(|_| PageTokens::new(&[0; 32]));
        Self {
            manager,
            auth,
            idempotency: Idempotency::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            tokens,
            throttle: AuthThrottle::default(),
            trusted: None,
            access: super::access::AccessControl::default(),
        }
    }

    /// Largest accepted request body; larger ones get code 3 (HTTP 400).
    /// Defaults to [`DEFAULT_BODY_LIMIT`].
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long `Idempotency-Key` records count (they live in the key
    /// store, see [`super::idempotency`]). Defaults to
    /// [`IdempotencyConfig::default`] (24 hours).
    #[must_use]
    pub fn idempotency(mut self, config: IdempotencyConfig) -> Self {
        self.idempotency = Idempotency::new(config);
        self
    }

    /// The secret page tokens are sealed with; nodes behind one address
    /// must share it so a listing can continue on any of them. Defaults to
    /// a random secret (tokens are valid on this node, until it restarts).
    #[must_use]
    pub fn page_token_secret(mut self, secret: &[u8; 32]) -> Self {
        self.tokens = PageTokens::new(secret);
        self
    }

    /// Reads the client's address (for the failed-authentication throttle
    /// and log) from these proxies' forwarding header. Defaults to none:
    /// the peer address is the client's.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted = Some(proxies);
        self
    }

    /// The router, to nest at `/iam/v1`; with the feature `console` it
    /// includes the console (`admin::console`) at `/console`.
    pub fn router(self) -> Router {
        self.shared().iam()
    }

    /// The API's routers over one shared state (admin authentication, the
    /// failed-authentication throttle, `Idempotency-Key` rules, page tokens).
    #[must_use]
    pub fn shared(self) -> AdminRouters<S, A> {
        AdminRouters { api: Arc::new(self) }
    }
}

/// The routers of one [`AdminApi`], sharing its state: [`AdminRouters::iam`]
/// (the REST API and, with the feature `console`, the console, to nest at
/// `/iam/v1`),
/// [`AdminRouters::operations`] (`GET /operations/{operationId}` at the
/// root, as the cloud serves it) and, with the feature `grpc`, the gRPC
/// services.
pub struct AdminRouters<S, A> {
    pub(super) api: Arc<AdminApi<S, A>>,
}

impl<S, A> std::fmt::Debug for AdminRouters<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRouters").finish_non_exhaustive()
    }
}

impl<S: KeyStore, A: AdminAuth> AdminRouters<S, A> {
    /// The REST API and, with the feature `console`, the console
    /// (`admin::console`), to nest at `/iam/v1`; it serves the operations
    /// too (`/iam/v1/operations/{operationId}`).
    pub fn iam(&self) -> Router {
        let api = Router::new()
            .route("/apiKeys", get(list::<S, A>).post(create::<S, A>))
            .route(
                "/apiKeys/{apiKeyId}",
                get(get_key::<S, A>).patch(update::<S, A>).delete(delete::<S, A>).post(custom::<S, A>),
            )
            .route("/apiKeys/{apiKeyId}/operations", get(operations::<S, A>))
            .route("/apiKeyScopes", get(scopes::<S, A>))
            .merge(super::resources::rest::iam_routes())
            .route(super::operations::ROUTE, get(super::operations::get::<S, A>))
            .route("/openapi.json", get(openapi))
            .fallback(|| async { ApiError::new(Code::NotFound, "no such resource") })
            .with_state(Arc::clone(&self.api))
            .layer(axum::middleware::map_response(no_store));
        with_console(api)
    }

    /// The resource managers' routes, to merge at the root:
    /// `/resource-manager/v1/folders`, `/resource-manager/v1/clouds` and
    /// `/organization-manager/v1/organizations` (service accounts are in
    /// [`AdminRouters::iam`], at `/iam/v1/serviceAccounts`).
    pub fn resource_managers(&self) -> Router {
        use super::resources::{CLOUDS, FOLDERS, ORGANIZATIONS, rest::routes};
        Router::new()
            .merge(routes(FOLDERS, "/resource-manager/v1/folders"))
            .merge(routes(CLOUDS, "/resource-manager/v1/clouds"))
            .merge(routes(ORGANIZATIONS, "/organization-manager/v1/organizations"))
            .with_state(Arc::clone(&self.api))
            .layer(axum::middleware::map_response(no_store))
    }

    /// `GET /operations/{operationId}` and `GET /operations/{operationId}:cancel`,
    /// to merge at the root (where the cloud's SDKs and REST clients look).
    pub fn operations(&self) -> Router {
        Router::new()
            .route(super::operations::ROUTE, get(super::operations::get::<S, A>))
            .with_state(Arc::clone(&self.api))
            .layer(axum::middleware::map_response(no_store))
    }
}

/// `api` with the console's routes merged (feature `console`).
#[cfg(feature = "console")]
fn with_console(api: Router) -> Router {
    api.merge(super::console::router())
}

/// `api` as it is: the console is not built (no feature `console`).
#[cfg(not(feature = "console"))]
fn with_console(api: Router) -> Router {
    api
}

/// Every answer of the API may carry a secret or key data: no cache keeps it.
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) type Shared<S, A> = State<Arc<AdminApi<S, A>>>;

/// What a handler of one key (`/apiKeys/{apiKeyId}` and below) is called
/// with: the API, the key id as the path gives it, and the request.
struct KeyCall<S, A> {
    api: Arc<AdminApi<S, A>>,
    id: String,
    parts: Parts,
    body: Body,
}

impl<S: KeyStore, A: AdminAuth> FromRequest<Arc<AdminApi<S, A>>> for KeyCall<S, A> {
    type Rejection = Response;

    async fn from_request(request: Request, api: &Arc<AdminApi<S, A>>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let Path(id) =
            Path::<String>::from_request_parts(&mut parts, api).await.map_err(IntoResponse::into_response)?;
        Ok(Self { api: Arc::clone(api), id, parts, body })
    }
}

// ----- steps shared by the handlers -----

fn rejection(r: AdminRejection) -> ApiError {
    match r {
        AdminRejection::Unauthenticated => ApiError::new(Code::Unauthenticated, r.to_string()),
        AdminRejection::Forbidden(m) => ApiError::new(Code::PermissionDenied, m),
        _ => ApiError::new(Code::Unavailable, r.to_string()),
    }
}

/// "Not found", worded as for a key that does not exist.
fn not_found(id: KeyId) -> ApiError {
    ApiError::from(ManageError::NotFound(id))
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// The caller, unless its address is throttled for failed
    /// authentications; a failure is logged (never the credentials) and
    /// counted. A client a trusted proxy does not name (no or an
    /// unreadable forwarding header) is counted as the proxy, so hiding
    /// one's address never escapes the throttle.
    pub(super) async fn authenticate(&self, parts: &Parts) -> Result<AdminCaller, ApiError> {
        let ip = client_address(self.trusted.as_ref(), parts)
            .or_else(|| crate::http::peer_addr(&parts.extensions).map(|peer| peer.to_canonical()));
        let now = Instant::now();
        if let Some(wait) = ip.and_then(|ip| self.throttle.blocked(ip, now)) {
            return Err(ApiError::new(
                Code::ResourceExhausted,
                format!("too many failed admin authentications from this address; retry in {} s", wait.as_secs() + 1),
            ));
        }
        match self.auth.authenticate(parts).await {
            Ok(caller) => Ok(caller),
            Err(r) => {
                tracing::warn!(
                    client = ?ip, method = %parts.method, path = parts.uri.path(), reason = %r,
                    "admin authentication failed"
                );
                if let (Some(ip), AdminRejection::Unauthenticated) = (ip, &r) {
                    self.throttle.fail(ip, now);
                }
                Err(rejection(r))
            }
        }
    }

    async fn authorize(
        &self,
        caller: &AdminCaller,
        action: AdminAction,
        sa: &ServiceAccountId,
    ) -> Result<(), ApiError> {
        if caller.as_subject().is_some() {
            return self.require(caller, key_permission(action), &ResourceRef::ServiceAccount(sa.clone())).await;
        }
        if self.auth.allows(caller, action, sa) {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::PermissionDenied,
                format!("not allowed to manage the keys of service account {sa}"),
            ))
        }
    }

    /// The key, if the caller may do `action` on its account; a key it may
    /// not see is "not found".
    pub(super) async fn key_for(
        &self,
        caller: &AdminCaller,
        action: AdminAction,
        raw: &str,
    ) -> Result<KeyInfo, ApiError> {
        let id = parse_id(raw)?;
        let key = self.manager.get(&id).await?;
        if caller.as_subject().is_some() {
            let account = ResourceRef::ServiceAccount(key.service_account_id.clone());
            return match self.require(caller, key_permission(action), &account).await {
                Ok(()) => Ok(key),
                // A key it may not see is as missing as a missing one.
                Err(e) if e.code() == super::error::Code::NotFound => Err(not_found(id)),
                Err(e) => Err(e),
            };
        }
        if !self.auth.allows(caller, action, &key.service_account_id) {
            return Err(not_found(id));
        }
        Ok(key)
    }

    /// The service account a request names, or the caller's own when it
    /// names none (`None` or `""`, as proto3 reads an empty string).
    fn service_account(&self, caller: &AdminCaller, named: Option<&str>) -> Result<ServiceAccountId, ApiError> {
        match named.filter(|s| !s.is_empty()) {
            Some(sa) => parse_service_account(sa),
            None => caller.default_service_account().cloned().ok_or_else(|| {
                ApiError::invalid("serviceAccountId is required: this caller does not stand for one service account")
            }),
        }
    }

    /// Refuses scopes the caller may not grant.
    fn check_grant(&self, caller: &AdminCaller, scopes: Option<&[String]>) -> Result<(), ApiError> {
        let resolved = self.manager.catalog().resolve(scopes).map_err(ManageError::from)?;
        caller.may_grant(self.manager.catalog(), &resolved).map_err(|scope| {
            ApiError::new(Code::PermissionDenied, format!("may not grant {scope}: the calling key does not hold it"))
        })
    }

    /// The start of every change: the caller, the view, the raw body and,
    /// for a request with an `Idempotency-Key`, its claim. A repeat of a
    /// request whose change landed ends here, answered with its replay (or
    /// refused), as does any failure.
    async fn head(&self, parts: &Parts, body: Body) -> Result<Head, Response> {
        let caller = self.authenticate(parts).await.map_err(IntoResponse::into_response)?;
        let view = View::of(parts).map_err(IntoResponse::into_response)?;
        let raw = axum::body::to_bytes(body, self.body_limit)
            .await
            .map_err(|_| ApiError::too_large(self.body_limit).into_response())?;
        let key = idempotency_key(parts).map_err(IntoResponse::into_response)?;
        let print = || idempotency::fingerprint(parts.method.as_str(), parts.uri.path(), &raw);
        match self.claim(&caller, key, print).await {
            Ok(claim) => Ok(Head { caller, view, raw, claim }),
            Err(recorded) => Err(render(recorded, view)),
        }
    }

    /// The key the caller may apply `action` to, for a change whose body
    /// is empty (`{}` or nothing).
    async fn bodiless(&self, head: &Head, action: AdminAction, id: &str) -> Result<KeyInfo, ApiError> {
        let RevokeApiKeyRequest {} = parse(&head.raw, true)?;
        self.key_for(&head.caller, action, id).await
    }

    /// The claim of a change by `caller` (REST and gRPC): `None` without an
    /// `Idempotency-Key`; with one, the claim of the request with the
    /// `fingerprint` (computed only then), or, for a repeat of a request whose change landed,
    /// the outcome to answer instead of running (its replay or refusal).
    pub(super) async fn claim<R>(
        &self,
        caller: &AdminCaller,
        key: Option<uuid::Uuid>,
        fingerprint: impl FnOnce() -> [u8; 32],
    ) -> Result<Option<IdempotencyClaim>, Outcome<R>> {
        let Some(key) = key else { return Ok(None) };
        let claim =
            self.idempotency.claim(caller.actor(), &key.hyphenated().to_string(), fingerprint(), self.manager.now());
        match self.idempotency.begin(&**self.manager.store(), claim).await {
            Ok(Begin::Run(claim)) => Ok(Some(claim)),
            Ok(recorded) => Err(Outcome::recorded(recorded)),
            Err(e) => Err(Outcome::Ran(Err(ApiError::from(ManageError::Store(e))))),
        }
    }

    /// Runs `change` on what was prepared (REST and gRPC) with a manager
    /// that logs `caller` as the actor and carries the request's `claim`,
    /// in a task of its own (so it ends, and its record lands with it,
    /// whatever the client's connection does). A failure (of the
    /// preparation or the change) with a claim and a client error answers
    /// the record its key has by then, if any ([`Idempotency::settle`]).
    pub(super) async fn change_keyed<T, R, F, Fut>(
        &self,
        caller: &AdminCaller,
        claim: Option<IdempotencyClaim>,
        prepared: Result<T, ApiError>,
        change: F,
    ) -> Outcome<R>
    where
        F: FnOnce(KeyManager<S>, T) -> Fut,
        Fut: Future<Output = Result<R, ApiError>> + Send + 'static,
        R: Send + 'static,
    {
        let input = match prepared {
            Ok(input) => input,
            Err(e) => return self.failed(claim.as_ref(), e).await,
        };
        let mut manager = self.manager.with_actor(caller.actor().clone());
        if let Some(c) = &claim {
            manager = manager.with_idempotency(c.clone());
        }
        match detached(change(manager, input)).await {
            Ok(answer) => Outcome::Ran(Ok(answer)),
            Err(e) => self.failed(claim.as_ref(), e).await,
        }
    }

    /// The end of every REST change: [`AdminApi::change_keyed`], rendered
    /// (a replay from its logged operation, marked
    /// `Idempotent-Replayed: true`).
    async fn change<T, F, Fut>(&self, head: Head, prepared: Result<T, ApiError>, change: F) -> Response
    where
        F: FnOnce(KeyManager<S>, T, View) -> Fut,
        Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
    {
        let Head { caller, view, claim, .. } = head;
        let outcome =
            self.change_keyed(&caller, claim, prepared, move |manager, input| change(manager, input, view)).await;
        render(outcome, view)
    }

    /// The outcome of a request that failed with `e`: with an
    /// `Idempotency-Key` and a client error (a concurrent twin's commit
    /// landing first included), the twin's record if there is one now;
    /// else `e`.
    pub(super) async fn failed<R>(&self, claim: Option<&IdempotencyClaim>, e: ApiError) -> Outcome<R> {
        let Some(claim) = claim.filter(|_| e.status().is_client_error()) else { return Outcome::Ran(Err(e)) };
        match self.idempotency.settle(&**self.manager.store(), claim).await {
            Ok(Some(recorded)) => Outcome::recorded(recorded),
            Ok(None) => Outcome::Ran(Err(e)),
            Err(store) => Outcome::Ran(Err(ApiError::from(ManageError::Store(store)))),
        }
    }
}

/// What every REST change starts from (see [`AdminApi::head`]).
struct Head {
    caller: AdminCaller,
    view: View,
    raw: Bytes,
    claim: Option<IdempotencyClaim>,
}

/// Parses a JSON body; with `optional`, an empty (or blank) body is
/// `T::default()`.
pub(super) fn parse<T: DeserializeOwned + Default>(raw: &[u8], optional: bool) -> Result<T, ApiError> {
    if optional && raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(raw).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// What a change came to, for any transport: its own answer (of type `R`),
/// the logged operation of the first request with the same
/// `Idempotency-Key` (to answer as a replay), or a refusal of the repeat.
pub(super) enum Outcome<R> {
    /// It ran (or its preparation or change failed).
    Ran(Result<R, ApiError>),
    /// A repeat of a request whose change landed: its logged operation
    /// (the response snapshot; never a secret).
    Replayed(Box<Operation>),
    /// A repeat of a resource change that landed: its logged operation.
    ReplayedResource(Box<crate::resource::ResourceOperation>),
    /// A repeat refused: the key was used with another request, or its
    /// change's log entry is no longer kept.
    Refused(ApiError),
}

impl<R> Outcome<R> {
    /// The outcome of a request meeting its key's record.
    fn recorded(recorded: Begin) -> Self {
        let refused = |message: &str| Self::Refused(ApiError::new(Code::FailedPrecondition, message));
        match recorded {
            Begin::Mismatch => Self::Refused(mismatch()),
            Begin::Replay(op) => Self::Replayed(op),
            Begin::ReplayResource(op) => Self::ReplayedResource(op),
            Begin::Forgotten => refused(
                "this Idempotency-Key's change was made, but its operation is no longer kept: its answer cannot be \
                 given again",
            ),
            _ => Self::Refused(ApiError::new(Code::Aborted, "the Idempotency-Key's record changed meanwhile; retry")),
        }
    }
}

/// The refusal of a key used with a different request.
pub(super) fn mismatch() -> ApiError {
    ApiError::new(
        Code::FailedPrecondition,
        "this Idempotency-Key was used with a different request in the last 24 hours",
    )
}

/// Runs `call` in a task the request's cancellation does not reach.
pub(super) async fn detached<F, R>(call: F) -> Result<R, ApiError>
where
    F: Future<Output = Result<R, ApiError>> + Send + 'static,
    R: Send + 'static,
{
    tokio::spawn(call)
        .await
        .unwrap_or_else(|_| Err(ApiError::new(Code::Internal, "the change ended without an answer")))
}

/// The REST answer of a change's outcome; a replay is rebuilt from its
/// logged operation and marked `Idempotent-Replayed: true`.
fn render(outcome: Outcome<Answer>, view: View) -> Response {
    match outcome {
        Outcome::Ran(Ok(answer)) => answer.into_response(),
        Outcome::Ran(Err(e)) | Outcome::Refused(e) => e.into_response(),
        // A key route's request never has a resource change's fingerprint.
        Outcome::ReplayedResource(_) => mismatch().into_response(),
        Outcome::Replayed(op) => match replayed(&op, view) {
            Ok(answer) => {
                let mut r = answer.into_response();
                r.headers_mut().insert(idempotency::REPLAYED_HEADER, HeaderValue::from_static("true"));
                r
            }
            Err(e) => e.into_response(),
        },
    }
}

/// The answer of a logged change, rebuilt from its response snapshot as
/// the change first answered it (a new key without its secret).
fn replayed(op: &Operation, view: View) -> Result<Answer, ApiError> {
    let key = || {
        op.response
            .as_ref()
            .map(|k| view.key(serde_json::to_value(ApiKey::from(k)).unwrap_or_default()))
            .ok_or_else(|| ApiError::new(Code::FailedPrecondition, "the recorded change kept no answer to give again"))
    };
    Ok(match op.kind {
        OperationKind::Create | OperationKind::Import | OperationKind::Reissue => {
            Answer::ok(&serde_json::json!({ "apiKey": key()? }))
        }
        OperationKind::Update | OperationKind::Revoke => {
            Answer::ok(&OperationView::new(op, Some(view::any(view::API_KEY, key()?)), view))
        }
        OperationKind::Delete => {
            Answer::ok(&OperationView::new(op, Some(view::any(view::EMPTY, serde_json::json!({}))), view))
        }
        _ => return Err(ApiError::new(Code::FailedPrecondition, "the recorded change has no answer to give again")),
    })
}

/// A successful REST answer.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

impl Answer {
    fn ok<T: serde::Serialize>(value: &T) -> Self {
        Self { status: StatusCode::OK, body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()) }
    }

    /// A new key with its secret, shown in `view` (a replay gets it
    /// without); with a recipient `to`, the secret encrypted to it
    /// (`encryptedSecret`) and never the plain one.
    fn created(api_key: &ApiKey, created: &CreatedKey, to: Option<&Recipient>, view: View) -> Result<Self, ApiError> {
        let key = view.key(serde_json::to_value(api_key).unwrap_or_default());
        Ok(match to {
            Some(to) => Self::ok(&serde_json::json!({ "apiKey": key, "encryptedSecret": sealed::seal(to, created)? })),
            None => Self::ok(&serde_json::json!({ "apiKey": key, "secret": created.secret.expose_secret() })),
        })
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        json_response(self.status, self.body)
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON answer of `value`.
pub(super) fn json(value: &impl serde::Serialize) -> Response {
    json_response(StatusCode::OK, Bytes::from(serde_json::to_vec(value).unwrap_or_default()))
}

/// The `Idempotency-Key` of a request (a header, or gRPC metadata), if any.
///
/// # Errors
/// Code 3 for a key sent twice or not a UUID.
pub(super) fn idempotency_key(parts: &Parts) -> Result<Option<uuid::Uuid>, ApiError> {
    let mut values = parts.headers.get_all(idempotency::HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid("Idempotency-Key must be sent once"));
    }
    let text = value.to_str().map_err(|_| ApiError::invalid("Idempotency-Key must be a UUID"))?;
    uuid::Uuid::parse_str(text).map(Some).map_err(|_| ApiError::invalid("Idempotency-Key must be a UUID"))
}

pub(super) fn parse_id(raw: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(raw).map_err(|e| ApiError::invalid(format!("apiKeyId: {e}")))
}

fn parse_service_account(text: &str) -> Result<ServiceAccountId, ApiError> {
    if text.len() > MAX_SERVICE_ACCOUNT_ID {
        return Err(ApiError::invalid(format!("serviceAccountId: at most {MAX_SERVICE_ACCOUNT_ID} characters")));
    }
    ServiceAccountId::new(text).map_err(|e| ApiError::invalid(format!("serviceAccountId: {e}")))
}

/// An RFC 3339 time no later than 2105-12-31T23:59:59.999999999Z.
fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    let t = Timestamp::parse_rfc3339(text).map_err(|e| ApiError::invalid(format!("{field}: {e}")))?;
    if t.unix_nanos() > MAX_EXPIRY_NANOS {
        return Err(ApiError::invalid(format!("{field}: at most 2105-12-31T23:59:59.999999999Z")));
    }
    Ok(t)
}

/// Refuses a scope list with a name given twice (the cloud's `unique`).
fn distinct_scopes(scopes: Option<&[String]>) -> Result<(), ApiError> {
    let Some(scopes) = scopes else { return Ok(()) };
    let mut seen = std::collections::HashSet::with_capacity(scopes.len());
    match scopes.iter().find(|s| !seen.insert(s.as_str())) {
        Some(twice) => Err(ApiError::invalid(format!(
            "scopes: {} is given twice",
            twice.chars().take(crate::scope::Scope::MAX_LEN).collect::<String>()
        ))),
        None => Ok(()),
    }
}

/// `3600s`, `0.5s`: seconds with an `s` suffix, at most 365 days.
fn parse_grace(text: &str) -> Result<Duration, ApiError> {
    parse_seconds("gracePeriod", text, MAX_GRACE)
}

/// `3600s`, `0.5s`: seconds with an `s` suffix, at most `max`.
fn parse_seconds(field: &str, text: &str, max: Duration) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::invalid(format!(
            "{field} must be seconds with an s suffix (e.g. 3600s), at most {} days",
            max.as_secs() / 86_400
        ))
    };
    let number = text.strip_suffix('s').ok_or_else(bad)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    let secs: f64 = number.parse().map_err(|_| bad())?;
    let d = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if d > max { Err(bad()) } else { Ok(d) }
}

pub(super) fn page_size(size: Option<u32>) -> Result<u32, ApiError> {
    match size {
        None | Some(0) => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n <= PageRequest::MAX_LIMIT => Ok(n),
        Some(_) => Err(ApiError::invalid(format!("pageSize must be 0 to {}", PageRequest::MAX_LIMIT))),
    }
}

// ----- control fields -----

fn invalid_control(field: &str, e: &ControlError) -> ApiError {
    ApiError::invalid(format!("{field}: {e}"))
}

fn parse_metadata(value: &serde_json::Value) -> Result<Metadata, ApiError> {
    Metadata::new(value.clone()).map_err(|e| invalid_control("metadata", &e))
}

fn parse_external_id(text: &str) -> Result<ExternalId, ApiError> {
    ExternalId::new(text).map_err(|e| invalid_control("externalId", &e))
}

fn parse_allowed_ips(entries: &[String]) -> Result<IpAllowList, ApiError> {
    if entries.is_empty() {
        return Err(ApiError::invalid("allowedIps: must name at least one range (omit it for any address)"));
    }
    if let Some(bad) = entries.iter().find(|e| e.contains(',') || e.trim().is_empty()) {
        return Err(invalid_control("allowedIps", &ControlError::IpRange(bad.chars().take(64).collect())));
    }
    entries.join(",").parse().map_err(|e| invalid_control("allowedIps", &e))
}

fn parse_rate_limits(entries: &[String]) -> Result<RateLimits, ApiError> {
    if entries.is_empty() {
        return Err(ApiError::invalid("rateLimits: must name at least one limit (omit it for none)"));
    }
    let limits = entries
        .iter()
        .map(|e| e.parse::<RateLimit>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_control("rateLimits", &e))?;
    RateLimits::new(limits).map_err(|e| invalid_control("rateLimits", &e))
}

fn parse_credits(credits: &ApiCredits) -> Result<Credits, ApiError> {
    credits.to_credits(Timestamp::now()).map_err(|e| invalid_control("credits", &e))
}

/// The controls of a create request, each field validated (errors name it).
fn create_controls(req: &CreateApiKeyRequest) -> Result<KeyControls, ApiError> {
    let mut c = KeyControls::new();
    c.metadata = req.metadata.as_ref().map(parse_metadata).transpose()?;
    c.external_id = req.external_id.as_deref().map(parse_external_id).transpose()?;
    c.allowed_ips = req.allowed_ips.as_deref().map(parse_allowed_ips).transpose()?;
    c.credits = req.credits.as_ref().map(parse_credits).transpose()?;
    c.rate_limits = req.rate_limits.as_deref().map(parse_rate_limits).transpose()?;
    Ok(c)
}

// ----- handlers -----

/// `scope` (deprecated, one scope) and `scopes` of a create, as one list;
/// proto3 reads `""` as unset.
fn create_scopes(req: &CreateApiKeyRequest) -> Result<Option<Vec<String>>, ApiError> {
    match (req.scope.as_deref().filter(|s| !s.is_empty()), &req.scopes) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give scopes or the deprecated scope, not both")),
        (Some(one), None) => Ok(Some(vec![one.to_owned()])),
        (None, scopes) => Ok(scopes.clone()),
    }
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// The manager's request for a create by `caller`, validated and
    /// authorized (REST and gRPC).
    pub(super) async fn prepare_create(
        &self,
        caller: &AdminCaller,
        req: &CreateApiKeyRequest,
    ) -> Result<CreateRequest, ApiError> {
        let sa = self.service_account(caller, req.service_account_id.as_deref())?;
        self.authorize(caller, AdminAction::Create, &sa).await?;
        let scopes = create_scopes(req)?;
        distinct_scopes(scopes.as_deref())?;
        self.check_grant(caller, scopes.as_deref())?;
        let controls = create_controls(req)?;
        let mut create = CreateRequest::new(sa.as_str())
            .description(req.description.clone().unwrap_or_default())
            .enabled(req.enabled.unwrap_or(true))
            .controls(controls);
        create.scopes = scopes;
        create.expires_at = req.expires_at.as_deref().map(|t| parse_time("expiresAt", t)).transpose()?;
        Ok(create)
    }

    /// The manager's update of key `id` by `caller`, validated and
    /// authorized (REST and gRPC), and the key's id.
    pub(super) async fn prepare_update(
        &self,
        caller: &AdminCaller,
        id: &str,
        req: &UpdateApiKeyRequest,
    ) -> Result<(UpdateRequest, KeyId), ApiError> {
        let (update, mask) = update_request(req)?;
        let key = self.key_for(caller, AdminAction::Update, id).await?;
        if caller.own_key() == Some(&key.id)
            && let Some(f) = mask.iter().find(|f| OWN_LIMITS.contains(f))
        {
            return Err(ApiError::new(
                Code::PermissionDenied,
                format!("a key may not change its own {f}; an operator can"),
            ));
        }
        if let Some(scopes) = &update.scopes {
            self.check_grant(caller, Some(scopes))?;
        }
        Ok((update, key.id))
    }
}

/// Makes the key `create` asks for: the API's view of it and the secret.
pub(super) async fn apply_create<S: KeyStore>(
    manager: KeyManager<S>,
    create: CreateRequest,
) -> Result<(ApiKey, CreatedKey), ApiError> {
    let created = manager.create(create).await?;
    Ok((ApiKey::from(&created.key), created))
}

/// Deletes `key`: the operation logged.
pub(super) async fn apply_delete<S: KeyStore>(manager: KeyManager<S>, key: KeyInfo) -> Result<Operation, ApiError> {
    Ok(manager.delete(&key.id).await?.recorded(&key.service_account_id))
}

async fn create<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = match api.head(&parts, body).await {
        Ok(head) => head,
        Err(answered) => return answered,
    };
    // The pgpKey is checked with the rest, before the key is made.
    let prepared = match parse::<CreateApiKeyRequest>(&head.raw, false) {
        Ok(req) => match api.prepare_create(&head.caller, &req).await {
            Ok(create) => sealed::recipient("pgpKey", req.pgp_key.as_deref()).map(|to| (create, to)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    api.change(head, prepared, |manager, (create, to): (CreateRequest, Option<Recipient>), view| async move {
        let (api_key, created) = apply_create(manager, create).await?;
        Answer::created(&api_key, &created, to.as_ref(), view)
    })
    .await
}

/// The query of a listing of keys.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListQuery {
    pub(super) service_account_id: Option<String>,
    external_id: Option<String>,
    expiring_within: Option<String>,
    pub(super) page_size: Option<u32>,
    pub(super) page_token: Option<String>,
    #[serde(rename = "view")]
    _view: Option<String>,
}

impl ListQuery {
    /// The keys of `service_account_id` (empty: the caller's own).
    #[cfg(feature = "grpc")]
    pub(super) fn of_account(service_account_id: String, page_size: Option<u32>, page_token: String) -> Self {
        Self {
            service_account_id: Some(service_account_id),
            page_size,
            page_token: Some(page_token),
            ..Self::default()
        }
    }
}

/// The query of a listing that only pages.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PageQuery {
    pub(super) page_size: Option<u32>,
    pub(super) page_token: Option<String>,
    #[serde(rename = "view")]
    _view: Option<String>,
}

impl PageQuery {
    /// A page of `page_size` (0: the default) after `page_token` (empty:
    /// the first).
    pub(super) fn new(page_size: Option<u32>, page_token: String) -> Self {
        Self { page_size, page_token: Some(page_token), _view: None }
    }
}

pub(super) fn query<T: DeserializeOwned>(parts: &Parts) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// The position a page token names in the listing tagged `tag`.
    pub(super) fn open_token(&self, tag: u8, token: Option<&str>) -> Result<Option<String>, ApiError> {
        self.tokens.open(tag, token.unwrap_or("")).map_err(|e| ApiError::invalid(e.to_string()))
    }
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// One page of the keys `q` asks for that `caller` may list, and the
    /// next page's token (REST and gRPC).
    pub(super) async fn list_keys(
        &self,
        caller: &AdminCaller,
        q: ListQuery,
    ) -> Result<(Vec<KeyInfo>, String), ApiError> {
        let after = self
            .open_token(KEYS, q.page_token.as_deref())?
            .map(|id| KeyId::parse(&id).map_err(|_| ApiError::invalid("invalid pageToken")))
            .transpose()?;
        let page = PageRequest::starting(page_size(q.page_size)?, after);
        let page = match (q.service_account_id.filter(|s| !s.is_empty()), q.external_id, q.expiring_within) {
            (None, Some(id), None) => self.manager.list_by_external_id(&parse_external_id(&id)?, page).await?,
            (None, None, Some(window)) => {
                let window = parse_seconds("expiringWithin", &window, MAX_EXPIRY_WINDOW)?;
                self.manager.expiring_within(window, page).await?
            }
            (sa, None, None) => {
                let sa = self.service_account(caller, sa.as_deref())?;
                self.authorize(caller, AdminAction::List, &sa).await?;
                self.manager.list(sa.as_str(), page).await?
            }
            _ => return Err(ApiError::invalid("give at most one of serviceAccountId, externalId or expiringWithin")),
        };
        let next = self.tokens.seal(KEYS, page.next.as_ref().map(KeyId::as_str));
        // Across service accounts, a caller sees the keys of the accounts it may list.
        let mut keys = Vec::with_capacity(page.items.len());
        for k in page.items {
            let visible = if caller.as_subject().is_some() {
                let account = ResourceRef::ServiceAccount(k.service_account_id.clone());
                self.sees(caller, Permission::ReadKeys, &account).await?
            } else {
                self.auth.allows(caller, AdminAction::List, &k.service_account_id)
            };
            if visible {
                keys.push(k);
            }
        }
        Ok((keys, next))
    }
}

async fn list<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let caller = api.authenticate(&parts).await?;
    let view = View::of(&parts)?;
    let (keys, next) = api.list_keys(&caller, query(&parts)?).await?;
    let keys: Vec<Value> =
        keys.iter().map(|k| view.key(serde_json::to_value(ApiKey::from(k)).unwrap_or_default())).collect();
    Ok(json(&serde_json::json!({ "apiKeys": keys, "nextPageToken": next })))
}

async fn get_key<S: KeyStore, A: AdminAuth>(call: KeyCall<S, A>) -> Result<Response, ApiError> {
    let caller = call.api.authenticate(&call.parts).await?;
    let view = View::of(&call.parts)?;
    let key = call.api.key_for(&caller, AdminAction::Get, &call.id).await?;
    Ok(json(&view.key(serde_json::to_value(ApiKey::from(&key)).unwrap_or_default())))
}

/// The fields `updateMask` may name.
const UPDATE_FIELDS: [&str; 9] =
    ["description", "scopes", "expiresAt", "enabled", "metadata", "externalId", "allowedIps", "credits", "rateLimits"];

/// The fields a key may not change on itself (an operator's call).
const OWN_LIMITS: [&str; 7] = ["expiresAt", "enabled", "metadata", "externalId", "allowedIps", "credits", "rateLimits"];

/// Which of [`UPDATE_FIELDS`] the request sets (is present in the body).
fn present_fields(req: &UpdateApiKeyRequest) -> [(&'static str, bool); 9] {
    [
        ("description", req.description.is_some()),
        ("scopes", req.scopes.is_some()),
        ("expiresAt", req.expires_at.is_some()),
        ("enabled", req.enabled.is_some()),
        ("metadata", req.metadata.is_some()),
        ("externalId", req.external_id.is_some()),
        ("allowedIps", req.allowed_ips.is_some()),
        ("credits", req.credits.is_some()),
        ("rateLimits", req.rate_limits.is_some()),
    ]
}

/// A mask path in lowerCamel (`expires_at` → `expiresAt`).
pub(super) fn camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The fields an update changes: the mask's, or without one (or with an
/// empty one) the fields present. Fields present outside a mask are left
/// untouched.
fn update_mask(req: &UpdateApiKeyRequest) -> Result<Vec<&'static str>, ApiError> {
    let Some(mask) = req.update_mask.as_deref().map(str::trim).filter(|m| !m.is_empty()) else {
        return Ok(present_fields(req).into_iter().filter(|(_, p)| *p).map(|(f, _)| f).collect());
    };
    mask.split(',')
        .map(|f| {
            let name = camel(f.trim());
            UPDATE_FIELDS.iter().copied().find(|known| *known == name).ok_or_else(|| {
                ApiError::invalid(format!(
                    "updateMask names an unknown field {:?} (known: {})",
                    f.trim().chars().take(64).collect::<String>(),
                    UPDATE_FIELDS.join(", ")
                ))
            })
        })
        .collect()
}

/// The manager's update for a request: the mask's fields are set (absent
/// ones cleared, except `scopes` and `enabled`, which must be given), the
/// rest stay.
fn update_request(req: &UpdateApiKeyRequest) -> Result<(UpdateRequest, Vec<&'static str>), ApiError> {
    let mask = update_mask(req)?;
    let named = |f: &str| mask.contains(&f);
    let mut update = UpdateRequest::new();
    if named("description") {
        update = update.description(req.description.clone().unwrap_or_default());
    }
    if named("scopes") {
        let scopes = req.scopes.as_ref().filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::invalid("scopes: the mask names scopes, so give 1 to 100 of them (an update never resets them)")
        })?;
        distinct_scopes(Some(scopes))?;
        update = update.scopes(scopes.iter().cloned());
    }
    if named("expiresAt") {
        update = update.expires_at(req.expires_at.as_deref().map(|t| parse_time("expiresAt", t)).transpose()?);
    }
    if named("enabled") {
        let enabled = req.enabled.ok_or_else(|| ApiError::invalid("enabled: the mask names enabled, so give it"))?;
        update.enabled = Some(enabled);
    }
    Ok((update_controls(req, &named, update)?, mask))
}

/// The control part of [`update_request`].
fn update_controls(
    req: &UpdateApiKeyRequest,
    named: &dyn Fn(&str) -> bool,
    mut update: UpdateRequest,
) -> Result<UpdateRequest, ApiError> {
    if named("metadata") {
        update.controls.metadata = Some(req.metadata.as_ref().map(parse_metadata).transpose()?);
    }
    if named("externalId") {
        update.controls.external_id = Some(req.external_id.as_deref().map(parse_external_id).transpose()?);
    }
    if named("allowedIps") {
        update.controls.allowed_ips = Some(req.allowed_ips.as_deref().map(parse_allowed_ips).transpose()?);
    }
    if named("credits") {
        update.controls.credits = Some(req.credits.as_ref().map(parse_credits).transpose()?);
    }
    if named("rateLimits") {
        update.controls.rate_limits = Some(req.rate_limits.as_deref().map(parse_rate_limits).transpose()?);
    }
    Ok(update)
}

async fn update<S: KeyStore, A: AdminAuth>(KeyCall { api, id, parts, body }: KeyCall<S, A>) -> Response {
    let head = match api.head(&parts, body).await {
        Ok(head) => head,
        Err(answered) => return answered,
    };
    let prepared = match parse::<UpdateApiKeyRequest>(&head.raw, false) {
        Ok(req) => api.prepare_update(&head.caller, &id, &req).await,
        Err(e) => Err(e),
    };
    api.change(head, prepared, |manager, (update, id): (UpdateRequest, KeyId), view| async move {
        // Answered from the logged operation, as a replay is.
        let (_, op) = manager.update(&id, update).await?;
        replayed(&op, view)
    })
    .await
}

async fn delete<S: KeyStore, A: AdminAuth>(KeyCall { api, id, parts, body }: KeyCall<S, A>) -> Response {
    let head = match api.head(&parts, body).await {
        Ok(head) => head,
        Err(answered) => return answered,
    };
    let prepared = api.bodiless(&head, AdminAction::Delete, &id).await;
    api.change(head, prepared, |manager, key: KeyInfo, view| async move {
        let op = apply_delete(manager, key).await?;
        replayed(&op, view)
    })
    .await
}

/// `POST /apiKeys/{apiKeyId}:reissue` and `:revoke`.
async fn custom<S: KeyStore, A: AdminAuth>(call: KeyCall<S, A>) -> Response {
    let request = Request::from_parts(call.parts, call.body);
    match call.id.split_once(':') {
        Some((id, "reissue")) => reissue(&call.api, id, request).await,
        Some((id, "revoke")) => revoke(&call.api, id, request).await,
        _ => ApiError::new(Code::NotFound, "no such method (expected :reissue or :revoke)").into_response(),
    }
}

async fn reissue<S: KeyStore, A: AdminAuth>(api: &AdminApi<S, A>, id: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = match api.head(&parts, body).await {
        Ok(head) => head,
        Err(answered) => return answered,
    };
    let prepared = async {
        let req: ReissueApiKeyRequest = parse(&head.raw, true)?;
        let grace = req.grace_period.as_deref().map(parse_grace).transpose()?.unwrap_or(Duration::ZERO);
        let key = api.key_for(&head.caller, AdminAction::Reissue, id).await?;
        let to = sealed::recipient("pgpKey", req.pgp_key.as_deref())?;
        Ok::<_, ApiError>((grace, key, to))
    }
    .await;
    api.change(head, prepared, |manager, (grace, key, to): (Duration, KeyInfo, Option<Recipient>), view| async move {
        let created = manager.reissue(&key.id, grace).await?;
        Answer::created(&ApiKey::from(&created.key), &created, to.as_ref(), view)
    })
    .await
}

async fn revoke<S: KeyStore, A: AdminAuth>(api: &AdminApi<S, A>, id: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let head = match api.head(&parts, body).await {
        Ok(head) => head,
        Err(answered) => return answered,
    };
    let prepared = api.bodiless(&head, AdminAction::Revoke, id).await;
    api.change(head, prepared, |manager, key: KeyInfo, view| async move {
        let mut op = manager.revoke(&key.id).await?.recorded(&key.service_account_id);
        // Logged with the key as revoked only under an Idempotency-Key;
        // otherwise the key as read above, revoked.
        if op.response.is_none() {
            let mut revoked = key;
            revoked.status = KeyStatus::Revoked;
            op.response = Some(revoked);
        }
        replayed(&op, view)
    })
    .await
}

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    /// One page of key `id`'s operations log, newest first, if `caller`
    /// may read it, and the next page's token (REST and gRPC).
    pub(super) async fn list_operations(
        &self,
        caller: &AdminCaller,
        id: &str,
        q: PageQuery,
    ) -> Result<(Vec<Operation>, String), ApiError> {
        let id = parse_id(id)?;
        // The key's account, or, once it is deleted, the one its log names.
        let sa = match self.manager.get(&id).await {
            Ok(key) => key.service_account_id,
            Err(ManageError::NotFound(_)) => {
                let newest = self.manager.operations(&id, PageRequest::starting(1, None)).await?;
                newest.items.first().ok_or_else(|| not_found(id))?.service_account_id.clone()
            }
            Err(e) => return Err(e.into()),
        };
        let allowed = if caller.as_subject().is_some() {
            self.sees(caller, Permission::ReadKeys, &ResourceRef::ServiceAccount(sa.clone())).await?
        } else {
            self.auth.allows(caller, AdminAction::ListOperations, &sa)
        };
        if !allowed {
            return Err(not_found(id));
        }
        let after = self
            .open_token(OPERATIONS, q.page_token.as_deref())?
            .map(|n| n.parse::<u64>().map(OperationCursor::new).map_err(|_| ApiError::invalid("invalid pageToken")))
            .transpose()?;
        let page = self.manager.operations(&id, PageRequest::starting(page_size(q.page_size)?, after)).await?;
        Ok((page.items, self.tokens.seal(OPERATIONS, page.next.map(|c| c.get().to_string()).as_deref())))
    }

    /// One page of the scope catalog and the next page's token (REST and
    /// gRPC).
    pub(super) fn scope_page(&self, q: &PageQuery) -> Result<(&[ScopeInfo], String), ApiError> {
        let start = match self.open_token(SCOPES, q.page_token.as_deref())? {
            Some(n) => n.parse::<usize>().map_err(|_| ApiError::invalid("invalid pageToken"))?,
            None => 0,
        };
        let size = page_size(q.page_size)? as usize;
        let all = self.manager.catalog().list();
        let page = all.get(start..).unwrap_or_default();
        let page = page.get(..size.min(page.len())).unwrap_or_default();
        let end = start.saturating_add(size);
        Ok((page, self.tokens.seal(SCOPES, (end < all.len()).then(|| end.to_string()).as_deref())))
    }
}

async fn operations<S: KeyStore, A: AdminAuth>(
    KeyCall { api, id, parts, .. }: KeyCall<S, A>,
) -> Result<Response, ApiError> {
    let caller = api.authenticate(&parts).await?;
    let view = View::of(&parts)?;
    let (operations, next_page_token) = api.list_operations(&caller, &id, query(&parts)?).await?;
    let body = ListOperationsResponse {
        operations: operations.iter().map(|op| OperationView::new(op, None, view)).collect(),
        next_page_token,
    };
    Ok(json(&body))
}

async fn scopes<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    api.authenticate(&parts).await?;
    let view = View::of(&parts)?;
    let (page, next_page_token) = api.scope_page(&query(&parts)?)?;
    let catalog = api.manager.catalog();
    let answer = match view {
        View::Full => ScopesAnswer::Full(ListScopesFullResponse {
            scopes: page
                .iter()
                .map(|s| ApiKeyScope {
                    id: s.scope.as_str().to_owned(),
                    description: s.description.clone(),
                    default: catalog.defaults().contains(s.scope.as_str()),
                })
                .collect(),
            next_page_token,
        }),
        _ => ScopesAnswer::Basic(ListScopesResponse {
            scopes: page.iter().map(|s| s.scope.as_str().to_owned()).collect(),
            next_page_token,
        }),
    };
    Ok(json(&answer))
}

async fn openapi(method: Method) -> Response {
    let _ = method;
    json_response(StatusCode::OK, Bytes::from(super::openapi::document_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods() {
        assert_eq!(parse_grace("3600s").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_grace("0.5s").unwrap(), Duration::from_millis(500));
        for bad in ["3600", "s", "-1s", "1e3s", "31536001s", "1 s", "NaNs"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_change_only_what_they_name_and_never_widen() {
        let req = |mask: Option<&str>, description: Option<&str>| UpdateApiKeyRequest {
            update_mask: mask.map(str::to_owned),
            description: description.map(str::to_owned),
            ..UpdateApiKeyRequest::default()
        };
        let (u, _) = update_request(&req(Some("description"), Some("x"))).unwrap();
        assert_eq!((u.description.as_deref(), u.scopes.is_none(), u.expires_at), (Some("x"), true, None));
        // Named and absent: the description is cleared, the expiry removed.
        let (u, _) = update_request(&req(Some("description,expires_at"), None)).unwrap();
        assert_eq!((u.description.as_deref(), u.expires_at), (Some(""), Some(None)));
        // Named scopes must be given (absent or empty: refused, never the defaults).
        assert!(update_request(&req(Some("scopes"), None)).is_err());
        let empty =
            UpdateApiKeyRequest { update_mask: Some("scopes".into()), scopes: Some(vec![]), ..Default::default() };
        assert!(update_request(&empty).is_err());
        let twice = UpdateApiKeyRequest { scopes: Some(vec!["a".into(), "a".into()]), ..Default::default() };
        assert!(update_request(&twice).is_err(), "duplicates refused");
        assert!(update_request(&req(Some("enabled"), None)).is_err(), "named enabled must be given");
        // No mask: only the fields present.
        let (u, mask) = update_request(&req(None, Some("y"))).unwrap();
        assert_eq!(
            (u.description.as_deref(), u.scopes, u.expires_at, mask),
            (Some("y"), None, None, vec!["description"])
        );
        let only_enabled = UpdateApiKeyRequest { enabled: Some(false), ..Default::default() };
        let (u, _) = update_request(&only_enabled).unwrap();
        assert_eq!(u, UpdateRequest { enabled: Some(false), ..UpdateRequest::new() });
        // Outside the mask: left untouched, not refused.
        let (u, _) = update_request(&req(Some("expiresAt"), Some("x"))).unwrap();
        assert_eq!((u.description, u.expires_at), (None, Some(None)));
        assert!(update_request(&req(Some("status"), None)).is_err(), "unknown mask field");
    }

    #[test]
    fn limits_and_sizes() {
        assert!(parse_time("expiresAt", "2105-12-31T23:59:59.999999999Z").is_ok());
        assert!(parse_time("expiresAt", "2106-01-01T00:00:00Z").is_err());
        assert!(parse_service_account(&"a".repeat(50)).is_ok());
        assert!(parse_service_account(&"a".repeat(51)).is_err());
        assert!(page_size(Some(1001)).is_err());
        assert_eq!(page_size(Some(0)).unwrap(), 100);
        assert_eq!(camel("expires_at"), "expiresAt");
    }
}
