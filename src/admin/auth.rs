//! Who may call the management API.
//!
//! [`AdminAuth`] turns a request's head into an [`AdminCaller`] (an actor
//! for the operations log and the service accounts it may manage) or an
//! [`AdminRejection`]; the router then asks [`AdminAuth::allows`] for each
//! operation on a given service account. Two implementations ship:
//! [`StaticTokens`] (admin bearer tokens, kept as SHA-256 digests and
//! compared in constant time) and [`ApiKeyAdmin`] (API keys of this crate
//! that carry a configured admin scope, limited to their own service
//! account unless configured otherwise, granting only scopes they hold
//! themselves and never changing their own key's limits).

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::request::Parts;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::access_binding::Subject;
use crate::header::{self, Credentials};
use crate::http::TrustedProxies;
use crate::operation::Actor;
use crate::record::ServiceAccountId;
use crate::scope::{RequiredScope, ScopeCatalog, ScopeSet};
use crate::store::KeyStore;
use crate::token::KeyId;
use crate::verify::{ClientClass, Verifier, VerifyContext};

/// An operation of the management API, as [`AdminAuth::allows`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdminAction {
    /// `POST /apiKeys`.
    Create,
    /// `GET /apiKeys/{id}`.
    Get,
    /// `GET /apiKeys`.
    List,
    /// `PATCH /apiKeys/{id}`.
    Update,
    /// `DELETE /apiKeys/{id}`.
    Delete,
    /// `POST /apiKeys/{id}:reissue`.
    Reissue,
    /// `POST /apiKeys/{id}:revoke`.
    Revoke,
    /// `GET /apiKeys/{id}/operations`.
    ListOperations,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller {
    actor: Actor,
    service_accounts: Option<Arc<BTreeSet<ServiceAccountId>>>,
    key: Option<CallerKey>,
    subject: Option<Subject>,
}

/// The API key a caller authenticated with: it grants only what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallerKey {
    id: KeyId,
    scopes: ScopeSet,
}

impl AdminCaller {
    /// A caller that may manage every service account.
    #[must_use]
    pub fn any(actor: Actor) -> Self {
        Self { actor, service_accounts: None, key: None, subject: None }
    }

    /// A caller that may do what the roles bound to `subject` allow (on
    /// the resources they are bound on and below); by default it stands
    /// for its own service account.
    #[must_use]
    pub fn subject(actor: Actor, subject: Subject) -> Self {
        let Subject::ServiceAccount(own) = &subject;
        let service_accounts = Some(Arc::new(BTreeSet::from([own.clone()])));
        Self { actor, service_accounts, key: None, subject: Some(subject) }
    }

    /// The subject whose roles the caller acts with, if it is one.
    #[must_use]
    pub fn as_subject(&self) -> Option<&Subject> {
        self.subject.as_ref()
    }

    /// A caller limited to `service_accounts`.
    #[must_use]
    pub fn limited(actor: Actor, service_accounts: impl IntoIterator<Item = ServiceAccountId>) -> Self {
        Self {
            actor,
            service_accounts: Some(Arc::new(service_accounts.into_iter().collect())),
            key: None,
            subject: None,
        }
    }

    /// The caller authenticated with key `id`, which holds `scopes`: it may
    /// grant only scopes those satisfy, and may not change its own key's
    /// expiry, enabled flag or controls (an operator's call).
    #[must_use]
    pub fn with_key(mut self, id: KeyId, scopes: ScopeSet) -> Self {
        self.key = Some(CallerKey { id, scopes });
        self
    }

    /// The key the caller authenticated with, if it is an API key.
    #[must_use]
    pub fn own_key(&self) -> Option<&KeyId> {
        self.key.as_ref().map(|k| &k.id)
    }

