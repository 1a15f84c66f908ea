//! The store a key-management command works on ([`Context`]), opened with
//! its pepper when there is one, and the managers over it.

use std::sync::Arc;

use api_keys::store::any::{self, AnyStore};
use api_keys::store::cached::{CacheConfig, CachedStore};
use api_keys::{KeyDirectory, KeyManager, PepperCheckError, Peppers};

use crate::catalog;
use crate::failure::{BAD_INPUT, Failure, OTHER, chain, pepper_failure, setup_failure, store_failure};
use crate::pepper::{self, PepperSettings, PepperSetupError, PepperSource};
use crate::{env, files};

/// The store, and the pepper if there is one.
pub(crate) struct Context {
    /// For PostgreSQL and Redis, writes are announced on the store's
    /// invalidation channel (nothing is cached): a `keyctl revoke` reaches
    /// the caching `keyctl serve` nodes at once.
    pub(crate) store: Arc<CachedStore<AnyStore>>,
    peppers: Option<Peppers>,
}

/// Loads (or, for a new SQLite database, creates) the pepper first, then
/// opens the store: the database (created owner-only) and its pepper file
/// are made together. With a pepper, checks it against the fingerprint the
/// store recorded for its version.
pub(crate) async fn open_store(url: &str, needs_pepper: bool) -> Result<(AnyStore, Option<Peppers>), Failure> {
    let database = sqlite_database(url)?;
    if let Some(warning) = database.as_deref().and_then(files::directory_warning) {
        eprintln!("keyctl: warning: {warning}");
    }
    let peppers = match pepper::load_peppers(url, &PepperSettings::from_env()) {
        Ok(loaded) => {
            if let PepperSource::Created(path) = &loaded.source {
                let path = path.display();
                eprintln!(
                    "keyctl: warning: {} is not set; created a new pepper in {path} (mode 0600). Every key in \
                     this database depends on it: back it up with the database, and give programs that verify \
                     these keys the same pepper ({}=\"$(cat {path})\").",
                    env::PEPPER_VAR,
                    env::PEPPER_VAR,
                );
            }
            Some(loaded.peppers)
        }
        Err(PepperSetupError::PepperRequired { .. }) if !needs_pepper => None,
        Err(e) => return Err(pepper_failure(&e)),
    };
    if let Some(db) = &database {
        files::create_private(db)
            .map_err(|e| Failure::new(OTHER, format!("cannot create the key database {}: {e}", db.display())))?;
    }
    let store = any::open_store(url).await.map_err(|e| setup_failure(&e))?;
    if let Some(peppers) = &peppers {
        check_peppers(&store, peppers).await?;
    }
    Ok((store, peppers))
}

/// The database file of a SQLite URL (`None` for other stores and for an
/// in-memory database).
pub(crate) fn sqlite_database(url: &str) -> Result<Option<std::path::PathBuf>, Failure> {
    if any::Backend::of(url).map_err(|e| setup_failure(&e))? != any::Backend::Sqlite {
        return Ok(None);
    }
    any::sqlite_path(url).map_err(|e| setup_failure(&e))
}

/// Refuses a pepper that is not the one the store was used with: exit 2, before anything is created or verified under it.
async fn check_peppers(store: &AnyStore, peppers: &Peppers) -> Result<(), Failure> {
    let manager = KeyManager::builder(Arc::new(store.clone()), peppers.clone(), catalog::yandex_cloud()).build();
    match manager.check_peppers().await {
        Ok(()) => Ok(()),
        Err(e @ PepperCheckError::Mismatch { .. }) => Err(Failure::new(
            BAD_INPUT,
            format!(
                "{e}; set {} (and {}) to the pepper this store's keys were made with",
                env::PEPPER_VAR,
                env::PEPPER_VERSION_VAR
            ),
        )),
        Err(PepperCheckError::Store(e)) => Err(store_failure(&e)),
        Err(e) => Err(Failure::new(OTHER, chain(&e))),
    }
}

impl Context {
    /// Opens the store at `url` (with its pepper if `needs_pepper` or there is one).
    pub(crate) async fn open(url: &str, needs_pepper: bool) -> Result<Self, Failure> {
        let (store, peppers) = open_store(url, needs_pepper).await?;
        let store = match store.invalidation_bus(url).await.map_err(|e| setup_failure(&e))? {
            Some(bus) => CachedStore::publishing(store, bus),
            None => CachedStore::new(store, CacheConfig::disabled()),
        };
        Ok(Self { store: Arc::new(store), peppers })
    }

    /// The manager over the store (for the commands that make or check
    /// secrets: they need the pepper). A key's service account must exist
    /// and the access policies on its path are checked.
    pub(crate) fn manager(&self) -> Result<KeyManager<CachedStore<AnyStore>>, Failure> {
        let peppers = self.peppers.clone().ok_or_else(|| Failure::new(BAD_INPUT, "no pepper configured"))?;
        let builder = KeyManager::builder(Arc::clone(&self.store), peppers, catalog::yandex_cloud()).actor(actor());
        Ok(builder.require_service_accounts().build())
    }

    /// The pepper-less manager over the store: every read and every other
    /// write (get, list, update, revoke, delete, the log, resources), under
    /// the library's rules, as `keyctl` (re-dating a key checks its
    /// account's access policies, as [`Context::manager`]).
    pub(crate) fn directory(&self) -> KeyDirectory<CachedStore<AnyStore>> {
        KeyDirectory::new(Arc::clone(&self.store), catalog::yandex_cloud())
            .with_actor(actor())
            .with_service_accounts_required()
    }

    /// Warns when a write could not be announced to the caching nodes.
    pub(crate) fn warn_unpublished(&self) {
        if self.store.bus_status().publish_failures > 0 {
            eprintln!(
                "keyctl: warning: the change is stored, but it could not be announced on the invalidation channel; \
                 caching `keyctl serve` nodes pick it up within their {} (default 30s)",
                env::CACHE_MAX_STALENESS_VAR
            );
        }
    }
}

/// `--database-url`, else `API_KEYS_DATABASE_URL` (empty means unset), else
/// the default SQLite file.
pub(crate) fn database_url(flag: Option<String>) -> String {
    flag.or_else(|| env::var(env::DATABASE_URL_VAR)).unwrap_or_else(|| env::DEFAULT_DATABASE_URL.to_owned())
}

/// The actor `keyctl`'s changes are logged as.
pub(crate) fn actor() -> api_keys::Actor {
    api_keys::Actor::new("keyctl").unwrap_or_else(|_| api_keys::Actor::system())
}
