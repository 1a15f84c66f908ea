//! An in-memory cache in front of any [`KeyStore`] (feature `cache`):
//! [`CachedStore`], configured by [`CacheConfig`].
//!
//! # What is served, and for how long
//!
//! Ages count from the moment the store read *started*. With
//! [`CacheConfig`]'s `fresh_ttl` ≤ `max_staleness`:
//!
//! - an entry younger than `fresh_ttl` is served from memory;
//! - an entry between `fresh_ttl` and `max_staleness` is served while one
//!   background refresh (single flight per entry) reads the store again
//!   (stale-while-revalidate). If that refresh **fails**, the entry is
//!   dropped: the next request goes to the store and fails closed with the
//!   store's error. A cache never turns a store error into an acceptance,
//!   and store errors are never cached;
//! - nothing older than `max_staleness` is ever served;
//! - "no such key" (negative) entries are served for `negative_ttl` only
//!   and are never refreshed in the background;
//! - `max_staleness = 0` ([`CacheConfig::disabled`]) consults the store on
//!   every call.
//!
//! A cached record is the record as stored; the verifier re-checks status,
//! **expiry** (against its clock, on every call) and scopes on whatever it
//! gets, so a cached key stops working the instant it expires.
//!
//! Concurrent misses for one key are coalesced into one store read (moka's
//! `try_get_with`). Without a Tokio runtime there is no background refresh:
//! a stale entry is then treated as a miss.
//!
//! # Revocation on this node is immediate and race-free
//!
//! Once `revoke`, `delete`, `reissue` (or `insert`) returns, no lookup on
//! this node returns the record as it was before — including a lookup that
//! started before the write and finishes after it, and a fill that read the
//! old record just before a delete (the load-then-fill race that lets
//! tower-sessions' cache resurrect a deleted session).
//!
//! The mechanism is generation stamps:
//! - a table of 4096 generation counters; every key id (and every digest)
//!   maps to one of them;
//! - every local mutation, **after** the inner write, bumps the counters of
//!   the ids (and digests) it touched, then removes their entries;
//! - a fill records the counter before reading the store and inserts its
//!   entry only if the counter is unchanged after the read; otherwise it
//!   discards what it read and reads again (fill-if-unchanged);
//! - every hit compares the entry's stamp with the current counter, so an
//!   entry that slipped in between a mutation's bump and its removal is
//!   never served.
//!
//! Records found by digest are stamped with their key id's counter (under a
//! global counter that detects a mutation during the read), so revoking an
//! imported key by id also invalidates its digest entry.
//!
//! # The hit path
//!
//! The verifier's lookup ([`KeyStore::with_record`]) first looks in a
//! lock-free mirror of moka's servable entries (a papaya map, filled when
//! moka serves or fills an entry, emptied by the same invalidations, and
//! told by moka's eviction listener what moka dropped). A hit there is
//! judged exactly like a moka hit (generation stamp current, age below
//! `fresh_ttl`) and lends the record in place: no lock, no reference count,
//! no allocation. Anything else (absent, stale, invalid) takes the moka path
//! above. A hit from the mirror is shown to moka at most once per second of
//! the entry's age, so its admission policy still sees which keys are used.
//! The mirror holds at most `max_entries` entries.
//!
//! # Other nodes
//!
//! Other nodes learn of a change through an [`InvalidationBus`]
//! ([`CachedStore::with_bus`]): after each local insert, revoke, delete and reissue
//! the store publishes the key id; a subscriber task drops every id it
//! receives. When the subscription is lost it reconnects with exponential
//! backoff and clears the whole cache on every (re)connect, since messages
//! may have been missed. Whatever happens to the channel, no entry outlives
//! `max_staleness`: that is the documented upper bound on how long a key
//! revoked elsewhere can still be accepted on this node. A failed publish
//! does not fail the write (it is committed); it is counted in
//! [`BusStatus::publish_failures`].
//!
//! # Notes
//! - Records from `get` may be up to `max_staleness` old when they were
//!   changed on another node without a bus message (for example
//!   `last_used_at`); management code that needs the authoritative record
//!   should read [`CachedStore::inner`].
//! - [`KeyStore::touch_last_used`] updates the cached records' `last_used_at`
//!   too, so the verifier's lock-free "already noted" check keeps working on
//!   cached records (entries by id; an imported key's entry by digest picks
//!   the new time up at its next refresh).
//! - A newly imported key may be rejected on other nodes for up to
//!   `negative_ttl` if its digest was looked up there just before the
//!   import (bus messages carry ids, never digests).
//! - Size is bounded by [`CacheConfig::max_entries`]; moka's TinyLFU
//!   admission keeps frequently used keys when a flood of unknown ids
//!   arrives.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use tokio::time::Instant;

use super::invalidation::{BusError, InvalidationBus, InvalidationSubscription, Publish};
use super::key_store::{KeyStore, PageRequest, StoreError};
use super::{BuildIdHasher, RecordView, intern_account, intern_scopes};
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::operation::{Change, LogEntry};
use crate::record::{KeyKind, KeyRecord, ServiceAccountId};
use crate::resource::{ResourceChange, ResourceCommit, ResourceLogEntry, ResourceRef};
use crate::scope::ScopeSet;
use crate::token::KeyId;

