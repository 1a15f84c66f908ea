//! One node of the key service: the store, the cache in front of it and the
//! invalidation channel that keeps several nodes in step.
//!
//! | store | verifier reads through | other nodes' writes arrive by |
//! |---|---|---|
//! | SQLite | nothing: the file itself | every read goes to the file |
//! | PostgreSQL | `CachedStore` (unless `API_KEYS_CACHE=off`) | `LISTEN`/`NOTIFY` on the schema's channel |
//! | Redis | `CachedStore` (unless `API_KEYS_CACHE=off`) | pub/sub on `<prefix>:invalidations` |
//!
//! `keyctl`'s own writes (`create`, `import`, `revoke`, `delete`,
//! `reissue`) publish on the same channel, so a `keyctl revoke` reaches
//! every node within the channel's delivery time; if a message is lost (the
//! channel was down), no node serves a cached record older than
//! `API_KEYS_CACHE_MAX_STALENESS`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use api_keys::access_policy::LifetimeLimits;
use api_keys::store::any::{AnyStore, Backend};
use api_keys::store::cached::{CacheConfig, CachedStore};
use api_keys::store::shielded::{ShieldConfig, ShieldStats, ShieldedStore};
use api_keys::{KeyId, KeyStore, Peppers, ScopeCatalog, StoreError, Verifier};

use super::metered::Metered;
use crate::env::{self, CACHE_MAX_ENTRIES_VAR, CACHE_MAX_STALENESS_VAR, CACHE_TTL_VAR, CACHE_VAR};
use crate::failure::{BAD_INPUT, Failure, setup_failure};

/// The store stack the verifier reads: lookups counted, then the flood
/// shield, then the cache, then store queries counted, then the store.
pub(crate) type NodeStore = Metered<ShieldedStore<CachedStore<Metered<AnyStore>>>>;

/// Cache settings from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheSettings {
    /// `API_KEYS_CACHE` is not `off`.
    pub(crate) enabled: bool,
    /// `API_KEYS_CACHE_TTL`.
    pub(crate) ttl: Duration,
    /// `API_KEYS_CACHE_MAX_STALENESS`.
    pub(crate) max_staleness: Duration,
    /// `API_KEYS_CACHE_MAX_ENTRIES`.
    pub(crate) max_entries: u64,
    /// `API_KEYS_ACCEPT_IMPORTED` is `on`.
    pub(crate) accept_imported: bool,
}

impl CacheSettings {
    /// Reads `API_KEYS_CACHE`, `API_KEYS_CACHE_TTL`,
    /// `API_KEYS_CACHE_MAX_STALENESS` and `API_KEYS_CACHE_MAX_ENTRIES`
    /// (empty means unset).
    ///
    /// # Errors
    /// [`BAD_INPUT`] naming the variable for a value it cannot read.
    pub(crate) fn from_env() -> Result<Self, Failure> {
        let defaults = CacheConfig::default();
        let switch = |name: &str, default: bool| match env::var(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("on" | "true" | "1") => Ok(true),
            Some("off" | "false" | "0") => Ok(false),
            Some(_) => Err(Failure::new(BAD_INPUT, format!("{name} must be on or off"))),
        };
        let enabled = switch(CACHE_VAR, true)?;
        let accept_imported = switch(env::ACCEPT_IMPORTED_VAR, false)?;
        let duration = |name: &str, default: Duration| match env::var(name) {
            None => Ok(default),
            Some(text) => {
                crate::input::parse_duration(text.trim()).map_err(|e| Failure::new(BAD_INPUT, format!("{name}: {e}")))
            }
        };
        let ttl = duration(CACHE_TTL_VAR, defaults.fresh_ttl)?;
        let max_staleness = duration(CACHE_MAX_STALENESS_VAR, defaults.max_staleness)?;
        let max_entries = match env::var(CACHE_MAX_ENTRIES_VAR) {
            None => defaults.max_entries,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(n @ 1..) => n,
                _ => {
                    return Err(Failure::new(
                        BAD_INPUT,
                        format!("{CACHE_MAX_ENTRIES_VAR} must be a whole number of entries, at least 1"),
                    ));
                }
            },
        };
        Ok(Self { enabled, ttl, max_staleness, max_entries, accept_imported })
    }

    fn config(self) -> CacheConfig {
        if !self.enabled {
            return CacheConfig::disabled();
        }
        CacheConfig::default().fresh_ttl(self.ttl).max_staleness(self.max_staleness).max_entries(self.max_entries)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) lookups: u64,
    pub(crate) store_queries: u64,
    pub(crate) invalidations_received: u64,
    pub(crate) channel_connected: bool,
    /// Entries in the record cache now.
    pub(crate) cache_entries: u64,
}

