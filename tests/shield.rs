//! The flood shield: forged keys with valid checksums cost no store query
//! while the shield is trusted; keys that exist are never refused because the
//! shield may be stale (starting, channel down, resync failing); ids heard on
//! the channel are accepted; the real stores list their ids.

#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "common/services.rs"]
mod services;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use api_keys::store::cached::CachedStore;
use api_keys::store::invalidation::{BusError, InvalidationBus, InvalidationSubscription, MemoryBus};
use api_keys::store::shielded::{ShieldConfig, ShieldedStore};
use api_keys::{
    CreateRequest, KeyId, KeyManager, KeyRecord, KeyStore, MemoryStore, Pepper, Peppers, StoreError, TokenFormat,
    Verifier, VerifyError,
};

/// A store that counts `get`s (store queries) and can fail `ids_after`.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    gets: AtomicU64,
    fail_ids: AtomicBool,
}

impl KeyStore for Counting {
    // `get_many` and `with_record` keep the trait's defaults, which look up
    // with `get` and so are counted.
    api_keys::forward_key_store!(self => self.inner; all except [get, get_many, with_record, lend_now, ids_after]);

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id).await
    }

    async fn ids_after(&self, after: Option<KeyId>, limit: u32) -> Result<Vec<KeyId>, StoreError> {
        if self.fail_ids.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("ids unavailable"));
        }
        self.inner.ids_after(after, limit).await
    }
}

fn peppers() -> Peppers {
    Peppers::single(Pepper::from_base64(1, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap())
}

fn manager<S: KeyStore>(store: Arc<S>) -> KeyManager<S> {
    KeyManager::builder(store, peppers(), api_keys::testing::scope_catalog()).build()
}

fn header(secret: &str) -> Vec<u8> {
    format!("Api-Key {secret}").into_bytes()
}

/// A key of the right shape and checksum that nobody issued.
fn forged() -> Vec<u8> {
    header(TokenFormat::default().generate().unwrap().secret.expose_secret())
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: not within 10 s");
}

#[tokio::test]
async fn a_flood_of_forged_keys_costs_at_most_the_miss_budget() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(ShieldedStore::local(Arc::clone(&counting), ShieldConfig::default()).unwrap());
    store.wait_trusted().await;
    let manager = manager(Arc::clone(&store));
    let verifier = manager.verifier().build();
    let mut keys = Vec::new();
    for i in 0..20 {
        keys.push(manager.create(CreateRequest::new(format!("robot-{i}"))).await.unwrap());
    }
    let before = counting.gets.load(Ordering::SeqCst);
    const FLOOD: u64 = 10_000;
    let started = std::time::Instant::now();
    for _ in 0..FLOOD {
        let e = verifier.verify(&forged(), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::UnknownKey(Some(_))), "{e:?}");
    }
    let queries = counting.gets.load(Ordering::SeqCst) - before;
    println!("{FLOOD} forged keys with valid checksums caused {queries} store queries");
    // At most the miss budget: a burst of 10, then 10 per second.
    let budget = 10 + 10 * (started.elapsed().as_secs() + 1);
    assert!(queries <= budget, "{queries} > {budget}");
    let stats = store.stats();
    assert_eq!((stats.refused + stats.miss_queries, stats.miss_queries), (FLOOD, queries));
    // Every real key still verifies, one store query each.
    for k in &keys {
        verifier.verify(&header(k.secret.expose_secret()), None).await.unwrap();
    }
    assert_eq!(counting.gets.load(Ordering::SeqCst) - before, queries + keys.len() as u64);
}

