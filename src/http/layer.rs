//! [`ApiKeyLayer`] and its [`ApiKeyService`].

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::header::{self, Credentials};
use crate::http::bearer::{BearerToken, BearerValidator, NoBearer};
use crate::http::client_ip::{self, ForwardedHeader, TrustedProxies};
use crate::http::identity::Identity;
use crate::http::rejection::{
    AuthError, DEFAULT_REALM, DEFAULT_RETRY_AFTER, RATELIMIT, RATELIMIT_POLICY, RealmError, RenderConfig,
};
use crate::scope::RequiredScope;
use crate::store::KeyStore;
use crate::verify::{AtOnce, Principal, Rest, Verifier, VerifyContext, VerifyError};

/// The response body of [`ApiKeyService`] (and of the scope guard): the
/// inner service's body, or a rejection's problem+json body.
///
/// `Either` is a zero-cost `http_body::Body` whenever the inner body is one
/// with `Data = Bytes` (as axum's, hyper's and most bodies are), so the layer
/// composes with `axum::Router::layer` and `route_layer` without boxing.
pub type AuthBody<B> = Either<B, Full<Bytes>>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A tower [`Layer`] that authenticates every request with
/// `Authorization: Api-Key <key>` (and, when a [`BearerValidator`] is set,
/// `Authorization: Bearer <token>`).
///
/// For each request it
/// 1. reads the `Authorization` field lines with `HeaderMap::get_all`: two or
///    more are a 400 (never a silent pick of one);
/// 2. passes the raw bytes to the [`Verifier`] (non-visible-ASCII, over-long
///    or malformed values are a 400; an unknown scheme or no header is a bare
///    401 challenge), or a `Bearer` token to the validator;
/// 3. checks the layer's required scope, if any
///    ([`ApiKeyLayer::require_scope`]), implications included, and hands
///    the verifier the client address (see [`crate::http::TrustedProxies`]:
///    the connection's peer, or from trusted proxies their forwarding
///    header) and the request's credit cost ([`ApiKeyLayer::cost`], or a
///    [`Cost`] request extension);
/// 4. removes the `Authorization` header (unless
///    [`ApiKeyLayer::strip_authorization`] says not to), inserts the
///    [`crate::Principal`] (API key) or the
///    [`BearerIdentity`](crate::http::BearerIdentity) (bearer token) into
///    the request extensions, and calls the inner service.
///    [`Identity::from_extensions`] reads either. For a key with rate
///    limits the response gets the IETF `RateLimit-Policy` and `RateLimit`
///    headers of its tightest limit (unless
///    [`ApiKeyLayer::rate_limit_headers`] says not to).
///
/// Refusals never reach the inner service; they are rendered as tabled in
/// the [`crate::http`] module docs. Cloning is cheap (one `Arc`).
///
/// What completes without waiting is decided in `Service::call` itself: a
/// key the store lends at once ([`crate::KeyStore::lend_now`]: the memory
/// store, a cache hit) and has no rate limits or credits, and every
/// refusal of a malformed value. The inner service is then called in
/// `call`, and the returned future only awaits it (and adds the rate-limit
/// headers). A store that has to be asked, a key with rate limits or
/// credits, and a bearer token are decided when the future is polled.
pub struct ApiKeyLayer<S, V = NoBearer> {
    shared: Arc<Shared<S, V>>,
}

struct Shared<S, V> {
    verifier: Arc<Verifier<S>>,
    bearer: Option<Arc<V>>,
    required: Option<RequiredScope>,
    strip: bool,
    realm: Box<str>,
    retry_after: Duration,
    render: Arc<RenderConfig>,
    trusted: Option<TrustedProxies>,
    cost: u64,
    rate_headers: bool,
}

/// The credits a request costs, as a request extension set before the
/// [`ApiKeyLayer`] runs (for example by a middleware outside it that knows
/// the route). It overrides [`ApiKeyLayer::cost`] for that request.
///
/// ```
/// use api_keys::http::Cost;
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Cost(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost(pub u64);

impl<S, V> Clone for Shared<S, V> {
    fn clone(&self) -> Self {
        Self {
            verifier: Arc::clone(&self.verifier),
            bearer: self.bearer.clone(),
            required: self.required.clone(),
            strip: self.strip,
            realm: self.realm.clone(),
            retry_after: self.retry_after,
            render: Arc::clone(&self.render),
            trusted: self.trusted.clone(),
            cost: self.cost,
            rate_headers: self.rate_headers,
        }
    }
}

impl<S, V> Shared<S, V> {
    fn rebuild_render(&mut self) {
        self.render = Arc::new(RenderConfig::new(&self.realm, self.bearer.is_some(), self.retry_after));
    }
}

impl<S, V> Clone for ApiKeyLayer<S, V> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<S, V> fmt::Debug for ApiKeyLayer<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("ApiKeyLayer")
            .field("verifier", &s.verifier)
            .field("bearer", &s.bearer.is_some())
            .field("required", &s.required)
            .field("strip_authorization", &s.strip)
            .field("realm", &s.realm)
            .field("retry_after", &s.retry_after)
            .field("trusted_proxies", &s.trusted)
            .field("cost", &s.cost)
            .finish()
    }
}

