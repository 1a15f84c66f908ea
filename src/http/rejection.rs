//! Rejections: the one place where an authentication failure becomes a
//! status, `WWW-Authenticate` challenges and an RFC 9457 problem body, and
//! where its real reason is logged. The mapping is tabled in the
//! [`crate::http`] module docs.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::controls::RateLimit;
use crate::http::bearer::BearerError;
use crate::scope::Scope;
use crate::token::KeyId;
use crate::verify::{ClientClass, VerifyError};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers):
/// `"<name>";q=<count>;w=<period in seconds>`.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers):
/// `"<name>";r=<remaining>;t=<seconds until reset>`.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` value of `limit` (its window at least 1 s).
pub(crate) fn policy_value(limit: &RateLimit) -> Option<HeaderValue> {
    // Limit names are [a-z0-9_-]: safe in a structured-field string.
    let text = format!("\"{}\";q={};w={}", limit.name, limit.count, ceil_secs(limit.period).max(1));
    HeaderValue::from_str(&text).ok()
}

/// The `RateLimit` value: `remaining` requests of `limit`, `reset` until
/// its burst is full again.
pub(crate) fn state_value(limit: &RateLimit, remaining: u32, reset: Duration) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{}\";r={remaining};t={}", limit.name, ceil_secs(reset))).ok()
}

/// Longest accepted realm, in bytes.
pub const MAX_REALM_LEN: usize = 256;

/// Why the HTTP layer refused a request. `Display` names the real reason
/// (at most a key id and a scope name, never a secret) and is meant for
/// logs; clients only learn the [`ClientClass`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The API key check failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Two or more `Authorization` field lines (RFC 9110 §5.3: the field is
    /// not a list). None of them is used.
    #[error("more than one Authorization header")]
    MultipleAuthorization,
    /// The application's bearer validator refused the token.
    #[error(transparent)]
    Bearer(#[from] BearerError),
    /// The handler needs an API key [`crate::Principal`], but the request
    /// was authenticated with a bearer token.
    #[error("the handler needs an API key, but the request carried a bearer token")]
    ApiKeyRequired,
    /// No identity in the request extensions: the route uses an extractor
    /// or scope guard without [`crate::http::ApiKeyLayer`] in front of it.
    /// A server bug, answered with 500.
    #[error("no authenticated identity in the request: is ApiKeyLayer missing on this route?")]
    MissingLayer,
}

/// Which challenge an error's `error=` parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    ApiKey,
    Bearer,
}

impl AuthError {
    /// What the client is told; `None` for [`AuthError::MissingLayer`],
    /// which is a server misconfiguration (500).
    #[must_use]
    pub fn client_class(&self) -> Option<ClientClass> {
        match self {
            Self::Verify(e) => Some(e.client_class()),
            Self::MultipleAuthorization => Some(ClientClass::InvalidRequest),
            Self::Bearer(BearerError::Invalid(_)) => Some(ClientClass::InvalidToken),
            Self::Bearer(BearerError::InsufficientScope { .. }) => Some(ClientClass::InsufficientScope),
            Self::Bearer(BearerError::Unavailable(_)) => Some(ClientClass::Unavailable),
            Self::ApiKeyRequired => Some(ClientClass::NoCredentials),
            Self::MissingLayer => None,
        }
    }

    /// The response status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.client_class()
            .and_then(|c| StatusCode::from_u16(c.status()).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The API key involved, if known (for logs).
    #[must_use]
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Self::Verify(e) => e.key_id(),
            _ => None,
        }
    }

    /// The scope a 403 names.
    fn required_scope(&self) -> Option<&Scope> {
        match self {
            Self::Verify(VerifyError::InsufficientScope { required, .. })
            | Self::Bearer(BearerError::InsufficientScope { required }) => Some(required),
            _ => None,
        }
    }

    /// The scheme whose challenge gets the `error=` parameter; `None` puts
    /// it on every challenge (the scheme could not be told).
    fn scheme(&self) -> Option<Scheme> {
        match self {
            Self::Verify(_) if self.client_class() == Some(ClientClass::InvalidRequest) => None,
            Self::Verify(_) => Some(Scheme::ApiKey),
            Self::Bearer(_) => Some(Scheme::Bearer),
            Self::MultipleAuthorization | Self::ApiKeyRequired | Self::MissingLayer => None,
        }
    }
}

/// The realm is not usable in a `WWW-Authenticate` quoted string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("realm must be 1 to {MAX_REALM_LEN} printable ASCII characters without `\"` or `\\`")]
pub struct RealmError;

