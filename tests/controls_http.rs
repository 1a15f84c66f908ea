//! Key controls through the tower layer, over real HTTP: an axum router on
//! an ephemeral loopback port served with `ConnectInfo`, spoken to with
//! reqwest. Status, headers and bodies of each control's refusal; the
//! disabled key's 401 byte-identical to the other invalid keys'; IP
//! allow-lists with and without trusted proxies; rate-limit headers;
//! credits; fail-closed limiter and store.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api_keys::controls::{Credits, IpAllowList, KeyControls, LimitCheck, LimiterError, RateLimiter, RateLimits};
use api_keys::http::{ApiKeyLayer, Cost, ForwardedHeader};
use api_keys::testing::{Fault, FaultyStore, Op};
use api_keys::{
    Clock, CreateRequest, KeyId, KeyManager, KeyStore, ManualClock, MemoryStore, Pepper, Peppers, Principal, Timestamp,
    Verifier,
};
use axum::Router;
use axum::routing::get;
use reqwest::header::AUTHORIZATION;

type Store = FaultyStore<MemoryStore>;

/// A manager over a fault-injecting memory store on a manual clock.
struct Fixture {
    manager: KeyManager<Store>,
    store: Arc<Store>,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_767_225_600).unwrap()));
        let store = Arc::new(FaultyStore::new(MemoryStore::new()));
        let manager = KeyManager::builder(
            Arc::clone(&store),
            Peppers::single(Pepper::generate(1).unwrap()),
            api_keys::testing::scope_catalog(),
        )
        .clock(clock.clone())
        .build();
        Self { manager, store, clock }
    }

    fn verifier(&self) -> Verifier<Store> {
        self.manager.verifier().clock(self.clock.clone()).build()
    }

    /// A new key with `controls`; returns its `Authorization` value and id.
    async fn key(&self, controls: KeyControls) -> (String, KeyId) {
        let created = self.manager.create(CreateRequest::new("robot")).await.unwrap();
        let id = created.api_key.id;
        let mut record = (*self.store.get(&id).await.unwrap().unwrap()).clone();
        record.set_controls(controls);
        self.store.delete(&id).await.unwrap();
        self.store.insert(record).await.unwrap();
        (format!("Api-Key {}", created.secret.expose_secret()), id)
    }
}

/// What the handler saw.
async fn whoami(p: Principal) -> String {
    format!("{} credits={:?}", p.key_id(), p.credits_remaining())
}

/// Serves `layer` around `/whoami` (and `/free`, costing 0, and
/// `/expensive`, whose `Cost` extension is set outside the layer) with
/// `ConnectInfo`; returns the base URL.
async fn serve(layer: ApiKeyLayer<Store>) -> String {
    let free = Router::new().route("/free", get(whoami)).layer(layer.clone().cost(0));
    let expensive = Router::new().route("/expensive", get(whoami)).layer(layer.clone()).layer(
        axum::middleware::map_request(|mut req: axum::extract::Request| async move {
            req.extensions_mut().insert(Cost(2));
            req
        }),
    );
    let app = Router::new().route("/whoami", get(whoami)).layer(layer).merge(free).merge(expensive);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    format!("http://{addr}")
}

/// Status, the headers a client sees, and the body bytes.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn get_with(url: &str, auth: &str, extra: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().get(url).header(AUTHORIZATION, auth);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    Answer { status: res.status().as_u16(), headers: res.headers().clone(), body: res.bytes().await.unwrap() }
}

fn allow(ranges: &str) -> KeyControls {
    KeyControls::new().allowed_ips(ranges.parse::<IpAllowList>().unwrap())
}