impl<S: KeyStore> ApiKeyLayer<S, NoBearer> {
    /// A layer verifying API keys with `verifier`, with no bearer validator,
    /// no required scope, realm `"api"`, `Retry-After: 5` and the
    /// `Authorization` header stripped.
    pub fn new(verifier: impl Into<Arc<Verifier<S>>>) -> Self {
        let shared = Shared {
            verifier: verifier.into(),
            bearer: None,
            required: None,
            strip: true,
            realm: DEFAULT_REALM.into(),
            retry_after: DEFAULT_RETRY_AFTER,
            render: Arc::new(RenderConfig::default()),
            trusted: None,
            cost: 1,
            rate_headers: true,
        };
        Self { shared: Arc::new(shared) }
    }
}

impl<S: KeyStore, V: BearerValidator> ApiKeyLayer<S, V> {
    fn with(mut self, f: impl FnOnce(&mut Shared<S, V>)) -> Self {
        f(Arc::make_mut(&mut self.shared));
        self
    }

    /// Accepts `Authorization: Bearer` tokens checked by `validator`, and
    /// adds a `Bearer realm="…"` challenge to 401 responses. Defaults to
    /// none: `Bearer` requests get a bare 401 challenge.
    #[must_use]
    pub fn bearer<W: BearerValidator>(self, validator: W) -> ApiKeyLayer<S, W> {
        let s = &*self.shared;
        let mut shared = Shared {
            verifier: Arc::clone(&s.verifier),
            bearer: Some(Arc::new(validator)),
            required: s.required.clone(),
            strip: s.strip,
            realm: s.realm.clone(),
            retry_after: s.retry_after,
            render: Arc::clone(&s.render),
            trusted: s.trusted.clone(),
            cost: s.cost,
            rate_headers: s.rate_headers,
        };
        shared.rebuild_render();
        ApiKeyLayer { shared: Arc::new(shared) }
    }

    /// Requires `scope` on every request through this layer instance (a 403
    /// otherwise). Build it with [`crate::ScopeCatalog::requirement`] so the
    /// catalog's implications apply. Defaults to no requirement. For
    /// per-route requirements under one authenticating layer see
    /// [`crate::http::require_scope`].
    #[must_use]
    pub fn require_scope(self, scope: RequiredScope) -> Self {
        self.with(|s| s.required = Some(scope))
    }

    /// Whether the `Authorization` header is removed before the inner
    /// service sees the request, so handlers cannot log it by mistake.
    /// Defaults to `true`.
    #[must_use]
    pub fn strip_authorization(self, strip: bool) -> Self {
        self.with(|s| s.strip = strip)
    }

    /// The realm named in challenges. Defaults to `"api"`.
    ///
    /// # Errors
    /// [`RealmError`] unless it is 1–256 printable ASCII characters without
    /// `"` or `\`.
    pub fn realm(self, realm: &str) -> Result<Self, RealmError> {
        RenderConfig::check_realm(realm)?;
        Ok(self.with(|s| {
            s.realm = realm.into();
            s.rebuild_render();
        }))
    }

    /// `Retry-After` sent with a 503 (whole seconds, at least 1). Defaults
    /// to 5 seconds.
    #[must_use]
    pub fn retry_after(self, after: Duration) -> Self {
        self.with(|s| {
            s.retry_after = after;
            s.rebuild_render();
        })
    }

    /// Believes the `header` (`Forwarded` or `X-Forwarded-For`) of peers in
    /// `ranges`, taking the client address by the rightmost-untrusted rule
    /// (see [`TrustedProxies`]). Defaults to none: the client address is
    /// the connection's peer (axum's `ConnectInfo<SocketAddr>` or a
    /// `SocketAddr` extension), and forwarding headers are ignored.
    #[must_use]
    pub fn trusted_proxies(self, ranges: impl IntoIterator<Item = ipnet::IpNet>, header: ForwardedHeader) -> Self {
        let trusted = TrustedProxies::new(ranges, header);
        self.with(|s| s.trusted = Some(trusted))
    }

