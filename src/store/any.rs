//! Opening a store from a URL: [`open_store`] maps `sqlite:…`,
//! `postgres://…` / `postgresql://…` and `redis://…` to the matching store,
//! held in one [`AnyStore`] (like sqlx's `AnyPool`), so a program can let its
//! operator choose the backend at run time.
//!
//! Two query parameters of the URL are read here and removed before the URL
//! reaches the driver: `schema=NAME` keeps the PostgreSQL tables in that
//! schema (created if missing) and `prefix=NAME` puts every Redis key under
//! `NAME:` (default `api-keys`).
//!
//! The library reads no environment variables and makes no files besides
//! the database itself: where the URL and the pepper come from is the
//! program's business (an operator tool may read them from environment
//! variables, or keep a pepper file beside a SQLite database).
//!
//! ```no_run
//! use std::sync::Arc;
//! use api_keys::store::any;
//! use api_keys::{KeyManager, Pepper, Peppers, ScopeCatalog};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = any::open_store("postgres://app@127.0.0.1/app?schema=keys").await?;
//! let pepper = Pepper::from_base64(1, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")?;
//! let manager = KeyManager::builder(Arc::new(store), Peppers::single(pepper), ScopeCatalog::builder().build()?).build();
//! # let _ = manager;
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::store::{KeyStore, StoreError};

/// Why the store a URL names could not be opened. Never contains the URL
/// (it may hold a password).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The URL's scheme names no supported store.
    #[error("database URL scheme `{scheme}` is not memory:, sqlite:, postgres:, postgresql: or redis:")]
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
    /// A query parameter neither this crate nor the store's driver reads
    /// (compared after percent-decoding): a misspelt `schema` or `prefix`
    /// would otherwise fall back to the shared default namespace.
    #[error("database URL: unknown query parameter `{name}` (this store reads `schema`/`prefix` and its driver's own)")]
    UnknownParameter {
        /// The parameter's name, percent-decoded (at most 32 printable
        /// characters, else `(unprintable)`).
        name: String,
    },
    /// The store could not be opened.
    #[error("cannot open the {backend} store")]
    Store {
        /// The backend.
        backend: Backend,
        /// The store's error.
        #[source]
        source: StoreError,
    },
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
    /// `memory:` — a [`crate::MemoryStore`] that lives as long as the
    /// process (demos, tests, benchmarks).
    Memory,
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
            "memory" => Ok(Self::Memory),
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "redis" | "rediss" => Ok(Self::Redis),
            _ => Err(SetupError::UnsupportedScheme { scheme: printable_scheme(scheme) }),
        }
    }

    /// `"memory"`, `"SQLite"`, `"PostgreSQL"` or `"Redis"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
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

/// The query parameters the PostgreSQL driver reads (sqlx-postgres 0.9),
/// besides this crate's own `schema`. Any other name is refused: the driver
/// ignores names it does not know, so a misspelt `Schema=` would silently put
/// a tenant into the shared default schema.
#[cfg(feature = "postgres")]
const POSTGRES_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The query parameters redis-rs reads, besides this crate's own `prefix`.
#[cfg(feature = "redis")]
pub(crate) const REDIS_PARAMS: &[&str] = &["protocol", "db", "pass", "user"];

#[cfg(any(feature = "postgres", feature = "redis"))]
/// Removes this crate's query parameter `name` from `url`, returning the URL
/// without it and its percent-decoded value. Every other parameter must be
/// one of `driver` (the names the driver reads), compared after
/// percent-decoding, so a misspelt or disguised `name` is an error rather
/// than a silent default. A fragment is not expected in database URLs and is
/// kept as part of the query text.
pub(crate) fn take_param(url: &str, name: &str, driver: &[&str]) -> Result<(String, Option<String>), SetupError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut value = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(k)?;
        if key == name {
            if value.is_some() {
                return Err(SetupError::InvalidUrl("a query parameter appears more than once"));
            }
            value = Some(decode_component(v)?);
        } else if driver.contains(&key.as_str()) {
            kept.push(pair);
        } else {
            return Err(SetupError::UnknownParameter { name: printable_parameter(&key) });
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, value))
}

