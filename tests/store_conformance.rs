//! Every store against the one conformance suite, plus the full
//! manager + verifier lifecycle over each persistent store, and fail-closed
//! behaviour when a store's server cannot be reached.
//!
//! Needs PostgreSQL and Redis on loopback; a test whose service is down
//! fails with a message naming the service and how to start it.
//! `API_KEYS_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`)
//! and `API_KEYS_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) override
//! the addresses. Each PostgreSQL test works in a fresh schema and each Redis
//! test under a fresh key prefix; both are removed at the end of the test,
//! also when it fails.

#![cfg(all(feature = "sqlite", feature = "postgres", feature = "redis", feature = "test-util"))]
#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use api_keys::testing::conformance::{self, Check};
use api_keys::{
    Clock, CreateRequest, KeyKind, KeyManager, KeyStatus, KeyStore, ManageError, ManualClock, MemoryStore, PageRequest,
    Pepper, Peppers, PostgresStore, RedisStore, Secret, SqliteStore, StoreError, Timestamp, TokenFormat, VerifyError,
};
use common::services::{postgres_down, postgres_url, redis_down, redis_url};
use sqlx::Connection as _;

/// What the servers must allow these tests.
const PG_NEEDS: &str = "a database you may create schemas in";
const REDIS_NEEDS: &str = "a server";

/// A backend for one test: opened fresh, cleaned up afterwards.
trait Backend: Sized {
    type Store: KeyStore + Clone;
    async fn open() -> Self;
    fn store(&self) -> Self::Store;
    async fn cleanup(self);
}

struct Memory(Arc<MemoryStore>);

impl Backend for Memory {
    type Store = Arc<MemoryStore>;
    async fn open() -> Self {
        Self(Arc::new(MemoryStore::new()))
    }
    fn store(&self) -> Self::Store {
        Arc::clone(&self.0)
    }
    async fn cleanup(self) {}
}

struct Sqlite {
    store: SqliteStore,
    _dir: tempfile::TempDir,
}

impl Backend for Sqlite {
    type Store = SqliteStore;
    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("keys.db").display());
        let store = SqliteStore::connect(&url).await.unwrap_or_else(|e| panic!("SQLite at {url}: {e} ({e:?})"));
        Self { store, _dir: dir }
    }
    fn store(&self) -> Self::Store {
        self.store.clone()
    }
    async fn cleanup(self) {
        self.store.pool().close().await;
    }
}

struct Postgres {
    store: PostgresStore,
    schema: String,
}

impl Backend for Postgres {
    type Store = PostgresStore;
    async fn open() -> Self {
        let schema = format!("api_keys_test_{}", conformance::key_id());
        let store = PostgresStore::builder(postgres_url())
            .schema(schema.clone())
            .max_connections(4)
            .connect()
            .await
            .unwrap_or_else(|e| postgres_down(&e, PG_NEEDS));
        Self { store, schema }
    }
    fn store(&self) -> Self::Store {
        self.store.clone()
    }
    async fn cleanup(self) {
        self.store.pool().close().await;
        let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{}\" CASCADE", self.schema)))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
    }
}

struct Redis(RedisStore);

impl Backend for Redis {
    type Store = RedisStore;
    async fn open() -> Self {
        let prefix = format!("api-keys-test-{}", conformance::key_id());
        let store = RedisStore::builder(redis_url())
            .prefix(prefix)
            .connect()
            .await
            .unwrap_or_else(|e| redis_down(&e, REDIS_NEEDS));
        Self(store)
    }
    fn store(&self) -> Self::Store {
        self.0.clone()
    }
    async fn cleanup(self) {
        self.0.purge().await.unwrap();
        // Nothing of this test is left behind.
        assert_eq!(self.0.purge().await.unwrap(), 0);
    }
}

