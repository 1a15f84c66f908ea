//! The verify path: header bytes → [`Principal`].
//!
//! Read top to bottom, [`Verifier::verify`] is the data flow of the crate:
//!
//! 1. **header** — cap the length, parse `Api-Key <token68>` ([`crate::header`]);
//! 2. **token** — length, alphabet, checksum ([`crate::Token::parse`]); garbage
//!    stops here, before any store access or hashing;
//! 3. **store** — fetch the one record named by the key id;
//! 4. **digest** — `HMAC-SHA256(pepper, secret)` compared in constant time
//!    (an unknown id runs the same HMAC and compare against a dummy digest);
//! 5. **key** — revoked? disabled? expired (now ≥ `expires_at`, or its age reached the
//!    limit of a maximum-lifetime access policy, with [`LifetimeLimits`])?
//! 6. **address** — for a key with an IP allow-list: is the client address
//!    ([`VerifyContext::client_ip`]) in it? An unknown address is refused;
//! 7. **scope** — does a granted scope satisfy the requirement?
//! 8. **rate limits** — for a key with rate limits: does the verifier's
//!    [`RateLimiter`] allow one more request?
//! 9. **credits** — for a key with usage credits: spend
//!    [`VerifyContext::cost`] in one atomic store operation
//!    ([`KeyStore::spend_credits`]);
//! 10. **principal** — note last use (coalesced), return the principal.
//!
//! Steps 3–7 run while the store lends the record; a key without controls
//! (`KeyRecord::controls == None`) takes exactly that path and returns, at
//! the cost of one branch. Only a key whose controls enforce rate limits or
//! credits carries an `Arc` of them on to the asynchronous steps 8–9. A
//! failing limiter or store in those steps refuses the request as
//! unavailable (fail closed).
//!
//! # Which errors clients may see
//!
//! [`VerifyError::client_class`] folds the variants into what a client is
//! told. `UnknownKey`, `WrongSecret`, `Expired`, `Revoked`, `Disabled`, `BadChecksum` and
//! `MalformedKey` all become one indistinguishable [`ClientClass::InvalidToken`]
//! (HTTP 401 `error="invalid_token"`): telling them apart would be an oracle
//! for guessing ids or learning a key's state. The variant itself, with the
//! key id, is for logs only. `InsufficientScope` may name the required scope
//! (403); header grammar errors are 400; store trouble is 503 (fail closed).
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::{KeyManager, CreateRequest, MemoryStore, Pepper, Peppers, ScopeCatalog};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let peppers = Peppers::single(Pepper::generate(1)?);
//! let manager = KeyManager::builder(Arc::new(MemoryStore::new()), peppers, ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?).build();
//! let verifier = manager.verifier().build();
//!
//! let created = manager.create(CreateRequest::new("my-robot").scopes(["yc.monitoring.read"])).await?;
//! let header = format!("Api-Key {}", created.secret.expose_secret());
//! let need = manager.catalog().requirement("yc.monitoring.read")?;
//! let principal = verifier.verify(header.as_bytes(), Some(&need)).await?;
//! assert_eq!(principal.service_account_id().as_str(), "my-robot");
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::access_policy::LifetimeLimits;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::controls::{
    CreditSpend, Credits, ExternalId, KeyControls, LimitName, LocalRateLimiter, Metadata, RateDecision, RateLimit,
    RateLimiter, RateLimits, RateStatus,
};
use crate::digest::{Digest, Peppers};
use crate::header::{self, Credentials, HeaderError};
use crate::last_used::LastUsed;
use crate::record::{KeyKind, KeyRecord, KeyStatus, ServiceAccountId};
use crate::scope::{RequiredScope, Scope, ScopeSet};
use crate::secret::Secret;
use crate::store::{KeyStore, RecordView, StoreError};
use crate::token::{KeyId, Token, TokenError, TokenFormat};

