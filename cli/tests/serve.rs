//! `keyctl serve` on one node, as a process: forward auth, the operator
//! endpoints, graceful shutdown and bad input (harness in `common/`).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::cell::RefCell;

use common::*;

#[test]
fn keys_made_with_keyctl_work_against_keyctl_serve() {
    // Default SQLite database and its pepper file, shared by both commands.
    let k = Keyctl::new();
    let create = k.keyctl(&[
        "create",
        "--service-account-id",
        "web-robot",
        "--create-service-account",
        "--scopes",
        "yc.monitoring.manage",
    ]);
    let (id, secret) = created(create.ok());
    let pepper = std::fs::read_to_string(k.path("api-keys.db.pepper")).unwrap();

    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    let r = server.authorize(Some(&secret), None);
    assert_eq!(r.status, 200, "{r:?}\n{}", server.log());
    assert_eq!(r.header("x-api-key-id"), Some(&*id));
    assert_eq!(r.header("x-service-account-id"), Some("web-robot"));
    assert_eq!(r.header("x-api-key-scopes"), Some("yc.monitoring.manage"));
    // yc.monitoring.manage implies yc.monitoring.read, by query or header.
    assert_eq!(server.authorize(Some(&secret), Some("yc.monitoring.read")).status, 200);
    let auth = format!("Api-Key {secret}");
    let by_header = [("Authorization", auth.as_str()), ("X-Required-Scope", "yc.monitoring.read")];
    assert_eq!(server.request("POST", "/v1/authorize", &by_header, "").status, 200);
    let r = server.authorize(Some(&secret), Some("yc.ai.translate.execute"));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Api-Key realm=\"api\", error=\"insufficient_scope\", scope=\"yc.ai.translate.execute\"")
    );
    assert_eq!(r.json()["scope"], "yc.ai.translate.execute");
    assert_eq!(server.authorize(Some(&tampered(&secret)), None).status, 401);
    let log = server.stop();
    assert!(!log.contains(&secret) && !log.contains(pepper.trim()), "the server logged a secret:\n{log}");
    assert!(!log.contains("created a new pepper"), "{log}");

    // The server recorded the use on shutdown; keyctl shows it.
    let got = k.keyctl(&["get", &id]).ok().value();
    assert!(got["last_used_at"].is_string(), "{got}");
    let list = k.keyctl(&["list", "--service-account-id", "web-robot"]);
    let last_used = row(&list.ok().stdout, &id)[2].clone();
    assert_eq!(last_used.len(), "2025-09-16 16:56:01".len(), "{}", list.stdout);

    // Revoked with keyctl while the server runs (SQLite is read, not cached): refused at once.
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    assert_eq!(server.authorize(Some(&secret), None).status, 200);
    k.keyctl(&["revoke", &id]).ok();
    assert_eq!(server.authorize(Some(&secret), None).status, 401);
    server.stop();

    // The same with the pepper in API_KEYS_PEPPER instead of the file.
    std::fs::remove_file(k.path("api-keys.db.pepper")).unwrap();
    let k = Keyctl { dir: k.dir, vars: vec![("API_KEYS_PEPPER", pepper.trim().to_owned())], runs: RefCell::default() };
    let (_, secret) =
        created(k.keyctl(&["create", "--service-account-id", "web-robot", "--create-service-account"]).ok());
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    assert_eq!(server.authorize(Some(&secret), None).status, 200);
    server.stop();
}

