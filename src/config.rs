//! Deployment settings shared by the operator CLI (`examples/keyctl.rs`) and
//! servers (`examples/axum_server.rs`): which store a database URL names,
//! and which pepper digests the keys in it.
//!
//! Both programs read the same variables, so a key made with one verifies in
//! the other:
//!
//! | variable | meaning |
//! |---|---|
//! | `API_KEYS_DATABASE_URL` | `sqlite:…`, `postgres://…` / `postgresql://…` or `redis://…` ([`open_store`]); the CLI defaults to [`DEFAULT_DATABASE_URL`] |
//! | `API_KEYS_PEPPER` | the pepper, standard base64 of at least 32 bytes |
//! | `API_KEYS_PEPPER_VERSION` | its version number, stored beside every digest; defaults to 1 |
//!
//! Two query parameters of the URL are read here and removed before the URL
//! reaches the driver: `schema=NAME` keeps the PostgreSQL tables in that
//! schema (created if missing) and `prefix=NAME` puts every Redis key under
//! `NAME:` (default `api-keys`).
//!
//! Without `API_KEYS_PEPPER`, a SQLite database gets a pepper file beside it
//! (`api-keys.db` → `api-keys.db.pepper`, base64, mode 0600), created on
//! first use ([`PepperSource::Created`]: tell the operator) and read after.
//! A PostgreSQL or Redis URL has no "beside the database", so it needs
//! `API_KEYS_PEPPER`. Losing the pepper makes every stored key unverifiable;
//! [`load_peppers`] therefore refuses to make a new pepper file for a SQLite
//! database that already exists without one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use api_keys::config::{self, PepperSettings, PepperSource};
//! use api_keys::{KeyManager, ScopeCatalog};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let url = std::env::var(config::DATABASE_URL_VAR).unwrap_or_else(|_| config::DEFAULT_DATABASE_URL.to_owned());
//! let pepper = config::load_peppers(&url, &PepperSettings::from_env())?;
//! if let PepperSource::Created(path) = &pepper.source {
//!     eprintln!("warning: created a new pepper in {}", path.display());
//! }
//! let store = config::open_store(&url).await?;
//! let manager = KeyManager::builder(Arc::new(store), pepper.peppers, ScopeCatalog::yandex_cloud()).build();
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::clock::Timestamp;
use crate::digest::{Digest, Pepper, PepperError, Peppers};
use crate::operation::{Change, LogEntry, Operation, OperationCursor};
use crate::random::RandomError;
use crate::record::{KeyRecord, ServiceAccountId};
use crate::store::{KeyStore, OldKeyFate, Page, PageRequest, StoreError};
use crate::token::KeyId;

/// The variable naming the store.
pub const DATABASE_URL_VAR: &str = "API_KEYS_DATABASE_URL";
/// The variable holding the pepper (base64, at least 32 bytes).
pub const PEPPER_VAR: &str = "API_KEYS_PEPPER";
/// The variable holding the pepper's version (defaults to 1).
pub const PEPPER_VERSION_VAR: &str = "API_KEYS_PEPPER_VERSION";
/// The store an operator tool uses when no URL is given: a SQLite file
/// `api-keys.db` in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://api-keys.db?mode=rwc";
/// Appended to a SQLite database's path to name its pepper file.
pub const PEPPER_FILE_SUFFIX: &str = ".pepper";

