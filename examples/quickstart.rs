//! The whole key lifecycle in memory, no services needed:
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Creates a key for a service account and prints the `api_key.yaml`-shaped
//! result once, verifies an `Authorization` header, then shows a scope
//! denial, an expiry, a reissue and a revocation with their errors.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use api_keys::{
    Clock, CreateRequest, KeyManager, ManualClock, MemoryStore, PageRequest, Pepper, Peppers, Principal, ScopeCatalog,
    Timestamp, VerifyError,
};

/// Expects a rejection; an acceptance here would be a bug worth stopping for.
fn rejected(result: Result<Principal, VerifyError>) -> Result<VerifyError, Box<dyn Error>> {
    match result {
        Ok(p) => Err(format!("key {} was accepted but should have been rejected", p.key_id()).into()),
        Err(e) => Ok(e),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // A server-side pepper (in production: from a secret manager, >= 32 bytes)
    // and a manual clock so the example can travel in time.
    let peppers = Peppers::single(Pepper::generate(1)?);
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    // The scopes this service knows (`….manage` would imply `….read`).
    let scopes = ScopeCatalog::builder()
        .scope("yc.ai.translate.execute", "Text translation via the Translate API")
        .scope("yc.monitoring.read", "Viewing data via the Monitoring API")
        .scope("yc.postbox.send", "Sending emails via the Postbox API")
        .scope("yc.serverless.functions.invoke", "Invoking functions via the Cloud Functions API")
        .build()?;
    let manager = KeyManager::builder(Arc::new(MemoryStore::new()), peppers, scopes).clock(clock.clone()).build();
    let verifier = manager.verifier().build();
    let catalog = manager.catalog();

    // 1. Create: the secret is shown exactly once.
    let expires_at = clock.now().saturating_add(Duration::from_secs(30 * 24 * 3600));
    let created = manager
        .create(
            CreateRequest::new("ajegtlf2q28a")
                .description("this API-key is for my-robot")
                .scopes(["yc.monitoring.read", "yc.serverless.functions.invoke", "yc.postbox.send"])
                .expires_at(expires_at),
        )
        .await?;
    println!("# yc iam api-key create … > api_key.yaml (the secret will not be shown again)");
    print!("{}", serde_norway::to_string(&created)?);

    // 2. Verify a request header.
    let header = format!("Api-Key {}", created.secret.expose_secret());
    let monitoring = catalog.requirement("yc.monitoring.read")?;
    let principal = verifier.verify(header.as_bytes(), Some(&monitoring)).await?;
    println!("\n# verify GET /monitoring (needs yc.monitoring.read)");
    println!("ok: key {} of service account {}", principal.key_id(), principal.service_account_id());

    // 3. A scope the key does not hold.
    let translate = catalog.requirement("yc.ai.translate.execute")?;
    let denied = rejected(verifier.verify(header.as_bytes(), Some(&translate)).await)?;
    println!("\n# verify POST /translate (needs yc.ai.translate.execute)");
    println!("denied ({}): {denied}", denied.client_class().status());

    // 4. Listing shows the masked key, never the secret.
    println!("\n# yc iam api-key list --service-account-id ajegtlf2q28a");
    for key in manager.list("ajegtlf2q28a", PageRequest::default()).await?.items {
        println!("{}  created {}  scopes {}  masked {}", key.id, key.created_at, key.scopes, key.masked_key);
    }

    // 5. Reissue after a suspected leak, with a 10-minute grace period.
    let reissued = manager.reissue(&created.api_key.id, Duration::from_secs(600)).await?;
    let new_header = format!("Api-Key {}", reissued.secret.expose_secret());
    println!("\n# reissue {} with 10 min grace -> new key {}", created.api_key.id, reissued.api_key.id);
    verifier.verify(header.as_bytes(), Some(&monitoring)).await?;
    println!("old key still accepted during the grace period");
    clock.advance(Duration::from_secs(601));
    let expired = rejected(verifier.verify(header.as_bytes(), Some(&monitoring)).await)?;
    println!("after the grace period, old key: {} ({expired})", expired.client_class().status());
    verifier.verify(new_header.as_bytes(), Some(&monitoring)).await?;
    println!("new key accepted");

    // 6. Expiry of the key itself (the reissued key inherited it).
    clock.set(expires_at);
    let expired = rejected(verifier.verify(new_header.as_bytes(), Some(&monitoring)).await)?;
    println!("\n# at expires_at {expires_at}: {} ({expired})", expired.client_class().status());

    // 7. Revoke a key: rejected on the next request.
    let fresh = manager.create(CreateRequest::new("ajegtlf2q28a").scopes(["yc.monitoring.read"])).await?;
    let fresh_header = format!("Api-Key {}", fresh.secret.expose_secret());
    verifier.verify(fresh_header.as_bytes(), Some(&monitoring)).await?;
    manager.revoke(&fresh.api_key.id).await?;
    let revoked = rejected(verifier.verify(fresh_header.as_bytes(), Some(&monitoring)).await)?;
    println!("\n# revoke {}: {} ({revoked})", fresh.api_key.id, revoked.client_class().status());

    // 8. Last use is recorded without a store write per request.
    let written = verifier.flush_last_used().await?;
    println!("\n# flushed last-used times for {written} key(s) in one batch");
    Ok(())
}
