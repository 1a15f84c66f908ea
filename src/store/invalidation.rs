//! Cross-node cache invalidation (feature `cache`).
//!
//! Every node of a service runs its own [`CachedStore`](crate::store::CachedStore).
//! When one node revokes, deletes or reissues a key, the other nodes still
//! hold the old record in memory. An [`InvalidationBus`] carries the key id
//! from the node that changed it to every other node, which then drops the
//! entry at once instead of waiting for it to age out.
//!
//! Implementations:
//! - [`MemoryBus`]: in-process (several caches in one process, and tests);
//! - [`PostgresBus`] (features `cache` + `postgres`): `LISTEN`/`NOTIFY`;
//! - [`RedisBus`] (features `cache` + `redis`): pub/sub.
//!
//! Messages carry **only the key id** (20 public characters), never a
//! secret, digest or record. A receiver treats a message as "drop what you
//! know about this id"; anything that does not parse as a key id is ignored.
//!
//! Delivery is best effort: a message published while a node is
//! disconnected is lost. The cache therefore clears itself whenever its
//! subscription is (re-)established, and no entry is ever served beyond
//! [`CacheConfig::max_staleness`](crate::store::CacheConfig::max_staleness),
//! so a lost message delays revocation on that node by at most that bound.
//! The same bound covers a connection that dies without the peer noticing
//! (no FIN or RST reaches it): until the operating system's TCP keepalive
//! gives up on it, the subscription looks alive but receives nothing.
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::store::{CacheConfig, CachedStore, MemoryBus};
//! use api_keys::MemoryStore;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // Two caches ("nodes") in front of one store, linked by an in-process bus.
//! let store = Arc::new(MemoryStore::new());
//! let bus = MemoryBus::new();
//! let a = CachedStore::with_bus(Arc::clone(&store), CacheConfig::default(), bus.clone())?;
//! let b = CachedStore::with_bus(Arc::clone(&store), CacheConfig::default(), bus)?;
//! # let _ = (a, b);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::BoxError;
use crate::token::KeyId;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The channel's backend could not be reached or failed.
    #[error("invalidation channel unavailable")]
    Unavailable(#[source] BoxError),
    /// The backend did not answer in time.
    #[error("invalidation channel did not answer within {0:?}")]
    Timeout(Duration),
    /// The subscription ended (connection lost or bus closed); subscribe
    /// again.
    #[error("invalidation subscription closed")]
    Closed,
    /// A channel name outside the accepted alphabet or length.
    #[error("invalid channel name: {0}")]
    ChannelName(&'static str),
    /// A subscriber task was requested outside a Tokio runtime.
    #[error("the invalidation subscriber needs a Tokio runtime")]
    NoRuntime,
}

impl BusError {
    /// Wraps a driver error as [`BusError::Unavailable`].
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }
}

/// A publish/subscribe channel for key ids whose cached records must be
/// dropped.
///
/// `publish` must not return before the message is handed to the backend
/// (so that, once a revoke returns, the other nodes' eviction is under way).
/// `subscribe` must not return before the subscription is active (messages
/// published after it returns are received).
pub trait InvalidationBus: Send + Sync + 'static {
    /// An active subscription.
    type Subscription: InvalidationSubscription;

    /// Announces that key `id` changed.
    fn publish(&self, id: &KeyId) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Opens a subscription.
    fn subscribe(&self) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send;
}

/// The receiving end of an [`InvalidationBus`].
pub trait InvalidationSubscription: Send + 'static {
    /// The next announced key id. An error means the subscription is dead
    /// (messages may have been missed); the caller subscribes again.
    fn next_id(&mut self) -> impl Future<Output = Result<KeyId, BusError>> + Send;
}

/// Object-safe publishing, so a [`CachedStore`](crate::store::CachedStore)
/// does not carry the bus type in its own type.
pub(crate) trait Publish: Send + Sync {
    fn publish_boxed<'a>(&'a self, id: &'a KeyId) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>>;
}

impl<B: InvalidationBus> Publish for B {
    fn publish_boxed<'a>(&'a self, id: &'a KeyId) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>> {
        Box::pin(InvalidationBus::publish(self, id))
    }
}

/// Parses a received payload; `None` for anything that is not a key id.
#[cfg(any(feature = "postgres", feature = "redis", test))]
fn parse_payload(payload: &[u8]) -> Option<KeyId> {
    std::str::from_utf8(payload).ok().and_then(|s| KeyId::parse(s).ok())
}

// ---------------------------------------------------------------------------
// In-process bus.

/// An in-process bus over a Tokio broadcast channel: for several caches in
/// one process, and for tests. Clones share the channel.
///
/// A subscriber that falls more than [`MemoryBus::CAPACITY`] messages
/// behind loses its subscription ([`BusError::Closed`]); the cache then
/// re-subscribes and clears itself, as after a network disconnect.
#[derive(Clone)]
pub struct MemoryBus {
    tx: tokio::sync::broadcast::Sender<KeyId>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus").field("subscribers", &self.tx.receiver_count()).finish()
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// Messages a subscriber may fall behind before it is cut off.
    pub const CAPACITY: usize = 1024;

