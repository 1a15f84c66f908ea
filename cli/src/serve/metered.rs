//! A [`KeyStore`] wrapper that counts the lookups passing through it: one
//! in front of the real store counts store queries (cache misses, what a
//! flood costs the database); one in front of the cache counts every
//! lookup the verifier makes. `/metrics` reports both and their difference.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use api_keys::shield::KeyIds;
use api_keys::{Digest, KeyId, KeyRecord, KeyStore, StoreError};

/// A store that counts its `get` and `get_by_digest` calls.
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    lookups: Arc<AtomicU64>,
}

impl<S> Metered<S> {
    /// Counts `inner`'s lookups into `lookups`.
    pub(crate) fn new(inner: S, lookups: Arc<AtomicU64>) -> Self {
        Self { inner, lookups }
    }

    /// The wrapped store.
    pub(crate) fn inner(&self) -> &S {
        &self.inner
    }

    fn count(&self) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
    }
}

impl<S: KeyStore> KeyStore for Metered<S> {
    // Not lookups: passed on uncounted. `with_record` is left to the trait's
    // default, which looks up with `get` and so is counted.
    api_keys::forward_key_store!(self => self.inner;
        insert, list, revoke, delete, reissue, touch_last_used, pepper_fingerprint, commit, operations, spend_credits,
        list_by_external_id, list_expiring, operation,
    );

    fn get(&self, id: &KeyId) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.count();
        self.inner.get(id)
    }

    fn get_by_digest(
        &self,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.count();
        self.inner.get_by_digest(digest)
    }

    /// Counted as one lookup per batch (one query).
    fn get_many(&self, ids: &[KeyId]) -> impl Future<Output = Result<Vec<Option<Arc<KeyRecord>>>, StoreError>> + Send {
        self.count();
        self.inner.get_many(ids)
    }
}

impl<S: KeyIds> KeyIds for Metered<S> {
    fn ids_after(
        &self,
        after: Option<KeyId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<KeyId>, StoreError>> + Send {
        self.inner.ids_after(after, limit)
    }
}