/// How rejections are rendered: shared by the layer, the scope guard and
/// the axum extractors (which find it in the request extensions).
#[derive(Debug)]
pub(crate) struct RenderConfig {
    realm: Box<str>,
    bearer: bool,
    retry_after: HeaderValue,
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self::new(DEFAULT_REALM, false, DEFAULT_RETRY_AFTER)
    }
}

/// The realm used unless [`crate::http::ApiKeyLayer::realm`] sets another.
pub(crate) const DEFAULT_REALM: &str = "api";

/// `Retry-After` on a 503 unless [`crate::http::ApiKeyLayer::retry_after`]
/// sets another.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

impl RenderConfig {
    pub(crate) fn new(realm: &str, bearer: bool, retry_after: Duration) -> Self {
        Self { realm: realm.into(), bearer, retry_after: HeaderValue::from(retry_after.as_secs().max(1)) }
    }

    pub(crate) fn check_realm(realm: &str) -> Result<(), RealmError> {
        let ok = !realm.is_empty()
            && realm.len() <= MAX_REALM_LEN
            && realm.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b'"' && b != b'\\');
        if ok { Ok(()) } else { Err(RealmError) }
    }

    /// Logs the reason and renders the response: the only place either
    /// happens.
    pub(crate) fn reject(&self, error: &AuthError) -> Response<Full<Bytes>> {
        log(error);
        self.render(error)
    }

    /// As [`RenderConfig::reject`], as a trailers-only gRPC status when the
    /// request (its `headers`) is a gRPC call.
    pub(crate) fn reject_for(&self, error: &AuthError, headers: &http::HeaderMap) -> Response<Full<Bytes>> {
        if crate::http::grpc::is_grpc(headers) {
            log(error);
            crate::http::grpc::render(error.client_class())
        } else {
            self.reject(error)
        }
    }

    fn render(&self, error: &AuthError) -> Response<Full<Bytes>> {
        let class = error.client_class();
        let status = error.status();
        let code = class.and_then(error_code);
        let mut response = Response::new(Full::new(problem_body(status, class, self.bearer, error)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match class {
            None | Some(ClientClass::Forbidden | ClientClass::UsageExceeded) => {}
            Some(ClientClass::Unavailable) => {
                headers.insert(RETRY_AFTER, self.retry_after.clone());
            }
            Some(ClientClass::RateLimited) => rate_limited_headers(error, headers),
            Some(_) => {
                let schemes: &[(Scheme, &str)] = if self.bearer {
                    &[(Scheme::ApiKey, "Api-Key"), (Scheme::Bearer, "Bearer")]
                } else {
                    &[(Scheme::ApiKey, "Api-Key")]
                };
                for &(scheme, name) in schemes {
                    let mut value = format!("{name} realm=\"{}\"", self.realm);
                    if let Some(code) = code.filter(|_| error.scheme().is_none_or(|s| s == scheme)) {
                        value.push_str(", error=\"");
                        value.push_str(code);
                        value.push('"');
                        if let Some(scope) = error.required_scope() {
                            // Scope names are [A-Za-z0-9._-]: safe in a quoted string.
                            value.push_str(", scope=\"");
                            value.push_str(scope.as_str());
                            value.push('"');
                        }
                    }
                    // The realm was checked and everything else is ASCII
                    // literals or scope names, so this cannot fail.
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        headers.append(WWW_AUTHENTICATE, v);
                    }
                }
            }
        }
        response
    }
}

/// `Retry-After` (whole seconds, rounded up, at least 1) and the limit's
/// `RateLimit-Policy` and `RateLimit` (nothing left).
fn rate_limited_headers(error: &AuthError, headers: &mut http::HeaderMap) {
    let AuthError::Verify(VerifyError::RateLimited { retry_after, policy, .. }) = error else {
        return;
    };
    headers.insert(RETRY_AFTER, HeaderValue::from(ceil_secs(*retry_after).max(1)));
    if let (Some(p), Some(s)) = (policy_value(policy), state_value(policy, 0, *retry_after)) {
        headers.insert(RATELIMIT_POLICY, p);
        headers.insert(RATELIMIT, s);
    }
}

