//! A concurrent in-memory [`KeyStore`].
//!
//! Records live in 64 shards, each a `RwLock<HashSet<Arc<KeyRecord>>>` on
//! its own cache lines (a read lock writes its lock word; neighbouring
//! shards sharing a line would make threads verifying different keys
//! contend).
//! `get` takes one shard's read lock and clones an `Arc`: no allocation, no
//! global lock, no contention between threads verifying different keys.
//! Mutations are serialised by one writer mutex (they are rare) and then take
//! the affected shards' write locks briefly, so readers never see a
//! half-applied reissue. Service account ids and scope sets are interned, so
//! a million keys with the same scopes share one scope list.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::key_store::{KeyStore, OldKeyFate, Page, PageRequest, StoreError, apply_reissue};
use crate::clock::Timestamp;
use crate::digest::Digest;
use crate::operation::{Change, LogEntry, Operation, OperationCursor, OperationId, apply_update};
use crate::record::{KeyKind, KeyRecord, ServiceAccountId};
use crate::scope::ScopeSet;
use crate::token::KeyId;

const SHARDS: usize = 64;

/// Hashes a [`KeyId`] by folding its random characters: ids are generated
/// from the OS CSPRNG, so no keyed hash is needed to spread them, and lookups
/// of attacker-chosen ids can only probe, not insert.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        a[..n].copy_from_slice(&bytes[..n]);
        if bytes.len() > 8 {
            let m = (bytes.len() - 8).min(8);
            b[..m].copy_from_slice(&bytes[8..8 + m]);
        }
        let mut c = [0u8; 8];
        if bytes.len() > 16 {
            let m = (bytes.len() - 16).min(8);
            c[..m].copy_from_slice(&bytes[16..16 + m]);
        }
        let x = u64::from_le_bytes(a) ^ u64::from_le_bytes(b).rotate_left(29) ^ u64::from_le_bytes(c).rotate_left(43);
        let h = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Default, Clone, Copy)]
struct BuildIdHasher;

impl BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// A record in a shard, hashed and compared by its own id, so the table
/// holds one pointer per key instead of a copy of the id beside it.
#[derive(Clone)]
struct Entry(Arc<KeyRecord>);

impl std::hash::Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Entry {}

impl std::borrow::Borrow<KeyId> for Entry {
    fn borrow(&self) -> &KeyId {
        &self.0.id
    }
}

type Shard = HashSet<Entry, BuildIdHasher>;

/// Keeps a value on cache lines of its own (128 bytes: two lines, as the
/// adjacent-line prefetcher pairs them).
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Default)]
struct Index {
    by_account: BTreeMap<ServiceAccountId, BTreeSet<KeyId>>,
    scope_sets: HashSet<ScopeSet>,
    log: OperationsLog,
}

/// The operations log: each key's entries in sequence order (kept after the
/// key is deleted), and every entry id.
#[derive(Default)]
struct OperationsLog {
    by_key: HashMap<KeyId, Vec<(u64, Arc<Operation>)>>,
    ids: HashSet<OperationId>,
    seq: u64,
}

impl OperationsLog {
    /// Refuses entries whose ids are logged already (or repeated).
    fn check(&self, entries: &[LogEntry]) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        for e in entries {
            if self.ids.contains(&e.id) || !seen.insert(e.id) {
                return Err(StoreError::DuplicateOperation(e.id));
            }
        }
        Ok(())
    }

    fn append(&mut self, entries: &[LogEntry], service_account: &ServiceAccountId) {
        for e in entries {
            self.seq += 1;
            self.ids.insert(e.id);
            self.by_key.entry(e.key_id).or_default().push((self.seq, Arc::new(e.recorded(service_account))));
        }
    }

    fn page(&self, key: &KeyId, page: PageRequest<OperationCursor>) -> Page<Operation, OperationCursor> {
        let limit = page.effective_limit();
        let entries = self.by_key.get(key).map_or(&[][..], Vec::as_slice);
        let before = page.after.map_or(u64::MAX, OperationCursor::get);
        let mut items: Vec<_> = entries.iter().rev().filter(|(seq, _)| *seq < before).take(limit + 1).collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(seq, _)| OperationCursor::new(*seq))
        } else {
            None
        };
        Page { items: items.into_iter().map(|(_, e)| Operation::clone(e)).collect(), next }
    }
}