    /// Whether the caller may grant every scope of `scopes` (judged with
    /// `catalog`'s implications): always for a caller that is not an API
    /// key; for a key, each scope must be one it holds or one those imply.
    ///
    /// # Errors
    /// The first scope the caller may not grant.
    pub fn may_grant<'a>(&self, catalog: &ScopeCatalog, scopes: &'a ScopeSet) -> Result<(), &'a str> {
        let Some(key) = &self.key else { return Ok(()) };
        for scope in scopes.iter() {
            let held = key.scopes.contains(scope.as_str())
                || catalog.requirement(scope.as_str()).is_ok_and(|r| r.is_satisfied_by(&key.scopes));
            if !held {
                return Err(scope.as_str());
            }
        }
        Ok(())
    }

    /// The service account a request that names none means: the caller's
    /// own, for a caller limited to exactly one; `None` for the rest (an
    /// operator token stands for no service account).
    #[must_use]
    pub fn default_service_account(&self) -> Option<&ServiceAccountId> {
        let accounts = self.service_accounts.as_ref()?;
        let mut it = accounts.iter();
        match (it.next(), it.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    /// The actor recorded in the operations log.
    #[must_use]
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Whether the caller is limited to no service accounts (an operator).
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self.service_accounts.is_none()
    }

    /// Whether the caller may manage `service_account`'s keys by its list
    /// of accounts (a subject's roles are judged by the management API).
    #[must_use]
    pub fn covers(&self, service_account: &ServiceAccountId) -> bool {
        self.subject.is_none() && self.service_accounts.as_ref().is_none_or(|s| s.contains(service_account))
    }
}

/// Why a caller was turned away.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminRejection {
    /// No or bad credentials: 401, code 16.
    #[error("missing or invalid admin credentials")]
    Unauthenticated,
    /// Valid credentials without the right: 403, code 7.
    #[error("{0}")]
    Forbidden(String),
    /// The credentials could not be checked (store down): 503, code 14.
    #[error("admin credentials cannot be checked now; retry later")]
    Unavailable,
}

/// Authenticates management API callers; the embedding application
/// implements it (or uses [`StaticTokens`] / [`ApiKeyAdmin`]).
pub trait AdminAuth: Send + Sync + 'static {
    /// Who is calling.
    ///
    /// # Errors
    /// [`AdminRejection`] for missing or bad credentials.
    fn authenticate(&self, parts: &Parts) -> impl Future<Output = Result<AdminCaller, AdminRejection>> + Send;

    /// Whether `caller` may do `action` on `service_account`'s keys.
    /// Defaults to [`AdminCaller::covers`].
    fn allows(&self, caller: &AdminCaller, action: AdminAction, service_account: &ServiceAccountId) -> bool {
        let _ = action;
        caller.covers(service_account)
    }
}

/// Two authentications: a request the first finds unauthenticated goes to
/// the second (e.g. operators' [`StaticTokens`] and service accounts'
/// [`ApiKeyAdmin`] keys on one API).
impl<A: AdminAuth, B: AdminAuth> AdminAuth for (A, B) {
    async fn authenticate(&self, parts: &Parts) -> Result<AdminCaller, AdminRejection> {
        match self.0.authenticate(parts).await {
            Err(AdminRejection::Unauthenticated) => self.1.authenticate(parts).await,
            other => other,
        }
    }
}

/// The `Bearer` token of a request, if it has exactly one `Authorization`
/// field in that scheme.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    match header::parse_authorization(value.as_bytes(), header::DEFAULT_MAX_HEADER_LEN) {
        Ok(Credentials::Bearer(token)) => Some(token),
        _ => None,
    }
}

/// The client's address: the connection's peer (axum's `ConnectInfo`), or
/// the address `trusted` proxies forwarded.
pub(crate) fn client_address(trusted: Option<&TrustedProxies>, parts: &Parts) -> Option<std::net::IpAddr> {
    let peer = crate::http::peer_addr(&parts.extensions)?;
    match trusted {
        Some(t) => t.client_ip(peer, &parts.headers),
        None => Some(peer.to_canonical()),
    }
}

/// Why an admin token is refused at configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Shorter than [`StaticTokens::MIN_LEN`] bytes, or not `token68`.
    #[error("admin tokens must be at least {min} characters of A-Z a-z 0-9 - . _ ~ + / (then =)", min = StaticTokens::MIN_LEN)]
    Weak,
    /// The actor name is invalid.
    #[error(transparent)]
    Actor(#[from] crate::operation::ActorError),
}

struct TokenEntry {
    digest: [u8; 32],
    caller: AdminCaller,
}

/// Static admin bearer tokens (`Authorization: Bearer <token>`), each with
/// the actor it is recorded as. Only SHA-256 digests of the tokens are
/// kept; a presented token's digest is compared with every configured one
/// in constant time.
#[derive(Default)]
pub struct StaticTokens {
    tokens: Vec<TokenEntry>,
}

