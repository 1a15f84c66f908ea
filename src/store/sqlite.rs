//! The SQLite [`KeyStore`](crate::KeyStore) (feature `sqlite`): sqlx with a bundled SQLite, no
//! system library needed. The embedded default for the CLI and single-node
//! services.
//!
//! ```no_run
//! use std::sync::Arc;
//! use api_keys::{CreateRequest, KeyManager, Pepper, Peppers, ScopeCatalog, SqliteStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Creates the file if missing, switches it to WAL and applies the schema.
//! let store = Arc::new(SqliteStore::connect("sqlite:api-keys.db").await?);
//! // Or with a longer per-call (and busy) timeout than the 2 s default:
//! let _slow = SqliteStore::builder("sqlite:api-keys.db").timeout(std::time::Duration::from_secs(5)).connect().await?;
//! let manager = KeyManager::builder(store, Peppers::single(Pepper::generate(1)?), ScopeCatalog::builder().build()?)
//!     .build();
//! let created = manager.create(CreateRequest::new("my-robot")).await?;
//! # let _ = created; Ok(()) }
//! ```
//!
//! # Schema and migrations
//! One `STRICT` table, `api_keys`, with the id as primary key, a partial
//! unique index on `digest` for imported keys and an index on
//! `(service_account_id, id)` for listing. The schema ships inside the crate
//! as versioned SQL applied by sqlx's [`Migrator`](sqlx::migrate::Migrator) (each version in its own
//! transaction, checksummed) and tracked in the table
//! [`MIGRATIONS_TABLE`](super::MIGRATIONS_TABLE), so it never collides with an application's own
//! `_sqlx_migrations`. [`SqliteStore::connect`] and
//! [`SqliteStoreBuilder::connect`] migrate; [`SqliteStore::from_pool`] does
//! not (call [`SqliteStore::migrate`]).
//!
//! # Durability and concurrency
//! [`SqliteStoreBuilder::connect`] opens the database in WAL mode (readers
//! never block the writer) with `synchronous = FULL` (a committed revoke
//! survives power loss) and a busy timeout equal to the store timeout. A reissue reads
//! and writes inside one `BEGIN IMMEDIATE` transaction, so concurrent writers
//! queue on the busy timeout instead of failing to upgrade a read lock.
//! `touch_last_used` is one `UPDATE … FROM json_each(?)` statement per batch.
//!
//! # Failures
//! Every call is bounded by the store timeout ([`DEFAULT_TIMEOUT`] unless set
//! with [`SqliteStoreBuilder::timeout`]) and fails with [`StoreError::Timeout`]
//! after it; driver errors are [`StoreError::Unavailable`]; rows that do not
//! decode are [`StoreError::Corrupt`].

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection as _, Row as _};

use super::backend::{DEFAULT_TIMEOUT, join_scopes, split_scopes, timed};
use super::key_store::StoreError;
use super::sql::{Dialect, SELECT_BY_ID, SchemaVersion, schema_versions, select, sql_key_store, sqlx_error};
use crate::clock::Timestamp;
use crate::scope::ScopeSet;
use crate::token::KeyId;

/// How long opening a store may wait for another process applying the
/// schema (the start-up migration step only).
const MIGRATION_WAIT: Duration = Duration::from_secs(30);

