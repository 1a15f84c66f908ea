//! `CachedStore`: cache behaviour over the memory store (hits, negative
//! entries, freshness and staleness under Tokio's paused clock, size bound,
//! fail-closed errors), deterministic revocation races forced with a store
//! whose calls pause at chosen points, and cross-node invalidation over an
//! in-process bus, PostgreSQL `LISTEN`/`NOTIFY` and Redis pub/sub.
//!
//! The PostgreSQL and Redis tests need the services on 127.0.0.1 and fail,
//! naming the service and how to start it, when they are not reachable.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_keys::store::cached::{BusStatus, CacheConfig, CachedStore, Peek};
use api_keys::store::invalidation::{InvalidationBus, MemoryBus};
use api_keys::{
    Change, Clock, CreateRequest, Digest, KeyId, KeyManager, KeyRecord, KeyStatus, KeyStore, LogEntry, ManualClock,
    MemoryStore, Pepper, Peppers, Secret, StoreError, UpdateRequest, Verifier, VerifyError,
};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------
// A store wrapper that counts reads, can fail them, and can pause a call at a
// chosen point until the test releases it.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Point {
    /// In `get`, after the inner read, before returning it.
    GetAfterRead,
    /// In `get_by_digest`, after the inner read.
    DigestAfterRead,
    /// In `revoke`, before the inner write.
    RevokeBeforeWrite,
    /// In `revoke`, after the inner write, before returning.
    RevokeAfterWrite,
}

/// A call held at a [`Point`].
struct Paused {
    reached: oneshot::Receiver<()>,
    release: oneshot::Sender<()>,
}

impl Paused {
    /// Waits until the armed call reaches its point.
    async fn reached(&mut self) {
        (&mut self.reached).await.expect("the paused call was dropped before reaching its point");
    }

    fn release(self) {
        let _ = self.release.send(());
    }
}

/// Armed pause points: the "reached" signal and the "release" wait.
type Gates = HashMap<Point, (oneshot::Sender<()>, oneshot::Receiver<()>)>;

#[derive(Default)]
struct Probe {
    inner: Arc<MemoryStore>,
    gets: AtomicUsize,
    gets_done: AtomicUsize,
    digest_gets: AtomicUsize,
    fail_reads: AtomicBool,
    gates: Mutex<Gates>,
}

impl Probe {
    /// A probe over a store other nodes share.
    fn over(inner: Arc<MemoryStore>) -> Self {
        Self { inner, ..Self::default() }
    }

    /// Arms `at`: the next call through it pauses there.
    fn pause(&self, at: Point) -> Paused {
        let (reached_tx, reached) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        self.gates.lock().unwrap().insert(at, (reached_tx, release_rx));
        Paused { reached, release }
    }

    async fn gate(&self, at: Point) {
        let armed = self.gates.lock().unwrap().remove(&at);
        if let Some((reached, release)) = armed {
            let _ = reached.send(());
            let _ = release.await;
        }
    }

    fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    fn digest_gets(&self) -> usize {
        self.digest_gets.load(Ordering::SeqCst)
    }

    fn set_failing(&self, yes: bool) {
        self.fail_reads.store(yes, Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), StoreError> {
        if self.fail_reads.load(Ordering::SeqCst) { Err(StoreError::unavailable("injected outage")) } else { Ok(()) }
    }
}

impl KeyStore for Probe {
    // `get_many` and `with_record` keep the trait's defaults (through the
    // gated `get`); writes reach `commit`.
    api_keys::forward_key_store!(self => self.inner;
        all except [get, get_by_digest, get_many, with_record, lend_now, commit]);

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        let r = self.inner.get(id).await;
        self.gate(Point::GetAfterRead).await;
        self.gets_done.fetch_add(1, Ordering::SeqCst);
        r
    }

    async fn get_by_digest(&self, digest: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.digest_gets.fetch_add(1, Ordering::SeqCst);
        self.check_up()?;
        let r = self.inner.get_by_digest(digest).await;
        self.gate(Point::DigestAfterRead).await;
        r
    }

    async fn commit(&self, change: Change, log: &[LogEntry]) -> Result<Option<KeyRecord>, StoreError> {
        let revoke = matches!(change, Change::Revoke(_));
        if revoke {
            self.gate(Point::RevokeBeforeWrite).await;
        }
        let r = self.inner.commit(change, log).await;
        if revoke {
            self.gate(Point::RevokeAfterWrite).await;
        }
        r
    }
}

// ---------------------------------------------------------------------------
// Fixtures.

type Cached = CachedStore<Probe>;

fn peppers() -> Peppers {
    Peppers::single(Pepper::new(1, [7u8; 32]).unwrap())
}

struct Node<S: KeyStore> {
    store: Arc<S>,
    manager: KeyManager<S>,
    verifier: Arc<Verifier<S>>,
}

fn node<S: KeyStore>(store: S, clock: Option<Arc<ManualClock>>) -> Node<S> {
    let store = Arc::new(store);
    let mut builder = KeyManager::builder(Arc::clone(&store), peppers(), api_keys::testing::scope_catalog());
    if let Some(c) = clock {
        builder = builder.clock(c as Arc<dyn Clock>);
    }
    let manager = builder.build();
    let verifier = Arc::new(manager.verifier().accept_imported(true).build());
    Node { store, manager, verifier }
}