/// The in-memory store. Cheap to share behind an `Arc`; data is lost on drop.
pub struct MemoryStore {
    shards: Box<[Padded<RwLock<Shard>>]>,
    digests: RwLock<HashMap<[u8; 32], KeyId>>,
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

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
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
        let per = keys.div_ceil(SHARDS);
        let shards =
            (0..SHARDS).map(|_| Padded(RwLock::new(HashSet::with_capacity_and_hasher(per, BuildIdHasher)))).collect();
        Self { shards, digests: RwLock::default(), writer: Mutex::default(), peppers: Mutex::default() }
    }

    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(&s.0).len()).sum()
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `limit` smallest ids greater than `after`, ascending (for the
    /// flood shield's loads): one pass over the shards, then a partial sort.
    #[cfg(feature = "cache")]
    pub(crate) fn ids_page(&self, after: Option<KeyId>, limit: usize) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = Vec::new();
        for shard in &*self.shards {
            ids.extend(read(&shard.0).iter().map(|e| e.0.id).filter(|id| after.is_none_or(|a| *id > a)));
        }
        if ids.len() > limit && limit > 0 {
            ids.select_nth_unstable(limit - 1);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids
    }

    fn shard(&self, id: &KeyId) -> &RwLock<Shard> {
        &self.shards[id.shard(SHARDS)].0
    }

    fn get_now(&self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        read(self.shard(id)).get(id).map(|e| Arc::clone(&e.0))
    }

    fn intern(index: &mut Index, mut record: KeyRecord) -> KeyRecord {
        if let Some(s) = index.scope_sets.get(&record.scopes) {
            record.scopes = s.clone();
        } else {
            index.scope_sets.insert(record.scopes.clone());
        }
        if let Some((sa, _)) = index.by_account.get_key_value(&record.service_account_id) {
            record.service_account_id = sa.clone();
        }
        record
    }

    fn insert_now(&self, index: &mut Index, record: KeyRecord) -> Result<(), StoreError> {
        if self.get_now(&record.id).is_some() {
            return Err(StoreError::Duplicate(record.id));
        }
        let imported = record.kind == KeyKind::Imported;
        if imported && read(&self.digests).contains_key(record.digest.as_bytes()) {
            return Err(StoreError::Duplicate(record.id));
        }
        let record = Self::intern(index, record);
        let id = record.id;
        if imported {
            write(&self.digests).insert(*record.digest.as_bytes(), id);
        }
        index.by_account.entry(record.service_account_id.clone()).or_default().insert(id);
        write(self.shard(&id)).insert(Entry(Arc::new(record)));
        Ok(())
    }

    /// Changes one record with `f` (nothing if `f` fails); returns the
    /// changed record.
    fn update<F>(&self, id: &KeyId, f: F) -> Result<Arc<KeyRecord>, StoreError>
    where
        F: FnOnce(&mut KeyRecord) -> Result<(), StoreError>,
    {
        let mut shard = write(self.shard(id));
        let current = shard.get(id).ok_or(StoreError::NotFound(*id))?;
        let mut updated = KeyRecord::clone(&current.0);
        f(&mut updated)?;
        let updated = Arc::new(updated);
        shard.replace(Entry(Arc::clone(&updated)));
        Ok(updated)
    }

    fn revoke_now(&self, id: &KeyId) -> Result<(), StoreError> {
        self.update(id, |r| {
            r.status = crate::record::KeyStatus::Revoked;
            Ok(())
        })
        .map(drop)
    }

    fn reissue_now(&self, index: &mut Index, old: &KeyId, new: KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
        let current = self.get_now(old).ok_or(StoreError::NotFound(*old))?;
        // Validate the old key's change before writing anything.
        let mut updated = KeyRecord::clone(&current);
        apply_reissue(&mut updated, new.id, fate)?;
        self.insert_now(index, new)?;
        write(self.shard(old)).replace(Entry(Arc::new(updated)));
        Ok(())
    }

    /// Applies a change under the writer lock; every check runs before the
    /// first write, so a refused change writes nothing.
    fn apply(&self, index: &mut Index, change: Change) -> Result<Option<KeyRecord>, StoreError> {
        match change {
            Change::Insert(record) => self.insert_now(index, record).map(|()| None),
            Change::Update { id, update } => {
                self.update(&id, |r| apply_update(r, &update)).map(|r| Some(KeyRecord::clone(&r)))
            }
            Change::Revoke(id) => self.revoke_now(&id).map(|()| None),
            Change::Delete(id) => self.delete_now(index, &id).map(|()| None),
            Change::Reissue { old, new, fate } => self.reissue_now(index, &old, new, fate).map(|()| None),
        }
    }

    fn list_now(&self, service_account: &ServiceAccountId, page: PageRequest) -> Page<KeyRecord> {
        let limit = page.effective_limit();
        let index = lock(&self.writer);
        let mut ids: Vec<KeyId> = match index.by_account.get(service_account) {
            Some(set) => match page.after {
                Some(after) => set
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .take(limit + 1)
                    .copied()
                    .collect(),
                None => set.iter().take(limit + 1).copied().collect(),
            },
            None => Vec::new(),
        };
        let next = if ids.len() > limit {
            ids.truncate(limit);
            ids.last().copied()
        } else {
            None
        };
        let items = ids.iter().filter_map(|id| self.get_now(id)).map(|r| KeyRecord::clone(&r)).collect();
        Page { items, next }
    }

    fn delete_now(&self, index: &mut Index, id: &KeyId) -> Result<(), StoreError> {
        let Some(Entry(r)) = write(self.shard(id)).take(id) else {
            return Err(StoreError::NotFound(*id));
        };
        if r.kind == KeyKind::Imported {
            write(&self.digests).remove(r.digest.as_bytes());
        }
        if let Some(set) = index.by_account.get_mut(&r.service_account_id) {
            set.remove(id);
            if set.is_empty() {
                index.by_account.remove(&r.service_account_id);
            }
        }
        Ok(())
    }
}

