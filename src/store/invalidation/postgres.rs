//! [`PostgresBus`]: invalidation over PostgreSQL `LISTEN`/`NOTIFY`.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};

use super::{BusError, InvalidationBus, InvalidationSubscription, channel_name, parse_payload, within};
use crate::store::DEFAULT_TIMEOUT;
use crate::token::KeyId;

/// Invalidation over PostgreSQL `NOTIFY` / `LISTEN` (features `cache` +
/// `postgres`).
///
/// Publishing is `SELECT pg_notify(channel, id)` through the pool.
/// Each subscription is a [`PgListener`] holding one connection taken
/// from the pool for as long as it lives (size the pool for it).
/// Notification channels are per *database*, not per schema: services
/// that share a database but not a key table must use different channel
/// names.
///
/// ```no_run
/// use api_keys::store::invalidation::PostgresBus;
/// use api_keys::store::cached::{CacheConfig, CachedStore};
/// use api_keys::PostgresStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresStore::connect("postgres://app@127.0.0.1:5432/app").await?;
/// let bus = PostgresBus::new(store.pool().clone()).channel("api_keys_invalidations")?;
/// let cached = CachedStore::with_bus(store, CacheConfig::default(), bus)?;
/// # let _ = cached; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBus {
    pool: PgPool,
    channel: String,
    timeout: Duration,
}

channel_options!(PostgresBus);

impl PostgresBus {
    /// The default channel name.
    pub const DEFAULT_CHANNEL: &'static str = "api_keys_invalidations";

    /// A bus over `pool` on [`PostgresBus::DEFAULT_CHANNEL`], with the
    /// store's default timeout ([`DEFAULT_TIMEOUT`]) for publishing and
    /// subscribing.
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool, channel: Self::DEFAULT_CHANNEL.to_owned(), timeout: DEFAULT_TIMEOUT }
    }

    /// Uses channel `name`: 1 to 63 characters of `[a-z0-9_]`, not
    /// starting with a digit (a plain PostgreSQL identifier).
    ///
    /// # Errors
    /// [`BusError::ChannelName`].
    pub fn channel(mut self, name: &str) -> Result<Self, BusError> {
        let valid = (1..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        self.channel = channel_name(name, valid, "1 to 63 characters of a-z 0-9 _, not starting with a digit")?;
        Ok(self)
    }
}

/// A [`PostgresBus`] subscription: one `LISTEN`ing connection.
#[derive(Debug)]
pub struct PostgresSubscription {
    listener: PgListener,
}

impl InvalidationBus for PostgresBus {
    type Subscription = PostgresSubscription;

    async fn publish(&self, id: &KeyId) -> Result<(), BusError> {
        let query = sqlx::query("SELECT pg_notify($1, $2)").bind(&self.channel).bind(id.as_str());
        within(self.timeout, query.execute(&self.pool)).await.map(drop)
    }

    async fn subscribe(&self) -> Result<PostgresSubscription, BusError> {
        let connect = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            // A lost connection ends the subscription (the cache
            // re-subscribes and clears itself) instead of being
            // re-established silently inside `try_recv`.
            listener.eager_reconnect(false);
            listener.listen(&self.channel).await?;
            Ok::<_, sqlx::Error>(PostgresSubscription { listener })
        };
        within(self.timeout, connect).await
    }
}

impl InvalidationSubscription for PostgresSubscription {
    async fn next_id(&mut self) -> Result<KeyId, BusError> {
        loop {
            match self.listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Some(id) = parse_payload(n.payload().as_bytes()) {
                        return Ok(id);
                    }
                }
                Ok(None) => return Err(BusError::Closed),
                Err(e) => return Err(BusError::unavailable(e)),
            }
        }
    }
}