/// Why a request was not authenticated. `Display` never contains secrets:
/// at most a key id and a scope name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No `Authorization` header, or an empty one.
    #[error("no credentials")]
    Missing,
    /// The header is not valid `Authorization` syntax.
    #[error("malformed authorization header: {0}")]
    Malformed(HeaderError),
    /// A scheme other than `Api-Key`. [`Verifier::verify`] checks API keys
    /// only: a `Bearer` value is this too. To accept both, parse the header
    /// once with [`header::parse_authorization`] and send
    /// [`Credentials::Bearer`] to your token validator, as the tower layer
    /// does.
    #[error("unsupported authorization scheme")]
    UnsupportedScheme,
    /// The key is not in this crate's format (and not an importable key).
    #[error("API key is malformed: {0}")]
    MalformedKey(TokenError),
    /// The key's checksum is wrong: a typo or invented key.
    #[error("API key checksum does not match")]
    BadChecksum,
    /// No such key (for imported keys there is no id to report).
    #[error("unknown API key{}", .0.map(|id| format!(" id {id}")).unwrap_or_default())]
    UnknownKey(Option<KeyId>),
    /// The key exists but the secret is wrong.
    #[error("wrong secret for API key {0}")]
    WrongSecret(KeyId),
    /// The key expired.
    #[error("API key {0} expired")]
    Expired(KeyId),
    /// The key was revoked.
    #[error("API key {0} is revoked")]
    Revoked(KeyId),
    /// The key is disabled (reversible, unlike a revoke).
    #[error("API key {0} is disabled")]
    Disabled(KeyId),
    /// The key has an IP allow-list and the client address is outside it
    /// (or unknown: a key with an allow-list is refused when the address
    /// is not known).
    #[error("API key {key} may not be used from {}", .ip.map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string()))]
    IpNotAllowed {
        /// The key.
        key: KeyId,
        /// The client address, if known.
        ip: Option<std::net::IpAddr>,
    },
    /// The key's usage credits are spent.
    #[error("API key {0} has used up its credits")]
    UsageExceeded(KeyId),
    /// One of the key's rate limits is exceeded.
    #[error("API key {key} exceeded rate limit {limit}; retry after {retry_after:?}")]
    RateLimited {
        /// The key.
        key: KeyId,
        /// The limit that refused.
        limit: LimitName,
        /// When the request would be allowed.
        retry_after: Duration,
        /// The whole limit that refused (its rate, for the
        /// `RateLimit-Policy` response header).
        policy: RateLimit,
    },
    /// The key is valid but lacks the required scope.
    #[error("API key {key} lacks scope {required}")]
    InsufficientScope {
        /// The key.
        key: KeyId,
        /// The scope the route requires.
        required: Scope,
    },
    /// The record names a pepper version this verifier does not hold.
    #[error("API key {key} uses pepper version {version}, which is not configured")]
    UnknownPepper {
        /// The key.
        key: KeyId,
        /// The missing version.
        version: u32,
    },
    /// The store could not answer; nothing is accepted.
    #[error("key store unavailable")]
    StoreUnavailable(#[source] StoreError),
}

/// What a client may be told about a [`VerifyError`] (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientClass {
    /// No usable credentials: 401 with a bare challenge (no `error=`).
    NoCredentials,
    /// Malformed request: 400 `invalid_request`.
    InvalidRequest,
    /// Any bad key, indistinguishably: 401 `invalid_token`.
    InvalidToken,
    /// Valid key, missing scope: 403 `insufficient_scope`.
    InsufficientScope,
    /// Valid key used from an address outside its allow-list: 403.
    Forbidden,
    /// Valid key whose usage credits are spent: 429, usage exceeded.
    UsageExceeded,
    /// Valid key over one of its rate limits: 429 with `Retry-After`.
    RateLimited,
    /// Store or configuration trouble: 503, fail closed.
    Unavailable,
}

impl ClientClass {
    /// The HTTP status code for this class.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::NoCredentials | Self::InvalidToken => 401,
            Self::InvalidRequest => 400,
            Self::InsufficientScope | Self::Forbidden => 403,
            Self::UsageExceeded | Self::RateLimited => 429,
            Self::Unavailable => 503,
        }
    }
}

impl VerifyError {
    /// The client-visible class. See the module docs for why several
    /// variants share [`ClientClass::InvalidToken`].
    #[must_use]
    pub fn client_class(&self) -> ClientClass {
        match self {
            Self::Missing | Self::UnsupportedScheme => ClientClass::NoCredentials,
            Self::Malformed(_) => ClientClass::InvalidRequest,
            Self::MalformedKey(_)
            | Self::BadChecksum
            | Self::UnknownKey(_)
            | Self::WrongSecret(_)
            | Self::Expired(_)
            | Self::Revoked(_)
            | Self::Disabled(_) => ClientClass::InvalidToken,
            Self::InsufficientScope { .. } => ClientClass::InsufficientScope,
            Self::IpNotAllowed { .. } => ClientClass::Forbidden,
            Self::UsageExceeded(_) => ClientClass::UsageExceeded,
            Self::RateLimited { .. } => ClientClass::RateLimited,
            Self::UnknownPepper { .. } | Self::StoreUnavailable(_) => ClientClass::Unavailable,
        }
    }

    /// The key id involved, if known (for logs).
    #[must_use]
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Self::UnknownKey(id) => *id,
            Self::WrongSecret(id)
            | Self::Expired(id)
            | Self::Revoked(id)
            | Self::Disabled(id)
            | Self::UsageExceeded(id) => Some(*id),
            Self::InsufficientScope { key, .. }
            | Self::UnknownPepper { key, .. }
            | Self::IpNotAllowed { key, .. }
            | Self::RateLimited { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// The error for a header the parser refused.
    pub(crate) fn from_header(e: HeaderError) -> Self {
        match e {
            HeaderError::Empty => Self::Missing,
            HeaderError::UnsupportedScheme => Self::UnsupportedScheme,
            other => Self::Malformed(other),
        }
    }
}

/// An authenticated caller: the key's id, its service account, its scopes,
/// its expiry and its controls (metadata, external id, and what the last
/// rate-limit check and credit spend left).
///
/// Small: the service account and the scope set are interned process-wide
/// (see [`crate::RecordView`]), so for a key without controls making,
/// cloning or dropping a principal touches no reference count and allocates
/// nothing; a key with controls shares them through one `Arc`.
#[derive(Clone)]
pub struct Principal {
    key_id: KeyId,
    expires_at: Option<Timestamp>,
    service_account_id: &'static ServiceAccountId,
    scopes: &'static ScopeSet,
    controls: Option<Arc<KeyControls>>,
    usage: Usage,
}

/// What the enforcing steps left on a principal.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    credits_remaining: Option<u64>,
    rate: Option<RateStatus>,
}

