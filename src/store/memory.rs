//! A concurrent in-memory [`KeyStore`] whose reads take no lock.
//!
//! Records live in one lock-free hash map ([`papaya`]) keyed by id. A read
//! (`get`, and the verifier's [`KeyStore::with_record`]) takes no lock and
//! bumps no reference count: it enters an epoch guard (on Linux a plain
//! store plus a compiler fence, as papaya's reclaimer uses asymmetric
//! `membarrier` barriers; leaving it is one uncontended exchange on a
//! thread-local line), follows the table slot to the entry and lends the
//! entry's fields in place. Each entry is one allocation holding the id and
//! the whole record, the fields verification reads at its end, next to the
//! id, so one verify touches one entry and two or three of its cache lines.
//!
//! Entries are immutable: every change (revoke, reissue, last-used writes)
//! replaces the entry through papaya's atomic `compute`, a compare-and-swap
//! retried on a concurrent change, so no update is lost (a reissue racing a
//! last-used write keeps both). Mutations other than last-used writes are
//! serialised by one writer mutex (they are rare), which also guards the
//! per-account index and the digest index of imported keys.
//!
//! Service account ids and scope sets are interned process-wide
//! ([`RecordView`]), so a million keys over the same scopes share one scope
//! list and an entry holds two pointers for them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use papaya::{Compute, Operation as MapOp, ResizeMode};

use super::feed::{FeedBreak, FeedChange, FeedPosition, FeedRead};
use super::idempotency::{IdempotencyClaim, IdempotencyKey, IdempotencyRecord, PURGE_BATCH};
use super::key_store::{
    KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError, apply_reissue, check_reissuable,
};
use super::memory_resources::Resources;
use super::view::{RecordView, intern_account, intern_scopes};
use crate::clock::Timestamp;
use crate::controls::{CreditSpend, ExternalId, KeyControls};
use crate::digest::Digest;
use crate::operation::{Actor, Change, LogEntry, Operation, OperationCursor, OperationId, apply_update};
use crate::record::{Description, KeyKind, KeyRecord, KeyStatus, ReissueLinks, ServiceAccountId};
use crate::resource::{
    Resource, ResourceChange, ResourceCommit, ResourceCursor, ResourceListing, ResourceLogEntry, ResourceName,
    ResourceOperationPage, ResourceOrder, ResourcePage, ResourceRef,
};
use crate::scope::ScopeSet;
use crate::secret::MaskedKey;
use crate::token::KeyId;
/// Hashes a [`KeyId`] by folding its random characters: ids are generated
/// from the OS CSPRNG, so no keyed hash is needed to spread them, and lookups
/// of attacker-chosen ids can only probe, not insert. Every byte reaches
/// every bit of the result (splitmix64's finaliser over the folded words):
/// papaya takes the slot from the low bits and the tag from the high bits,
/// so both must be well mixed (a weaker fold cost ~8% at a million keys in
/// longer probes).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Independent multiplies per 8-byte word (they run in parallel),
        // then one finaliser.
        const K: [u64; 4] =
            [0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F, 0x1656_67B1_9E37_79F9, 0xD6E8_FEB8_6659_FD93];
        let mut h = self.0 ^ bytes.len() as u64;
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h ^= u64::from_le_bytes(w).wrapping_mul(K[i % K.len()]).rotate_left(i as u32 * 17);
        }
        self.0 = splitmix(h);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s (also the cache's hit index hasher).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BuildIdHasher;

impl BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// Never noted (the value of [`Stored::seen`] before the first use).
const NEVER: i64 = i64::MIN;

/// One record as the store keeps it; the id is the map key.
///
/// `repr(C)` with the fields verification reads first: papaya's entry puts
/// the id just before the value, so the id and the hot fields (about 100
/// bytes) are contiguous and a verify touches two cache lines of the entry;
/// what only listings read comes last.
#[repr(C)]
struct Stored {
    pepper_version: u32,
    status: KeyStatus,
    enabled: bool,
    kind: KeyKind,
    controls: Option<Arc<KeyControls>>,
    expires_at: Option<Timestamp>,
    last_used_at: Option<Timestamp>,
    /// When the verifier last handed a use of this key to its last-used
    /// queue (unix nanos, [`NEVER`] before): see [`RecordView`].
    seen: AtomicI64,
    service_account_id: &'static ServiceAccountId,
    scopes: &'static ScopeSet,
    digest: Digest,
    created_at: Timestamp,
    description: Description,
    links: ReissueLinks,
    masked_key: MaskedKey,
}

impl Clone for Stored {
    fn clone(&self) -> Self {
        Self {
            description: self.description.clone(),
            created_at: self.created_at,
            links: self.links,
            masked_key: self.masked_key,
            kind: self.kind,
            status: self.status,
            enabled: self.enabled,
            controls: self.controls.clone(),
            pepper_version: self.pepper_version,
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            seen: AtomicI64::new(self.seen.load(Ordering::Relaxed)),
            service_account_id: self.service_account_id,
            scopes: self.scopes,
            digest: self.digest,
        }
    }
}

impl Stored {
    fn from_record(record: KeyRecord) -> (KeyId, Self) {
        let stored = Self {
            description: record.description,
            created_at: record.created_at,
            links: record.links,
            masked_key: record.masked_key,
            kind: record.kind,
            status: record.status,
            enabled: record.enabled,
            controls: record.controls,
            pepper_version: record.pepper_version,
            expires_at: record.expires_at,
            last_used_at: record.last_used_at,
            seen: AtomicI64::new(NEVER),
            service_account_id: intern_account(&record.service_account_id),
            scopes: intern_scopes(&record.scopes),
            digest: record.digest,
        };
        (record.id, stored)
    }

    fn to_record(&self, id: KeyId) -> KeyRecord {
        KeyRecord {
            id,
            service_account_id: self.service_account_id.clone(),
            description: self.description.clone(),
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            masked_key: self.masked_key,
            pepper_version: self.pepper_version,
            digest: self.digest,
            status: self.status,
            enabled: self.enabled,
            kind: self.kind,
            controls: self.controls.clone(),
            links: self.links,
        }
    }

    fn view(&self, id: KeyId) -> RecordView<'_> {
        RecordView {
            id,
            pepper_version: self.pepper_version,
            digest: &self.digest,
            status: self.status,
            enabled: self.enabled,
            kind: self.kind,
            controls: self.controls.as_ref(),
            expires_at: self.expires_at,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            scopes: self.scopes,
            service_account_id: self.service_account_id,
            seen: Some(&self.seen),
        }
    }
}