fn cached(config: CacheConfig) -> Node<Cached> {
    node(CachedStore::new(Probe::default(), config), None)
}

/// Fresh 5 s, stale up to 30 s, negative 1 s: the defaults, spelled out.
fn config() -> CacheConfig {
    CacheConfig::default()
        .fresh_ttl(Duration::from_secs(5))
        .max_staleness(Duration::from_secs(30))
        .negative_ttl(Duration::from_secs(1))
}

async fn create<S: KeyStore>(n: &Node<S>) -> (KeyId, String) {
    let created = n.manager.create(CreateRequest::new("robot").scopes(["yc.monitoring.read"])).await.unwrap();
    (created.api_key.id, format!("Api-Key {}", created.secret.expose_secret()))
}

async fn verify<S: KeyStore>(n: &Node<S>, header: &str) -> Result<KeyId, VerifyError> {
    n.verifier.verify(header.as_bytes(), None).await.map(|p| *p.key_id())
}

/// Lets spawned tasks (background refreshes) run until `done` holds; fails
/// after a fixed number of scheduler turns (no wall-clock timing).
async fn settle(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("background work did not finish within 10,000 scheduler turns");
}

/// Like [`settle`] for conditions that need an `await` to check.
async fn settle_async<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..10_000 {
        if done().await {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("background work did not finish within 10,000 scheduler turns");
}

fn is_active_record(p: &Peek) -> bool {
    matches!(p, Peek::Record(r) if r.status == KeyStatus::Active)
}

// ---------------------------------------------------------------------------
// Cache behaviour over the memory store.

#[tokio::test]
async fn hits_do_not_reach_the_store() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    for _ in 0..10 {
        assert_eq!(verify(&n, &header).await.unwrap(), id);
    }
    assert_eq!(n.store.inner().gets(), 1, "one fill, nine hits");
    assert!(matches!(n.store.peek(&id).await, Peek::Record(_)));
}

/// The verifier's synchronous path: a fresh hit is lent at once (no store
/// read, no future state), anything else is handed back for the lookup that
/// waits, and the once-a-second notice to moka still goes the waiting way.
#[tokio::test(start_paused = true)]
async fn fresh_hits_are_lent_at_once_and_the_rest_handed_back() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    let lend = |id: &KeyId| n.store.lend_now(id, |v| v.map(|v| *v.id()));
    assert!(lend(&id).is_err(), "not cached yet: handed back");
    assert_eq!(verify(&n, &header).await.unwrap(), id);
    assert_eq!(lend(&id).ok(), Some(Some(id)), "fresh: lent at once");
    assert_eq!(lend(&id).ok(), Some(Some(id)));
    assert_eq!(n.store.inner().gets(), 1, "one fill, and no store read for the lent hits");
    assert!(lend(&KeyId::generate().unwrap()).is_err(), "an unknown id is asked, not lent");
    // A second later the entry's notice to moka is due: handed back once,
    // the waiting lookup gives the notice, then it is lent again.
    tokio::time::advance(Duration::from_millis(1_100)).await;
    assert!(lend(&id).is_err(), "notice due: handed back");
    assert_eq!(verify(&n, &header).await.unwrap(), id);
    assert_eq!(lend(&id).ok(), Some(Some(id)));
    assert_eq!(n.store.inner().gets(), 1, "still one fill");
}

#[tokio::test]
async fn concurrent_misses_share_one_store_read() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    let mut paused = n.store.inner().pause(Point::GetAfterRead);
    let first = {
        let verifier = Arc::clone(&n.verifier);
        let header = header.clone();
        tokio::spawn(async move { verifier.verify(header.as_bytes(), None).await.map(|p| *p.key_id()) })
    };
    paused.reached().await;
    let others: Vec<_> = (0..8)
        .map(|_| {
            let verifier = Arc::clone(&n.verifier);
            let header = header.clone();
            tokio::spawn(async move { verifier.verify(header.as_bytes(), None).await.map(|p| *p.key_id()) })
        })
        .collect();
    // Let the waiters queue behind the paused fill.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    paused.release();
    assert_eq!(first.await.unwrap().unwrap(), id);
    for o in others {
        assert_eq!(o.await.unwrap().unwrap(), id);
    }
    assert_eq!(n.store.inner().gets(), 1, "nine concurrent misses, one store read");
}

#[tokio::test(start_paused = true)]
async fn negative_entries_are_short_lived_and_dropped_by_insert() {
    let n = cached(config());
    let probe = n.store.inner();
    let id = KeyId::generate().unwrap();
    assert!(n.store.get(&id).await.unwrap().is_none());
    assert!(n.store.get(&id).await.unwrap().is_none());
    assert_eq!(probe.gets(), 1, "the second miss is a negative hit");
    assert!(matches!(n.store.peek(&id).await, Peek::Absent));

    tokio::time::advance(Duration::from_millis(1001)).await;
    assert!(matches!(n.store.peek(&id).await, Peek::Miss), "negative entries live for negative_ttl only");
    assert!(n.store.get(&id).await.unwrap().is_none());
    assert_eq!(probe.gets(), 2);

    // A key created under a negatively cached id is visible at once.
    let mut record = KeyRecord::clone(&n.store.get(&create(&n).await.0).await.unwrap().unwrap());
    record.id = id;
    n.store.insert(record).await.unwrap();
    assert_eq!(n.store.get(&id).await.unwrap().unwrap().id, id);
}

