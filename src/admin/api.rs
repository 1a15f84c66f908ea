//! The router and its handlers.
//!
//! | method | path | body / query | returns |
//! |---|---|---|---|
//! | create | `POST /apiKeys` | [`CreateApiKeyRequest`] | [`CreateApiKeyResponse`] (the only time the secret appears) |
//! | get | `GET /apiKeys/{apiKeyId}` | | [`ApiKey`] |
//! | list | `GET /apiKeys?serviceAccountId=&pageSize=&pageToken=` | pageSize 0–1000 (0: 100) | [`ListApiKeysResponse`] |
//! | list by owner | `GET /apiKeys?externalId=&pageSize=&pageToken=` | across service accounts | [`ListApiKeysResponse`] (the keys of the accounts the caller may list) |
//! | list expiring | `GET /apiKeys?expiringWithin=604800s&pageSize=&pageToken=` | active keys expiring within the window, across service accounts | [`ListApiKeysResponse`] (as above) |
//! | update | `PATCH /apiKeys/{apiKeyId}` | [`UpdateApiKeyRequest`] | [`OperationView`] whose `response` is the updated key |
//! | delete | `DELETE /apiKeys/{apiKeyId}` | | [`OperationView`] (`response` `{}`) |
//! | reissue | `POST /apiKeys/{apiKeyId}:reissue` | [`ReissueApiKeyRequest`] | [`CreateApiKeyResponse`] of the new key |
//! | revoke | `POST /apiKeys/{apiKeyId}:revoke` | | [`OperationView`] whose `response` is the revoked key |
//! | operations | `GET /apiKeys/{apiKeyId}/operations?pageSize=&pageToken=` | | [`ListOperationsResponse`], newest first; also for a deleted key |
//! | scopes | `GET /apiKeyScopes` | | [`ListScopesResponse`] |
//! | document | `GET /openapi.json` | | the OpenAPI 3.1 document |
//! | console | `GET /console` | | the web console ([`super::console`]) |
//!
//! Each handler reads like the verifier: authenticate ([`AdminAuth`]) →
//! parse → authorize on the key's service account → one manager call (with
//! the caller as the operations log's actor) → render. Errors are
//! [`ApiError`]s: `{code, message, details}` with a `google.rpc.Code` and
//! its HTTP status. Bodies are capped ([`DEFAULT_BODY_LIMIT`]); bad JSON,
//! wrong types and unknown fields are code 3 (HTTP 400). Mutating calls
//! accept `Idempotency-Key` ([`super::idempotency`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::{AdminAction, AdminAuth, AdminCaller, AdminRejection};
use super::error::{ApiError, Code};
use super::idempotency::{self, Begin, Idempotency, Kept};
use super::types::{
    ApiCredits, ApiKey, ApiKeyScope, CreateApiKeyRequest, CreateApiKeyResponse, ListApiKeysResponse,
    ListOperationsResponse, ListScopesResponse, OperationView, ReissueApiKeyRequest, RevokeApiKeyRequest,
    UpdateApiKeyRequest,
};
use crate::clock::Timestamp;
use crate::controls::{ControlError, Credits, ExternalId, IpAllowList, KeyControls, Metadata, RateLimit, RateLimits};
use crate::manager::{CreateRequest, KeyManager, UpdateRequest};
use crate::operation::OperationCursor;
use crate::record::{CreatedKey, KeyInfo, KeyStatus, ServiceAccountId};
use crate::store::{KeyStore, PageRequest};
use crate::token::KeyId;

/// The default cap on request bodies: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;
/// The page size when none (or 0) is asked for.
const DEFAULT_PAGE_SIZE: u32 = 100;
/// The longest grace period a reissue accepts: 365 days.
const MAX_GRACE: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest `expiringWithin` a listing accepts: 3650 days.
const MAX_EXPIRY_WINDOW: Duration = Duration::from_secs(3650 * 24 * 3600);

