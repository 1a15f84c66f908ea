//! A [`KeyStore`] wrapper that counts the lookups passing through it: one
//! in front of the real store counts store queries (cache misses, what a
//! flood costs the database); one in front of the cache counts every
//! lookup the verifier makes. `/metrics` reports both and their difference.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use api_keys::controls::{CreditSpend, ExternalId};
use api_keys::shield::KeyIds;
use api_keys::{
    Change, Digest, KeyId, KeyRecord, KeyStore, LogEntry, OldKeyFate, Operation, OperationCursor, Page, PageRequest,
    ServiceAccountId, StoreError, Timestamp,
};

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
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.insert(record)
    }

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

    fn list(
        &self,
        service_account: &ServiceAccountId,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>, StoreError>> + Send {
        self.inner.list(service_account, page)
    }

    fn revoke(&self, id: &KeyId) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.revoke(id)
    }

    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.delete(id)
    }

    fn reissue(
        &self,
        old: &KeyId,
        new: KeyRecord,
        fate: OldKeyFate,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.reissue(old, new, fate)
    }

    fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.touch_last_used(updates)
    }

    fn pepper_fingerprint(
        &self,
        version: u32,
        proposed: Digest,
    ) -> impl Future<Output = Result<Digest, StoreError>> + Send {
        self.inner.pepper_fingerprint(version, proposed)
    }

    fn commit(
        &self,
        change: Change,
        log: &[LogEntry],
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        self.inner.commit(change, log)
    }

    fn operations(
        &self,
        key: &KeyId,
        page: PageRequest<OperationCursor>,
    ) -> impl Future<Output = Result<Page<Operation, OperationCursor>, StoreError>> + Send {
        self.inner.operations(key, page)
    }

    fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        refill_due: Option<Timestamp>,
    ) -> impl Future<Output = Result<CreditSpend, StoreError>> + Send {
        self.inner.spend_credits(id, cost, refill_due)
    }

    fn list_by_external_id(
        &self,
        external_id: &ExternalId,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>, StoreError>> + Send {
        self.inner.list_by_external_id(external_id, page)
    }

    fn list_expiring(
        &self,
        from: Timestamp,
        until: Timestamp,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>, StoreError>> + Send {
        self.inner.list_expiring(from, until, page)
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
