//! [`MemoryBus`]: in-process invalidation over a Tokio broadcast channel.

use std::fmt;
use std::future::Future;

use super::{BusError, InvalidationBus, InvalidationSubscription};
use crate::token::KeyId;

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
