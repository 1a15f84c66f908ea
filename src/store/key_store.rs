//! The [`KeyStore`] contract every backend implements: the trait, its error,
//! pagination, and the reissue rules backends that work on whole records share.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::BoxError;
use crate::access_binding::AccessBinding;
use crate::access_policy::AccessPolicyBinding;
use crate::clock::Timestamp;
use crate::controls::{CreditSpend, ExternalId};
use crate::digest::Digest;
use crate::operation::{Actor, Change, LogEntry, Operation, OperationCursor, OperationId};
use crate::record::{KeyRecord, ServiceAccountId};
use crate::resource::{
    Resource, ResourceChange, ResourceCommit, ResourceCursor, ResourceListing, ResourceLogEntry, ResourceName,
    ResourceOperationPage, ResourceOrder, ResourcePage, ResourceRef,
};
use crate::store::feed::{FeedPosition, FeedRead};
use crate::token::KeyId;

use super::idempotency::{IdempotencyKey, IdempotencyRecord};
use super::view::RecordView;

/// What can go wrong in a store. Backends map every driver error into this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or failed; nothing may be accepted.
    #[error("key store unavailable")]
    Unavailable(#[source] BoxError),
    /// The backend did not answer in time; nothing may be accepted.
    #[error("key store did not answer within {0:?}")]
    Timeout(Duration),
    /// `insert` of an id (or imported digest) that already exists.
    #[error("a key with id {0} already exists")]
    Duplicate(KeyId),
    /// No key with this id.
    #[error("key {0} not found")]
    NotFound(KeyId),
    /// The key exists but cannot make this change (e.g. reissuing a revoked
    /// or already reissued key).
    #[error("key {id} cannot be changed: {reason}")]
    Conflict {
        /// The key.
        id: KeyId,
        /// Why.
        reason: &'static str,
    },
    /// [`KeyStore::commit`] of an operation entry whose id is already in
    /// the log; nothing was written.
    #[error("an operation with id {0} is already recorded")]
    DuplicateOperation(OperationId),
    /// The backend returned data that is not a valid record.
    #[error("key store returned an invalid record: {0}")]
    Corrupt(String),
    /// [`KeyStore::commit`] of a change whose log entry claims an
    /// idempotency key the store already holds a live record of (for the
    /// same actor); nothing was written. Read the record with
    /// [`KeyStore::idempotency`].
    #[error("this idempotency key was already used")]
    IdempotencyKeyTaken,
    /// A resource change was refused (an unknown parent, a taken name, a
    /// folder that is not empty, …); nothing was written.
    #[error(transparent)]
    Resource(#[from] crate::resource::ResourceError),
    /// The database was migrated by a newer version of this crate: its
    /// schema is newer than this version understands, so it refuses to read
    /// it rather than misread it.
    #[error(
        "the database schema is version {found}, newer than version {supported} that this version of api-keys \
         supports: upgrade api-keys"
    )]
    SchemaTooNew {
        /// The newest schema version recorded in the database.
        found: i64,
        /// The newest schema version this crate knows.
        supported: i64,
    },
}

impl StoreError {
    /// Wraps a driver error as [`StoreError::Unavailable`].
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }

    /// Whether the store could not answer (unavailable or timed out). Such
    /// errors must never lead to accepting a key.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout(_) | Self::Corrupt(_) | Self::SchemaTooNew { .. })
    }
}

/// What happens to the old key when it is reissued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKeyFate {
    /// Revoked at once (the default after a compromise).
    Revoke,
    /// Stays valid until this instant (a grace period), then expires.
    ExpireAt(Timestamp),
}

/// Keyset pagination request: up to `limit` items after cursor `after`
/// (key listings: a [`KeyId`]; operations logs: an [`OperationCursor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest<C = KeyId> {
    /// Page size, clamped to 1..=[`PageRequest::MAX_LIMIT`].
    pub limit: u32,
    /// Cursor: the `next` of the previous page.
    pub after: Option<C>,
}

/// Largest page.
const MAX_PAGE: u32 = 1000;

impl<C> PageRequest<C> {
    /// Up to `limit` items after `after` (`None`: from the start).
    #[must_use]
    pub fn starting(limit: u32, after: Option<C>) -> Self {
        Self { limit, after }
    }

