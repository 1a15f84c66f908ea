//! Concurrency stress over the memory store (the backends run the same load
//! in their own suites): bounded in time, checks every invariant listed in
//! `tests/common/stress.rs`.
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use api_keys::{KeyManager, MemoryStore, Pepper, Peppers};
use common::stress::{Load, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_under_concurrent_lifecycle_load() {
    let manager = Arc::new(
        KeyManager::builder(
            Arc::new(MemoryStore::new()),
            Peppers::single(Pepper::new(1, [4u8; 32]).unwrap()),
            api_keys::testing::scope_catalog(),
        )
        .build(),
    );
    let verifier = Arc::new(manager.verifier().build());
    let load = Load { writers: 8, readers: 8, rounds: 200, deadline: Duration::from_secs(60) };
    let report = run(manager, verifier, "stress", load).await;
    assert_eq!(report.created, 8 * 200);
    assert!(report.verifies > report.created, "{report:?}");
}

/// Polls a memory-store future once (it is always ready).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(f).poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("memory-store future was pending"),
    }
}

/// `reissue` must not lose a last-used write that
/// lands while it updates the old record. Two threads, released together
/// 20,000 times: one reissues a key (with a grace period, so the old record
/// stays), the other writes that key's last use; afterwards the old record
/// has both the link and the last use. (The old store copied the record,
/// then wrote the copy back: 39 of 20,000 runs lost the write.)
#[test]
fn reissue_keeps_a_concurrent_last_used_write() {
    use std::sync::Barrier;

    use api_keys::{CreateRequest, KeyStore, OldKeyFate, Timestamp};

    const RUNS: usize = 20_000;
    let peppers = Peppers::single(Pepper::new(1, [4u8; 32]).unwrap());
    let store = Arc::new(MemoryStore::new());
    let manager = KeyManager::builder(Arc::clone(&store), peppers.clone(), api_keys::testing::scope_catalog()).build();
    // The new records come from a scratch store: made by `create`, then
    // linked to the old key by hand, as `KeyManager::reissue` would.
    let scratch =
        KeyManager::builder(Arc::new(MemoryStore::new()), peppers, api_keys::testing::scope_catalog()).build();
    let mut pairs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let old = ready(manager.create(CreateRequest::new("robot"))).unwrap().api_key.id;
        let made = ready(scratch.create(CreateRequest::new("robot"))).unwrap().api_key.id;
        let mut new = api_keys::KeyRecord::clone(&ready(scratch.store().get(&made)).unwrap().unwrap());
        new.links.reissued_from = Some(old);
        pairs.push((old, new));
    }
    let at = Timestamp::from_unix_seconds(1_900_000_000).unwrap();
    let grace = OldKeyFate::ExpireAt(Timestamp::from_unix_seconds(2_000_000_000).unwrap());
    let ids: Vec<_> = pairs.iter().map(|(old, _)| *old).collect();
    let start = Arc::new(Barrier::new(2));
    let toucher = {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        std::thread::spawn(move || {
            for (i, old) in ids.iter().enumerate() {
                start.wait();
                // Vary the offset between the two threads over the runs.
                for _ in 0..i % 193 {
                    std::hint::spin_loop();
                }
                ready(store.touch_last_used(&[(*old, at)])).unwrap();
            }
        })
    };
    let mut olds = Vec::with_capacity(RUNS);
    for (i, (old, new)) in pairs.into_iter().enumerate() {
        let new_id = new.id;
        start.wait();
        for _ in 0..(i / 193) % 23 {
            std::hint::spin_loop();
        }
        ready(store.reissue(&old, new, grace)).unwrap();
        olds.push((old, new_id));
    }
    toucher.join().unwrap();
    let mut lost = 0;
    for (old, new_id) in olds {
        let record = ready(store.get(&old)).unwrap().unwrap();
        assert_eq!(record.links.replaced_by, Some(new_id), "reissue of {old} lost");
        lost += usize::from(record.last_used_at != Some(at));
    }
    assert_eq!(lost, 0, "{lost} of {RUNS} concurrent last-used writes were lost by reissue");
}