/// Cache settings. Every field has a safe default; see [`CachedStore`] for
/// how they interact.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Entries younger than this are served from memory without touching
    /// the store. Clamped to `max_staleness`. Defaults to 5 s.
    pub fresh_ttl: Duration,
    /// Hard upper bound on the age of anything served: entries between
    /// `fresh_ttl` and this age are served while a background refresh runs;
    /// older ones are never served. This is the longest a key revoked on
    /// another node can still be accepted here if the invalidation message
    /// is lost. Zero disables the cache. Defaults to 30 s.
    pub max_staleness: Duration,
    /// How long a "no such key" answer is served from memory; zero disables
    /// negative caching. Clamped to `max_staleness`. Defaults to 1 s.
    pub negative_ttl: Duration,
    /// Most entries (positive and negative, by id and by digest) held at
    /// once; moka evicts the least valuable beyond it. Defaults to 100,000.
    pub max_entries: u64,
    /// First delay before re-subscribing to the invalidation bus after the
    /// subscription fails; doubled after each failure. Defaults to 100 ms.
    pub reconnect_initial: Duration,
    /// Longest delay between re-subscription attempts. Defaults to 5 s.
    pub reconnect_max: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            fresh_ttl: Duration::from_secs(5),
            max_staleness: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(1),
            max_entries: 100_000,
            reconnect_initial: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
        }
    }
}

impl CacheConfig {
    /// A configuration that caches nothing: every lookup consults the store
    /// (`max_staleness = 0`). Writes are still published on the bus, so
    /// other nodes that do cache hear about them.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            fresh_ttl: Duration::ZERO,
            max_staleness: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Whether this configuration caches nothing.
    #[must_use]
    pub fn is_disabled(&self) -> bool {
        self.max_staleness.is_zero()
    }

    /// Sets [`CacheConfig::fresh_ttl`].
    #[must_use]
    pub fn fresh_ttl(mut self, ttl: Duration) -> Self {
        self.fresh_ttl = ttl;
        self
    }

    /// Sets [`CacheConfig::max_staleness`].
    #[must_use]
    pub fn max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }

    /// Sets [`CacheConfig::negative_ttl`].
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Sets [`CacheConfig::max_entries`].
    #[must_use]
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }

    /// Sets [`CacheConfig::reconnect_initial`].
    #[must_use]
    pub fn reconnect_initial(mut self, delay: Duration) -> Self {
        self.reconnect_initial = delay;
        self
    }

    /// Sets [`CacheConfig::reconnect_max`].
    #[must_use]
    pub fn reconnect_max(mut self, delay: Duration) -> Self {
        self.reconnect_max = delay;
        self
    }
}

/// A snapshot of the invalidation subscriber's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BusStatus {
    /// Whether the subscription is currently active.
    pub connected: bool,
    /// Subscriptions established so far (the first connect counts); each
    /// one cleared the cache.
    pub subscriptions: u64,
    /// Failed subscription attempts.
    pub subscribe_failures: u64,
    /// Key ids received (and dropped from the cache).
    pub received: u64,
    /// Publishes that failed after a local write (the write itself stood).
    pub publish_failures: u64,
}

/// What the cache holds for an id right now: see [`CachedStore::peek`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Peek {
    /// Nothing servable: the next lookup goes to the store.
    Miss,
    /// A servable "no such key" entry.
    Absent,
    /// A servable record.
    Record(Arc<KeyRecord>),
}

/// The cache key: a key id, or the digest of an imported key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum CacheKey {
    Id(KeyId),
    Digest([u8; 32]),
}

const STRIPES: usize = 4096;

/// The generation stripe of an id or digest.
fn stripe_of(bytes: &[u8]) -> usize {
    crate::shard::shard_of(bytes, STRIPES)
}

impl CacheKey {
    fn stripe(&self) -> usize {
        match self {
            Self::Id(id) => stripe_of(id.as_bytes()),
            Self::Digest(d) => stripe_of(d),
        }
    }
}

struct EntryInner {
    /// `None`: the store had no such key.
    record: Option<Arc<KeyRecord>>,
    /// The generation (of the record's id stripe, or for negative entries
    /// of the key's stripe) the read was made under.
    generation: u64,
    /// When the store read started.
    read_at: Instant,
    /// Set by the one stale hit that starts the background refresh.
    refreshing: AtomicBool,
    /// The record's scope set and service account, interned when the entry
    /// is made, so a hit lends a [`RecordView`] without interning.
    interned: Option<(&'static ScopeSet, &'static ServiceAccountId)>,
    /// The verifier's "use noted at" cell for this record (see
    /// [`RecordView`]), so unflushed keys are noted without a lock.
    seen: AtomicI64,
    /// Whole seconds of age at which moka was last told of a hit served by
    /// the hit index (see [`Entry::note_read`]).
    read_tick: AtomicU64,
}

