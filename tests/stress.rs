//! Concurrency stress over the memory store (the backends run the same load
//! in their own suites): bounded in time, checks every invariant listed in
//! `tests/common/stress.rs`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use api_keys::{KeyManager, MemoryStore, Pepper, Peppers, ScopeCatalog};
use common::stress::{Load, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_under_concurrent_lifecycle_load() {
    let manager = Arc::new(
        KeyManager::builder(
            Arc::new(MemoryStore::new()),
            Peppers::single(Pepper::new(1, [4u8; 32]).unwrap()),
            ScopeCatalog::yandex_cloud(),
        )
        .build(),
    );
    let verifier = Arc::new(manager.verifier().build());
    let load = Load { writers: 8, readers: 8, rounds: 200, deadline: Duration::from_secs(60) };
    let report = run(manager, verifier, "stress", load).await;
    assert_eq!(report.created, 8 * 200);
    assert!(report.verifies > report.created, "{report:?}");
}