#[test]
fn rejections_are_rendered_as_the_tower_layer_renders_them() {
    let k = Keyctl::new();
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    // No credentials: a bare challenge.
    let r = server.authorize(None, None);
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Api-Key realm=\"api\"")));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // A well-formed key nobody issued: invalid_token, the same body as a wrong secret.
    let forged = forged_key();
    let r = server.authorize(Some(&forged), None);
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Api-Key realm=\"api\", error=\"invalid_token\"")));
    assert_eq!(r.json()["error"], "invalid_token");
    // Malformed header: 400 invalid_request.
    let r = server.request("GET", "/v1/authorize", &[("Authorization", "Api-Key a b c")], "");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "invalid_request");
    // Two Authorization lines: 400.
    let two = [("Authorization", "Api-Key x"), ("Authorization", "Api-Key y")];
    assert_eq!(server.request("GET", "/v1/authorize", &two, "").status, 400);
    // An unknown required scope is the proxy's mistake: 400 naming it.
    let r = server.authorize(Some(&forged), Some("no.such.scope"));
    assert_eq!(r.status, 400);
    assert!(r.json()["detail"].as_str().unwrap().contains("no.such.scope"), "{r:?}");
    // Disagreeing query and header.
    let both = [("X-Required-Scope", "yc.monitoring.read")];
    assert_eq!(server.request("GET", "/v1/authorize?scope=yc.postbox.send", &both, "").status, 400);
    // Oversized inputs: a 1 MiB body is not read; a 64 KiB header is refused; the node stays up.
    let big = "x".repeat(1 << 20);
    assert_eq!(server.request("POST", "/v1/authorize", &[], &big).status, 401);
    let long = format!("Api-Key {}", "a".repeat(64 * 1024));
    let r = server.request("GET", "/v1/authorize", &[("Authorization", &long)], "");
    assert!(matches!(r.status, 400 | 431), "{r:?}");
    assert_eq!(server.request("GET", "/healthz", &[], "").status, 200);
    server.stop();
}

/// A key of the right shape and checksum whose id no node issued (what any
/// script can make: the checksum is public).
fn forged_key() -> String {
    api_keys::TokenFormat::default().generate().unwrap().secret.expose_secret().to_owned()
}

#[test]
fn health_readiness_and_metrics() {
    let k = Keyctl::new();
    let (_, secret) =
        created(k.keyctl(&["create", "--service-account-id", "m-robot", "--create-service-account"]).ok());
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &[]);
    assert_eq!(server.request("GET", "/healthz", &[], "").status, 200);
    assert_eq!(server.request("GET", "/readyz", &[], "").status, 200);
    for _ in 0..3 {
        assert_eq!(server.authorize(Some(&secret), None).status, 200);
    }
    assert_eq!(server.authorize(Some(&tampered(&secret)), None).status, 401);
    let m = server.request("GET", "/metrics", &[], "");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"), "{m:?}");
    let value = |name: &str| -> f64 {
        m.body
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{}", m.body))
    };
    assert_eq!(value("keyctl_authorize_requests_total{outcome=\"ok\"}"), 3.0);
    assert_eq!(value("keyctl_authorize_requests_total{outcome=\"unauthenticated\"}"), 1.0);
    assert_eq!(value("keyctl_authorize_seconds_count"), 4.0);
    // The tampered key fails its checksum before any lookup; SQLite is not cached.
    assert_eq!(value("keyctl_store_queries_total"), 3.0);
    assert_eq!(value("keyctl_cache_hits_total"), 0.0);
    assert_eq!(value("keyctl_cache_entries"), 0.0);
    server.stop();
}

#[test]
fn readiness_fails_when_the_store_goes_away() {
    // The node's PostgreSQL schema is dropped under it: every store lookup
    // fails, which /readyz reports (and /healthz does not).
    let base = postgres_url();
    let schema = unique("serve_ready");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    let url = with_param(&base, "schema", &schema);
    let server = Server::start(&k, &url, &[]);
    assert_eq!(server.request("GET", "/readyz", &[], "").status, 200);
    drop_schema(&base, &schema);
    // One store check answers the probes of a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = server.request("GET", "/readyz", &[], "");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(server.request("GET", "/healthz", &[], "").status, 200);
    server.stop();
}