/// Why the store or the pepper could not be set up. Never contains a URL
/// (it may hold a password) or a pepper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The URL's scheme names no supported store.
    #[error("database URL scheme `{scheme}` is not sqlite:, postgres:, postgresql: or redis:")]
    UnsupportedScheme {
        /// The scheme (at most 16 characters, ASCII letters, digits, `+-.`).
        scheme: String,
    },
    /// The backend exists but this build does not include its feature.
    #[error("this build has no {backend} store; enable the `{feature}` cargo feature")]
    NotCompiled {
        /// The backend.
        backend: Backend,
        /// The feature to enable.
        feature: &'static str,
    },
    /// A query parameter of the URL is unusable (the text says which).
    #[error("database URL: {0}")]
    InvalidUrl(&'static str),
    /// The store could not be opened.
    #[error("cannot open the {backend} store")]
    Store {
        /// The backend.
        backend: Backend,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// `API_KEYS_PEPPER` is not a usable pepper.
    #[error("{PEPPER_VAR} is unusable")]
    Pepper(#[source] PepperError),
    /// `API_KEYS_PEPPER_VERSION` is not a number in `0..=4294967295`.
    #[error("{PEPPER_VERSION_VAR} must be a whole number from 0 to 4294967295")]
    PepperVersion,
    /// A PostgreSQL or Redis URL without `API_KEYS_PEPPER`.
    #[error(
        "{PEPPER_VAR} is not set; a {backend} store has no place for a pepper file, so set {PEPPER_VAR} \
         (base64 of at least 32 random bytes, e.g. `openssl rand -base64 32`) the same for every program using it"
    )]
    PepperRequired {
        /// The backend.
        backend: Backend,
    },
    /// An in-memory SQLite database without `API_KEYS_PEPPER`.
    #[error("{PEPPER_VAR} is not set and an in-memory SQLite database has no place for a pepper file")]
    NoPepperLocation,
    /// The SQLite database exists but its pepper file does not: a new pepper
    /// would make every key in it unverifiable.
    #[error(
        "{database} exists but its pepper file {pepper_file} does not; restore the pepper file or set {PEPPER_VAR} \
         to the pepper its keys were made with"
    )]
    PepperLost {
        /// The database file.
        database: PathBuf,
        /// The missing pepper file.
        pepper_file: PathBuf,
    },
    /// The pepper file could not be created or read.
    #[error("pepper file {path}")]
    PepperFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The pepper file may be read by other users.
    #[error("pepper file {path} has mode {mode:o}, readable by others; run `chmod 600` on it")]
    PepperFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The pepper file does not hold a usable pepper.
    #[error("pepper file {path} does not hold a pepper")]
    PepperFileContents {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: PepperError,
    },
    /// The OS random generator failed while making a pepper.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl SetupError {
    /// Whether the store could not be reached (as opposed to a configuration
    /// mistake).
    #[must_use]
    pub fn is_store_unavailable(&self) -> bool {
        matches!(self, Self::Store { source, .. } if source.is_unavailable())
    }
}

/// The kinds of store a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// `sqlite:…`
    Sqlite,
    /// `postgres://…` or `postgresql://…`
    Postgres,
    /// `redis://…` (or `rediss://…`)
    Redis,
}

impl Backend {
    /// The backend `url` names, by its scheme.
    ///
    /// # Errors
    /// [`SetupError::UnsupportedScheme`].
    pub fn of(url: &str) -> Result<Self, SetupError> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "redis" | "rediss" => Ok(Self::Redis),
            _ => Err(SetupError::UnsupportedScheme { scheme: printable_scheme(scheme) }),
        }
    }

    /// `"SQLite"`, `"PostgreSQL"` or `"Redis"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
            Self::Redis => "Redis",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheme as it may appear in an error: short and harmless. A URL without
/// `:` could be anything (a bare password, say), so it is never echoed.
fn printable_scheme(scheme: &str) -> String {
    let ok = !scheme.is_empty()
        && scheme.len() <= 16
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if ok { scheme.to_owned() } else { "(none)".to_owned() }
}

#[cfg(any(feature = "postgres", feature = "redis"))]
/// Removes the query parameter `name` from `url`, returning the URL without
/// it and its value. A fragment is not expected in database URLs and is kept
/// as part of the query text.
fn take_param(url: &str, name: &str) -> Result<(String, Option<String>), SetupError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut value = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if value.is_some() {
                return Err(SetupError::InvalidUrl("a query parameter appears more than once"));
            }
            value = Some(v.to_owned());
        } else if !pair.is_empty() {
            kept.push(pair);
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, value))
}

/// One of the persistent stores, chosen at run time from a URL by
/// [`open_store`]. Implements [`KeyStore`] by delegating to the store it
/// holds.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// A SQLite database.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(crate::SqliteStore),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(crate::PostgresStore),
    /// A Redis server.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(crate::RedisStore),
}

impl AnyStore {
    /// Which backend this is.
    #[must_use]
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "redis")]
            Self::Redis(_) => Backend::Redis,
        }
    }
}

/// Calls the same method on whichever store `$self` holds.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($s) => $call.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $call.await,
            #[cfg(feature = "redis")]
            AnyStore::Redis($s) => $call.await,
        }
    };
}

