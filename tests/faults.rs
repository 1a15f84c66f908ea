//! Fault injection over the memory store: verification fails closed when the
//! store fails; create, reissue, revoke and delete are all-or-nothing;
//! last-used writes are retried. The same properties against real servers
//! (killed connections) live in the backend tests.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{
    ClientClass, CreateRequest, KeyManager, KeyStatus, KeyStore, ManageError, MemoryStore, PageRequest, Pepper,
    Peppers, Secret, StoreError, Verifier, VerifyError,
};

type Store = FaultyStore<MemoryStore>;

fn setup() -> (Arc<Store>, KeyManager<Store>, Verifier<Store>) {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let manager = KeyManager::builder(
        store.clone(),
        Peppers::single(Pepper::new(1, [8u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    let verifier = manager.verifier().accept_imported(true).build();
    (store, manager, verifier)
}

fn header(s: &Secret) -> Vec<u8> {
    format!("Api-Key {}", s.expose_secret()).into_bytes()
}

#[tokio::test]
async fn verify_fails_closed_on_every_kind_of_store_failure() {
    let (store, manager, verifier) = setup();
    let key = manager.create(CreateRequest::new("sa")).await.unwrap();
    let imported = Secret::from("AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w".to_owned());
    manager.import(CreateRequest::new("sa"), &imported).await.unwrap();

    for fault in [Fault::Error, Fault::Timeout(Duration::from_millis(5))] {
        store.inject(Op::Get, fault, 1);
        let e = verifier.verify(&header(&key.secret), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::StoreUnavailable(_)), "{fault:?}: {e}");
        assert_eq!(e.client_class(), ClientClass::Unavailable);
        store.inject(Op::GetByDigest, fault, 1);
        let e = verifier.verify(&header(&imported), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::StoreUnavailable(_)), "{fault:?}: {e}");
    }
    // A slow store is not a failure.
    store.inject(Op::Get, Fault::Delay(Duration::from_millis(5)), 1);
    verifier.verify(&header(&key.secret), None).await.unwrap();
    // After healing, the same keys verify.
    verifier.verify(&header(&key.secret), None).await.unwrap();
    verifier.verify(&header(&imported), None).await.unwrap();
}

#[tokio::test]
async fn random_faults_never_turn_into_acceptance() {
    let (store, manager, verifier) = setup();
    let mut good = Vec::new();
    for i in 0..20 {
        good.push(manager.create(CreateRequest::new(format!("sa-{i}"))).await.unwrap());
    }
    let revoked = manager.create(CreateRequest::new("gone")).await.unwrap();
    manager.revoke(&revoked.api_key.id).await.unwrap();
    store.random(Fault::Error, 0.3, 0x5eed);

    let (mut accepted, mut unavailable) = (0, 0);
    for i in 0..5_000 {
        let before = store.injected(Op::Get);
        let (h, should_pass) =
            if i % 5 == 0 { (header(&revoked.secret), false) } else { (header(&good[i % good.len()].secret), true) };
        let r = verifier.verify(&h, None).await;
        let faulted = store.injected(Op::Get) > before;
        match r {
            Ok(_) => {
                assert!(should_pass && !faulted, "accepted a revoked key or during a fault");
                accepted += 1;
            }
            Err(VerifyError::StoreUnavailable(_)) => {
                assert!(faulted);
                unavailable += 1;
            }
            Err(VerifyError::Revoked(_)) => assert!(!should_pass && !faulted),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(accepted > 2_000 && unavailable > 1_000, "accepted {accepted}, unavailable {unavailable}");
}

#[tokio::test]
async fn management_operations_are_all_or_nothing() {
    let (store, manager, verifier) = setup();
    let key = manager.create(CreateRequest::new("sa")).await.unwrap();
    let id = key.api_key.id;
    let snapshot = || async {
        let page = store.inner().list(&"sa".parse().unwrap(), PageRequest::default()).await.unwrap();
        page.items
    };
    let before = snapshot().await;

    // create: nothing written when the insert fails.
    store.inject(Op::Insert, Fault::Error, 1);
    assert!(matches!(manager.create(CreateRequest::new("sa")).await, Err(ManageError::Store(_))));
    store.inject(Op::Insert, Fault::Timeout(Duration::from_millis(2)), 1);
    assert!(matches!(manager.create(CreateRequest::new("sa")).await, Err(ManageError::Store(StoreError::Timeout(_)))));
    // reissue: neither a new key nor a change to the old one.
    store.inject(Op::Reissue, Fault::Error, 1);
    assert!(manager.reissue(&id, Duration::from_secs(60)).await.is_err());
    // reissue where reading the old key fails.
    store.inject(Op::Get, Fault::Error, 1);
    assert!(manager.reissue(&id, Duration::ZERO).await.is_err());
    // revoke and delete.
    store.inject(Op::Revoke, Fault::Error, 1);
    assert!(manager.revoke(&id).await.is_err());
    store.inject(Op::Delete, Fault::Error, 1);
    assert!(manager.delete(&id).await.is_err());
    // import.
    store.inject(Op::Insert, Fault::Error, 1);
    let imported = Secret::from("AQVNimportimportimport0123456789".to_owned());
    assert!(manager.import(CreateRequest::new("sa"), &imported).await.is_err());

    assert_eq!(snapshot().await, before, "a failed operation changed the store");
    assert_eq!(store.inner().len(), 1);
    // The key is untouched and still verifies; the failed import is unknown.
    verifier.verify(&header(&key.secret), None).await.unwrap();
    assert!(matches!(verifier.verify(&header(&imported), None).await, Err(VerifyError::UnknownKey(None))));

    // Healthy again: the same operations go through.
    let reissued = manager.reissue(&id, Duration::ZERO).await.unwrap();
    assert_eq!(manager.get(&id).await.unwrap().status, KeyStatus::Revoked);
    verifier.verify(&header(&reissued.secret), None).await.unwrap();
}

#[tokio::test]
async fn a_lost_acknowledgement_is_reported_and_never_shows_a_usable_secret_twice() {
    let (store, manager, _verifier) = setup();
    store.inject(Op::Insert, Fault::AfterWrite, 1);
    let e = manager.create(CreateRequest::new("sa")).await.unwrap_err();
    assert!(matches!(e, ManageError::Store(StoreError::Unavailable(_))));
    // The write happened (the server committed), but its secret was never
    // returned: the orphan is listed and can be deleted by an operator.
    let page = manager.list("sa", PageRequest::default()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    manager.delete(&page.items[0].id).await.unwrap();
}

#[tokio::test]
async fn last_used_writes_are_retried_after_a_failure() {
    let (store, manager, verifier) = setup();
    let keys: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(manager.create(CreateRequest::new("sa")).await.unwrap());
        }
        v
    };
    for k in &keys {
        verifier.verify(&header(&k.secret), None).await.unwrap();
    }
    store.inject(Op::TouchLastUsed, Fault::Error, 1);
    assert!(verifier.flush_last_used().await.is_err());
    assert_eq!(verifier.pending_last_used(), 3);
    assert_eq!(verifier.flush_last_used().await.unwrap(), 3);
    assert_eq!(store.calls(Op::TouchLastUsed), 2, "one batched write per flush");
    let ids: HashSet<_> = keys.iter().map(|k| k.api_key.id).collect();
    for id in ids {
        assert!(manager.get(&id).await.unwrap().last_used_at.is_some());
    }
}

/// A store that cannot answer the pepper check is reported as unavailable,
/// never as a mismatch (and never as a pass).
#[tokio::test]
async fn a_pepper_check_against_a_failing_store_is_unavailable() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    store.always(Op::PepperFingerprint, Fault::Error);
    let m = KeyManager::builder(
        store,
        Peppers::single(Pepper::new(1, [1u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    assert!(matches!(m.check_peppers().await, Err(api_keys::PepperCheckError::Store(StoreError::Unavailable(_)))));
}