    /// `limit` clamped to 1..=`MAX_LIMIT`.
    #[must_use]
    pub fn effective_limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE) as usize
    }
}

impl PageRequest {
    /// Largest page (of any listing).
    pub const MAX_LIMIT: u32 = MAX_PAGE;

    /// The first page of `limit` items.
    #[must_use]
    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }

    /// The page after cursor `after`.
    #[must_use]
    pub fn after(limit: u32, after: KeyId) -> Self {
        Self { limit, after: Some(after) }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(100)
    }
}

/// One page of a listing, ordered by its cursor (key listings: by key id;
/// operations logs: newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page<T, C = KeyId> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor for the next page; `None` on the last page.
    pub next: Option<C>,
}

/// One page of a key's operations log ([`KeyStore::operations`]), newest
/// first; `next` is the cursor of the page after it.
pub type OperationPage = Page<Operation, OperationCursor>;

impl<T, C> Page<T, C> {
    /// A page of `items`, followed by the page after cursor `next` (`None`:
    /// this is the last page).
    #[must_use]
    pub fn new(items: Vec<T>, next: Option<C>) -> Self {
        Self { items, next }
    }
}

/// Trims `items`, read with one more than `limit` to learn whether another
/// page follows, to `limit`, and returns the cursor of that next page:
/// `cursor` of the last item kept, or `None` when there is no next page.
pub(crate) fn next_after<T, C>(
    items: &mut Vec<T>,
    limit: usize,
    cursor: impl FnOnce(Option<&T>) -> Option<C>,
) -> Option<C> {
    if items.len() <= limit {
        return None;
    }
    items.truncate(limit);
    cursor(items.last())
}

