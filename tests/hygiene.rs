//! Secret hygiene of the core: no public type's `Debug`, no error's
//! `Display`/`Debug` contains a secret, a pepper or a digest; secrets are
//! zeroized.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use api_keys::header::parse_authorization;
use api_keys::{
    CreateRequest, KeyManager, KeyStore, ManageError, ManualClock, MemoryStore, Pepper, Peppers, Secret, Timestamp,
    Token, TokenFormat,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

fn assert_zeroize_on_drop<T: ZeroizeOnDrop>() {}

/// Everything that must never appear in output derived from a key.
struct Forbidden {
    needles: Vec<String>,
}

impl Forbidden {
    fn check(&self, what: &str, text: &str) {
        for n in &self.needles {
            assert!(!text.contains(n.as_str()), "{what} leaks `{n}`: {text}");
        }
    }
}

#[tokio::test]
async fn nothing_secret_in_debug_or_errors_across_the_lifecycle() {
    let pepper_bytes = [0x5au8; 32];
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
    let store = Arc::new(MemoryStore::new());
    let peppers = Peppers::single(Pepper::new(1, pepper_bytes).unwrap());
    let manager = KeyManager::builder(store.clone(), peppers.clone(), api_keys::testing::scope_catalog())
        .clock(clock.clone())
        .build();
    let verifier = manager.verifier().accept_imported(true).build();

    let created = manager
        .create(
            CreateRequest::new("robot")
                .scopes(["yc.monitoring.read"])
                .expires_at(Timestamp::from_unix_seconds(1_800_000_100).unwrap()),
        )
        .await
        .unwrap();
    let secret = created.secret.expose_secret().to_owned();
    let secret_part = secret[24..67].to_owned();
    let record = store.get(&created.api_key.id).await.unwrap().unwrap();
    let imported = Secret::from("AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w".to_owned());
    manager.import(CreateRequest::new("robot"), &imported).await.unwrap();
    let imported_digest = peppers.current().digest(imported.expose_secret().as_bytes());

    let forbidden = Forbidden {
        needles: vec![
            secret.clone(),
            secret_part.clone(),
            imported.expose_secret().to_owned(),
            record.digest.to_base64(),
            imported_digest.to_base64(),
            record.digest.as_bytes().iter().map(|b| format!("{b:02x}")).collect(),
            format!("{:?}", record.digest.as_bytes()),
            format!("{pepper_bytes:?}"),
            "5a5a5a5a".to_owned(),
            "WlpaWlpa".to_owned(), // base64 of the pepper bytes
        ],
    };

    let header = format!("Api-Key {secret}");
    let need = manager.catalog().requirement("yc.monitoring.read").unwrap();
    let principal = verifier.verify(header.as_bytes(), Some(&need)).await.unwrap();
    let token = Token::parse(secret.as_bytes(), &TokenFormat::default()).unwrap();
    let creds = parse_authorization(header.as_bytes(), 4096).unwrap();

    // Debug of every public value that exists around a key.
    let debugs = [
        ("CreatedKey", format!("{created:?}")),
        ("Secret", format!("{:?}", created.secret)),
        ("KeyRecord", format!("{record:?}")),
        ("KeyInfo", format!("{:?}", record.info())),
        ("Principal", format!("{principal:?}")),
        ("Token", format!("{token:?}")),
        ("Credentials", format!("{creds:?}")),
        ("Pepper", format!("{:?}", peppers.current())),
        ("Peppers", format!("{peppers:?}")),
        ("Digest", format!("{:?}", record.digest)),
        ("KeyManager", format!("{manager:?}")),
        ("Verifier", format!("{verifier:?}")),
        ("MemoryStore", format!("{store:?}")),
        ("imported Secret", format!("{imported:?}")),
    ];
    for (what, text) in &debugs {
        forbidden.check(what, text);
    }
    // The masked key is the public checksum tail only.
    assert_eq!(record.masked_key.tail(), &secret[secret.len() - 6..]);

    // Errors on every rejection path, Display and Debug.
    let mut wrong = secret.clone().into_bytes();
    wrong[40] = if wrong[40] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    let post = manager.catalog().requirement("yc.postbox.send").unwrap();
    let mut errors = Vec::new();
    errors.push(verifier.verify(format!("Api-Key {wrong}").as_bytes(), None).await.unwrap_err());
    errors.push(verifier.verify(header.as_bytes(), Some(&post)).await.unwrap_err());
    errors.push(verifier.verify(format!("Api-Key {secret} x").as_bytes(), None).await.unwrap_err());
    errors.push(verifier.verify(format!("Bearer {secret}").as_bytes(), None).await.unwrap_err());
    errors.push(verifier.verify(format!("Api-Key {secret}\n").as_bytes(), None).await.unwrap_err());
    errors.push(verifier.verify(format!("Api-Key {}x", imported.expose_secret()).as_bytes(), None).await.unwrap_err());
    clock.advance(Duration::from_secs(200));
    errors.push(verifier.verify(header.as_bytes(), None).await.unwrap_err());
    manager.revoke(&created.api_key.id).await.unwrap();
    errors.push(verifier.verify(header.as_bytes(), None).await.unwrap_err());
    for e in &errors {
        forbidden.check("VerifyError Display", &e.to_string());
        forbidden.check("VerifyError Debug", &format!("{e:?}"));
    }

    let import_errors: Vec<ManageError> = vec![
        manager.import(CreateRequest::new("robot"), &imported).await.unwrap_err(),
        manager.import(CreateRequest::new("robot"), &Secret::from(format!("{secret}!"))).await.unwrap_err(),
        manager.import(CreateRequest::new("robot"), &Secret::from(secret.clone())).await.unwrap_err(),
    ];
    for e in &import_errors {
        forbidden.check("ManageError Display", &e.to_string());
        forbidden.check("ManageError Debug", &format!("{e:?}"));
    }

    // Serialised listings carry no digest.
    let listed = manager.list("robot", Default::default()).await.unwrap();
    forbidden.check("listing JSON", &serde_json::to_string(&listed.items).unwrap());
}

#[test]
fn secrets_are_zeroized() {
    // Zeroized on drop: a type-level guarantee, checked at compile time.
    assert_zeroize_on_drop::<Secret>();
    // And the same zeroization through the public API, observably.
    let mut s = Secret::from("ak_some_secret_value".to_owned());
    s.zeroize();
    assert_eq!(s.expose_secret(), "");
    let key = TokenFormat::default().generate().unwrap();
    let mut secret = key.secret;
    secret.zeroize();
    assert!(secret.is_empty());
}