impl Principal {
    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The service account the key belongs to.
    #[must_use]
    pub fn service_account_id(&self) -> &ServiceAccountId {
        self.service_account_id
    }

    /// The scopes granted to the key (as granted; implications apply through
    /// [`Principal::has_scope`]).
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        self.scopes
    }

    /// Whether the key satisfies `required`, implications included.
    #[must_use]
    pub fn has_scope(&self, required: &RequiredScope) -> bool {
        required.is_satisfied_by(self.scopes)
    }

    /// The scope check: `Ok` if the key satisfies `required`. The verifier
    /// and the HTTP layer's per-route guard both call this.
    ///
    /// # Errors
    /// [`VerifyError::InsufficientScope`] naming the key and the scope.
    pub fn require(&self, required: &RequiredScope) -> Result<(), VerifyError> {
        if self.has_scope(required) {
            Ok(())
        } else {
            Err(VerifyError::InsufficientScope { key: self.key_id, required: required.scope().clone() })
        }
    }

    /// The key's expiry, if any.
    #[must_use]
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// The key's controls, if any is set.
    #[must_use]
    pub fn controls(&self) -> Option<&KeyControls> {
        self.controls.as_deref()
    }

    /// The key's metadata, if set.
    #[must_use]
    pub fn metadata(&self) -> Option<&Metadata> {
        self.controls()?.metadata.as_ref()
    }

    /// The key's external owner id, if set.
    #[must_use]
    pub fn external_id(&self) -> Option<&ExternalId> {
        self.controls()?.external_id.as_ref()
    }

    /// The credits left after this verification spent its cost; `None` for
    /// a key without credits. With [`VerifyContext::cost`] 0 nothing is
    /// spent and this is the count as the store last lent it.
    #[must_use]
    pub fn credits_remaining(&self) -> Option<u64> {
        self.usage.credits_remaining
    }

    /// The key's tightest rate limit after this request and its state
    /// (requests left, time until the burst is full), for the IETF
    /// `RateLimit` / `RateLimit-Policy` response headers; `None` for a key
    /// without rate limits.
    #[must_use]
    pub fn rate_limit(&self) -> Option<(&RateLimit, RateStatus)> {
        let status = self.usage.rate?;
        let limit = self.controls()?.rate_limits.as_ref()?.as_slice().get(status.index)?;
        Some((limit, status))
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("key_id", &self.key_id)
            .field("service_account_id", self.service_account_id)
            .field("scopes", self.scopes)
            .field("external_id", &self.external_id())
            .field("credits_remaining", &self.usage.credits_remaining)
            .finish_non_exhaustive()
    }
}

/// What one verification checks besides the key: the scope the route
/// requires, the client address (for keys with an IP allow-list) and the
/// credits the request costs (for keys with usage credits).
///
/// ```
/// use api_keys::VerifyContext;
/// let ctx = VerifyContext::new().client_ip("203.0.113.7".parse().ok()).cost(5);
/// assert_eq!(ctx.cost, 5);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct VerifyContext<'a> {
    /// The scope the route requires. Defaults to none.
    pub required: Option<&'a RequiredScope>,
    /// The client's address. A key with an IP allow-list is refused when
    /// it is `None` (fail closed). Defaults to `None`.
    pub client_ip: Option<IpAddr>,
    /// Credits this request spends from a key with usage credits; 0 spends
    /// none and does not refuse a key with none left (for operator checks
    /// that must not spend them). Defaults to 1.
    pub cost: u64,
}

impl Default for VerifyContext<'_> {
    fn default() -> Self {
        Self { required: None, client_ip: None, cost: 1 }
    }
}

impl<'a> VerifyContext<'a> {
    /// No scope, no address, cost 1.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`VerifyContext::required`].
    #[must_use]
    pub fn required(mut self, required: impl Into<Option<&'a RequiredScope>>) -> Self {
        self.required = required.into();
        self
    }

    /// Sets [`VerifyContext::client_ip`].
    #[must_use]
    pub fn client_ip(mut self, ip: impl Into<Option<IpAddr>>) -> Self {
        self.client_ip = ip.into();
        self
    }

    /// Sets [`VerifyContext::cost`].
    #[must_use]
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }
}

/// Verifier settings. Every field has a safe default.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Longest `Authorization` value accepted, checked before any work.
    /// Defaults to 4096 bytes.
    pub max_header_len: usize,
    /// Whether keys that do not start with the token prefix are looked up
    /// as imported keys ([`crate::KeyManager::import`]). Each such value
    /// costs one HMAC and one digest-index lookup per pepper held, so any
    /// unprefixed garbage of 16–512 bytes reaches the store (and, behind a
    /// cache, takes a negative entry): turn it on only where imported keys
    /// exist. Values outside `min_imported_len..=Secret::MAX_IMPORTED_LEN`
    /// are refused before hashing either way. Defaults to `false`.
    pub accept_imported: bool,
    /// Shortest imported key considered; shorter ones are rejected without
    /// hashing. Defaults to 16 bytes.
    pub min_imported_len: usize,
    /// Minimum time between last-used writes for one key. A use reaches the
    /// store within this interval plus one flush period. Defaults to 60 s.
    pub last_used_interval: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            max_header_len: header::DEFAULT_MAX_HEADER_LEN,
            accept_imported: false,
            min_imported_len: 16,
            last_used_interval: Duration::from_secs(60),
        }
    }
}

