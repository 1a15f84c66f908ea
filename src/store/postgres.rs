//! The PostgreSQL [`KeyStore`](crate::KeyStore) (feature `postgres`), over a sqlx `PgPool`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use api_keys::{KeyManager, Pepper, Peppers, PostgresStore, ScopeCatalog};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PostgresStore::builder("postgres://app@127.0.0.1:5432/app")
//!     .schema("api_keys")                  // optional: keep the tables in their own schema
//!     .timeout(Duration::from_millis(500)) // per call; defaults to 2 s
//!     .connect()                           // connects and applies the schema
//!     .await?;
//! let manager =
//!     KeyManager::builder(Arc::new(store), Peppers::single(Pepper::generate(1)?), ScopeCatalog::builder().build()?)
//!         .build();
//! let verifier = manager.verifier().build();
//! # let _ = verifier; Ok(()) }
//! ```
//!
//! # Schema and migrations
//! One table, `api_keys`: primary key on `id`; a partial unique index on
//! `digest` `WHERE kind = 'imported'` (the lookup index for imported keys,
//! and at most one imported key per digest); an index on
//! `(service_account_id, id)` for keyset pagination; ids compare byte-wise
//! (`COLLATE "C"`) so the listing order matches every other store. The
//! schema ships inside the crate as versioned SQL applied by sqlx's
//! [`Migrator`](sqlx::migrate::Migrator) (each version in a transaction, checksummed, under sqlx's
//! advisory lock so several nodes can start at once) and tracked in
//! [`MIGRATIONS_TABLE`](super::MIGRATIONS_TABLE).
//!
//! With [`PostgresStoreBuilder::schema`] the builder creates the schema if
//! missing and sets every pooled connection's `search_path` to it in
//! `after_connect`, so the tables, the migrations table and every query
//! live in that schema (tests use a fresh schema each).
//!
//! # Atomicity
//! `insert` is one `INSERT … ON CONFLICT DO NOTHING` (a duplicate id or
//! imported digest writes nothing). `revoke` and `delete` are one statement
//! each. `reissue` runs in one transaction: `SELECT … FOR UPDATE` on the old
//! row, the shared [`apply_reissue`](super::apply_reissue) rules, the insert of the new row, the
//! update of the old one, commit — a concurrent reissue waits on the row lock
//! and then sees the old key as already reissued. `touch_last_used` is one
//! `UPDATE … FROM UNNEST($1::text[], $2::bigint[])` statement per batch and
//! never moves a time backwards.
//!
//! # Failures
//! Every call is bounded by the store timeout and fails with
//! [`StoreError::Timeout`] after it (the transaction, if any, is rolled
//! back); driver errors are [`StoreError::Unavailable`] (server error
//! details, which can quote row data, are dropped); rows that do not decode
//! are [`StoreError::Corrupt`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection as _, Row as _};

use super::backend::{ConfigError, DEFAULT_TIMEOUT, timed};
use super::key_store::StoreError;
use super::sql::{Dialect, SELECT_BY_ID_FOR_UPDATE, SchemaVersion, schema_versions, select, sql_key_store, sqlx_error};
use crate::clock::Timestamp;
use crate::scope::ScopeSet;
use crate::token::KeyId;

/// PostgreSQL's side of the shared SQL store.
pub(super) enum Postgres {}

impl Dialect for Postgres {
    type Db = sqlx::Postgres;
    type Scopes<'a> = Vec<&'a str>;

    const BEGIN_WRITE: &'static str = "BEGIN";
    const SELECT_FOR_REISSUE: &'static str = SELECT_BY_ID_FOR_UPDATE;
    const SCHEMA: &'static [SchemaVersion] = schema_versions!("postgres");
    /// Readable: every transaction older than the oldest one running.
    const FEED_META: &'static str = "SELECT epoch, \
         pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1 AS top_major, \
         9223372036854775807::bigint AS top_minor, \
         pruned_xid AS pruned_major, 9223372036854775807::bigint AS pruned_minor FROM api_key_feed";
    const FEED_PRUNE: &'static str = "DELETE FROM api_key_changes WHERE seq IN \
         (SELECT seq FROM api_key_changes WHERE created_at < $1 ORDER BY created_at LIMIT $2) RETURNING xid AS mark";
    const FEED_MARK: &'static str = "UPDATE api_key_feed SET pruned_xid = GREATEST(pruned_xid, $1)";

