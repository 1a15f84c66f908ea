//! Per-route scope requirements under one authenticating [`ApiKeyLayer`].
//!
//! [`ApiKeyLayer`]: crate::http::ApiKeyLayer

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body_util::Either;
use tower::{Layer, Service};

use crate::http::bearer::BearerIdentity;
use crate::http::layer::AuthBody;
use crate::http::rejection::{AuthError, RenderConfig};
use crate::scope::{RequiredScope, ScopeCatalog, ScopeError};
use crate::verify::Principal;

/// A guard for one route: `scope` from `catalog`, with its implications
/// (a key holding `yc.monitoring.manage` passes a guard for
/// `yc.monitoring.read`). Put it *inside* an [`ApiKeyLayer`]
/// (`axum::routing::MethodRouter::route_layer`, or any tower stack below the
/// layer); it answers 403 `insufficient_scope` when the authenticated caller
/// lacks the scope, and 500 if no `ApiKeyLayer` ran first.
///
/// ```
/// let catalog = api_keys::ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?;
/// let guard = api_keys::http::require_scope(&catalog, "yc.monitoring.read")?;
/// assert!(api_keys::http::require_scope(&catalog, "yc.monitoring.typo").is_err());
/// # let _ = guard;
/// # Ok::<(), api_keys::ScopeError>(())
/// ```
///
/// # Errors
/// [`ScopeError::Unknown`] if the catalog has no such scope: a typo caught
/// at start-up rather than a route nobody can call.
///
/// [`ApiKeyLayer`]: crate::http::ApiKeyLayer
pub fn require_scope(catalog: &ScopeCatalog, scope: &str) -> Result<RequireScopeLayer, ScopeError> {
    Ok(RequireScopeLayer::new(catalog.requirement(scope)?))
}

/// The [`Layer`] made by [`require_scope`].
#[derive(Clone, Debug)]
pub struct RequireScopeLayer {
    required: RequiredScope,
}

impl RequireScopeLayer {
    /// A guard for a precomputed requirement.
    #[must_use]
    pub fn new(required: RequiredScope) -> Self {
        Self { required }
    }

    /// The requirement.
    #[must_use]
    pub fn required(&self) -> &RequiredScope {
        &self.required
    }
}

impl<T> Layer<T> for RequireScopeLayer {
    type Service = RequireScopeService<T>;

    fn layer(&self, inner: T) -> Self::Service {
        RequireScopeService { inner, required: self.required.clone() }
    }
}

/// The service made by [`RequireScopeLayer`].
#[derive(Clone)]
pub struct RequireScopeService<T> {
    inner: T,
    required: RequiredScope,
}

impl<T: fmt::Debug> fmt::Debug for RequireScopeService<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeService").field("inner", &self.inner).field("required", &self.required).finish()
    }
}

/// Whether the identity in `extensions` satisfies `required`: the same
/// checks ([`Principal::require`], [`BearerIdentity::require`]) the layer
/// runs for its own requirement.
fn check(extensions: &http::Extensions, required: &RequiredScope) -> Result<(), AuthError> {
    if let Some(p) = extensions.get::<Principal>() {
        return Ok(p.require(required)?);
    }
    match extensions.get::<BearerIdentity>() {
        Some(b) => Ok(b.require(required)?),
        None => Err(AuthError::MissingLayer),
    }
}

impl<T, B, ResBody> Service<Request<B>> for RequireScopeService<T>
where
    T: Service<Request<B>, Response = Response<ResBody>>,
    T::Error: Send + 'static,
    T::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match check(req.extensions(), &self.required) {
            Ok(()) => {
                let fut = self.inner.call(req);
                Box::pin(async move { fut.await.map(|r| r.map(Either::Left)) })
            }
            Err(e) => {
                let render = req.extensions().get::<Arc<RenderConfig>>().cloned();
                let response = match render {
                    Some(r) => r.reject_for(&e, req.headers()),
                    None => RenderConfig::default().reject_for(&e, req.headers()),
                };
                Box::pin(std::future::ready(Ok(response.map(Either::Right))))
            }
        }
    }
}