/// Percent-decodes one query component (`+` stays `+`, as the drivers read it).
#[cfg(any(feature = "postgres", feature = "redis"))]
fn decode_component(text: &str) -> Result<String, SetupError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| SetupError::InvalidUrl("a query parameter is not UTF-8 after percent-decoding"))
}

/// A parameter name as it may appear in an error: names are not secret, but
/// keep it short and printable.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn printable_parameter(name: &str) -> String {
    let ok = !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_graphic());
    if ok { name.to_owned() } else { "(unprintable)".to_owned() }
}

/// One of the stores, chosen at run time from a URL by [`open_store`].
/// Implements [`KeyStore`] by delegating to the store it holds. Cheap to
/// clone (clones share the store).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// Process memory: gone when the last clone is dropped.
    Memory(Arc<crate::MemoryStore>),
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
            Self::Memory(_) => Backend::Memory,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "redis")]
            Self::Redis(_) => Backend::Redis,
        }
    }

    /// Closes the store's connections and waits for them. For SQLite the
    /// last connection to close checkpoints the write-ahead log into the
    /// database file, so a revocation made just before is in the file
    /// itself, not only in `-wal`. Calls made after this fail.
    pub async fn close(&self) {
        match self {
            Self::Memory(_) => {}
            #[cfg(feature = "sqlite")]
            Self::Sqlite(s) => s.pool().close().await,
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.pool().close().await,
            #[cfg(feature = "redis")]
            Self::Redis(_) => {}
        }
    }
}

/// The verifier's lookups (`with_record`, `lend_now`) keep the trait's
/// defaults, which look up with the held store's `get`.
impl KeyStore for AnyStore {
    crate::forward_key_store!(match self: AnyStore {
        Memory,
        #[cfg(feature = "sqlite")]
        Sqlite,
        #[cfg(feature = "postgres")]
        Postgres,
        #[cfg(feature = "redis")]
        Redis,
    } => all except [with_record, lend_now]);
}

/// Opens (and migrates) the store `url` names, with the store's default
/// timeouts:
///
/// - `memory:` — a new, empty [`crate::MemoryStore`];
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
        Backend::Memory => Ok(AnyStore::Memory(Arc::new(crate::MemoryStore::new()))),
        #[cfg(feature = "sqlite")]
        Backend::Sqlite => crate::SqliteStore::connect(url).await.map(AnyStore::Sqlite).map_err(store_error),
        #[cfg(feature = "postgres")]
        Backend::Postgres => {
            let (url, schema) = take_param(url, "schema", POSTGRES_PARAMS)?;
            let mut builder = crate::PostgresStore::builder(url);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.connect().await.map(AnyStore::Postgres).map_err(store_error)
        }
        #[cfg(feature = "redis")]
        Backend::Redis => {
            let (url, prefix) = take_param(url, "prefix", REDIS_PARAMS)?;
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
        Backend::Memory => "",
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
        Backend::Redis => "redis",
    };
    SetupError::NotCompiled { backend, feature }
}