type Map = papaya::HashMap<KeyId, Stored, BuildIdHasher>;

/// What the writer mutex guards: the indexes only writers use.
#[derive(Default)]
struct Index {
    by_account: BTreeMap<&'static ServiceAccountId, BTreeSet<KeyId>>,
    by_external: BTreeMap<ExternalId, BTreeSet<KeyId>>,
    digests: HashMap<[u8; 32], KeyId>,
    log: OperationsLog,
    claims: Claims,
    feed: Feed,
    resources: Resources,
}

/// The change feed: the latest [`Feed::KEEP`] entries (older ones are
/// dropped and count as pruned, so memory stays bounded; a reader that far
/// behind reloads, which is cheap in memory).
struct Feed {
    epoch: u64,
    /// Sequence of `entries[0]`; sequences start at 1.
    first: u64,
    entries: VecDeque<(Timestamp, FeedChange)>,
}

impl Default for Feed {
    fn default() -> Self {
        Self { epoch: crate::store::feed::random_epoch(), first: 1, entries: VecDeque::new() }
    }
}

impl Feed {
    const KEEP: usize = 1 << 16;

    /// The sequence of the newest entry (0 for none).
    fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    fn head(&self) -> FeedPosition {
        FeedPosition::new(self.epoch, 0, self.last())
    }

    fn append(&mut self, entries: Vec<FeedChange>) {
        let now = Timestamp::now();
        for e in entries {
            if self.entries.len() >= Self::KEEP {
                self.entries.pop_front();
                self.first += 1;
            }
            self.entries.push_back((now, e));
        }
    }

    fn after(&self, at: FeedPosition, limit: u32) -> FeedRead {
        let (major, seen) = at.parts();
        if at.epoch() != self.epoch {
            return FeedRead::Broken(FeedBreak::OtherStore);
        }
        if (major, seen) > (0, self.last()) {
            return FeedRead::Broken(FeedBreak::Backwards);
        }
        if seen + 1 < self.first {
            return FeedRead::Broken(FeedBreak::Pruned);
        }
        let skip = usize::try_from(seen + 1 - self.first).unwrap_or(usize::MAX);
        let changes: Vec<FeedChange> = self.entries.iter().skip(skip).take(limit as usize).map(|(_, c)| *c).collect();
        FeedRead::Changes { next: FeedPosition::new(self.epoch, 0, seen + changes.len() as u64), changes }
    }

