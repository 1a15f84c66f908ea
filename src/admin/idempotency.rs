//! `Idempotency-Key` for the mutating calls, recorded in the key store.
//!
//! A client may send `Idempotency-Key: <UUID>` with `POST`, `PATCH` and
//! `DELETE`. The first request with a key makes its change, and the store
//! records, **in the same transaction or script as the change and its
//! operations log entry**, which change the key made: the caller's actor,
//! the key (as a SHA-256 of its text), a SHA-256 fingerprint of the method,
//! path and body, the log entry's id, and when the record expires
//! ([`IdempotencyConfig::ttl`], 24 hours). See
//! [`crate::store::idempotency`] for the records and how each store keeps
//! them.
//!
//! A repeat of the request within the retention, **on any node and after
//! any restart**, is answered as the first was: the answer is rebuilt from
//! the logged operation's response snapshot (same status and body, header
//! `Idempotent-Replayed: true`) and nothing changes. A repeat with another
//! request is refused (code 9, HTTP 400). Keys are per actor: two callers
//! never see each other's.
//!
//! **A replayed create or reissue never makes a second key and never
//! shows the secret again**: the replay is `{"apiKey": …}` without
//! `secret` (no plaintext secret is ever stored); it says which key was
//! made, and a client that lost the secret reissues that key.
//!
//! Concurrent requests with one key (two nodes, or a retry while the first
//! still runs) each make their change, but the store lets exactly one land:
//! the other's commit is refused whole
//! ([`StoreError::IdempotencyKeyTaken`]),
//! and that request answers with the replay of the one that landed. There
//! is no "still running" state to get stuck in.
//!
//! What is not recorded:
//! - a request that fails changes nothing, so nothing is recorded: a 5xx
//!   (the store unavailable) runs again on retry; a 4xx (a bad body, a
//!   missing key, a policy refusal) is answered again by running again,
//!   which is deterministic for the same request and state. Before
//!   answering a 4xx the record is read once more, so a request that lost
//!   a race to its twin (which, say, already deleted the key) replays the
//!   twin's answer rather than reporting "not found";
//! - a replay whose log entry is gone (an application pruned the log) is
//!   refused (code 9), never run again.
//!
//! The change runs to its end whatever the client's connection does (the
//! router runs it in a task of its own), and its record lands with it, so a
//! client that disconnects and retries gets the recorded answer.
//!
//! [`Idempotency`] holds these rules for any transport: [`Idempotency::claim`]
//! makes the claim of a request, [`Idempotency::begin`] decides whether to
//! run or replay, the change runs through
//! [`KeyManager::with_idempotency`](crate::KeyManager::with_idempotency),
//! and [`Idempotency::settle`] decides what a failed change answers.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::clock::Timestamp;
use crate::operation::{Actor, Operation};
use crate::store::idempotency::{IdempotencyClaim, IdempotencyKey, IdempotencyRecord};
use crate::store::{KeyStore, StoreError};

/// The header.
pub const HEADER: &str = "idempotency-key";
/// The header marking a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// How long records are kept.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdempotencyConfig {
    /// How long a record counts. Defaults to 24 hours.
    pub ttl: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(24 * 3600) }
    }
}

/// What a request with an `Idempotency-Key` does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Begin {
    /// No live record: make the change carrying this claim.
    Run(IdempotencyClaim),
    /// A repeat of a request whose change landed: answer with its logged
    /// operation (its response snapshot; never a secret).
    Replay(Box<Operation>),
    /// A repeat of a resource change that landed: answer with its logged
    /// resource operation.
    ReplayResource(Box<crate::resource::ResourceOperation>),
    /// The key was used with another request.
    Mismatch,
    /// A repeat whose change landed, but whose log entry is no longer kept:
    /// its answer cannot be rebuilt, and it must not run again.
    Forgotten,
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

/// The `Idempotency-Key` rules over a key store (see the module docs).
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Idempotency {
    config: IdempotencyConfig,
}

impl Idempotency {
    /// The rules with `config`.
    #[must_use]
    pub fn new(config: IdempotencyConfig) -> Self {
        Self { config }
    }

    /// The claim `actor` makes with the client's key text `client_key` (a
    /// UUID in its canonical form) for a request with `fingerprint`, at
    /// `now`.
    #[must_use]
    pub fn claim(&self, actor: &Actor, client_key: &str, fingerprint: [u8; 32], now: Timestamp) -> IdempotencyClaim {
        IdempotencyClaim::new(actor.clone(), IdempotencyKey::of(client_key), fingerprint, now, self.config.ttl)
    }