    /// A new, empty bus.
    #[must_use]
    pub fn new() -> Self {
        Self { tx: tokio::sync::broadcast::channel(Self::CAPACITY).0 }
    }

    /// Number of live subscriptions.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// A [`MemoryBus`] subscription.
#[derive(Debug)]
pub struct MemorySubscription {
    rx: tokio::sync::broadcast::Receiver<KeyId>,
}

impl InvalidationBus for MemoryBus {
    type Subscription = MemorySubscription;

    fn publish(&self, id: &KeyId) -> impl Future<Output = Result<(), BusError>> + Send {
        // No receivers is not an error: nobody holds a cache to invalidate.
        let _ = self.tx.send(*id);
        std::future::ready(Ok(()))
    }

    fn subscribe(&self) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send {
        std::future::ready(Ok(MemorySubscription { rx: self.tx.subscribe() }))
    }
}

impl InvalidationSubscription for MemorySubscription {
    async fn next_id(&mut self) -> Result<KeyId, BusError> {
        // Lagged: messages were dropped; report the subscription dead so
        // the cache clears itself.
        self.rx.recv().await.map_err(|_| BusError::Closed)
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL LISTEN/NOTIFY.

#[cfg(feature = "postgres")]
pub use self::pg::{PostgresBus, PostgresSubscription};

#[cfg(feature = "postgres")]
mod pg {
    use std::fmt;
    use std::time::Duration;

    use sqlx::postgres::{PgListener, PgPool};

    use super::{BusError, InvalidationBus, InvalidationSubscription, parse_payload};
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
    /// use api_keys::store::{CacheConfig, CachedStore, PostgresBus};
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

    impl fmt::Debug for PostgresBus {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PostgresBus").field("channel", &self.channel).field("timeout", &self.timeout).finish()
        }
    }

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
            let ok = (1..=63).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(BusError::ChannelName("1 to 63 characters of a-z 0-9 _, not starting with a digit"));
            }
            self.channel = name.to_owned();
            Ok(self)
        }