/// RFC 6750 §3.1 error code for a class; `None` for a bare challenge.
fn error_code(class: ClientClass) -> Option<&'static str> {
    match class {
        ClientClass::InvalidRequest => Some("invalid_request"),
        ClientClass::InvalidToken => Some("invalid_token"),
        ClientClass::InsufficientScope => Some("insufficient_scope"),
        ClientClass::NoCredentials
        | ClientClass::Unavailable
        | ClientClass::Forbidden
        | ClientClass::UsageExceeded
        | ClientClass::RateLimited => None,
    }
}

/// The RFC 9457 body: from the class (and the required scope) only.
fn problem_body(status: StatusCode, class: Option<ClientClass>, bearer: bool, error: &AuthError) -> Bytes {
    let detail = match class {
        None => "The server could not authenticate this request.",
        Some(ClientClass::NoCredentials) if bearer => {
            "Authentication is required: send `Authorization: Api-Key <key>` or `Authorization: Bearer <token>`."
        }
        Some(ClientClass::NoCredentials) => "Authentication is required: send `Authorization: Api-Key <key>`.",
        Some(ClientClass::InvalidRequest) => "The Authorization header is malformed or repeated.",
        Some(ClientClass::InvalidToken) => "The credentials are not valid.",
        Some(ClientClass::InsufficientScope) => "The credentials do not grant the scope this resource requires.",
        Some(ClientClass::Unavailable) => "Credentials cannot be checked right now; retry later.",
        Some(ClientClass::Forbidden) => "The credentials may not be used from this address.",
        Some(ClientClass::UsageExceeded) => "Usage exceeded: the credentials have no usage credits left.",
        Some(ClientClass::RateLimited) => "Rate limit exceeded: retry after the time given in Retry-After.",
    };
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(code) = class.and_then(error_code) {
        body["error"] = code.into();
    }
    if let Some(scope) = error.required_scope() {
        body["scope"] = scope.as_str().into();
    }
    Bytes::from(body.to_string())
}

/// Logs why a request was refused: the reason and key id, never the header.
fn log(error: &AuthError) {
    let key_id = error.key_id().map(tracing::field::display);
    match error.client_class() {
        None => tracing::error!(reason = %error, "authentication misconfigured: responding 500"),
        Some(ClientClass::Unavailable) => {
            tracing::warn!(key_id, reason = %error, cause = %Causes(error), "authentication unavailable: failing closed");
        }
        Some(ClientClass::NoCredentials) => tracing::debug!(reason = %error, "request without usable credentials"),
        Some(class) => tracing::info!(key_id, ?class, reason = %error, "request rejected"),
    }
}