/// Builds a [`Verifier`].
pub struct VerifierBuilder<S> {
    store: Arc<S>,
    peppers: Arc<Peppers>,
    format: TokenFormat,
    clock: Arc<dyn Clock>,
    config: VerifierConfig,
    rate_limiter: Option<Arc<dyn RateLimiter>>,
    lifetimes: Option<Arc<LifetimeLimits>>,
}

impl<S> fmt::Debug for VerifierBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifierBuilder").field("format", &self.format).field("config", &self.config).finish()
    }
}

impl<S: KeyStore> VerifierBuilder<S> {
    /// Token format (prefix). Defaults to [`TokenFormat::default`].
    #[must_use]
    pub fn token_format(mut self, format: TokenFormat) -> Self {
        self.format = format;
        self
    }

    /// Clock. Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Where keys' rate limits are counted. Defaults to a
    /// [`LocalRateLimiter`] on the verifier's clock: **per node** (see
    /// [`crate::controls::RateLimiter`]).
    #[must_use]
    pub fn rate_limiter(mut self, limiter: impl RateLimiter) -> Self {
        self.rate_limiter = Some(Arc::new(limiter));
        self
    }

    /// The maximum-lifetime access policies to apply at use: a key whose
    /// age reached its service account's limit is refused as expired.
    /// Defaults to none; keep them current with
    /// [`LifetimeLimits::refresh`].
    #[must_use]
    pub fn lifetime_limits(mut self, limits: Arc<LifetimeLimits>) -> Self {
        self.lifetimes = Some(limits);
        self
    }

    /// All settings at once.
    #[must_use]
    pub fn config(mut self, config: VerifierConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`VerifierConfig::max_header_len`].
    #[must_use]
    pub fn max_header_len(mut self, bytes: usize) -> Self {
        self.config.max_header_len = bytes;
        self
    }

    /// See [`VerifierConfig::accept_imported`].
    #[must_use]
    pub fn accept_imported(mut self, yes: bool) -> Self {
        self.config.accept_imported = yes;
        self
    }

    /// See [`VerifierConfig::last_used_interval`].
    #[must_use]
    pub fn last_used_interval(mut self, interval: Duration) -> Self {
        self.config.last_used_interval = interval;
        self
    }

    /// Finishes the verifier.
    #[must_use]
    pub fn build(self) -> Verifier<S> {
        let dummy = self.peppers.digest_current(b"api-keys: dummy record for unknown ids");
        let rate_limiter =
            self.rate_limiter.unwrap_or_else(|| Arc::new(LocalRateLimiter::new(Arc::clone(&self.clock))));
        Verifier {
            last_used: LastUsed::new(self.config.last_used_interval, self.clock.now()),
            rate_limiter,
            store: self.store,
            peppers: self.peppers,
            format: self.format,
            clock: self.clock,
            config: self.config,
            dummy,
            lifetimes: self.lifetimes,
        }
    }
}

/// The outcome of the synchronous steps.
enum Authorized {
    /// Nothing left to enforce.
    Done(Principal),
    /// Rate limits or credits follow (the principal holds the controls).
    Enforce(Principal, Deferred),
}

/// What the asynchronous steps need from the lent record.
struct Deferred {
    last_used_at: Option<Timestamp>,
    credits: Option<Credits>,
}

impl Principal {
    /// The principal of a record whose checks passed.
    fn of(view: &RecordView<'_>, controls: Option<Arc<KeyControls>>) -> Self {
        Self {
            key_id: view.id,
            expires_at: view.expires_at,
            service_account_id: view.service_account_id,
            scopes: view.scopes,
            controls,
            usage: Usage::default(),
        }
    }
}

/// Where a presented key is looked up.
enum Lookup<'a> {
    /// By the id in a token of this crate's format.
    Native(Token<'a>),
    /// By digest: a key that is not in this format (with why it is not).
    Imported(&'a [u8], TokenError),
}

/// What the steps of a verification that run at once came to: the outcome,
/// or where the waiting steps pick up (`W`).
pub(crate) enum AtOnce<W> {
    /// The outcome.
    Done(Result<Principal, VerifyError>),
    /// The waiting steps still to run.
    Wait(W),
}

/// Where [`Verifier::rest_of_key`] picks up: the enforcing steps of a key
/// lent at once, or (`None`) the store lookup.
#[cfg(feature = "tower")]
pub(crate) struct Rest(Option<(Principal, Deferred)>);

/// Where [`Verifier::finish`] picks up.
enum Step<'a> {
    /// The store lookup.
    Find(Lookup<'a>),
    /// The enforcing steps, for a key lent at once that has rate limits or
    /// credits.
    Enforce(Principal, Deferred),
}

/// The future of a verification: ready when it completed at once (see
/// [`Verifier::start`]), else the steps still to run, boxed: a store that
/// has to be asked pays one allocation beside its query, and every future
/// that awaits a verification (the tower layer's, an application's handler)
/// stays as small as a ready outcome.
enum Verification<'a> {
    /// Done: the outcome, taken by the first poll.
    Ready(std::future::Ready<Result<Principal, VerifyError>>),
    /// The steps that wait.
    Pending(Pin<Box<dyn Future<Output = Result<Principal, VerifyError>> + Send + 'a>>),
}

impl Verification<'_> {
    fn ready(outcome: Result<Principal, VerifyError>) -> Self {
        Self::Ready(std::future::ready(outcome))
    }
}

