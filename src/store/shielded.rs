//! The flood shield (feature `cache`): a well-formed key whose id no one
//! ever issued is refused without a store query.
//!
//! The checksum of a key is public (any script can compute it), so a flood
//! of forged keys with random ids passes the checksum and, without a
//! shield, costs one store query each — behind a cache too, since every id
//! is new. [`ShieldedStore`] keeps a per-node membership set of the ids that
//! exist and answers "no such key" for any other id without asking the
//! store. The verifier then does exactly what it does for an unknown id (the
//! stand-in record's HMAC and compare), so the shield saves the query, not
//! the timing equality.
//!
//! # The set
//!
//! A 64-bit fingerprint per id (SipHash-1-3 under a random per-process key,
//! so nobody can aim forged ids at collisions), exact up to a
//! false-positive rate of about n / 2⁶⁴ per forged id (a false positive
//! only costs the query the shield would have saved). The fingerprints sit
//! in a sorted array, 8 bytes per id, answered by binary search, with recent
//! changes in a small delta folded into the array once it holds more than
//! 1/256 of it (at least 4,096 entries): about 8.0 bytes per id in steady
//! state ([`ShieldStats::bytes`]; the `shield_memory` example measures it).
//! A full load over a store with a feed empties the set first and fills the
//! same memory (the shield is not trusted meanwhile), so the set never
//! exists twice; over a store without one it builds the new set beside the
//! old, which keeps answering.
//!
//! # Kept current, and fail safe
//!
//! - loaded from the store ([`KeyStore::ids_after`]) at start, then kept
//!   current from the store's [change feed](crate::store::feed) every
//!   [`ShieldConfig::catch_up_every`] (created ids join, deleted ids
//!   leave): a node's steady cost on the store is the changes, not the
//!   keys. It loads everything again only when the feed cannot continue
//!   (pruned past the set's position, another store, a store restored from
//!   a backup). For a store without a feed it reloads every
//!   [`ShieldConfig::resync_every`];
//! - inserts and reissues through the shielded store add their new id
//!   before the write;
//! - with an invalidation bus ([`ShieldedStore::with_bus`]) every id heard
//!   on the channel is added (creates publish their id: see
//!   [`CachedStore`](super::cached::CachedStore)), so keys created on other
//!   nodes or by `keyctl` are accepted as soon as the message arrives.
//!
//! The shield refuses an id only while it is **trusted**: the last load
//! completed after the current subscription was established, the
//! subscription is still up, and that load is younger than
//! [`ShieldConfig::max_age`]. Otherwise (starting, channel down, resync
//! failing) every lookup goes to the store: the shield never refuses a key
//! that exists because it may be stale. An id missing from a trusted set is
//! still checked in the store within a small budget
//! ([`ShieldConfig::miss_queries_per_sec`], default 10 per second, token
//! bucket): a key created elsewhere a moment ago, whose announcement is
//! still on its way (milliseconds), is found and added instead of refused,
//! while a flood gets at most that many queries per second through. Only a
//! key first used during a flood, before its announcement arrives, can be
//! refused (and is accepted once the message arrives); a message lost on a
//! connection that died silently is repaired by the next catch-up (or
//! resync).
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::store::shielded::{ShieldConfig, ShieldedStore};
//! use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Every write goes through this process: no bus needed.
//! let store = Arc::new(ShieldedStore::local(MemoryStore::new(), ShieldConfig::default())?);
//! store.wait_trusted().await;
//! let manager = KeyManager::builder(Arc::clone(&store), Peppers::single(Pepper::generate(1)?), ScopeCatalog::builder().build()?).build();
//! let created = manager.create(CreateRequest::new("my-robot")).await?;
//! let verifier = manager.verifier().build();
//! verifier.verify(format!("Api-Key {}", created.secret.expose_secret()).as_bytes(), None).await?;
//! assert_eq!(store.stats().refused, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::operation::{Change, LogEntry};
use crate::record::KeyRecord;
use crate::store::feed::{FeedChange, FeedPosition, FeedRead};
use crate::store::invalidation::{BusError, InvalidationBus, InvalidationSubscription};
use crate::store::key_store::{KeyStore, StoreError};
use crate::store::membership::Membership;
use crate::token::KeyId;

