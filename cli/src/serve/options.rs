//! `keyctl serve`'s operator options beyond the listener itself: where
//! `/metrics` is served, and whether a Redis store that can lose writes on
//! a crash is refused ([`super::durability`]).

use std::net::SocketAddr;

use clap::Args;

use crate::failure::{BAD_INPUT, Failure};

/// The variable for `--metrics-listen`.
pub(crate) const METRICS_LISTEN_VAR: &str = "API_KEYS_METRICS_LISTEN";
/// The variable for `--require-durable-redis` (`1`/`true`/`yes` or
/// `0`/`false`/`no`).
pub(crate) const REQUIRE_DURABLE_REDIS_VAR: &str = "API_KEYS_REQUIRE_DURABLE_REDIS";

/// `keyctl serve` flags for `/metrics` and the Redis durability check.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ServeOptions {
    /// Serve /metrics on this address (IP:PORT) instead of the main listener, e.g. on loopback or
    /// a private network for the scraper; /metrics itself has no authentication
    /// [env: API_KEYS_METRICS_LISTEN] [default: /metrics on the main listener].
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Refuse to start when the Redis store is not set up to keep every write across a crash
    /// (`appendonly yes`, `appendfsync always` or `everysec`, `maxmemory-policy noeviction`) or
    /// its settings cannot be read (CONFIG GET refused); without it such a Redis is only warned
    /// about at start. See docs/redis-durability.md [env: API_KEYS_REQUIRE_DURABLE_REDIS=1]
    /// [default: warn].
    #[arg(long = "require-durable-redis")]
    require_durable_redis: bool,
}

impl ServeOptions {
    /// Where `/metrics` is served apart from the main listener: the flag,
    /// else [`METRICS_LISTEN_VAR`], else `None` (on the main listener).
    ///
    /// # Errors
    /// A [`BAD_INPUT`] failure naming the text when it is not `IP:PORT`.
    pub(crate) fn metrics_address(&self) -> Result<Option<SocketAddr>, Failure> {
        let (text, from) = match &self.metrics_listen {
            Some(t) => (t.clone(), "--metrics-listen"),
            None => match crate::env::var(METRICS_LISTEN_VAR) {
                Some(t) => (t, METRICS_LISTEN_VAR),
                None => return Ok(None),
            },
        };
        text.trim().parse().map(Some).map_err(|_| {
            let shown: String = text.chars().take(64).collect();
            Failure::new(
                BAD_INPUT,
                format!(
                    "{from}: `{}` is not a listen address; expected IP:PORT, e.g. 127.0.0.1:9090",
                    crate::render::escaped(&shown)
                ),
            )
        })
    }

    /// Whether a Redis store that is not durable is refused: the flag, else
    /// [`REQUIRE_DURABLE_REDIS_VAR`].
    ///
    /// # Errors
    /// A [`BAD_INPUT`] failure when the variable is not a yes or no.
    pub(crate) fn require_durable_redis(&self) -> Result<bool, Failure> {
        if self.require_durable_redis {
            return Ok(true);
        }
        match crate::env::var(REQUIRE_DURABLE_REDIS_VAR).as_deref().map(str::trim) {
            None => Ok(false),
            Some(v) if ["1", "true", "yes"].contains(&v.to_ascii_lowercase().as_str()) => Ok(true),
            Some(v) if ["0", "false", "no"].contains(&v.to_ascii_lowercase().as_str()) => Ok(false),
            Some(v) => {
                let shown: String = v.chars().take(32).collect();
                Err(Failure::new(
                    BAD_INPUT,
                    format!(
                        "{REQUIRE_DURABLE_REDIS_VAR}: `{}` is not 1, true, yes, 0, false or no",
                        crate::render::escaped(&shown)
                    ),
                ))
            }
        }
    }
}