/// SQLite's side of the shared SQL store.
pub(super) enum Sqlite {}

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;
    type Scopes<'a> = String;

    /// The write lock up front, so concurrent writers queue on the busy
    /// timeout instead of failing to upgrade a read lock.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const SELECT_FOR_REISSUE: &'static str = SELECT_BY_ID;
    const SCHEMA: &'static [SchemaVersion] = schema_versions!("sqlite");
    const FEED_META: &'static str = "SELECT epoch, 0 AS top_major, \
         COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'api_key_changes'), 0) AS top_minor, \
         0 AS pruned_major, pruned_seq AS pruned_minor FROM api_key_feed";
    const FEED_PRUNE: &'static str = "DELETE FROM api_key_changes WHERE seq IN \
         (SELECT seq FROM api_key_changes WHERE created_at < $1 ORDER BY seq LIMIT $2) RETURNING seq AS mark";
    const FEED_MARK: &'static str = "UPDATE api_key_feed SET pruned_seq = MAX(pruned_seq, $1)";

    /// One writer at a time: `seq` is commit order.
    fn feed_rows(
        after: (i64, i64),
        top: (i64, i64),
        limit: i64,
    ) -> sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments> {
        const ROWS: &str = "SELECT 0 AS major, seq AS minor, key_id, gone FROM api_key_changes \
             WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3";
        sqlx::query(ROWS).bind(after.1).bind(top.1).bind(limit)
    }

    fn encode_scopes(scopes: &ScopeSet) -> String {
        join_scopes(scopes)
    }

    fn decode_scopes(row: &SqliteRow) -> Result<Vec<String>, StoreError> {
        let text: String = row.try_get("scopes").map_err(sqlx_error)?;
        Ok(split_scopes(&text))
    }

    /// `$1` is a JSON array of `[id, nanos]` pairs.
    fn touch(updates: &[(KeyId, Timestamp)]) -> sqlx::query::Query<'_, sqlx::Sqlite, SqliteArguments> {
        const TOUCH: &str = "UPDATE api_keys SET last_used_at = u.at \
             FROM (SELECT json_extract(value, '$[0]') AS id, MAX(json_extract(value, '$[1]')) AS at \
                   FROM json_each($1) GROUP BY 1) AS u \
             WHERE api_keys.id = u.id AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < u.at)";
        sqlx::query(TOUCH).bind(touch_json(updates))
    }

    /// `$1` is a JSON array of ids, probed one by one on the primary key
    /// (one bound value, so no limit on the number of ids).
    fn select_many(ids: &[KeyId]) -> sqlx::query::Query<'static, sqlx::Sqlite, SqliteArguments> {
        const SELECT_MANY: &str = select!("WHERE id IN (SELECT value FROM json_each($1))");
        sqlx::query(SELECT_MANY).bind(ids_json(ids))
    }
}

/// `["id",…]`: ids are `[a-z0-9]`, so no escaping is needed.
fn ids_json(ids: &[KeyId]) -> String {
    let mut out = String::with_capacity(2 + ids.len() * 23);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(id.as_str());
        out.push('"');
    }
    out.push(']');
    out
}

sql_key_store! {
    /// A [`KeyStore`](crate::KeyStore) in a SQLite database. Cheap to clone
    /// (shares the pool).
    pub struct SqliteStore { pool: SqlitePool }
    dialect: Sqlite
}

/// `[["id",nanos],…]`: ids are `[a-z0-9]` and times integers, so no escaping
/// is needed.
fn touch_json(updates: &[(KeyId, Timestamp)]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(2 + updates.len() * 48);
    out.push('[');
    for (i, (id, at)) in updates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "[\"{}\",{}]", id.as_str(), at.unix_nanos());
    }
    out.push(']');
    out
}

/// Builds a [`SqliteStore`]; see [`SqliteStore::builder`].
pub struct SqliteStoreBuilder {
    options: Result<SqliteConnectOptions, StoreError>,
    timeout: Duration,
}