impl KeyStore for AnyStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        delegate!(self, s => s.insert(record))
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        delegate!(self, s => s.get(id))
    }
    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        delegate!(self, s => s.get_by_digest(digest))
    }
    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        delegate!(self, s => s.list(service_account, page))
    }
    async fn revoke(&self, id: &KeyId) -> Result<(), StoreError> {
        delegate!(self, s => s.revoke(id))
    }
    async fn delete(&self, id: &KeyId) -> Result<(), StoreError> {
        delegate!(self, s => s.delete(id))
    }
    async fn reissue(&self, old: &KeyId, new: KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
        delegate!(self, s => s.reissue(old, new, fate))
    }
    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        delegate!(self, s => s.touch_last_used(updates))
    }
    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        delegate!(self, s => s.commit(change, log))
    }
    async fn operations(
        &self,
        key: &KeyId,
        page: PageRequest<OperationCursor>,
    ) -> Result<Page<Operation, OperationCursor>, StoreError> {
        delegate!(self, s => s.operations(key, page))
    }
}

/// Opens (and migrates) the store `url` names, with the store's default
/// timeouts:
///
/// - `sqlite:path` / `sqlite://path[?mode=rwc]` — [`crate::SqliteStore`]; the
///   file is created if missing;
/// - `postgres://…` / `postgresql://…[?schema=NAME]` — [`crate::PostgresStore`];
/// - `redis://…[?prefix=NAME]` — [`crate::RedisStore`].
///
/// # Errors
/// [`SetupError::UnsupportedScheme`], [`SetupError::NotCompiled`],
/// [`SetupError::InvalidUrl`] for a repeated `schema`/`prefix`, or
/// [`SetupError::Store`] when the store cannot be opened.
pub async fn open_store(url: &str) -> Result<AnyStore, SetupError> {
    let backend = Backend::of(url)?;
    let store_error = |source| SetupError::Store { backend, source };
    match backend {
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => crate::SqliteStore::connect(url).await.map(AnyStore::Sqlite).map_err(store_error),
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let (url, schema) = take_param(url, "schema")?;
            let mut builder = crate::PostgresStore::builder(url);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.connect().await.map(AnyStore::Postgres).map_err(store_error)
        }
        #[cfg(feature = "redis")]
        Backend::Redis => {
            let (url, prefix) = take_param(url, "prefix")?;
            let mut builder = crate::RedisStore::builder(url);
            if let Some(prefix) = prefix {
                builder = builder.prefix(prefix);
            }
            builder.connect().await.map(AnyStore::Redis).map_err(store_error)
        }
        #[allow(unreachable_patterns, reason = "reached only for backends left out of this build")]
        other => Err(not_compiled(other)),
    }
}

/// The error for a backend whose feature is off.
#[cfg_attr(all(feature = "sqlite", feature = "postgres", feature = "redis"), allow(dead_code))]
fn not_compiled(backend: Backend) -> SetupError {
    let feature = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Redis => "redis",
    };
    SetupError::NotCompiled { backend, feature }
}

/// Where the pepper comes from: the values of `API_KEYS_PEPPER` and
/// `API_KEYS_PEPPER_VERSION`. `Debug` hides the pepper.
#[derive(Default)]
pub struct PepperSettings {
    pepper: Option<Zeroizing<String>>,
    version: Option<String>,
}

impl fmt::Debug for PepperSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PepperSettings")
            .field("pepper", &self.pepper.as_ref().map(|_| "[REDACTED]"))
            .field("version", &self.version)
            .finish()
    }
}

impl PepperSettings {
    /// Reads `API_KEYS_PEPPER` and `API_KEYS_PEPPER_VERSION`; an unset or
    /// empty variable counts as absent. A value that is not UTF-8 is kept as
    /// text that fails validation later.
    #[must_use]
    pub fn from_env() -> Self {
        let var = |name| match std::env::var(name) {
            Ok(v) if v.trim().is_empty() => None,
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => Some("\u{fffd}".to_owned()),
        };
        Self { pepper: var(PEPPER_VAR).map(Zeroizing::new), version: var(PEPPER_VERSION_VAR) }
    }

    /// Explicit values (for tests and embedding).
    #[must_use]
    pub fn new(pepper: Option<String>, version: Option<String>) -> Self {
        Self { pepper: pepper.map(Zeroizing::new), version }
    }

    fn version(&self) -> Result<u32, SetupError> {
        match &self.version {
            None => Ok(1),
            Some(v) => v.trim().parse().map_err(|_| SetupError::PepperVersion),
        }
    }
}

/// Where [`load_peppers`] found the pepper.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PepperSource {
    /// `API_KEYS_PEPPER`.
    Environment,
    /// An existing pepper file.
    File(PathBuf),
    /// A pepper file created just now: tell the operator to keep it safe.
    Created(PathBuf),
}

