//! Garbage is rejected before the store: a bad checksum or a malformed
//! header or key makes no store call at all (the benches `reject_bad_checksum`
//! and `reject_malformed` measure how cheap that is; this test pins that the
//! store is never reached). Counted with the fault-injecting wrapper, which
//! records every call.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;

use api_keys::testing::{FaultyStore, Op};
use api_keys::{CreateRequest, KeyManager, MemoryStore, Pepper, Peppers, Verifier, VerifyError};

type Store = FaultyStore<MemoryStore>;

const OPS: [Op; 8] =
    [Op::Insert, Op::Get, Op::GetByDigest, Op::List, Op::Revoke, Op::Delete, Op::Reissue, Op::TouchLastUsed];

fn total_calls(store: &Store) -> u64 {
    OPS.iter().map(|op| store.calls(*op)).sum()
}

async fn setup() -> (Arc<Store>, Verifier<Store>, Verifier<Store>, Vec<u8>) {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let manager = KeyManager::builder(
        store.clone(),
        Peppers::single(Pepper::new(1, [9u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    let created = manager.create(CreateRequest::new("robot")).await.unwrap();
    let verifier = manager.verifier().accept_imported(true).build();
    let strict = manager.verifier().accept_imported(false).build();
    (store, verifier, strict, created.secret.expose_secret().as_bytes().to_vec())
}

/// Typos and malformed values that carry the key prefix, or are not an
/// `Api-Key` header at all.
fn garbage(key: &[u8]) -> Vec<Vec<u8>> {
    let with = |k: &[u8]| [b"Api-Key ".as_slice(), k].concat();
    let mut typo = key.to_vec();
    typo[40] = if typo[40] == b'a' { b'b' } else { b'a' };
    let mut bad_id = key.to_vec();
    bad_id[5] = b'A';
    let mut bad_check = key.to_vec();
    let last = bad_check.len() - 1;
    bad_check[last] = if bad_check[last] == b'a' { b'b' } else { b'a' };
    vec![
        with(&typo),
        with(&bad_check),
        with(&bad_id),
        with(&key[..key.len() - 1]),
        with(&[key, b"x"].concat()),
        [b"Api-Key ".as_slice(), &key[..30], b" ", &key[30..]].concat(),
        [b"Api-Key ".as_slice(), &key[..30], b"\n", &key[30..]].concat(),
        [b"Api-Key ".as_slice(), key, b",Api-Key x"].concat(),
        [b"Bearer ".as_slice(), key].concat(),
        [b"Basic ".as_slice(), key].concat(),
        b"Api-Key".to_vec(),
        b"Api-Key ak_".to_vec(),
        b"Api-Key short".to_vec(),
        Vec::new(),
        vec![b'a'; 1 << 16],
    ]
}

#[tokio::test]
async fn garbage_makes_no_store_call() {
    let (store, verifier, strict, key) = setup().await;
    for value in garbage(&key) {
        for v in [&verifier, &strict] {
            let before = total_calls(&store);
            let r = v.verify(&value, None).await;
            assert!(r.is_err(), "accepted {:?}", String::from_utf8_lossy(&value));
            assert_eq!(total_calls(&store), before, "store reached for {:?}: {r:?}", String::from_utf8_lossy(&value));
        }
    }
    // The checksum case reports itself as such.
    let mut typo = key.clone();
    typo[40] = if typo[40] == b'a' { b'b' } else { b'a' };
    let r = verifier.verify(&[b"Api-Key ".as_slice(), &typo].concat(), None).await;
    assert!(matches!(r, Err(VerifyError::BadChecksum)), "{r:?}");
}

#[tokio::test]
async fn unprefixed_values_are_looked_up_as_imported_only_when_enabled() {
    let (store, verifier, strict, _) = setup().await;
    let opaque = b"Api-Key AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    let before = store.calls(Op::GetByDigest);
    assert!(matches!(verifier.verify(opaque, None).await, Err(VerifyError::UnknownKey(None))));
    assert_eq!(store.calls(Op::GetByDigest), before + 1, "one digest-index probe per pepper");
    let before = total_calls(&store);
    assert!(strict.verify(opaque, None).await.is_err());
    assert_eq!(total_calls(&store), before, "no store call with accept_imported(false)");
    // Shorter than the imported minimum: never hashed, never looked up.
    let before = total_calls(&store);
    assert!(verifier.verify(b"Api-Key AQVN3sHvAWTe", None).await.is_err());
    assert_eq!(total_calls(&store), before);
}

/// Issue 17 finding 5: no import is longer than `Secret::MAX_IMPORTED_LEN`
/// (512) bytes, so longer unprefixed values are refused before any HMAC or
/// store read even where imports are accepted; and the default verifier
/// does not look unprefixed values up at all.
#[tokio::test]
async fn over_long_unprefixed_values_and_the_default_make_no_store_call() {
    let (store, verifier, _, _) = setup().await;
    let value = |n: usize| [b"Api-Key ".as_slice(), &vec![b'Q'; n]].concat();
    let before = total_calls(&store);
    for n in [api_keys::Secret::MAX_IMPORTED_LEN + 1, 2048, 4000] {
        let r = verifier.verify(&value(n), None).await;
        assert!(matches!(r, Err(VerifyError::MalformedKey(_))), "{n}: {r:?}");
    }
    assert_eq!(total_calls(&store), before, "an over-long value reached the store");
    let r = verifier.verify(&value(api_keys::Secret::MAX_IMPORTED_LEN), None).await;
    assert!(matches!(r, Err(VerifyError::UnknownKey(None))), "{r:?}");
    assert_eq!(store.calls(Op::GetByDigest), 1, "at the limit it is an import candidate");

    let default = Verifier::builder(store.clone(), Peppers::single(Pepper::new(1, [9u8; 32]).unwrap())).build();
    assert!(!default.config().accept_imported, "imports are opt-in");
    let before = total_calls(&store);
    let r = default.verify(b"Api-Key AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w", None).await;
    assert!(matches!(r, Err(VerifyError::MalformedKey(_))), "{r:?}");
    assert_eq!(total_calls(&store), before, "the default verifier reached the store");
}