    /// In (transaction id, sequence) order, up to the readable top.
    fn feed_rows(
        after: (i64, i64),
        top: (i64, i64),
        limit: i64,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        const ROWS: &str = "SELECT xid AS major, seq AS minor, key_id, gone FROM api_key_changes \
             WHERE (xid, seq) > ($1, $2) AND xid <= $3 ORDER BY xid, seq LIMIT $4";
        sqlx::query(ROWS).bind(after.0).bind(after.1).bind(top.0).bind(limit)
    }

    /// Skips rows another transaction holds, so concurrent purges never
    /// wait on (or deadlock with) each other.
    const PURGE_IDEMPOTENCY: &'static str = "DELETE FROM api_key_idempotency WHERE (actor, key_hash) IN \
         (SELECT actor, key_hash FROM api_key_idempotency WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)";

    fn encode_scopes(scopes: &ScopeSet) -> Vec<&str> {
        scopes.iter().map(|s| s.as_str()).collect()
    }

    fn decode_scopes(row: &PgRow) -> Result<Vec<String>, StoreError> {
        row.try_get("scopes").map_err(sqlx_error)
    }

    /// Several source rows for one target row would otherwise leave the
    /// choice to the planner, hence the `GROUP BY`.
    fn touch(updates: &[(KeyId, Timestamp)]) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
        const TOUCH: &str = "UPDATE api_keys AS k SET last_used_at = GREATEST(k.last_used_at, u.at) \
             FROM (SELECT t.id, max(t.at) AS at FROM UNNEST($1::text[], $2::bigint[]) AS t(id, at) GROUP BY t.id) AS u \
             WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)";
        let ids: Vec<&str> = updates.iter().map(|(id, _)| id.as_str()).collect();
        let times: Vec<i64> = updates.iter().map(|(_, at)| at.unix_nanos()).collect();
        sqlx::query(TOUCH).bind(ids).bind(times)
    }

    fn select_many(ids: &[KeyId]) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        const SELECT_MANY: &str = select!("WHERE id = ANY($1)");
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_owned()).collect();
        sqlx::query(SELECT_MANY).bind(ids)
    }
}

sql_key_store! {
    /// A [`KeyStore`](crate::KeyStore) in PostgreSQL. Cheap to clone (shares the pool).
    pub struct PostgresStore { pool: PgPool }
    dialect: Postgres
}

/// Whether `name` is a schema name we accept: `[a-z_][a-z0-9_]{0,62}`. It is
/// interpolated (quoted) into `CREATE SCHEMA` and `SET search_path`, so the
/// alphabet is deliberately narrow.
fn valid_schema(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && !b[0].is_ascii_digit()
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Builds a [`PostgresStore`]; see [`PostgresStore::builder`].
pub struct PostgresStoreBuilder {
    url: String,
    schema: Option<String>,
    timeout: Duration,
    max_connections: u32,
}

impl std::fmt::Debug for PostgresStoreBuilder {
    /// Omits the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("schema", &self.schema)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl PostgresStoreBuilder {
    /// Keeps the tables in this schema (`[a-z_][a-z0-9_]{0,62}`), created
    /// if missing; every pooled connection's `search_path` is set to it.
    /// Defaults to the server's `search_path` (normally `public`).
    #[must_use]
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// How long each call may take (including waiting for a pooled
    /// connection) before it fails with [`StoreError::Timeout`]. Defaults to
    /// [`DEFAULT_TIMEOUT`] (2 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest number of pooled connections. Defaults to 10.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    fn pool_options(&self) -> Result<(PgPoolOptions, PgConnectOptions), StoreError> {
        let connect = PgConnectOptions::from_str(&self.url).map_err(sqlx_error)?;
        let mut pool = PgPoolOptions::new().max_connections(self.max_connections).acquire_timeout(self.timeout);
        if let Some(schema) = &self.schema {
            if !valid_schema(schema) {
                return Err(StoreError::unavailable(ConfigError::SchemaName));
            }
            let set_path: Arc<str> = Arc::from(format!("SET search_path TO \"{schema}\""));
            pool = pool.after_connect(move |conn, _meta| {
                let sql = Arc::clone(&set_path);
                Box::pin(async move {
                    sqlx::query(AssertSqlSafe(sql)).execute(conn).await?;
                    Ok(())
                })
            });
        }
        Ok((pool, connect))
    }

    /// Connects, creates the schema if one was named, and applies the
    /// embedded schema versions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an invalid URL or schema name
    /// ([`ConfigError`] as the source), an unreachable server or a failed
    /// migration; [`StoreError::Timeout`] if connecting takes longer than the
    /// timeout.
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        let (pool, connect) = self.pool_options()?;
        // One direct connection first: the pool retries refused connections
        // until its timeout, which would hide the cause ("connection
        // refused", "password authentication failed") behind a timeout.
        timed(self.timeout, async {
            let probe = PgConnection::connect_with(&connect).await.map_err(sqlx_error)?;
            probe.close().await.map_err(sqlx_error)
        })
        .await?;
        let pool = timed(self.timeout, async { pool.connect_with(connect).await.map_err(sqlx_error) }).await?;
        if let Some(schema) = &self.schema {
            // `CREATE SCHEMA IF NOT EXISTS` is not safe under concurrency
            // (two nodes started together: one fails on `pg_namespace`'s
            // unique index), so it runs under a transaction-level advisory
            // lock named after the schema. The versions are then applied
            // under sqlx's own advisory lock (`migrate`).
            let create = async {
                let mut tx = pool.begin().await.map_err(sqlx_error)?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("api-keys: create schema {schema}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
                // Validated in `pool_options`.
                sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")))
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_error)?;
                tx.commit().await.map_err(sqlx_error)
            };
            timed(self.timeout, create).await?;
        }
        let store = PostgresStore { pool, timeout: self.timeout };
        store.migrate().await?;
        Ok(store)
    }

    /// A store whose pool connects on first use; nothing is checked or
    /// migrated now (call [`PostgresStore::migrate`] once the server is up).
    /// Calls fail with [`StoreError::Unavailable`] or
    /// [`StoreError::Timeout`] while the server cannot be reached. Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for an invalid URL or schema name.
    pub fn connect_lazy(self) -> Result<PostgresStore, StoreError> {
        let (pool, connect) = self.pool_options()?;
        Ok(PostgresStore { pool: pool.connect_lazy_with(connect), timeout: self.timeout })
    }
}

