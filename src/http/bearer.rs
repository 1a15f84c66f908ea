//! `Authorization: Bearer …`: the application's own token validator.
//!
//! A cloud's APIs commonly accept IAM tokens beside API keys
//! (`Authorization: Bearer <IAM token>`). This crate does not know how to check
//! such tokens; the application plugs in a [`BearerValidator`] that turns a
//! token into a [`BearerIdentity`] (a subject and the scopes it carries) or a
//! [`BearerError`]. Without a validator, `Bearer` requests get a bare `401`
//! challenge like any other unsupported scheme. See [`BearerValidator`] for an example.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::BoxError;
use crate::scope::{RequiredScope, Scope, ScopeSet};

/// A `Bearer` token as it arrived: a validated RFC 9110 `token68`, borrowed
/// from the request. `Debug` never prints it.
#[derive(Clone, Copy)]
pub struct BearerToken<'a>(&'a str);

impl<'a> BearerToken<'a> {
    /// Wraps token bytes; `None` unless they are ASCII (every `token68` is).
    pub(crate) fn from_token68(bytes: &'a [u8]) -> Option<Self> {
        if bytes.is_ascii() { std::str::from_utf8(bytes).ok().map(Self) } else { None }
    }

    /// The token text. Handle it as a secret: never log it.
    #[must_use]
    pub fn expose(&self) -> &'a str {
        self.0
    }
}

impl fmt::Debug for BearerToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([REDACTED])")
    }
}

/// Who a valid bearer token stands for: a subject, the scopes the token
/// grants, and optionally the application's own claims.
///
/// Route scope requirements ([`crate::http::ApiKeyLayer::require_scope`],
/// [`crate::http::require_scope`]) check [`BearerIdentity::scopes`] the same
/// way they check an API key's scopes, implications included.
#[derive(Clone)]
pub struct BearerIdentity {
    subject: Arc<str>,
    scopes: ScopeSet,
    claims: Option<Arc<dyn Any + Send + Sync>>,
}

impl BearerIdentity {
    /// An identity for `subject` (for example a service account id taken
    /// from the token) holding `scopes`.
    pub fn new(subject: impl Into<Arc<str>>, scopes: ScopeSet) -> Self {
        Self { subject: subject.into(), scopes, claims: None }
    }

    /// Attaches application data (claims, a user record …), retrievable with
    /// [`BearerIdentity::claims`]. Never put the token itself here.
    #[must_use]
    pub fn with_claims<T: Any + Send + Sync>(mut self, claims: T) -> Self {
        self.claims = Some(Arc::new(claims));
        self
    }

    /// The subject the validator named.
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The scopes the token grants.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// Whether the token satisfies `required`, implications included.
    #[must_use]
    pub fn has_scope(&self, required: &RequiredScope) -> bool {
        required.is_satisfied_by(&self.scopes)
    }

    /// The scope check: `Ok` if the token satisfies `required`. The layer
    /// and the per-route guard both call this.
    ///
    /// # Errors
    /// [`BearerError::InsufficientScope`] naming the scope.
    pub fn require(&self, required: &RequiredScope) -> Result<(), BearerError> {
        if self.has_scope(required) {
            Ok(())
        } else {
            Err(BearerError::InsufficientScope { required: required.scope().clone() })
        }
    }

    /// The claims attached with [`BearerIdentity::with_claims`], if they
    /// are a `T`.
    #[must_use]
    pub fn claims<T: Any>(&self) -> Option<&T> {
        self.claims.as_deref().and_then(|c| (c as &dyn Any).downcast_ref())
    }
}

