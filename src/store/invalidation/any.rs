//! The invalidation channel of an [`AnyStore`]: `LISTEN`/`NOTIFY` for
//! PostgreSQL, pub/sub for Redis (features `cache` + the store's), chosen
//! by [`AnyStore::invalidation_bus`].

use std::fmt;

#[cfg(feature = "postgres")]
use super::PostgresBus;
#[cfg(feature = "redis")]
use super::RedisBus;
use super::{BusError, InvalidationBus, InvalidationSubscription};
use crate::store::any::{AnyStore, SetupError};
use crate::token::KeyId;

/// The invalidation bus of a PostgreSQL or Redis [`AnyStore`], chosen by
/// [`AnyStore::invalidation_bus`]. Cheap to clone.
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyBus {
    /// `LISTEN`/`NOTIFY` on the store's database.
    #[cfg(feature = "postgres")]
    Postgres(PostgresBus),
    /// Pub/sub on the store's server.
    #[cfg(feature = "redis")]
    Redis(RedisBus),
}

impl fmt::Debug for AnyBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => fmt::Debug::fmt(b, f),
            #[cfg(feature = "redis")]
            Self::Redis(b) => fmt::Debug::fmt(b, f),
        }
    }
}

impl AnyBus {
    /// The channel name.
    #[must_use]
    pub fn channel_name(&self) -> &str {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => b.channel_name(),
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.channel_name(),
        }
    }
}

/// A subscription of an [`AnyBus`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnySubscription {
    /// A `LISTEN`ing connection.
    #[cfg(feature = "postgres")]
    Postgres(super::PostgresSubscription),
    /// A pub/sub connection.
    #[cfg(feature = "redis")]
    Redis(super::RedisSubscription),
}

impl InvalidationBus for AnyBus {
    type Subscription = AnySubscription;

    async fn publish(&self, id: &KeyId) -> Result<(), BusError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => b.publish(id).await,
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.publish(id).await,
        }
    }

    async fn subscribe(&self) -> Result<AnySubscription, BusError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(b) => b.subscribe().await.map(AnySubscription::Postgres),
            #[cfg(feature = "redis")]
            Self::Redis(b) => b.subscribe().await.map(AnySubscription::Redis),
        }
    }
}

impl InvalidationSubscription for AnySubscription {
    async fn next_id(&mut self) -> Result<KeyId, BusError> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(s) => s.next_id().await,
            #[cfg(feature = "redis")]
            Self::Redis(s) => s.next_id().await,
        }
    }
}

impl AnyStore {
    /// The store's own invalidation channel, named after its namespace so
    /// that stores sharing a database or server do not hear each other:
    /// PostgreSQL `LISTEN`/`NOTIFY` on `api_keys_invalidations` for the
    /// `public` schema and `ak_<schema>` (cut to 63 characters) for others;
    /// Redis pub/sub on `<prefix>:invalidations`. `None` for SQLite, which
    /// has no channel (one node, or every node reads the file itself), and
    /// for memory, which only this process sees.
    ///
    /// `url` must be the URL the store was opened with (the Redis bus makes
    /// its own subscribing connections from it).
    ///
    /// # Errors
    /// [`SetupError::Store`] when the PostgreSQL schema cannot be read, or
    /// [`SetupError::InvalidUrl`] when the Redis URL cannot be used.
    pub async fn invalidation_bus(&self, url: &str) -> Result<Option<AnyBus>, SetupError> {
        let _ = url;
        match self {
            Self::Memory(_) => Ok(None),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => Ok(None),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => {
                let schema: String = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(store.pool())
                    .await
                    .map_err(|e| SetupError::Store {
                        backend: crate::store::any::Backend::Postgres,
                        source: crate::store::StoreError::unavailable(e),
                    })?;
                let channel = if schema == "public" {
                    PostgresBus::DEFAULT_CHANNEL.to_owned()
                } else {
                    let mut c = format!("ak_{schema}");
                    c.truncate(63);
                    c
                };
                let bus = PostgresBus::new(store.pool().clone()).channel(&channel).map_err(|_| {
                    SetupError::InvalidUrl("the PostgreSQL schema name cannot name a notification channel")
                })?;
                Ok(Some(AnyBus::Postgres(bus.timeout(store.timeout()))))
            }
            #[cfg(feature = "redis")]
            Self::Redis(store) => {
                let (url, _) = crate::store::any::take_param(url, "prefix", crate::store::any::REDIS_PARAMS)?;
                let client = redis::Client::open(url).map_err(|_| SetupError::InvalidUrl("not a valid Redis URL"))?;
                let channel = format!("{}:invalidations", store.prefix());
                let bus = RedisBus::from_parts(client, store.connection().clone())
                    .channel(&channel)
                    .map_err(|_| SetupError::InvalidUrl("the Redis prefix cannot name a pub/sub channel"))?;
                Ok(Some(AnyBus::Redis(bus.timeout(store.timeout()))))
            }
        }
    }
}
