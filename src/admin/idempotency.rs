//! `Idempotency-Key` for the mutating calls.
//!
//! A client may send `Idempotency-Key: <UUID>` with `POST`, `PATCH` and
//! `DELETE`. The first request with a key runs; its answer is kept for
//! [`IdempotencyConfig::ttl`] (24 hours), keyed by the caller's actor and
//! the key, together with a SHA-256 fingerprint of the method, path and
//! body. A repeat with the same fingerprint gets the kept answer (same
//! status and body, header `Idempotent-Replayed: true`) and changes
//! nothing; a repeat with another request is refused (code 9, HTTP 412); a
//! repeat while the first is still running is refused (code 10, HTTP 409).
//! Answers with a 5xx status are not kept, so a retry after an outage runs
//! again.
//!
//! **A replayed create or reissue never makes a second key and never
//! shows the secret again**: the kept answer is the first one without its
//! `secret` field (no plaintext secret is ever stored); the replay says
//! which key was made (`apiKey.id`), and a client that lost the secret
//! reissues that key.
//!
//! The change runs to its end and its answer is recorded whatever the
//! client's connection does: the router runs it in a task of its own, so a
//! client that disconnects and retries gets the recorded answer (and a
//! change that fails without an answer frees its key).
//!
//! Where records live is an [`IdempotencyStore`]. [`Idempotency`] keeps them
//! in this process's memory (bounded by [`IdempotencyConfig::capacity`];
//! the oldest go first), so replays are recognised by the node that served
//! the first request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use sha2::{Digest as _, Sha256};

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::operation::Actor;
use crate::store::StoreError;

/// The header.
pub const HEADER: &str = "idempotency-key";
/// The header marking a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// How long and how many answers are kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdempotencyConfig {
    /// How long an answer is kept. Defaults to 24 hours.
    pub ttl: Duration,
    /// How many answers are kept at most. Defaults to 100 000.
    pub capacity: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(24 * 3600), capacity: 100_000 }
    }
}

/// A kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Its status.
    pub status: StatusCode,
    /// Its JSON body.
    pub body: Bytes,
}

/// What [`Idempotency::begin`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time: run the request, then [`Idempotency::finish`].
    Run,
    /// A repeat of a finished request: answer with this.
    Replay(Kept),
    /// The key was used with another request.
    Mismatch,
    /// The first request with this key is still running.
    InFlight,
}

/// Where the records of `Idempotency-Key`s live: one per actor and key,
/// holding the request's fingerprint and, once it finished, its answer.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Looks the key up for a request with `fingerprint`; on
    /// [`Begin::Run`] the key is now the caller's, running.
    ///
    /// # Errors
    /// [`StoreError`] when the records cannot be read (the request is then
    /// refused as unavailable, not run).
    fn begin<'a>(
        &'a self,
        actor: &'a Actor,
        key: uuid::Uuid,
        fingerprint: [u8; 32],
    ) -> BoxFuture<'a, Result<Begin, StoreError>>;

    /// Records the answer of a request [`IdempotencyStore::begin`] let run
    /// (a 5xx answer frees the key instead, so a retry runs again).
    ///
    /// # Errors
    /// [`StoreError`] when the answer cannot be recorded.
    fn finish<'a>(&'a self, actor: &'a Actor, key: uuid::Uuid, kept: Kept) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Frees a running key whose request ended without an answer.
    fn abandon<'a>(&'a self, actor: &'a Actor, key: uuid::Uuid) -> BoxFuture<'a, ()>;
}

type Key = (Actor, uuid::Uuid);

enum Slot {
    Running { fingerprint: [u8; 32] },
    Done { fingerprint: [u8; 32], kept: Kept },
}

struct Inner {
    slots: HashMap<Key, (Timestamp, Slot)>,
    order: VecDeque<(Timestamp, Key)>,
}

