//! Key lifecycle: create, get, list, revoke, delete, reissue, import,
//! list-scopes — the operations of the `yc iam api-key` command group.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let manager = KeyManager::builder(
//!     Arc::new(MemoryStore::new()),
//!     Peppers::single(Pepper::generate(1)?),
//!     ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?,
//! )
//! .build();
//! let created = manager
//!     .create(CreateRequest::new("my-robot").description("for CI").expires_at("2030-01-01T00:00:00Z".parse()?))
//!     .await?;
//! println!("{}", serde_json::to_string(&created)?); // shown once
//! let reissued = manager.reissue(&created.api_key.id, Duration::ZERO).await?;
//! assert_ne!(reissued.api_key.id, created.api_key.id);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::access_policy::KeyAction;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::controls::{
    ControlError, ControlsPatch, Credits, ExternalId, IpAllowList, KeyControls, Metadata, RateLimits,
};
use crate::digest::{Digest, Peppers};
use crate::header::is_token68;
use crate::operation::{
    Actor, Change, KeyUpdate, LeakDetails, LogEntry, Operation, OperationChanges, OperationCursor, OperationId,
    OperationKind,
};
use crate::random::RandomError;
use crate::record::{
    CreatedKey, Description, FieldError, KeyInfo, KeyKind, KeyRecord, KeyStatus, ReissueLinks, ServiceAccountId,
};
use crate::scope::{ScopeCatalog, ScopeError, ScopeInfo, ScopeSet};
use crate::secret::{MaskedKey, Secret};
use crate::setters::{scopes_setter, set_or_clear, setters};
use crate::store::idempotency::IdempotencyClaim;
use crate::store::{KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError, check_reissuable};
use crate::token::{KeyId, SECRET_LEN, Token, TokenFormat};
use crate::verify::VerifierBuilder;
use crate::{Verifier, header};

mod resources;
pub use resources::NewResource;

/// Why [`KeyManager::check_peppers`] refused the configured peppers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PepperCheckError {
    /// The store recorded a different pepper's fingerprint under this
    /// version: keys made with the recorded pepper would all be "wrong
    /// secret", and keys made now would mix two peppers under one version.
    #[error(
        "pepper version {version} is not the pepper this key store was used with \
         (its fingerprint differs from the one the store recorded for version {version})"
    )]
    Mismatch {
        /// The pepper version.
        version: u32,
    },
    /// The store could not answer; nothing was decided.
    #[error("key store unavailable while checking pepper fingerprints")]
    Store(#[source] StoreError),
}

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// A field (service account id, description) is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// A scope is invalid or unknown (the error names it).
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The requested expiry is not in the future.
    #[error("expires_at {0} is not in the future")]
    AlreadyExpired(Timestamp),
    /// The creation policy refused.
    #[error(transparent)]
    PolicyDenied(#[from] PolicyDenied),
    /// No key with this id.
    #[error("key {0} not found")]
    NotFound(KeyId),
    /// The key cannot be reissued (revoked or already reissued).
    #[error("key {id} cannot be reissued: {reason}")]
    Conflict {
        /// The key.
        id: KeyId,
        /// Why.
        reason: &'static str,
    },
    /// An imported secret is unusable (the text says why, never the secret).
    #[error("imported secret rejected: {0}")]
    InvalidImportedSecret(&'static str),
    /// This imported secret is already stored.
    #[error("this secret was already imported")]
    AlreadyImported,
    /// The OS random generator failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// An update that changes nothing.
    #[error("the update names no field to change")]
    EmptyUpdate,
    /// A key control (metadata, external id, IP allow-list, credits, rate
    /// limits) is invalid; the error names which.
    #[error(transparent)]
    InvalidControl(#[from] ControlError),
    /// A resource change the hierarchy refuses, or a resource (a key's
    /// service account) that does not exist.
    #[error(transparent)]
    Resource(crate::resource::ResourceError),
    /// An access policy bound on the service account's path refused.
    #[error(transparent)]
    AccessPolicy(#[from] crate::access_policy::AccessPolicyDenied),
    /// The store failed; nothing was written.
    #[error(transparent)]
    Store(StoreError),
}

impl From<crate::resource::ResourceError> for ManageError {
    fn from(e: crate::resource::ResourceError) -> Self {
        Self::Resource(e)
    }
}

impl From<StoreError> for ManageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => Self::NotFound(id),
            StoreError::Conflict { id, reason } => Self::Conflict { id, reason },
            StoreError::Resource(e) => Self::Resource(e),
            other => Self::Store(other),
        }
    }
}

/// A refusal from a [`CreationPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("creating API keys is not allowed: {reason}")]
#[non_exhaustive]
pub struct PolicyDenied {
    /// Shown to the operator.
    pub reason: String,
}

impl PolicyDenied {
    /// A refusal with a reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into() }
    }
}

/// What a [`CreationPolicy`] is asked to allow, after validation.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct KeyRequest<'a> {
    /// Which operation: [`OperationKind::Create`], [`OperationKind::Import`],
    /// [`OperationKind::Reissue`] of an existing key, or
    /// [`OperationKind::Update`] of an existing key's scopes or expiry (the
    /// request then shows the scopes and expiry the key would have after
    /// the update, so a policy that limits them cannot be bypassed by
    /// updating a key).
    pub operation: OperationKind,
    /// The owner.
    pub service_account_id: &'a ServiceAccountId,
    /// The scopes the key would get.
    pub scopes: &'a ScopeSet,
    /// Its expiry.
    pub expires_at: Option<Timestamp>,
}

/// An access policy that may forbid creating keys (as a cloud's folder,
/// cloud or organisation policies can).
///
/// Closures `Fn(&KeyRequest) -> Result<(), PolicyDenied>` are policies.
pub trait CreationPolicy: Send + Sync + 'static {
    /// Allows or refuses the request.
    ///
    /// # Errors
    /// [`PolicyDenied`] to refuse.
    fn check(&self, request: &KeyRequest<'_>) -> Result<(), PolicyDenied>;
}

impl<F> CreationPolicy for F
where
    F: Fn(&KeyRequest<'_>) -> Result<(), PolicyDenied> + Send + Sync + 'static,
{
    fn check(&self, request: &KeyRequest<'_>) -> Result<(), PolicyDenied> {
        self(request)
    }
}

/// Allows everything. The default policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl CreationPolicy for AllowAll {
    fn check(&self, _: &KeyRequest<'_>) -> Result<(), PolicyDenied> {
        Ok(())
    }
}