#[tokio::test]
async fn a_disabled_key_gets_the_same_401_as_unknown_wrong_expired_and_revoked_keys() {
    let fx = Fixture::new();
    let base = serve(ApiKeyLayer::new(fx.verifier())).await;
    let url = format!("{base}/whoami");

    let good = fx.manager.create(CreateRequest::new("robot")).await.unwrap();
    let good_header = format!("Api-Key {}", good.secret.expose_secret());
    assert_eq!(get_with(&url, &good_header, &[]).await.status, 200);

    let mut wrong = good.secret.expose_secret().to_owned();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    let unknown = fx.manager.create(CreateRequest::new("robot")).await.unwrap();
    fx.manager.delete(&unknown.api_key.id).await.unwrap();
    let expired = fx
        .manager
        .create(CreateRequest::new("robot").expires_at(fx.clock.now().saturating_add(Duration::from_secs(1))))
        .await
        .unwrap();
    let revoked = fx.manager.create(CreateRequest::new("robot")).await.unwrap();
    fx.manager.revoke(&revoked.api_key.id).await.unwrap();
    let (disabled, id) = fx.key(KeyControls::new()).await;
    let mut record = (*fx.store.get(&id).await.unwrap().unwrap()).clone();
    record.enabled = false;
    fx.store.delete(&id).await.unwrap();
    fx.store.insert(record).await.unwrap();
    fx.clock.advance(Duration::from_secs(2));

    let headers = [
        format!("Api-Key {wrong}"),
        format!("Api-Key {}", unknown.secret.expose_secret()),
        format!("Api-Key {}", expired.secret.expose_secret()),
        format!("Api-Key {}", revoked.secret.expose_secret()),
        disabled,
    ];
    let mut answers = Vec::new();
    for h in &headers {
        answers.push(get_with(&url, h, &[]).await);
    }
    for a in &answers {
        assert_eq!(a.status, 401);
        assert_eq!(a.header("www-authenticate"), Some("Api-Key realm=\"api\", error=\"invalid_token\""));
        assert_eq!(a.header("content-type"), Some("application/problem+json"));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert_eq!(a.body, answers[0].body, "byte-identical bodies");
        let names = |a: &Answer| {
            let mut n: Vec<String> = a.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k != "date").collect();
            n.sort();
            n
        };
        assert_eq!(names(a), names(&answers[0]), "the same header names");
    }
}

#[tokio::test]
async fn an_ip_allow_list_admits_the_peer_inside_and_refuses_outside_with_403() {
    let fx = Fixture::new();
    let base = serve(ApiKeyLayer::new(fx.verifier())).await;
    let (inside, _) = fx.key(allow("127.0.0.0/8,::1/128")).await;
    let (outside, _) = fx.key(allow("10.0.0.0/8,2001:db8::/32")).await;
    let url = format!("{base}/whoami");
    assert_eq!(get_with(&url, &inside, &[]).await.status, 200);
    let refused = get_with(&url, &outside, &[]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    assert!(refused.header("www-authenticate").is_none());
    let body = refused.json();
    assert_eq!(body["status"], 403);
    assert_eq!(body["detail"], "The credentials may not be used from this address.");
    assert!(!String::from_utf8_lossy(&refused.body).contains("127.0.0.1"), "the address is not echoed");
}

#[tokio::test]
async fn a_forwarding_header_counts_only_from_a_trusted_proxy() {
    let fx = Fixture::new();
    let (key, _) = fx.key(allow("203.0.113.0/24")).await;
    let trusting = ApiKeyLayer::new(fx.verifier())
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()], ForwardedHeader::XForwardedFor);
    let trusting_url = format!("{}/whoami", serve(trusting).await);
    let forwarded =
        ApiKeyLayer::new(fx.verifier()).trusted_proxies(["127.0.0.0/8".parse().unwrap()], ForwardedHeader::Forwarded);
    let forwarded_url = format!("{}/whoami", serve(forwarded).await);
    let elsewhere = ApiKeyLayer::new(fx.verifier())
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()], ForwardedHeader::XForwardedFor);
    let elsewhere_url = format!("{}/whoami", serve(elsewhere).await);

    // The loopback peer is a trusted proxy: the client is its header's.
    assert_eq!(get_with(&trusting_url, &key, &[("x-forwarded-for", "198.51.100.1, 203.0.113.5")]).await.status, 200);
    // Rightmost untrusted: a client-made left part does not help.
    let spoofed_left = get_with(&trusting_url, &key, &[("x-forwarded-for", "203.0.113.5, 198.51.100.1")]).await;
    assert_eq!(spoofed_left.status, 403);
    assert_eq!(get_with(&trusting_url, &key, &[]).await.status, 403, "no header: the proxy itself is the client");
    let obfuscated = get_with(&forwarded_url, &key, &[("forwarded", "for=203.0.113.5, for=_hidden")]).await;
    assert_eq!(obfuscated.status, 403, "an unknown hop makes the client unknown");
    let quoted = [("forwarded", "for=\"203.0.113.5:4711\";proto=https")];
    assert_eq!(get_with(&forwarded_url, &key, &quoted).await.status, 200);
    // X-Forwarded-For is not the configured header here.
    assert_eq!(get_with(&forwarded_url, &key, &[("x-forwarded-for", "203.0.113.5")]).await.status, 403);
    // From a peer outside the trusted ranges the header is ignored.
    assert_eq!(get_with(&elsewhere_url, &key, &[("x-forwarded-for", "203.0.113.5")]).await.status, 403);
}

