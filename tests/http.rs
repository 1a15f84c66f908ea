//! The HTTP layer end to end: a router shaped like the example server's
//! (`tests/common/app.rs`) on an ephemeral loopback port, spoken to with a
//! real HTTP client.
//!
//! Every test also checks that no secret (API key or bearer token) appears
//! in any response body or in the captured `tracing` output.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use api_keys::http::{ApiKeyLayer, BearerError, BearerIdentity, BearerToken, BearerValidator, NoBearer};
use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{
    Clock, CreateRequest, KeyId, KeyManager, ManualClock, MemoryStore, Pepper, Peppers, Principal, Scope, ScopeCatalog,
    ScopeSet, Timestamp, TokenFormat,
};
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use common::app;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Captured logs: one global subscriber writing into a buffer.

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------------
// A store that can be taken down, to see the layer fail closed.

type FlakyStore = FaultyStore<MemoryStore>;

/// Every operation of `store` fails until [`FaultyStore::heal`].
fn take_down(store: &FlakyStore) {
    for op in Op::ALL {
        store.always(op, Fault::Error);
    }
}

// ---------------------------------------------------------------------------
// A stand-in for an IAM token service.

const IAM_TOKEN: &str = "t1.iam-token-with-monitoring-read";
const IAM_TOKEN_BACKEND_DOWN: &str = "t1.iam-token-while-iam-is-down";
const IAM_TOKEN_UNKNOWN: &str = "t1.iam-token-nobody-issued";

struct TestIam;

impl BearerValidator for TestIam {
    async fn validate(&self, token: BearerToken<'_>) -> Result<BearerIdentity, BearerError> {
        match token.expose() {
            IAM_TOKEN => {
                let scopes = ScopeSet::new([Scope::new(app::MONITORING_SCOPE).unwrap()]).unwrap();
                Ok(BearerIdentity::new("iam-robot", scopes))
            }
            IAM_TOKEN_BACKEND_DOWN => Err(BearerError::unavailable(std::io::Error::other("iam unreachable"))),
            _ => Err(BearerError::invalid("token not issued by the test IAM")),
        }
    }
}

// ---------------------------------------------------------------------------
// Harness: keys, a server, a client, and a record of everything seen.

struct Keys {
    store: Arc<FlakyStore>,
    clock: Arc<ManualClock>,
    catalog: ScopeCatalog,
    manager: KeyManager<FlakyStore>,
}

impl Keys {
    fn new() -> Self {
        log_buffer();
        let store = Arc::new(FaultyStore::new(MemoryStore::new()));
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let catalog = api_keys::testing::scope_catalog();
        let manager =
            KeyManager::builder(Arc::clone(&store), Peppers::single(Pepper::generate(1).unwrap()), catalog.clone())
                .clock(clock.clone())
                .build();
        Self { store, clock, catalog, manager }
    }

    fn layer(&self) -> ApiKeyLayer<FlakyStore, NoBearer> {
        ApiKeyLayer::new(self.manager.verifier().build())
    }

    async fn create(&self, scopes: &[&str]) -> (KeyId, String) {
        let created = self.manager.create(CreateRequest::new("robot-1").scopes(scopes.iter().copied())).await.unwrap();
        (created.api_key.id, created.secret.expose_secret().to_owned())
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    fn challenges(&self) -> Vec<&str> {
        self.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// An RFC 9457 rejection with the security headers.
    fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
        let p = self.json();
        assert_eq!(p["status"], status);
        for member in ["type", "title", "detail"] {
            assert!(p[member].is_string(), "problem member {member} missing: {p}");
        }
        p
    }
}

struct Server {
    base: String,
    client: reqwest::Client,
    bodies: Mutex<Vec<String>>,
    secrets: Mutex<Vec<String>>,
}

impl Server {
    async fn start(router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        Self { base, client, bodies: Mutex::default(), secrets: Mutex::default() }
    }

