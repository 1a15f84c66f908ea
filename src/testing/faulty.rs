//! A fault-injecting [`KeyStore`] wrapper for tests (feature `test-util`).
//!
//! [`FaultyStore`] delegates to an inner store and, at chosen or random
//! points, makes an operation fail with [`StoreError::Unavailable`], time out
//! ([`StoreError::Timeout`] after a delay), or merely run late. Faults are
//! injected *before* the inner call, so a failed write wrote nothing — the
//! behaviour every real backend must have for a refused or broken
//! transaction — except [`Fault::AfterWrite`], which runs the inner write and
//! then reports a failure (a lost acknowledgement).
//!
//! ```
//! use std::sync::Arc;
//! use api_keys::testing::{Fault, FaultyStore, Op};
//! use api_keys::{KeyId, KeyStore, MemoryStore, StoreError};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = FaultyStore::new(MemoryStore::new());
//! store.inject(Op::Get, Fault::Error, 1); // the next get fails
//! let id = KeyId::generate()?;
//! assert!(matches!(store.get(&id).await, Err(StoreError::Unavailable(_))));
//! assert!(store.get(&id).await?.is_none()); // then it recovers
//! assert_eq!(store.injected(Op::Get), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::controls::{CreditSpend, ExternalId};
use crate::digest::Digest;
use crate::operation::{Change, LogEntry, Operation, OperationCursor, OperationId};
use crate::record::{KeyRecord, ServiceAccountId};
use crate::store::{KeyStore, OldKeyFate, OperationPage, Page, PageRequest, StoreError};
use crate::token::KeyId;

/// The store operations, to aim faults at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// `insert`.
    Insert,
    /// `get`, and `get_many` (one call per batch).
    Get,
    /// `get_by_digest`.
    GetByDigest,
    /// `list`.
    List,
    /// `revoke`.
    Revoke,
    /// `delete`.
    Delete,
    /// `reissue`.
    Reissue,
    /// `touch_last_used`.
    TouchLastUsed,
    /// `commit` of a [`Change::Update`]. A `commit` of another change
    /// counts as the operation of its kind ([`Op::Insert`] for
    /// [`Change::Insert`], …), so faults aimed at `revoke` also hit a logged
    /// revoke.
    Update,
    /// `operations`.
    Operations,
    /// `pepper_fingerprint`.
    PepperFingerprint,
    /// `commit` of a [`Change::Note`] (log entries only).
    Note,
    /// `spend_credits`.
    SpendCredits,
    /// `list_by_external_id`.
    ListByExternalId,
    /// `list_expiring`.
    ListExpiring,
}

const OPS: usize = Op::ALL.len();

impl Op {
    /// Every operation, in declaration order.
    pub const ALL: [Op; 15] = [
        Op::Insert,
        Op::Get,
        Op::GetByDigest,
        Op::List,
        Op::Revoke,
        Op::Delete,
        Op::Reissue,
        Op::TouchLastUsed,
        Op::PepperFingerprint,
        Op::Update,
        Op::Operations,
        Op::Note,
        Op::SpendCredits,
        Op::ListByExternalId,
        Op::ListExpiring,
    ];

    /// The operation a `commit` of `change` counts as.
    #[must_use]
    pub fn of(change: &Change) -> Self {
        match change {
            Change::Insert(_) => Self::Insert,
            Change::Update { .. } => Self::Update,
            Change::Revoke(_) => Self::Revoke,
            Change::Delete(_) => Self::Delete,
            Change::Reissue { .. } => Self::Reissue,
            Change::Note(_) => Self::Note,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What happens to an operation hit by a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fails at once with [`StoreError::Unavailable`]; nothing reaches the store.
    Error,
    /// Waits, then fails with [`StoreError::Timeout`]; nothing reaches the store.
    Timeout(Duration),
    /// Waits, then runs normally.
    Delay(Duration),
    /// Runs the inner operation, then reports [`StoreError::Unavailable`]
    /// (the write happened but its acknowledgement was lost).
    AfterWrite,
}

#[derive(Debug, Default)]
struct Plan {
    /// Per op: (fault, remaining count); `u64::MAX` means always.
    scheduled: [Option<(Fault, u64)>; OPS],
    /// Random faults: probability in millionths, seed state.
    random: Option<(Fault, u32, u64)>,
}

/// Injected failure: not a real backend error.
#[derive(Debug, thiserror::Error)]
#[error("injected outage")]
pub struct InjectedFault;

/// A [`KeyStore`] that fails on demand. Cheap to clone (shared plan).
#[derive(Clone)]
pub struct FaultyStore<S> {
    inner: Arc<S>,
    plan: Arc<Mutex<Plan>>,
    injected: Arc<[AtomicU64; OPS]>,
    calls: Arc<[AtomicU64; OPS]>,
}

impl<S> std::fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore").finish_non_exhaustive()
    }
}