impl fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actors: Vec<&str> = self.tokens.iter().map(|t| t.caller.actor.as_str()).collect();
        f.debug_struct("StaticTokens").field("actors", &actors).finish()
    }
}

impl StaticTokens {
    /// Shortest accepted token, in bytes.
    pub const MIN_LEN: usize = 16;

    /// No tokens (every call is refused).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a token for every service account, recorded as actor `name`.
    ///
    /// # Errors
    /// [`TokenError`] for a weak token or an invalid name.
    pub fn token(self, name: &str, token: &str) -> Result<Self, TokenError> {
        let caller = AdminCaller::any(Actor::new(name)?);
        self.add(token, caller)
    }

    /// Adds a token limited to `service_accounts`.
    ///
    /// # Errors
    /// [`TokenError`] for a weak token or an invalid name.
    pub fn limited_token(
        self,
        name: &str,
        token: &str,
        service_accounts: impl IntoIterator<Item = ServiceAccountId>,
    ) -> Result<Self, TokenError> {
        let caller = AdminCaller::limited(Actor::new(name)?, service_accounts);
        self.add(token, caller)
    }

    fn add(mut self, token: &str, caller: AdminCaller) -> Result<Self, TokenError> {
        if token.len() < Self::MIN_LEN || !header::is_token68(token.as_bytes()) {
            return Err(TokenError::Weak);
        }
        self.tokens.push(TokenEntry { digest: Sha256::digest(token.as_bytes()).into(), caller });
        Ok(self)
    }

    /// A stable name for `token` to record actions under: `admin-token-`
    /// and the first 8 hex digits of its SHA-256 (the same whatever the
    /// token's place in a list; 32 bits of a digest reveal nothing usable
    /// about a token of real entropy).
    #[must_use]
    pub fn token_id(token: &str) -> String {
        let digest = Sha256::digest(token.as_bytes());
        let mut id = String::from("admin-token-");
        for b in &digest[..4] {
            id.push_str(&format!("{b:02x}"));
        }
        id
    }

    /// How many tokens are configured.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller a presented token stands for: every configured digest is
    /// compared, whichever matches.
    fn lookup(&self, token: &[u8]) -> Option<&AdminCaller> {
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for entry in &self.tokens {
            let hit: Choice = entry.digest.ct_eq(&presented);
            if bool::from(hit) && found.is_none() {
                found = Some(&entry.caller);
            }
        }
        found
    }
}

impl AdminAuth for StaticTokens {
    async fn authenticate(&self, parts: &Parts) -> Result<AdminCaller, AdminRejection> {
        let token = bearer(&parts.headers).ok_or(AdminRejection::Unauthenticated)?;
        self.lookup(token).cloned().ok_or(AdminRejection::Unauthenticated)
    }
}

/// API keys of this crate as admin credentials (`Authorization: Api-Key
/// <key>`): the key must verify and carry the configured admin scope; it is
/// recorded as actor `apiKey:<id>` and manages its own service account's
/// keys only, unless [`ApiKeyAdmin::any_service_account`] is set.
///
/// The key is verified with the client's address (the connection's peer,
/// or with [`ApiKeyAdmin::trusted_proxies`] the address a trusted proxy
/// forwarded), so a key with an IP allow-list works as an admin from its
/// allowed addresses. Such a caller grants only scopes its key holds (or
/// implies), and may not change its own key's expiry, enabled flag or
/// controls.
pub struct ApiKeyAdmin<S> {
    verifier: Arc<Verifier<S>>,
    scope: RequiredScope,
    any_service_account: bool,
    roles: bool,
    trusted: Option<TrustedProxies>,
}