#[tokio::test]
async fn a_batch_lookup_through_a_trusted_shield_asks_for_forged_ids_only_within_the_miss_budget() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(ShieldedStore::local(Arc::clone(&counting), ShieldConfig::default()).unwrap());
    store.wait_trusted().await;
    let manager = manager(Arc::clone(&store));
    let a = manager.create(CreateRequest::new("robot")).await.unwrap().api_key.id;
    let b = manager.create(CreateRequest::new("robot")).await.unwrap().api_key.id;
    let mut ids = vec![a];
    ids.extend((0..1_000).map(|_| KeyId::generate().unwrap()));
    ids.push(b);
    let before = counting.gets.load(Ordering::SeqCst);
    let got = store.get_many(&ids).await.unwrap();
    assert_eq!(got.len(), ids.len(), "one answer per id");
    assert_eq!((got[0].as_ref().map(|r| r.id), got[1_001].as_ref().map(|r| r.id)), (Some(a), Some(b)));
    assert!(got[1..=1_000].iter().all(Option::is_none));
    // The two real keys, and forged ids only within the miss budget.
    let queries = counting.gets.load(Ordering::SeqCst) - before;
    assert!((2..=2 + 20).contains(&queries), "{queries} store queries");
    assert!(store.stats().refused >= 980, "{:?}", store.stats());
}

#[tokio::test]
async fn an_untrusted_shield_asks_the_store_and_never_refuses_an_existing_key() {
    let counting = Arc::new(Counting::default());
    // A key written straight into the store before the shield exists.
    let early = manager(Arc::clone(&counting)).create(CreateRequest::new("early")).await.unwrap();
    // Loads fail from the start: the shield is never trusted.
    counting.fail_ids.store(true, Ordering::SeqCst);
    let config = ShieldConfig::default().resync_every(Duration::from_millis(20)).max_age(Duration::from_millis(200));
    let store = Arc::new(ShieldedStore::local(Arc::clone(&counting), config).unwrap());
    let verifier = Verifier::builder(Arc::clone(&store), peppers()).build();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!store.stats().trusted && store.stats().load_failures > 0);
    verifier.verify(&header(early.secret.expose_secret()), None).await.unwrap();
    let before = counting.gets.load(Ordering::SeqCst);
    verifier.verify(&forged(), None).await.unwrap_err();
    assert_eq!(counting.gets.load(Ordering::SeqCst), before + 1, "untrusted: the store is asked");

    // Loads work again: trusted, the early key is in the set.
    counting.fail_ids.store(false, Ordering::SeqCst);
    store.wait_trusted().await;
    verifier.verify(&header(early.secret.expose_secret()), None).await.unwrap();
    // Loads fail again: after max_age the shield stops refusing.
    counting.fail_ids.store(true, Ordering::SeqCst);
    let late = manager(Arc::clone(&counting)).create(CreateRequest::new("late")).await.unwrap();
    eventually("untrusted after max_age", || !store.stats().trusted).await;
    verifier.verify(&header(late.secret.expose_secret()), None).await.unwrap();
}

#[tokio::test]
async fn the_set_is_rebuilt_by_resync() {
    let counting = Arc::new(Counting::default());
    let config = ShieldConfig::default().resync_every(Duration::from_millis(20)).page(3);
    let store = Arc::new(ShieldedStore::local(Arc::clone(&counting), config).unwrap());
    store.wait_trusted().await;
    let m = manager(Arc::clone(&store));
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(m.create(CreateRequest::new(format!("r-{i}"))).await.unwrap().api_key.id);
    }
    assert_eq!(store.stats().ids, 10);
    // Written behind the shield's back (another process): a resync picks it up.
    let behind = manager(Arc::clone(&counting)).create(CreateRequest::new("behind")).await.unwrap();
    let verifier = Verifier::builder(Arc::clone(&store), peppers()).build();
    eventually("the resync loaded the 11th id", || store.stats().ids == 11).await;
    verifier.verify(&header(behind.secret.expose_secret()), None).await.unwrap();
    // Deleted ids leave the set at the next resync (paged by 3: 4 pages).
    for id in &ids[..5] {
        m.delete(id).await.unwrap();
    }
    eventually("deleted ids dropped", || store.stats().ids == 6).await;
}

/// A bus whose subscriptions the test can cut.
#[derive(Clone)]
struct Cuttable {
    inner: MemoryBus,
    cut: Arc<tokio::sync::watch::Sender<u64>>,
    down: Arc<AtomicBool>,
}

