//! Where the backend tests find PostgreSQL and Redis, and how they say so
//! when a server cannot be reached: the one place every test binary of both
//! packages reads the servers' URLs from (the CLI's tests include this file).
//!
//! `API_KEYS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and `API_KEYS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) override
//! the addresses.

#![allow(dead_code, reason = "test helpers")]

/// The PostgreSQL server when `API_KEYS_TEST_POSTGRES_URL` is unset.
pub(crate) const POSTGRES_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis server when `API_KEYS_TEST_REDIS_URL` is unset.
pub(crate) const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";

/// The PostgreSQL server the tests use.
pub(crate) fn postgres_url() -> String {
    std::env::var("API_KEYS_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_DEFAULT.to_owned())
}

/// The Redis server the tests use.
pub(crate) fn redis_url() -> String {
    std::env::var("API_KEYS_TEST_REDIS_URL").unwrap_or_else(|_| REDIS_DEFAULT.to_owned())
}

/// `host:port/…` of a URL, without any user or password.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.rsplit_once('@').map_or(rest, |(_, h)| h)
}

/// The error and its sources, joined by `: `.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Fails the test: PostgreSQL is unreachable; `needs` says what the server
/// must allow (e.g. "a database you may create schemas in").
pub(crate) fn postgres_down(e: &dyn std::error::Error, needs: &str) -> ! {
    panic!(
        "PostgreSQL at {} unreachable ({}): start it with \
         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
         or point API_KEYS_TEST_POSTGRES_URL at a server with {needs}",
        host_of(&postgres_url()),
        chain(e),
    )
}

/// Fails the test: Redis is unreachable; `needs` says what the server must
/// allow.
pub(crate) fn redis_down(e: &dyn std::error::Error, needs: &str) -> ! {
    panic!(
        "Redis at {} unreachable ({}): start it with \
         `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`, \
         or point API_KEYS_TEST_REDIS_URL at {needs}",
        host_of(&redis_url()),
        chain(e),
    )
}