    fn prune(&mut self, before: Timestamp, limit: u32) -> u64 {
        let mut n = 0;
        while n < u64::from(limit) && self.entries.front().is_some_and(|(at, _)| *at < before) {
            self.entries.pop_front();
            self.first += 1;
            n += 1;
        }
        n
    }
}

impl Index {
    /// Moves `id` in the external-id index from `old` to `new`.
    fn reindex_external(&mut self, id: KeyId, old: Option<&ExternalId>, new: Option<&ExternalId>) {
        if old == new {
            return;
        }
        if let Some(old) = old
            && let Some(set) = self.by_external.get_mut(old)
        {
            set.remove(&id);
            if set.is_empty() {
                self.by_external.remove(old);
            }
        }
        if let Some(new) = new {
            self.by_external.entry(new.clone()).or_default().insert(id);
        }
    }
}

/// The external owner id of a stored entry.
fn external_of(s: &Stored) -> Option<&ExternalId> {
    s.controls.as_ref().and_then(|c| c.external_id.as_ref())
}

/// The first `limit` ids of `set` after `after`, and the next cursor.
fn id_page(set: Option<&BTreeSet<KeyId>>, page: PageRequest) -> (Vec<KeyId>, Option<KeyId>) {
    let limit = page.effective_limit();
    let mut ids: Vec<KeyId> = match (set, page.after) {
        (Some(set), Some(after)) => {
            set.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)).take(limit + 1).copied().collect()
        }
        (Some(set), None) => set.iter().take(limit + 1).copied().collect(),
        (None, _) => Vec::new(),
    };
    let next = if ids.len() > limit {
        ids.truncate(limit);
        ids.last().copied()
    } else {
        None
    };
    (ids, next)
}

/// The operations log: each key's entries in sequence order (kept after the
/// key is deleted), and every entry id.
#[derive(Default)]
struct OperationsLog {
    by_key: HashMap<KeyId, Vec<(u64, Arc<Operation>)>>,
    ids: HashMap<OperationId, Arc<Operation>>,
    seq: u64,
}

impl OperationsLog {
    /// Refuses entries whose ids are logged already (or repeated).
    fn check(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        for e in entries {
            if self.ids.contains_key(&e.id) || !seen.insert(e.id) {
                return Err(StoreError::DuplicateOperation(e.id));
            }
        }
        Ok(())
    }

    fn append(&mut self, entries: &[LogEntry], service_account: &ServiceAccountId) {
        for e in entries {
            self.seq += 1;
            let op = Arc::new(e.recorded(service_account));
            self.ids.insert(e.id, Arc::clone(&op));
            self.by_key.entry(e.key_id).or_default().push((self.seq, op));
        }
    }

    fn page(&self, key: &KeyId, page: PageRequest<OperationCursor>) -> Page<Operation, OperationCursor> {
        let limit = page.effective_limit();
        let entries = self.by_key.get(key).map_or(&[][..], Vec::as_slice);
        let before = page.after.map_or(u64::MAX, OperationCursor::get);
        let mut items: Vec<_> = entries.iter().rev().filter(|(seq, _)| *seq < before).take(limit + 1).collect();
        let next = crate::store::key_store::next_after(&mut items, limit, |last| {
            last.map(|(seq, _)| OperationCursor::new(*seq))
        });
        Page { items: items.into_iter().map(|(_, e)| Operation::clone(e)).collect(), next }
    }
}

/// The claims of log entries, with the ids they name.
fn claims_of(entries: &[LogEntry]) -> impl Iterator<Item = (&IdempotencyClaim, OperationId)> {
    entries.iter().filter_map(|e| e.idempotency.as_ref().map(|c| (c, e.id)))
}

/// The idempotency records, under the writer lock with the records they
/// name; `order` lists them as written (with their expiry), for the
/// bounded purge.
#[derive(Default)]
struct Claims {
    live: HashMap<(Actor, IdempotencyKey), IdempotencyRecord>,
    order: VecDeque<(Timestamp, (Actor, IdempotencyKey))>,
}

