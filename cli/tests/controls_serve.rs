//! Key controls through `keyctl serve` (issue 15), as processes: keys made
//! with `keyctl create --credits/--rate-limit/--allow-ip` are enforced by
//! `/v1/authorize` (200, then 429 or 403 with their headers and bodies),
//! `keyctl verify` spends no credits, and two `keyctl serve` processes on one
//! database spending one key's credits at once never spend more than it had
//! (harness in `common/`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::*;

/// Creates a key of `sa` with the extra `flags`; returns `(id, secret)`.
fn create(k: &Keyctl, sa: &str, flags: &[&str]) -> (String, String) {
    let mut args = vec!["create", "--service-account-id", sa, "--create-service-account"];
    args.extend_from_slice(flags);
    created(k.keyctl(&args).ok())
}

fn remaining(k: &Keyctl, id: &str) -> u64 {
    let got = k.keyctl(&["get", id, "--format", "json"]).ok().value();
    got["controls"]["credits"]["remaining"].as_u64().unwrap_or_else(|| panic!("no credits in {got}"))
}

#[test]
fn credits_rate_limits_and_allow_lists_are_enforced_by_authorize() {
    let k = Keyctl::new();
    let (credit_id, credit_secret) = create(&k, "metered-robot", &["--credits", "3"]);
    // An operator's check spends nothing.
    k.verify(&credit_secret, &[]).ok();
    assert_eq!(remaining(&k, &credit_id), 3, "keyctl verify spent a credit");
    let (_, limited) = create(&k, "limited-robot", &["--rate-limit", "api=2/1h"]);
    let (_, elsewhere) = create(&k, "fenced-robot", &["--allow-ip", "10.0.0.0/8"]);
    let (_, loopback) = create(&k, "local-robot", &["--allow-ip", "127.0.0.1,::1"]);

    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    // Credits: three uses, then 429 "usage exceeded".
    for n in 0..3 {
        let r = server.authorize(Some(&credit_secret), None);
        assert_eq!(r.status, 200, "use {n}: {r:?}\n{}", server.log());
    }
    let r = server.authorize(Some(&credit_secret), None);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.json()["detail"].as_str().unwrap().contains("Usage exceeded"), "{r:?}");
    assert!(r.header("retry-after").is_none(), "spent credits come back only by a refill or an update");

    // Rate limit 2 per hour: two uses with RateLimit headers, then 429 with Retry-After.
    for n in 0..2 {
        let r = server.authorize(Some(&limited), None);
        assert_eq!(r.status, 200, "use {n}: {r:?}");
        assert_eq!(r.header("ratelimit-policy"), Some("\"api\";q=2;w=3600"), "{r:?}");
    }
    let r = server.authorize(Some(&limited), None);
    assert_eq!(r.status, 429, "{r:?}");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1800).contains(&retry), "one use comes back every 30 minutes: {r:?}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"api\";q=2;w=3600"));
    assert!(r.header("ratelimit").unwrap().starts_with("\"api\";r=0;t="), "{r:?}");

    // Allow-lists: the test client is on loopback.
    let r = server.authorize(Some(&elsewhere), None);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("www-authenticate").is_none(), "{r:?}");
    assert_eq!(server.authorize(Some(&loopback), None).status, 200);
    // A client-supplied X-Forwarded-For from an untrusted peer is ignored.
    let auth = format!("Api-Key {elsewhere}");
    let spoofed = [("Authorization", auth.as_str()), ("X-Forwarded-For", "10.1.2.3")];
    assert_eq!(server.request("GET", "/v1/authorize", &spoofed, "").status, 403);
    let log = server.stop();
    for secret in [&credit_secret, &limited, &elsewhere, &loopback] {
        assert!(!log.contains(secret.as_str()), "the server logged a secret");
    }
    assert_eq!(remaining(&k, &credit_id), 0);

    // An update gives credits back; the running store sees them at once.
    k.keyctl(&["update", &credit_id, "--credits", "1"]).ok();
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    assert_eq!(server.authorize(Some(&credit_secret), None).status, 200);
    assert_eq!(server.authorize(Some(&credit_secret), None).status, 429);
    server.stop();
}

#[test]
fn two_servers_on_one_database_never_spend_more_credits_than_a_key_has() {
    const CREDITS: u32 = 25;
    const REQUESTS_PER_SERVER: u32 = 40;
    let k = Keyctl::new();
    let (id, secret) = create(&k, "shared-robot", &["--credits", &CREDITS.to_string()]);
    let servers = [Server::start(&k, SQLITE_DEFAULT_URL, &[]), Server::start(&k, SQLITE_DEFAULT_URL, &[])];
    let (ok, refused, other) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
    std::thread::scope(|s| {
        for server in &servers {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..REQUESTS_PER_SERVER / 4 {
                        let counter = match server.authorize(Some(&secret), None).status {
                            200 => &ok,
                            429 => &refused,
                            _ => &other,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    });
    let logs: Vec<String> = servers.into_iter().map(Server::stop).collect();
    assert_eq!(other.load(Ordering::Relaxed), 0, "only 200 and 429 expected:\n{}", logs.join("\n"));
    assert_eq!(ok.load(Ordering::Relaxed), CREDITS, "exactly the key's credits were spent");
    assert_eq!(refused.load(Ordering::Relaxed), 2 * REQUESTS_PER_SERVER - CREDITS);
    assert_eq!(remaining(&k, &id), 0);
}
