//! The whole key lifecycle over the memory store: create → verify → scope
//! denied → expiry via the clock → reissue with and without grace → revoke →
//! rejected; import → verify; policy, listing, deletion, last-used, pepper
//! rotation.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use api_keys::{
    ClientClass, CreateRequest, DenyAll, KeyId, KeyManager, KeyStatus, ManageError, ManualClock, MemoryStore,
    PageRequest, Pepper, PepperCheckError, Peppers, PolicyDenied, ScopeError, Secret, Timestamp, Verifier, VerifyError,
};

const T0: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

struct Fixture {
    clock: Arc<ManualClock>,
    manager: KeyManager<MemoryStore>,
    verifier: Verifier<MemoryStore>,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(T0).unwrap()));
    let manager = KeyManager::builder(
        Arc::new(MemoryStore::new()),
        Peppers::single(Pepper::new(1, [7u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .clock(clock.clone())
    .build();
    let verifier = manager.verifier().accept_imported(true).build();
    Fixture { clock, manager, verifier }
}

fn header(secret: &Secret) -> String {
    format!("Api-Key {}", secret.expose_secret())
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[tokio::test]
async fn full_lifecycle() {
    let f = fixture();
    let cat = f.manager.catalog();
    let read = cat.requirement("yc.monitoring.read").unwrap();
    let post = cat.requirement("yc.postbox.send").unwrap();

    // Create with scopes and an expiry; the secret is shown once.
    let created = f
        .manager
        .create(
            CreateRequest::new("ajegtlf2q28a")
                .description("this API-key is for my-robot")
                .scopes(["yc.monitoring.manage", "yc.serverless.functions.invoke"])
                .expires_at(at("2027-02-01T00:00:00Z")),
        )
        .await
        .unwrap();
    let id = created.api_key.id;
    let h = header(&created.secret);

    // Verify: manage implies read.
    let p = f.verifier.verify(h.as_bytes(), Some(&read)).await.unwrap();
    assert_eq!(p.key_id(), &id);
    assert_eq!(p.service_account_id().as_str(), "ajegtlf2q28a");
    assert_eq!(p.scopes().len(), 2);
    // No scope requirement at all is fine too.
    f.verifier.verify(h.as_bytes(), None).await.unwrap();

    // Scope denied, naming the scope.
    let e = f.verifier.verify(h.as_bytes(), Some(&post)).await.unwrap_err();
    assert!(
        matches!(&e, VerifyError::InsufficientScope { key, required } if *key == id && required.as_str() == "yc.postbox.send")
    );
    assert_eq!(e.client_class(), ClientClass::InsufficientScope);

    // Reissue with a one-hour grace: both keys work during the grace.
    let reissued = f.manager.reissue(&id, Duration::from_secs(3600)).await.unwrap();
    let new_id = reissued.api_key.id;
    let h2 = header(&reissued.secret);
    assert_ne!(new_id, id);
    assert_eq!(reissued.api_key.scopes, created.api_key.scopes);
    assert_eq!(reissued.api_key.expires_at, created.api_key.expires_at, "new key inherits the expiry");
    f.verifier.verify(h.as_bytes(), Some(&read)).await.unwrap();
    f.verifier.verify(h2.as_bytes(), Some(&read)).await.unwrap();
    let old = f.manager.get(&id).await.unwrap();
    assert_eq!(old.links.replaced_by, Some(new_id));
    assert_eq!(old.expires_at, Some(Timestamp::from_unix_seconds(T0 + 3600).unwrap()));
    assert_eq!(f.manager.get(&new_id).await.unwrap().links.reissued_from, Some(id));
    // A key can be reissued only once.
    assert!(matches!(f.manager.reissue(&id, Duration::ZERO).await, Err(ManageError::Conflict { .. })));

    // After the grace the old key is expired; the new one still works.
    f.clock.advance(Duration::from_secs(3600));
    let e = f.verifier.verify(h.as_bytes(), Some(&read)).await.unwrap_err();
    assert!(matches!(e, VerifyError::Expired(k) if k == id));
    assert_eq!(e.client_class(), ClientClass::InvalidToken);
    f.verifier.verify(h2.as_bytes(), Some(&read)).await.unwrap();

    // Reissue without grace (compromise): the old key is revoked at once.
    let third = f.manager.reissue(&new_id, Duration::ZERO).await.unwrap();
    let e = f.verifier.verify(h2.as_bytes(), Some(&read)).await.unwrap_err();
    assert!(matches!(e, VerifyError::Revoked(k) if k == new_id));
    let h3 = header(&third.secret);
    f.verifier.verify(h3.as_bytes(), Some(&read)).await.unwrap();

    // Revoke: rejected from the next request on, still listed.
    f.manager.revoke(&third.api_key.id).await.unwrap();
    f.manager.revoke(&third.api_key.id).await.unwrap(); // idempotent
    assert!(matches!(f.verifier.verify(h3.as_bytes(), None).await, Err(VerifyError::Revoked(_))));
    assert_eq!(f.manager.get(&third.api_key.id).await.unwrap().status, KeyStatus::Revoked);
    assert!(matches!(f.manager.reissue(&third.api_key.id, Duration::ZERO).await, Err(ManageError::Conflict { .. })));

    // Expiry via the clock: the key's own expiry.
    f.clock.set(at("2027-02-01T00:00:00Z"));
    let fresh = f.manager.create(CreateRequest::new("other").expires_at(at("2027-02-01T00:00:01Z"))).await.unwrap();
    f.verifier.verify(header(&fresh.secret).as_bytes(), None).await.unwrap();
    f.clock.advance(Duration::from_secs(1));
    assert!(matches!(f.verifier.verify(header(&fresh.secret).as_bytes(), None).await, Err(VerifyError::Expired(_))));
}

#[tokio::test]
async fn grace_never_extends_beyond_the_original_expiry() {
    let f = fixture();
    let c = f
        .manager
        .create(CreateRequest::new("sa").expires_at(Timestamp::from_unix_seconds(T0 + 60).unwrap()))
        .await
        .unwrap();
    f.manager.reissue(&c.api_key.id, Duration::from_secs(86_400)).await.unwrap();
    let old = f.manager.get(&c.api_key.id).await.unwrap();
    assert_eq!(old.expires_at, Some(Timestamp::from_unix_seconds(T0 + 60).unwrap()));
}

#[tokio::test]
async fn default_scopes_and_unknown_scopes() {
    let f = fixture();
    let c = f.manager.create(CreateRequest::new("sa")).await.unwrap();
    assert_eq!(c.api_key.scopes.len(), 10);
    assert!(c.api_key.scopes.contains("yc.monitoring.manage"));
    let e = f.manager.create(CreateRequest::new("sa").scopes(["yc.monitoring.read", "yc.made.up"])).await.unwrap_err();
    assert!(matches!(&e, ManageError::Scope(ScopeError::Unknown(s)) if s == "yc.made.up"));
    assert!(e.to_string().contains("yc.made.up"));
    let e = f.manager.create(CreateRequest::new("sa").scopes(Vec::<String>::new())).await.unwrap_err();
    assert!(matches!(e, ManageError::Scope(ScopeError::EmptyList)));
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_written() {
    let f = fixture();
    let past = Timestamp::from_unix_seconds(T0).unwrap();
    let cases = [
        CreateRequest::new(""),
        CreateRequest::new("bad id"),
        CreateRequest::new("sa").description("line\nbreak"),
        CreateRequest::new("sa").expires_at(past),
        CreateRequest::new("sa").scopes(["not a scope"]),
    ];
    for req in cases {
        assert!(f.manager.create(req).await.is_err());
    }
    assert!(f.manager.store().is_empty());
    assert!(matches!(
        f.manager.create(CreateRequest::new("sa").expires_at(past)).await,
        Err(ManageError::AlreadyExpired(t)) if t == past
    ));
}

#[tokio::test]
async fn creation_policy_can_forbid_keys() {
    let store = Arc::new(MemoryStore::new());
    let peppers = Peppers::single(Pepper::new(1, [1u8; 32]).unwrap());
    let m = KeyManager::builder(store.clone(), peppers.clone(), api_keys::testing::scope_catalog())
        .policy(DenyAll("organisation policy forbids API keys".into()))
        .build();
    let e = m.create(CreateRequest::new("sa")).await.unwrap_err();
    assert!(matches!(&e, ManageError::PolicyDenied(PolicyDenied { reason, .. }) if reason.contains("organisation")));
    assert!(store.is_empty());

    // A closure policy: only keys with an expiry, and no reissue.
    let m = KeyManager::builder(store.clone(), peppers, api_keys::testing::scope_catalog())
        .policy(|r: &api_keys::KeyRequest<'_>| {
            if r.operation == api_keys::OperationKind::Reissue {
                return Err(PolicyDenied::new("reissue disabled"));
            }
            r.expires_at.map(|_| ()).ok_or_else(|| PolicyDenied::new("keys must expire"))
        })
        .build();
    assert!(matches!(m.create(CreateRequest::new("sa")).await, Err(ManageError::PolicyDenied(_))));
    let far = "2099-01-01T00:00:00Z".parse().unwrap();
    let c = m.create(CreateRequest::new("sa").expires_at(far)).await.unwrap();
    assert!(matches!(m.reissue(&c.api_key.id, Duration::ZERO).await, Err(ManageError::PolicyDenied(_))));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn import_then_verify() {
    let f = fixture();
    let secret = Secret::from("AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w".to_owned());
    let info =
        f.manager.import(CreateRequest::new("sa").scopes(["yc.ai.foundationModels.execute"]), &secret).await.unwrap();
    // Issue 17 finding 9: never the secret's own last characters (as the
    // masked key of an imported key was before), but six hex digits of its
    // digest.
    assert_ne!(info.masked_key.to_string(), "****rCG02w");
    assert!(info.masked_key.tail().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(info.masked_key.tail().len(), 6);
    let tr = f.manager.catalog().requirement("yc.ai.translate.execute").unwrap();
    let p = f.verifier.verify(header(&secret).as_bytes(), Some(&tr)).await.unwrap();
    assert_eq!(p.key_id(), &info.id);
    // Importing the same secret twice is refused.
    assert!(matches!(f.manager.import(CreateRequest::new("sa"), &secret).await, Err(ManageError::AlreadyImported)));
    // Unusable secrets.
    for bad in ["short", "has space in it....", "ak_looks_like_ours_0123456789"] {
        let e = f.manager.import(CreateRequest::new("sa"), &Secret::from(bad.to_owned())).await.unwrap_err();
        assert!(matches!(e, ManageError::InvalidImportedSecret(_)), "{bad}");
        assert!(!e.to_string().contains(bad));
    }
    // A near miss of the imported secret is an unknown key.
    let e = f.verifier.verify(b"Api-Key AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02x", None).await.unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey(None)));
    // Revoking works for imported keys too.
    f.manager.revoke(&info.id).await.unwrap();
    assert!(matches!(f.verifier.verify(header(&secret).as_bytes(), None).await, Err(VerifyError::Revoked(_))));

    // With imports disabled the digest path is never taken.
    let strict = f.manager.verifier().accept_imported(false).build();
    assert!(matches!(strict.verify(header(&secret).as_bytes(), None).await, Err(VerifyError::MalformedKey(_))));
}

#[tokio::test]
async fn unknown_id_and_wrong_secret_look_the_same_to_clients() {
    let f = fixture();
    let c = f.manager.create(CreateRequest::new("sa")).await.unwrap();
    let s = c.secret.expose_secret();
    // Same id, different secret, valid checksum: build it through the format.
    let other = f.manager.create(CreateRequest::new("sa")).await.unwrap();
    f.manager.delete(&other.api_key.id).await.unwrap();
    let unknown = f.verifier.verify(header(&other.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(unknown, VerifyError::UnknownKey(Some(_))));
    let mut wrong = s.as_bytes().to_vec();
    // Swap the secret part of `c` for that of `other`, fix the checksum.
    wrong[24..67].copy_from_slice(&other.secret.expose_secret().as_bytes()[24..67]);
    let fixed = fix_checksum(&wrong);
    let wrong_secret = f.verifier.verify(format!("Api-Key {fixed}").as_bytes(), None).await.unwrap_err();
    assert!(matches!(wrong_secret, VerifyError::WrongSecret(k) if k == c.api_key.id));
    assert_eq!(unknown.client_class(), wrong_secret.client_class());
    assert_eq!(unknown.client_class(), ClientClass::InvalidToken);
    for e in [&unknown, &wrong_secret] {
        assert!(!e.to_string().contains(&s[24..67]));
    }
}

/// Recomputes the trailing checksum with the format's public checksum.
fn fix_checksum(token: &[u8]) -> String {
    let body = &token[..token.len() - 6];
    let check = api_keys::token_checksum(&body[3..]); // covers id "_" secret, not the prefix
    format!("{}{}", std::str::from_utf8(body).unwrap(), std::str::from_utf8(&check).unwrap())
}

#[tokio::test]
async fn header_errors_map_to_client_classes() {
    let f = fixture();
    let cases: [(&[u8], ClientClass); 8] = [
        (b"", ClientClass::NoCredentials),
        (b"Basic dXNlcjpwYXNz", ClientClass::NoCredentials),
        (b"Bearer abc.def", ClientClass::NoCredentials),
        (b"Api-Key", ClientClass::InvalidRequest),
        (b"Api-Key a b", ClientClass::InvalidRequest),
        (b"Api-Key ak_000", ClientClass::InvalidToken),
        (b"Api-Key \x00", ClientClass::InvalidRequest),
        (
            b"Api-Key ak_aaaaaaaaaaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000",
            ClientClass::InvalidToken,
        ),
    ];
    for (h, class) in cases {
        let e = f.verifier.verify(h, None).await.unwrap_err();
        assert_eq!(e.client_class(), class, "{}: {e}", String::from_utf8_lossy(h));
    }
    let e = f
        .verifier
        .verify(b"Api-Key ak_aaaaaaaaaaaaaaaaaaaa_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000", None)
        .await;
    assert!(matches!(e, Err(VerifyError::BadChecksum)));
    let big = vec![b'a'; 1 << 20];
    assert!(matches!(f.verifier.verify(&big, None).await, Err(VerifyError::Malformed(_))));
}

#[tokio::test]
async fn list_is_masked_paginated_and_per_account() {
    let f = fixture();
    let mut ids: Vec<KeyId> = Vec::new();
    for _ in 0..7 {
        ids.push(f.manager.create(CreateRequest::new("sa-1")).await.unwrap().api_key.id);
    }
    f.manager.create(CreateRequest::new("sa-2")).await.unwrap();
    ids.sort();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let p = f.manager.list("sa-1", page).await.unwrap();
        assert!(p.items.len() <= 3);
        for k in &p.items {
            assert!(k.masked_key.to_string().starts_with("****"));
            assert_eq!(k.masked_key.tail().len(), 6);
        }
        seen.extend(p.items.iter().map(|k| k.id));
        match p.next {
            Some(next) => page = PageRequest::after(3, next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let json = serde_json::to_string(&f.manager.list("sa-1", PageRequest::first(100)).await.unwrap().items).unwrap();
    assert!(!json.contains("digest"));
    assert!(matches!(f.manager.list("bad id", PageRequest::default()).await, Err(ManageError::InvalidField(_))));
}

#[tokio::test]
async fn delete_removes_and_reports_missing() {
    let f = fixture();
    let c = f.manager.create(CreateRequest::new("sa")).await.unwrap();
    f.manager.delete(&c.api_key.id).await.unwrap();
    assert!(matches!(f.manager.get(&c.api_key.id).await, Err(ManageError::NotFound(_))));
    assert!(matches!(f.manager.delete(&c.api_key.id).await, Err(ManageError::NotFound(_))));
    assert!(matches!(f.verifier.verify(header(&c.secret).as_bytes(), None).await, Err(VerifyError::UnknownKey(_))));
}

#[tokio::test]
async fn last_used_is_coalesced_and_flushed_in_batches() {
    let f = fixture();
    let a = f.manager.create(CreateRequest::new("sa")).await.unwrap();
    let b = f.manager.create(CreateRequest::new("sa")).await.unwrap();
    for _ in 0..50 {
        f.verifier.verify(header(&a.secret).as_bytes(), None).await.unwrap();
        f.verifier.verify(header(&b.secret).as_bytes(), None).await.unwrap();
    }
    assert_eq!(f.manager.get(&a.api_key.id).await.unwrap().last_used_at, None, "no write per request");
    assert_eq!(f.verifier.pending_last_used(), 2);
    assert_eq!(f.verifier.flush_last_used().await.unwrap(), 2);
    let t0 = Timestamp::from_unix_seconds(T0).unwrap();
    assert_eq!(f.manager.get(&a.api_key.id).await.unwrap().last_used_at, Some(t0));
    // Within the interval: nothing to write.
    f.clock.advance(Duration::from_secs(30));
    f.verifier.verify(header(&a.secret).as_bytes(), None).await.unwrap();
    assert_eq!(f.verifier.flush_last_used().await.unwrap(), 0);
    // Once a flush has seen the interval pass, the next use is noted and
    // written by the following flush: one write with the latest use.
    f.clock.advance(Duration::from_secs(31));
    assert_eq!(f.verifier.flush_last_used().await.unwrap(), 0);
    f.verifier.verify(header(&a.secret).as_bytes(), None).await.unwrap();
    assert_eq!(f.verifier.flush_last_used().await.unwrap(), 1);
    let t61 = Timestamp::from_unix_seconds(T0 + 61).unwrap();
    assert_eq!(f.manager.get(&a.api_key.id).await.unwrap().last_used_at, Some(t61));
    // Failed verifications never count as use.
    let _ = f.verifier.verify(b"Api-Key ak_000", None).await;
    assert_eq!(f.verifier.pending_last_used(), 0);
}

#[tokio::test]
async fn pepper_rotation_keeps_old_keys_valid() {
    let store = Arc::new(MemoryStore::new());
    let p1 = Pepper::new(1, [1u8; 32]).unwrap();
    let m1 =
        KeyManager::builder(store.clone(), Peppers::single(p1.clone()), api_keys::testing::scope_catalog()).build();
    let old = m1.create(CreateRequest::new("sa")).await.unwrap();
    let imported = Secret::from("AQVNlegacyLegacyLegacy0123456789".to_owned());
    m1.import(CreateRequest::new("sa"), &imported).await.unwrap();

    let rotated = Peppers::new(Pepper::new(2, [2u8; 32]).unwrap(), [p1]).unwrap();
    let m2 = KeyManager::builder(store.clone(), rotated, api_keys::testing::scope_catalog()).build();
    let new = m2.create(CreateRequest::new("sa")).await.unwrap();
    let v2 = m2.verifier().accept_imported(true).build();
    v2.verify(header(&old.secret).as_bytes(), None).await.unwrap();
    v2.verify(header(&new.secret).as_bytes(), None).await.unwrap();
    v2.verify(header(&imported).as_bytes(), None).await.unwrap();
    assert_eq!(store.get_now_for_tests(&new.api_key.id), Some(2));

    // A verifier without the old pepper fails closed for old keys.
    let only2 = Peppers::single(Pepper::new(2, [2u8; 32]).unwrap());
    let m3 = KeyManager::builder(store, only2, api_keys::testing::scope_catalog()).build();
    let e = m3.verifier().build().verify(header(&old.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::UnknownPepper { version: 1, .. }));
    assert_eq!(e.client_class(), ClientClass::Unavailable);
}

/// Issue 17 finding 7: a secret imported before a pepper rotation cannot be
/// imported again for another account after it (the duplicate probe runs
/// under every pepper held, as the verifier does).
#[tokio::test]
async fn the_same_secret_cannot_be_imported_twice_across_a_pepper_rotation() {
    let store = Arc::new(MemoryStore::new());
    let p1 = Pepper::new(1, [1u8; 32]).unwrap();
    let m1 =
        KeyManager::builder(store.clone(), Peppers::single(p1.clone()), api_keys::testing::scope_catalog()).build();
    let secret = Secret::from("AQVNlegacyLegacyLegacy0123456789".to_owned());
    let a = m1.import(CreateRequest::new("team-a"), &secret).await.unwrap();

    let rotated = Peppers::new(Pepper::new(2, [2u8; 32]).unwrap(), [p1]).unwrap();
    let m2 = KeyManager::builder(store.clone(), rotated, api_keys::testing::scope_catalog()).build();
    let again = m2.import(CreateRequest::new("team-b"), &secret).await;
    assert!(matches!(again, Err(ManageError::AlreadyImported)), "{again:?}");
    // It still authenticates as team-a, and only as team-a.
    let p = m2.verifier().accept_imported(true).build().verify(header(&secret).as_bytes(), None).await.unwrap();
    assert_eq!((p.key_id(), p.service_account_id().as_str()), (&a.id, "team-a"));
}

trait PepperOf {
    fn get_now_for_tests(&self, id: &KeyId) -> Option<u32>;
}

impl PepperOf for Arc<MemoryStore> {
    fn get_now_for_tests(&self, id: &KeyId) -> Option<u32> {
        use api_keys::KeyStore;
        let fut = self.get(id);
        let rec = futures_now(fut).ok().flatten()?;
        Some(rec.pepper_version)
    }
}

fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("pending"),
    }
}

#[tokio::test]
async fn created_key_prints_the_api_key_yaml_shape() {
    let f = fixture();
    let c = f
        .manager
        .create(
            CreateRequest::new("ajegtlf2q28a").scopes(["yc.monitoring.read"]).expires_at(at("2030-01-01T21:00:00Z")),
        )
        .await
        .unwrap();
    let yaml = serde_norway::to_string(&c).unwrap();
    let v: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
    let api_key = v.get("api_key").unwrap();
    for field in ["id", "service_account_id", "created_at", "scopes", "expires_at"] {
        assert!(api_key.get(field).is_some(), "missing {field} in {yaml}");
    }
    assert_eq!(api_key.as_mapping().unwrap().len(), 5);
    assert_eq!(v.get("secret").unwrap().as_str().unwrap(), c.secret.expose_secret());
    assert_eq!(api_key.get("expires_at").unwrap().as_str().unwrap(), "2030-01-01T21:00:00Z");
}

/// Issue 17 finding 4: the store keeps a fingerprint per pepper version; a
/// different pepper under a recorded version is refused, a new version
/// (a rotation) is recorded. (A failing store: tests/faults.rs.)
#[tokio::test]
async fn a_wrong_pepper_is_refused_at_start() {
    let store = Arc::new(MemoryStore::new());
    let right = Pepper::new(1, [1u8; 32]).unwrap();
    let m =
        KeyManager::builder(store.clone(), Peppers::single(right.clone()), api_keys::testing::scope_catalog()).build();
    m.check_peppers().await.unwrap();
    m.check_peppers().await.unwrap();

    let wrong = Peppers::single(Pepper::new(1, [9u8; 32]).unwrap());
    let m_wrong = KeyManager::builder(store.clone(), wrong, api_keys::testing::scope_catalog()).build();
    let e = m_wrong.check_peppers().await.unwrap_err();
    assert!(matches!(e, PepperCheckError::Mismatch { version: 1 }), "{e:?}");
    assert!(e.to_string().contains("pepper version 1"), "{e}");

    // A rotation: version 2 is new, version 1 still matches.
    let rotated = Peppers::new(Pepper::new(2, [2u8; 32]).unwrap(), [right]).unwrap();
    let m2 = KeyManager::builder(store.clone(), rotated, api_keys::testing::scope_catalog()).build();
    m2.check_peppers().await.unwrap();
    // ... and from then on version 2 is pinned too.
    let wrong2 = Peppers::single(Pepper::new(2, [8u8; 32]).unwrap());
    let e = KeyManager::builder(store, wrong2, api_keys::testing::scope_catalog())
        .build()
        .check_peppers()
        .await
        .unwrap_err();
    assert!(matches!(e, PepperCheckError::Mismatch { version: 2 }), "{e:?}");
}

/// Issue 17 finding 6: an imported secret of the native secret's shape
/// (43 alphanumerics) never authenticates as `<prefix><its id>_<secret><crc>`,
/// whether imported keys are accepted or not: a non-native record found by
/// id is an unknown key.
#[tokio::test]
async fn an_imported_record_never_authenticates_as_a_native_token() {
    let f = fixture();
    let secret = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg";
    assert_eq!(secret.len(), 43);
    let info = f.manager.import(CreateRequest::new("sa"), &Secret::from(secret.to_owned())).await.unwrap();
    let body = format!("{}_{secret}", info.id);
    let check = api_keys::token_checksum(body.as_bytes());
    let forged = format!("Api-Key ak_{body}{}", std::str::from_utf8(&check).unwrap());
    let strict = f.manager.verifier().build();
    for v in [&f.verifier, &strict] {
        let e = v.verify(forged.as_bytes(), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::UnknownKey(Some(id)) if id == info.id), "{e:?}");
    }
    // The imported key itself still verifies where imports are accepted.
    f.verifier.verify(format!("Api-Key {secret}").as_bytes(), None).await.unwrap();
}

// ----- key controls (issue 15) -----

mod controls {
    use api_keys::controls::{
        ControlError, Credits, ExternalId, IpAllowList, KeyControls, Metadata, RateLimit, RateLimits, Refill,
        RefillPeriod,
    };
    use api_keys::{Clock as _, OperationKind, UpdateRequest};

    use super::*;

    /// An update clearing one control, and the check that it is gone.
    type Clear = fn(UpdateRequest) -> UpdateRequest;
    type Cleared = fn(&KeyControls) -> bool;

    fn every_control(now: Timestamp) -> KeyControls {
        KeyControls::new()
            .metadata(Metadata::parse(r#"{"plan":"pro","seats":3}"#).unwrap())
            .external_id(ExternalId::new("cust_42").unwrap())
            .allowed_ips("10.0.0.0/8,2001:db8::/32".parse().unwrap())
            .credits(
                Credits::new(100)
                    .unwrap()
                    .refill(Refill::new(100, RefillPeriod::Daily).unwrap().at(6, 30).unwrap(), now),
            )
            .rate_limits("api=100/1s:burst=20".parse().unwrap())
    }

    #[tokio::test]
    async fn a_key_is_created_with_its_controls_and_the_log_records_them() {
        let f = fixture();
        let now = f.clock.now();
        let created = f
            .manager
            .create(
                CreateRequest::new("sa-1")
                    .enabled(false)
                    .metadata(Metadata::parse(r#"{"plan":"pro","seats":3}"#).unwrap())
                    .external_id(ExternalId::new("cust_42").unwrap())
                    .allowed_ips("10.0.0.0/8,2001:db8::/32".parse().unwrap())
                    .credits(
                        Credits::new(100)
                            .unwrap()
                            .refill(Refill::new(100, RefillPeriod::Daily).unwrap().at(6, 30).unwrap(), now),
                    )
                    .rate_limits("api=100/1s:burst=20".parse().unwrap()),
            )
            .await
            .unwrap();
        let info = f.manager.get(&created.api_key.id).await.unwrap();
        assert!(!info.enabled);
        assert_eq!(info.controls.as_deref(), Some(&every_control(now)));
        // A disabled key is refused, with its own variant.
        let e = f.verifier.verify(header(&created.secret).as_bytes(), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::Disabled(_)), "{e:?}");
        assert_eq!(e.client_class(), ClientClass::InvalidToken);

        let log = f.manager.operations(&created.api_key.id, PageRequest::starting(10, None)).await.unwrap();
        let entry = &log.items[0];
        assert_eq!(entry.kind, OperationKind::Create);
        assert_eq!(entry.changes.enabled, Some(false));
        assert_eq!(entry.changes.controls.external_id, Some(Some(ExternalId::new("cust_42").unwrap())));
        let json = serde_json::to_string(&entry.changes).unwrap();
        assert!(json.contains("cust_42") && json.contains("api=100/1s:burst=20"), "{json}");
        assert!(!json.contains(created.secret.expose_secret()), "never the secret");

        // The one-call builder gives the same record.
        let same = f.manager.create(CreateRequest::new("sa-1").controls(every_control(now))).await.unwrap();
        let same = f.manager.get(&same.api_key.id).await.unwrap();
        assert!(same.enabled);
        assert_eq!(same.controls, info.controls);
    }

    #[tokio::test]
    async fn update_disables_enables_sets_and_clears_each_control() {
        let f = fixture();
        let created = f.manager.create(CreateRequest::new("sa-1")).await.unwrap();
        let (id, auth) = (created.api_key.id, header(&created.secret));
        assert!(f.manager.get(&id).await.unwrap().controls.is_none(), "a plain key has no controls");

        let (info, op) = f.manager.update(&id, UpdateRequest::new().disable()).await.unwrap();
        assert!(!info.enabled);
        assert_eq!(op.changes.enabled, Some(false));
        assert!(matches!(f.verifier.verify(auth.as_bytes(), None).await, Err(VerifyError::Disabled(_))));
        let (info, _) = f.manager.update(&id, UpdateRequest::new().enable()).await.unwrap();
        assert!(info.enabled);
        f.verifier.verify(auth.as_bytes(), None).await.unwrap();

        let now = f.clock.now();
        let all = every_control(now);
        let set = UpdateRequest::new()
            .metadata(all.metadata.clone().unwrap())
            .external_id(all.external_id.clone().unwrap())
            .allowed_ips(all.allowed_ips.clone().unwrap())
            .credits(all.credits.unwrap())
            .rate_limits(all.rate_limits.clone().unwrap());
        let (info, op) = f.manager.update(&id, set).await.unwrap();
        assert_eq!(info.controls.as_deref(), Some(&all));
        assert_eq!(op.changes.controls.credits, Some(all.credits));
        assert_eq!(op.changes.controls.allowed_ips, Some(all.allowed_ips.clone()));

        // Clearing one at a time; the last clear leaves no controls at all.
        let clears: [(Clear, Cleared); 5] = [
            (UpdateRequest::clear_metadata, |c| c.metadata.is_none()),
            (UpdateRequest::clear_external_id, |c| c.external_id.is_none()),
            (UpdateRequest::clear_allowed_ips, |c| c.allowed_ips.is_none()),
            (UpdateRequest::clear_credits, |c| c.credits.is_none()),
            (UpdateRequest::clear_rate_limits, |c| c.rate_limits.is_none()),
        ];
        for (i, (clear, cleared)) in clears.into_iter().enumerate() {
            let (info, op) = f.manager.update(&id, clear(UpdateRequest::new())).await.unwrap();
            let c = info.controls.as_deref().cloned().unwrap_or_default();
            assert!(cleared(&c), "clear #{i}: {c:?}");
            assert_eq!(op.kind, OperationKind::Update);
            let json = serde_json::to_value(&op.changes).unwrap();
            assert_eq!(json.as_object().unwrap().len(), 1, "one field changed: {json}");
            assert!(json.as_object().unwrap().values().all(serde_json::Value::is_null), "{json}");
        }
        assert!(f.manager.get(&id).await.unwrap().controls.is_none());
    }

    #[tokio::test]
    async fn a_reissued_key_inherits_the_controls_enabled_flag_and_remaining_credits() {
        let f = fixture();
        let now = f.clock.now();
        let created =
            f.manager.create(CreateRequest::new("sa-1").enabled(false).controls(every_control(now))).await.unwrap();
        let new = f.manager.reissue(&created.api_key.id, Duration::ZERO).await.unwrap();
        let info = f.manager.get(&new.api_key.id).await.unwrap();
        assert!(!info.enabled);
        assert_eq!(info.controls.as_deref(), Some(&every_control(now)));
        assert_eq!(info.controls.unwrap().credits.unwrap().remaining, 100);
    }

    #[tokio::test]
    async fn bad_control_input_gives_typed_errors_and_writes_nothing() {
        let f = fixture();
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(Metadata::MAX_BYTES));
        assert_eq!(Metadata::parse(&big).unwrap_err(), ControlError::Metadata);
        assert_eq!(Metadata::parse("[1,2]").unwrap_err(), ControlError::Metadata, "not an object");
        let deep = format!("{}1{}", r#"{"a":"#.repeat(9), "}".repeat(9));
        assert_eq!(Metadata::parse(&deep).unwrap_err(), ControlError::Metadata, "too deep");
        assert!(matches!("10.0.0.0/33".parse::<IpAllowList>(), Err(ControlError::IpRange(e)) if e == "10.0.0.0/33"));
        assert!(matches!("api=0/1s".parse::<RateLimit>(), Err(ControlError::RateLimit(_))));
        assert!(matches!("api=10/1w".parse::<RateLimit>(), Err(ControlError::RateLimit(_))));
        assert_eq!("a=1/1s,a=2/1s".parse::<RateLimits>().unwrap_err(), ControlError::RateLimits);
        assert!(ExternalId::new("has space").is_err());
        // Through the manager: the typed error is ManageError::InvalidControl.
        let e: ManageError = Metadata::parse(&big).map(drop).unwrap_err().into();
        assert!(matches!(e, ManageError::InvalidControl(ControlError::Metadata)));
        // Credits out of range (as a deserialised body can hold) are refused by create and update.
        let huge: Credits = serde_json::from_str(r#"{"remaining":18446744073709551615}"#).unwrap();
        let e = f.manager.create(CreateRequest::new("sa-1").credits(huge)).await.unwrap_err();
        assert!(matches!(e, ManageError::InvalidControl(ControlError::Credits(_))), "{e:?}");
        assert!(f.manager.store().is_empty());
        let id = f.manager.create(CreateRequest::new("sa-1")).await.unwrap().api_key.id;
        let e = f.manager.update(&id, UpdateRequest::new().credits(huge)).await.unwrap_err();
        assert!(matches!(e, ManageError::InvalidControl(ControlError::Credits(_))), "{e:?}");
        assert!(f.manager.get(&id).await.unwrap().controls.is_none(), "nothing written");
        assert_eq!(f.manager.operations(&id, PageRequest::starting(10, None)).await.unwrap().items.len(), 1);
    }

    #[tokio::test]
    async fn listing_by_external_id_and_expiring_within_spans_service_accounts() {
        let f = fixture();
        let cust = ExternalId::new("cust_42").unwrap();
        let mut theirs = Vec::new();
        for sa in ["sa-1", "sa-2", "sa-2"] {
            let c = f.manager.create(CreateRequest::new(sa).external_id(cust.clone())).await.unwrap();
            theirs.push(c.api_key.id);
        }
        f.manager.create(CreateRequest::new("sa-1").external_id(ExternalId::new("other").unwrap())).await.unwrap();
        theirs.sort();
        let mut seen = Vec::new();
        let mut page = PageRequest::first(2);
        loop {
            let p = f.manager.list_by_external_id(&cust, page).await.unwrap();
            assert!(p.items.iter().all(|k| k.controls.as_ref().unwrap().external_id.as_ref() == Some(&cust)));
            seen.extend(p.items.iter().map(|k| k.id));
            match p.next {
                Some(next) => page = PageRequest::after(2, next),
                None => break,
            }
        }
        assert_eq!(seen, theirs);
        let nobody = ExternalId::new("nobody").unwrap();
        assert!(f.manager.list_by_external_id(&nobody, PageRequest::first(10)).await.unwrap().items.is_empty());

        let now = f.clock.now();
        let day = Duration::from_secs(86_400);
        let soon = |d: u32| now.saturating_add(day * d);
        let in1 = f.manager.create(CreateRequest::new("sa-1").expires_at(soon(1))).await.unwrap().api_key.id;
        let in6 = f.manager.create(CreateRequest::new("sa-2").expires_at(soon(6))).await.unwrap().api_key.id;
        f.manager.create(CreateRequest::new("sa-1").expires_at(soon(30))).await.unwrap();
        let revoked = f.manager.create(CreateRequest::new("sa-1").expires_at(soon(2))).await.unwrap().api_key.id;
        f.manager.revoke(&revoked).await.unwrap();
        let mut want = vec![in1, in6];
        want.sort();
        let expiring = async || -> Vec<KeyId> {
            let page = f.manager.expiring_within(day * 7, PageRequest::first(10)).await.unwrap();
            page.items.iter().map(|k| k.id).collect()
        };
        let got = expiring().await;
        assert_eq!(got, want, "active keys expiring within 7 days, across accounts");
        // Two days on, the first has expired and is no longer a warning.
        f.clock.advance(day * 2);
        let got = expiring().await;
        assert_eq!(got, vec![in6]);
    }
}

/// A memory store that counts the verifier's two ways of looking a key up,
/// and can refuse to lend at once (as a store that has to be asked does).
#[derive(Default)]
struct Lending {
    inner: MemoryStore,
    lend: bool,
    lent: std::sync::atomic::AtomicUsize,
    asked: std::sync::atomic::AtomicUsize,
}

impl api_keys::KeyStore for Lending {
    api_keys::forward_key_store!(self => self.inner; all except [lend_now, with_record]);

    fn lend_now<R, F>(&self, id: &KeyId, visit: F) -> Result<R, F>
    where
        F: for<'v> FnOnce(Option<api_keys::RecordView<'v>>) -> R,
    {
        if !self.lend {
            return Err(visit);
        }
        self.lent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.lend_now(id, visit)
    }

    async fn with_record<R, F>(&self, id: &KeyId, visit: F) -> Result<R, api_keys::StoreError>
    where
        R: Send,
        F: for<'v> FnOnce(Option<api_keys::RecordView<'v>>) -> R + Send,
    {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.with_record(id, visit).await
    }
}

#[tokio::test]
async fn a_store_that_lends_at_once_is_never_asked_and_one_that_cannot_gives_the_same_answers() {
    use std::sync::atomic::Ordering::SeqCst;
    for lend in [true, false] {
        let store = Arc::new(Lending { lend, ..Lending::default() });
        let peppers = Peppers::single(Pepper::new(1, [7u8; 32]).unwrap());
        let manager = KeyManager::builder(Arc::clone(&store), peppers, api_keys::testing::scope_catalog()).build();
        let verifier = manager.verifier().build();
        let plain = manager.create(CreateRequest::new("robot").scopes(["yc.monitoring.read"])).await.unwrap();
        let credits = api_keys::controls::Credits::new(2).unwrap();
        let metered =
            manager.create(CreateRequest::new("robot").scopes(["yc.logging.write"]).credits(credits)).await.unwrap();
        let need = manager.catalog().requirement("yc.monitoring.read").unwrap();

        let p = verifier.verify(header(&plain.secret).as_bytes(), Some(&need)).await.unwrap();
        assert_eq!(*p.key_id(), plain.api_key.id);
        let e = verifier.verify(header(&metered.secret).as_bytes(), Some(&need)).await.unwrap_err();
        assert!(matches!(e, VerifyError::InsufficientScope { .. }), "{e:?}");
        // Credits are spent by the waiting steps after a lend, too.
        let ctx = api_keys::VerifyContext::new().cost(1);
        for left in [1, 0] {
            let p = verifier.verify_with(header(&metered.secret).as_bytes(), &ctx).await.unwrap();
            assert_eq!(p.credits_remaining(), Some(left), "lend {lend}");
        }
        let e = verifier.verify_with(header(&metered.secret).as_bytes(), &ctx).await.unwrap_err();
        assert!(matches!(e, VerifyError::UsageExceeded(_)), "{e:?}");
        let unknown =
            format!("Api-Key {}", api_keys::TokenFormat::default().generate().unwrap().secret.expose_secret());
        assert!(matches!(verifier.verify(unknown.as_bytes(), None).await, Err(VerifyError::UnknownKey(Some(_)))));

        let (lent, asked) = (store.lent.load(SeqCst), store.asked.load(SeqCst));
        if lend {
            assert_eq!((lent, asked), (6, 0), "every lookup lent at once");
        } else {
            assert_eq!((lent, asked), (0, 6), "every lookup asked");
        }
    }
}

/// Through the tower layer: a key the store lends at once is decided in
/// `call` (the inner service runs before the future is polled), a store
/// that has to be asked decides in the future; both answer every request
/// alike, and spend credits and refuse by the same rules.
#[cfg(feature = "tower")]
#[tokio::test]
async fn the_layer_answers_alike_whether_the_store_lends_at_once_or_is_asked() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use api_keys::http::ApiKeyLayer;
    use tower::{Layer, Service, ServiceExt};

    let mut answers = Vec::new();
    for lend in [true, false] {
        let store = Arc::new(Lending { lend, ..Lending::default() });
        let peppers = Peppers::single(Pepper::new(1, [7u8; 32]).unwrap());
        let manager = KeyManager::builder(Arc::clone(&store), peppers, api_keys::testing::scope_catalog()).build();
        let plain = manager.create(CreateRequest::new("robot").scopes(["yc.monitoring.read"])).await.unwrap();
        let other = manager.create(CreateRequest::new("robot").scopes(["yc.logging.write"])).await.unwrap();
        let credits = api_keys::controls::Credits::new(1).unwrap();
        let metered =
            manager.create(CreateRequest::new("robot").scopes(["yc.monitoring.read"]).credits(credits)).await.unwrap();
        let revoked = manager.create(CreateRequest::new("robot").scopes(["yc.monitoring.read"])).await.unwrap();
        manager.revoke(&revoked.api_key.id).await.unwrap();
        let need = manager.catalog().requirement("yc.monitoring.read").unwrap();

        // The inner service counts its calls: it runs inside `call` exactly
        // when the verification completed at once.
        let called = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&called);
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
        });
        let svc = ApiKeyLayer::new(manager.verifier().build()).require_scope(need).layer(inner);
        let mut wrong = header(&plain.secret).into_bytes();
        let last = wrong.len() - 8;
        wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
        let values: Vec<Vec<u8>> = vec![
            header(&plain.secret).into_bytes(),
            header(&other.secret).into_bytes(),
            header(&metered.secret).into_bytes(),
            header(&metered.secret).into_bytes(),
            header(&revoked.secret).into_bytes(),
            wrong,
            b"Bearer some-token".to_vec(),
            b"Api-Key ".to_vec(),
        ];
        let mut statuses = Vec::new();
        for value in values {
            let req = http::Request::builder().header("authorization", value).body(()).unwrap();
            let mut svc = svc.clone();
            let before = called.load(SeqCst);
            let future = svc.ready().await.unwrap().call(req);
            let in_call = called.load(SeqCst) - before;
            let res = future.await.unwrap();
            statuses.push(res.status().as_u16());
            if res.status() == 200 {
                // Plain keys lent at once are let in during `call`; keys
                // with credits (and every key of a store that is asked)
                // in the future.
                let at_once = lend && statuses.len() == 1;
                assert_eq!(in_call, usize::from(at_once), "lend {lend}, request {}", statuses.len());
            }
        }
        answers.push(statuses);
        let (lent, asked) = (store.lent.load(SeqCst), store.asked.load(SeqCst));
        if lend {
            assert_eq!((lent, asked), (5, 0), "every lookup lent at once");
        } else {
            assert_eq!((lent, asked), (0, 5), "every lookup asked");
        }
    }
    assert_eq!(answers[0], vec![200, 403, 200, 429, 401, 401, 401, 400]);
    assert_eq!(answers[0], answers[1]);
}