#[tokio::test]
async fn without_a_peer_address_a_key_with_an_allow_list_is_refused() {
    use tower::ServiceExt;
    let fx = Fixture::new();
    let (key, _) = fx.key(allow("127.0.0.1/32")).await;
    let (plain, _) = fx.key(KeyControls::new()).await;
    let ok = tower::service_fn(|_req: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let svc = tower::Layer::layer(&ApiKeyLayer::new(fx.verifier()), ok);
    let request = |auth: &str, peer: Option<SocketAddr>| {
        let mut req = http::Request::builder().header("authorization", auth).body(String::new()).unwrap();
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer);
        }
        req
    };
    let status = |r: http::Response<_>| r.status().as_u16();
    assert_eq!(status(svc.clone().oneshot(request(&key, None)).await.unwrap()), 403, "fail closed");
    let peer = "127.0.0.1:5000".parse().ok();
    assert_eq!(status(svc.clone().oneshot(request(&key, peer)).await.unwrap()), 200, "a plain SocketAddr");
    assert_eq!(status(svc.oneshot(request(&plain, None)).await.unwrap()), 200, "keys without a list do not care");
}

#[tokio::test]
async fn a_rate_limited_key_gets_429_with_retry_after_and_ratelimit_headers() {
    let fx = Fixture::new();
    let base = serve(ApiKeyLayer::new(fx.verifier())).await;
    let limits: RateLimits = "api=2/1s".parse().unwrap();
    let (key, _) = fx.key(KeyControls::new().rate_limits(limits)).await;
    let (plain, _) = fx.key(KeyControls::new()).await;
    let url = format!("{base}/whoami");

    let first = get_with(&url, &key, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-policy"), Some("\"api\";q=2;w=1"));
    assert_eq!(first.header("ratelimit"), Some("\"api\";r=1;t=1"));
    assert_eq!(get_with(&url, &key, &[]).await.header("ratelimit"), Some("\"api\";r=0;t=1"));

    let refused = get_with(&url, &key, &[]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"api\";q=2;w=1"));
    assert_eq!(refused.header("ratelimit"), Some("\"api\";r=0;t=1"));
    assert_eq!(refused.header("content-type"), Some("application/problem+json"));
    assert!(refused.header("www-authenticate").is_none());
    assert_eq!(refused.json()["status"], 429);
    assert!(refused.json()["detail"].as_str().unwrap().starts_with("Rate limit exceeded"));

    let other = get_with(&url, &plain, &[]).await;
    assert_eq!(other.status, 200, "other keys are not limited");
    assert!(other.header("ratelimit").is_none(), "and get no headers");

    fx.clock.advance(Duration::from_millis(500));
    assert_eq!(get_with(&url, &key, &[]).await.status, 200, "one more after half a second");
    assert_eq!(get_with(&url, &key, &[]).await.status, 429);
}

#[tokio::test]
async fn rate_limit_headers_on_success_can_be_turned_off() {
    let fx = Fixture::new();
    let base = serve(ApiKeyLayer::new(fx.verifier()).rate_limit_headers(false)).await;
    let (key, _) = fx.key(KeyControls::new().rate_limits("api=1/1m".parse().unwrap())).await;
    let url = format!("{base}/whoami");
    assert!(get_with(&url, &key, &[]).await.header("ratelimit").is_none());
    let refused = get_with(&url, &key, &[]).await;
    assert_eq!((refused.status, refused.header("retry-after")), (429, Some("60")));
    assert!(refused.header("ratelimit").is_some(), "refusals always carry them");
}

/// A limiter whose state is unreachable.
#[derive(Debug)]
struct Down;

impl RateLimiter for Down {
    fn check<'a>(&'a self, _key: &'a KeyId, _limits: &'a RateLimits) -> LimitCheck<'a> {
        Box::pin(async { Err(LimiterError::new("redis: connection refused")) })
    }
}

#[tokio::test]
async fn a_failing_rate_limiter_fails_closed_with_503() {
    let fx = Fixture::new();
    let verifier = fx.manager.verifier().clock(fx.clock.clone()).rate_limiter(Down).build();
    let base = serve(ApiKeyLayer::new(verifier)).await;
    let (limited, _) = fx.key(KeyControls::new().rate_limits("api=100/1s".parse().unwrap())).await;
    let (plain, _) = fx.key(KeyControls::new()).await;
    let url = format!("{base}/whoami");
    let refused = get_with(&url, &limited, &[]).await;
    assert_eq!((refused.status, refused.header("retry-after")), (503, Some("5")));
    assert_eq!(get_with(&url, &plain, &[]).await.status, 200, "keys without limits never ask it");
}