impl std::fmt::Debug for SqliteStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStoreBuilder").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl SqliteStoreBuilder {
    /// How long each call may take (including waiting for a pooled
    /// connection and, as SQLite's busy timeout, for the write lock) before
    /// it fails with [`StoreError::Timeout`]. Defaults to [`DEFAULT_TIMEOUT`]
    /// (2 s). A zero timeout fails every call that does not complete at once.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Opens (creating if missing) the database in WAL mode with
    /// `synchronous = FULL` and the busy timeout set to the timeout, and
    /// applies the embedded schema versions.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if the URL is invalid, the file cannot be
    /// opened or a migration fails; [`StoreError::Timeout`] if opening takes
    /// longer than the timeout.
    pub async fn connect(self) -> Result<SqliteStore, StoreError> {
        // Processes opening a new file together can meet SQLITE_BUSY where
        // no busy handler runs (setting up WAL on a file another process is
        // creating): such an attempt is repeated, with a growing pause, for
        // as long as a migration may be waited for.
        let options = self.options?;
        let deadline = tokio::time::Instant::now() + self.timeout.max(MIGRATION_WAIT);
        let mut pause = Duration::from_millis(20);
        loop {
            match Self::connect_once(options.clone(), self.timeout).await {
                Err(e) if super::sql::is_busy(&e) && tokio::time::Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                done => return done,
            }
        }
    }

    /// One attempt of [`SqliteStoreBuilder::connect`].
    async fn connect_once(options: SqliteConnectOptions, timeout: Duration) -> Result<SqliteStore, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(timeout);
        let pool = timed(timeout, async {
            SqlitePoolOptions::new().acquire_timeout(timeout).connect_with(options).await.map_err(sqlx_error)
        })
        .await?;
        // Several processes may open a new file at once (a fleet started
        // together). SQLite has no advisory lock; its write lock is the
        // equivalent: the versions are applied inside one `BEGIN IMMEDIATE`
        // transaction (each version a savepoint), so one process migrates
        // while the others wait on the busy timeout and then find every
        // version applied. Whatever this attempt meets is rolled back and
        // reported by `migrate` below, which is then a check. A fleet's
        // nodes queue on that lock one after another, so this step alone
        // waits up to [`MIGRATION_WAIT`] (on a connection of its own, closed
        // afterwards) rather than the per-call timeout.
        let wait = timeout.max(MIGRATION_WAIT);
        timed(wait, async {
            let mut conn = pool.acquire().await.map_err(sqlx_error)?.detach();
            // A number formatted into the statement: nothing to inject.
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {}", wait.as_millis())))
                .execute(&mut conn)
                .await
                .map_err(sqlx_error)?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(sqlx_error)?;
            if super::sql::migrator::<Sqlite>().run_direct(None, &mut *tx, false).await.is_ok() {
                tx.commit().await.map_err(sqlx_error)?;
            }
            Ok(())
        })
        .await?;
        let store = SqliteStore::from_pool(pool, timeout);
        store.migrate().await?;
        Ok(store)
    }
}

impl SqliteStore {
    /// Starts configuring a store for the database at `url`
    /// (`sqlite:path.db`, `sqlite://path.db`, `sqlite::memory:`). An invalid
    /// URL is reported by [`SqliteStoreBuilder::connect`].
    pub fn builder(url: &str) -> SqliteStoreBuilder {
        Self::builder_with(SqliteConnectOptions::from_str(url).map_err(sqlx_error))
    }

    /// Like [`SqliteStore::builder`] with prepared options; WAL mode,
    /// `synchronous = FULL`, create-if-missing and the busy timeout are set
    /// on top of them.
    pub fn builder_with_options(options: SqliteConnectOptions) -> SqliteStoreBuilder {
        Self::builder_with(Ok(options))
    }

    fn builder_with(options: Result<SqliteConnectOptions, StoreError>) -> SqliteStoreBuilder {
        SqliteStoreBuilder { options, timeout: DEFAULT_TIMEOUT }
    }

    /// Opens the database at `url` with the defaults and applies the schema.
    ///
    /// # Errors
    /// As [`SqliteStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyStore as _;

    #[test]
    fn touch_json_is_a_plain_array_of_pairs() {
        let a = KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap();
        let b = KeyId::parse("bbbbbbbbbbbbbbbbbbbb").unwrap();
        let json = touch_json(&[(a, Timestamp::from_unix_nanos(1)), (b, Timestamp::from_unix_nanos(-2))]);
        assert_eq!(json, r#"[["aaaaaaaaaaaaaaaaaaaa",1],["bbbbbbbbbbbbbbbbbbbb",-2]]"#);
        assert_eq!(touch_json(&[]), "[]");
        assert_eq!(ids_json(&[a, b]), r#"["aaaaaaaaaaaaaaaaaaaa","bbbbbbbbbbbbbbbbbbbb"]"#);
    }

    #[tokio::test]
    async fn the_builder_timeout_is_the_call_timeout_and_the_busy_timeout() {
        let store =
            SqliteStore::builder("sqlite::memory:").timeout(Duration::from_millis(4_321)).connect().await.unwrap();
        assert_eq!(store.timeout(), Duration::from_millis(4_321));
        let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(store.pool()).await.unwrap();
        assert_eq!(busy_ms, 4_321);
        let default = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert_eq!(default.timeout(), DEFAULT_TIMEOUT);
        let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(default.pool()).await.unwrap();
        assert_eq!(busy_ms, 2_000);
    }

    /// A store on a new database file whose schema is at `version` (as an
    /// earlier release left it), and the directory holding the file.
    async fn store_at(version: usize) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join(format!("v{version}.db")).display());
        let opts = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
        let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
        crate::store::sql::migrator_of(&Sqlite::SCHEMA[..version]).run(&pool).await.unwrap();
        (dir, SqliteStore::from_pool(pool, DEFAULT_TIMEOUT))
    }