impl Claims {
    /// Refuses claims of a key with a live record (or claimed twice).
    fn check<'a>(
        &self,
        claims: impl IntoIterator<Item = (&'a IdempotencyClaim, OperationId)>,
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        for (c, _) in claims {
            let taken = self.live.get(&(c.actor.clone(), c.key)).is_some_and(|r| r.claim.is_live_at(c.created_at));
            if taken || !seen.insert((c.actor.clone(), c.key)) {
                return Err(StoreError::IdempotencyKeyTaken);
            }
        }
        Ok(())
    }

    /// Records the entries' claims, replacing expired records, and purges
    /// up to [`PURGE_BATCH`] expired ones from the oldest.
    fn record<'a>(&mut self, claims: impl IntoIterator<Item = (&'a IdempotencyClaim, OperationId)>) {
        for (c, id) in claims {
            let at = (c.actor.clone(), c.key);
            self.live.insert(at.clone(), IdempotencyRecord::new(c.clone(), id));
            self.order.push_back((c.expires_at, at));
            self.purge(c.created_at);
        }
    }

    /// Drops up to [`PURGE_BATCH`] order entries expired by `now`, and
    /// their records unless a later claim replaced them.
    fn purge(&mut self, now: Timestamp) {
        for _ in 0..PURGE_BATCH {
            match self.order.front() {
                Some((expires, _)) if *expires <= now => {}
                _ => return,
            }
            if let Some((expires, at)) = self.order.pop_front()
                && self.live.get(&at).is_some_and(|r| r.claim.expires_at == expires)
            {
                self.live.remove(&at);
            }
        }
    }

    fn find(&self, actor: &Actor, key: &IdempotencyKey, now: Timestamp) -> Option<IdempotencyRecord> {
        self.live.get(&(actor.clone(), *key)).filter(|r| r.claim.is_live_at(now)).cloned()
    }
}