impl Future for Verification<'_> {
    type Output = Result<Principal, VerifyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Self::Ready(outcome) => Pin::new(outcome).poll(cx),
            Self::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

/// Checks API keys against a store. Share it behind an `Arc`.
pub struct Verifier<S> {
    store: Arc<S>,
    peppers: Arc<Peppers>,
    format: TokenFormat,
    clock: Arc<dyn Clock>,
    config: VerifierConfig,
    last_used: LastUsed,
    rate_limiter: Arc<dyn RateLimiter>,
    /// Stand-in pepper version and digest for unknown ids, so a miss does
    /// the work of a wrong secret.
    dummy: (u32, Digest),
    lifetimes: Option<Arc<LifetimeLimits>>,
}

impl<S> fmt::Debug for Verifier<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("format", &self.format).field("config", &self.config).finish()
    }
}

impl<S: KeyStore> Verifier<S> {
    /// Starts a verifier over `store` with `peppers`.
    pub fn builder(store: Arc<S>, peppers: impl Into<Arc<Peppers>>) -> VerifierBuilder<S> {
        VerifierBuilder {
            store,
            peppers: peppers.into(),
            format: TokenFormat::default(),
            clock: Arc::new(SystemClock),
            config: VerifierConfig::default(),
            rate_limiter: None,
            lifetimes: None,
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The token format.
    #[must_use]
    pub fn token_format(&self) -> &TokenFormat {
        &self.format
    }

    /// Where keys' rate limits are counted.
    #[must_use]
    pub fn rate_limiter(&self) -> &Arc<dyn RateLimiter> {
        &self.rate_limiter
    }

    /// Verifies an `Authorization` header value (raw bytes, as from
    /// `http::HeaderValue::as_bytes`) and, if given, a required scope.
    ///
    /// The header and token checks run when this is called. Where the store
    /// lends the record at once ([`KeyStore::lend_now`]: the memory store, a
    /// cache hit) the digest, key and scope checks (and the last-use note)
    /// run then too, and the returned future is ready; otherwise the future
    /// does the store lookup and the rest, as do the rate-limit and credit
    /// steps of keys that have them. Garbage never reaches the store.
    ///
    /// # Errors
    /// [`VerifyError`]; see [`VerifyError::client_class`] for what to show.
    pub fn verify<'a>(
        &'a self,
        header: &'a [u8],
        required: Option<&'a RequiredScope>,
    ) -> impl Future<Output = Result<Principal, VerifyError>> + Send + 'a {
        self.start(self.locate_header(header), VerifyContext::new().required(required))
    }

