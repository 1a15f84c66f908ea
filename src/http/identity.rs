//! Who the layer authenticated, as put in the request extensions.

use crate::http::bearer::BearerIdentity;
use crate::scope::{RequiredScope, ScopeSet};
use crate::verify::Principal;

/// The authenticated caller of a request, inserted into the request
/// extensions by [`crate::http::ApiKeyLayer`] on every request it lets
/// through. A handler that accepts both schemes matches on it; one that only
/// serves API keys can take the [`Principal`] directly (the layer inserts it
/// as its own extension for `Api-Key` requests).
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