/// The management API over a [`KeyManager`], authenticated by an
/// [`AdminAuth`]. [`AdminApi::router`] makes the axum router.
pub struct AdminApi<S, A> {
    manager: KeyManager<S>,
    auth: A,
    idempotency: Idempotency,
    body_limit: usize,
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
        Self { manager, auth, idempotency: Idempotency::default(), body_limit: DEFAULT_BODY_LIMIT }
    }

    /// Largest accepted request body; larger ones get code 3 with HTTP 413.
    /// Defaults to [`DEFAULT_BODY_LIMIT`].
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Where idempotent answers are kept. Defaults to
    /// [`Idempotency::default`] (24 hours, in memory).
    #[must_use]
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// The router, to nest at `/iam/v1`; it includes the
    /// [console](super::console) at `/console`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/apiKeys", get(list::<S, A>).post(create::<S, A>))
            .route(
                "/apiKeys/{apiKeyId}",
                get(get_key::<S, A>).patch(update::<S, A>).delete(delete::<S, A>).post(custom::<S, A>),
            )
            .route("/apiKeys/{apiKeyId}/operations", get(operations::<S, A>))
            .route("/apiKeyScopes", get(scopes::<S, A>))
            .route("/openapi.json", get(openapi))
            .fallback(|| async { ApiError::new(Code::NotFound, "no such resource") })
            .with_state(Arc::new(self))
            .merge(super::console::router())
    }
}

type Shared<S, A> = State<Arc<AdminApi<S, A>>>;

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

impl<S: KeyStore, A: AdminAuth> AdminApi<S, A> {
    async fn authenticate(&self, parts: &Parts) -> Result<AdminCaller, ApiError> {
        self.auth.authenticate(parts).await.map_err(rejection)
    }

    fn authorize(&self, caller: &AdminCaller, action: AdminAction, sa: &ServiceAccountId) -> Result<(), ApiError> {
        if self.auth.allows(caller, action, sa) {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::PermissionDenied,
                format!("not allowed to manage the keys of service account {sa}"),
            ))
        }
    }

    /// The key, after checking the caller may do `action` on its account.
    async fn key_for(&self, caller: &AdminCaller, action: AdminAction, raw: &str) -> Result<KeyInfo, ApiError> {
        let id = parse_id(raw)?;
        let key = self.manager.get(&id).await?;
        self.authorize(caller, action, &key.service_account_id)?;
        Ok(key)
    }

    /// The preamble of a change whose body is empty (`{}` or nothing):
    /// the caller, the raw body (for idempotency) and the key the caller may
    /// apply `action` to.
    async fn bodiless_change(
        &self,
        parts: &Parts,
        body: Body,
        action: AdminAction,
        id: &str,
    ) -> Result<(AdminCaller, Bytes, KeyInfo), ApiError> {
        let caller = self.authenticate(parts).await?;
        let (raw, RevokeApiKeyRequest {}) = self.body(body, true).await?;
        let key = self.key_for(&caller, action, id).await?;
        Ok((caller, raw, key))
    }

    async fn body<T: DeserializeOwned + Default>(&self, body: Body, optional: bool) -> Result<(Bytes, T), ApiError> {
        let bytes =
            axum::body::to_bytes(body, self.body_limit).await.map_err(|_| ApiError::too_large(self.body_limit))?;
        if optional && bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((bytes, T::default()));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
        Ok((bytes, value))
    }

    /// Runs `call` once per `Idempotency-Key` (if the request has one) and
    /// renders its answer; `kept` is what a replay gets (without secrets).
    async fn idempotent<F>(&self, caller: &AdminCaller, parts: &Parts, body: &[u8], call: F) -> Response
    where
        F: Future<Output = Result<Answer, ApiError>>,
    {
        let key = match idempotency_key(parts) {
            Ok(k) => k,
            Err(e) => return e.into_response(),
        };
        let Some(key) = key else { return render(call.await).0 };
        let print = idempotency::fingerprint(parts.method.as_str(), parts.uri.path(), body);
        match self.idempotency.begin(caller.actor(), key, print) {
            Begin::Run => {
                let (response, kept) = render(call.await);
                self.idempotency.finish(caller.actor(), key, kept);
                response
            }
            Begin::Replay(kept) => {
                let mut r = json_response(kept.status, kept.body);
                r.headers_mut().insert(idempotency::REPLAYED_HEADER, HeaderValue::from_static("true"));
                r
            }
            Begin::Mismatch => ApiError::new(
                Code::FailedPrecondition,
                "this Idempotency-Key was used with a different request in the last 24 hours",
            )
            .into_response(),
            Begin::InFlight => {
                ApiError::new(Code::Aborted, "a request with this Idempotency-Key is still running").into_response()
            }
        }
    }

    /// The end of every change: answers a failed preparation with its
    /// error; else runs `change` on what was prepared (the caller, the raw
    /// body and the change's input), once per `Idempotency-Key`, with a
    /// manager that logs the caller as the actor.
    async fn change<T, F, Fut>(
        &self,
        parts: &Parts,
        prepared: Result<(AdminCaller, Bytes, T), ApiError>,
        change: F,
    ) -> Response
    where
        F: FnOnce(KeyManager<S>, T) -> Fut,
        Fut: Future<Output = Result<Answer, ApiError>>,
    {
        let (caller, raw, input) = match prepared {
            Ok(p) => p,
            Err(e) => return e.into_response(),
        };
        let manager = self.manager.with_actor(caller.actor().clone());
        self.idempotent(&caller, parts, &raw, change(manager, input)).await
    }
}