/// The `source()` chain of an error, `: `-separated.
struct Causes<'a>(&'a AuthError);

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut next = self.0.source();
        let mut first = true;
        while let Some(e) = next {
            if !first {
                f.write_str(": ")?;
            }
            write!(f, "{e}")?;
            first = false;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::HeaderError;
    use crate::store::StoreError;
    use crate::token::TokenError;

    fn challenges(r: &Response<Full<Bytes>>) -> Vec<&str> {
        r.headers().get_all(WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap()).collect()
    }

    async fn body(r: Response<Full<Bytes>>) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn id() -> KeyId {
        KeyId::parse("abcdefghij0123456789").unwrap()
    }

    #[tokio::test]
    async fn invalid_token_variants_render_identically() {
        let cfg = RenderConfig::new("test", true, Duration::from_secs(3));
        let variants = [
            VerifyError::UnknownKey(Some(id())),
            VerifyError::UnknownKey(None),
            VerifyError::WrongSecret(id()),
            VerifyError::Expired(id()),
            VerifyError::Revoked(id()),
            VerifyError::Disabled(id()),
            VerifyError::BadChecksum,
            VerifyError::MalformedKey(TokenError::WrongPrefix),
        ];
        let mut seen = Vec::new();
        for v in variants {
            let r = cfg.render(&AuthError::Verify(v));
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let hs: Vec<String> = challenges(&r).into_iter().map(str::to_owned).collect();
            assert_eq!(hs, ["Api-Key realm=\"test\", error=\"invalid_token\"", "Bearer realm=\"test\""]);
            assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
            assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json");
            seen.push(body(r).await);
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(seen[0]["status"], 401);
        assert_eq!(seen[0]["error"], "invalid_token");
    }

    #[tokio::test]
    async fn classes_map_to_status_and_challenges() {
        let cfg = RenderConfig::new("r", false, Duration::from_secs(7));
        let r = cfg.render(&AuthError::Verify(VerifyError::Missing));
        assert_eq!((r.status(), challenges(&r)), (StatusCode::UNAUTHORIZED, vec!["Api-Key realm=\"r\""]));

        let r = cfg.render(&AuthError::Verify(VerifyError::Malformed(HeaderError::InvalidCredentials)));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(challenges(&r), ["Api-Key realm=\"r\", error=\"invalid_request\""]);

        let scope = Scope::new("yc.monitoring.read").unwrap();
        let r = cfg.render(&AuthError::Verify(VerifyError::InsufficientScope { key: id(), required: scope }));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(challenges(&r), ["Api-Key realm=\"r\", error=\"insufficient_scope\", scope=\"yc.monitoring.read\""]);
        assert_eq!(body(r).await["scope"], "yc.monitoring.read");

        let err = StoreError::unavailable(std::io::Error::other("db down"));
        let r = cfg.render(&AuthError::Verify(VerifyError::StoreUnavailable(err)));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "7");
        assert!(challenges(&r).is_empty());

        let r = cfg.render(&AuthError::MissingLayer);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(challenges(&r).is_empty());
    }

    #[tokio::test]
    async fn control_refusals_have_their_own_status_headers_and_bodies() {
        let cfg = RenderConfig::new("r", false, Duration::from_secs(7));
        let r = cfg.render(&AuthError::Verify(VerifyError::IpNotAllowed { key: id(), ip: None }));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(challenges(&r).is_empty());
        assert!(body(r).await["detail"].as_str().unwrap().contains("address"));

        let r = cfg.render(&AuthError::Verify(VerifyError::UsageExceeded(id())));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(r.headers().get(RETRY_AFTER).is_none() && challenges(&r).is_empty());
        assert!(body(r).await["detail"].as_str().unwrap().starts_with("Usage exceeded"));

        let policy: RateLimit = "api=100/1500ms:burst=20".parse().unwrap();
        let retry_after = Duration::from_millis(2001);
        let limited = VerifyError::RateLimited { key: id(), limit: policy.name.clone(), retry_after, policy };
        let r = cfg.render(&AuthError::Verify(limited));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "3", "rounded up");
        assert_eq!(r.headers()[RATELIMIT_POLICY], "\"api\";q=100;w=2");
        assert_eq!(r.headers()[RATELIMIT], "\"api\";r=0;t=3");
        assert!(challenges(&r).is_empty());
        assert_eq!(body(r).await["status"], 429);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn bearer_errors_mark_the_bearer_challenge() {
        let cfg = RenderConfig::new("r", true, Duration::from_secs(1));
        let r = cfg.render(&AuthError::Bearer(BearerError::invalid("expired")));
        assert_eq!(challenges(&r), ["Api-Key realm=\"r\"", "Bearer realm=\"r\", error=\"invalid_token\""]);
        let r = cfg.render(&AuthError::MultipleAuthorization);
        assert_eq!(
            challenges(&r),
            ["Api-Key realm=\"r\", error=\"invalid_request\"", "Bearer realm=\"r\", error=\"invalid_request\""]
        );
    }

    #[test]
    fn realm_is_checked() {
        assert!(RenderConfig::check_realm("my api").is_ok());
        for bad in ["", "a\"b", "a\\b", "tab\there", "caf\u{e9}"] {
            assert_eq!(RenderConfig::check_realm(bad), Err(RealmError), "{bad:?}");
        }
        assert!(RenderConfig::check_realm(&"x".repeat(MAX_REALM_LEN + 1)).is_err());
    }

    #[test]
    fn grpc_calls_get_the_status_of_their_class() {
        let mut grpc = http::HeaderMap::new();
        grpc.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        let config = RenderConfig::default();
        let cases = [
            (AuthError::Verify(VerifyError::Missing), "16"),
            (AuthError::Verify(VerifyError::Revoked(id())), "16"),
            (AuthError::MultipleAuthorization, "16"),
            (
                AuthError::Verify(VerifyError::InsufficientScope {
                    key: id(),
                    required: Scope::new("yc.monitoring.read").unwrap(),
                }),
                "7",
            ),
            (AuthError::Verify(VerifyError::StoreUnavailable(StoreError::unavailable("down"))), "14"),
            (AuthError::MissingLayer, "13"),
        ];
        for (error, code) in cases {
            let r = config.reject_for(&error, &grpc);
            assert_eq!(r.status(), StatusCode::OK, "{error}");
            assert_eq!(r.headers()["grpc-status"], code, "{error}");
            assert_ne!(config.reject_for(&error, &http::HeaderMap::new()).status(), StatusCode::OK, "{error}");
        }
    }
}