struct CuttableSub {
    inner: <MemoryBus as InvalidationBus>::Subscription,
    cut: tokio::sync::watch::Receiver<u64>,
}

impl InvalidationBus for Cuttable {
    type Subscription = CuttableSub;
    async fn publish(&self, id: &KeyId) -> Result<(), BusError> {
        self.inner.publish(id).await
    }
    async fn subscribe(&self) -> Result<CuttableSub, BusError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BusError::Closed);
        }
        let mut cut = self.cut.subscribe();
        cut.mark_unchanged();
        Ok(CuttableSub { inner: self.inner.subscribe().await?, cut })
    }
}

impl InvalidationSubscription for CuttableSub {
    async fn next_id(&mut self) -> Result<KeyId, BusError> {
        tokio::select! {
            id = self.inner.next_id() => id,
            _ = self.cut.changed() => Err(BusError::Closed),
        }
    }
}

#[tokio::test]
async fn ids_heard_on_the_bus_are_accepted_and_a_lost_channel_turns_the_shield_off() {
    let shared = Arc::new(Counting::default());
    let bus = Cuttable {
        inner: MemoryBus::new(),
        cut: Arc::new(tokio::sync::watch::channel(0).0),
        down: Arc::new(AtomicBool::new(false)),
    };
    let config = ShieldConfig::default()
        .resync_every(Duration::from_secs(3600))
        .reconnect_initial(Duration::from_millis(10))
        .miss_queries_per_sec(0);
    let node = Arc::new(ShieldedStore::with_bus(Arc::clone(&shared), config, bus.clone()).unwrap());
    node.wait_trusted().await;
    let verifier = Verifier::builder(Arc::clone(&node), peppers()).build();
    // Another writer (keyctl) that publishes its writes.
    let writer = manager(Arc::new(CachedStore::publishing(Arc::clone(&shared), bus.clone())));

    let k = writer.create(CreateRequest::new("elsewhere")).await.unwrap();
    eventually("the create was heard", || node.stats().heard >= 1).await;
    verifier.verify(&header(k.secret.expose_secret()), None).await.unwrap();

    // The channel goes down and stays down: not trusted, so a key created
    // meanwhile (its message lost) is still accepted, by asking the store.
    bus.down.store(true, Ordering::SeqCst);
    bus.cut.send_modify(|n| *n += 1);
    eventually("untrusted without a channel", || !node.stats().trusted).await;
    let lost = writer.create(CreateRequest::new("lost-message")).await.unwrap();
    verifier.verify(&header(lost.secret.expose_secret()), None).await.unwrap();
    let before = shared.gets.load(Ordering::SeqCst);
    verifier.verify(&forged(), None).await.unwrap_err();
    assert_eq!(shared.gets.load(Ordering::SeqCst), before + 1);

    // Back up: re-subscribed and reloaded; the lost id is in the set, forged ids are refused again.
    bus.down.store(false, Ordering::SeqCst);
    node.wait_trusted().await;
    verifier.verify(&header(lost.secret.expose_secret()), None).await.unwrap();
    let before = shared.gets.load(Ordering::SeqCst);
    verifier.verify(&forged(), None).await.unwrap_err();
    assert_eq!(shared.gets.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn a_disabled_shield_passes_everything_through() {
    let counting = Arc::new(Counting::default());
    let store = Arc::new(ShieldedStore::disabled(Arc::clone(&counting)));
    let verifier = Verifier::builder(Arc::clone(&store), peppers()).build();
    verifier.verify(&forged(), None).await.unwrap_err();
    assert_eq!(counting.gets.load(Ordering::SeqCst), 1);
    assert!(!store.stats().trusted);
}

#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod backends {
    use super::*;
    use api_keys::store::any::{self, AnyStore};

    async fn lists_its_ids(store: AnyStore) {
        let store = Arc::new(store);
        let m = manager(Arc::clone(&store));
        let mut made = Vec::new();
        for i in 0..7 {
            made.push(m.create(CreateRequest::new(format!("ids-{i}"))).await.unwrap().api_key.id);
        }
        made.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.ids_after(after, 3).await.unwrap();
            assert!(page.windows(2).all(|w| w[0] < w[1]), "ascending");
            seen.extend(page.iter().copied());
            match page.last() {
                Some(last) if page.len() >= 3 => after = Some(*last),
                _ => break,
            }
        }
        assert_eq!(seen, made, "{:?}", store.backend());
        for id in &made {
            m.delete(id).await.unwrap();
        }
        assert!(store.ids_after(None, 3).await.unwrap().is_empty());
    }

    /// Waits until the shield answers `id` as `present` (a refused id is
    /// `None` with no store query: the miss budget is zero).
    async fn until_answers(shield: &ShieldedStore<Arc<AnyStore>>, id: &KeyId, present: bool, what: &str) {
        for _ in 0..1000 {
            if shield.get(id).await.unwrap().is_some() == present {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 10 s ({:?})", shield.stats());
    }

    /// Waits until a lookup of `id` is refused by the shield itself (the id
    /// left the set).
    async fn until_refused(shield: &ShieldedStore<Arc<AnyStore>>, id: &KeyId, what: &str) {
        for _ in 0..1000 {
            let before = shield.stats().refused;
            assert!(shield.get(id).await.unwrap().is_none(), "{what}: the key is found");
            if shield.stats().refused > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 10 s ({:?})", shield.stats());
    }

    /// Changes made by another node with no message reaching this one are
    /// caught up from the store's change feed without a reload; when the
    /// feed is pruned past the shield's position (a gap) it reloads once and
    /// ends consistent: no real key refused, no deleted key listed.
    async fn follows_the_feed_and_reloads_across_a_gap(inner: AnyStore) {
        let inner = Arc::new(inner);
        let config = ShieldConfig::default()
            .catch_up_every(Duration::from_millis(1500))
            .resync_every(Duration::from_secs(3600))
            .miss_queries_per_sec(0);
        let shield = ShieldedStore::local(Arc::clone(&inner), config).unwrap();
        shield.wait_trusted().await;
        let loads = shield.stats().loads;
        let other = manager(Arc::clone(&inner));
        let a = other.create(CreateRequest::new("feed-a")).await.unwrap().api_key.id;
        let b = other.create(CreateRequest::new("feed-b")).await.unwrap().api_key.id;
        until_answers(&shield, &a, true, "a key created elsewhere is caught up").await;
        until_answers(&shield, &b, true, "so is the second").await;
        other.delete(&b).await.unwrap();
        until_refused(&shield, &b, "a deleted id leaves the set").await;
        let stats = shield.stats();
        assert_eq!(stats.loads, loads, "caught up, not reloaded: {stats:?}");
        assert!(stats.catch_ups >= 1, "{stats:?}");

        // A gap: changes, then the feed pruned before the next catch-up.
        let c = other.create(CreateRequest::new("feed-c")).await.unwrap().api_key.id;
        other.delete(&a).await.unwrap();
        let later = api_keys::Timestamp::now().saturating_add(Duration::from_secs(1));
        while inner.prune_feed(later, 1000).await.unwrap() > 0 {}
        eventually("the gap is noticed and the set reloaded", || shield.stats().feed_breaks >= 1).await;
        until_answers(&shield, &c, true, "a key created in the gap").await;
        until_refused(&shield, &a, "a key deleted in the gap is not in the set").await;
        assert_eq!(shield.stats().loads, loads + 1, "{:?}", shield.stats());
    }

    #[tokio::test]
    async fn every_feed_keeping_store_catches_up_and_survives_a_gap() {
        follows_the_feed_and_reloads_across_a_gap(AnyStore::Memory(Arc::new(MemoryStore::new()))).await;
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("feed.db").display());
        follows_the_feed_and_reloads_across_a_gap(any::open_store(&sqlite).await.unwrap()).await;
        let pg = crate::services::postgres_url();
        let schema = unique("shield_feed");
        let store = any::open_store(&format!("{pg}?schema={schema}")).await.unwrap();
        let pool = match &store {
            AnyStore::Postgres(s) => s.pool().clone(),
            _ => unreachable!(),
        };
        follows_the_feed_and_reloads_across_a_gap(store).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&pool).await.unwrap();

        let redis = crate::services::redis_url();
        let store = any::open_store(&format!("{redis}?prefix={}", unique("shield-feed"))).await.unwrap();
        follows_the_feed_and_reloads_across_a_gap(store.clone()).await;
        if let AnyStore::Redis(s) = store {
            s.purge().await.unwrap();
        }
    }

    fn unique(label: &str) -> String {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        format!("{label}_{}_{n}", std::process::id())
    }

    #[tokio::test]
    async fn every_store_lists_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("ids.db").display());
        lists_its_ids(any::open_store(&sqlite).await.unwrap()).await;

        let pg = crate::services::postgres_url();
        let schema = unique("shield_ids");
        let store = any::open_store(&format!("{pg}?schema={schema}")).await.unwrap();
        let pool = match &store {
            AnyStore::Postgres(s) => s.pool().clone(),
            _ => unreachable!(),
        };
        lists_its_ids(store).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&pool).await.unwrap();

        let redis = crate::services::redis_url();
        let prefix = unique("shield-ids");
        let store = any::open_store(&format!("{redis}?prefix={prefix}")).await.unwrap();
        lists_its_ids(store.clone()).await;
        if let AnyStore::Redis(s) = store {
            s.purge().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_key_whose_announcement_is_late_is_found_within_the_miss_budget() {
    for budget in [10, 0] {
        let counting = Arc::new(Counting::default());
        let config = ShieldConfig::default().resync_every(Duration::from_secs(3600)).miss_queries_per_sec(budget);
        let store = Arc::new(ShieldedStore::local(Arc::clone(&counting), config).unwrap());
        store.wait_trusted().await;
        let verifier = Verifier::builder(Arc::clone(&store), peppers()).build();
        // Created behind the shield's back, announcement not (yet) heard.
        let late = manager(Arc::clone(&counting)).create(CreateRequest::new("late")).await.unwrap();
        let result = verifier.verify(&header(late.secret.expose_secret()), None).await;
        if budget == 0 {
            assert!(matches!(result, Err(VerifyError::UnknownKey(_))), "{result:?}");
            assert_eq!(store.stats().ids, 0);
        } else {
            result.unwrap();
            // Found, and added: the next use does not spend the budget.
            assert_eq!((store.stats().ids, store.stats().miss_queries), (1, 1));
            verifier.verify(&header(late.secret.expose_secret()), None).await.unwrap();
            assert_eq!(store.stats().miss_queries, 1);
        }
    }
}

/// Over a store that lends at once (the memory store), a known key takes
/// the synchronous path through the shield, and a forged id still passes
/// the gate exactly once per lookup (the lend hands it back untouched).
#[tokio::test]
async fn over_a_lending_store_known_keys_are_lent_at_once_and_forged_ids_gated_once() {
    let inner = Arc::new(MemoryStore::new());
    let store = Arc::new(ShieldedStore::local(Arc::clone(&inner), ShieldConfig::default()).unwrap());
    store.wait_trusted().await;
    let manager = manager(Arc::clone(&store));
    let verifier = manager.verifier().build();
    let key = manager.create(CreateRequest::new("robot")).await.unwrap();
    let id = key.api_key.id;
    assert_eq!(store.lend_now(&id, |v| v.map(|v| *v.id())).ok(), Some(Some(id)));
    let forged_id = KeyId::generate().unwrap();
    let before = store.stats();
    assert!(store.lend_now(&forged_id, |v| v.is_some()).is_err(), "not in the set: left to the gate");
    for _ in 0..100 {
        verifier.verify(&forged(), None).await.unwrap_err();
    }
    let after = store.stats();
    let gated = |s: &api_keys::store::shielded::ShieldStats| s.refused + s.miss_queries;
    assert_eq!(gated(&after) - gated(&before), 100, "{after:?}");
    verifier.verify(&header(key.secret.expose_secret()), None).await.unwrap();
}
