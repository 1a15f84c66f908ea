//! Cross-node cache invalidation (feature `cache`).
//!
//! Every node of a service runs its own [`CachedStore`](crate::store::cached::CachedStore).
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
//! [`CacheConfig::max_staleness`](crate::store::cached::CacheConfig::max_staleness),
//! so a lost message delays revocation on that node by at most that bound.
//! The same bound covers a connection that dies without the peer noticing
//! (no FIN or RST reaches it): until the operating system's TCP keepalive
//! gives up on it, the subscription looks alive but receives nothing.
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::store::invalidation::MemoryBus;
//! use api_keys::store::cached::{CacheConfig, CachedStore};
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

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::BoxError;
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

/// Object-safe publishing, so a [`CachedStore`](crate::store::cached::CachedStore)
/// does not carry the bus type in its own type.
pub(crate) trait Publish: Send + Sync {
    fn publish_boxed<'a>(&'a self, id: &'a KeyId) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>>;
}

impl<B: InvalidationBus> Publish for B {
    fn publish_boxed<'a>(&'a self, id: &'a KeyId) -> Pin<Box<dyn Future<Output = Result<(), BusError>> + Send + 'a>> {
        Box::pin(InvalidationBus::publish(self, id))
    }
}

/// Runs one publish or subscribe within `limit`: a driver error is
/// [`BusError::Unavailable`], an overrun [`BusError::Timeout`].
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn within<T, E: Into<BoxError>>(
    limit: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(BusError::unavailable),
        Err(_) => Err(BusError::Timeout(limit)),
    }
}

/// `name` as a channel name if `valid`, else [`BusError::ChannelName`]
/// with the `rule` it broke.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn channel_name(name: &str, valid: bool, rule: &'static str) -> Result<String, BusError> {
    if valid { Ok(name.to_owned()) } else { Err(BusError::ChannelName(rule)) }
}

/// What every network bus (fields `channel: String`, `timeout: Duration`)
/// offers besides its own constructor and channel rules: the `timeout`
/// option, the `channel_name` getter, and a `Debug` showing both. Defined
/// before the `mod` lines below, so the bus modules see it.
#[cfg(any(feature = "postgres", feature = "redis"))]
macro_rules! channel_options {
    ($bus:ident) => {
        impl $bus {
            /// Time limit for one publish or subscribe. Defaults to
            /// [`DEFAULT_TIMEOUT`](crate::store::DEFAULT_TIMEOUT).
            #[must_use]
            pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
                self.timeout = timeout;
                self
            }

            /// The channel name.
            #[must_use]
            pub fn channel_name(&self) -> &str {
                &self.channel
            }
        }

        impl std::fmt::Debug for $bus {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($bus))
                    .field("channel", &self.channel)
                    .field("timeout", &self.timeout)
                    .finish()
            }
        }
    };
}
/// Parses a received payload; `None` for anything that is not a key id.
#[cfg(any(feature = "postgres", feature = "redis", test))]
fn parse_payload(payload: &[u8]) -> Option<KeyId> {
    std::str::from_utf8(payload).ok().and_then(|s| KeyId::parse(s).ok())
}

#[cfg(any(feature = "postgres", feature = "redis"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "redis"))))]
pub mod any;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

pub use memory::{MemoryBus, MemorySubscription};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresBus, PostgresSubscription};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisBus, RedisSubscription};

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
