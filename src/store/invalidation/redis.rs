//! [`RedisBus`]: invalidation over Redis pub/sub.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use redis::aio::PubSubStream;

use super::{BusError, InvalidationBus, InvalidationSubscription, channel_name, parse_payload, within};
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
/// use api_keys::store::invalidation::RedisBus;
/// use api_keys::store::cached::{CacheConfig, CachedStore};
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

channel_options!(RedisBus);

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
        within(timeout, redis::cmd("PING").query_async::<String>(&mut probe)).await?;
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
        let valid = (1..=128).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        self.channel = channel_name(name, valid, "1 to 128 characters of A-Z a-z 0-9 _ . : -")?;
        Ok(self)
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
        // The reply is the number of receivers, which does not matter.
        within(self.timeout, cmd.query_async::<i64>(&mut conn)).await.map(drop)
    }

    async fn subscribe(&self) -> Result<RedisSubscription, BusError> {
        let connect = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            // Returns once the server confirmed the subscription.
            pubsub.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>(RedisSubscription { stream: pubsub.into_on_message() })
        };
        within(self.timeout, connect).await
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