#[tokio::test]
async fn negative_caching_can_be_switched_off() {
    let n = cached(config().negative_ttl(Duration::ZERO));
    let id = KeyId::generate().unwrap();
    for _ in 0..3 {
        assert!(n.store.get(&id).await.unwrap().is_none());
    }
    assert_eq!(n.store.inner().gets(), 3);
}

#[tokio::test(start_paused = true)]
async fn fresh_entries_are_served_and_stale_ones_refreshed_in_the_background() {
    let n = cached(config());
    let probe = n.store.inner();
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    assert_eq!(probe.gets(), 1);

    tokio::time::advance(Duration::from_millis(4_900)).await;
    verify(&n, &header).await.unwrap();
    assert_eq!(probe.gets(), 1, "younger than fresh_ttl: from memory");

    // Between fresh_ttl and max_staleness: served at once, one refresh runs.
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(verify(&n, &header).await.unwrap(), id);
    assert_eq!(verify(&n, &header).await.unwrap(), id);
    settle(|| probe.gets_done.load(Ordering::SeqCst) == 2).await;
    for _ in 0..100 {
        tokio::task::yield_now().await; // let the refresh task store its result
    }
    assert_eq!(probe.gets(), 2, "single-flight refresh");

    // The refresh restarted the clock: fresh again for 5 s.
    tokio::time::advance(Duration::from_millis(4_900)).await;
    verify(&n, &header).await.unwrap();
    assert_eq!(probe.gets(), 2);
}

#[tokio::test(start_paused = true)]
async fn nothing_older_than_max_staleness_is_served_even_while_a_refresh_hangs() {
    let n = cached(config());
    let probe = n.store.inner();
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();

    // Go stale; the background refresh reads the store and then hangs.
    tokio::time::advance(Duration::from_secs(6)).await;
    let mut hung = probe.pause(Point::GetAfterRead);
    verify(&n, &header).await.unwrap();
    hung.reached().await;
    assert_eq!(probe.gets(), 2);

    // Still within max_staleness: the stale entry is served, no new refresh.
    tokio::time::advance(Duration::from_secs(23)).await;
    verify(&n, &header).await.unwrap();
    assert_eq!(probe.gets(), 2);
    assert!(matches!(n.store.peek(&id).await, Peek::Record(_)));

    // Past max_staleness (read at 0 s, now 30 s): never served; the request
    // reads the store itself.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(n.store.peek(&id).await, Peek::Miss));
    probe.set_failing(true);
    let e = verify(&n, &header).await.unwrap_err();
    assert!(matches!(e, VerifyError::StoreUnavailable(_)), "{e:?}");
    assert_eq!(probe.gets(), 3);
    hung.release();
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_drops_the_entry_and_the_next_request_fails_closed() {
    let n = cached(config());
    let probe = n.store.inner();
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();

    tokio::time::advance(Duration::from_secs(6)).await;
    probe.set_failing(true);
    // Served stale while the refresh runs (and fails).
    assert_eq!(verify(&n, &header).await.unwrap(), id);
    settle_async(|| async { matches!(n.store.peek(&id).await, Peek::Miss) }).await;

    let e = verify(&n, &header).await.unwrap_err();
    assert!(matches!(e, VerifyError::StoreUnavailable(_)), "{e:?}");
    assert_eq!(e.client_class().status(), 503);

    probe.set_failing(false);
    assert_eq!(verify(&n, &header).await.unwrap(), id);
}

#[tokio::test]
async fn store_errors_are_never_cached() {
    let n = cached(config());
    let probe = n.store.inner();
    let (id, header) = create(&n).await;
    probe.set_failing(true);
    for _ in 0..3 {
        let e = verify(&n, &header).await.unwrap_err();
        assert!(matches!(e, VerifyError::StoreUnavailable(_)), "{e:?}");
    }
    assert_eq!(probe.gets(), 3, "every request during the outage reached the store");
    assert!(matches!(n.store.peek(&id).await, Peek::Miss), "no negative entry from an error");
    probe.set_failing(false);
    assert_eq!(verify(&n, &header).await.unwrap(), id);
}

#[tokio::test]
async fn expiry_is_rechecked_on_every_hit() {
    let clock = Arc::new(ManualClock::new("2030-01-01T00:00:00Z".parse().unwrap()));
    let n = node(CachedStore::new(Probe::default(), config()), Some(Arc::clone(&clock)));
    let created = n
        .manager
        .create(CreateRequest::new("robot").expires_at("2030-01-01T00:01:00Z".parse().unwrap()))
        .await
        .unwrap();
    let header = format!("Api-Key {}", created.secret.expose_secret());
    verify(&n, &header).await.unwrap();
    clock.advance(Duration::from_secs(59));
    verify(&n, &header).await.unwrap();
    clock.advance(Duration::from_secs(1));
    let e = verify(&n, &header).await.unwrap_err();
    assert!(matches!(e, VerifyError::Expired(_)), "{e:?}");
    assert_eq!(n.store.inner().gets(), 1, "the expired key was rejected on a cache hit");
}

#[tokio::test]
async fn size_is_bounded() {
    let n = cached(config().max_entries(50));
    for _ in 0..1_000 {
        n.store.get(&KeyId::generate().unwrap()).await.unwrap();
    }
    n.store.run_pending_tasks().await;
    assert!(n.store.entry_count() <= 50, "{} entries", n.store.entry_count());
}

#[tokio::test]
async fn a_disabled_cache_always_consults_the_store() {
    for config in [CacheConfig::disabled(), config().max_staleness(Duration::ZERO)] {
        let n = cached(config);
        let (id, header) = create(&n).await;
        for _ in 0..3 {
            verify(&n, &header).await.unwrap();
        }
        assert_eq!(n.store.inner().gets(), 3);
        assert!(matches!(n.store.peek(&id).await, Peek::Miss));
        n.manager.revoke(&id).await.unwrap();
        assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
    }
}

#[tokio::test]
async fn writes_go_through_and_take_effect_at_once() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    n.manager.revoke(&id).await.unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
    assert_eq!(n.store.inner().inner.get(&id).await.unwrap().unwrap().status, KeyStatus::Revoked);

    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    n.manager.delete(&id).await.unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::UnknownKey(_))));

    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    let new = n.manager.reissue(&id, Duration::ZERO).await.unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
    let new_header = format!("Api-Key {}", new.secret.expose_secret());
    assert_eq!(verify(&n, &new_header).await.unwrap(), new.api_key.id);
}

