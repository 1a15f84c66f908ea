//! Who the layer authenticated, as put in the request extensions.

use crate::http::bearer::BearerIdentity;
use crate::scope::{RequiredScope, ScopeSet};
use crate::verify::Principal;

/// The authenticated caller of a request: the [`Principal`] or the
/// [`BearerIdentity`] that [`crate::http::ApiKeyLayer`] inserted into the
/// request extensions. Read it with [`Identity::from_extensions`] (or, with
/// the `axum` feature, as an extractor). A handler that accepts both schemes
/// matches on it; one that only serves API keys takes the [`Principal`].
///
/// ```
/// use api_keys::http::Identity;
///
/// fn caller(identity: &Identity) -> String {
///     match identity {
///         Identity::ApiKey(p) => format!("key {} of {}", p.key_id(), p.service_account_id()),
///         Identity::Bearer(b) => format!("token of {}", b.subject()),
///     }
/// }
/// ```
#[derive(Clone, Debug)]
pub enum Identity {
    /// `Authorization: Api-Key …`, verified against the key store.
    ApiKey(Principal),
    /// `Authorization: Bearer …`, accepted by the application's
    /// [`crate::http::BearerValidator`].
    Bearer(BearerIdentity),
}

impl Identity {
    /// The identity the layer put into `extensions`; `None` if no
    /// `ApiKeyLayer` authenticated the request.
    #[must_use]
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Self> {
        match extensions.get::<Principal>() {
            Some(p) => Some(Self::ApiKey(p.clone())),
            None => extensions.get::<BearerIdentity>().cloned().map(Self::Bearer),
        }
    }

    /// The API key principal, if the request used an API key.
    #[must_use]
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Self::ApiKey(p) => Some(p),
            Self::Bearer(_) => None,
        }
    }

    /// The bearer identity, if the request used a bearer token.
    #[must_use]
    pub fn bearer(&self) -> Option<&BearerIdentity> {
        match self {
            Self::ApiKey(_) => None,
            Self::Bearer(b) => Some(b),
        }
    }

    /// The scopes granted, whichever the scheme.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        match self {
            Self::ApiKey(p) => p.scopes(),
            Self::Bearer(b) => b.scopes(),
        }
    }

    /// Whether the caller satisfies `required`, implications included.
    #[must_use]
    pub fn has_scope(&self, required: &RequiredScope) -> bool {
        required.is_satisfied_by(self.scopes())
    }
}
