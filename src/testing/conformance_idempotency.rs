//! The checks of idempotency records (part of [`conformance`](super)).

use std::time::Duration;

use super::{
    Check, commit, entry, get, log_of, must_get, ok, random_bytes, record, recorded, reissue_of, service_account,
};
use crate::clock::Timestamp;
use crate::operation::{Actor, Change, KeyUpdate, LogEntry, OperationKind};
use crate::record::{Description, KeyRecord};
use crate::store::idempotency::{IdempotencyClaim, IdempotencyKey, IdempotencyRecord};
use crate::store::{KeyStore, OldKeyFate, StoreError};

/// When the check's first claim is made.
const T0: Timestamp = Timestamp::from_unix_nanos(1_767_225_600_000_000_011);
/// How long its records live.
const TTL: Duration = Duration::from_secs(3600);

fn actor(name: &str) -> Actor {
    Actor::new(name).unwrap_or_else(|e| panic!("{e}"))
}

fn claim(by: &Actor, key: IdempotencyKey, fingerprint: u8, at: Timestamp) -> IdempotencyClaim {
    IdempotencyClaim::new(by.clone(), key, [fingerprint; 32], at, TTL)
}

async fn lookup<S: KeyStore>(store: &S, by: &Actor, key: &IdempotencyKey, now: Timestamp) -> Option<IdempotencyRecord> {
    ok(Check::IdempotencyRecords, "idempotency", store.idempotency(by, key, now).await)
}

/// [`Check::IdempotencyRecords`].
pub async fn idempotency_records<S: KeyStore>(store: &S) {
    const C: Check = Check::IdempotencyRecords;
    let (ops, other) = (actor("conformance"), actor("conformance-other"));
    let k = IdempotencyKey::from_bytes(random_bytes());
    let sa = service_account();
    let key = record(&sa);
    // A create carrying a claim records it with the change.
    let first = entry(&key, OperationKind::Create).with_response(key.info()).with_idempotency(claim(&ops, k, 1, T0));
    commit(store, C, Change::Insert(key.clone()), std::slice::from_ref(&first)).await;
    let expected = IdempotencyRecord::new(claim(&ops, k, 1, T0), first.id);
    assert_eq!(lookup(store, &ops, &k, T0).await, Some(expected.clone()), "[{C}] the record of a claim");
    let later = T0.saturating_add(TTL - Duration::from_nanos(1));
    assert_eq!(lookup(store, &ops, &k, later).await, Some(expected), "[{C}] live until its expiry");
    assert_eq!(lookup(store, &ops, &k, T0.saturating_add(TTL)).await, None, "[{C}] expired at its expiry");
    assert_eq!(lookup(store, &other, &k, T0).await, None, "[{C}] another actor's key is its own");
    let unknown = IdempotencyKey::from_bytes(random_bytes());
    assert_eq!(lookup(store, &ops, &unknown, T0).await, None, "[{C}] an unclaimed key");
    refused_claims_write_nothing(store, &ops, k, &key, &first).await;
    // Another actor may claim the same key text.
    let mine = claim(&other, k, 2, T0);
    let update = KeyUpdate::new().description(Description::new("other actor").unwrap_or_else(|e| panic!("{e}")));
    let theirs = entry(&key, OperationKind::Update).with_idempotency(mine.clone());
    commit(store, C, Change::Update { id: key.id, update }, std::slice::from_ref(&theirs)).await;
    assert_eq!(lookup(store, &other, &k, T0).await, Some(IdempotencyRecord::new(mine, theirs.id)));
    // Once expired, the key can be claimed again: the new record replaces it.
    let again_at = T0.saturating_add(TTL);
    let fresh = record(&sa);
    let renewed = claim(&ops, k, 3, again_at);
    let again = entry(&fresh, OperationKind::Create).with_idempotency(renewed.clone());
    commit(store, C, Change::Insert(fresh.clone()), std::slice::from_ref(&again)).await;
    assert_eq!(
        lookup(store, &ops, &k, again_at).await,
        Some(IdempotencyRecord::new(renewed, again.id)),
        "[{C}] an expired record is replaced"
    );
    claim_race(store, &ops, &sa).await;
}