impl<S: KeyStore> FaultyStore<S> {
    /// Wraps `inner` with no faults planned.
    pub fn new(inner: S) -> Self {
        Self {
            inner: Arc::new(inner),
            plan: Arc::default(),
            injected: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
            calls: Arc::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// The wrapped store.
    #[must_use]
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hits the next `times` calls of `op` with `fault`.
    pub fn inject(&self, op: Op, fault: Fault, times: u64) {
        self.plan().scheduled[op.index()] = Some((fault, times));
    }

    /// Hits every call of `op` with `fault` until [`FaultyStore::heal`].
    pub fn always(&self, op: Op, fault: Fault) {
        self.inject(op, fault, u64::MAX);
    }

    /// Hits each call of any op with probability `p` (0.0–1.0), from a
    /// deterministic generator seeded with `seed`.
    pub fn random(&self, fault: Fault, p: f64, seed: u64) {
        let millionths = (p.clamp(0.0, 1.0) * 1_000_000.0) as u32;
        self.plan().random = Some((fault, millionths, seed | 1));
    }

    /// Removes every planned fault.
    pub fn heal(&self) {
        *self.plan() = Plan::default();
    }

    /// How many calls of `op` were hit by a fault.
    #[must_use]
    pub fn injected(&self, op: Op) -> u64 {
        self.injected[op.index()].load(Ordering::SeqCst)
    }

    /// How many calls of `op` were made (faulted or not).
    #[must_use]
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[op.index()].load(Ordering::SeqCst)
    }

    /// Decides the fault (if any) for one call of `op`.
    fn draw(&self, op: Op) -> Option<Fault> {
        self.calls[op.index()].fetch_add(1, Ordering::SeqCst);
        let mut plan = self.plan();
        let mut hit = None;
        if let Some((fault, left)) = plan.scheduled[op.index()].as_mut() {
            hit = Some(*fault);
            if *left != u64::MAX {
                *left -= 1;
            }
            if *left == 0 {
                plan.scheduled[op.index()] = None;
            }
        } else if let Some((fault, p, state)) = plan.random.as_mut() {
            // xorshift64
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            if (*state % 1_000_000) < u64::from(*p) {
                hit = Some(*fault);
            }
        }
        if hit.is_some() {
            self.injected[op.index()].fetch_add(1, Ordering::SeqCst);
        }
        hit
    }

    async fn run<T, F, Fut>(&self, op: Op, call: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.draw(op) {
            None => call().await,
            Some(Fault::Error) => Err(StoreError::unavailable(InjectedFault)),
            Some(Fault::Timeout(d)) => {
                tokio::time::sleep(d).await;
                Err(StoreError::Timeout(d))
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                call().await
            }
            Some(Fault::AfterWrite) => {
                let _ = call().await;
                Err(StoreError::unavailable(InjectedFault))
            }
        }
    }
}

impl<S: KeyStore> KeyStore for FaultyStore<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.run(Op::Insert, move || self.inner.insert(record)).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.run(Op::Get, move || self.inner.get(id)).await
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.run(Op::GetByDigest, move || self.inner.get_by_digest(digest)).await
    }

    async fn get_many(&self, ids: &[KeyId]) -> Result<Vec<Option<Arc<KeyRecord>>>, StoreError> {
        self.run(Op::Get, move || self.inner.get_many(ids)).await
    }

    async fn list(&self, service_account: &ServiceAccountId, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        self.run(Op::List, move || self.inner.list(service_account, page)).await
    }

    async fn revoke(&self, id: &KeyId) -> Result<(), StoreError> {
        self.run(Op::Revoke, move || self.inner.revoke(id)).await
    }

    async fn delete(&self, id: &KeyId) -> Result<(), StoreError> {
        self.run(Op::Delete, move || self.inner.delete(id)).await
    }

    async fn reissue(&self, old: &KeyId, new: KeyRecord, fate: OldKeyFate) -> Result<(), StoreError> {
        self.run(Op::Reissue, move || self.inner.reissue(old, new, fate)).await
    }

    async fn touch_last_used(&self, updates: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        self.run(Op::TouchLastUsed, move || self.inner.touch_last_used(updates)).await
    }

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        self.run(Op::of(&change), move || self.inner.commit(change, log)).await
    }

    async fn operations(&self, key: &KeyId, page: PageRequest<OperationCursor>) -> Result<OperationPage, StoreError> {
        self.run(Op::Operations, move || self.inner.operations(key, page)).await
    }

    async fn operation(&self, id: &OperationId) -> Result<Option<Operation>, StoreError> {
        self.run(Op::Operations, move || self.inner.operation(id)).await
    }

    async fn pepper_fingerprint(&self, version: u32, proposed: Digest) -> Result<Digest, StoreError> {
        self.run(Op::PepperFingerprint, move || self.inner.pepper_fingerprint(version, proposed)).await
    }

    async fn spend_credits(&self, id: &KeyId, cost: u64, due: Option<Timestamp>) -> Result<CreditSpend, StoreError> {
        self.run(Op::SpendCredits, move || self.inner.spend_credits(id, cost, due)).await
    }

    async fn list_by_external_id(
        &self,
        external_id: &ExternalId,
        page: PageRequest,
    ) -> Result<Page<KeyRecord>, StoreError> {
        self.run(Op::ListByExternalId, move || self.inner.list_by_external_id(external_id, page)).await
    }

    async fn list_expiring(&self, window: Range<Timestamp>, page: PageRequest) -> Result<Page<KeyRecord>, StoreError> {
        self.run(Op::ListExpiring, move || self.inner.list_expiring(window, page)).await
    }
}