impl<S> fmt::Debug for ApiKeyAdmin<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAdmin")
            .field("scope", &self.scope.scope().as_str())
            .field("any_service_account", &self.any_service_account)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore> ApiKeyAdmin<S> {
    /// Keys verified by `verifier` that satisfy `scope` (build it with
    /// [`ScopeCatalog::requirement`](crate::ScopeCatalog::requirement)).
    #[must_use]
    pub fn new(verifier: Arc<Verifier<S>>, scope: RequiredScope) -> Self {
        Self { verifier, scope, any_service_account: false, roles: false, trusted: None }
    }

    /// Reads the client's address from the forwarding header of these
    /// proxies (when the peer is one of them). Defaults to none: the peer
    /// address is the client's.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted = Some(proxies);
        self
    }

    /// Judges admin keys by the access bindings of their service account
    /// ([`AdminCaller::subject`]) instead of the account alone. Defaults
    /// to `false`.
    #[must_use]
    pub fn roles(mut self, yes: bool) -> Self {
        self.roles = yes;
        self
    }

    /// Lets admin keys manage every service account. Defaults to `false`
    /// (their own only).
    #[must_use]
    pub fn any_service_account(mut self, yes: bool) -> Self {
        self.any_service_account = yes;
        self
    }
}

impl<S: KeyStore> AdminAuth for ApiKeyAdmin<S> {
    async fn authenticate(&self, parts: &Parts) -> Result<AdminCaller, AdminRejection> {
        let mut values = parts.headers.get_all(axum::http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(AdminRejection::Unauthenticated);
        };
        let ip = client_address(self.trusted.as_ref(), parts);
        let context = VerifyContext::new().required(Some(&self.scope)).client_ip(ip);
        let principal = match self.verifier.verify_with(value.as_bytes(), &context).await {
            Ok(p) => p,
            Err(e) => {
                return Err(match e.client_class() {
                    ClientClass::InsufficientScope => {
                        AdminRejection::Forbidden(format!("the key lacks the admin scope {}", self.scope.scope()))
                    }
                    ClientClass::Forbidden => {
                        AdminRejection::Forbidden("the key may not be used from this address".to_owned())
                    }
                    ClientClass::Unavailable => AdminRejection::Unavailable,
                    _ => AdminRejection::Unauthenticated,
                });
            }
        };
        let actor =
            Actor::new(&format!("apiKey:{}", principal.key_id())).map_err(|_| AdminRejection::Unauthenticated)?;
        let caller = if self.roles {
            AdminCaller::subject(actor, Subject::service_account(principal.service_account_id().clone()))
        } else if self.any_service_account {
            AdminCaller::any(actor)
        } else {
            AdminCaller::limited(actor, [principal.service_account_id().clone()])
        };
        Ok(caller.with_key(*principal.key_id(), principal.scopes().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: &[&str]) -> Parts {
        let mut b = axum::http::Request::builder();
        for a in auth {
            b = b.header("authorization", *a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn static_tokens_match_by_digest_and_refuse_the_rest() {
        let tokens = StaticTokens::new()
            .token("ops", "ops-token-0123456789")
            .unwrap()
            .limited_token("robot-admin", "robot-token-0123456789", [ServiceAccountId::new("robot").unwrap()])
            .unwrap();
        let ops = tokens.authenticate(&parts(&["Bearer ops-token-0123456789"])).await.unwrap();
        assert_eq!(ops.actor().as_str(), "ops");
        assert!(ops.covers(&ServiceAccountId::new("anyone").unwrap()));
        let robot = tokens.authenticate(&parts(&["bearer robot-token-0123456789"])).await.unwrap();
        assert!(robot.covers(&ServiceAccountId::new("robot").unwrap()));
        assert!(!tokens.allows(&robot, AdminAction::Create, &ServiceAccountId::new("other").unwrap()));
        for bad in [
            &[][..],
            &["Bearer ops-token-012345678"],
            &["Api-Key ops-token-0123456789"],
            &["Bearer ops-token-0123456789", "Bearer ops-token-0123456789"],
        ] {
            assert!(matches!(tokens.authenticate(&parts(bad)).await, Err(AdminRejection::Unauthenticated)), "{bad:?}");
        }
        assert!(!format!("{tokens:?}").contains("0123456789"));
        let id = StaticTokens::token_id("ops-token-0123456789");
        assert_eq!((id.len(), id.starts_with("admin-token-")), (20, true));
        assert_eq!(id, StaticTokens::token_id("ops-token-0123456789"), "stable");
        assert_ne!(id, StaticTokens::token_id("robot-token-0123456789"));
        assert_eq!(StaticTokens::new().token("x", "short").unwrap_err(), TokenError::Weak);
        assert_eq!(StaticTokens::new().token("x", "has space in it 0123").unwrap_err(), TokenError::Weak);
    }
}