#[tokio::test]
async fn imported_keys_are_cached_by_digest_and_revoked_by_id() {
    let n = cached(config());
    let secret = "AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    let info = n.manager.import(CreateRequest::new("robot"), &Secret::from(secret.to_owned())).await.unwrap();
    let header = format!("Api-Key {secret}");
    let before = n.store.inner().digest_gets();
    for _ in 0..5 {
        assert_eq!(verify(&n, &header).await.unwrap(), info.id);
    }
    assert_eq!(n.store.inner().digest_gets(), before + 1);
    n.manager.revoke(&info.id).await.unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
    n.manager.delete(&info.id).await.unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::UnknownKey(None))));
}

#[tokio::test]
async fn flushed_last_use_is_patched_into_cached_records() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    assert_eq!(n.verifier.flush_last_used().await.unwrap(), 1);
    match n.store.peek(&id).await {
        Peek::Record(r) => assert!(r.last_used_at.is_some()),
        other => panic!("{other:?}"),
    }
    verify(&n, &header).await.unwrap();
    assert_eq!(n.verifier.pending_last_used(), 0, "a cached record with a recent last use is not noted again");
    assert_eq!(n.store.inner().gets(), 1);
}

#[cfg(feature = "test-util")]
#[tokio::test]
async fn a_cached_store_passes_the_conformance_suite() {
    api_keys::testing::conformance::run_all(&CachedStore::new(MemoryStore::new(), config())).await;
    api_keys::testing::conformance::run_all(&CachedStore::new(MemoryStore::new(), CacheConfig::disabled())).await;
}

// ---------------------------------------------------------------------------
// Revocation races, forced deterministically.

/// A fill reads the active record, pauses; a revoke completes; the fill
/// resumes. It must neither return the active record nor leave it cached.
#[tokio::test]
async fn a_fill_overtaken_by_a_revoke_is_not_served() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    let mut paused = n.store.inner().pause(Point::GetAfterRead);
    let lookup = {
        let verifier = Arc::clone(&n.verifier);
        tokio::spawn(async move { verifier.verify(header.as_bytes(), None).await.map(|p| *p.key_id()) })
    };
    paused.reached().await; // the fill holds the active record
    n.manager.revoke(&id).await.unwrap(); // the revoke has returned
    paused.release();
    let result = lookup.await.unwrap();
    assert!(matches!(result, Err(VerifyError::Revoked(_))), "{result:?}");
    let peek = n.store.peek(&id).await;
    assert!(!is_active_record(&peek), "{peek:?}");
    assert_eq!(n.store.inner().gets(), 2, "the overtaken read was discarded and repeated");
}

/// The same through `get` directly: the record returned after the revoke
/// returned is the revoked one.
#[tokio::test]
async fn a_get_started_before_a_revoke_returns_the_revoked_record() {
    let n = cached(config());
    let (id, _) = create(&n).await;
    let mut paused = n.store.inner().pause(Point::GetAfterRead);
    let store = Arc::clone(&n.store);
    let lookup = tokio::spawn(async move { store.get(&id).await });
    paused.reached().await;
    n.store.revoke(&id).await.unwrap();
    paused.release();
    let record = lookup.await.unwrap().unwrap().unwrap();
    assert_eq!(record.status, KeyStatus::Revoked);
}

/// The opposite order: the revoke starts first and pauses before its write;
/// a lookup fills the (still active) record meanwhile — allowed, the revoke
/// has not returned. Once it returns, the key is rejected.
#[tokio::test]
async fn a_fill_during_a_revoke_is_dropped_when_the_revoke_returns() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    let mut paused = n.store.inner().pause(Point::RevokeBeforeWrite);
    let revoke = {
        let store = Arc::clone(&n.store);
        tokio::spawn(async move { store.revoke(&id).await })
    };
    paused.reached().await;
    assert_eq!(verify(&n, &header).await.unwrap(), id, "not yet revoked");
    assert!(is_active_record(&n.store.peek(&id).await));
    paused.release();
    revoke.await.unwrap().unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
    assert!(!is_active_record(&n.store.peek(&id).await));
}