#[test]
fn bad_input_at_start_is_a_clear_error() {
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper());
    // Unknown flag: clap's usage error, exit 2.
    let r = k.keyctl(&["serve", "--listne", "127.0.0.1:1"]);
    assert!(r.expect(2).stderr.contains("--listne"), "{}", r.stderr);
    // Bad listen addresses, from the flag and the variable.
    for bad in ["localhost", "127.0.0.1", "127.0.0.1:99999", "[::1", ""] {
        let r = k.keyctl(&["serve", "--listen", bad]);
        assert!(r.expect(2).stderr.contains("is not a listen address"), "{bad}: {}", r.stderr);
    }
    let bad_env = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_LISTEN", "nope:1");
    let r = bad_env.keyctl(&["serve"]);
    assert!(r.expect(2).stderr.contains("API_KEYS_LISTEN"), "{}", r.stderr);
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = k.keyctl(&["serve", "--listen", &addr]);
    assert!(r.expect(1).stderr.contains("cannot listen on"), "{}", r.stderr);
    // Unreachable stores: named, exit 5.
    let r = k.keyctl(&["--database-url", "postgres://postgres@127.0.0.1:1/test", "serve"]);
    assert!(r.expect(5).stderr.contains("PostgreSQL"), "{}", r.stderr);
    let r = k.keyctl(&["--database-url", "redis://127.0.0.1:1", "serve"]);
    assert!(r.expect(5).stderr.contains("Redis"), "{}", r.stderr);
    // Bad cache settings.
    let bad_cache = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_CACHE", "maybe");
    assert!(bad_cache.keyctl(&["serve"]).expect(2).stderr.contains("API_KEYS_CACHE"));
    let bad_ttl = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_CACHE_TTL", "5");
    assert!(bad_ttl.keyctl(&["serve"]).expect(2).stderr.contains("API_KEYS_CACHE_TTL"));
    for bad in ["0", "-1", "many"] {
        let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_CACHE_MAX_ENTRIES", bad);
        let r = k.keyctl(&["serve"]);
        assert!(r.expect(2).stderr.contains("API_KEYS_CACHE_MAX_ENTRIES must be a whole number"), "{}", r.stderr);
    }
    // Bad trusted proxies and proxy headers, from the flags and the variables.
    let r = k.keyctl(&["serve", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "proxy.internal"]);
    assert!(r.expect(2).stderr.contains("--trusted-proxy: `proxy.internal` is not a CIDR range"), "{}", r.stderr);
    let r = k.keyctl(&["serve", "--trusted-proxy", "10.0.0.0/8", "--proxy-header", "x-real-ip"]);
    assert!(r.expect(2).stderr.contains("--proxy-header"), "{}", r.stderr);
    let r = k.keyctl(&["serve", "--proxy-header", "forwarded"]);
    assert!(r.expect(2).stderr.contains("needs at least one --trusted-proxy"), "{}", r.stderr);
    let bad = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_TRUSTED_PROXIES", "10/8");
    assert!(bad.keyctl(&["serve"]).expect(2).stderr.contains("API_KEYS_TRUSTED_PROXIES"));
    // A rate-limit Redis that cannot be reached: named, exit 5.
    let r = k.keyctl(&["serve", "--rate-limit-redis", "redis://127.0.0.1:1"]);
    assert!(r.expect(5).stderr.contains("rate-limit Redis"), "{}", r.stderr);
    // Nothing panicked.
    assert!(k.runs_showing("panicked").is_empty());
}

#[test]
fn trusted_proxies_from_the_environment_leave_keys_without_an_allow_list_alone() {
    let k = Keyctl::new();
    let (_, secret) =
        created(k.keyctl(&["create", "--service-account-id", "proxied-robot", "--create-service-account"]).ok());
    let vars = [("API_KEYS_TRUSTED_PROXIES", "127.0.0.0/8, ::1"), ("API_KEYS_PROXY_HEADER", "forwarded")];
    let server = Server::start(&k, SQLITE_DEFAULT_URL, &vars);
    let auth = format!("Api-Key {secret}");
    for forwarded in ["for=203.0.113.9", "for=_hidden", "garbage"] {
        let headers = [("Authorization", auth.as_str()), ("Forwarded", forwarded)];
        let r = server.request("GET", "/v1/authorize", &headers, "");
        assert_eq!(r.status, 200, "{forwarded}: {r:?}\n{}", server.log());
        assert!(r.header("ratelimit").is_none(), "no rate limits, no headers");
    }
    server.stop();
}

