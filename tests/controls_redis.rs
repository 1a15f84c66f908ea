//! `RedisRateLimiter` against a real Redis: limits shared by two "nodes"
//! (two limiters on one prefix), all-or-nothing across a key's limits,
//! state keys that expire, and a Redis that is down failing closed.
//! Each test uses its own prefix and deletes its keys.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::time::Duration;

use api_keys::KeyId;
use api_keys::controls::{RateDecision, RateLimiter, RateLimits, RedisRateLimiter};
use common::services::{redis_down, redis_url};

/// A prefix no other test uses.
fn prefix(test: &str) -> String {
    format!("api-keys-test:{test}:{}", KeyId::generate().unwrap())
}

async fn limiter(prefix: &str) -> RedisRateLimiter {
    match RedisRateLimiter::connect(&redis_url(), prefix).await {
        Ok(l) => l,
        Err(e) => redis_down(&e, "a Redis server"),
    }
}

/// The keys under `prefix`, deleted.
async fn cleanup(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    if !keys.is_empty() {
        let () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.unwrap();
    }
    keys
}

#[tokio::test]
async fn two_nodes_share_one_key_budget() {
    let p = prefix("shared");
    let (a, b) = (limiter(&p).await, limiter(&p).await);
    let limits: RateLimits = "api=3/1m".parse().unwrap();
    let key = KeyId::generate().unwrap();
    let mut left = Vec::new();
    for l in [&a, &b, &a] {
        match l.check(&key, &limits).await.unwrap() {
            RateDecision::Allowed(s) => left.push(s.remaining),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(left, [2, 1, 0]);
    let RateDecision::Limited { index, retry_after } = b.check(&key, &limits).await.unwrap() else {
        panic!("the fourth request, on the other node, must be refused")
    };
    assert_eq!(index, 0);
    assert!(retry_after > Duration::from_secs(19) && retry_after <= Duration::from_secs(20), "{retry_after:?}");
    let other = KeyId::generate().unwrap();
    assert!(matches!(a.check(&other, &limits).await.unwrap(), RateDecision::Allowed(_)), "keys are separate");
    let keys = cleanup(&p).await;
    assert_eq!(keys.len(), 2, "one state key per API key and limit: {keys:?}");
}

#[tokio::test]
async fn a_refusal_by_one_limit_counts_against_none() {
    let p = prefix("atomic");
    let l = limiter(&p).await;
    let limits: RateLimits = "fast=100/1s:burst=2,slow=1/1h".parse().unwrap();
    let key = KeyId::generate().unwrap();
    let RateDecision::Allowed(s) = l.check(&key, &limits).await.unwrap() else { panic!() };
    assert_eq!((s.index, s.remaining), (1, 0), "slow is the tightest");
    for _ in 0..3 {
        assert!(matches!(l.check(&key, &limits).await.unwrap(), RateDecision::Limited { index: 1, .. }));
    }
    // `fast` was not charged by the refused requests: its state still
    // holds one request only, so it expires within its 10 ms interval.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let keys = cleanup(&p).await;
    assert_eq!(keys.len(), 1, "only slow's state is left: {keys:?}");
    assert!(keys[0].ends_with(":slow"), "{keys:?}");
}

#[tokio::test]
async fn idle_state_expires() {
    let p = prefix("expire");
    let l = limiter(&p).await;
    let limits: RateLimits = "api=10/1s:burst=1".parse().unwrap();
    let key = KeyId::generate().unwrap();
    assert!(matches!(l.check(&key, &limits).await.unwrap(), RateDecision::Allowed(_)));
    assert!(matches!(l.check(&key, &limits).await.unwrap(), RateDecision::Limited { .. }));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(cleanup(&p).await.is_empty(), "the key's state vanished once it equalled a fresh one");
    assert!(matches!(l.check(&key, &limits).await.unwrap(), RateDecision::Allowed(_)));
    cleanup(&p).await;
}

#[tokio::test]
async fn a_redis_that_does_not_answer_fails_closed() {
    // A listener that never accepts: the connection is made by the kernel
    // but nothing ever answers, as with a hung Redis.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = redis::Client::open(format!("redis://{}", silent.local_addr().unwrap())).unwrap();
    let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, Default::default()).unwrap();
    let l = RedisRateLimiter::new(conn, "api-keys-test:silent").timeout(Duration::from_millis(200));
    let limits: RateLimits = "api=1/1s".parse().unwrap();
    let started = std::time::Instant::now();
    let e = l.check(&KeyId::generate().unwrap(), &limits).await.unwrap_err();
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the timeout");
}