/// Runs `test` on a fresh backend in its own task, cleans the backend up
/// whether or not the test panicked, then re-raises the panic.
async fn with<B, F, Fut>(test: F)
where
    B: Backend,
    F: FnOnce(B::Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let backend = B::open().await;
    let outcome = tokio::spawn(test(backend.store())).await;
    backend.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

macro_rules! conformance_tests {
    ($module:ident, $backend:ty $(; also $($more:ident => $more_check:ident),+)? $(; not_yet [$($skip:ident),*])?) => {
        mod $module {
            use super::*;

            conformance_tests!(@checks $backend; [$($($skip),*)?];
                $($($more => $more_check,)+)?
                insert_get_round_trip => InsertGetRoundTrip,
                duplicate_id => DuplicateId,
                duplicate_imported_digest => DuplicateImportedDigest,
                get_by_digest_finds_only_imported => GetByDigestFindsOnlyImported,
                list_pagination => ListPagination,
                list_limit_clamp => ListLimitClamp,
                revoke => Revoke,
                delete => Delete,
                reissue_revoke => ReissueRevoke,
                reissue_expire_at => ReissueExpireAt,
                reissue_conflicts => ReissueConflicts,
                reissue_is_atomic => ReissueIsAtomic,
                reissue_race => ReissueRace,
                touch_last_used => TouchLastUsed,
                timestamp_precision => TimestampPrecision,
                update => Update,
                commit_logs => CommitLogs,
                commit_is_atomic => CommitIsAtomic,
                operations_pagination => OperationsPagination,
                commit_note => CommitNote,
                get_many => GetMany,
                pepper_fingerprint => PepperFingerprint,
                controls_round_trip => ControlsRoundTrip,
                controls_update => ControlsUpdate,
                spend_credits => SpendCredits,
                spend_credits_race => SpendCreditsRace,
                list_by_external_id => ListByExternalId,
                list_expiring => ListExpiring,
                ids_after => IdsAfter,
                operation_by_id => OperationById,
                idempotency_records => IdempotencyRecords,
                change_feed => ChangeFeed,
            );

            #[tokio::test]
            async fn full_lifecycle() {
                with::<$backend, _, _>(|store| lifecycle(store)).await;
            }
        }
    };
    (@checks $backend:ty; [$($skip:ident),*]; $($name:ident => $check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                with::<$backend, _, _>(|store| async move { conformance::run(&store, Check::$check).await }).await;
            }
        )*

        #[test]
        fn every_check_has_a_test() {
            // A check a backend does not pass yet is named in `not_yet`.
            let listed = [$(Check::$check,)* $(Check::$skip,)*];
            for check in Check::ALL {
                assert!(listed.contains(check), "no test runs the check {check}");
            }
        }
    };
}

conformance_tests!(memory, Memory; also resources => Resources, access_policies => AccessPolicies, access_bindings => AccessBindings);
conformance_tests!(sqlite, Sqlite; also resources => Resources, access_policies => AccessPolicies, access_bindings => AccessBindings);
conformance_tests!(postgres, Postgres; also resources => Resources, access_policies => AccessPolicies, access_bindings => AccessBindings);
conformance_tests!(redis, Redis; also resources => Resources, access_policies => AccessPolicies, access_bindings => AccessBindings);

fn header(secret: &Secret) -> String {
    format!("Api-Key {}", secret.expose_secret())
}

