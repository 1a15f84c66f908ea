//! The environment variables `keyctl` reads, in one place. An empty (or
//! all-blank) variable counts as unset, so `API_KEYS_DATABASE_URL=` in a
//! unit file or a `docker run -e` means "the default", not a URL without a
//! scheme.
//!
//! | variable | meaning |
//! |---|---|
//! | `API_KEYS_DATABASE_URL` | the store (same as `--database-url`); default [`DEFAULT_DATABASE_URL`] |
//! | `API_KEYS_PEPPER` | the pepper, standard base64 of at least 32 bytes |
//! | `API_KEYS_PEPPER_VERSION` | its version number, stored beside every digest; default 1 |
//! | `API_KEYS_LISTEN` | `keyctl serve`: the listen address (same as `--listen`); default [`DEFAULT_LISTEN`] |
//! | `API_KEYS_TRUSTED_PROXIES` | `keyctl serve`: reverse-proxy ranges whose forwarding header gives the client address, comma-separated (same as `--trusted-proxy`); default none |
//! | `API_KEYS_PROXY_HEADER` | `keyctl serve`: `forwarded` or `x-forwarded-for`, the header those proxies set (same as `--proxy-header`); default `x-forwarded-for` |
//! | `API_KEYS_RATE_LIMIT_REDIS` | `keyctl serve`: a Redis URL where keys' rate limits are counted for all nodes (same as `--rate-limit-redis`); default the store when it is Redis, else per node |
//! | `API_KEYS_CACHE` | `keyctl serve`: `off` turns the PostgreSQL/Redis cache off; default `on` |
//! | `API_KEYS_CACHE_TTL` | `keyctl serve`: how long a cached record is served without asking the store; default 5s |
//! | `API_KEYS_ACCEPT_IMPORTED` | `keyctl serve`: `on` accepts imported keys (`keyctl import`); default `off` |
//! | `API_KEYS_CACHE_MAX_STALENESS` | `keyctl serve`: the most a cached record may lag the store if an invalidation is lost; default 30s |
//! | `API_KEYS_ADMIN_TOKEN` | `keyctl serve`: admin bearer tokens for the management API at `/iam/v1`, comma-separated; unset: the API is off |
//! | `API_KEYS_FOLDER_ID` | the folder key and service-account commands work in when no `--folder-id` or `--folder-name` is given; default the default folder |
//! | `API_KEYS_ADMIN_TOKEN_FILE` | `keyctl serve`: a file of admin tokens (one per line), instead of `API_KEYS_ADMIN_TOKEN` |

/// The variable naming the store.
pub(crate) const DATABASE_URL_VAR: &str = "API_KEYS_DATABASE_URL";
/// The variable holding the pepper (base64, at least 32 bytes).
pub(crate) const PEPPER_VAR: &str = "API_KEYS_PEPPER";
/// The variable holding the pepper's version (defaults to 1).
pub(crate) const PEPPER_VERSION_VAR: &str = "API_KEYS_PEPPER_VERSION";
/// The variable holding `keyctl serve`'s listen address.
pub(crate) const LISTEN_VAR: &str = "API_KEYS_LISTEN";
/// `off` disables `keyctl serve`'s cache.
pub(crate) const CACHE_VAR: &str = "API_KEYS_CACHE";
/// The cache's fresh lifetime.
pub(crate) const CACHE_TTL_VAR: &str = "API_KEYS_CACHE_TTL";
/// `on` makes `keyctl serve` look up keys that are not in this crate's
/// format as imported keys (default `off`: each such value costs an HMAC
/// and a store read per pepper).
pub(crate) const ACCEPT_IMPORTED_VAR: &str = "API_KEYS_ACCEPT_IMPORTED";
/// The cache's maximum staleness.
pub(crate) const CACHE_MAX_STALENESS_VAR: &str = "API_KEYS_CACHE_MAX_STALENESS";
/// The most records the cache holds.
pub(crate) const CACHE_MAX_ENTRIES_VAR: &str = "API_KEYS_CACHE_MAX_ENTRIES";

/// The folder `--service-account-name` and `keyctl service-account` use
/// when no folder flag is given.
pub(crate) const FOLDER_ID_VAR: &str = "API_KEYS_FOLDER_ID";

/// `keyctl serve`'s admin bearer tokens, comma-separated.
pub(crate) const ADMIN_TOKEN_VAR: &str = "API_KEYS_ADMIN_TOKEN";
/// A file holding `keyctl serve`'s admin bearer tokens.
pub(crate) const ADMIN_TOKEN_FILE_VAR: &str = "API_KEYS_ADMIN_TOKEN_FILE";

/// The store an operator tool uses when no URL is given: a SQLite file
/// `api-keys.db` in the working directory, created if missing.
pub(crate) const DEFAULT_DATABASE_URL: &str = "sqlite://api-keys.db?mode=rwc";
/// Where `keyctl serve` listens unless told otherwise (loopback only).
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The value of `name`; `None` when unset, empty or blank. A value that is
/// not UTF-8 becomes U+FFFD, which fails validation later with a message
/// naming the variable.
pub(crate) fn var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => None,
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => Some("\u{fffd}".to_owned()),
    }
}