/// The revoke has written but not returned; a warm cache still serves the
/// key (the revoke is in progress), and stops the moment it returns.
#[tokio::test]
async fn a_warm_entry_dies_when_the_revoke_returns() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    let mut paused = n.store.inner().pause(Point::RevokeAfterWrite);
    let revoke = {
        let store = Arc::clone(&n.store);
        tokio::spawn(async move { store.revoke(&id).await })
    };
    paused.reached().await;
    assert!(verify(&n, &header).await.is_ok(), "the revoke has not returned yet");
    paused.release();
    revoke.await.unwrap().unwrap();
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
}

/// Delete-then-refill (the load-then-fill race of tower-sessions' cache): a
/// fill reads the record, a delete completes, the fill resumes and must not
/// put the deleted record back.
#[tokio::test]
async fn a_deleted_key_is_not_refilled_by_an_overtaken_read() {
    let n = cached(config());
    let (id, header) = create(&n).await;
    let mut paused = n.store.inner().pause(Point::GetAfterRead);
    let lookup = {
        let verifier = Arc::clone(&n.verifier);
        let header = header.clone();
        tokio::spawn(async move { verifier.verify(header.as_bytes(), None).await.map(|p| *p.key_id()) })
    };
    paused.reached().await;
    n.manager.delete(&id).await.unwrap();
    paused.release();
    let result = lookup.await.unwrap();
    assert!(matches!(result, Err(VerifyError::UnknownKey(_))), "{result:?}");
    assert!(!matches!(n.store.peek(&id).await, Peek::Record(_)));
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::UnknownKey(_))));
}

/// A background refresh reads the active record, pauses; a revoke
/// completes; the refresh resumes. Its entry must not be served.
#[tokio::test(start_paused = true)]
async fn a_refresh_overtaken_by_a_revoke_is_not_served() {
    let n = cached(config());
    let probe = n.store.inner();
    let (id, header) = create(&n).await;
    verify(&n, &header).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    let mut paused = probe.pause(Point::GetAfterRead);
    verify(&n, &header).await.unwrap(); // stale hit, refresh starts
    paused.reached().await;
    n.manager.revoke(&id).await.unwrap();
    paused.release();
    settle(|| probe.gets_done.load(Ordering::SeqCst) == 2).await;
    for _ in 0..100 {
        tokio::task::yield_now().await; // let the refresh task store its result
    }
    assert!(!is_active_record(&n.store.peek(&id).await));
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
}

/// The digest path (imported keys): a fill by digest overtaken by a revoke
/// by id.
#[tokio::test]
async fn a_digest_fill_overtaken_by_a_revoke_is_not_served() {
    let n = cached(config());
    let secret = "AQVN3sHvAWTemWB8QxHkunfG2x4q7G3OrCG02w";
    let info = n.manager.import(CreateRequest::new("robot"), &Secret::from(secret.to_owned())).await.unwrap();
    let header = format!("Api-Key {secret}");
    let mut paused = n.store.inner().pause(Point::DigestAfterRead);
    let lookup = {
        let verifier = Arc::clone(&n.verifier);
        let header = header.clone();
        tokio::spawn(async move { verifier.verify(header.as_bytes(), None).await.map(|p| *p.key_id()) })
    };
    paused.reached().await;
    n.manager.revoke(&info.id).await.unwrap();
    paused.release();
    let result = lookup.await.unwrap();
    assert!(matches!(result, Err(VerifyError::Revoked(_))), "{result:?}");
    assert!(matches!(verify(&n, &header).await, Err(VerifyError::Revoked(_))));
}

// ---------------------------------------------------------------------------
// Cross-node invalidation over the in-process bus.

/// Polls `check` until it holds, failing after `limit` (a deadline, not a
/// sleep: the assertion is that it happens within the limit).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_subscribed<S: KeyStore>(store: &CachedStore<S>, subscriptions: u64) {
    eventually(Duration::from_secs(5), "invalidation subscription", || async {
        let s: BusStatus = store.bus_status();
        s.connected && s.subscriptions >= subscriptions
    })
    .await;
}

/// Waits until `store` has received one more id than `before`: the echo of
/// a create (creates are published, for other nodes' flood shields), which
/// would otherwise drop an entry filled just before it arrives.
async fn heard_create<S: KeyStore>(store: &CachedStore<S>, before: u64) {
    eventually(Duration::from_secs(5), "create heard", || async { store.bus_status().received > before }).await;
}

/// Long TTLs: any rejection on the other node within the test comes from
/// the bus, not from ageing out.
fn long_ttls() -> CacheConfig {
    CacheConfig::default()
        .fresh_ttl(Duration::from_secs(600))
        .max_staleness(Duration::from_secs(1200))
        .reconnect_initial(Duration::from_millis(20))
}

/// Makes the nodes of one cross-node scenario: each call is another node,
/// with its own cache (and, for a server, its own connections), over the
/// one shared backend and invalidation channel, subscribed when returned.
trait Nodes {
    /// The store every node caches.
    type Store: KeyStore;

    async fn node(&self) -> Node<CachedStore<Self::Store>>;
}