impl fmt::Debug for BearerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerIdentity")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("claims", &self.claims.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Why a bearer token was refused. `Display` is logged: never put the token
/// (or anything derived from it that would let someone replay it) in here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// The token is not valid (unknown, expired, bad signature …): 401
    /// `error="invalid_token"`, indistinguishable from a bad API key.
    #[error("bearer token rejected: {0}")]
    Invalid(&'static str),
    /// The token is valid but lacks the scope the route requires: 403
    /// `error="insufficient_scope"`.
    #[error("bearer identity lacks scope {required}")]
    InsufficientScope {
        /// The scope the route requires.
        required: Scope,
    },
    /// The validator could not decide (its backend is down): 503, fail
    /// closed.
    #[error("bearer token validator unavailable")]
    Unavailable(#[source] BoxError),
}

impl BearerError {
    /// [`BearerError::Invalid`] with a reason for the logs.
    #[must_use]
    pub fn invalid(reason: &'static str) -> Self {
        Self::Invalid(reason)
    }

    /// [`BearerError::Unavailable`] wrapping the backend's error.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }
}

/// Checks `Authorization: Bearer` tokens for the [`crate::http::ApiKeyLayer`].
///
/// Implement it with an `async fn`; the future must be `Send`. The layer
/// checks a route's required scope against the returned identity's scopes
/// itself, so a validator only answers "who is this and what may it do".
///
/// ```
/// use std::sync::Arc;
/// use api_keys::http::{ApiKeyLayer, BearerError, BearerIdentity, BearerToken, BearerValidator};
/// use api_keys::{MemoryStore, Pepper, Peppers, ScopeCatalog, ScopeSet, Verifier};
/// use subtle::ConstantTimeEq;
///
/// /// Accepts one configured token. A real validator would check a signed
/// /// JWT or ask the IAM service.
/// struct StaticToken {
///     token: String,
///     scopes: ScopeSet,
/// }
///
/// impl BearerValidator for StaticToken {
///     async fn validate(&self, token: BearerToken<'_>) -> Result<BearerIdentity, BearerError> {
///         if !bool::from(token.expose().as_bytes().ct_eq(self.token.as_bytes())) {
///             return Err(BearerError::invalid("unknown static token"));
///         }
///         Ok(BearerIdentity::new("robot-from-iam", self.scopes.clone()))
///     }
/// }
///
/// let catalog = ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?;
/// let scopes = catalog.resolve(Some(&["yc.monitoring.read"]))?;
/// let verifier = Verifier::builder(Arc::new(MemoryStore::new()), Peppers::single(Pepper::generate(1)?)).build();
/// let layer = ApiKeyLayer::new(verifier).bearer(StaticToken { token: "t1.example".into(), scopes });
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait BearerValidator: Send + Sync + 'static {
    /// Validates `token`.
    ///
    /// # Errors
    /// [`BearerError`]: `Invalid` for a bad token, `Unavailable` when the
    /// validator's backend cannot answer.
    fn validate(&self, token: BearerToken<'_>) -> impl Future<Output = Result<BearerIdentity, BearerError>> + Send;
}

impl<V: BearerValidator> BearerValidator for Arc<V> {
    fn validate(&self, token: BearerToken<'_>) -> impl Future<Output = Result<BearerIdentity, BearerError>> + Send {
        (**self).validate(token)
    }
}

/// The validator type of a layer without one: it cannot be constructed, so
/// `Bearer` requests are refused with a challenge.
#[derive(Debug, Clone, Copy)]
pub enum NoBearer {}

impl BearerValidator for NoBearer {
    async fn validate(&self, _: BearerToken<'_>) -> Result<BearerIdentity, BearerError> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = BearerToken::from_token68(b"s3cr3t-token").unwrap();
        assert_eq!(format!("{t:?}"), "BearerToken([REDACTED])");
        assert_eq!(t.expose(), "s3cr3t-token");
        assert!(BearerToken::from_token68(b"caf\xc3\xa9").is_none());
    }

    #[test]
    fn claims_round_trip_and_debug_hides_them() {
        #[derive(Debug, PartialEq)]
        struct Claims(&'static str);
        let id = BearerIdentity::new("sa-1", ScopeSet::default()).with_claims(Claims("hidden-claim"));
        assert_eq!(id.claims::<Claims>(), Some(&Claims("hidden-claim")));
        assert_eq!(id.claims::<u32>(), None);
        let dbg = format!("{id:?}");
        assert!(dbg.contains("sa-1") && !dbg.contains("hidden-claim"), "{dbg}");
    }
}