#[tokio::test]
async fn credits_three_then_usage_exceeded_and_routes_set_their_cost() {
    let fx = Fixture::new();
    let base = serve(ApiKeyLayer::new(fx.verifier())).await;
    let (key, id) = fx.key(KeyControls::new().credits(Credits::new(4).unwrap())).await;
    let got = get_with(&format!("{base}/free"), &key, &[]).await;
    assert_eq!((got.status, String::from_utf8_lossy(&got.body).into_owned()), (200, format!("{id} credits=Some(4)")));
    let got = get_with(&format!("{base}/expensive"), &key, &[]).await;
    assert_eq!(String::from_utf8_lossy(&got.body), format!("{id} credits=Some(2)"), "the Cost extension spent 2");
    let url = format!("{base}/whoami");
    let got = get_with(&url, &key, &[]).await;
    assert_eq!((got.status, String::from_utf8_lossy(&got.body).into_owned()), (200, format!("{id} credits=Some(1)")));
    assert_eq!(get_with(&url, &key, &[]).await.status, 200);
    let refused = get_with(&url, &key, &[]).await;
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_none() && refused.header("www-authenticate").is_none());
    assert_eq!(refused.json()["detail"], "Usage exceeded: the credentials have no usage credits left.");
    assert_eq!(get_with(&format!("{base}/free"), &key, &[]).await.status, 200, "cost 0 is still allowed");
}

#[tokio::test]
async fn a_store_failure_while_spending_credits_fails_closed_with_503() {
    let fx = Fixture::new();
    let base = serve(ApiKeyLayer::new(fx.verifier())).await;
    let (key, _) = fx.key(KeyControls::new().credits(Credits::new(10).unwrap())).await;
    let url = format!("{base}/whoami");
    assert_eq!(get_with(&url, &key, &[]).await.status, 200);
    fx.store.always(Op::SpendCredits, Fault::Error);
    assert_eq!(get_with(&url, &key, &[]).await.status, 503);
    fx.store.heal();
    assert_eq!(get_with(&url, &key, &[]).await.status, 200);
}

#[tokio::test]
async fn verify_with_checks_address_before_scope_and_rate_before_credits() {
    use api_keys::{VerifyContext, VerifyError};
    let fx = Fixture::new();
    let verifier = fx.verifier();
    let need = fx.manager.catalog().requirement("yc.monitoring.read").unwrap();
    let (outside, _) = fx.key(allow("10.0.0.0/8")).await;
    let ctx = VerifyContext::new().required(&need).client_ip("192.0.2.1".parse::<std::net::IpAddr>().ok());
    let e = verifier.verify_with(outside.as_bytes(), &ctx).await.unwrap_err();
    assert!(matches!(e, VerifyError::IpNotAllowed { ip: Some(_), .. }), "the address first: {e:?}");
    let e = verifier.verify(outside.as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::IpNotAllowed { ip: None, .. }), "verify knows no address: {e:?}");

    let both = KeyControls::new().rate_limits("api=1/1m".parse().unwrap()).credits(Credits::new(5).unwrap());
    let (key, _) = fx.key(both).await;
    let p = verifier.verify(key.as_bytes(), None).await.unwrap();
    assert_eq!(p.credits_remaining(), Some(4));
    assert_eq!(p.rate_limit().map(|(l, s)| (l.name.as_str().to_owned(), s.remaining)), Some(("api".into(), 0)));
    let e = verifier.verify(key.as_bytes(), None).await.unwrap_err();
    assert!(matches!(&e, VerifyError::RateLimited { limit, .. } if limit.as_str() == "api"), "{e:?}");
    let operator = VerifyContext::new().cost(0);
    let e = verifier.verify_with(key.as_bytes(), &operator).await.unwrap_err();
    assert!(matches!(e, VerifyError::RateLimited { .. }), "rate limits apply to cost 0 too");
    fx.clock.advance(Duration::from_secs(60));
    let p = verifier.verify_with(key.as_bytes(), &operator).await.unwrap();
    assert_eq!(p.credits_remaining(), Some(4), "the refused request spent nothing, cost 0 spends nothing");
}