    /// "database is locked" is told apart from other errors (what
    /// `connect` retries on).
    #[tokio::test]
    async fn a_locked_database_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("busy.db").display());
        let opts = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
        let mut holder = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut holder).await.unwrap();
        let mut other = sqlx::SqliteConnection::connect_with(&opts.clone().busy_timeout(Duration::ZERO)).await.unwrap();
        let e = sqlx::query("INSERT INTO t VALUES (1)").execute(&mut other).await.map_err(sqlx_error).unwrap_err();
        assert!(crate::store::sql::is_busy(&e), "{e}");
        let e = sqlx::query("SELECT nope FROM t").execute(&mut holder).await.map_err(sqlx_error).unwrap_err();
        assert!(!crate::store::sql::is_busy(&e), "{e}");
    }

    /// The plan of one query of [`explain_listings`](crate::store::sql::explain_listings):
    /// no full scan of a table (`SCAN`, also of a whole index), only
    /// searches.
    async fn no_full_scan(
        pool: &SqlitePool,
        name: &str,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) {
        let rows: Vec<String> =
            query.fetch_all(pool).await.unwrap().iter().map(|r| r.get::<String, _>("detail")).collect();
        let plan = rows.join("\n");
        assert!(!rows.iter().any(|d| d.starts_with("SCAN ")), "{name} scans a whole table:\n{plan}");
        if name.starts_with("expiring") {
            assert!(plan.contains("api_keys_expires_at"), "{name} does not use the expiry index:\n{plan}");
        }
    }

    /// On 100,000 keys and log entries: every listing and lookup is an index
    /// search (`EXPLAIN QUERY PLAN`, after `ANALYZE`), never a full scan.
    #[tokio::test]
    async fn listings_are_index_reads_on_a_large_table() {
        let (_dir, store) = store_at(Sqlite::SCHEMA.len()).await;
        let fill = crate::store::sql::explain_fill(
            "printf('fx%018x', g)",
            "printf('op%018x', g)",
            "randomblob(32)",
            "'a.read'",
        );
        for insert in fill {
            let sql = format!(
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < 100000) {insert} FROM s"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(store.pool()).await.unwrap();
        }
        sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
        crate::store::sql::explain_listings!(store.pool(), "EXPLAIN QUERY PLAN", no_full_scan);
    }

    /// A database made by the previous release (schema version 1 and its
    /// rows, written as that release wrote them) upgrades in place: every
    /// field survives, an imported key's stored masked form stops holding
    /// the end of its secret, and the new table works.
    #[tokio::test]
    async fn a_version_1_database_upgrades_and_loses_nothing() {
        let (_dir, store) = store_at(1).await;
        crate::store::sql::check_v1_upgrade!(
            store,
            "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
                 expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from) \
                 VALUES (?1, 'robot', 'old key', 1700000000000000001, 1700000000000000002, 'a.read,b.manage', \
                 1900000000000000003, ?2, 1, ?3, 'active', ?4, NULL, NULL)"
        );
    }

    /// A database of the previous release (schema version 3, its keys and
    /// log, the log's newest entry pruned) upgrades to the key controls and
    /// loses nothing: the log table is rebuilt (version 4) with every row,
    /// seq and the AUTOINCREMENT counter, and takes leak entries; the
    /// previous release's migrator then refuses it, and this one refuses a
    /// newer one. (This also is the former
    /// `a_version_3_database_upgrades_and_keeps_its_log`.)
    #[tokio::test]
    async fn a_version_3_database_upgrades_to_key_controls_and_loses_nothing() {
        let (_dir, store) = store_at(3).await;
        let store = crate::store::sql::check_previous_release_upgrade!(
            store,
            Sqlite::SCHEMA,
            "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
                 expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            "INSERT INTO api_key_operations (id, key_id, service_account_id, kind, actor, created_at, changes) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'api_key_operations_key_seq'"
        );
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
        assert_eq!(check, "ok");
        store.pool().close().await;
    }

    /// A database of the previous release (schema version 6, keys with
    /// every control in its own column) upgrades and loses nothing: the
    /// controls move into one column, idempotency records work, and the
    /// previous release's migrator then refuses it.
    #[tokio::test]
    async fn a_version_6_database_upgrades_and_loses_nothing() {
        let (_dir, store) = store_at(6).await;
        let store = crate::store::sql::check_v6_controls_upgrade!(
            store,
            "INSERT INTO api_keys (id, service_account_id, description, created_at, last_used_at, scopes, \
                 expires_at, masked_key, pepper_version, digest, status, kind, replaced_by, reissued_from, \
                 enabled, metadata, external_id, allowed_ips, rate_limits, credits_remaining, \
                 credits_refill_amount, credits_refill_period, credits_refill_at, credits_refilled_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
                 $20, $21, $22, $23, $24)"
        );
        let store = crate::store::sql::check_v6_upgrade!(store, Sqlite::SCHEMA);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
        assert_eq!(check, "ok");
        store.pool().close().await;
    }

    /// A database of the release before resources (schema version 9)
    /// upgrades and loses nothing: every key keeps verifying and every
    /// account its keys named becomes a service account in the default
    /// folder.
    #[tokio::test]
    async fn a_version_9_database_upgrades_to_resources_and_loses_nothing() {
        let (_dir, store) = store_at(9).await;
        let store = crate::store::sql::check_v9_upgrade!(store, Sqlite::SCHEMA);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
        assert_eq!(check, "ok");
        store.pool().close().await;
    }

    /// A database of the release before access policies (schema version
    /// 10) upgrades and loses nothing.
    #[tokio::test]
    async fn a_version_10_database_upgrades_to_access_policies_and_loses_nothing() {
        let (_dir, store) = store_at(10).await;
        let store = crate::store::sql::check_v10_upgrade!(store, Sqlite::SCHEMA);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
        assert_eq!(check, "ok");
        store.pool().close().await;
    }

    #[tokio::test]
    async fn a_version_11_database_upgrades_to_access_bindings_and_loses_nothing() {
        let (_dir, store) = store_at(11).await;
        let store = crate::store::sql::check_v11_upgrade!(store, Sqlite::SCHEMA);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(store.pool()).await.unwrap();
        assert_eq!(check, "ok");
        store.pool().close().await;
    }

    #[tokio::test]
    async fn an_invalid_url_is_reported_when_connecting() {
        let e = SqliteStore::builder("postgres://not-sqlite").connect().await.unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn migrations_are_idempotent_and_tracked_in_their_own_table() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        crate::store::sql::assert_all_versions_applied!(store.pool());
        let sqlx_default: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE name = '_sqlx_migrations'")
                .fetch_optional(store.pool())
                .await
                .unwrap();
        assert_eq!(sqlx_default, None);
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported_without_their_values() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        sqlx::query(
            "INSERT INTO api_keys (id, service_account_id, description, created_at, scopes, masked_key, \
             pepper_version, digest, status, kind) VALUES ('aaaaaaaaaaaaaaaaaaaa', 'sa', '', 0, 'SECRET SCOPE', \
             'abcdef', 1, zeroblob(32), 'active', 'native')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let e = store.get(&KeyId::parse("aaaaaaaaaaaaaaaaaaaa").unwrap()).await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(e.is_unavailable());
        assert!(!format!("{e} {e:?}").contains("SECRET"));
    }
}