/// The pepper set for a store, and where it came from.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadedPeppers {
    /// The peppers (one, with the configured version).
    pub peppers: Peppers,
    /// Where the pepper came from.
    pub source: PepperSource,
}

/// The pepper for the store at `database_url`: `API_KEYS_PEPPER` if set,
/// otherwise (SQLite only) the pepper file beside the database, created
/// with mode 0600 if neither exists yet. Call it before [`open_store`], which
/// creates the SQLite file.
///
/// # Errors
/// [`SetupError::Pepper`] / [`SetupError::PepperVersion`] for bad
/// variables; [`SetupError::PepperRequired`] for PostgreSQL and Redis without
/// `API_KEYS_PEPPER`; [`SetupError::NoPepperLocation`] for an in-memory
/// SQLite database; [`SetupError::PepperLost`] when the database exists
/// without its pepper file; the `PepperFile*` errors for file trouble.
pub fn load_peppers(database_url: &str, settings: &PepperSettings) -> Result<LoadedPeppers, SetupError> {
    let version = settings.version()?;
    if let Some(text) = &settings.pepper {
        let pepper = Pepper::from_base64(version, text).map_err(SetupError::Pepper)?;
        return Ok(LoadedPeppers { peppers: Peppers::single(pepper), source: PepperSource::Environment });
    }
    let backend = Backend::of(database_url)?;
    if backend != Backend::Sqlite {
        return Err(SetupError::PepperRequired { backend });
    }
    let database = sqlite_file(database_url)?.ok_or(SetupError::NoPepperLocation)?;
    let mut pepper_file = database.clone().into_os_string();
    pepper_file.push(PEPPER_FILE_SUFFIX);
    let pepper_file = PathBuf::from(pepper_file);
    let (pepper, source) = match read_pepper_file(&pepper_file, version)? {
        Some(pepper) => (pepper, PepperSource::File(pepper_file)),
        None => {
            if std::fs::metadata(&database).is_ok_and(|m| m.len() > 0) {
                return Err(SetupError::PepperLost { database, pepper_file });
            }
            create_pepper_file(&pepper_file, version)?
        }
    };
    Ok(LoadedPeppers { peppers: Peppers::single(pepper), source })
}

/// The database file a SQLite URL names; `None` for in-memory databases.
fn sqlite_file(url: &str) -> Result<Option<PathBuf>, SetupError> {
    let rest = url.get("sqlite:".len()..).unwrap_or("");
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    let memory = database == ":memory:" || params.split('&').any(|p| p == "mode=memory") || database.is_empty();
    if memory {
        return Ok(None);
    }
    #[cfg(feature = "sqlite")]
    {
        use std::str::FromStr;
        // The driver's own reading of the path (percent-decoding included).
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|_| SetupError::InvalidUrl("not a valid SQLite URL"))?;
        Ok(Some(options.get_filename().to_path_buf()))
    }
    #[cfg(not(feature = "sqlite"))]
    Err(not_compiled(Backend::Sqlite))
}

/// Reads an existing pepper file; `Ok(None)` if there is none.
fn read_pepper_file(path: &Path, version: u32) -> Result<Option<Pepper>, SetupError> {
    let file_error = |source| SetupError::PepperFile { path: path.to_owned(), source };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(file_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SetupError::PepperFileMode { path: path.to_owned(), mode });
        }
    }
    let mut text = Zeroizing::new(String::new());
    // A pepper file is a few dozen bytes; refuse to read a huge one.
    Read::by_ref(&mut file).take(4096).read_to_string(&mut text).map_err(file_error)?;
    Pepper::from_base64(version, &text)
        .map(Some)
        .map_err(|source| SetupError::PepperFileContents { path: path.to_owned(), source })
}