/// Refuses every new key with a fixed reason.
#[derive(Debug, Clone)]
pub struct DenyAll(pub String);

impl CreationPolicy for DenyAll {
    fn check(&self, _: &KeyRequest<'_>) -> Result<(), PolicyDenied> {
        Err(PolicyDenied::new(self.0.clone()))
    }
}

/// Parameters of [`KeyManager::create`] (and [`KeyManager::import`]);
/// validated by `create`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateRequest {
    /// Owner (required).
    pub service_account_id: String,
    /// Optional description.
    pub description: String,
    /// Scopes; `None` gives the catalog's defaults.
    pub scopes: Option<Vec<String>>,
    /// Optional expiry.
    pub expires_at: Option<Timestamp>,
    /// Whether the key may be used at once. Defaults to `true`.
    pub enabled: bool,
    /// Optional controls (metadata, external id, IP allow-list, credits,
    /// rate limits). Defaults to none.
    pub controls: KeyControls,
}

impl Default for CreateRequest {
    fn default() -> Self {
        Self {
            service_account_id: String::new(),
            description: String::new(),
            scopes: None,
            expires_at: None,
            enabled: true,
            controls: KeyControls::new(),
        }
    }
}

impl CreateRequest {
    /// A request for `service_account_id` with default scopes and no expiry.
    pub fn new(service_account_id: impl Into<String>) -> Self {
        Self { service_account_id: service_account_id.into(), ..Self::default() }
    }

    setters! {
        /// Sets the description.
        fn description(d: impl Into<String>) => description = d.into();
    }

    scopes_setter!();

    setters! {
        /// Sets the expiry.
        fn expires_at(t: Timestamp) => expires_at = Some(t);
        /// Creates the key enabled (the default) or disabled.
        fn enabled(enabled: bool) => enabled = enabled;
        /// Sets every control at once (replacing those set before).
        fn controls(controls: KeyControls) => controls = controls;
        /// Sets the owner metadata.
        fn metadata(m: Metadata) => controls.metadata = Some(m);
        /// Sets the external owner id.
        fn external_id(id: ExternalId) => controls.external_id = Some(id);
        /// Sets the IP allow-list.
        fn allowed_ips(list: IpAllowList) => controls.allowed_ips = Some(list);
        /// Sets the usage credits.
        fn credits(c: Credits) => controls.credits = Some(c);
        /// Sets the rate limits.
        fn rate_limits(l: RateLimits) => controls.rate_limits = Some(l);
    }
}

/// Parameters of [`KeyDirectory::update`]: each field left `None` stays as
/// it is; validated by `update`. Nothing is reset to a wider value by
/// leaving it out: scopes change only to a list given (never back to the
/// catalog's defaults), and a control is removed only when asked
/// (`Some(None)` in [`UpdateRequest::controls`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateRequest {
    /// The new description (`""` clears it).
    pub description: Option<String>,
    /// The new scopes: 1 or more names from the catalog.
    pub scopes: Option<Vec<String>>,
    /// The new expiry; `Some(None)` removes it.
    pub expires_at: Option<Option<Timestamp>>,
    /// `Some(false)` disables the key, `Some(true)` enables it again.
    pub enabled: Option<bool>,
    /// The control changes (metadata, external id, IP allow-list, credits,
    /// rate limits); `Some(None)` removes a control.
    pub controls: ControlsPatch,
}

impl UpdateRequest {
    /// An update that changes nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the description.
        fn description(d: impl Into<String>) => description = Some(d.into());
    }

    scopes_setter!();

    setters! {
        /// Sets the expiry (`None`: never expires).
        fn expires_at(t: Option<Timestamp>) => expires_at = Some(t);
        /// Disables the key: it is refused until enabled again.
        fn disable() => enabled = Some(false);
        /// Enables a disabled key again.
        fn enable() => enabled = Some(true);
        /// Sets the control changes (replacing those set before).
        fn controls(patch: ControlsPatch) => controls = patch;
    }

    set_or_clear! {
        /// Sets the metadata.
        metadata(m: Metadata),
        /// Removes the metadata.
        clear_metadata => controls.metadata;

        /// Sets the external owner id.
        external_id(id: ExternalId),
        /// Removes the external owner id.
        clear_external_id => controls.external_id;

        /// Sets the IP allow-list.
        allowed_ips(list: IpAllowList),
        /// Removes the IP allow-list: the key may be used from any address.
        clear_allowed_ips => controls.allowed_ips;

        /// Sets the usage credits (the remaining count is replaced).
        credits(c: Credits),
        /// Removes the usage credits: unlimited use.
        clear_credits => controls.credits;

        /// Sets the rate limits.
        rate_limits(l: RateLimits),
        /// Removes the rate limits.
        clear_rate_limits => controls.rate_limits;
    }

    /// Whether the request changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Builds a [`KeyManager`].
pub struct KeyManagerBuilder<S>(KeyManager<S>);

impl<S> fmt::Debug for KeyManagerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyManagerBuilder").field(&self.0).finish()
    }
}

impl<S: KeyStore> KeyManagerBuilder<S> {
    /// Token format. Defaults to the prefix `ak_`.
    #[must_use]
    pub fn token_format(mut self, format: TokenFormat) -> Self {
        self.0.format = format;
        self
    }

    /// Clock. Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.0.directory.clock = clock;
        self
    }

    /// Creation policy. Defaults to [`AllowAll`].
    #[must_use]
    pub fn policy(mut self, policy: impl CreationPolicy) -> Self {
        self.0.directory.policy = Arc::new(policy);
        self
    }

    /// The actor the operations log names for changes made through this
    /// manager (see [`KeyManager::with_actor`] for one per caller).
    /// Defaults to [`Actor::system`].
    #[must_use]
    pub fn actor(mut self, actor: Actor) -> Self {
        self.0.directory.actor = actor;
        self
    }

    /// Requires that a key's service account exists as a resource, and
    /// checks the access policies on its path (see
    /// [`KeyDirectory::with_service_accounts_required`]).
    #[must_use]
    pub fn require_service_accounts(mut self) -> Self {
        self.0.directory.require_service_accounts = true;
        self
    }

    /// Finishes the manager.
    #[must_use]
    pub fn build(self) -> KeyManager<S> {
        self.0
    }
}