#[derive(Clone)]
struct Entry(Arc<EntryInner>);

/// Interns a record's scope set and service account and, when the entry
/// holds the only reference to the record (a record just read from the
/// store), makes the record share them: a cached key then holds no scope
/// strings of its own.
fn share_interned(record: &mut Arc<KeyRecord>) -> (&'static ScopeSet, &'static ServiceAccountId) {
    let (scopes, account) = (intern_scopes(&record.scopes), intern_account(&record.service_account_id));
    if let Some(r) = Arc::get_mut(record) {
        r.scopes = scopes.clone();
        r.service_account_id = account.clone();
    }
    (scopes, account)
}

impl Entry {
    fn new(mut record: Option<Arc<KeyRecord>>, generation: u64, read_at: Instant) -> Self {
        let interned = record.as_mut().map(share_interned);
        Self(Arc::new(EntryInner {
            record,
            generation,
            read_at,
            refreshing: AtomicBool::new(false),
            interned,
            seen: AtomicI64::new(i64::MIN),
            read_tick: AtomicU64::new(0),
        }))
    }

    /// The record's view, borrowed from the entry.
    fn view(&self) -> Option<RecordView<'_>> {
        match (&self.0.record, self.0.interned) {
            (Some(r), Some((scopes, account))) => {
                let mut view = RecordView::of_interned(r, scopes, account);
                view.seen = Some(&self.0.seen);
                Some(view)
            }
            _ => None,
        }
    }

    /// Whether a hit at `now` is due to be shown to moka (see
    /// [`Entry::note_read`]); one load, nothing stored.
    fn read_due(&self, now: Instant) -> bool {
        let tick = now.saturating_duration_since(self.0.read_at).as_secs();
        self.0.read_tick.load(Ordering::Relaxed) != tick
    }

    /// Whether a hit served by the hit index at `now` should also be shown
    /// to moka (at most once per second of the entry's age), so its TinyLFU
    /// admission still sees which keys are in use. One load per hit; one
    /// store per second.
    fn note_read(&self, now: Instant) -> bool {
        if !self.read_due(now) {
            return false;
        }
        let tick = now.saturating_duration_since(self.0.read_at).as_secs();
        self.0.read_tick.store(tick, Ordering::Relaxed);
        true
    }
}

/// The hit path's index: a lock-free mirror of entries moka holds.
type HotIndex = papaya::HashMap<CacheKey, Entry, BuildIdHasher>;

/// What a lookup is served from: a cache entry, or a record read straight
/// from the store (cache disabled, or a miss not worth keeping).
enum Found {
    Entry(Entry),
    Direct(Option<Arc<KeyRecord>>),
}

enum Verdict {
    Fresh,
    Stale,
    Invalid,
}

/// moka's own expiry: only reclaims memory; what may be served is decided
/// by [`Shared::judge`] on every hit.
struct Lifetimes {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<CacheKey, Entry> for Lifetimes {
    fn expire_after_create(&self, _: &CacheKey, value: &Entry, _: std::time::Instant) -> Option<Duration> {
        Some(if value.0.record.is_some() { self.positive } else { self.negative })
    }

    fn expire_after_update(
        &self,
        key: &CacheKey,
        value: &Entry,
        at: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, at)
    }
}

#[derive(Default)]
struct BusCounters {
    connected: AtomicBool,
    subscriptions: AtomicU64,
    subscribe_failures: AtomicU64,
    received: AtomicU64,
    publish_failures: AtomicU64,
}

/// State shared by the store, its refresh tasks and its subscriber task.
struct Shared {
    /// `None` when caching is disabled.
    cache: Option<Cache<CacheKey, Entry>>,
    /// Lock-free mirror of moka's entries for the hit path; see "The hit
    /// path" on [`CachedStore`].
    hot: Arc<HotIndex>,
    stripes: Box<[AtomicU64]>,
    /// Bumped by every mutation and every received invalidation; detects a
    /// mutation during a by-digest read, whose id is unknown beforehand.
    global: AtomicU64,
    fresh_ttl: Duration,
    max_staleness: Duration,
    negative_ttl: Duration,
    config: CacheConfig,
    bus: BusCounters,
}

/// Why a fill produced no entry.
#[derive(Debug)]
enum FillError {
    Store(StoreError),
    /// A mutation overlapped the read: what was read may predate it.
    Raced,
}

/// Reads that kept being overtaken by writes; reported as
/// [`StoreError::Unavailable`] (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("every read of the key was overtaken by a concurrent write ({ATTEMPTS} attempts)")]
struct Contended;

/// A store error shared between coalesced lookups.
#[derive(Debug)]
struct SharedStoreError(Arc<FillError>);

impl fmt::Display for SharedStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            FillError::Store(e) => fmt::Display::fmt(e, f),
            FillError::Raced => f.write_str("read overtaken by a concurrent write"),
        }
    }
}

impl std::error::Error for SharedStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            FillError::Store(e) => Some(e),
            FillError::Raced => None,
        }
    }
}

const ATTEMPTS: usize = 8;