/// Every kind of change claiming a key with a live record is refused with
/// `IdempotencyKeyTaken` and writes nothing: no record, no log entry, no
/// change to the record.
async fn refused_claims_write_nothing<S: KeyStore>(
    store: &S,
    by: &Actor,
    k: IdempotencyKey,
    key: &KeyRecord,
    first: &LogEntry,
) {
    const C: Check = Check::IdempotencyRecords;
    let at = T0.saturating_add(Duration::from_secs(1));
    let claimed = |r: &KeyRecord, kind| entry(r, kind).with_idempotency(claim(by, k, 9, at));
    let fresh = record(&key.service_account_id);
    let new = reissue_of(key);
    let update = KeyUpdate::new().description(Description::default()).expires_at(None);
    let changes: Vec<(&str, Change, Vec<LogEntry>)> = vec![
        ("insert", Change::Insert(fresh.clone()), vec![claimed(&fresh, OperationKind::Create)]),
        ("update", Change::Update { id: key.id, update }, vec![claimed(key, OperationKind::Update)]),
        ("revoke", Change::Revoke(key.id), vec![claimed(key, OperationKind::Revoke)]),
        (
            "reissue",
            Change::Reissue { old: key.id, new: new.clone(), fate: OldKeyFate::Revoke },
            vec![entry(key, OperationKind::Reissue), claimed(&new, OperationKind::Reissue)],
        ),
        ("delete", Change::Delete(key.id), vec![claimed(key, OperationKind::Delete)]),
    ];
    for (what, change, log) in changes {
        match store.commit(change, &log).await {
            Err(StoreError::IdempotencyKeyTaken) => {}
            other => panic!("[{C}] {what} claiming a taken key: expected IdempotencyKeyTaken, got {other:?}"),
        }
        assert_eq!(must_get(store, C, &key.id).await, *key, "[{C}] {what}: the change landed");
        assert_eq!(get(store, C, &fresh.id).await, None, "[{C}] {what}: an insert landed");
        assert_eq!(get(store, C, &new.id).await, None, "[{C}] {what}: a reissue landed");
        assert_eq!(
            log_of(store, C, &key.id).await,
            recorded(std::slice::from_ref(first), &key.service_account_id),
            "[{C}] {what}: a log entry landed"
        );
        let kept = lookup(store, by, &k, at).await.map(|r| (r.claim.fingerprint, r.operation));
        assert_eq!(kept, Some(([1; 32], first.id)), "[{C}] {what}: the record changed");
    }
}

/// Two creates claiming one fresh key at once: exactly one lands, with its
/// record; the other is refused and wrote nothing.
async fn claim_race<S: KeyStore>(store: &S, by: &Actor, sa: &crate::ServiceAccountId) {
    const C: Check = Check::IdempotencyRecords;
    let k = IdempotencyKey::from_bytes(random_bytes());
    let (a, b) = (record(sa), record(sa));
    let ea = entry(&a, OperationKind::Create).with_idempotency(claim(by, k, 4, T0));
    let eb = entry(&b, OperationKind::Create).with_idempotency(claim(by, k, 5, T0));
    let (ra, rb) = tokio::join!(
        store.commit(Change::Insert(a.clone()), std::slice::from_ref(&ea)),
        store.commit(Change::Insert(b.clone()), std::slice::from_ref(&eb))
    );
    let won = match (&ra, &rb) {
        (Ok(_), Err(StoreError::IdempotencyKeyTaken)) => (&a, &ea, &b),
        (Err(StoreError::IdempotencyKeyTaken), Ok(_)) => (&b, &eb, &a),
        _ => panic!("[{C}] racing claims: expected exactly one to land, got {ra:?} and {rb:?}"),
    };
    let (winner, logged, loser) = won;
    assert!(get(store, C, &winner.id).await.is_some(), "[{C}] the winner's key");
    assert_eq!(get(store, C, &loser.id).await, None, "[{C}] the loser's key landed");
    assert!(log_of(store, C, &loser.id).await.is_empty(), "[{C}] the loser's entry landed");
    let kept = lookup(store, by, &k, T0).await.map(|r| r.operation);
    assert_eq!(kept, Some(logged.id), "[{C}] the record names the winner's entry");
}