/// The in-memory store. Cheap to share behind an `Arc`; data is lost on drop.
pub struct MemoryStore {
    keys: Map,
    writer: Mutex<Index>,
    peppers: Mutex<HashMap<u32, Digest>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("keys", &self.len()).finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty store sized for about `keys` records.
    #[must_use]
    pub fn with_capacity(keys: usize) -> Self {
        // Blocking resizes: a resize finishes before writers go on, so a
        // read never has to look in two tables.
        let keys =
            papaya::HashMap::builder().capacity(keys).hasher(BuildIdHasher).resize_mode(ResizeMode::Blocking).build();
        Self { keys, writer: Mutex::default(), peppers: Mutex::default() }
    }

    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `limit` smallest ids greater than `after`, ascending (for the
    /// flood shield's loads): one pass over the index, then a partial sort.
    fn ids_page(&self, after: Option<KeyId>, limit: usize) -> Vec<KeyId> {
        let keys = self.keys.pin();
        let mut ids: Vec<KeyId> = keys.keys().copied().filter(|id| after.is_none_or(|a| *id > a)).collect();
        if ids.len() > limit && limit > 0 {
            ids.select_nth_unstable(limit - 1);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids
    }

    fn get_now(&self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        self.keys.pin().get(id).map(|s| Arc::new(s.to_record(*id)))
    }

    fn insert_now(&self, index: &mut Index, record: KeyRecord) -> Result<(), StoreError> {
        let imported = record.kind == KeyKind::Imported;
        if self.keys.pin().contains_key(&record.id)
            || (imported && index.digests.contains_key(record.digest.as_bytes()))
        {
            return Err(StoreError::Duplicate(record.id));
        }
        let (id, stored) = Stored::from_record(record);
        if imported {
            index.digests.insert(*stored.digest.as_bytes(), id);
        }
        index.by_account.entry(stored.service_account_id).or_default().insert(id);
        index.reindex_external(id, None, external_of(&stored));
        self.keys.pin().insert(id, stored);
        Ok(())
    }

    /// Replaces the entry of `id` with `f` applied to a copy of it, in one
    /// atomic step (retried if the entry changed meanwhile).
    fn update<F>(&self, id: &KeyId, mut f: F) -> Result<(), StoreError>
    where
        F: FnMut(&mut Stored) -> Result<(), StoreError>,
    {
        let map = self.keys.pin();
        let outcome = map.compute(*id, |current| match current {
            None => MapOp::Abort(StoreError::NotFound(*id)),
            Some((_, stored)) => {
                let mut next = stored.clone();
                match f(&mut next) {
                    Ok(()) => MapOp::Insert(next),
                    Err(e) => MapOp::Abort(e),
                }
            }
        });
        match outcome {
            Compute::Aborted(e) => Err(e),
            _ => Ok(()),
        }
    }

    fn revoke_now(&self, id: &KeyId) -> Result<(), StoreError> {
        self.update(id, |s| {
            s.status = KeyStatus::Revoked;
            Ok(())
        })
    }

    /// A reissue under the writer lock.
    fn reissue_now(&self, index: &mut Index, old: &KeyId, new: KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
        // Validate the old key's change before writing anything (writers are
        // serialised, so only last-used writes can change it meanwhile, and
        // they cannot make it unreissuable).
        let current = self.get_now(old).ok_or(StoreError::NotFound(*old))?;
        check_reissuable(&current)?;
        let new_id = new.id;
        self.insert_now(index, new)?;
        // The old key's change is applied to its entry as it is now, in one
        // atomic step: a concurrent last-used write is kept, not overwritten
        // by a copy taken before it.
        let applied = self.update(old, |s| {
            let mut record = s.to_record(*old);
            apply_reissue(&mut record, new_id, fate)?;
            s.links = record.links;
            s.status = record.status;
            s.expires_at = record.expires_at;
            Ok(())
        });
        if applied.is_err() {
            // Cannot happen while writers are serialised; undo the insert
            // rather than leave half a reissue.
            let _ = self.delete_now(index, &new_id);
        }
        applied
    }

    /// Description, scopes, expiry, enabled flag and controls, applied to
    /// the entry as it is now in one atomic step (a concurrent last-used
    /// write or credit spend is kept unless the update sets credits);
    /// returns the changed record. Runs under the writer lock, which guards
    /// the external-id index it keeps in step.
    fn update_now(
        &self,
        index: &mut Index,
        id: &KeyId,
        update: &crate::operation::KeyUpdate,
    ) -> Result<KeyRecord, StoreError> {
        let mut changed = None;
        let mut old_external = None;
        self.update(id, |s| {
            let mut record = s.to_record(*id);
            apply_update(&mut record, update)?;
            old_external = external_of(s).cloned();
            s.description = record.description.clone();
            s.scopes = intern_scopes(&record.scopes);
            s.expires_at = record.expires_at;
            s.enabled = record.enabled;
            s.controls.clone_from(&record.controls);
            changed = Some(record);
            Ok(())
        })?;
        let record = changed.ok_or(StoreError::NotFound(*id))?;
        index.reindex_external(*id, old_external.as_ref(), record.controls().external_id.as_ref());
        Ok(record)
    }

    /// Spends credits in one atomic `compute` of the entry (retried on a
    /// concurrent change, so two spends never both see the same count).
    /// Lends the record's fields in place: no copy, no lock, no reference
    /// count (the map's guard keeps the entry alive during `visit`).
    fn lend<R>(&self, id: &KeyId, visit: impl for<'v> FnOnce(Option<RecordView<'v>>) -> R) -> R {
        let map = self.keys.pin();
        visit(map.get(id).map(|s| s.view(*id)))
    }

    fn spend_now(&self, id: &KeyId, cost: u64, refill_due: Option<Timestamp>) -> Result<CreditSpend, StoreError> {
        let map = self.keys.pin();
        let mut outcome = CreditSpend::Unlimited;
        let result = map.compute(*id, |current| {
            let Some((_, s)) = current else {
                return MapOp::Abort(Some(StoreError::NotFound(*id)));
            };
            let Some(credits) = s.controls.as_ref().and_then(|c| c.credits) else {
                outcome = CreditSpend::Unlimited;
                return MapOp::Abort(None);
            };
            let (spend, next_credits) = credits.spend(cost, refill_due);
            outcome = spend;
            let Some(next_credits) = next_credits else {
                return MapOp::Abort(None);
            };
            let mut next = s.clone();
            let mut controls = KeyControls::clone(s.controls.as_deref().unwrap_or(&KeyControls::NONE));
            controls.credits = Some(next_credits);
            next.controls = Some(Arc::new(controls));
            MapOp::Insert(next)
        });
        match result {
            Compute::Aborted(Some(e)) => Err(e),
            _ => Ok(outcome),
        }
    }

    /// A page of the keys `filter` selects, by id, over the whole map (for
    /// listings without an index: the memory store holds every record in
    /// reach, and these are operator listings).
    fn scan_page(&self, page: PageRequest, filter: impl Fn(&Stored) -> bool) -> Page<KeyRecord> {
        let limit = page.effective_limit();
        let map = self.keys.pin();
        let mut ids: Vec<KeyId> =
            map.iter().filter(|(id, s)| page.after.is_none_or(|a| **id > a) && filter(s)).map(|(id, _)| *id).collect();
        if ids.len() > limit + 1 {
            ids.select_nth_unstable(limit);
            ids.truncate(limit + 1);
        }
        ids.sort_unstable();
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().copied()
        } else {
            None
        };
        let items = ids.iter().filter_map(|id| map.get(id).map(|s| s.to_record(*id))).collect();
        Page { items, next }
    }

