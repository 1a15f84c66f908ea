//! A bounded concurrency stress run over any store: writer tasks create,
//! verify, reissue and revoke keys while reader tasks verify keys from a
//! shared registry. Invariants:
//!
//! - every created key verifies until it is revoked (or reissued without grace);
//! - no key is accepted by a verification that *started* after its revoke
//!   returned;
//! - after the final flush every key that was accepted has a last-used time
//!   (no update lost beyond the documented coalescing);
//! - the whole run finishes within its deadline (no deadlock).

#![allow(dead_code, clippy::unwrap_used, reason = "test helpers")]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_keys::{CreateRequest, KeyId, KeyManager, KeyStore, Secret, Verifier, VerifyError};

/// Size of one run.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub(crate) writers: usize,
    pub(crate) readers: usize,
    pub(crate) rounds: usize,
    pub(crate) deadline: Duration,
}

#[derive(Default)]
struct Registry {
    live: Vec<(KeyId, Secret)>,
    /// Keys whose revoke (or zero-grace reissue) has returned.
    dead: Vec<(KeyId, Secret)>,
    dead_ids: HashSet<KeyId>,
    accepted: HashSet<KeyId>,
}

/// Counts of what happened, for the test's report.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) verifies: usize,
    pub(crate) created: usize,
    pub(crate) reissued: usize,
    pub(crate) revoked: usize,
}

fn header(s: &Secret) -> Vec<u8> {
    format!("Api-Key {}", s.expose_secret()).into_bytes()
}

/// Runs the stress load; panics on any violated invariant.
pub(crate) async fn run<S: KeyStore>(
    manager: Arc<KeyManager<S>>,
    verifier: Arc<Verifier<S>>,
    service_account: &str,
    load: Load,
) -> Report {
    let reg = Arc::new(Mutex::new(Registry::default()));
    let verifies = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut report = Report::default();
    let work = async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..load.writers {
            let (manager, verifier, reg, verifies) = (manager.clone(), verifier.clone(), reg.clone(), verifies.clone());
            let sa = service_account.to_owned();
            let done = done.clone();
            tasks.spawn(async move {
                let mut counts = (0usize, 0usize, 0usize);
                for round in 0..load.rounds {
                    let created = manager.create(CreateRequest::new(sa.clone())).await.expect("create");
                    counts.0 += 1;
                    let p = verifier.verify(&header(&created.secret), None).await.expect("fresh key must verify");
                    assert_eq!(p.key_id(), &created.api_key.id);
                    verifies.fetch_add(1, Ordering::Relaxed);
                    reg.lock().unwrap().accepted.insert(created.api_key.id);
                    let (id, secret) = if (round + w) % 3 == 0 {
                        // Reissue without grace: the old key dies now.
                        let new = manager.reissue(&created.api_key.id, Duration::ZERO).await.expect("reissue");
                        counts.1 += 1;
                        {
                            let mut r = reg.lock().unwrap();
                            r.dead_ids.insert(created.api_key.id);
                            r.dead.push((created.api_key.id, created.secret));
                        }
                        (new.api_key.id, new.secret)
                    } else {
                        (created.api_key.id, created.secret)
                    };
                    reg.lock().unwrap().live.push((id, secret.clone()));
                    if round % 2 == 1 {
                        manager.revoke(&id).await.expect("revoke");
                        counts.2 += 1;
                        let mut r = reg.lock().unwrap();
                        r.live.retain(|(k, _)| *k != id);
                        r.dead_ids.insert(id);
                        r.dead.push((id, secret));
                    }
                    tokio::task::yield_now().await;
                }
                done.fetch_add(1, Ordering::SeqCst);
                counts
            });
        }
        for i in 0..load.readers {
            let (verifier, reg, verifies, done) = (verifier.clone(), reg.clone(), verifies.clone(), done.clone());
            let writers = load.writers;
            tasks.spawn(async move {
                let mut n = i;
                while done.load(Ordering::SeqCst) < writers {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let pick = {
                        let r = reg.lock().unwrap();
                        let pool = if n % 3 == 0 { &r.dead } else { &r.live };
                        if pool.is_empty() {
                            None
                        } else {
                            let (id, s) = &pool[(n >> 33) % pool.len()];
                            Some((*id, s.clone(), r.dead_ids.contains(id)))
                        }
                    };
                    let Some((id, secret, dead_before)) = pick else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let result = verifier.verify(&header(&secret), None).await;
                    verifies.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(p) => {
                            assert!(!dead_before, "key {id} accepted after its revoke returned");
                            assert_eq!(p.key_id(), &id);
                            reg.lock().unwrap().accepted.insert(id);
                        }
                        Err(VerifyError::Revoked(k)) => assert_eq!(k, id),
                        Err(e) => panic!("unexpected rejection of {id}: {e}"),
                    }
                    tokio::task::yield_now().await;
                }
                (0, 0, 0)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (c, r, v) = joined.expect("stress task panicked");
            report.created += c;
            report.reissued += r;
            report.revoked += v;
        }
    };
    tokio::time::timeout(load.deadline, work).await.expect("stress run did not finish in time (deadlock?)");
    report.verifies = verifies.load(Ordering::Relaxed);

    // Every accepted key has a last-used time once the coalesced uses are
    // flushed (flushes repeat until nothing is pending).
    for _ in 0..3 {
        verifier.flush_last_used().await.expect("flush");
    }
    let accepted: Vec<KeyId> = reg.lock().unwrap().accepted.iter().copied().collect();
    for id in accepted {
        let info = manager.get(&id).await.expect("get");
        assert!(info.last_used_at.is_some(), "key {id} was used but has no last-used time");
    }
    report
}