    /// Credits each request through this layer spends from a key with
    /// usage credits (0: none). A [`Cost`] request extension overrides it.
    /// Defaults to 1.
    #[must_use]
    pub fn cost(self, cost: u64) -> Self {
        self.with(|s| s.cost = cost)
    }

    /// Whether responses to keys with rate limits carry the
    /// `RateLimit-Policy` and `RateLimit` headers of the tightest limit.
    /// Refusals by a rate limit always carry them. Defaults to `true`.
    #[must_use]
    pub fn rate_limit_headers(self, on: bool) -> Self {
        self.with(|s| s.rate_headers = on)
    }

    /// The verifier (for example to call [`Verifier::flush_last_used`]
    /// periodically).
    #[must_use]
    pub fn verifier(&self) -> &Arc<Verifier<S>> {
        &self.shared.verifier
    }
}

impl<T, S, V> Layer<T> for ApiKeyLayer<S, V> {
    type Service = ApiKeyService<T, S, V>;

    fn layer(&self, inner: T) -> Self::Service {
        ApiKeyService { inner, shared: Arc::clone(&self.shared) }
    }
}

/// The service made by [`ApiKeyLayer`].
pub struct ApiKeyService<T, S, V = NoBearer> {
    inner: T,
    shared: Arc<Shared<S, V>>,
}

impl<T: Clone, S, V> Clone for ApiKeyService<T, S, V> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<T: fmt::Debug, S, V> fmt::Debug for ApiKeyService<T, S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<T, S, V, B, ResBody> Service<Request<B>> for ApiKeyService<T, S, V>
where
    T: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    T::Error: Send + 'static,
    T::Future: Send + 'static,
    S: KeyStore,
    V: BearerValidator,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<AuthBody<ResBody>>;
    type Error = T::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone is not ready; keep the ready one for this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let header = match take_authorization(req.headers_mut(), shared.strip) {
            Ok(h) => h,
            Err(e) => return shared.reject(&e, &req),
        };
        let ctx = shared.context(&req);
        let value = header.as_ref().map(HeaderValue::as_bytes);
        match shared.begin(value, ctx) {
            // Decided at once (a key the store lent at once, or garbage):
            // the future only awaits the inner service.
            Begun::Done(Ok(identity)) => shared.admit(inner, req, identity),
            Begun::Done(Err(e)) => shared.reject(&e, &req),
            Begun::Wait(wait) => Box::pin(async move {
                let value = header.as_ref().map(HeaderValue::as_bytes);
                match shared.finish(value, wait, ctx).await {
                    Ok(identity) => shared.admit(inner, req, identity).await,
                    Err(e) => Ok(shared.render.reject_for(&e, req.headers()).map(Either::Right)),
                }
            }),
        }
    }
}

/// The future of [`ApiKeyService`].
type AuthFuture<E, ResBody> = BoxFuture<Result<Response<AuthBody<ResBody>>, E>>;

/// What [`Shared::begin`] decided.
enum Begun {
    /// The identity, or why there is none.
    Done(Result<Identity, AuthError>),
    /// Steps that wait.
    Wait(Wait),
}

/// The waiting steps, with where the credentials sit in the header value.
enum Wait {
    /// The verifier's steps after a store lookup or for rate limits and
    /// credits.
    ApiKey(Range<usize>, Rest),
    /// The bearer validator.
    Bearer(Range<usize>),
}

/// Where `part` (a sub-slice of `whole`, as the header parser returns)
/// sits in `whole`.
fn place_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr().addr().wrapping_sub(whole.as_ptr().addr());
    start..start.wrapping_add(part.len())
}

/// The single `Authorization` value, removed from the headers if `strip`.
///
/// # Errors
/// [`AuthError::MultipleAuthorization`] for two or more field lines.
fn take_authorization(headers: &mut HeaderMap, strip: bool) -> Result<Option<HeaderValue>, AuthError> {
    let mut lines = headers.get_all(AUTHORIZATION).iter();
    let first = lines.next();
    if lines.next().is_some() {
        return Err(AuthError::MultipleAuthorization);
    }
    match first {
        None => Ok(None),
        Some(v) if !strip => Ok(Some(v.clone())),
        // Removing hands back the one value: no copy.
        Some(_) => Ok(headers.remove(AUTHORIZATION)),
    }
}