    /// As [`Verifier::verify`], with the client address and the request's
    /// credit cost of `ctx` (and its required scope).
    ///
    /// # Errors
    /// [`VerifyError`]; besides those of [`Verifier::verify`],
    /// [`VerifyError::IpNotAllowed`], [`VerifyError::RateLimited`] and
    /// [`VerifyError::UsageExceeded`] for keys with those controls.
    pub fn verify_with<'a>(
        &'a self,
        header: &'a [u8],
        ctx: &VerifyContext<'a>,
    ) -> impl Future<Output = Result<Principal, VerifyError>> + Send + 'a {
        self.start(self.locate_header(header), *ctx)
    }

    /// Verifies the key itself (the token68 after `Api-Key `).
    ///
    /// # Errors
    /// [`VerifyError`].
    pub fn verify_key<'a>(
        &'a self,
        key: &'a [u8],
        required: Option<&'a RequiredScope>,
    ) -> impl Future<Output = Result<Principal, VerifyError>> + Send + 'a {
        self.start(self.locate_key(key), VerifyContext::new().required(required))
    }

    /// As [`Verifier::verify_key`], with the context of
    /// [`Verifier::verify_with`].
    ///
    /// # Errors
    /// [`VerifyError`].
    pub fn verify_key_with<'a>(
        &'a self,
        key: &'a [u8],
        ctx: &VerifyContext<'a>,
    ) -> impl Future<Output = Result<Principal, VerifyError>> + Send + 'a {
        self.start(self.locate_key(key), *ctx)
    }

    /// Steps 1–2, header and token: where to look the key up, or why not.
    ///
    /// The header module's fast path for `Api-Key <key>` runs with
    /// `Token::parse` as its check: a token that parses, or fails only its
    /// checksum, is all `[A-Za-z0-9_]`, so the header is well formed and
    /// `parse_authorization` would have handed over exactly these bytes;
    /// they are scanned once, not once per parser. Everything else
    /// (imported keys, other schemes, malformed values) goes through
    /// `parse_authorization`, which names the problem.
    fn locate_header<'a>(&self, header: &'a [u8]) -> Result<Lookup<'a>, VerifyError> {
        let max_len = self.config.max_header_len;
        if let Some(located) = header::api_key_fast_path(header, max_len, |key| self.locate_native(key)) {
            return located;
        }
        match header::parse_authorization(header, max_len) {
            Ok(Credentials::ApiKey(key)) => self.locate_key(key),
            Ok(Credentials::Bearer(_)) => Err(VerifyError::UnsupportedScheme),
            Err(e) => Err(VerifyError::from_header(e)),
        }
    }

    /// Step 2 for the header's fast path: a key of our format by id, or its
    /// checksum failure; `None` for anything else (which the full path
    /// classifies). Only inputs of the key alphabet get a `Some`:
    /// `Token::parse` checks the alphabet before the checksum.
    #[inline]
    fn locate_native<'a>(&self, key: &'a [u8]) -> Option<Result<Lookup<'a>, VerifyError>> {
        match Token::parse(key, &self.format) {
            Ok(token) => Some(Ok(Lookup::Native(token))),
            Err(TokenError::BadChecksum) => Some(Err(VerifyError::BadChecksum)),
            Err(_) => None,
        }
    }

    /// Step 2, token: our format by id, or an imported key by digest.
    fn locate_key<'a>(&self, key: &'a [u8]) -> Result<Lookup<'a>, VerifyError> {
        match Token::parse(key, &self.format) {
            Ok(token) => Ok(Lookup::Native(token)),
            // The prefix is checked before the checksum, so a bad checksum
            // is never an unprefixed (imported) key: answered first, it
            // skips the prefix compare below.
            Err(TokenError::BadChecksum) => Err(VerifyError::BadChecksum),
            Err(e) if self.config.accept_imported && !self.format.is_prefixed(key) => Ok(Lookup::Imported(key, e)),
            Err(e) => Err(VerifyError::MalformedKey(e)),
        }
    }

    /// Steps 3–10. Where the store can lend the record at once (the memory
    /// store, a cache hit) and the key has no rate limits or credits, the
    /// whole verification runs here and the returned future is ready: no
    /// future state is built or moved. Everything else (a store that must
    /// be asked, imported keys, the enforcing steps) runs in [`Self::finish`].
    fn start<'a>(&'a self, located: Result<Lookup<'a>, VerifyError>, ctx: VerifyContext<'a>) -> Verification<'a> {
        // Garbage is answered here, before anything else is built.
        let lookup = match located {
            Ok(lookup) => lookup,
            Err(e) => return Verification::ready(Err(e)),
        };
        match self.at_once(lookup, &ctx) {
            AtOnce::Done(outcome) => Verification::ready(outcome),
            AtOnce::Wait(step) => Verification::Pending(Box::pin(self.finish(step, ctx))),
        }
    }

    /// The steps of [`Self::start`] that run at once for a located key: the
    /// outcome, or where the waiting steps pick up.
    #[inline(always)]
    fn at_once<'a>(&self, lookup: Lookup<'a>, ctx: &VerifyContext<'_>) -> AtOnce<Step<'a>> {
        let Lookup::Native(token) = lookup else {
            return AtOnce::Wait(Step::Find(lookup));
        };
        let lent = self.store.lend_now(token.id(), |found| self.check_native(&token, found, ctx)).ok();
        match lent {
            Some(Ok(Authorized::Done(principal))) => AtOnce::Done(Ok(principal)),
            Some(Err(e)) => AtOnce::Done(Err(e)),
            Some(Ok(Authorized::Enforce(principal, deferred))) => AtOnce::Wait(Step::Enforce(principal, deferred)),
            None => AtOnce::Wait(Step::Find(Lookup::Native(token))),
        }
    }

    /// For a caller that cannot hold the key across an await (the tower
    /// layer, whose future must own what it uses): the steps of
    /// [`Verifier::verify_key_with`] that run at once: the outcome, or what
    /// [`Self::rest_of_key`] continues from (which owns nothing of `key`).
    #[cfg(feature = "tower")]
    pub(crate) fn begin_key(&self, key: &[u8], ctx: &VerifyContext<'_>) -> AtOnce<Rest> {
        let lookup = match self.locate_key(key) {
            Ok(lookup) => lookup,
            Err(e) => return AtOnce::Done(Err(e)),
        };
        match self.at_once(lookup, ctx) {
            AtOnce::Done(outcome) => AtOnce::Done(outcome),
            AtOnce::Wait(Step::Enforce(principal, deferred)) => AtOnce::Wait(Rest(Some((principal, deferred)))),
            AtOnce::Wait(Step::Find(_)) => AtOnce::Wait(Rest(None)),
        }
    }

    /// The waiting steps after [`Self::begin_key`], given the same key and
    /// context.
    #[cfg(feature = "tower")]
    pub(crate) async fn rest_of_key(
        &self,
        key: &[u8],
        rest: Rest,
        ctx: &VerifyContext<'_>,
    ) -> Result<Principal, VerifyError> {
        let step = match rest.0 {
            Some((principal, deferred)) => Step::Enforce(principal, deferred),
            // Only the parse ran before: run it again on the owned key.
            None => Step::Find(self.locate_key(key)?),
        };
        self.finish(step, *ctx).await
    }

    /// Steps 3–10 that wait: the store lookup of a store that cannot lend
    /// at once, then (only for keys that have them) rate limits and
    /// credits.
    async fn finish(&self, step: Step<'_>, ctx: VerifyContext<'_>) -> Result<Principal, VerifyError> {
        let authorized = match step {
            Step::Find(Lookup::Native(token)) => self.verify_native(&token, &ctx).await?,
            Step::Find(Lookup::Imported(key, parse_error)) => {
                let record = self.lookup_imported(key, parse_error).await?;
                self.authorize(RecordView::of(&record), &ctx)?
            }
            Step::Enforce(principal, deferred) => Authorized::Enforce(principal, deferred),
        };
        match authorized {
            Authorized::Done(principal) => Ok(principal),
            Authorized::Enforce(principal, deferred) => self.enforce(principal, deferred, &ctx).await,
        }
    }

    /// Steps 3–7 for a native token: the store lends the record's fields
    /// (no copy, and for the memory store no lock and no reference count)
    /// while the digest, key and scope checks run on them.
    async fn verify_native(&self, token: &Token<'_>, ctx: &VerifyContext<'_>) -> Result<Authorized, VerifyError> {
        let checked = self.store.with_record(token.id(), |found| self.check_native(token, found, ctx));
        checked.await.map_err(VerifyError::StoreUnavailable)?
    }

    /// Steps 4–7 on the record lent for a native token: digest, then the
    /// key, address and scope checks.
    #[inline]
    fn check_native(
        &self,
        token: &Token<'_>,
        found: Option<RecordView<'_>>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Authorized, VerifyError> {
        let view = self.check_digest(token, found)?;
        self.authorize(view, ctx)
    }

    /// The constant-time digest check of the record found by id.
    ///
    /// The record's fields are read before the HMAC runs: the pepper is
    /// chosen by a branch on its version (predicted: the current one), so
    /// the CPU computes the HMAC while the record's cache line is still
    /// on its way.
    fn check_digest<'v>(
        &self,
        token: &Token<'_>,
        found: Option<RecordView<'v>>,
    ) -> Result<RecordView<'v>, VerifyError> {
        // An imported record found by id is no native key (its id was never
        // part of a token): it is unknown, with the same work as a miss.
        let Some(view) = found.filter(|v| v.kind == KeyKind::Native) else {
            // Same work as a wrong secret: look up the stand-in's pepper,
            // one HMAC and one constant-time compare.
            let (version, digest) = std::hint::black_box(&self.dummy);
            let same = self.peppers.verify(*version, token.secret_bytes(), digest);
            std::hint::black_box(same);
            return Err(VerifyError::UnknownKey(Some(*token.id())));
        };
        match self.peppers.verify(view.pepper_version, token.secret_bytes(), view.digest) {
            Some(true) => Ok(view),
            Some(false) => Err(VerifyError::WrongSecret(view.id)),
            None => Err(VerifyError::UnknownPepper { key: view.id, version: view.pepper_version }),
        }
    }

    /// Digest-index lookup for imported keys, one per pepper held.
    async fn lookup_imported(&self, key: &[u8], parse_error: TokenError) -> Result<Arc<KeyRecord>, VerifyError> {
        // No import is shorter or longer (`KeyManager::import` refuses
        // them), so such values cannot match: no HMAC, no store read.
        if key.len() < self.config.min_imported_len || key.len() > Secret::MAX_IMPORTED_LEN {
            return Err(VerifyError::MalformedKey(parse_error));
        }
        for pepper in self.peppers.iter() {
            let digest = pepper.digest(key);
            let found = self.store.get_by_digest(&digest).await.map_err(VerifyError::StoreUnavailable)?;
            if let Some(record) = found {
                let same: bool = record.digest.ct_eq(&digest).into();
                if same && record.pepper_version == pepper.version() {
                    return Ok(record);
                }
            }
        }
        Err(VerifyError::UnknownKey(None))
    }

    /// Status, expiry, address and scope checks on a record whose secret
    /// matched, then the last-use note and the principal; or, for a key
    /// with rate limits or credits to enforce, the principal and what the
    /// asynchronous steps need.
    fn authorize(&self, view: RecordView<'_>, ctx: &VerifyContext<'_>) -> Result<Authorized, VerifyError> {
        if view.status == KeyStatus::Revoked {
            return Err(VerifyError::Revoked(view.id));
        }
        if !view.enabled {
            return Err(VerifyError::Disabled(view.id));
        }
        // The clock is read only when something needs it.
        if let Some(expires_at) = view.expires_at
            && self.clock.now() >= expires_at
        {
            return Err(VerifyError::Expired(view.id));
        }
        if let Some(limits) = &self.lifetimes
            && let Some(max) = limits.limit_for(view.service_account_id)
            && self.clock.now() >= view.created_at.saturating_add(max)
        {
            return Err(VerifyError::Expired(view.id));
        }
        let Some(controls) = view.controls else {
            let principal = Principal::of(&view, None);
            if let Some(req) = ctx.required {
                principal.require(req)?;
            }
            self.last_used.note_use(&view.id, view.last_used_at, view.seen, || self.clock.now());
            return Ok(Authorized::Done(principal));
        };
        self.authorize_controlled(&view, controls, ctx)
    }

    /// [`Verifier::authorize`] after the key checks, for a key with
    /// controls: the address, the scope, and whether steps 8–9 follow.
    fn authorize_controlled(
        &self,
        view: &RecordView<'_>,
        controls: &Arc<KeyControls>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Authorized, VerifyError> {
        if let Some(list) = &controls.allowed_ips
            && !ctx.client_ip.is_some_and(|ip| list.allows(ip))
        {
            return Err(VerifyError::IpNotAllowed { key: view.id, ip: ctx.client_ip });
        }
        let principal = Principal::of(view, Some(Arc::clone(controls)));
        if let Some(req) = ctx.required {
            principal.require(req)?;
        }
        if controls.rate_limits.is_some() || controls.credits.is_some() {
            let deferred = Deferred { last_used_at: view.last_used_at, credits: controls.credits };
            return Ok(Authorized::Enforce(principal, deferred));
        }
        self.last_used.note_use(&view.id, view.last_used_at, view.seen, || self.clock.now());
        Ok(Authorized::Done(principal))
    }

    /// Steps 8–10 for a key with rate limits or credits.
    async fn enforce(
        &self,
        mut principal: Principal,
        deferred: Deferred,
        ctx: &VerifyContext<'_>,
    ) -> Result<Principal, VerifyError> {
        let id = principal.key_id;
        let limits = principal.controls.as_ref().and_then(|c| c.rate_limits.clone());
        if let Some(limits) = limits {
            principal.usage.rate = Some(self.check_rate(&id, &limits).await?);
        }
        if let Some(credits) = deferred.credits {
            principal.usage.credits_remaining = self.spend(&id, &credits, ctx.cost).await?;
        }
        // The store's "seen" cell was lent with the record only; this note
        // takes the verifier's own (coalescing) path.
        self.last_used.note_use(&id, deferred.last_used_at, None, || self.clock.now());
        Ok(principal)
    }

    /// Step 8: one request against each of the key's rate limits.
    async fn check_rate(&self, id: &KeyId, limits: &RateLimits) -> Result<RateStatus, VerifyError> {
        let decision = self.rate_limiter.check(id, limits).await;
        match decision.map_err(|e| VerifyError::StoreUnavailable(StoreError::unavailable(e)))? {
            RateDecision::Allowed(status) => Ok(status),
            RateDecision::Limited { index, retry_after } => {
                let policy = limits.as_slice().get(index).or(limits.as_slice().first()).cloned();
                let Some(policy) = policy else {
                    return Err(VerifyError::StoreUnavailable(StoreError::unavailable("empty rate-limit set")));
                };
                Err(VerifyError::RateLimited { key: *id, limit: policy.name.clone(), retry_after, policy })
            }
        }
    }

    /// Step 9: spends `cost` credits in one atomic store operation (a due
    /// refill first). Cost 0 spends nothing and reports the lent count.
    async fn spend(&self, id: &KeyId, credits: &Credits, cost: u64) -> Result<Option<u64>, VerifyError> {
        if cost == 0 {
            return Ok(Some(credits.remaining));
        }
        let refill_due = credits.refill.map(|r| r.last_instant(self.clock.now()));
        match self.store.spend_credits(id, cost, refill_due).await {
            Ok(CreditSpend::Spent { remaining }) => Ok(Some(remaining)),
            Ok(CreditSpend::Exhausted { .. }) => Err(VerifyError::UsageExceeded(*id)),
            // The credits were removed since the record was read.
            Ok(CreditSpend::Unlimited) => Ok(None),
            Err(StoreError::NotFound(_)) => Err(VerifyError::UnknownKey(Some(*id))),
            Err(e) => Err(VerifyError::StoreUnavailable(e)),
        }
    }

    /// Writes coalesced last-used times to the store in one batch; returns
    /// how many keys were written. Call it periodically (for example every
    /// few seconds from a background task); each key is written at most once
    /// per [`VerifierConfig::last_used_interval`]. On failure the notes are
    /// kept for the next call.
    ///
    /// # Errors
    /// The store's error.
    pub async fn flush_last_used(&self) -> Result<usize, StoreError> {
        let due = self.last_used.take_due(self.clock.now());
        if due.is_empty() {
            return Ok(0);
        }
        match self.store.touch_last_used(&due).await {
            Ok(()) => Ok(due.len()),
            Err(e) => {
                self.last_used.restore(&due);
                Err(e)
            }
        }
    }

    /// Keys with uses not yet written.
    #[must_use]
    pub fn pending_last_used(&self) -> usize {
        self.last_used.pending()
    }

    /// The last-used write interval.
    #[must_use]
    pub fn last_used_interval(&self) -> Duration {
        self.last_used.interval()
    }
}