impl Shared {
    fn new(config: CacheConfig) -> Self {
        let max_staleness = config.max_staleness;
        let fresh_ttl = config.fresh_ttl.min(max_staleness);
        let negative_ttl = config.negative_ttl.min(max_staleness);
        let hot: Arc<HotIndex> = Arc::new(
            papaya::HashMap::builder().hasher(BuildIdHasher).resize_mode(papaya::ResizeMode::Blocking).build(),
        );
        let cache = (!max_staleness.is_zero()).then(|| {
            let mirror = Arc::clone(&hot);
            Cache::builder()
                .max_capacity(config.max_entries)
                .expire_after(Lifetimes { positive: max_staleness, negative: negative_ttl })
                // What moka drops (evicted, expired, invalidated, replaced)
                // leaves the mirror too, unless a newer entry took its place.
                .eviction_listener(move |key: Arc<CacheKey>, gone: Entry, _| {
                    let _ = mirror.pin().remove_if(&*key, |_, e| Arc::ptr_eq(&e.0, &gone.0));
                })
                .build()
        });
        Self {
            cache,
            hot,
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
            fresh_ttl,
            max_staleness,
            negative_ttl,
            config,
            bus: BusCounters::default(),
        }
    }

    fn generation(&self, stripe: usize) -> u64 {
        self.stripes[stripe].load(Ordering::SeqCst)
    }

    /// Whether no mutation touched the entry's key since its read started.
    fn current(&self, key: &CacheKey, e: &EntryInner) -> bool {
        let stripe = match &e.record {
            Some(r) => stripe_of(r.id.as_bytes()),
            None => key.stripe(),
        };
        self.generation(stripe) == e.generation
    }

    fn judge(&self, key: &CacheKey, e: &EntryInner, now: Instant) -> Verdict {
        if !self.current(key, e) {
            return Verdict::Invalid;
        }
        let age = now.saturating_duration_since(e.read_at);
        match e.record {
            None if age < self.negative_ttl => Verdict::Fresh,
            None => Verdict::Invalid,
            Some(_) if age < self.fresh_ttl => Verdict::Fresh,
            Some(_) if age < self.max_staleness => Verdict::Stale,
            Some(_) => Verdict::Invalid,
        }
    }

    /// Records a local or remote change: bump the global counter, then the
    /// stripes, then drop the entries (the bumps alone already make them
    /// unservable).
    async fn changed(&self, ids: &[KeyId], digests: &[[u8; 32]]) {
        self.global.fetch_add(1, Ordering::SeqCst);
        for id in ids {
            self.stripes[stripe_of(id.as_bytes())].fetch_add(1, Ordering::SeqCst);
        }
        for d in digests {
            self.stripes[stripe_of(d)].fetch_add(1, Ordering::SeqCst);
        }
        {
            let hot = self.hot.pin();
            for id in ids {
                hot.remove(&CacheKey::Id(*id));
            }
            for d in digests {
                hot.remove(&CacheKey::Digest(*d));
            }
        }
        if let Some(cache) = &self.cache {
            for id in ids {
                cache.invalidate(&CacheKey::Id(*id)).await;
            }
            for d in digests {
                cache.invalidate(&CacheKey::Digest(*d)).await;
            }
        }
    }