/// The database file a SQLite URL names, as the driver reads it
/// (percent-decoding included); `None` for an in-memory database.
///
/// # Errors
/// [`SetupError::UnsupportedScheme`] for a URL that is not `sqlite:…`,
/// [`SetupError::InvalidUrl`] for one the driver cannot read, and
/// [`SetupError::NotCompiled`] without the `sqlite` feature.
pub fn sqlite_path(url: &str) -> Result<Option<PathBuf>, SetupError> {
    if Backend::of(url)? != Backend::Sqlite {
        return Err(SetupError::InvalidUrl("not a SQLite URL"));
    }
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
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|_| SetupError::InvalidUrl("not a valid SQLite URL"))?;
        Ok(Some(options.get_filename().to_path_buf()))
    }
    #[cfg(not(feature = "sqlite"))]
    Err(not_compiled(Backend::Sqlite))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PageRequest, ServiceAccountId};

    #[test]
    fn backends_by_scheme() {
        assert_eq!(Backend::of("sqlite://a.db?mode=rwc").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("PostgreSQL://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("redis://127.0.0.1").unwrap(), Backend::Redis);
        let e = Backend::of("mysql://root:hunter2@h/db").unwrap_err();
        assert_eq!(
            e.to_string(),
            "database URL scheme `mysql` is not memory:, sqlite:, postgres:, postgresql: or redis:"
        );
        assert_eq!(Backend::of("memory:").unwrap(), Backend::Memory);
        // No scheme: nothing of the value is echoed.
        let e = Backend::of("hunter2hunter2").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[cfg(any(feature = "postgres", feature = "redis"))]
    #[test]
    fn query_parameters_are_taken_out() {
        let (u, v) = take_param("postgres://h/db?schema=s1&sslmode=disable", "schema", POSTGRES_PARAMS).unwrap();
        assert_eq!((u.as_str(), v.as_deref()), ("postgres://h/db?sslmode=disable", Some("s1")));
        let (u, v) = take_param("redis://h?prefix=p", "prefix", REDIS_PARAMS).unwrap();
        assert_eq!((u.as_str(), v.as_deref()), ("redis://h", Some("p")));
        let (u, v) = take_param("redis://h", "prefix", REDIS_PARAMS).unwrap();
        assert_eq!((u.as_str(), v), ("redis://h", None));
        assert!(matches!(
            take_param("redis://h?prefix=a&prefix=b", "prefix", REDIS_PARAMS),
            Err(SetupError::InvalidUrl(_))
        ));
    }

    /// A misspelt or percent-encoded namespace
    /// parameter is an error, never the shared default namespace.
    #[test]
    fn unknown_or_disguised_parameters_are_refused() {
        for (url, name, driver, unknown) in [
            ("postgres://h/db?Schema=tenant_a", "schema", POSTGRES_PARAMS, "Schema"),
            ("postgres://h/db?sslmode=disable&schemas=tenant_a", "schema", POSTGRES_PARAMS, "schemas"),
            ("redis://h/?Prefix=tenant_a", "prefix", REDIS_PARAMS, "Prefix"),
            ("redis://h/?pre%66ix_=tenant_a", "prefix", REDIS_PARAMS, "prefix_"),
        ] {
            match take_param(url, name, driver) {
                Err(e @ SetupError::UnknownParameter { .. }) => {
                    assert!(e.to_string().contains(&format!("`{unknown}`")), "{e}");
                    assert!(!e.to_string().contains("tenant_a"), "values are never echoed: {e}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        // Percent-encoded names and values are read as the drivers read them.
        let (u, v) = take_param("postgres://h/db?sch%65ma=tenant%5Fa", "schema", POSTGRES_PARAMS).unwrap();
        assert_eq!((u.as_str(), v.as_deref()), ("postgres://h/db", Some("tenant_a")));
        let (u, v) = take_param("redis://h/?%70refix=t1&protocol=resp3", "prefix", REDIS_PARAMS).unwrap();
        assert_eq!((u.as_str(), v.as_deref()), ("redis://h/?protocol=resp3", Some("t1")));
        assert!(matches!(take_param("redis://h/?prefix=%FF", "prefix", REDIS_PARAMS), Err(SetupError::InvalidUrl(_))));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://keys.db?mode=rwc").unwrap(), Some(PathBuf::from("keys.db")));
        assert_eq!(sqlite_path("sqlite:/tmp/a%20b.db").unwrap(), Some(PathBuf::from("/tmp/a b.db")));
        for url in ["sqlite::memory:", "sqlite://?mode=memory", "sqlite://"] {
            assert_eq!(sqlite_path(url).unwrap(), None, "{url}");
        }
        assert!(matches!(sqlite_path("redis://h"), Err(SetupError::InvalidUrl(_))));
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