/// The `RateLimit-Policy` and `RateLimit` values for a principal with rate
/// limits.
fn rate_limit_headers(p: &Principal) -> Option<(HeaderValue, HeaderValue)> {
    let (limit, status) = p.rate_limit()?;
    let policy = crate::http::rejection::policy_value(limit);
    let state = crate::http::rejection::state_value(limit, status.remaining, status.reset);
    Some((policy?, state?))
}

impl<S: KeyStore, V: BearerValidator> Shared<S, V> {
    /// The client address and credit cost of `req` (the scope is the
    /// layer's).
    fn context<B>(&self, req: &Request<B>) -> (Option<std::net::IpAddr>, u64) {
        let ip = client_ip::client_ip(self.trusted.as_ref(), req.extensions(), req.headers());
        let cost = req.extensions().get::<Cost>().map_or(self.cost, |c| c.0);
        (ip, cost)
    }

    /// The verifier's context for a request.
    fn verify_context(&self, (client_ip, cost): (Option<std::net::IpAddr>, u64)) -> VerifyContext<'_> {
        VerifyContext::new().required(self.required.as_ref()).client_ip(client_ip).cost(cost)
    }

    /// Parses the value once and sends the credentials where they belong:
    /// an API key to the verifier, a bearer token to the validator. What
    /// completes without waiting (an API key the store lends at once, any
    /// refusal) is decided here; the rest is [`Self::finish`]'s, which
    /// finds the credentials again by their place in the value, unparsed.
    fn begin(&self, header: Option<&[u8]>, ctx: (Option<std::net::IpAddr>, u64)) -> Begun {
        let Some(value) = header else {
            return Begun::Done(Err(VerifyError::Missing.into()));
        };
        let credentials = match header::parse_authorization(value, self.verifier.config().max_header_len) {
            Ok(c) => c,
            Err(e) => return Begun::Done(Err(VerifyError::from_header(e).into())),
        };
        match credentials {
            Credentials::ApiKey(key) => match self.verifier.begin_key(key, &self.verify_context(ctx)) {
                AtOnce::Done(outcome) => Begun::Done(outcome.map(Identity::ApiKey).map_err(AuthError::from)),
                AtOnce::Wait(rest) => Begun::Wait(Wait::ApiKey(place_in(value, key), rest)),
            },
            Credentials::Bearer(token) if self.bearer.is_some() => Begun::Wait(Wait::Bearer(place_in(value, token))),
            Credentials::Bearer(_) => Begun::Done(Err(VerifyError::UnsupportedScheme.into())),
        }
    }

    /// The waiting steps [`Self::begin`] left, on the same header value.
    async fn finish(
        &self,
        header: Option<&[u8]>,
        wait: Wait,
        ctx: (Option<std::net::IpAddr>, u64),
    ) -> Result<Identity, AuthError> {
        let value = header.unwrap_or_default();
        match wait {
            Wait::ApiKey(at, rest) => {
                let key = value.get(at).unwrap_or_default();
                Ok(Identity::ApiKey(self.verifier.rest_of_key(key, rest, &self.verify_context(ctx)).await?))
            }
            Wait::Bearer(at) => match &self.bearer {
                Some(validator) => self.bearer(validator, value.get(at).unwrap_or_default()).await,
                None => Err(VerifyError::UnsupportedScheme.into()),
            },
        }
    }

    /// Lets an authenticated request through: its identity (and the
    /// layer's renderer) into the extensions, the inner service called at
    /// once, and the rate-limit headers added to its response.
    fn admit<T, B, ResBody>(
        &self,
        mut inner: T,
        mut req: Request<B>,
        identity: Identity,
    ) -> AuthFuture<T::Error, ResBody>
    where
        T: Service<Request<B>, Response = Response<ResBody>>,
        T::Future: Send + 'static,
    {
        let ext = req.extensions_mut();
        let mut rate = None;
        match identity {
            Identity::ApiKey(p) => {
                rate = self.rate_headers.then(|| rate_limit_headers(&p)).flatten();
                ext.insert(p);
            }
            Identity::Bearer(b) => {
                ext.insert(b);
            }
        }
        ext.insert(Arc::clone(&self.render));
        let response = inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some((policy, state)) = rate {
                response.headers_mut().insert(RATELIMIT_POLICY, policy);
                response.headers_mut().insert(RATELIMIT, state);
            }
            Ok(response.map(Either::Left))
        })
    }

    /// The refusal of `req`, ready at once.
    fn reject<B, E, ResBody>(&self, error: &AuthError, req: &Request<B>) -> AuthFuture<E, ResBody>
    where
        E: Send + 'static,
        ResBody: Send + 'static,
    {
        let response = self.render.reject_for(error, req.headers()).map(Either::Right);
        Box::pin(std::future::ready(Ok(response)))
    }

    async fn bearer(&self, validator: &V, token68: &[u8]) -> Result<Identity, AuthError> {
        let token = BearerToken::from_token68(token68).ok_or(VerifyError::UnsupportedScheme)?;
        let identity = validator.validate(token).await?;
        if let Some(required) = &self.required {
            identity.require(required)?;
        }
        Ok(Identity::Bearer(identity))
    }
}