/// How long change-feed entries are kept: a node whose shield falls further
/// behind than this (a long partition) reloads instead of catching up.
const FEED_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Feed entries removed per pruning transaction.
const PRUNE_BATCH: u32 = 10_000;

/// A node: the store stack, the pepper and the catalog.
pub(crate) struct Node {
    store: Arc<NodeStore>,
    peppers: Peppers,
    catalog: ScopeCatalog,
    channel: Option<String>,
    lookups: Arc<AtomicU64>,
    store_queries: Arc<AtomicU64>,
    /// `API_KEYS_ACCEPT_IMPORTED`.
    accept_imported: bool,
    /// The maximum-lifetime policies the verifier applies at use
    /// (refreshed by [`Node::refresh_lifetimes`]).
    lifetimes: Arc<LifetimeLimits>,
}

impl Node {
    /// Builds the stack over an open store. Must run inside the Tokio
    /// runtime (the invalidation subscriber is a task).
    ///
    /// # Errors
    /// [`crate::failure::UNAVAILABLE`] when the channel cannot be set up.
    pub(crate) async fn new(
        store: AnyStore,
        url: &str,
        peppers: Peppers,
        cache: CacheSettings,
    ) -> Result<Self, Failure> {
        let bus = store.invalidation_bus(url).await.map_err(|e| setup_failure(&e))?;
        let backend = store.backend();
        let channel = bus.as_ref().map(|b| b.channel_name().to_owned());
        let store_queries = Arc::new(AtomicU64::new(0));
        let lookups = Arc::new(AtomicU64::new(0));
        let counted = Metered::new(store, Arc::clone(&store_queries));
        let bus_error =
            |e: api_keys::store::invalidation::BusError| Failure::new(crate::failure::OTHER, crate::failure::chain(&e));
        let shielded = match bus {
            Some(bus) => {
                let cached = CachedStore::with_bus(counted, cache.config(), bus.clone()).map_err(bus_error)?;
                ShieldedStore::with_bus(cached, ShieldConfig::default(), bus).map_err(bus_error)?
            }
            // Memory: only this process writes it.
            None if backend == Backend::Memory => {
                ShieldedStore::local(CachedStore::new(counted, CacheConfig::disabled()), ShieldConfig::default())
                    .map_err(bus_error)?
            }
            // SQLite: other processes write the file with no channel, so
            // nothing is cached and no membership set could stay current.
            None => ShieldedStore::disabled(CachedStore::new(counted, CacheConfig::disabled())),
        };
        let store = Arc::new(Metered::new(shielded, Arc::clone(&lookups)));
        let lifetimes = LifetimeLimits::new();
        Ok(Self {
            store,
            peppers,
            catalog: crate::catalog::yandex_cloud(),
            channel,
            lookups,
            store_queries,
            accept_imported: cache.accept_imported,
            lifetimes,
        })
    }

    /// Reads the maximum-lifetime policies again if a resource changed
    /// (one store read otherwise); says whether it read them.
    ///
    /// # Errors
    /// The store's error; the limits held stay in force.
    pub(crate) async fn refresh_lifetimes(&self) -> Result<bool, StoreError> {
        self.lifetimes.refresh(&*self.store).await
    }

    /// How many service accounts have a maximum key lifetime now.
    pub(crate) fn lifetime_limited_accounts(&self) -> usize {
        self.lifetimes.len()
    }

    /// A verifier over the stack; keys' rate limits are counted by
    /// `limiter` (shared through Redis), else in this process (per node).
    pub(crate) fn verifier(&self, limiter: Option<api_keys::controls::RedisRateLimiter>) -> Verifier<NodeStore> {
        let builder = Verifier::builder(Arc::clone(&self.store), self.peppers.clone())
            .accept_imported(self.accept_imported)
            .lifetime_limits(Arc::clone(&self.lifetimes));
        match limiter {
            Some(l) => builder.rate_limiter(l).build(),
            None => builder.build(),
        }
    }

    /// A key manager over the stack (the management API's, and the
    /// secret-scanning endpoint revokes through it), so changes reach the
    /// cache and the channel. Like keyctl's own, it requires a key's
    /// service account to exist as a resource and checks the access
    /// policies on its path before a key is created, reissued or re-dated.
    pub(crate) fn manager(&self) -> api_keys::KeyManager<NodeStore> {
        api_keys::KeyManager::builder(Arc::clone(&self.store), self.peppers.clone(), self.catalog.clone())
            .require_service_accounts()
            .build()
    }