    /// Applies a change under the writer lock; every check runs before the
    /// first write, so a refused change writes nothing.
    fn apply(&self, index: &mut Index, change: Change) -> Result<Option<KeyRecord>, StoreError> {
        match change {
            Change::Insert(record) => self.insert_now(index, record).map(|()| None),
            Change::Update { id, update } => self.update_now(index, &id, &update).map(Some),
            Change::Revoke(id) => self.revoke_now(&id).map(|()| None),
            Change::Delete(id) => self.delete_now(index, &id).map(|()| None),
            Change::Reissue { old, new, fate } => self.reissue_now(index, &old, new, fate).map(|()| None),
            // `commit` found the key (its account) under the writer lock.
            Change::Note(_) => Ok(None),
        }
    }

    fn list_now(&self, service_account: &ServiceAccountId, page: PageRequest) -> Page<KeyRecord> {
        let (ids, next) = id_page(lock(&self.writer).by_account.get(service_account), page);
        self.page_of(&ids, next)
    }

    fn list_external_now(&self, external_id: &ExternalId, page: PageRequest) -> Page<KeyRecord> {
        let (ids, next) = id_page(lock(&self.writer).by_external.get(external_id), page);
        self.page_of(&ids, next)
    }

    /// The records of `ids` (skipping any deleted meanwhile).
    fn page_of(&self, ids: &[KeyId], next: Option<KeyId>) -> Page<KeyRecord> {
        let map = self.keys.pin();
        let items = ids.iter().filter_map(|id| map.get(id).map(|s| s.to_record(*id))).collect();
        Page { items, next }
    }

    /// A resource as read: a service account's `last_authenticated_at`
    /// from its keys' last uses.
    fn with_last_use(&self, index: &Index, resource: Resource) -> Resource {
        match resource {
            Resource::ServiceAccount(mut sa) => {
                let map = self.keys.pin();
                sa.last_authenticated_at = index
                    .by_account
                    .get(&sa.id)
                    .and_then(|ids| ids.iter().filter_map(|id| map.get(id).and_then(|s| s.last_used_at)).max());
                Resource::ServiceAccount(sa)
            }
            other => other,
        }
    }

    /// A resource change under the writer lock: every check (and every
    /// fallible step, the key log entries' ids included) runs before the
    /// first write.
    fn commit_resource_now(
        &self,
        index: &mut Index,
        change: ResourceChange,
        log: &ResourceLogEntry,
    ) -> Result<ResourceCommit, StoreError> {
        index.resources.check_log(log)?;
        index.claims.check(log.claim())?;
        let doomed: Option<(ServiceAccountId, Vec<KeyId>)> = match &change {
            ResourceChange::Delete(ResourceRef::ServiceAccount(sa)) => Some((
                sa.clone(),
                index.by_account.get(sa).map(|ids| ids.iter().copied().collect()).unwrap_or_default(),
            )),
            _ => None,
        };
        let plan = index.resources.plan(change)?;
        let mut deleted = Vec::new();
        if let Some((account, keys)) = doomed {
            let entries = log.key_deletes(&keys)?;
            index.log.check(&entries)?;
            for k in &keys {
                // Found under this lock a moment ago.
                self.delete_now(index, k)?;
            }
            index.feed.append(keys.iter().map(|k| FeedChange::new(*k, true)).collect());
            index.log.append(&entries, &account);
            deleted = keys;
        }
        let left = index.resources.apply(plan, log);
        index.claims.record(log.claim());
        Ok(ResourceCommit::new(left, deleted))
    }