    /// Makes every entry unservable and drops them all.
    fn clear(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
        for s in &*self.stripes {
            s.fetch_add(1, Ordering::SeqCst);
        }
        self.hot.pin().clear();
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Serves a fresh entry from the hit index: no lock, no reference
    /// count, nothing allocated; `visit` is handed back on a miss. Also
    /// says whether to show the hit to moka ([`Entry::note_read`]). With
    /// `at_once` (a caller that cannot wait to show it), a hit whose notice
    /// is due is handed back too, so the answer is never to show it.
    fn serve_hot<R, F>(&self, key: &CacheKey, visit: F, at_once: bool) -> Result<(R, bool), F>
    where
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R,
    {
        if self.cache.is_none() {
            return Err(visit);
        }
        let hot = self.hot.pin();
        let Some(e) = hot.get(key) else { return Err(visit) };
        let now = Instant::now();
        if (at_once && e.read_due(now)) || !matches!(self.judge(key, &e.0, now), Verdict::Fresh) {
            return Err(visit);
        }
        let show_moka = e.note_read(now);
        Ok((visit(e.view()), show_moka))
    }

    /// Puts a servable entry moka holds into the hit index (up to
    /// `max_entries` of them).
    fn mirror(&self, key: CacheKey, e: &Entry) {
        let hot = self.hot.pin();
        if (hot.len() as u64) < self.config.max_entries {
            hot.insert(key, e.clone());
        }
    }

    /// One store read under the generation protocol; `Err(Raced)` if a
    /// mutation overlapped it.
    async fn fill<S: KeyStore>(&self, inner: &S, key: CacheKey) -> Result<Entry, FillError> {
        match key {
            CacheKey::Id(id) => {
                let stripe = stripe_of(id.as_bytes());
                let before = self.generation(stripe);
                let read_at = Instant::now();
                let record = inner.get(&id).await.map_err(FillError::Store)?;
                if self.generation(stripe) != before {
                    return Err(FillError::Raced);
                }
                Ok(Entry::new(record, before, read_at))
            }
            CacheKey::Digest(bytes) => {
                let global = self.global.load(Ordering::SeqCst);
                let stripe = stripe_of(&bytes);
                let before = self.generation(stripe);
                let read_at = Instant::now();
                let record = inner.get_by_digest(&Digest::from_bytes(bytes)).await.map_err(FillError::Store)?;
                match record {
                    None => {
                        if self.generation(stripe) != before {
                            return Err(FillError::Raced);
                        }
                        Ok(Entry::new(None, before, read_at))
                    }
                    Some(record) => {
                        // The record's own id stripe stamps the entry. It is
                        // read after the store read, so it is valid only if
                        // no mutation at all happened in between: mutations
                        // bump the global counter before any stripe.
                        let generation = self.generation(stripe_of(record.id.as_bytes()));
                        if self.global.load(Ordering::SeqCst) != global {
                            return Err(FillError::Raced);
                        }
                        Ok(Entry::new(Some(record), generation, read_at))
                    }
                }
            }
        }
    }
}

async fn read_through<S: KeyStore>(inner: &S, key: CacheKey) -> Result<Option<Arc<KeyRecord>>, StoreError> {
    match key {
        CacheKey::Id(id) => inner.get(&id).await,
        CacheKey::Digest(d) => inner.get_by_digest(&Digest::from_bytes(d)).await,
    }
}

fn unshare(e: Arc<FillError>) -> Option<StoreError> {
    match Arc::try_unwrap(e) {
        Ok(FillError::Store(e)) => Some(e),
        Ok(FillError::Raced) => None,
        // Coalesced lookups share one error; only the last owner can move it
        // out. The others rebuild the kinds that carry plain data and wrap the
        // rest, keeping the original as the source.
        Err(shared) => match &*shared {
            FillError::Raced => None,
            FillError::Store(StoreError::Timeout(d)) => Some(StoreError::Timeout(*d)),
            FillError::Store(StoreError::Corrupt(s)) => Some(StoreError::Corrupt(s.clone())),
            FillError::Store(_) => Some(StoreError::Unavailable(Box::new(SharedStoreError(shared)))),
        },
    }
}

/// Aborts the subscriber task when the store is dropped.
struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An in-memory cache in front of any [`KeyStore`] (feature `cache`).
///
/// `CachedStore` is itself a [`KeyStore`] (composition, as tower-sessions'
/// `CachingSessionStore`): put it between the verifier and a slow store and
/// most verifications never leave the process. Only the two lookups the
/// verifier makes are cached — [`KeyStore::get`] (by key id) and
/// [`KeyStore::get_by_digest`] (imported keys, by digest). Every write and
/// `list` goes straight through to the inner store.
///
/// ```
/// use std::sync::Arc;
/// use api_keys::store::cached::{CacheConfig, CachedStore};
/// use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog, VerifyError};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(CachedStore::new(MemoryStore::new(), CacheConfig::default()));
/// let manager = KeyManager::builder(store, Peppers::single(Pepper::generate(1)?), ScopeCatalog::builder().build()?).build();
/// let verifier = manager.verifier().build();
///
/// let created = manager.create(CreateRequest::new("my-robot")).await?;
/// let header = format!("Api-Key {}", created.secret.expose_secret());
/// verifier.verify(header.as_bytes(), None).await?; // fills the cache
/// verifier.verify(header.as_bytes(), None).await?; // served from memory
///
/// // A revoke through the same store takes effect at once on this node.
/// manager.revoke(&created.api_key.id).await?;
/// let err = verifier.verify(header.as_bytes(), None).await.unwrap_err();
/// assert!(matches!(err, VerifyError::Revoked(_)));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
///
/// What is served and for how long, why a revoke on this node is
/// immediate and race-free, and how other nodes learn of changes: see the
/// [module documentation](self).
pub struct CachedStore<S> {
    inner: Arc<S>,
    shared: Arc<Shared>,
    publisher: Option<Arc<dyn Publish>>,
    _subscriber: Option<TaskGuard>,
}

impl<S> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("config", &self.shared.config)
            .field("entries", &self.shared.cache.as_ref().map_or(0, Cache::entry_count))
            .field("bus", &self.publisher.is_some())
            .finish()
    }
}

impl<S: KeyStore> CachedStore<S> {
    /// A cache in front of `inner`, with no cross-node invalidation (for a
    /// single node, or with a short `max_staleness`).
    #[must_use]
    pub fn new(inner: S, config: CacheConfig) -> Self {
        Self { inner: Arc::new(inner), shared: Arc::new(Shared::new(config)), publisher: None, _subscriber: None }
    }