/// Nodes over a server whose connections the test can kill.
trait CuttableNodes: Nodes {
    /// Kills the second node's invalidation subscription on the server side
    /// (and for some backends the first node's, `a`, too); returns whether
    /// `a`'s was killed.
    async fn cut(&self, a: &Node<CachedStore<Self::Store>>) -> bool;
}

/// Two nodes over the in-process bus and one memory store.
struct MemoryNodes {
    shared: Arc<MemoryStore>,
    bus: MemoryBus,
}

impl MemoryNodes {
    fn new() -> Self {
        Self { shared: Arc::new(MemoryStore::new()), bus: MemoryBus::new() }
    }
}

impl Nodes for MemoryNodes {
    type Store = Arc<MemoryStore>;

    async fn node(&self) -> Node<CachedStore<Arc<MemoryStore>>> {
        let cached = CachedStore::with_bus(Arc::clone(&self.shared), long_ttls(), self.bus.clone()).unwrap();
        wait_subscribed(&cached, 1).await;
        node(cached, None)
    }
}

/// A revoke, a delete and a reissue on node A: node B, which has the key
/// cached for ten minutes, rejects it within a second. Returns the nodes
/// for the backend's own checks.
async fn a_revoke_on_one_node_is_rejected_on_the_other<N: Nodes>(nodes: &N) -> [Node<CachedStore<N::Store>>; 2] {
    let (a, b) = (nodes.node().await, nodes.node().await);
    for op in ["revoke", "delete", "reissue"] {
        let heard = b.store.bus_status().received;
        let (id, header) = create(&a).await;
        heard_create(&b.store, heard).await;
        verify(&b, &header).await.unwrap();
        verify(&b, &header).await.unwrap();
        assert!(matches!(b.store.peek(&id).await, Peek::Record(_)), "B has it cached");
        match op {
            "revoke" => drop(a.manager.revoke(&id).await.unwrap()),
            "delete" => drop(a.manager.delete(&id).await.unwrap()),
            _ => drop(a.manager.reissue(&id, Duration::ZERO).await.unwrap()),
        }
        eventually(Duration::from_secs(1), op, || async { verify(&b, &header).await.is_err() }).await;
    }
    assert!(b.store.bus_status().received >= 3);
    [a, b]
}

/// A scope update on node A takes effect on node B's next verify (after
/// the bus message), though B had the old scopes cached for ten minutes.
async fn a_scope_update_on_one_node_reaches_the_other<N: Nodes>(nodes: &N) {
    let (a, b) = (nodes.node().await, nodes.node().await);
    let monitoring = api_keys::testing::scope_catalog().requirement("yc.monitoring.read").unwrap();

    let heard = b.store.bus_status().received;
    let (id, header) = create(&a).await;
    heard_create(&b.store, heard).await;
    let heard = b.store.bus_status().received;
    b.verifier.verify(header.as_bytes(), Some(&monitoring)).await.unwrap();
    assert!(matches!(b.store.peek(&id).await, Peek::Record(_)), "B has it cached");
    a.manager.update(&id, UpdateRequest::new().scopes(["yc.postbox.send"])).await.unwrap();
    eventually(Duration::from_secs(1), "scope update", || async {
        b.verifier.verify(header.as_bytes(), Some(&monitoring)).await.is_err()
    })
    .await;
    let principal = b.verifier.verify(header.as_bytes(), None).await.unwrap();
    assert!(principal.scopes().contains("yc.postbox.send"), "B sees the new scopes");
    assert_eq!(b.store.bus_status().received, heard + 1, "the update's one message");
}

/// B's subscription is killed on the server: B reconnects, the reconnect
/// clears its cache, and revocations arrive over the new subscription.
async fn a_killed_subscription_reconnects_and_clears_the_cache<N: CuttableNodes>(nodes: &N) {
    let (a, b) = (nodes.node().await, nodes.node().await);
    let heard = b.store.bus_status().received;
    let (id, header) = create(&a).await;
    heard_create(&b.store, heard).await;
    verify(&b, &header).await.unwrap();
    assert!(matches!(b.store.peek(&id).await, Peek::Record(_)));

    if nodes.cut(&a).await {
        wait_subscribed(&a.store, 2).await;
    }
    wait_subscribed(&b.store, 2).await;
    assert!(matches!(b.store.peek(&id).await, Peek::Miss), "cleared on reconnect");

    // And the new subscription works.
    verify(&b, &header).await.unwrap();
    a.manager.revoke(&id).await.unwrap();
    eventually(Duration::from_secs(1), "revoke after reconnect", || async { verify(&b, &header).await.is_err() }).await;
}

#[tokio::test]
async fn a_revoke_on_one_node_reaches_the_other_over_the_memory_bus() {
    let [a, b] = a_revoke_on_one_node_is_rejected_on_the_other(&MemoryNodes::new()).await;
    // Three creates (published so that other nodes' flood shields learn the
    // new ids) and the three changes.
    assert_eq!(b.store.bus_status().received, 3 + 3);
    assert_eq!(a.store.bus_status().publish_failures, 0);
}

#[tokio::test]
async fn a_scope_update_on_one_node_reaches_the_other_over_the_memory_bus() {
    a_scope_update_on_one_node_reaches_the_other(&MemoryNodes::new()).await;
}