/// Shield settings. Every field has a safe default; set others with the
/// builder methods (`ShieldConfig::default().resync_every(…)`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShieldConfig {
    /// How often the set is rebuilt from the store when the store keeps no
    /// change feed. Defaults to 60 s.
    pub resync_every: Duration,
    /// How often the set catches up from the store's change feed (when it
    /// keeps one): the repair path behind the channel. Defaults to 500 ms.
    pub catch_up_every: Duration,
    /// The set is not trusted when its last successful load is older than
    /// this (a failing resync turns the shield off). Defaults to 180 s.
    pub max_age: Duration,
    /// Ids read per store query during a load. Defaults to 10,000.
    pub page: u32,
    /// First delay before re-subscribing after the channel fails; doubled
    /// after each failure up to 5 s. Defaults to 100 ms.
    pub reconnect_initial: Duration,
    /// Unknown ids checked in the store anyway, per second (a token bucket
    /// holding at most this many): a key created elsewhere a moment ago,
    /// whose announcement has not arrived yet, is then found instead of
    /// refused; a flood gets at most this many queries per second through.
    /// Zero refuses every unknown id. Defaults to 10.
    pub miss_queries_per_sec: u32,
}

impl Default for ShieldConfig {
    fn default() -> Self {
        Self {
            resync_every: Duration::from_secs(60),
            catch_up_every: Duration::from_millis(500),
            max_age: Duration::from_secs(180),
            page: 10_000,
            reconnect_initial: Duration::from_millis(100),
            miss_queries_per_sec: 10,
        }
    }
}

impl ShieldConfig {
    /// Sets [`ShieldConfig::resync_every`].
    #[must_use]
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.resync_every = every;
        self
    }

    /// Sets [`ShieldConfig::catch_up_every`].
    #[must_use]
    pub fn catch_up_every(mut self, every: Duration) -> Self {
        self.catch_up_every = every;
        self
    }

    /// Sets [`ShieldConfig::max_age`].
    #[must_use]
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Sets [`ShieldConfig::page`].
    #[must_use]
    pub fn page(mut self, ids: u32) -> Self {
        self.page = ids;
        self
    }

    /// Sets [`ShieldConfig::miss_queries_per_sec`].
    #[must_use]
    pub fn miss_queries_per_sec(mut self, n: u32) -> Self {
        self.miss_queries_per_sec = n;
        self
    }

    /// Sets [`ShieldConfig::reconnect_initial`].
    #[must_use]
    pub fn reconnect_initial(mut self, delay: Duration) -> Self {
        self.reconnect_initial = delay;
        self
    }
}

/// A snapshot of the shield's state and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShieldStats {
    /// Whether lookups of unknown ids are refused right now.
    pub trusted: bool,
    /// Ids in the set.
    pub ids: usize,
    /// Heap bytes the set holds (about 8 per id: see the module docs).
    pub bytes: usize,
    /// Lookups refused without a store query.
    pub refused: u64,
    /// Lookups of ids missing from the set that were checked in the store
    /// anyway (within [`ShieldConfig::miss_queries_per_sec`]).
    pub miss_queries: u64,
    /// Lookups passed to the store while not trusted.
    pub untrusted_lookups: u64,
    /// Completed full loads.
    pub loads: u64,
    /// Completed catch-ups from the change feed.
    pub catch_ups: u64,
    /// Times the feed could not continue (pruned, another store, restored
    /// from a backup) and a full load was done instead.
    pub feed_breaks: u64,
    /// Failed loads.
    pub load_failures: u64,
    /// Ids heard on the invalidation channel.
    pub heard: u64,
}

struct Members {
    set: Membership,
    /// Ids heard while a load runs, merged into the loaded set.
    heard_during_load: Option<Vec<u64>>,
}