        /// Time limit for one publish or subscribe. Defaults to
        /// [`DEFAULT_TIMEOUT`].
        #[must_use]
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }

        /// The channel name.
        #[must_use]
        pub fn channel_name(&self) -> &str {
            &self.channel
        }
    }

    /// A [`PostgresBus`] subscription: one `LISTEN`ing connection.
    pub struct PostgresSubscription {
        listener: PgListener,
    }

    impl fmt::Debug for PostgresSubscription {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PostgresSubscription").finish_non_exhaustive()
        }
    }

    impl InvalidationBus for PostgresBus {
        type Subscription = PostgresSubscription;

        async fn publish(&self, id: &KeyId) -> Result<(), BusError> {
            let query = sqlx::query("SELECT pg_notify($1, $2)").bind(&self.channel).bind(id.as_str());
            match tokio::time::timeout(self.timeout, query.execute(&self.pool)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(BusError::unavailable(e)),
                Err(_) => Err(BusError::Timeout(self.timeout)),
            }
        }

        async fn subscribe(&self) -> Result<PostgresSubscription, BusError> {
            let connect = async {
                let mut listener = PgListener::connect_with(&self.pool).await.map_err(BusError::unavailable)?;
                // A lost connection ends the subscription (the cache
                // re-subscribes and clears itself) instead of being
                // re-established silently inside `try_recv`.
                listener.eager_reconnect(false);
                listener.listen(&self.channel).await.map_err(BusError::unavailable)?;
                Ok(PostgresSubscription { listener })
            };
            tokio::time::timeout(self.timeout, connect).await.unwrap_or(Err(BusError::Timeout(self.timeout)))
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
}

// ---------------------------------------------------------------------------
// Redis pub/sub.

#[cfg(feature = "redis")]
pub use self::redis_bus::{RedisBus, RedisSubscription};

#[cfg(feature = "redis")]
mod redis_bus {
    use std::fmt;
    use std::pin::Pin;
    use std::time::Duration;

    use futures_core::Stream;
    use redis::aio::PubSubStream;

    use super::{BusError, InvalidationBus, InvalidationSubscription, parse_payload};
    use crate::store::{DEFAULT_TIMEOUT, RedisConnection};
    use crate::token::KeyId;

    /// Invalidation over Redis pub/sub (features `cache` + `redis`).
    ///
    /// Publishing is one `PUBLISH channel id` on a [`RedisConnection`] (a
    /// connection manager that is renewed when it stops reconnecting);
    /// each subscription is its own pub/sub connection from the
    /// [`redis::Client`]. On Redis Cluster, `PUBLISH` reaches every node's
    /// subscribers.
    ///
    /// ```no_run
    /// use api_keys::store::{CacheConfig, CachedStore, RedisBus};
    /// use api_keys::RedisStore;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let bus = RedisBus::connect(redis::Client::open("redis://127.0.0.1:6379")?).await?.channel("myapp:invalidations")?;
    /// let cached = CachedStore::with_bus(store, CacheConfig::default(), bus)?;
    /// # let _ = cached; Ok(()) }
    /// ```
    #[derive(Clone)]
    pub struct RedisBus {
        client: redis::Client,
        publisher: RedisConnection,
        channel: String,
        timeout: Duration,
    }

    impl fmt::Debug for RedisBus {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RedisBus").field("channel", &self.channel).field("timeout", &self.timeout).finish()
        }
    }

    impl RedisBus {
        /// The default channel name.
        pub const DEFAULT_CHANNEL: &'static str = "api-keys:invalidations";

        /// Connects the publishing connection of a bus on
        /// [`RedisBus::DEFAULT_CHANNEL`], with [`DEFAULT_TIMEOUT`] for
        /// publishing and subscribing.
        ///
        /// # Errors
        /// [`BusError::Unavailable`] or [`BusError::Timeout`] if Redis cannot
        /// be reached.
        pub async fn connect(client: redis::Client) -> Result<Self, BusError> {
            let timeout = DEFAULT_TIMEOUT;
            let publisher = RedisConnection::lazy(client.clone()).map_err(BusError::unavailable)?;
            // Fail early, as a connect should, when Redis cannot be reached.
            let mut probe = publisher.clone();
            match tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut probe)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(BusError::unavailable(e)),
                Err(_) => return Err(BusError::Timeout(timeout)),
            }
            Ok(Self::from_parts(client, publisher))
        }

        /// A bus publishing through an existing connection (for example
        /// `store.connection().clone()` of a [`RedisStore`](crate::RedisStore))
        /// and subscribing with `client`.
        #[must_use]
        pub fn from_parts(client: redis::Client, publisher: RedisConnection) -> Self {
            Self { client, publisher, channel: Self::DEFAULT_CHANNEL.to_owned(), timeout: DEFAULT_TIMEOUT }
        }

        /// Uses channel `name`: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
        ///
        /// # Errors
        /// [`BusError::ChannelName`].
        pub fn channel(mut self, name: &str) -> Result<Self, BusError> {
            let ok = (1..=128).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
            if !ok {
                return Err(BusError::ChannelName("1 to 128 characters of A-Z a-z 0-9 _ . : -"));
            }
            self.channel = name.to_owned();
            Ok(self)
        }

        /// Time limit for one publish or subscribe. Defaults to
        /// [`DEFAULT_TIMEOUT`].
        #[must_use]
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }

        /// The channel name.
        #[must_use]
        pub fn channel_name(&self) -> &str {
            &self.channel
        }
    }

    /// A [`RedisBus`] subscription: one pub/sub connection.
    pub struct RedisSubscription {
        stream: PubSubStream,
    }

    impl fmt::Debug for RedisSubscription {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RedisSubscription").finish_non_exhaustive()
        }
    }

    impl InvalidationBus for RedisBus {
        type Subscription = RedisSubscription;

        async fn publish(&self, id: &KeyId) -> Result<(), BusError> {
            let mut conn = self.publisher.clone();
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&self.channel).arg(id.as_str());
            let publish = cmd.query_async::<i64>(&mut conn);
            match tokio::time::timeout(self.timeout, publish).await {
                Ok(Ok(_receivers)) => Ok(()),
                Ok(Err(e)) => Err(BusError::unavailable(e)),
                Err(_) => Err(BusError::Timeout(self.timeout)),
            }
        }

        async fn subscribe(&self) -> Result<RedisSubscription, BusError> {
            let connect = async {
                let mut pubsub = self.client.get_async_pubsub().await.map_err(BusError::unavailable)?;
                // Returns once the server confirmed the subscription.
                pubsub.subscribe(&self.channel).await.map_err(BusError::unavailable)?;
                Ok(RedisSubscription { stream: pubsub.into_on_message() })
            };
            tokio::time::timeout(self.timeout, connect).await.unwrap_or(Err(BusError::Timeout(self.timeout)))
        }
    }

    impl InvalidationSubscription for RedisSubscription {
        async fn next_id(&mut self) -> Result<KeyId, BusError> {
            loop {
                let next = std::future::poll_fn(|cx| Pin::new(&mut self.stream).poll_next(cx)).await;
                // The stream ends when the connection is lost.
                let Some(msg) = next else { return Err(BusError::Closed) };
                if let Some(id) = parse_payload(msg.get_payload_bytes()) {
                    return Ok(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_bus_delivers_ids_and_reports_lag_as_closed() {
        let bus = MemoryBus::new();
        let mut sub = bus.subscribe().await.unwrap();
        let id = KeyId::parse("ajeuo7ng2p6u00000000").unwrap();
        bus.publish(&id).await.unwrap();
        assert_eq!(sub.next_id().await.unwrap(), id);
        for _ in 0..=MemoryBus::CAPACITY {
            bus.publish(&id).await.unwrap();
        }
        assert!(matches!(sub.next_id().await, Err(BusError::Closed)));
    }

    #[test]
    fn payloads_other_than_key_ids_are_ignored() {
        assert!(parse_payload(b"ajeuo7ng2p6u00000000").is_some());
        assert!(parse_payload(b"*").is_none());
        assert!(parse_payload(&[0xff; 20]).is_none());
    }
}