/// create → verify → reissue with grace → both work → grace ends → revoke →
/// rejected; import → verify; last-used written in a batch; listing; delete.
async fn lifecycle<S: KeyStore>(store: S) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
    let manager = KeyManager::builder(
        Arc::new(store),
        Peppers::single(Pepper::new(1, [7u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .clock(clock.clone())
    .build();
    let verifier = manager.verifier().accept_imported(true).build();
    let read = manager.catalog().requirement("yc.monitoring.read").unwrap();
    let send = manager.catalog().requirement("yc.postbox.send").unwrap();
    let sa = conformance::service_account();

    // Create and verify; manage implies read, but not another scope.
    let created = manager
        .create(
            CreateRequest::new(sa.as_str())
                .description("lifecycle")
                .scopes(["yc.monitoring.manage"])
                .expires_at("2030-01-01T00:00:00Z".parse().unwrap()),
        )
        .await
        .unwrap();
    let id = created.api_key.id;
    let p = verifier.verify(header(&created.secret).as_bytes(), Some(&read)).await.unwrap();
    assert_eq!(p.key_id(), &id);
    assert_eq!(p.service_account_id(), &sa);
    let e = verifier.verify(header(&created.secret).as_bytes(), Some(&send)).await.unwrap_err();
    assert!(matches!(e, VerifyError::InsufficientScope { .. }), "{e:?}");

    // Last use is written by one flush.
    assert_eq!(verifier.flush_last_used().await.unwrap(), 1);
    assert_eq!(manager.get(&id).await.unwrap().last_used_at, Some(clock.now()));

    // Reissue with a one-hour grace: both keys work, then only the new one.
    let reissued = manager.reissue(&id, Duration::from_secs(3600)).await.unwrap();
    let new_id = reissued.api_key.id;
    assert_eq!(reissued.api_key.expires_at, created.api_key.expires_at);
    verifier.verify(header(&created.secret).as_bytes(), Some(&read)).await.unwrap();
    verifier.verify(header(&reissued.secret).as_bytes(), Some(&read)).await.unwrap();
    let old = manager.get(&id).await.unwrap();
    assert_eq!(old.links.replaced_by, Some(new_id));
    assert_eq!(old.expires_at, Some(clock.now().saturating_add(Duration::from_secs(3600))));
    let e = manager.reissue(&id, Duration::ZERO).await.unwrap_err();
    assert!(matches!(e, ManageError::Conflict { .. }), "{e:?}");
    clock.advance(Duration::from_secs(3600));
    let e = verifier.verify(header(&created.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::Expired(k) if k == id), "{e:?}");
    verifier.verify(header(&reissued.secret).as_bytes(), None).await.unwrap();

    // Revoke: rejected at once, still listed.
    manager.revoke(&new_id).await.unwrap();
    let e = verifier.verify(header(&reissued.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::Revoked(k) if k == new_id), "{e:?}");
    assert_eq!(manager.get(&new_id).await.unwrap().status, KeyStatus::Revoked);

    // Import an opaque secret from another system; it verifies by digest.
    let mut tail = conformance::key_id().to_string();
    tail.make_ascii_uppercase();
    let foreign = Secret::from(format!("AQVN{tail}xyz"));
    let imported = manager.import(CreateRequest::new(sa.as_str()).scopes(["yc.postbox.send"]), &foreign).await.unwrap();
    assert_eq!(imported.kind, KeyKind::Imported);
    let p = verifier.verify(header(&foreign).as_bytes(), Some(&send)).await.unwrap();
    assert_eq!(p.key_id(), &imported.id);
    let e = manager.import(CreateRequest::new(sa.as_str()), &foreign).await.unwrap_err();
    assert!(matches!(e, ManageError::AlreadyImported), "{e:?}");

    // Listing shows all three, masked, in id order.
    let page = manager.list(sa.as_str(), PageRequest::first(10)).await.unwrap();
    let mut ids = vec![id, new_id, imported.id];
    ids.sort();
    assert_eq!(page.items.iter().map(|k| k.id).collect::<Vec<_>>(), ids);
    assert!(page.next.is_none());

    // Delete: unknown from then on, by id and by digest.
    manager.delete(&imported.id).await.unwrap();
    let e = verifier.verify(header(&foreign).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey(None)), "{e:?}");
    manager.delete(&id).await.unwrap();
    let e = verifier.verify(header(&created.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey(Some(k)) if k == id), "{e:?}");
    assert!(matches!(manager.delete(&id).await.unwrap_err(), ManageError::NotFound(k) if k == id));
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Verification fails closed and creation fails (writing nothing, since
/// nothing can be written) when the store's server cannot be reached.
async fn fails_closed<S: KeyStore>(store: S) {
    let manager = KeyManager::builder(
        Arc::new(store),
        Peppers::single(Pepper::new(1, [7u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .build();
    let verifier = manager.verifier().accept_imported(true).build();
    // A well-formed key of this format: the store is asked by id.
    let key = TokenFormat::default().generate().unwrap();
    let e = verifier.verify(header(&key.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(&e, VerifyError::StoreUnavailable(s) if s.is_unavailable()), "{e:?}");
    // An opaque key: the store is asked by digest.
    let e = verifier.verify(b"Api-Key AQVNopaqueForeignSecret0123456789", None).await.unwrap_err();
    assert!(matches!(&e, VerifyError::StoreUnavailable(s) if s.is_unavailable()), "{e:?}");
    // Nothing is shown as created.
    let e = manager.create(CreateRequest::new("robot")).await.unwrap_err();
    assert!(matches!(&e, ManageError::Store(s) if s.is_unavailable()), "{e:?}");
    assert!(verifier.flush_last_used().await.is_ok(), "nothing to flush: nothing was accepted");
}

#[tokio::test]
async fn unreachable_postgres_fails_closed() {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
    let store = PostgresStore::builder(url).timeout(Duration::from_millis(500)).connect_lazy().unwrap();
    fails_closed(store.clone()).await;
    let e = store.revoke(&conformance::key_id()).await.unwrap_err();
    assert!(e.is_unavailable() && !format!("{e}").is_empty(), "{e:?}");
}

#[tokio::test]
async fn unreachable_redis_fails_closed() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let store = RedisStore::builder(url).timeout(Duration::from_millis(500)).connect_lazy().unwrap();
    fails_closed(store.clone()).await;
    let e = store.revoke(&conformance::key_id()).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    let e = RedisStore::builder(format!("redis://127.0.0.1:{}", closed_port())).connect().await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
}

#[tokio::test]
async fn a_store_that_cannot_answer_in_time_times_out() {
    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let limit = Duration::from_millis(200);
    let redis = RedisStore::builder(format!("redis://127.0.0.1:{port}")).timeout(limit).connect_lazy().unwrap();
    let e = redis.get(&conformance::key_id()).await.unwrap_err();
    assert!(e.is_unavailable(), "{e:?}");
    let pg = PostgresStore::builder(format!("postgres://postgres@127.0.0.1:{port}/test"))
        .timeout(limit)
        .connect_lazy()
        .unwrap();
    let e = pg.get(&conformance::key_id()).await.unwrap_err();
    assert!(matches!(e, StoreError::Timeout(d) if d == limit), "{e:?}");
    hold.abort();
}

#[tokio::test]
async fn postgres_schema_is_dropped_by_the_harness() {
    // The harness itself: a failing test still drops its schema.
    let schema = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = Arc::clone(&schema);
    let outcome = tokio::spawn(async move {
        with::<Postgres, _, _>(move |store| async move {
            let name: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(store.pool()).await.unwrap();
            *seen.lock().unwrap() = name;
            panic!("deliberate failure inside a Postgres test");
        })
        .await;
    })
    .await;
    assert!(outcome.is_err(), "the deliberate panic must propagate");
    let name = schema.lock().unwrap().clone();
    assert!(name.starts_with("api_keys_test_"), "{name}");
    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
    let left: Option<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
    assert_eq!(left, None, "schema {name} was not dropped");
}

#[tokio::test]
async fn postgres_corrupt_rows_are_reported_without_values() {
    with::<Postgres, _, _>(|store| async move {
        sqlx::query(
            "INSERT INTO api_keys (id, service_account_id, description, created_at, scopes, masked_key, \
             pepper_version, digest, status, kind) VALUES ('aaaaaaaaaaaaaaaaaaaa', 'sa', '', 0, \
             ARRAY['SECRET SCOPE'], 'abcdef', 1, decode(repeat('00', 32), 'hex'), 'active', 'native')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let e = store.get(&"aaaaaaaaaaaaaaaaaaaa".parse().unwrap()).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(!format!("{e} {e:?}").contains("SECRET"));
        // Server errors can carry row data in their detail; the store keeps
        // the message and drops the detail.
        sqlx::query(
            "CREATE FUNCTION refuse_insert() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'insert refused' USING DETAIL = 'SECRETDETAIL ' || NEW.description; END $$ \
             LANGUAGE plpgsql",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON api_keys FOR EACH ROW EXECUTE FUNCTION refuse_insert()")
            .execute(store.pool())
            .await
            .unwrap();
        let e = store.insert(conformance::record(&conformance::service_account())).await.unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        let source = std::error::Error::source(&e).unwrap();
        let text = format!("{e} | {e:?} | {source} | {source:?}");
        assert!(text.contains("insert refused") && text.contains("P0001"), "{text}");
        assert!(!text.contains("SECRETDETAIL"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn redis_corrupt_records_are_reported_without_values() {
    with::<Redis, _, _>(|store| async move {
        let mut conn = store.connection().clone();
        let key = format!("{{{}}}:key:aaaaaaaaaaaaaaaaaaaa", store.prefix());
        let _: () = ::redis::cmd("HSET")
            .arg(&key)
            .arg("id")
            .arg("aaaaaaaaaaaaaaaaaaaa")
            .arg("digest")
            .arg("SECRETSECRET")
            .query_async(&mut conn)
            .await
            .unwrap();
        let e = store.get(&"aaaaaaaaaaaaaaaaaaaa".parse().unwrap()).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(!format!("{e} {e:?}").contains("SECRET"));
    })
    .await;
}

/// Spends of one key's credits from several stores (separate pools or
/// connections over one database) at once, on several threads.
const POOLS: usize = 4;
const POOL_SPENDS: usize = 80;
const POOL_CREDITS: u64 = 30;

/// Spends `POOL_SPENDS` times one credit of a key holding `POOL_CREDITS`,
/// round-robin over `stores`, all at once: exactly `POOL_CREDITS` succeed
/// and none is left, never more.
async fn spend_from_many<S: KeyStore + Clone>(stores: Vec<S>) {
    use api_keys::controls::{CreditSpend, Credits, KeyControls};
    let mut key = conformance::record(&conformance::service_account());
    key.set_controls(KeyControls::new().credits(Credits::new(POOL_CREDITS).unwrap()));
    let id = key.id;
    stores[0].insert(key).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..POOL_SPENDS {
        let store = stores[i % stores.len()].clone();
        tasks.spawn(async move { store.spend_credits(&id, 1, None).await });
    }
    let mut spent = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap().unwrap() {
            CreditSpend::Spent { .. } => spent += 1,
            CreditSpend::Exhausted { remaining: 0 } => {}
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(spent, POOL_CREDITS, "{POOL_SPENDS} spends over {} stores", stores.len());
    let left = stores[1].get(&id).await.unwrap().unwrap().controls().credits.map(|c| c.remaining);
    assert_eq!(left, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pools_on_one_file_never_spend_more_credits_than_a_key_had() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("shared.db").display());
    let mut stores = Vec::new();
    for _ in 0..POOLS {
        stores.push(SqliteStore::connect(&url).await.unwrap());
    }
    spend_from_many(stores.clone()).await;
    for s in stores {
        s.pool().close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pools_never_spend_more_credits_than_a_key_had() {
    let backend = Postgres::open().await;
    let mut stores = vec![backend.store()];
    for _ in 1..POOLS {
        let store = PostgresStore::builder(postgres_url())
            .schema(backend.schema.clone())
            .max_connections(4)
            .connect()
            .await
            .unwrap_or_else(|e| postgres_down(&e, PG_NEEDS));
        stores.push(store);
    }
    let outcome = tokio::spawn(spend_from_many(stores.clone())).await;
    for s in &stores[1..] {
        s.pool().close().await;
    }
    backend.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_connections_never_spend_more_credits_than_a_key_had() {
    let backend = Redis::open().await;
    let prefix = backend.0.prefix().to_owned();
    let mut stores = vec![backend.store()];
    for _ in 1..POOLS {
        let store = RedisStore::builder(redis_url())
            .prefix(prefix.clone())
            .connect()
            .await
            .unwrap_or_else(|e| redis_down(&e, REDIS_NEEDS));
        stores.push(store);
    }
    let outcome = tokio::spawn(spend_from_many(stores)).await;
    backend.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The documents' flow over the library: a service account `my-robot`
/// created in the default folder, found by name in its cloud, given keys
/// through a [`KeyManager`] (which names it by id); deleting the account
/// makes its keys fail verification at once and keeps their logs, and a
/// key of a plain id no account holds is untouched.
async fn service_account_flow<S: KeyStore + Clone>(store: S) {
    use api_keys::resource::{
        Resource, ResourceChange, ResourceId, ResourceListing, ResourceLogEntry, ResourceName, ResourceRef,
        ServiceAccount,
    };
    use api_keys::{Actor, OperationId, OperationKind};
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
    let manager = KeyManager::builder(
        Arc::new(store.clone()),
        Peppers::single(Pepper::new(1, [7u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .clock(clock.clone())
    .build();
    let verifier = manager.verifier().build();
    let entry = || ResourceLogEntry::new(OperationId::generate().unwrap(), Actor::new("ops").unwrap(), clock.now());
    let name = ResourceName::new("my-robot").unwrap();
    let robot = ServiceAccount::new(
        ResourceId::generate().unwrap().into(),
        ResourceId::default_folder(),
        clock.now(),
        name.clone(),
    );
    store.commit_resource(ResourceChange::Create(Resource::ServiceAccount(robot)), &entry()).await.unwrap();
    let in_cloud = ResourceListing::ServiceAccountsOfCloud(ResourceId::default_cloud());
    let found = store.find_resource(&in_cloud, &name).await.unwrap().unwrap().into_service_account().unwrap();
    let keys = [
        manager.create(CreateRequest::new(found.id.as_str())).await.unwrap(),
        manager.create(CreateRequest::new(found.id.as_str())).await.unwrap(),
    ];
    let plain = manager.create(CreateRequest::new("plain-principal")).await.unwrap();
    for k in keys.iter().chain([&plain]) {
        verifier.verify(header(&k.secret).as_bytes(), None).await.unwrap();
    }
    let listed = store.list(&found.id, PageRequest::first(10)).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    let done = store
        .commit_resource(ResourceChange::Delete(ResourceRef::ServiceAccount(found.id.clone())), &entry())
        .await
        .unwrap();
    assert_eq!(done.deleted_keys.len(), 2);
    for k in &keys {
        let e = verifier.verify(header(&k.secret).as_bytes(), None).await.unwrap_err();
        assert!(matches!(e, VerifyError::UnknownKey(Some(id)) if id == k.api_key.id), "{e:?}");
        let log = store.operations(&k.api_key.id, PageRequest::starting(10, None)).await.unwrap().items;
        let kinds: Vec<_> = log.iter().map(|op| (op.kind, op.actor.as_str())).collect();
        assert_eq!(kinds, [(OperationKind::Delete, "ops"), (OperationKind::Create, "system")], "the key's log is kept");
    }
    verifier.verify(header(&plain.secret).as_bytes(), None).await.unwrap();
    assert!(store.find_resource(&in_cloud, &name).await.unwrap().is_none(), "the name is free again");
}

#[tokio::test]
async fn memory_service_account_flow() {
    with::<Memory, _, _>(service_account_flow).await;
}

/// Through the record cache: keys verified (so cached) before their
/// service account is deleted are refused at once after it.
#[tokio::test]
async fn cached_service_account_flow() {
    use api_keys::store::cached::{CacheConfig, CachedStore};
    service_account_flow(Arc::new(CachedStore::new(MemoryStore::new(), CacheConfig::default()))).await;
}

#[tokio::test]
async fn sqlite_service_account_flow() {
    with::<Sqlite, _, _>(service_account_flow).await;
}

#[tokio::test]
async fn postgres_service_account_flow() {
    with::<Postgres, _, _>(service_account_flow).await;
}

/// The access policies through a manager that requires service accounts,
/// and the lifetime limit at use on a second verifier: a deny on the
/// organization refuses a create two levels down until unbound; a maximum
/// lifetime bound after a key was made refuses that key at use; allowed
/// scopes and a required expiry refuse what they should; deleting the
/// account makes its keys unknown and keeps their log.
async fn access_policy_flow<S: KeyStore>(store: S) {
    use api_keys::access_policy::{
        ALLOWED_SCOPES, AccessPolicyBinding, DENY_KEY_CREATION, LifetimeLimits, MAX_KEY_LIFETIME, REQUIRE_EXPIRY,
    };
    use api_keys::resource::{ResourceName, ResourceRef};
    use api_keys::{NewResource, OperationKind};

    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(1_800_000_000).unwrap()));
    let store = Arc::new(store);
    let manager = KeyManager::builder(
        Arc::clone(&store),
        Peppers::single(Pepper::new(1, [7u8; 32]).unwrap()),
        api_keys::testing::scope_catalog(),
    )
    .clock(clock.clone())
    .require_service_accounts()
    .build();
    let name = |n: &str| {
        ResourceName::new(&format!(
            "{n}-{}",
            conformance::service_account().as_str().to_lowercase().replace(['_', '.'], "-")
        ))
        .unwrap()
    };
    let made = |op: api_keys::resource::ResourceOperation| op.response.unwrap().reference();
    let org = made(manager.create_resource(NewResource::organization(name("acme"))).await.unwrap());
    let org_id = org.id().parse().unwrap();
    let cloud = made(manager.create_resource(NewResource::cloud(org_id, name("prod"))).await.unwrap());
    let folder =
        made(manager.create_resource(NewResource::folder(cloud.id().parse().unwrap(), name("web"))).await.unwrap());
    let folder_id = folder.id().parse().unwrap();
    let robot = made(
        manager
            .create_resource(NewResource::service_account(folder_id, ResourceName::new("my-robot").unwrap()))
            .await
            .unwrap(),
    );
    let ResourceRef::ServiceAccount(sa) = robot.clone() else { panic!("{robot}") };
    assert_eq!(manager.service_account_named(folder_id, &ResourceName::new("my-robot").unwrap()).await.unwrap().id, sa);
    let create = |expires: Option<Timestamp>, scopes: &[&str]| {
        let mut r = CreateRequest::new(sa.as_str()).scopes(scopes.iter().copied());
        if let Some(e) = expires {
            r = r.expires_at(e);
        }
        manager.create(r)
    };
    let early = create(None, &["yc.monitoring.read"]).await.unwrap();
    // A key for an account that does not exist is refused.
    let ghost = manager.create(CreateRequest::new("ghostaccount00000000")).await.unwrap_err();
    assert!(matches!(ghost, ManageError::Resource(_)), "{ghost:?}");

    // A deny on the organization refuses a create in a folder two levels down.
    manager.bind_access_policy(&org, AccessPolicyBinding::new(DENY_KEY_CREATION)).await.unwrap();
    let refused = create(None, &["yc.monitoring.read"]).await.unwrap_err();
    let text = refused.to_string();
    assert!(matches!(refused, ManageError::AccessPolicy(_)), "{refused:?}");
    assert!(text.contains(DENY_KEY_CREATION) && text.contains(org.id()), "{text}");
    manager.unbind_access_policy(&org, DENY_KEY_CREATION).await.unwrap();
    create(None, &["yc.monitoring.read"]).await.unwrap();

    // A maximum lifetime bound after `early` was made: new keys must expire
    // within it, and `early` fails at use once older, on another node too.
    let node_a = LifetimeLimits::new();
    let node_b = LifetimeLimits::new();
    let verifier = manager.verifier().lifetime_limits(Arc::clone(&node_b)).build();
    let header = |s: &Secret| format!("Api-Key {}", s.expose_secret());
    verifier.verify(header(&early.secret).as_bytes(), None).await.unwrap();
    manager
        .bind_access_policy(&cloud, AccessPolicyBinding::new(MAX_KEY_LIFETIME).with_parameter("max_lifetime", "1d"))
        .await
        .unwrap();
    assert!(node_a.refresh(&*store).await.unwrap() && node_b.refresh(&*store).await.unwrap());
    assert!(create(None, &["yc.monitoring.read"]).await.is_err(), "no expiry");
    let in_2d = clock.now().checked_add(Duration::from_secs(2 * 86_400));
    assert!(create(in_2d, &["yc.monitoring.read"]).await.is_err(), "beyond the maximum");
    let in_12h = clock.now().checked_add(Duration::from_secs(12 * 3600));
    create(in_12h, &["yc.monitoring.read"]).await.unwrap();
    verifier.verify(header(&early.secret).as_bytes(), None).await.unwrap();
    clock.advance(Duration::from_secs(86_400));
    let e = verifier.verify(header(&early.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::Expired(_)), "{e:?}");
    assert_eq!(node_a.limit_for(&sa), Some(Duration::from_secs(86_400)), "every node holds the limit");
    manager.unbind_access_policy(&cloud, MAX_KEY_LIFETIME).await.unwrap();
    node_b.refresh(&*store).await.unwrap();
    verifier.verify(header(&early.secret).as_bytes(), None).await.unwrap();

    // Allowed scopes and a required expiry.
    manager
        .bind_access_policy(
            &folder,
            AccessPolicyBinding::new(ALLOWED_SCOPES).with_parameter("scopes", "yc.monitoring.read"),
        )
        .await
        .unwrap();
    manager.bind_access_policy(&folder, AccessPolicyBinding::new(REQUIRE_EXPIRY)).await.unwrap();
    let later = clock.now().checked_add(Duration::from_secs(3600));
    assert!(create(later, &["yc.postbox.send"]).await.is_err(), "a scope not allowed");
    assert!(create(None, &["yc.monitoring.read"]).await.is_err(), "no expiry");
    create(later, &["yc.monitoring.read"]).await.unwrap();
    let templates: Vec<_> = manager.access_policy_bindings(&folder).await.unwrap();
    assert_eq!(templates.len(), 2);

    // Deleting the account deletes its keys and keeps their log.
    let gone = manager.delete_resource(&robot).await.unwrap();
    assert!(gone.response.is_none());
    let e = verifier.verify(header(&early.secret).as_bytes(), None).await.unwrap_err();
    assert!(matches!(e, VerifyError::UnknownKey(_)), "{e:?}");
    let log = manager.operations(&early.api_key.id, PageRequest::starting(10, None)).await.unwrap();
    assert_eq!(log.items.first().map(|o| o.kind), Some(OperationKind::Delete));
    // The defaults are never deleted; a folder still holding bindings is deleted with them.
    let refused = manager.delete_resource(&ResourceRef::Folder(api_keys::resource::ResourceId::default_folder())).await;
    assert!(matches!(refused, Err(ManageError::Resource(_))), "{refused:?}");
    manager.delete_resource(&folder).await.unwrap();
    manager.delete_resource(&cloud).await.unwrap();
    manager.delete_resource(&org).await.unwrap();
}

#[tokio::test]
async fn memory_access_policy_flow() {
    with::<Memory, _, _>(access_policy_flow).await;
}

#[tokio::test]
async fn sqlite_access_policy_flow() {
    with::<Sqlite, _, _>(access_policy_flow).await;
}

#[tokio::test]
async fn postgres_access_policy_flow() {
    with::<Postgres, _, _>(access_policy_flow).await;
}

#[tokio::test]
async fn redis_access_policy_flow() {
    with::<Redis, _, _>(access_policy_flow).await;
}

#[tokio::test]
async fn redis_service_account_flow() {
    with::<Redis, _, _>(service_account_flow).await;
}