/// Makes a new pepper and publishes it at `path` without ever exposing a
/// half-written file: written to a private temporary file first, then
/// hard-linked into place, which fails if another process got there first
/// (whose pepper is then used).
fn create_pepper_file(path: &Path, version: u32) -> Result<(Pepper, PepperSource), SetupError> {
    let file_error = |source| SetupError::PepperFile { path: path.to_owned(), source };
    let pepper = Pepper::generate(version)?;
    let mut tmp = path.to_owned().into_os_string();
    tmp.push(format!(".tmp-{}-{}", std::process::id(), KeyId::generate()?));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        let mut text = pepper.to_base64();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok((pepper, PepperSource::Created(path.to_owned()))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_pepper_file(path, version)? {
            Some(theirs) => Ok((theirs, PepperSource::File(path.to_owned()))),
            None => Err(file_error(e)),
        },
        Err(e) => Err(file_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of("sqlite://a.db?mode=rwc").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("PostgreSQL://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("redis://127.0.0.1").unwrap(), Backend::Redis);
        let e = Backend::of("mysql://root:hunter2@h/db").unwrap_err();
        assert_eq!(e.to_string(), "database URL scheme `mysql` is not sqlite:, postgres:, postgresql: or redis:");
        // No scheme: nothing of the value is echoed.
        let e = Backend::of("hunter2hunter2").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[test]
    fn query_parameters_are_taken_out() {
        let (u, v) = take_param("postgres://h/db?schema=s1&sslmode=disable", "schema").unwrap();
        assert_eq!((u.as_str(), v.as_deref()), ("postgres://h/db?sslmode=disable", Some("s1")));
        let (u, v) = take_param("redis://h?prefix=p", "prefix").unwrap();
        assert_eq!((u.as_str(), v.as_deref()), ("redis://h", Some("p")));
        let (u, v) = take_param("redis://h", "prefix").unwrap();
        assert_eq!((u.as_str(), v), ("redis://h", None));
        assert!(matches!(take_param("redis://h?prefix=a&prefix=b", "prefix"), Err(SetupError::InvalidUrl(_))));
    }

    #[test]
    fn pepper_from_settings_and_version() {
        let s = PepperSettings::new(Some(PEPPER_B64.to_owned()), Some("7".to_owned()));
        let loaded = load_peppers("postgres://h/db", &s).unwrap();
        assert_eq!(loaded.source, PepperSource::Environment);
        assert_eq!(loaded.peppers.current().version(), 7);
        assert!(!format!("{s:?}").contains(PEPPER_B64));
        let bad = PepperSettings::new(Some(PEPPER_B64.to_owned()), Some("x".to_owned()));
        assert!(matches!(load_peppers("sqlite:a.db", &bad), Err(SetupError::PepperVersion)));
        let short = PepperSettings::new(Some("c2hvcnQ=".to_owned()), None);
        assert!(matches!(load_peppers("sqlite:a.db", &short), Err(SetupError::Pepper(PepperError::TooShort(5)))));
    }

    #[test]
    fn network_stores_need_the_variable_and_memory_has_no_file() {
        let none = PepperSettings::default();
        for (url, backend) in [("postgres://h/db", Backend::Postgres), ("redis://h", Backend::Redis)] {
            match load_peppers(url, &none) {
                Err(SetupError::PepperRequired { backend: b }) => assert_eq!(b, backend),
                other => panic!("{url}: {other:?}"),
            }
        }
        for url in ["sqlite::memory:", "sqlite://?mode=memory", "sqlite://"] {
            assert!(matches!(load_peppers(url, &none), Err(SetupError::NoPepperLocation)), "{url}");
        }
    }

    #[cfg(all(unix, feature = "sqlite"))]
    #[test]
    fn pepper_file_is_created_private_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keys.db");
        let url = format!("sqlite://{}?mode=rwc", db.display());
        let none = PepperSettings::default();
        let first = load_peppers(&url, &none).unwrap();
        let file = dir.path().join("keys.db.pepper");
        assert_eq!(first.source, PepperSource::Created(file.clone()));
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let second = load_peppers(&url, &none).unwrap();
        assert_eq!(second.source, PepperSource::File(file.clone()));
        assert_eq!(first.peppers.current().digest(b"x"), second.peppers.current().digest(b"x"));
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_peppers(&url, &none), Err(SetupError::PepperFileMode { mode: 0o644, .. })));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&file, "not base64!").unwrap();
        assert!(matches!(load_peppers(&url, &none), Err(SetupError::PepperFileContents { .. })));

        // A database without its pepper file is refused, not re-peppered.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&db, b"SQLite format 3\0").unwrap();
        assert!(matches!(load_peppers(&url, &none), Err(SetupError::PepperLost { .. })));
        assert!(!file.exists());
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn opens_sqlite_and_refuses_unknown_schemes() {
        let store = open_store("sqlite::memory:").await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        let sa = ServiceAccountId::new("robot").unwrap();
        assert!(store.list(&sa, PageRequest::first(10)).await.unwrap().items.is_empty());
        assert!(matches!(open_store("mysql://h/db").await, Err(SetupError::UnsupportedScheme { .. })));
    }
}