/// A bus whose subscriptions the test can cut, to exercise reconnects.
#[derive(Clone)]
struct CuttableBus {
    inner: MemoryBus,
    cut: Arc<tokio::sync::watch::Sender<u64>>,
    down: Arc<AtomicBool>,
}

struct CuttableSubscription {
    inner: <MemoryBus as InvalidationBus>::Subscription,
    cut: tokio::sync::watch::Receiver<u64>,
}

impl InvalidationBus for CuttableBus {
    type Subscription = CuttableSubscription;

    async fn publish(&self, id: &KeyId) -> Result<(), api_keys::store::invalidation::BusError> {
        self.inner.publish(id).await
    }

    async fn subscribe(&self) -> Result<CuttableSubscription, api_keys::store::invalidation::BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(api_keys::store::invalidation::BusError::Closed);
        }
        let mut cut = self.cut.subscribe();
        cut.mark_unchanged();
        Ok(CuttableSubscription { inner: self.inner.subscribe().await?, cut })
    }
}

impl api_keys::store::invalidation::InvalidationSubscription for CuttableSubscription {
    async fn next_id(&mut self) -> Result<KeyId, api_keys::store::invalidation::BusError> {
        tokio::select! {
            id = self.inner.next_id() => id,
            _ = self.cut.changed() => Err(api_keys::store::invalidation::BusError::Closed),
        }
    }
}