/// State shared by the store and its tasks.
struct State {
    members: RwLock<Members>,
    keys: RandomState,
    /// Bumped on every (re)subscription; a load trusts the set only for the
    /// epoch it started in.
    epoch: AtomicU64,
    connected: AtomicBool,
    /// `epoch` of the last successful load, `u64::MAX` for none.
    loaded_epoch: AtomicU64,
    /// When that load started, in milliseconds since `origin`.
    loaded_at_ms: AtomicU64,
    origin: Instant,
    config: ShieldConfig,
    /// Set for a disabled shield: never trusted.
    disabled: bool,
    reload: Notify,
    refused: AtomicU64,
    untrusted_lookups: AtomicU64,
    loads: AtomicU64,
    catch_ups: AtomicU64,
    feed_breaks: AtomicU64,
    load_failures: AtomicU64,
    /// Where the set stands in the store's change feed; `None` before the
    /// first load and for a store without a feed.
    position: std::sync::Mutex<Option<FeedPosition>>,
    heard: AtomicU64,
    miss_queries: AtomicU64,
    /// Tokens for checking unknown ids in the store, and when last refilled.
    miss_budget: std::sync::Mutex<(f64, Instant)>,
}

impl State {
    fn new(config: ShieldConfig, disabled: bool) -> Self {
        let burst = f64::from(config.miss_queries_per_sec);
        Self {
            members: RwLock::new(Members { set: Membership::default(), heard_during_load: None }),
            keys: RandomState::new(),
            epoch: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            loaded_epoch: AtomicU64::new(u64::MAX),
            loaded_at_ms: AtomicU64::new(0),
            origin: Instant::now(),
            config,
            disabled,
            reload: Notify::new(),
            refused: AtomicU64::new(0),
            untrusted_lookups: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            catch_ups: AtomicU64::new(0),
            feed_breaks: AtomicU64::new(0),
            load_failures: AtomicU64::new(0),
            position: std::sync::Mutex::new(None),
            heard: AtomicU64::new(0),
            miss_queries: AtomicU64::new(0),
            miss_budget: std::sync::Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token of the unknown-id budget, if any is left.
    fn take_miss_token(&self) -> bool {
        let rate = f64::from(self.config.miss_queries_per_sec);
        if rate <= 0.0 {
            return false;
        }
        let mut b = self.miss_budget.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        b.0 = (b.0 + now.saturating_duration_since(b.1).as_secs_f64() * rate).min(rate);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn fingerprint(&self, id: &KeyId) -> u64 {
        self.keys.hash_one(id.as_bytes())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn trusted(&self) -> bool {
        if self.disabled || !self.connected.load(Ordering::SeqCst) {
            return false;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        if self.loaded_epoch.load(Ordering::SeqCst) != epoch {
            return false;
        }
        let age = self.now_ms().saturating_sub(self.loaded_at_ms.load(Ordering::SeqCst));
        u128::from(age) < self.config.max_age.as_millis()
    }

    fn add(&self, id: &KeyId) {
        let f = self.fingerprint(id);
        let mut m = self.members.write().unwrap_or_else(PoisonError::into_inner);
        m.set.insert(f);
        if let Some(heard) = &mut m.heard_during_load {
            heard.push(f);
        }
    }

    fn contains(&self, id: &KeyId) -> bool {
        let f = self.fingerprint(id);
        self.members.read().unwrap_or_else(PoisonError::into_inner).set.contains(f)
    }

    fn position(&self) -> Option<FeedPosition> {
        *self.position.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_position(&self, at: Option<FeedPosition>) {
        *self.position.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Brings the set up to date — from the change feed where the store
    /// keeps one and it continues from where the set stands, else by a
    /// full load — and trusts it if no re-subscription happened meanwhile.
    async fn sync<S: KeyStore>(&self, store: &S) -> Result<(), StoreError> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let started = self.now_ms();
        let caught_up = match self.position() {
            Some(at) => self.catch_up(store, at).await?,
            None => false,
        };
        if caught_up {
            self.catch_ups.fetch_add(1, Ordering::Relaxed);
        } else {
            self.load(store).await?;
            self.loads.fetch_add(1, Ordering::Relaxed);
        }
        self.loaded_at_ms.store(started, Ordering::SeqCst);
        self.loaded_epoch.store(epoch, Ordering::SeqCst);
        Ok(())
    }

    /// Applies the feed's changes after `at`; `false` if the feed cannot
    /// continue from there (a full load is due).
    async fn catch_up<S: KeyStore>(&self, store: &S, mut at: FeedPosition) -> Result<bool, StoreError> {
        let page = self.config.page.max(1);
        loop {
            match store.changes_after(at, page).await? {
                FeedRead::Changes { changes, next } => {
                    self.apply(&changes);
                    at = next;
                    self.set_position(Some(at));
                    if changes.len() < page as usize {
                        return Ok(true);
                    }
                }
                _ => {
                    self.feed_breaks.fetch_add(1, Ordering::Relaxed);
                    self.set_position(None);
                    return Ok(false);
                }
            }
        }
    }

    /// Adds created and changed ids to the set and removes deleted ones.
    fn apply(&self, changes: &[FeedChange]) {
        if changes.is_empty() {
            return;
        }
        let mut m = self.members.write().unwrap_or_else(PoisonError::into_inner);
        for c in changes {
            let f = self.fingerprint(&c.key_id);
            if c.gone {
                m.set.remove(f);
            } else {
                m.set.insert(f);
            }
        }
    }

    /// Rebuilds the set from the store, starting its feed position at the
    /// head read before the load (so what commits during the load is caught
    /// up afterwards).
    ///
    /// With a feed, a full load is rare (at start, after a break in the
    /// feed): the old set is emptied first and the new one filled into its
    /// memory, so the set never exists twice, and the shield is not trusted
    /// meanwhile (lookups go to the store, as at start). Without a feed the
    /// load repeats every [`ShieldConfig::resync_every`], so the old set
    /// keeps answering while the new one is built beside it.
    async fn load<S: KeyStore>(&self, store: &S) -> Result<(), StoreError> {
        let head = store.feed_head().await?;
        let reuse = {
            let mut m = self.members.write().unwrap_or_else(PoisonError::into_inner);
            m.heard_during_load = Some(Vec::new());
            if head.is_some() {
                self.loaded_epoch.store(u64::MAX, Ordering::SeqCst);
                m.set.take_allocation()
            } else {
                Vec::new()
            }
        };
        let loaded = self.read_all(store, reuse).await;
        let mut m = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let heard = m.heard_during_load.take().unwrap_or_default();
        let mut fingerprints = loaded?;
        fingerprints.extend(heard);
        m.set = Membership::from_unsorted(fingerprints);
        drop(m);
        self.set_position(head);
        Ok(())
    }

    /// Every id's fingerprint, pushed into `into`, which grows by an
    /// eighth at a time (not doubling) so a load holds little slack.
    async fn read_all<S: KeyStore>(&self, store: &S, mut into: Vec<u64>) -> Result<Vec<u64>, StoreError> {
        let page = self.config.page.max(1);
        let mut after = None;
        loop {
            let ids = store.ids_after(after, page).await?;
            if into.capacity() - into.len() < ids.len() {
                into.reserve_exact(ids.len().max(into.len() / 8));
            }
            into.extend(ids.iter().map(|id| self.fingerprint(id)));
            match ids.last() {
                Some(last) if ids.len() >= page as usize => after = Some(*last),
                _ => return Ok(into),
            }
        }
    }

    fn stats(&self) -> ShieldStats {
        let m = self.members.read().unwrap_or_else(PoisonError::into_inner);
        ShieldStats {
            trusted: self.trusted(),
            ids: m.set.len(),
            bytes: m.set.heap_bytes(),
            refused: self.refused.load(Ordering::Relaxed),
            untrusted_lookups: self.untrusted_lookups.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            catch_ups: self.catch_ups.load(Ordering::Relaxed),
            feed_breaks: self.feed_breaks.load(Ordering::Relaxed),
            load_failures: self.load_failures.load(Ordering::Relaxed),
            heard: self.heard.load(Ordering::Relaxed),
            miss_queries: self.miss_queries.load(Ordering::Relaxed),
        }
    }
}

/// Aborts the shield's tasks when the store is dropped.
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A [`KeyStore`] that refuses lookups of ids that do not exist without a
/// store query: see the [module docs](self).
pub struct ShieldedStore<S> {
    inner: Arc<S>,
    state: Arc<State>,
    _tasks: Tasks,
}

impl<S> fmt::Debug for ShieldedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShieldedStore").field("stats", &self.state.stats()).finish_non_exhaustive()
    }
}

impl<S: KeyStore> ShieldedStore<S> {
    /// A shield for a store that is written only through this process (this
    /// wrapper sees every insert): loaded now and every
    /// [`ShieldConfig::resync_every`] on the current Tokio runtime.
    ///
    /// # Warning
    /// With other writers (other processes, other nodes) use
    /// [`ShieldedStore::with_bus`]: without a channel, their new keys are
    /// refused here until the next resync.
    ///
    /// # Errors
    /// [`BusError::NoRuntime`] outside a Tokio runtime.
    pub fn local(inner: S, config: ShieldConfig) -> Result<Self, BusError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let state = Arc::new(State::new(config, false));
        state.epoch.store(1, Ordering::SeqCst);
        state.connected.store(true, Ordering::SeqCst);
        let inner = Arc::new(inner);
        let resync = handle.spawn(resync(Arc::clone(&inner), Arc::clone(&state)));
        Ok(Self { inner, state, _tasks: Tasks(vec![resync.abort_handle()]) })
    }

    /// A shield kept current by `bus` (the channel other nodes and
    /// `keyctl` publish on): a subscriber task adds every id heard, and the
    /// set is reloaded after every (re)subscription and every
    /// [`ShieldConfig::resync_every`].
    ///
    /// # Errors
    /// [`BusError::NoRuntime`] outside a Tokio runtime.
    pub fn with_bus<B: InvalidationBus>(inner: S, config: ShieldConfig, bus: B) -> Result<Self, BusError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let state = Arc::new(State::new(config, false));
        let inner = Arc::new(inner);
        let resync = handle.spawn(resync(Arc::clone(&inner), Arc::clone(&state)));
        let listen = handle.spawn(listen(bus, Arc::clone(&state)));
        Ok(Self { inner, state, _tasks: Tasks(vec![resync.abort_handle(), listen.abort_handle()]) })
    }
}

impl<S> ShieldedStore<S> {
    /// No shield: every lookup goes to `inner` (for stores other programs
    /// write without a channel, such as a shared SQLite file).
    #[must_use]
    pub fn disabled(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            state: Arc::new(State::new(ShieldConfig::default(), true)),
            _tasks: Tasks(vec![]),
        }
    }

    /// The store behind the shield.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The state and counters.
    #[must_use]
    pub fn stats(&self) -> ShieldStats {
        self.state.stats()
    }

    /// Waits until the shield is trusted (loaded under a live channel).
    /// Never returns for a disabled shield.
    pub async fn wait_trusted(&self) {
        while !self.state.trusted() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Syncs the set now, after each (re)subscription, and then every
/// [`ShieldConfig::catch_up_every`] while the store's feed serves (every
/// [`ShieldConfig::resync_every`] otherwise).
async fn resync<S: KeyStore>(store: Arc<S>, state: Arc<State>) {
    loop {
        if state.sync(&*store).await.is_err() {
            state.load_failures.fetch_add(1, Ordering::Relaxed);
        }
        let every = if state.position().is_some() { state.config.catch_up_every } else { state.config.resync_every };
        tokio::select! {
            () = tokio::time::sleep(every.max(Duration::from_millis(10))) => {}
            () = state.reload.notified() => {}
        }
    }
}

/// Adds every id heard on the channel; on loss of the subscription, stops
/// trusting the set, re-subscribes with backoff and asks for a reload.
async fn listen<B: InvalidationBus>(bus: B, state: Arc<State>) {
    let initial = state.config.reconnect_initial.max(Duration::from_millis(1));
    let max = Duration::from_secs(5).max(initial);
    let mut delay = initial;
    loop {
        if let Ok(mut subscription) = bus.subscribe().await {
            state.epoch.fetch_add(1, Ordering::SeqCst);
            state.connected.store(true, Ordering::SeqCst);
            state.reload.notify_one();
            delay = initial;
            while let Ok(id) = subscription.next_id().await {
                state.add(&id);
                state.heard.fetch_add(1, Ordering::Relaxed);
            }
            state.connected.store(false, Ordering::SeqCst);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max);
    }
}

/// What the shield does with a lookup by id.
enum Gate {
    /// An id no node issued, while the set is trusted and the miss budget
    /// is spent: refused without a store query.
    Refuse,
    /// Not in the set, but within the miss budget: asked (it may have been
    /// created elsewhere a moment ago).
    Miss,
    /// In the set, or the set is not trusted: asked as usual.
    Pass,
}

impl<S: KeyStore> ShieldedStore<S> {
    fn gate(&self, id: &KeyId) -> Gate {
        if !self.state.trusted() {
            self.state.untrusted_lookups.fetch_add(1, Ordering::Relaxed);
            return Gate::Pass;
        }
        if self.state.contains(id) {
            return Gate::Pass;
        }
        if self.state.take_miss_token() {
            self.state.miss_queries.fetch_add(1, Ordering::Relaxed);
            Gate::Miss
        } else {
            self.state.refused.fetch_add(1, Ordering::Relaxed);
            Gate::Refuse
        }
    }

    /// A lookup of an id the set lacks; a hit (created elsewhere, its
    /// announcement still on its way) joins the set.
    async fn miss(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let found = self.inner.get(id).await?;
        if found.is_some() {
            self.state.add(id);
        }
        Ok(found)
    }
}

impl<S: KeyStore> KeyStore for ShieldedStore<S> {
    // Only lookups by id pass the shield (and new ids join the set, below);
    // the rest goes straight to the inner store.
    crate::forward_key_store!(self => self.inner; all except [get, get_many, with_record, lend_now, commit]);

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        match self.gate(id) {
            Gate::Refuse => Ok(None),
            Gate::Miss => self.miss(id).await,
            Gate::Pass => self.inner.get(id).await,
        }
    }

    /// The shield of [`ShieldedStore::get`] for each id (a refused id is
    /// `None` without a query; each miss takes a token of the budget), then
    /// one batch for the rest; a missed id found joins the set.
    async fn get_many(&self, ids: &[KeyId]) -> Result<Vec<Option<Arc<KeyRecord>>>, StoreError> {
        let gates: Vec<Gate> = ids.iter().map(|id| self.gate(id)).collect();
        let asked: Vec<KeyId> =
            ids.iter().zip(&gates).filter(|(_, g)| !matches!(g, Gate::Refuse)).map(|(id, _)| *id).collect();
        let mut found = self.inner.get_many(&asked).await?.into_iter();
        let mut out = Vec::with_capacity(ids.len());
        for (id, gate) in ids.iter().zip(gates) {
            let record = match gate {
                Gate::Refuse => None,
                Gate::Pass | Gate::Miss => found.next().flatten(),
            };
            if matches!(gate, Gate::Miss) && record.is_some() {
                self.state.add(id);
            }
            out.push(record);
        }
        Ok(out)
    }

    /// The same shield as [`ShieldedStore::get`] (its miss budget included),
    /// then the inner store's lending lookup, so a cache's lock-free hit
    /// path stays in use behind the shield.
    async fn with_record<R, F>(&self, id: &KeyId, visit: F) -> Result<R, StoreError>
    where
        R: Send,
        F: for<'v> FnOnce(Option<crate::RecordView<'v>>) -> R + Send,
    {
        match self.gate(id) {
            Gate::Refuse => Ok(visit(None)),
            Gate::Miss => Ok(visit(self.miss(id).await?.as_deref().map(crate::RecordView::of))),
            Gate::Pass => self.inner.with_record(id, visit).await,
        }
    }

    /// The gate's pass, synchronously: an id in the set (or any id while
    /// the set is not trusted) is lent as the inner store can lend it now.
    /// An id the set lacks is handed back, so that
    /// [`ShieldedStore::with_record`]'s gate decides it (and spends its miss
    /// budget) exactly once.
    fn lend_now<R, F>(&self, id: &KeyId, visit: F) -> Result<R, F>
    where
        F: for<'v> FnOnce(Option<crate::RecordView<'v>>) -> R,
    {
        let trusted = self.state.trusted();
        if trusted && !self.state.contains(id) {
            return Err(visit);
        }
        let lent = self.inner.lend_now(id, visit);
        if !trusted && lent.is_ok() {
            self.state.untrusted_lookups.fetch_add(1, Ordering::Relaxed);
        }
        lent
    }

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        // Before the write: the id is never in the store without being in
        // the set. A failed write leaves an extra id (a query, not a refusal).
        match &change {
            Change::Insert(r) | Change::Reissue { new: r, .. } => self.state.add(&r.id),
            _ => {}
        }
        self.inner.commit(change, log).await
    }
}