/// The stored keys, managed without a pepper: get, list, update, revoke,
/// delete and the operations log, under the same rules (validation, policy,
/// log entries) as through a [`KeyManager`], which is one of these plus the
/// peppers and token format that making and checking secrets need. A
/// program that holds no pepper (an operator's tool revoking a key) uses
/// one on its own.
///
/// ```
/// use std::sync::Arc;
/// use api_keys::{KeyDirectory, MemoryStore, ScopeCatalog};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let keys = KeyDirectory::new(Arc::new(MemoryStore::new()), ScopeCatalog::builder().scope("yc.monitoring.read", "Viewing monitoring data").build()?);
/// let page = keys.list("my-robot", api_keys::PageRequest::first(10)).await?;
/// assert!(page.items.is_empty());
/// # Ok::<(), api_keys::ManageError>(()) }).unwrap();
/// ```
pub struct KeyDirectory<S> {
    store: Arc<S>,
    catalog: Arc<ScopeCatalog>,
    clock: Arc<dyn Clock>,
    policy: Arc<dyn CreationPolicy>,
    actor: Actor,
    claim: Option<IdempotencyClaim>,
    require_service_accounts: bool,
}

impl<S> fmt::Debug for KeyDirectory<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyDirectory").field("actor", &self.actor).finish_non_exhaustive()
    }
}

/// Shares the store, catalog, clock and policy.
impl<S> Clone for KeyDirectory<S> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            catalog: Arc::clone(&self.catalog),
            clock: Arc::clone(&self.clock),
            policy: Arc::clone(&self.policy),
            actor: self.actor.clone(),
            claim: self.claim.clone(),
            require_service_accounts: self.require_service_accounts,
        }
    }
}

/// Creates and manages keys over a store: a [`KeyDirectory`] (every
/// method of which it offers) with the peppers and the token format.
pub struct KeyManager<S> {
    directory: KeyDirectory<S>,
    peppers: Arc<Peppers>,
    format: TokenFormat,
}

/// The pepper-less part: a manager is a directory that can also make keys.
/// (`Deref` rather than a copy of every directory method, so the rules of
/// reading and changing keys are written once.)
impl<S> std::ops::Deref for KeyManager<S> {
    type Target = KeyDirectory<S>;

    fn deref(&self) -> &KeyDirectory<S> {
        &self.directory
    }
}

impl<S> fmt::Debug for KeyManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .field("actor", &self.directory.actor)
            .finish_non_exhaustive()
    }
}

/// Shares the store, peppers, catalog, clock and policy.
impl<S> Clone for KeyManager<S> {
    fn clone(&self) -> Self {
        Self { directory: self.directory.clone(), peppers: Arc::clone(&self.peppers), format: self.format.clone() }
    }
}

/// Attempts at a fresh id when the store reports a duplicate.
const ID_ATTEMPTS: usize = 3;

impl<S: KeyStore> KeyDirectory<S> {
    /// A directory over `store`, validating scopes against `catalog`, with
    /// the system clock, no creation policy ([`AllowAll`]) and the actor
    /// [`Actor::system`].
    pub fn new(store: Arc<S>, catalog: impl Into<Arc<ScopeCatalog>>) -> Self {
        Self {
            store,
            catalog: catalog.into(),
            clock: Arc::new(SystemClock),
            policy: Arc::new(AllowAll),
            actor: Actor::system(),
            claim: None,
            require_service_accounts: false,
        }
    }

    /// The same directory, recording `actor` in the operations log for the
    /// changes made through it (cheap: everything else is shared).
    #[must_use]
    pub fn with_actor(&self, actor: Actor) -> Self {
        Self { actor, ..self.clone() }
    }