impl PostgresStore {
    /// Starts configuring a store for `url`
    /// (`postgres://user[:password]@host[:port]/database`).
    pub fn builder(url: impl Into<String>) -> PostgresStoreBuilder {
        PostgresStoreBuilder { url: url.into(), schema: None, timeout: DEFAULT_TIMEOUT, max_connections: 10 }
    }

    /// Connects to `url` with the defaults and applies the schema.
    ///
    /// # Errors
    /// As [`PostgresStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyStore as _;

    /// Runs an upgrade test, against the real server, on a store in a new
    /// schema of its own that is at `version` (as an earlier release left
    /// it); `test` returns the store when done. The schema is dropped after,
    /// also when `test` panics (the panic is then resumed).
    async fn upgrade_from<F, Fut>(version: usize, test: F)
    where
        F: FnOnce(PostgresStore) -> Fut,
        Fut: std::future::Future<Output = PostgresStore> + Send + 'static,
    {
        let url = std::env::var("API_KEYS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("api_keys_upgrade{version}_{}", KeyId::generate().unwrap());
        let mut admin = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at 127.0.0.1:5432 unreachable ({e}); the upgrade test needs it"));
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\""))).execute(&mut admin).await.unwrap();
        let store = PostgresStore::builder(&url).schema(schema.clone()).connect_lazy().unwrap();
        let migrated = crate::store::sql::migrator_of(&Postgres::SCHEMA[..version]).run(store.pool()).await;
        let test = test(store);
        let outcome = tokio::spawn(async move {
            migrated.unwrap();
            test.await.pool().close().await;
        })
        .await;
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE"))).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// The plan of one query of [`explain_listings`](crate::store::sql::explain_listings):
    /// no sequential scan.
    async fn no_seq_scan(
        pool: &PgPool,
        name: &str,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) {
        let rows: Vec<String> = query.fetch_all(pool).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect();
        let plan = rows.join("\n");
        assert!(!plan.contains("Seq Scan"), "{name} scans a whole table:\n{plan}");
        if name.starts_with("expiring") {
            assert!(plan.contains("api_keys_expires_at"), "{name} does not use the expiry index:\n{plan}");
        }
    }

    /// On 100,000 keys and log entries: every listing and lookup is an index
    /// read (`EXPLAIN`, after `ANALYZE`), never a sequential scan.
    #[tokio::test]
    async fn listings_are_index_reads_on_a_large_table() {
        upgrade_from(Postgres::SCHEMA.len(), |store| async move {
            let id = "'fx' || lpad(to_hex(g), 18, '0')";
            let op = "'op' || lpad(to_hex(g), 18, '0')";
            let fill = crate::store::sql::explain_fill(id, op, "sha256(int8send(g))", "ARRAY['a.read']");
            for insert in fill {
                let sql = format!("{insert} FROM generate_series(1, 100000) AS g");
                sqlx::query(AssertSqlSafe(sql)).execute(store.pool()).await.unwrap();
            }
            sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
            crate::store::sql::explain_listings!(store.pool(), "EXPLAIN", no_seq_scan);
            store
        })
        .await;
    }

    /// As the SQLite test of the same name: a schema made by the previous
    /// release (version 1 and its rows) upgrades in place and loses
    /// nothing, against the real server.
    #[tokio::test]
    async fn a_version_1_database_upgrades_and_loses_nothing() {
        upgrade_from(1, |store| async move {
            crate::store::sql::check_v1_upgrade!(
                store,
                "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
                     expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from) \
                     VALUES ($1, 'robot', 'old key', 1700000000000000001, 1700000000000000002, \
                     ARRAY['a.read', 'b.manage'], 1900000000000000003, $2, 1, $3, 'active', $4, NULL, NULL)"
            )
        })
        .await;
    }

    /// As the SQLite test of the same name, against the real server: a
    /// schema at version 3 with the previous release's keys and operations
    /// log upgrades (the kind check now allows `leak`), keeps every entry
    /// and its seq, and loses nothing. (This also is the former
    /// `a_version_3_database_upgrades_and_keeps_its_log`.)
    #[tokio::test]
    async fn a_version_3_database_upgrades_to_key_controls_and_loses_nothing() {
        upgrade_from(3, |store| async move {
            crate::store::sql::check_previous_release_upgrade!(
                store,
                Postgres::SCHEMA,
                "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
                     expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from) \
                     VALUES ($1, $2, $3, $4, $5, string_to_array($6, ','), $7, $8, $9, $10, $11, $12, $13, $14)",
                "INSERT INTO api_key_operations (id, key_id, service_account_id, kind, actor, created_at, changes) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'api_key_operations_key_seq' \
                     AND schemaname = current_schema()"
            )
        })
        .await;
    }

    /// As the SQLite test of the same name, against the real server.
    #[tokio::test]
    async fn a_version_6_database_upgrades_and_loses_nothing() {
        upgrade_from(6, |store| async move {
            let store = crate::store::sql::check_v6_controls_upgrade!(
                store,
                "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
                     expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from, \
                     enabled, metadata, external_id, allowed_ips, rate_limits, credits_remaining, \
                     credits_refill_amount, credits_refill_period, credits_refill_at, credits_refilled_at) \
                     VALUES ($1, $2, $3, $4, $5, string_to_array($6, ','), $7, $8, $9, $10, $11, $12, $13, $14, \
                     $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
            );
            crate::store::sql::check_v6_upgrade!(store, Postgres::SCHEMA)
        })
        .await;
    }

    /// As the SQLite test of the same name, against the real server.
    #[tokio::test]
    async fn a_version_9_database_upgrades_to_resources_and_loses_nothing() {
        upgrade_from(9, |store| async move { crate::store::sql::check_v9_upgrade!(store, Postgres::SCHEMA) }).await;
    }

    /// As the SQLite test of the same name, against the real server.
    #[tokio::test]
    async fn a_version_10_database_upgrades_to_access_policies_and_loses_nothing() {
        upgrade_from(10, |store| async move { crate::store::sql::check_v10_upgrade!(store, Postgres::SCHEMA) }).await;
    }

    /// As the SQLite test of the same name, against the real server.
    #[tokio::test]
    async fn a_version_11_database_upgrades_to_access_bindings_and_loses_nothing() {
        upgrade_from(11, |store| async move { crate::store::sql::check_v11_upgrade!(store, Postgres::SCHEMA) }).await;
    }

    #[test]
    fn schema_names_are_narrow() {
        for ok in ["api_keys", "_x", "t_0123456789abcdef", &"a".repeat(63)] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "0abc", "Api", "a-b", "a\"b", "a;drop", "public.x", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn invalid_schema_names_are_refused_before_connecting() {
        let e = PostgresStore::builder("postgres://postgres@127.0.0.1:1/test")
            .schema("x\"; DROP TABLE api_keys; --")
            .connect_lazy()
            .unwrap_err();
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), ConfigError::SchemaName.to_string());
    }

    #[test]
    fn builder_debug_omits_the_url() {
        let b = PostgresStore::builder("postgres://app:hunter2@db/app");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