/// Compile-time checks: the layer and service can be shared across tasks,
/// whatever the store and validator.
const _: () = {
    const fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<ApiKeyLayer<crate::store::MemoryStore>>();
    shareable::<ApiKeyService<(), crate::store::MemoryStore>>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::bearer::{BearerError, BearerIdentity};
    use crate::scope::ScopeSet;
    use crate::store::MemoryStore;
    use crate::{CreateRequest, KeyManager, Pepper, Peppers};

    /// Accepts exactly `good-token`; counts its calls.
    struct OneToken(std::sync::atomic::AtomicUsize);

    impl BearerValidator for OneToken {
        async fn validate(&self, token: BearerToken<'_>) -> Result<BearerIdentity, BearerError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if token.expose() == "good-token" {
                Ok(BearerIdentity::new("robot", ScopeSet::default()))
            } else {
                Err(BearerError::invalid("unknown token"))
            }
        }
    }

    fn parses() -> usize {
        header::PARSE_CALLS.with(std::cell::Cell::get)
    }

    /// One request, one parse: a Bearer value goes from the parser straight
    /// to the validator (the verifier never sees it), an API key straight to
    /// `Verifier::verify_key`.
    #[tokio::test(flavor = "current_thread")]
    async fn each_scheme_is_parsed_once_and_routed_by_its_credentials() {
        let manager = KeyManager::builder(
            Arc::new(MemoryStore::new()),
            Peppers::single(Pepper::generate(1).unwrap()),
            crate::testing::scope_catalog(),
        )
        .build();
        let created = manager.create(CreateRequest::new("robot")).await.unwrap();
        let validator = Arc::new(OneToken(std::sync::atomic::AtomicUsize::new(0)));
        let layer = ApiKeyLayer::new(manager.verifier().build()).bearer(Arc::clone(&validator));
        let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
            let kind = match Identity::from_extensions(req.extensions()) {
                Some(Identity::ApiKey(_)) => "api-key",
                Some(Identity::Bearer(_)) => "bearer",
                None => "none",
            };
            Ok::<_, std::convert::Infallible>(Response::new(kind))
        }));
        let call = |value: String| {
            let mut svc = svc.clone();
            async move {
                let req = Request::builder().header(AUTHORIZATION, value).body(()).unwrap();
                let before = parses();
                let res = svc.call(req).await.unwrap();
                (res.status().as_u16(), parses() - before, matches!(res.body(), Either::Left(_)))
            }
        };

        assert_eq!(call("Bearer good-token".into()).await, (200, 1, true));
        assert_eq!(validator.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(call("Bearer bad-token".into()).await, (401, 1, false));
        assert_eq!(validator.0.load(std::sync::atomic::Ordering::Relaxed), 2);
        let key = format!("Api-Key {}", created.secret.expose_secret());
        assert_eq!(call(key).await, (200, 1, true));
        assert_eq!(validator.0.load(std::sync::atomic::Ordering::Relaxed), 2, "API keys never reach the validator");
        assert_eq!(call("Basic dXNlcg==".into()).await, (401, 1, false));
    }

    #[test]
    fn two_authorization_lines_are_refused_even_if_identical() {
        let mut h = HeaderMap::new();
        h.append(AUTHORIZATION, HeaderValue::from_static("Api-Key a"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Api-Key a"));
        assert!(matches!(take_authorization(&mut h, true), Err(AuthError::MultipleAuthorization)));
    }

    #[test]
    fn single_line_is_taken_and_stripped_on_request() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Api-Key a"));
        assert_eq!(take_authorization(&mut h, false).unwrap().unwrap(), "Api-Key a");
        assert!(h.contains_key(AUTHORIZATION));
        assert_eq!(take_authorization(&mut h, true).unwrap().unwrap(), "Api-Key a");
        assert!(!h.contains_key(AUTHORIZATION));
        assert!(take_authorization(&mut h, true).unwrap().is_none());
    }
}