/// A successful answer: what the caller gets, and what a replay gets.
struct Answer {
    status: StatusCode,
    body: Bytes,
    kept: Bytes,
}

impl Answer {
    fn ok<T: serde::Serialize>(value: &T) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        Self { status: StatusCode::OK, kept: body.clone(), body }
    }

    /// A new key: the replay gets it without the secret.
    fn created(api_key: ApiKey, created: &CreatedKey) -> Self {
        let mut response = CreateApiKeyResponse { api_key, secret: None };
        let kept = Bytes::from(serde_json::to_vec(&response).unwrap_or_default());
        response.secret = Some(created.secret.expose_secret().to_owned());
        Self { status: StatusCode::OK, body: Bytes::from(serde_json::to_vec(&response).unwrap_or_default()), kept }
    }
}

fn render(result: Result<Answer, ApiError>) -> (Response, Kept) {
    match result {
        Ok(a) => (json_response(a.status, a.body), Kept { status: a.status, body: a.kept }),
        Err(e) => {
            let status = e.status();
            let body = axum::body::Bytes::from(
                serde_json::to_vec(
                    &serde_json::json!({"code": e.code().number(), "message": e.message(), "details": []}),
                )
                .unwrap_or_default(),
            );
            (e.into_response(), Kept { status, body })
        }
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn idempotency_key(parts: &Parts) -> Result<Option<uuid::Uuid>, ApiError> {
    let mut values = parts.headers.get_all(idempotency::HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::invalid("Idempotency-Key must be sent once"));
    }
    let text = value.to_str().map_err(|_| ApiError::invalid("Idempotency-Key must be a UUID"))?;
    uuid::Uuid::parse_str(text).map(Some).map_err(|_| ApiError::invalid("Idempotency-Key must be a UUID"))
}

fn parse_id(raw: &str) -> Result<KeyId, ApiError> {
    KeyId::parse(raw).map_err(|e| ApiError::invalid(format!("apiKeyId: {e}")))
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(text).map_err(|e| ApiError::invalid(format!("{field}: {e}")))
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

fn page_size(size: Option<u32>) -> Result<u32, ApiError> {
    match size {
        None | Some(0) => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if n <= PageRequest::MAX_LIMIT => Ok(n),
        Some(_) => Err(ApiError::invalid(format!("pageSize must be 0 to {}", PageRequest::MAX_LIMIT))),
    }
}

/// Page tokens: base64url of `k<key id>` (keys) or `o<sequence>`
/// (operations); opaque to clients.
fn key_token(next: Option<KeyId>) -> String {
    next.map(|id| B64.encode(format!("k{id}"))).unwrap_or_default()
}

fn decode_token(token: &str, tag: char) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("invalid pageToken");
    let text = String::from_utf8(B64.decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    text.strip_prefix(tag).map(|rest| Some(rest.to_owned())).ok_or_else(bad)
}

fn operation_token(next: Option<OperationCursor>) -> String {
    next.map(|c| B64.encode(format!("o{}", c.get()))).unwrap_or_default()
}

/// The API view of a key just made: the creation result's fields, with the
/// description, enabled flag and controls it was made with (the creation
/// result itself carries only the documented `api_key` fields).
fn api_key_of_created(created: &CreatedKey, description: &str, enabled: bool, controls: &KeyControls) -> ApiKey {
    let s = &created.api_key;
    let mut info = KeyInfo {
        id: s.id,
        service_account_id: s.service_account_id.clone(),
        description: crate::record::Description::default(),
        created_at: s.created_at,
        last_used_at: None,
        scopes: s.scopes.clone(),
        expires_at: s.expires_at,
        masked_key: created.secret.tail6(),
        status: KeyStatus::Active,
        enabled,
        kind: crate::record::KeyKind::Native,
        links: crate::record::ReissueLinks::default(),
        controls: controls.clone().into_option(),
    };
    if let Ok(d) = crate::record::Description::new(description) {
        info.description = d;
    }
    ApiKey::from(&info)
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

async fn create<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let prepared = async {
        let caller = api.authenticate(&parts).await?;
        let (raw, req) = api.body::<CreateApiKeyRequest>(body, false).await?;
        let sa = ServiceAccountId::new(&req.service_account_id)
            .map_err(|e| ApiError::invalid(format!("serviceAccountId: {e}")))?;
        api.authorize(&caller, AdminAction::Create, &sa)?;
        let controls = create_controls(&req)?;
        let mut create = CreateRequest::new(sa.as_str())
            .description(req.description.clone().unwrap_or_default())
            .enabled(req.enabled.unwrap_or(true))
            .controls(controls);
        create.scopes = req.scopes;
        create.expires_at = req.expires_at.as_deref().map(|t| parse_time("expiresAt", t)).transpose()?;
        Ok::<_, ApiError>((caller, raw, create))
    };
    api.change(&parts, prepared.await, |manager, create: CreateRequest| async move {
        let (description, enabled, controls) = (create.description.clone(), create.enabled, create.controls.clone());
        let created = manager.create(create).await?;
        Ok(Answer::created(api_key_of_created(&created, &description, enabled, &controls), &created))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    service_account_id: Option<String>,
    external_id: Option<String>,
    expiring_within: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PageQuery {
    page_size: Option<u32>,
    page_token: Option<String>,
}

fn query<T: DeserializeOwned>(parts: &Parts) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::invalid(format!("invalid query: {}", e.body_text())))
}

async fn list<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let caller = api.authenticate(&parts).await?;
    let q: ListQuery = query(&parts)?;
    let after = decode_token(q.page_token.as_deref().unwrap_or(""), 'k')?
        .map(|id| KeyId::parse(&id).map_err(|_| ApiError::invalid("invalid pageToken")))
        .transpose()?;
    let page = PageRequest::starting(page_size(q.page_size)?, after);
    let page = match (q.service_account_id, q.external_id, q.expiring_within) {
        (Some(sa), None, None) => {
            let sa = ServiceAccountId::new(&sa).map_err(|e| ApiError::invalid(format!("serviceAccountId: {e}")))?;
            api.authorize(&caller, AdminAction::List, &sa)?;
            api.manager.list(sa.as_str(), page).await?
        }
        (None, Some(id), None) => api.manager.list_by_external_id(&parse_external_id(&id)?, page).await?,
        (None, None, Some(window)) => {
            let window = parse_seconds("expiringWithin", &window, MAX_EXPIRY_WINDOW)?;
            api.manager.expiring_within(window, page).await?
        }
        _ => return Err(ApiError::invalid("give exactly one of serviceAccountId, externalId or expiringWithin")),
    };
    // Across service accounts, a caller sees the keys of the accounts it may list.
    let visible = page.items.iter().filter(|k| api.auth.allows(&caller, AdminAction::List, &k.service_account_id));
    let body =
        ListApiKeysResponse { api_keys: visible.map(ApiKey::from).collect(), next_page_token: key_token(page.next) };
    Ok(axum::Json(body).into_response())
}

async fn get_key<S: KeyStore, A: AdminAuth>(call: KeyCall<S, A>) -> Result<Response, ApiError> {
    let caller = call.api.authenticate(&call.parts).await?;
    let key = call.api.key_for(&caller, AdminAction::Get, &call.id).await?;
    Ok(axum::Json(ApiKey::from(&key)).into_response())
}

/// The fields `updateMask` may name.
const UPDATE_FIELDS: [&str; 9] =
    ["description", "scopes", "expiresAt", "enabled", "metadata", "externalId", "allowedIps", "credits", "rateLimits"];

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

/// The fields an update changes: the mask's, or without one the three
/// original fields and the other fields present.
fn update_mask(req: &UpdateApiKeyRequest) -> Result<Vec<&str>, ApiError> {
    let mask: Vec<&str> = match req.update_mask.as_deref().map(str::trim) {
        None | Some("") => {
            let present = present_fields(req).into_iter().skip(3).filter(|(_, p)| *p).map(|(f, _)| f);
            UPDATE_FIELDS[..3].iter().copied().chain(present).collect()
        }
        Some(m) => m.split(',').map(str::trim).collect(),
    };
    if let Some(bad) = mask.iter().find(|f| !UPDATE_FIELDS.contains(f)) {
        return Err(ApiError::invalid(format!(
            "updateMask names an unknown field {bad:?} (known: {})",
            UPDATE_FIELDS.join(", ")
        )));
    }
    if let Some((f, _)) = present_fields(req).iter().find(|(f, present)| *present && !mask.contains(f)) {
        return Err(ApiError::invalid(format!("{f} is set but not named in updateMask")));
    }
    Ok(mask)
}

/// The manager's update for a request: the mask's fields are set (absent
/// ones reset), the rest stay; a field set outside the mask is refused.
fn update_request(req: &UpdateApiKeyRequest) -> Result<UpdateRequest, ApiError> {
    let mask = update_mask(req)?;
    let named = |f: &str| mask.contains(&f);
    let mut update = UpdateRequest::new();
    if named("description") {
        update = update.description(req.description.clone().unwrap_or_default());
    }
    if named("scopes") {
        update.scopes = Some(req.scopes.clone());
    }
    if named("expiresAt") {
        update = update.expires_at(req.expires_at.as_deref().map(|t| parse_time("expiresAt", t)).transpose()?);
    }
    if named("enabled") {
        update.enabled = Some(req.enabled.unwrap_or(true));
    }
    update_controls(req, &named, update)
}

/// The control part of [`update_request`].
fn update_controls(
    req: &UpdateApiKeyRequest,
    named: &dyn Fn(&str) -> bool,
    mut update: UpdateRequest,
) -> Result<UpdateRequest, ApiError> {
    if named("metadata") {
        update.metadata = Some(req.metadata.as_ref().map(parse_metadata).transpose()?);
    }
    if named("externalId") {
        update.external_id = Some(req.external_id.as_deref().map(parse_external_id).transpose()?);
    }
    if named("allowedIps") {
        update.allowed_ips = Some(req.allowed_ips.as_deref().map(parse_allowed_ips).transpose()?);
    }
    if named("credits") {
        update.credits = Some(req.credits.as_ref().map(parse_credits).transpose()?);
    }
    if named("rateLimits") {
        update.rate_limits = Some(req.rate_limits.as_deref().map(parse_rate_limits).transpose()?);
    }
    Ok(update)
}

async fn update<S: KeyStore, A: AdminAuth>(KeyCall { api, id, parts, body }: KeyCall<S, A>) -> Response {
    let prepared = async {
        let caller = api.authenticate(&parts).await?;
        let (raw, req) = api.body::<UpdateApiKeyRequest>(body, false).await?;
        let update = update_request(&req)?;
        let key = api.key_for(&caller, AdminAction::Update, &id).await?;
        Ok::<_, ApiError>((caller, raw, (update, key.id)))
    };
    api.change(&parts, prepared.await, |manager, (update, id): (UpdateRequest, KeyId)| async move {
        let (info, op) = manager.update(&id, update).await?;
        let response = serde_json::to_value(ApiKey::from(&info)).ok();
        Ok(Answer::ok(&OperationView::new(&op, response)))
    })
    .await
}

async fn delete<S: KeyStore, A: AdminAuth>(KeyCall { api, id, parts, body }: KeyCall<S, A>) -> Response {
    let prepared = api.bodiless_change(&parts, body, AdminAction::Delete, &id).await;
    api.change(&parts, prepared, |manager, key: KeyInfo| async move {
        let op = manager.delete_logged(&key.id).await?.recorded(&key.service_account_id);
        Ok(Answer::ok(&OperationView::new(&op, Some(serde_json::json!({})))))
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
    let prepared = async {
        let caller = api.authenticate(&parts).await?;
        let (raw, req) = api.body::<ReissueApiKeyRequest>(body, true).await?;
        let grace = req.grace_period.as_deref().map(parse_grace).transpose()?.unwrap_or(Duration::ZERO);
        let key = api.key_for(&caller, AdminAction::Reissue, id).await?;
        Ok::<_, ApiError>((caller, raw, (grace, key)))
    };
    api.change(&parts, prepared.await, |manager, (grace, key): (Duration, KeyInfo)| async move {
        let created = manager.reissue(&key.id, grace).await?;
        let controls = key.controls.as_deref().unwrap_or(&KeyControls::NONE);
        let mut api_key = api_key_of_created(&created, key.description.as_str(), key.enabled, controls);
        api_key.reissued_from = Some(key.id.as_str().to_owned());
        Ok(Answer::created(api_key, &created))
    })
    .await
}

async fn revoke<S: KeyStore, A: AdminAuth>(api: &AdminApi<S, A>, id: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let prepared = api.bodiless_change(&parts, body, AdminAction::Revoke, id).await;
    api.change(&parts, prepared, |manager, key: KeyInfo| async move {
        let op = manager.revoke_logged(&key.id).await?.recorded(&key.service_account_id);
        let mut revoked = key;
        revoked.status = KeyStatus::Revoked;
        Ok(Answer::ok(&OperationView::new(&op, serde_json::to_value(ApiKey::from(&revoked)).ok())))
    })
    .await
}

async fn operations<S: KeyStore, A: AdminAuth>(
    KeyCall { api, id, parts, .. }: KeyCall<S, A>,
) -> Result<Response, ApiError> {
    let caller = api.authenticate(&parts).await?;
    let q: PageQuery = query(&parts)?;
    let id = parse_id(&id)?;
    // The key's account, or, once it is deleted, the one its log names.
    let sa = match api.manager.get(&id).await {
        Ok(key) => key.service_account_id,
        Err(crate::ManageError::NotFound(_)) => {
            let newest = api.manager.operations(&id, PageRequest::starting(1, None)).await?;
            let entry =
                newest.items.first().ok_or_else(|| ApiError::new(Code::NotFound, format!("key {id} not found")))?;
            entry.service_account_id.clone()
        }
        Err(e) => return Err(e.into()),
    };
    api.authorize(&caller, AdminAction::ListOperations, &sa)?;
    let after = decode_token(q.page_token.as_deref().unwrap_or(""), 'o')?
        .map(|n| n.parse::<u64>().map(OperationCursor::new).map_err(|_| ApiError::invalid("invalid pageToken")))
        .transpose()?;
    let page = api.manager.operations(&id, PageRequest::starting(page_size(q.page_size)?, after)).await?;
    let body = ListOperationsResponse {
        operations: page.items.iter().map(|op| OperationView::new(op, None)).collect(),
        next_page_token: operation_token(page.next),
    };
    Ok(axum::Json(body).into_response())
}

async fn scopes<S: KeyStore, A: AdminAuth>(State(api): Shared<S, A>, request: Request) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    api.authenticate(&parts).await?;
    let catalog = api.manager.catalog();
    let scopes = catalog
        .list()
        .iter()
        .map(|s| ApiKeyScope {
            id: s.scope.as_str().to_owned(),
            description: s.description.clone(),
            default: catalog.defaults().contains(s.scope.as_str()),
        })
        .collect();
    Ok(axum::Json(ListScopesResponse { scopes }).into_response())
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
    fn masks() {
        let req = |mask: Option<&str>, description: Option<&str>| UpdateApiKeyRequest {
            update_mask: mask.map(str::to_owned),
            description: description.map(str::to_owned),
            ..UpdateApiKeyRequest::default()
        };
        let u = update_request(&req(Some("description"), Some("x"))).unwrap();
        assert_eq!((u.description.as_deref(), u.scopes.is_none(), u.expires_at), (Some("x"), true, None));
        // Named and absent: reset.
        let u = update_request(&req(Some("scopes,expiresAt"), None)).unwrap();
        assert_eq!((u.description, u.scopes, u.expires_at), (None, Some(None), Some(None)));
        // No mask: all three replaced.
        let u = update_request(&req(None, Some("y"))).unwrap();
        assert_eq!((u.description.as_deref(), u.scopes, u.expires_at), (Some("y"), Some(None), Some(None)));
        assert!(update_request(&req(Some("scopes"), Some("x"))).is_err(), "set outside the mask");
        assert!(update_request(&req(Some("status"), None)).is_err(), "unknown mask field");
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let id = KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap();
        assert_eq!(decode_token(&key_token(Some(id)), 'k').unwrap().as_deref(), Some(id.as_str()));
        assert_eq!(key_token(None), "");
        assert!(decode_token("!!", 'k').is_err());
        assert!(decode_token(&operation_token(Some(OperationCursor::new(5))), 'k').is_err(), "tag checked");
        assert!(page_size(Some(1001)).is_err());
        assert_eq!(page_size(Some(0)).unwrap(), 100);
    }
}