/// The kept answers. Cheap to clone (shared).
#[derive(Clone)]
pub struct Idempotency {
    inner: Arc<Mutex<Inner>>,
    config: IdempotencyConfig,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Default for Idempotency {
    fn default() -> Self {
        Self::new(IdempotencyConfig::default(), Arc::new(SystemClock))
    }
}

/// The fingerprint of a request.
#[must_use]
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

impl Idempotency {
    /// Kept answers with `config`, aged by `clock`.
    #[must_use]
    pub fn new(config: IdempotencyConfig, clock: Arc<dyn Clock>) -> Self {
        let inner = Inner { slots: HashMap::new(), order: VecDeque::new() };
        Self { inner: Arc::new(Mutex::new(inner)), config, clock }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops expired answers, and the oldest beyond capacity.
    fn prune(&self, inner: &mut Inner, now: Timestamp) {
        while let Some((at, key)) = inner.order.front().cloned() {
            let expired = now.duration_since(at) >= self.config.ttl;
            if !expired && inner.order.len() < self.config.capacity {
                break;
            }
            inner.order.pop_front();
            if inner.slots.get(&key).is_some_and(|(t, _)| *t == at) {
                inner.slots.remove(&key);
            }
        }
    }

    /// Looks the key up for a request with `fingerprint`; on
    /// [`Begin::Run`] it is marked running.
    pub fn begin(&self, actor: &Actor, key: uuid::Uuid, fingerprint: [u8; 32]) -> Begin {
        let now = self.clock.now();
        let mut inner = self.lock();
        self.prune(&mut inner, now);
        let k = (actor.clone(), key);
        match inner.slots.get(&k) {
            Some((_, Slot::Running { fingerprint: f })) => {
                if *f == fingerprint {
                    Begin::InFlight
                } else {
                    Begin::Mismatch
                }
            }
            Some((_, Slot::Done { fingerprint: f, kept })) => {
                if *f == fingerprint {
                    Begin::Replay(kept.clone())
                } else {
                    Begin::Mismatch
                }
            }
            None => {
                inner.slots.insert(k.clone(), (now, Slot::Running { fingerprint }));
                inner.order.push_back((now, k));
                Begin::Run
            }
        }
    }

    /// Keeps the answer of a request [`Begin::Run`] allowed (a 5xx answer
    /// is dropped instead, so a retry runs again).
    pub fn finish(&self, actor: &Actor, key: uuid::Uuid, kept: Kept) {
        let mut inner = self.lock();
        let k = (actor.clone(), key);
        let Some((at, Slot::Running { fingerprint })) = inner.slots.remove(&k) else { return };
        if !kept.status.is_server_error() {
            inner.slots.insert(k, (at, Slot::Done { fingerprint, kept }));
        }
    }

    /// Frees a running key (its request ended without an answer).
    pub fn abandon(&self, actor: &Actor, key: uuid::Uuid) {
        let mut inner = self.lock();
        let k = (actor.clone(), key);
        if matches!(inner.slots.get(&k), Some((_, Slot::Running { .. }))) {
            inner.slots.remove(&k);
        }
    }
}

impl IdempotencyStore for Idempotency {
    fn begin<'a>(
        &'a self,
        actor: &'a Actor,
        key: uuid::Uuid,
        fingerprint: [u8; 32],
    ) -> BoxFuture<'a, Result<Begin, StoreError>> {
        Box::pin(std::future::ready(Ok(Idempotency::begin(self, actor, key, fingerprint))))
    }

    fn finish<'a>(&'a self, actor: &'a Actor, key: uuid::Uuid, kept: Kept) -> BoxFuture<'a, Result<(), StoreError>> {
        Idempotency::finish(self, actor, key, kept);
        Box::pin(std::future::ready(Ok(())))
    }

    fn abandon<'a>(&'a self, actor: &'a Actor, key: uuid::Uuid) -> BoxFuture<'a, ()> {
        Idempotency::abandon(self, actor, key);
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn replays_mismatches_in_flight_and_expiry() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
        let idem = Idempotency::new(IdempotencyConfig::default(), clock.clone());
        let actor = Actor::new("ops").unwrap();
        let key = uuid::Uuid::from_u128(7);
        let a = fingerprint("POST", "/apiKeys", b"{}");
        let b = fingerprint("POST", "/apiKeys", b"{ }");
        assert_eq!(idem.begin(&actor, key, a), Begin::Run);
        assert_eq!(idem.begin(&actor, key, a), Begin::InFlight);
        let kept = Kept { status: StatusCode::OK, body: Bytes::from_static(b"{\"x\":1}") };
        idem.finish(&actor, key, kept.clone());
        assert_eq!(idem.begin(&actor, key, a), Begin::Replay(kept));
        assert_eq!(idem.begin(&actor, key, b), Begin::Mismatch);
        // Another actor's key space is its own.
        assert_eq!(idem.begin(&Actor::new("other").unwrap(), key, b), Begin::Run);
        clock.advance(Duration::from_secs(24 * 3600));
        assert_eq!(idem.begin(&actor, key, b), Begin::Run, "expired after 24 h");
        // 5xx answers are not kept.
        let k2 = uuid::Uuid::from_u128(8);
        assert_eq!(idem.begin(&actor, k2, a), Begin::Run);
        idem.finish(&actor, k2, Kept { status: StatusCode::SERVICE_UNAVAILABLE, body: Bytes::new() });
        assert_eq!(idem.begin(&actor, k2, a), Begin::Run);
        // An abandoned key runs again; a finished one is not abandoned.
        idem.abandon(&actor, k2);
        assert_eq!(idem.begin(&actor, k2, a), Begin::Run);
        let done = Kept { status: StatusCode::OK, body: Bytes::from_static(b"{}") };
        idem.finish(&actor, k2, done.clone());
        idem.abandon(&actor, k2);
        assert_eq!(idem.begin(&actor, k2, a), Begin::Replay(done));
    }

    #[test]
    fn capacity_drops_the_oldest() {
        let config = IdempotencyConfig { capacity: 2, ..IdempotencyConfig::default() };
        let idem = Idempotency::new(config, Arc::new(SystemClock));
        let actor = Actor::new("ops").unwrap();
        let f = fingerprint("DELETE", "/apiKeys/x", b"");
        for i in 0..3 {
            assert_eq!(idem.begin(&actor, uuid::Uuid::from_u128(i), f), Begin::Run);
            idem.finish(&actor, uuid::Uuid::from_u128(i), Kept { status: StatusCode::OK, body: Bytes::new() });
        }
        assert_eq!(idem.begin(&actor, uuid::Uuid::from_u128(0), f), Begin::Run, "the oldest was dropped");
    }
}