/// Storage for key records.
///
/// Implementations must be safe to share between tasks. Every method returns
/// a `Send` future; the trait does not depend on any async runtime.
///
/// A backend writes ten methods: the lookups `get`, `get_by_digest` and
/// the listings `list`, `list_by_external_id`, `list_expiring`,
/// `operations`; the one write `commit` (every change, with its log
/// entries); and the three narrow atomic steps `touch_last_used`,
/// `spend_credits`, `pepper_fingerprint`. Everything else is provided:
/// `insert`, `revoke`, `delete` and `reissue` are `commit` without log
/// entries (left alone by implementations, so that a wrapper sees every
/// write in its `commit`); `get_many`, `ids_after`, `with_record` and
/// `lend_now` have defaults a backend overrides to be faster (one query per
/// batch, an id index, lending in place); `operation` and `idempotency`
/// (the records of idempotency claims, written by `commit`) have defaults
/// that fail closed, for a store without them.
///
/// A wrapper (a cache, a shield, a metrics or fault-injecting store) writes
/// only the methods it changes and forwards the rest with
/// `forward_key_store!(self => self.inner; all except [...])`, which holds
/// the one copy of each forwarded signature.
///
/// Contract (checked by the conformance suite behind the `test-util`
/// feature):
/// - `commit` of [`Change::Insert`] fails with [`StoreError::Duplicate`] if
///   the id exists, or if an imported record's digest is already indexed,
///   and writes nothing then;
/// - `get_many` answers like `get` for each id, in the order asked;
/// - `get_by_digest` finds only [`crate::KeyKind::Imported`] records;
/// - `list` orders by id and pages with the id cursor;
/// - `touch_last_used` is one batched write and never moves a time backwards;
///   unknown ids are ignored;
/// - `commit` of [`Change::Reissue`] inserts the new record and updates the
///   old one in one atomic step, refusing ([`StoreError::Conflict`]) an old
///   key that is revoked or already reissued; [`Change::Revoke`] is
///   idempotent; [`Change::Revoke`], [`Change::Delete`] and
///   [`Change::Update`] of an absent key are [`StoreError::NotFound`];
/// - `commit` applies [`Change::Update`] under
///   [`apply_update`](crate::store::apply_update)'s rules and appends
///   its log entries in the same transaction or script: both land or
///   neither; an entry id already logged is
///   [`StoreError::DuplicateOperation`] and writes nothing; a
///   [`Change::Note`] writes only its entries, for a key that exists;
/// - `operations` lists one key's entries newest first (by the store's
///   sequence, not the clock), also after the key was deleted;
/// - `spend_credits` is one atomic step (refill, check and decrement
///   together): concurrent spends never spend more than the key had, and a
///   refill happens once per due instant;
/// - `list_by_external_id` and `list_expiring` order by id across service
///   accounts and page with the id cursor;
/// - `ids_after`, where a store implements it, lists every key id in order,
///   across service accounts;
/// - where a store keeps a change feed, `commit` appends one entry per key
///   it changes in the same transaction or script, and `changes_after`
///   returns them in commit order, never skipping one, or says the feed is
///   broken;
/// - `commit` of entries carrying an idempotency claim records each claim
///   with the change, in the same transaction or script; a claim of a key
///   with a live record (same actor) is [`StoreError::IdempotencyKeyTaken`]
///   and writes nothing; `idempotency` reads live records only;
/// - where a store keeps resources ([`crate::resource`]), `commit_resource`
///   checks the hierarchy's rules before writing, writes the change, its
///   log entry and (for a service account) the deletion of its keys with
///   their log and feed entries in one atomic step, and the reads see a
///   fresh store's default organization, cloud and folder.
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new record: [`KeyStore::commit`] of [`Change::Insert`]
    /// with no log entry.
    ///
    /// Provided for callers; implementations and wrappers leave it alone, so
    /// every write reaches them through `commit`.
    ///
    /// # Errors
    /// As `commit`: [`StoreError::Duplicate`] if the id (or an imported
    /// record's digest) exists.
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        let write = self.commit(Change::Insert(record), &[]);
        async move { write.await.map(drop) }
    }

    /// Fetches a record by id.
    fn get(&self, id: &KeyId) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;

    /// Fetches an imported record by its digest.
    fn get_by_digest(&self, digest: &Digest)
    -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;

    /// Fetches several records by id: one answer per id, in the order of
    /// `ids` (`None` where there is no such record; a repeated id is
    /// answered each time). For batch checks (leak reports, scans): the SQL
    /// stores answer in one statement, Redis in one pipeline. The default
    /// calls [`KeyStore::get`] for each id in turn. Callers keep batches to
    /// a few hundred ids; the stores accept any number.
    ///
    /// # Errors
    /// The store's error, as from `get`; no partial answer.
    fn get_many(&self, ids: &[KeyId]) -> impl Future<Output = Result<Vec<Option<Arc<KeyRecord>>>, StoreError>> + Send {
        async move {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                found.push(self.get(id).await?);
            }
            Ok(found)
        }
    }

    /// Lists a service account's keys by id.
    fn list(
        &self,
        service_account: &ServiceAccountId,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>, StoreError>> + Send;

    /// Marks a key revoked (idempotent): [`KeyStore::commit`] of
    /// [`Change::Revoke`] with no log entry. Provided, as
    /// [`KeyStore::insert`] is.
    ///
    /// # Errors
    /// As `commit`: [`StoreError::NotFound`] if absent.
    fn revoke(&self, id: &KeyId) -> impl Future<Output = Result<(), StoreError>> + Send {
        let write = self.commit(Change::Revoke(*id), &[]);
        async move { write.await.map(drop) }
    }

    /// Removes a key: [`KeyStore::commit`] of [`Change::Delete`] with no
    /// log entry. Provided, as [`KeyStore::insert`] is.
    ///
    /// # Errors
    /// As `commit`: [`StoreError::NotFound`] if absent.
    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<(), StoreError>> + Send {
        let write = self.commit(Change::Delete(*id), &[]);
        async move { write.await.map(drop) }
    }

    /// Atomically inserts `new` (whose `links.reissued_from` is `old`) and
    /// links the old key to it, revoking it or limiting it to a grace
    /// period: [`KeyStore::commit`] of [`Change::Reissue`] with no log
    /// entry. Provided, as [`KeyStore::insert`] is.
    ///
    /// # Errors
    /// As `commit`: [`StoreError::Conflict`] for an old key that is revoked
    /// or already reissued, [`StoreError::NotFound`] if it is absent.
    fn reissue(
        &self,
        old: &KeyId,
        new: KeyRecord,
        fate: OldKeyFate,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let write = self.commit(Change::Reissue { old: *old, new, fate }, &[]);
        async move { write.await.map(drop) }
    }

    /// Records last-used times in one batch.
    fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies `change` and appends `log` (the entries recording it) to the
    /// operations log in one atomic step: both or neither. Each entry is
    /// recorded with the service account of the changed key (the old key of
    /// a reissue), which the store reads in the same step. Returns the
    /// record as updated for [`Change::Update`], `None` for other changes.
    fn commit(
        &self,
        change: Change,
        log: &[LogEntry],
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// One key's operations log, newest first, paged by
    /// [`OperationCursor`]; also for a deleted key.
    fn operations(
        &self,
        key: &KeyId,
        page: PageRequest<OperationCursor>,
    ) -> impl Future<Output = Result<OperationPage, StoreError>> + Send;

    /// The fingerprint recorded for pepper `version`, recording `proposed`
    /// first if there is none (insert-if-absent, atomic: concurrent callers
    /// all get the one that was recorded first). Callers compare the result
    /// with their pepper's [`Pepper::fingerprint`](crate::Pepper::fingerprint).
    fn pepper_fingerprint(
        &self,
        version: u32,
        proposed: Digest,
    ) -> impl Future<Output = Result<Digest, StoreError>> + Send;

    /// Spends `cost` credits of key `id` in one atomic store operation. If
    /// the key has a refill and `due` (the latest refill instant, from
    /// `Refill::last_instant(now)`) is later than its last refill, the
    /// remaining count is first set to the refill amount and the last refill
    /// to `due`, in the same operation. Unlimited if the key has no credits;
    /// NotFound if no key.
    fn spend_credits(
        &self,
        id: &KeyId,
        cost: u64,
        due: Option<Timestamp>,
    ) -> impl Future<Output = Result<CreditSpend, StoreError>> + Send;

    /// Keys whose controls name this external owner id, by key id (keyset pages), across service accounts.
    fn list_by_external_id(
        &self,
        external_id: &ExternalId,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>, StoreError>> + Send;

    /// Active (not revoked) keys that expire within the half-open `window`
    /// (`window.start <= expires_at < window.end`; empty when the end is not
    /// after the start), across service accounts, by key id (keyset pages).
    fn list_expiring(
        &self,
        window: Range<Timestamp>,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<KeyRecord>, StoreError>> + Send;

    /// Every key id greater than `after` (from the start when `None`), in
    /// ascending order: at least `limit` of them unless none are left (a
    /// shorter page is the last; a store may return more than `limit`).
    /// This is what the flood shield
    /// ([`ShieldedStore`](crate::store::shielded::ShieldedStore)) loads.
    ///
    /// The default cannot list ids and answers [`StoreError::Unavailable`]:
    /// a shield in front of such a store never trusts its set, so it never
    /// refuses a key (every lookup goes to the store). Every store of this
    /// crate overrides it with one indexed range query per page (SQL) or a
    /// scan of the record keys (Redis).
    ///
    /// # Errors
    /// The store's error; the default's as above.
    fn ids_after(
        &self,
        after: Option<KeyId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<KeyId>, StoreError>> + Send {
        let _ = (after, limit);
        std::future::ready(Err(StoreError::unavailable("this store cannot list its key ids")))
    }

    /// The current end of the change feed ([module docs](crate::store::feed)):
    /// a reader starting here meets every change committed after this call.
    /// `None` for a store without a feed (the default); a reader then
    /// reloads everything from time to time instead.
    ///
    /// # Errors
    /// The store's error.
    fn feed_head(&self) -> impl Future<Output = Result<Option<FeedPosition>, StoreError>> + Send {
        std::future::ready(Ok(None))
    }

    /// Up to `limit` changes committed after `at`, oldest first, with the
    /// position after them; or why the feed cannot continue from `at`
    /// ([`FeedRead::Broken`]). The default, for a store without a feed,
    /// answers [`StoreError::Unavailable`].
    ///
    /// # Errors
    /// The store's error; the default's as above.
    fn changes_after(&self, at: FeedPosition, limit: u32) -> impl Future<Output = Result<FeedRead, StoreError>> + Send {
        let _ = (at, limit);
        std::future::ready(Err(StoreError::unavailable("this store keeps no change feed")))
    }

    /// Removes up to `limit` feed entries committed before `before` and
    /// records how far pruning went (readers behind it are told
    /// [`FeedBreak::Pruned`](crate::store::feed::FeedBreak::Pruned));
    /// returns how many were removed. The default, for a store without a
    /// feed, removes nothing.
    ///
    /// # Errors
    /// The store's error.
    fn prune_feed(&self, before: Timestamp, limit: u32) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = (before, limit);
        std::future::ready(Ok(0))
    }

    /// Lends the record's fields to `visit` at once, as
    /// [`KeyStore::with_record`] does, if this store can answer without
    /// waiting (an in-memory map, a fresh cache entry): `Ok(what visit
    /// returned)`; otherwise `Err(visit)`, handed back unused, and the
    /// caller asks [`KeyStore::with_record`].
    ///
    /// The verifier tries this first, so a key found in memory is verified
    /// with no future state at all. The default cannot lend now;
    /// [`MemoryStore`](crate::MemoryStore) and the cache's hit path can.
    /// `visit` runs synchronously and must not block.
    ///
    /// # Errors
    /// `Err(visit)` when the store has to wait for its answer; never an
    /// error of the store's (it has not been asked yet).
    fn lend_now<R, F>(&self, id: &KeyId, visit: F) -> Result<R, F>
    where
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R,
    {
        let _ = id;
        Err(visit)
    }

    /// Looks a record up by id and lends the fields verification reads to
    /// `visit` ([`RecordView`], `None` if there is no such record) for the
    /// duration of the call; returns what `visit` returns.
    ///
    /// This is the verifier's lookup. The default fetches the record with
    /// [`KeyStore::get`] and lends a view of it, so every store works
    /// unchanged; a store that keeps records in memory overrides it to lend
    /// them in place, without a copy, a lock or a reference count
    /// ([`MemoryStore`](crate::MemoryStore) does, and so does the cache's hit
    /// path). `visit` runs synchronously and must not block.
    ///
    /// # Errors
    /// The store's error, as from `get`; `visit` is not called then.
    fn with_record<R, F>(&self, id: &KeyId, visit: F) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        R: Send,
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R + Send,
    {
        let fetch = self.get(id);
        async move {
            let found = fetch.await?;
            Ok(visit(found.as_deref().map(RecordView::of)))
        }
    }

    /// One operations log entry by its id (with its response snapshot),
    /// `None` if the log holds no such entry; also after the key was
    /// deleted. The memory, SQL and Redis stores answer it; the default, for
    /// a store without an index of entry ids, fails closed with
    /// [`StoreError::Unavailable`].
    ///
    /// # Errors
    /// The store's error.
    fn operation(&self, id: &OperationId) -> impl Future<Output = Result<Option<Operation>, StoreError>> + Send {
        let _ = id;
        std::future::ready(Err(StoreError::unavailable("this key store cannot look operations up by id")))
    }

    /// The live idempotency record of `actor`'s `key` at `now` (one whose
    /// `expires_at` is after `now`), written by a [`KeyStore::commit`] whose
    /// log entry claimed it; `None` if there is none or it expired. The
    /// memory, SQL and Redis stores answer it; the default, for a store that
    /// keeps no records, fails closed with [`StoreError::Unavailable`] (and
    /// such a store must not be given claims to commit).
    ///
    /// # Errors
    /// The store's error.
    fn idempotency(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send {
        let _ = (actor, key, now);
        std::future::ready(Err(StoreError::unavailable("this key store keeps no idempotency records")))
    }

    /// Applies a resource change ([module docs](crate::resource)) and
    /// records `log` as its entry in the resource's operations log, in one
    /// atomic step: both or neither. Deleting a service account deletes
    /// every key naming it in the same step, with a
    /// [`OperationKind::Delete`](crate::OperationKind::Delete) entry in each
    /// key's log (by `log`'s actor, at its time) and a change feed entry per
    /// key; the keys are returned so that a cache can drop them.
    ///
    /// The memory, SQLite, PostgreSQL and Redis stores keep resources; the
    /// default, for a store that keeps none, fails closed with
    /// [`StoreError::Unavailable`].
    ///
    /// # Errors
    /// [`StoreError::Resource`] for a change the hierarchy refuses
    /// (an unknown resource or parent, a taken name or id, a resource that
    /// still holds others); [`StoreError::DuplicateOperation`] for a log
    /// entry id already recorded; the store's error.
    fn commit_resource(
        &self,
        change: ResourceChange,
        log: &ResourceLogEntry,
    ) -> impl Future<Output = Result<ResourceCommit, StoreError>> + Send {
        let _ = (change, log);
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// One resource by kind and id; `None` if there is none. A service
    /// account's `last_authenticated_at` is the latest `last_used_at` of its
    /// keys, read now.
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn resource(&self, target: &ResourceRef) -> impl Future<Output = Result<Option<Resource>, StoreError>> + Send {
        let _ = target;
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// A page of the resources of `listing` in `order`, after the page's
    /// cursor (keyset pages; an unknown parent lists nothing).
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn list_resources(
        &self,
        listing: &ResourceListing,
        order: ResourceOrder,
        page: PageRequest<ResourceCursor>,
    ) -> impl Future<Output = Result<ResourcePage, StoreError>> + Send {
        let _ = (listing, order, page);
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// The resource of `listing` named `name`, if any (for organizations,
    /// clouds and folders of a cloud, and service accounts of a cloud,
    /// names are unique; among a folder's service accounts too).
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn find_resource(
        &self,
        listing: &ResourceListing,
        name: &ResourceName,
    ) -> impl Future<Output = Result<Option<Resource>, StoreError>> + Send {
        let _ = (listing, name);
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// One resource's operations log, newest first, paged by
    /// [`OperationCursor`]; also after the resource was deleted.
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn resource_operations(
        &self,
        target: &ResourceRef,
        page: PageRequest<OperationCursor>,
    ) -> impl Future<Output = Result<ResourceOperationPage, StoreError>> + Send {
        let _ = (target, page);
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// One resource log entry by id (any resource's, also a deleted
    /// one's), for as long as the log keeps it.
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn resource_operation(
        &self,
        id: &OperationId,
    ) -> impl Future<Output = Result<Option<crate::resource::ResourceOperation>, StoreError>> + Send {
        let _ = id;
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// The access policies bound on `on` (every binding in the store for
    /// `None`), each with the resource it is bound on, ordered by resource
    /// and template. Bindings change through
    /// [`KeyStore::commit_resource`] (bind and unbind); deleting a resource
    /// drops its bindings.
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn access_policy_bindings(
        &self,
        on: Option<&ResourceRef>,
    ) -> impl Future<Output = Result<Vec<(ResourceRef, AccessPolicyBinding)>, StoreError>> + Send {
        let _ = on;
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// The access bindings on `on` (`None`: on every resource), ordered by
    /// resource, role and subject.
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn access_bindings(
        &self,
        on: Option<&ResourceRef>,
    ) -> impl Future<Output = Result<Vec<(ResourceRef, AccessBinding)>, StoreError>> + Send {
        let _ = on;
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }

    /// The sequence number of the newest resource log entry (0 before the
    /// first): it grows with every resource change, so a node that mirrors
    /// resources (the access policies of its verifier) polls it and reads
    /// again only when it moved.
    ///
    /// # Errors
    /// The store's error; the default's as for
    /// [`KeyStore::commit_resource`].
    fn resource_head(&self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        std::future::ready(Err(StoreError::unavailable("this key store keeps no resources")))
    }
}

/// A shared store is the store: every method, `with_record` included, goes to
/// the store behind the `Arc`.
impl<S: KeyStore> KeyStore for Arc<S> {
    crate::forward_key_store!(self => (**self); all except []);
}

/// Applies a reissue to the old record (shared by backends that work on
/// whole records): link it to `new_id` and revoke or limit it.
///
/// # Errors
/// [`StoreError::Conflict`] if the old key is revoked or already reissued.
pub fn apply_reissue(old: &mut KeyRecord, new_id: KeyId, fate: OldKeyFate) -> Result<(), StoreError> {
    check_reissuable(old)?;
    old.links.replaced_by = Some(new_id);
    match fate {
        OldKeyFate::Revoke => old.status = crate::record::KeyStatus::Revoked,
        OldKeyFate::ExpireAt(t) => old.expires_at = Some(old.expires_at.map_or(t, |e| e.min(t))),
    }
    Ok(())
}

/// Refuses to reissue a revoked or already reissued key.
///
/// # Errors
/// [`StoreError::Conflict`] naming the reason.
pub fn check_reissuable(old: &KeyRecord) -> Result<(), StoreError> {
    if old.is_revoked() {
        return Err(StoreError::Conflict { id: old.id, reason: "the key is revoked" });
    }
    if old.links.replaced_by.is_some() {
        return Err(StoreError::Conflict { id: old.id, reason: "the key was already reissued" });
    }
    Ok(())
}