    /// The same directory with another clock.
    #[must_use]
    pub fn with_clock(&self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self.clone() }
    }

    /// The same directory with a creation policy, asked before an update
    /// ([`OperationKind::Update`]) as a manager asks it.
    #[must_use]
    pub fn with_policy(&self, policy: impl CreationPolicy) -> Self {
        Self { policy: Arc::new(policy), ..self.clone() }
    }

    /// The same directory, requiring that a key's service account exists
    /// as a resource and checking the access policies bound on its path
    /// before a key is created, imported, reissued or re-dated (see
    /// [`access_policy`](crate::access_policy)). Without it (the default)
    /// service accounts are plain ids and no access policy applies.
    #[must_use]
    pub fn with_service_accounts_required(&self) -> Self {
        Self { require_service_accounts: true, ..self.clone() }
    }

    /// The actor recorded for changes made through this manager.
    #[must_use]
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The same directory, whose changes carry `claim`: the store records it
    /// with the change (create, import, reissue, update, revoke, delete,
    /// and resource changes; not leak reports) or refuses the change with
    /// [`StoreError::IdempotencyKeyTaken`] (as [`ManageError::Store`]) if
    /// the key was claimed already. Meant for one change: a second change
    /// through it is refused that way.
    #[must_use]
    pub fn with_idempotency(&self, claim: IdempotencyClaim) -> Self {
        Self { claim: Some(claim), ..self.clone() }
    }

    /// The current time of this directory's clock.
    #[must_use]
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// `entry` with this directory's idempotency claim, if it has one.
    fn claimed(&self, entry: LogEntry) -> LogEntry {
        match &self.claim {
            Some(c) => entry.with_idempotency(c.clone()),
            None => entry,
        }
    }

    /// An operations log entry by this manager's actor.
    fn entry(
        &self,
        key: &KeyId,
        kind: OperationKind,
        now: Timestamp,
        changes: OperationChanges,
    ) -> Result<LogEntry, ManageError> {
        Ok(LogEntry::new(*key, kind, self.actor.clone(), now, changes)?)
    }

    /// The scope catalog.
    #[must_use]
    pub fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Records in a key's operations log that it was found leaked, one
    /// [`OperationKind::Leak`] entry per place (`places`; an empty slice
    /// records one entry without a place), and with `revoke` revokes it in
    /// the same commit (its revoke entry first).
    ///
    /// A leak is recorded once per key and place: each entry's id is
    /// [`OperationId::of_leak`](crate::OperationId::of_leak), so the same
    /// report again finds its entries logged, writes none of them, and
    /// still revokes when asked (the key may have been only recorded the
    /// first time). Returns what was written.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] (nothing written), or a store failure
    /// (nothing written).
    pub async fn record_leak(
        &self,
        id: &KeyId,
        places: &[LeakDetails],
        revoke: bool,
    ) -> Result<LeakRecorded, ManageError> {
        let now = self.clock.now();
        let mut notes = self.leak_entries(id, places, now);
        let revocation = if revoke {
            let changes = OperationChanges { status: Some(KeyStatus::Revoked), ..OperationChanges::default() };
            Some(self.entry(id, OperationKind::Revoke, now, changes)?)
        } else {
            None
        };
        // Each round drops one entry the log already holds, so this ends.
        loop {
            if revocation.is_none() && notes.is_empty() {
                return Ok(LeakRecorded { revoked: false, entries: notes });
            }
            let log: Vec<LogEntry> = revocation.iter().chain(&notes).cloned().collect();
            let change = if revoke { Change::Revoke(*id) } else { Change::Note(*id) };
            match self.store.commit(change, &log).await {
                Ok(_) => return Ok(LeakRecorded { revoked: revoke, entries: notes }),
                Err(StoreError::DuplicateOperation(dup)) if notes.iter().any(|n| n.id == dup) => {
                    notes.retain(|n| n.id != dup);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One leak entry per distinct place (one without a place if none).
    fn leak_entries(&self, id: &KeyId, places: &[LeakDetails], now: Timestamp) -> Vec<LogEntry> {
        let nowhere = [LeakDetails::new(None, None, "")];
        let places = if places.is_empty() { &nowhere[..] } else { places };
        let mut notes: Vec<LogEntry> = Vec::with_capacity(places.len());
        for place in places {
            let entry_id = OperationId::of_leak(id, place);
            if notes.iter().all(|n| n.id != entry_id) {
                let changes = OperationChanges::of_leak(place.clone());
                notes.push(LogEntry {
                    id: entry_id,
                    key_id: *id,
                    kind: OperationKind::Leak,
                    actor: self.actor.clone(),
                    created_at: now,
                    changes,
                    response: None,
                    idempotency: None,
                });
            }
        }
        notes
    }

    /// Every scope a key can have (`list-scopes`).
    #[must_use]
    pub fn list_scopes(&self) -> &[ScopeInfo] {
        self.catalog.list()
    }

    fn check_expiry(&self, expires_at: Option<Timestamp>, now: Timestamp) -> Result<(), ManageError> {
        match expires_at {
            Some(t) if t <= now => Err(ManageError::AlreadyExpired(t)),
            _ => Ok(()),
        }
    }

    /// Fetches a key's listing view.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] or a store failure.
    pub async fn get(&self, id: &KeyId) -> Result<KeyInfo, ManageError> {
        match self.store.get(id).await? {
            Some(r) => Ok(r.info()),
            None => Err(ManageError::NotFound(*id)),
        }
    }

    /// Lists a service account's keys (masked, never digests), by id.
    ///
    /// # Errors
    /// Invalid service account id or a store failure.
    pub async fn list(&self, service_account_id: &str, page: PageRequest) -> Result<Page<KeyInfo>, ManageError> {
        let sa = ServiceAccountId::new(service_account_id)?;
        let page = self.store.list(&sa, page).await?;
        Ok(Page { items: page.items.iter().map(KeyRecord::info).collect(), next: page.next })
    }

    /// Lists the keys whose controls name `external_id` (the application's
    /// own owner id), across service accounts, by key id.
    ///
    /// # Errors
    /// A store failure.
    pub async fn list_by_external_id(
        &self,
        external_id: &ExternalId,
        page: PageRequest,
    ) -> Result<Page<KeyInfo>, ManageError> {
        let page = self.store.list_by_external_id(external_id, page).await?;
        Ok(Page { items: page.items.iter().map(KeyRecord::info).collect(), next: page.next })
    }

    /// Lists the active (not revoked) keys that expire between now and
    /// now + `window`, across service accounts, by key id: the keys to
    /// warn about. Keys already expired are not listed.
    ///
    /// # Errors
    /// A store failure.
    pub async fn expiring_within(&self, window: Duration, page: PageRequest) -> Result<Page<KeyInfo>, ManageError> {
        let now = self.clock.now();
        let page = self.store.list_expiring(now..now.saturating_add(window), page).await?;
        Ok(Page { items: page.items.iter().map(KeyRecord::info).collect(), next: page.next })
    }

    /// Revokes a key: it is never accepted again but stays listed. Returns
    /// the operations log entry written.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] or a store failure.
    ///
    /// A revoke that carries an idempotency claim
    /// ([`KeyDirectory::with_idempotency`]) reads the key first and logs it,
    /// as revoked, as the entry's response snapshot, so the revoke can be
    /// answered again; any other revoke stays one write.
    pub async fn revoke(&self, id: &KeyId) -> Result<LogEntry, ManageError> {
        let changes = OperationChanges { status: Some(KeyStatus::Revoked), ..OperationChanges::default() };
        let mut entry = self.entry(id, OperationKind::Revoke, self.clock.now(), changes)?;
        if self.claim.is_some() {
            let mut revoked = self.get(id).await?;
            revoked.status = KeyStatus::Revoked;
            entry = self.claimed(entry.with_response(revoked));
        }
        self.store.commit(Change::Revoke(*id), std::slice::from_ref(&entry)).await?;
        Ok(entry)
    }

    /// Deletes a key. Its operations log stays readable
    /// ([`KeyDirectory::operations`]), ending with the delete, the entry
    /// returned.
    ///
    /// # Errors
    /// [`ManageError::NotFound`] or a store failure.
    pub async fn delete(&self, id: &KeyId) -> Result<LogEntry, ManageError> {
        let entry = self.entry(id, OperationKind::Delete, self.clock.now(), OperationChanges::default())?;
        let entry = self.claimed(entry);
        self.store.commit(Change::Delete(*id), std::slice::from_ref(&entry)).await?;
        Ok(entry)
    }

    /// Changes a key's description, scopes, expiry, enabled flag or
    /// controls in one atomic store operation, logged with what changed
    /// (never a secret; new credits are logged with their count). With a [`CachedStore`](crate::store::cached::CachedStore)
    /// the change is invalidated like a revoke, so new scopes or expiry
    /// apply on the next verify on every node. Returns the updated key and
    /// the operations log entry written.
    ///
    /// # Errors
    /// [`ManageError::EmptyUpdate`] for a request that changes nothing;
    /// [`ManageError::NotFound`]; invalid description or scopes (named);
    /// [`ManageError::InvalidControl`] for credits out of range;
    /// [`ManageError::AlreadyExpired`] for an expiry not in the future;
    /// [`ManageError::Conflict`] for a revoked key, or a new expiry on a
    /// reissued one; a policy refusal ([`OperationKind::Update`]); a store
    /// failure (nothing written).
    pub async fn update(&self, id: &KeyId, request: UpdateRequest) -> Result<(KeyInfo, Operation), ManageError> {
        let update = self.validate_update(&request)?;
        if update.is_empty() {
            return Err(ManageError::EmptyUpdate);
        }
        let current = self.store.get(id).await?.ok_or(ManageError::NotFound(*id))?;
        let now = self.clock.now();
        if let Some(e) = update.expires_at {
            self.check_expiry(e, now)?;
        }
        self.policy.check(&KeyRequest {
            operation: OperationKind::Update,
            service_account_id: &current.service_account_id,
            scopes: update.scopes.as_ref().unwrap_or(&current.scopes),
            expires_at: update.expires_at.unwrap_or(current.expires_at),
        })?;
        if update.scopes.is_some() || update.expires_at.is_some() {
            // An expiry removed is checked as a new key's absent one.
            let action = if update.expires_at == Some(None) { KeyAction::Reissue } else { KeyAction::Update };
            let expires_at = update.expires_at.flatten();
            self.check_access(&current.service_account_id, action, update.scopes.as_ref(), expires_at).await?;
        }
        // The response snapshot: the key as this update leaves it (a change
        // made elsewhere between the read above and the commit is not in it).
        let mut after = KeyRecord::clone(&current);
        crate::operation::apply_update(&mut after, &update)?;
        let entry = self
            .entry(id, OperationKind::Update, now, OperationChanges::of_update(&update))?
            .with_response(after.info());
        let entry = self.claimed(entry);
        let updated = self.store.commit(Change::Update { id: *id, update }, std::slice::from_ref(&entry)).await?;
        let updated = updated.ok_or_else(|| {
            ManageError::Store(StoreError::Corrupt("the store did not return the updated key".to_owned()))
        })?;
        let operation = entry.recorded(&updated.service_account_id);
        Ok((updated.info(), operation))
    }

    fn validate_update(&self, request: &UpdateRequest) -> Result<KeyUpdate, ManageError> {
        let mut update = KeyUpdate::new();
        if let Some(d) = &request.description {
            update = update.description(Description::new(d)?);
        }
        if let Some(s) = &request.scopes {
            // A list, never `None`: an update does not fall back to the defaults.
            update = update.scopes(self.catalog.resolve(Some(s.as_slice()))?);
        }
        if let Some(e) = request.expires_at {
            update = update.expires_at(e);
        }
        if let Some(enabled) = request.enabled {
            update = update.enabled(enabled);
        }
        let mut controls = request.controls.clone();
        if let Some(credits) = controls.credits {
            controls.credits = Some(admit_credits(credits, self.clock.now())?);
        }
        Ok(update.controls(controls))
    }

    /// One operations log entry by id, with its response snapshot, for as
    /// long as the log keeps it (also after the key was deleted).
    ///
    /// # Errors
    /// A store failure.
    pub async fn operation(&self, id: &OperationId) -> Result<Option<Operation>, ManageError> {
        Ok(self.store.operation(id).await?)
    }

    /// A key's operations log, newest first; also for a deleted key.
    ///
    /// # Errors
    /// A store failure.
    pub async fn operations(
        &self,
        id: &KeyId,
        page: PageRequest<OperationCursor>,
    ) -> Result<OperationPage, ManageError> {
        Ok(self.store.operations(id, page).await?)
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// Starts a manager over `store`, digesting with `peppers`' current
    /// pepper and validating scopes against `catalog`.
    pub fn builder(
        store: Arc<S>,
        peppers: impl Into<Arc<Peppers>>,
        catalog: impl Into<Arc<ScopeCatalog>>,
    ) -> KeyManagerBuilder<S> {
        KeyManagerBuilder(Self {
            directory: KeyDirectory::new(store, catalog),
            peppers: peppers.into(),
            format: TokenFormat::default(),
        })
    }

    /// The same manager, recording `actor` in the operations log for the
    /// changes made through it (cheap: everything else is shared).
    #[must_use]
    pub fn with_actor(&self, actor: Actor) -> Self {
        Self { directory: self.directory.with_actor(actor), ..self.clone() }
    }

    /// The same manager, whose changes carry `claim`
    /// ([`KeyDirectory::with_idempotency`]), creates and reissues included.
    #[must_use]
    pub fn with_idempotency(&self, claim: IdempotencyClaim) -> Self {
        Self { directory: self.directory.with_idempotency(claim), ..self.clone() }
    }

    /// The directory: this manager without its peppers.
    #[must_use]
    pub fn directory(&self) -> &KeyDirectory<S> {
        &self.directory
    }

    /// A verifier builder sharing this manager's store, peppers, format and
    /// clock.
    #[must_use]
    pub fn verifier(&self) -> VerifierBuilder<S> {
        Verifier::builder(Arc::clone(&self.store), Arc::clone(&self.peppers))
            .token_format(self.format.clone())
            .clock(Arc::clone(&self.clock))
    }

    /// Checks every pepper held against the fingerprint the store recorded
    /// for its version, recording the fingerprints of versions the store
    /// has not seen yet (a first start, or a new version after a rotation).
    /// Call it once at start, before creating or verifying keys: a wrong
    /// pepper then stops the process instead of answering "wrong secret" to
    /// every key. Fingerprints are recorded from the first check on; a store
    /// used before that records whatever pepper checks first.
    ///
    /// # Errors
    /// [`PepperCheckError::Mismatch`] naming the version,
    /// [`PepperCheckError::Store`] if the store cannot answer.
    pub async fn check_peppers(&self) -> Result<(), PepperCheckError> {
        for pepper in self.peppers.iter() {
            let mine = pepper.fingerprint();
            let recorded =
                self.store.pepper_fingerprint(pepper.version(), mine).await.map_err(PepperCheckError::Store)?;
            if recorded != mine {
                return Err(PepperCheckError::Mismatch { version: pepper.version() });
            }
        }
        Ok(())
    }

    /// The token format keys are made in (and scanned for).
    #[must_use]
    pub fn token_format(&self) -> &TokenFormat {
        &self.format
    }

    /// Classifies a token found in the wild (a leak report, a file): looks
    /// the id up and checks the secret against the stored digest in
    /// constant time, so a look-alike built from a real id and an invented
    /// secret is [`Liveness::Unknown`](crate::scan::Liveness::Unknown).
    /// Changes nothing.
    ///
    /// # Errors
    /// [`LeakCheckError`](crate::scan::LeakCheckError) when the store fails
    /// or the key's pepper version is not held.
    pub async fn leak_status(&self, token: &Token<'_>) -> Result<crate::scan::Liveness, crate::scan::LeakCheckError> {
        crate::scan::leak_status(&*self.store, &self.peppers, token, self.clock.now()).await
    }

    /// [`KeyManager::leak_status`] for a batch, in one
    /// [`KeyStore::get_many`]: one answer per token, in order. Keep batches
    /// to a few hundred tokens.
    ///
    /// # Errors
    /// As [`KeyManager::leak_status`], for the whole batch.
    pub async fn leak_statuses(
        &self,
        tokens: &[Token<'_>],
    ) -> Result<Vec<crate::scan::Liveness>, crate::scan::LeakCheckError> {
        crate::scan::leak_statuses(&*self.store, &self.peppers, tokens, self.clock.now()).await
    }

    /// Creates a key and returns it with its secret, once.
    ///
    /// # Errors
    /// [`ManageError`] for invalid fields, unknown scopes (named), an expiry
    /// not in the future, a policy refusal, or a store failure (nothing is
    /// written then).
    pub async fn create(&self, request: CreateRequest) -> Result<CreatedKey, ManageError> {
        let (template, now) = self.admit(OperationKind::Create, &request)?;
        self.check_new(&template).await?;
        let write = Write::Insert(OperationKind::Create);
        let (record, secret) = self.store_new(write, now, || self.new_native(&template, now)).await?;
        Ok(CreatedKey::new(&record, secret))
    }

    /// Validates a request's fields, resolves its scopes, checks its expiry
    /// and asks the policy; returns what a new record is made of.
    fn admit(
        &self,
        operation: OperationKind,
        request: &CreateRequest,
    ) -> Result<(KeyRecordTemplate, Timestamp), ManageError> {
        let sa = ServiceAccountId::new(&request.service_account_id)?;
        let description = Description::new(&request.description)?;
        let scopes = self.catalog.resolve(request.scopes.as_deref())?;
        let now = self.clock.now();
        self.check_expiry(request.expires_at, now)?;
        self.policy.check(&KeyRequest {
            operation,
            service_account_id: &sa,
            scopes: &scopes,
            expires_at: request.expires_at,
        })?;
        let template = KeyRecordTemplate {
            sa,
            description,
            scopes,
            expires_at: request.expires_at,
            links: ReissueLinks::default(),
            enabled: request.enabled,
            controls: admit_controls(request.controls.clone(), now)?,
        };
        Ok((template, now))
    }

    /// [`KeyDirectory::check_access`] for a new key.
    async fn check_new(&self, t: &KeyRecordTemplate) -> Result<(), ManageError> {
        self.check_access(&t.sa, KeyAction::Create, Some(&t.scopes), t.expires_at).await
    }

    fn new_native(&self, t: &KeyRecordTemplate, now: Timestamp) -> Result<(KeyRecord, Secret), ManageError> {
        let generated = self.format.generate()?;
        let p = self.format.prefix().len();
        let secret_part = &generated.secret.expose_secret().as_bytes()[p + 21..p + 21 + SECRET_LEN];
        let (pepper_version, digest) = self.peppers.digest_current(secret_part);
        let record = t.record(generated.id, KeyKind::Native, (pepper_version, digest), generated.secret.tail6(), now);
        Ok((record, generated.secret))
    }

    /// Writes a record under a freshly drawn id, drawing again (up to
    /// [`ID_ATTEMPTS`] times in all) when the store reports that the drawn
    /// id already exists. `draw` makes the record (and whatever goes with
    /// it) for each attempt.
    ///
    /// # Errors
    /// The store's error, as is, when it fails or when every drawn id
    /// collided ([`StoreError::Duplicate`]); [`ManageError::AlreadyImported`]
    /// when an imported record collided on its digest; `draw`'s error.
    async fn store_new<T>(
        &self,
        write: Write<'_>,
        now: Timestamp,
        mut draw: impl FnMut() -> Result<(KeyRecord, T), ManageError>,
    ) -> Result<(KeyRecord, T), ManageError> {
        let mut attempt = 1;
        loop {
            let (record, extra) = draw()?;
            let (change, log) = match write {
                Write::Insert(kind) => {
                    let entry = self
                        .entry(&record.id, kind, now, OperationChanges::of_new(&record))?
                        .with_response(record.info());
                    (Change::Insert(record.clone()), vec![self.claimed(entry)])
                }
                Write::Reissue { old, fate } => {
                    let old_entry = self.entry(&old.id, OperationKind::Reissue, now, reissue_changes(&record, fate))?;
                    let new_entry = self
                        .entry(&record.id, OperationKind::Reissue, now, OperationChanges::of_new(&record))?
                        .with_response(record.info());
                    let change = Change::Reissue { old: old.id, new: record.clone(), fate };
                    (change, vec![old_entry, self.claimed(new_entry)])
                }
            };
            match self.store.commit(change, &log).await.map(drop) {
                Ok(()) => return Ok((record, extra)),
                Err(StoreError::Duplicate(dup)) if dup == record.id => {
                    // An imported record also collides on its digest.
                    if record.kind == KeyKind::Imported && self.store.get_by_digest(&record.digest).await?.is_some() {
                        return Err(ManageError::AlreadyImported);
                    }
                    if attempt == ID_ATTEMPTS {
                        return Err(ManageError::Store(StoreError::Duplicate(dup)));
                    }
                    // A random 103-bit id collided: draw another.
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reissues a key after a compromise: a new secret with the same owner,
    /// description, scopes and expiry. The old key stays valid for `grace`
    /// (zero: revoked at once), never beyond its own expiry.
    ///
    /// The new key inherits the old one's enabled flag and controls
    /// (metadata, external id, allow-list, rate limits, and credits with the
    /// remaining count as the store holds it now, and its refill). During a
    /// grace period both keys spend from their own counts, so a caller
    /// holding both could spend the remaining count twice; reissue with a
    /// zero grace period where that matters.
    ///
    /// # Errors
    /// [`ManageError::NotFound`], [`ManageError::Conflict`] (revoked or
    /// already reissued), [`ManageError::AlreadyExpired`] (the key's expiry
    /// has passed), a policy refusal, or a store failure (nothing written).
    pub async fn reissue(&self, id: &KeyId, grace: Duration) -> Result<CreatedKey, ManageError> {
        let old = self.store.get(id).await?.ok_or(ManageError::NotFound(*id))?;
        check_reissuable(&old)?;
        let now = self.clock.now();
        self.check_expiry(old.expires_at, now)?;
        self.policy.check(&KeyRequest {
            operation: OperationKind::Reissue,
            service_account_id: &old.service_account_id,
            scopes: &old.scopes,
            expires_at: old.expires_at,
        })?;
        let action = KeyAction::Reissue;
        self.check_access(&old.service_account_id, action, Some(&old.scopes), old.expires_at).await?;
        let fate = if grace.is_zero() { OldKeyFate::Revoke } else { OldKeyFate::ExpireAt(now.saturating_add(grace)) };
        let template = KeyRecordTemplate {
            sa: old.service_account_id.clone(),
            description: old.description.clone(),
            scopes: old.scopes.clone(),
            expires_at: old.expires_at,
            links: ReissueLinks { replaced_by: None, reissued_from: Some(old.id) },
            enabled: old.enabled,
            controls: old.controls.clone(),
        };
        let write = Write::Reissue { old: &old, fate };
        let (record, secret) = self.store_new(write, now, || self.new_native(&template, now)).await?;
        Ok(CreatedKey::new(&record, secret))
    }

    /// Imports an existing opaque secret (e.g. a 40-character `AQVN…` key
    /// from another system): stores its digest under a new id. The key then
    /// verifies through the digest index.
    ///
    /// The secret must be 16–512 bytes of `token68` (so it can travel in an
    /// `Authorization` header) and must not start with this format's prefix.
    ///
    /// # Errors
    /// [`ManageError::InvalidImportedSecret`], [`ManageError::AlreadyImported`],
    /// and the errors of [`KeyManager::create`].
    pub async fn import(&self, request: CreateRequest, secret: &Secret) -> Result<KeyInfo, ManageError> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < Secret::MIN_IMPORTED_LEN || bytes.len() > Secret::MAX_IMPORTED_LEN {
            return Err(ManageError::InvalidImportedSecret("length must be 16 to 512 bytes"));
        }
        if !is_token68(bytes) || bytes.len() > header::DEFAULT_MAX_HEADER_LEN {
            return Err(ManageError::InvalidImportedSecret("must be token68 (A-Z a-z 0-9 - . _ ~ + / and trailing =)"));
        }
        if bytes.starts_with(self.format.prefix().as_bytes()) {
            return Err(ManageError::InvalidImportedSecret("starts with this crate's key prefix"));
        }
        let (t, now) = self.admit(OperationKind::Import, &request)?;
        self.check_new(&t).await?;
        self.refuse_known_import(bytes).await?;
        let (pepper_version, digest) = self.peppers.digest_current(bytes);
        let masked = MaskedKey::of_digest(&digest);
        let draw = || Ok((t.record(KeyId::generate()?, KeyKind::Imported, (pepper_version, digest), masked, now), ()));
        let (record, ()) = self.store_new(Write::Insert(OperationKind::Import), now, draw).await?;
        Ok(record.info())
    }

    /// Refuses a secret that is already imported under any pepper held, as
    /// the verifier would find it (probing the current pepper alone would
    /// let a secret imported before a rotation be imported again for
    /// another account, and authenticate as the first one).
    async fn refuse_known_import(&self, secret: &[u8]) -> Result<(), ManageError> {
        for pepper in self.peppers.iter() {
            if self.store.get_by_digest(&pepper.digest(secret)).await?.is_some() {
                return Err(ManageError::AlreadyImported);
            }
        }
        Ok(())
    }
}

/// What [`KeyDirectory::record_leak`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakRecorded {
    /// Whether the key was revoked (in the same commit as the entries).
    pub revoked: bool,
    /// The leak entries written; those of places already logged are left
    /// out (empty for a repeated report).
    pub entries: Vec<LogEntry>,
}

/// Checks controls that may not have come through their constructors
/// (credits from a deserialised body) and stamps credits given a refill
/// without a start with `now`; `None` when no control is set.
fn admit_controls(mut controls: KeyControls, now: Timestamp) -> Result<Option<Arc<KeyControls>>, ControlError> {
    controls.credits = admit_credits(controls.credits, now)?;
    Ok(controls.into_option())
}

/// [`admit_controls`] for credits alone.
fn admit_credits(credits: Option<Credits>, now: Timestamp) -> Result<Option<Credits>, ControlError> {
    let Some(mut c) = credits else { return Ok(None) };
    c.check()?;
    if c.refill.is_some() && c.refilled_at.is_none() {
        c.refilled_at = Some(now);
    }
    Ok(Some(c))
}

/// How [`KeyManager::store_new`] writes a new record.
#[derive(Clone, Copy)]
enum Write<'a> {
    /// [`Change::Insert`], logged as `kind` (create or import).
    Insert(OperationKind),
    /// [`Change::Reissue`] of `old`.
    Reissue { old: &'a KeyRecord, fate: OldKeyFate },
}

/// What a reissue changes on the old key.
fn reissue_changes(new: &KeyRecord, fate: OldKeyFate) -> OperationChanges {
    let mut changes = OperationChanges { replaced_by: Some(new.id), ..OperationChanges::default() };
    match fate {
        OldKeyFate::Revoke => changes.status = Some(KeyStatus::Revoked),
        OldKeyFate::ExpireAt(t) => changes.expires_at = Some(Some(t)),
    }
    changes
}

struct KeyRecordTemplate {
    sa: ServiceAccountId,
    description: Description,
    scopes: ScopeSet,
    expires_at: Option<Timestamp>,
    links: ReissueLinks,
    enabled: bool,
    controls: Option<Arc<KeyControls>>,
}

impl KeyRecordTemplate {
    /// The record of a new key made from this template.
    fn record(
        &self,
        id: KeyId,
        kind: KeyKind,
        (pepper_version, digest): (u32, Digest),
        masked_key: MaskedKey,
        now: Timestamp,
    ) -> KeyRecord {
        let mut record = KeyRecord::new(id, self.sa.clone(), kind, pepper_version, digest, masked_key, now);
        record.description = self.description.clone();
        record.scopes = self.scopes.clone();
        record.expires_at = self.expires_at;
        record.links = self.links;
        record.enabled = self.enabled;
        record.controls.clone_from(&self.controls);
        record
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::digest::Pepper;
    use crate::store::MemoryStore;

    /// A store in which every new id is already taken: `insert` and
    /// `reissue` report a duplicate of the new record's id.
    struct Crowded {
        inner: Arc<MemoryStore>,
        writes: AtomicUsize,
    }

    impl Crowded {
        fn taken(&self, record: &KeyRecord) -> Result<(), StoreError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Duplicate(record.id))
        }
    }

    impl KeyStore for Crowded {
        crate::forward_key_store!(self => self.inner; all except [commit]);

        async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
            match &change {
                Change::Insert(r) | Change::Reissue { new: r, .. } => self.taken(r).map(|()| None),
                _ => self.inner.commit(change, log).await,
            }
        }
    }

    fn manager<S: KeyStore>(store: Arc<S>, peppers: &Peppers) -> KeyManager<S> {
        KeyManager::builder(store, peppers.clone(), crate::testing::scope_catalog()).build()
    }

    #[tokio::test]
    async fn when_every_drawn_id_is_taken_the_store_error_is_reported_not_a_random_failure() {
        let peppers = Peppers::single(Pepper::generate(1).unwrap());
        let memory = Arc::new(MemoryStore::new());
        let existing = manager(Arc::clone(&memory), &peppers).create(CreateRequest::new("robot")).await.unwrap();
        let crowded = Arc::new(Crowded { inner: memory, writes: AtomicUsize::new(0) });
        let m = manager(Arc::clone(&crowded), &peppers);

        let e = m.create(CreateRequest::new("robot")).await.unwrap_err();
        assert!(matches!(e, ManageError::Store(StoreError::Duplicate(_))), "{e:?}");
        assert_eq!(crowded.writes.swap(0, Ordering::SeqCst), ID_ATTEMPTS);

        let imported = Secret::from("AQVNimportedsecret0123456789".to_owned());
        let e = m.import(CreateRequest::new("robot"), &imported).await.unwrap_err();
        assert!(matches!(e, ManageError::Store(StoreError::Duplicate(_))), "{e:?}");
        assert_eq!(crowded.writes.swap(0, Ordering::SeqCst), ID_ATTEMPTS);

        let e = m.reissue(&existing.api_key.id, Duration::ZERO).await.unwrap_err();
        assert!(matches!(e, ManageError::Store(StoreError::Duplicate(_))), "{e:?}");
        assert_eq!(crowded.writes.load(Ordering::SeqCst), ID_ATTEMPTS);
    }

    /// An update changes only what it names: re-enabling a key or changing
    /// one control never brings back the catalog's default scopes, drops
    /// the expiry or another control; an empty scope list is refused.
    #[tokio::test]
    async fn an_update_never_widens_a_key_implicitly() {
        let peppers = Peppers::single(Pepper::generate(1).unwrap());
        let m = manager(Arc::new(MemoryStore::new()), &peppers);
        let expiry: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let request = CreateRequest::new("robot")
            .scopes(["yc.postbox.send"])
            .expires_at(expiry)
            .metadata(Metadata::parse(r#"{"plan":"pro"}"#).unwrap())
            .rate_limits("api=10/1s".parse().unwrap());
        let id = m.create(request).await.unwrap().api_key.id;
        let before = m.get(&id).await.unwrap();
        let list: IpAllowList = "10.0.0.0/8".parse().unwrap();
        for update in [
            UpdateRequest::new().disable(),
            UpdateRequest::new().enable(),
            UpdateRequest::new().allowed_ips(list.clone()),
            UpdateRequest::new().controls(ControlsPatch::new().rate_limits(None)),
        ] {
            m.update(&id, update).await.unwrap();
        }
        let after = m.get(&id).await.unwrap();
        assert_eq!((&after.scopes, after.expires_at, after.enabled), (&before.scopes, Some(expiry), true));
        let c = after.controls.as_deref().unwrap();
        assert_eq!(
            (c.metadata.as_ref(), c.allowed_ips.as_ref()),
            (before.controls.as_deref().unwrap().metadata.as_ref(), Some(&list))
        );
        assert_eq!(c.rate_limits, None, "removed, as asked");
        let e = m.update(&id, UpdateRequest::new().scopes(Vec::<String>::new())).await.unwrap_err();
        assert!(matches!(e, ManageError::Scope(crate::scope::ScopeError::EmptyList)), "{e:?}");
        assert_eq!(m.get(&id).await.unwrap(), after, "a refused update changes nothing");
    }

    /// A directory (no pepper) reads and changes keys under the manager's
    /// rules and logs as its actor; it reports unknown keys.
    #[tokio::test]
    async fn a_directory_manages_keys_without_a_pepper() {
        let peppers = Peppers::single(Pepper::generate(1).unwrap());
        let store = Arc::new(MemoryStore::new());
        let id = manager(Arc::clone(&store), &peppers).create(CreateRequest::new("robot")).await.unwrap().api_key.id;
        let keys = KeyDirectory::new(store, crate::testing::scope_catalog()).with_actor(Actor::new("ops").unwrap());
        assert_eq!(keys.list("robot", PageRequest::first(10)).await.unwrap().items.len(), 1);
        let (info, op) = keys.update(&id, UpdateRequest::new().description("d")).await.unwrap();
        assert_eq!((info.description.as_str(), op.actor.as_str()), ("d", "ops"));
        let entry = keys.revoke(&id).await.unwrap();
        assert_eq!((entry.kind, entry.actor.as_str()), (OperationKind::Revoke, "ops"));
        assert_eq!(keys.get(&id).await.unwrap().status, KeyStatus::Revoked);
        assert!(matches!(
            keys.update(&id, UpdateRequest::new().description("x")).await,
            Err(ManageError::Conflict { .. })
        ));
        keys.delete(&id).await.unwrap();
        assert!(matches!(keys.get(&id).await, Err(ManageError::NotFound(k)) if k == id));
        assert!(matches!(keys.revoke(&id).await, Err(ManageError::NotFound(_))));
        let log = keys.operations(&id, PageRequest::starting(10, None)).await.unwrap().items;
        let kinds: Vec<_> = log.iter().map(|o| o.kind).collect();
        assert_eq!(kinds, [OperationKind::Delete, OperationKind::Revoke, OperationKind::Update, OperationKind::Create]);
        // Its policy and clock are the manager's rules too.
        let other = manager(Arc::clone(&keys.store), &peppers).create(CreateRequest::new("robot")).await.unwrap();
        let strict = keys.with_policy(DenyAll("frozen".to_owned()));
        let e = strict.update(&other.api_key.id, UpdateRequest::new().description("x")).await.unwrap_err();
        assert!(matches!(e, ManageError::PolicyDenied(_)), "{e:?}");
        let late = keys
            .with_clock(Arc::new(crate::clock::ManualClock::new(Timestamp::from_unix_seconds(4_000_000_000).unwrap())));
        let e = late
            .update(
                &other.api_key.id,
                UpdateRequest::new().expires_at(Some(Timestamp::from_unix_seconds(3_000_000_000).unwrap())),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ManageError::AlreadyExpired(_)), "{e:?}");
    }
}