    /// Remembers a secret that must never be echoed or logged.
    fn secret(&self, s: &str) {
        self.secrets.lock().unwrap().push(s.to_owned());
        // The 43-character random part alone must not leak either.
        if let Some(part) = s.strip_prefix("ak_").and_then(|rest| rest.get(21..64)) {
            self.secrets.lock().unwrap().push(part.to_owned());
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        self.bodies.lock().unwrap().push(body.clone());
        Reply { status, headers, body }
    }

    async fn get(&self, path: &str, auth: &[&[u8]]) -> Reply {
        let mut req = self.client.get(format!("{}{path}", self.base));
        for value in auth {
            req = req.header(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        self.send(req).await
    }

    async fn api_key(&self, path: &str, token: &str) -> Reply {
        self.get(path, &[format!("Api-Key {token}").as_bytes()]).await
    }

    async fn translate(&self, auth: &str) -> Reply {
        let req = self
            .client
            .post(format!("{}/v1/translate", self.base))
            .header(AUTHORIZATION, auth)
            .json(&serde_json::json!({ "text": "hello world", "target_language": "ru" }));
        self.send(req).await
    }

    /// No remembered secret in any body received or in the logs so far.
    fn assert_no_secret_leaked(&self) {
        let secrets = self.secrets.lock().unwrap();
        assert!(!secrets.is_empty(), "the leak check needs secrets to look for");
        let logs = logs();
        for s in secrets.iter() {
            assert!(!logs.contains(s.as_str()), "a secret reached the logs");
            for body in self.bodies.lock().unwrap().iter() {
                assert!(!body.contains(s.as_str()), "a secret reached a response body: {body}");
            }
        }
    }
}

fn bare_api_key_challenge() -> Vec<&'static str> {
    vec![r#"Api-Key realm="api""#]
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn whoami_returns_the_key_principal() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    let (id, token) = keys.create(&["yc.ai.translate.execute", "yc.monitoring.manage"]).await;
    srv.secret(&token);

    let r = srv.api_key("/v1/whoami", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["scheme"], "Api-Key");
    assert_eq!(v["key_id"], id.as_str());
    assert_eq!(v["service_account_id"], "robot-1");
    assert_eq!(v["scopes"], serde_json::json!(["yc.ai.translate.execute", "yc.monitoring.manage"]));
    // The scheme is case-insensitive (ASCII only).
    let r = srv.get("/v1/whoami", &[format!("aPI-kEY {token}").as_bytes()]).await;
    assert_eq!(r.status, 200);
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn missing_or_unsupported_credentials_get_a_bare_challenge() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    srv.secret("dXNlcjpzM2NyM3Q=");
    srv.secret(IAM_TOKEN);

    let none = srv.get("/v1/whoami", &[]).await;
    let basic = srv.get("/v1/whoami", &[b"Basic dXNlcjpzM2NyM3Q="]).await;
    // No bearer validator configured: a bearer token is an unsupported scheme.
    let bearer = srv.get("/v1/monitoring", &[format!("Bearer {IAM_TOKEN}").as_bytes()]).await;
    let empty = srv.get("/v1/whoami", &[b""]).await;
    for r in [&none, &basic, &bearer, &empty] {
        let p = r.assert_problem(401);
        assert_eq!(r.challenges(), bare_api_key_challenge());
        assert!(p.get("error").is_none(), "a bare challenge has no error code: {p}");
    }
    assert_eq!(none.body, basic.body);
    assert_eq!(none.body, bearer.body);
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn every_bad_key_gets_the_same_answer() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    let scopes = ["yc.monitoring.read"];

    let unknown = TokenFormat::default().generate().unwrap().secret.expose_secret().to_owned();
    // Same store, same pepper version, different pepper bytes: the id exists
    // but the secret does not match (WrongSecret).
    let other = KeyManager::builder(
        Arc::clone(&keys.store),
        Peppers::single(Pepper::generate(1).unwrap()),
        keys.catalog.clone(),
    )
    .build();
    let wrong = other.create(CreateRequest::new("robot-1").scopes(scopes)).await.unwrap();
    let (wrong_id, wrong) = (wrong.api_key.id, wrong.secret.expose_secret().to_owned());

    let expired = keys
        .manager
        .create(
            CreateRequest::new("robot-1")
                .scopes(scopes)
                .expires_at(keys.clock.now().saturating_add(Duration::from_secs(3600))),
        )
        .await
        .unwrap();
    let (expired_id, expired) = (expired.api_key.id, expired.secret.expose_secret().to_owned());
    let (revoked_id, revoked) = keys.create(&scopes).await;
    let (_, valid) = keys.create(&scopes).await;
    let mut bad_checksum = valid.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'A' { b'B' } else { b'A' };
    let bad_checksum = String::from_utf8(bad_checksum).unwrap();
    let malformed = "ak_not-a-real-key".to_owned();
    let unknown_imported = "some-legacy-key-0123456789abcdef".to_owned();
    for s in [&unknown, &wrong, &expired, &revoked, &valid, &bad_checksum, &unknown_imported] {
        srv.secret(s);
    }

    assert_eq!(srv.api_key("/v1/monitoring", &expired).await.status, 200);
    keys.clock.advance(Duration::from_secs(7200));
    keys.manager.revoke(&revoked_id).await.unwrap();

    let mut replies = Vec::new();
    for token in [&unknown, &wrong, &expired, &revoked, &bad_checksum, &malformed, &unknown_imported] {
        let r = srv.api_key("/v1/monitoring", token).await;
        let p = r.assert_problem(401);
        assert_eq!(p["error"], "invalid_token");
        assert_eq!(r.challenges(), [r#"Api-Key realm="api", error="invalid_token""#]);
        replies.push(r);
    }
    for r in &replies[1..] {
        assert_eq!(r.body, replies[0].body, "rejections must be indistinguishable");
        assert_eq!(r.challenges(), replies[0].challenges());
    }
    // The real reasons are in the logs, with key ids only.
    let logs = logs();
    assert!(logs.contains(&format!("wrong secret for API key {wrong_id}")), "{logs}");
    assert!(logs.contains(&format!("API key {expired_id} expired")));
    assert!(logs.contains(&format!("API key {revoked_id} is revoked")));
    assert!(logs.contains("API key checksum does not match"));
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn malformed_or_repeated_headers_are_400() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    let (_, token) = keys.create(&["yc.monitoring.read"]).await;
    let (_, other) = keys.create(&["yc.monitoring.read"]).await;
    srv.secret(&token);
    srv.secret(&other);
    let good = format!("Api-Key {token}");
    let one = |v: Vec<u8>| vec![v];
    let cases: Vec<Vec<Vec<u8>>> = vec![
        // Two field lines: never pick one, even if both are valid or equal.
        vec![good.clone().into_bytes(), format!("Api-Key {other}").into_bytes()],
        vec![good.clone().into_bytes(), good.clone().into_bytes()],
        vec![good.clone().into_bytes(), b"Basic dXNlcg==".to_vec()],
        // Non-visible ASCII (obs-text) in the value; a Kelvin sign for the K.
        one([good.as_bytes(), b"\xc3\xa9"].concat()),
        one(b"Api-\xe2\x84\xaaey abc".to_vec()),
        // A tab instead of a space, a list, quotes, an over-long value, no key.
        one(format!("Api-Key\t{token}").into_bytes()),
        one(format!("{good}, Api-Key {other}").into_bytes()),
        one(format!("Api-Key \"{token}\"").into_bytes()),
        one(format!("Api-Key {}", "a".repeat(5000)).into_bytes()),
        one(b"Api-Key".to_vec()),
    ];
    for values in cases {
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let r = srv.get("/v1/monitoring", &refs).await;
        let p = r.assert_problem(400);
        assert_eq!(p["error"], "invalid_request");
        assert_eq!(r.challenges(), [r#"Api-Key realm="api", error="invalid_request""#]);
    }
    assert!(logs().contains("more than one Authorization header"));
    // The same key alone is fine.
    assert_eq!(srv.api_key("/v1/monitoring", &token).await.status, 200);
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn scopes_are_enforced_per_route_with_implications() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    let (_, demo) = keys.create(&["yc.ai.translate.execute", "yc.monitoring.manage"]).await;
    let (read_id, read_only) = keys.create(&["yc.monitoring.read"]).await;
    let (_, umbrella) = keys.create(&["yc.ai.foundationModels.execute"]).await;
    for s in [&demo, &read_only, &umbrella] {
        srv.secret(s);
    }

    let r = srv.translate(&format!("Api-Key {demo}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["translations"][0]["text"], "привет мир");
    // yc.monitoring.manage implies yc.monitoring.read.
    assert_eq!(srv.api_key("/v1/monitoring", &demo).await.status, 200);

    let r = srv.translate(&format!("Api-Key {read_only}")).await;
    let p = r.assert_problem(403);
    assert_eq!(p["error"], "insufficient_scope");
    assert_eq!(p["scope"], app::TRANSLATE_SCOPE);
    assert_eq!(r.challenges(), [r#"Api-Key realm="api", error="insufficient_scope", scope="yc.ai.translate.execute""#]);
    assert_eq!(srv.api_key("/v1/monitoring", &read_only).await.status, 200);
    assert_eq!(srv.api_key("/v1/whoami", &read_only).await.status, 200);
    assert!(logs().contains(&format!("API key {read_id} lacks scope yc.ai.translate.execute")));

    // The umbrella scope covers translation but not monitoring.
    assert_eq!(srv.translate(&format!("Api-Key {umbrella}")).await.status, 200);
    let r = srv.api_key("/v1/monitoring", &umbrella).await;
    assert_eq!(r.assert_problem(403)["scope"], app::MONITORING_SCOPE);
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn layer_wide_scope_requirement() {
    let keys = Keys::new();
    let need = keys.catalog.requirement(app::MONITORING_SCOPE).unwrap();
    let srv = Server::start(app::router(keys.layer().require_scope(need), &keys.catalog).unwrap()).await;
    let (_, manage) = keys.create(&["yc.monitoring.manage"]).await;
    let (_, translate_only) = keys.create(&["yc.ai.translate.execute"]).await;
    srv.secret(&manage);
    srv.secret(&translate_only);
    assert_eq!(srv.api_key("/v1/whoami", &manage).await.status, 200);
    let r = srv.api_key("/v1/whoami", &translate_only).await;
    assert_eq!(r.assert_problem(403)["scope"], app::MONITORING_SCOPE);
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn revocation_applies_on_the_next_request() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    let (id, token) = keys.create(&["yc.monitoring.read"]).await;
    srv.secret(&token);
    assert_eq!(srv.api_key("/v1/whoami", &token).await.status, 200);
    keys.manager.revoke(&id).await.unwrap();
    let r = srv.api_key("/v1/whoami", &token).await;
    assert_eq!(r.assert_problem(401)["error"], "invalid_token");
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn store_outage_fails_closed_with_503() {
    let keys = Keys::new();
    let srv = Server::start(app::router(keys.layer(), &keys.catalog).unwrap()).await;
    let (_, token) = keys.create(&["yc.monitoring.read"]).await;
    srv.secret(&token);

    take_down(&keys.store);
    let r = srv.api_key("/v1/whoami", &token).await;
    r.assert_problem(503);
    assert_eq!(r.header("retry-after"), Some("5"));
    assert!(r.challenges().is_empty());
    assert!(logs().contains("injected outage"), "the cause is logged");

    keys.store.heal();
    assert_eq!(srv.api_key("/v1/whoami", &token).await.status, 200);
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn bearer_tokens_go_to_the_application_validator() {
    let keys = Keys::new();
    let layer = keys.layer().bearer(TestIam).realm("test-api").unwrap().retry_after(Duration::from_secs(30));
    let srv = Server::start(app::router(layer, &keys.catalog).unwrap()).await;
    let (_, token) = keys.create(&["yc.ai.translate.execute"]).await;
    for s in [token.as_str(), IAM_TOKEN, IAM_TOKEN_BACKEND_DOWN, IAM_TOKEN_UNKNOWN] {
        srv.secret(s);
    }
    let bearer = |t: &str| format!("Bearer {t}");

    // No credentials: one challenge per scheme, each on its own line.
    let r = srv.get("/v1/whoami", &[]).await;
    r.assert_problem(401);
    assert_eq!(r.challenges(), [r#"Api-Key realm="test-api""#, r#"Bearer realm="test-api""#]);

    let r = srv.get("/v1/whoami", &[bearer(IAM_TOKEN).as_bytes()]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scheme"], "Bearer");
    assert_eq!(r.json()["subject"], "iam-robot");
    assert_eq!(srv.get("/v1/monitoring", &[bearer(IAM_TOKEN).as_bytes()]).await.status, 200);

    let r = srv.translate(&bearer(IAM_TOKEN)).await;
    r.assert_problem(403);
    assert_eq!(
        r.challenges(),
        [
            r#"Api-Key realm="test-api""#,
            r#"Bearer realm="test-api", error="insufficient_scope", scope="yc.ai.translate.execute""#
        ]
    );

    let r = srv.get("/v1/whoami", &[bearer(IAM_TOKEN_UNKNOWN).as_bytes()]).await;
    assert_eq!(r.assert_problem(401)["error"], "invalid_token");
    assert_eq!(r.challenges(), [r#"Api-Key realm="test-api""#, r#"Bearer realm="test-api", error="invalid_token""#]);

    let r = srv.get("/v1/whoami", &[bearer(IAM_TOKEN_BACKEND_DOWN).as_bytes()]).await;
    r.assert_problem(503);
    assert_eq!(r.header("retry-after"), Some("30"));

    // Bad API key next to a Bearer scheme: the error is on the Api-Key challenge.
    let r = srv.api_key("/v1/whoami", "ak_nope").await;
    assert_eq!(r.challenges(), [r#"Api-Key realm="test-api", error="invalid_token""#, r#"Bearer realm="test-api""#]);

    // API keys keep working beside bearer tokens; both at once is two headers.
    let r = srv.translate(&format!("Api-Key {token}")).await;
    assert_eq!(r.status, 200);
    let both = [format!("Api-Key {token}"), bearer(IAM_TOKEN)];
    let r = srv.get("/v1/whoami", &[both[0].as_bytes(), both[1].as_bytes()]).await;
    r.assert_problem(400);
    assert!(logs().contains("token not issued by the test IAM"));
    srv.assert_no_secret_leaked();
}

async fn headers_seen(principal: Principal, headers: HeaderMap) -> String {
    let auth = if headers.contains_key("authorization") { "present" } else { "absent" };
    format!("{} authorization={auth}", principal.service_account_id())
}

#[tokio::test]
async fn authorization_header_is_removed_before_the_handler() {
    let keys = Keys::new();
    let (_, token) = keys.create(&["yc.monitoring.read"]).await;
    let routes = || app::routes(&keys.catalog).unwrap().route("/test/headers", get(headers_seen));

    let srv = Server::start(routes().layer(keys.layer())).await;
    srv.secret(&token);
    let r = srv.api_key("/test/headers", &token).await;
    assert_eq!((r.status, r.body.as_str()), (200, "robot-1 authorization=absent"));
    srv.assert_no_secret_leaked();

    // Configurable: keep it when the inner service needs it.
    let srv = Server::start(routes().layer(keys.layer().strip_authorization(false))).await;
    let r = srv.api_key("/test/headers", &token).await;
    assert_eq!((r.status, r.body.as_str()), (200, "robot-1 authorization=present"));
}

#[tokio::test]
async fn principal_extractor_without_the_layer_is_a_500() {
    let keys = Keys::new();
    let (_, token) = keys.create(&["yc.monitoring.read"]).await;
    let unprotected =
        Router::new().route("/test/headers", get(headers_seen)).merge(app::routes(&keys.catalog).unwrap());
    let srv = Server::start(unprotected).await;
    srv.secret(&token);
    for path in ["/test/headers", "/v1/whoami", "/v1/monitoring"] {
        let r = srv.api_key(path, &token).await;
        let p = r.assert_problem(500);
        assert!(p.get("error").is_none());
        assert!(r.challenges().is_empty());
    }
    assert!(logs().contains("is ApiKeyLayer missing on this route?"));
    srv.assert_no_secret_leaked();
}

#[tokio::test]
async fn principal_extractor_refuses_a_bearer_identity() {
    let keys = Keys::new();
    let routes = Router::new().route("/test/headers", get(headers_seen));
    let srv = Server::start(routes.layer(keys.layer().bearer(TestIam))).await;
    srv.secret(IAM_TOKEN);
    let r = srv.get("/test/headers", &[format!("Bearer {IAM_TOKEN}").as_bytes()]).await;
    r.assert_problem(401);
    assert_eq!(r.challenges(), [r#"Api-Key realm="api""#, r#"Bearer realm="api""#]);
    srv.assert_no_secret_leaked();
}

/// The same router over the SQLite store, as the example serves it when
/// `API_KEYS_DATABASE_URL=sqlite:…`.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_router_serves_keys_from_sqlite() {
    log_buffer();
    let path = std::env::temp_dir().join(format!("api-keys-http-test-{}.db", std::process::id()));
    let remove = |path: &std::path::Path| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    };
    remove(&path);
    let url = format!("sqlite:{}", path.display());
    let store = Arc::new(api_keys::SqliteStore::connect(&url).await.unwrap());
    let catalog = api_keys::testing::scope_catalog();
    let manager = KeyManager::builder(store, Peppers::single(Pepper::generate(1).unwrap()), catalog.clone()).build();
    let created = manager.create(CreateRequest::new("robot-sql").scopes(["yc.monitoring.manage"])).await.unwrap();
    let token = created.secret.expose_secret().to_owned();
    let srv = Server::start(app::router(ApiKeyLayer::new(manager.verifier().build()), &catalog).unwrap()).await;
    srv.secret(&token);

    let r = srv.api_key("/v1/monitoring", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(srv.translate(&format!("Api-Key {token}")).await.assert_problem(403)["scope"], app::TRANSLATE_SCOPE);
    manager.revoke(&created.api_key.id).await.unwrap();
    assert_eq!(srv.api_key("/v1/whoami", &token).await.assert_problem(401)["error"], "invalid_token");
    srv.assert_no_secret_leaked();
    remove(&path);
}