#[tokio::test]
async fn a_lost_subscription_is_retried_and_the_reconnect_clears_the_cache() {
    let bus = CuttableBus {
        inner: MemoryBus::new(),
        cut: Arc::new(tokio::sync::watch::channel(0).0),
        down: Arc::new(AtomicBool::new(false)),
    };
    let b = node(CachedStore::with_bus(Probe::default(), long_ttls(), bus.clone()).unwrap(), None);
    wait_subscribed(&b.store, 1).await;
    let (id, header) = create(&b).await;
    // The create is published too (for other nodes' flood shields); let its
    // echo arrive before filling, or it drops the fresh entry.
    eventually(Duration::from_secs(5), "create echoed", || async { b.store.bus_status().received >= 1 }).await;
    verify(&b, &header).await.unwrap();
    assert!(matches!(b.store.peek(&id).await, Peek::Record(_)));

    // Cut the subscription while the bus refuses new ones: the cache keeps
    // serving (bounded by max_staleness) and keeps trying.
    bus.down.store(true, Ordering::SeqCst);
    bus.cut.send_modify(|n| *n += 1);
    eventually(Duration::from_secs(5), "disconnect noticed", || async {
        let s = b.store.bus_status();
        !s.connected && s.subscribe_failures >= 2
    })
    .await;
    assert!(matches!(b.store.peek(&id).await, Peek::Record(_)));

    // Back up: the re-subscription clears everything.
    bus.down.store(false, Ordering::SeqCst);
    wait_subscribed(&b.store, 2).await;
    assert!(matches!(b.store.peek(&id).await, Peek::Miss), "cleared on reconnect");
    let before = b.store.inner().gets();
    verify(&b, &header).await.unwrap();
    assert_eq!(b.store.inner().gets(), before + 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_bus_a_remote_revoke_is_bounded_by_max_staleness() {
    // Node A writes to the shared store; node B has no bus and its
    // background refresh hangs: B may serve the old record until
    // max_staleness, never after.
    let shared = Arc::new(MemoryStore::new());
    let a = node(Arc::clone(&shared), None);
    let b = node(CachedStore::new(Probe::over(Arc::clone(&shared)), config()), None);
    let (id, header) = create(&a).await;
    verify(&b, &header).await.unwrap();
    a.manager.revoke(&id).await.unwrap();
    assert!(verify(&b, &header).await.is_ok(), "B has not heard of the revoke (the documented window)");

    tokio::time::advance(Duration::from_secs(6)).await;
    let mut hung = b.store.inner().pause(Point::GetAfterRead);
    assert!(verify(&b, &header).await.is_ok(), "stale, refresh started");
    hung.reached().await;
    tokio::time::advance(Duration::from_millis(23_999)).await;
    assert!(verify(&b, &header).await.is_ok(), "just under max_staleness");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(matches!(verify(&b, &header).await, Err(VerifyError::Revoked(_))), "at max_staleness: the store decides");
    hung.release();
}

// ---------------------------------------------------------------------------
// The same scenarios over PostgreSQL and Redis: each node with its own
// pool/connections and its own cache, sharing one backend.

#[path = "common/services.rs"]
mod services;

#[cfg(any(feature = "postgres", feature = "redis"))]
fn unique(prefix: &str) -> String {
    let id = KeyId::generate().unwrap();
    format!("{prefix}_{}", id.as_str())
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use api_keys::PostgresStore;
    use api_keys::store::invalidation::PostgresBus;

    /// Nodes over one fresh schema and `LISTEN`/`NOTIFY` channel; the schema
    /// is dropped when this is, also if the test panics.
    struct PgNodes {
        url: String,
        schema: String,
        channel: String,
    }

    impl PgNodes {
        fn new() -> Self {
            Self { url: services::postgres_url(), schema: unique("cache"), channel: unique("inval") }
        }
    }

    impl Drop for PgNodes {
        fn drop(&mut self) {
            let (url, schema) = (self.url.clone(), self.schema.clone());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                    }
                });
            })
            .join();
        }
    }

    impl Nodes for PgNodes {
        type Store = PostgresStore;

        async fn node(&self) -> Node<CachedStore<PostgresStore>> {
            let store = match PostgresStore::builder(&self.url).schema(&self.schema).max_connections(4).connect().await
            {
                Ok(s) => s,
                Err(e) => services::postgres_down(&e, "a database `test` you may create schemas in"),
            };
            let bus = PostgresBus::new(store.pool().clone()).channel(&self.channel).unwrap();
            let cached = CachedStore::with_bus(store, long_ttls(), bus).unwrap();
            wait_subscribed(&cached, 1).await;
            node(cached, None)
        }
    }

    impl CuttableNodes for PgNodes {
        /// Terminates every backend listening on the channel: A's and B's.
        async fn cut(&self, a: &Node<CachedStore<PostgresStore>>) -> bool {
            let killed: Vec<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"{}\"'",
                self.channel
            )))
            .fetch_all(a.store.inner().pool())
            .await
            .unwrap();
            assert_eq!(killed.len(), 2, "both listeners found");
            true
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_on_one_node_is_rejected_on_the_other_within_a_second() {
        a_revoke_on_one_node_is_rejected_on_the_other(&PgNodes::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scope_update_on_one_node_reaches_the_other_over_notify() {
        a_scope_update_on_one_node_reaches_the_other(&PgNodes::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_listener_reconnects_and_clears_the_cache() {
        a_killed_subscription_reconnects_and_clears_the_cache(&PgNodes::new()).await;
    }
}

#[cfg(feature = "redis")]
mod redis_bus {
    use super::*;
    use api_keys::RedisStore;
    use api_keys::store::invalidation::RedisBus;

    /// Serialises this binary's Redis tests, so a node's subscriber can be
    /// told from the others' by diffing `CLIENT LIST`.
    static PUBSUB: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Nodes over one fresh prefix and pub/sub channel; each node's
    /// subscriber client id is kept for [`Nodes::cut`]. The prefix's keys
    /// are purged when this is dropped, also if the test panics.
    struct RedisNodes {
        url: String,
        prefix: String,
        channel: String,
        subscribers: Mutex<Vec<String>>,
        _serial: tokio::sync::MutexGuard<'static, ()>,
    }

    impl RedisNodes {
        async fn new() -> Self {
            Self {
                url: services::redis_url(),
                prefix: unique("cache"),
                channel: unique("inval"),
                subscribers: Mutex::new(Vec::new()),
                _serial: PUBSUB.lock().await,
            }
        }

        async fn admin(&self) -> redis::aio::MultiplexedConnection {
            match redis::Client::open(self.url.as_str()).unwrap().get_multiplexed_async_connection().await {
                Ok(c) => c,
                Err(e) => services::redis_down(&e, "a Redis server"),
            }
        }
    }

    impl Drop for RedisNodes {
        fn drop(&mut self) {
            let (url, prefix) = (self.url.clone(), self.prefix.clone());
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(store) = RedisStore::builder(&url).prefix(prefix).connect().await {
                        let _ = store.purge().await;
                    }
                });
            })
            .join();
        }
    }

    async fn pubsub_clients(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
        let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(conn).await.unwrap();
        list.lines().filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_owned)).collect()
    }

    impl Nodes for RedisNodes {
        type Store = RedisStore;

        async fn node(&self) -> Node<CachedStore<RedisStore>> {
            let mut admin = self.admin().await;
            let before = pubsub_clients(&mut admin).await;
            let store = match RedisStore::builder(&self.url).prefix(&self.prefix).connect().await {
                Ok(s) => s,
                Err(e) => services::redis_down(&e, "a Redis server"),
            };
            let bus = match RedisBus::connect(redis::Client::open(self.url.as_str()).unwrap()).await {
                Ok(b) => b.channel(&self.channel).unwrap(),
                Err(e) => services::redis_down(&e, "a Redis server"),
            };
            let cached = CachedStore::with_bus(store, long_ttls(), bus).unwrap();
            wait_subscribed(&cached, 1).await;
            let after = pubsub_clients(&mut admin).await;
            let new: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
            assert_eq!(new.len(), 1, "exactly the new node's subscriber is new: before {before:?}, after {after:?}");
            self.subscribers.lock().unwrap().push(new[0].clone());
            node(cached, None)
        }
    }

    impl CuttableNodes for RedisNodes {
        /// Kills B's subscriber (the last node's) only.
        async fn cut(&self, _: &Node<CachedStore<RedisStore>>) -> bool {
            let id = self.subscribers.lock().unwrap().last().cloned().unwrap();
            let killed: i64 =
                redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut self.admin().await).await.unwrap();
            assert_eq!(killed, 1);
            false
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_on_one_node_is_rejected_on_the_other_within_a_second() {
        a_revoke_on_one_node_is_rejected_on_the_other(&RedisNodes::new().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scope_update_on_one_node_reaches_the_other_over_pubsub() {
        a_scope_update_on_one_node_reaches_the_other(&RedisNodes::new().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_subscriber_reconnects_and_clears_the_cache() {
        a_killed_subscription_reconnects_and_clears_the_cache(&RedisNodes::new().await).await;
    }
}