    /// The scope catalog.
    pub(crate) fn catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// A 32-byte secret for `purpose`, derived from the current pepper
    /// (HMAC): the same on every node that shares the pepper.
    pub(crate) fn derived_secret(&self, purpose: &[u8]) -> [u8; 32] {
        *self.peppers.current().digest(purpose).as_bytes()
    }

    fn cached(&self) -> &CachedStore<Metered<AnyStore>> {
        self.store.inner().inner()
    }

    /// The flood shield's state.
    pub(crate) fn shield(&self) -> ShieldStats {
        self.store.inner().stats()
    }

    fn backend_store(&self) -> &AnyStore {
        self.cached().inner().inner()
    }

    /// The Redis store, when the store is Redis (its durability check).
    pub(crate) fn redis_store(&self) -> Option<&api_keys::RedisStore> {
        match self.backend_store() {
            AnyStore::Redis(r) => Some(r),
            _ => None,
        }
    }

    /// One lookup in the store itself (not the cache): readiness.
    ///
    /// # Errors
    /// The store's error.
    pub(crate) async fn ping(&self, probe: &KeyId) -> Result<(), StoreError> {
        self.backend_store().get(probe).await.map(|_| ())
    }

    /// Removes change-feed entries older than [`FEED_RETENTION`], a batch
    /// at a time; returns how many. Any node may run it: each batch is one
    /// transaction (or script) of its own.
    ///
    /// # Errors
    /// The store's error.
    pub(crate) async fn prune_feed(&self) -> Result<u64, StoreError> {
        let before = api_keys::Timestamp::now().saturating_sub(FEED_RETENTION);
        let mut total = 0;
        loop {
            let n = self.backend_store().prune_feed(before, PRUNE_BATCH).await?;
            total += n;
            if n < u64::from(PRUNE_BATCH) {
                return Ok(total);
            }
        }
    }

    /// The counters behind `/metrics`.
    pub(crate) fn counters(&self) -> Counters {
        let bus = self.cached().bus_status();
        Counters {
            lookups: self.lookups.load(Ordering::Relaxed),
            store_queries: self.store_queries.load(Ordering::Relaxed),
            invalidations_received: bus.received,
            channel_connected: bus.connected,
            cache_entries: self.cached().entry_count(),
        }
    }

    /// For a `memory:` store (empty, and written by no other program),
    /// creates a key with the catalog's default scopes plus
    /// `yc.monitoring.manage` and prints `demo-key: <key>` on stdout, the
    /// only line `keyctl serve` prints there.
    ///
    /// # Errors
    /// [`crate::failure::OTHER`] if the key cannot be made or printed.
    pub(crate) async fn print_demo_key(&self) -> Result<(), Failure> {
        use std::io::Write as _;
        if self.backend_store().backend() != Backend::Memory {
            return Ok(());
        }
        let manager =
            api_keys::KeyManager::builder(Arc::clone(&self.store), self.peppers.clone(), self.catalog.clone()).build();
        let mut scopes: Vec<String> = self.catalog.defaults().iter().map(|s| s.as_str().to_owned()).collect();
        scopes.push("yc.monitoring.manage".to_owned());
        let request =
            api_keys::CreateRequest::new("demo-robot").description("keyctl serve memory: demo key").scopes(scopes);
        let created = manager
            .create(request)
            .await
            .map_err(|e| Failure::new(crate::failure::OTHER, crate::failure::chain(&e)))?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "demo-key: {}", created.secret.expose_secret())
            .and_then(|()| out.flush())
            .map_err(|e| Failure::new(crate::failure::OTHER, format!("cannot print the demo key: {e}")))
    }

    /// One line for the start-up message.
    pub(crate) fn describe(&self) -> String {
        let backend = self.backend_store().backend();
        let config = self.cached().config();
        match &self.channel {
            None if backend == Backend::Memory => format!("store: {backend}, flood shield on"),
            None => format!("store: {backend}, no cache, no flood shield"),
            Some(channel) if config.is_disabled() => {
                format!(
                    "store: {backend}, cache off ({CACHE_VAR}=off), flood shield on, invalidation channel {channel}"
                )
            }
            Some(channel) => format!(
                "store: {backend}, cache ttl {:?}, max staleness {:?}, flood shield on, invalidation channel {channel}",
                config.fresh_ttl, config.max_staleness
            ),
        }
    }
}
