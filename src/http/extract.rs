//! axum extractors for what [`ApiKeyLayer`] put in the request extensions.
//!
//! - [`Principal`]: the API key's principal. On a request authenticated with
//!   a bearer token it rejects with a bare 401 `Api-Key` challenge; on a
//!   route without the layer it rejects with a 500 and logs an error (a
//!   server bug, not a client's).
//! - [`Identity`]: either scheme.
//!
//! Both reject with [`Rejection`], rendered like every other refusal.
//!
//! [`ApiKeyLayer`]: crate::http::ApiKeyLayer

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http::request::Parts;
use http_body_util::Full;

use crate::http::bearer::BearerIdentity;
use crate::http::identity::Identity;
use crate::http::rejection::{AuthError, RenderConfig};
use crate::verify::Principal;

/// A refused request, ready to render: the [`AuthError`] plus how this
/// layer renders rejections (realm, challenges, `Retry-After`).
///
/// It implements `axum::response::IntoResponse`: it is the rejection of the
/// crate's extractors.
pub struct Rejection {
    error: AuthError,
    config: Option<Arc<RenderConfig>>,
}

impl Rejection {
    pub(crate) fn new(error: AuthError, config: Option<Arc<RenderConfig>>) -> Self {
        Self { error, config }
    }

    /// Why.
    #[must_use]
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// The response status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.error.status()
    }

    /// Logs the reason and renders the response.
    #[must_use]
    pub fn render(self) -> http::Response<Full<Bytes>> {
        match &self.config {
            Some(c) => c.reject(&self.error),
            None => RenderConfig::default().reject(&self.error),
        }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection").field("error", &self.error).finish_non_exhaustive()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

fn reject(parts: &Parts, error: AuthError) -> Rejection {
    Rejection::new(error, parts.extensions.get::<Arc<RenderConfig>>().cloned())
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let error = if parts.extensions.get::<BearerIdentity>().is_some() {
            AuthError::ApiKeyRequired
        } else {
            AuthError::MissingLayer
        };
        Err(reject(parts, error))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Identity::from_extensions(&parts.extensions).ok_or_else(|| reject(parts, AuthError::MissingLayer))
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.render().map(axum::body::Body::new)
    }
}