/// Every method does its work when the future is first polled (like a real
/// backend), never at call time, and is ready at once: the memory store never
/// waits.
impl KeyStore for MemoryStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut index = lock(&self.writer);
        self.insert_now(&mut index, record)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        Ok(self.get_now(id))
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let id = read(&self.digests).get(digest.as_bytes()).copied();
        Ok(id.and_then(|id| self.get_now(&id)))
    }

    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        Ok(self.list_now(service_account, page))
    }

    async fn revoke(&self, id: &KeyId) -> Result<(), StoreError> {
        let _index = lock(&self.writer);
        self.revoke_now(id)
    }

    async fn delete(&self, id: &KeyId) -> Result<(), StoreError> {
        let mut index = lock(&self.writer);
        self.delete_now(&mut index, id)
    }

    async fn reissue(&self, old: &KeyId, new: KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
        let mut index = lock(&self.writer);
        self.reissue_now(&mut index, old, new, fate)
    }

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        let mut index = lock(&self.writer);
        index.log.check(log)?;
        let account = match &change {
            Change::Insert(r) => r.service_account_id.clone(),
            other => {
                let id = other.key_id();
                self.get_now(&id).ok_or(StoreError::NotFound(id))?.service_account_id.clone()
            }
        };
        let out = self.apply(&mut index, change)?;
        index.log.append(log, &account);
        Ok(out)
    }

    async fn operations(
        &self,
        key: &KeyId,
        page: PageRequest<OperationCursor>,
    ) -> Result<Page<Operation, OperationCursor>, StoreError> {
        Ok(lock(&self.writer).log.page(key, page))
    }

    async fn pepper_fingerprint(&self, version: u32, proposed: Digest) -> Result<Digest, StoreError> {
        Ok(*lock(&self.peppers).entry(version).or_insert(proposed))
    }

    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        for (id, at) in updates {
            let mut shard = write(self.shard(id));
            if let Some(Entry(current)) = shard.get(id)
                && current.last_used_at.is_none_or(|t| t < *at)
            {
                let mut updated = KeyRecord::clone(current);
                updated.last_used_at = Some(*at);
                shard.replace(Entry(Arc::new(updated)));
            }
        }
        Ok(())
    }
}