    fn delete_now(&self, index: &mut Index, id: &KeyId) -> Result<(), StoreError> {
        let map = self.keys.pin();
        let Some(stored) = map.remove(id) else {
            return Err(StoreError::NotFound(*id));
        };
        if stored.kind == KeyKind::Imported {
            index.digests.remove(stored.digest.as_bytes());
        }
        index.reindex_external(*id, external_of(stored), None);
        if let Some(set) = index.by_account.get_mut(stored.service_account_id) {
            set.remove(id);
            if set.is_empty() {
                index.by_account.remove(stored.service_account_id);
            }
        }
        Ok(())
    }
}

/// Every method does its work when the future is first polled (like a real
/// backend), never at call time, and is ready at once: the memory store never
/// waits.
impl KeyStore for MemoryStore {
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(self.get_now(id))
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let id = lock(&self.writer).digests.get(digest.as_bytes()).copied();
        Ok(id.and_then(|id| self.get_now(&id)))
    }

    async fn get_many(&self, ids: &[KeyId]) -> Result<Vec<Option<Arc<KeyRecord>>>, StoreError> {
        let map = self.keys.pin();
        Ok(ids.iter().map(|id| map.get(id).map(|s| Arc::new(s.to_record(*id)))).collect())
    }

    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        Ok(self.list_now(service_account, page))
    }

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        let mut index = lock(&self.writer);
        index.log.check(log)?;
        index.claims.check(claims_of(log))?;
        let account = match &change {
            Change::Insert(r) => r.service_account_id.clone(),
            other => {
                let id = other.key_id();
                self.get_now(&id).ok_or(StoreError::NotFound(id))?.service_account_id.clone()
            }
        };
        let entries = crate::store::feed::entries_of(&change);
        let out = self.apply(&mut index, change)?;
        index.feed.append(entries);
        index.log.append(log, &account);
        index.claims.record(claims_of(log));
        Ok(out)
    }

    async fn feed_head(&self) -> Result<Option<FeedPosition>, StoreError> {
        Ok(Some(lock(&self.writer).feed.head()))
    }

    async fn changes_after(&self, at: FeedPosition, limit: u32) -> Result<FeedRead, StoreError> {
        Ok(lock(&self.writer).feed.after(at, limit))
    }

    async fn prune_feed(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError> {
        Ok(lock(&self.writer).feed.prune(before, limit))
    }

    async fn idempotency(
        &self,
        actor: &Actor,
        key: &IdempotencyKey,
        now: Timestamp,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(lock(&self.writer).claims.find(actor, key, now))
    }

    async fn operations(&self, key: &KeyId, page: PageRequest<OperationCursor>) -> Result<OperationPage, StoreError> {
        Ok(lock(&self.writer).log.page(key, page))
    }

    async fn operation(&self, id: &OperationId) -> Result<Option<Operation>, StoreError> {
        Ok(lock(&self.writer).log.ids.get(id).map(|op| Operation::clone(op)))
    }

    async fn commit_resource(
        &self,
        change: ResourceChange,
        log: &ResourceLogEntry,
    ) -> Result<ResourceCommit, StoreError> {
        let mut index = lock(&self.writer);
        self.commit_resource_now(&mut index, change, log)
    }

    async fn resource(&self, target: &ResourceRef) -> Result<Option<Resource>, StoreError> {
        let index = lock(&self.writer);
        Ok(index.resources.get(target).cloned().map(|r| self.with_last_use(&index, r)))
    }

    async fn list_resources(
        &self,
        listing: &ResourceListing,
        order: ResourceOrder,
        page: PageRequest<ResourceCursor>,
    ) -> Result<ResourcePage, StoreError> {
        let index = lock(&self.writer);
        let found = index.resources.page(listing, order, &page);
        Ok(Page { items: found.items.into_iter().map(|r| self.with_last_use(&index, r)).collect(), next: found.next })
    }

    async fn find_resource(
        &self,
        listing: &ResourceListing,
        name: &ResourceName,
    ) -> Result<Option<Resource>, StoreError> {
        let index = lock(&self.writer);
        Ok(index.resources.find(listing, name).map(|r| self.with_last_use(&index, r)))
    }

    async fn resource_operations(
        &self,
        target: &ResourceRef,
        page: PageRequest<OperationCursor>,
    ) -> Result<ResourceOperationPage, StoreError> {
        Ok(lock(&self.writer).resources.operations(target, &page))
    }

    async fn access_policy_bindings(
        &self,
        on: Option<&ResourceRef>,
    ) -> Result<Vec<(ResourceRef, crate::access_policy::AccessPolicyBinding)>, StoreError> {
        Ok(lock(&self.writer).resources.bindings(on))
    }

    async fn access_bindings(
        &self,
        on: Option<&ResourceRef>,
    ) -> Result<Vec<(ResourceRef, crate::access_binding::AccessBinding)>, StoreError> {
        Ok(lock(&self.writer).resources.access_bindings(on))
    }

    async fn resource_operation(
        &self,
        id: &OperationId,
    ) -> Result<Option<crate::resource::ResourceOperation>, StoreError> {
        Ok(lock(&self.writer).resources.operation(id))
    }

    async fn resource_head(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.writer).resources.head())
    }

    async fn pepper_fingerprint(&self, version: u32, proposed: Digest) -> Result<Digest, StoreError> {
        Ok(*lock(&self.peppers).entry(version).or_insert(proposed))
    }

    async fn spend_credits(&self, id: &KeyId, cost: u64, due: Option<Timestamp>) -> Result<CreditSpend, StoreError> {
        self.spend_now(id, cost, due)
    }

    async fn list_by_external_id(
        &self,
        external_id: &ExternalId,
        page: PageRequest,
    ) -> Result<Page<KeyRecord>, StoreError> {
        Ok(self.list_external_now(external_id, page))
    }

    async fn list_expiring(&self, window: Range<Timestamp>, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        let Range { start: from, end: until } = window;
        Ok(self
            .scan_page(page, |s| s.status == KeyStatus::Active && s.expires_at.is_some_and(|e| from <= e && e < until)))
    }

    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        let map = self.keys.pin();
        for (id, at) in updates {
            map.compute(*id, |current| match current {
                Some((_, s)) if s.last_used_at.is_none_or(|t| t < *at) => {
                    let mut next = s.clone();
                    next.last_used_at = Some(*at);
                    MapOp::Insert(next)
                }
                _ => MapOp::Abort(()),
            });
        }
        Ok(())
    }

    async fn ids_after(&self, after: Option<KeyId>, limit: u32) -> Result<Vec<KeyId>, StoreError> {
        Ok(self.ids_page(after, limit as usize))
    }

    fn with_record<R, F>(&self, id: &KeyId, visit: F) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        R: Send,
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R + Send,
    {
        let out = self.lend(id, visit);
        async move { Ok(out) }
    }

    fn lend_now<R, F>(&self, id: &KeyId, visit: F) -> Result<R, F>
    where
        F: for<'v> FnOnce(Option<RecordView<'v>>) -> R,
    {
        Ok(self.lend(id, visit))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::operation::{OperationChanges, OperationKind};
    use crate::store::idempotency::IdempotencyClaim;

    fn claimed(n: u8, at: Timestamp) -> LogEntry {
        let key = KeyId::generate().unwrap();
        let claim = IdempotencyClaim::new(
            Actor::system(),
            IdempotencyKey::from_bytes([n; 32]),
            [0; 32],
            at,
            Duration::from_secs(60),
        );
        LogEntry::new(key, OperationKind::Create, Actor::system(), at, OperationChanges::default())
            .unwrap()
            .with_idempotency(claim)
    }

    #[test]
    fn expired_claims_are_purged_a_batch_at_a_time_and_a_renewed_one_is_kept() {
        let t0 = Timestamp::from_unix_seconds(1_800_000_000).unwrap();
        let mut claims = Claims::default();
        for n in 0..40 {
            claims.record(claims_of(&[claimed(n, t0)]));
        }
        assert_eq!(claims.live.len(), 40);
        // Key 0 is claimed again once expired: its old order entry must not
        // take the renewed record with it.
        let later = t0.saturating_add(Duration::from_secs(60));
        claims.record(claims_of(&[claimed(0, later)]));
        assert_eq!(claims.live.len(), 40 - 31, "a batch of expired records went (the renewed one stays)");
        assert!(claims.find(&Actor::system(), &IdempotencyKey::from_bytes([0; 32]), later).is_some());
        claims.record(claims_of(&[claimed(200, later)]));
        assert_eq!(claims.live.len(), 2, "the rest went with the next write");
        assert_eq!(claims.order.len(), 2);
    }
}