    /// A cache in front of `inner` that publishes its writes on `bus` and
    /// runs a subscriber task (on the current Tokio runtime) dropping the
    /// ids other nodes publish. The task stops when the store is dropped.
    ///
    /// # Errors
    /// [`BusError::NoRuntime`] outside a Tokio runtime.
    pub fn with_bus<B: InvalidationBus>(inner: S, config: CacheConfig, bus: B) -> Result<Self, BusError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let shared = Arc::new(Shared::new(config));
        let bus = Arc::new(bus);
        let task = handle.spawn(subscriber(Arc::clone(&bus), Arc::clone(&shared)));
        Ok(Self {
            inner: Arc::new(inner),
            shared,
            publisher: Some(bus),
            _subscriber: Some(TaskGuard(task.abort_handle())),
        })
    }

    /// No cache, only the publishing half of [`CachedStore::with_bus`]: every
    /// write through this store (insert, revoke, delete, reissue) is
    /// announced on `bus`, and no subscriber task runs. For programs that
    /// write keys but serve no verifications, such as an operator tool: its
    /// revocations then reach the caching nodes within the bus's delivery
    /// time instead of their `max_staleness`.
    #[must_use]
    pub fn publishing<B: InvalidationBus>(inner: S, bus: B) -> Self {
        Self {
            inner: Arc::new(inner),
            shared: Arc::new(Shared::new(CacheConfig::disabled())),
            publisher: Some(Arc::new(bus)),
            _subscriber: None,
        }
    }

    /// The store behind the cache (for authoritative reads).
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CacheConfig {
        &self.shared.config
    }

    /// The invalidation subscriber's state (all zero without a bus).
    #[must_use]
    pub fn bus_status(&self) -> BusStatus {
        let b = &self.shared.bus;
        BusStatus {
            connected: b.connected.load(Ordering::SeqCst),
            subscriptions: b.subscriptions.load(Ordering::SeqCst),
            subscribe_failures: b.subscribe_failures.load(Ordering::SeqCst),
            received: b.received.load(Ordering::SeqCst),
            publish_failures: b.publish_failures.load(Ordering::SeqCst),
        }
    }

    /// Entries held (approximate until [`CachedStore::run_pending_tasks`]).
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.shared.cache.as_ref().map_or(0, Cache::entry_count)
    }

    /// Runs moka's pending maintenance (evictions, expirations) now.
    pub async fn run_pending_tasks(&self) {
        if let Some(cache) = &self.shared.cache {
            cache.run_pending_tasks().await;
        }
    }

    /// Makes every entry unservable and drops them (as on a bus reconnect).
    pub fn clear(&self) {
        self.shared.clear();
    }

    /// What a lookup of `id` would be served from memory right now, without
    /// touching the store or starting a refresh (for diagnostics and tests).
    pub async fn peek(&self, id: &KeyId) -> Peek {
        let key = CacheKey::Id(*id);
        let Some(cache) = &self.shared.cache else { return Peek::Miss };
        let Some(e) = cache.get(&key).await else { return Peek::Miss };
        match (self.shared.judge(&key, &e.0, Instant::now()), &e.0.record) {
            (Verdict::Invalid, _) => Peek::Miss,
            (_, None) => Peek::Absent,
            (_, Some(r)) => Peek::Record(Arc::clone(r)),
        }
    }

    async fn lookup(&self, key: CacheKey) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(match self.find(key).await? {
            Found::Entry(e) => e.0.record.clone(),
            Found::Direct(r) => r,
        })
    }

    /// The lookup itself: a servable entry, a store read through the
    /// generation protocol, or (cache disabled) a plain store read.
    async fn find(&self, key: CacheKey) -> Result<Found, StoreError> {
        let Some(cache) = &self.shared.cache else {
            return read_through(&*self.inner, key).await.map(Found::Direct);
        };
        for _ in 0..ATTEMPTS {
            if let Some(e) = cache.get(&key).await {
                match self.shared.judge(&key, &e.0, Instant::now()) {
                    Verdict::Fresh => {
                        self.shared.mirror(key, &e);
                        return Ok(Found::Entry(e));
                    }
                    Verdict::Stale if self.refresh(key, &e) => return Ok(Found::Entry(e)),
                    Verdict::Stale | Verdict::Invalid => cache.invalidate(&key).await,
                }
            }
            match cache.try_get_with(key, self.shared.fill(&*self.inner, key)).await {
                Ok(e) => match self.shared.judge(&key, &e.0, Instant::now()) {
                    Verdict::Fresh => {
                        self.shared.mirror(key, &e);
                        return Ok(Found::Entry(e));
                    }
                    Verdict::Stale => return Ok(Found::Entry(e)),
                    // A "no such key" read just made and not overtaken is the
                    // answer even when it is not worth keeping
                    // (`negative_ttl` zero).
                    Verdict::Invalid if e.0.record.is_none() && self.shared.current(&key, &e.0) => {
                        return Ok(Found::Direct(None));
                    }
                    Verdict::Invalid => {}
                },
                Err(e) => {
                    if let Some(e) = unshare(e) {
                        return Err(e);
                    }
                }
            }
        }
        Err(StoreError::unavailable(Contended))
    }

    /// Starts the single background refresh of a stale entry; `false` when
    /// no Tokio runtime is available (the caller then reads the store).
    fn refresh(&self, key: CacheKey, stale: &Entry) -> bool {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return false };
        if stale.0.refreshing.swap(true, Ordering::SeqCst) {
            return true; // already under way; keep serving the stale entry
        }
        let inner = Arc::clone(&self.inner);
        let shared = Arc::clone(&self.shared);
        handle.spawn(async move {
            let Some(cache) = &shared.cache else { return };
            match shared.fill(&*inner, key).await {
                Ok(fresh) => cache.insert(key, fresh).await,
                // A failed refresh drops the entry: the next request reads the
                // store itself and fails closed if the store is still down.
                Err(_) => cache.invalidate(&key).await,
            }
        });
        true
    }

    /// After a write (successful or not: a timed-out write may have been
    /// applied), make the touched entries unservable and tell other nodes.
    async fn after_write(
        &self,
        result: Result<(), &StoreError>,
        ids: &[KeyId],
        digests: &[[u8; 32]],
        publish: &[KeyId],
    ) {
        self.shared.changed(ids, digests).await;
        let written = !matches!(
            result,
            Err(StoreError::NotFound(_)
                | StoreError::Conflict { .. }
                | StoreError::Duplicate(_)
                | StoreError::DuplicateOperation(_))
        );
        if let (true, Some(bus)) = (written, &self.publisher) {
            for id in publish {
                if bus.publish_boxed(id).await.is_err() {
                    self.shared.bus.publish_failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    async fn patch_last_used(&self, updates: &[(KeyId, Timestamp)]) {
        let Some(cache) = &self.shared.cache else { return };
        for (id, at) in updates {
            let key = CacheKey::Id(*id);
            let Some(e) = cache.get(&key).await else { continue };
            let Some(record) = &e.0.record else { continue };
            if record.last_used_at.is_some_and(|t| t >= *at) {
                continue;
            }
            let mut patched = KeyRecord::clone(record);
            patched.last_used_at = Some(*at);
            // Same stamp and age: a mutation since the read still
            // invalidates it, and it never lives longer than the original.
            let entry = Entry::new(Some(Arc::new(patched)), e.0.generation, e.0.read_at);
            cache.insert(key, entry.clone()).await;
            // The hit index serves the patched record too (moka's listener
            // dropped the old one from it).
            self.shared.mirror(key, &entry);
        }
    }
}

/// The subscriber task: drop every received id; on loss of the
/// subscription, back off, re-subscribe and clear everything.
async fn subscriber<B: InvalidationBus>(bus: Arc<B>, shared: Arc<Shared>) {
    let initial = shared.config.reconnect_initial.max(Duration::from_millis(1));
    let max = shared.config.reconnect_max.max(initial);
    let mut delay = initial;
    loop {
        match bus.subscribe().await {
            Ok(mut subscription) => {
                // Messages published while unsubscribed are lost: forget
                // everything read before the subscription was active.
                shared.clear();
                shared.bus.connected.store(true, Ordering::SeqCst);
                shared.bus.subscriptions.fetch_add(1, Ordering::SeqCst);
                delay = initial;
                while let Ok(id) = subscription.next_id().await {
                    shared.changed(&[id], &[]).await;
                    shared.bus.received.fetch_add(1, Ordering::SeqCst);
                }
                shared.bus.connected.store(false, Ordering::SeqCst);
            }
            Err(_) => {
                shared.bus.subscribe_failures.fetch_add(1, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max);
    }
}

impl<S: KeyStore> KeyStore for CachedStore<S> {
    // Everything but the lookups by id or digest, `touch_last_used` and the
    // writes goes straight to the inner store, neither read from nor filled
    // into the cache: batch lookups (`get_many`) serve leak checks and scans,
    // which want the store's answer now (a revocation made a moment ago on
    // another node included), and would only evict the verifier's hot keys;
    // `spend_credits` is always the inner store's atomic spend (the cached
    // record's count is only what it was when read, and the verifier never
    // reads it for a decision).
    crate::forward_key_store!(self => self.inner;
        all except [get, get_by_digest, with_record, lend_now, touch_last_used, commit, commit_resource]);

    fn get(&self, id: &KeyId) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.lookup(CacheKey::Id(*id))
    }

    /// The verifier's lookup: the same protocol as `get`, lending the
    /// entry's record in place (no record reference taken, nothing interned
    /// on a hit).
    fn with_record<R, F>(&self, id: &KeyId, visit: F) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        R: Send,
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R + Send,
    {
        let key = CacheKey::Id(*id);
        async move {
            let visit = match self.shared.serve_hot(&key, visit, false) {
                Ok((out, show_moka)) => {
                    if let (true, Some(cache)) = (show_moka, &self.shared.cache) {
                        let _ = cache.get(&key).await;
                    }
                    return Ok(out);
                }
                Err(visit) => visit,
            };
            Ok(match self.find(key).await? {
                Found::Entry(e) => visit(e.view()),
                Found::Direct(r) => visit(r.as_deref().map(RecordView::of)),
            })
        }
    }

    /// The hit path of [`CachedStore::with_record`], synchronously: a fresh
    /// entry of the hit index is lent at once; anything else (a miss, a stale
    /// entry, a due notice to moka) is handed back for the full lookup.
    fn lend_now<R, F>(&self, id: &KeyId, visit: F) -> Result<R, F>
    where
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R,
    {
        self.shared.serve_hot(&CacheKey::Id(*id), visit, true).map(|(out, _)| out)
    }

    fn get_by_digest(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.lookup(CacheKey::Digest(*digest.as_bytes()))
    }

    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        self.inner.touch_last_used(updates).await?;
        self.patch_last_used(updates).await;
        Ok(())
    }

    /// Every write: the changed keys are dropped here and published to every
    /// node (an update, like a revoke, so new scopes or expiry apply on the
    /// next verify everywhere). New ids are random, so no other node can
    /// have cached them; a created id is still published so that other
    /// nodes' membership sets (the flood shield) learn it at once.
    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        if let Change::Note(_) = change {
            // Only log entries: no record changes, nothing to invalidate.
            return self.inner.commit(change, log).await;
        }
        let imported = |r: &KeyRecord| (r.kind == KeyKind::Imported).then(|| *r.digest.as_bytes());
        let (ids, digest, publish): (Vec<KeyId>, Option<[u8; 32]>, Vec<KeyId>) = match &change {
            Change::Insert(r) => (vec![r.id], imported(r), vec![r.id]),
            Change::Update { id, .. } | Change::Revoke(id) | Change::Delete(id) => (vec![*id], None, vec![*id]),
            Change::Reissue { old, new, .. } => (vec![*old, new.id], imported(new), vec![*old]),
            Change::Note(_) => (Vec::new(), None, Vec::new()),
        };
        let result = self.inner.commit(change, log).await;
        self.after_write(result.as_ref().map(drop), &ids, digest.as_slice(), &publish).await;
        result
    }

    /// Deleting a service account deletes its keys: they are dropped here
    /// and announced to other nodes as a key's delete is. Their ids are read
    /// before the write (one that fails or times out may still have been
    /// applied) and joined with those the store reports deleted.
    async fn commit_resource(
        &self,
        change: ResourceChange,
        log: &ResourceLogEntry,
    ) -> Result<ResourceCommit, StoreError> {
        let mut ids = match &change {
            ResourceChange::Delete(ResourceRef::ServiceAccount(account)) => self.account_key_ids(account).await?,
            _ => Vec::new(),
        };
        let result = self.inner.commit_resource(change, log).await;
        if let Ok(commit) = &result {
            ids.extend(&commit.deleted_keys);
            ids.sort_unstable();
            ids.dedup();
        }
        if !ids.is_empty() {
            self.after_write(result.as_ref().map(drop), &ids, &[], &ids).await;
        }
        result
    }
}

impl<S: KeyStore> CachedStore<S> {
    /// Every key id of `account`, from the inner store, page by page.
    async fn account_key_ids(&self, account: &ServiceAccountId) -> Result<Vec<KeyId>, StoreError> {
        let mut ids = Vec::new();
        let mut page = PageRequest::first(1000);
        loop {
            let found = self.inner.list(account, page).await?;
            ids.extend(found.items.iter().map(|r| r.id));
            match found.next {
                Some(after) => page = PageRequest::after(1000, after),
                None => return Ok(ids),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_spread_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let id = KeyId::generate().unwrap();
            let s = stripe_of(id.as_bytes());
            assert!(s < STRIPES);
            seen.insert(s);
        }
        // 2000 random ids over 4096 stripes: expect ~1600 distinct.
        assert!(seen.len() > 1200, "{}", seen.len());
        assert_ne!(stripe_of(&[0u8; 32]), stripe_of(&[1u8; 32]));
    }

    #[test]
    fn config_clamps_and_disables() {
        let s = Shared::new(CacheConfig {
            fresh_ttl: Duration::from_secs(60),
            max_staleness: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(60),
            ..CacheConfig::default()
        });
        assert_eq!((s.fresh_ttl, s.negative_ttl), (Duration::from_secs(10), Duration::from_secs(10)));
        assert!(s.cache.is_some());
        assert!(CacheConfig::disabled().is_disabled());
        assert!(Shared::new(CacheConfig::disabled()).cache.is_none());
        assert!(!CacheConfig::default().is_disabled());
    }

    #[test]
    fn shared_errors_keep_their_kind() {
        let timeout = Arc::new(FillError::Store(StoreError::Timeout(Duration::from_secs(2))));
        let _other = Arc::clone(&timeout);
        assert!(matches!(unshare(timeout), Some(StoreError::Timeout(_))));
        let sole = Arc::new(FillError::Store(StoreError::unavailable("down")));
        assert!(matches!(unshare(sole), Some(StoreError::Unavailable(_))));
        let shared = Arc::new(FillError::Store(StoreError::unavailable("down")));
        let _other = Arc::clone(&shared);
        let e = unshare(shared).unwrap();
        assert!(e.is_unavailable());
        assert!(unshare(Arc::new(FillError::Raced)).is_none());
    }
}
