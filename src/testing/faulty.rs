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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::operation::{Change, LogEntry};
use crate::record::KeyRecord;
use crate::store::{KeyStore, StoreError};

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

    /// The operation a call of the [`KeyStore`] method `name` counts as
    /// (`get_many` as [`Op::Get`]); `None` for a method with no operation
    /// of its own (`commit`, whose change decides; `ids_after`). `insert`,
    /// `revoke`, `delete` and `reissue` reach the store as `commit`.
    #[must_use]
    pub fn of_method(name: &str) -> Option<Self> {
        Some(match name {
            "get" | "get_many" => Self::Get,
            "get_by_digest" => Self::GetByDigest,
            "list" => Self::List,
            "touch_last_used" => Self::TouchLastUsed,
            "operations" => Self::Operations,
            "pepper_fingerprint" => Self::PepperFingerprint,
            "spend_credits" => Self::SpendCredits,
            "list_by_external_id" => Self::ListByExternalId,
            "list_expiring" => Self::ListExpiring,
            _ => return None,
        })
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

    /// [`FaultyStore::run`] for the operation of the method `name`, or
    /// `call` unchanged for a method with no [`Op`].
    async fn run_named<T, F, Fut>(&self, name: &str, call: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match Op::of_method(name) {
            Some(op) => self.run(op, call).await,
            None => call().await,
        }
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

/// Every forwarded call runs under the fault plan of its [`Op`] (a method
/// with no `Op` of its own runs unchanged); the trait's `insert`, `revoke`,
/// `delete` and `reissue` reach `commit`, which counts as the operation of
/// the change's kind. `with_record` keeps the trait's default, which looks
/// up with `get` (so faults aimed at [`Op::Get`] hit the verifier too).
impl<S: KeyStore> KeyStore for FaultyStore<S> {
    crate::forward_key_store!(self => self.inner, around(method, call) => self.run_named(method, call);
        all except [commit, with_record, lend_now]);

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        self.run(Op::of(&change), move || self.inner.commit(change, log)).await
    }
}