#[test]
fn empty_variables_mean_unset() {
    // API_KEYS_DATABASE_URL= is the default SQLite file, not a URL without a scheme.
    let k = Keyctl::new().with_var("API_KEYS_DATABASE_URL", "").with_var("API_KEYS_PEPPER", "");
    k.keyctl(&["create", "--service-account-id", "e-robot", "--create-service-account"]).ok();
    assert!(k.path("api-keys.db").exists() && k.path("api-keys.db.pepper").exists());
    let k = Keyctl { vars: vec![("API_KEYS_LISTEN", String::new())], ..k };
    let server = Server::start(&k, "", &[("API_KEYS_CACHE", ""), ("API_KEYS_CACHE_TTL", "")]);
    assert_eq!(server.request("GET", "/readyz", &[], "").status, 200);
    server.stop();
}

/// A metric's value from the node's `/metrics` (0 when absent).
fn metric(server: &Server, name: &str) -> f64 {
    let body = server.request("GET", "/metrics", &[], "").body;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_flood_of_forged_keys_barely_reaches_postgres() {
    let base = postgres_url();
    let schema = unique("serve_flood");
    let _cleanup = DropSchema { url: base.clone(), schema: schema.clone() };
    let url = with_param(&base, "schema", &schema);
    let k = Keyctl::new().with_var("API_KEYS_PEPPER", random_pepper()).with_var("API_KEYS_DATABASE_URL", &url);
    let (_, before_start) =
        created(k.keyctl(&["create", "--service-account-id", "f-robot", "--create-service-account"]).ok());
    let server = Server::start(&k, &url, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&server, "keyctl_shield_trusted") != 1.0 {
        assert!(std::time::Instant::now() < deadline, "the shield never loaded:\n{}", server.log());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // A key made before the node started (loaded) and one made after (heard).
    let (_, after_start) =
        created(k.keyctl(&["create", "--service-account-id", "f-robot", "--create-service-account"]).ok());
    let queries_before = metric(&server, "keyctl_store_queries_total");
    const FLOOD: usize = 5_000;
    let started = std::time::Instant::now();
    for _ in 0..FLOOD {
        assert_eq!(server.authorize(Some(&forged_key()), None).status, 401);
    }
    let caused = metric(&server, "keyctl_store_queries_total") - queries_before;
    eprintln!("{FLOOD} forged keys with valid checksums caused {caused} PostgreSQL queries");
    // The shield's miss budget: a burst of 10, then 10 per second.
    let budget = 10 + 10 * (started.elapsed().as_secs() + 1);
    assert!(caused <= budget as f64, "{caused} store queries for {FLOOD} forged keys (budget {budget})");
    assert!(metric(&server, "keyctl_shield_refused_total") >= (FLOOD as u64 - budget) as f64);
    assert_eq!(server.authorize(Some(&before_start), None).status, 200);
    let waited = (0..200).find(|_| {
        let ok = server.authorize(Some(&after_start), None).status == 200;
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        ok
    });
    assert!(waited.is_some(), "a key created after start was refused:\n{}", server.log());
    server.stop();
}

#[test]
fn a_memory_node_prints_a_demo_key_and_other_commands_refuse_memory() {
    let k = Keyctl::new();
    let server = Server::start(&k, "memory:", &[]);
    let out = server.stdout();
    let demo = out.lines().find_map(|l| l.strip_prefix("demo-key: ")).unwrap_or_else(|| panic!("{out}"));
    let r = server.authorize(Some(demo), Some("yc.monitoring.read"));
    assert_eq!((r.status, r.header("x-service-account-id")), (200, Some("demo-robot")), "{r:?}");
    assert_eq!(server.authorize(Some(&forged_key()), None).status, 401);
    assert_eq!(out.lines().count(), 1, "{out}");
    let log = server.stop();
    assert!(!log.contains(demo), "{log}");
    assert!(!k.path("api-keys.db").exists());
    let r = k.keyctl(&["--database-url", "memory:", "list", "--service-account-id", "x"]);
    assert!(r.expect(2).stderr.contains("only inside `keyctl serve`"), "{}", r.stderr);
}