    /// Whether to run the request of `claim` or answer it from the record
    /// its key already has.
    ///
    /// # Errors
    /// The store's error (the request is then refused as unavailable, not
    /// run).
    pub async fn begin<S: KeyStore>(&self, store: &S, claim: IdempotencyClaim) -> Result<Begin, StoreError> {
        match store.idempotency(&claim.actor, &claim.key, claim.created_at).await? {
            None => Ok(Begin::Run(claim)),
            Some(record) => decide(store, &claim, record).await,
        }
    }

    /// What a request whose change failed answers instead of its failure:
    /// `Some` when the key has a record now (its commit was refused as
    /// [`StoreError::IdempotencyKeyTaken`], or a twin landed while it
    /// failed), `None` when it has none (answer the failure).
    ///
    /// # Errors
    /// The store's error.
    pub async fn settle<S: KeyStore>(&self, store: &S, claim: &IdempotencyClaim) -> Result<Option<Begin>, StoreError> {
        match store.idempotency(&claim.actor, &claim.key, claim.created_at).await? {
            None => Ok(None),
            Some(record) => decide(store, claim, record).await.map(Some),
        }
    }
}

/// Replay, refuse or forget, for a request meeting its key's record.
async fn decide<S: KeyStore>(
    store: &S,
    claim: &IdempotencyClaim,
    record: IdempotencyRecord,
) -> Result<Begin, StoreError> {
    if record.claim.fingerprint != claim.fingerprint {
        return Ok(Begin::Mismatch);
    }
    if let Some(op) = store.operation(&record.operation).await? {
        return Ok(Begin::Replay(Box::new(op)));
    }
    Ok(match store.resource_operation(&record.operation).await? {
        Some(op) => Begin::ReplayResource(Box::new(op)),
        None => Begin::Forgotten,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::{Change, LogEntry, OperationChanges, OperationKind};
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn runs_replays_refuses_and_forgets() {
        let store = MemoryStore::new();
        let idem = Idempotency::default();
        let actor = Actor::new("ops").unwrap();
        let now = Timestamp::from_unix_seconds(1_800_000_000).unwrap();
        let print = fingerprint("POST", "/apiKeys", b"{}");
        let claim = idem.claim(&actor, "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11", print, now);
        assert_eq!(claim.expires_at, now.saturating_add(Duration::from_secs(86_400)));
        let Begin::Run(run) = idem.begin(&store, claim.clone()).await.unwrap() else { panic!("a first request runs") };
        assert_eq!(idem.settle(&store, &run).await.unwrap(), None, "no record yet");
        let key = crate::KeyRecord::new(
            crate::KeyId::generate().unwrap(),
            crate::ServiceAccountId::new("robot").unwrap(),
            crate::KeyKind::Native,
            1,
            crate::Digest::from_bytes([2; 32]),
            crate::MaskedKey::from_tail(b"Xy12Z9"),
            now,
        );
        let entry = LogEntry::new(key.id, OperationKind::Create, actor.clone(), now, OperationChanges::default())
            .unwrap()
            .with_response(key.info())
            .with_idempotency(run);
        store.commit(Change::Insert(key.clone()), std::slice::from_ref(&entry)).await.unwrap();
        let op = entry.recorded(&key.service_account_id);
        assert_eq!(idem.begin(&store, claim.clone()).await.unwrap(), Begin::Replay(Box::new(op.clone())));
        assert_eq!(idem.settle(&store, &claim).await.unwrap(), Some(Begin::Replay(Box::new(op))));
        let other = idem.claim(&actor, "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11", fingerprint("POST", "/x", b""), now);
        assert_eq!(idem.begin(&store, other).await.unwrap(), Begin::Mismatch, "same key, other request");
        let later = now.saturating_add(Duration::from_secs(86_400));
        let expired = idem.claim(&actor, "8e0f6b53-6a40-4c1e-9e3c-3f0b2d6f1a11", print, later);
        assert!(matches!(idem.begin(&store, expired).await.unwrap(), Begin::Run(_)), "runs again after 24 h");
    }

    #[tokio::test]
    async fn a_record_whose_entry_is_gone_is_forgotten_and_a_store_without_records_fails_closed() {
        let idem = Idempotency::default();
        let actor = Actor::new("ops").unwrap();
        let claim = idem.claim(&actor, "k", [1; 32], Timestamp::from_unix_seconds(1_800_000_000).unwrap());
        let record = IdempotencyRecord::new(claim.clone(), crate::OperationId::generate().unwrap());
        assert_eq!(decide(&MemoryStore::new(), &claim, record).await.unwrap(), Begin::Forgotten);
        let e = idem.begin(&NoRecords(MemoryStore::new()), claim).await.unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
    }

    /// A store that keeps the trait's default `idempotency`.
    struct NoRecords(MemoryStore);

    impl KeyStore for NoRecords {
        crate::forward_key_store!(self => self.0; all except [idempotency]);
    }
}
